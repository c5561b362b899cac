"""SADB errors: each carries the PF_KEY errno and SADB_X_DIAGNOSTIC code it is answered with."""

from __future__ import annotations

from larval.errors import LarvalError


class SadbError(LarvalError):
    """An SADB operation refused; becomes a PF_KEY reply with errno and diagnostic."""

    def __init__(self, errno: int, diagnostic: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.diagnostic = diagnostic
