"""A gateway stack with a tunnel policy to any peer, and road-warrior stacks, joined in
memory: each client's traffic goes to that client (behind one NAT too), a client cannot
send with another's virtual address, and a destination without an SA is dropped by name
without an ACQUIRE. The SAs are keyed with PF_KEY messages as bytes, as a key manager
would send them: ADD of the gateway's outbound SA with the client's virtual address as
inner destination, and its inbound SA with it as inner source."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from larval.pfkey import (
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbSa,
    SaFlags,
    SaState,
)
from larval.pfkey.message import decode
from larval.pfkey.requests import by_spi, keyed
from larval.sadb import PfkeyReply
from larval.spd import load_policy_text
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath
from larval.stack.stack import Verdict
from tests.stack import rawpfkey as raw
from tests.stack.conftest import RunningStack

GATEWAY = "192.0.2.2"
GATEWAY_NET = "10.1.0.0/24"
SERVER = "10.1.0.5"
NAT = "203.0.113.1"  # the public side of a NAT two clients share

GATEWAY_POLICY = f"""
[policies.rw]
local_ts = ["{GATEWAY_NET}"]
remote_ts = ["10.3.0.0/24"]
mode = "tunnel"
local_addrs = ["{GATEWAY}"]
remote_addrs = ["%any"]
esp_proposals = ["aes128gcm16"]
"""


def client_policy(outer: str, vip: str) -> str:
    return f"""
[policies.home]
local_ts = ["{vip}/32"]
remote_ts = ["{GATEWAY_NET}"]
mode = "tunnel"
local_addrs = ["{outer}"]
remote_addrs = ["{GATEWAY}"]
esp_proposals = ["aes128gcm16"]
"""


def icmp_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, seq) + b"ping"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), seq, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + body  # fmt: skip


def sa_message(
    msg_type: int,
    spi: int,
    src: str,
    dst: str,
    key: bytes,
    flags: int,
    inner: tuple[str, str] | None = None,
    natt: tuple[str, int] | None = None,
) -> PfkeyMessage:
    """ADD/UPDATE <base, SA, address(S, D), key(E) [, inner src/dst] [, NAT-T remote]>,
    through the PF_KEY codec."""
    extra: list[SadbAddress] = []
    if inner is not None:
        types = (ExtType.ADDRESS_PROXY, ExtType.X_ADDRESS_INNER_DST)
        for ext_type, net in zip(types, inner, strict=True):
            n = ipaddress.ip_network(net)
            extra.append(SadbAddress(ext_type, n.network_address, prefixlen=n.prefixlen))
    if natt is not None:
        extra.append(
            SadbAddress(ExtType.X_ADDRESS_NATT_REM, ipaddress.ip_address(natt[0]), natt[1])
        )
    msg = keyed(msg_type, spi, src, dst, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=key,
                extra=tuple(extra))  # fmt: skip
    sa_ext = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL | flags)
    msg = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:]))
    return decode(msg.encode())


class Host:
    def __init__(self, outer: str, policy: str) -> None:
        self.outer = ipaddress.ip_address(outer).packed
        self.emitted: list[PfkeyReply] = []
        self.stack = Stack(emit=self.emitted.extend)
        self.wire: list[Datagram] = []
        self.got: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.wire.append, deliver=self.got.append)
        self.stack.spd.add_all(load_policy_text(policy, "test.toml"))

    def pfkey(self, msg: PfkeyMessage) -> None:
        reply = self.stack.handle_pfkey(msg, 0.0)[0].message
        assert reply.errno == 0, reply


class Client(Host):
    def __init__(self, outer: str, vip: str, spi_in: int, spi_out: int) -> None:
        super().__init__(outer, client_policy(outer, vip))
        self.vip = vip
        self.spi_in, self.spi_out = spi_in, spi_out
        self.key_out, self.key_in = bytes([spi_out & 0xFF]) * 20, bytes([spi_in & 0xFF]) * 20
        self.pfkey(sa_message(SadbMsgType.ADD, spi_out, outer, GATEWAY, self.key_out,
                              SaFlags.X_OUTBOUND))  # fmt: skip
        self.pfkey(sa_message(SadbMsgType.ADD, spi_in, GATEWAY, outer, self.key_in,
                              SaFlags.X_INBOUND))  # fmt: skip

    def connect(self, gateway: Host, seen_as: str | None = None, port: int = 0) -> None:
        """What the gateway's key manager installs for this client: the SAs with its
        virtual address as inner selector, to the address (and port) it came from."""
        peer = seen_as or str(ipaddress.IPv4Address(self.outer))
        natt = (peer, port) if port else None
        natted = SaFlags.X_NATTED if port else 0
        gateway.pfkey(sa_message(SadbMsgType.ADD, self.spi_in, GATEWAY, peer, self.key_in,
                                 SaFlags.X_OUTBOUND | natted, (GATEWAY_NET, f"{self.vip}/32"),
                                 natt))  # fmt: skip
        gateway.pfkey(sa_message(SadbMsgType.ADD, self.spi_out, peer, GATEWAY, self.key_out,
                                 SaFlags.X_INBOUND, (f"{self.vip}/32", GATEWAY_NET)))  # fmt: skip


def to_gateway(client: Client, gateway: Host) -> None:
    for d in client.wire:
        assert d.dst == gateway.outer
        gateway.path.inbound(d.payload, gateway.outer, 1.0)
    client.wire.clear()


def ping_pong(client: Client, gateway: Host) -> tuple[bytes, bytes]:
    request = icmp_echo(client.vip, SERVER, 1)
    client.path.outbound(request, 1.0)
    to_gateway(client, gateway)
    assert gateway.got[-1] == request
    reply = icmp_echo(SERVER, client.vip, 1)
    gateway.path.outbound(reply, 1.0)
    return request, reply


@pytest.fixture
def gateway() -> Host:
    return Host(GATEWAY, GATEWAY_POLICY)


def test_two_clients_get_their_own_traffic(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    b = Client("198.51.100.20", "10.3.0.8", 0xB001, 0xB002)
    a.connect(gateway)
    b.connect(gateway)
    for client in (a, b, a):
        _, reply = ping_pong(client, gateway)
        (datagram,) = gateway.wire
        gateway.wire.clear()
        assert datagram.dst == client.outer and datagram.port == 4500
        client.path.inbound(datagram.payload, client.outer, 1.0)
        assert client.got[-1] == reply
    assert (len(a.got), len(b.got)) == (2, 1)
    counters = gateway.path.counters()
    assert (counters["sent"], counters["delivered"]) == (3, 3)
    assert counters["inbound_policy"] == counters["inner_outside_sa"] == 0


def test_two_clients_behind_one_nat_each_get_their_port(gateway: Host) -> None:
    c = Client("198.51.100.101", "10.3.0.11", 0xC001, 0xC002)
    d = Client("198.51.100.102", "10.3.0.12", 0xD001, 0xD002)
    c.connect(gateway, seen_as=NAT, port=61001)
    d.connect(gateway, seen_as=NAT, port=61002)
    behind = {61001: c, 61002: d}
    nat = ipaddress.IPv4Address(NAT).packed
    for client in (d, c):
        _, reply = ping_pong(client, gateway)
        (datagram,) = gateway.wire
        gateway.wire.clear()
        assert (datagram.dst, behind[datagram.port]) == (nat, client)
        client.path.inbound(datagram.payload, client.outer, 1.0)
        assert client.got == [reply]
    # Each NATed client is owed its own keepalives.
    assert sorted(gateway.path.keepalive_peers()) == [(nat, 61001), (nat, 61002)]


def test_a_client_cannot_send_with_another_clients_address(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    b = Client("198.51.100.20", "10.3.0.8", 0xB001, 0xB002)
    a.connect(gateway)
    b.connect(gateway)
    sa = a.stack.sadb.lookup_outbound(a.outer, gateway.outer)
    assert sa is not None
    # A's own SA, B's virtual address inside: bypassing A's SPD, as a rogue client would.
    a.path._protect(sa, icmp_echo(b.vip, SERVER, 1), 1.0)
    to_gateway(a, gateway)
    assert gateway.got == []
    assert gateway.path.counters()["inner_outside_sa"] == 1
    # ... and to where no policy of the gateway lets anyone in.
    a.path._protect(sa, icmp_echo(a.vip, "10.1.9.9", 2), 1.0)
    to_gateway(a, gateway)
    assert gateway.got == [] and gateway.path.counters()["inbound_policy"] == 1
    ping_pong(a, gateway)  # A's own address still passes
    assert gateway.path.counters()["delivered"] == 1


def test_an_sa_with_no_inner_selectors_is_refused_under_any_peer(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    # A key manager that left the inner addresses out: which address is A's is unknown.
    gateway.pfkey(sa_message(SadbMsgType.ADD, a.spi_out, "198.51.100.10", GATEWAY,
                             a.key_out, SaFlags.X_INBOUND))  # fmt: skip
    a.path.outbound(icmp_echo(a.vip, SERVER, 1), 1.0)
    to_gateway(a, gateway)
    assert gateway.got == [] and gateway.path.counters()["inner_outside_sa"] == 1


def test_no_sa_for_the_destination_is_dropped_without_acquire(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    a.connect(gateway)
    result = gateway.stack.outbound(icmp_echo(SERVER, "10.3.0.99", 1), 1.0)
    assert result.verdict is Verdict.NO_PEER_SA and result.policy is not None
    gateway.path.outbound(icmp_echo(SERVER, "10.3.0.99", 2), 1.0)
    assert gateway.wire == [] and gateway.path.counters()["no_peer_sa"] == 1
    assert gateway.stack.drops["no_peer_sa"] == 2
    assert gateway.emitted == [] and gateway.stack.sadb.acquire_records == 0


def test_a_deleted_client_sa_leaves_the_index(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    b = Client("198.51.100.20", "10.3.0.8", 0xB001, 0xB002)
    a.connect(gateway)
    b.connect(gateway)
    gateway.pfkey(decode(by_spi(SadbMsgType.DELETE, a.spi_in, "198.51.100.10").encode()))
    gateway.path.outbound(icmp_echo(SERVER, a.vip, 1), 1.0)
    assert gateway.wire == [] and gateway.path.counters()["no_peer_sa"] == 1
    gateway.path.outbound(icmp_echo(SERVER, b.vip, 1), 1.0)
    assert [d.dst for d in gateway.wire] == [b.outer]


def test_the_policy_is_shown_back_as_any(gateway: Host) -> None:
    from larval.spd import policy_to_dict

    shown = {p.direction.value: policy_to_dict(p) for p in gateway.stack.spd.policies()}
    assert shown["out"]["remote_addrs"] == shown["in"]["remote_addrs"] == ["%any"]
    assert shown["out"]["local_addrs"] == [GATEWAY]


def recv(sock: socket.socket) -> raw.Raw:
    return raw.parse(sock.recv(65536))


def test_over_the_pfkey_socket(running_stack: RunningStack) -> None:
    """`larval stack` with a policy to any peer: no ACQUIRE reaches a registered key
    manager; the inverse ACQUIRE names the peer asked about; an ADD with an inner
    destination makes packets to that address leave for that peer."""
    from larval.pfkey import SaType

    service = running_stack.service
    assert service is not None
    service.load_policy(GATEWAY_POLICY, "gw.toml")
    with running_stack.client() as km:
        km.send(PfkeyMessage(SadbMsgType.REGISTER, SaType.ESP, seq=1).encode())
        assert recv(km).msg_type == SadbMsgType.REGISTER
        packet = icmp_echo(SERVER, "10.3.0.7", 1)
        assert service.stack.outbound(packet, 0.0).verdict is Verdict.NO_PEER_SA
        running_stack.settle()
        km.settimeout(0.3)
        with pytest.raises(TimeoutError):
            km.recv(65536)  # no ACQUIRE
        km.settimeout(5)

        ask = PfkeyMessage(
            SadbMsgType.X_INVERSE_ACQUIRE, SaType.ESP, seq=2,
            extensions=(
                SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address(GATEWAY)),
                SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address("198.51.100.10")),
                SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("10.1.0.0"),
                            prefixlen=24),
                SadbAddress(ExtType.X_ADDRESS_INNER_DST, ipaddress.ip_address("10.3.0.7"),
                            prefixlen=32),
            ),
        )  # fmt: skip
        km.send(ask.encode())
        answer = recv(km)
        assert (answer.msg_type, answer.errno) == (raw.SADB_X_INVERSE_ACQUIRE, 0)
        assert raw.address(answer.exts[raw.EXT_ADDRESS_DST][0])[0] == "198.51.100.10"

        km.send(sa_message(SadbMsgType.ADD, 0xA001, GATEWAY, "198.51.100.10", bytes(20),
                           SaFlags.X_OUTBOUND, (GATEWAY_NET, "10.3.0.7/32")).encode())  # fmt: skip
        assert recv(km).errno == 0
        result = service.stack.outbound(packet, 1.0)
        assert result.verdict is Verdict.PROTECT and result.sa is not None
        assert (result.sa.spi, result.sa.dst) == (
            0xA001,
            ipaddress.ip_address("198.51.100.10").packed,
        )
        assert service.stack.outbound(icmp_echo(SERVER, "10.3.0.8", 1), 1.0).verdict is (
            Verdict.NO_PEER_SA
        )


def udp6(src: str, dst: str) -> bytes:
    """An IPv6/UDP packet (RFC 8200, RFC 768); the checksum is not looked at here."""
    body = struct.pack("!HHHH", 5000, 53, 12, 0) + b"v6!!"
    return (
        struct.pack("!IHBB", 6 << 28, len(body), 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + body
    )


def test_ipv6_clients_of_an_ipv6_gateway() -> None:
    gw_addr, net = "2001:db8::2", "2001:db8:1::/48"
    policy = GATEWAY_POLICY.replace(GATEWAY, gw_addr).replace(GATEWAY_NET, net)
    policy = policy.replace("10.3.0.0/24", "2001:db8:3::/64")
    gateway = Host(gw_addr, policy)
    clients = {
        "2001:db8:3::7": ("2001:db8:a::1", 0xE001),
        "2001:db8:3::8": ("2001:db8:b::1", 0xE002),
    }
    for vip, (outer, spi) in clients.items():
        gateway.pfkey(sa_message(SadbMsgType.ADD, spi, gw_addr, outer, bytes(20),
                                 SaFlags.X_OUTBOUND, (net, f"{vip}/128")))  # fmt: skip
        gateway.pfkey(sa_message(SadbMsgType.ADD, spi + 0x100, outer, gw_addr, bytes(20),
                                 SaFlags.X_INBOUND, (f"{vip}/128", net)))  # fmt: skip
    for vip, (outer, _) in clients.items():
        gateway.path.outbound(udp6("2001:db8:1::5", vip), 1.0)
        assert gateway.wire[-1].dst == ipaddress.IPv6Address(outer).packed
    gateway.path.outbound(udp6("2001:db8:1::5", "2001:db8:3::9"), 1.0)
    assert len(gateway.wire) == 2 and gateway.path.counters()["no_peer_sa"] == 1


def test_the_key_managers_own_messages_key_a_gateway_to_any_peer(gateway: Host) -> None:
    """The contract with the key manager: GETSPI, then UPDATE of the inbound SA and ADD of
    the outbound one as `keymgr.pfkey_side` builds them for a responder (the CHILD_SA's
    negotiated selectors as inner addresses, the client's NAT port), for two clients
    behind one NAT."""
    from larval.crypto.proposals import parse_esp_proposal
    from larval.keymgr.pfkey_side import (
        ChildKeys,
        Endpoint,
        Lifetimes,
        PolicyRequest,
        keyed_sa_bytes,
    )
    from larval.keymgr.pfkey_side import getspi as km_getspi

    gcm = parse_esp_proposal("aes128gcm16")
    gw, nat = ipaddress.ip_address(GATEWAY), ipaddress.ip_address(NAT)
    clients = []
    for n, (vip, port) in enumerate((("10.3.0.21", 62001), ("10.3.0.22", 62002))):
        reply = gateway.stack.handle_pfkey(decode(km_getspi(nat, gw, seq=1, pid=1).encode()), 0.0)
        sa_ext = reply[0].message.find(ExtType.SA)
        assert isinstance(sa_ext, SadbSa)
        # The gateway's inbound SPI (LARVAL), sent to the client in IKE_AUTH.
        client = Client(f"198.51.100.{110 + n}", vip, 0xF001 + n, sa_ext.spi)
        request = PolicyRequest(
            1, Endpoint(gw, 32, 0, 0), Endpoint(nat, 32, 0, 0),
            Endpoint(ipaddress.ip_address("10.1.0.0"), 24, 0, 0),
            Endpoint(ipaddress.ip_address(vip), 32, 0, 0), (), 32, 0,
        )  # fmt: skip
        inbound = ChildKeys(client.spi_out, nat, gw, gcm, client.key_out, b"")
        outbound = ChildKeys(client.spi_in, gw, nat, gcm, client.key_in, b"")
        for msg_type, keys, is_in in ((SadbMsgType.UPDATE, inbound, True),
                                      (SadbMsgType.ADD, outbound, False)):  # fmt: skip
            msg = keyed_sa_bytes(msg_type, keys, request, Lifetimes(3000, 3600), inbound=is_in,
                                 seq=2, pid=1, natt_port=port)  # fmt: skip
            gateway.pfkey(decode(msg))
        clients.append((client, port))
    for client, port in clients:
        _, reply = ping_pong(client, gateway)
        (datagram,) = gateway.wire
        gateway.wire.clear()
        assert (datagram.dst, datagram.port) == (nat.packed, port)
        client.path.inbound(datagram.payload, client.outer, 1.0)
        assert client.got == [reply]


def test_an_update_of_the_inner_selectors_applies_to_the_next_packet(gateway: Host) -> None:
    a = Client("198.51.100.10", "10.3.0.7", 0xA001, 0xA002)
    a.connect(gateway)
    ping_pong(a, gateway)  # the gateway's ESP context for A's SA exists now
    moved = PfkeyMessage(
        SadbMsgType.UPDATE, 3,
        extensions=(SadbSa(a.spi_out, state=SaState.MATURE),
                    SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address("198.51.100.10")),
                    SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address(GATEWAY)),
                    SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("10.3.0.9"),
                                prefixlen=32),
                    SadbAddress(ExtType.X_ADDRESS_INNER_DST, ipaddress.ip_address("10.1.0.0"),
                                prefixlen=24)),
    )  # fmt: skip
    gateway.pfkey(decode(moved.encode()))
    sa = a.stack.sadb.lookup_outbound(a.outer, gateway.outer)
    assert sa is not None
    a.path._protect(sa, icmp_echo("10.3.0.7", SERVER, 2), 1.0)
    a.path._protect(sa, icmp_echo("10.3.0.9", SERVER, 3), 1.0)
    to_gateway(a, gateway)
    assert gateway.path.counters()["inner_outside_sa"] == 1
    assert gateway.got[-1] == icmp_echo("10.3.0.9", SERVER, 3)
