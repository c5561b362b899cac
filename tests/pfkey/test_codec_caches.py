"""The codec's caches change no byte: a memoized wire form, and a decoded value handed out
again for the same bytes, give what a fresh encode and a fresh decode give, for every
vector and every extension in it; keys are never kept."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from larval.pfkey import (
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbKey,
    SadbLifetime,
    SadbSpirange,
    decode,
)
from larval.pfkey import message as message_module
from larval.pfkey.extensions import CACHED_TYPES, DECODERS

from .vectors import VECTORS, Vector


def _fresh(ext: object) -> object:
    """An equal value built anew: its wire form not memoized yet."""
    return dataclasses.replace(ext)  # type: ignore[type-var]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_every_vector_decodes_and_encodes_the_same_again(vector: Vector) -> None:
    first = decode(vector.wire)
    second = decode(vector.wire)  # the cached values, with their memoized wire forms
    assert first == second == vector.message
    assert first.encode() == second.encode() == vector.wire
    assert second.encode() == vector.wire  # encoded twice: the memo gives the same
    for ext in second.extensions:
        assert ext.encode() == _fresh(ext).encode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_memoized_values_encode_as_fresh_ones(vector: Vector) -> None:
    for ext in vector.message.extensions:
        once = ext.encode()
        assert ext.encode() == once == _fresh(ext).encode()  # type: ignore[attr-defined]


def test_the_cached_types_are_known_and_hold_no_key() -> None:
    assert set(DECODERS) >= CACHED_TYPES
    assert not CACHED_TYPES & {int(ExtType.KEY_AUTH), int(ExtType.KEY_ENCRYPT)}
    assert int(ExtType.SA) not in CACHED_TYPES


def test_a_repeated_address_is_one_value_and_a_key_never_is() -> None:
    key = SadbKey(ExtType.KEY_ENCRYPT, 160, bytes(range(20)))
    addr = SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address("203.0.113.9"), 4500, 17)
    wire = PfkeyMessage(3, 3, extensions=(addr, key)).encode()
    one, two = decode(wire), decode(wire)
    assert one.extensions[0] is two.extensions[0]
    assert one.extensions[1] == two.extensions[1]
    assert one.extensions[1] is not two.extensions[1]
    assert not any(isinstance(v, SadbKey) for v in message_module._DECODED.values())


def test_addresses_that_differ_in_one_field_are_not_confused() -> None:
    ip = ipaddress.ip_address("203.0.113.9")
    values = [
        SadbAddress(ExtType.ADDRESS_DST, ip),
        SadbAddress(ExtType.ADDRESS_DST, ip, port=4500),
        SadbAddress(ExtType.ADDRESS_DST, ip, proto=17),
        SadbAddress(ExtType.ADDRESS_SRC, ip),
        SadbAddress(ExtType.X_ADDRESS_NATT_REM, ip, port=4500),
    ]
    for _ in range(2):
        for value in values:
            got = decode(PfkeyMessage(3, 3, extensions=(value,)).encode()).extensions[0]
            assert got == value
            assert got.ext_type == value.ext_type


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "_DECODED", {})
    monkeypatch.setattr(message_module, "_DECODED_MAX", 8)
    for i in range(50):
        ext = SadbSpirange(0x100 + i, 0xFFFF)
        got = decode(PfkeyMessage(1, 3, extensions=(ext,)).encode()).extensions[0]
        assert got == ext
        assert len(message_module._DECODED) <= 8


def test_a_value_made_by_replace_encodes_its_own_fields() -> None:
    hard = SadbLifetime(ExtType.LIFETIME_HARD, 0, 0, 3600, 0)
    first = hard.encode()
    later = dataclasses.replace(hard, addtime=60)
    assert later.encode() != first
    assert later.encode() == SadbLifetime(ExtType.LIFETIME_HARD, 0, 0, 60, 0).encode()
    assert hard.encode() == first


def test_the_memo_is_no_field_of_equality_or_repr() -> None:
    a = SadbSpirange(0x100, 0x1FF)
    b = SadbSpirange(0x100, 0x1FF)
    a.encode()
    assert a == b and hash(a) == hash(b)
    assert "_wire" not in repr(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a._wire = b"x"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["192.0.2.1", "2001:db8::1"])
def test_an_address_packs_once_and_right(text: str) -> None:
    ip = ipaddress.ip_address(text)
    addr = SadbAddress(ExtType.ADDRESS_SRC, ip)
    first = addr.packed()
    assert first == ip.packed
    assert addr.packed() is first
    assert (
        dataclasses.replace(
            addr, addr=ipaddress.ip_address("::2" if ip.version == 6 else "192.0.2.9")
        ).packed()
        != first
    )


def test_a_getspi_body_is_decoded_once_and_an_update_body_never() -> None:
    from larval.pfkey.requests import getspi, keyed

    ask = getspi("192.0.2.1", "192.0.2.2")
    one = decode(PfkeyMessage(1, 3, seq=1, extensions=ask.extensions).encode())
    two = decode(PfkeyMessage(1, 3, seq=2, pid=9, extensions=ask.extensions).encode())
    assert one.extensions is two.extensions
    assert (one.seq, two.seq, two.pid) == (1, 2, 9)
    assert two == PfkeyMessage(1, 3, seq=2, pid=9, extensions=ask.extensions)
    update = keyed(2, 0x1234, "192.0.2.1", "192.0.2.2", encrypt=20, encrypt_key=bytes(20))
    wire = update.encode()
    assert decode(wire).extensions is not decode(wire).extensions
    assert decode(wire) == update
    for exts in message_module._BODIES.values():
        assert not any(isinstance(e, SadbKey) for e in exts)


def test_a_body_with_an_unknown_extension_or_a_fault_is_not_kept() -> None:
    from larval.pfkey import PfkeyError, UnknownExtension

    addr = SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address("192.0.2.77"))
    unknown = UnknownExtension(200, bytes(4))
    wire = PfkeyMessage(1, 3, extensions=(addr, unknown)).encode()
    assert decode(wire).extensions is not decode(wire).extensions
    twice = PfkeyMessage(1, 3, extensions=(addr,)).encode()
    doubled = twice[:16] + twice[16:] + twice[16:]
    doubled = doubled[:4] + (len(doubled) // 8).to_bytes(2, "little") + doubled[6:]
    for _ in range(2):
        with pytest.raises(PfkeyError):
            decode(doubled)
