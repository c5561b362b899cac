"""IKEv2 messages (RFC 7296 §3.1, §3.2, §3.14): the header, the payload chain, SK framing.

`decode_message` reads a message in the clear: the header and the payload chain, an SK
payload kept opaque. `decode_protected` also opens the SK payload through an
``unprotect`` callback and decodes the payloads inside; `encode_protected` is its
inverse. The callbacks come from the crypto layer; this module only frames:

* ``overhead(n)`` is how many bytes the SK body adds to an ``n``-byte inner chain: IV,
  padding, Pad Length and ICV. The codec needs it first, because the IKE header's Length
  and the SK header's Payload Length are covered by the integrity check.
* ``protect(aad, plaintext) -> IV | ciphertext | ICV`` seals the inner chain.
  ``plaintext`` is the encoded inner payloads, without padding (the crypto layer pads).
  ``aad`` is every byte of the final message before the IV: the IKE header with its
  final Length, any cleartext payloads, and the SK generic header with its final Payload
  Length. For an AEAD it is the associated data (RFC 5282 §5.1); for encrypt-then-MAC
  the ICV covers ``aad | IV | ciphertext`` (RFC 7296 §3.14). The result must be exactly
  ``len(plaintext) + overhead(len(plaintext))`` bytes long.
* ``unprotect(aad, sk_body) -> plaintext`` checks and opens an SK body (IV | ciphertext
  | ICV) given the same ``aad``, and returns the inner chain with the padding and Pad
  Length removed. It raises its own `LarvalError` when the ICV does not verify; the
  message must then be dropped (RFC 7296 §2.21.2), which is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from larval.ike.message import PayloadMessage, pack_header, unpack_header
from larval.ike.payload import push_chain, walk_chain
from larval.wire import Buffer

from .codec import CODEC
from .constants import (
    GENERIC_HEADER_SIZE,
    IKE_HEADER_SIZE,
    IKE_MAJOR_VERSION,
    IKE_MINOR_VERSION,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from .errors import IkeDecodeError, IkeEncodeError, IkeProtocolError
from .payloads import (
    NotifyPayload,
    Payload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    decode_payload,
    is_critical,
)

__all__ = [
    "IkeHeader",
    "IkeMessage",
    "Overhead",
    "Protect",
    "Unprotect",
    "decode_chain",
    "decode_header",
    "decode_message",
    "decode_protected",
    "encode_chain",
    "encode_protected",
]

#: ``protect(aad, plaintext) -> IV | ciphertext | ICV``
Protect: TypeAlias = Callable[[bytes, bytes], bytes]
#: ``unprotect(aad, IV | ciphertext | ICV) -> plaintext``
Unprotect: TypeAlias = Callable[[bytes, bytes], bytes]
#: ``overhead(plaintext_len) -> SK body length - plaintext_len``
Overhead: TypeAlias = Callable[[int], int]

_CRITICAL = 0x80  # RFC 7296 §3.2: the C bit, first bit of the second octet
# The header's flags as ints, for the arithmetic done on every message.
_INITIATOR = int(HeaderFlag.INITIATOR)
_VERSION = int(HeaderFlag.VERSION)
_RESPONSE = int(HeaderFlag.RESPONSE)
_SEALED = (PayloadType.SK, PayloadType.SKF)


class IkeHeader(NamedTuple):
    """The IKE header (RFC 7296 §3.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                       IKE SA Initiator's SPI                  |
        |                                                               |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                       IKE SA Responder's SPI                  |
        |                                                               |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                          Message ID                           |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |                            Length                             |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    ``flags`` keeps the octet as read, reserved bits included; `IkeMessage` keeps only
    the defined ones, since reserved bits are ignored on receipt.

    A named tuple, immutable as a frozen dataclass is and made in a third of its time:
    one is made for every message read and every message written.
    """

    spi_i: bytes
    spi_r: bytes
    next_payload: PayloadType
    major: int
    minor: int
    exchange_type: ExchangeType
    flags: int
    message_id: int
    length: int

    def encode(self) -> bytes:
        # The fields are in the header's order: the tuple is what `pack_header` takes.
        return pack_header(CODEC, "IKE", "IKE SPIs are 8 bytes each (RFC 7296 §3.1)", self)


#: The members of each by number: a header is read several times per message.
_PAYLOAD_TYPES = {int(member): member for member in PayloadType}
_EXCHANGE_TYPES = {int(member): member for member in ExchangeType}


def decode_header(data: bytes) -> IkeHeader:
    """The header of the message ``data``, checked against it.

    A major version other than 2 raises `IkeProtocolError` with INVALID_MAJOR_VERSION
    (RFC 7296 §2.5); it is checked first, so an IKEv1 message is told apart before its
    length is. A Length that is not the size of ``data`` (cut short, or trailing bytes)
    raises `IkeDecodeError`.
    """
    spi_i, spi_r, next_payload, major, minor, exchange, flags, mid, length = unpack_header(
        CODEC, "IKE", data
    )
    if major != IKE_MAJOR_VERSION:
        raise IkeProtocolError(
            NotifyType.INVALID_MAJOR_VERSION, f"IKE major version {major}, this is IKEv2"
        )
    if length != len(data):
        raise IkeDecodeError(f"IKE header Length {length}, message of {len(data)} bytes")
    # Known numbers looked up; an unknown one becomes its pseudo-member through the call.
    ptype = _PAYLOAD_TYPES.get(next_payload) or PayloadType(next_payload)
    etype = _EXCHANGE_TYPES.get(exchange) or ExchangeType(exchange)
    return IkeHeader(spi_i, spi_r, ptype, major, minor, etype, flags, mid, length)


def _push_chain(buf: Buffer, payloads: Iterable[Payload], after: int) -> None:
    """Write generic header and body of each payload; ``after`` follows the last one."""
    items = list(payloads)
    for i, payload in enumerate(items):
        if isinstance(payload, SkPayload | SkfPayload):
            if i != len(items) - 1 or after != PayloadType.NONE:
                raise IkeEncodeError("the Encrypted payload must be the last (RFC 7296 §3.14)")
            # RFC 7296 §3.14: SK's Next Payload names the first payload inside it.
            after = int(payload.first_inner)
    # The C bit is set only on an unknown payload that came with it: most chains have none.
    critical = any(isinstance(p, UnknownPayload) for p in items)
    push_chain(buf, CODEC, items, after, _critical_bit if critical else None)


def _critical_bit(payload: Payload) -> int:
    return _CRITICAL if is_critical(payload) else 0


def _first_type(payloads: tuple[Payload, ...], after: int = PayloadType.NONE) -> PayloadType:
    number = payloads[0].payload_type if payloads else after
    return _PAYLOAD_TYPES.get(number) or PayloadType(number)


def encode_chain(payloads: Iterable[Payload]) -> bytes:
    """The payloads as a chain (RFC 7296 §3.2): what the header's Next Payload starts."""
    buf = Buffer()
    _push_chain(buf, payloads, PayloadType.NONE)
    return buf.data


def decode_chain(
    data: bytes, first: int, start: int = 0, *, inner: bool = False
) -> tuple[list[Payload], int]:
    """Decode the payload chain in ``data[start:]`` whose first payload is of type ``first``.

    Returns the payloads and the offset of the last one's generic header (where an SK or
    SKF payload's AAD ends). The chain must end exactly at the end of ``data``. SK and
    SKF must be last (RFC 7296 §3.14, RFC 7383 §2.5) and, when ``inner``, are not
    allowed at all: nothing is encrypted twice.
    """
    payloads: list[Payload] = []
    end = start
    last_start = -1
    for raw in walk_chain(data, first, start, CODEC, PayloadType):
        ptype = raw.payload_type
        if ptype in _SEALED and inner:
            raise IkeDecodeError(f"{ptype.name} payload inside an Encrypted payload")
        critical = bool(raw.flags & _CRITICAL)
        payloads.append(
            decode_payload(ptype, raw.body, critical=critical, next_payload=raw.next_type)
        )
        last_start, end = raw.start, raw.end
        if ptype in _SEALED:
            # Its Next Payload names the first inner payload; the chain ends here.
            if end != len(data):
                raise IkeDecodeError(
                    f"{ptype.name} payload is not the last payload (RFC 7296 §3.14): "
                    f"{len(data) - end} bytes follow it"
                )
            return payloads, last_start
    if end != len(data):
        raise IkeDecodeError(f"{len(data) - end} bytes after the last payload")
    return payloads, last_start


@dataclass(frozen=True, slots=True)
class IkeMessage(PayloadMessage[NotifyPayload]):
    """An IKEv2 message: the header's fields and its payloads.

    ``payloads`` is the chain as the exchange defines it: after `decode_message` the
    cleartext chain (an SK payload opaque, last), after `decode_protected` the payloads
    that were inside SK. ``unprotected`` holds payloads sent in the clear before SK
    (RFC 7296 §3.14 allows them, no exchange of RFC 7296 uses them); it is empty for a
    message in the clear. Next Payload, lengths and the Last Substruc octets are derived.
    """

    spi_i: bytes
    spi_r: bytes
    exchange_type: ExchangeType
    is_initiator: bool
    is_response: bool
    message_id: int
    payloads: tuple[Payload, ...] = ()
    unprotected: tuple[Payload, ...] = ()
    higher_version: bool = False  # the V flag (RFC 7296 §3.1)
    minor_version: int = IKE_MINOR_VERSION

    notify_class = NotifyPayload

    @property
    def flags(self) -> HeaderFlag:
        return HeaderFlag(self._flags_octet())

    def _flags_octet(self) -> int:
        """The Flags octet as an int (the header is written with it: no enum arithmetic)."""
        return (
            (_INITIATOR if self.is_initiator else 0)
            | (_VERSION if self.higher_version else 0)
            | (_RESPONSE if self.is_response else 0)
        )

    @classmethod
    def from_header(
        cls,
        header: IkeHeader,
        payloads: Iterable[Payload] = (),
        unprotected: Iterable[Payload] = (),
    ) -> IkeMessage:
        """The message ``header`` heads, with ``payloads`` (none: the header's fields
        alone, as a fragment carries them)."""
        flags = int(header.flags)
        return cls(
            header.spi_i,
            header.spi_r,
            header.exchange_type,
            bool(flags & _INITIATOR),
            bool(flags & _RESPONSE),
            header.message_id,
            tuple(payloads),
            tuple(unprotected),
            bool(flags & _VERSION),
            header.minor,
        )

    def header(self, next_payload: int, length: int) -> IkeHeader:
        """This message's IKE header, given the first payload's type and the total length."""
        return IkeHeader(
            self.spi_i,
            self.spi_r,
            _PAYLOAD_TYPES.get(next_payload) or PayloadType(next_payload),
            IKE_MAJOR_VERSION,
            self.minor_version,
            self.exchange_type,
            self._flags_octet(),
            self.message_id,
            length,
        )

    def encode(self) -> bytes:
        """The message in the clear: header and chain (an `SkPayload`, if any, opaque)."""
        if self.unprotected:
            raise IkeEncodeError("a message with unprotected payloads needs encode_protected")
        chain = encode_chain(self.payloads)
        header = self.header(_first_type(self.payloads), IKE_HEADER_SIZE + len(chain))
        return header.encode() + chain


def decode_message(data: bytes) -> IkeMessage:
    """Decode a message in the clear; an SK or SKF payload stays opaque.

    Raises `IkeDecodeError` for bytes that do not parse and `IkeProtocolError` for a
    wrong major version or an unsupported critical payload; nothing else, whatever
    ``data`` holds.
    """
    header = decode_header(data)
    payloads, _ = decode_chain(data, header.next_payload, IKE_HEADER_SIZE)
    return IkeMessage.from_header(header, payloads)


def encode_protected(message: IkeMessage, protect: Protect, overhead: Overhead) -> bytes:
    """Encode ``message`` with its ``payloads`` inside an SK payload (RFC 7296 §3.14).

    ``message.unprotected`` payloads, if any, go in the clear before SK. See the module
    docstring for the ``protect``/``overhead`` contract.
    """
    inner = encode_chain(message.payloads)
    sealed_len = GENERIC_HEADER_SIZE + len(inner) + overhead(len(inner))
    buf = Buffer()
    buf.push_bytes(bytes(IKE_HEADER_SIZE))  # the header, written once the length is known
    _push_chain(buf, message.unprotected, PayloadType.SK)
    sk_start = buf.tell()
    total = sk_start + sealed_len
    if sealed_len > 0xFFFF or total > 0xFFFFFFFF:
        raise IkeEncodeError(f"Encrypted payload of {sealed_len} bytes is too long")
    buf.push_u8(_first_type(message.payloads))
    buf.push_u8(0)
    buf.push_u16be(sealed_len)
    buf.seek(0)
    buf.push_bytes(message.header(_first_type(message.unprotected, PayloadType.SK), total).encode())
    buf.seek(sk_start + GENERIC_HEADER_SIZE)
    sealed = protect(buf.data, inner)
    if len(sealed) != sealed_len - GENERIC_HEADER_SIZE:
        raise IkeEncodeError(
            f"protect returned {len(sealed)} bytes, overhead announced "
            f"{sealed_len - GENERIC_HEADER_SIZE}"
        )
    buf.push_bytes(sealed)
    return buf.data


def decode_protected(
    data: bytes, unprotect: Unprotect, clear: IkeMessage | None = None
) -> IkeMessage:
    """Decode a message whose payloads are inside an SK payload (RFC 7296 §3.14).

    Payloads before SK are returned in ``unprotected``, those inside in ``payloads``.
    A message without SK, or with SKF (decode those with `decode_fragment`), raises
    `IkeDecodeError`. What ``unprotect`` raises passes through unchanged. ``clear``:
    `decode_message` of the same ``data``, which a receiver has read already to find
    the IKE SA and the exchange; when it is the usual SK payload alone, the header and
    the chain are not read again.
    """
    if clear is not None and len(clear.payloads) == 1 and isinstance(clear.payloads[0], SkPayload):
        # Read already: the header, and the SK payload right after it.
        first = clear.payloads[0]
        plaintext = unprotect(data[: IKE_HEADER_SIZE + GENERIC_HEADER_SIZE], first.encrypted)
        inner, _ = decode_chain(plaintext, first.first_inner, inner=True)
        return IkeMessage(
            clear.spi_i, clear.spi_r, clear.exchange_type, clear.is_initiator,
            clear.is_response, clear.message_id, tuple(inner), clear.unprotected,
            clear.higher_version, clear.minor_version,
        )  # fmt: skip
    header = decode_header(data)
    outer, sk_start = decode_chain(data, header.next_payload, IKE_HEADER_SIZE)
    sk = outer.pop() if outer else None
    if not isinstance(sk, SkPayload):
        what = "an SKF payload" if isinstance(sk, SkfPayload) else "no Encrypted payload"
        raise IkeDecodeError(f"{header.exchange_type.name} message has {what}")
    aad = data[: sk_start + GENERIC_HEADER_SIZE]
    plaintext = unprotect(aad, sk.encrypted)
    payloads, _ = decode_chain(plaintext, sk.first_inner, inner=True)
    return IkeMessage.from_header(header, payloads, outer)
