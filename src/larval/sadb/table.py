"""The SA tables of one SA type: inbound by (SPI, destination), pairs by (source, destination),
and outbound tunnel SAs by inner destination (`larval.sadb.inner`).

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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from larval.pfkey import SaState
from larval.sadb.inner import InnerIndex
from larval.sadb.sa import SecurityAssociation

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

    def __init__(self, stripes: int = STRIPES) -> None:
        self._mask = stripes - 1
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

    def insert_if_absent(self, sa: SecurityAssociation) -> bool:
        """Insert `sa` unless its (SPI, destination) is taken; False if it was."""
        spi, dst = sa.spi, sa.dst
        by_spi = self._by_spi
        with self._inbound_locks[spi & self._mask]:
            entry = by_spi.get(spi)
            if entry is None:
                by_spi[spi] = sa
            elif type(entry) is _SharedSpi:
                if dst in entry.by_dst:
                    return False
                with self._shared_lock:
                    entry.by_dst[dst] = sa
                    self._shared_extra += 1
            else:
                if entry.dst == dst:
                    return False
                # A second destination for this SPI: both go into a shared entry, made
                # whole before readers can see it.
                shared = _SharedSpi({entry.dst: entry, dst: sa})  # type: ignore[dict-item]
                with self._shared_lock:
                    by_spi[spi] = shared
                    self._shared_extra += 1
        pkey = (sa.src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            self._pairs.setdefault(pkey, {})[spi] = sa
        if sa.inner_dst is not None:
            self.inner.add(sa)
        return True

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
        if sa.inner_dst is not None:
            self.inner.remove(sa)  # under its lock: an add racing this one sees DEAD
        return True

    def reindex_inner(self, sa: SecurityAssociation) -> None:
        """UPDATE changed the inner selectors or flags of `sa`, which is in the table."""
        self.inner.remove(sa)
        self.inner.add(sa)

    def outbound(
        self, src: bytes, dst: bytes, covers: Callable[[SecurityAssociation], bool] | None = None
    ) -> SecurityAssociation | None:
        """The SA to send with from `src` to `dst`: the newest MATURE, else the newest DYING.

        LARVAL SAs are never chosen (they have no keys), nor DEAD ones. Where the pair
        holds more than one SA (CHILD_SAs of other selectors between the same gateways,
        besides a rekey's old and new), only one that `covers` accepts is chosen.
        """
        pkey = (src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            by_spi = self._pairs.get(pkey)
            if not by_spi:
                return None
            check = covers if len(by_spi) > 1 else None
            dying = None
            for sa in reversed(by_spi.values()):
                if check is not None and not check(sa):
                    continue
                if sa.state == SaState.MATURE:
                    return sa
                if dying is None and sa.state == SaState.DYING:
                    dying = sa
            return dying

    def between(self, src: bytes, dst: bytes) -> list[SecurityAssociation]:
        """Every SA from `src` to `dst`, oldest first."""
        pkey = (src, dst)
        with self._pair_locks[hash(pkey) & self._mask]:
            return list(self._pairs.get(pkey, {}).values())
