"""What an IKE SA and its CHILD_SAs are configured with, and what the session reports."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from larval.crypto.ike_keys import ChildSaKeys
from larval.ikev2.constants import IdType
from larval.ikev2.negotiate import Suite

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def identity(text: str) -> tuple[IdType, bytes]:
    """An identity as swanctl writes it: an address, an FQDN, or user@FQDN."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if "@" in text:
            return IdType.ID_RFC822_ADDR, text.encode()
        return IdType.ID_FQDN, text.encode()
    kind = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
    return kind, address.packed


@dataclass(frozen=True)
class IkeConfig:
    """One connection: peers, identities, the PSK, IKE proposals and timers."""

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


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IkeSaUp:
    spi_i: bytes
    spi_r: bytes
    suite: Suite
    initiator: bool
    natted: bool  # NAT detected, or encap forced: ESP and IKE in UDP 4500


@dataclass(frozen=True)
class ChildSaUp:
    """A CHILD_SA both sides agreed on, with the keys of each direction."""

    child: ChildConfig
    spi_in: int
    spi_out: int
    suite: Suite
    keys_in: ChildSaKeys = field(repr=False)
    keys_out: ChildSaKeys = field(repr=False)
    local_ts: tuple[IPNetwork, ...]
    remote_ts: tuple[IPNetwork, ...]
    initiator: bool
    natted: bool
    # Seconds the outbound SA should wait before it carries traffic: a peer that holds no
    # early ESP must have its inbound SA first (IKEv1: until QM3 has reached it). 0: none.
    outbound_after: float = 0.0


@dataclass(frozen=True)
class ChildSaDown:
    spi_in: int
    spi_out: int
    by_peer: bool


@dataclass(frozen=True)
class IkeSaDown:
    reason: str
    by_peer: bool = False


@dataclass(frozen=True)
class IkeSaRekeyed:
    """The IKE SA was replaced by `new` (an `IkeSession`), which now holds the CHILD_SAs;
    the old one goes as soon as its DELETE is through."""

    new: object


@dataclass(frozen=True)
class IkeSaReauthDue:
    """IKEv1: the ISAKMP SA is due for reauthentication. IKEv1 has no rekey exchange; a new
    Main (or Aggressive) Mode with the same peer replaces it and takes over its CHILD_SAs."""


@dataclass(frozen=True)
class ChildSaFailed:
    child: ChildConfig
    reason: str


Event = (
    IkeSaUp | ChildSaUp | ChildSaDown | IkeSaDown | ChildSaFailed | IkeSaRekeyed | IkeSaReauthDue
)
