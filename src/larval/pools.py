"""Virtual IP address pools and their leases, for remote-access clients.

A gateway hands each client that asks (RFC 7296 §3.15: a CFG_REQUEST with
INTERNAL_IP4_ADDRESS or INTERNAL_IP6_ADDRESS; IKEv1 Mode Config alike) an address of a
pool and the pool's attributes. The configuration, as the ``[pools.NAME]`` table of
the daemon's TOML gives it::

    [pools.rw]
    addrs = "10.3.0.0/24"                     # or a range: "10.3.0.10-10.3.0.200"
    dns = ["10.3.0.1", "2001:db8:3::1"]       # INTERNAL_IP4_DNS / INTERNAL_IP6_DNS
    nbns = "10.3.0.2"                         # INTERNAL_IP4_NBNS (WINS; IPv4 only)
    split_include = ["10.3.0.0/16"]           # INTERNAL_IP4/6_SUBNET, Unity split include
    dns_domain = "home.example"               # INTERNAL_DNS_DOMAIN (25, RFC 8598)
    attributes = { 28675 = "home.example" }   # raw attributes by number: the string's UTF-8
    reserved = { "carol@example.org" = "10.3.0.7" }   # this identity's fixed address

A value that may be a list may also be one string. ``nbns`` takes IPv4 addresses only:
RFC 7296 removed RFC 4306's INTERNAL_IP6_NBNS. Numbered attributes take a string
(sent as its UTF-8 bytes, never read as an address: strongSwan reads one that looks
like an address as one) or a list of them, each sent as one attribute; types 1 and 8
are the lease itself and come from ``addrs``.

Addresses. A prefix gives its addresses as strongSwan's ``mem_pool.c`` does, in both
families alike: the first address (IPv4's network address, IPv6's Subnet-Router anycast
address, RFC 4291 §2.6.1) and the last (IPv4's broadcast address) are never handed out,
except in a /31 or /32 (/127, /128), where every address is. A prefix written with
host bits (``10.3.0.5/24``) starts at that address, as in swanctl.conf: the addresses
below it are left for the gateway's own hosts. A range gives every address from its
first to its last, both included. A pool holds at most 2^64 addresses (an IPv6 /64);
strongSwan silently cuts any pool to 2^31. Nothing is materialised: a pool is its first
address, its size, and the addresses it ever handed out, so a /8 or a /64 costs what
its leases cost.

Leases. Each lease belongs to an identity: the authenticated one, the EAP or XAuth
identity when the client gave one, else its IKE identity; ``str`` and ``bytes`` name
the same identity when the bytes are the string's UTF-8. `Pool.acquire` answers, in
this order (as ``mem_pool.c`` does, with a requested address honoured as well):

1. an *online* lease this identity holds from the same peer (address and port) that
   matches the request, when the peer is given: make-before-break reauthentication,
   the new IKE SA shares the old one's address, and the lease stays online until both
   released it;
2. the identity's reserved address (``reserved``), unless it is online already;
3. an *offline* lease of this identity: the requested address if it is one of them,
   else the one released first;
4. the requested address, if it is in the pool, not reserved and never handed out;
5. the next address never handed out;
6. the offline lease of another identity released longest ago, which that identity
   loses (strongSwan's reassignment when the pool is full);
7. else ``None``: the pool is exhausted (INTERNAL_ADDRESS_FAILURE).

So one identity connecting twice from two peers (two devices, or a client that lost
its IKE SA behind a new NAT mapping) gets two addresses, as with strongSwan; from the
same peer it gets the same one. `Pool.release` makes a lease offline: it is kept for
its identity to come back, and handed to another only when no address is left that was
never used. A reserved address is never handed to another identity, online or not.
Two identities never hold one address.

`Pools` holds the pools by name. A connection names a list of them (``pools = ["rw",
"rw6"]``); a request of one family is answered by its pools in that order, each rule
above asked of every pool before the next rule, so a full pool's offline leases are
reassigned only when no pool of the list has a fresh address. strongSwan's vici
provider does the same with rules 1, 3, 5 and 6: it has no reserved addresses, and
gives a requested address only to the IKE SA that already holds it. The pools of one
configuration must not overlap.

How IKE uses this: the responder's IKE_AUTH (or Mode Config) handler, once the client
authenticated and asked for an address of a family, calls `Pools.acquire` with the
connection's pool names, the authenticated identity, the requested address (``0.0.0.0``
or ``::`` for any) and the IKE SA's peer address and port; a `Lease` goes into the
CFG_REPLY with its pool's `PoolAttributes`, and the CHILD_SA's traffic selectors are
narrowed to it; ``None`` is INTERNAL_ADDRESS_FAILURE. When the IKE SA goes, the same
handler calls `Pools.release` with the lease. `Pools.status` is what ``larval pools``
prints.

Nothing here is thread-safe: the key manager owns the pools, as it owns its IKE SAs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from larval.errors import LarvalError

__all__ = [
    "MAX_POOL_SIZE",
    "POOL_KEYS",
    "IPAddress",
    "IPNetwork",
    "Identity",
    "Lease",
    "Peer",
    "Pool",
    "PoolAttributes",
    "PoolError",
    "PoolStatus",
    "Pools",
    "Reserved",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_T = TypeVar("_T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The authenticated identity a lease belongs to.
Identity = bytes | str
#: The IKE SA's peer, as the IKE layer names it: (address, port).
Peer = tuple[str, int]
#: Each identity's fixed address (``reserved``).
Reserved = Mapping[str, IPAddress] | Mapping[bytes, IPAddress] | Mapping[Identity, IPAddress]

#: The keys of one ``[pools.NAME]`` table.
POOL_KEYS = ("addrs", "dns", "nbns", "split_include", "dns_domain", "attributes", "reserved")
#: At most an IPv6 /64: the subnet size IPv6 hands to one link (RFC 4291 §2.5.1).
MAX_POOL_SIZE = 1 << 64
#: Configuration attribute types are 15 bits (RFC 7296 §3.15.1, RFC 2408 §4.6.2).
_MAX_ATTRIBUTE_TYPE = 0x7FFF
#: The attribute Length field is 16 bits.
_MAX_ATTRIBUTE_LENGTH = 0xFFFF
#: INTERNAL_IP4_ADDRESS and INTERNAL_IP6_ADDRESS: the lease itself.
_LEASE_ATTRIBUTES = {1: "INTERNAL_IP4_ADDRESS", 8: "INTERNAL_IP6_ADDRESS"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


class PoolError(LarvalError):
    """A pool's configuration is wrong, or a pool was named that does not exist.

    The message names the key (``pools.rw.addrs``) and what is allowed there; `key`
    holds the key alone, for a caller that prefixes the file.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def _show(value: object) -> str:
    """A value as TOML would write it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _key(*parts: str) -> str:
    """A dotted TOML key, each part quoted unless it is a bare key."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


def _subkey(key: str, part: str) -> str:
    """`key` (already dotted) and one more part."""
    return f"{key}.{_key(part)}"


def _identity_key(identity: Identity) -> bytes:
    return identity.encode() if isinstance(identity, str) else bytes(identity)


def _identity_text(identity: Identity) -> str:
    """An identity as status shows it: its text, or the hex of its bytes when they are
    no printable text (a client chooses its EAP identity; it must not reach a terminal
    as control characters)."""
    data = _identity_key(identity)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return "0x" + data.hex()
    return text if text.isprintable() else "0x" + data.hex()


@dataclass(frozen=True)
class PoolAttributes:
    """What a pool hands out beside the address (RFC 7296 §3.15.1, RFC 8598)."""

    dns: tuple[IPAddress, ...] = ()
    nbns: tuple[IPAddress, ...] = ()
    split_include: tuple[IPNetwork, ...] = ()
    #: INTERNAL_DNS_DOMAIN (25): the domains the client resolves through ``dns``.
    dns_domain: tuple[str, ...] = ()
    #: Numbered attributes as configured: (type, value), in the order written.
    raw: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class Lease:
    """An address a pool gave an identity."""

    pool: str
    address: IPAddress


@dataclass(frozen=True)
class PoolStatus:
    """One pool for ``larval pools``: its addresses and its leases, online and offline."""

    name: str
    addrs: str
    size: int
    #: (identity, address), grouped by identity; an address online in two IKE SAs of
    #: its identity (a reauthentication) is listed twice.
    online: tuple[tuple[str, IPAddress], ...]
    offline: tuple[tuple[str, IPAddress], ...]
    reserved: tuple[tuple[str, IPAddress], ...]

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON takes it."""

        def pairs(leases: tuple[tuple[str, IPAddress], ...]) -> list[dict[str, str]]:
            return [{"identity": i, "address": str(a)} for i, a in leases]

        return {
            "name": self.name,
            "addrs": self.addrs,
            "size": self.size,
            "online": pairs(self.online),
            "offline": pairs(self.offline),
            "reserved": pairs(self.reserved),
        }


class _Entry:
    """The leases of one identity: online ones with the peers holding them, offline ones
    in the order they went offline."""

    __slots__ = ("identity", "offline", "online")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.online: dict[int, list[Peer | None]] = {}
        self.offline: dict[int, None] = {}


class Pool:
    """One pool: its addresses, its attributes, its reserved addresses and its leases.

    Addresses are offsets from `first`; an offset below ``_unused`` or in ``_taken``
    was handed out once, and `_holders` says to which identity it belongs now.
    """

    def __init__(
        self,
        name: str,
        addrs: str,
        attributes: PoolAttributes | None = None,
        reserved: Reserved | None = None,
    ) -> None:
        """`addrs` as the ``addrs`` key takes it; raises `PoolError` naming
        ``pools.NAME.addrs`` or ``pools.NAME.reserved.ID``."""
        self.name = name
        self.addrs = addrs
        self.first, self.size = _parse_addrs(_key("pools", name, "addrs"), addrs)
        self.attributes = attributes or PoolAttributes()
        self._first = int(self.first)
        self._reserved: dict[bytes, int] = {}
        self._reserved_by_offset: dict[int, Identity] = {}
        for identity, address in (reserved or {}).items():
            where = _key("pools", name, "reserved", _identity_text(identity))
            offset = self._offset(address)
            if offset is None:
                raise PoolError(where, f"{address} is not in the pool ({self.range_text})")
            if offset in self._reserved_by_offset:
                other = _identity_text(self._reserved_by_offset[offset])
                raise PoolError(where, f"{address} is already reserved for {other!r}")
            if _identity_key(identity) in self._reserved:
                raise PoolError(where, "is reserved twice (as text and as bytes)")
            self._reserved[_identity_key(identity)] = offset
            self._reserved_by_offset[offset] = identity
        self._unused = 0
        self._taken: set[int] = set()
        self._holders: dict[int, bytes] = {}
        self._entries: dict[bytes, _Entry] = {}
        # Offline leases others may be given, the one released longest ago first.
        self._offline: OrderedDict[int, None] = OrderedDict()
        self._skip_used()

    @classmethod
    def from_dict(cls, name: str, table: object) -> Pool:
        """A pool from its ``[pools.NAME]`` table; raises `PoolError` naming the key."""
        return _parse_pool(name, table)

    @property
    def family(self) -> int:
        """4 or 6."""
        return self.first.version

    @property
    def last(self) -> IPAddress:
        return ipaddress.ip_address(self._first + self.size - 1)

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPAddress) and self._offset(address) is not None

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {self.range_text!r}, size={self.size})"

    # -- leases ------------------------------------------------------------------

    def acquire(
        self, identity: Identity, requested: IPAddress | None = None, peer: Peer | None = None
    ) -> IPAddress | None:
        """The address for `identity`, by the rules of the module's docstring; ``None``
        when the pool is exhausted, or `requested` is of the other family."""
        key = _identity_key(identity)
        if requested is not None and requested.version != self.family:
            return None
        wanted = self._wanted(requested)
        for rule in (self._existing, self._requested, self._new, self._reassigned):
            offset = rule(key, wanted, peer)
            if offset is not None:
                return self._give(key, identity, offset, peer)
        return None

    def release(self, identity: Identity, address: IPAddress) -> bool:
        """One IKE SA of `identity` gave `address` back; ``False`` if it held none.

        The lease goes offline once no IKE SA of the identity holds it any more.
        """
        entry = self._entries.get(_identity_key(identity))
        offset = self._offset(address)
        if entry is None or offset is None or offset not in entry.online:
            return False
        peers = entry.online[offset]
        peers.pop(0)
        if not peers:
            del entry.online[offset]
            entry.offline[offset] = None
            if offset not in self._reserved_by_offset:
                self._offline[offset] = None
        return True

    def status(self) -> PoolStatus:
        """The pool as ``larval pools`` shows it."""
        online: list[tuple[str, IPAddress]] = []
        offline: list[tuple[str, IPAddress]] = []
        for entry in self._entries.values():
            text = _identity_text(entry.identity)
            for offset, peers in entry.online.items():
                online.extend([(text, self._address(offset))] * len(peers))
            offline.extend((text, self._address(offset)) for offset in entry.offline)
        reserved = tuple(
            (_identity_text(identity), self._address(offset))
            for offset, identity in self._reserved_by_offset.items()
        )
        return PoolStatus(self.name, self.addrs, self.size, tuple(online), tuple(offline), reserved)

    def leases(self) -> Iterator[tuple[Identity, IPAddress, bool]]:
        """Every lease as (identity, address, online), one per IKE SA online."""
        for entry in self._entries.values():
            for offset, peers in entry.online.items():
                for _ in peers:
                    yield entry.identity, self._address(offset), True
            for offset in entry.offline:
                yield entry.identity, self._address(offset), False

    # -- the rules, each an offset or None -----------------------------------------

    def _existing(self, key: bytes, wanted: int | None, peer: Peer | None) -> int | None:
        """Rules 1 to 3: what this identity holds or has reserved."""
        entry = self._entries.get(key)
        if entry is not None and peer is not None:
            for offset, peers in entry.online.items():
                if peer in peers and wanted in (None, offset):
                    return offset
        reserved = self._reserved.get(key)
        if reserved is not None and (entry is None or reserved not in entry.online):
            return reserved
        if entry is not None and entry.offline:
            return wanted if wanted in entry.offline else next(iter(entry.offline))
        return None

    def _requested(self, key: bytes, wanted: int | None, peer: Peer | None) -> int | None:
        """Rule 4: the requested address, never handed out and reserved for nobody."""
        if wanted is None or wanted in self._reserved_by_offset or self._used(wanted):
            return None
        return wanted

    def _new(self, key: bytes, wanted: int | None, peer: Peer | None) -> int | None:
        """Rule 5: the next address never handed out."""
        return self._unused if self._unused < self.size else None

    def _reassigned(self, key: bytes, wanted: int | None, peer: Peer | None) -> int | None:
        """Rule 6: another identity's offline lease, the requested one if it is one."""
        if not self._offline:
            return None
        return wanted if wanted in self._offline else next(iter(self._offline))

    def _give(self, key: bytes, identity: Identity, offset: int, peer: Peer | None) -> IPAddress:
        holder = self._holders.get(offset)
        if holder is not None and holder != key:
            # Rule 6: the earlier holder loses its offline lease.
            earlier = self._entries[holder]
            del earlier.offline[offset]
            if not earlier.online and not earlier.offline:
                del self._entries[holder]
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(identity)
        entry.offline.pop(offset, None)
        self._offline.pop(offset, None)
        entry.online.setdefault(offset, []).append(peer)
        self._holders[offset] = key
        if offset >= self._unused:
            self._taken.add(offset)
            self._skip_used()
        return self._address(offset)

    def _used(self, offset: int) -> bool:
        return offset < self._unused or offset in self._taken

    def _skip_used(self) -> None:
        """Move ``_unused`` past addresses handed out on request and reserved ones; each
        is passed once, so this costs O(1) per acquire on average."""
        while self._unused < self.size and (
            self._unused in self._taken or self._unused in self._reserved_by_offset
        ):
            self._taken.discard(self._unused)
            self._unused += 1

    # -- addresses ---------------------------------------------------------------

    def _offset(self, address: IPAddress) -> int | None:
        if address.version != self.family:
            return None
        offset = int(address) - self._first
        return offset if 0 <= offset < self.size else None

    def _wanted(self, requested: IPAddress | None) -> int | None:
        """The requested address's offset; the unspecified address asks for any."""
        if requested is None or requested.is_unspecified:
            return None
        return self._offset(requested)

    def _address(self, offset: int) -> IPAddress:
        return ipaddress.ip_address(self._first + offset)


class Pools:
    """The configuration's pools by name; a connection's request goes to the pools it
    names, of the requested family, in the order it names them."""

    def __init__(self, pools: Iterable[Pool] = ()) -> None:
        self._pools: dict[str, Pool] = {}
        for pool in pools:
            if pool.name in self._pools:
                raise PoolError(_key("pools", pool.name), "is defined twice")
            self._pools[pool.name] = pool
        _check_overlaps(self._pools.values())

    @classmethod
    def from_dict(cls, table: object) -> Pools:
        """The pools of a ``[pools]`` table; raises `PoolError` naming the key."""
        if not isinstance(table, dict):
            raise PoolError("pools", f"{_show(table)} is not a table of pools")
        return cls(Pool.from_dict(name, value) for name, value in table.items())

    def __getitem__(self, name: str) -> Pool:
        return self._pools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._pools

    def __iter__(self) -> Iterator[Pool]:
        return iter(self._pools.values())

    def __len__(self) -> int:
        return len(self._pools)

    def check_names(self, key: str, names: Sequence[str]) -> None:
        """Raise `PoolError` naming `key` (``connections.rw.pools``) if a name is no pool."""
        for i, name in enumerate(names):
            if name not in self._pools:
                known = ", ".join(self._pools) or "none defined"
                raise PoolError(f"{key}[{i}]", f"{_show(name)} is not a pool; pools: {known}")

    def acquire(
        self,
        names: Sequence[str],
        identity: Identity,
        requested: IPAddress,
        peer: Peer | None = None,
    ) -> Lease | None:
        """An address of `requested`'s family (``0.0.0.0`` or ``::`` for any) from the
        pools `names` names; ``None`` when all of them are exhausted or none is of
        that family. A name that is no pool raises `PoolError` (``pools[i]``); the
        configuration checks a connection's names earlier with `check_names`."""
        self.check_names("pools", names)
        pools = [p for p in (self._pools[n] for n in names) if p.family == requested.version]
        key = _identity_key(identity)
        for rule in (Pool._existing, Pool._requested, Pool._new, Pool._reassigned):
            for pool in pools:
                offset = rule(pool, key, pool._wanted(requested), peer)
                if offset is not None:
                    return Lease(pool.name, pool._give(key, identity, offset, peer))
        return None

    def release(self, identity: Identity, lease: Lease) -> bool:
        """One IKE SA of `identity` gave `lease` back; ``False`` if it held none."""
        pool = self._pools.get(lease.pool)
        return pool is not None and pool.release(identity, lease.address)

    def status(self) -> list[PoolStatus]:
        """Every pool as ``larval pools`` shows it, in configuration order."""
        return [pool.status() for pool in self._pools.values()]


# -- parsing ---------------------------------------------------------------------


def _parse_addrs(key: str, text: object) -> tuple[IPAddress, int]:
    """The first address and the size of an ``addrs`` value."""
    if not isinstance(text, str):
        raise PoolError(key, f"{_show(text)} is not a prefix or a range of addresses")
    if "-" in text:
        first, last = (_address(key, part.strip(), text) for part in text.split("-", 1))
        if first.version != last.version:
            raise PoolError(key, f"{_show(text)} mixes IPv4 and IPv6; a range is of one family")
        if int(first) > int(last):
            raise PoolError(key, f"{_show(text)} is an empty range: {first} is above {last}")
        size = int(last) - int(first) + 1
    else:
        try:
            interface = ipaddress.ip_interface(text.strip())
        except ValueError:
            raise PoolError(
                key,
                f"{_show(text)} is not a prefix (10.3.0.0/24, 2001:db8::/64) "
                "or a range (10.3.0.10-10.3.0.200)",
            ) from None
        first, size = _prefix_addresses(interface)
        if size == 0:
            raise PoolError(key, f"{_show(text)} holds no address to hand out")
    if size > MAX_POOL_SIZE:
        raise PoolError(
            key,
            f"{_show(text)} holds more than 2^64 addresses; a pool holds at most 2^64 "
            "(an IPv6 /64)",
        )
    return first, size


def _address(key: str, text: str, whole: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise PoolError(
            key, f"{_show(whole)}: {_show(text)} is not an IPv4 or IPv6 address"
        ) from None


def _prefix_addresses(
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
) -> tuple[IPAddress, int]:
    """The first address and the count a prefix hands out, as ``mem_pool_create``."""
    network = interface.network
    base = interface.ip
    skipped = int(base) - int(network.network_address)
    size = network.num_addresses
    if size > 2:
        if skipped == 0:
            base, size = base + 1, size - 1  # the network address (IPv6: Subnet-Router)
        else:
            size -= skipped  # swanctl: the addresses below the one written stay out
        size -= 1  # the broadcast address (IPv6: the last, as strongSwan)
    else:
        size -= skipped  # a /31 or /32 hands out what it has from the address written
    return base, size


def _strings(key: str, value: object) -> list[tuple[str, str]]:
    """A string or a non-empty list of strings, each with its key."""
    if isinstance(value, str):
        return [(key, value)]
    if not isinstance(value, list) or not value:
        raise PoolError(key, f"{_show(value)} is not a string or a non-empty list of them")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PoolError(f"{key}[{i}]", f"{_show(item)} is not a string")
        out.append((f"{key}[{i}]", item))
    return out


def _ipv4_addresses(key: str, value: object) -> tuple[IPAddress, ...]:
    addresses = _addresses(key, value)
    for i, address in enumerate(addresses):
        if address.version == 6:
            where = key if isinstance(value, str) else f"{key}[{i}]"
            raise PoolError(
                where, f"{address} is IPv6; NBNS servers are IPv4 (RFC 7296 has no IPv6 NBNS)"
            )
    return addresses


def _addresses(key: str, value: object) -> tuple[IPAddress, ...]:
    out = []
    for where, text in _strings(key, value):
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            raise PoolError(where, f"{_show(text)} is not an IPv4 or IPv6 address") from None
    return tuple(out)


def _networks(key: str, value: object) -> tuple[IPNetwork, ...]:
    out = []
    for where, text in _strings(key, value):
        try:
            out.append(ipaddress.ip_network(text))
        except ValueError:
            raise PoolError(
                where,
                f"{_show(text)} is not a prefix (10.1.0.0/16, 2001:db8::/48) "
                "with its host bits zero",
            ) from None
    return tuple(out)


def _domains(key: str, value: object) -> tuple[str, ...]:
    out = []
    for where, text in _strings(key, value):
        name = text[:-1] if text.endswith(".") else text
        labels = name.split(".")
        if (
            not name.isascii()
            or len(name) > 253
            or not all(_LABEL.fullmatch(label) for label in labels)
        ):
            raise PoolError(
                where,
                f"{_show(text)} is not a domain name: labels of letters, digits and "
                "hyphens, at most 63 each and 253 in all (an international name in "
                "its xn-- form)",
            )
        out.append(name)
    return tuple(out)


def _raw_attributes(key: str, value: object) -> tuple[tuple[int, bytes], ...]:
    if not isinstance(value, dict):
        raise PoolError(key, f"{_show(value)} is not a table of attribute number = value")
    out: list[tuple[int, bytes]] = []
    for number, item in value.items():
        where = _subkey(key, str(number))
        text = str(number)
        kind = int(text) if text.isascii() and text.isdigit() else 0
        if not 1 <= kind <= _MAX_ATTRIBUTE_TYPE:
            raise PoolError(where, f"{_show(str(number))} is not an attribute type 1 to 32767")
        if kind in _LEASE_ATTRIBUTES:
            raise PoolError(
                where, f"attribute {kind} ({_LEASE_ATTRIBUTES[kind]}) is the lease; set addrs"
            )
        items = item if isinstance(item, list) else [item]
        for i, data in enumerate(items):
            at = f"{where}[{i}]" if isinstance(item, list) else where
            if isinstance(data, str):
                data = data.encode()
            if not isinstance(data, bytes):
                raise PoolError(at, f"{_show(data)} is not a string")
            if len(data) > _MAX_ATTRIBUTE_LENGTH:
                raise PoolError(at, f"{len(data)} bytes; an attribute holds at most 65535")
            out.append((kind, data))
    return tuple(out)


def _reserved(key: str, value: object) -> dict[Identity, IPAddress]:
    if not isinstance(value, dict):
        raise PoolError(key, f"{_show(value)} is not a table of identity = address")
    out: dict[Identity, IPAddress] = {}
    for identity, text in value.items():
        where = _subkey(key, str(identity))
        if not isinstance(identity, str | bytes) or not identity:
            raise PoolError(where, "an identity is a non-empty string")
        if not isinstance(text, str):
            raise PoolError(where, f"{_show(text)} is not an address")
        (address,) = _addresses(where, text)
        out[identity] = address
    return out


def _parse_pool(name: str, table: object) -> Pool:
    where = _key("pools", str(name))
    if not isinstance(name, str) or not name:
        raise PoolError(where, "a pool's name is a non-empty string")
    if not isinstance(table, dict):
        raise PoolError(where, f"{_show(table)} is not a table")
    for k in table:
        if k not in POOL_KEYS:
            raise PoolError(
                _key("pools", name, str(k)), "unknown key; allowed: " + ", ".join(POOL_KEYS)
            )
    if "addrs" not in table:
        raise PoolError(
            _key("pools", name, "addrs"),
            "missing: a prefix (10.3.0.0/24) or a range (10.3.0.10-10.3.0.200)",
        )

    def optional(k: str, parse: Callable[[str, object], tuple[_T, ...]]) -> tuple[_T, ...]:
        return parse(_key("pools", name, k), table[k]) if k in table else ()

    attributes = PoolAttributes(
        dns=optional("dns", _addresses),
        nbns=optional("nbns", _ipv4_addresses),
        split_include=optional("split_include", _networks),
        dns_domain=optional("dns_domain", _domains),
        raw=optional("attributes", _raw_attributes),
    )
    reserved = _reserved(_key("pools", name, "reserved"), table.get("reserved", {}))
    return Pool(name, table["addrs"], attributes, reserved)


def _check_overlaps(pools: Iterable[Pool]) -> None:
    """Two pools that share an address could give it to two identities."""
    spans = sorted((p.family, p._first, p._first + p.size - 1, p.name) for p in pools)
    widest: tuple[int, int, int, str] | None = None  # the span reaching furthest so far
    for span in spans:
        if widest is not None and widest[0] == span[0] and span[1] <= widest[2]:
            raise PoolError(
                _key("pools", span[3], "addrs"),
                f"overlaps {_key('pools', widest[3], 'addrs')}; pools must not share addresses",
            )
        if widest is None or widest[0] != span[0] or span[2] > widest[2]:
            widest = span
