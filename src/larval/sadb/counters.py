"""The SADB's event counters, readable by tests and by `larval status`."""

from __future__ import annotations

import threading

COUNTER_NAMES = (
    "held",  # inbound packets held on a LARVAL SA
    "released",  # held packets released by UPDATE
    "replaced",  # held packets dropped because a LARVAL SA's queue was full
    "expired",  # held packets dropped because their LARVAL SA died
    "lost_races",  # packets that found their SA LARVAL, then matured before the hold
    "acquires",  # acquire records opened (one ACQUIRE each)
    "acquire_held",  # outbound packets held on an acquire record
    "acquire_replaced",  # held outbound packets dropped because the record was full
    "acquire_released",  # held outbound packets released by ADD or UPDATE
    "acquire_expired",  # held outbound packets dropped with a timed-out or failed record
)


class SadbCounters:
    """Named counters behind one lock; they change on slow paths only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
