"""The SA tables of one SA type: inbound by (SPI, destination), pairs by (source, destination),
and outbound tunnel SAs by inner destination (`larval.sadb.inner`): under their local
address, for tunnels to any peer, and under their outer pair, for choosing among the SAs
between two gateways.

Each table is one dict split into lock stripes ("buckets", as the illumos fanouts are):
a writer takes the stripe of its key, so that a check-then-insert (an SPI collision
check, say) is atomic for that key while other stripes go on. Readers of the inbound
table do not lock: a single dict lookup is atomic in CPython (and in the free-threaded
build), and the dataplane makes one per packet.

The inbound table is keyed by (SPI, destination) in meaning and by SPI alone in memory:
almost every SPI is held by one SA, found by the SPI and then checked for its
destination, so the dataplane's lookup builds no tuple and the table keeps none. An SPI
that two or more SAs hold (to different destinations) maps to a `_SharedSpi` that sorts
them by destination; its own destination matches none. A lookup for the wrong
destination misses either way.

Every SA inserted, by whichever request, enters the SADB's expiry wheel
(`larval.sadb.expiry`) where the table has one, so that its lifetimes are aged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Reversible

from larval.pfkey import SaState
from larval.sadb.expiry import ExpiryWheel
from larval.sadb.inner import InnerIndex
from larval.sadb.sa import SecurityAssociation

_MATURE, _DYING = SaState.MATURE, SaState.DYING

PairKey = tuple[bytes, bytes]  # (packed source, packed destination)

STRIPES = 256  # a power of two


class _SharedSpi:
    """The inbound entry of an SPI held by SAs to two or more destinations."""

    __slots__ = ("by_dst",)

    dst = None  # equal to no destination: the usual check of an entry's destination fails

    def __init__(self, by_dst: dict[bytes, SecurityAssociation]) -> None:
        self.by_dst = by_dst


class SaTable:
    """All SAs of one SA type, indexed both ways."""

    def __init__(self, stripes: int = STRIPES, expiry: ExpiryWheel | None = None) -> None:
        self._mask = stripes - 1
        self.expiry = expiry
        self._inbound_locks = [threading.Lock() for _ in range(stripes)]
        self._pair_locks = [threading.Lock() for _ in range(stripes)]
        self._by_spi: dict[int, SecurityAssociation | _SharedSpi] = {}
        # SAs beyond the first of each shared SPI; changed under `_shared_lock` only (with
        # the SPI's stripe held), so that len() stays right.
        self._shared_extra = 0
        self._shared_lock = threading.Lock()
        # Insertion-ordered per pair, so the newest SA is last.
        self._pairs: dict[PairKey, dict[int, SecurityAssociation]] = {}
        self.inner = InnerIndex()
        # The SAs of a pair the per-peer index does not hold (no inner destination, or
        # flagged inbound): a lookup tests these one by one. Kept apart only for the
        # pairs in `_split`, those with an SA that is (or was) in that index or whose
        # inner selectors changed: for any other pair they are its SAs in `_pairs`, in
        # the same order, and a second dict of them would cost every insert.
        self.pair_inner = InnerIndex(per_peer=True)
        self._unindexed: dict[PairKey, dict[int, SecurityAssociation]] = {}
        self._split: set[PairKey] = set()
        # Moved on whenever what `outbound` or `inner.lookup` could answer may change (an
        # SA in or out, reindexed, or made MATURE: `bump`), after the change: an answer
        # remembered with the generation read before the lookup is current while the
        # generation is unchanged and its SA still MATURE (the stack's per-flow cache).
        self.generation = 0

    def bump(self) -> None:
        """An SA of the table changed how lookups see it (it became MATURE)."""
        self.generation += 1

    def __len__(self) -> int:
        return len(self._by_spi) + self._shared_extra

    def __iter__(self) -> Iterator[SecurityAssociation]:
        """A snapshot of the SAs, safe to walk while others change the table."""
        found: list[SecurityAssociation] = []
        for entry in list(self._by_spi.values()):
            if type(entry) is _SharedSpi:
                found.extend(list(entry.by_dst.values()))
            else:
                found.append(entry)  # type: ignore[arg-type]
        return iter(found)

    def get(self, spi: int, dst: bytes) -> SecurityAssociation | None:
        """Inbound lookup by (SPI, destination), O(1), lock-free."""
        entry = self._by_spi.get(spi)
        if entry is None:
            return None
        if entry.dst == dst:
            return entry
        if type(entry) is _SharedSpi:
            return entry.by_dst.get(dst)
        return None

    def insert_if_absent(self, sa: SecurityAssociation, *, enter: bool = True) -> bool:
        """Insert `sa` unless its (SPI, destination) is taken; False if it was. `enter`
        False: the caller put `sa` on the expiry wheel already, before it was inserted
        (GETSPI's, by the fast path: `larval.sadb.fast_path`)."""
        spi, dst = sa.spi, sa.dst
        by_spi = self._by_spi
        # An SPI no SA holds, the usual case, is taken by one atomic dict call (in CPython
        # and in the free-threaded build): a key only leaves the dict under its stripe's
        # lock, and the stripe's holder reads it again after taking the lock.
        if by_spi.setdefault(spi, sa) is not sa:
            with self._inbound_locks[spi & self._mask]:
                entry = by_spi.setdefault(spi, sa)  # gone meanwhile: taken now
                if entry is sa:
                    pass
                elif type(entry) is _SharedSpi:
                    if dst in entry.by_dst:
                        return False
                    with self._shared_lock:
                        entry.by_dst[dst] = sa
                        self._shared_extra += 1
                else:
                    if entry.dst == dst:
                        return False
                    # A second destination for this SPI: both go into a shared entry,
                    # made whole before readers can see it.
                    shared = _SharedSpi({entry.dst: entry, dst: sa})  # type: ignore[dict-item]
                    with self._shared_lock:
                        by_spi[spi] = shared
                        self._shared_extra += 1
        pkey = (sa.src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            if sa.inner_dst is not None or (self._split and pkey in self._split):
                self._index_pair(pkey, sa)
            pairs = self._pairs
            of_pair = pairs.get(pkey)
            if of_pair is None:
                of_pair = pairs[pkey] = {}
            of_pair[spi] = sa
        if sa.inner_dst is not None:
            self.inner.add(sa)
        if enter and self.expiry is not None:
            self.expiry.enter(sa)
        self.generation += 1
        return True

    def insert_unpublished(self, sa: SecurityAssociation) -> bool:
        """`insert_if_absent(sa, enter=False)` for GETSPI's SA, which has no inner
        selectors and is on the expiry wheel already (put there by the fast path):
        the usual case, an SPI no SA holds, without the checks only other SAs need."""
        spi = sa.spi
        if self._by_spi.setdefault(spi, sa) is not sa:
            return self.insert_if_absent(sa, enter=False)  # taken, or shared: judged there
        pkey = (sa.src, sa.dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            if self._split and pkey in self._split:
                self._index_pair(pkey, sa)
            pairs = self._pairs
            of_pair = pairs.get(pkey)
            if of_pair is None:
                of_pair = pairs[pkey] = {}
            of_pair[spi] = sa
        self.generation += 1
        return True

    def _index_pair(self, pkey: PairKey, sa: SecurityAssociation) -> None:
        """Put `sa` in the per-peer inner index, or among its pair's unindexed SAs; under
        the pair's lock."""
        if sa.inner_dst is not None:
            self.pair_inner.add(sa)
        if pkey not in self._split:
            if sa.pair_inner_key is None:
                return  # among its pair's SAs in `_pairs`, which are all unindexed
            self._split_pair(pkey)
        if sa.pair_inner_key is None:
            unindexed = self._unindexed
            others = unindexed.get(pkey)
            if others is None:
                others = unindexed[pkey] = {}
            others[sa.spi] = sa

    def _split_pair(self, pkey: PairKey) -> None:
        """Under the pair's lock: keep the unindexed SAs of a pair that has none indexed
        apart from now on (all of its SAs, in their order), until it has no SA left."""
        self._split.add(pkey)
        others = {
            spi: sa for spi, sa in self._pairs.get(pkey, {}).items() if sa.pair_inner_key is None
        }
        if others:
            self._unindexed[pkey] = others

    def _unindex_pair(self, pkey: PairKey, sa: SecurityAssociation) -> None:
        self.pair_inner.remove(sa)
        others = self._unindexed.get(pkey)
        if others is not None and others.get(sa.spi) is sa:
            del others[sa.spi]
            if not others:
                del self._unindexed[pkey]

    def remove(self, sa: SecurityAssociation) -> bool:
        """Remove `sa` (this very object); False if it was not in the table."""
        spi, dst = sa.spi, sa.dst
        by_spi = self._by_spi
        with self._inbound_locks[spi & self._mask]:
            entry = by_spi.get(spi)
            if entry is sa:
                del by_spi[spi]
            elif type(entry) is _SharedSpi and entry.by_dst.get(dst) is sa:
                with self._shared_lock:
                    if len(entry.by_dst) == 2:
                        # One SA left: it takes the SPI's entry alone again, before it
                        # leaves the shared one, so that readers always find it.
                        [other] = [o for o in entry.by_dst.values() if o is not sa]
                        by_spi[spi] = other
                    del entry.by_dst[dst]
                    self._shared_extra -= 1
            else:
                return False
        pkey = (sa.src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            by_pair = self._pairs.get(pkey)
            if by_pair is not None and by_pair.get(spi) is sa:
                del by_pair[spi]
                if not by_pair:
                    del self._pairs[pkey]
                    self._split.discard(pkey)
            self._unindex_pair(pkey, sa)
        if sa.inner_dst is not None:
            self.inner.remove(sa)  # under its lock: an add racing this one sees DEAD
        self.generation += 1
        return True

    def reindex_inner(self, sa: SecurityAssociation) -> None:
        """UPDATE changed the inner selectors or flags of `sa`, which is in the table."""
        self.inner.remove(sa)
        self.inner.add(sa)
        pkey = (sa.src, sa.dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            if self._pairs.get(pkey, {}).get(sa.spi) is sa:
                if pkey not in self._split:
                    self._split_pair(pkey)  # the SA moves to the end of the unindexed
                self._unindex_pair(pkey, sa)
                self._index_pair(pkey, sa)
        self.generation += 1

    def outbound(
        self,
        src: bytes,
        dst: bytes,
        covers: Callable[[SecurityAssociation], bool] | None = None,
        inner: tuple[bytes, bytes] | None = None,
    ) -> SecurityAssociation | None:
        """The SA to send with from `src` to `dst`: the newest MATURE, else the newest DYING.

        LARVAL SAs are never chosen (they have no keys), nor DEAD ones. Where the pair
        holds more than one SA (CHILD_SAs of other selectors between the same gateways,
        besides a rekey's old and new), only one that `covers` accepts is chosen. Given
        the packet's `inner` (source, destination), the SAs with inner selectors are
        found by the per-peer index, the most specific destination first, whatever
        their number; the others are tested one by one.
        """
        pkey = (src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            by_spi = self._pairs.get(pkey)
            if not by_spi:
                return None
            if len(by_spi) == 1:
                return _usable(by_spi.values(), None)
            if inner is None:
                return _usable(by_spi.values(), covers)
            found = self.pair_inner.lookup(src + dst, inner[0], inner[1])
            if found is not None and found.state == _MATURE:
                return found
            others = self._unindexed.get(pkey) if pkey in self._split else by_spi
            if others:
                other = _usable(others.values(), covers)
                if other is not None and (found is None or other.state == _MATURE):
                    return other
            return found

    def between(self, src: bytes, dst: bytes) -> list[SecurityAssociation]:
        """Every SA from `src` to `dst`, oldest first."""
        pkey = (src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            return list(self._pairs.get(pkey, {}).values())


def _usable(
    sas: Reversible[SecurityAssociation], covers: Callable[[SecurityAssociation], bool] | None
) -> SecurityAssociation | None:
    """Of `sas` (oldest first) that `covers` accepts: the newest MATURE, else the newest
    DYING."""
    dying = None
    for sa in reversed(sas):
        if covers is not None and not covers(sa):
            continue
        state = sa.state
        if state == _MATURE:
            return sa
        if dying is None and state == _DYING:
            dying = sa
    return dying
