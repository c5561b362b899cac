"""Cross-checks with an independent ESP implementation: scapy's `SecurityAssociation`.

larval encrypts and scapy decrypts, and the other way round, for every transform both
have (AES-GCM 128/256, ChaCha20-Poly1305, AES-CBC with HMAC-SHA2-256/384/512, NULL with
HMAC-SHA2-256), tunnel and transport mode, IPv4 and IPv6, with and without UDP
encapsulation (RFC 3948) and ESN.
"""

from __future__ import annotations

import pytest

from larval.esp import esp_decapsulate, esp_encapsulate_transport, esp_encapsulate_tunnel

from .helpers import IPV4_UDP, IPV6_UDP, SUITE_IDS, SUITES, V4_A, V4_B, V6_A, V6_B, Suite

scapy_all = pytest.importorskip("scapy.all", reason="scapy is in the test extras")
ipsec = pytest.importorskip("scapy.layers.ipsec")

IP, IPv6, UDP, raw = scapy_all.IP, scapy_all.IPv6, scapy_all.UDP, scapy_all.raw

NAT_T = (4500, 4500)
INNER = {"inner4": IPV4_UDP, "inner6": IPV6_UDP}
OUTER = {
    "outer4": (V4_A, V4_B, lambda: IP(src="192.0.2.1", dst="192.0.2.2")),
    "outer6": (V6_A, V6_B, lambda: IPv6(src="2001:db8::1", dst="2001:db8::2")),
}


def _scapy_sa(
    suite: Suite, *, tunnel_header: object = None, nat_t: bool = False, esn: bool = False
) -> object:
    ekey, akey = suite.keys()
    return ipsec.SecurityAssociation(
        ipsec.ESP, spi=0x1001, seq_num=1,
        crypt_algo=suite.scapy_crypt, crypt_key=ekey or None,
        auth_algo=suite.scapy_auth, auth_key=akey or None,
        tunnel_header=tunnel_header,
        nat_t_header=UDP(sport=NAT_T[0], dport=NAT_T[1]) if nat_t else None,
        esn_en=esn, esn=0,
    )  # fmt: skip


def _parse(packet: bytes) -> object:
    return IP(packet) if packet[0] >> 4 == 4 else IPv6(packet)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("nat_t", [False, True], ids=["esp", "udp"])
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("outer", list(OUTER))
@pytest.mark.parametrize("inner", list(INNER))
def test_tunnel_both_ways(suite: Suite, nat_t: bool, esn: bool, outer: str, inner: str) -> None:
    src, dst, scapy_header = OUTER[outer]
    theirs = _scapy_sa(suite, tunnel_header=scapy_header(), nat_t=nat_t, esn=esn)
    ours_out, ours_in = suite.sa(esn=esn), suite.sa(esn=esn)
    ports = NAT_T if nat_t else None
    for _ in range(2):
        # larval -> scapy
        packet = bytes(esp_encapsulate_tunnel(ours_out, INNER[inner], src, dst, nat_t_ports=ports))
        assert raw(theirs.decrypt(_parse(packet))) == INNER[inner]
        # scapy -> larval
        sent = raw(theirs.encrypt(_parse(INNER[inner])))
        assert esp_decapsulate({0x1001: ours_in}.get, sent).packet == INNER[inner]


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("nat_t", [False, True], ids=["esp", "udp"])
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("inner", list(INNER))
def test_transport_both_ways(suite: Suite, nat_t: bool, esn: bool, inner: str) -> None:
    theirs = _scapy_sa(suite, nat_t=nat_t, esn=esn)
    ours_out = suite.sa(esn=esn, mode="transport")
    ours_in = suite.sa(esn=esn, mode="transport")
    original = INNER[inner]
    ports = NAT_T if nat_t else None
    packet = bytes(esp_encapsulate_transport(ours_out, original, nat_t_ports=ports))
    decrypted = raw(theirs.decrypt(_parse(packet)))
    # scapy leaves IPv4 TTL/ID and the rest as they were; compare whole packets.
    assert decrypted == original
    sent = raw(theirs.encrypt(_parse(original)))
    assert esp_decapsulate({0x1001: ours_in}.get, sent).packet == original


def test_esn_rollover_with_scapy() -> None:
    """scapy sends in the second sequence number subspace (ESN high bits 1)."""
    suite = SUITES[3]
    ekey, akey = suite.keys()
    theirs = ipsec.SecurityAssociation(
        ipsec.ESP, spi=0x1001, seq_num=5, crypt_algo="AES-CBC", crypt_key=ekey,
        auth_algo=suite.scapy_auth, auth_key=akey,
        tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2"), esn_en=True, esn=1,
    )  # fmt: skip
    ours = suite.sa(esn=True)
    ours.replay.top = 2**32 - 10
    sent = raw(theirs.encrypt(IP(IPV4_UDP)))
    assert esp_decapsulate({0x1001: ours}.get, sent).packet == IPV4_UDP
    assert ours.replay.top == 2**32 + 5
