"""The SQLite store on disk: modes, sealed values, and what `open_store` does with a
store it cannot use."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from larval.store import CHILD_SA, ESP_SEQ, IKE_SA, LEASE, StoreError
from larval.store.crypto import StateKey, StateKeyError
from larval.store.sqlite import FORMAT_VERSION, SqliteStore, open_store

#: 2026-12-03T23:10:00Z, for the moved-aside names.
NOW = 1796339400.0
STAMP = "20261203T231000"
SECRET_VALUE = b"sk_ei=0123456789abcdef-not-in-the-file"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _filled(tmp_path: Path) -> Path:
    """A store with two records, closed; returns its path (its key is state.key beside)."""
    db = tmp_path / "state.db"
    opened = open_store(db, now=NOW)
    opened.store.write({(IKE_SA, "a/b"): SECRET_VALUE, (LEASE, "rw/10.3.0.1"): b"carol"})
    opened.store.close()
    return db


# -- a new store ------------------------------------------------------------------------


def test_a_new_store_and_its_key_are_created_0600_and_the_state_comes_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lib" / "state.db"
    opened = open_store(db, now=NOW)
    assert opened.key_created and opened.moved_to is None
    opened.store.write({(IKE_SA, "a/b"): SECRET_VALUE})
    # While it is open the WAL and its index exist, with the store's mode.
    for name in ("state.db", "state.db-wal", "state.db-shm", "state.key"):
        assert _mode(db.parent / name) == 0o600, name
    assert _mode(db.parent) == 0o700
    opened.store.close()
    again = open_store(db, now=NOW)
    assert not again.key_created and again.moved_to is None
    assert again.store.load() == {IKE_SA: {"a/b": SECRET_VALUE}}
    again.store.close()


def test_the_store_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = SqliteStore(tmp_path / "state.db", StateKey(bytes(32)))
        store.write({(LEASE, "x"): b"1"})
        modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_values_are_sealed_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStore(db, StateKey(bytes(32)))
    store.write({(IKE_SA, "a/b"): SECRET_VALUE})
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    store.close()
    assert b"sk_ei=0123456789abcdef" not in on_disk
    raw = sqlite3.connect(db).execute("SELECT value FROM records").fetchone()[0]
    assert len(raw) == 12 + len(SECRET_VALUE) + 16


def test_the_key_is_in_no_repr_or_error(tmp_path: Path) -> None:
    key = StateKey.create(tmp_path / "state.key")
    text = (tmp_path / "state.key").read_text().strip()
    assert len(text) == 64
    store = SqliteStore(tmp_path / "state.db", key)
    assert text not in repr(key) + repr(store)
    assert str(tmp_path / "state.key") in repr(key)
    store.close()
    other = SqliteStore(tmp_path / "other.db", StateKey(bytes(32)))
    other.close()
    os.chmod(tmp_path / "other.db", 0o600)
    with pytest.raises(StoreError) as info:
        SqliteStore(tmp_path / "other.db", key)
    assert text not in str(info.value)


def test_concurrent_writers_share_one_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", StateKey(bytes(32)))

    def writer(n: int) -> None:
        for i in range(50):
            store.write({(ESP_SEQ, f"{n}/{i}"): b"%d" % i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.load()[ESP_SEQ]) == 200
    assert store.writes == 200
    store.close()


# -- the key file ---------------------------------------------------------------------------


def test_a_raw_key_file_is_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "raw.key"
    path.write_bytes(b"\n" * 32)
    path.chmod(0o600)
    key = StateKey.load(path)
    assert StateKey(b"\n" * 32).open("k", "x", key.seal("k", "x", b"v")) == b"v"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not a state key"),
        (b"ab" * 31 + b"\n", "not a state key"),
        (b"zz" * 32, "not a state key"),
        (b"x" * 33, "not a state key"),
    ],
)
def test_a_file_that_is_no_key_is_named(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "state.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StateKeyError, match=why) as info:
        StateKey.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o700 | 0o001])
def test_a_key_others_may_open_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "state.key"
    StateKey.create(path)
    path.chmod(mode)
    with pytest.raises(StateKeyError) as info:
        open_store(tmp_path / "state.db", path)
    assert f"{path}: the state key is mode {mode:04o}" in str(info.value)
    assert not (tmp_path / "state.db").exists()


def test_a_missing_key_beside_an_existing_store_is_an_error_not_a_new_key(
    tmp_path: Path,
) -> None:
    db = _filled(tmp_path)
    (tmp_path / "state.key").unlink()
    with pytest.raises(StoreError, match=r"exists but its key .*state\.key does not"):
        open_store(db, now=NOW)
    assert not (tmp_path / "state.key").exists()
    assert db.exists()


def test_a_key_given_elsewhere_is_used(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "larval.key"
    key.parent.mkdir()
    opened = open_store(tmp_path / "state.db", key)
    assert opened.key_created and _mode(key) == 0o600
    assert not (tmp_path / "state.key").exists()
    opened.store.close()


# -- the store's mode -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm"])
@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_store_others_may_read_is_refused(tmp_path: Path, name: str, mode: int) -> None:
    db = _filled(tmp_path)
    (tmp_path / name).touch()
    (tmp_path / name).chmod(mode)
    with pytest.raises(StoreError) as info:
        open_store(db, now=NOW)
    assert f"{tmp_path / name}: the state store is mode {mode:04o}" in str(info.value)
    assert db.exists() and not list(tmp_path.glob("*corrupt*"))


# -- a store that cannot be used is moved aside ---------------------------------------------


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 100)
    (db.parent / "state.db-wal").write_bytes(b"not a wal")
    (db.parent / "state.db-shm").write_bytes(b"not an index")
    for p in db.parent.glob("state.db*"):
        p.chmod(0o600)


def _foreign(db: Path) -> None:
    db.unlink()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE accounts (name TEXT)")
    db.chmod(0o600)


def _no_marker(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM meta WHERE name = 'format'")


def _newer(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'version'", (FORMAT_VERSION + 1,))


def _wrong_key(db: Path) -> None:
    key = db.parent / "state.key"
    key.write_text("11" * 32)


def _tampered(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        value = conn.execute("SELECT value FROM records WHERE kind = 'lease'").fetchone()[0]
        changed = value[:-1] + bytes([value[-1] ^ 1])
        conn.execute("UPDATE records SET value = ? WHERE kind = 'lease'", (changed,))


def _moved(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE records SET key = 'rw/10.3.0.2' WHERE kind = 'lease'")


def _other_kind(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(f"UPDATE records SET kind = '{CHILD_SA}' WHERE kind = 'lease'")


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_garbage, "not an SQLite database"),
        (_foreign, "an SQLite database, but not a larval state store"),
        (_no_marker, "an SQLite database, but not a larval state store"),
        (_newer, f"written by a newer larval \\(format {FORMAT_VERSION + 1}"),
        (_wrong_key, "its values do not open under the state key"),
        (_tampered, "lease 'rw/10.3.0.1': does not open"),
        (_moved, "lease 'rw/10.3.0.2': does not open"),
        (_other_kind, "child_sa 'rw/10.3.0.1': does not open"),
    ],
)
def test_an_unusable_store_is_named_moved_aside_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: object, why: str
) -> None:
    db = _filled(tmp_path)
    assert callable(spoil)
    spoil(db)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("state.db*")}
    with caplog.at_level(logging.WARNING, "larval.store"):
        opened = open_store(db, now=NOW)
    aside = tmp_path / f"state.db.corrupt-{STAMP}"
    assert opened.moved_to == str(aside)
    assert opened.why is not None
    assert re.search(why, opened.why)
    assert re.search(why, caplog.text) and str(db) in caplog.text and str(aside) in caplog.text
    # Moved whole, side files with it; nothing of it left beside the new store.
    for name, content in before.items():
        moved = tmp_path / name.replace("state.db", aside.name)
        assert moved.read_bytes() == content
    assert opened.store.load() == {}
    opened.store.write({(LEASE, "new"): b"1"})
    opened.store.close()
    assert open_store(db, now=NOW).store.load() == {LEASE: {"new": b"1"}}


def test_a_second_corrupt_store_in_the_same_second_is_not_overwritten(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    for content in (b"first garbage" * 10, b"second garbage" * 10):
        db.write_bytes(content)
        db.chmod(0o600)
        (tmp_path / "state.key").unlink(missing_ok=True)
        StateKey.create(tmp_path / "state.key")
        open_store(db, now=NOW).store.close()
    assert (tmp_path / f"state.db.corrupt-{STAMP}").read_bytes() == b"first garbage" * 10
    assert (tmp_path / f"state.db.corrupt-{STAMP}.1").read_bytes() == b"second garbage" * 10


def test_fresh_moves_the_store_aside_and_keeps_the_key(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    key = (tmp_path / "state.key").read_bytes()
    opened = open_store(db, fresh=True, now=NOW)
    assert opened.moved_to == str(tmp_path / f"state.db.old-{STAMP}")
    assert opened.store.load() == {}
    assert (tmp_path / "state.key").read_bytes() == key
    opened.store.close()
    # What was set aside is intact: it opens under the same key.
    aside = SqliteStore(tmp_path / f"state.db.old-{STAMP}", StateKey.load(tmp_path / "state.key"))
    assert aside.load()[IKE_SA] == {"a/b": SECRET_VALUE}
    aside.close()


def test_fresh_with_no_store_moves_nothing(tmp_path: Path) -> None:
    opened = open_store(tmp_path / "state.db", fresh=True, now=NOW)
    assert opened.moved_to is None and opened.key_created
    opened.store.close()


def _meta_of_another_shape(db: Path) -> None:
    db.unlink()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE meta (k TEXT)")
        conn.execute("CREATE TABLE records (k TEXT)")
    db.chmod(0o600)


def test_tables_of_our_names_but_another_shape_are_foreign(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    _meta_of_another_shape(db)
    opened = open_store(db, now=NOW)
    assert opened.why == "an SQLite database, but not a larval state store"
    opened.store.close()


def test_the_store_is_in_wal_mode_with_synchronous_full(tmp_path: Path) -> None:
    """FULL: the WAL is fsynced at every commit, so a write that returned survives a power
    loss too (NORMAL, 1, would lose the last commits: reused nonces after the reboot)."""
    for _ in range(2):  # created, then opened again: the pragma is the connection's
        store = SqliteStore(tmp_path / "state.db", StateKey(bytes(32)))
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        store.write({("ike_sa", "00/11"): b"x"})
        store.close()


def test_a_failed_batch_leaves_nothing_of_itself(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", StateKey(bytes(32)))
    store.write({(LEASE, "kept"): b"1"})
    # A batch that fails inside its transaction, after its delete and its first put ran.
    store._db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.key = 'b' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(StoreError, match="cannot write: refused"):
        store.write({(LEASE, "a"): b"2", (LEASE, "b"): b"3"}, deletes=[(LEASE, "kept")])
    assert store.load() == {LEASE: {"kept": b"1"}}
    store.write({(LEASE, "a"): b"2"})
    assert store.load() == {LEASE: {"kept": b"1", "a": b"2"}}
    store.close()


def test_fresh_sets_aside_a_store_whose_key_is_lost_and_makes_a_new_key(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    (tmp_path / "state.key").unlink()
    opened = open_store(db, fresh=True, now=NOW)
    assert opened.key_created and opened.moved_to == str(tmp_path / f"state.db.old-{STAMP}")
    assert opened.store.load() == {}
    opened.store.close()


def test_a_store_open_elsewhere_is_refused_and_not_moved_aside(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    first = open_store(db, now=NOW)
    with pytest.raises(StoreError, match=f"{db}: the state store is in use by another process"):
        open_store(db, now=NOW)
    with pytest.raises(StoreError, match="in use"):
        open_store(db, fresh=True, now=NOW)
    assert not list(tmp_path.glob("*corrupt*")) and not list(tmp_path.glob("*.old-*"))
    assert first.store.load()[IKE_SA] == {"a/b": SECRET_VALUE}
    first.store.close()
    second = open_store(db, now=NOW)
    assert second.moved_to is None
    second.store.close()


def test_a_store_dropped_without_close_lets_go(tmp_path: Path) -> None:
    import gc

    db = _filled(tmp_path)
    open_store(db, now=NOW).store.write({(LEASE, "y"): b"2"})
    gc.collect()
    again = open_store(db, now=NOW)
    assert again.store.load()[LEASE] == {"rw/10.3.0.1": b"carol", "y": b"2"}
    again.store.close()


def test_a_wal_left_without_its_store_is_set_aside_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    opened = open_store(db, now=NOW)
    opened.store.write({(IKE_SA, "old"): b"1"})
    # As a kill -9 leaves it: the WAL holds the write. Then the store alone is removed.
    wal = (tmp_path / "state.db-wal").read_bytes()
    assert wal
    opened.store.close()
    db.unlink()
    (tmp_path / "state.db-wal").write_bytes(wal)
    (tmp_path / "state.db-wal").chmod(0o600)
    again = open_store(db, now=NOW)
    assert again.store.load() == {}
    assert [p.read_bytes() for p in tmp_path.glob("state.db.orphan-*-wal")] == [wal]
    again.store.close()


def test_a_directory_where_the_store_goes_is_named(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir(mode=0o700)
    StateKey.create(tmp_path / "state.key")
    with pytest.raises(StoreError, match=r"state\.db: not a regular file"):
        open_store(tmp_path / "state.db")


def test_read_key_file_gives_the_bytes_state_key_uses(tmp_path: Path) -> None:
    from larval.store.crypto import read_key_file

    key = StateKey.create(tmp_path / "state.key")
    raw = read_key_file(tmp_path / "state.key")
    assert len(raw) == 32
    assert StateKey(raw).open("lease", "x", key.seal("lease", "x", b"v")) == b"v"
