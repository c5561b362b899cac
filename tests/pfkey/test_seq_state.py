"""larval's X_LARVAL_SEQ_STATE (type 65): an SA's next outbound sequence number and its
anti-replay window, as a restart gives them back on ADD and GET shows them.

The bytes are written out by hand from the layout in the extension's docstring, not by
the encoder under test.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larval.pfkey import (
    SEQ_STATE_NEXT,
    SEQ_STATE_REPLAY,
    Diagnostic,
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbMsgType,
    SadbXSeqState,
    SaType,
    decode,
    diagnostic_text,
)

#: next 0x1_0000_0005 (ESN), reserved 0, top 100, a 64-bit window with 100, 99 and 36
#: received: header (5 words, type 65), bits 64, flags 3, next, reserved, top, bitmap.
VECTOR = (
    struct.pack("<HH", 5, 65)
    + struct.pack("<HH", 64, 3)
    + struct.pack("<Q", 0x1_0000_0005)
    + struct.pack("<Q", 0)
    + struct.pack("<Q", 100)
    + struct.pack("<Q", 0b11 | 1 << 64 - 1)
)
VECTOR_EXT = SadbXSeqState(
    SEQ_STATE_NEXT | SEQ_STATE_REPLAY, 0x1_0000_0005, 0, 100, 64, 0b11 | 1 << 63
)


def message(*exts: bytes) -> bytes:
    """A GET request's base header (length fixed) with `exts` after it."""
    body = b"".join(exts)
    return struct.pack("<BBBBHHII", 2, SadbMsgType.GET, 0, SaType.ESP,
                       2 + len(body) // 8, 0, 7, 42) + body  # fmt: skip


def test_numbers() -> None:
    assert ExtType.X_LARVAL_SEQ_STATE == 65
    assert Diagnostic.MALFORMED_SEQ_STATE == 129
    assert "replay window" in diagnostic_text(Diagnostic.MALFORMED_SEQ_STATE)


def test_vector_decodes_and_encodes_byte_for_byte() -> None:
    msg = decode(message(VECTOR))
    assert msg.extensions == (VECTOR_EXT,)
    assert VECTOR_EXT.encode() == VECTOR
    assert msg.encode() == message(VECTOR)


def test_next_only_carries_no_bitmap() -> None:
    ext = SadbXSeqState(SEQ_STATE_NEXT, 16385)
    wire = ext.encode()
    assert wire == struct.pack("<HHHHQQQ", 4, 65, 0, 1, 16385, 0, 0)
    assert decode(message(wire)).extensions == (ext,)


@given(
    next_=st.integers(1, (1 << 64) - 1),
    reserved=st.integers(0, (1 << 64) - 1),
    top=st.integers(0, (1 << 64) - 1),
    bits=st.integers(0, 4096),
    data=st.data(),
)
def test_round_trip(next_: int, reserved: int, top: int, bits: int, data: st.DataObject) -> None:
    bitmap = data.draw(st.integers(0, (1 << bits) - 1))
    ext = SadbXSeqState(SEQ_STATE_NEXT | SEQ_STATE_REPLAY, next_, reserved, top, bits, bitmap)
    wire = ext.encode()
    assert len(wire) % 8 == 0
    assert decode(message(wire)).extensions == (ext,)


def _ext(body: bytes) -> bytes:
    return struct.pack("<HH", (4 + len(body)) // 8, 65) + body


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (struct.pack("<HHQ", 0, 1, 1), "body of 12 bytes; at least 28"),
        (struct.pack("<HHQQQ", 0, 4, 1, 0, 0), "unknown flags 0x4"),
        (struct.pack("<HHQQQ", 4160, 3, 1, 0, 0) + bytes(520), "window of 4160 bits"),
        (struct.pack("<HHQQQ", 128, 3, 1, 0, 0) + bytes(8), "body of 36 bytes for 128 bits"),
        (struct.pack("<HHQQQ", 0, 1, 0, 0, 0), "next sequence number 0"),
        (struct.pack("<HHQQQ", 0, 1, 1, 0, 7), "a replay window without the replay flag"),
        (struct.pack("<HHQQQ", 32, 2, 0, 0, 9) + struct.pack("<Q", 1 << 40),
         "bitmap bits set beyond the window of 32"),
    ],
    ids=["short", "flags", "too-wide", "length", "next-zero", "no-flag", "bitmap"],
)  # fmt: skip
def test_malformed_states_are_refused_with_their_diagnostic(body: bytes, says: str) -> None:
    with pytest.raises(PfkeyError) as info:
        decode(message(_ext(body)))
    assert (info.value.errno, info.value.diagnostic) == (
        errno.EINVAL,
        Diagnostic.MALFORMED_SEQ_STATE,
    )
    assert "extension type 65 (sequence state)" in str(info.value)
    assert says in str(info.value)


def test_a_repeated_state_is_refused() -> None:
    with pytest.raises(PfkeyError) as info:
        decode(message(VECTOR + VECTOR))
    assert info.value.diagnostic == Diagnostic.MALFORMED_SEQ_STATE


def test_an_old_reader_would_skip_it_whole() -> None:
    # RFC 2367 §2.2: the length in the header covers the bitmap, so a parser that does
    # not know type 65 steps over it to the next extension.
    msg = PfkeyMessage(SadbMsgType.GET, SaType.ESP, extensions=(VECTOR_EXT,))
    wire = msg.encode()
    words = struct.unpack_from("<H", wire, 16)[0]
    assert 16 + words * 8 == len(wire)


def test_larval_sa_shows_it() -> None:
    from larval.commands.sa import sa_to_dict

    shown = sa_to_dict(decode(message(VECTOR)))
    assert shown["seq"] == {"next": 0x1_0000_0005, "reserved": 0, "replay_top": 100}
