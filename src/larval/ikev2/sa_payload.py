"""The Security Association payload (RFC 7296 §3.3): proposals, transforms, attributes.

An SA payload is a list of proposals; each proposal lists transforms; each transform may
carry attributes. The "Last Substruc" octets that chain proposals (0 last, 2 more) and
transforms (0 last, 3 more) are derived when encoding and checked when decoding, as are
the counts and lengths; everything else round-trips as read, unknown numbers included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from larval.crypto.ike_transforms import TransformType
from larval.ike import sa_payload as base
from larval.wire import Buffer, NetReader

from .codec import CODEC, IkeReader, push_block
from .constants import PayloadType, ProtocolId, TransformAttr
from .errors import IkeDecodeError, IkeEncodeError

__all__ = ["Attribute", "Proposal", "SaPayload", "Transform"]

_PROPOSAL = base.Substructure(
    "proposal", base.MORE_PROPOSALS, "Last Substruc", "Proposal Length", CODEC, IkeDecodeError
)
_TRANSFORM = base.Substructure(
    "transform", 3, "Last Substruc", "Transform Length", CODEC, IkeDecodeError
)  # RFC 7296 §3.3.2: 3 while more transforms follow


@dataclass(frozen=True, slots=True)
class Attribute:
    """A transform attribute (RFC 7296 §3.3.5)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |A|       Attribute Type        |    AF=0  Attribute Length     |
        |F|                             |    AF=1  Attribute Value      |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                   AF=0  Attribute Value                       |
        |                   AF=1  Not Transmitted                       |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    An ``int`` value is the TV form (AF set, 16 bits, e.g. KEY_LENGTH); a ``bytes`` value
    is the TLV form. The form read is the form written, so attributes round-trip.
    """

    attr_type: TransformAttr
    value: int | bytes

    def encode(self, buf: Buffer) -> None:
        base.push_attribute(buf, CODEC, self.attr_type, self.value)

    @classmethod
    def decode(cls, reader: NetReader) -> Attribute:
        attr_type, value = base.pull_attribute(reader)
        return cls(TransformAttr(attr_type), value)


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform substructure (RFC 7296 §3.3.2)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Last Substruc |   RESERVED    |        Transform Length       |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |Transform Type |   RESERVED    |          Transform ID         |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                      Transform Attributes                     ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``transform_id`` is a plain int: its meaning depends on ``transform_type`` (the
    crypto layer's registry names them).
    """

    transform_type: TransformType
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        """The KEY_LENGTH attribute in bits, or None (RFC 7296 §3.3.5)."""
        for attr in self.attributes:
            if attr.attr_type == TransformAttr.KEY_LENGTH and isinstance(attr.value, int):
                return attr.value
        return None

    def encode(self, buf: Buffer, last: bool) -> None:
        with push_block(buf):
            _TRANSFORM.push_header(buf, last)
            buf.push_u8(self.transform_type)
            buf.push_u8(0)
            buf.push_u16be(self.transform_id)
            for attr in self.attributes:
                attr.encode(buf)

    @classmethod
    def decode(cls, reader: NetReader) -> tuple[Transform, bool]:
        """One transform from ``reader``, and whether it said it was the last."""
        body, last = _TRANSFORM.pull(reader)
        transform_type = TransformType(body.pull_u8("Transform Type"))
        body.pull_u8("RESERVED")
        transform_id = body.pull_u16("Transform ID")
        attributes: list[Attribute] = []
        while not body.eof():
            attributes.append(Attribute.decode(body))
        return cls(transform_type, transform_id, tuple(attributes)), last


@dataclass(frozen=True, slots=True)
class Proposal(base.Proposal):
    """A proposal substructure (RFC 7296 §3.3.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Last Substruc |   RESERVED    |         Proposal Length       |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                        SPI (variable)                         ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                        <Transforms>                           ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``spi`` is empty in an IKE_SA_INIT proposal, 8 bytes for an IKE SA rekey and 4 for
    AH/ESP; SPI Size and Num Transforms come from ``spi`` and ``transforms``.
    """

    substructure = _PROPOSAL
    protocols = ProtocolId
    field_names = ("Proposal Num", "Protocol ID", "Num Transforms")

    protocol_id: ProtocolId
    transforms: tuple[Transform, ...] = ()

    @classmethod
    def pull_transforms(
        cls, body: NetReader, protocol_id: int, count: int
    ) -> tuple[Transform, ...]:
        transforms, last = base.pull_marked(body, Transform.decode, body.what, "transform")
        last = last or count == 0
        if not last or len(transforms) != count:
            raise IkeDecodeError(
                f"{body.what}: Num Transforms says {count}, "
                f"{len(transforms)} present{'' if last else ', last one not marked last'}"
            )
        return tuple(transforms)


@dataclass(frozen=True, slots=True)
class SaPayload:
    """Security Association payload, SA (RFC 7296 §3.3)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                          <Proposals>                          ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    At least one proposal (RFC 7296 §3.3: "one or more proposals").
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SA

    proposals: tuple[Proposal, ...]

    def encode_body(self) -> bytes:
        if not self.proposals:
            raise IkeEncodeError("SA payload without proposals")
        buf = Buffer()
        for i, proposal in enumerate(self.proposals, 1):
            proposal.encode(buf, last=i == len(self.proposals))
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> SaPayload:
        """The payload of `body`. One whose proposals carry no SPI (IKE_SA_INIT's, the
        same in every setup of a connection) is kept and given again for the same
        bytes: it is parsed once, not in every setup."""
        kept = _WITHOUT_SPIS.get(body)
        if kept is not None:
            return kept
        reader = IkeReader(body, "SA payload")
        proposals, last = base.pull_marked(reader, Proposal.decode, "SA payload", "proposal")
        if not proposals:
            raise IkeDecodeError("SA payload without proposals")
        if not last:
            raise IkeDecodeError("SA payload: the last proposal is not marked last")
        payload = cls(tuple(proposals))
        if len(body) <= _WITHOUT_SPIS_BODY and not any(p.spi for p in payload.proposals):
            if len(_WITHOUT_SPIS) >= _WITHOUT_SPIS_KEPT:
                _WITHOUT_SPIS.clear()  # many offers: an odd peer, or someone's flood
            _WITHOUT_SPIS[bytes(body)] = payload
        return payload


#: SA payloads without SPIs decoded so far, by body (`SaPayload.decode_body`); all are
#: immutable, so one may be given to every message that carries the same bytes. Longer
#: bodies are read each time, so what is kept stays under 256 x 4096 bytes.
_WITHOUT_SPIS: dict[bytes, SaPayload] = {}
_WITHOUT_SPIS_KEPT = 256
_WITHOUT_SPIS_BODY = 4096
