"""The state store in one SQLite file: `larval run`'s ``[daemon] state``.

Theory of operation
-------------------
* One file, stdlib `sqlite3`, in WAL mode with ``synchronous=FULL``: when `write`
  returns, its transaction is in the WAL and the WAL is fsynced, so it survives the
  process being killed and the host losing power or crashing alike. ``NORMAL`` would
  fsync only at checkpoints and could lose the last commits to a power loss; those
  hold sequence number reservations and IKE Message IDs and IV counters, and an SA
  resumed below numbers it had sent would reuse AES-GCM nonces. One setting for every
  record: replay checkpoints alone could afford ``NORMAL`` (a lost one only widens what
  a restored SA accepts, never what it sends), but they are batched across SAs on a
  timer, a few commits a second, too few for the saving to be worth a second rule. One
  `write` is one ``BEGIN IMMEDIATE … COMMIT``; the key manager groups the IKE messages
  of one pass of the event loop into one (`larval.daemon.group_commit`).
* Two tables: ``records (kind, key, value)`` with every value sealed under the state key
  (`larval.store.crypto`), and ``meta (name, value)`` holding the format's name and
  version and a sealed check value, so that a foreign file, a newer format or another
  key is recognised at open, even in a store with no records.
* The file (and the ``-wal`` and ``-shm`` SQLite makes beside it, which take the file's
  mode) is created 0600; an existing one readable by group or others is refused.
* One process at a time: the store is flocked while open; a second process is refused.
* Threads: one connection, opened with ``check_same_thread=False`` and used only under
  one lock, so a writer thread and the event loop may share the store; each call holds
  the lock for one transaction.
* `open_store` is what `larval run` calls: it creates the store and its key when neither
  exists, and moves a store it cannot use (not SQLite, foreign, newer, values that do
  not open) aside as ``state.db.corrupt-YYYYmmddTHHMMSS``, with its ``-wal`` and
  ``-shm``, and returns a new empty one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from larval.store import RecordKey, StoreError
from larval.store.crypto import SealError, StateKey, fsync_dir

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OpenedStore",
    "SqliteStore",
    "StoreUnusable",
    "open_store",
]

log = logging.getLogger("larval.store")

FORMAT_NAME = "larval-state"
FORMAT_VERSION = 1
#: The state key's file name beside the store when ``[daemon] state_key`` is not given.
DEFAULT_KEY_NAME = "state.key"
#: What the sealed check value in ``meta`` holds.
_CHECK = b"larval state store"
_SIDE_FILES = ("-wal", "-shm")
_SQLITE_MAGIC = b"SQLite format 3\0"

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
    "PRIMARY KEY (kind, key)) WITHOUT ROWID",
)


class StoreUnusable(StoreError):
    """The file is not a store this larval can read with this key (not SQLite, foreign,
    newer, or values that do not open): `open_store` moves it aside. `why` says which."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


class SqliteStore:
    """`larval.store.StateStore` in an SQLite file, every value sealed under `key`."""

    def __init__(self, path: str | os.PathLike[str], key: StateKey) -> None:
        self.path = os.fspath(path)
        self._key = key
        self._lock = threading.Lock()
        self._closed = False
        self.writes = 0  # batches written, for tests and benchmarks
        _create_or_check_mode(self.path)
        self._owner = _take(self.path)
        try:
            _check_header(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            self._owner.close()
            raise StoreError(f"{self.path}: cannot open: {e}") from None
        except BaseException:
            self._owner.close()
            raise
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            self._owner.close()
            raise

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path}>"

    def _prepare(self) -> None:
        # Recognised before anything is changed: a foreign file is moved aside as it was.
        try:
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as e:
            raise StoreUnusable(self.path, f"not an SQLite database ({e})") from None
        if tables:
            try:
                self._check_format(tables)
            except sqlite3.Error:
                raise StoreUnusable(
                    self.path, "an SQLite database, but not a larval state store"
                ) from None
        try:
            (journal,) = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if journal != "wal":
                raise StoreError(f"{self.path}: SQLite cannot keep a WAL here ({journal})")
            self._db.execute("PRAGMA synchronous=FULL")  # module docstring
            if not tables:
                self._create_schema()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot prepare the state store: {e}") from None

    def _check_format(self, tables: set[str]) -> None:
        if "meta" not in tables or "records" not in tables:
            raise StoreUnusable(self.path, "an SQLite database, but not a larval state store")
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise StoreUnusable(self.path, "an SQLite database, but not a larval state store")
        version = meta.get("version")
        if not isinstance(version, int):
            raise StoreUnusable(self.path, f"format version {version!r} is not a number")
        if version > FORMAT_VERSION:
            raise StoreUnusable(
                self.path,
                f"written by a newer larval (format {version}; this one reads {FORMAT_VERSION})",
            )
        check = meta.get("check")
        try:
            if not isinstance(check, bytes) or self._key.open("meta", "check", check) != _CHECK:
                raise SealError("meta 'check': missing or wrong")
        except SealError:
            raise StoreUnusable(
                self.path, f"its values do not open under the state key {self._key.source}"
            ) from None

    def _create_schema(self) -> None:
        check = self._key.seal("meta", "check", _CHECK)
        with self._transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [("format", FORMAT_NAME), ("version", FORMAT_VERSION), ("check", check)],
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, dict[str, bytes]]:
        """Every record, opened; raises `StoreUnusable` if one does not open."""
        with self._lock:
            self._check_open("read")
            try:
                rows = self._db.execute("SELECT kind, key, value FROM records").fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: cannot read: {e}") from None
        out: dict[str, dict[str, bytes]] = {}
        for kind, key, value in rows:
            if not isinstance(kind, str) or not isinstance(key, str):
                raise StoreUnusable(self.path, f"a record named {kind!r} {key!r} is not text")
            if not isinstance(value, bytes):
                raise StoreUnusable(self.path, f"{kind} {key!r}: the value is not bytes")
            try:
                out.setdefault(kind, {})[key] = self._key.open(kind, key, value)
            except SealError as e:
                raise StoreUnusable(self.path, str(e)) from None
        return out

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        sealed = [
            (kind, key, self._key.seal(kind, key, value)) for (kind, key), value in puts.items()
        ]
        gone = [(kind, key) for kind, key in deletes if (kind, key) not in puts]
        with self._lock:
            self._check_open("written")
            try:
                with self._transaction():
                    self._db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", gone)
                    self._db.executemany(
                        "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                        sealed,
                    )
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: cannot write: {e}") from None
            self.writes += 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._owner.close()

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: {what} after close")


def _take(path: str) -> io.FileIO:
    """One process at a time: two daemons writing one store would send the same sequence
    numbers. An flock on the file, held while the store is open, released by the kernel
    when the process dies however it dies; SQLite's own locks are fcntl locks, which
    flock does not disturb on Linux."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise StoreError(f"{path}: cannot open the state store: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"{path}: the state store is in use by another process") from None
    # A file object, so that a store dropped without close() lets go when collected.
    return io.FileIO(fd, "rb", closefd=True)


def _set_aside_orphans(path: str) -> None:
    """A -wal or -shm left without its store (the store removed by hand after a crash)
    belongs to another database: moved aside untouched, not left for SQLite to find
    beside the new store."""
    orphans = [side for side in _SIDE_FILES if os.path.lexists(path + side)]
    if not orphans:
        return
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for side in orphans:
        target = f"{path}.orphan-{stamp}{side}"
        try:
            os.replace(path + side, target)
        except OSError as e:
            raise StoreError(f"{path}{side}: cannot move it aside: {e.strerror}") from None
        log.warning("%s%s: left without its store; moved aside to %s", path, side, target)


def _check_header(path: str) -> None:
    """Refuse a file that is not empty and not SQLite before SQLite opens it: SQLite
    would delete the -wal and -shm beside it when closed, and they go aside with it."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StoreError(f"{path}: cannot read the state store: {e.strerror}") from None
    if header and header != _SQLITE_MAGIC:
        raise StoreUnusable(path, "not an SQLite database")


def _create_or_check_mode(path: str) -> None:
    """Create the file 0600 if it is not there, else refuse it (and its -wal and -shm)
    if group or others may read it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError(f"{path}: cannot create the state store: {e.strerror}") from None
    else:
        os.close(fd)
        _set_aside_orphans(path)
        return
    for name in (path, *(path + side for side in _SIDE_FILES)):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StoreError(f"{name}: cannot read the state store: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{name}: not a regular file, so not a state store")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o044:
            raise StoreError(
                f"{name}: the state store is mode {mode:04o}, readable by group or others; "
                "chmod 600 it"
            )


@dataclass(frozen=True)
class OpenedStore:
    """What `open_store` found: the store, and where an unusable one was moved and why."""

    store: SqliteStore
    #: Where the store that was there went, if it was moved aside.
    moved_to: str | None = None
    #: Why it was moved aside (the path is in `moved_to`).
    why: str | None = None
    #: True when the state key was created just now.
    key_created: bool = False


def default_key_path(path: str | os.PathLike[str]) -> str:
    """The state key beside the store: ``state.key`` in its directory."""
    return os.fspath(Path(path).parent / DEFAULT_KEY_NAME)


def open_store(
    path: str | os.PathLike[str],
    key_path: str | os.PathLike[str] | None = None,
    *,
    fresh: bool = False,
    now: float | None = None,
) -> OpenedStore:
    """Open the store at `path` under the key at `key_path` (default: `default_key_path`).

    * Neither there: the key is created (0600), then the store.
    * The store there but not its key: `StoreError`; a new key would make it unreadable.
    * The key file unreadable, open to others or not a key, or the store readable by
      others: `StoreError` naming the file; these are for the administrator to fix.
    * The store unusable (not SQLite, foreign, newer, values that do not open under the
      key): logged with its path and why, moved aside as ``PATH.corrupt-TIMESTAMP`` with
      its ``-wal`` and ``-shm``, and a new empty store returned.
    * `fresh`: an existing store is moved aside as ``PATH.old-TIMESTAMP``, not deleted
      (what it held may be wanted) and not reused (the new state must not mix with it).
    """
    path = os.fspath(path)
    key_file = os.fspath(key_path) if key_path is not None else default_key_path(path)
    parent = Path(path).parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{parent}: cannot create the state directory: {e.strerror}") from None
    moved_to: str | None = None
    why: str | None = None
    if fresh and os.path.lexists(path):
        owner = _take(path)  # not from under a daemon that has it open
        try:
            moved_to, why = _move_aside(path, "old", now), "set aside by --fresh"
        finally:
            owner.close()
        log.warning("%s: moved aside to %s (--fresh)", path, moved_to)
    key_created = False
    if not os.path.lexists(key_file):
        if os.path.lexists(path):
            raise StoreError(
                f"{path}: the state store exists but its key {key_file} does not; "
                "restore the key, or move the store away to start clean"
            )
        key = StateKey.create(key_file)
        key_created = True
        log.info("%s: created a new state key", key_file)
    else:
        key = StateKey.load(key_file)
    store: SqliteStore | None = None
    try:
        store = SqliteStore(path, key)
        store.load()  # every value opens, or the store is not ours to use
    except StoreUnusable as e:
        if store is not None:
            store.close()
        moved_to, why = _move_aside(path, "corrupt", now), e.why
        log.warning("%s: %s; moved aside to %s", path, why, moved_to)
        store = SqliteStore(path, key)
    return OpenedStore(store, moved_to, why, key_created)


def _move_aside(path: str, label: str, now: float | None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    target = f"{path}.{label}-{stamp}"
    n = 1
    while any(os.path.lexists(target + side) for side in ("", *_SIDE_FILES)):
        target = f"{path}.{label}-{stamp}.{n}"
        n += 1
    try:
        # The side files first: a -wal left beside a new store would be replayed into it.
        for side in _SIDE_FILES:
            if os.path.lexists(path + side):
                os.rename(path + side, target + side)
        os.rename(path, target)
    except OSError as e:
        raise StoreError(f"{path}: cannot move it aside to {target}: {e.strerror}") from None
    fsync_dir(Path(path).parent)  # not back under its name after a power loss
    return target
