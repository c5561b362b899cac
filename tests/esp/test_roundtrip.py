"""Round trips through every transform, tunnel and transport mode, IPv4 and IPv6 outer
and inner packets, with and without ESN and UDP encapsulation."""

from __future__ import annotations

import pytest

from larval.esp import (
    EspBadNextHeaderError,
    EspConfigError,
    EspError,
    EspSa,
    EspSeqExhausted,
    esp_decapsulate,
    esp_encapsulate_transport,
    esp_encapsulate_tunnel,
)
from larval.esp.ip import internet_checksum, parse_ip_header

from .helpers import IPV4_UDP, IPV6_UDP, SUITE_IDS, SUITES, V4_A, V4_B, V6_A, V6_B, Suite

INNERS = {"inner4": IPV4_UDP, "inner6": IPV6_UDP}
OUTERS = {"outer4": (V4_A, V4_B), "outer6": (V6_A, V6_B)}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("nat_t", [None, (4500, 4500)], ids=["esp", "udp"])
@pytest.mark.parametrize("outer", list(OUTERS))
@pytest.mark.parametrize("inner", list(INNERS))
def test_tunnel_round_trip(
    suite: Suite, esn: bool, nat_t: tuple[int, int] | None, outer: str, inner: str
) -> None:
    out, into = suite.sa(esn=esn), suite.sa(esn=esn)
    src, dst = OUTERS[outer]
    for _ in range(3):
        packet = esp_encapsulate_tunnel(out, INNERS[inner], src, dst, nat_t_ports=nat_t)
        header = parse_ip_header(packet)
        assert header.end == len(packet)
        assert header.protocol == (17 if nat_t else 50)
        assert (header.src, header.dst) == (src, dst)
        got = esp_decapsulate({0x1001: into}.get, bytes(packet))
        assert got.sa is into
        assert got.packet == INNERS[inner]
    assert out.packets_out == into.packets_in == 3
    assert out.bytes_out == into.bytes_in == 3 * len(INNERS[inner])
    assert into.replay.top == 3


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("nat_t", [None, (4500, 4500)], ids=["esp", "udp"])
@pytest.mark.parametrize("packet", list(INNERS))
def test_transport_round_trip(
    suite: Suite, esn: bool, nat_t: tuple[int, int] | None, packet: str
) -> None:
    out = suite.sa(esn=esn, mode="transport")
    into = suite.sa(esn=esn, mode="transport")
    original = INNERS[packet]
    protected = esp_encapsulate_transport(out, original, nat_t_ports=nat_t)
    header = parse_ip_header(protected)  # checks the IPv4 header checksum too
    assert header.end == len(protected)
    assert header.protocol == (17 if nat_t else 50)
    assert bytes(protected[12:20] if header.version == 4 else protected[8:40]) == (
        original[12:20] if header.version == 4 else original[8:40]
    )
    assert esp_decapsulate({0x1001: into}.get, bytes(protected)).packet == original


def test_tunnel_outer_header_fields() -> None:
    sa = SUITES[0].sa()
    packet = esp_encapsulate_tunnel(sa, IPV4_UDP, V4_A, V4_B, ttl=17)
    assert packet[0] == 0x45 and packet[8] == 17 and packet[9] == 50
    assert int.from_bytes(packet[2:4], "big") == len(packet)
    assert internet_checksum(packet[:20]) == 0
    # ESP payload: 8 header + 8 IV + 42 inner + 2 trailer (44, 4-aligned) + 16 ICV.
    assert len(packet) == 20 + 8 + 8 + 44 + 16


def test_ipv6_udp_checksum_is_valid() -> None:
    from larval.esp.ip import udp_checksum

    packet = esp_encapsulate_tunnel(SUITES[0].sa(), IPV4_UDP, V6_A, V6_B, nat_t_ports=(4500, 4500))
    udp = bytearray(packet[40:])
    sent = int.from_bytes(udp[6:8], "big")
    udp[6:8] = b"\x00\x00"
    assert sent != 0 and sent == udp_checksum(V6_A, V6_B, udp)


def test_tunnel_sa_refuses_a_non_ip_next_header() -> None:
    out, into = SUITES[0].sa(), SUITES[0].sa()
    esp = out.encrypt(b"not an ip packet", 17)
    outer = esp_encapsulate_tunnel(SUITES[0].sa(seed=9), IPV4_UDP, V4_A, V4_B)
    packet = bytes(outer[:20]) + esp
    packet = packet[:2] + len(packet).to_bytes(2, "big") + packet[4:10] + b"\0\0" + packet[12:]
    packet = packet[:10] + internet_checksum(packet[:20]).to_bytes(2, "big") + packet[12:]
    with pytest.raises(EspBadNextHeaderError) as info:
        esp_decapsulate({0x1001: into}.get, packet)
    assert info.value.counter == "bad_next_header"


def test_sequence_numbers_count_from_one_and_never_cycle() -> None:
    sa = SUITES[0].sa()
    assert sa.encrypt(b"a", 4)[4:8] == b"\x00\x00\x00\x01"
    sa.seq = 2**32 - 2
    assert sa.encrypt(b"a", 4)[4:8] == b"\xff\xff\xff\xff"
    with pytest.raises(EspSeqExhausted):
        sa.encrypt(b"a", 4)
    assert sa.seq == 2**32 - 1  # unchanged: nothing was sent


def test_esn_sequence_numbers_go_past_32_bits() -> None:
    out, into = SUITES[3].sa(esn=True), SUITES[3].sa(esn=True)
    out.seq = into.replay.top = 2**32 - 2
    for expected_low in (0xFFFFFFFF, 0, 1):
        esp = out.encrypt(b"payload", 4)
        assert int.from_bytes(esp[4:8], "big") == expected_low
        assert into.decrypt(esp) == (4, b"payload")
    assert into.replay.top == 2**32 + 1
    out.seq = 2**64 - 1
    with pytest.raises(EspSeqExhausted):
        out.encrypt(b"a", 4)


def test_padding_aligns_to_block_and_four_bytes() -> None:
    for suite in SUITES:
        sa = suite.sa()
        for n in range(0, 40):
            esp = sa.encrypt(bytes(n), 4)
            t = sa._transform
            body = len(esp) - 8 - t.iv_size - t.icv_size
            assert body % t.pad_to == 0 and body % 4 == 0
            assert body - n - 2 < t.pad_to
            assert len(esp) == sa.esp_length(n)


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((0x1001, 99, b""), {}, "unknown ESP encryption algorithm 99"),
        ((0x1001, 20, bytes(16)), {}, "160, 224, 288 bits"),
        ((0x1001, 20, bytes(20), 5, bytes(32)), {}, "combined-mode"),
        ((0x1001, 12, bytes(16)), {}, "needs an integrity algorithm"),
        ((0x1001, 11, b""), {}, "needs an integrity algorithm"),
        ((0x1001, 12, bytes(16), 9, bytes(32)), {}, "unknown ESP integrity algorithm 9"),
        ((0x1001, 12, bytes(16), 5, bytes(20)), {}, "integrity key of 160 bits"),
        ((0x1001, 28, bytes(32)), {}, "chacha20-poly1305"),
        ((0x10, 20, bytes(20)), {}, "SPI"),
        ((0x1001, 20, bytes(20)), {"mode": "beet"}, "mode"),
        ((0x1001, 20, bytes(20)), {"replay_window": 4097}, "replay window"),
        ((0x1001, 20, bytes(20)), {"replay_window": 0, "esn": True}, "ESN"),
    ],
)
def test_bad_sa_parameters(args: tuple, kwargs: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(EspConfigError) as info:
        EspSa(*args, **kwargs)
    assert fragment in str(info.value)


def test_no_key_bytes_in_repr_or_messages() -> None:
    key = bytes.fromhex("5a" * 16) + b"SALT"
    sa = EspSa(0x1001, 20, key)
    text = repr(sa) + repr(sa._transform) + repr(sa.replay)
    assert "5a5a" not in text and "SALT" not in text and "Z" not in text
    with pytest.raises(EspConfigError) as info:
        EspSa(0x1001, 20, key[:-1])
    assert "5a" not in str(info.value) and "Z" not in str(info.value)


def test_encapsulation_input_errors() -> None:
    sa = SUITES[0].sa()
    with pytest.raises(EspError):
        esp_encapsulate_tunnel(sa, b"", V4_A, V4_B)
    with pytest.raises(EspError):
        esp_encapsulate_tunnel(sa, b"\x10abc", V4_A, V4_B)
    with pytest.raises(EspError):
        esp_encapsulate_tunnel(sa, IPV4_UDP, V4_A, V6_B)
    with pytest.raises(EspError):
        sa.encrypt(b"x", 256)
