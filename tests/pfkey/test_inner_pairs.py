"""larval's X_LARVAL_INNER_PAIRS (type 64): the inner selector pairs of a tunnel-mode SA
after the first, e.g. the IPv6 pair of a CHILD_SA that carries IPv4 too.

The bytes are written out by hand here from the layout in the extension's docstring, not
by the encoder under test.
"""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest

from larval.pfkey import (
    Diagnostic,
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbSa,
    SadbXInnerPairs,
    SaType,
    decode,
    diagnostic_text,
)

V6_NET = ipaddress.IPv6Address("2001:db8:1::")
V6_VIP = ipaddress.IPv6Address("2001:db8:3::1")
V4_NET = ipaddress.IPv4Address("203.0.113.0")
V4_VIP = ipaddress.IPv4Address("10.3.0.1")


def sockaddr_in6_ext(ext_type: int, addr: ipaddress.IPv6Address, prefixlen: int) -> bytes:
    # sadb_address (len 5 words, type, proto 0, prefixlen, reserved), then illumos
    # sockaddr_in6: family 26 (host order), port, flowinfo, address, scope id, src id.
    return (
        struct.pack("<HHBBH", 5, ext_type, 0, prefixlen, 0)
        + struct.pack("<H", 26)
        + struct.pack(">HI", 0, 0)
        + addr.packed
        + struct.pack("<II", 0, 0)
    )


def sockaddr_in_ext(ext_type: int, addr: ipaddress.IPv4Address, prefixlen: int) -> bytes:
    return (
        struct.pack("<HHBBH", 3, ext_type, 0, prefixlen, 0)
        + struct.pack("<H", 2)
        + struct.pack(">H", 0)
        + addr.packed
        + bytes(8)
    )


#: One IPv6 pair: header word (len 11, type 64, count 1, reserved), then 5 + 5 words.
ONE_V6_PAIR = (
    struct.pack("<HHHH", 11, 64, 1, 0)
    + sockaddr_in6_ext(7, V6_NET, 48)
    + sockaddr_in6_ext(22, V6_VIP, 128)
)

PAIR_V6 = (
    SadbAddress(ExtType.ADDRESS_PROXY, V6_NET, prefixlen=48),
    SadbAddress(ExtType.X_ADDRESS_INNER_DST, V6_VIP, prefixlen=128),
)
PAIR_V4 = (
    SadbAddress(ExtType.ADDRESS_PROXY, V4_NET, prefixlen=24),
    SadbAddress(ExtType.X_ADDRESS_INNER_DST, V4_VIP, prefixlen=32),
)


def message(*exts: object) -> bytes:
    base = (SadbSa(0x1234, state=1), *PAIR_V4)
    return PfkeyMessage(
        SadbMsgType.ADD,
        SaType.ESP,
        extensions=(*base, *exts),  # type: ignore[arg-type]
    ).encode()


def test_the_number_is_above_illumos_and_named() -> None:
    assert ExtType.X_LARVAL_INNER_PAIRS == 64 > 27
    assert Diagnostic.MALFORMED_INNER_PAIRS == 128
    assert "inner selector pairs" in diagnostic_text(Diagnostic.MALFORMED_INNER_PAIRS)


def test_one_pair_encodes_to_the_bytes_of_the_layout() -> None:
    assert SadbXInnerPairs((PAIR_V6,)).encode() == ONE_V6_PAIR
    assert len(ONE_V6_PAIR) == 11 * 8


def test_decode_reads_the_layout_and_reencodes_byte_for_byte() -> None:
    wire = message(SadbXInnerPairs((PAIR_V6, PAIR_V4)))
    msg = decode(wire)
    ext = msg.find(ExtType.X_LARVAL_INNER_PAIRS)
    assert isinstance(ext, SadbXInnerPairs)
    assert ext.pairs == (PAIR_V6, PAIR_V4)
    assert msg.encode() == wire
    # Two pairs: header word, IPv6 pair (10 words), IPv4 pair (6 words).
    assert wire[-17 * 8 :][:8] == struct.pack("<HHHH", 17, 64, 2, 0)
    assert wire.endswith(sockaddr_in_ext(7, V4_NET, 24) + sockaddr_in_ext(22, V4_VIP, 32))


def test_an_empty_list_is_one_word() -> None:
    assert SadbXInnerPairs(()).encode() == struct.pack("<HHHH", 1, 64, 0, 0)
    assert decode(message(SadbXInnerPairs(()))).find(64) == SadbXInnerPairs(())


def test_a_one_pair_message_has_no_inner_pairs_extension_and_keeps_its_bytes() -> None:
    # The first pair stays in ADDRESS_PROXY / X_ADDRESS_INNER_DST, as before: a message
    # without further pairs is the one illumos would read.
    wire = message()
    assert decode(wire).find(ExtType.X_LARVAL_INNER_PAIRS) is None
    expected = (
        struct.pack("<BBBBHHII", 2, SadbMsgType.ADD, 0, SaType.ESP, len(wire) // 8, 0, 0, 0)
        + SadbSa(0x1234, state=1).encode()
        + sockaddr_in_ext(7, V4_NET, 24)
        + sockaddr_in_ext(22, V4_VIP, 32)
    )
    assert wire == expected


def test_a_parser_that_does_not_know_the_type_can_skip_it() -> None:
    # RFC 2367 §2.2: the generic header's length covers the whole list, so a reader that
    # walks extensions by length lands on the next one.
    wire = message(SadbXInnerPairs((PAIR_V6,)), SadbAddress(ExtType.X_ADDRESS_NATT_REM, V4_VIP))
    off, types = 16, []
    while off < len(wire):
        words, ext_type = struct.unpack_from("<HH", wire, off)
        types.append(ext_type)
        off += words * 8
    assert off == len(wire)
    assert types == [1, 7, 22, 64, 21]


def test_encode_refuses_a_pair_of_other_address_types() -> None:
    wrong = (SadbAddress(ExtType.ADDRESS_SRC, V6_NET), PAIR_V6[1])
    with pytest.raises(ValueError, match="types 7 and 22"):
        SadbXInnerPairs((wrong,)).encode()


def _append(ext: bytes) -> bytes:
    """The one-pair message with `ext` after its extensions, its length fixed."""
    wire = message()
    total = (len(wire) + len(ext)) // 8
    return wire[:4] + struct.pack("<H", total) + wire[6:] + ext


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # The count claims two pairs; one is there.
        (struct.pack("<HH", 2, 0) + ONE_V6_PAIR[8:], "pair 2 of 2 runs past the list"),
        # Destination before source.
        (struct.pack("<HH", 1, 0) + sockaddr_in6_ext(22, V6_VIP, 128)
         + sockaddr_in6_ext(7, V6_NET, 48), "pair 1: address of type 22 where 7 belongs"),
        # Bytes after the pairs the count names.
        (struct.pack("<HH", 0, 0) + sockaddr_in6_ext(7, V6_NET, 48), "40 bytes after 0 pairs"),
        # A nested address whose length runs past the list.
        (struct.pack("<HH", 1, 0) + struct.pack("<HH", 11, 7) + ONE_V6_PAIR[12:],
         "pair 1: address of 11 words does not fit the list"),
        # A nested address of a family PF_KEY does not carry.
        (struct.pack("<HH", 1, 0)
         + ONE_V6_PAIR[8:16] + struct.pack("<H", 99) + ONE_V6_PAIR[18:],
         "pair 1: address extension type 7: unknown address family 99"),
    ],
    ids=["short", "order", "trailing", "nested-length", "family"],
)  # fmt: skip
def test_malformed_lists_are_refused_with_their_diagnostic(body: bytes, says: str) -> None:
    with pytest.raises(PfkeyError) as info:
        decode(_append(struct.pack("<HH", (4 + len(body)) // 8, 64) + body))
    assert (info.value.errno, info.value.diagnostic) == (
        errno.EINVAL,
        Diagnostic.MALFORMED_INNER_PAIRS,
    )
    assert says in str(info.value)


def test_a_repeated_list_is_refused() -> None:
    ext = SadbXInnerPairs((PAIR_V6,)).encode()
    with pytest.raises(PfkeyError) as info:
        decode(_append(ext + ext))
    assert (info.value.errno, info.value.diagnostic) == (
        errno.EINVAL,
        Diagnostic.MALFORMED_INNER_PAIRS,
    )
    assert "duplicate extension type 64" in str(info.value)


def test_larval_sa_shows_the_further_pairs() -> None:
    from larval.commands.sa import sa_to_dict

    shown = sa_to_dict(decode(message(SadbXInnerPairs((PAIR_V6,)))))
    assert (shown["inner_src"], shown["inner_dst"]) == ("203.0.113.0/24", "10.3.0.1/32")
    assert shown["inner_pairs"] == [["2001:db8:1::/48", "2001:db8:3::1/128"]]
