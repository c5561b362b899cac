"""MD4 (`larval.eap.md4`) against the test suite of RFC 1320 Appendix A.5, and the
padding boundaries where a message fills a block or spills into a second one."""

from __future__ import annotations

import pytest

from larval.eap.md4 import md4

# RFC 1320 A.5, "Test suite".
RFC1320_SUITE = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "043f8582f241db351ce627e153e7f0e4",
    ),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


@pytest.mark.parametrize(("message", "digest"), RFC1320_SUITE, ids=lambda v: repr(v)[:20])
def test_rfc1320_suite(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


def test_nt_password_hash_of_rfc2759_is_md4_of_utf16() -> None:
    # RFC 2759 §9.2: PasswordHash of "clientPass", the one use larval makes of MD4.
    assert md4("clientPass".encode("utf-16-le")).hex() == "44ebba8d5312b8d611474411f56989ae"


@pytest.mark.parametrize("size", [55, 56, 63, 64, 65, 119, 120, 128])
def test_lengths_around_block_boundaries_differ_and_are_16_bytes(size: int) -> None:
    # 55 bytes leave room for the 9 bytes of padding in one block, 56 do not.
    one, other = md4(b"x" * size), md4(b"x" * (size + 1))
    assert len(one) == 16 and one != other
