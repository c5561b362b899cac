"""IKEv2 test vectors, written out field by field from the layouts of RFC 7296 §3.

Each vector is the wire form as annotated hex (one field a line, the field and its
section named in the comment; `h` drops the comments and the whitespace) and the value
it must decode to. Message vectors are whole messages for `decode_message`; chain
vectors are the payloads inside an Encrypted payload, for `decode_chain` with the type
of the first payload. Integers are in network order (RFC 7296 §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from larval.crypto.ike_transforms import TransformType
from larval.ike.identity import IdType
from larval.ikev2 import (
    Attribute,
    AuthMethod,
    AuthPayload,
    CertEncoding,
    CertPayload,
    CertReqPayload,
    CfgAttr,
    CfgAttribute,
    CfgType,
    CpPayload,
    DeletePayload,
    EapPayload,
    ExchangeType,
    IdPayload,
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    PayloadType,
    Proposal,
    ProtocolId,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TransformAttr,
    TsPayload,
    TsType,
    UnknownPayload,
    VendorIdPayload,
)

_COMMENT = re.compile(r"#[^\n]*")


def h(annotated: str) -> bytes:
    """Bytes from annotated hex: ``#`` starts a comment, whitespace is ignored."""
    return bytes.fromhex("".join(_COMMENT.sub("", annotated).split()))


SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("f1f2f3f4f5f6f7f8")
KE_DATA = bytes(range(0x20, 0x40))  # 32 bytes, an X25519 public value's size
NONCE_I = bytes(range(0x40, 0x60))  # 32 bytes
NONCE_R = bytes(range(0x60, 0x70))  # 16 bytes, the minimum (RFC 7296 §3.9)
NAT_HASH = bytes(range(0xA0, 0xB4))  # 20 bytes, a SHA-1 output
VID = bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")  # 16 bytes
AUTH_DATA = bytes(range(0x80, 0xA0))  # 32 bytes, a PRF-HMAC-SHA256 output
CA_HASH = bytes(range(0xC0, 0xD4))  # 20 bytes


@dataclass(frozen=True)
class MessageVector:
    name: str
    wire: bytes
    message: IkeMessage


@dataclass(frozen=True)
class ChainVector:
    name: str
    exchange: ExchangeType
    is_response: bool
    first: PayloadType
    wire: bytes
    payloads: tuple[Payload, ...]


# -- IKE_SA_INIT request: SA (2 proposals), KE, Ni, N(NAT_DETECTION_SOURCE_IP), V -----

IKE_SA_INIT_REQUEST = MessageVector(
    "IKE_SA_INIT request",
    h(
        """
        0102030405060708  # §3.1 IKE SA Initiator's SPI
        0000000000000000  # §3.1 IKE SA Responder's SPI: zero in the first message
        21                # §3.1 Next Payload: SA (33)
        20                # §3.1 MjVer 2, MnVer 0
        22                # §3.1 Exchange Type: IKE_SA_INIT (34)
        08                # §3.1 Flags: I (initiator)
        00000000          # §3.1 Message ID 0
        000000ec          # §3.1 Length 236

        22 00 0054        # §3.2 SA: Next Payload KE (34), C=0, Payload Length 84
          02 00 002c      # §3.3.1 Last Substruc 2 (more), RESERVED, Proposal Length 44
          01 01 00 04     # §3.3.1 Proposal Num 1, Protocol IKE, SPI Size 0, 4 transforms
            03 00 000c    # §3.3.2 Last Substruc 3 (more), RESERVED, Transform Length 12
            01 00 000c    # §3.3.2 Transform Type ENCR, RESERVED, ID 12 (AES-CBC)
            800e 0080     # §3.3.5 AF=1 KEY_LENGTH (14), value 128
            03 00 0008    # §3.3.2 more, Transform Length 8
            02 00 0005    # §3.3.2 PRF, ID 5 (PRF_HMAC_SHA2_256)
            03 00 0008    # §3.3.2 more, Transform Length 8
            03 00 000c    # §3.3.2 INTEG, ID 12 (AUTH_HMAC_SHA2_256_128)
            00 00 0008    # §3.3.2 Last Substruc 0 (last), Transform Length 8
            04 00 001f    # §3.3.2 DH, ID 31 (Curve25519)
          00 00 0024      # §3.3.1 Last Substruc 0 (last), Proposal Length 36
          02 01 00 03     # §3.3.1 Proposal Num 2, Protocol IKE, SPI Size 0, 3 transforms
            03 00 000c    # §3.3.2 more, Transform Length 12
            01 00 0014    # §3.3.2 ENCR, ID 20 (AES-GCM, 16-octet ICV)
            800e 0100     # §3.3.5 KEY_LENGTH 256
            03 00 0008    # §3.3.2 more, Transform Length 8
            02 00 0006    # §3.3.2 PRF, ID 6 (PRF_HMAC_SHA2_384)
            00 00 0008    # §3.3.2 last, Transform Length 8
            04 00 0014    # §3.3.2 DH, ID 20 (384-bit random ECP)

        28 00 0028        # §3.2 KE: Next Payload Nonce (40), Payload Length 40
          001f 0000       # §3.4 Diffie-Hellman Group Num 31, RESERVED
          202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f  # §3.4 KE data

        29 00 0024        # §3.2 Ni: Next Payload Notify (41), Payload Length 36
          404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f  # §3.9 Nonce

        2b 00 001c        # §3.2 N: Next Payload Vendor ID (43), Payload Length 28
          00 00 4004      # §3.10 Protocol ID 0, SPI Size 0, NAT_DETECTION_SOURCE_IP
          a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3  # §3.10 Notification Data (SHA-1)

        00 00 0014        # §3.2 V: Next Payload none, Payload Length 20
          882fe56d6fd20dbc2251613b2ebe5beb  # §3.12 Vendor ID
        """
    ),
    IkeMessage(
        spi_i=SPI_I,
        spi_r=bytes(8),
        exchange_type=ExchangeType.IKE_SA_INIT,
        is_initiator=True,
        is_response=False,
        message_id=0,
        payloads=(
            SaPayload(
                (
                    Proposal(
                        1,
                        ProtocolId.IKE,
                        b"",
                        (
                            Transform(
                                TransformType.ENCR, 12, (Attribute(TransformAttr.KEY_LENGTH, 128),)
                            ),
                            Transform(TransformType.PRF, 5),
                            Transform(TransformType.INTEG, 12),
                            Transform(TransformType.DH, 31),
                        ),
                    ),
                    Proposal(
                        2,
                        ProtocolId.IKE,
                        b"",
                        (
                            Transform(
                                TransformType.ENCR, 20, (Attribute(TransformAttr.KEY_LENGTH, 256),)
                            ),
                            Transform(TransformType.PRF, 6),
                            Transform(TransformType.DH, 20),
                        ),
                    ),
                )
            ),
            KePayload(31, KE_DATA),
            NoncePayload(NONCE_I),
            NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_SOURCE_IP, b"", NAT_HASH),
            VendorIdPayload(VID),
        ),
    ),
)

# -- IKE_SA_INIT response refusing the KE group (RFC 7296 §1.2, §3.10.1) ---------------

IKE_SA_INIT_INVALID_KE = MessageVector(
    "IKE_SA_INIT response N(INVALID_KE_PAYLOAD)",
    h(
        """
        0102030405060708  # §3.1 IKE SA Initiator's SPI
        0000000000000000  # §3.1 Responder's SPI: zero, no state kept (§1.2)
        29                # §3.1 Next Payload: Notify (41)
        20                # §3.1 version 2.0
        22                # §3.1 IKE_SA_INIT
        20                # §3.1 Flags: R (response), I clear (from the responder)
        00000000          # §3.1 Message ID 0
        00000026          # §3.1 Length 38

        00 00 000a        # §3.2 N: last payload, Payload Length 10
          00 00 0011      # §3.10 Protocol ID 0, SPI Size 0, INVALID_KE_PAYLOAD (17)
          0013            # §3.10.1 Notification Data: the accepted group, 19 (ecp256)
        """
    ),
    IkeMessage(
        spi_i=SPI_I,
        spi_r=bytes(8),
        exchange_type=ExchangeType.IKE_SA_INIT,
        is_initiator=False,
        is_response=True,
        message_id=0,
        payloads=(NotifyPayload(ProtocolId.NONE, NotifyType.INVALID_KE_PAYLOAD, b"", b"\x00\x13"),),
    ),
)

# -- IKE_AUTH request as it travels: the SK payload, opaque ---------------------------

IKE_AUTH_SK = MessageVector(
    "IKE_AUTH request, SK opaque",
    h(
        """
        0102030405060708  # §3.1 IKE SA Initiator's SPI
        f1f2f3f4f5f6f7f8  # §3.1 IKE SA Responder's SPI
        2e                # §3.1 Next Payload: SK (46)
        20                # §3.1 version 2.0
        23                # §3.1 IKE_AUTH (35)
        08                # §3.1 Flags: I
        00000001          # §3.1 Message ID 1
        00000040          # §3.1 Length 64

        23 00 0024        # §3.14 SK: Next Payload IDi (35), the first inner; Length 36
          0011223344556677                  # §3.14 IV (8 bytes)
          8899aabbccddeeff0011223344556677  # §3.14 encrypted payloads and padding
          8899aabbccddeeff                  # §3.14 Integrity Checksum Data
        """
    ),
    IkeMessage(
        spi_i=SPI_I,
        spi_r=SPI_R,
        exchange_type=ExchangeType.IKE_AUTH,
        is_initiator=True,
        is_response=False,
        message_id=1,
        payloads=(
            SkPayload(
                bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
                PayloadType.IDi,
            ),
        ),
    ),
)

# -- An IKE_AUTH fragment (RFC 7383 §2.5) ---------------------------------------------

IKE_AUTH_SKF = MessageVector(
    "IKE_AUTH request fragment 1 of 3",
    h(
        """
        0102030405060708  # §3.1 IKE SA Initiator's SPI
        f1f2f3f4f5f6f7f8  # §3.1 IKE SA Responder's SPI
        35                # §3.1 Next Payload: SKF (53)
        20                # §3.1 version 2.0
        23                # §3.1 IKE_AUTH
        08                # §3.1 Flags: I
        00000001          # §3.1 Message ID 1
        00000034          # §3.1 Length 52

        23 00 0018        # RFC 7383 §2.5 SKF: Next Payload IDi (fragment 1), Length 24
          0001 0003       # RFC 7383 §2.5 Fragment Number 1, Total Fragments 3
          0011223344556677  # §3.14 IV
          8899aabbccddeeff  # §3.14 encrypted content and ICV
        """
    ),
    IkeMessage(
        spi_i=SPI_I,
        spi_r=SPI_R,
        exchange_type=ExchangeType.IKE_AUTH,
        is_initiator=True,
        is_response=False,
        message_id=1,
        payloads=(
            SkfPayload(1, 3, bytes.fromhex("00112233445566778899aabbccddeeff"), PayloadType.IDi),
        ),
    ),
)

# -- INFORMATIONAL response with an unknown, non-critical payload (RFC 7296 §2.5) -------

UNKNOWN_NONCRITICAL = MessageVector(
    "INFORMATIONAL response with an unknown payload",
    h(
        """
        0102030405060708  # §3.1 IKE SA Initiator's SPI
        f1f2f3f4f5f6f7f8  # §3.1 IKE SA Responder's SPI
        c8                # §3.1 Next Payload: 200, unassigned
        20                # §3.1 version 2.0
        25                # §3.1 INFORMATIONAL (37)
        20                # §3.1 Flags: R, from the responder
        00000007          # §3.1 Message ID 7
        0000002c          # §3.1 Length 44

        2b 00 0008        # §3.2 type 200: Next Payload V, C=0 (skip it), Length 8
          deadbeef        # body, kept as read
        00 00 0008        # §3.2 V: last, Payload Length 8
          6c617276        # §3.12 Vendor ID "larv"
        """
    ),
    IkeMessage(
        spi_i=SPI_I,
        spi_r=SPI_R,
        exchange_type=ExchangeType.INFORMATIONAL,
        is_initiator=False,
        is_response=True,
        message_id=7,
        payloads=(
            UnknownPayload(PayloadType(200), False, bytes.fromhex("deadbeef")),
            VendorIdPayload(b"larv"),
        ),
    ),
)

MESSAGE_VECTORS = (
    IKE_SA_INIT_REQUEST,
    IKE_SA_INIT_INVALID_KE,
    IKE_AUTH_SK,
    IKE_AUTH_SKF,
    UNKNOWN_NONCRITICAL,
)

# -- Inner chains: what SK carries -------------------------------------------------------

ESP_PROPOSAL = Proposal(
    1,
    ProtocolId.ESP,
    bytes.fromhex("c0ffee01"),
    (
        Transform(TransformType.ENCR, 20, (Attribute(TransformAttr.KEY_LENGTH, 128),)),
        Transform(TransformType.ESN, 0),
    ),
)
TSI_V4 = TsPayload(
    PayloadType.TSi,
    (
        TrafficSelector(
            TsType.TS_IPV4_ADDR_RANGE,
            0,
            0,
            0xFFFF,
            bytes([203, 0, 113, 0]),
            bytes([203, 0, 113, 255]),
        ),
    ),
)
TSR_V6 = TsPayload(
    PayloadType.TSr,
    (
        TrafficSelector(
            TsType.TS_IPV6_ADDR_RANGE,
            6,
            443,
            443,
            bytes.fromhex("20010db8000000000000000000000000"),
            bytes.fromhex("20010db80000ffffffffffffffffffff"),
        ),
    ),
)

IKE_AUTH_REQUEST_INNER = ChainVector(
    "IKE_AUTH request, inside SK",
    ExchangeType.IKE_AUTH,
    False,
    PayloadType.IDi,
    h(
        """
        26 00 0014        # §3.2 IDi: Next Payload CERTREQ (38), Payload Length 20
          02 000000       # §3.5 ID Type ID_FQDN, RESERVED
          6c6172762e6578616d706c65  # §3.5 "larv.example"
        24 00 0019        # §3.2 CERTREQ: Next Payload IDr (36), Payload Length 25
          04              # §3.7 Cert Encoding X.509 Certificate - Signature (4)
          c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3  # §3.7 CA public key SHA-1 hash
        27 00 000c        # §3.2 IDr: Next Payload AUTH (39), Payload Length 12
          01 000000       # §3.5 ID Type ID_IPV4_ADDR, RESERVED
          c0000202        # §3.5 192.0.2.2
        21 00 0028        # §3.2 AUTH: Next Payload SA (33), Payload Length 40
          02 000000       # §3.8 Auth Method: Shared Key Message Integrity Code, RESERVED
          808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f  # §3.8 data
        2c 00 0024        # §3.2 SA: Next Payload TSi (44), Payload Length 36
          00 00 0020      # §3.3.1 last proposal, Proposal Length 32
          01 03 04 02     # §3.3.1 Proposal 1, Protocol ESP, SPI Size 4, 2 transforms
          c0ffee01        # §3.3.1 SPI
            03 00 000c    # §3.3.2 more, Transform Length 12
            01 00 0014    # §3.3.2 ENCR, ID 20 (AES-GCM-16)
            800e 0080     # §3.3.5 KEY_LENGTH 128
            00 00 0008    # §3.3.2 last, Transform Length 8
            05 00 0000    # §3.3.2 ESN, ID 0 (no extended sequence numbers)
        2d 00 0018        # §3.2 TSi: Next Payload TSr (45), Payload Length 24
          01 000000       # §3.13 Number of TSs 1, RESERVED
          07 00 0010      # §3.13.1 TS_IPV4_ADDR_RANGE, any protocol, Selector Length 16
          0000 ffff       # §3.13.1 Start Port 0, End Port 65535
          cb007100        # §3.13.1 Starting Address 203.0.113.0
          cb0071ff        # §3.13.1 Ending Address 203.0.113.255
        29 00 0030        # §3.2 TSr: Next Payload Notify (41), Payload Length 48
          01 000000       # §3.13 Number of TSs 1, RESERVED
          08 06 0028      # §3.13.1 TS_IPV6_ADDR_RANGE, TCP (6), Selector Length 40
          01bb 01bb       # §3.13.1 ports 443..443
          20010db8000000000000000000000000  # §3.13.1 Starting Address 2001:db8::
          20010db80000ffffffffffffffffffff  # §3.13.1 Ending Address 2001:db8:0:ffff:...
        00 00 0008        # §3.2 N: last, Payload Length 8
          00 00 4000      # §3.10 no SPI, INITIAL_CONTACT (16384)
        """
    ),
    (
        IdPayload(PayloadType.IDi, IdType.ID_FQDN, b"larv.example"),
        CertReqPayload(CertEncoding.X509_SIGNATURE, CA_HASH),
        IdPayload(PayloadType.IDr, IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 2])),
        AuthPayload(AuthMethod.SHARED_KEY_MIC, AUTH_DATA),
        SaPayload((ESP_PROPOSAL,)),
        TSI_V4,
        TSR_V6,
        NotifyPayload(ProtocolId.NONE, NotifyType.INITIAL_CONTACT),
    ),
)

IKE_AUTH_RESPONSE_INNER = ChainVector(
    "IKE_AUTH response starting EAP, inside SK",
    ExchangeType.IKE_AUTH,
    True,
    PayloadType.IDr,
    h(
        """
        25 00 000c        # §3.2 IDr: Next Payload CERT (37), Payload Length 12
          01 000000       # §3.5 ID_IPV4_ADDR
          c0000201        # §3.5 192.0.2.1
        27 00 000a        # §3.2 CERT: Next Payload AUTH (39), Payload Length 10
          04              # §3.6 Cert Encoding X.509 Certificate - Signature
          30030101ff      # §3.6 Certificate Data (DER, opaque here)
        30 00 000c        # §3.2 AUTH: Next Payload EAP (48), Payload Length 12
          0e 000000       # §3.8 Auth Method: Digital Signature (14, RFC 7427)
          01020304        # §3.8 Authentication Data
        00 00 000a        # §3.2 EAP: last, Payload Length 10
          01 2a 0006 01 00  # §3.16 (RFC 3748 §4) Code Request, Identifier 42, Length 6, Identity
        """
    ),
    (
        IdPayload(PayloadType.IDr, IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        CertPayload(CertEncoding.X509_SIGNATURE, bytes.fromhex("30030101ff")),
        AuthPayload(AuthMethod.DIGITAL_SIGNATURE, bytes.fromhex("01020304")),
        EapPayload(bytes.fromhex("012a00060100")),
    ),
)

CREATE_CHILD_SA_REQUEST_INNER = ChainVector(
    "CREATE_CHILD_SA request rekeying a Child SA, inside SK",
    ExchangeType.CREATE_CHILD_SA,
    False,
    PayloadType.NOTIFY,
    h(
        """
        21 00 000c        # §3.2 N: Next Payload SA, Payload Length 12
          03 04 4009      # §3.10 Protocol ESP, SPI Size 4, REKEY_SA (16393)
          c0ffee01        # §3.10 SPI of the Child SA being rekeyed
        28 00 0024        # §3.2 SA: Next Payload Nonce, Payload Length 36
          00 00 0020      # §3.3.1 last proposal, Proposal Length 32
          01 03 04 02     # §3.3.1 Proposal 1, ESP, SPI Size 4, 2 transforms
          c0ffee01        # §3.3.1 SPI (the new one)
            03 00 000c    # §3.3.2 more, Transform Length 12
            01 00 0014    # §3.3.2 ENCR AES-GCM-16
            800e 0080     # §3.3.5 KEY_LENGTH 128
            00 00 0008    # §3.3.2 last
            05 00 0000    # §3.3.2 ESN none
        22 00 0014        # §3.2 Ni: Next Payload KE, Payload Length 20
          606162636465666768696a6b6c6d6e6f  # §3.9 Nonce (16 bytes)
        2c 00 0028        # §3.2 KEi: Next Payload TSi, Payload Length 40
          001f 0000       # §3.4 group 31, RESERVED
          202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f  # §3.4 KE data
        2d 00 0018        # §3.2 TSi: Next Payload TSr, Payload Length 24
          01 000000       # §3.13 1 TS
          07 00 0010      # §3.13.1 TS_IPV4_ADDR_RANGE, any protocol, length 16
          0000 ffff       # §3.13.1 all ports
          cb007100        # §3.13.1 203.0.113.0
          cb0071ff        # §3.13.1 203.0.113.255
        00 00 0030        # §3.2 TSr: last, Payload Length 48
          01 000000       # §3.13 1 TS
          08 06 0028      # §3.13.1 TS_IPV6_ADDR_RANGE, TCP, length 40
          01bb 01bb       # §3.13.1 port 443
          20010db8000000000000000000000000  # §3.13.1 2001:db8::
          20010db80000ffffffffffffffffffff  # §3.13.1 2001:db8:0:ffff:ffff:ffff:ffff:ffff
        """
    ),
    (
        NotifyPayload(ProtocolId.ESP, NotifyType.REKEY_SA, bytes.fromhex("c0ffee01")),
        SaPayload((ESP_PROPOSAL,)),
        NoncePayload(NONCE_R),
        KePayload(31, KE_DATA),
        TSI_V4,
        TsPayload(PayloadType.TSr, TSR_V6.selectors),
    ),
)

INFORMATIONAL_REQUEST_INNER = ChainVector(
    "INFORMATIONAL request deleting two Child SAs, asking for configuration",
    ExchangeType.INFORMATIONAL,
    False,
    PayloadType.DELETE,
    h(
        """
        2f 00 0010        # §3.2 D: Next Payload CP (47), Payload Length 16
          03 04 0002      # §3.11 Protocol ESP, SPI Size 4, Num of SPIs 2
          c0ffee01        # §3.11 SPI
          c0ffee02        # §3.11 SPI
        2a 00 0010        # §3.2 CP: Next Payload D (42), Payload Length 16
          01 000000       # §3.15 CFG_REQUEST, RESERVED
          0001 0000       # §3.15.1 INTERNAL_IP4_ADDRESS, Length 0 (asking)
          0003 0000       # §3.15.1 INTERNAL_IP4_DNS, Length 0
        00 00 0008        # §3.2 D: last, Payload Length 8
          01 00 0000      # §3.11 Protocol IKE, SPI Size 0, no SPIs: the IKE SA itself
        """
    ),
    (
        DeletePayload(ProtocolId.ESP, 4, (bytes.fromhex("c0ffee01"), bytes.fromhex("c0ffee02"))),
        CpPayload(
            CfgType.CFG_REQUEST,
            (CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS), CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)),
        ),
        DeletePayload(ProtocolId.IKE),
    ),
)

CHAIN_VECTORS = (
    IKE_AUTH_REQUEST_INNER,
    IKE_AUTH_RESPONSE_INNER,
    CREATE_CHILD_SA_REQUEST_INNER,
    INFORMATIONAL_REQUEST_INNER,
)
