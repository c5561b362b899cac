"""The IKEv2 codecs' reader and block writer: the shared ones, with IKEv2's errors."""

from __future__ import annotations

from larval.errors import LarvalError
from larval.netorder import NetBlock, NetReader

from .errors import IkeDecodeError, IkeEncodeError

__all__ = ["IkeReader", "push_block"]


class IkeReader(NetReader):
    __slots__ = ()

    @staticmethod
    def error(message: str) -> LarvalError:
        return IkeDecodeError(message)


# Lower-case: it reads as a function call, ``with push_block(buf):``.
class push_block(NetBlock):
    __slots__ = ()

    @staticmethod
    def error(message: str) -> LarvalError:
        return IkeEncodeError(message)
