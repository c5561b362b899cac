"""The SPD lookup index: hash tables per pair of prefix lengths, probed best-first.

The problem: given a packet's (local, remote, protocol, ports, ICMP type), find the
matching policy with the lowest sort key (priority, then specificity, then age) among
thousands, without looking at each.

The index, one per direction and address family:

* Policies are grouped by the pair (local prefix length, remote prefix length) of their
  selector. Inside a group, a dict maps the pair of masked addresses (local network,
  remote network, as ints) to the tuple of policies with exactly those prefixes, kept
  sorted by sort key.
* A lookup masks the packet's addresses once per group and makes one dict probe, so it
  costs one probe per *distinct length pair present* (at most 33 x 33 for IPv4, and a
  handful in real configurations), not one test per policy. Within a hit bucket the
  first policy whose protocol, ports and ICMP type match is that bucket's answer.
* Groups are probed in order of the lowest sort key they hold, and the probe stops as
  soon as the best match found so far beats every policy of the remaining groups. With
  derived priorities (longer prefixes first) the most specific group that matches ends
  the search at once.

This is the structure of the classic "tuple space search" packet classifier (Srinivasan,
Suri, Varghese, SIGCOMM 1999), restricted to the two address dimensions, with the
protocol and ports checked in the (short) buckets.

Concurrency: writers hold the SPD's lock; readers take none. Every structure a reader
touches is either immutable (bucket tuples, the probe order tuple, the masks) or a dict
changed only by single item assignments and deletions, each atomic for a reader in
CPython (and per-object locked in free-threaded builds). A writer builds the new bucket
tuple or probe tuple first and publishes it with one assignment, so a concurrent lookup
sees each bucket either before or after the change, never half of it.
"""

from __future__ import annotations

from collections.abc import Callable

from larval.spd.policy import Policy

__all__ = ["ICMP_ANY", "SCAN_LIMIT", "Accept", "FamilyIndex", "SortKey"]

SortKey = tuple[int, int, int, int, int, int]
#: An extra condition on a matching policy (inverse ACQUIRE's tunnel endpoints).
Accept = Callable[[Policy], bool]

#: Pass as the ICMP type to match ICMP policies whatever type they name (illumos
#: ipsec_get_inverse_acquire_sel sets ips_is_icmp_inv_acq for ICMP requests).
ICMP_ANY = -1

#: `FamilyIndex.answers_within` tests at most this many buckets of a group one by one.
SCAN_LIMIT = 64

# A bucket entry: (sort key, policy, proto, local lo, local hi, remote lo, remote hi, icmp).
_Entry = tuple[SortKey, Policy, int, int, int, int, int, "int | None"]


_ANY = (0, 65535, 0, 65535)  # both port ranges of a selector that names none


class _Group:
    """The policies with one (local prefix length, remote prefix length) pair."""

    __slots__ = ("buckets", "llen", "lmask", "min_key", "rlen", "rmask")

    def __init__(self, bits: int, llen: int, rlen: int) -> None:
        full = (1 << bits) - 1
        self.llen, self.rlen = llen, rlen
        self.lmask = full ^ (full >> llen)
        self.rmask = full ^ (full >> rlen)
        self.buckets: dict[tuple[int, int], tuple[_Entry, ...]] = {}
        self.min_key: SortKey | None = None


class FamilyIndex:
    """The policies of one direction and one address family (`bits` 32 or 128)."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._groups: dict[tuple[int, int], _Group] = {}
        # (lowest sort key in the group, group), best first; replaced, never mutated.
        self._probe: tuple[tuple[SortKey, _Group], ...] = ()

    def __len__(self) -> int:
        return sum(len(b) for g in self._groups.values() for b in g.buckets.values())

    def insert(self, key: SortKey, policy: Policy) -> None:
        """Add `policy` under `key`. Caller holds the writers' lock."""
        sel = policy.selector
        llen, rlen = sel.local.prefixlen, sel.remote.prefixlen
        group = self._groups.get((llen, rlen))
        if group is None:
            group = self._groups[(llen, rlen)] = _Group(self.bits, llen, rlen)
        bkey = (int(sel.local.network_address), int(sel.remote.network_address))
        entry: _Entry = (
            key,
            policy,
            sel.proto,
            sel.local_ports[0],
            sel.local_ports[1],
            sel.remote_ports[0],
            sel.remote_ports[1],
            sel.icmp_type,
        )
        bucket = group.buckets.get(bkey, ())
        group.buckets[bkey] = tuple(sorted((*bucket, entry), key=lambda e: e[0]))
        if group.min_key is None or key < group.min_key:
            group.min_key = key
            self._reorder()

    def delete(self, key: SortKey, policy: Policy) -> None:
        """Remove the entry added with `key`. Caller holds the writers' lock."""
        sel = policy.selector
        glen = (sel.local.prefixlen, sel.remote.prefixlen)
        group = self._groups[glen]
        bkey = (int(sel.local.network_address), int(sel.remote.network_address))
        remaining = tuple(e for e in group.buckets[bkey] if e[0] != key)
        if remaining:
            group.buckets[bkey] = remaining
        else:
            del group.buckets[bkey]
        if not group.buckets:
            del self._groups[glen]
            self._reorder()
        elif key == group.min_key:
            group.min_key = min(b[0][0] for b in group.buckets.values())
            self._reorder()

    def _reorder(self) -> None:
        groups = [(g.min_key, g) for g in self._groups.values() if g.min_key is not None]
        groups.sort(key=lambda kg: kg[0])
        self._probe = tuple(groups)

    def lookup(
        self,
        local: int,
        remote: int,
        proto: int,
        local_port: int,
        remote_port: int,
        icmp_type: int | None,
        accept: Accept | None = None,
    ) -> Policy | None:
        """The best policy matching the packet fields (addresses as ints), or None."""
        best: Policy | None = None
        best_key: SortKey | None = None
        for min_key, group in self._probe:
            if best_key is not None and best_key < min_key:
                break
            bucket = group.buckets.get((local & group.lmask, remote & group.rmask))
            if bucket is None:
                continue
            for key, policy, e_proto, llo, lhi, rlo, rhi, e_icmp in bucket:
                if best_key is not None and best_key < key:
                    break
                if (
                    (e_proto == 0 or e_proto == proto)
                    and llo <= local_port <= lhi
                    and rlo <= remote_port <= rhi
                    and (e_icmp is None or e_icmp == icmp_type or icmp_type == ICMP_ANY)
                    and (accept is None or accept(policy))
                ):
                    best, best_key = policy, key
                    break
        return best

    def answers_within(
        self, local: int, llen: int, remote: int, rlen: int
    ) -> tuple[list[Policy], bool] | None:
        """What `lookup` may answer for the packets of a box: every local address of the
        prefix `local`/`llen`, every remote address of `remote`/`rlen` (addresses as
        ints), any protocol, ports and ICMP type.

        The answer for a packet of the box is the matching policy of lowest sort key.
        Say a policy *meets* the box if its prefixes meet the box's (one of the two
        prefixes of a side holds the other): only such a policy matches a packet of
        the box. Say it *covers* the box if its prefixes hold the box's whole and it
        names no protocol, ports or ICMP type: it matches every packet of the box. Let
        C be the covering policy of lowest sort key. Every packet of the box matches
        C, so its answer sorts no later than C; and its answer meets the box. So the
        answers lie among the policies that meet the box and sort no later than C,
        C included; without a C, among all that meet it, or none (None).

        Returns those policies, best first, and whether a packet may match none (no
        C). If every one of them (and None, if it may come) leads to the same
        verdict, every packet of the box gets that verdict. A policy with ports
        before C does not make the box's answers differ unless its verdict differs.
        None if a group of policies narrower than the box on a side holds more than
        `SCAN_LIMIT` prefix pairs, which would be tested one by one.

        Caller holds the writers' lock (the buckets of a group are walked)."""
        found: list[_Entry] = []
        cover: SortKey | None = None
        full = (1 << self.bits) - 1
        for min_key, group in self._probe:
            if cover is not None and cover < min_key:
                break
            gl, gr = group.llen, group.rlen
            if gl <= llen and gr <= rlen:
                # The group's prefixes are no longer than the box's: only the pair
                # holding it meets it, and holds it whole.
                bucket = group.buckets.get((local & group.lmask, remote & group.rmask))
                buckets: list[tuple[_Entry, ...]] = [] if bucket is None else [bucket]
                holds = True
            else:
                if len(group.buckets) > SCAN_LIMIT:
                    return None
                lmask = full ^ (full >> min(gl, llen))
                rmask = full ^ (full >> min(gr, rlen))
                lnet, rnet = local & lmask, remote & rmask
                buckets = [
                    b
                    for (ln, rn), b in group.buckets.items()
                    if ln & lmask == lnet and rn & rmask == rnet
                ]
                holds = False
            for bucket in buckets:
                for entry in bucket:
                    key = entry[0]
                    if cover is not None and cover < key:
                        break
                    found.append(entry)
                    _, _, proto, llo, lhi, rlo, rhi, icmp = entry
                    if holds and not proto and (llo, lhi, rlo, rhi) == _ANY and icmp is None:
                        cover = key  # a bucket is sorted: its later entries sort after
                        break
        found.sort(key=lambda e: e[0])
        return [e[1] for e in found if cover is None or e[0] <= cover], cover is None
