"""SPD errors: a policy that cannot be, and a policy file that does not parse."""

from __future__ import annotations

from larval.errors import LarvalError

__all__ = ["PolicyFileError", "SpdError"]


class SpdError(LarvalError):
    """A policy or selector that is inconsistent, or an SPD operation refused."""


class PolicyFileError(LarvalError):
    """A policy file with a syntax error, an unknown key or a bad value.

    The message names the file, the key (``policies.s2s.esp_proposals[1]``) and what is
    allowed there; `key` and `problem` hold the two apart where the reader knew them,
    for a caller that lists problems (`larval check`).
    """

    def __init__(self, message: str, *, key: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.problem = problem
