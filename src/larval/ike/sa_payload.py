"""The parts of an SA payload that both IKE versions lay out alike.

A data attribute is TV or TLV after its Attribute Format bit in both (RFC 7296 §3.3.5,
RFC 2408 §3.3); a proposal's header is the same eight octets and SPI (RFC 7296 §3.3.1,
RFC 2408 §3.5), its first octet 2 while more proposals follow and 0 for the last; and
proposals and transforms are lists whose members say themselves which one is last.
What differs stays with each version's ``sa_payload``: the transform's layout, the SA
payload's DOI and Situation (ISAKMP), and the notification a broken proposal is
answered with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from larval.wire import Buffer, NetReader

from .codec import IkeCodec

__all__ = [
    "AF",
    "MORE_PROPOSALS",
    "Proposal",
    "pull_attribute",
    "pull_marked",
    "push_attribute",
]

AF = 0x8000  # Attribute Format bit: TV when set, TLV when clear
MORE_PROPOSALS = 2  # RFC 7296 §3.3.1 Last Substruc; RFC 2408 §3.5 Next Payload (PROPOSAL)

T = TypeVar("T")


class _Transform(Protocol):
    def encode(self, buf: Buffer, last: bool) -> None: ...


def push_attribute(buf: Buffer, codec: IkeCodec, attr_type: int, value: int | bytes) -> None:
    """An ``int`` value in the TV form (AF set, 16 bits), ``bytes`` in the TLV form."""
    if not 0 <= attr_type < AF:
        raise codec.encode_error(f"attribute type {int(attr_type)} does not fit 15 bits")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise codec.encode_error(f"TV attribute value {value} does not fit 16 bits")
        buf.push_u16be(AF | attr_type)
        buf.push_u16be(value)
    else:
        if len(value) > 0xFFFF:
            raise codec.encode_error(f"TLV attribute value of {len(value)} bytes")
        buf.push_u16be(attr_type)
        buf.push_u16be(len(value))
        buf.push_bytes(value)


def pull_attribute(reader: NetReader) -> tuple[int, int | bytes]:
    """``(attribute type, value)``: an ``int`` for the TV form, ``bytes`` for TLV."""
    word = reader.pull_u16("attribute type")
    if word & AF:
        return word & ~AF, reader.pull_u16("attribute value")
    length = reader.pull_u16("attribute length")
    return word, reader.pull_bytes(length, "attribute value")


def pull_marked(
    reader: NetReader, decode: Callable[[NetReader], tuple[T, bool]], where: str, kind: str
) -> tuple[list[T], bool]:
    """The ``kind`` substructures filling the rest of ``reader``, each decoded with
    ``decode`` (which says whether it was marked last), and whether the last one read
    was. Anything after one marked last is the codec's error, naming ``where``."""
    items: list[T] = []
    last = False
    while not reader.eof():
        if last:
            raise reader.error(f"{where}: data after the last {kind}")
        item, last = decode(reader)
        items.append(item)
    return items, last


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal of either version; each subclasses it with its own Protocol ID and
    transform classes and reads it with its own ``decode``.

    SPI Size and the number of transforms come from ``spi`` and ``transforms``.
    """

    codec: ClassVar[IkeCodec]

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: tuple[_Transform, ...] = ()

    def encode(self, buf: Buffer, last: bool) -> None:
        """The header, the transforms (the last one marked so), the length back-patched."""
        spi, transforms = self.spi, self.transforms
        if len(spi) > 0xFF or len(transforms) > 0xFF:
            raise self.codec.encode_error(
                f"proposal {self.number}: {len(spi)}-byte SPI, "
                f"{len(transforms)} transforms (255 at most)"
            )
        with self.codec.block(buf):
            buf.push_u8(0 if last else MORE_PROPOSALS)
            buf.push_u8(0)
            buf.push_u16be(0)  # Proposal Length, patched
            buf.push_u8(self.number)
            buf.push_u8(self.protocol_id)
            buf.push_u8(len(spi))
            buf.push_u8(len(transforms))
            buf.push_bytes(spi)
            for i, transform in enumerate(transforms, 1):
                transform.encode(buf, last=i == len(transforms))
