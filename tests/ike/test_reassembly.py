"""The reassembly buffer both versions' fragments go through: pieces out of order, twice,
missing, too many bytes, and more partial messages than it keeps."""

from __future__ import annotations

import pytest

from larval.ike.reassembly import FragmentBuffer, FragmentOverflow


def test_pieces_out_of_order_and_twice_make_the_message_once() -> None:
    buffer: FragmentBuffer[str, bytes] = FragmentBuffer(max_messages=2, max_bytes=100)
    assert buffer.add("m", 3, b"c", 1, total=3) is None
    assert buffer.add("m", 1, b"a", 1, total=3) is None
    assert buffer.add("m", 3, b"X", 1, total=3) is None  # a duplicate: the first one stays
    assert buffer.pieces() == 2 and len(buffer) == 1
    assert buffer.add("m", 2, b"b", 1, total=3) == [b"a", b"b", b"c"]
    assert len(buffer) == 0 and buffer.partial("m") is None
    # The same message again is a new one: a late copy of a piece does not complete it.
    assert buffer.add("m", 2, b"b", 1, total=3) is None


def test_a_missing_piece_holds_the_message_back() -> None:
    buffer: FragmentBuffer[int, bytes] = FragmentBuffer(max_messages=1, max_bytes=100)
    for number in (1, 2, 4):
        assert buffer.add(7, number, bytes([number]), 1, total=4) is None
    partial = buffer.partial(7)
    assert partial is not None and partial.total == 4 and sorted(partial.pieces) == [1, 2, 4]
    assert partial.first == b"\x01"


def test_the_total_may_come_with_the_last_piece_only() -> None:
    # IKEv1: only the LAST fragment says how many there are.
    buffer: FragmentBuffer[int, bytes] = FragmentBuffer(max_messages=1, max_bytes=100)
    assert buffer.add(1, 2, b"b", 1) is None
    assert buffer.add(1, 3, b"c", 1, total=3) is None
    assert buffer.add(1, 1, b"a", 1) == [b"a", b"b", b"c"]


def test_a_piece_past_the_total_does_not_stand_in_for_a_missing_one() -> None:
    buffer: FragmentBuffer[int, bytes] = FragmentBuffer(max_messages=1, max_bytes=100)
    assert buffer.add(1, 5, b"e", 1) is None
    assert buffer.add(1, 1, b"a", 1, total=2) is None  # two pieces held, but not 1 and 2
    assert buffer.add(1, 2, b"b", 1) == [b"a", b"b"]


def test_too_many_bytes_drop_the_message() -> None:
    buffer: FragmentBuffer[int, bytes] = FragmentBuffer(max_messages=2, max_bytes=10)
    assert buffer.add(1, 1, b"x" * 6, 6, total=2) is None
    assert buffer.add(2, 1, b"y", 1, total=2) is None
    with pytest.raises(FragmentOverflow, match="more than 10 bytes"):
        buffer.add(1, 2, b"x" * 5, 5, total=2)
    assert buffer.partial(1) is None and buffer.partial(2) is not None  # only message 1


def test_the_oldest_partial_message_goes_first() -> None:
    buffer: FragmentBuffer[int, bytes] = FragmentBuffer(max_messages=2, max_bytes=100)
    for key in (1, 2, 3):
        buffer.add(key, 1, b"a", 1, total=2)
    assert len(buffer) == 2 and buffer.partial(1) is None
    assert buffer.add(2, 2, b"b", 1) == [b"a", b"b"]
    buffer.discard(3)
    assert len(buffer) == 0
