"""The IKEv2 codec's reader and block writer: the shared ones, raising IKEv2's errors."""

from __future__ import annotations

from larval.ike.codec import IkeCodec

from .errors import IkeDecodeError, IkeEncodeError

__all__ = ["CODEC", "IkeReader", "push_block"]

CODEC = IkeCodec(IkeDecodeError, IkeEncodeError)
IkeReader = CODEC.reader
# Lower-case: it reads as a function call, ``with push_block(buf):``.
push_block = CODEC.block
