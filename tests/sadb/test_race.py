"""The seed's race: a packet finds its SA LARVAL, key management matures the SA, then the
packet is held. Under the old code the hold asserted; here the packet is processed."""

from __future__ import annotations

import random
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest

from larval.pfkey import SaState
from larval.sadb import HoldResult, Sadb, SecurityAssociation
from tests.sadb.support import LOCAL_B, Released, larval_spi, update


def test_update_between_lookup_and_hold_processes_the_packet(
    sadb: Sadb, released: Released
) -> None:
    spi = larval_spi(sadb)
    # The inbound path: SPI lookup finds the SA, and it is LARVAL ...
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None and sa.state == SaState.LARVAL and not sa.ready
    # ... now IKE wins: Quick Mode #3 arrives and key management UPDATEs the SA ...
    assert sadb.handle(update(spi), 1.0)[0].message.errno == 0
    # ... and only then does the inbound path try to hold its packet.
    assert sadb.hold_inbound(sa, b"early ESP") is HoldResult.PROCESS
    assert sadb.counters["lost_races"] == 1
    assert sadb.counters["held"] == 0 and sadb.counters["expired"] == 0
    assert sa.state == SaState.MATURE
    assert released.inbound == []  # not released later either: processed exactly once


def test_packet_arriving_while_update_releases_queues_behind_the_held_ones() -> None:
    order: list[bytes] = []
    sadb: Sadb

    def deliver(sa: SecurityAssociation, packet: bytes) -> None:
        order.append(packet)
        if packet == b"p0":
            # A dataplane packet arrives mid-release: it saw the SA not ready.
            assert not sa.ready
            assert sadb.hold_inbound(sa, b"p2") is HoldResult.HELD

    sadb = Sadb(on_inbound_release=deliver)
    spi = larval_spi(sadb)
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None
    sadb.hold_inbound(sa, b"p0")
    sadb.hold_inbound(sa, b"p1")
    sadb.handle(update(spi), 1.0)
    assert order == [b"p0", b"p1", b"p2"]
    assert sa.ready


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, so interleavings are many."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_threads_deliver_every_packet_once_and_in_order(seed: int) -> None:
    n_sas, n_packets, n_dataplane = 64, 60, 4
    delivered: dict[int, list[int]] = defaultdict(list)

    def deliver(sa: SecurityAssociation, packet: bytes) -> None:
        delivered[sa.spi].append(int.from_bytes(packet, "big"))

    sadb = Sadb(on_inbound_release=deliver, hold_limit=n_packets)
    spis = [larval_spi(sadb, seq=i) for i in range(n_sas)]
    rng = random.Random(seed)
    # Every SA gets a first packet while LARVAL, then maturing races the rest.
    first_round = threading.Barrier(n_dataplane + 1)
    failures: list[BaseException] = []

    def dataplane(my_spis: list[int]) -> None:
        # One thread owns each SA's stream, as one receive queue would.
        try:
            for n in range(n_packets):
                if n == 1:
                    first_round.wait()
                for spi in my_spis:
                    sa = sadb.lookup_inbound(spi, LOCAL_B)
                    assert sa is not None
                    packet = n.to_bytes(4, "big")
                    if not sa.ready and sadb.hold_inbound(sa, packet) is HoldResult.HELD:
                        continue
                    deliver(sa, packet)
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)

    def key_management() -> None:
        try:
            order = spis[:]
            rng.shuffle(order)
            first_round.wait()
            for spi in order:
                replies = sadb.handle(update(spi), 1.0)
                assert replies[0].message.errno == 0
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)

    threads = [
        threading.Thread(target=dataplane, args=(spis[i::n_dataplane],)) for i in range(n_dataplane)
    ]
    threads.append(threading.Thread(target=key_management))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)
    for spi in spis:
        assert delivered[spi] == list(range(n_packets)), f"SA {spi:#x}"
    counters = sadb.counters
    assert counters["replaced"] == 0 and counters["expired"] == 0
    assert counters["held"] >= n_sas  # every first packet was held
    assert counters["released"] >= counters["held"]
