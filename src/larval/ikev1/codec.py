"""The ISAKMP codecs' reader and block writer: the shared ones, with IKEv1's errors
(running out of bytes is PAYLOAD_MALFORMED, RFC 2408 §3.2)."""

from __future__ import annotations

from larval.errors import LarvalError
from larval.netorder import NetBlock, NetReader

from .errors import IkeV1DecodeError, IkeV1EncodeError

__all__ = ["IkeV1Reader", "push_block"]


class IkeV1Reader(NetReader):
    __slots__ = ()

    @staticmethod
    def error(message: str) -> LarvalError:
        return IkeV1DecodeError(message)


# Lower-case: it reads as a function call, ``with push_block(buf):``.
class push_block(NetBlock):
    __slots__ = ()

    @staticmethod
    def error(message: str) -> LarvalError:
        return IkeV1EncodeError(message)
