"""IKEv2 payloads (RFC 7296 §3.4-§3.16, RFC 7383 §2.5): one frozen dataclass each.

Every payload starts with the generic payload header of RFC 7296 §3.2 (Next Payload, the
critical bit, Payload Length); `larval.ike.payload` walks and writes that header for
`larval.ikev2.message`. The *body* of a payload is everything after those four bytes:
``encode_body()`` returns it, ``decode_body(body)`` reads it, and raises `IkeDecodeError`
(INVALID_SYNTAX) if it does not fill the body exactly. The bodies both versions lay out
alike (opaque data: Vendor ID, EAP; the Nonce; CERT and CERTREQ; Notify and Delete) are
built on `larval.ike.payload`, with IKEv2's numbers and errors.

Each class knows its `PayloadType`: a class attribute, or a field where one layout serves
two types (IDi/IDr, TSi/TSr). Payload types this module has no class for decode to
`UnknownPayload`, which re-encodes unchanged. Reserved fields are written as zeros and
ignored when read (RFC 7296 §3.2), so a message whose sender zeroed them re-encodes to
the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from larval.ike import payload as base
from larval.ike.identity import IdType
from larval.wire import Buffer

from .codec import CODEC, IkeReader
from .constants import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from .errors import IkeDecodeError, IkeEncodeError, IkeProtocolError
from .sa_payload import SaPayload
from .ts_payload import TsPayload

__all__ = [
    "KNOWN_PAYLOAD_TYPES",
    "AuthPayload",
    "CertPayload",
    "CertReqPayload",
    "CfgAttribute",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "IdPayload",
    "KePayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "SkPayload",
    "SkfPayload",
    "UnknownPayload",
    "VendorIdPayload",
    "decode_payload",
    "is_critical",
]

_SHA1_SIZE = 20  # CERTREQ Certification Authority entries (RFC 7296 §3.7)
_KE_HEAD = struct.Struct(">HH")  # Diffie-Hellman Group Num, RESERVED


@dataclass(frozen=True, slots=True)
class KePayload:
    """Key Exchange payload, KE (RFC 7296 §3.4)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |   Diffie-Hellman Group Num    |           RESERVED            |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       Key Exchange Data                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``dh_group`` must match the group of the proposal's DH transform, or the responder
    answers INVALID_KE_PAYLOAD with the group it wants (RFC 7296 §1.2).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.KE

    dh_group: int
    data: bytes

    def encode_body(self) -> bytes:
        return _KE_HEAD.pack(self.dh_group, 0) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> KePayload:
        if len(body) >= _KE_HEAD.size:
            return cls(_KE_HEAD.unpack_from(body)[0], body[_KE_HEAD.size :])
        reader = IkeReader(body, "KE payload")
        dh_group = reader.pull_u16("Diffie-Hellman Group Num")
        reader.pull_u16("RESERVED")
        return cls(dh_group, reader.pull_rest())


@dataclass(frozen=True, slots=True)
class IdPayload:
    """Identification payload, IDi or IDr (RFC 7296 §3.5)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |   ID Type     |                 RESERVED                      |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                   Identification Data                         ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    One class for both: ``payload_type`` is `PayloadType.IDi` or `PayloadType.IDr`.
    ``encode_body()`` is the RestOfInitIDPayload/RestOfRespIDPayload that the AUTH
    computation hashes (RFC 7296 §2.15).
    """

    payload_type: PayloadType
    id_type: IdType
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.id_type]) + bytes(3) + self.data

    @classmethod
    def decode_body(cls, body: bytes, payload_type: PayloadType) -> IdPayload:
        reader = IkeReader(body, f"{PayloadType(payload_type).name} payload")
        id_type = IdType(reader.pull_u8("ID Type"))
        reader.pull_bytes(3, "RESERVED")
        return cls(PayloadType(payload_type), id_type, reader.pull_rest())


@dataclass(frozen=True, slots=True)
class CertPayload(base.CertDataPayload):
    """Certificate payload, CERT (RFC 7296 §3.6)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Cert Encoding |                                               |
        +-+-+-+-+-+-+-+-+                                               |
        ~                       Certificate Data                        ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``data`` is opaque here: a DER certificate for X509_SIGNATURE, a hash and URL
    for the HASH_URL encodings (RFC 7296 §3.6).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.CERT
    codec = CODEC
    encodings = CertEncoding

    encoding: CertEncoding


@dataclass(frozen=True, slots=True)
class CertReqPayload(base.CertDataPayload):
    """Certificate Request payload, CERTREQ (RFC 7296 §3.7)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Cert Encoding |                                               |
        +-+-+-+-+-+-+-+-+                                               |
        ~                    Certification Authority                    ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    For X.509 encodings the authority field is a run of SHA-1 hashes of trusted CAs'
    public keys; ``authorities`` splits it (empty when it is not a whole number of them).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.CERTREQ
    codec = CODEC
    encodings = CertEncoding
    what = "CERTREQ payload"

    encoding: CertEncoding
    data: bytes = b""

    @property
    def authorities(self) -> tuple[bytes, ...]:
        if len(self.data) % _SHA1_SIZE:
            return ()
        return tuple(self.data[i : i + _SHA1_SIZE] for i in range(0, len(self.data), _SHA1_SIZE))


@dataclass(frozen=True, slots=True, repr=False)
class AuthPayload:
    """Authentication payload, AUTH (RFC 7296 §3.8)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Auth Method   |                RESERVED                       |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                      Authentication Data                      ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The repr shows the method and the data's length, never the data: a shared-key MIC
    in a log is an offline dictionary attack on the PSK (RFC 7296 §5).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.AUTH

    method: AuthMethod
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"AuthPayload(method={AuthMethod(self.method).name}, data=<{len(self.data)} bytes>)"

    def encode_body(self) -> bytes:
        return bytes([self.method]) + bytes(3) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> AuthPayload:
        reader = IkeReader(body, "AUTH payload")
        method = AuthMethod(reader.pull_u8("Auth Method"))
        reader.pull_bytes(3, "RESERVED")
        return cls(method, reader.pull_rest())


@dataclass(frozen=True, slots=True)
class NoncePayload(base.NoncePayload):
    """Nonce payload, Ni or Nr (RFC 7296 §3.9)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                            Nonce Data                         ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    16 to 256 bytes (RFC 7296 §3.9: at least 128 bits); anything else is INVALID_SYNTAX.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.NONCE
    codec = CODEC
    nonce_min = 16


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """Notify payload, N (RFC 7296 §3.10)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |  Protocol ID  |   SPI Size    |      Notify Message Type      |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                Security Parameter Index (SPI)                 ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       Notification Data                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``protocol_id`` is `ProtocolId.NONE` and ``spi`` empty when the notification is
    about no particular SA (RFC 7296 §3.10).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.NOTIFY

    protocol_id: ProtocolId
    notify_type: NotifyType
    spi: bytes = b""
    data: bytes = b""

    def encode_body(self) -> bytes:
        return base.notify_bytes(CODEC, self.protocol_id, self.notify_type, self.spi, self.data)

    @classmethod
    def decode_body(cls, body: bytes) -> NotifyPayload:
        protocol_id, notify_type, spi, data = base.pull_notify(IkeReader(body, "Notify payload"))
        # Known numbers looked up without a call of the enum; an unknown one becomes its
        # pseudo-member through the call.
        protocol = _PROTOCOLS.get(protocol_id)
        kind = _NOTIFY_TYPES.get(notify_type)
        return cls(
            ProtocolId(protocol_id) if protocol is None else protocol,
            NotifyType(notify_type) if kind is None else kind,
            spi,
            data,
        )


_PROTOCOLS: dict[int, ProtocolId] = {int(member): member for member in ProtocolId}
_NOTIFY_TYPES: dict[int, NotifyType] = {int(member): member for member in NotifyType}


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """Delete payload, D (RFC 7296 §3.11)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Protocol ID   |   SPI Size    |          Num of SPIs          |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~               Security Parameter Index(es) (SPI)              ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Deleting the IKE SA: protocol IKE, SPI Size 0, no SPIs (the header names the SA).
    Deleting Child SAs: AH or ESP, SPI Size 4, the SPIs the sender expects inbound.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.DELETE

    protocol_id: ProtocolId
    spi_size: int = 0
    spis: tuple[bytes, ...] = ()

    def encode_body(self) -> bytes:
        buf = Buffer()
        base.push_delete(buf, CODEC, self.protocol_id, self.spi_size, self.spis)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> DeletePayload:
        protocol_id, spi_size, spis = base.pull_delete(IkeReader(body, "Delete payload"))
        return cls(ProtocolId(protocol_id), spi_size, spis)


@dataclass(frozen=True, slots=True)
class VendorIdPayload(base.OpaquePayload):
    """Vendor ID payload, V (RFC 7296 §3.12)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                        Vendor ID (VID)                        ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Recognised or ignored by the receiver, never an error (RFC 7296 §3.12).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class CfgAttribute:
    """A configuration attribute (RFC 7296 §3.15.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |R|         Attribute Type      |            Length             |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                             Value                             ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    An empty value asks for the attribute in a CFG_REQUEST (RFC 7296 §3.15).
    """

    attr_type: CfgAttr
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class CpPayload:
    """Configuration payload, CP (RFC 7296 §3.15)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C| RESERVED    |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |   CFG Type    |                    RESERVED                   |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                   Configuration Attributes                    ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Attributes keep their order; a type may repeat (RFC 7296 §3.15.1).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.CP

    cfg_type: CfgType
    attributes: tuple[CfgAttribute, ...] = ()

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_u8(self.cfg_type)
        buf.push_bytes(bytes(3))
        for attr in self.attributes:
            if not 0 <= attr.attr_type <= 0x7FFF or len(attr.value) > 0xFFFF:
                raise IkeEncodeError(f"configuration attribute {int(attr.attr_type)} out of range")
            buf.push_u16be(attr.attr_type)
            buf.push_u16be(len(attr.value))
            buf.push_bytes(attr.value)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> CpPayload:
        reader = IkeReader(body, "CP payload")
        cfg_type = CfgType(reader.pull_u8("CFG Type"))
        reader.pull_bytes(3, "RESERVED")
        attributes: list[CfgAttribute] = []
        while not reader.eof():
            # The R bit is reserved: ignored on receipt (RFC 7296 §3.15.1).
            attr_type = CfgAttr(reader.pull_u16("Attribute Type") & 0x7FFF)
            length = reader.pull_u16("attribute Length")
            attributes.append(CfgAttribute(attr_type, reader.pull_bytes(length, "Value")))
        return cls(cfg_type, tuple(attributes))


@dataclass(frozen=True, slots=True, repr=False)
class EapPayload(base.SecretPayload):
    """Extensible Authentication payload, EAP (RFC 7296 §3.16)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       EAP Message                             ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The EAP message (RFC 3748 §4: Code, Identifier, Length, Type, Type-Data) is carried
    opaque; the repr shows its length only, as EAP methods carry credentials.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.EAP


@dataclass(frozen=True, slots=True)
class SkPayload:
    """Encrypted and Authenticated payload, SK (RFC 7296 §3.14)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                     Initialization Vector                     |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                    Encrypted IKE Payloads                     ~
        +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |               |             Padding (0-255 octets)            |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                                        |  Pad Length   |
                                        +-+-+-+-+-+-+-+-+
        ~                    Integrity Checksum Data                    ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``encrypted`` is IV | ciphertext | ICV, opaque to the codec. The Next Payload field
    of SK holds the type of the first payload inside (``first_inner``), and SK is the
    last payload of its message (RFC 7296 §3.14).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SK

    encrypted: bytes
    first_inner: PayloadType = PayloadType.NONE

    def encode_body(self) -> bytes:
        return self.encrypted

    @classmethod
    def decode_body(cls, body: bytes, first_inner: int = PayloadType.NONE) -> SkPayload:
        return cls(body, PayloadType(first_inner))


@dataclass(frozen=True, slots=True)
class SkfPayload:
    """Encrypted Fragment payload, SKF (RFC 7383 §2.5)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |        Fragment Number        |        Total Fragments        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                     Initialization Vector                     |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                      Encrypted content                        ~
        +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |               |             Padding (0-255 octets)            |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                                        |  Pad Length   |
                                        +-+-+-+-+-+-+-+-+
        ~                    Integrity Checksum Data                    ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Fragment Number is 1..Total Fragments, neither zero (RFC 7383 §2.5). Next Payload is
    the first inner payload's type in fragment 1 and zero in the others.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SKF

    fragment_number: int
    total_fragments: int
    encrypted: bytes
    first_inner: PayloadType = PayloadType.NONE

    def encode_body(self) -> bytes:
        if not 1 <= self.fragment_number <= self.total_fragments <= 0xFFFF:
            raise IkeEncodeError(
                f"fragment {self.fragment_number} of {self.total_fragments}: "
                "need 1 <= number <= total <= 65535"
            )
        buf = Buffer()
        buf.push_u16be(self.fragment_number)
        buf.push_u16be(self.total_fragments)
        buf.push_bytes(self.encrypted)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes, first_inner: int = PayloadType.NONE) -> SkfPayload:
        reader = IkeReader(body, "SKF payload")
        number = reader.pull_u16("Fragment Number")
        total = reader.pull_u16("Total Fragments")
        if not 1 <= number <= total:
            raise IkeDecodeError(f"SKF payload: fragment {number} of {total}")
        return cls(number, total, reader.pull_rest(), PayloadType(first_inner))


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload of a type this codec has no class for, kept whole (RFC 7296 §2.5).

    It decodes only when its critical bit is clear (a set bit rejects the message with
    UNSUPPORTED_CRITICAL_PAYLOAD) and re-encodes with the same type, bit and body.
    """

    payload_type: PayloadType
    critical: bool
    body: bytes

    def encode_body(self) -> bytes:
        return self.body


Payload: TypeAlias = (
    SaPayload
    | KePayload
    | IdPayload
    | CertPayload
    | CertReqPayload
    | AuthPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | TsPayload
    | CpPayload
    | EapPayload
    | SkPayload
    | SkfPayload
    | UnknownPayload
)

# One decoder per payload type: (type, body, Next Payload) -> payload. Next Payload
# matters only to SK and SKF, where it is the type of the first inner payload.
_Decoder: TypeAlias = Callable[[PayloadType, bytes, int], Payload]
_DECODERS: dict[int, _Decoder] = {
    PayloadType.SA: lambda t, b, n: SaPayload.decode_body(b),
    PayloadType.KE: lambda t, b, n: KePayload.decode_body(b),
    PayloadType.IDi: lambda t, b, n: IdPayload.decode_body(b, t),
    PayloadType.IDr: lambda t, b, n: IdPayload.decode_body(b, t),
    PayloadType.CERT: lambda t, b, n: CertPayload.decode_body(b),
    PayloadType.CERTREQ: lambda t, b, n: CertReqPayload.decode_body(b),
    PayloadType.AUTH: lambda t, b, n: AuthPayload.decode_body(b),
    PayloadType.NONCE: lambda t, b, n: NoncePayload.decode_body(b),
    PayloadType.NOTIFY: lambda t, b, n: NotifyPayload.decode_body(b),
    PayloadType.DELETE: lambda t, b, n: DeletePayload.decode_body(b),
    PayloadType.VENDOR_ID: lambda t, b, n: VendorIdPayload.decode_body(b),
    PayloadType.TSi: lambda t, b, n: TsPayload.decode_body(b, t),
    PayloadType.TSr: lambda t, b, n: TsPayload.decode_body(b, t),
    PayloadType.CP: lambda t, b, n: CpPayload.decode_body(b),
    PayloadType.EAP: lambda t, b, n: EapPayload.decode_body(b),
    PayloadType.SK: lambda t, b, n: SkPayload.decode_body(b, n),
    PayloadType.SKF: lambda t, b, n: SkfPayload.decode_body(b, n),
}

#: The payload types this codec has a class for.
KNOWN_PAYLOAD_TYPES = frozenset(PayloadType(t) for t in _DECODERS)

#: Payloads whose bodies come back byte for byte in every setup of a connection (its
#: identities, its traffic selectors): decoded once and given again for the same bytes
#: (all payloads are immutable). Bounded: a flood of distinct ones only empties it.
_SAME_EACH_TIME = frozenset((PayloadType.IDi, PayloadType.IDr, PayloadType.TSi, PayloadType.TSr))
_KEPT: dict[tuple[int, bytes], Payload] = {}
_KEPT_MAX = 1024
#: Longer bodies are decoded each time: what is kept stays under 1024 x 512 bytes.
_KEPT_BODY_MAX = 512


def decode_payload(
    payload_type: int, body: bytes, *, critical: bool = False, next_payload: int = 0
) -> Payload:
    """The payload of type ``payload_type`` whose body is ``body``.

    An unknown type decodes to `UnknownPayload` when ``critical`` is clear; when it is
    set, the message must be rejected (RFC 7296 §2.5) and this raises `IkeProtocolError`
    with UNSUPPORTED_CRITICAL_PAYLOAD and the one-octet type as Notification Data
    (RFC 7296 §3.10.1). A known type ignores the critical bit (RFC 7296 §3.2).
    """
    decoder = _DECODERS.get(payload_type)
    if (
        decoder is not None
        and payload_type in _SAME_EACH_TIME
        and type(body) is bytes
        and len(body) <= _KEPT_BODY_MAX
    ):
        key = (payload_type, body)
        kept = _KEPT.get(key)
        if kept is None:
            kept = decoder(PayloadType(payload_type), body, next_payload)  # once per body
            if len(_KEPT) >= _KEPT_MAX:
                _KEPT.clear()
            _KEPT[key] = kept
        return kept
    ptype = payload_type if type(payload_type) is PayloadType else PayloadType(payload_type)
    if decoder is None:
        if critical:
            raise IkeProtocolError(
                NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                f"payload type {int(ptype)} is not supported and its critical bit is set",
                bytes([int(ptype) & 0xFF]),
            )
        return UnknownPayload(ptype, False, body)
    return decoder(ptype, body, next_payload)


def is_critical(payload: Payload) -> bool:
    """The critical bit to send: set only on an unknown payload that arrived with it."""
    return isinstance(payload, UnknownPayload) and payload.critical
