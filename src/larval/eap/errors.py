"""What the EAP layer raises: `EapError`, below larval's one root."""

from __future__ import annotations

from larval.errors import LarvalError

__all__ = ["EapError"]


class EapError(LarvalError):
    """An EAP packet or method message broke its format: the message says what and where.

    Every decoder of `larval.eap` raises it, and only it, on bad input; the method
    machines catch it and end the conversation with its message as the reason. It never
    carries a password, an NT hash or a key.
    """
