"""Log lines that anyone on the network can provoke, limited per source.

A flood of malformed PF_KEY messages or IKE openers must not become a flood of log
lines: each source may log `burst` lines per `interval` seconds, and all sources
together `total` lines; what is held back is counted and reported in one line, "N more
like this suppressed", when the source's window ends (for the overall limit, one line
for all sources). Time comes in as `now`, as
everywhere below the I/O layers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["LogLimiter"]


@dataclass
class _Window:
    start: float
    lines: int = 0
    suppressed: int = 0


class LogLimiter:
    """Per-source (and overall) limits on the lines written to one logger."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        total: int = 50,
        interval: float = 60.0,
        max_sources: int = 4096,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.total = total
        self.interval = interval
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Window] = OrderedDict()
        self._all = _Window(start=float("-inf"))
        self.suppressed = 0  # lines held back since start, every source together

    def log(self, now: float, source: str, level: int, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `source` (or everyone) is over its limit; True if logged."""
        self.flush(now)
        window = self._sources.get(source)
        if window is None:
            window = self._sources[source] = _Window(start=now)
            while len(self._sources) > self.max_sources:
                _, old = self._sources.popitem(last=False)
                self._all.suppressed += old.suppressed  # counted, without a line of its own
        if window.lines >= self.burst:
            window.suppressed += 1
        elif self._all.lines >= self.total:
            # Held back for everyone's sake: one count for all sources, not a line each.
            self._all.suppressed += 1
        else:
            window.lines += 1
            self._all.lines += 1
            self.logger.log(level, msg, *args)
            return True
        self.suppressed += 1
        return False

    def flush(self, now: float) -> None:
        """Report, and forget, the sources whose window has ended (they are kept in the
        order their windows started), and start a new overall window when it is due."""
        if now - self._all.start >= self.interval:
            self._report("all sources", self._all)
            self._all = _Window(start=now)
        while self._sources:
            source, window = next(iter(self._sources.items()))
            if now - window.start < self.interval:
                break
            del self._sources[source]
            self._report(source, window)

    def _report(self, source: str, window: _Window) -> None:
        if window.suppressed:
            self.logger.warning(
                "%s: %d more like this suppressed in %.0f s",
                source,
                window.suppressed,
                self.interval,
            )
