"""IKEv1 fragmentation (the scheme of the FRAGMENTATION vendor ID): splitting a message into
Fragment messages and putting it back together, and what the reassembler refuses."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larval.ikev1 import ExchangeType, IkeV1DecodeError, PayloadType, decode_header
from larval.ikev1.fragments import (
    MAX_FRAGMENTS,
    FragmentReassembler,
    IkeV1Fragment,
    decode_fragment,
    fragment,
)

COOKIES = bytes.fromhex("0011223344556677") + bytes.fromhex("8899aabbccddeeff")


def message(size: int) -> bytes:
    """An ISAKMP message of `size` bytes (header and an opaque body)."""
    header = COOKIES + struct.pack("!BBBBII", 8, 0x10, 2, 1, 0, size)
    return header + bytes(random.Random(size).randrange(256) for _ in range(size - 28))


def test_a_long_message_is_cut_into_fragment_messages_that_put_it_back() -> None:
    whole = message(1000)
    pieces = fragment(whole, 7, ExchangeType.IDENTITY_PROTECTION, max_size=300)
    assert len(pieces) == 4 and all(len(p) <= 300 for p in pieces)
    for number, piece in enumerate(pieces, 1):
        # The header: the same cookies, Message ID 0, no flags, a single Fragment payload.
        header = decode_header(piece)
        assert (header.cookie_i + header.cookie_r) == COOKIES
        assert header.next_payload == PayloadType.FRAGMENT and header.message_id == 0
        assert header.exchange_type == ExchangeType.IDENTITY_PROTECTION and header.flags == 0
        # Next Payload 0, RESERVED, Payload Length, Fragment ID, Number, Flags (LAST = 1).
        assert piece[28:36] == struct.pack("!BBHHBB", 0, 0, len(piece) - 28, 7, number, number == 4)
    reassembler = FragmentReassembler()
    assert [reassembler.add(decode_fragment(p)) for p in pieces] == [None, None, None, whole]
    assert len(reassembler) == 0


def test_a_short_message_goes_whole() -> None:
    whole = message(300)
    assert fragment(whole, 1, ExchangeType.AGGRESSIVE, max_size=300) == [whole]


def test_out_of_order_and_duplicate_fragments() -> None:
    whole = message(900)
    pieces = [decode_fragment(p) for p in fragment(whole, 9, ExchangeType.AGGRESSIVE, 200)]
    reassembler = FragmentReassembler()
    order = [pieces[-1], pieces[2], pieces[2], pieces[0], *pieces[3:-1], pieces[1]]
    results = [reassembler.add(p) for p in order]
    assert results[:-1] == [None] * (len(order) - 1) and results[-1] == whole


def test_another_fragment_id_starts_over() -> None:
    old = [decode_fragment(p) for p in fragment(message(700), 1, ExchangeType.AGGRESSIVE, 200)]
    new_whole = message(600)
    new = [decode_fragment(p) for p in fragment(new_whole, 2, ExchangeType.AGGRESSIVE, 200)]
    reassembler = FragmentReassembler()
    assert reassembler.add(old[0]) is None and reassembler.add(old[1]) is None
    # The peer gave up on message 1: its fragments go, message 2's make the message.
    results = [reassembler.add(p) for p in new]
    assert results[-1] == new_whole and len(reassembler) == 0


def test_fragments_that_cannot_make_a_message_are_dropped() -> None:
    reassembler = FragmentReassembler()

    def piece(number: int, last: bool, size: int = 10) -> IkeV1Fragment:
        return IkeV1Fragment(COOKIES[:8], COOKIES[8:], 5, number, last, bytes(size))

    assert reassembler.add(piece(3, False)) is None
    with pytest.raises(IkeV1DecodeError, match="past the last"):
        reassembler.add(piece(2, True))  # number 3 was already there
    assert len(reassembler) == 0
    assert reassembler.add(piece(2, True)) is None
    with pytest.raises(IkeV1DecodeError, match="past the last"):
        reassembler.add(piece(3, True))  # a second LAST fragment
    assert reassembler.add(piece(2, True)) is None
    with pytest.raises(IkeV1DecodeError, match="past the last"):
        reassembler.add(piece(3, False))  # after LAST was number 2
    for number in range(1, 11):
        assert reassembler.add(piece(number, False, 1000)) is None
    with pytest.raises(IkeV1DecodeError, match="more than 10000 bytes"):
        reassembler.add(piece(11, False, 1000))
    assert len(reassembler) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (struct.pack("!BBHHBB", 0, 0, 8, 1, 1, 1) + b"x", "does not fill"),  # 8 of 9 bytes
        (struct.pack("!BBHHBB", 5, 0, 9, 1, 1, 1) + b"x", "does not fill"),  # a next payload
        (struct.pack("!BBHHBB", 0, 0, 9, 1, 0, 1) + b"x", "fragment number 0"),
        (struct.pack("!BBHHBB", 0, 0, 9, 1, MAX_FRAGMENTS + 1, 1) + b"x", "fragment number 17"),
        (b"\x00\x00\x00", "3 bytes"),
    ],
)
def test_malformed_fragments(body: bytes, reason: str) -> None:
    data = COOKIES + struct.pack("!BBBBII", PayloadType.FRAGMENT, 0x10, 2, 0, 0, 28 + len(body))
    with pytest.raises(IkeV1DecodeError, match=reason):
        decode_fragment(data + body)


def test_too_many_fragments_are_not_sent() -> None:
    with pytest.raises(ValueError, match="fragments"):
        fragment(message(5000), 1, ExchangeType.IDENTITY_PROTECTION, max_size=100)


@given(st.binary(max_size=80))
def test_decode_fragment_raises_only_decode_errors(body: bytes) -> None:
    data = COOKIES + struct.pack("!BBBBII", PayloadType.FRAGMENT, 0x10, 2, 0, 0, 28 + len(body))
    with contextlib.suppress(IkeV1DecodeError):
        decode_fragment(data + body)
