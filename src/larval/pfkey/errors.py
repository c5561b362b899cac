"""The error a malformed PF_KEY message decodes to: the errno and diagnostic to answer with."""

from __future__ import annotations

from larval.errors import DecodeError
from larval.pfkey.constants import diagnostic_text

__all__ = ["PfkeyError"]


class PfkeyError(DecodeError):
    """A PF_KEY message did not parse.

    ``errno`` and ``diagnostic`` are what the reply to the sender carries in
    sadb_msg_errno and sadb_x_msg_diagnostic (RFC 2367 §1.8, illumos keysock).
    """

    def __init__(self, errno: int, diagnostic: int, message: str) -> None:
        super().__init__(errno, diagnostic, message)
        self.errno = errno
        self.diagnostic = diagnostic
        self.message = message

    def __str__(self) -> str:
        if self.diagnostic:
            return f"{self.message} ({diagnostic_text(self.diagnostic)})"
        return self.message
