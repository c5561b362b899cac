"""The errors the IKEv1 codec raises, below `larval.ike.errors`: each protocol error
carries the Notify type to answer with.

A receive path catches `IkeV1ProtocolError` once (`IkeV1DecodeError` is one) and turns it
into an Informational exchange carrying that notification (RFC 2408 §5, RFC 2409 §5.7),
or into a silent drop when the message is not worth an answer.
"""

from __future__ import annotations

from larval.errors import DecodeError
from larval.ike.errors import IkeEncodeError, IkeError, IkeNotifyError

from .constants import NotifyType

__all__ = [
    "IkeV1AuthFailed",
    "IkeV1ConfigError",
    "IkeV1DecodeError",
    "IkeV1EncodeError",
    "IkeV1ExchangeError",
    "IkeV1OutOfPlace",
    "IkeV1ProtocolError",
]


class IkeV1ProtocolError(IkeNotifyError):
    """A message broke a rule of RFC 2408/2409: answer with ``notify`` carrying ``data``."""

    notify_types = NotifyType
    notify: NotifyType


class IkeV1DecodeError(IkeV1ProtocolError, DecodeError):
    """Bytes that do not parse as ISAKMP: a length lies, a field is cut short or misplaced.

    The answer is PAYLOAD_MALFORMED unless a more precise type applies (RFC 2408 §5):
    INVALID_MAJOR_VERSION, UNEQUAL_PAYLOAD_LENGTHS, INVALID_PAYLOAD_TYPE, INVALID_FLAGS,
    BAD_PROPOSAL_SYNTAX.
    """

    def __init__(
        self, message: str, notify: int = NotifyType.PAYLOAD_MALFORMED, data: bytes = b""
    ) -> None:
        super().__init__(notify, message, data)


class IkeV1EncodeError(IkeEncodeError):
    """A value cannot be put on the wire: a field out of range, a length too large, or an
    encrypt callback that returned a length other than the one it was given."""


class IkeV1ExchangeError(IkeV1ProtocolError):
    """An exchange refuses a message that decoded (and decrypted): answered with its
    notification in an Informational exchange (RFC 2409 §5.7) — in the clear about the
    ISAKMP SA before Phase 1 is done, protected about the IPsec SA `spi` after — or, with
    `answered` False, dropped and logged. `close`, if given, is why the ISAKMP SA goes."""

    def __init__(
        self,
        notify: int,
        message: str,
        *,
        spi: bytes = b"",
        close: str | None = None,
        answered: bool = True,
    ) -> None:
        super().__init__(notify, message)
        self.spi = spi
        self.close = close
        self.answered = answered


class IkeV1AuthFailed(IkeV1ExchangeError):
    """Phase 1 does not prove the peer (or not the peer configured): refused like any
    exchange error, and logged as a warning with the reason and the certificate's
    subject. `delete`: the peer holds an ISAKMP SA it takes for established (a Main Mode
    responder that sent MM6, an Aggressive Mode initiator that sent AM3), which a
    protected D(ISAKMP) removes."""

    def __init__(
        self,
        notify: int,
        message: str,
        *,
        close: str | None = None,
        answered: bool = True,
        delete: bool = False,
    ) -> None:
        super().__init__(notify, message, close=close, answered=answered)
        self.delete = delete


class IkeV1OutOfPlace(IkeV1ExchangeError):
    """A message the session's transition table does not allow in its state; the text
    names the state and the input (exchange, and whether it opens an exchange)."""


class IkeV1ConfigError(IkeError, ValueError):
    """A connection IKEv1 cannot run as configured: one end's authentication by
    pre-shared key and the other's by certificate, a key IKEv1 has no signature for, or
    local schemes that exclude the one signature IKEv1 makes with the key."""
