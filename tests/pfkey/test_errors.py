"""Malformed messages: each is refused with the errno and diagnostic illumos keysock gives."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from larval.errors import DecodeError
from larval.pfkey import (
    Diagnostic,
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbAddress,
    SadbKey,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbXEprop,
    SadbXKmc,
    SaType,
    UnknownExtension,
    decode,
    decode_header,
    diagnostic_text,
)

from .vectors import VECTORS, Vector, h

V4 = ipaddress.IPv4Address("192.0.2.1")
V6 = ipaddress.IPv6Address("2001:db8::1")
HDR = 16  # sadb_msg


def _raises(data: bytes, err: int, diag: int) -> PfkeyError:
    with pytest.raises(PfkeyError) as info:
        decode(data)
    assert (info.value.errno, info.value.diagnostic) == (err, diag), str(info.value)
    return info.value


def _header_raises(data: bytes, err: int) -> None:
    """decode_header refuses a bad base header as decode does (no diagnostic: keysock_parse)."""
    with pytest.raises(PfkeyError) as info:
        decode_header(data)
    assert (info.value.errno, info.value.diagnostic) == (err, Diagnostic.NONE), str(info.value)
    _raises(data, err, Diagnostic.NONE)


def _msg(*exts: object) -> bytes:
    return PfkeyMessage(SadbMsgType.ADD, SaType.ESP, extensions=exts).encode()  # type: ignore[arg-type]


def _set_u16(data: bytes, off: int, value: int) -> bytes:
    return data[:off] + value.to_bytes(2, "little") + data[off + 2 :]


# -- the base header ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_truncated_at_every_length(vector: Vector) -> None:
    # keysock_parse: sadb_msg_len disagrees with what was written -> EMSGSIZE.
    for n in range(len(vector.wire)):
        _header_raises(vector.wire[:n], errno.EMSGSIZE)


@pytest.mark.parametrize("extra", range(1, 8))
def test_misaligned_size(extra: int) -> None:
    wire = next(v.wire for v in VECTORS if v.name == "getspi_request")
    _raises(wire + bytes(extra), errno.EMSGSIZE, Diagnostic.NONE)


@pytest.mark.parametrize("delta", [-2, -1, 1, 2, 0xFFFF])
def test_msg_len_lies(delta: int) -> None:
    wire = next(v.wire for v in VECTORS if v.name == "getspi_reply")
    words = (len(wire) // 8 + delta) & 0xFFFF
    _header_raises(_set_u16(wire, 4, words), errno.EMSGSIZE)


def test_short_header() -> None:
    _raises(b"", errno.EMSGSIZE, Diagnostic.NONE)
    _raises(h("02 09 00 00 0100 0000"), errno.EMSGSIZE, Diagnostic.NONE)


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_bad_version(version: int) -> None:
    wire = PfkeyMessage(SadbMsgType.FLUSH).encode()
    _header_raises(bytes([version]) + wire[1:], errno.EINVAL)


def test_unknown_msg_type_is_not_a_decode_error() -> None:
    # The SADB answers it with UNKNOWN_MSG; structure is all decode checks.
    wire = PfkeyMessage(200).encode()
    assert decode(wire).msg_type == 200
    assert SadbMsgType(200).name == "UNKNOWN_200"


# -- the generic extension header (keysock_get_ext) -------------------------------------


def test_ext_len_zero() -> None:
    wire = _msg(SadbSa(1))
    _raises(_set_u16(wire, HDR, 0), errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_ext_len_past_end() -> None:
    wire = _msg(SadbSa(1), SadbXKmc(1, 2))
    _raises(_set_u16(wire, HDR, 5), errno.EINVAL, Diagnostic.BAD_EXTLEN)
    _raises(_set_u16(wire, HDR + 16, 3), errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_ext_type_zero_is_reserved() -> None:
    wire = _msg(SadbSa(1))
    _raises(_set_u16(wire, HDR + 2, 0), errno.EINVAL, Diagnostic.UNKNOWN_EXT)


def test_unknown_extension_is_kept_and_round_trips() -> None:
    unknown = UnknownExtension(99, bytes(range(12)))
    wire = _msg(SadbSa(7), unknown, unknown)
    msg = decode(wire)
    assert msg.extensions == (SadbSa(7), unknown, unknown)
    assert msg.encode() == wire


# -- duplicates (keysock_duplicate) -----------------------------------------------------


def _addr(ext_type: int) -> SadbAddress:
    return SadbAddress(ext_type, V4)


DUPLICATES = [
    (SadbSa(1), Diagnostic.DUPLICATE_SA),
    (_addr(ExtType.ADDRESS_SRC), Diagnostic.DUPLICATE_SRC),
    (_addr(ExtType.ADDRESS_DST), Diagnostic.DUPLICATE_DST),
    (_addr(ExtType.X_ADDRESS_INNER_SRC), Diagnostic.DUPLICATE_INNER_SRC),
    (_addr(ExtType.X_ADDRESS_INNER_DST), Diagnostic.DUPLICATE_INNER_DST),
    (_addr(ExtType.X_ADDRESS_NATT_LOC), Diagnostic.DUPLICATE_NATT_LOC),
    (_addr(ExtType.X_ADDRESS_NATT_REM), Diagnostic.DUPLICATE_NATT_REM),
    (SadbKey(ExtType.KEY_AUTH, 8, b"\x01"), Diagnostic.DUPLICATE_AKEY),
    (SadbKey(ExtType.KEY_ENCRYPT, 8, b"\x01"), Diagnostic.DUPLICATE_EKEY),
    (SadbSpirange(1, 2), Diagnostic.DUPLICATE_RANGE),
    (SadbXKmc(1, 2), Diagnostic.DUPLICATE_KMC),
    # No dedicated code: keysock_duplicate answers 0.
    (SadbLifetime(ExtType.LIFETIME_HARD), Diagnostic.NONE),
    (SadbXEprop(), Diagnostic.NONE),
]


@pytest.mark.parametrize(("ext", "diag"), DUPLICATES, ids=lambda x: repr(x)[:30])
def test_duplicate(ext: object, diag: int) -> None:
    _raises(
        _msg(SadbSa(9) if diag != Diagnostic.DUPLICATE_SA else ext, ext, ext), errno.EINVAL, diag
    )


def test_first_fault_wins() -> None:
    # Extensions are checked in order; a duplicate SA before a bad length is reported.
    wire = _msg(SadbSa(1), SadbSa(2), SadbXKmc(1, 2))
    _raises(_set_u16(wire, HDR + 32, 0), errno.EINVAL, Diagnostic.DUPLICATE_SA)


# -- address extensions -----------------------------------------------------------------

ADDRESS_DIAGS = [
    (ExtType.ADDRESS_SRC, Diagnostic.BAD_SRC_AF, Diagnostic.MALFORMED_SRC),
    (ExtType.ADDRESS_DST, Diagnostic.BAD_DST_AF, Diagnostic.MALFORMED_DST),
    (ExtType.ADDRESS_PROXY, Diagnostic.BAD_PROXY_AF, Diagnostic.MALFORMED_INNER_SRC),
    (ExtType.X_ADDRESS_INNER_DST, Diagnostic.BAD_INNER_DST_AF, Diagnostic.MALFORMED_INNER_DST),
    (ExtType.X_ADDRESS_NATT_LOC, Diagnostic.BAD_NATT_LOC_AF, Diagnostic.MALFORMED_NATT_LOC),
    (ExtType.X_ADDRESS_NATT_REM, Diagnostic.BAD_NATT_REM_AF, Diagnostic.MALFORMED_NATT_REM),
]


@pytest.mark.parametrize(("ext_type", "bad_af", "malformed"), ADDRESS_DIAGS)
@pytest.mark.parametrize("family", [0, 1, 24, 28, 0xFFFF])
def test_bad_address_family(ext_type: int, bad_af: int, malformed: int, family: int) -> None:
    wire = _msg(SadbAddress(ext_type, V6))
    _raises(_set_u16(wire, HDR + 8, family), errno.EINVAL, bad_af)


@pytest.mark.parametrize(("ext_type", "bad_af", "malformed"), ADDRESS_DIAGS)
def test_address_without_sockaddr(ext_type: int, bad_af: int, malformed: int) -> None:
    # keysock ext_check: an address extension of one word has no sockaddr.
    wire = h("02 03 00 03 0400 0000 00000000 00000000")
    wire += _set_u16(h("0100 0000 00 00 0000"), 2, ext_type)
    wire += _set_u16(h("0100 0000 01000000"), 2, ExtType.X_PAIR)
    _raises(wire, errno.EINVAL, malformed)


@pytest.mark.parametrize(("ext_type", "bad_af", "malformed"), ADDRESS_DIAGS)
def test_inet6_sockaddr_does_not_fit(ext_type: int, bad_af: int, malformed: int) -> None:
    # A 3-word extension holds a sockaddr_in, not a sockaddr_in6.
    wire = _msg(SadbAddress(ext_type, V4))
    _raises(_set_u16(wire, HDR + 8, 26), errno.EINVAL, malformed)
    _raises(_set_u16(wire, HDR + 8, 10), errno.EINVAL, malformed)


def test_address_padding_beyond_sockaddr_is_ignored() -> None:
    wire = _msg(SadbAddress(ExtType.ADDRESS_SRC, V4, port=500))
    longer = _set_u16(_set_u16(wire, 4, len(wire) // 8 + 1), HDR, 4) + bytes(8)
    msg = decode(longer)
    assert msg.extensions == (SadbAddress(ExtType.ADDRESS_SRC, V4, port=500),)


# -- keys (keysock ext_check) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ext_type", "diag"),
    [
        (ExtType.KEY_AUTH, Diagnostic.MALFORMED_AKEY),
        (ExtType.KEY_ENCRYPT, Diagnostic.MALFORMED_EKEY),
    ],
)
@pytest.mark.parametrize("bits", [0, 65, 128, 0xFFFF])
def test_key_bits_disagree_with_length(ext_type: int, diag: int, bits: int) -> None:
    wire = _msg(SadbKey(ext_type, 64, bytes(range(1, 9))))
    _raises(_set_u16(wire, HDR + 4, bits), errno.EINVAL, diag)


def test_key_bits_not_multiple_of_8() -> None:
    wire = _msg(SadbKey(ExtType.KEY_AUTH, 12, b"\xab\xc0"))
    assert decode(wire).extensions == (SadbKey(ExtType.KEY_AUTH, 12, b"\xab\xc0"),)


# -- fixed-size and counted bodies ------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    [SadbSa(1), SadbLifetime(ExtType.LIFETIME_SOFT), SadbSpirange(1, 2), SadbXKmc(1, 2)],
    ids=lambda e: type(e).__name__,
)
def test_fixed_size_extension_with_wrong_length(ext: object) -> None:
    wire = _msg(ext)
    words = int.from_bytes(wire[HDR : HDR + 2], "little")
    longer = _set_u16(_set_u16(wire, 4, len(wire) // 8 + 1), HDR, words + 1) + bytes(8)
    _raises(longer, errno.EINVAL, Diagnostic.BAD_EXTLEN)
    if words > 1:
        shorter = _set_u16(_set_u16(wire, 4, len(wire) // 8 - 1), HDR, words - 1)[:-8]
        _raises(shorter, errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_eprop_count_exceeds_length() -> None:
    wire = _msg(SadbXEprop(replay=4))
    _raises(_set_u16(wire, HDR + 6, 1), errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_eprop_numalgs_exceeds_length() -> None:
    wire = next(v.wire for v in VECTORS if v.name == "extended_acquire")
    eprop = wire.index(h("1400 1200"))
    first_ecomb = eprop + 8
    bad = wire[:first_ecomb] + b"\x09" + wire[first_ecomb + 1 :]
    _raises(bad, errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_sens_bitmap_lengths_disagree() -> None:
    wire = next(v.wire for v in VECTORS if v.name == "extended_acquire")
    sens = wire.index(h("0300 0c00"))
    bad = wire[: sens + 9] + b"\x02" + wire[sens + 10 :]  # sadb_sens_sens_len 1 -> 2
    _raises(bad, errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_ident_too_short() -> None:
    wire = h("02 03 00 03 0300 0000 00000000 00000000 0100 0a00 0200 0000")
    _raises(wire, errno.EINVAL, Diagnostic.BAD_EXTLEN)


def test_ident_without_nul_is_cut_before_last_byte() -> None:
    wire = h("02 03 00 03 0500 0000 00000000 00000000")
    wire += h("0300 0a00 0200 0000 0000000000000000 6162636465666768")
    msg = decode(wire)
    assert msg.extensions[0].string == b"abcdefg"  # type: ignore[union-attr]


# -- the error type ---------------------------------------------------------------------


def test_error_type_and_text() -> None:
    err = _raises(_msg(SadbSa(1), SadbSa(1)), errno.EINVAL, Diagnostic.DUPLICATE_SA)
    assert isinstance(err, DecodeError)
    assert diagnostic_text(Diagnostic.DUPLICATE_SA) in str(err)
    assert diagnostic_text(Diagnostic.MISSING_SRC) == "Missing source address"
    assert diagnostic_text(4000).startswith("Unknown diagnostic")


def test_every_diagnostic_has_text() -> None:
    for code in range(84):
        assert not diagnostic_text(code).startswith("Unknown diagnostic"), code
