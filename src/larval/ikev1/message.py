"""ISAKMP messages (RFC 2408 §3.1, §3.2, §5.1-§5.3): the header, the payload chain, and
the framing of encrypted messages (RFC 2408 §3.1 flag E, RFC 2409 §5.3 and Appendix B).

`decode_message` reads a message whose payloads are in the clear; `IkeV1Message.encode`
is its inverse. `decode_encrypted` and `encode_encrypted` do the same for a message with
the E flag, through callbacks from the crypto layer. In IKEv1 everything after the
28-byte header is ciphertext, the header itself stays in the clear and is not
authenticated by the cipher; there is no IV or ICV on the wire (the CBC IV is derived
and chained by the crypto layer, RFC 2409 Appendix B, and integrity comes from the HASH
payloads). So the callbacks see only the bytes after the header:

* ``encrypt(plaintext) -> ciphertext``: ``plaintext`` is the encoded payload chain,
  already padded with zero octets to a multiple of ``block_size`` (RFC 2409 Appendix B;
  RFC 2408 §3.1 lets the padding be whatever the implementation likes, and the header's
  Length covers it). The result must be exactly as long; its last block is the IV for the
  next message, which the crypto layer keeps.
* ``decrypt(ciphertext) -> plaintext``: ``ciphertext`` is everything after the header, a
  whole number of blocks (checked here). The plaintext comes back with its padding: IKEv1
  padding says nothing about its own length, so the codec walks the payload chain until a
  Next Payload of NONE and accepts up to ``block_size`` octets of anything after it.
  Whatever ``decrypt`` raises passes through unchanged.

The caller picks the key and IV for a message from its header: `decode_header` reads it
first (cookies, Message ID, flags) without touching the payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from larval.ike.message import PayloadMessage, flags_of, pack_header, unpack_header
from larval.ike.payload import push_chain, walk_chain
from larval.wire import Buffer

from .codec import CODEC
from .constants import (
    ISAKMP_HEADER_SIZE,
    ISAKMP_MAJOR_VERSION,
    ISAKMP_MINOR_VERSION,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from .errors import IkeV1DecodeError, IkeV1EncodeError
from .payloads import NotifyPayload, Payload, decode_payload

__all__ = [
    "Decrypt",
    "Encrypt",
    "IkeV1Header",
    "IkeV1Message",
    "decode_chain",
    "decode_encrypted",
    "decode_header",
    "decode_message",
    "encode_chain",
    "encode_encrypted",
]

#: ``encrypt(padded payload chain) -> ciphertext of the same length``
Encrypt: TypeAlias = Callable[[bytes], bytes]
#: ``decrypt(ciphertext after the header) -> plaintext of the same length, padding included``
Decrypt: TypeAlias = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class IkeV1Header:
    """The ISAKMP header (RFC 2408 §3.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                          Initiator                            !
        !                            Cookie                             !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                          Responder                            !
        !                            Cookie                             !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !  Next Payload ! MjVer ! MnVer ! Exchange Type !     Flags     !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                          Message ID                           !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                            Length                             !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Version octet 0x10 for IKEv1. ``flags`` keeps the octet as read, reserved bits
    included; Length counts the whole message, header and padding included.
    """

    cookie_i: bytes
    cookie_r: bytes
    next_payload: PayloadType
    major: int
    minor: int
    exchange_type: ExchangeType
    flags: int
    message_id: int
    length: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & HeaderFlag.ENCRYPTION)

    def encode(self) -> bytes:
        fields = (self.cookie_i, self.cookie_r, self.next_payload, self.major, self.minor)
        rest = (self.exchange_type, self.flags, self.message_id, self.length)
        return pack_header(
            CODEC, "ISAKMP", "ISAKMP cookies are 8 bytes each (RFC 2408 §3.1)", fields + rest
        )


def decode_header(data: bytes) -> IkeV1Header:
    """The header of the message ``data``, checked against it.

    A major version other than 1 raises INVALID_MAJOR_VERSION (RFC 2408 §5.2); it is
    checked first, so an IKEv2 message is told apart before its length is. A Length that
    is not the size of ``data`` raises UNEQUAL_PAYLOAD_LENGTHS (RFC 2408 §5.1). The minor
    version is kept, not checked.
    """
    cookie_i, cookie_r, next_payload, major, minor, exchange, flags, mid, length = unpack_header(
        CODEC, "ISAKMP", data
    )
    if major != ISAKMP_MAJOR_VERSION:
        raise IkeV1DecodeError(
            f"ISAKMP major version {major}, this is IKEv1", NotifyType.INVALID_MAJOR_VERSION
        )
    if length != len(data):
        raise IkeV1DecodeError(
            f"ISAKMP header Length {length}, message of {len(data)} bytes",
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
        )
    ptype, etype = PayloadType(next_payload), ExchangeType(exchange)
    return IkeV1Header(cookie_i, cookie_r, ptype, major, minor, etype, flags, mid, length)


def encode_chain(payloads: Iterable[Payload]) -> bytes:
    """The payloads as a chain (RFC 2408 §3.2), each with its generic header.

    This is also what Quick Mode's HASH(1) and HASH(2) and the Informational HASH(1)
    cover: ``encode_chain(payloads[1:])``, the message after the HASH payload
    (RFC 2409 §5.5, §5.7).
    """
    buf = Buffer()
    push_chain(buf, CODEC, list(payloads))
    return buf.data


def decode_chain(data: bytes, first: int) -> tuple[list[Payload], list[bytes], int]:
    """Walk the payload chain at the start of ``data`` whose first payload is ``first``.

    Returns the payloads, each one's bytes as received (generic header included), and
    the offset where the chain ended, at the NONE that closed it; the caller decides
    what may follow. A Payload Length shorter than the generic header or running past
    ``data`` is PAYLOAD_MALFORMED (RFC 2408 §5.3), and so is a payload whose body does
    not parse.
    """
    payloads: list[Payload] = []
    wire: list[bytes] = []
    end = 0
    for raw in walk_chain(data, first, 0, CODEC, PayloadType):
        payloads.append(decode_payload(raw.payload_type, raw.body))
        wire.append(raw.wire)
        end = raw.end
    return payloads, wire, end


@dataclass(frozen=True, slots=True)
class IkeV1Message(PayloadMessage[NotifyPayload]):
    """An ISAKMP message: the header's fields and its payloads.

    Next Payload, the lengths and the E flag are derived: `encode` writes the payloads in
    the clear, `encode_encrypted` encrypts them and sets E. ``wire_payloads`` holds, after
    decoding, each payload's bytes as received, generic header included, for the hashes
    that cover received bytes (SAi_b in HASH_I/HASH_R, the chain after HASH(1) in Quick
    Mode; RFC 2409 §5, §5.5); it is empty for a message built locally and takes no part in
    comparisons.
    """

    cookie_i: bytes
    cookie_r: bytes
    exchange_type: ExchangeType
    message_id: int = 0
    payloads: tuple[Payload, ...] = ()
    commit: bool = False  # flag C (RFC 2408 §3.1)
    auth_only: bool = False  # flag A
    minor_version: int = ISAKMP_MINOR_VERSION
    wire_payloads: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    notify_class = NotifyPayload

    def flags(self, encrypted: bool) -> HeaderFlag:
        return flags_of(
            HeaderFlag(0),
            (HeaderFlag.ENCRYPTION, encrypted),
            (HeaderFlag.COMMIT, self.commit),
            (HeaderFlag.AUTH_ONLY, self.auth_only),
        )

    def header(self, length: int, encrypted: bool) -> IkeV1Header:
        """This message's ISAKMP header, given the total length."""
        first = self.payloads[0].payload_type if self.payloads else PayloadType.NONE
        return IkeV1Header(
            self.cookie_i,
            self.cookie_r,
            PayloadType(first),
            ISAKMP_MAJOR_VERSION,
            self.minor_version,
            self.exchange_type,
            int(self.flags(encrypted)),
            self.message_id,
            length,
        )

    def encode(self) -> bytes:
        """The message with its payloads in the clear (flag E clear)."""
        chain = encode_chain(self.payloads)
        return self.header(ISAKMP_HEADER_SIZE + len(chain), encrypted=False).encode() + chain


def _message(header: IkeV1Header, payloads: list[Payload], wire: list[bytes]) -> IkeV1Message:
    return IkeV1Message(
        cookie_i=header.cookie_i,
        cookie_r=header.cookie_r,
        exchange_type=header.exchange_type,
        message_id=header.message_id,
        payloads=tuple(payloads),
        commit=bool(header.flags & HeaderFlag.COMMIT),
        auth_only=bool(header.flags & HeaderFlag.AUTH_ONLY),
        minor_version=header.minor,
        wire_payloads=tuple(wire),
    )


def decode_message(data: bytes) -> IkeV1Message:
    """Decode a message whose payloads are in the clear.

    The chain must fill the message exactly (PAYLOAD_MALFORMED otherwise). A message with
    the E flag raises INVALID_FLAGS: it is for `decode_encrypted`. Raises nothing but
    `IkeV1DecodeError`, whatever ``data`` holds.
    """
    header = decode_header(data)
    if header.encrypted:
        raise IkeV1DecodeError(
            f"{header.exchange_type.name} message is encrypted", NotifyType.INVALID_FLAGS
        )
    body = data[ISAKMP_HEADER_SIZE:]
    payloads, wire, end = decode_chain(body, header.next_payload)
    if end != len(body):
        raise IkeV1DecodeError(f"{len(body) - end} bytes after the last payload")
    return _message(header, payloads, wire)


def _check_block_size(block_size: int) -> None:
    if not 1 <= block_size <= 255:
        raise ValueError(f"block size {block_size}, not 1..255")


def encode_encrypted(message: IkeV1Message, encrypt: Encrypt, block_size: int) -> bytes:
    """Encode ``message`` with flag E and its payload chain encrypted (RFC 2408 §3.1).

    The chain is padded with zero octets to a multiple of ``block_size`` (none when it
    fills its last block already) and handed to ``encrypt``; the header's Length covers
    the padding (RFC 2409 Appendix B). A message without payloads cannot be encrypted
    (it would have no ciphertext). See the module docstring for the contract.
    """
    _check_block_size(block_size)
    if not message.payloads:
        raise IkeV1EncodeError("an encrypted message carries at least one payload")
    chain = encode_chain(message.payloads)
    plaintext = chain + bytes(-len(chain) % block_size)
    total = ISAKMP_HEADER_SIZE + len(plaintext)
    if total > 0xFFFFFFFF:
        raise IkeV1EncodeError(f"message of {total} bytes is too long")
    header = message.header(total, encrypted=True).encode()
    ciphertext = encrypt(plaintext)
    if len(ciphertext) != len(plaintext):
        raise IkeV1EncodeError(
            f"encrypt returned {len(ciphertext)} bytes for {len(plaintext)} of plaintext"
        )
    return header + ciphertext


def decode_encrypted(data: bytes, decrypt: Decrypt, block_size: int) -> IkeV1Message:
    """Decode a message with flag E: decrypt everything after the header, walk the chain.

    A message without flag E raises INVALID_FLAGS; ciphertext that is empty or not a
    whole number of ``block_size`` blocks, a chain that runs off the plaintext, or more
    than ``block_size`` octets after the chain's end raise PAYLOAD_MALFORMED. What
    ``decrypt`` raises passes through unchanged.
    """
    _check_block_size(block_size)
    header = decode_header(data)
    if not header.encrypted:
        raise IkeV1DecodeError(
            f"{header.exchange_type.name} message is not encrypted", NotifyType.INVALID_FLAGS
        )
    ciphertext = data[ISAKMP_HEADER_SIZE:]
    if not ciphertext or len(ciphertext) % block_size:
        raise IkeV1DecodeError(
            f"{len(ciphertext)} bytes of ciphertext: not a whole number of {block_size}-byte blocks"
        )
    plaintext = decrypt(ciphertext)
    payloads, wire, end = decode_chain(plaintext, header.next_payload)
    if len(plaintext) - end > block_size:
        # RFC 2409 Appendix B pads to the block size; more than a block is not padding.
        raise IkeV1DecodeError(
            f"{len(plaintext) - end} bytes after the last payload, more than one block"
        )
    return _message(header, payloads, wire)
