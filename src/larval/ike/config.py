"""What an IKE SA and its CHILD_SAs are configured with, for either IKE version.

Proposals are suites of `larval.crypto.ike_transforms.Transform` in IKEv2 numbering;
`larval.ikev1.config` maps them onto IKEv1 attributes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from larval.crypto.ike_transforms import Transform
from larval.ike.auth_config import (
    AuthRound,
    EapAuth,
    IdMatch,
    LocalAuth,
    RemoteAuth,
    XauthAuth,
)
from larval.ike.identity import IdentityMatch, IdType

__all__ = [
    "ID_ANY",
    "ID_NONE",
    "ID_PERFECT",
    "ID_WILDCARD",
    "AddressMatch",
    "ChildConfig",
    "ChildPolicy",
    "IPAddress",
    "IPNetwork",
    "IkeConfig",
    "Suite",
    "address_quality",
    "identity_quality",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Suite = tuple[Transform, ...]  # one proposal: a transform of each type it negotiates


@dataclass(frozen=True)
class AddressMatch:
    """One entry of a connection's ``local_addrs`` or ``remote_addrs``, as swanctl.conf
    takes them: an address, a subnet (``192.0.2.0/24``), a range
    (``192.0.2.10-192.0.2.20``), or ``%any`` (``%any4`` or ``0.0.0.0``, ``%any6`` or ``::``:
    of that family only).

    `quality` says how well an address matches, as strongSwan's ike_cfg ranks them: an
    address 129, a subnet its prefix length + 1, a range or ``%any`` 1, no match 0.
    """

    text: str
    low: IPAddress | None = None  # None: %any
    high: IPAddress | None = None
    prefixlen: int | None = None  # a subnet's; None for an address, a range or %any
    family: int = 0  # %any4 / %any6: 4 / 6; 0: either

    @classmethod
    def parse(cls, text: str) -> AddressMatch:
        """The entry `text` names; `ValueError` saying what is allowed otherwise."""
        if text == "%any":
            return cls(text)
        if text in ("%any4", "%any6", "0.0.0.0", "::"):  # strongSwan: the "any" address
            return cls(text, family=6 if "6" in text or ":" in text else 4)
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(t.strip()) for t in text.split("-", 1))
                if first.version != last.version or first > last:  # type: ignore[operator]
                    raise ValueError
                return cls(text, first, last)
            if "/" in text:
                net = ipaddress.ip_network(text, strict=False)
                return cls(text, net.network_address, net.broadcast_address, net.prefixlen)
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an address, a subnet (192.0.2.0/24), a range "
                "(192.0.2.10-192.0.2.20) or %any"
            ) from None
        return cls(text, address, address)

    @property
    def exact(self) -> IPAddress | None:
        """The one address this is, or None if it takes more."""
        if self.low is None or self.low != self.high:
            return None
        return self.low if self.prefixlen in (None, self.low.max_prefixlen) else None

    def quality(self, address: IPAddress) -> int:
        if self.low is None or self.high is None:
            return 1 if self.family in (0, address.version) else 0
        if address.version != self.low.version or not self.low <= address <= self.high:  # type: ignore[operator]
            return 0
        if self.exact is not None:
            return 129
        return self.prefixlen + 1 if self.prefixlen is not None else 1

    def __str__(self) -> str:
        return self.text


def address_quality(matches: tuple[AddressMatch, ...], exact: IPAddress,
                    address: IPAddress) -> int:  # fmt: skip
    """How well `address` matches a side of a connection: its best entry in `matches`,
    or, where the connection names none, whether it is `exact`."""
    if not matches:
        return 129 if address == exact else 0
    return max(m.quality(address) for m in matches)


#: strongSwan's id_match_t: how closely a configured identity takes the one sent.
ID_PERFECT, ID_WILDCARD, ID_ANY, ID_NONE = 20, 2, 1, 0


def identity_quality(config: IkeConfig, id_type: int, data: bytes) -> int:
    """How closely the connection's remote identity takes the one the peer sent (IKEv2's
    IDi, IKEv1's IDii): `ID_PERFECT` for its exact identity, `ID_WILDCARD` for a pattern,
    `ID_ANY` for ``%any`` or none configured, `ID_NONE` when it does not take it."""
    claimed = (IdType(int(id_type)), data)
    match = config.remote_id_match
    if isinstance(match, IdentityMatch):
        if not match(*claimed):
            return ID_NONE
        return ID_ANY if match.id_type is None else ID_WILDCARD if match.wildcard else ID_PERFECT
    if match is not None:
        return ID_WILDCARD if match(*claimed) else ID_NONE
    if config.remote_id is None:
        return ID_ANY
    return ID_PERFECT if claimed == config.remote_id else ID_NONE


@dataclass(frozen=True)
class IkeConfig:
    """One connection: peers, identities, how each end authenticates, IKE proposals and
    timers."""

    name: str
    local_addr: IPAddress
    remote_addr: IPAddress
    local_id: tuple[IdType, bytes]
    remote_id: tuple[IdType, bytes] | None
    psk: bytes = field(repr=False)
    proposals: tuple[Suite, ...]
    encap: bool = False  # fake NAT detection so that ESP goes in UDP (as strongSwan's encap)
    retransmit_timeout: float = 4.0  # RFC 7296 §2.1; strongSwan's defaults
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    half_open_timeout: float = 30.0
    dpd_delay: float = 0.0  # 0: no liveness checks
    rekey_time: float = 0.0  # IKE SA rekeying (RFC 7296 §2.18); 0: never
    fragmentation: bool = True  # announce, take and send IKE fragments (swanctl's yes/no)
    fragment_size: int = 1280  # largest IP datagram of IKE sent whole (charon.fragment_size)
    cookie_threshold: int = 10  # half-open SAs before a responder asks for COOKIEs
    # Certificates (`larval.ike.auth_config`): None on a side is the PSK's.
    local_auth: LocalAuth | None = None
    remote_auth: RemoteAuth | None = None
    # EAP (RFC 7296 §2.16): this end a client (`local_eap`) or checking one (`remote_eap`).
    local_eap: EapAuth | None = None
    remote_eap: EapAuth | None = None
    # A peer identity with wildcards (``%any``, ``*.example.org``) in place of `remote_id`.
    remote_id_match: IdMatch | None = field(default=None, compare=False)
    # Virtual addresses this end asks the responder for in IKE_AUTH (RFC 7296 §2.19;
    # swanctl's vips): ``0.0.0.0`` or ``::`` for any of that family.
    vips: tuple[IPAddress, ...] = ()
    # Which addresses the connection is for (swanctl's local_addrs and remote_addrs; ()
    # : `local_addr` and `remote_addr` only). A responder's IKE SA has the addresses it
    # was opened with as `local_addr` and `remote_addr`; an initiator's the first exact
    # address of each. A connection with no exact remote address (``%any``) only answers.
    local_addrs: tuple[AddressMatch, ...] = ()
    remote_addrs: tuple[AddressMatch, ...] = ()

    def match_addresses(self, local: IPAddress, remote: IPAddress) -> int:
        """How well an IKE SA between `local` and `remote` fits this connection, as
        strongSwan ranks ike_cfgs (the remote address weighs twice the local): 0 for no
        fit."""
        me = address_quality(self.local_addrs, self.local_addr, local)
        other = address_quality(self.remote_addrs, self.remote_addr, remote)
        return 0 if not me or not other else me * 8 + other * 16

    @property
    def can_initiate(self) -> bool:
        """The connection names one peer to open IKE SAs to (not ``%any`` or a subnet)."""
        return not self.remote_addr.is_unspecified

    # IKEv1 XAuth after Phase 1: this end a client (`local_xauth`) or checking one
    # (`remote_xauth`); a gateway pushes Mode Config (CFG_SET) where `mode_config_push`.
    local_xauth: XauthAuth | None = None
    remote_xauth: XauthAuth | None = None
    mode_config_push: bool = False
    # Authentication rounds (RFC 4739), every one in order, the first included; () : one
    # round, the one the fields above describe.
    local_rounds: tuple[AuthRound, ...] = ()
    remote_rounds: tuple[AuthRound, ...] = ()


@dataclass(frozen=True)
class ChildConfig:
    """One CHILD_SA to create: ESP suites, traffic selectors, mode, lifetimes."""

    name: str
    proposals: tuple[Suite, ...]
    local_ts: tuple[IPNetwork, ...]
    remote_ts: tuple[IPNetwork, ...]
    mode: str = "tunnel"
    rekey_time: int = 3600
    life_time: int = 3960
    rekey_bytes: int = 0
    life_bytes: int = 0
    replay_window: int = 32
    inactivity: int = 0  # seconds without traffic before the CHILD_SA is closed (0: never)
    reference: object = None  # the key manager's own (e.g. the ACQUIRE it answers)


class ChildPolicy(Protocol):
    """A responder's inverse ACQUIRE: given the networks the initiator proposed for itself
    and for the responder (IKEv2's TSi and TSr, IKEv1's Quick Mode IDci and IDcr), the
    CHILD_SA policy accepts, or None. `mode` is what the initiator asked for: "transport"
    when it sent USE_TRANSPORT_MODE (RFC 7296 §1.3.1), given only then."""

    def __call__(
        self, tsi: tuple[IPNetwork, ...], tsr: tuple[IPNetwork, ...], mode: str = ..., /
    ) -> ChildConfig | None: ...
