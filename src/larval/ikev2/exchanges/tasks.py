"""What the tasks of IKEv2's exchanges share: the IKE SA they see, and for a responder
the answer it makes."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, ClassVar

from ..constants import ExchangeType
from .sa import Ikev2Sa

if TYPE_CHECKING:
    from ..message import IkeMessage
    from ..payloads import Payload

__all__ = ["AnswerTask", "ExchangeTask"]


class ExchangeTask:
    """What every task of an exchange has: the IKE SA it sees, what it renews (nothing,
    unless it says), and whether its exchange is over (after one round trip, unless it
    says)."""

    exchange: ClassVar[ExchangeType]
    done = True

    def __init__(self, sa: Ikev2Sa) -> None:
        self._sa = sa

    @property
    def rekeys(self) -> Hashable | None:
        return None


class AnswerTask(ExchangeTask):
    """A responder's task: `process` checks the request and makes the answer, which
    `build` hands over; `answered` does what follows once the answer is framed (the IKE
    SA or the CHILD_SA up, the new IKE SA, the IKE SA closed), so that what it draws at
    random comes after the answer's IV."""

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._answer: tuple[Payload, ...] = ()

    def process(self, message: IkeMessage, now: float) -> None:
        """Check the request and make the answer; `IkeExchangeError` refuses it."""
        raise NotImplementedError

    def build(self, now: float) -> tuple[Payload, ...]:
        return self._answer

    def answered(self, now: float) -> None:
        return
