"""Every vector decodes to its written-out value and encodes back to the same bytes."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from larval.pfkey import (
    EXT_MAX,
    ExtType,
    PfkeyHeader,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    decode,
    decode_header,
)

from .vectors import VECTORS, Vector


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_decode(vector: Vector) -> None:
    assert decode(vector.wire) == vector.message


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_encode(vector: Vector) -> None:
    assert vector.message.encode() == vector.wire


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_decode_header_reads_the_base_header_alone(vector: Vector) -> None:
    m = vector.message
    want = PfkeyHeader(m.msg_type, m.satype, m.errno, m.diagnostic, m.seq, m.pid)
    assert decode_header(vector.wire) == want


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_length_field_matches(vector: Vector) -> None:
    assert int.from_bytes(vector.wire[4:6], "little") * 8 == len(vector.wire)


def test_every_message_type_is_covered() -> None:
    seen = {v.message.msg_type for v in VECTORS}
    assert seen >= set(range(SadbMsgType.GETSPI, SadbMsgType.X_DELPAIR_STATE + 1))


def test_every_extension_type_is_covered() -> None:
    seen = {ext.ext_type for v in VECTORS for ext in v.message.extensions}
    assert seen >= set(range(1, EXT_MAX + 1))


def test_find_returns_first_of_type() -> None:
    msg = next(v.message for v in VECTORS if v.name == "update_with_keys")
    assert msg.find(3) is msg.extensions[1]
    assert msg.find(99) is None
    assert PfkeyMessage(SadbMsgType.FLUSH).find(1) is None


def test_key_repr_hides_key_bytes() -> None:
    msg = next(v.message for v in VECTORS if v.name == "update_with_keys")
    text = repr(msg)
    assert "key=<32 bytes>" in text
    assert "\\x1f" not in text and "\\x00\\x01" not in text


def test_decoded_ipv4_addresses_are_right_and_their_cache_bounded() -> None:
    # Addresses are decoded through a cache of the values seen lately: it must not grow
    # without bound, whatever the stack or a client sends.
    from larval.pfkey import extensions

    for n in range(3 * extensions._V4_SEEN_MAX):
        addr = IPv4Address(0x0A000000 + n)
        msg = PfkeyMessage(SadbMsgType.GET, 3, extensions=(SadbAddress(ExtType.ADDRESS_DST, addr),))
        assert decode(msg.encode()).extensions[0] == SadbAddress(ExtType.ADDRESS_DST, addr)
        assert len(extensions._V4_SEEN) <= extensions._V4_SEEN_MAX
