"""Malformed messages: each raises IkeDecodeError or IkeProtocolError with the exact Notify."""

from __future__ import annotations

import struct

import pytest

from larval.errors import DecodeError, LarvalError
from larval.ikev2 import (
    IkeDecodeError,
    IkeProtocolError,
    NotifyType,
    PayloadType,
    SaPayload,
    SkfPayload,
    TsPayload,
    decode_chain,
    decode_message,
    decode_payload,
)

from .vectors import IKE_SA_INIT_INVALID_KE, IKE_SA_INIT_REQUEST, UNKNOWN_NONCRITICAL, h


def _with_length(data: bytes) -> bytes:
    """``data`` with the IKE header's Length patched to its size."""
    return data[:24] + struct.pack(">I", len(data)) + data[28:]


HEADER_ONLY = h(
    """
    0102030405060708 0000000000000000  # §3.1 SPIs
    00 20 25 08                        # §3.1 no payloads, version 2.0, INFORMATIONAL, I
    00000000 0000001c                  # §3.1 Message ID 0, Length 28
    """
)


def test_error_hierarchy() -> None:
    assert issubclass(IkeDecodeError, IkeProtocolError)
    assert issubclass(IkeDecodeError, DecodeError)
    assert issubclass(IkeProtocolError, LarvalError)


def test_empty_message_is_valid() -> None:
    message = decode_message(HEADER_ONLY)
    assert message.payloads == ()
    assert message.encode() == HEADER_ONLY


def test_shorter_than_header() -> None:
    with pytest.raises(IkeDecodeError) as info:
        decode_message(HEADER_ONLY[:27])
    assert info.value.notify == NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize("version", [0x10, 0x30, 0xF0, 0x00])
def test_major_version(version: int) -> None:
    # RFC 7296 §2.5: only major version 2; the answer is INVALID_MAJOR_VERSION.
    data = HEADER_ONLY[:17] + bytes([version]) + HEADER_ONLY[18:]
    with pytest.raises(IkeProtocolError) as info:
        decode_message(data)
    assert info.value.notify == NotifyType.INVALID_MAJOR_VERSION
    assert not isinstance(info.value, IkeDecodeError)


def test_major_version_checked_before_length() -> None:
    # An IKEv1 message of any length is recognised as such.
    data = HEADER_ONLY[:17] + b"\x10" + HEADER_ONLY[18:] + b"trailing"
    with pytest.raises(IkeProtocolError) as info:
        decode_message(data)
    assert info.value.notify == NotifyType.INVALID_MAJOR_VERSION


def test_minor_version_kept() -> None:
    # RFC 7296 §2.5: a higher minor version is accepted; it round-trips.
    data = HEADER_ONLY[:17] + b"\x21" + HEADER_ONLY[18:]
    message = decode_message(data)
    assert message.minor_version == 1
    assert message.encode() == data


def test_reserved_flags_ignored() -> None:
    # RFC 7296 §3.1: reserved flag bits are ignored on receipt and sent as zero.
    data = HEADER_ONLY[:19] + b"\xcf" + HEADER_ONLY[20:]
    message = decode_message(data)
    assert message.is_initiator and not message.is_response
    assert message.encode() == HEADER_ONLY


def test_version_flag() -> None:
    data = HEADER_ONLY[:19] + b"\x38" + HEADER_ONLY[20:]
    message = decode_message(data)
    assert message.higher_version and message.is_response and message.is_initiator
    assert message.encode() == data


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_header_length_lies(delta: int) -> None:
    wire = IKE_SA_INIT_REQUEST.wire
    data = wire[:24] + struct.pack(">I", len(wire) + delta) + wire[28:]
    with pytest.raises(IkeDecodeError, match="Length"):
        decode_message(data)


def test_trailing_garbage() -> None:
    with pytest.raises(IkeDecodeError):
        decode_message(IKE_SA_INIT_REQUEST.wire + b"\x00\x00\x00\x00")
    # Even with the header's Length covering it, bytes after the chain are garbage.
    with pytest.raises(IkeDecodeError, match="after the last payload"):
        decode_message(_with_length(IKE_SA_INIT_INVALID_KE.wire + b"\x00\x00\x00\x00"))


@pytest.mark.parametrize("length", [0, 1, 3])
def test_payload_length_below_header(length: int) -> None:
    data = HEADER_ONLY[:16] + b"\x2b" + HEADER_ONLY[17:] + b"\x00\x00" + struct.pack(">H", length)
    with pytest.raises(IkeDecodeError, match="Payload Length") as info:
        decode_message(_with_length(data))
    assert info.value.notify == NotifyType.INVALID_SYNTAX


def test_payload_length_past_end() -> None:
    data = HEADER_ONLY[:16] + b"\x2b" + HEADER_ONLY[17:] + h("00 00 0010 6c617276")
    with pytest.raises(IkeDecodeError, match="Payload Length 16"):
        decode_message(_with_length(data))


def test_next_payload_past_end() -> None:
    # The V payload says another Notify follows, but the message ends.
    data = HEADER_ONLY[:16] + b"\x2b" + HEADER_ONLY[17:] + h("29 00 0008 6c617276")
    with pytest.raises(IkeDecodeError, match="NOTIFY payload: generic header cut short"):
        decode_message(_with_length(data))


def test_unknown_critical_payload() -> None:
    # RFC 7296 §2.5, §3.10.1: reject with UNSUPPORTED_CRITICAL_PAYLOAD carrying the type.
    wire = bytearray(UNKNOWN_NONCRITICAL.wire)
    wire[29] |= 0x80  # the C bit of the type-200 payload
    with pytest.raises(IkeProtocolError) as info:
        decode_message(bytes(wire))
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == b"\xc8"


def test_known_payload_critical_bit_ignored() -> None:
    # RFC 7296 §3.2: the bit only matters for payloads the receiver does not know.
    wire = bytearray(UNKNOWN_NONCRITICAL.wire)
    wire[37] |= 0x80 | 0x7F  # C and the reserved bits of the V payload
    message = decode_message(bytes(wire))
    assert message == UNKNOWN_NONCRITICAL.message
    assert message.encode() == UNKNOWN_NONCRITICAL.wire


def test_sk_not_last() -> None:
    # RFC 7296 §3.14: SK is the last payload; its Next Payload is the first inner one.
    data = (
        HEADER_ONLY[:16] + b"\x2e" + HEADER_ONLY[17:] + h("23 00 0008 aabbccdd 2b000008 6c617276")
    )
    with pytest.raises(IkeDecodeError, match="not the last payload"):
        decode_message(_with_length(data))


def test_sk_inside_sk() -> None:
    with pytest.raises(IkeDecodeError, match="inside an Encrypted payload"):
        decode_chain(h("00 00 0008 aabbccdd"), PayloadType.SK, inner=True)


@pytest.mark.parametrize("size", [0, 15, 257])
def test_nonce_size(size: int) -> None:
    # RFC 7296 §3.9: 16..256 octets.
    with pytest.raises(IkeDecodeError, match="nonce") as info:
        decode_payload(PayloadType.NONCE, bytes(size))
    assert info.value.notify == NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "without proposals"),
        # Last Substruc 1: neither 0 nor 2.
        (h("01 00 0008 01 01 00 00"), "Last Substruc is 1"),
        # Proposal says 2 transforms, carries one.
        (h("00 00 0010 01 01 00 02  00 00 0008 01 00 000c"), "Num Transforms says 2"),
        # One transform, marked "more".
        (h("00 00 0010 01 01 00 01  03 00 0008 01 00 000c"), "not marked last"),
        # Transform Last Substruc 2 (a proposal's value).
        (h("00 00 0010 01 01 00 01  02 00 0008 01 00 000c"), "Last Substruc is 2"),
        # First proposal marked last, a second follows.
        (h("00 00 0008 01 01 00 00  00 00 0008 02 01 00 00"), "after the last proposal"),
        # Only proposal marked "more".
        (h("02 00 0008 01 01 00 00"), "not marked last"),
        # Proposal Length 4: shorter than its 8-byte header.
        (h("00 00 0004 01 01 00 00"), "SPI Size|Proposal Num|shorter"),
        # Proposal Length 12 past the end.
        (h("00 00 000c 01 01 00 00"), "runs 4 bytes past"),
        # SPI Size 4, no SPI.
        (h("00 00 0008 01 03 04 00"), "SPI needs 4"),
        # Transform Length 3: shorter than the 4 bytes that carry it.
        (h("00 00 000c 01 01 00 01  00 00 0003"), "shorter than its 4-byte"),
        # Transform Length 6: room for no Transform ID.
        (h("00 00 000e 01 01 00 01  00 00 0006 0100"), "Transform ID needs 2"),
        # TLV attribute whose length runs past the transform.
        (h("00 00 0014 01 01 00 01  00 00 000c 01 00 000c 0001 0008"), "attribute value"),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else v,
)
def test_sa_payload_malformed(body: bytes, match: str) -> None:
    with pytest.raises(IkeDecodeError, match=match):
        SaPayload.decode_body(body)


def test_ts_selector_length_mismatch() -> None:
    # An IPv4 selector must be 16 bytes (RFC 7296 §3.13.1).
    body = h("01 000000  07 00 0014 0000ffff c0000200 c00002ff 00000000")
    with pytest.raises(IkeDecodeError, match="expected 16"):
        TsPayload.decode_body(body, PayloadType.TSi)


def test_ts_count_mismatch() -> None:
    body = h("02 000000  07 00 0010 0000ffff c0000200 c00002ff")
    with pytest.raises(IkeDecodeError, match="TS Type needs 1"):
        TsPayload.decode_body(body, PayloadType.TSi)
    body = h("00 000000  07 00 0010 0000ffff c0000200 c00002ff")
    with pytest.raises(IkeDecodeError, match="left over"):
        TsPayload.decode_body(body, PayloadType.TSi)


def test_delete_spi_count_mismatch() -> None:
    with pytest.raises(IkeDecodeError, match="2 SPIs of 4 bytes"):
        decode_payload(PayloadType.DELETE, h("03 04 0002 c0ffee01"))


def test_notify_spi_past_end() -> None:
    with pytest.raises(IkeDecodeError, match="SPI needs 4"):
        decode_payload(PayloadType.NOTIFY, h("03 04 4009 c0ff"))


@pytest.mark.parametrize(("number", "total"), [(0, 3), (4, 3), (0, 0), (1, 0)])
def test_skf_fragment_numbers(number: int, total: int) -> None:
    # RFC 7383 §2.5: 1 <= Fragment Number <= Total Fragments.
    with pytest.raises(IkeDecodeError, match="fragment"):
        SkfPayload.decode_body(struct.pack(">HH", number, total) + b"xx")


@pytest.mark.parametrize(
    ("ptype", "body"),
    [
        (PayloadType.KE, b"\x00\x13\x00"),
        (PayloadType.IDi, b"\x01\x00"),
        (PayloadType.IDr, b""),
        (PayloadType.CERT, b""),
        (PayloadType.CERTREQ, b""),
        (PayloadType.AUTH, b"\x02\x00\x00"),
        (PayloadType.NOTIFY, b"\x00\x00\x40"),
        (PayloadType.DELETE, b"\x03\x04\x00"),
        (PayloadType.TSr, b"\x01\x00\x00"),
        (PayloadType.CP, b"\x01\x00\x00\x00\x00\x01\x00\x04\x0a"),
        (PayloadType.SKF, b"\x00\x01\x00"),
    ],
)
def test_short_bodies(ptype: PayloadType, body: bytes) -> None:
    with pytest.raises(IkeDecodeError) as info:
        decode_payload(ptype, body)
    assert info.value.notify == NotifyType.INVALID_SYNTAX
    assert ptype.name in str(info.value) or ptype.name.upper() in str(info.value).upper()
