"""When each SA's lifetimes fall due: a timer wheel of whole seconds, so that aging looks
only at the SAs whose time has come and at those whose traffic may have used them up.

Theory of operation
-------------------
`Sadb.age` runs once a second, holding the interpreter lock the packet threads need;
walking every SA there cost 8-12% of a packet thread's samples at 10,000 SAs. The wheel
keeps, for each whole second, the SAs whose next deadline falls in it; a pass takes the
seconds up to `now` and no other SA.

Deadlines come in two kinds (RFC 2367 §2.3.4):

* times: add time plus a lifetime's add time; first use plus its use time, once the SA
  has been used; the last use (or the add time) plus the idle time. They are known as
  soon as the SA, its lifetimes or its first use are, and go on the wheel.
* bytes: only traffic moves them. `SecurityAssociation.account` compares the byte count
  with the SA's `notice_at` (the smallest byte limit that applies, or 0 where the next
  packet matters: an unused SA with a use-time limit, an SA reported idle) and, past
  it, puts the SA on `traffic` for the next pass: one comparison per packet.

The wheel's entries are hints, never decisions: the pass evaluates each SA it takes
under the SA's lock exactly as a walk of every SA would (`Sadb._due`), then schedules
its next deadline. So an entry may come early (a lifetime made longer by UPDATE, an SA
used since its idle deadline was set) and costs one evaluation; it must never come late,
which is why every change that can bring a deadline closer (an SA inserted, UPDATE,
X_UPDATEPAIR, a state change by aging, traffic past `notice_at`) schedules the SA again.
An SA has at most one entry, under the second `expiry_at` names: a closer deadline moves
it, a later one leaves it to come early, and none at all (the usual UPDATE of a LARVAL
SA, with no lifetimes) takes it off. An SA that leaves the SADB leaves the wheel at
once, so the wheel never keeps a deleted SA (and its keys) alive.
"""

from __future__ import annotations

import heapq
import threading

from larval.pfkey import SaState
from larval.sadb.sa import NEVER_NOTICE, SecurityAssociation

__all__ = ["ExpiryWheel", "next_deadline"]

_LARVAL, _MATURE, _DEAD = SaState.LARVAL, SaState.MATURE, SaState.DEAD


def next_deadline(sa: SecurityAssociation) -> tuple[float | None, int]:
    """Under the SA's lock: the earliest time one of its lifetimes may fall due without
    more traffic (None: none may), and the byte count at which traffic should be noticed.

    A byte limit reached already counts as due at the last use.
    """
    state = sa.state
    hard, soft = sa.hard, sa.soft
    idle_add, idle_use = sa.idle_add, sa.idle_use
    if state == _DEAD or (hard is None and soft is None and not idle_add and not idle_use):
        return None, NEVER_NOTICE  # the usual UPDATE of a LARVAL SA: no lifetime at all
    if state == _LARVAL and hard is not None and not hard.usetime and not hard.bytes:
        # A LARVAL SA (GETSPI's): only its hard lifetime counts, the larval add time.
        return (sa.addtime + hard.addtime if hard.addtime else None), NEVER_NOTICE
    deadline: float | None = None
    notice = NEVER_NOTICE
    for lt in (hard, soft if state == _MATURE else None):
        if lt is None:
            continue
        if lt.addtime:
            when = sa.addtime + lt.addtime
            if deadline is None or when < deadline:
                deadline = when
        if lt.usetime:
            if sa.usetime:
                when = sa.usetime + lt.usetime
                if deadline is None or when < deadline:
                    deadline = when
            else:
                notice = 0  # the first use starts the clock
        if lt.bytes:
            if sa.bytes >= lt.bytes:
                when = sa.lastuse
                if deadline is None or when < deadline:
                    deadline = when
            elif lt.bytes < notice:
                notice = lt.bytes
    if (idle_add or idle_use) and state != _LARVAL:
        idle = min(idle_add, idle_use) if idle_add and idle_use else idle_add or idle_use
        last = sa.lastuse or sa.addtime
        if sa.idle_reported != last:
            when = last + idle
            if deadline is None or when < deadline:
                deadline = when
        else:
            notice = 0  # reported idle: the next packet starts a new quiet spell
    return deadline, notice


class ExpiryWheel:
    """The SAs of one SADB by the whole second of their next deadline."""

    __slots__ = ("_buckets", "_lock", "_queued", "_seconds", "traffic")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per second, its SAs (a dict as an ordered set: an SA leaves in O(1)).
        self._buckets: dict[int, dict[SecurityAssociation, None]] = {}
        # A heap of the keys of `_buckets` (and stale ones: a bucket emptied goes, its
        # second stays until due), each second once: `_queued` holds those on it, so
        # that a bucket emptied and made again in one second (a GETSPI's SA, matured
        # by its UPDATE before the next GETSPI) adds nothing to the heap.
        self._seconds: list[int] = []
        self._queued: set[int] = set()
        # SAs whose traffic went past their `notice_at`, appended by the packet threads
        # (an atomic append) and taken by the next pass.
        self.traffic: list[SecurityAssociation] = []

    def __len__(self) -> int:
        """SAs on the wheel."""
        return sum(len(b) for b in self._buckets.values())

    def enter(self, sa: SecurityAssociation) -> None:
        """`sa` joined the SADB: its traffic is noticed here from now on, and its first
        deadline is scheduled."""
        with sa.lock:
            sa.expiry = self
            hard = sa.hard
            if (
                sa.state != _LARVAL
                or sa.expiry_at is not None
                or hard is None
                or not hard.addtime
                or hard.usetime
                or hard.bytes
            ):
                self.reschedule(sa)
                return
            # GETSPI's SA, the usual case: `reschedule` as `next_deadline` answers a LARVAL
            # SA with the larval lifetime, without the calls.
            sa.notice_at = NEVER_NOTICE
            second = int((sa.addtime + hard.addtime) // 1)
            with self._lock:
                sa.expiry_at = second
                bucket = self._buckets.get(second)
                if bucket is None:
                    self._new_bucket(sa, second)
                else:
                    bucket[sa] = None

    def leave(self, sa: SecurityAssociation) -> None:
        """`sa` left the SADB: its entry goes."""
        with self._lock:
            self._unlink(sa)

    def reschedule(self, sa: SecurityAssociation) -> None:
        """Under the SA's lock, after anything that may bring a deadline of `sa` closer:
        its next deadline goes on the wheel, unless its entry there comes at or before
        it already (that one's evaluation schedules the next)."""
        deadline, sa.notice_at = next_deadline(sa)
        if deadline is None:
            if sa.expiry_at is not None:
                # Nothing left to come (an UPDATE without lifetimes ended the larval
                # one): the entry goes now rather than come early for nothing.
                with self._lock:
                    self._unlink(sa)
            return
        self._enter_at(sa, int(deadline // 1))

    def reschedule_at(self, sa: SecurityAssociation, deadline: float) -> None:
        """`reschedule`, for a caller that knows what `next_deadline` answers: `deadline`,
        and no byte count to notice (an SA whose limits are add times alone)."""
        sa.notice_at = NEVER_NOTICE
        self._enter_at(sa, int(deadline // 1))

    def _enter_at(self, sa: SecurityAssociation, second: int) -> None:
        """Put `sa` in the bucket of `second`, unless it is due at or before it already."""
        with self._lock:
            at = sa.expiry_at
            if at is not None:
                if at <= second:
                    return
                self._unlink(sa)
            sa.expiry_at = second
            bucket = self._buckets.get(second)
            if bucket is None:
                self._new_bucket(sa, second)
            else:
                bucket[sa] = None

    def _new_bucket(self, sa: SecurityAssociation, second: int) -> None:
        """Under the wheel's lock: the bucket of `second`, which has none, holding `sa`."""
        self._buckets[second] = {sa: None}
        if second not in self._queued:
            self._queued.add(second)
            heapq.heappush(self._seconds, second)

    def _unlink(self, sa: SecurityAssociation) -> None:
        """Under the wheel's lock: take `sa`'s entry out, if it has one."""
        at = sa.expiry_at
        if at is None:
            return
        sa.expiry_at = None
        bucket = self._buckets.get(at)
        if bucket is not None:
            bucket.pop(sa, None)
            if not bucket:
                del self._buckets[at]  # its second stays on the heap, skipped when due

    def take(self, now: float) -> list[SecurityAssociation]:
        """The SAs to evaluate at `now`: those whose entry's second has begun, which lose
        it (the caller schedules each again), and those whose traffic was noticed. Each
        once."""
        found: dict[SecurityAssociation, None] = {}
        with self._lock:
            seconds, buckets, queued = self._seconds, self._buckets, self._queued
            while seconds and seconds[0] <= now:
                second = heapq.heappop(seconds)
                queued.discard(second)
                bucket = buckets.pop(second, None)
                if bucket:
                    for sa in bucket:
                        sa.expiry_at = None
                    found.update(bucket)
        traffic = self.traffic
        while traffic:
            try:
                found[traffic.pop()] = None  # atomic: an append meanwhile is kept
            except IndexError:
                break
        return list(found)
