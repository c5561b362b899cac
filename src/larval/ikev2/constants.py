"""IKEv2 numbers: exchange, payload, notify, transform, ID, auth, TS and CP types, flags.

Values are IANA's "Internet Key Exchange Version 2 (IKEv2) Parameters" as RFC 7296 §3
introduces them (and RFC 7383 for SKF). Decoded payloads hold these enums, and every enum
here accepts an unknown value: it becomes a pseudo-member named ``UNKNOWN_<n>``, so that
reading a number off the wire never raises and the number round-trips unchanged.
"""

from __future__ import annotations

import enum

from larval.wire import LenientIntEnum

__all__ = [
    "GENERIC_HEADER_SIZE",
    "IKE_HEADER_SIZE",
    "IKE_MAJOR_VERSION",
    "IKE_MINOR_VERSION",
    "AuthMethod",
    "CertEncoding",
    "CfgAttr",
    "CfgType",
    "ExchangeType",
    "HeaderFlag",
    "NotifyType",
    "PayloadType",
    "ProtocolId",
    "TransformAttr",
    "TsType",
]

IKE_MAJOR_VERSION = 2  # RFC 7296 §3.1
IKE_MINOR_VERSION = 0
IKE_HEADER_SIZE = 28  # RFC 7296 §3.1
GENERIC_HEADER_SIZE = 4  # RFC 7296 §3.2


class ExchangeType(LenientIntEnum):
    """Exchange Type of the IKE header (RFC 7296 §3.1)."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37


class HeaderFlag(enum.IntFlag):
    """Flags octet of the IKE header (RFC 7296 §3.1); the other bits are reserved."""

    INITIATOR = 0x08  # I: sent by the original initiator of the IKE SA
    VERSION = 0x10  # V: the sender could speak a higher major version
    RESPONSE = 0x20  # R: this message answers one with the same Message ID


class PayloadType(LenientIntEnum):
    """Next Payload values (RFC 7296 §3.2; SKF from RFC 7383 §2.5)."""

    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40  # Ni and Nr
    NOTIFY = 41
    DELETE = 42
    VENDOR_ID = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    SKF = 53


class NotifyType(LenientIntEnum):
    """Notify Message Type (RFC 7296 §3.10.1): errors below 16384, status at and above."""

    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40  # RFC 4555
    UNEXPECTED_NAT_DETECTED = 41  # RFC 4555
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44

    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396  # RFC 4555
    UPDATE_SA_ADDRESSES = 16400  # RFC 4555
    COOKIE2 = 16401  # RFC 4555
    MULTIPLE_AUTH_SUPPORTED = 16404  # RFC 4739
    ANOTHER_AUTH_FOLLOWS = 16405  # RFC 4739
    EAP_ONLY_AUTHENTICATION = 16417  # RFC 5998
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427

    @property
    def is_error(self) -> bool:
        """Error types are 0..16383 (RFC 7296 §3.10.1); an unknown one fails the request."""
        return int(self) < 16384


class ProtocolId(LenientIntEnum):
    """Protocol ID of proposals, notifications and deletes (RFC 7296 §3.3.1)."""

    NONE = 0  # a Notify without an SPI (RFC 7296 §3.10)
    IKE = 1
    AH = 2
    ESP = 3


class TransformAttr(LenientIntEnum):
    """Transform attribute types (RFC 7296 §3.3.5)."""

    KEY_LENGTH = 14  # TV form, in bits


class CertEncoding(LenientIntEnum):
    """Certificate Encoding of CERT and CERTREQ (RFC 7296 §3.6)."""

    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_URL_X509_CERT = 12
    HASH_URL_X509_BUNDLE = 13


class AuthMethod(LenientIntEnum):
    """Auth Method of the AUTH payload (RFC 7296 §3.8; RFC 4754, RFC 7427)."""

    RSA_DIGITAL_SIGNATURE = 1
    SHARED_KEY_MIC = 2
    DSS_DIGITAL_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    DIGITAL_SIGNATURE = 14
    # Short names, as configurations spell them.
    RSA = 1
    PSK = 2
    DSS = 3


class TsType(LenientIntEnum):
    """TS Type of a traffic selector (RFC 7296 §3.13.1)."""

    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8


class CfgType(LenientIntEnum):
    """CFG Type of the Configuration payload (RFC 7296 §3.15)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class CfgAttr(LenientIntEnum):
    """Configuration attribute types (RFC 7296 §3.15.1)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
