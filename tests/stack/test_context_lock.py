"""An SA's ESP context is made once, however many threads send its first packets at once,
and it takes the SA's own lock: one lock per SA on the packet path. With a state store,
making it takes that lock for the first reservation, which must not wait on itself."""

from __future__ import annotations

import threading

import pytest

from larval.stack.packet_path import EspContext
from tests.esp.paths import esp_path
from tests.stack.test_esp_state import RecordingStore
from tests.stack.test_many_reserved import B_PACKED, SAS, _dst, _sender
from tests.stack.test_packet_path import icmp_echo

__all__ = ["esp_path"]

pytestmark = pytest.mark.usefixtures("esp_path")


def test_one_context_per_sa_under_the_sa_s_lock_from_many_threads() -> None:
    store = RecordingStore()
    stack, path, wire = _sender(store, block=1000)
    writer = stack.esp_state
    assert writer is not None
    assert len(list(stack.sadb.all_sas())) == SAS
    start = threading.Barrier(4)
    made: list[list[object]] = [[] for _ in range(4)]

    def send(t: int) -> None:
        start.wait()
        for k in range(SAS):
            path.outbound_batch([icmp_echo("198.51.100.1", str(_dst(k)), t)], 1.0)
            sa = stack.sadb.lookup_esp(0x6000 + k, B_PACKED)
            made[t].append(None if sa is None else sa.transform)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    for k in range(SAS):
        sa = stack.sadb.lookup_esp(0x6000 + k, B_PACKED)
        assert sa is not None
        ctx = sa.transform
        assert isinstance(ctx, EspContext)
        assert ctx.lock is sa.lock
        assert all(m[k] is ctx for m in made)
    # Every first packet asked for the first block; a round grants it, and then they go.
    writer.run_once()
    for k in range(SAS):
        path.outbound_batch([icmp_echo("198.51.100.1", str(_dst(k)), 9)], 1.0)
    assert len(wire) == SAS
    assert path.counters()["seq_unreserved"] == 4 * SAS
