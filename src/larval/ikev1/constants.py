"""ISAKMP and IKEv1 numbers: exchanges, payloads, notifications, attributes, IPsec DOI, VIDs.

Values come from RFC 2408 §3 (ISAKMP), RFC 2409 Appendix A (the IKE SA attributes),
RFC 2407 §4 (the IPsec DOI), RFC 3947 (NAT traversal) and RFC 3706 (dead peer
detection), as IANA's "Internet Security Association and Key Management Protocol
(ISAKMP) Identifiers" and "IPsec Registry" list them. Every enum here accepts an unknown
value: it becomes a pseudo-member named ``UNKNOWN_<n>``, so that reading a number off the
wire never raises and the number round-trips unchanged.

Attribute and transform numbers depend on where they sit: a transform of a proposal for
protocol ISAKMP carries `IkeAttr` attributes (Phase 1), one for AH or ESP carries
`IpsecAttr` attributes (Phase 2, RFC 2407 §4.5).
"""

from __future__ import annotations

import enum

from larval.wire import LenientIntEnum

__all__ = [
    "DOI_IPSEC",
    "DOI_ISAKMP",
    "GENERIC_HEADER_SIZE",
    "ISAKMP_HEADER_SIZE",
    "ISAKMP_MAJOR_VERSION",
    "ISAKMP_MINOR_VERSION",
    "SIT_IDENTITY_ONLY",
    "SIT_INTEGRITY",
    "SIT_SECRECY",
    "VID_DPD",
    "VID_FRAGMENTATION",
    "VID_FRAGMENTATION_CAPABLE",
    "VID_NAT_T_RFC3947",
    "AhTransformId",
    "CertEncoding",
    "EncapsulationMode",
    "EspTransformId",
    "ExchangeType",
    "HeaderFlag",
    "IdType",
    "IkeAttr",
    "IkeAuthMethod",
    "IkeEncryption",
    "IkeGroup",
    "IkeHash",
    "IpsecAttr",
    "IpsecAuthAlgorithm",
    "IsakmpTransformId",
    "LifeType",
    "NotifyType",
    "PayloadType",
    "ProtocolId",
    "is_fragmentation_vid",
]

ISAKMP_MAJOR_VERSION = 1  # RFC 2408 §3.1; IKEv1 keeps it (RFC 2409 §5)
ISAKMP_MINOR_VERSION = 0
ISAKMP_HEADER_SIZE = 28  # RFC 2408 §3.1
GENERIC_HEADER_SIZE = 4  # RFC 2408 §3.2

DOI_ISAKMP = 0  # RFC 2408 §3.4: the generic ISAKMP situation (Phase 1 Informational)
DOI_IPSEC = 1  # RFC 2407 §4.2

# Situation bitmap of the IPsec DOI (RFC 2407 §4.2).
SIT_IDENTITY_ONLY = 0x01
SIT_SECRECY = 0x02
SIT_INTEGRITY = 0x04

# Vendor IDs whose presence announces an extension. RFC 3706 §3: DPD; RFC 3947 §3.1:
# NAT traversal; the IKEv1 fragmentation VID (an MD5 of "FRAGMENTATION") that strongSwan,
# like Cisco, sends with a four-octet capability suffix.
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
VID_NAT_T_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
VID_FRAGMENTATION = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3")
VID_FRAGMENTATION_CAPABLE = VID_FRAGMENTATION + bytes.fromhex("80000000")


def is_fragmentation_vid(vid: bytes) -> bool:
    """True for the fragmentation VID with or without its capability suffix."""
    if vid[:16] != VID_FRAGMENTATION or len(vid) not in (16, 20):
        return False
    # strongSwan: with a capability word, its IKE bit (0x80000000) must be set.
    return len(vid) == 16 or bool(int.from_bytes(vid[16:], "big") & 0x80000000)


class ExchangeType(LenientIntEnum):
    """Exchange Type of the ISAKMP header (RFC 2408 §3.1, RFC 2409 §5)."""

    BASE = 1
    IDENTITY_PROTECTION = 2  # IKEv1 Main Mode
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6  # Mode Config and XAuth (draft-dukes-ike-mode-cfg): `larval.ikev1.transaction`
    QUICK_MODE = 32  # RFC 2409 §5.5
    NEW_GROUP_MODE = 33  # RFC 2409 §6
    MAIN_MODE = 2


class HeaderFlag(enum.IntFlag):
    """Flags octet of the ISAKMP header (RFC 2408 §3.1); the other bits are reserved."""

    ENCRYPTION = 0x01  # E: the payloads after the header are encrypted
    COMMIT = 0x02  # C: key exchange synchronisation (RFC 2408 §3.1)
    AUTH_ONLY = 0x04  # A: authenticated but not encrypted (Informational)


class PayloadType(LenientIntEnum):
    """Next Payload values (RFC 2408 §3.1; RFC 3947 §3.2, §5.1 for NAT-D and NAT-OA).

    PROPOSAL and TRANSFORM are payloads too in ISAKMP, but they chain only inside the
    body of an SA payload (RFC 2408 §3.4-§3.6). 14-127 are reserved, 128-255 private
    use; strongSwan still recognises the NAT-T draft numbers 130 and 131.
    """

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFICATION = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14  # Mode Config and XAuth (draft-dukes-ike-mode-cfg): `larval.ikev1.modecfg`
    NAT_D = 20  # RFC 3947 §3.2
    NAT_OA = 21  # RFC 3947 §5.1
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # IKEv1 fragmentation (Cisco, strongSwan); kept as an unknown payload
    # The short names of RFC 2409 §5's notation.
    N = 11
    D = 12
    VID = 13

    @property
    def is_private(self) -> bool:
        """Private-use numbers (RFC 2408 §3.1): 128-255."""
        return 128 <= int(self) <= 255


class NotifyType(LenientIntEnum):
    """Notify Message Type (RFC 2408 §3.14.1; RFC 2407 §4.6.3; RFC 3706 §5).

    Errors are 1-16383 (8192-16383 private use), status 16384 and above.
    """

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30

    CONNECTED = 16384  # RFC 2408 §3.14.1
    RESPONDER_LIFETIME = 24576  # RFC 2407 §4.6.3.1
    REPLAY_STATUS = 24577  # RFC 2407 §4.6.3.2
    INITIAL_CONTACT = 24578  # RFC 2407 §4.6.3.3
    R_U_THERE = 36136  # RFC 3706 §5
    R_U_THERE_ACK = 36137

    @property
    def is_error(self) -> bool:
        """Error types are below 16384 (RFC 2408 §3.14.1)."""
        return int(self) < 16384


class ProtocolId(LenientIntEnum):
    """Protocol identifiers of the IPsec DOI (RFC 2407 §4.4.1)."""

    NONE = 0  # a notification about no SA
    ISAKMP = 1
    AH = 2
    ESP = 3
    IPCOMP = 4


class IsakmpTransformId(LenientIntEnum):
    """Transform ID of an ISAKMP proposal's transforms (RFC 2407 §4.4.2)."""

    KEY_IKE = 1


class AhTransformId(LenientIntEnum):
    """Transform ID of an AH proposal's transforms (RFC 2407 §4.4.3, RFC 4868 §2.4)."""

    AH_MD5 = 2
    AH_SHA = 3
    AH_DES = 4
    AH_SHA2_256 = 5
    AH_SHA2_384 = 6
    AH_SHA2_512 = 7


class EspTransformId(LenientIntEnum):
    """Transform ID of an ESP proposal's transforms (RFC 2407 §4.4.4 and IANA's registry)."""

    ESP_DES_IV64 = 1
    ESP_DES = 2
    ESP_3DES = 3
    ESP_RC5 = 4
    ESP_IDEA = 5
    ESP_CAST = 6
    ESP_BLOWFISH = 7
    ESP_3IDEA = 8
    ESP_DES_IV32 = 9
    ESP_RC4 = 10
    ESP_NULL = 11
    ESP_AES = 12  # AES-CBC, RFC 3602
    ESP_AES_CTR = 13  # RFC 3686
    ESP_AES_CCM_8 = 14  # RFC 4309
    ESP_AES_CCM_12 = 15
    ESP_AES_CCM_16 = 16
    ESP_AES_GCM_8 = 18  # RFC 4106
    ESP_AES_GCM_12 = 19
    ESP_AES_GCM_16 = 20
    ESP_SEED_CBC = 21
    ESP_CAMELLIA = 22
    ESP_NULL_AUTH_AES_GMAC = 23  # RFC 4543


class IkeAttr(LenientIntEnum):
    """Attribute classes of a Phase 1 transform (RFC 2409 Appendix A).

    ENCRYPTION_ALGORITHM, HASH_ALGORITHM, AUTHENTICATION_METHOD, GROUP_DESCRIPTION,
    GROUP_TYPE and LIFE_TYPE are always TV; LIFE_DURATION may be either form.
    """

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14  # in bits, for variable-length ciphers such as AES
    FIELD_SIZE = 15
    GROUP_ORDER = 16


class IkeEncryption(LenientIntEnum):
    """ENCRYPTION_ALGORITHM values (RFC 2409 Appendix A; RFC 3602 for AES)."""

    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_R16_B64_CBC = 4
    TRIPLE_DES_CBC = 5  # 3DES
    CAST_CBC = 6
    AES_CBC = 7
    CAMELLIA_CBC = 8


class IkeHash(LenientIntEnum):
    """HASH_ALGORITHM values (RFC 2409 Appendix A; RFC 4868 §2.1 for SHA-2)."""

    MD5 = 1
    SHA = 2  # SHA-1
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class IkeAuthMethod(LenientIntEnum):
    """AUTHENTICATION_METHOD values (RFC 2409 Appendix A; RFC 4754 §4 for ECDSA).

    The private-use values of XAuth (draft-beaulieu-ike-xauth §7.2) and hybrid
    authentication (draft-ietf-ipsra-hybrid-auth): an odd number when the initiator is
    the one XAuth authenticates (a road warrior), even when it is the responder.
    """

    PRE_SHARED_KEY = 1
    DSS_SIGNATURES = 2
    RSA_SIGNATURES = 3
    RSA_ENCRYPTION = 4
    RSA_REVISED_ENCRYPTION = 5
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    HYBRID_INIT_RSA = 64221
    HYBRID_RESP_RSA = 64222
    XAUTH_INIT_PSK = 65001
    XAUTH_RESP_PSK = 65002
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006


class IkeGroup(LenientIntEnum):
    """GROUP_DESCRIPTION values (RFC 2409 §6, RFC 3526, RFC 5903, RFC 5114)."""

    MODP768 = 1
    MODP1024 = 2
    EC2N155 = 3
    EC2N185 = 4
    MODP1536 = 5
    MODP2048 = 14
    MODP3072 = 15
    MODP4096 = 16
    MODP6144 = 17
    MODP8192 = 18
    ECP256 = 19
    ECP384 = 20
    ECP521 = 21
    MODP1024_S160 = 22
    MODP2048_S224 = 23
    MODP2048_S256 = 24
    ECP192 = 25
    ECP224 = 26


class LifeType(LenientIntEnum):
    """LIFE_TYPE (RFC 2409 Appendix A) and SA_LIFE_TYPE (RFC 2407 §4.5) values."""

    SECONDS = 1
    KILOBYTES = 2


class IpsecAttr(LenientIntEnum):
    """Attribute types of a Phase 2 (AH, ESP) transform (RFC 2407 §4.5)."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3  # PFS group, IkeGroup numbers
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10  # RFC 3168 §9.2.1
    EXTENDED_SEQUENCE_NUMBER = 11  # RFC 4304 §2


class EncapsulationMode(LenientIntEnum):
    """ENCAPSULATION_MODE values (RFC 2407 §4.5; RFC 3947 §6 for the UDP ones).

    strongSwan still sends the NAT-T drafts' private-use numbers to peers that announced
    only a draft VID; they mean the same as 3 and 4.
    """

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443
    UDP_TRANSPORT_DRAFT = 61444


class IpsecAuthAlgorithm(LenientIntEnum):
    """AUTH_ALGORITHM values (RFC 2407 §4.5; RFC 4868 §2.4 for SHA-2; RFC 4543 for GMAC)."""

    HMAC_MD5 = 1
    HMAC_SHA = 2  # HMAC-SHA-1
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8
    AES_XCBC_MAC = 9
    SIG_RSA = 10
    AES_128_GMAC = 11
    AES_192_GMAC = 12
    AES_256_GMAC = 13


class IdType(LenientIntEnum):
    """Identification Type of the IPsec DOI (RFC 2407 §4.6.2.1)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_USER_FQDN = 3
    ID_IPV4_ADDR_SUBNET = 4
    ID_IPV6_ADDR = 5
    ID_IPV6_ADDR_SUBNET = 6
    ID_IPV4_ADDR_RANGE = 7
    ID_IPV6_ADDR_RANGE = 8
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11


class CertEncoding(LenientIntEnum):
    """Certificate Encoding of CERT and CR (RFC 2408 §3.9)."""

    NONE = 0
    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS_TOKENS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
