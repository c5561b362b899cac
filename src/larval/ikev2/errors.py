"""The errors the IKEv2 codec raises: each carries the Notify type to answer with.

A receive path catches `IkeProtocolError` once (`IkeDecodeError` is one) and turns it
into the error notification of RFC 7296 §2.21 (or a silent drop, when the message is not
worth an answer); `notify` and `data` are what that Notify payload carries.
"""

from __future__ import annotations

from larval.errors import DecodeError, LarvalError

from .constants import NotifyType

__all__ = ["IkeDecodeError", "IkeEncodeError", "IkeProtocolError"]


class IkeProtocolError(LarvalError):
    """A message broke a rule of RFC 7296: answer with ``notify`` carrying ``data``.

    ``data`` is the Notification Data, e.g. the one-octet payload type for
    UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 §3.10.1).
    """

    def __init__(self, notify: int, message: str, data: bytes = b"") -> None:
        super().__init__(notify, message, data)
        self.notify = NotifyType(notify)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} ({self.notify.name})"


class IkeDecodeError(IkeProtocolError, DecodeError):
    """Bytes that do not parse as IKEv2: a length lies, a field is cut short or out of range.

    The answer is INVALID_SYNTAX unless a more precise type applies (RFC 7296 §3.10.1).
    """

    def __init__(
        self, message: str, notify: int = NotifyType.INVALID_SYNTAX, data: bytes = b""
    ) -> None:
        super().__init__(notify, message, data)


class IkeEncodeError(LarvalError):
    """A value cannot be put on the wire: a field out of range, a length too large,
    or a protect callback that returned a length other than the one announced."""
