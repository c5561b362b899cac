"""Each IKE version as the key manager meets it: how a datagram for no IKE SA is read and
refused, and how a session is built.

`VERSIONS` holds one `IkeVersion` per major version `larval.ike.datagram.version_of`
reads; a datagram of any other version is dropped. This is the one module of
`larval.keymgr` that imports the session classes: the key manager holds every session as
`larval.ike.sa.IkeSa`, and assigning each class to that type here is where mypy checks
that both satisfy it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from larval.ike.config import ChildPolicy, IkeConfig
from larval.ike.datagram import Recipient
from larval.ike.errors import IkeNotifyError
from larval.ike.sa import IkeSa
from larval.ike.state import IkeSaState, IkeStateError
from larval.ikev1 import stateless as v1_stateless
from larval.ikev1.constants import NotifyType as V1Notify
from larval.ikev1.errors import IkeV1ProtocolError
from larval.ikev1.session import IkeV1Session, offered_lifetime
from larval.ikev2 import stateless as v2_stateless
from larval.ikev2.constants import NotifyType
from larval.ikev2.errors import IkeProtocolError
from larval.ikev2.exchanges.config_payload import AddressPool
from larval.ikev2.exchanges.select import Candidate, Candidates
from larval.ikev2.session import IkeSession

__all__ = [
    "VERSIONS",
    "Candidate",
    "Candidates",
    "IkeVersion",
    "SessionHooks",
    "Start",
    "restore_session",
]

_NO_SPI = "the stack gave no SPI"


@dataclass(frozen=True)
class SessionHooks:
    """What a session built for a connection asks of its key manager."""

    allocate_spi: Callable[[], int | None]  # GETSPI; None: the stack gave no SPI
    child_policy: ChildPolicy  # inverse ACQUIRE
    random_bytes: Callable[[int], bytes]
    fragment_size: int  # the largest IKE message sent whole
    # A responder's connection's address pools (IKEv2's CFG_REQUEST, IKEv1's Mode
    # Config); None: it has none.
    address_pool: AddressPool | None = None
    # A responder's: the connections that matched the addresses, among which IKEv2's
    # IKE_AUTH chooses by the peer's identity (None: the connection's own only).
    candidates: Candidates | None = None


@dataclass(frozen=True)
class Start:
    """How a session starts: its role, and what each version takes of the connection."""

    initiator: bool
    spi_i: bytes | None = None  # IKEv2 responder: the initiator's SPI
    aggressive: bool = False  # IKEv1 initiator: Aggressive Mode instead of Main Mode
    initial_contact: bool = True  # IKEv1: N(INITIAL-CONTACT) with HASH_I


# A session of the version for the connection, given the GETSPI it is to call.
_Build = Callable[[IkeConfig, SessionHooks, Callable[[], int], Start], IkeSa]


@dataclass(frozen=True)
class IkeVersion:
    number: int
    opener: str  # how the noise log names a message that opens an IKE SA of this version
    cookies: bool  # answers IKE_SA_INIT under load with a COOKIE (RFC 7296 §2.6)
    recipient: Callable[[bytes], Recipient | None]
    # The answer to an opener for which no connection of this version exists.
    refusal: Callable[[bytes, Callable[[int], bytes]], bytes]
    no_spi: Callable[[], IkeNotifyError]  # the error of an exchange the stack gave no SPI for
    build: _Build

    def session(self, ike: IkeConfig, hooks: SessionHooks, start: Start) -> IkeSa:
        def allocate_spi() -> int:
            spi = hooks.allocate_spi()
            if spi is None:
                raise self.no_spi()
            return spi

        return self.build(ike, hooks, allocate_spi, start)


def _ikev2(ike: IkeConfig, hooks: SessionHooks, spis: Callable[[], int], start: Start) -> IkeSa:
    """An IKE SA; only a responder asks policy what its CHILD_SAs may be."""
    session: IkeSa = IkeSession(
        ike, initiator=start.initiator, allocate_spi=spis,
        child_policy=None if start.initiator else hooks.child_policy,
        random_bytes=hooks.random_bytes, spi_i=start.spi_i, fragmentation=ike.fragmentation,
        fragment_size=hooks.fragment_size,
        address_pool=None if start.initiator else hooks.address_pool,
        candidates=None if start.initiator else hooks.candidates,
    )  # fmt: skip
    return session


def _ikev1(ike: IkeConfig, hooks: SessionHooks, spis: Callable[[], int], start: Start) -> IkeSa:
    """An ISAKMP SA (its CKY-I is its own). Its lifetime offered is `rekey_time` and a
    tenth (strongSwan offers rekey_time + over_time), or RFC 2407's 8 hours."""
    session: IkeSa = IkeV1Session(
        ike, initiator=start.initiator, allocate_spi=spis, child_policy=hooks.child_policy,
        random_bytes=hooks.random_bytes, aggressive=start.aggressive,
        ike_lifetime=offered_lifetime(ike),
        initial_contact=start.initial_contact, fragmentation=ike.fragmentation,
        fragment_size=hooks.fragment_size,
        address_pool=None if start.initiator else hooks.address_pool,
        candidates=None if start.initiator else hooks.candidates,
    )  # fmt: skip
    return session


VERSIONS: dict[int, IkeVersion] = {
    1: IkeVersion(
        1, "IKEv1", False, v1_stateless.recipient, v1_stateless.no_proposal_chosen,
        # IKEv1 has no TEMPORARY_FAILURE; strongSwan answers NO_PROPOSAL_CHOSEN here.
        lambda: IkeV1ProtocolError(V1Notify.NO_PROPOSAL_CHOSEN, _NO_SPI),
        _ikev1,
    ),
    2: IkeVersion(
        2, "IKE_SA_INIT", True, v2_stateless.recipient,
        lambda spi_i, random_bytes: v2_stateless.no_proposal_chosen(spi_i),
        lambda: IkeProtocolError(NotifyType.TEMPORARY_FAILURE, _NO_SPI),
        _ikev2,
    ),
}  # fmt: skip


def restore_session(value: IkeSaState, ike: IkeConfig, hooks: SessionHooks) -> IkeSa:
    """The session of `value`'s version that continues the IKE SA it holds
    (`IkeStateError` if it is not of `ike`, or of no version larval speaks)."""
    version = VERSIONS.get(value.ike_version)
    if version is None:
        raise IkeStateError(f"IKE SA state of {value.name!r} is IKEv{value.ike_version}")

    def allocate_spi() -> int:
        spi = hooks.allocate_spi()
        if spi is None:
            raise version.no_spi()
        return spi

    cls: type[IkeV1Session] | type[IkeSession] = (
        IkeV1Session if value.ike_version == 1 else IkeSession
    )
    session: IkeSa = cls.restore(value, ike, allocate_spi=allocate_spi,
                                 child_policy=hooks.child_policy,
                                 random_bytes=hooks.random_bytes)  # fmt: skip
    return session
