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

__all__ = ["ICMP_ANY", "Accept", "FamilyIndex", "SortKey"]

SortKey = tuple[int, int, int, int, int, int]
#: An extra condition on a matching policy (inverse ACQUIRE's tunnel endpoints).
Accept = Callable[[Policy], bool]

#: Pass as the ICMP type to match ICMP policies whatever type they name (illumos
#: ipsec_get_inverse_acquire_sel sets ips_is_icmp_inv_acq for ICMP requests).
ICMP_ANY = -1

# A bucket entry: (sort key, policy, proto, local lo, local hi, remote lo, remote hi, icmp).
_Entry = tuple[SortKey, Policy, int, int, int, int, int, "int | None"]


class _Group:
    """The policies with one (local prefix length, remote prefix length) pair."""

    __slots__ = ("buckets", "lmask", "min_key", "rmask")

    def __init__(self, bits: int, llen: int, rlen: int) -> None:
        full = (1 << bits) - 1
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
