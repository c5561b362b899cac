"""The state store: what `larval run` keeps so that it comes back as it was.

Everything that must survive a restart (or move to another gateway) is a record: a
`kind`, a `key` unique within the kind, and a value of bytes. The kinds are named
below; each layer writes and reads its own and knows nothing of the others'.

Theory of operation
-------------------
* One interface, `StateStore`, several backends: `MemoryStore` here (tests, and
  `larval run` without `[daemon] state`), SQLite on disk (`larval.store.sqlite`), etcd
  for several gateways (`larval.store.etcd`).
* A write is a batch of puts and deletes applied all or nothing; when `write` returns
  the batch is durable. Callers batch: nothing on the packet path writes per packet
  (sequence numbers are reserved in blocks, replay windows checkpointed on a timer).
* A backend that can lose ownership (etcd) fences every write: `write` raises
  `StoreFenced` once this node may no longer write, and the caller stops sending.
* Values are opaque to the store. A backend that keeps them outside this process
  encrypts each one (AES-GCM, the record's kind and key as associated data), so a
  value cannot be read, or moved to another record, without the state key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from larval.errors import LarvalError

__all__ = [
    "CHILD_SA",
    "ESP_REPLAY",
    "ESP_SEQ",
    "IKE_SA",
    "KINDS",
    "LEASE",
    "MemoryStore",
    "RecordKey",
    "StateStore",
    "StoreError",
    "StoreFenced",
]

#: An IKE SA: its connection, local address and `IkeSaState.to_json()` (`larval.keymgr.persist`);
#: key: "SPIi-hex/SPIr-hex".
IKE_SA = "ike_sa"
#: A CHILD_SA as the key manager installed it (both directions' SAs); key: inbound SPI hex.
CHILD_SA = "child_sa"
#: An outbound ESP SA's reserved sequence number high-water mark; key: "SPI-hex@dst".
ESP_SEQ = "esp_seq"
#: An inbound ESP SA's anti-replay checkpoint; key: "SPI-hex@dst".
ESP_REPLAY = "esp_replay"
#: A pool lease; key: "pool/address".
LEASE = "lease"

KINDS = (IKE_SA, CHILD_SA, ESP_SEQ, ESP_REPLAY, LEASE)

#: (kind, key)
RecordKey = tuple[str, str]


class StoreError(LarvalError):
    """The store cannot be opened, read or written: the message names the store and why."""


class StoreFenced(StoreError):
    """This node no longer owns the state (another took over, or its lease may have
    lapsed): nothing more may be written or sent."""


class StateStore(Protocol):
    """What every backend offers."""

    def load(self) -> dict[str, dict[str, bytes]]:
        """Every record, by kind and then key (a kind with none is absent)."""
        ...

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        """Apply the batch all or nothing; durable when this returns. A key both put and
        deleted is put. Raises `StoreFenced` or `StoreError`."""
        ...

    def close(self) -> None:
        """Flush and release the backend; further writes raise `StoreError`."""
        ...


class MemoryStore:
    """The store in this process's memory: what a restart loses, for tests and for a
    daemon without `[daemon] state`."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, bytes]] = {}
        self._closed = False
        self.writes = 0  # batches written, for tests and benchmarks

    def __repr__(self) -> str:
        count = sum(len(v) for v in self._records.values())
        return f"<MemoryStore {count} records>"

    def load(self) -> dict[str, dict[str, bytes]]:
        return {kind: dict(records) for kind, records in self._records.items() if records}

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        if self._closed:
            raise StoreError("memory store: written after close")
        for kind, key in deletes:
            if (kind, key) not in puts:
                self._records.get(kind, {}).pop(key, None)
        for (kind, key), value in puts.items():
            self._records.setdefault(kind, {})[key] = bytes(value)
        self.writes += 1

    def close(self) -> None:
        self._closed = True
