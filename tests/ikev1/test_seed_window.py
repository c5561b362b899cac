"""The seed's Quick Mode window, end to end: two nodes, each a real stack and packet path
and a key manager whose IKEv1 sessions GETSPI their inbound SPIs from that stack and
install each CHILD_SA with UPDATE (the inbound LARVAL SA) and ADD (the outbound SA), all
through the node's PF_KEY port, in bytes.

Once the initiator has QM2 it installs its SAs and, a round trip later, sends ESP; QM3
can still be on its way then (here it is held back), while the responder's inbound SA is
LARVAL (GETSPI'd when QM1 arrived). Those packets are held, and delivered in order after
the UPDATE. If the UPDATE lands between the SPI lookup and the hold, the packet is
processed at once: a lost race, never a drop.
"""

from __future__ import annotations

import ipaddress
import struct
import warnings

import pytest

from larval.ike.sa import Phase
from larval.pfkey import SaState
from larval.sadb import HoldResult, SecurityAssociation
from tests.keymgr.test_manager import Host

# cryptography warns about the MODP groups; they are what IKEv1 peers still use.
warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

NET_A, NET_B = "198.51.100.1", "203.0.113.1"  # a host behind A, one behind B


def icmp_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!HH", 0x1234, seq) + f"ping {seq}".encode()
    icmp = struct.pack("!BBH", 8, 0, 0) + body
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + icmp  # fmt: skip


def phases(host: Host) -> list[Phase]:
    return [session.phase for session in host.keymgr.sessions.values()]


def inbound_sa(host: Host, spi: int) -> SecurityAssociation:
    sa = host.stack.sadb.lookup_esp(spi, host.addr.packed)
    assert sa is not None
    return sa


def child_spis(host: Host) -> tuple[int, int]:
    """The one CHILD_SA the host's key manager installed: inbound and outbound SPI."""
    (child,) = host.keymgr.status()["child_sas"]
    return int(child["spi_in"], 16), int(child["spi_out"], 16)


def drops(host: Host) -> dict[str, int]:
    counters = host.path.counters()
    return {k: v for k, v in counters.items() if k not in ("sent", "delivered") and v}


class Pair:
    """A, whose trap policy ACQUIREs and which initiates Main and Quick Mode, and B; the
    test carries every IKE message, one at a time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.a = Host("a", "b", "trap", version=1)
        self.b = Host("b", "a", "none", version=1)
        for host in (self.a, self.b):
            host.keymgr.start(self.now)

    def other(self, host: Host) -> Host:
        return self.b if host is self.a else self.a

    def take(self, frm: Host) -> tuple[bytes, int]:
        """The one IKE message `frm` has queued, and its UDP port, taken off it."""
        out = frm.keymgr.datagrams_to_send()
        assert len(out) == 1, out
        data, (_, port) = out[0]
        return data, port

    def give(self, to: Host, message: tuple[bytes, int]) -> None:
        """Deliver an IKE message to `to`, from the port it was sent to."""
        data, port = message
        to.keymgr.receive_ike(data, (str(self.other(to).addr), port), to.addr, self.now)
        to.pump(self.now)

    def step(self, frm: Host) -> None:
        self.now += 0.01
        self.give(self.other(frm), self.take(frm))

    def until_qm3(self, first: bytes) -> tuple[tuple[bytes, int], int]:
        """`first` ACQUIREs; Main Mode and Quick Mode up to QM2, carried; QM3 taken but
        held back while A's outbound SA is added and `first` leaves on it. Returns QM3
        and B's inbound SPI, LARVAL still."""
        a, b = self.a, self.b
        a.path.outbound(first, self.now)  # no SA: held, and the stack ACQUIREs
        assert a.esp == [] and a.stack.sadb.counters["acquire_held"] == 1
        a.pump(self.now)  # the ACQUIRE starts Main Mode
        self.step(a)  # MM1 --> { SA, VID, VID, VID }
        self.step(b)  # <-- MM2 { SA, VID, VID, VID }
        self.step(a)  # MM3 --> { KE, Ni, NAT-D, NAT-D }
        self.step(b)  # <-- MM4 { KE, Nr, NAT-D, NAT-D }
        self.step(a)  # MM5 --> *{ IDii, HASH_I, N(INITIAL-CONTACT) }
        assert phases(b) == [Phase.ESTABLISHED]
        self.step(b)  # <-- MM6 *{ IDir, HASH_R }; A goes on with QM1 at once
        assert phases(a) == [Phase.ESTABLISHED]
        assert len(a.stack.sadb) == 1  # A GETSPI'd its inbound SPI for QM1
        # QM1 --> *{ HASH(1), SA, Ni, IDci, IDcr }: B GETSPIs (LARVAL)
        self.step(a)
        assert len(b.stack.sadb) == 1 and b.keymgr.children == {}
        # <-- QM2 *{ HASH(2), SA, Nr, IDci, IDcr }: A has both SAs; it UPDATEs its LARVAL
        # inbound SA, and its outbound SA waits until QM3 has had time to land.
        self.step(b)
        spi_in, spi_out = child_spis(a)
        assert inbound_sa(a, spi_in).state == SaState.MATURE
        assert inbound_sa(b, spi_out).state == SaState.LARVAL
        assert a.stack.sadb.lookup_esp(spi_out, b.addr.packed) is None
        qm3 = self.take(a)  # QM3 --> *{ HASH(3) }: sent, but held back in flight
        due = a.keymgr.get_timer()
        assert due is not None and 0.02 <= due - self.now <= 0.3
        self.now = due
        a.keymgr.handle_timer(due)  # ADD: the packet held since the ACQUIRE leaves
        assert a.stack.sadb.lookup_esp(spi_out, b.addr.packed) is not None
        assert len(a.esp) == 1 and a.stack.sadb.counters["acquire_held"] == 1
        return qm3, spi_out


def pings(count: int) -> list[bytes]:
    return [icmp_echo(NET_A, NET_B, n) for n in range(1, count + 1)]


def test_esp_before_qm3_is_held_on_the_larval_sa_and_delivered_in_order_after_update() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    packets = pings(3)
    qm3, spi = pair.until_qm3(packets[0])
    larval = inbound_sa(b, spi)
    assert larval.state == SaState.LARVAL and not larval.ready

    # ESP -->  three echo requests on the initiator's new outbound SA, before QM3: the
    # first, held since the ACQUIRE, and two more.
    for packet in packets[1:]:
        a.path.outbound(packet, pair.now)
    assert len(a.esp) == 3 and a.path.counters()["sent"] == 3
    for datagram in a.esp:
        assert datagram.dst == b.addr.packed
        assert int.from_bytes(datagram.payload[:4], "big") == spi
        assert not any(p[20:] in datagram.payload for p in packets)  # encrypted
        b.path.inbound(datagram.payload, b.addr.packed, pair.now)

    # The responder's SA is still LARVAL: all three held, none delivered, none dropped.
    assert inbound_sa(b, spi) is larval and larval.state == SaState.LARVAL
    assert b.delivered == [] and b.keymgr.children == {}
    assert b.stack.sadb.counters["held"] == 3
    assert b.stack.sadb.counters["released"] == 0
    assert drops(b) == {}

    # QM3 --> *{ HASH(3) } arrives: UPDATE of the LARVAL SA (which releases the held
    # packets through the packet path), ADD of the outbound SA.
    pair.now += 0.01
    pair.give(b, qm3)
    spi_in_b, spi_out_b = child_spis(b)
    assert spi_in_b == spi and spi_out_b == child_spis(a)[0]
    assert larval.state == SaState.MATURE and larval.ready
    assert b.delivered == packets  # in order, byte for byte
    counters = b.stack.sadb.counters.snapshot()
    assert (counters["held"], counters["released"], counters["lost_races"]) == (3, 3, 0)
    assert (counters["replaced"], counters["expired"]) == (0, 0)
    assert b.path.counters()["delivered"] == 3 and drops(b) == {}
    assert drops(a) == {}

    # After the UPDATE the SA takes packets straight away, and the replies go back.
    late = icmp_echo(NET_A, NET_B, 4)
    a.esp.clear()
    a.path.outbound(late, pair.now)
    b.path.inbound(a.esp[0].payload, b.addr.packed, pair.now)
    assert b.delivered == [*packets, late] and b.stack.sadb.counters["held"] == 3
    reply = icmp_echo(NET_B, NET_A, 1)
    b.path.outbound(reply, pair.now)
    (back,) = b.esp
    assert int.from_bytes(back.payload[:4], "big") == spi_out_b
    a.path.inbound(back.payload, a.addr.packed, pair.now)
    assert a.delivered == [reply] and drops(a) == {} and drops(b) == {}


def test_update_between_lookup_and_hold_is_a_lost_race_and_the_packet_is_processed() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    # ESP -->  one echo request, before QM3: the one held since the ACQUIRE.
    (packet,) = pings(1)
    qm3, spi = pair.until_qm3(packet)
    (datagram,) = a.esp
    esp = datagram.payload

    # The packet path's SPI lookup finds the SA LARVAL ...
    sa = b.stack.sadb.lookup_esp(int.from_bytes(esp[:4], "big"), b.addr.packed)
    assert sa is not None and sa.spi == spi and not sa.ready
    assert sa.state == SaState.LARVAL

    # ... then QM3 --> *{ HASH(3) } wins: UPDATE (nothing held yet), ADD ...
    pair.now += 0.01
    pair.give(b, qm3)
    assert child_spis(b)[0] == spi
    assert sa.state == SaState.MATURE and sa.ready
    assert b.stack.sadb.counters["released"] == 0

    # ... and only then the hold: the state is looked at again under the SA's lock, and
    # the packet is handed back for processing, not held, not dropped, no assertion.
    assert b.stack.sadb.hold_inbound(sa, esp) is HoldResult.PROCESS
    counters = b.stack.sadb.counters.snapshot()
    assert (counters["lost_races"], counters["held"], counters["released"]) == (1, 0, 0)
    assert b.delivered == []

    # PROCESS: the packet takes the path's normal decryption.
    b.path.inbound(esp, b.addr.packed, pair.now)
    assert b.delivered == [packet]
    assert b.path.counters()["delivered"] == 1 and drops(b) == {}
    assert b.stack.sadb.counters.snapshot()["lost_races"] == 1


def test_the_lost_race_inside_the_packet_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race through `PacketPath.inbound` itself: QM3 and the UPDATE land after
    the path saw the SA not ready and before its call to hold the packet."""
    pair = Pair()
    a, b = pair.a, pair.b
    packets = pings(2)
    qm3, _ = pair.until_qm3(packets[0])
    a.path.outbound(packets[1], pair.now)
    first, second = (d.payload for d in a.esp)

    # ESP -->  the first echo request is held on the LARVAL SA as usual.
    b.path.inbound(first, b.addr.packed, pair.now)
    assert b.stack.sadb.counters["held"] == 1 and b.delivered == []

    sadb = b.stack.sadb
    hold = sadb.hold_inbound
    results: list[HoldResult] = []

    def key_management_first(sa: SecurityAssociation, esp: bytes) -> HoldResult:
        # QM3 --> *{ HASH(3) } overtakes the second packet between lookup and hold:
        # UPDATE (releasing the first packet), ADD.
        assert not sa.ready and sa.state == SaState.LARVAL
        pair.give(b, qm3)
        assert sa.ready and b.keymgr.children
        assert b.delivered == packets[:1]
        results.append(hold(sa, esp))
        return results[-1]

    monkeypatch.setattr(sadb, "hold_inbound", key_management_first)
    # ESP -->  the second echo request.
    b.path.inbound(second, b.addr.packed, pair.now)
    assert results == [HoldResult.PROCESS]
    assert b.delivered == packets  # the lost race processed at once, after the released one
    counters = sadb.counters.snapshot()
    assert (counters["held"], counters["released"], counters["lost_races"]) == (1, 1, 1)
    assert b.path.counters()["delivered"] == 2 and drops(b) == {}
