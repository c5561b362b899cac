"""`PacketPath.outbound_batch` when every flow's answer is remembered (`Stack.protected_for`):
UDP flows, whose answers the stack keeps, to many SAs, a first batch to learn them and a
second sealed as it comes. The datagrams, counters and each SA's accounting are those
of the per-packet path, also after a DELETE or an SPD change between the batches (the
remembered answers no longer hold). Every test runs on the Python path and on the
compiled helper."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import SadbMsgType
from larval.pfkey.requests import by_spi as by_spi_request
from larval.sadb import SecurityAssociation
from larval.stack.packet_path import Datagram
from tests.esp.paths import esp_path
from tests.net.packets import udp_packet
from tests.stack.test_packet_path import A_OUTER, B_OUTER
from tests.stack.test_packet_path_batch import MANY, ManyWorld, _many_dst, by_spi

__all__ = ["esp_path"]

pytestmark = pytest.mark.usefixtures("esp_path")


def _udp(k: int, n: int) -> bytes:
    """Datagram `n` to SA k's destination, from a port of its own: its bytes say which."""
    return udp_packet("198.51.100.1", str(_many_dst(k)), 40000 + k, 5201, n.to_bytes(4, "big"))


def _batch(order: list[int], first: int) -> list[bytes]:
    return [_udp(k, first + i) for i, k in enumerate(order)]


def _accounting(world: ManyWorld) -> list[tuple[object, ...] | None]:
    found = []
    for k in range(MANY):
        sa = world.a.stack.sadb.lookup_inbound(0x5000 + k, world.b.outer)
        found.append(
            None if sa is None else (sa.bytes, sa.packets, sa.usetime, sa.lastuse, sa.notice_at)
        )
    return found


def _counting(world: ManyWorld) -> list[int]:
    """Count the answers `Stack.protected_for` gives A's packet path: [asked, answered]."""
    asked = [0, 0]
    ask: Callable[[bytes], SecurityAssociation | None] = world.a.stack.protected_for

    def counted(key: bytes) -> SecurityAssociation | None:
        sa = ask(key)
        asked[0] += 1
        asked[1] += sa is not None
        return sa

    world.a.stack.protected_for = counted  # type: ignore[method-assign]
    return asked


def _runs(order: list[int]) -> int:
    """How many runs of one SA's packets (so of one flow) `order` makes."""
    return sum(1 for i, k in enumerate(order) if i == 0 or order[i - 1] != k)


_orders = st.lists(st.integers(0, MANY - 1), min_size=1, max_size=40)


@settings(max_examples=30, deadline=None)
@given(
    _orders,
    _orders,
    st.sampled_from(["none", "delete", "spd"]),
    st.integers(0, MANY - 1),
    st.booleans(),
)
def test_remembered_flows_are_sealed_as_packet_by_packet(
    first: list[int], second: list[int], event: str, victim: int, many_sink: bool
) -> None:
    """Two batches, the second's flows mostly learnt in the first; between them nothing,
    a DELETE of one of A's SAs, or an SPD flush. The batch world gives what the per-packet
    world gives: every datagram in order per SA, every counter and ACQUIRE, and each SA's
    bytes, packets, use times and next notice."""
    one, batch = ManyWorld(set(), set(), set()), ManyWorld(set(), set(), set())
    if many_sink:

        def send_many(dst: bytes, port: int, payloads: list[bytes]) -> None:
            batch.a.wire.extend(Datagram(p, dst, port) for p in payloads)

        batch.a.path.send_many = send_many
    asked = _counting(batch)
    looked_up = [0]
    full = batch.a.stack.outbound

    def counted_outbound(packet: bytes, now: float) -> object:
        looked_up[0] += 1
        return full(packet, now)

    batch.a.stack.outbound = counted_outbound  # type: ignore[assignment,method-assign]
    for n, order in enumerate((first, second)):
        if n == 1:
            if event == "delete":
                for w in (one, batch):
                    w.a.pfkey(by_spi_request(SadbMsgType.DELETE, 0x5000 + victim, B_OUTER, A_OUTER))
            elif event == "spd":
                for w in (one, batch):
                    w.a.stack.spd.flush()
            asked[:] = [0, 0]
            looked_up[0] = 0
        packets = _batch(order, 100 * n)
        for packet in packets:
            one.a.path.outbound(packet, 1.0 + n)
        batch.a.path.outbound_batch(packets, 1.0 + n)
        assert by_spi(batch.a.wire) == by_spi(one.a.wire)
        assert batch.a.path.counters() == one.a.path.counters()
        assert dict(batch.a.stack.drops) == dict(one.a.stack.drops)
        assert batch.a.stack.sadb.counters.snapshot() == one.a.stack.sadb.counters.snapshot()
        assert batch.a.stack.sadb.acquire_records == one.a.stack.sadb.acquire_records
        assert _accounting(batch) == _accounting(one)
    learnt = set(first)
    if event == "none" and set(second) <= learnt:
        # Every flow of the second batch was learnt: it was answered without a lookup,
        # once per run of its packets, and never asked of the SPD and the SADB again.
        assert asked == [_runs(second), _runs(second)]
        assert looked_up[0] == 0
    if event != "none":
        # What the DELETE or the flush changed is never answered from memory.
        touched = [k for k in second if event == "spd" or k == victim]
        assert asked[1] <= _runs(second) - (1 if touched else 0)


def test_a_remembered_flow_answers_until_its_sa_leaves() -> None:
    world = ManyWorld(set(), set(), set())
    packet = _udp(3, 1)
    assert world.a.stack.protected_by(packet) is None  # not asked yet
    assert world.a.stack.protected_by(b"\x45\x00") is None  # no flow to remember
    world.a.path.outbound(packet, 1.0)
    sa = world.a.stack.protected_by(packet)
    assert sa is not None and sa.spi == 0x5003
    assert world.a.stack.protected_by(_udp(4, 1)) is None  # another flow: not learnt
    world.a.pfkey(by_spi_request(SadbMsgType.DELETE, 0x5003, B_OUTER, A_OUTER))
    assert world.a.stack.protected_by(packet) is None
