"""IKEv2 wire format (RFC 7296 §3, RFC 7383), sans-I/O.

`decode_message` turns the bytes of one message into an `IkeMessage` whose payloads are
frozen dataclasses (`SaPayload`, `KePayload`, ...); `IkeMessage.encode` turns it back into
the same bytes. `encode_protected`/`decode_protected` frame the Encrypted payload around
callbacks from the crypto layer, `fragment`/`decode_fragment`/`FragmentReassembler` do
the same for RFC 7383 fragments, and `check_payloads` holds a message against the
per-exchange payload table. Malformed input raises `IkeDecodeError` or
`IkeProtocolError`, each carrying the Notify type to answer with.
"""

from __future__ import annotations

from .constants import (
    GENERIC_HEADER_SIZE,
    IKE_HEADER_SIZE,
    IKE_MAJOR_VERSION,
    IKE_MINOR_VERSION,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TsType,
)
from .errors import IkeDecodeError, IkeEncodeError, IkeProtocolError
from .fragments import FragmentReassembler, IkeFragment, decode_fragment, fragment
from .message import (
    IkeHeader,
    IkeMessage,
    Overhead,
    Protect,
    Unprotect,
    decode_chain,
    decode_header,
    decode_message,
    decode_protected,
    encode_chain,
    encode_protected,
)
from .payloads import (
    KNOWN_PAYLOAD_TYPES,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
    decode_payload,
)
from .rules import MESSAGE_RULES, MessageRules, PayloadRule, check_payloads
from .sa_payload import Attribute, Proposal, SaPayload, Transform
from .ts_payload import TrafficSelector, TsPayload, UnknownTrafficSelector

__all__ = [
    "GENERIC_HEADER_SIZE",
    "IKE_HEADER_SIZE",
    "IKE_MAJOR_VERSION",
    "IKE_MINOR_VERSION",
    "KNOWN_PAYLOAD_TYPES",
    "MESSAGE_RULES",
    "Attribute",
    "AuthMethod",
    "AuthPayload",
    "CertEncoding",
    "CertPayload",
    "CertReqPayload",
    "CfgAttr",
    "CfgAttribute",
    "CfgType",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "ExchangeType",
    "FragmentReassembler",
    "HeaderFlag",
    "IdPayload",
    "IkeDecodeError",
    "IkeEncodeError",
    "IkeFragment",
    "IkeHeader",
    "IkeMessage",
    "IkeProtocolError",
    "KePayload",
    "MessageRules",
    "NoncePayload",
    "NotifyPayload",
    "NotifyType",
    "Overhead",
    "Payload",
    "PayloadRule",
    "PayloadType",
    "Proposal",
    "Protect",
    "ProtocolId",
    "SaPayload",
    "SkPayload",
    "SkfPayload",
    "TrafficSelector",
    "Transform",
    "TransformAttr",
    "TsPayload",
    "TsType",
    "UnknownPayload",
    "UnknownTrafficSelector",
    "Unprotect",
    "VendorIdPayload",
    "check_payloads",
    "decode_chain",
    "decode_fragment",
    "decode_header",
    "decode_message",
    "decode_payload",
    "decode_protected",
    "encode_chain",
    "encode_protected",
    "fragment",
]
