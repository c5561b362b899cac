"""What the key manager's writes to its state store hold, batch by batch
(`larval.keymgr.persist`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from larval.keymgr.persist import Persistence
from larval.store import CHILD_SA, IKE_SA, MemoryStore, RecordKey
from tests.keymgr.test_restart import _up


class _Batches(MemoryStore):
    """A memory store that keeps every batch written, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[RecordKey, bytes]] = []

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        self.batches.append(dict(puts))
        super().write(puts, deletes)


def test_a_child_sa_installed_in_one_turn_is_one_record_with_both_sas_in_one_batch() -> None:
    """The CHILD_SA's record changes as each of its SAs is installed; it is made once,
    by the flush that writes it, with both SAs, beside its IKE SA's record."""
    store = _Batches()
    a, _ = _up(2, store)
    (child,) = a.keymgr.children.values()
    key = (CHILD_SA, f"{child.spi_in:08x}")
    with_child = [batch for batch in store.batches if key in batch]
    assert len(with_child) == 1
    (batch,) = with_child
    assert set(json.loads(batch[key])["sas"]) == {"in", "out"}
    assert any(kind == IKE_SA for kind, _ in batch)


def test_a_batch_put_back_is_under_what_changed_since_it_was_taken() -> None:
    """A write that failed: its records go back for the next one, except those a later
    put or delete replaced (`Persistence.put_back`)."""
    persist = Persistence(MemoryStore())
    a, b, c, d = ((IKE_SA, k) for k in ("a", "b", "c", "d"))
    taken = {a: b"a1", b: b"b1", c: b"c1"}, {d}
    persist._puts[b] = b"b2"  # changed again since
    persist._deletes.add(c)  # gone since
    persist.put_back(*taken)
    assert persist.take(lambda s: None) == ({a: b"a1", b: b"b2"}, {c, d})
    assert persist.take(lambda s: None) is None
