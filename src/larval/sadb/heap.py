"""Keeping Python's cyclic garbage collector off a large SADB.

Every SA is a tracked object with a lock, and so are the containers around it; at a
million SAs each full collection walks them all, and full collections come as the heap
grows (CPython runs one when the objects that survived since the last one reach a
quarter of those that survived before), so filling a large SADB spends a good part of
its time in the collector. `GcFreezer` calls `gc.freeze()` as the SADB grows: the objects
alive then, the SAs among them, move to the permanent generation, which no collection
walks. They are still freed by reference counting when the SADB lets go of them; only a
frozen reference cycle would outlive its use, and SAs do not make cycles (their
dataplane state refers to keys and counters, not back to the SA).

`gc.freeze()` acts on the whole process: it is for a process whose SADB is what grows
(the daemon, the benchmark), off by default, and the first freeze waits for a large
SADB (`DEFAULT_FREEZE_FROM` SAs), so a small one never touches the collector. Whatever
else is alive at a freeze is frozen too: an object of the key manager that later
becomes an unreachable cycle is not reclaimed until `gc.unfreeze()`. That is bounded (a
freeze comes only a quarter past the largest size yet: 13 up to a million SAs) but not
nothing; `GcFreezer.freezes` counts them.

A freeze is undone (`gc.unfreeze()`) when the SADB shrinks well below the size of the
last one (`DEFAULT_SHRINK`: to half of it): the SAs of a large SADB that has emptied out
are freed by reference counting anyway, but whatever else the freezes kept away from the
collector comes back under it, and the next freeze waits for the SADB to grow again.
The gap between the two thresholds (a quarter up to freeze, a half down to unfreeze)
keeps an SADB that hovers near one size from freezing and unfreezing in turn.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["DEFAULT_FREEZE_FROM", "DEFAULT_GROWTH", "DEFAULT_SHRINK", "GcFreezer"]

#: The SA count at which the first freeze happens.
DEFAULT_FREEZE_FROM = 65_536
#: The growth since the last freeze that calls for the next (CPython's own full
#: collections come at a growth of about 1.25 as well).
DEFAULT_GROWTH = 1.25
#: The fraction of the last freeze's SA count below which the freezes are undone.
DEFAULT_SHRINK = 0.5


class GcFreezer:
    """Freezes the collector's view of the heap each time the SADB has grown by `growth`
    since the last freeze, from `freeze_from` SAs on; undoes the freezes when it has
    shrunk to `shrink` of the last freeze's size."""

    __slots__ = (
        "_freeze",
        "_unfreeze",
        "freeze_from",
        "freezes",
        "growth",
        "next_at",
        "shrink",
        "unfreeze_at",
        "unfreezes",
    )

    def __init__(
        self,
        freeze_from: int = DEFAULT_FREEZE_FROM,
        growth: float = DEFAULT_GROWTH,
        freeze: Callable[[], None] = gc.freeze,
        *,
        shrink: float = DEFAULT_SHRINK,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        if freeze_from < 1 or growth <= 1:
            raise ValueError(f"freeze from {freeze_from} SAs at growth {growth}: need >= 1, > 1")
        if not 0 < shrink < 1:
            raise ValueError(f"unfreeze at {shrink} of the last freeze: need > 0, < 1")
        self.freeze_from = freeze_from
        self.growth = growth
        self.shrink = shrink
        self._freeze = freeze
        self._unfreeze = unfreeze
        #: The SA count that calls for the next freeze; the caller compares against it.
        self.next_at = freeze_from
        #: The SA count at or below which the freezes are undone; -1 while none is in
        #: force. The caller compares against it.
        self.unfreeze_at = -1
        self.freezes = 0
        self.unfreezes = 0

    def grown(self, count: int) -> bool:
        """The SADB holds `count` SAs: freeze if that reached `next_at`. True if it did."""
        if count < self.next_at:
            return False
        self._freeze()
        self.freezes += 1
        self.next_at = max(self.freeze_from, int(count * self.growth) + 1)
        self.unfreeze_at = int(count * self.shrink)
        return True

    def shrunk(self, count: int) -> bool:
        """The SADB holds `count` SAs: undo the freezes if that is at or below
        `unfreeze_at`. True if it did."""
        if count > self.unfreeze_at:
            return False
        self._unfreeze()
        self.unfreezes += 1
        self.unfreeze_at = -1
        self.next_at = max(self.freeze_from, int(count * self.growth) + 1)
        return True
