"""IKEv2's requests as tasks (`larval.ike.task.Task`): what each exchange sends as its
initiator, what it keeps until the answer comes, and where that answer goes.

One module, not a package: each task is a few lines of state (the nonce, DH key pair and
SPI its request carried, the colliding exchange of the peer) around the session's
handling of its response, and the tasks read best side by side. A task's payloads are
made when it is queued, so that the SPI from the stack and the random draws come in the
order the user called for them, whatever the window does.

* `IkeAuth`: HDR, SK {IDi, AUTH, SAi2, TSi, TSr} -->  (RFC 7296 §1.2)
* `ChildCreate`: CREATE_CHILD_SA {[N(REKEY_SA)], SA, Ni, [KEi,] TSi, TSr} -->  a new
  CHILD_SA or the renewal of one (§1.3.1, §1.3.3), with its collision (§2.8.1)
* `IkeRekey`: CREATE_CHILD_SA {SA, Ni, KEi} -->  a new IKE SA (§1.3.2), with its
  collision (§2.8.2)
* `Informational`: INFORMATIONAL {[D]} -->  a DELETE or a liveness check (§1.4, §2.4)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from larval.crypto.dh import DhKeyPair
from larval.ike.config import ChildConfig

from ..constants import ExchangeType
from ..message import IkeMessage
from ..payloads import Payload
from .ike_sa_init import IkeSaInit, IkeSaInitResponder
from .sa import ChildSa

if TYPE_CHECKING:
    from ..session import IkeSession

__all__ = [
    "IKE_SA",
    "ChildCreate",
    "IkeAuth",
    "IkeRekey",
    "IkeSaInit",
    "IkeSaInitResponder",
    "Informational",
    "RequestTask",
]

#: What `IkeRekey` renews, as `TaskManager.rekeying` looks it up.
IKE_SA = "IKE SA"

#: What a task's response is handed to.
Answered = Callable[[IkeMessage, float], None]


@dataclass(eq=False)
class RequestTask:
    """An exchange this end starts: its request's payloads, and who takes the answer."""

    exchange = ExchangeType.INFORMATIONAL
    done = True
    payloads: tuple[Payload, ...]
    answered: Answered

    @property
    def rekeys(self) -> Hashable | None:
        return None

    def build(self, now: float) -> tuple[Payload, ...]:
        return self.payloads

    def process(self, message: IkeMessage, now: float) -> None:
        self.answered(message, now)


@dataclass(eq=False)
class Informational(RequestTask):
    """INFORMATIONAL { [D(...)] } -->  a DELETE, or an empty request asking whether the
    peer is alive (RFC 7296 §1.4, §2.4)."""

    exchange = ExchangeType.INFORMATIONAL


@dataclass(eq=False)
class IkeAuth(RequestTask):
    """HDR, SK {IDi, AUTH, SAi2, TSi, TSr} -->  (RFC 7296 §1.2)"""

    exchange = ExchangeType.IKE_AUTH


@dataclass(eq=False)
class _Renewal:
    """A CREATE_CHILD_SA request whose answer is handled with the task's own state."""

    exchange = ExchangeType.CREATE_CHILD_SA
    done = True
    payloads: tuple[Payload, ...]
    answered: Callable[[Self, IkeMessage, float], None]

    def build(self, now: float) -> tuple[Payload, ...]:
        return self.payloads

    def process(self, message: IkeMessage, now: float) -> None:
        self.answered(self, message, now)


@dataclass(eq=False)
class ChildCreate(_Renewal):
    """CREATE_CHILD_SA for a new CHILD_SA, or to renew `old` (RFC 7296 §1.3.1, §1.3.3)."""

    config: ChildConfig
    old: ChildSa | None
    spi_in: int
    nonce_i: bytes = field(repr=False)
    dh: DhKeyPair | None = field(repr=False)
    #: RFC 7296 §2.8.1: the peer rekeyed the same CHILD_SA while this exchange was under
    #: way; its exchange's new inbound SPI, Ni and Nr.
    collision: tuple[int, bytes, bytes] | None = field(default=None, repr=False)

    @property
    def rekeys(self) -> Hashable | None:
        return ("child", self.old.spi_in) if self.old is not None else None


@dataclass(eq=False)
class IkeRekey(_Renewal):
    """CREATE_CHILD_SA {SA, Ni, KEi} -->  a new IKE SA to replace this one (§1.3.2)."""

    spi_i: bytes
    nonce_i: bytes = field(repr=False)
    dh: DhKeyPair = field(repr=False)
    #: RFC 7296 §2.8.2: the IKE SA made answering the peer's rekey while this one was
    #: under way, with that exchange's Ni and Nr.
    collision: tuple[IkeSession, bytes, bytes] | None = field(default=None, repr=False)

    @property
    def rekeys(self) -> Hashable | None:
        return IKE_SA
