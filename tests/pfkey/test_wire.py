"""The byte cursor under every codec: host order for PF_KEY, network order for IKE."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import larval
from larval.errors import DecodeError, LarvalError
from larval.wire import (
    Buffer,
    BufferReadError,
    BufferWriteError,
    LenientIntEnum,
    NetBlock,
    NetReader,
)


def test_pull_host_and_network_order() -> None:
    buf = Buffer(bytes.fromhex("01 0201 04030201 0807060504030201 0102 01020304 ff"))
    assert buf.pull_u8() == 1
    assert buf.pull_u16() == 0x0102
    assert buf.pull_u32() == 0x01020304
    assert buf.pull_u64() == 0x0102030405060708
    assert buf.pull_u16be() == 0x0102
    assert buf.pull_u32be() == 0x01020304
    assert buf.remaining() == 1 and not buf.eof()
    assert buf.pull_bytes(1) == b"\xff"
    assert buf.eof() and buf.tell() == 22


def test_read_past_end() -> None:
    buf = Buffer(b"\x01\x02\x03")
    with pytest.raises(BufferReadError):
        buf.pull_u32()
    assert buf.tell() == 0  # a failed read does not move the cursor
    with pytest.raises(DecodeError):
        buf.pull_bytes(4)
    with pytest.raises(BufferReadError):
        buf.pull_bytes(-1)


def test_push_and_data() -> None:
    buf = Buffer()
    buf.push_u8(1)
    buf.push_u16(0x0203)
    buf.push_u32(0x04050607)
    buf.push_u64(1)
    buf.push_u16be(0x0102)
    buf.push_u32be(0x01020304)
    buf.push_bytes(b"xy")
    assert buf.data == bytes.fromhex("01 0302 07060504 0100000000000000 0102 01020304 7879")


def test_seek_back_overwrites() -> None:
    buf = Buffer(b"abcdef")
    buf.seek(2)
    buf.push_bytes(b"ZZ")
    assert buf.data == b"abZZef" and buf.tell() == 4
    with pytest.raises(BufferWriteError):
        buf.seek(7)


def test_capacity() -> None:
    buf = Buffer(capacity=4)
    buf.push_u32(0)
    with pytest.raises(BufferWriteError):
        buf.push_u8(0)


@pytest.mark.parametrize("pad_from", [0, 1, 4, 7, 8, 9])
def test_padding64_and_patch(pad_from: int) -> None:
    buf = Buffer()
    buf.push_bytes(b"\xee" * 3)  # a block need not start at 0
    buf.push_u16(0)  # placeholder
    buf.push_bytes(b"\xaa" * pad_from)
    buf.push_padding64(3)
    buf.patch_u16(3, (buf.tell() - 3) // 8)
    block = buf.data[3:]
    assert len(block) % 8 == 0 and len(block) >= 2 + pad_from
    assert int.from_bytes(block[:2], "little") * 8 == len(block)
    assert block[2 + pad_from :] == bytes(len(block) - 2 - pad_from)


def test_patch_outside_the_written_data() -> None:
    buf = Buffer()
    buf.push_u8(1)
    with pytest.raises(BufferWriteError):
        buf.patch_u16(0, 7)  # only one byte written


class _Colour(LenientIntEnum):
    RED = 1


def test_lenient_enum_names_unknown_values() -> None:
    unknown = _Colour(7)
    assert unknown == 7 and unknown.name == "UNKNOWN_7" and isinstance(unknown, _Colour)
    assert _Colour(1) is _Colour.RED
    for not_a_number in ("7", None, 7.5):
        with pytest.raises(ValueError):
            _Colour(not_a_number)


def test_lenient_enum_written_once() -> None:
    """Every enum that names wire numbers takes its leniency from `larval.wire`."""
    own: list[str] = []
    for info in pkgutil.walk_packages(larval.__path__, "larval."):
        if info.name.endswith("__main__"):
            continue  # importing it runs the command
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and value.__module__ == info.name
                and "_missing_" in vars(value)
                and value is not LenientIntEnum
            ):
                own.append(f"{info.name}.{name}")
    assert own == []


class _Refused(LarvalError):
    pass


def test_net_reader_names_the_structure_and_field_it_ran_out_in() -> None:
    reader = NetReader(bytes.fromhex("01 0203 04050607 0809"), "test block")
    assert reader.pull_u8("a") == 1
    assert reader.pull_u16("b") == 0x0203
    assert reader.pull_u32("c") == 0x04050607
    with pytest.raises(DecodeError, match=r"^test block: d needs 4 bytes, 2 left$"):
        reader.pull_u32("d")
    assert reader.pull_rest() == b"\x08\x09" and reader.eof()


def test_net_reader_raises_the_error_it_is_given() -> None:
    reader = NetReader(b"\x00\x09\x01", "outer", _Refused)
    with pytest.raises(_Refused, match=r"^outer: sub length 9 runs 6 bytes past the end$"):
        reader.pull_block(reader.pull_u16("length"), 2, "sub")
    with pytest.raises(_Refused, match="1 bytes left over"):
        reader.expect_end()


def test_net_block_back_patches_a_network_order_length() -> None:
    buf = Buffer()
    buf.push_bytes(b"xx")
    with NetBlock(buf):
        buf.push_bytes(b"\x07\x00\x00\x00abc")
    assert buf.data == b"xx\x07\x00\x00\x07abc"
    # a one-octet length field cannot count 300 bytes
    too_long = Buffer()
    with pytest.raises(_Refused, match="300 bytes too long"), NetBlock(too_long, 0, 1, _Refused):
        too_long.push_bytes(bytes(300))
