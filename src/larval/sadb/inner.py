"""Outbound tunnel SAs by inner destination: the SA a tunnel to any peer sends with, and
which of many SAs between one pair of gateways carries a packet.

A tunnel policy whose peer is ``%any`` (a remote-access gateway) has one SA per peer,
all from the same local outer address and often to the same outer address (clients
behind one NAT). The outer pair cannot tell them apart; the inner destination selector
the key manager gave in ADD or UPDATE (SADB_X_EXT_ADDRESS_INNER_DST: the peer's virtual
address, or its subnet) can.

The index maps (local outer address, inner destination prefix length, inner destination
network) to the SAs with exactly that selector. A host selector, the common case (one
virtual address per client), is keyed by the packed address itself; a shorter prefix by
the address as an int shifted right by the host bits. A lookup probes once per distinct
prefix length present, longest first, so the most specific selector wins and the cost
does not grow with the number of SAs. Within such a bucket the SAs are indexed again by
their inner source selector (its host bits as a shift, and the network shifted by them),
so that 10,000 SAs to one destination network from 10,000 sources are not tested one by
one: the lookup probes once per distinct source prefix length in the bucket. Of the SAs
whose source selector covers the packet's source, the newest MATURE is taken, else the
newest DYING, as `SaTable.outbound` chooses among an outer pair's SAs; "newest" is by
the order they were indexed in, which every entry carries.

Which SAs are indexed: those with an inner destination that are not flagged
SADB_X_SAFLAGS_INBOUND (an inbound SA's inner destination is this side's own network).
An SA with further selector pairs (larval's X_LARVAL_INNER_PAIRS: a road warrior's IPv4
and IPv6 addresses in one CHILD_SA) has an entry under each pair's destination; a
one-pair SA has one, and the lookup is the same for both.

The same index keyed by the outer pair (``InnerIndex(per_peer=True)``) chooses among the SAs
between one pair of gateways, which may be thousands (a CHILD_SA per subnet pair): the
lookup costs a few dict probes instead of a test of every SA. There a prefix length is
taken as written, 0 being every address, as the packet path's selector checks take it.

Concurrency: writers hold the index's lock; readers take none. An add appends to its
source list (one atomic append: a lookup walking the list sees the new entry or not);
a remove publishes a new list without the SA's entry; the prefix lengths of a family and
the source shifts of a bucket are immutable tuples, each published with one assignment,
and a new bucket is published whole. So a lookup sees a list either before or after a
change, never half of it. Neither walks a list in Python, so adding or removing one SA of
10,000 that share a selector stays cheap.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from larval.pfkey import SadbAddress, SaFlags, SaState
from larval.sadb.sa import SecurityAssociation

__all__ = ["InnerIndex", "inner_prefixlen", "written_prefixlen"]

#: (SA, inner source network >> shift, shift): the source test is ``src >> shift == net``.
_Entry = tuple[SecurityAssociation, int, int]
#: (local outer address, inner destination prefix length, network: bytes for a host).
InnerKey = tuple[bytes, int, bytes | int]
#: Within a bucket: (shift, inner source network >> shift).
SourceKey = tuple[int, int]
#: What a lookup finds under a source key: (the order it was indexed in, SA).
_Indexed = tuple[int, SecurityAssociation]


class _Bucket:
    """The SAs of one inner destination selector, by inner source selector."""

    __slots__ = ("by_src", "shift_keys", "shifts")

    def __init__(self) -> None:
        # Oldest first under each source key.
        self.by_src: dict[SourceKey, list[_Indexed]] = {}
        # The shifts present, published whole.
        self.shifts: tuple[int, ...] = ()
        # The writers' count of source keys per shift.
        self.shift_keys: dict[int, int] = {}


_MATURE, _DYING, _DEAD = SaState.MATURE, SaState.DYING, SaState.DEAD


def inner_prefixlen(ext: SadbAddress) -> int:
    """The prefix length an inner address extension stands for.

    Its own; a zero prefix length on an address means the host (RFC 2367 leaves it 0 on
    addresses), except on the unspecified address, where it is every address (a
    ``0.0.0.0/0`` selector). The SADB refuses lengths beyond the address's bits.
    """
    if ext.prefixlen or ext.addr.is_unspecified:
        return ext.prefixlen
    return ext.addr.max_prefixlen


def written_prefixlen(ext: SadbAddress) -> int:
    """The prefix length as the extension writes it: 0 is every address."""
    return ext.prefixlen


def _placement(
    outer: bytes,
    prefixlen: Callable[[SadbAddress], int],
    sa: SecurityAssociation,
    src: SadbAddress | None,
    dst: SadbAddress,
) -> tuple[InnerKey, int, _Entry]:
    """Where one selector pair of `sa` goes: its bucket key, address size and entry."""
    packed = dst.addr.packed
    bits = len(packed) * 8
    plen = prefixlen(dst)
    key: InnerKey = (
        outer,
        plen,
        packed if plen == bits else int.from_bytes(packed, "big") >> (bits - plen),
    )
    if src is None:
        return key, len(packed), (sa, 0, bits)  # any source of the family
    shift = src.addr.max_prefixlen - prefixlen(src)
    return key, len(packed), (sa, int(src.addr) >> shift, shift)


class InnerIndex:
    """The outbound tunnel SAs of one SA table, by inner destination: under their local
    outer address, or with `per_peer` under their outer pair (``src + dst``)."""

    def __init__(self, *, per_peer: bool = False) -> None:
        self.per_peer = per_peer
        self._prefixlen = written_prefixlen if per_peer else inner_prefixlen
        # Each SA records where it is indexed, one attribute per kind of index.
        self._slot = "pair_inner_key" if per_peer else "inner_key"
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._buckets: dict[InnerKey, _Bucket] = {}
        # The writers' view of each bucket: per source key its entries by SA, so that an
        # add or a remove touches only its own SA's entry and the list is rebuilt by one
        # C-level copy, however many SAs share one selector (10,000 CHILD_SAs to one
        # network from one network).
        self._members: dict[InnerKey, dict[SourceKey, dict[SecurityAssociation, _Indexed]]] = {}
        # Per address length in bytes (4, 16): the prefix lengths present, longest first.
        self._lengths: dict[int, tuple[int, ...]] = {}
        self._counts: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return sum(len(e) for b in self._buckets.values() for e in b.by_src.values())

    # -- writers ------------------------------------------------------------------------

    def add(self, sa: SecurityAssociation) -> None:
        """Index `sa` if it is an outbound SA with an inner destination: under each of its
        selector pairs (the first, then X_LARVAL_INNER_PAIRS's), so that a packet of
        either family finds the one SA that carries both."""
        dst = sa.inner_dst
        if dst is None or sa.flags & SaFlags.X_INBOUND:
            return
        outer = sa.src + sa.dst if self.per_peer else sa.src
        prefixlen = self._prefixlen
        placed = [_placement(outer, prefixlen, sa, sa.inner_src, dst)]
        for more_src, more_dst in sa.inner_more:
            placed.append(_placement(outer, prefixlen, sa, more_src, more_dst))
        with self._lock:
            # DELETE marks an SA DEAD before it takes it out; one made DEAD meanwhile
            # must not come back in.
            if sa.state == _DEAD or getattr(sa, self._slot) is not None:
                return
            indexed = (next(self._order), sa)
            keys: dict[tuple[InnerKey, int, SourceKey], None] = {}
            for key, size, (_, net, shift) in placed:
                src_key = (shift, net)
                if (key, size, src_key) in keys:
                    continue  # the same pair twice
                members = self._members.setdefault(key, {})
                bucket = self._buckets.get(key)
                fresh = bucket is None
                if bucket is None:
                    bucket = _Bucket()
                same_src = members.get(src_key)
                if same_src is None:
                    members[src_key] = {sa: indexed}
                    bucket.by_src[src_key] = [indexed]
                    bucket.shift_keys[shift] = bucket.shift_keys.get(shift, 0) + 1
                    if bucket.shift_keys[shift] == 1:
                        bucket.shifts = (*bucket.shifts, shift)
                else:
                    same_src[sa] = indexed
                    bucket.by_src[src_key].append(indexed)
                if fresh:
                    self._buckets[key] = bucket  # published whole
                keys[(key, size, src_key)] = None
                count = (size, key[1])
                self._counts[count] = self._counts.get(count, 0) + 1
                if self._counts[count] == 1:
                    self._publish_lengths(size)
            setattr(sa, self._slot, tuple(keys))

    def remove(self, sa: SecurityAssociation) -> None:
        """Take `sa` out, if it is in: every entry of every pair."""
        with self._lock:
            indexed: tuple[tuple[InnerKey, int, SourceKey], ...] | None = getattr(sa, self._slot)
            if indexed is None:
                return
            setattr(sa, self._slot, None)
            for key, size, src_key in indexed:
                members = self._members.get(key, {})
                bucket = self._buckets.get(key)
                same_src = members.get(src_key, {})
                if same_src.pop(sa, None) is None or bucket is None:
                    continue
                if same_src:
                    bucket.by_src[src_key] = list(same_src.values())
                else:
                    del members[src_key]
                    del bucket.by_src[src_key]
                    shift = src_key[0]
                    bucket.shift_keys[shift] -= 1
                    if not bucket.shift_keys[shift]:
                        del bucket.shift_keys[shift]
                        bucket.shifts = tuple(s for s in bucket.shifts if s != shift)
                if not members:
                    del self._buckets[key]
                    del self._members[key]
                count = (size, key[1])
                left = self._counts.get(count, 1) - 1
                if left > 0:
                    self._counts[count] = left
                else:
                    self._counts.pop(count, None)
                    self._publish_lengths(size)

    def _publish_lengths(self, size: int) -> None:
        lengths = sorted((plen for (n, plen) in self._counts if n == size), reverse=True)
        if lengths:
            self._lengths[size] = tuple(lengths)
        else:
            self._lengths.pop(size, None)

    # -- the reader ---------------------------------------------------------------------

    def lookup(self, local: bytes, src: bytes, dst: bytes) -> SecurityAssociation | None:
        """The SA to send a packet from inner `src` to inner `dst` with, from the local
        outer address `local` (with `per_peer`, the outer pair ``src + dst``): the most
        specific inner destination first."""
        lengths = self._lengths.get(len(dst))
        if lengths is None:
            return None
        buckets = self._buckets
        bits = len(dst) * 8
        dst_int = src_int = -1
        for plen in lengths:
            if plen == bits:
                bucket = buckets.get((local, plen, dst))
            else:
                if dst_int < 0:
                    dst_int = int.from_bytes(dst, "big")
                bucket = buckets.get((local, plen, dst_int >> (bits - plen)))
            if bucket is None:
                continue
            if src_int < 0:
                src_int = int.from_bytes(src, "big")
            by_src = bucket.by_src
            mature = dying = None
            mature_order = dying_order = -1
            for shift in bucket.shifts:
                entries = by_src.get((shift, src_int >> shift))
                if not entries:
                    continue
                for order, sa in reversed(entries):
                    if order <= mature_order:
                        break  # older than the MATURE SA found already
                    state = sa.state
                    if state == _MATURE:
                        mature, mature_order = sa, order
                        break
                    if state == _DYING and order > dying_order:
                        dying, dying_order = sa, order
            if mature is not None:
                return mature
            if dying is not None:
                return dying
        return None
