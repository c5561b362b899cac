"""The payload chain both IKE versions share, and the payloads of the same shape in both.

Every IKEv2 and ISAKMP payload starts with the same four-octet generic payload header
(RFC 7296 §3.2, RFC 2408 §3.2)::

                         1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Next Payload  |C|  RESERVED   |         Payload Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

and the payloads of a message form a chain: the header's Next Payload names the first,
each payload's Next Payload the one after it, NONE (0) the end. `walk_chain` reads that
chain and checks every length; `push_chain` writes it, each header with its length.
What the versions do differently stays with them: the C bit is IKEv2's (ISAKMP keeps
the octet RESERVED, RFC 2408 §3.2), and so is SK's Next Payload naming the first
payload inside it (RFC 7296 §3.14).

The body classes here are the layouts both versions give a payload: opaque data
(`OpaquePayload`, and `SecretPayload` for what a log must not show), a nonce with its
version's bounds (`NoncePayload`), a certificate with its encoding (`CertDataPayload`),
and the Protocol-ID/SPI-Size/SPI layout of Notify and Delete, which ISAKMP prefixes with
a DOI (`push_notify`, `pull_notify`, `push_delete`, `pull_delete`). Each version's
module subclasses them with its own payload type numbers and codec errors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Protocol, Self, TypeVar

from larval.wire import Buffer, LenientIntEnum, NetReader

from .codec import IkeCodec

__all__ = [
    "GENERIC_HEADER_SIZE",
    "CertDataPayload",
    "ChainPayload",
    "NoncePayload",
    "OpaquePayload",
    "RawPayload",
    "SecretPayload",
    "notify_bytes",
    "pull_delete",
    "pull_notify",
    "push_chain",
    "push_delete",
    "push_notify",
    "walk_chain",
]

GENERIC_HEADER_SIZE = 4  # RFC 7296 §3.2, RFC 2408 §3.2
NONE = 0  # Next Payload at the end of a chain, in both versions

_GENERIC = struct.Struct(">BBH")


class ChainPayload(Protocol):
    """What a payload is to the chain: its type number and its body's bytes."""

    @property
    def payload_type(self) -> LenientIntEnum: ...

    def encode_body(self) -> bytes: ...


C = TypeVar("C", bound=ChainPayload)


class RawPayload(NamedTuple):
    """One payload of a chain as `walk_chain` finds it, before its body is decoded.

    ``data[start:end]`` is the payload with its generic header, as received. A tuple, not
    a dataclass: one is made for every payload of every message read.
    """

    payload_type: LenientIntEnum
    next_type: int
    flags: int  # the second octet: IKEv2's C bit, ISAKMP's RESERVED
    start: int
    end: int
    data: bytes

    def __repr__(self) -> str:
        return (
            f"RawPayload(payload_type={self.payload_type!r}, next_type={self.next_type}, "
            f"flags={self.flags}, start={self.start}, end={self.end})"
        )

    @property
    def body(self) -> bytes:
        return self.data[self.start + GENERIC_HEADER_SIZE : self.end]

    @property
    def wire(self) -> bytes:
        """The payload as received, generic header included."""
        return self.data[self.start : self.end]


def walk_chain(
    data: bytes, first: int, start: int, codec: IkeCodec, types: type[LenientIntEnum]
) -> Iterator[RawPayload]:
    """The payloads of the chain in ``data[start:]`` whose first payload is of type
    ``first``, up to the Next Payload of NONE that ends it; ``types`` names the numbers.

    A generic header cut short, or a Payload Length shorter than that header or running
    past ``data``, raises the codec's decode error (RFC 7296 §3.2: the length includes
    the header; RFC 2408 §5.3). What may follow the chain is for the caller to say: the
    last payload's ``end`` is where it stopped.
    """
    end = len(data)
    offset = start
    next_type = int(first)
    # The members by number, looked up without a call of the enum per payload; a number
    # it does not know still becomes its pseudo-member through the call.
    known: dict[object, LenientIntEnum] = types._value2member_map_  # type: ignore[assignment]
    while next_type != NONE:
        ptype = known.get(next_type) or types(next_type)
        if end - offset < GENERIC_HEADER_SIZE:
            raise codec.decode_error(
                f"{ptype.name} payload: generic header cut short at offset {offset}"
            )
        next_type, flags, length = _GENERIC.unpack_from(data, offset)
        if length < GENERIC_HEADER_SIZE or offset + length > end:
            raise codec.decode_error(
                f"{ptype.name} payload at offset {offset}: Payload Length {length}, "
                f"{end - offset} bytes left"
            )
        yield RawPayload(ptype, next_type, flags, offset, offset + length, data)
        offset += length


def push_chain(
    buf: Buffer,
    codec: IkeCodec,
    payloads: Sequence[C],
    after: int = NONE,
    flags: Callable[[C], int] | None = None,
) -> None:
    """Write each payload with its generic header; ``after`` is the last one's Next Payload.

    Each Next Payload is the type of the payload after it (RFC 7296 §3.2, RFC 2408 §3.2);
    ``flags`` gives each one's second octet (None: 0 for every one). A field out of range
    raises the codec's encode error.
    """
    parts = []
    count = len(payloads)
    try:
        for i, payload in enumerate(payloads):
            next_type = int(payloads[i + 1].payload_type) if i + 1 < count else after
            body = payload.encode_body()
            length = GENERIC_HEADER_SIZE + len(body)
            if length > 0xFFFF:
                raise codec.encode_error(
                    f"structure of {length} bytes too long for its length field"
                )
            # The header whole, its length known once the body is: one write a payload.
            octet = 0 if flags is None else flags(payload)
            parts.append(_GENERIC.pack(next_type, octet, length))
            parts.append(body)
    except struct.error as exc:
        raise codec.encode_error(f"payload field out of range: {exc}") from exc
    buf.push_bytes(b"".join(parts))


# -- bodies of the same shape in both versions ------------------------------------------


@dataclass(frozen=True, slots=True)
class OpaquePayload:
    """A payload whose body is its data, uninterpreted by the codec (a Vendor ID, an
    IKEv1 KE or SIG, a NAT-D hash)."""

    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        return cls(body)


@dataclass(frozen=True, slots=True, repr=False)
class SecretPayload(OpaquePayload):
    """Opaque data that a log must not show (a PSK's MIC, an EAP message): the repr
    gives the class and the data's length only.

    Subclasses are declared with ``repr=False`` so that they keep this repr.
    """

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data=<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class NoncePayload(OpaquePayload):
    """Nonce data of ``nonce_min`` to ``nonce_max`` bytes (RFC 7296 §3.9: 16..256;
    RFC 2409 §5: 8..256); any other length is the codec's error either way."""

    codec: ClassVar[IkeCodec]
    nonce_min: ClassVar[int]
    nonce_max: ClassVar[int] = 256

    def encode_body(self) -> bytes:
        if not self.nonce_min <= len(self.data) <= self.nonce_max:
            raise self.codec.encode_error(
                f"nonce of {len(self.data)} bytes, not {self.nonce_min}..{self.nonce_max}"
            )
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        if not cls.nonce_min <= len(body) <= cls.nonce_max:
            raise cls.codec.decode_error(
                f"Nonce payload: {len(body)} bytes of nonce, not {cls.nonce_min}..{cls.nonce_max}"
            )
        return cls(body)


@dataclass(frozen=True, slots=True)
class CertDataPayload:
    """A Cert Encoding octet, then data opaque to the codec: the CERT payload of both
    versions (RFC 7296 §3.6, RFC 2408 §3.9) and IKEv2's CERTREQ (§3.7)."""

    codec: ClassVar[IkeCodec]
    encodings: ClassVar[type[LenientIntEnum]]
    what: ClassVar[str] = "CERT payload"

    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        reader = cls.codec.reader(body, cls.what)
        encoding = cls.encodings(reader.pull_u8("Cert Encoding"))
        return cls(encoding, reader.pull_rest())


_NOTIFY_HEAD = struct.Struct(">BBH")  # Protocol ID, SPI Size, Notify Message Type


def notify_bytes(
    codec: IkeCodec, protocol_id: int, notify_type: int, spi: bytes, data: bytes
) -> bytes:
    """Protocol ID, SPI Size, Notify Message Type, SPI, Notification Data: the Notify body
    of RFC 7296 §3.10, and of RFC 2408 §3.14 after its DOI. A field out of range raises
    `struct.error`, which `push_chain` turns into the codec's encode error."""
    if len(spi) > 0xFF:
        raise codec.encode_error(f"notify SPI of {len(spi)} bytes")
    return _NOTIFY_HEAD.pack(protocol_id, len(spi), notify_type) + spi + data


def push_notify(
    buf: Buffer, codec: IkeCodec, protocol_id: int, notify_type: int, spi: bytes, data: bytes
) -> None:
    """`notify_bytes`, written to ``buf``."""
    buf.push_bytes(notify_bytes(codec, protocol_id, notify_type, spi, data))


def pull_notify(reader: NetReader) -> tuple[int, int, bytes, bytes]:
    """``(protocol_id, notify_type, spi, data)`` read as `push_notify` writes them."""
    data = reader.peek_rest()
    if len(data) >= _NOTIFY_HEAD.size:
        # The common case in one unpack; a body too short for its SPI is read field by
        # field below, which names what is missing.
        protocol_id, spi_size, notify_type = _NOTIFY_HEAD.unpack_from(data)
        end = _NOTIFY_HEAD.size + spi_size
        if end <= len(data):
            reader.pull_rest()
            return protocol_id, notify_type, data[_NOTIFY_HEAD.size : end], data[end:]
    protocol_id = reader.pull_u8("Protocol ID")
    spi_size = reader.pull_u8("SPI Size")
    notify_type = reader.pull_u16("Notify Message Type")
    spi = reader.pull_bytes(spi_size, "SPI")
    return protocol_id, notify_type, spi, reader.pull_rest()


def push_delete(
    buf: Buffer, codec: IkeCodec, protocol_id: int, spi_size: int, spis: Sequence[bytes]
) -> None:
    """Protocol ID, SPI Size, Num of SPIs, the SPIs: the Delete body of RFC 7296 §3.11, and
    of RFC 2408 §3.15 after its DOI. Every SPI must be ``spi_size`` bytes."""
    if any(len(spi) != spi_size for spi in spis):
        raise codec.encode_error(f"Delete payload: every SPI must be {spi_size} bytes")
    if not 0 <= spi_size <= 0xFF or len(spis) > 0xFFFF:
        raise codec.encode_error("Delete payload: SPI Size or Num of SPIs out of range")
    buf.push_u8(protocol_id)
    buf.push_u8(spi_size)
    buf.push_u16be(len(spis))
    for spi in spis:
        buf.push_bytes(spi)


def pull_delete(reader: NetReader) -> tuple[int, int, tuple[bytes, ...]]:
    """``(protocol_id, spi_size, spis)`` read as `push_delete` writes them; the SPIs must
    fill the rest of the body exactly."""
    protocol_id = reader.pull_u8("Protocol ID")
    spi_size = reader.pull_u8("SPI Size")
    count = reader.pull_u16("Num of SPIs")
    if reader.remaining() != spi_size * count:
        raise reader.error(
            f"Delete payload: {count} SPIs of {spi_size} bytes need {spi_size * count} "
            f"bytes, {reader.remaining()} present"
        )
    return protocol_id, spi_size, tuple(reader.pull_bytes(spi_size, "SPI") for _ in range(count))
