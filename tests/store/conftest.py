"""The backends the interface's tests run on, one fixture for each case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.store import MemoryStore, StateStore
from larval.store.crypto import StateKey
from larval.store.sqlite import SqliteStore

KEY = bytes(range(32))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    backend: MemoryStore | SqliteStore
    if request.param == "memory":
        backend = MemoryStore()
    else:
        backend = SqliteStore(tmp_path / "state.db", StateKey(KEY, "the test key"))
    yield backend
    backend.close()
