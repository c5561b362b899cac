"""The ISAKMP codec's reader and block writer: the shared ones, raising IKEv1's errors
(running out of bytes is PAYLOAD_MALFORMED, RFC 2408 §3.2)."""

from __future__ import annotations

from larval.ike.codec import IkeCodec

from .errors import IkeV1DecodeError, IkeV1EncodeError

__all__ = ["CODEC", "IkeV1Reader", "push_block"]

CODEC = IkeCodec(IkeV1DecodeError, IkeV1EncodeError)
IkeV1Reader = CODEC.reader
push_block = CODEC.block
