"""The EAP packet (RFC 3748 §4) and the Type-Data of the types every method meets.

An EAP packet is Code, Identifier, Length and, for Requests and Responses, a Type and
its Type-Data::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Code      |  Identifier   |            Length             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |  Type-Data ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Decoding is strict, because IKEv2 carries exactly one EAP packet in each EAP payload
(RFC 7296 §3.16), as strongSwan checks too: the Length must count every byte given (no
link-layer padding, which RFC 3748 §4.1 would ignore), Success and Failure are exactly
four bytes (§4.2), a Request or Response has its Type (§4.1), and a Code other than
the four is an error rather than silently dropped. Every failure is an `EapError`
naming the field.

Types are a `LenientIntEnum`: a type this module does not know (and TLS, Expanded and
Experimental, kept opaque here) round-trips unchanged as its Type-Data bytes. Identity
(§5.1), Notification (§5.2), Nak (§5.3.1) and MD5-Challenge (§5.4) have small codecs
of their own below; MSCHAPv2's lives in `larval.eap.mschapv2`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from larval.wire import Buffer, LenientIntEnum, NetBlock, NetReader

from .errors import EapError

__all__ = [
    "EapCode",
    "EapPacket",
    "EapType",
    "Md5Challenge",
    "Nak",
]

_HEADER = 4  # Code, Identifier, Length (RFC 3748 §4)


class EapCode(enum.IntEnum):
    """RFC 3748 §4: the four codes; any other is refused when decoded."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(LenientIntEnum):
    """RFC 3748 §5 and the IANA registry: the types larval names."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3  # legacy Nak, Responses only
    MD5_CHALLENGE = 4
    TLS = 13  # RFC 5216, opaque here
    MSCHAPV2 = 26  # draft-kamath-pppext-eap-mschapv2
    EXPANDED = 254  # RFC 3748 §5.7, opaque here
    EXPERIMENTAL = 255


def _reader(data: bytes, what: str) -> NetReader:
    return NetReader(data, what, EapError)


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet: ``type`` and ``data`` (the Type-Data) are None and empty for
    Success and Failure, which carry neither."""

    code: EapCode
    identifier: int
    type: EapType | None = None
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.identifier <= 0xFF:
            raise EapError(f"EAP packet: Identifier {self.identifier} is not one octet")
        has_type = self.code in (EapCode.REQUEST, EapCode.RESPONSE)
        if has_type and self.type is None:
            raise EapError(f"EAP {self.code.name.title()}: no Type (RFC 3748 §4.1)")
        if not has_type and (self.type is not None or self.data):
            raise EapError(f"EAP {self.code.name.title()}: carries no Type or data (§4.2)")

    @classmethod
    def request(cls, identifier: int, type: EapType, data: bytes = b"") -> EapPacket:
        return cls(EapCode.REQUEST, identifier, type, data)

    @classmethod
    def response(cls, identifier: int, type: EapType, data: bytes = b"") -> EapPacket:
        return cls(EapCode.RESPONSE, identifier, type, data)

    @classmethod
    def success(cls, identifier: int) -> EapPacket:
        return cls(EapCode.SUCCESS, identifier)

    @classmethod
    def failure(cls, identifier: int) -> EapPacket:
        return cls(EapCode.FAILURE, identifier)

    def encode(self) -> bytes:
        buf = Buffer()
        with NetBlock(buf, len_offset=2, error=EapError):
            buf.push_u8(self.code)
            buf.push_u8(self.identifier)
            buf.push_u16be(0)  # Length, patched
            if self.type is not None:
                buf.push_u8(self.type)
                buf.push_bytes(self.data)
        return buf.data

    @classmethod
    def decode(cls, data: bytes) -> EapPacket:
        reader = _reader(data, "EAP packet")
        raw_code = reader.pull_u8("Code")
        if raw_code not in EapCode._value2member_map_:
            raise EapError(
                f"EAP packet: Code {raw_code} is none of Request (1), Response (2), "
                "Success (3), Failure (4)"
            )
        code = EapCode(raw_code)
        identifier = reader.pull_u8("Identifier")
        length = reader.pull_u16("Length")
        if length != len(data):
            raise EapError(f"EAP packet: Length {length} but the packet is {len(data)} bytes")
        what = f"EAP {code.name.title()}"
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            if length != _HEADER:
                raise EapError(f"{what}: Length {length}, must be 4 (RFC 3748 §4.2)")
            return cls(code, identifier)
        if length == _HEADER:
            raise EapError(f"{what}: Length 4 leaves no room for its Type (RFC 3748 §4.1)")
        eap_type = EapType(reader.pull_u8("Type"))
        return cls(code, identifier, eap_type, reader.pull_rest())


@dataclass(frozen=True, slots=True)
class Nak:
    """Legacy Nak (RFC 3748 §5.3.1): the types the peer would take instead, one octet
    each; a single 0 means none. Sent only in answer to a Request of another type."""

    desired: tuple[int, ...]

    def encode(self) -> bytes:
        return bytes(self.desired)

    @classmethod
    def decode(cls, data: bytes) -> Nak:
        if not data:
            raise EapError("EAP Nak: no Type-Data; it names at least one type (§5.3.1)")
        return cls(tuple(data))

    def describe(self) -> str:
        if self.desired == (0,):
            return "no alternative"
        return ", ".join(EapType(t).name for t in self.desired)


@dataclass(frozen=True, slots=True)
class Md5Challenge:
    """MD5-Challenge Type-Data (RFC 3748 §5.4, the CHAP layout of RFC 1994 §4.1)::

         0                   1                   2
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |  Value-Size   |  Value ...            |  Name ...
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The same layout carries the server's challenge in a Request and the peer's hash in
    the Response.
    """

    value: bytes
    name: bytes = b""

    def encode(self) -> bytes:
        if not 1 <= len(self.value) <= 0xFF:
            raise EapError(f"EAP MD5-Challenge: Value of {len(self.value)} bytes")
        return bytes([len(self.value)]) + self.value + self.name

    @classmethod
    def decode(cls, data: bytes) -> Md5Challenge:
        reader = _reader(data, "EAP MD5-Challenge")
        size = reader.pull_u8("Value-Size")
        if size == 0:
            raise EapError("EAP MD5-Challenge: Value-Size 0 (RFC 1994 §4.1: one or more)")
        value = reader.pull_bytes(size, "Value")
        return cls(value, reader.pull_rest())
