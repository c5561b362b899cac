"""The interface every backend keeps, on each of them (the `store` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from larval.store import IKE_SA, LEASE, StoreError


def test_a_batch_is_read_back_by_kind_and_key(store: Any) -> None:
    store.write({(IKE_SA, "a/b"): b"one", (LEASE, "rw/10.3.0.1"): b"carol"})
    store.write({(IKE_SA, "c/d"): b"two"}, deletes=[(IKE_SA, "a/b")])
    assert store.load() == {IKE_SA: {"c/d": b"two"}, LEASE: {"rw/10.3.0.1": b"carol"}}
    assert store.writes == 2


def test_a_key_both_put_and_deleted_is_put_and_an_emptied_kind_is_absent(store: Any) -> None:
    store.write({(LEASE, "x"): b"1"})
    store.write({(IKE_SA, "k"): b"2"}, deletes=[(IKE_SA, "k"), (LEASE, "x")])
    assert store.load() == {IKE_SA: {"k": b"2"}}


def test_loaded_records_are_a_copy(store: Any) -> None:
    store.write({(LEASE, "x"): b"1"})
    store.load()[LEASE]["x"] = b"changed"
    assert store.load() == {LEASE: {"x": b"1"}}


def test_no_write_after_close(store: Any) -> None:
    store.close()
    with pytest.raises(StoreError, match="after close"):
        store.write({(LEASE, "x"): b"1"})


def test_an_empty_value_and_a_deleted_absent_key(store: Any) -> None:
    store.write({(LEASE, "x"): b""}, deletes=[(IKE_SA, "never")])
    assert store.load() == {LEASE: {"x": b""}}
