"""ISAKMP payloads (RFC 2408 §3.7-§3.16, RFC 2407 §4.6, RFC 3947): one frozen dataclass each.

Every payload starts with the generic payload header of RFC 2408 §3.2 (Next Payload,
RESERVED, Payload Length); `larval.ike.payload` walks and writes that header for
`larval.ikev1.message`. The *body* of a payload is everything after those four bytes:
``encode_body()`` returns it, ``decode_body(body)`` reads it, and raises
`IkeV1DecodeError` (PAYLOAD_MALFORMED) if it does not fit. The SA payload with its
proposals and transforms lives in `larval.ikev1.sa_payload`. The bodies both versions
lay out alike (opaque data: KE, HASH, SIG, Vendor ID, NAT-D; the Nonce; CERT; Notify and
Delete after their DOI) are built on `larval.ike.payload`, with ISAKMP's numbers and
errors.

Each class knows its `PayloadType`: a class attribute, or a field where one layout serves
two numbers (NAT-D and NAT-OA under their RFC 3947 and draft numbers). Payload types this
module has no class for decode to `UnknownPayload`, which re-encodes unchanged: ISAKMP
has no critical bit, so whether an unknown payload is acceptable is for the exchange
rules to say (`larval.ikev1.rules`). Reserved fields are written as zeros and ignored
when read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from larval.ike import payload as base
from larval.wire import Buffer

from .codec import CODEC, IkeV1Reader
from .constants import (
    DOI_IPSEC,
    CertEncoding,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from .errors import IkeV1DecodeError
from .modecfg import AttributePayload
from .sa_payload import SaPayload

__all__ = [
    "KNOWN_PAYLOAD_TYPES",
    "CertPayload",
    "CrPayload",
    "DeletePayload",
    "HashPayload",
    "IdPayload",
    "KePayload",
    "NatDPayload",
    "NatOaPayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "SigPayload",
    "UnknownPayload",
    "VendorIdPayload",
    "decode_payload",
]

IpNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class KePayload(base.OpaquePayload):
    """Key Exchange payload, KE (RFC 2408 §3.7)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       Key Exchange Data                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    No group number: the group is the one the SA negotiated (RFC 2409 §5). A MODP public
    value is left-padded to the prime's length (RFC 2409 §5).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.KE


@dataclass(frozen=True, slots=True)
class IdPayload:
    """Identification payload, ID (RFC 2408 §3.8, RFC 2407 §4.6.2)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !        Payload Length         !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !   ID Type     !  Protocol ID  !             Port              !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                     Identification Data                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    IDii/IDir of Phase 1 and IDci/IDcr of Quick Mode alike. In Phase 1, Protocol ID and
    Port are 0/0 or UDP/500 (RFC 2407 §4.6.2); in Quick Mode they restrict the traffic
    (IP protocol and port, zero for any). ``encode_body()`` is the IDii_b/IDir_b that
    HASH_I and HASH_R cover (RFC 2409 §5).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.ID

    id_type: IdType
    data: bytes
    protocol: int = 0
    port: int = 0

    @classmethod
    def for_address(cls, address: IpAddress, protocol: int = 0, port: int = 0) -> IdPayload:
        """ID_IPV4_ADDR or ID_IPV6_ADDR of ``address``."""
        id_type = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, address.packed, protocol, port)

    @classmethod
    def for_network(cls, network: IpNetwork, protocol: int = 0, port: int = 0) -> IdPayload:
        """ID_IPV4_ADDR_SUBNET or ID_IPV6_ADDR_SUBNET: address then mask (RFC 2407 §4.6.2.5)."""
        v4 = network.version == 4
        id_type = IdType.ID_IPV4_ADDR_SUBNET if v4 else IdType.ID_IPV6_ADDR_SUBNET
        data = network.network_address.packed + network.netmask.packed
        return cls(id_type, data, protocol, port)

    @property
    def network(self) -> IpNetwork | None:
        """The addresses an address or subnet ID names, as a network; None for other types.

        A subnet whose mask is not contiguous, or data of the wrong size, gives None.
        """
        sizes = {
            IdType.ID_IPV4_ADDR: 4,
            IdType.ID_IPV6_ADDR: 16,
            IdType.ID_IPV4_ADDR_SUBNET: 8,
            IdType.ID_IPV6_ADDR_SUBNET: 32,
        }
        size = sizes.get(self.id_type)
        if size is None or len(self.data) != size:
            return None
        if size in (4, 16):
            return ipaddress.ip_network(ipaddress.ip_address(self.data))
        half = size // 2
        bits = half * 8
        mask = int.from_bytes(self.data[half:], "big")
        prefix = bin(mask).count("1")
        if mask != ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1):
            return None
        address = ipaddress.ip_address(self.data[:half])
        return ipaddress.ip_network((address, prefix), strict=False)

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_u8(self.id_type)
        buf.push_u8(self.protocol)
        buf.push_u16be(self.port)
        buf.push_bytes(self.data)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> IdPayload:
        reader = IkeV1Reader(body, "ID payload")
        id_type = IdType(reader.pull_u8("ID Type"))
        protocol = reader.pull_u8("Protocol ID")
        port = reader.pull_u16("Port")
        return cls(id_type, reader.pull_rest(), protocol, port)


@dataclass(frozen=True, slots=True)
class CertPayload(base.CertDataPayload):
    """Certificate payload, CERT (RFC 2408 §3.9)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Cert Encoding !                                               !
        +-+-+-+-+-+-+-+-+                                               !
        ~                       Certificate Data                        ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``data`` is opaque here: a DER certificate for X509_SIGNATURE.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.CERT
    codec = CODEC
    encodings = CertEncoding

    encoding: CertEncoding


@dataclass(frozen=True, slots=True)
class CrPayload:
    """Certificate Request payload, CR (RFC 2408 §3.10)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Cert. Type   !                                               !
        +-+-+-+-+-+-+-+-+                                               !
        ~                    Certificate Authority                      ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    For X.509 the authority is a DER distinguished name, or empty for any CA.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.CR

    cert_type: CertEncoding
    authority: bytes = b""

    def encode_body(self) -> bytes:
        return bytes([self.cert_type]) + self.authority

    @classmethod
    def decode_body(cls, body: bytes) -> CrPayload:
        reader = IkeV1Reader(body, "CR payload")
        cert_type = CertEncoding(reader.pull_u8("Cert. Type"))
        return cls(cert_type, reader.pull_rest())


@dataclass(frozen=True, slots=True, repr=False)
class HashPayload(base.SecretPayload):
    """Hash payload, HASH (RFC 2408 §3.11)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                           Hash Data                           ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    HASH_I/HASH_R of Phase 1, HASH(1)-(3) of Quick Mode and the Informational HASH(1)
    (RFC 2409 §5, §5.5, §5.7). The repr shows the length only: a PSK-authenticated
    HASH_I in a log is an offline dictionary attack on the PSK.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.HASH


@dataclass(frozen=True, slots=True)
class SigPayload(base.OpaquePayload):
    """Signature payload, SIG (RFC 2408 §3.12)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                         Signature Data                        ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    SIG_I/SIG_R of Phase 1 with signature authentication (RFC 2409 §5.1).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SIG


@dataclass(frozen=True, slots=True)
class NoncePayload(base.NoncePayload):
    """Nonce payload, NONCE (RFC 2408 §3.13)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                            Nonce Data                         ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    8 to 256 bytes (RFC 2409 §5); anything else is PAYLOAD_MALFORMED.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.NONCE
    codec = CODEC
    nonce_min = 8


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """Notification payload, N (RFC 2408 §3.14)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !              Domain of Interpretation  (DOI)                  !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Protocol-ID  !   SPI Size    !      Notify Message Type      !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                Security Parameter Index (SPI)                 ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       Notification Data                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    SPI Size comes from ``spi``. DPD's R_U_THERE and R_U_THERE_ACK carry protocol
    ISAKMP, both cookies (16 bytes) as SPI and a 32-bit sequence number as data
    (RFC 3706 §5).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.NOTIFICATION

    notify_type: NotifyType
    protocol_id: ProtocolId = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = DOI_IPSEC

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_u32be(self.doi)
        base.push_notify(buf, CODEC, self.protocol_id, self.notify_type, self.spi, self.data)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> NotifyPayload:
        reader = IkeV1Reader(body, "Notification payload")
        doi = reader.pull_u32("DOI")
        protocol_id, notify_type, spi, data = base.pull_notify(reader)
        return cls(NotifyType(notify_type), ProtocolId(protocol_id), spi, data, doi)


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """Delete payload, D (RFC 2408 §3.15)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !              Domain of Interpretation  (DOI)                  !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Protocol-Id  !   SPI Size    !           # of SPIs           !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~               Security Parameter Index(es) (SPI)              ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Deleting the ISAKMP SA: protocol ISAKMP, SPI Size 16, one SPI, the two cookies
    (RFC 2408 §3.15). Deleting IPsec SAs: AH or ESP, SPI Size 4, the sender's inbound
    SPIs.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.DELETE

    protocol_id: ProtocolId
    spi_size: int
    spis: tuple[bytes, ...] = ()
    doi: int = DOI_IPSEC

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_u32be(self.doi)
        base.push_delete(buf, CODEC, self.protocol_id, self.spi_size, self.spis)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> DeletePayload:
        reader = IkeV1Reader(body, "Delete payload")
        doi = reader.pull_u32("DOI")
        protocol_id, spi_size, spis = base.pull_delete(reader)
        return cls(ProtocolId(protocol_id), spi_size, spis, doi)


@dataclass(frozen=True, slots=True)
class VendorIdPayload(base.OpaquePayload):
    """Vendor ID payload, VID (RFC 2408 §3.16)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                        Vendor ID (VID)                        ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The extension VIDs (DPD, NAT-T, fragmentation) are in `larval.ikev1.constants`.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class NatDPayload(base.OpaquePayload):
    """NAT Discovery payload, NAT-D (RFC 3947 §3.2)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |    RESERVED   |        Payload length         |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                 HASH of the address and port                  ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2). The first
    NAT-D of a message is the peer's address, the others the sender's. ``payload_type``
    keeps the number it came with: NAT_D or the draft's NAT_D_DRAFT.
    """

    payload_type: PayloadType = PayloadType.NAT_D

    @classmethod
    def decode_body(cls, body: bytes, payload_type: PayloadType = PayloadType.NAT_D) -> NatDPayload:
        return cls(body, payload_type)


@dataclass(frozen=True, slots=True)
class NatOaPayload:
    """NAT Original Address payload, NAT-OA (RFC 3947 §5.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |    RESERVED   |        Payload length         |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |    ID Type    |    RESERVED   |            RESERVED           |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |         IPv4 (4 octets) or IPv6 address (16 octets)           |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ID Type is ID_IPV4_ADDR or ID_IPV6_ADDR; ``address`` is kept as read (its size is for
    the receiver to check). ``payload_type`` is NAT_OA or the draft's NAT_OA_DRAFT.
    """

    id_type: IdType
    address: bytes
    payload_type: PayloadType = PayloadType.NAT_OA

    @classmethod
    def for_address(
        cls, address: IpAddress, payload_type: PayloadType = PayloadType.NAT_OA
    ) -> NatOaPayload:
        id_type = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, address.packed, payload_type)

    def encode_body(self) -> bytes:
        return bytes([self.id_type]) + bytes(3) + self.address

    @classmethod
    def decode_body(
        cls, body: bytes, payload_type: PayloadType = PayloadType.NAT_OA
    ) -> NatOaPayload:
        reader = IkeV1Reader(body, "NAT-OA payload")
        id_type = IdType(reader.pull_u8("ID Type"))
        reader.pull_bytes(3, "RESERVED")
        return cls(id_type, reader.pull_rest(), payload_type)


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload of a type this codec has no class for, kept whole.

    It re-encodes with the same type and body. ISAKMP has no critical bit (RFC 2408
    §3.2); `larval.ikev1.rules` decides whether the exchange tolerates it.
    """

    payload_type: PayloadType
    body: bytes

    def encode_body(self) -> bytes:
        return self.body


Payload: TypeAlias = (
    SaPayload
    | KePayload
    | IdPayload
    | CertPayload
    | CrPayload
    | HashPayload
    | SigPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | NatDPayload
    | NatOaPayload
    | AttributePayload
    | UnknownPayload
)

_Decoder: TypeAlias = Callable[[PayloadType, bytes], Payload]
_DECODERS: dict[int, _Decoder] = {
    PayloadType.SA: lambda t, b: SaPayload.decode_body(b),
    PayloadType.KE: lambda t, b: KePayload.decode_body(b),
    PayloadType.ID: lambda t, b: IdPayload.decode_body(b),
    PayloadType.CERT: lambda t, b: CertPayload.decode_body(b),
    PayloadType.CR: lambda t, b: CrPayload.decode_body(b),
    PayloadType.HASH: lambda t, b: HashPayload.decode_body(b),
    PayloadType.SIG: lambda t, b: SigPayload.decode_body(b),
    PayloadType.NONCE: lambda t, b: NoncePayload.decode_body(b),
    PayloadType.NOTIFICATION: lambda t, b: NotifyPayload.decode_body(b),
    PayloadType.DELETE: lambda t, b: DeletePayload.decode_body(b),
    PayloadType.VENDOR_ID: lambda t, b: VendorIdPayload.decode_body(b),
    PayloadType.NAT_D: lambda t, b: NatDPayload.decode_body(b, t),
    PayloadType.NAT_D_DRAFT: lambda t, b: NatDPayload.decode_body(b, t),
    PayloadType.NAT_OA: lambda t, b: NatOaPayload.decode_body(b, t),
    PayloadType.NAT_OA_DRAFT: lambda t, b: NatOaPayload.decode_body(b, t),
    PayloadType.ATTRIBUTE: lambda t, b: AttributePayload.decode_body(b),
}

#: The payload types this codec has a class for (PROPOSAL and TRANSFORM live inside SA).
KNOWN_PAYLOAD_TYPES = frozenset(PayloadType(t) for t in _DECODERS)


def decode_payload(payload_type: int, body: bytes) -> Payload:
    """The payload of type ``payload_type`` whose body (after the generic header) is ``body``.

    PROPOSAL and TRANSFORM appear only inside an SA payload's body (RFC 2408 §3.5, §3.6);
    met anywhere else they raise INVALID_PAYLOAD_TYPE. Other unknown types become
    `UnknownPayload`.
    """
    ptype = PayloadType(payload_type)
    if ptype in (PayloadType.PROPOSAL, PayloadType.TRANSFORM):
        raise IkeV1DecodeError(
            f"{ptype.name} payload outside an SA payload",
            NotifyType.INVALID_PAYLOAD_TYPE,
            bytes([int(ptype)]),
        )
    decoder = _DECODERS.get(ptype)
    if decoder is None:
        return UnknownPayload(ptype, body)
    return decoder(ptype, body)
