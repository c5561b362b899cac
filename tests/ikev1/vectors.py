"""IKEv1 test vectors, written out field by field from the layouts of RFC 2408 §3,
RFC 2407 §4 and RFC 3947.

Each vector is the wire form as annotated hex (one field a line, the field and its
section named in the comment; `h` drops the comments and the whitespace) and the value
it must decode to. Message vectors are whole messages in the clear for
`decode_message`; chain vectors are the payload chains that travel encrypted, for
`decode_chain` with the type of the first payload. Integers are in network order
(RFC 2408 §3). Long opaque values (key exchange data) are spliced in from the constants
below, each named in its comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from larval.ikev1 import (
    VID_DPD,
    VID_NAT_T_RFC3947,
    Attribute,
    DeletePayload,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    HashPayload,
    IdPayload,
    IdType,
    IkeAttr,
    IkeAuthMethod,
    IkeEncryption,
    IkeGroup,
    IkeHash,
    IkeV1Message,
    IpsecAttr,
    IpsecAuthAlgorithm,
    IsakmpTransformId,
    KePayload,
    LifeType,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    PayloadType,
    Proposal,
    ProtocolId,
    SaPayload,
    Transform,
    VendorIdPayload,
)

_COMMENT = re.compile(r"#[^\n]*")


def h(annotated: str) -> bytes:
    """Bytes from annotated hex: ``#`` starts a comment, whitespace is ignored."""
    return bytes.fromhex("".join(_COMMENT.sub("", annotated).split()))


COOKIE_I = bytes.fromhex("0102030405060708")
COOKIE_R = bytes.fromhex("f1f2f3f4f5f6f7f8")
ZERO_COOKIE = bytes(8)
KE_MODP1024 = bytes(range(0x80))  # 128 bytes, the size of a MODP1024 public value
KE_ECP256 = bytes(range(0x80, 0xC0))  # 64 bytes, x | y of an ECP256 public value
NONCE_I = bytes(range(0x40, 0x50))  # 16 bytes
NONCE_QM = bytes(range(0x20, 0x40))  # 32 bytes
NAT_D_PEER = bytes(range(0xA0, 0xB4))  # 20 bytes, a SHA-1 output
NAT_D_SELF = bytes(range(0xB4, 0xC8))
HASH_SHA256 = bytes(range(0xD0, 0xF0))  # 32 bytes, a PRF-HMAC-SHA2-256 output
HASH_SHA1 = bytes(range(0xE0, 0xF4))  # 20 bytes, a PRF-HMAC-SHA1 output
SPI_ESP = bytes.fromhex("c0ffee01")
QM_MESSAGE_ID = 0x5E1EC7ED


@dataclass(frozen=True)
class MessageVector:
    name: str
    wire: bytes
    message: IkeV1Message
    number: int  # the message's place in its exchange, for the rules


@dataclass(frozen=True)
class ChainVector:
    name: str
    exchange: ExchangeType
    number: int
    first: PayloadType
    wire: bytes
    payloads: tuple[Payload, ...]


# -- Main Mode message 1: HDR, SA (two transforms), VID(DPD), VID(NAT-T) ------------------

_LIFE_86400 = Attribute(IkeAttr.LIFE_DURATION, bytes.fromhex("00015180"))

MAIN_MODE_1 = MessageVector(
    "Main Mode 1",
    h(
        """
        0102030405060708  # RFC 2408 §3.1 Initiator Cookie
        0000000000000000  # §3.1 Responder Cookie: zero in the first message
        01                # §3.1 Next Payload: SA (1)
        10                # §3.1 MjVer 1, MnVer 0
        02                # §3.1 Exchange Type: Identity Protection (Main Mode)
        00                # §3.1 Flags: none
        00000000          # §3.1 Message ID 0 in Phase 1
        000000a4          # §3.1 Length 164

        0d 00 0060        # §3.4 SA: Next Payload VID (13), RESERVED, Payload Length 96
        00000001          # §3.4 DOI: IPsec (RFC 2407 §4.2)
        00000001          # §3.4 Situation: SIT_IDENTITY_ONLY (RFC 2407 §4.2)
          00 00 0054      # §3.5 Proposal: Next Payload 0 (last), Payload Length 84
          01 01 00 02     # §3.5 Proposal # 1, Protocol-Id ISAKMP, SPI Size 0, 2 transforms
            03 00 0028    # §3.6 Transform: Next Payload 3 (more), Payload Length 40
            01 01 0000    # §3.6 Transform # 1, Transform-Id KEY_IKE, RESERVED2
            8001 0007     # RFC 2409 App. A: AF=1 Encryption Algorithm, AES-CBC
            800e 0080     # App. A: AF=1 Key Length, 128 bits
            8002 0004     # App. A: AF=1 Hash Algorithm, SHA2-256
            8003 0001     # App. A: AF=1 Authentication Method, pre-shared key
            8004 000e     # App. A: AF=1 Group Description, MODP2048 (14)
            800b 0001     # App. A: AF=1 Life Type, seconds
            000c 0004     # App. A: AF=0 Life Duration, 4 octets follow (RFC 2408 §3.3)
            00015180      #   86400 seconds
            00 00 0024    # §3.6 Transform: Next Payload 0 (last), Payload Length 36
            02 01 0000    # §3.6 Transform # 2, KEY_IKE, RESERVED2
            8001 0005     # App. A: Encryption Algorithm, 3DES-CBC
            8002 0002     # App. A: Hash Algorithm, SHA
            8003 0001     # App. A: Authentication Method, pre-shared key
            8004 0002     # App. A: Group Description, MODP1024 (2)
            800b 0001     # App. A: Life Type, seconds
            000c 0004     # App. A: AF=0 Life Duration, 4 octets
            00015180      #   86400 seconds

        0d 00 0014        # §3.16 VID: Next Payload VID, Payload Length 20
        afcad71368a1f1c96b8696fc77570100  # RFC 3706 §3: DPD
        00 00 0014        # §3.16 VID: Next Payload 0 (last), Payload Length 20
        4a131c81070358455c5728f20e95452f  # RFC 3947 §3.1: NAT-T
        """
    ),
    IkeV1Message(
        COOKIE_I,
        ZERO_COOKIE,
        ExchangeType.IDENTITY_PROTECTION,
        0,
        (
            SaPayload(
                (
                    Proposal(
                        1,
                        ProtocolId.ISAKMP,
                        b"",
                        (
                            Transform(
                                1,
                                IsakmpTransformId.KEY_IKE,
                                (
                                    Attribute(IkeAttr.ENCRYPTION_ALGORITHM, IkeEncryption.AES_CBC),
                                    Attribute(IkeAttr.KEY_LENGTH, 128),
                                    Attribute(IkeAttr.HASH_ALGORITHM, IkeHash.SHA2_256),
                                    Attribute(
                                        IkeAttr.AUTHENTICATION_METHOD, IkeAuthMethod.PRE_SHARED_KEY
                                    ),
                                    Attribute(IkeAttr.GROUP_DESCRIPTION, IkeGroup.MODP2048),
                                    Attribute(IkeAttr.LIFE_TYPE, LifeType.SECONDS),
                                    _LIFE_86400,
                                ),
                            ),
                            Transform(
                                2,
                                IsakmpTransformId.KEY_IKE,
                                (
                                    Attribute(
                                        IkeAttr.ENCRYPTION_ALGORITHM, IkeEncryption.TRIPLE_DES_CBC
                                    ),
                                    Attribute(IkeAttr.HASH_ALGORITHM, IkeHash.SHA),
                                    Attribute(
                                        IkeAttr.AUTHENTICATION_METHOD, IkeAuthMethod.PRE_SHARED_KEY
                                    ),
                                    Attribute(IkeAttr.GROUP_DESCRIPTION, IkeGroup.MODP1024),
                                    Attribute(IkeAttr.LIFE_TYPE, LifeType.SECONDS),
                                    _LIFE_86400,
                                ),
                            ),
                        ),
                    ),
                ),
            ),
            VendorIdPayload(VID_DPD),
            VendorIdPayload(VID_NAT_T_RFC3947),
        ),
    ),
    1,
)

# -- Main Mode message 3: HDR, KE, Ni, NAT-D, NAT-D (3DES/SHA/MODP1024 was chosen) --------

MAIN_MODE_3 = MessageVector(
    "Main Mode 3",
    h(
        f"""
        0102030405060708 f1f2f3f4f5f6f7f8  # RFC 2408 §3.1 cookies, both known now
        04 10 02 00       # §3.1 Next Payload KE (4), version 1.0, Main Mode, no flags
        00000000          # §3.1 Message ID 0
        000000e4          # §3.1 Length 228

        0a 00 0084        # §3.7 KE: Next Payload NONCE (10), Payload Length 132
        {KE_MODP1024.hex()}  # §3.7 Key Exchange Data: KE_MODP1024, 128 bytes
        14 00 0014        # §3.13 NONCE: Next Payload NAT-D (20), Payload Length 20
        404142434445464748494a4b4c4d4e4f  # §3.13 Nonce Data: NONCE_I, 16 bytes
        14 00 0018        # RFC 3947 §3.2 NAT-D: Next Payload NAT-D, Payload Length 24
        a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3  # HASH of the peer's address and port
        00 00 0018        # RFC 3947 §3.2 NAT-D: Next Payload 0 (last), Payload Length 24
        b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7  # HASH of the sender's address and port
        """
    ),
    IkeV1Message(
        COOKIE_I,
        COOKIE_R,
        ExchangeType.IDENTITY_PROTECTION,
        0,
        (
            KePayload(KE_MODP1024),
            NoncePayload(NONCE_I),
            NatDPayload(NAT_D_PEER),
            NatDPayload(NAT_D_SELF),
        ),
    ),
    3,
)

MESSAGE_VECTORS = [MAIN_MODE_1, MAIN_MODE_3]


# -- Quick Mode message 1 (inside the encryption): HASH(1), SA, Ni, KE, IDci, IDcr ---------

_QM_LIFE = (
    Attribute(IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS),
    Attribute(IpsecAttr.SA_LIFE_DURATION, 3600),
    Attribute(IpsecAttr.ENCAPSULATION_MODE, EncapsulationMode.TUNNEL),
)

QUICK_MODE_1 = ChainVector(
    "Quick Mode 1",
    ExchangeType.QUICK_MODE,
    1,
    PayloadType.HASH,
    h(
        f"""
        01 00 0024        # RFC 2408 §3.11 HASH: Next Payload SA (1), Payload Length 36
        {HASH_SHA256.hex()}  # §3.11 Hash Data: HASH(1), 32 bytes (RFC 2409 §5.5)

        0a 00 0054        # §3.4 SA: Next Payload NONCE (10), Payload Length 84
        00000001          # §3.4 DOI: IPsec
        00000001          # §3.4 Situation: SIT_IDENTITY_ONLY
          00 00 0048      # §3.5 Proposal: Next Payload 0 (last), Payload Length 72
          01 03 04 02     # §3.5 Proposal # 1, Protocol-Id ESP, SPI Size 4, 2 transforms
          c0ffee01        # §3.5 SPI: the initiator's inbound ESP SPI
            03 00 001c    # §3.6 Transform: Next Payload 3 (more), Payload Length 28
            01 14 0000    # §3.6 Transform # 1, ESP_AES_GCM_16 (20), RESERVED2
            8001 0001     # RFC 2407 §4.5: SA Life Type, seconds
            8002 0e10     # RFC 2407 §4.5: SA Life Duration, 3600
            8004 0001     # RFC 2407 §4.5: Encapsulation Mode, Tunnel
            8006 0080     # RFC 2407 §4.5: Key Length, 128
            8003 0013     # RFC 2407 §4.5: Group Description (PFS), ECP256 (19)
            00 00 0020    # §3.6 Transform: Next Payload 0 (last), Payload Length 32
            02 0c 0000    # §3.6 Transform # 2, ESP_AES (CBC, 12), RESERVED2
            8001 0001     # RFC 2407 §4.5: SA Life Type, seconds
            8002 0e10     # RFC 2407 §4.5: SA Life Duration, 3600
            8004 0001     # RFC 2407 §4.5: Encapsulation Mode, Tunnel
            8005 0005     # RFC 2407 §4.5: Authentication Algorithm, HMAC-SHA2-256
            8006 0080     # RFC 2407 §4.5: Key Length, 128
            8003 0013     # RFC 2407 §4.5: Group Description (PFS), ECP256

        04 00 0024        # §3.13 NONCE: Next Payload KE (4), Payload Length 36
        {NONCE_QM.hex()}  # §3.13 Nonce Data: NONCE_QM, 32 bytes
        05 00 0044        # §3.7 KE: Next Payload ID (5), Payload Length 68
        {KE_ECP256.hex()}  # §3.7 Key Exchange Data: KE_ECP256, 64 bytes (PFS)
        05 00 0010        # §3.8 ID (IDci): Next Payload ID, Payload Length 16
        04 00 0000        # RFC 2407 §4.6.2 ID_IPV4_ADDR_SUBNET, Protocol 0 (any), Port 0
        cb007100 ffffff00 # RFC 2407 §4.6.2.5 203.0.113.0, mask 255.255.255.0
        00 00 0010        # §3.8 ID (IDcr): Next Payload 0 (last), Payload Length 16
        04 00 0000        # RFC 2407 §4.6.2 ID_IPV4_ADDR_SUBNET, any protocol and port
        c6336400 ffffff00 # RFC 2407 §4.6.2.5 198.51.100.0, mask 255.255.255.0
        """
    ),
    (
        HashPayload(HASH_SHA256),
        SaPayload(
            (
                Proposal(
                    1,
                    ProtocolId.ESP,
                    SPI_ESP,
                    (
                        Transform(
                            1,
                            EspTransformId.ESP_AES_GCM_16,
                            (
                                *_QM_LIFE,
                                Attribute(IpsecAttr.KEY_LENGTH, 128),
                                Attribute(IpsecAttr.GROUP_DESCRIPTION, IkeGroup.ECP256),
                            ),
                        ),
                        Transform(
                            2,
                            EspTransformId.ESP_AES,
                            (
                                *_QM_LIFE,
                                Attribute(
                                    IpsecAttr.AUTH_ALGORITHM, IpsecAuthAlgorithm.HMAC_SHA2_256
                                ),
                                Attribute(IpsecAttr.KEY_LENGTH, 128),
                                Attribute(IpsecAttr.GROUP_DESCRIPTION, IkeGroup.ECP256),
                            ),
                        ),
                    ),
                ),
            )
        ),
        NoncePayload(NONCE_QM),
        KePayload(KE_ECP256),
        IdPayload(IdType.ID_IPV4_ADDR_SUBNET, bytes.fromhex("cb007100ffffff00")),
        IdPayload(IdType.ID_IPV4_ADDR_SUBNET, bytes.fromhex("c6336400ffffff00")),
    ),
)

# -- Informational (inside the encryption): HASH(1), N(R_U_THERE) -------------------------

R_U_THERE = ChainVector(
    "Informational R_U_THERE",
    ExchangeType.INFORMATIONAL,
    1,
    PayloadType.HASH,
    h(
        f"""
        0b 00 0018        # RFC 2408 §3.11 HASH: Next Payload N (11), Payload Length 24
        {HASH_SHA1.hex()}  # §3.11 Hash Data: HASH(1), 20 bytes (RFC 2409 §5.7)
        00 00 0020        # §3.14 N: Next Payload 0 (last), Payload Length 32
        00000001          # §3.14 DOI: IPsec
        01 10 8d28        # §3.14 Protocol-ID ISAKMP, SPI Size 16, R-U-THERE (36136)
        0102030405060708 f1f2f3f4f5f6f7f8  # RFC 3706 §5: SPI is CKY-I | CKY-R
        00000001          # RFC 3706 §5: Notification Data, sequence number 1
        """
    ),
    (
        HashPayload(HASH_SHA1),
        NotifyPayload(
            NotifyType.R_U_THERE,
            ProtocolId.ISAKMP,
            COOKIE_I + COOKIE_R,
            bytes.fromhex("00000001"),
        ),
    ),
)

# -- Informational (inside the encryption): HASH(1), D (two ESP SPIs) ---------------------

DELETE = ChainVector(
    "Informational Delete",
    ExchangeType.INFORMATIONAL,
    1,
    PayloadType.HASH,
    h(
        f"""
        0c 00 0018        # RFC 2408 §3.11 HASH: Next Payload D (12), Payload Length 24
        {HASH_SHA1.hex()}  # §3.11 Hash Data: HASH(1), 20 bytes (RFC 2409 §5.7)
        00 00 0014        # §3.15 D: Next Payload 0 (last), Payload Length 20
        00000001          # §3.15 DOI: IPsec
        03 04 0002        # §3.15 Protocol-Id ESP, SPI Size 4, # of SPIs 2
        c0ffee01          # §3.15 SPI 1
        c0ffee02          # §3.15 SPI 2
        """
    ),
    (
        HashPayload(HASH_SHA1),
        DeletePayload(ProtocolId.ESP, 4, (SPI_ESP, bytes.fromhex("c0ffee02"))),
    ),
)

CHAIN_VECTORS = [QUICK_MODE_1, R_U_THERE, DELETE]
