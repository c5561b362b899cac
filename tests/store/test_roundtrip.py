"""Hypothesis: arbitrary batches of puts and deletes against a dict, on each backend, and
the SQLite store read back after it is closed and opened again."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.store import KINDS, MemoryStore, RecordKey
from larval.store.crypto import StateKey
from larval.store.sqlite import SqliteStore

RECORD_KEYS = st.tuples(st.sampled_from(KINDS), st.text(max_size=12))
BATCHES = st.lists(
    st.tuples(
        st.dictionaries(RECORD_KEYS, st.binary(max_size=64), max_size=8),
        st.lists(RECORD_KEYS, max_size=4),
    ),
    max_size=6,
)


def _model(
    batches: list[tuple[dict[RecordKey, bytes], list[RecordKey]]],
) -> dict[str, dict[str, bytes]]:
    records: dict[RecordKey, bytes] = {}
    for puts, deletes in batches:
        for record in deletes:
            records.pop(record, None)
        records.update(puts)
    out: dict[str, dict[str, bytes]] = {}
    for (kind, key), value in records.items():
        out.setdefault(kind, {})[key] = value
    return out


@given(batches=BATCHES)
@settings(max_examples=60, deadline=None)
def test_any_batches_read_back_as_a_dict_would_hold_them(
    batches: list[tuple[dict[RecordKey, bytes], list[RecordKey]]],
) -> None:
    expected = _model(batches)
    memory = MemoryStore()
    key = StateKey(bytes(range(32)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        sqlite = SqliteStore(path, key)
        for puts, deletes in batches:
            memory.write(puts, deletes)
            sqlite.write(puts, deletes)
        assert memory.load() == expected
        assert sqlite.load() == expected
        sqlite.close()
        again = SqliteStore(path, key)
        assert again.load() == expected
        again.close()
