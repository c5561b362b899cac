"""One SA per direction for both families, in the stack: a gateway with an IPv4 and an
IPv6 tunnel policy to any peer, and a road warrior with an address of each family. The
gateway's SAs carry the IPv4 pair in ADDRESS_PROXY / X_ADDRESS_INNER_DST and the IPv6
pair in X_LARVAL_INNER_PAIRS, as PF_KEY bytes. Both families go through both ways; a
packet from an address outside the SA's pairs is refused and counted; DELETE takes the
SA out under both families."""

from __future__ import annotations

import ipaddress
import struct

from larval.pfkey import (
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbSa,
    SadbXInnerPairs,
    SaFlags,
    SaState,
)
from larval.pfkey.message import decode
from larval.pfkey.requests import by_spi, keyed
from tests.stack.test_any_peer_path import GATEWAY, Host, icmp_echo

NET4, NET6 = "10.1.0.0/24", "2001:db8:1::/64"
SERVER4, SERVER6 = "10.1.0.5", "2001:db8:1::5"
VIP4, VIP6 = "10.3.0.7", "2001:db8:3::7"
CLIENT = "198.51.100.10"

GATEWAY_POLICY = f"""
[policies.rw]
local_ts = ["{NET4}", "{NET6}"]
remote_ts = ["10.3.0.0/24", "2001:db8:3::/64"]
mode = "tunnel"
local_addrs = ["{GATEWAY}"]
remote_addrs = ["%any"]
esp_proposals = ["aes128gcm16"]
"""

CLIENT_POLICY = f"""
[policies.home]
local_ts = ["{VIP4}/32", "{VIP6}/128"]
remote_ts = ["{NET4}", "{NET6}"]
mode = "tunnel"
local_addrs = ["{CLIENT}"]
remote_addrs = ["{GATEWAY}"]
esp_proposals = ["aes128gcm16"]
"""


def icmp6_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 128, 0, 0, 1, seq) + b"ping"
    return struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), 58, 64,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    ) + body  # fmt: skip


def _pair(src: str, dst: str) -> tuple[SadbAddress, SadbAddress]:
    s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
    return (
        SadbAddress(ExtType.ADDRESS_PROXY, s.network_address, prefixlen=s.prefixlen),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, d.network_address, prefixlen=d.prefixlen),
    )


def dual_sa(
    spi: int, src: str, dst: str, key: bytes, flags: int, pairs: list[tuple[str, str]]
) -> PfkeyMessage:
    """ADD <base, SA, address(S, D), key(E), inner pair 1, X_LARVAL_INNER_PAIRS(rest)>."""
    first, *rest = [_pair(*p) for p in pairs]
    extra = (*first, SadbXInnerPairs(tuple(rest))) if rest else first
    msg = keyed(SadbMsgType.ADD, spi, src, dst, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=key,
                extra=extra)  # fmt: skip
    sa_ext = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL | flags)
    return decode(PfkeyMessage(msg.msg_type, msg.satype,
                               extensions=(sa_ext, *msg.extensions[1:])).encode())  # fmt: skip


SPI_IN, SPI_OUT = 0xA001, 0xA002  # the client's
KEY_IN, KEY_OUT = b"\x01" * 20, b"\x02" * 20


def hosts() -> tuple[Host, Host]:
    gateway, client = Host(GATEWAY, GATEWAY_POLICY), Host(CLIENT, CLIENT_POLICY)
    mine = [(f"{VIP4}/32", NET4), (f"{VIP6}/128", NET6)]
    theirs = [(b, a) for a, b in mine]
    client.pfkey(dual_sa(SPI_OUT, CLIENT, GATEWAY, KEY_OUT, SaFlags.X_OUTBOUND, mine))
    client.pfkey(dual_sa(SPI_IN, GATEWAY, CLIENT, KEY_IN, SaFlags.X_INBOUND, theirs))
    gateway.pfkey(dual_sa(SPI_IN, GATEWAY, CLIENT, KEY_IN, SaFlags.X_OUTBOUND, theirs))
    gateway.pfkey(dual_sa(SPI_OUT, CLIENT, GATEWAY, KEY_OUT, SaFlags.X_INBOUND, mine))
    return gateway, client


def through(a: Host, b: Host, packet: bytes) -> list[bytes]:
    a.wire.clear()
    a.path.outbound(packet, 1.0)
    for datagram in a.wire:
        b.path.inbound(datagram.payload, b.outer, 1.0)
    return b.got


def test_both_families_go_through_one_sa_each_way() -> None:
    gateway, client = hosts()
    for ping in (icmp_echo, icmp6_echo):
        vip, server = (VIP4, SERVER4) if ping is icmp_echo else (VIP6, SERVER6)
        request, reply = ping(vip, server, 1), ping(server, vip, 1)
        assert through(client, gateway, request)[-1] == request
        assert through(gateway, client, reply)[-1] == reply
    # The two SAs of each side carried both families.
    for host in (gateway, client):
        for spi, dst in ((SPI_IN, CLIENT), (SPI_OUT, GATEWAY)):
            sa = host.stack.sadb.lookup_inbound(spi, ipaddress.ip_address(dst).packed)
            assert sa is not None and sa.packets == 2, (host, hex(spi))
    counters = gateway.path.counters()
    assert counters["inner_outside_sa"] == counters["no_peer_sa"] == 0


def test_an_address_outside_the_pairs_is_refused_and_counted() -> None:
    gateway, client = hosts()
    sa = client.stack.sadb.lookup_outbound(client.outer, gateway.outer)
    assert sa is not None
    # The client's own SA, another client's IPv6 address inside (bypassing its SPD).
    client.path._protect(sa, icmp6_echo("2001:db8:3::99", SERVER6, 1), 1.0)
    for datagram in client.wire:
        gateway.path.inbound(datagram.payload, gateway.outer, 1.0)
    assert gateway.got == []
    assert gateway.path.counters()["inner_outside_sa"] == 1


def test_delete_takes_the_sa_away_from_both_families() -> None:
    gateway, _ = hosts()
    index = gateway.stack.sadb._tables[3].inner
    assert len(index) == 2
    reply = gateway.stack.handle_pfkey(by_spi(SadbMsgType.DELETE, SPI_IN, CLIENT), 0.0)[0]
    assert reply.message.errno == 0
    assert len(index) == 0
    for packet in (icmp_echo(SERVER4, VIP4, 1), icmp6_echo(SERVER6, VIP6, 1)):
        gateway.path.outbound(packet, 1.0)
    assert gateway.wire == [] and gateway.path.counters()["no_peer_sa"] == 2
