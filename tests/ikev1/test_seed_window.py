"""The seed's Quick Mode window, end to end: two hosts, each a real stack and packet path
with an IKEv1 session whose SPIs are PF_KEY GETSPIs into that stack and whose ChildSaUp
events become UPDATE (the inbound LARVAL SA) and ADD (the outbound SA).

Once the initiator has QM2 it installs its SAs and may send ESP; that ESP can reach the
responder before QM3 does, while the responder's inbound SA is still LARVAL (GETSPI'd
when QM1 arrived). Those packets are held, and delivered in order after the UPDATE. If
the UPDATE lands between the SPI lookup and the hold, the packet is processed at once:
a lost race, never a drop.
"""

from __future__ import annotations

import ipaddress
import struct
import warnings

import pytest

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ike import IKE_PORT
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.events import ChildSaUp, IkeSaUp
from larval.ike.identity import identity
from larval.ikev1.session import IkeV1Session, State
from larval.keymgr.manager import proposal_of
from larval.keymgr.pfkey_side import (
    ChildKeys,
    Endpoint,
    Lifetimes,
    PolicyRequest,
    getspi,
    keyed_sa,
)
from larval.pfkey import ExtType, PfkeyMessage, SadbMsgType, SadbSa, SaState, decode
from larval.sadb import Audience, HoldResult, SecurityAssociation
from larval.spd import load_policy_text
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath

# cryptography warns about the MODP groups; they are what IKEv1 peers still use.
warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

A, B = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")
NET_A, NET_B = ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24")
PSK = b"seed-window-test-psk-0123456789"
IKE_SUITE = "aes128-sha256-modp2048"
ESP_SUITE = "aes128gcm16"
TO_US = (Audience.SENDER, Audience.ALL)  # the replies a PF_KEY client reads


class Clock:
    """The fake clock both hosts read."""

    def __init__(self) -> None:
        self.now = 100.0


def policy_text(local_net: str, remote_net: str, local: str, remote: str) -> str:
    return f"""
[policies.net]
local_ts = ["{local_net}"]
remote_ts = ["{remote_net}"]
mode = "tunnel"
local_addrs = ["{local}"]
remote_addrs = ["{remote}"]
esp_proposals = ["{ESP_SUITE}"]
"""


def icmp_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!HH", 0x1234, seq) + f"ping {seq}".encode()
    icmp = struct.pack("!BBH", 8, 0, 0) + body
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + icmp  # fmt: skip


class Host:
    """A stack, its packet path, and an IKEv1 session keyed into that stack by PF_KEY."""

    def __init__(
        self,
        clock: Clock,
        local: ipaddress.IPv4Address,
        remote: ipaddress.IPv4Address,
        local_net: ipaddress.IPv4Network,
        remote_net: ipaddress.IPv4Network,
        *,
        initiator: bool,
    ) -> None:
        self.clock = clock
        self.local, self.remote = local, remote
        self.outer = local.packed
        self.stack = Stack()
        text = policy_text(str(local_net), str(remote_net), str(local), str(remote))
        for policy in load_policy_text(text, f"{local}.toml"):
            self.stack.spd.add(policy)
        self.esp: list[Datagram] = []  # ESP on the wire to the peer
        self.delivered: list[bytes] = []  # cleartext packets handed to the host
        self.path = PacketPath(self.stack, send=self.esp.append, deliver=self.delivered.append)
        self.child = ChildConfig(
            "net", (esp_proposal_transforms(ESP_SUITE),), (local_net,), (remote_net,)
        )
        ike = IkeConfig(
            name="s2s",
            local_addr=local,
            remote_addr=remote,
            local_id=identity(str(local)),
            remote_id=identity(str(remote)),
            psk=PSK,
            proposals=(parse_ike_proposal(IKE_SUITE),),
        )
        self.session = IkeV1Session(
            ike,
            initiator=initiator,
            allocate_spi=self.getspi,
            child_policy=lambda tsi, tsr: self.child,
        )
        self.spis: list[int] = []  # GETSPI'd, in order
        self.ups: list[ChildSaUp] = []
        self._seq = 0

    # -- PF_KEY, in bytes at the boundary as the daemon's `_pfkey_call` ------------------

    def pfkey(self, msg: PfkeyMessage) -> list[PfkeyMessage]:
        replies = self.stack.handle_pfkey(decode(msg.encode()), self.clock.now)
        return [decode(r.message.encode()) for r in replies if r.audience in TO_US]

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def getspi(self) -> int:
        """The session's `allocate_spi`: GETSPI, a LARVAL SA before the SPI is sent."""
        (reply,) = self.pfkey(getspi(self.remote, self.local, seq=self.next_seq(), pid=4242))
        sa = reply.find(ExtType.SA)
        assert reply.msg_type == SadbMsgType.GETSPI and reply.errno == 0
        assert isinstance(sa, SadbSa) and sa.state == SaState.LARVAL
        self.spis.append(sa.spi)
        return sa.spi

    def install(self, up: ChildSaUp) -> None:
        """UPDATE the inbound LARVAL SA, ADD the outbound one, as KeyManager._install."""

        def ep(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Endpoint:
            return Endpoint(net.network_address, net.prefixlen, 0, 0)

        seq = self.next_seq()
        # What an ACQUIRE would have said: the tunnel's outer and inner addresses.
        request = PolicyRequest(
            seq, ep(ipaddress.ip_network(self.local)), ep(ipaddress.ip_network(self.remote)),
            ep(up.local_ts[0]), ep(up.remote_ts[0]), (), up.child.replay_window, 0,
        )  # fmt: skip
        proposal = proposal_of(up.suite)
        inbound = ChildKeys(up.spi_in, self.remote, self.local, proposal,
                            up.keys_in.encr_key, up.keys_in.integ_key)  # fmt: skip
        outbound = ChildKeys(up.spi_out, self.local, self.remote, proposal,
                             up.keys_out.encr_key, up.keys_out.integ_key)  # fmt: skip
        for msg_type, keys, is_in in (
            (SadbMsgType.UPDATE, inbound, True),
            (SadbMsgType.ADD, outbound, False),
        ):
            msg = keyed_sa(msg_type, keys, request, Lifetimes(), inbound=is_in, seq=seq, pid=4242)
            (reply,) = self.pfkey(msg)
            assert reply.msg_type == msg_type and reply.errno == 0, reply
        self.ups.append(up)

    def take_events(self) -> list[object]:
        """Drain the session's events; every ChildSaUp is installed on the spot."""
        out: list[object] = []
        while (event := self.session.next_event()) is not None:
            out.append(event)
            if isinstance(event, ChildSaUp):
                self.install(event)
        return out

    def inbound_sa(self, spi: int) -> SecurityAssociation:
        sa = self.stack.sadb.lookup_esp(spi, self.outer)
        assert sa is not None
        return sa

    def drops(self) -> dict[str, int]:
        counters = self.path.counters()
        return {k: v for k, v in counters.items() if k not in ("sent", "delivered") and v}


class Pair:
    """The initiator at A and the responder at B; the test carries every IKE message."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.a = Host(self.clock, A, B, NET_A, NET_B, initiator=True)
        self.b = Host(self.clock, B, A, NET_B, NET_A, initiator=False)

    def take(self, frm: Host) -> bytes:
        """The one IKE message `frm` has queued, taken off it (not yet delivered)."""
        out = frm.session.datagrams_to_send(self.clock.now)
        assert len(out) == 1, out
        return out[0][0]

    def give(self, to: Host, data: bytes) -> list[object]:
        """Deliver an IKE message to `to`; its events, with every ChildSaUp installed."""
        frm = self.b if to is self.a else self.a
        to.session.receive_datagram(data, (str(frm.local), IKE_PORT), self.clock.now)
        return to.take_events()

    def step(self, frm: Host) -> list[object]:
        to = self.b if frm is self.a else self.a
        self.clock.now += 0.01
        return self.give(to, self.take(frm))

    def until_qm3(self) -> bytes:
        """Main Mode and Quick Mode up to QM2, carried; QM3 taken but held back."""
        a, b = self.a, self.b
        a.session.initiate(a.child, self.clock.now)
        assert self.step(a) == []  # MM1 --> { SA, VID, VID }
        assert self.step(b) == []  # MM2 <-- { SA, VID, VID }
        assert self.step(a) == []  # MM3 --> { KE, Ni, NAT-D, NAT-D }
        assert self.step(b) == []  # MM4 <-- { KE, Nr, NAT-D, NAT-D }
        # MM5 --> *{ IDii, HASH_I, N(INITIAL-CONTACT) }
        assert [type(e) for e in self.step(a)] == [IkeSaUp]
        assert b.session.state is State.ESTABLISHED
        # MM6 <-- *{ IDir, HASH_R }; the initiator goes on with QM1 at once
        assert [type(e) for e in self.step(b)] == [IkeSaUp]
        assert a.session.state is State.ESTABLISHED
        assert len(a.spis) == 1  # the initiator GETSPI'd its inbound SPI for QM1
        # QM1 --> *{ HASH(1), SA, Ni, IDci, IDcr }: the responder GETSPIs (LARVAL)
        assert self.step(a) == []
        assert len(b.spis) == 1 and b.inbound_sa(b.spis[0]).state == SaState.LARVAL
        # QM2 <-- *{ HASH(2), SA, Nr, IDci, IDcr }: the initiator has both SAs and
        # installs them (UPDATE its LARVAL inbound SA, ADD its outbound one).
        (up_a,) = self.step(b)
        assert isinstance(up_a, ChildSaUp) and up_a.initiator
        assert (up_a.spi_in, up_a.spi_out) == (a.spis[0], b.spis[0])
        assert a.inbound_sa(up_a.spi_in).state == SaState.MATURE
        # QM3 --> *{ HASH(3) }: sent, but held back in flight
        return self.take(a)


def pings(count: int) -> list[bytes]:
    return [icmp_echo("198.51.100.1", "203.0.113.1", n) for n in range(1, count + 1)]


def test_esp_before_qm3_is_held_on_the_larval_sa_and_delivered_in_order_after_update() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    qm3 = pair.until_qm3()
    spi = b.spis[0]
    larval = b.inbound_sa(spi)
    assert larval.state == SaState.LARVAL and not larval.ready

    # ESP -->  three echo requests on the initiator's new outbound SA, before QM3.
    packets = pings(3)
    for packet in packets:
        a.path.outbound(packet, pair.clock.now)
    assert len(a.esp) == 3 and a.path.counters()["sent"] == 3
    for datagram in a.esp:
        assert datagram.dst == b.outer
        assert int.from_bytes(datagram.payload[:4], "big") == spi
        assert not any(p[20:] in datagram.payload for p in packets)  # encrypted
        b.path.inbound(datagram.payload, b.outer, pair.clock.now)

    # The responder's SA is still LARVAL: all three held, none delivered, none dropped.
    assert b.inbound_sa(spi) is larval and larval.state == SaState.LARVAL
    assert b.delivered == [] and b.ups == []
    assert b.stack.sadb.counters["held"] == 3
    assert b.stack.sadb.counters["released"] == 0
    assert b.drops() == {}

    # QM3 --> *{ HASH(3) } arrives: ChildSaUp, UPDATE of the LARVAL SA (which releases
    # the held packets through the packet path), ADD of the outbound SA.
    pair.clock.now += 0.01
    (up_b,) = pair.give(b, qm3)
    assert isinstance(up_b, ChildSaUp) and not up_b.initiator
    assert up_b.spi_in == spi and b.ups == [up_b]
    assert larval.state == SaState.MATURE and larval.ready
    assert b.delivered == packets  # in order, byte for byte
    counters = b.stack.sadb.counters.snapshot()
    assert (counters["held"], counters["released"], counters["lost_races"]) == (3, 3, 0)
    assert (counters["replaced"], counters["expired"]) == (0, 0)
    assert b.path.counters()["delivered"] == 3 and b.drops() == {}
    assert a.drops() == {}

    # After the UPDATE the SA takes packets straight away, and the replies go back.
    late = icmp_echo("198.51.100.1", "203.0.113.1", 4)
    a.esp.clear()
    a.path.outbound(late, pair.clock.now)
    b.path.inbound(a.esp[0].payload, b.outer, pair.clock.now)
    assert b.delivered == [*packets, late] and b.stack.sadb.counters["held"] == 3
    reply = icmp_echo("203.0.113.1", "198.51.100.1", 1)
    b.path.outbound(reply, pair.clock.now)
    (back,) = b.esp
    assert int.from_bytes(back.payload[:4], "big") == up_b.spi_out == a.spis[0]
    a.path.inbound(back.payload, a.outer, pair.clock.now)
    assert a.delivered == [reply] and a.drops() == {} and b.drops() == {}


def test_update_between_lookup_and_hold_is_a_lost_race_and_the_packet_is_processed() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    qm3 = pair.until_qm3()
    spi = b.spis[0]

    # ESP -->  one echo request, before QM3.
    (packet,) = pings(1)
    a.path.outbound(packet, pair.clock.now)
    (datagram,) = a.esp
    esp = datagram.payload

    # The packet path's SPI lookup finds the SA LARVAL ...
    sa = b.stack.sadb.lookup_esp(int.from_bytes(esp[:4], "big"), b.outer)
    assert sa is not None and sa.spi == spi and not sa.ready
    assert sa.state == SaState.LARVAL

    # ... then QM3 --> *{ HASH(3) } wins: ChildSaUp, UPDATE (nothing held yet), ADD ...
    pair.clock.now += 0.01
    (up_b,) = pair.give(b, qm3)
    assert isinstance(up_b, ChildSaUp) and up_b.spi_in == spi
    assert sa.state == SaState.MATURE and sa.ready
    assert b.stack.sadb.counters["released"] == 0

    # ... and only then the hold: the state is looked at again under the SA's lock, and
    # the packet is handed back for processing, not held, not dropped, no assertion.
    assert b.stack.sadb.hold_inbound(sa, esp) is HoldResult.PROCESS
    counters = b.stack.sadb.counters.snapshot()
    assert (counters["lost_races"], counters["held"], counters["released"]) == (1, 0, 0)
    assert b.delivered == []

    # PROCESS: the packet takes the path's normal decryption.
    b.path.inbound(esp, b.outer, pair.clock.now)
    assert b.delivered == [packet]
    assert b.path.counters()["delivered"] == 1 and b.drops() == {}
    assert b.stack.sadb.counters.snapshot()["lost_races"] == 1


def test_the_lost_race_inside_the_packet_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race through `PacketPath.inbound` itself: QM3 and the UPDATE land after
    the path saw the SA not ready and before its call to hold the packet."""
    pair = Pair()
    a, b = pair.a, pair.b
    qm3 = pair.until_qm3()
    packets = pings(2)
    for packet in packets:
        a.path.outbound(packet, pair.clock.now)
    first, second = (d.payload for d in a.esp)

    # ESP -->  the first echo request is held on the LARVAL SA as usual.
    b.path.inbound(first, b.outer, pair.clock.now)
    assert b.stack.sadb.counters["held"] == 1 and b.delivered == []

    sadb = b.stack.sadb
    hold = sadb.hold_inbound
    results: list[HoldResult] = []

    def key_management_first(sa: SecurityAssociation, esp: bytes) -> HoldResult:
        # QM3 --> *{ HASH(3) } overtakes the second packet between lookup and hold:
        # ChildSaUp, UPDATE (releasing the first packet), ADD.
        assert not sa.ready and sa.state == SaState.LARVAL
        (up,) = pair.give(b, qm3)
        assert isinstance(up, ChildSaUp) and sa.ready
        assert b.delivered == packets[:1]
        results.append(hold(sa, esp))
        return results[-1]

    monkeypatch.setattr(sadb, "hold_inbound", key_management_first)
    # ESP -->  the second echo request.
    b.path.inbound(second, b.outer, pair.clock.now)
    assert results == [HoldResult.PROCESS]
    assert b.delivered == packets  # the lost race processed at once, after the released one
    counters = sadb.counters.snapshot()
    assert (counters["held"], counters["released"], counters["lost_races"]) == (1, 1, 1)
    assert b.path.counters()["delivered"] == 2 and b.drops() == {}
