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
from typing import Protocol

from larval.ike.config import ChildPolicy, IkeConfig
from larval.ike.datagram import Recipient
from larval.ike.errors import IkeNotifyError
from larval.ike.sa import IkeSa
from larval.ikev1 import stateless as v1_stateless
from larval.ikev1.constants import NotifyType as V1Notify
from larval.ikev1.errors import IkeV1ProtocolError
from larval.ikev1.session import IKE_LIFETIME, IkeV1Session
from larval.ikev2 import stateless as v2_stateless
from larval.ikev2.constants import NotifyType
from larval.ikev2.errors import IkeProtocolError
from larval.ikev2.session import IkeSession

__all__ = ["VERSIONS", "IkeVersion", "SessionHooks"]


@dataclass(frozen=True)
class SessionHooks:
    """What a session built for a connection asks of its key manager."""

    allocate_spi: Callable[[], int | None]  # GETSPI; None: the stack gave no SPI
    child_policy: ChildPolicy  # inverse ACQUIRE
    random_bytes: Callable[[int], bytes]
    fragment_size: int  # the largest IKE message sent whole


class IkeVersion(Protocol):
    number: int
    #: How the noise log names a message that opens an IKE SA of this version.
    opener: str
    #: Answers IKE_SA_INIT under load with a COOKIE (RFC 7296 §2.6); IKEv1 has none.
    cookies: bool

    def recipient(self, datagram: bytes) -> Recipient | None: ...

    def refusal(self, spi_i: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """The answer to an opener for which no connection of this version exists."""
        ...

    def session(
        self, ike: IkeConfig, hooks: SessionHooks, *, initiator: bool, spi_i: bytes | None,
        aggressive: bool, initial_contact: bool,
    ) -> IkeSa: ...  # fmt: skip


_NO_SPI = "the stack gave no SPI"


def _allocate_spi(hooks: SessionHooks, no_spi: Callable[[], IkeNotifyError]) -> Callable[[], int]:
    """A session's `allocate_spi`: the key manager's GETSPI, or, when the stack gave no
    SPI, the version's error for the exchange that needed one."""

    def allocate() -> int:
        spi = hooks.allocate_spi()
        if spi is None:
            raise no_spi()
        return spi

    return allocate


class _IkeV2:
    number = 2
    opener = "IKE_SA_INIT"
    cookies = True

    def recipient(self, datagram: bytes) -> Recipient | None:
        return v2_stateless.recipient(datagram)

    def refusal(self, spi_i: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        return v2_stateless.no_proposal_chosen(spi_i)

    def session(
        self, ike: IkeConfig, hooks: SessionHooks, *, initiator: bool, spi_i: bytes | None,
        aggressive: bool, initial_contact: bool,
    ) -> IkeSa:  # fmt: skip
        """An IKE SA (`aggressive` and `initial_contact` are IKEv1's)."""

        def no_spi() -> IkeNotifyError:
            return IkeProtocolError(NotifyType.TEMPORARY_FAILURE, _NO_SPI)

        session: IkeSa = IkeSession(
            ike, initiator=initiator, allocate_spi=_allocate_spi(hooks, no_spi),
            child_policy=None if initiator else hooks.child_policy,
            random_bytes=hooks.random_bytes, spi_i=spi_i, fragmentation=ike.fragmentation,
            fragment_size=hooks.fragment_size,
        )  # fmt: skip
        return session


class _IkeV1:
    number = 1
    opener = "IKEv1"
    cookies = False

    def recipient(self, datagram: bytes) -> Recipient | None:
        return v1_stateless.recipient(datagram)

    def refusal(self, spi_i: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        return v1_stateless.no_proposal_chosen(spi_i, random_bytes)

    def session(
        self, ike: IkeConfig, hooks: SessionHooks, *, initiator: bool, spi_i: bytes | None,
        aggressive: bool, initial_contact: bool,
    ) -> IkeSa:  # fmt: skip
        """An ISAKMP SA. Its lifetime offered is `rekey_time` and a tenth (strongSwan offers
        rekey_time + over_time), or RFC 2407's 8 hours; CKY-I is its own (`spi_i` unused)."""

        def no_spi() -> IkeNotifyError:
            # IKEv1 has no TEMPORARY_FAILURE; strongSwan answers NO_PROPOSAL_CHOSEN here.
            return IkeV1ProtocolError(V1Notify.NO_PROPOSAL_CHOSEN, _NO_SPI)

        rekey = ike.rekey_time
        session: IkeSa = IkeV1Session(
            ike, initiator=initiator, allocate_spi=_allocate_spi(hooks, no_spi),
            child_policy=hooks.child_policy, random_bytes=hooks.random_bytes,
            aggressive=aggressive, ike_lifetime=int(rekey * 1.1) if rekey else IKE_LIFETIME,
            initial_contact=initial_contact, fragmentation=ike.fragmentation,
            fragment_size=hooks.fragment_size,
        )  # fmt: skip
        return session


VERSIONS: dict[int, IkeVersion] = {1: _IkeV1(), 2: _IkeV2()}
