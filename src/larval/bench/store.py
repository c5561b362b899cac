"""State store benchmark: batches of 16 records written per second to the SQLite store
(WAL, synchronous=FULL, every value sealed) beside the in-memory store, with the
SQLite write's latency percentiles. A batch is what a replay checkpoint or a round of
sequence-number reservations writes: 16 records of 64 bytes, one transaction."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from larval.store import ESP_REPLAY, ESP_SEQ, MemoryStore, RecordKey
from larval.store.crypto import StateKey
from larval.store.sqlite import SqliteStore

BATCH = 16
VALUE = bytes(64)


def _batches(n: int) -> list[dict[RecordKey, bytes]]:
    # The same 16 SAs' records rewritten over and over, as a running daemon does.
    kinds = (ESP_SEQ, ESP_REPLAY)
    return [{(kinds[i % 2], f"{i:08x}@192.0.2.1"): VALUE for i in range(BATCH)} for _ in range(n)]


def _timed(store: Any, batches: list[dict[RecordKey, bytes]]) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for puts in batches:
        t = time.perf_counter()
        store.write(puts)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, sorted(latencies)


def _us(latencies: list[float], q: float) -> float:
    return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6, 1)


def run(n_batches: int = 5000) -> dict[str, Any]:
    batches = _batches(n_batches)
    memory_s, _ = _timed(MemoryStore(), batches)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(os.path.join(tmp, "state.db"), StateKey(os.urandom(32)))
        sqlite_s, latencies = _timed(store, batches)
        store.close()
    return {
        "sqlite_batches_per_s": round(n_batches / sqlite_s),
        "sqlite_records_per_s": round(n_batches * BATCH / sqlite_s),
        "sqlite_write_p50_us": _us(latencies, 0.5),
        "sqlite_write_p99_us": _us(latencies, 0.99),
        "memory_batches_per_s": round(n_batches / memory_s),
        "note": (
            f"{n_batches} batches of {BATCH} records of {len(VALUE)} bytes, one writer; "
            "SQLite in WAL mode, synchronous=FULL, AES-GCM sealed values, in a temporary "
            "directory"
        ),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
