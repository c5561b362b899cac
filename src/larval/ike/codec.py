"""One IKE version's codec errors, for the cursor and the payload code both versions share.

The readers and block writers of `larval.wire` raise whatever error they are given; an
`IkeCodec` holds a version's pair (IKEv2: INVALID_SYNTAX, RFC 7296 §3.10.1; IKEv1:
PAYLOAD_MALFORMED, RFC 2408 §5) and makes readers and writers that raise them, so the
shared payload bases of `larval.ike.payload` fail in the version's own words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from larval.wire import Buffer, NetBlock, NetReader

from .errors import IkeEncodeError, IkeNotifyError

__all__ = ["IkeCodec"]


@dataclass(frozen=True, slots=True)
class IkeCodec:
    """The errors of one version's codec: ``decode_error(message)`` for bytes that do not
    parse, ``encode_error(message)`` for values that cannot be put on the wire."""

    decode_error: Callable[[str], IkeNotifyError]
    encode_error: Callable[[str], IkeEncodeError]

    def reader(self, data: bytes, what: str) -> NetReader:
        """A reader over ``data``, one structure named ``what`` in errors."""
        return NetReader(data, what, self.decode_error)

    def block(self, buf: Buffer, len_offset: int = 2, size: int = 2) -> NetBlock:
        """``with codec.block(buf):`` writes a structure and back-patches its length."""
        return NetBlock(buf, len_offset, size, self.encode_error)
