"""What a decoded message of either IKE version offers about its payloads.

An IKEv2 message and an ISAKMP message differ in what their headers' fields mean and
in how they protect their payloads, and each version's `message` module keeps that. The
header's 28 octets are laid out alike (RFC 7296 §3.1, RFC 2408 §3.1): two 8-octet SPIs
(ISAKMP's cookies), Next Payload, the version octet, Exchange Type, Flags, Message ID
and Length; `pack_header` and `unpack_header` write and read them for both.

How an exchange looks into a message is the same in both: the payloads of one class
(`get`, `first`), a notification by its type (`notify`), or all of them in order
(iteration). `PayloadMessage` writes that once; each version's message class inherits
it and names its Notify payload class in ``notify_class``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from .codec import IkeCodec

__all__ = [
    "HEADER_SIZE",
    "HeaderFields",
    "PayloadMessage",
    "flags_of",
    "pack_header",
    "unpack_header",
]

_HEADER = struct.Struct(">8s8sBBBBII")
HEADER_SIZE = _HEADER.size  # 28

#: ``(spi_i, spi_r, next_payload, major, minor, exchange_type, flags, message_id, length)``
HeaderFields = tuple[bytes, bytes, int, int, int, int, int, int, int]


def pack_header(codec: IkeCodec, what: str, spi_rule: str, fields: HeaderFields) -> bytes:
    """The header's 28 octets. ``what`` names the header in errors (IKE, ISAKMP), and
    ``spi_rule`` is the error for SPIs that are not 8 octets each."""
    spi_i, spi_r, next_payload, major, minor, exchange, flags, message_id, length = fields
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise codec.encode_error(spi_rule)
    try:
        version = (major << 4) | minor
        return _HEADER.pack(
            spi_i, spi_r, next_payload, version, exchange, flags, message_id, length
        )
    except struct.error as exc:
        raise codec.encode_error(f"{what} header field out of range: {exc}") from exc


F = TypeVar("F", bound=enum.IntFlag)


def flags_of(none: F, *flags: tuple[F, bool]) -> F:
    """The Flags octet from ``(flag, set?)`` pairs, starting from ``none``."""
    octet = none
    for flag, on in flags:
        if on:
            octet |= flag
    return octet


def unpack_header(codec: IkeCodec, what: str, data: bytes) -> HeaderFields:
    """The fields of the header at the start of ``data``, the version octet split into
    major and minor; nothing checked but that there are 28 octets."""
    if len(data) < HEADER_SIZE:
        raise codec.decode_error(f"{len(data)} bytes: shorter than the {what} header")
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(
        data
    )
    return (
        spi_i,
        spi_r,
        next_payload,
        version >> 4,
        version & 0x0F,
        exchange,
        flags,
        message_id,
        length,
    )


P = TypeVar("P")


class _Notify(Protocol):
    @property
    def notify_type(self) -> int: ...


N = TypeVar("N", bound=_Notify)


class PayloadMessage(Generic[N]):
    """The payload surface of a message whose payloads are in ``payloads``, in order."""

    __slots__ = ()

    notify_class: ClassVar[type[Any]]
    payloads: tuple[object, ...]

    def __iter__(self) -> Iterator[object]:
        return iter(self.payloads)

    def get(self, kind: type[P]) -> tuple[P, ...]:
        """The payloads of class ``kind``, in order."""
        return tuple(p for p in self.payloads if isinstance(p, kind))

    def first(self, kind: type[P]) -> P | None:
        """The first payload of class ``kind``, or None."""
        for p in self.payloads:
            if isinstance(p, kind):
                return p
        return None

    def notify(self, notify_type: int) -> N | None:
        """The first Notify payload of type ``notify_type``, or None."""
        for p in self.payloads:
            if isinstance(p, self.notify_class) and p.notify_type == notify_type:
                result: N = p
                return result
        return None
