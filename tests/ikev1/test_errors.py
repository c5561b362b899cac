"""Malformed messages: each raises IkeV1DecodeError with the exact Notify type (RFC 2408 §5)."""

from __future__ import annotations

import struct

import pytest

from larval.errors import DecodeError, LarvalError
from larval.ikev1 import (
    IkeV1DecodeError,
    IkeV1ProtocolError,
    NotifyType,
    PayloadType,
    decode_chain,
    decode_message,
    decode_payload,
)

from .vectors import MAIN_MODE_1, h

HEADER_ONLY = h(
    """
    0102030405060708 0000000000000000  # RFC 2408 §3.1 cookies
    00 10 05 00                        # §3.1 no payloads, version 1.0, Informational
    00000000 0000001c                  # §3.1 Message ID 0, Length 28
    """
)


def _with_length(data: bytes) -> bytes:
    """``data`` with the ISAKMP header's Length patched to its size."""
    return data[:24] + struct.pack(">I", len(data)) + data[28:]


def _notify(data: bytes) -> NotifyType:
    with pytest.raises(IkeV1DecodeError) as info:
        decode_message(data)
    return info.value.notify


def test_error_hierarchy() -> None:
    assert issubclass(IkeV1DecodeError, IkeV1ProtocolError)
    assert issubclass(IkeV1DecodeError, DecodeError)
    assert issubclass(IkeV1ProtocolError, LarvalError)


def test_empty_message_is_valid() -> None:
    message = decode_message(HEADER_ONLY)
    assert message.payloads == ()
    assert message.encode() == HEADER_ONLY


def test_shorter_than_header() -> None:
    assert _notify(HEADER_ONLY[:27]) == NotifyType.PAYLOAD_MALFORMED


@pytest.mark.parametrize("version", [0x20, 0x00, 0xF0])
def test_major_version(version: int) -> None:
    # RFC 2408 §5.2: a major version this implementation does not speak.
    data = bytearray(MAIN_MODE_1.wire)
    data[17] = version
    assert _notify(bytes(data)) == NotifyType.INVALID_MAJOR_VERSION


def test_major_version_checked_before_length() -> None:
    # An IKEv2 datagram is told apart by its version, whatever its length says.
    data = bytearray(HEADER_ONLY)
    data[17] = 0x20
    assert _notify(bytes(data) + b"\x00") == NotifyType.INVALID_MAJOR_VERSION


def test_minor_version_kept() -> None:
    data = bytearray(HEADER_ONLY)
    data[17] = 0x11
    message = decode_message(bytes(data))
    assert message.minor_version == 1
    assert message.encode() == bytes(data)


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_length_mismatch(delta: int) -> None:
    # RFC 2408 §5.1: header Length and the message's size must agree.
    data = bytearray(MAIN_MODE_1.wire)
    data[24:28] = struct.pack(">I", len(data) + delta)
    assert _notify(bytes(data)) == NotifyType.UNEQUAL_PAYLOAD_LENGTHS


def test_trailing_bytes_in_the_clear() -> None:
    assert _notify(_with_length(MAIN_MODE_1.wire + bytes(4))) == NotifyType.PAYLOAD_MALFORMED


@pytest.mark.parametrize("length", [0, 3, 0x61, 0xFFFF])
def test_payload_length_lies(length: int) -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[30:32] = struct.pack(">H", length)  # the SA payload's Payload Length
    assert _notify(bytes(data)) == NotifyType.PAYLOAD_MALFORMED


@pytest.mark.parametrize("ptype", [PayloadType.PROPOSAL, PayloadType.TRANSFORM])
def test_proposal_or_transform_outside_sa(ptype: PayloadType) -> None:
    # RFC 2408 §3.5, §3.6: they chain only inside an SA payload.
    data = bytearray(MAIN_MODE_1.wire)
    data[16] = ptype
    assert _notify(bytes(data)) == NotifyType.INVALID_PAYLOAD_TYPE


def test_proposal_next_payload() -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[40] = PayloadType.KE  # the proposal's Next Payload: must be 0 or 2
    assert _notify(bytes(data)) == NotifyType.INVALID_PAYLOAD_TYPE


def test_transform_next_payload() -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[48] = PayloadType.PROPOSAL  # the first transform's Next Payload: must be 0 or 3
    assert _notify(bytes(data)) == NotifyType.INVALID_PAYLOAD_TYPE


@pytest.mark.parametrize("count", [0, 1, 3])
def test_transform_count(count: int) -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[47] = count  # # of Transforms; two are present
    assert _notify(bytes(data)) == NotifyType.BAD_PROPOSAL_SYNTAX


def test_transform_chain_ends_early() -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[48] = 0  # the first transform says it is the last; a second one follows
    assert _notify(bytes(data)) == NotifyType.PAYLOAD_MALFORMED


def test_sa_without_proposals() -> None:
    body = bytes.fromhex("00000001 00000001")  # DOI, Situation, no proposal
    with pytest.raises(IkeV1DecodeError) as info:
        decode_payload(PayloadType.SA, body)
    assert info.value.notify == NotifyType.BAD_PROPOSAL_SYNTAX


@pytest.mark.parametrize(
    ("ptype", "body"),
    [
        (PayloadType.SA, bytes(7)),  # DOI and Situation cut short
        (PayloadType.NONCE, bytes(7)),  # RFC 2409 §5: 8..256 bytes
        (PayloadType.NONCE, bytes(257)),
        (PayloadType.ID, bytes(3)),
        (PayloadType.NOTIFICATION, bytes.fromhex("00000001 01 10 8d28") + bytes(15)),
        (PayloadType.DELETE, bytes.fromhex("00000001 03 04 0002") + bytes(7)),
        (PayloadType.DELETE, bytes.fromhex("00000001 03 04 0001") + bytes(5)),
        (PayloadType.NAT_OA, bytes(3)),
        (PayloadType.CERT, b""),
        (PayloadType.CR, b""),
    ],
)
def test_bodies_that_do_not_parse(ptype: PayloadType, body: bytes) -> None:
    with pytest.raises(IkeV1DecodeError) as info:
        decode_payload(ptype, body)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED


def test_attribute_runs_past_its_transform() -> None:
    data = bytearray(MAIN_MODE_1.wire)
    data[82:84] = b"\x00\x40"  # the TLV Life Duration of transform 1 claims 64 octets
    assert _notify(bytes(data)) == NotifyType.PAYLOAD_MALFORMED


def test_chain_cut_inside_a_generic_header() -> None:
    with pytest.raises(IkeV1DecodeError) as info:
        decode_chain(b"\x00\x00", PayloadType.HASH)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED
