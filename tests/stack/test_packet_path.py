"""Two stacks joined in memory: manual SAs, ESP both ways, the LARVAL hold on the packet
path, the inbound policy check, and drops by name."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SaFlags
from larval.pfkey.requests import getspi, keyed
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath

A_OUTER, B_OUTER = "192.0.2.1", "192.0.2.2"
A_NET, B_NET = "198.51.100.0/24", "203.0.113.0/24"
KEY_AB, KEY_BA = bytes(range(20)), bytes(range(20, 40))


def policy(local_net: str, remote_net: str, local: str, remote: str) -> str:
    return f"""
[policies.net]
local_ts = ["{local_net}"]
remote_ts = ["{remote_net}"]
mode = "tunnel"
local_addrs = ["{local}"]
remote_addrs = ["{remote}"]
esp_proposals = ["aes128gcm16"]
"""


def icmp_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, seq) + b"ping"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), seq, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + body  # fmt: skip


class Host:
    def __init__(self, outer: str, local_net: str, remote_net: str, remote: str) -> None:
        from larval.spd import load_policy_text

        self.outer = ipaddress.IPv4Address(outer).packed
        self.stack = Stack()
        self.wire: list[Datagram] = []
        self.got: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.wire.append, deliver=self.got.append)
        for p in load_policy_text(policy(local_net, remote_net, outer, remote), "test"):
            self.stack.spd.add(p)

    def pfkey(self, msg: PfkeyMessage) -> PfkeyMessage:
        reply = self.stack.handle_pfkey(msg, 0.0)[0].message
        assert reply.errno == 0, reply
        return reply

    def add(
        self, spi: int, src: str, dst: str, key: bytes, msg_type: int = SadbMsgType.ADD
    ) -> None:
        from larval.pfkey import SadbSa, SaState

        msg = keyed(msg_type, spi, src, dst, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=key)
        tunnel = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL)
        self.pfkey(PfkeyMessage(msg.msg_type, msg.satype, extensions=(tunnel, *msg.extensions[1:])))


def carry(frm: Host, to: Host) -> None:
    for d in frm.wire:
        assert d.port == 4500 and d.dst == to.outer
        to.path.inbound(d.payload, to.outer, 1.0)
    frm.wire.clear()


@pytest.fixture
def hosts() -> tuple[Host, Host]:
    a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
    b = Host(B_OUTER, B_NET, A_NET, A_OUTER)
    a.add(0x1001, A_OUTER, B_OUTER, KEY_AB)
    b.add(0x1001, A_OUTER, B_OUTER, KEY_AB)
    b.add(0x2002, B_OUTER, A_OUTER, KEY_BA)
    a.add(0x2002, B_OUTER, A_OUTER, KEY_BA)
    return a, b


def test_ping_both_ways(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    request = icmp_echo("198.51.100.1", "203.0.113.1", 1)
    a.path.outbound(request, 1.0)
    assert len(a.wire) == 1 and request not in a.wire[0].payload  # encrypted
    carry(a, b)
    assert b.got == [request]
    reply = icmp_echo("203.0.113.1", "198.51.100.1", 1)
    b.path.outbound(reply, 1.0)
    carry(b, a)
    assert a.got == [reply]
    assert a.path.counters()["sent"] == 1 and b.path.counters()["delivered"] == 1


def test_replayed_tampered_and_unknown_packets_are_counted(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    a.path.outbound(icmp_echo("198.51.100.1", "203.0.113.1", 1), 1.0)
    a.path.outbound(icmp_echo("198.51.100.1", "203.0.113.1", 2), 1.0)
    esp, second = a.wire[0].payload, a.wire[1].payload
    b.path.inbound(esp, b.outer, 1.0)
    b.path.inbound(esp, b.outer, 1.0)  # replayed
    tampered = bytearray(second)
    tampered[-1] ^= 1  # a fresh sequence number, a broken ICV
    b.path.inbound(bytes(tampered), b.outer, 1.0)
    b.path.inbound(b"\x00\x00\x99\x99" + esp[4:], b.outer, 1.0)
    b.path.inbound(esp[:5], b.outer, 1.0)
    counters = b.path.counters()
    assert counters["delivered"] == 1
    assert (counters["replay"], counters["auth"]) == (1, 1)
    assert (counters["unknown_spi"], counters["truncated"]) == (1, 1)
    b.path.inbound(second, b.outer, 1.0)  # the window did not move for the forgery
    assert b.path.counters()["delivered"] == 2


def test_inbound_policy_check_drops_packets_outside_the_selectors(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    # A sends with the right SA but an inner source outside A's protected net.
    ctx_packet = icmp_echo("192.0.2.77", "203.0.113.1", 1)
    sa = a.stack.sadb.lookup_outbound(a.outer, b.outer)
    assert sa is not None
    a.path._protect(sa, ctx_packet, 1.0)  # bypassing A's own SPD, as a rogue peer would
    carry(a, b)
    assert b.got == [] and b.path.counters()["inbound_policy"] == 1


def test_larval_sa_holds_early_esp_until_update() -> None:
    # The seed's window on the packet path: B reserved its inbound SPI (LARVAL); A has
    # its outbound SA and sends before B's key manager has run UPDATE.
    a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
    b = Host(B_OUTER, B_NET, A_NET, A_OUTER)
    spi = b.pfkey(getspi(A_OUTER, B_OUTER)).extensions[0].spi  # type: ignore[union-attr]
    a.add(spi, A_OUTER, B_OUTER, KEY_AB)
    packets = [icmp_echo("198.51.100.1", "203.0.113.1", n) for n in range(3)]
    for p in packets:
        a.path.outbound(p, 1.0)
    carry(a, b)
    assert b.got == [] and b.stack.sadb.counters["held"] == 3
    b.add(spi, A_OUTER, B_OUTER, KEY_AB, SadbMsgType.UPDATE)
    assert b.got == packets  # released in arrival order, decrypted with the new keys


def test_outbound_packets_wait_for_the_acquire_and_leave_on_add() -> None:
    a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
    first = icmp_echo("198.51.100.1", "203.0.113.1", 1)
    a.path.outbound(first, 1.0)
    assert a.wire == [] and a.stack.sadb.acquire_records == 1
    a.add(0x3003, A_OUTER, B_OUTER, KEY_AB)
    assert len(a.wire) == 1  # the held first packet left as soon as the SA was added


def test_nat_keepalives_are_owed_to_peers_of_natted_outbound_sas() -> None:
    from larval.pfkey import SadbSa, SaState
    from larval.pfkey.requests import by_spi

    a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
    msg = keyed(SadbMsgType.ADD, 0x5005, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                encrypt_key=KEY_AB)  # fmt: skip
    flags = SaFlags.X_TUNNEL | SaFlags.X_NATTED | SaFlags.X_OUTBOUND
    sa_ext = SadbSa(0x5005, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, flags)
    a.pfkey(PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:])))
    assert a.path.keepalive_peers() == []  # nothing sent yet: no ESP context
    a.path.outbound(icmp_echo("198.51.100.1", "203.0.113.1", 1), 1.0)
    assert a.path.keepalive_peers() == [(a.wire[0].dst, 4500)]
    a.pfkey(by_spi(SadbMsgType.DELETE, 0x5005, B_OUTER))
    assert a.path.keepalive_peers() == []


def test_of_two_sas_between_the_same_gateways_each_packet_takes_the_one_for_its_addresses() -> None:
    """Two CHILD_SAs from A to B under one policy, each for half of B's network (as a
    client's IPv4 and IPv6 CHILD_SAs, or two children, share the tunnel's endpoints): a
    packet goes out on the SA whose inner selectors hold its addresses, not on the newest;
    one that neither holds waits for its own SA."""
    from larval.pfkey import ExtType, SadbAddress

    a = Host(A_OUTER, A_NET, B_NET, B_OUTER)

    def add(spi: int, inner_dst: str) -> None:
        net = ipaddress.ip_network(inner_dst)
        inner = (
            SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("198.51.100.0"), prefixlen=24),
            SadbAddress(ExtType.X_ADDRESS_INNER_DST, net.network_address, prefixlen=net.prefixlen),
        )
        msg = keyed(SadbMsgType.ADD, spi, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=KEY_AB, extra=inner)  # fmt: skip
        a.pfkey(msg)

    add(0x1001, "203.0.113.0/25")
    add(0x2002, "203.0.113.128/26")
    for dst in ("203.0.113.1", "203.0.113.130", "203.0.113.1"):
        a.path.outbound(icmp_echo("198.51.100.1", dst, 1), 1.0)
    assert [d.payload[:4].hex() for d in a.wire] == ["00001001", "00002002", "00001001"]
    a.path.outbound(icmp_echo("198.51.100.1", "203.0.113.200", 2), 1.0)
    assert len(a.wire) == 3  # held for an SA of its own


def test_an_sa_for_every_address_takes_every_address() -> None:
    """Inner selectors of prefix 0 (0.0.0.0/0 === 10.3.0.1/32, a gateway that tunnels all
    of a road warrior's traffic) hold every address: what comes out of the SA is
    delivered, not dropped by the inbound policy check as if 0.0.0.0 were a host."""
    from larval.pfkey import ExtType, SadbAddress

    client = Host("192.0.2.1", "10.3.0.1/32", "0.0.0.0/0", "192.0.2.2")
    gateway = Host("192.0.2.2", "0.0.0.0/0", "10.3.0.1/32", "192.0.2.1")
    inner = (
        SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("10.3.0.1"), prefixlen=32),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, ipaddress.ip_address("0.0.0.0"), prefixlen=0),
    )
    for host in (client, gateway):
        msg = keyed(SadbMsgType.ADD, 0x1001, "192.0.2.1", "192.0.2.2",
                    encrypt=EncryptAlg.AES_GCM_16, encrypt_key=KEY_AB, extra=inner)  # fmt: skip
        host.pfkey(msg)
    request = icmp_echo("10.3.0.1", "198.51.100.77", 1)
    client.path.outbound(request, 1.0)
    carry(client, gateway)
    assert gateway.got == [request], gateway.path.counters()
