"""The Security Association payload (RFC 2408 §3.4-§3.6, RFC 2407 §4.5): proposals,
transforms, data attributes.

Unlike IKEv2's substructures, ISAKMP proposals and transforms are payloads of their own
(types 2 and 3) with the generic payload header, chained inside the SA payload's body:
the SA's body holds DOI and Situation, then a chain of Proposal payloads; each Proposal
holds a chain of Transform payloads. Their Next Payload octets (0 last, 2 or 3 more), the
SPI Size, # of Transforms and every length are derived when encoding and checked when
decoding; everything else round-trips as read, unknown numbers included.

Several proposals may share a Proposal # (RFC 2408 §4.2): they are to be applied together
(an AH and ESP bundle). `SaPayload.proposal_groups` returns them grouped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from larval.ike import sa_payload as base
from larval.wire import Buffer, NetReader

from .codec import CODEC, IkeV1Reader, push_block
from .constants import (
    DOI_IPSEC,
    SIT_IDENTITY_ONLY,
    AhTransformId,
    EspTransformId,
    IkeAttr,
    IpsecAttr,
    IsakmpTransformId,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from .errors import IkeV1DecodeError, IkeV1EncodeError

__all__ = ["Attribute", "Proposal", "SaPayload", "Transform"]


def _not_chained(message: str) -> IkeV1DecodeError:
    # A proposal or transform chained to a payload other than its own kind (RFC 2408 §3.5).
    return IkeV1DecodeError(message, NotifyType.INVALID_PAYLOAD_TYPE)


_PROPOSAL = base.Substructure(
    "proposal", PayloadType.PROPOSAL, "Next Payload", "proposal Payload Length", CODEC, _not_chained
)
_TRANSFORM = base.Substructure(
    "transform",
    PayloadType.TRANSFORM,
    "Next Payload",
    "transform Payload Length",
    CODEC,
    _not_chained,
)


def _attr_enum(protocol_id: int, attr_type: int) -> int:
    # Phase 1 transforms carry RFC 2409 Appendix A attributes, others RFC 2407 §4.5 ones.
    return IkeAttr(attr_type) if protocol_id == ProtocolId.ISAKMP else IpsecAttr(attr_type)


def _transform_enum(protocol_id: int, transform_id: int) -> int:
    if protocol_id == ProtocolId.ISAKMP:
        return IsakmpTransformId(transform_id)
    if protocol_id == ProtocolId.ESP:
        return EspTransformId(transform_id)
    if protocol_id == ProtocolId.AH:
        return AhTransformId(transform_id)
    return transform_id


@dataclass(frozen=True, slots=True)
class Attribute:
    """A data attribute (RFC 2408 §3.3)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !A!       Attribute Type        !    AF=0  Attribute Length     !
        !F!                             !    AF=1  Attribute Value      !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        .                   AF=0  Attribute Value                       .
        .                   AF=1  Not Transmitted                       .
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    An ``int`` value is the TV form (AF set, 16 bits); a ``bytes`` value is the TLV form.
    The form read is the form written, so attributes round-trip. ``attr_type`` decodes
    to `IkeAttr` in an ISAKMP proposal and to `IpsecAttr` in an AH or ESP one.
    """

    attr_type: int
    value: int | bytes

    @classmethod
    def of(cls, attr_type: int, value: int) -> Attribute:
        """TV when ``value`` fits 16 bits, else TLV in as few octets as it needs.

        RFC 2409 Appendix A lets a LIFE_DURATION of 86400 s travel as a variable-length
        attribute; that is the only reason for the TLV form with an integer.
        """
        if value < 0:
            raise IkeV1EncodeError(f"attribute {attr_type}: negative value {value}")
        if value <= 0xFFFF:
            return cls(attr_type, value)
        return cls(attr_type, value.to_bytes((value.bit_length() + 7) // 8, "big"))

    @property
    def number(self) -> int:
        """The value as an integer, whichever form carried it (TLV: big-endian)."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")

    def encode(self, buf: Buffer) -> None:
        base.push_attribute(buf, CODEC, self.attr_type, self.value)

    @classmethod
    def decode(cls, reader: NetReader, protocol_id: int) -> Attribute:
        attr_type, value = base.pull_attribute(reader)
        return cls(_attr_enum(protocol_id, attr_type), value)


@dataclass(frozen=True, slots=True)
class Transform:
    """A Transform payload, T (RFC 2408 §3.6)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Transform #  !  Transform-Id !           RESERVED2           !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                        SA Attributes                          ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Next Payload is 3 (TRANSFORM) or 0 for the last. ``transform_id`` decodes to
    `IsakmpTransformId`, `EspTransformId` or `AhTransformId` after the proposal's
    protocol (RFC 2407 §4.4); a Phase 1 transform is KEY_IKE with all its choices in
    the attributes (RFC 2409 Appendix A).
    """

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, attr_type: int) -> int | bytes | None:
        """The value of the first attribute of type ``attr_type``, or None."""
        for attr in self.attributes:
            if attr.attr_type == attr_type:
                return attr.value
        return None

    def encode(self, buf: Buffer, last: bool) -> None:
        with push_block(buf):
            _TRANSFORM.push_header(buf, last)
            buf.push_u8(self.number)
            buf.push_u8(self.transform_id)
            buf.push_u16be(0)
            for attr in self.attributes:
                attr.encode(buf)

    @classmethod
    def decode(cls, reader: NetReader, protocol_id: int) -> tuple[Transform, bool]:
        """One transform from ``reader``, and whether its Next Payload said it was last."""
        body, last = _TRANSFORM.pull(reader)
        number = body.pull_u8("Transform #")
        body.what = f"transform {number}"
        transform_id = _transform_enum(protocol_id, body.pull_u8("Transform-Id"))
        body.pull_u16("RESERVED2")
        attributes: list[Attribute] = []
        while not body.eof():
            attributes.append(Attribute.decode(body, protocol_id))
        return cls(number, transform_id, tuple(attributes)), last


@dataclass(frozen=True, slots=True)
class Proposal(base.Proposal):
    """A Proposal payload, P (RFC 2408 §3.5)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Proposal #   !  Protocol-Id  !    SPI Size   !# of Transforms!
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                        SPI (variable)                         !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Next Payload is 2 (PROPOSAL) or 0 for the last; the transforms follow the SPI as a
    chain of Transform payloads that the Payload Length covers. The transforms are
    alternatives, the first preferred (RFC 2408 §4.2). ``spi`` is usually empty for
    ISAKMP (the cookies name the SA, RFC 2409 §5) and 4 bytes for AH and ESP.
    """

    substructure = _PROPOSAL
    protocols = ProtocolId
    field_names = ("Proposal #", "Protocol-Id", "# of Transforms")

    protocol_id: ProtocolId
    transforms: tuple[Transform, ...] = ()

    @classmethod
    def pull_transforms(
        cls, body: NetReader, protocol_id: int, count: int
    ) -> tuple[Transform, ...]:
        transforms, last = base.pull_marked(
            body, lambda r: Transform.decode(r, protocol_id), body.what, "transform"
        )
        if transforms and not last:
            raise IkeV1DecodeError(f"{body.what}: the last transform is not marked last")
        if len(transforms) != count:
            # RFC 2408 §5.5: the count and the transforms present must agree.
            raise IkeV1DecodeError(
                f"{body.what}: # of Transforms says {count}, {len(transforms)} present",
                NotifyType.BAD_PROPOSAL_SYNTAX,
            )
        return tuple(transforms)


@dataclass(frozen=True, slots=True)
class SaPayload:
    """Security Association payload, SA (RFC 2408 §3.4, RFC 2407 §4.6.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !              Domain of Interpretation  (DOI)                  !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                           Situation                           !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                    <Proposal payloads ...>                    ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The SA's own Next Payload names the payload after it, never PROPOSAL (RFC 2408
    §3.4). Situation is the IPsec DOI's 32-bit bitmap (RFC 2407 §4.2), read as four
    octets whatever the DOI, as strongSwan does; the labeled-domain fields that
    SIT_SECRECY and SIT_INTEGRITY would add are not supported. At least one proposal.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SA

    proposals: tuple[Proposal, ...]
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY

    def proposal_groups(self) -> tuple[tuple[Proposal, ...], ...]:
        """Proposals sharing a Proposal # as one group each, in order (RFC 2408 §4.2)."""
        groups: list[list[Proposal]] = []
        for proposal in self.proposals:
            if groups and groups[-1][0].number == proposal.number:
                groups[-1].append(proposal)
            else:
                groups.append([proposal])
        return tuple(tuple(g) for g in groups)

    def encode_body(self) -> bytes:
        if not self.proposals:
            raise IkeV1EncodeError("SA payload without proposals")
        buf = Buffer()
        buf.push_u32be(self.doi)
        buf.push_u32be(self.situation)
        for i, proposal in enumerate(self.proposals, 1):
            proposal.encode(buf, last=i == len(self.proposals))
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> SaPayload:
        reader = IkeV1Reader(body, "SA payload")
        doi = reader.pull_u32("DOI")
        situation = reader.pull_u32("Situation")
        proposals, last = base.pull_marked(reader, Proposal.decode, "SA payload", "proposal")
        if not proposals:
            raise IkeV1DecodeError("SA payload without proposals", NotifyType.BAD_PROPOSAL_SYNTAX)
        if not last:
            raise IkeV1DecodeError("SA payload: the last proposal is not marked last")
        return cls(tuple(proposals), doi, situation)
