"""Big-endian reading and length-prefixed writing, shared by the IKEv2 and ISAKMP codecs.

Both put every field in network order (RFC 7296 §3, RFC 2408 §3). A `NetReader` reads one
structure's bytes and turns running out of them into its protocol's decode error, naming
the structure; `NetBlock` writes with the project's `Buffer` and back-patches a structure's
length field once its contents are written, so no length is ever computed by hand. Each
codec subclasses both with its own error classes.
"""

from __future__ import annotations

import struct

from larval.errors import LarvalError
from larval.wire import Buffer

__all__ = ["NetBlock", "NetReader"]

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class NetReader:
    """A cursor over the bytes of one structure; ``what`` names it in errors."""

    __slots__ = ("_data", "_pos", "what")

    @staticmethod
    def error(message: str) -> LarvalError:
        """The protocol's decode error (its notify type included): set by each codec."""
        raise NotImplementedError

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def _take(self, n: int, field: str) -> int:
        pos = self._pos
        if pos + n > len(self._data):
            raise self.error(f"{self.what}: {field} needs {n} bytes, {len(self._data) - pos} left")
        self._pos = pos + n
        return pos

    def pull_u8(self, field: str) -> int:
        return self._data[self._take(1, field)]

    def pull_u16(self, field: str) -> int:
        return int(_U16.unpack_from(self._data, self._take(2, field))[0])

    def pull_u32(self, field: str) -> int:
        return int(_U32.unpack_from(self._data, self._take(4, field))[0])

    def pull_bytes(self, n: int, field: str) -> bytes:
        pos = self._take(n, field)
        return self._data[pos : pos + n]

    def pull_rest(self) -> bytes:
        pos = self._pos
        self._pos = len(self._data)
        return self._data[pos:]

    def pull_block(self, length: int, header_size: int, field: str) -> bytes:
        """The rest of a substructure whose length field said ``length``, header included.

        ``header_size`` bytes of it have been read already; a length shorter than that or
        running past the enclosing structure is a lie (RFC 7296 §3.3: lengths include
        their headers).
        """
        if length < header_size:
            raise self.error(
                f"{self.what}: {field} length {length} is shorter than its "
                f"{header_size}-byte header"
            )
        n = length - header_size
        if n > self.remaining():
            raise self.error(
                f"{self.what}: {field} length {length} runs {n - self.remaining()} "
                "bytes past the end"
            )
        return self.pull_bytes(n, field)

    def expect_end(self) -> None:
        """Fail unless every byte was consumed: a block's contents must fill it exactly."""
        if self._pos != len(self._data):
            raise self.error(
                f"{self.what}: {len(self._data) - self._pos} bytes left over after the last field"
            )


class NetBlock:
    """Write a structure whose big-endian length field counts its bytes, header included.

    The structure starts at the current position; the body of the ``with`` writes all of
    it, with a placeholder where the ``size``-byte length field sits ``len_offset`` bytes
    in (offset 2 for generic payload headers and substructures, RFC 7296 §3.2, RFC 2408
    §3.2; offset 24 and size 4 for the header's Length, RFC 7296 §3.1, RFC 2408 §3.1).
    On exit the field is patched.
    """

    __slots__ = ("_buf", "_len_offset", "_size", "_start")

    @staticmethod
    def error(message: str) -> LarvalError:
        """The protocol's encode error: set by each codec."""
        raise NotImplementedError

    def __init__(self, buf: Buffer, len_offset: int = 2, size: int = 2) -> None:
        self._buf = buf
        self._len_offset = len_offset
        self._size = size
        self._start = buf.tell()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            return
        buf = self._buf
        end = buf.tell()
        length = end - self._start
        if length >= 1 << (8 * self._size):
            raise self.error(f"structure of {length} bytes too long for its length field")
        buf.seek(self._start + self._len_offset)
        if self._size == 2:
            buf.push_u16be(length)
        else:
            buf.push_u32be(length)
        buf.seek(end)
