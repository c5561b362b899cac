"""Acquire records: outbound packets waiting for an SA that key management is negotiating.

The first packet that needs a missing SA opens a record and makes one ACQUIRE; later
packets for the same flow join the record (bounded, oldest dropped) without another
ACQUIRE. The record ends when an ADD or UPDATE carrying its sequence number (or, for
manual keying, any new SA in its direction) installs the SA, when key management answers
the ACQUIRE with an errno, or when it times out (RFC 2367 §3.1.6).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable

from larval.sadb.counters import SadbCounters
from larval.sadb.sa import Packet

DEFAULT_ACQUIRE_HOLD_LIMIT = 4
DEFAULT_ACQUIRE_TIMEOUT = 15.0  # seconds


class AcquireRecord:
    """Packets waiting on one ACQUIRE."""

    __slots__ = ("dst", "expires", "key", "packets", "satype", "seq", "src")

    def __init__(
        self, key: Hashable, seq: int, satype: int, src: bytes, dst: bytes, expires: float
    ) -> None:
        self.key = key
        self.seq = seq
        self.satype = satype
        self.src = src
        self.dst = dst
        self.expires = expires
        self.packets: deque[Packet] = deque()

    def __repr__(self) -> str:
        return f"<AcquireRecord seq={self.seq} packets={len(self.packets)}>"


class AcquireTable:
    """The open acquire records, by flow key and by sequence number."""

    def __init__(
        self,
        counters: SadbCounters,
        hold_limit: int = DEFAULT_ACQUIRE_HOLD_LIMIT,
        timeout: float = DEFAULT_ACQUIRE_TIMEOUT,
    ) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, AcquireRecord] = {}
        self._by_seq: dict[int, AcquireRecord] = {}
        self._counters = counters
        self.hold_limit = hold_limit
        self.timeout = timeout
        # Sequence numbers the stack originates count down from 2**32 - 1, far from
        # the small numbers key managers count up from.
        self._next_seq = 0xFFFFFFFF

    def __len__(self) -> int:
        return len(self._by_key)

    def hold(
        self, key: Hashable, satype: int, src: bytes, dst: bytes, packet: Packet, now: float
    ) -> AcquireRecord | None:
        """Hold `packet` on the record for `key`; the record if it is new (send an ACQUIRE)."""
        counters = self._counters
        with self._lock:
            record = self._by_key.get(key)
            created = record is None
            if record is None:
                seq = self._next_seq
                self._next_seq = seq - 1 if seq > 0x80000000 else 0xFFFFFFFF
                record = AcquireRecord(key, seq, satype, src, dst, now + self.timeout)
                self._by_key[key] = record
                self._by_seq[seq] = record
                counters.add("acquires")
            elif len(record.packets) >= self.hold_limit:
                record.packets.popleft()
                counters.add("acquire_replaced")
            record.packets.append(packet)
            counters.add("acquire_held")
        return record if created else None

    def take_for_sa(self, satype: int, src: bytes, dst: bytes) -> list[AcquireRecord]:
        """Close and return the records a new outbound SA from `src` to `dst` satisfies.

        The ACQUIRE's sequence number, carried by the ADD or UPDATE, need not be matched
        as well: the record waits for an SA in this direction, and the inbound SA of the
        pair (same sequence number, reversed addresses) must not release it (illumos
        esp_add_sa_finish matches the destination for the same reason).
        """
        if not self._by_key:
            return []  # the common case, without the lock
        with self._lock:
            found = [
                r
                for r in self._by_key.values()
                if r.satype == satype and r.src == src and r.dst == dst
            ]
            for record in found:
                self._remove(record)
        if found:
            self._counters.add("acquire_released", sum(len(r.packets) for r in found))
        return found

    def fail(self, seq: int) -> AcquireRecord | None:
        """Key management gave up on ACQUIRE `seq`: drop the record and its packets."""
        with self._lock:
            record = self._by_seq.get(seq)
            if record is not None:
                self._remove(record)
        if record is not None:
            self._counters.add("acquire_expired", len(record.packets))
        return record

    def age(self, now: float) -> list[AcquireRecord]:
        """Drop and return the records whose time is up."""
        with self._lock:
            due = [r for r in self._by_key.values() if r.expires <= now]
            for record in due:
                self._remove(record)
        if due:
            self._counters.add("acquire_expired", sum(len(r.packets) for r in due))
        return due

    def flush(self) -> None:
        with self._lock:
            dropped = sum(len(r.packets) for r in self._by_key.values())
            self._by_key.clear()
            self._by_seq.clear()
        if dropped:
            self._counters.add("acquire_expired", dropped)

    def _remove(self, record: AcquireRecord) -> None:
        del self._by_key[record.key]
        del self._by_seq[record.seq]
