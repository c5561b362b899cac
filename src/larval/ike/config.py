"""What an IKE SA and its CHILD_SAs are configured with, for either IKE version.

Proposals are suites of `larval.crypto.ike_transforms.Transform` in IKEv2 numbering;
`larval.ikev1.config` maps them onto IKEv1 attributes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from larval.crypto.ike_transforms import Transform
from larval.ike.auth_config import (
    AuthRound,
    EapAuth,
    IdMatch,
    LocalAuth,
    RemoteAuth,
    XauthAuth,
)
from larval.ike.identity import IdType

__all__ = ["ChildConfig", "ChildPolicy", "IPAddress", "IPNetwork", "IkeConfig", "Suite"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Suite = tuple[Transform, ...]  # one proposal: a transform of each type it negotiates


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


# A responder's inverse ACQUIRE: given the networks the initiator proposed for itself and
# for the responder (IKEv2's TSi and TSr, IKEv1's Quick Mode IDci and IDcr), the CHILD_SA
# policy accepts, or None.
ChildPolicy = Callable[[tuple[IPNetwork, ...], tuple[IPNetwork, ...]], ChildConfig | None]
