"""ESP sequence numbers and replay windows that survive a restart, through a state store.

Theory of operation
-------------------
larval's AES-GCM and ChaCha20-Poly1305 ESP take the sequence number as the packet's IV
(RFC 4106 §3): an SA that sends a number twice under one key reuses a nonce. So an
outbound SA sends only numbers below a high-water mark that is durable in the store
(record `ESP_SEQ`, the mark as 8 bytes); numbers are reserved a block at a time, the
next block asked for when half of the current one is used. A restart resumes at the
stored mark, above every number sent before it.

Inbound, each anti-replay window is checkpointed (record `ESP_REPLAY`) every
`checkpoint_interval` seconds and after every `checkpoint_packets` packets, only the
windows that changed, so that a restarted stack rejects what it accepted before the
checkpoint.

The packet path never writes: it asks (`EspSa.reserve` takes note and wakes the writer)
and the one writer, `EspStateWriter` (its own thread, or `run_once` driven by a test),
batches every SA's reservations, checkpoints and deletions into one `StateStore.write`,
then grants the marks. A packet that would pass its mark before the grant is held for
at most `hold` seconds, then dropped as ``seq_unreserved``. A store that fences this
node (`StoreFenced`) revokes every SA: nothing more is sent, each packet counted as
``fenced``.

Record keys are "SPI-hex@dst" (`record_key`); `load_esp_state` reads the stored marks
and checkpoints at start, for the key manager to ADD its SAs with (X_LARVAL_SEQ_STATE,
`seq_state_extension`).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from larval.esp import EspSa
from larval.pfkey import SEQ_STATE_NEXT, SEQ_STATE_REPLAY, SadbXSeqState
from larval.sadb import SecurityAssociation
from larval.store import ESP_REPLAY, ESP_SEQ, RecordKey, StateStore, StoreError, StoreFenced

if TYPE_CHECKING:
    from threading import Lock

__all__ = [
    "CHECKPOINT_INTERVAL",
    "CHECKPOINT_PACKETS",
    "SEQ_BLOCK",
    "EspStateWriter",
    "EspStoredState",
    "ReplayCheckpoint",
    "decode_replay",
    "encode_replay",
    "load_esp_state",
    "record_key",
    "seq_state_extension",
]

log = logging.getLogger("larval.stack")

#: Sequence numbers reserved at a time (the next block is asked for at half of it).
SEQ_BLOCK = 1 << 14
#: Seconds between replay window checkpoints.
CHECKPOINT_INTERVAL = 0.1
#: Packets received on one SA that make a checkpoint due before the timer.
CHECKPOINT_PACKETS = 16384
#: Seconds a packet waits for its SA's next block before it is dropped.
HOLD = 0.02

_U64 = struct.Struct(">Q")
_MARK_MAX = (1 << 64) - 1  # ESN: the mark is 64 bits
_REPLAY = struct.Struct(">QH")  # top, window bits; then the bitmap, ceil(bits / 8) bytes


def record_key(spi: int, dst: bytes) -> str:
    """The store key of one SA: "SPI-hex@dst", e.g. "c0ffee01@192.0.2.2"."""
    return f"{spi:08x}@{ipaddress.ip_address(dst)}"


def _parse_key(key: str) -> tuple[int, bytes]:
    spi, _, dst = key.partition("@")
    return int(spi, 16), ipaddress.ip_address(dst).packed


@dataclass(frozen=True, slots=True)
class ReplayCheckpoint:
    """An inbound SA's anti-replay state: `top` received, and `top - i` for each bit i."""

    top: int
    bits: int
    bitmap: int


def encode_replay(checkpoint: ReplayCheckpoint) -> bytes:
    return _REPLAY.pack(checkpoint.top, checkpoint.bits) + checkpoint.bitmap.to_bytes(
        (checkpoint.bits + 7) // 8, "big"
    )


def decode_replay(value: bytes, where: str = "ESP_REPLAY record") -> ReplayCheckpoint:
    """Raises `StoreError` naming `where` if the value is not a checkpoint."""
    if len(value) < _REPLAY.size:
        raise StoreError(f"{where}: {len(value)} bytes, at least {_REPLAY.size}")
    top, bits = _REPLAY.unpack_from(value)
    if len(value) != _REPLAY.size + (bits + 7) // 8:
        raise StoreError(f"{where}: {len(value)} bytes for a window of {bits} bits")
    bitmap = int.from_bytes(value[_REPLAY.size :], "big")
    if bitmap >> bits:
        raise StoreError(f"{where}: bitmap wider than its {bits} bits")
    return ReplayCheckpoint(top, bits, bitmap)


@dataclass(frozen=True, slots=True)
class EspStoredState:
    """What `load_esp_state` found, by (SPI, packed destination)."""

    marks: dict[tuple[int, bytes], int]
    replay: dict[tuple[int, bytes], ReplayCheckpoint]

    def seq_state(self, spi: int, dst: bytes) -> SadbXSeqState | None:
        """The X_LARVAL_SEQ_STATE to ADD the SA (SPI, dst) with, if anything is stored."""
        return seq_state_extension(self.marks.get((spi, dst)), self.replay.get((spi, dst)))


def load_esp_state(store: StateStore) -> EspStoredState:
    """The reserved marks and replay checkpoints in `store` (at start, before the key
    manager installs its SAs again). A record that cannot be read raises `StoreError`
    naming its key."""
    records = store.load()
    marks: dict[tuple[int, bytes], int] = {}
    replay: dict[tuple[int, bytes], ReplayCheckpoint] = {}
    for key, value in records.get(ESP_SEQ, {}).items():
        where = f"ESP_SEQ record {key!r}"
        try:
            sa_key = _parse_key(key)
        except ValueError as e:
            raise StoreError(f"{where}: not SPI-hex@address") from e
        if len(value) != _U64.size:
            raise StoreError(f"{where}: {len(value)} bytes, expected 8")
        marks[sa_key] = _U64.unpack(value)[0]
    for key, value in records.get(ESP_REPLAY, {}).items():
        where = f"ESP_REPLAY record {key!r}"
        try:
            sa_key = _parse_key(key)
        except ValueError as e:
            raise StoreError(f"{where}: not SPI-hex@address") from e
        replay[sa_key] = decode_replay(value, where)
    return EspStoredState(marks, replay)


def seq_state_extension(
    mark: int | None, checkpoint: ReplayCheckpoint | None
) -> SadbXSeqState | None:
    """X_LARVAL_SEQ_STATE for an ADD: the SA resumes sending at `mark` (a stored reserved
    high-water mark) and its window at `checkpoint`."""
    if mark is None and checkpoint is None:
        return None
    flags = (SEQ_STATE_NEXT if mark is not None else 0) | (
        SEQ_STATE_REPLAY if checkpoint is not None else 0
    )
    cp = checkpoint or ReplayCheckpoint(0, 0, 0)
    return SadbXSeqState(flags, max(mark, 1) if mark is not None else 0, 0, cp.top, cp.bits,
                         cp.bitmap)  # fmt: skip


class _Tracked:
    """One SA the writer looks after: its ESP state and the lock `encrypt` runs under."""

    __slots__ = ("esp", "lock", "written_replay")

    def __init__(self, esp: EspSa, lock: Lock) -> None:
        self.esp = esp
        self.lock = lock
        self.written_replay: tuple[int, int] = (esp.replay.top, esp.replay.bitmap)


class EspStateWriter:
    """The one writer of ESP_SEQ and ESP_REPLAY records: reservations, checkpoints and
    deletions of every SA, batched into one store write per round."""

    def __init__(
        self,
        store: StateStore,
        *,
        block: int = SEQ_BLOCK,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        checkpoint_packets: int = CHECKPOINT_PACKETS,
        hold: float = HOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if block < 2:
            raise ValueError(f"a reservation block of {block} sequence numbers; at least 2")
        self.store = store
        self.block = block
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_packets = checkpoint_packets
        self.hold = hold
        self._clock = clock
        self._cond = threading.Condition()
        self._tracked: dict[str, _Tracked] = {}
        self._wanted: set[str] = set()
        self._gone: set[str] = set()
        self._due = False
        self._rounds = 0  # write rounds finished; `wait_round` waits for the next
        self.fenced = False
        self.failing = False  # the last write failed (not fenced): packets are not held
        self.writes = 0
        self.write_errors = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<EspStateWriter {len(self._tracked)} SAs, block {self.block}>"

    # -- the packet path's side ---------------------------------------------------------

    def attach(
        self, sa: SecurityAssociation, esp: EspSa, lock: Lock, first: int, reserve_now: bool
    ) -> None:
        """A new ESP context: `esp` sends from `first` on, only what is reserved; its first
        block is asked for at once if `reserve_now` (an outbound SA), else by its first
        packet out."""
        key = record_key(sa.spi, sa.dst)
        tracked = _Tracked(esp, lock)

        def reserve(_: EspSa) -> None:
            with self._cond:
                self._wanted.add(key)
                self._cond.notify_all()

        with lock:
            esp.reserve_from(first, self.block // 2, reserve)
        with self._cond:
            self._gone.discard(key)
            self._tracked[key] = tracked
            if reserve_now:
                # Its first block now: the first packet should not have to wait for it.
                self._wanted.add(key)
                self._cond.notify_all()
        # After it is tracked: a `fence` now revokes it, one before is seen here.
        if self.fenced:
            with lock:
                esp.revoke()

    def forget(self, sa: SecurityAssociation) -> None:
        """The SA left the SADB: its records go in the next write."""
        key = record_key(sa.spi, sa.dst)
        with self._cond:
            self._tracked.pop(key, None)
            self._wanted.discard(key)
            self._gone.add(key)
            self._cond.notify_all()

    def checkpoint_due(self) -> None:
        """An SA received `checkpoint_packets` packets since its last checkpoint."""
        with self._cond:
            self._due = True
            self._cond.notify_all()

    def wait_round(self, timeout: float) -> bool:
        """Wait (outside any SA's lock) for the next write round; False if none came."""
        if self.fenced or self.failing:
            return False
        with self._cond:
            seen = self._rounds
            return self._cond.wait_for(lambda: self._rounds != seen, timeout)

    # -- the writer ---------------------------------------------------------------------

    def run_once(self) -> bool:
        """One round: write what is due, then grant; False if nothing was written."""
        with self._cond:
            wanted, self._wanted = self._wanted, set()
            gone, self._gone = self._gone, set()
            self._due = False
            tracked = dict(self._tracked)
        if self.fenced:
            self._finish_round()
            return False
        puts: dict[RecordKey, bytes] = {}
        grants: list[tuple[_Tracked, int]] = []
        for key in wanted:
            t = tracked.get(key)
            if t is None:
                continue
            with t.lock:
                esp = t.esp
                if esp.revoked:
                    continue
                mark = min(max(esp.seq_mark, esp.seq + 1) + self.block, _MARK_MAX)
            puts[(ESP_SEQ, key)] = _U64.pack(mark)
            grants.append((t, mark))
        replays: list[tuple[_Tracked, tuple[int, int]]] = []
        for key, t in tracked.items():
            with t.lock:
                window = t.esp.replay
                state = (window.top, window.bitmap)
                bits = window.size
            if state != t.written_replay and bits:
                puts[(ESP_REPLAY, key)] = encode_replay(ReplayCheckpoint(state[0], bits, state[1]))
                replays.append((t, state))
        deletes = [(kind, key) for key in gone for kind in (ESP_SEQ, ESP_REPLAY)]
        if not puts and not deletes:
            self._finish_round()
            return False
        try:
            self.store.write(puts, deletes)
        except StoreFenced as e:
            self.fence(str(e))
            return False
        except StoreError as e:
            self.write_errors += 1
            if not self.failing:
                log.error("ESP sequence numbers: %s; sending stops at each SA's mark", e)
            self.failing = True
            with self._cond:
                self._wanted |= wanted  # asked again next round
                self._gone |= gone
            self._finish_round()
            return False
        self.failing = False
        self.writes += 1
        for t, mark in grants:
            with t.lock:
                t.esp.grant(mark)
        for t, state in replays:
            t.written_replay = state
        self._finish_round()
        return True

    def fence(self, reason: str) -> None:
        """This node may no longer send (the store fenced it, or its owner knows it lost
        ownership): every SA is revoked at once and none is granted again."""
        if not self.fenced:
            log.error("ESP: %s; every SA stops sending", reason)
        self.fenced = True
        with self._cond:
            everything = list(self._tracked.values())
        for t in everything:
            with t.lock:
                t.esp.revoke()
        self._finish_round()

    def _finish_round(self) -> None:
        with self._cond:
            self._rounds += 1
            self._cond.notify_all()

    def start(self) -> None:
        """Run the writer in its own thread until `stop`."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="larval-esp-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is due once more, then end the thread."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join()
        self._thread = None

    def _run(self) -> None:
        next_checkpoint = self._clock() + self.checkpoint_interval
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or self._wanted or self._gone or self._due,
                    max(0.0, next_checkpoint - self._clock()),
                )
                stopping = self._stopping
            if self._clock() >= next_checkpoint:
                next_checkpoint = self._clock() + self.checkpoint_interval
            try:
                self.run_once()
            except Exception:  # the writer must outlive a backend's surprise
                log.exception("ESP state writer")
            if stopping:
                return
            if self.failing:
                time.sleep(min(self.checkpoint_interval, 0.1))  # no tight retry loop
