"""Policies: what to do with the traffic a selector names (RFC 4301 §4.4.1).

A `Policy` is one SPD entry for one direction: BYPASS, DISCARD, or PROTECT with ESP
using one of its ordered algorithm alternatives, in tunnel or transport mode, with the
SA lifetimes key management is to give the SAs it makes for it.

Priorities follow strongSwan and Linux XFRM: the lower number wins. A policy given no
priority gets one derived from its selector's specificity, so that by default a longer
prefix, then a named protocol, then given ports, then an ICMP type win. Derived
priorities lie between `AUTO_PRIORITY_BASE - 16436` and `AUTO_PRIORITY_BASE`, so an
explicit priority below 83,564 puts a policy before every policy without one.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field, replace

from larval.crypto.proposals import EspProposal
from larval.spd.errors import SpdError
from larval.spd.selector import IPAddress, Selector

__all__ = [
    "ANY_PEER_WORDS",
    "AUTO_PRIORITY",
    "AUTO_PRIORITY_BASE",
    "DEFAULT_LIFE_TIME",
    "DEFAULT_REKEY_TIME",
    "DEFAULT_REPLAY_WINDOW",
    "Action",
    "Direction",
    "Lifetimes",
    "Mode",
    "Policy",
    "Tunnel",
    "default_priority",
]

#: swanctl.conf children defaults: rekey_time 1h, life_time = rekey_time + 10 %.
DEFAULT_REKEY_TIME = 3600
DEFAULT_LIFE_TIME = 3960
#: swanctl.conf replay_window default.
DEFAULT_REPLAY_WINDOW = 32

#: Ask for the priority derived from the selector.
AUTO_PRIORITY = -1
AUTO_PRIORITY_BASE = 100_000


class Action(enum.Enum):
    """RFC 4301 §4.4.1: what the SPD entry does with matching packets."""

    BYPASS = "bypass"
    DISCARD = "discard"
    PROTECT = "protect"


class Direction(enum.Enum):
    OUT = "out"
    IN = "in"

    def reverse(self) -> Direction:
        return Direction.IN if self is Direction.OUT else Direction.OUT


class Mode(enum.Enum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """SA lifetimes for the SAs of a PROTECT policy: soft (rekey) and hard (life).

    Seconds after the SA is added and bytes protected; 0 means no limit. They become
    the soft and hard addtime/bytes of the ACQUIRE's combinations (RFC 2367 §2.3.7).
    """

    rekey_time: int = DEFAULT_REKEY_TIME
    life_time: int = DEFAULT_LIFE_TIME
    rekey_bytes: int = 0
    life_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("rekey_time", "life_time", "rekey_bytes", "life_bytes"):
            if getattr(self, name) < 0:
                raise SpdError(f"{name} cannot be negative")
        # RFC 2367 §2.3.3: a soft limit beyond the hard one never fires; the SADB would
        # refuse such an SA (illumos SADB_X_DIAGNOSTIC_*_HSERR).
        if self.rekey_time and self.life_time and self.rekey_time > self.life_time:
            raise SpdError(f"rekey_time {self.rekey_time} is after life_time {self.life_time}")
        if self.rekey_bytes and self.life_bytes and self.rekey_bytes > self.life_bytes:
            raise SpdError(f"rekey_bytes {self.rekey_bytes} is above life_bytes {self.life_bytes}")


#: Words for "any peer" in ``remote_addrs``, as strongSwan reads them: any address of the
#: local end's family, or of the one family named.
ANY_PEER_WORDS: dict[str, int | None] = {
    "%any": None,
    "%any4": 4,
    "%any6": 6,
    "0.0.0.0": 4,
    "::": 6,
}


@dataclass(frozen=True, slots=True)
class Tunnel:
    """The outer addresses of a tunnel-mode SA: this end and the peer.

    The peer may be *any* address (``%any``, a remote-access gateway's road warriors):
    `remote` is then the unspecified address of the local end's family (``0.0.0.0`` or
    ``::``, as strongSwan's ``%any`` host is), and `any_remote` is true. Such a policy
    has one SA per peer, each found by its inner destination selector
    (`larval.sadb.inner`), never by the tunnel's outer pair; the stack cannot
    ACQUIRE for it, having no peer address to name.
    """

    local: IPAddress
    remote: IPAddress
    #: The peer is any address (``%any``): one SA per peer, by inner destination. Kept,
    #: not computed: the dataplane asks for every packet.
    any_remote: bool = field(init=False, repr=False, compare=False)
    #: Both ends' packed forms, kept for the same reason: the inbound policy check
    #: compares them with an SA's addresses for every packet.
    local_packed: bytes = field(init=False, repr=False, compare=False)
    remote_packed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.local.version != self.remote.version:
            raise SpdError("tunnel endpoints mix IPv4 and IPv6")
        if self.local.is_unspecified:
            raise SpdError(
                f"a tunnel's local end must be an address of this host, not {self.local}"
            )
        object.__setattr__(self, "any_remote", self.remote.is_unspecified)
        object.__setattr__(self, "local_packed", self.local.packed)
        object.__setattr__(self, "remote_packed", self.remote.packed)

    @property
    def remote_text(self) -> str:
        """The peer as the policy file writes it: an address, or ``%any``."""
        return "%any" if self.remote.is_unspecified else str(self.remote)

    @classmethod
    def any_peer(cls, local: IPAddress) -> Tunnel:
        """A tunnel from `local` to any peer of its family."""
        return cls(local, ipaddress.ip_address("::" if local.version == 6 else "0.0.0.0"))

    @classmethod
    def of(cls, local: str | IPAddress, remote: str | IPAddress) -> Tunnel:
        """From addresses or their text; `remote` may be one of `ANY_PEER_WORDS`."""
        try:
            near = ipaddress.ip_address(local)
            if isinstance(remote, str) and remote.strip() in ANY_PEER_WORDS:
                family = ANY_PEER_WORDS[remote.strip()]
                if family is not None and family != near.version:
                    raise SpdError(
                        f"peer {remote.strip()} is IPv{family}, the local end {near} is not"
                    )
                return cls.any_peer(near)
            return cls(near, ipaddress.ip_address(remote))
        except ValueError as exc:
            raise SpdError(str(exc)) from None


def default_priority(selector: Selector) -> int:
    """The priority of a policy that names none: more specific, lower (= earlier).

    Each prefix bit weighs 64, more than protocol (32), two port ranges (8 each) and an
    ICMP type (4) together, so prefixes decide first, as in strongSwan's
    ``kernel_netlink`` priority computation.
    """
    bits, proto, ports, icmp = selector.specificity()
    return AUTO_PRIORITY_BASE - 64 * bits - 32 * proto - 8 * ports - 4 * icmp


@dataclass(frozen=True, slots=True)
class Policy:
    """One SPD entry for one direction.

    ``priority`` AUTO_PRIORITY becomes `default_priority` of the selector. ``reqid`` 0
    is filled in by `Spd.add` with a number unique in that SPD. ``proposals`` are the
    ESP alternatives, preferred first; ``tunnel`` the outer addresses in tunnel mode.
    """

    name: str
    direction: Direction
    selector: Selector
    action: Action = Action.PROTECT
    proposals: tuple[EspProposal, ...] = ()
    mode: Mode = Mode.TRANSPORT
    tunnel: Tunnel | None = None
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    priority: int = AUTO_PRIORITY
    reqid: int = 0
    replay_window: int = DEFAULT_REPLAY_WINDOW

    def __post_init__(self) -> None:
        if not self.name:
            raise SpdError("a policy needs a name")
        if self.priority == AUTO_PRIORITY:
            object.__setattr__(self, "priority", default_priority(self.selector))
        elif self.priority < 0:
            raise SpdError(f"priority {self.priority} is negative")
        if self.reqid < 0:
            raise SpdError(f"reqid {self.reqid} is negative")
        if self.action is Action.PROTECT:
            if not self.proposals:
                raise SpdError(f"policy {self.name}: protect needs at least one ESP proposal")
            if self.mode is Mode.TUNNEL and self.tunnel is None:
                raise SpdError(f"policy {self.name}: tunnel mode needs tunnel endpoints")
        if self.mode is Mode.TRANSPORT and self.tunnel is not None:
            raise SpdError(f"policy {self.name}: transport mode has no tunnel endpoints")

    def mirrored(self) -> Policy:
        """The same entry for the other direction (selectors are local/remote already),
        with reqid 0 so that the SPD gives it its own."""
        return replace(self, direction=self.direction.reverse(), reqid=0)

    def sort_key(self, index: int) -> tuple[int, int, int, int, int, int]:
        """Order of preference among matching policies: priority, then specificity,
        then the earlier added (``index``), as illumos matches first-entered policies."""
        bits, proto, ports, icmp = self.selector.specificity()
        return (self.priority, -bits, -proto, -ports, -icmp, index)
