"""Whole exchanges are byte-exact: two in-memory sessions drawing from the same seeded
sources put the same datagrams on the wire, run after run, and other seeds other ones.

Every random value an exchange uses (DH private values, nonces, IKE SPIs, IKEv1 cookies
and Message IDs, SK payload IVs, the jitter of rekey times) comes from the source a
session was built with; one drawn anywhere else would make two runs differ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from larval.ike import IKE_PORT
from larval.ike.events import ChildSaUp, Event
from larval.ikev1.session import IkeV1Session
from larval.ikev2.session import IkeSession
from tests.ikev1 import test_session as v1
from tests.ikev2 import test_session as v2
from tests.seeded import SeededRandom

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

Session = IkeSession | IkeV1Session


@dataclass
class Run:
    wire: list[tuple[str, bytes]]  # (direction, datagram), in the order sent
    events_i: list[Event]
    events_r: list[Event]
    timers: list[float | None]  # each side's next timer at the end (rekey jitter)


def carry(i: Session, r: Session, now: float, wire: list[tuple[str, bytes]]) -> None:
    """Datagrams both ways until both sessions are quiet."""
    while True:
        moved = False
        for sender, receiver, way, source in ((i, r, "i->r", v2.A), (r, i, "r->i", v2.B)):
            for data, _ in sender.datagrams_to_send(now):
                wire.append((way, data))
                receiver.receive_datagram(data, (str(source), IKE_PORT), now)
                moved = True
        if not moved:
            return


def drain(session: Session) -> list[Event]:
    events = []
    while (e := session.next_event()) is not None:
        events.append(e)
    return events


def run_ikev2(seed: str, proposal: str, esp: str, pfs_esp: str) -> Run:
    spis = itertools.count(0x1000)
    accepted = v2.child(v2.NET_B, v2.NET_A, (esp, pfs_esp))
    i = IkeSession(
        v2.config(v2.A, v2.B, proposals=(proposal,)),
        initiator=True,
        allocate_spi=lambda: next(spis),
        random_bytes=SeededRandom(seed + "/i"),
    )
    r = IkeSession(
        v2.config(v2.B, v2.A, proposals=(proposal,)),
        initiator=False,
        allocate_spi=lambda: next(spis),
        random_bytes=SeededRandom(seed + "/r"),
        child_policy=lambda tsi, tsr: accepted,
    )
    wire: list[tuple[str, bytes]] = []
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D)... } -->  <-- { SA, KE, Nr, N(NAT_D)... }
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{IDr, AUTH, SA, TSi, TSr} }
    i.initiate(v2.child(v2.NET_A, v2.NET_B, (esp,)), 0.0)
    carry(i, r, 0.0, wire)
    # CREATE_CHILD_SA { SK{SA, Ni, KEi, TSi, TSr} } -->  <-- { SK{SA, Nr, KEr, TSi, TSr} }
    i.create_child(v2.child(v2.NET_A, v2.NET_B, (pfs_esp,)), 1.0)
    carry(i, r, 1.0, wire)
    # INFORMATIONAL { SK{D(IKE)} } -->  <-- { SK{} }
    timers = [i.get_timer(), r.get_timer()]
    i.delete(2.0)
    carry(i, r, 2.0, wire)
    return Run(wire, drain(i), drain(r), timers)


def run_ikev1(seed: str, proposal: str, esp: str, pfs_esp: str) -> Run:
    spis = itertools.count(0x1000)
    accepted = v1.child(v1.NET_B, v1.NET_A, (esp, pfs_esp))
    i = IkeV1Session(
        v1.config(v1.A, v1.B, proposals=(proposal,)),
        initiator=True,
        allocate_spi=lambda: next(spis),
        random_bytes=SeededRandom(seed + "/i"),
        child_policy=lambda tsi, tsr: None,
    )
    r = IkeV1Session(
        v1.config(v1.B, v1.A, proposals=(proposal,)),
        initiator=False,
        allocate_spi=lambda: next(spis),
        random_bytes=SeededRandom(seed + "/r"),
        child_policy=lambda tsi, tsr: accepted,
    )
    wire: list[tuple[str, bytes]] = []
    # MM1 { SA, VID... } -->  <-- MM2   MM3 { KE, Ni, NAT-D... } -->  <-- MM4
    # MM5 *{ IDii, HASH_I } -->  <-- MM6 *{ IDir, HASH_R }
    # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2   QM3 *{ HASH(3) } -->
    i.initiate(v1.child(v1.NET_A, v1.NET_B, (esp,)), 0.0)
    carry(i, r, 0.0, wire)
    # Quick Mode with PFS: QM1 *{ HASH(1), SA, Ni, KE, IDci, IDcr } --> ...
    i.create_child(v1.child(v1.NET_A, v1.NET_B, (pfs_esp,)), 1.0)
    carry(i, r, 1.0, wire)
    timers = [i.get_timer(), r.get_timer()]
    # Informational *{ HASH(1), D(ESP) } --> for each IPsec SA, then *{ HASH(1), D(ISAKMP) } -->
    i.delete(2.0)
    carry(i, r, 2.0, wire)
    return Run(wire, drain(i), drain(r), timers)


CASES: list[tuple[str, Callable[[str, str, str, str], Run], str, str, str, int]] = [
    # (id, run, IKE proposal, ESP, ESP with PFS, datagrams)
    ("ikev2-x25519-cbc", run_ikev2, "aes128-sha256-x25519", "aes128gcm16",
     "aes128-sha256-ecp256", 8),
    ("ikev2-ecp384-gcm", run_ikev2, "aes256gcm16-prfsha384-ecp384", "aes256gcm16",
     "aes128gcm16-x25519", 8),
    ("ikev2-modp2048-cbc", run_ikev2, "aes128-sha256-modp2048", "aes128-sha256",
     "aes128gcm16-modp2048", 8),
    ("ikev1-ecp256", run_ikev1, "aes128-sha256-ecp256", "aes128gcm16",
     "aes128-sha256-ecp256", 15),
    ("ikev1-modp2048", run_ikev1, "aes256-sha256-modp2048", "aes128-sha256",
     "aes128gcm16-modp2048", 15),
]  # fmt: skip


@pytest.mark.parametrize(
    ("run", "proposal", "esp", "pfs_esp", "datagrams"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_the_same_seeds_give_the_same_bytes_and_other_seeds_other_bytes(
    run: Callable[[str, str, str, str], Run], proposal: str, esp: str, pfs_esp: str,
    datagrams: int,
) -> None:  # fmt: skip
    first = run("seed-1", proposal, esp, pfs_esp)
    ups = [e for e in first.events_i if isinstance(e, ChildSaUp)]
    assert len(ups) == 2, first.events_i  # the exchanges ran: two CHILD_SAs came up
    assert len(first.wire) == datagrams

    again = run("seed-1", proposal, esp, pfs_esp)
    for n, (one, two) in enumerate(zip(first.wire, again.wire, strict=True)):
        assert one == two, f"datagram {n} ({one[0]}) differs between two runs of one seed"
    assert first.events_i == again.events_i and first.events_r == again.events_r
    assert first.timers == again.timers

    other = run("seed-2", proposal, esp, pfs_esp)
    assert len(other.wire) == datagrams
    for n, (one, two) in enumerate(zip(first.wire, other.wire, strict=True)):
        assert one[1] != two[1], f"datagram {n} ({one[0]}) is the same under another seed"
    keys = [(e.keys_in, e.keys_out) for e in ups]
    other_ups = [e for e in other.events_i if isinstance(e, ChildSaUp)]
    assert [(e.keys_in, e.keys_out) for e in other_ups] != keys
