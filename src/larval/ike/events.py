"""What an IKE session of either version reports to its key manager (`next_event()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from larval.crypto.ike_keys import ChildSaKeys
from larval.ike.config import ChildConfig, IPNetwork, Suite

if TYPE_CHECKING:
    from larval.ike.sa import IkeSa

__all__ = [
    "ChildSaDown",
    "ChildSaFailed",
    "ChildSaUp",
    "Event",
    "IkeSaDown",
    "IkeSaReauthDue",
    "IkeSaRekeyed",
    "IkeSaUp",
]


@dataclass(frozen=True)
class IkeSaUp:
    spi_i: bytes
    spi_r: bytes
    suite: Suite
    initiator: bool
    natted: bool  # NAT detected, or encap forced: ESP and IKE in UDP 4500
    # IKEv1, which reauthenticates instead of rekeying: this ISAKMP SA replaces the others
    # with the peer and takes over their CHILD_SAs (`larval.ike.sa.IkeSa.adopt_children`).
    takes_over: bool = False
    # The peer sent INITIAL-CONTACT: it has forgotten the others, which go now, CHILD_SAs
    # and all.
    initial_contact: bool = False


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
    # The CHILD_SA (by its inbound SPI) the peer renewed with this one (RFC 7296 §1.3.3,
    # this end responding). The peer installs its inbound SA only when our answer arrives,
    # so ours to it waits until the peer deletes the old CHILD_SA (§2.8), as charon does;
    # until then, traffic goes on over the old one.
    replaces: int | None = None


@dataclass(frozen=True)
class ChildSaDown:
    spi_in: int
    spi_out: int
    by_peer: bool
    # The CHILD_SA was renewed (RFC 7296 §2.8; IKEv1: a newer Quick Mode) and its successor
    # carries the traffic: its outbound SA goes now, its inbound one a little later, so
    # that what the peer sent on it before it switched still arrives (as charon's
    # delete_rekeyed_delay).
    rekeyed: bool = False


@dataclass(frozen=True)
class IkeSaDown:
    reason: str
    by_peer: bool = False


@dataclass(frozen=True)
class IkeSaRekeyed:
    """The IKE SA was replaced by `new` (IKEv2), which now holds the CHILD_SAs; the old
    one goes as soon as its DELETE is through."""

    new: IkeSa


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
