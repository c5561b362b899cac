"""The byte cursor every codec reads and writes through, in both byte orders.

`Buffer` reads from and writes to one byte string at a moving position. Multi-byte
integers are little-endian by default because PF_KEY v2 puts every header and
extension field in host order (RFC 2367 §2.1) and larval fixes host order as
little-endian; the ``*be`` variants are network order, for the fields PF_KEY keeps
there (SPIs, ports and addresses inside sockaddrs) and for every field of IKEv2,
ISAKMP and ESP (RFC 7296 §3, RFC 2408 §3, RFC 4303 §2).

`push_padding64` and `patch_u16` finish a PF_KEY block: zero padding to whole 64-bit
words, then its length written back once it is known, as every PF_KEY structure
carries it. `NetBlock` does the same for a network-order structure whose length counts
its header (IKE payloads and substructures, the IKE header).

`NetReader` reads one network-order structure and turns running out of its bytes into
the protocol's decode error, naming the structure and the field; each IKE version gives
it its own error class (`larval.ike.codec`).

`LenientIntEnum` is the base of every enum that names a number read off the wire.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from larval.errors import DecodeError, LarvalError

__all__ = [
    "Buffer",
    "BufferReadError",
    "BufferWriteError",
    "LenientIntEnum",
    "NetBlock",
    "NetReader",
]

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")

_ZEROS = bytes(8)

#: Makes the error a reader or block writer raises, from its message.
ErrorFactory = Callable[[str], LarvalError]


class LenientIntEnum(enum.IntEnum):
    """An IntEnum whose unknown values become pseudo-members named ``UNKNOWN_<n>``.

    dnspython's idea (``dns/enum.py``): a number a peer or the kernel sends that this
    version does not know is still a member, so naming a value read off the wire never
    raises, and the value round-trips unchanged when it is encoded again.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        # bool is an int, but True is no protocol number.
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None


class BufferReadError(DecodeError):
    """A read ran past the end of the buffer."""


class BufferWriteError(LarvalError):
    """A write would exceed the buffer's capacity, or a seek left the written data."""


class Buffer:
    """A read/write cursor over bytes.

    Reading works on the given ``data`` without copying it; the first write copies it
    into a private `bytearray`. ``capacity``, when given, bounds the size in bytes.
    """

    __slots__ = ("_buf", "_capacity", "_end", "_pos")

    def __init__(self, data: bytes = b"", capacity: int | None = None) -> None:
        # An empty buffer is for writing: start with a bytearray to append to.
        self._buf: bytes | bytearray = data if data else bytearray()
        self._pos = 0
        self._end = len(data)
        self._capacity = capacity

    # -- position ---------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """Everything in the buffer: the initial data and whatever was pushed."""
        return bytes(self._buf[: self._end])

    @property
    def capacity(self) -> int | None:
        return self._capacity

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        if not 0 <= pos <= self._end:
            raise BufferWriteError(f"seek to {pos} outside 0..{self._end}")
        self._pos = pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def remaining(self) -> int:
        return self._end - self._pos

    # -- reading ----------------------------------------------------------------------

    def _take(self, n: int) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise BufferReadError(f"read of {n} bytes at {pos} runs past the end ({self._end})")
        self._pos = pos + n
        return pos

    def pull_bytes(self, n: int) -> bytes:
        pos = self._take(n)
        return bytes(self._buf[pos : pos + n])

    def pull_u8(self) -> int:
        pos = self._take(1)
        return self._buf[pos]

    def pull_u16(self) -> int:
        return int(_U16.unpack_from(self._buf, self._take(2))[0])

    def pull_u32(self) -> int:
        return int(_U32.unpack_from(self._buf, self._take(4))[0])

    def pull_u64(self) -> int:
        return int(_U64.unpack_from(self._buf, self._take(8))[0])

    def pull_u16be(self) -> int:
        return int(_U16BE.unpack_from(self._buf, self._take(2))[0])

    def pull_u32be(self) -> int:
        return int(_U32BE.unpack_from(self._buf, self._take(4))[0])

    # -- writing ----------------------------------------------------------------------

    def push_bytes(self, value: bytes) -> None:
        pos = self._pos
        buf = self._buf
        if pos == self._end and self._capacity is None and type(buf) is bytearray:
            # The common case, appending: one extend (an encoder makes dozens of these).
            buf += value
            self._pos = self._end = pos + len(value)
            return
        n = len(value)
        new_pos = pos + n
        if self._capacity is not None and new_pos > self._capacity:
            raise BufferWriteError(f"write of {n} bytes at {pos} exceeds capacity")
        if not isinstance(buf, bytearray):
            buf = self._buf = bytearray(buf)
        # Overwrites in place when seeking back, appends at the end.
        buf[pos:new_pos] = value
        self._pos = new_pos
        if new_pos > self._end:
            self._end = new_pos

    def push_u8(self, value: int) -> None:
        self.push_bytes(_U8.pack(value))

    def push_u16(self, value: int) -> None:
        self.push_bytes(_U16.pack(value))

    def push_u32(self, value: int) -> None:
        self.push_bytes(_U32.pack(value))

    def push_u64(self, value: int) -> None:
        self.push_bytes(_U64.pack(value))

    def push_u16be(self, value: int) -> None:
        self.push_bytes(_U16BE.pack(value))

    def push_u32be(self, value: int) -> None:
        self.push_bytes(_U32BE.pack(value))

    def patch_u16(self, offset: int, value: int) -> None:
        """Overwrite the u16 at ``offset`` (a length written once its block is known)."""
        if not 0 <= offset <= self._end - 2 or not isinstance(self._buf, bytearray):
            raise BufferWriteError(f"patch at {offset} outside the written data")
        self._buf[offset : offset + 2] = _U16.pack(value)

    def push_padding64(self, start: int) -> None:
        """Pad with zeros so the bytes from ``start`` fill whole 64-bit words."""
        pad = -(self._pos - start) % 8
        if pad:
            self.push_bytes(_ZEROS[:pad])


class NetReader:
    """A network-order cursor over the bytes of one structure; ``what`` names it in errors.

    ``error`` makes the protocol's decode error (its notify type included) from a
    message; without one, running out of bytes is a plain `DecodeError`.
    """

    __slots__ = ("_data", "_pos", "error", "what")

    def __init__(self, data: bytes, what: str, error: ErrorFactory = DecodeError) -> None:
        self._data = data
        self._pos = 0
        self.what = what
        self.error = error

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
        return int(_U16BE.unpack_from(self._data, self._take(2, field))[0])

    def pull_u32(self, field: str) -> int:
        return int(_U32BE.unpack_from(self._data, self._take(4, field))[0])

    def pull_bytes(self, n: int, field: str) -> bytes:
        pos = self._take(n, field)
        return self._data[pos : pos + n]

    def pull_rest(self) -> bytes:
        pos = self._pos
        self._pos = len(self._data)
        return self._data[pos:]

    def peek_rest(self) -> bytes:
        """What `pull_rest` would return, without moving."""
        return self._data[self._pos :] if self._pos else self._data

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
    """Write a structure whose network-order length field counts its bytes, header included.

    The structure starts at the current position; the body of the ``with`` writes all of
    it, with a placeholder where the ``size``-byte length field sits ``len_offset`` bytes
    in (offset 2 for generic payload headers and substructures, RFC 7296 §3.2, RFC 2408
    §3.2; offset 24 and size 4 for the header's Length, RFC 7296 §3.1, RFC 2408 §3.1).
    On exit the field is patched; a length too large for it raises ``error``.
    """

    __slots__ = ("_buf", "_len_offset", "_size", "_start", "error")

    def __init__(
        self, buf: Buffer, len_offset: int = 2, size: int = 2, error: ErrorFactory = LarvalError
    ) -> None:
        self._buf = buf
        self._len_offset = len_offset
        self._size = size
        self._start = buf.tell()
        self.error = error

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
