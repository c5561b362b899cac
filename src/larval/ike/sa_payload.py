"""The parts of an SA payload that both IKE versions lay out alike.

A data attribute is TV or TLV after its Attribute Format bit in both (RFC 7296 §3.3.5,
RFC 2408 §3.3); a proposal's header is the same eight octets and SPI (RFC 7296 §3.3.1,
RFC 2408 §3.5), its first octet 2 while more proposals follow and 0 for the last; and
proposals and transforms are lists whose members say themselves which one is last, in
the same first four octets: that mark, RESERVED, and the length of the whole
(`Substructure`: IKEv2 calls the mark Last Substruc, ISAKMP Next Payload, since its
proposals and transforms are payloads of their own). What differs stays with each
version's ``sa_payload``: the transform's layout, the SA payload's DOI and Situation
(ISAKMP), and the notification a broken proposal is answered with.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self, TypeVar

from larval.wire import Buffer, LenientIntEnum, NetReader

from .codec import IkeCodec

__all__ = [
    "AF",
    "MORE_PROPOSALS",
    "Proposal",
    "Substructure",
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
class Substructure:
    """A proposal or a transform (``kind``) as one version chains them: the first octet
    is 0 for the last and ``more`` while others follow, then RESERVED, then the length of
    the whole, these four octets included (RFC 7296 §3.3.1, §3.3.2; RFC 2408 §3.5, §3.6).

    ``mark`` and ``length`` name the first octet and the length field in the version's
    words; a first octet other than 0 or ``more`` raises ``wrong_mark(message)``.
    """

    kind: str
    more: int
    mark: str
    length: str
    codec: IkeCodec
    wrong_mark: Callable[[str], Exception]

    def push_header(self, buf: Buffer, last: bool) -> None:
        """The four octets, the length 0: written inside the codec's block that patches it."""
        buf.push_u8(0 if last else self.more)
        buf.push_u8(0)
        buf.push_u16be(0)

    def pull(self, reader: NetReader) -> tuple[NetReader, bool]:
        """A reader over the rest of the next one in ``reader``, named ``kind``, and
        whether it said it was the last."""
        mark = reader.pull_u8(f"{self.kind} {self.mark}")
        if mark not in (0, self.more):
            raise self.wrong_mark(
                f"{reader.what}: {self.kind} {self.mark} is {mark}, not 0 or {self.more}"
            )
        reader.pull_u8(f"{self.kind} RESERVED")
        length = reader.pull_u16(self.length)
        body = reader.pull_block(length, 4, self.length)  # the length counts the four octets
        return self.codec.reader(body, self.kind), mark == 0


def _encoded_transforms(transforms: Sequence[_Transform]) -> bytes:
    """The transforms as a proposal carries them, the last one marked so: the same few
    suites go out in every SA payload, so each sequence is encoded once (`_encode_once`);
    one that cannot be remembered (not hashable) is encoded each time."""
    key = tuple(transforms)
    try:
        hash(key)
    except TypeError:
        return _encode_transforms(key)
    return _encode_once(key)


def _encode_transforms(transforms: Sequence[_Transform]) -> bytes:
    buf = Buffer()
    for i, transform in enumerate(transforms, 1):
        transform.encode(buf, last=i == len(transforms))
    return bytes(buf.data)


#: Distinct transform sequences remembered (ours, and what we answer with).
_TRANSFORMS_KEPT = 1024
_encode_once = functools.lru_cache(maxsize=_TRANSFORMS_KEPT)(_encode_transforms)

#: Transforms decoded, by (proposal class, Protocol ID, Num Transforms, their bytes).
_KEPT_TRANSFORMS: dict[tuple[type, int, int, bytes], tuple[_Transform, ...]] = {}
#: Longer runs are read each time: what is kept stays under 1024 x 512 bytes.
_KEPT_TRANSFORMS_BYTES = 512

# Last Substruc, RESERVED, Proposal Length, Proposal Num, Protocol ID, SPI Size,
# Num Transforms (RFC 7296 §3.3.1, RFC 2408 §3.5).
_PROPOSAL_HEAD = struct.Struct(">BBHBBBB")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal of either version; each subclasses it with its own Protocol IDs
    (``protocols``), `Substructure`, field names and transforms (`pull_transforms`).

    SPI Size and the number of transforms come from ``spi`` and ``transforms``.
    """

    substructure: ClassVar[Substructure]
    protocols: ClassVar[type[LenientIntEnum]]
    #: The names of Proposal Num, Protocol ID and Num Transforms in the version's RFC.
    field_names: ClassVar[tuple[str, str, str]]

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: tuple[_Transform, ...] = ()

    def encode(self, buf: Buffer, last: bool) -> None:
        """The header, the transforms (the last one marked so), the length back-patched."""
        spi, transforms = self.spi, self.transforms
        codec = self.substructure.codec
        if len(spi) > 0xFF or len(transforms) > 0xFF:
            raise codec.encode_error(
                f"proposal {self.number}: {len(spi)}-byte SPI, "
                f"{len(transforms)} transforms (255 at most)"
            )
        encoded = _encoded_transforms(transforms)
        length = _PROPOSAL_HEAD.size + len(spi) + len(encoded)
        if length > 0xFFFF:
            raise codec.encode_error(f"structure of {length} bytes too long for its length field")
        # The header whole, its length known from the parts: one write a proposal.
        mark = 0 if last else self.substructure.more
        head = _PROPOSAL_HEAD.pack(
            mark, 0, length, self.number, self.protocol_id, len(spi), len(transforms)
        )
        buf.push_bytes(head + spi + encoded)

    @classmethod
    def decode(cls, reader: NetReader) -> tuple[Self, bool]:
        """One proposal from ``reader``, and whether it said it was the last."""
        body, marked_last = cls.substructure.pull(reader)
        number_field, protocol_field, count_field = cls.field_names
        number = body.pull_u8(number_field)
        protocol_id = cls.protocols(body.pull_u8(protocol_field))
        spi_size = body.pull_u8("SPI Size")
        count = body.pull_u8(count_field)
        body.what = f"proposal {number}"
        spi = body.pull_bytes(spi_size, "SPI")
        # A peer offers the same transforms in every exchange, under a new SPI each time
        # (a CHILD_SA's): read once for each distinct run of bytes (bounded, emptied when
        # full), as `_encode_once` writes ours once. What fails to decode is not kept.
        rest = body.peek_rest()
        key = (cls, int(protocol_id), count, rest)
        transforms = _KEPT_TRANSFORMS.get(key)
        if transforms is None:
            transforms = cls.pull_transforms(body, protocol_id, count)
            if len(rest) <= _KEPT_TRANSFORMS_BYTES:
                if len(_KEPT_TRANSFORMS) >= _TRANSFORMS_KEPT:
                    _KEPT_TRANSFORMS.clear()
                _KEPT_TRANSFORMS[key] = transforms
        else:
            body.pull_rest()
        return cls(number, protocol_id, spi, transforms), marked_last

    @classmethod
    def pull_transforms(
        cls, body: NetReader, protocol_id: int, count: int
    ) -> tuple[_Transform, ...]:
        """The ``count`` transforms filling the rest of ``body``; a count that disagrees,
        or a last transform not marked so, is the version's error."""
        raise NotImplementedError
