"""The errors the IKEv2 codec raises, below `larval.ike.errors`: each protocol error
carries the Notify type to answer with.

A receive path catches `IkeProtocolError` once (`IkeDecodeError` is one) and turns it
into the error notification of RFC 7296 §2.21 (or a silent drop, when the message is not
worth an answer); `notify` and `data` are what that Notify payload carries.
"""

from __future__ import annotations

from larval.errors import DecodeError
from larval.ike.errors import IkeEncodeError, IkeNotifyError

from .constants import NotifyType, ProtocolId

__all__ = [
    "IkeDecodeError",
    "IkeEncodeError",
    "IkeExchangeError",
    "IkeOutOfPlace",
    "IkeProtocolError",
]


class IkeProtocolError(IkeNotifyError):
    """A message broke a rule of RFC 7296: answer with ``notify`` carrying ``data``."""

    notify_types = NotifyType
    notify: NotifyType


class IkeDecodeError(IkeProtocolError, DecodeError):
    """Bytes that do not parse as IKEv2: a length lies, a field is cut short or out of range.

    The answer is INVALID_SYNTAX unless a more precise type applies (RFC 7296 §3.10.1).
    """

    def __init__(
        self, message: str, notify: int = NotifyType.INVALID_SYNTAX, data: bytes = b""
    ) -> None:
        super().__init__(notify, message, data)


class IkeExchangeError(IkeProtocolError):
    """An exchange refuses a request that decoded and decrypted: the answer is the error
    notification (RFC 7296 §2.21.2), about the SA `spi` of `protocol_id` where it names
    one (CHILD_SA_NOT_FOUND, §3.10.1). `close`, if given, is why the IKE SA goes once
    the answer is out; `answered` False: the request is dropped instead, and logged."""

    def __init__(
        self,
        notify: int,
        message: str,
        data: bytes = b"",
        *,
        protocol_id: ProtocolId = ProtocolId.NONE,
        spi: bytes = b"",
        close: str | None = None,
        answered: bool = True,
    ) -> None:
        super().__init__(notify, message, data)
        self.protocol_id = protocol_id
        self.spi = spi
        self.close = close
        self.answered = answered


class IkeOutOfPlace(IkeExchangeError):
    """A message the session's transition table does not allow in its state; the text
    names the state and the input (exchange, request or response)."""
