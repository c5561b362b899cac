"""The one exception root of larval and the families below it (STYLE.md §6)."""

from __future__ import annotations


class LarvalError(Exception):
    """Root of every error larval raises on purpose."""


class DecodeError(LarvalError):
    """Bytes from the wire or a socket did not parse."""
