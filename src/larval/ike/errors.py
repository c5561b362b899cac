"""The errors of both IKE versions, below one root.

A protocol error carries the notification to answer with: IKEv2's Notify Message Type
(RFC 7296 §3.10.1), sent in an error notification (§2.21), or IKEv1's Notify Message
Type (RFC 2408 §3.14.1), sent in an Informational exchange (RFC 2409 §5.7). A receive
path catches it once and turns it into that answer, or into a silent drop when the
message is not worth one. Each version's subclass names its own registry of notify
types in `notify_types`; the number is kept as that registry's member, an unknown one
as a pseudo-member, so that naming it never raises.
"""

from __future__ import annotations

from typing import ClassVar

from larval.errors import LarvalError
from larval.wire import LenientIntEnum

__all__ = ["IkeEncodeError", "IkeError", "IkeNotifyError"]


class IkeError(LarvalError):
    """Root of what the IKE layers raise on purpose (`larval.ike`, `ikev1`, `ikev2`)."""


class IkeNotifyError(IkeError):
    """A message broke a rule of its protocol: answer with ``notify`` carrying ``data``.

    ``data`` is the Notification Data, e.g. the one-octet payload type of IKEv2's
    UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 §3.10.1).
    """

    notify_types: ClassVar[type[LenientIntEnum]] = LenientIntEnum

    def __init__(self, notify: int, message: str, data: bytes = b"") -> None:
        super().__init__(notify, message, data)
        self.notify = self.notify_types(notify)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} ({self.notify.name})"


class IkeEncodeError(IkeError):
    """A value cannot be put on the wire: a field out of range, a length too large, or a
    protect (encrypt) callback that returned a length other than the one announced."""
