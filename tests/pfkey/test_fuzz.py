"""Property tests: decode never fails but with PfkeyError, and encode/decode are inverses."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.pfkey import (
    AF_INET6_LINUX,
    Extension,
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbAddress,
    SadbAlg,
    SadbComb,
    SadbIdent,
    SadbKey,
    SadbLifetime,
    SadbProp,
    SadbSa,
    SadbSens,
    SadbSpirange,
    SadbSupported,
    SadbXAlgdesc,
    SadbXEcomb,
    SadbXEdump,
    SadbXEprop,
    SadbXEreg,
    SadbXKmc,
    SadbXPair,
    SadbXReplayCtr,
    UnknownExtension,
    decode,
)

from .vectors import VECTORS

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)

ADDRESS_TYPES = [
    ExtType.ADDRESS_SRC,
    ExtType.ADDRESS_DST,
    ExtType.ADDRESS_PROXY,
    ExtType.X_ADDRESS_NATT_LOC,
    ExtType.X_ADDRESS_NATT_REM,
    ExtType.X_ADDRESS_INNER_DST,
]


def _check(data: bytes) -> PfkeyMessage | None:
    """Decode; if that works, the re-encoded message must decode to the same value."""
    try:
        msg = decode(data)
    except PfkeyError:
        return None
    again = decode(msg.encode())
    assert again == msg
    return msg


# -- (a) arbitrary bytes ----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def _plausible(draw: st.DrawFn) -> bytes:
    """A valid header with a matching length over extensions with random bodies."""
    exts = b""
    for ext_type, words in draw(
        st.lists(st.tuples(st.integers(0, 30), st.integers(0, 12)), max_size=6)
    ):
        body = draw(st.binary(min_size=8 * words + 4, max_size=8 * words + 4))
        if draw(st.booleans()):
            # Mostly-zero bodies reach deeper: families, counts and bits line up more.
            body = bytes(len(body))
            for off, val in draw(st.lists(st.tuples(st.integers(0, len(body) - 1), u8))):
                body = body[:off] + bytes([val]) + body[off + 1 :]
        exts += struct.pack("<HH", words + 1, ext_type) + body
    hdr = struct.pack(
        "<BBBBHHII", 2, draw(u8), draw(u8), draw(u8), (16 + len(exts)) // 8, draw(u16), 0, 0
    )
    return hdr + exts


@FUZZ
@given(_plausible())
def test_plausible_messages(data: bytes) -> None:
    _check(data)


# -- (b) mutations of the vectors -------------------------------------------------------


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VECTORS)).wire)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "len", "extlen"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(u8)
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "len" and len(data) >= 6:
            # Often make the header agree with the new size, to get past that check.
            words = len(data) // 8 if draw(st.booleans()) else draw(u16)
            data[4:6] = words.to_bytes(2, "little")
        elif kind == "extlen" and len(data) >= 18:
            off = 16 + 8 * draw(st.integers(0, (len(data) - 18) // 8))
            data[off : off + 2] = draw(st.integers(0, 40)).to_bytes(2, "little")
    return bytes(data)


@settings(max_examples=1000, deadline=None)
@given(_mutated())
def test_mutated_vectors(data: bytes) -> None:
    _check(data)


# -- (c) messages drawn by Hypothesis round-trip -------------------------------------

_v4 = st.builds(
    SadbAddress,
    st.sampled_from(ADDRESS_TYPES),
    st.ip_addresses(v=4),
    port=u16,
    proto=u8,
    prefixlen=u8,
)
_v6 = st.builds(
    SadbAddress,
    st.sampled_from(ADDRESS_TYPES),
    st.ip_addresses(v=6),
    port=u16,
    proto=u8,
    prefixlen=u8,
    flowinfo=u32,
    scope_id=u32,
    family=st.sampled_from([None, AF_INET6_LINUX]),
)
_key = st.integers(1, 1024).flatmap(
    lambda bits: st.builds(
        SadbKey,
        st.sampled_from([ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT]),
        st.just(bits),
        st.binary(min_size=(bits + 7) // 8, max_size=(bits + 7) // 8),
    )
)
_comb = st.builds(SadbComb, *([u8, u8] + [u16] * 5 + [u32] * 2 + [u64] * 6))
_algdesc = st.builds(SadbXAlgdesc, u8, u8, u8, u16, u16)
_ecomb = st.builds(
    SadbXEcomb,
    st.lists(_algdesc, max_size=4).map(tuple),
    u16,
    u32,
    u32,
    *([u64] * 6),
)
# Types above illumos's that larval does not define either (its own are 64 and up).
_KNOWN_TYPES = frozenset(int(t) for t in ExtType)
_unknown = st.integers(0, 4).flatmap(
    lambda k: st.builds(
        UnknownExtension,
        st.integers(28, 0xFFFF).filter(lambda t: t not in _KNOWN_TYPES),
        st.binary(min_size=8 * k + 4, max_size=8 * k + 4),
    )
)
_u64_tuple = st.lists(u64, max_size=4).map(tuple)

EXTENSIONS: st.SearchStrategy[Extension] = st.one_of(
    st.builds(SadbSa, u32, u8, u8, u8, u8, u32),
    st.builds(
        SadbLifetime,
        st.sampled_from(
            [
                ExtType.LIFETIME_CURRENT,
                ExtType.LIFETIME_HARD,
                ExtType.LIFETIME_SOFT,
                ExtType.X_LIFETIME_IDLE,
            ]
        ),
        u32,
        u64,
        u64,
        u64,
    ),
    _v4,
    _v6,
    _key,
    st.builds(
        SadbIdent,
        st.sampled_from([ExtType.IDENTITY_SRC, ExtType.IDENTITY_DST]),
        u16,
        u64,
        st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x")),
    ),
    st.builds(
        SadbSens,
        st.sampled_from([ExtType.SENSITIVITY, ExtType.X_OUTER_SENS]),
        u32,
        u8,
        u8,
        u32,
        _u64_tuple,
        _u64_tuple,
    ),
    st.builds(SadbProp, st.lists(_comb, max_size=3).map(tuple), u8),
    st.builds(SadbXEprop, st.lists(_ecomb, max_size=3).map(tuple), u8),
    st.builds(
        SadbSupported,
        st.sampled_from([ExtType.SUPPORTED_AUTH, ExtType.SUPPORTED_ENCRYPT]),
        st.lists(st.builds(SadbAlg, u8, u8, u16, u16, u8, u8), max_size=6).map(tuple),
    ),
    st.builds(SadbSpirange, u32, u32),
    st.builds(SadbXEreg, st.lists(st.integers(1, 255), max_size=20).map(tuple)),
    st.builds(SadbXKmc, u32, u64),
    st.builds(SadbXPair, u32),
    st.builds(SadbXReplayCtr, u32, u64),
    st.builds(SadbXEdump, u64),
    _unknown,
)

MESSAGES = st.builds(
    PfkeyMessage,
    u8,
    u8,
    u32,
    u32,
    u8,
    u16,
    # A known extension type may appear once (keysock_get_ext); unknown ones too, here.
    st.lists(EXTENSIONS, max_size=8, unique_by=lambda e: e.ext_type).map(tuple),
)


@settings(max_examples=500, deadline=None)
@given(MESSAGES)
def test_round_trip(msg: PfkeyMessage) -> None:
    wire = msg.encode()
    assert len(wire) % 8 == 0
    assert int.from_bytes(wire[4:6], "little") * 8 == len(wire)
    assert decode(wire) == msg
    assert decode(wire).encode() == wire


# -- (d) the fast path of IPv4 address extensions agrees with the checked one -----------


def _outcome(fn: Any, ext_type: int, body: bytes) -> object:
    try:
        return fn(ext_type, body)
    except PfkeyError as e:
        return (e.errno, e.diagnostic)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.X_ADDRESS_NATT_LOC]),
    st.binary(min_size=20, max_size=20),
    st.sampled_from([None, 2, 10, 26]),
)
def test_address_fast_path_agrees(ext_type: int, body: bytes, family: int | None) -> None:
    if family is not None:
        body = body[:4] + family.to_bytes(2, "little") + body[6:]
    fast = _outcome(SadbAddress.decode, ext_type, body)
    assert fast == _outcome(SadbAddress._decode_any, ext_type, body)
