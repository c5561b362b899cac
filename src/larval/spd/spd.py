"""The Security Policy Database: policies by name, looked up per packet (RFC 4301 §4.4.1).

`Spd.lookup` answers for a packet: outbound, the policy that decides whether it is sent
in the clear, dropped, or protected (and with which alternatives, through an ACQUIRE if
no SA exists); inbound, the policy a packet that arrived in the clear must be allowed
by. `Spd.check_inbound` is the other inbound check of RFC 4301 §5.2: a packet that
arrived protected must lie inside the selector of the SA that decrypted it.

Lookups take no lock and run while other threads add and remove policies; the index
(`larval.spd.index`) explains how. Writers serialise on one lock.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import replace

from larval.spd.errors import SpdError
from larval.spd.index import Accept, FamilyIndex, SortKey
from larval.spd.policy import Direction, Policy
from larval.spd.selector import AddressLike, IPNetwork, Selector

__all__ = ["Spd"]

_Slot = tuple[Direction, int]


def _addr(value: AddressLike) -> tuple[int, int]:
    """(address bits, address as int) of an address in any accepted form."""
    if isinstance(value, bytes):
        n = len(value)
        if n == 4 or n == 16:
            return n * 8, int.from_bytes(value, "big")
        raise SpdError(f"a packed address is 4 or 16 bytes, not {n}")
    if isinstance(value, str):
        try:
            value = ipaddress.ip_address(value)
        except ValueError:
            raise SpdError(f"{value!r} is not an IPv4 or IPv6 address") from None
    return value.max_prefixlen, int(value)


class Spd:
    """A thread-safe SPD. Policies are kept per name; a name may hold several policies
    (both directions, several selectors)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[_Slot, FamilyIndex] = self._empty_indexes()
        # Every stored policy with its sort key, in the order added.
        self._entries: dict[int, tuple[SortKey, Policy, _Slot]] = {}
        self._by_name: dict[str, list[int]] = {}
        self._identities: set[tuple[str, Direction, Selector]] = set()
        self._next_index = 1
        self._next_reqid = 1
        self._reqids: set[int] = set()
        # Bumped by every change, so that caches of lookup results know when to forget.
        self.generation = 0

    @staticmethod
    def _empty_indexes() -> dict[_Slot, FamilyIndex]:
        return {(d, bits): FamilyIndex(bits) for d in Direction for bits in (32, 128)}

    # -- writers ---------------------------------------------------------------------

    def add(self, policy: Policy) -> Policy:
        """Store `policy`; returns it as stored (reqid filled in if it was 0).

        Raises `SpdError` if its reqid is taken or the same name already has a policy for
        that direction and selector.
        """
        with self._lock:
            return self._add_locked(policy)

    def add_all(self, policies: Iterable[Policy]) -> list[Policy]:
        """Store several policies under one hold of the lock; all or none."""
        with self._lock:
            added: list[tuple[int, Policy]] = []
            try:
                for policy in policies:
                    added.append(self._add_locked_indexed(policy))
            except SpdError:
                for index, _ in added:
                    self._remove_locked(index)
                raise
            return [p for _, p in added]

    def _add_locked(self, policy: Policy) -> Policy:
        return self._add_locked_indexed(policy)[1]

    def _add_locked_indexed(self, policy: Policy) -> tuple[int, Policy]:
        identity = (policy.name, policy.direction, policy.selector)
        if identity in self._identities:
            raise SpdError(
                f"policy {policy.name} already has an {policy.direction.value} "
                f"entry for {policy.selector}"
            )
        if policy.reqid == 0:
            while self._next_reqid in self._reqids:
                self._next_reqid += 1
            policy = replace(policy, reqid=self._next_reqid)
        elif policy.reqid in self._reqids:
            raise SpdError(f"reqid {policy.reqid} is already in use")
        self._reqids.add(policy.reqid)
        index = self._next_index
        self._next_index += 1
        key = policy.sort_key(index)
        slot = (policy.direction, policy.selector.local.max_prefixlen)
        self._indexes[slot].insert(key, policy)
        self._entries[index] = (key, policy, slot)
        self._by_name.setdefault(policy.name, []).append(index)
        self._identities.add(identity)
        self.generation += 1
        return index, policy

    def remove(self, name: str) -> int:
        """Remove every policy named `name`; returns how many there were."""
        with self._lock:
            doomed = list(self._by_name.get(name, ()))
            for index in doomed:
                self._remove_locked(index)
            return len(doomed)

    def _remove_locked(self, index: int) -> None:
        key, policy, slot = self._entries.pop(index)
        self._indexes[slot].delete(key, policy)
        self._reqids.discard(policy.reqid)
        self._identities.discard((policy.name, policy.direction, policy.selector))
        indices = self._by_name[policy.name]
        indices.remove(index)
        if not indices:
            del self._by_name[policy.name]
        self.generation += 1

    def flush(self) -> None:
        """Remove every policy (a reader in flight finishes on the old index)."""
        with self._lock:
            self._indexes = self._empty_indexes()
            self._entries = {}
            self._by_name = {}
            self._identities = set()
            self._reqids = set()
            self.generation += 1

    # -- readers ---------------------------------------------------------------------

    def policies(self) -> list[Policy]:
        """Every policy, in the order added."""
        with self._lock:
            return [p for _, p, _ in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self,
        direction: Direction | str,
        src: AddressLike,
        dst: AddressLike,
        proto: int = 0,
        sport: int = 0,
        dport: int = 0,
        icmp_type: int | None = None,
    ) -> Policy | None:
        """The policy for a packet from `src` to `dst`, or None if none matches.

        Outbound, the source is local; inbound, the destination is. Lowest priority
        number first, then the more specific selector, then the earlier added.
        """
        direction = Direction(direction)
        if direction is Direction.OUT:
            return self.lookup_local(direction, src, dst, proto, sport, dport, icmp_type)
        return self.lookup_local(direction, dst, src, proto, dport, sport, icmp_type)

    def lookup_local(
        self,
        direction: Direction,
        local: AddressLike,
        remote: AddressLike,
        proto: int = 0,
        local_port: int = 0,
        remote_port: int = 0,
        icmp_type: int | None = None,
        accept: Accept | None = None,
    ) -> Policy | None:
        """`lookup` in local/remote terms, with an optional extra condition `accept`."""
        lbits, lint = _addr(local)
        rbits, rint = _addr(remote)
        if lbits != rbits:
            return None
        index = self._indexes[(direction, lbits)]
        return index.lookup(lint, rint, proto, local_port, remote_port, icmp_type, accept)

    def answers_within(
        self, direction: Direction, local: IPNetwork, remote: IPNetwork
    ) -> tuple[list[Policy], bool] | None:
        """What `lookup_local` may answer for any packet with its local address in
        `local` and its remote one in `remote`, whatever its protocol, ports and ICMP
        type: the policies, best first, and whether it may find none.

        A cache of verdicts by address box asks this once per SPD generation: when
        every answer given (and no policy, if it may come) leads to one verdict, that
        verdict holds for every packet of the box (`FamilyIndex.answers_within` says
        why). Read `generation` before the call to date the answer. None when the SPD
        cannot say without testing many policies one by one. The two prefixes are of
        one family."""
        if local.version != remote.version:
            raise SpdError(f"a box of IPv{local.version} and IPv{remote.version} prefixes")
        with self._lock:
            index = self._indexes[(direction, local.max_prefixlen)]
            return index.answers_within(
                int(local.network_address), local.prefixlen,
                int(remote.network_address), remote.prefixlen,
            )  # fmt: skip

    @staticmethod
    def check_inbound(
        policy_or_selector: Policy | Selector,
        inner_src: AddressLike,
        inner_dst: AddressLike,
        proto: int = 0,
        sport: int = 0,
        dport: int = 0,
        icmp_type: int | None = None,
    ) -> bool:
        """Whether a decrypted inbound packet lies inside the SA's selector.

        RFC 4301 §5.2 step 4: after ESP processing, the inner header must match the
        selectors the SA was negotiated for, or the packet is dropped. The packet's
        destination is local, its source remote.
        """
        selector = (
            policy_or_selector.selector
            if isinstance(policy_or_selector, Policy)
            else policy_or_selector
        )
        return selector.matches(inner_dst, inner_src, proto, dport, sport, icmp_type)
