"""The state store in etcd: one group of gateways shares it, and only the owner writes.

Theory of operation
-------------------
* `EtcdClient` speaks etcd v3 through its JSON gateway (``POST /v3/...``) with the
  standard library's `http.client`. It was chosen over aetcd (asyncio and grpcio) and
  etcd3gw (requests): the gateway does all the store and the election need (put, range,
  delete, txn, leases, watch), a call is a short blocking request that any thread may
  make, and larval takes on no dependency. The gateway's quirks are handled here: bytes
  are base64, int64 values are strings, and a txn whose compare fails omits
  ``succeeded``.
* Several endpoints: a call goes to the one that answered last; when a connection to it
  cannot be made, the next is tried. A request that was sent and then timed out is not
  retried elsewhere (it may have been applied): it raises `StoreError`.
* `EtcdStore` keeps each record under ``/larval/GROUP/state/KIND/KEY``, its value sealed
  with AES-GCM under the state key (the record's kind and key as associated data). Every
  `write` is one txn that applies only while the owner key's create revision is this
  node's epoch (`larval.ha.election`): another owner, or none, and etcd refuses it and
  `write` raises `StoreFenced`. A store given its election also refuses, without asking
  etcd, once the election has fenced itself.
* A standby `follow`s the state by watching the prefix into a local mirror, so that it
  can take over without reading everything at the moment it is needed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from larval.store import KINDS, RecordKey, StoreError, StoreFenced
from larval.store.crypto import StateKey

if TYPE_CHECKING:
    from larval.ha.election import Election

__all__ = [
    "EtcdClient",
    "EtcdEvent",
    "EtcdKv",
    "EtcdStore",
    "EtcdWatch",
]

log = logging.getLogger(__name__)

#: etcd's default ``--max-txn-ops``: a txn with more operations is refused.
MAX_TXN_OPS = 128
#: How long a standby waits before it opens a broken watch again.
_FOLLOW_RETRY = 0.2


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    return base64.b64decode(text) if isinstance(text, str) else b""


def _int(value: object) -> int:
    """int64 fields come as strings, and a zero is omitted."""
    if value is None:
        return 0
    if isinstance(value, (int, str)):
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key beginning with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True)
class EtcdKv:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> EtcdKv:
        return cls(
            key=_unb64(data.get("key")),
            value=_unb64(data.get("value")),
            create_revision=_int(data.get("create_revision")),
            mod_revision=_int(data.get("mod_revision")),
            lease=_int(data.get("lease")),
        )


@dataclass(frozen=True)
class EtcdEvent:
    """One change seen by a watch: a put, or a delete (then `kv.value` is empty)."""

    deleted: bool
    kv: EtcdKv


def put_op(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    op: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def delete_op(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def range_op(key: bytes) -> dict[str, Any]:
    return {"request_range": {"key": _b64(key)}}


def create_revision_is(key: bytes, revision: int) -> dict[str, Any]:
    """The txn compare "`key`'s create revision is `revision`" (0: the key does not exist)."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL",
            "create_revision": str(revision)}  # fmt: skip


def mod_revision_is(key: bytes, revision: int) -> dict[str, Any]:
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL",
            "mod_revision": str(revision)}  # fmt: skip


class EtcdClient:
    """A blocking client for etcd's JSON gateway, safe to share between threads."""

    def __init__(self, endpoints: Iterable[str], timeout: float = 2.0) -> None:
        self.endpoints = [self._endpoint(e) for e in endpoints]
        if not self.endpoints:
            raise StoreError("etcd: no endpoints")
        self.timeout = timeout
        self._current = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<EtcdClient {','.join(f'{h}:{p}' for h, p in self.endpoints)}>"

    @staticmethod
    def _endpoint(text: str) -> tuple[str, int]:
        url = urlsplit(text if "://" in text else f"http://{text}")
        if url.scheme != "http" or not url.hostname:
            raise StoreError(f"etcd endpoint {text!r}: not http://HOST:PORT")
        try:
            return url.hostname, url.port or 2379
        except ValueError:
            raise StoreError(f"etcd endpoint {text!r}: bad port") from None

    def _connect(self, timeout: float | None) -> tuple[http.client.HTTPConnection, str]:
        """A connection to the first endpoint that takes one, beginning with the last good."""
        with self._lock:
            start = self._current
        failures = []
        for i in range(len(self.endpoints)):
            index = (start + i) % len(self.endpoints)
            host, port = self.endpoints[index]
            name = f"{host}:{port}"
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                conn.connect()
            except OSError as e:
                conn.close()
                failures.append(f"{name}: {e.strerror or e}")
                continue
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            with self._lock:
                self._current = index
            return conn, name
        raise StoreError(f"etcd: no endpoint answers ({'; '.join(failures)})")

    def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST `body` to ``/v3/PATH``; the decoded answer, or `StoreError` naming the endpoint."""
        conn, name = self._connect(self.timeout)
        try:
            conn.request("POST", f"/v3/{path}", json.dumps(body),
                         {"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise StoreError(f"etcd {name}: /v3/{path}: {e or type(e).__name__}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(data)
        except ValueError:
            raise StoreError(f"etcd {name}: /v3/{path}: answer is not JSON "
                             f"(HTTP {response.status})") from None  # fmt: skip
        if not isinstance(answer, dict):
            raise StoreError(f"etcd {name}: /v3/{path}: answer is not an object")
        if response.status != 200 or "error" in answer:
            message = answer.get("message") or answer.get("error") or f"HTTP {response.status}"
            raise StoreError(f"etcd {name}: /v3/{path}: {message}")
        # The streaming calls (lease keepalive) wrap their one answer in "result".
        result = answer.get("result", answer)
        return result if isinstance(result, dict) else {}

    # -- keys

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Put; the store's revision after it."""
        body = put_op(key, value, lease)["request_put"]
        return _int(self.call("kv/put", body).get("header", {}).get("revision"))

    def get(self, key: bytes) -> EtcdKv | None:
        kvs = self.call("kv/range", {"key": _b64(key)}).get("kvs", [])
        return EtcdKv.decode(kvs[0]) if kvs else None

    def range(self, prefix: bytes) -> tuple[list[EtcdKv], int]:
        """Every key beginning with `prefix`, and the revision they were read at."""
        answer = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        revision = _int(answer.get("header", {}).get("revision"))
        return [EtcdKv.decode(kv) for kv in answer.get("kvs", [])], revision

    def delete(self, key: bytes) -> int:
        """Delete; how many keys went."""
        return _int(self.call("kv/deleterange", {"key": _b64(key)}).get("deleted"))

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, list[dict[str, Any]], int]:
        """Whether the compares held, the answers of the branch taken, and the revision."""
        answer = self.call("kv/txn", {"compare": compare, "success": success,
                                      "failure": failure or []})  # fmt: skip
        revision = _int(answer.get("header", {}).get("revision"))
        # The gateway omits "succeeded" when it is false.
        return bool(answer.get("succeeded", False)), list(answer.get("responses", [])), revision

    # -- leases

    def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: its ID and the TTL etcd granted."""
        answer = self.call("lease/grant", {"TTL": str(ttl)})
        return _int(answer.get("ID")), _int(answer.get("TTL"))

    def lease_keepalive(self, lease: int) -> int:
        """Renew `lease`; the TTL it has again, 0 when it had already expired."""
        return _int(self.call("lease/keepalive", {"ID": str(lease)}).get("TTL"))

    def lease_revoke(self, lease: int) -> None:
        """Revoke `lease` and delete its keys; a lease already gone is no error."""
        try:
            self.call("lease/revoke", {"ID": str(lease)})
        except StoreError as e:
            if "lease not found" not in str(e):
                raise

    # -- watch

    def watch(self, prefix: bytes, start_revision: int = 0, *, exact: bool = False) -> EtcdWatch:
        """Watch `prefix` (or only the key `prefix` when `exact`) from `start_revision`."""
        request: dict[str, Any] = {"key": _b64(prefix)}
        if not exact:
            request["range_end"] = _b64(prefix_end(prefix))
        if start_revision:
            request["start_revision"] = str(start_revision)
        conn, name = self._connect(None)
        try:
            conn.request("POST", "/v3/watch", json.dumps({"create_request": request}),
                         {"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise StoreError(f"etcd {name}: /v3/watch: {e or type(e).__name__}") from None
        if response.status != 200:
            conn.close()
            raise StoreError(f"etcd {name}: /v3/watch: HTTP {response.status}")
        return EtcdWatch(conn, response, name)


class EtcdWatch:
    """A watch's stream of events; `close` (from any thread) ends it."""

    def __init__(self, conn: http.client.HTTPConnection, response: Any, name: str) -> None:
        self._conn = conn
        self._response = response
        self.endpoint = name
        self.closed = False
        self._reading = False

    def close(self) -> None:
        self.closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # A thread reading the stream closes the connection itself when it sees the end.
        if not self._reading:
            self._conn.close()

    def __iter__(self) -> Iterator[list[EtcdEvent]]:
        """Batches of events, in revision order, until the stream ends or is closed.
        A stream that breaks, unless closed, raises `StoreError`."""
        self._reading = True
        try:
            yield from self._events()
        finally:
            self._reading = False
            self._conn.close()

    def _events(self) -> Iterator[list[EtcdEvent]]:
        while not self.closed:
            try:
                line = self._response.readline()
            except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
                if self.closed:
                    return
                raise StoreError(f"etcd {self.endpoint}: watch broke: {e}") from None
            if not line:
                if self.closed:
                    return
                raise StoreError(f"etcd {self.endpoint}: watch ended")
            try:
                answer = json.loads(line)
            except ValueError:
                raise StoreError(
                    f"etcd {self.endpoint}: watch sent a line that is not JSON"
                ) from None
            if not isinstance(answer, dict) or "error" in answer:
                problem = answer.get("error") if isinstance(answer, dict) else "not an object"
                raise StoreError(f"etcd {self.endpoint}: watch: {problem}")
            result = answer.get("result", {})
            if result.get("canceled"):
                reason = result.get("cancel_reason") or "canceled"
                raise StoreError(f"etcd {self.endpoint}: watch: {reason}")
            events = [
                EtcdEvent(deleted=e.get("type") == "DELETE", kv=EtcdKv.decode(e.get("kv", {})))
                for e in result.get("events", [])
            ]
            if events:
                yield events


# -- the store


def owner_key(group: str) -> bytes:
    return f"/larval/{group}/owner".encode()


def state_prefix(group: str) -> bytes:
    return f"/larval/{group}/state/".encode()


class EtcdStore:
    """`larval.store.StateStore` in etcd, fenced by the owner key's create revision.

    `epoch` is the owner key's create revision when this node won it (by default, the
    `election`'s epoch now). A store serves that one ownership: once it ends, the store
    stays fenced even if the node wins again, so that state held from before another
    owner's writes can never overwrite them. `election`, when given, also fences writes
    as soon as it has fenced itself (before etcd could know).
    """

    def __init__(
        self,
        client: EtcdClient,
        group: str,
        state_key: StateKey | bytes,
        *,
        epoch: int = 0,
        election: Election | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self._state_key = (
            state_key if isinstance(state_key, StateKey) else StateKey(state_key, "the state key")
        )
        self._epoch = epoch or (election.epoch if election is not None else 0)
        self.election = election
        self._prefix = state_prefix(group)
        self._owner = owner_key(group)
        self._closed = False
        self._mirror: dict[str, dict[str, bytes]] = {}
        self._mirror_lock = threading.Lock()
        self._mirror_changed = threading.Condition(self._mirror_lock)
        self._revision = 0
        self._watch: EtcdWatch | None = None
        self._following = threading.Event()  # set: stop following
        self._follower: threading.Thread | None = None
        self.follow_error: StoreError | None = None
        #: The revision of this store's last write.
        self.last_revision = 0

    def __repr__(self) -> str:
        return f"<EtcdStore group={self.group} epoch={self.epoch} {self.client!r}>"

    @property
    def epoch(self) -> int:
        return self._epoch

    def _path(self, kind: str, key: str) -> bytes:
        if kind not in KINDS:
            raise StoreError(f"etcd store: unknown record kind {kind!r}")
        return self._prefix + f"{kind}/{key}".encode()

    def _record(self, path: bytes) -> RecordKey | None:
        rest = path[len(self._prefix) :].decode("utf-8", "replace")
        kind, sep, key = rest.partition("/")
        return (kind, key) if sep and kind in KINDS else None

    # -- StateStore

    def load(self) -> dict[str, dict[str, bytes]]:
        if self._closed:
            raise StoreError(f"etcd store {self.group}: read after close")
        kvs, _ = self.client.range(self._prefix)
        return self._decode_all(kvs)

    def _decode_all(self, kvs: list[EtcdKv]) -> dict[str, dict[str, bytes]]:
        records: dict[str, dict[str, bytes]] = {}
        for kv in kvs:
            record = self._record(kv.key)
            if record is None:
                log.warning("etcd store %s: ignoring %r, not a record", self.group, kv.key)
                continue
            kind, key = record
            records.setdefault(kind, {})[key] = self._state_key.open(kind, key, kv.value)
        return records

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        if self._closed:
            raise StoreError(f"etcd store {self.group}: written after close")
        epoch = self._epoch
        election = self.election
        if election is not None and not (election.may_write() and election.epoch == epoch):
            reason = election.fenced_reason if not election.epoch else "owned again since"
            raise StoreFenced(f"etcd store {self.group}: this node no longer owns the state "
                              f"of epoch {epoch} ({reason})")  # fmt: skip
        if not epoch:
            raise StoreFenced(f"etcd store {self.group}: this node never owned the state")
        ops = [put_op(self._path(kind, key), self._state_key.seal(kind, key, bytes(value)))
               for (kind, key), value in puts.items()]  # fmt: skip
        gone = {record for record in deletes if record not in puts}
        ops += [delete_op(self._path(kind, key)) for kind, key in sorted(gone)]
        if not ops:
            return
        if len(ops) > MAX_TXN_OPS:
            raise StoreError(
                f"etcd store {self.group}: a batch of {len(ops)} records; etcd "
                f"applies at most {MAX_TXN_OPS} in one txn (--max-txn-ops)"
            )
        succeeded, _, revision = self.client.txn([create_revision_is(self._owner, epoch)], ops)
        if not succeeded:
            if self.election is not None:
                self.election.fence("etcd refused a write: another node owns the state")
            raise StoreFenced(f"etcd store {self.group}: etcd refused the write: the owner key "
                              f"is no longer this node's (epoch {epoch})")  # fmt: skip
        self.last_revision = revision

    def close(self) -> None:
        self._closed = True
        self.stop_following()

    # -- standby

    def follow(self) -> None:
        """Read the state once, then keep `mirror()` up to date by watch, in a thread. A
        watch that breaks (its etcd member gone) is opened again on another endpoint,
        after reading the state again: nothing missed in between is lost."""
        self._following.clear()
        self._watch = self._resync()
        self._follower = threading.Thread(
            target=self._follow, name=f"etcd-follow-{self.group}", daemon=True
        )
        self._follower.start()

    def _resync(self) -> EtcdWatch:
        kvs, revision = self.client.range(self._prefix)
        records = self._decode_all(kvs)
        watch = self.client.watch(self._prefix, revision + 1)
        with self._mirror_changed:
            self._mirror = records
            self._revision = max(self._revision, revision)
            self._mirror_changed.notify_all()
        return watch

    def _follow(self) -> None:
        watch = self._watch
        while watch is not None and not self._following.is_set():
            try:
                for events in watch:
                    with self._mirror_changed:
                        for event in events:
                            self._apply(event)
                        self._mirror_changed.notify_all()
            except StoreError as e:
                if self._following.is_set():
                    return
                log.warning("etcd store %s: following broke: %s; reading again", self.group, e)
                self.follow_error = e
            watch.close()
            watch = None
            while watch is None and not self._following.wait(_FOLLOW_RETRY):
                try:
                    watch = self._resync()
                except StoreError as e:
                    log.warning("etcd store %s: following: %s", self.group, e)
            self._watch = watch
            if self._following.is_set() and watch is not None:
                watch.close()

    def _apply(self, event: EtcdEvent) -> None:
        record = self._record(event.kv.key)
        if record is None:
            return
        kind, key = record
        if event.deleted:
            self._mirror.get(kind, {}).pop(key, None)
            if kind in self._mirror and not self._mirror[kind]:
                del self._mirror[kind]
        else:
            value = self._state_key.open(kind, key, event.kv.value)
            self._mirror.setdefault(kind, {})[key] = value
        self._revision = max(self._revision, event.kv.mod_revision)

    def mirror(self) -> dict[str, dict[str, bytes]]:
        """The state as last seen by `follow`."""
        with self._mirror_lock:
            return {kind: dict(records) for kind, records in self._mirror.items()}

    @property
    def applied_revision(self) -> int:
        """The etcd revision the mirror has applied every change of the state up to."""
        with self._mirror_lock:
            return self._revision

    def wait_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the mirror has seen `revision`; whether it has."""
        with self._mirror_changed:
            return self._mirror_changed.wait_for(lambda: self._revision >= revision, timeout)

    def stop_following(self) -> None:
        self._following.set()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None
