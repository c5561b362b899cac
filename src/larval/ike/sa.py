"""What a key manager knows of an IKE SA machine of either version: `IkeSa`.

A session is driven like aioquic's connection, by the same five methods in both versions
(`receive_datagram`, `handle_timer`; drained with `datagrams_to_send`, `get_timer`,
`next_event`), and by the user calls `initiate`, `create_child`, `rekey_child`, `delete`
and `delete_child`. What the key manager reads of it — version, SPIs, the peer's address
and port, NAT, the suite, its CHILD_SAs, deadlines, and where it is in its life as a
`Phase`, how each end authenticated — is the same for both. `larval.ikev2.session.IkeSession` and
`larval.ikev1.session.IkeV1Session` both satisfy the protocol (mypy checks it where
`larval.keymgr.versions` builds them). Either writes an established IKE SA out as a value
(`snapshot`, `larval.ike.state`) and makes a session that continues it from one
(`restore`).

Where the versions differ, the difference stays behind this surface:

* Renewing a CHILD_SA: `rekey_child` is IKEv2's CREATE_CHILD_SA with N(REKEY_SA) (RFC 7296
  §1.3.3), and IKEv1's new Quick Mode for the same child (RFC 2409 §5.5 has no rekey), once
  per CHILD_SA, as each end's soft EXPIRE of either SA of the pair asks.
* Renewing the IKE SA: an IKEv2 session rekeys itself and reports the new one
  (`IkeSaRekeyed`); IKEv1 has no rekey exchange, so its session reports `IkeSaReauthDue`
  and the key manager opens a new ISAKMP SA with the peer, whose `IkeSaUp` says it
  `takes_over`. Then it `adopt_children` of the ones it replaces, which `retire`; and a
  replacement that failed tells the old one (`reauth_failed`). IKEv2 never reports
  either, and its versions of the three methods do nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Protocol, Self

from larval.crypto.randomness import RandomBytes, system_random
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress, Suite
from larval.ike.counters import IkeCounters
from larval.ike.events import Event
from larval.ike.sk_keys import IkeSkKeys
from larval.ike.state import IkeSaState

__all__ = ["Address", "IkeSa", "Phase"]

Address = tuple[str, int]


class Phase(enum.Enum):
    """Where an IKE SA is in its life, in words both versions share."""

    IDLE = "idle"  # nothing sent; a responder that took nothing (a stateless answer at most)
    CONNECTING = "connecting"  # the exchanges that set it up are under way
    # An IKEv2 responder that answered IKE_SA_INIT and waits for IKE_AUTH: the state a
    # flood of forged openers makes, and what COOKIEs guard (RFC 7296 §2.6).
    HALF_OPEN = "half-open"
    ESTABLISHED = "established"
    REPLACED = "replaced"  # IKEv1: a newer ISAKMP SA took over; deleted soon
    DELETING = "deleting"
    CLOSED = "closed"


class IkeSa(Protocol):
    """One IKE SA of either version, as its key manager drives and reads it."""

    @property
    def version(self) -> int:
        """The IKE major version: 1 or 2."""
        ...

    @property
    def config(self) -> IkeConfig: ...

    #: The key manager's event counters (`larval.ike.counters`); it sets its own.
    counters: IkeCounters

    @property
    def initiator(self) -> bool:
        """It started the exchange that set it up (IKE_SA_INIT, Main/Aggressive Mode)."""
        ...

    @property
    def spi_i(self) -> bytes:
        """The initiator's SPI (IKEv1: CKY-I); empty until known."""
        ...

    @property
    def spi_r(self) -> bytes: ...

    @property
    def remote(self) -> Address:
        """Where the peer's IKE is sent: behind a NAT, the port the NAT made of it."""
        ...

    @property
    def natted(self) -> bool:
        """NAT detected, or encapsulation forced: ESP and IKE in UDP 4500."""
        ...

    @property
    def phase(self) -> Phase: ...

    @property
    def state(self) -> enum.Enum:
        """The version's own state, whose value names it for status; decisions read `phase`."""
        ...

    @property
    def suite(self) -> Suite:
        """The negotiated IKE suite in IKEv2 numbering; () until one is chosen."""
        ...

    @property
    def children(self) -> Mapping[int, object]:
        """The CHILD_SAs this IKE SA holds, by inbound SPI."""
        ...

    @property
    def rekey_at(self) -> float | None:
        """When it is due for rekeying (IKEv1: reauthentication); None: not scheduled."""
        ...

    @property
    def expires_at(self) -> float | None:
        """When its lifetime ends; None: it has none of its own (IKEv2)."""
        ...

    @property
    def auth_local(self) -> AuthInfo | None:
        """How this end proved itself to the peer; None until the IKE SA is established."""
        ...

    @property
    def auth_remote(self) -> AuthInfo | None:
        """How the peer proved itself (its certificate's subject and issuer); None until
        the IKE SA is established."""
        ...

    @property
    def virtual_ips(self) -> tuple[IPAddress, ...]:
        """The peer's virtual addresses (responder) or this end's (initiator)."""
        ...

    def sk_keys(self) -> IkeSkKeys | None:
        """The keys that protect this IKE SA's messages, both ways, once they are derived
        (after IKE_SA_INIT, IKEv1's third Main Mode message); None before."""
        ...

    # -- the five-method surface -----------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...

    def next_event(self) -> Event | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    # -- user calls ------------------------------------------------------------------------

    def initiate(self, child: ChildConfig | None, now: float) -> None:
        """Open the IKE SA; `child` is set up with it (None: IKEv1 reauthentication)."""
        ...

    def create_child(self, child: ChildConfig, now: float) -> None:
        """Another CHILD_SA on the established IKE SA; raises `IkeNotifyError` if it
        cannot start (the stack gave no SPI, the IKE SA is not established)."""
        ...

    def rekey_child(self, spi_in: int, now: float) -> bool:
        """Renew the CHILD_SA; False if there is nothing to do (unknown, under way, or
        renewed already). May raise as `create_child` does."""
        ...

    def delete(self, now: float, reason: str = "deleted") -> None:
        """Delete the IKE SA and its CHILD_SAs, telling the peer if it is established."""
        ...

    def delete_child(self, spi_in: int, now: float) -> None: ...

    # -- IKEv1's reauthentication (nothing to do in IKEv2) -------------------------------------

    def adopt_children(self, old: Self) -> list[int]:
        """Take over the CHILD_SAs of `old`, which this IKE SA replaces; their inbound SPIs."""
        ...

    def retire(self, now: float) -> None:
        """A newer IKE SA with the peer took over: start nothing, go a little later."""
        ...

    def reauth_failed(self, now: float) -> None:
        """The IKE SA meant to replace this one did not come up."""
        ...

    # -- as a value (larval.ike.state) -------------------------------------------------------

    def snapshot(self) -> IkeSaState:
        """The established IKE SA and its CHILD_SAs as a value; raises `IkeStateError`
        while an exchange is under way that the value cannot hold."""
        ...

    @classmethod
    def restore(
        cls,
        value: IkeSaState,
        config: IkeConfig,
        *,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None = None,
        random_bytes: RandomBytes = system_random,
    ) -> Self:
        """A new session that continues the IKE SA `value` holds, of the connection
        `config` (`IkeStateError` if it is another's, or of the other version)."""
        ...
