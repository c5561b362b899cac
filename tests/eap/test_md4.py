"""MD4 (`larval.eap.md4`) against the test suite of RFC 1320 Appendix A.5, and against
OpenSSL at the padding boundaries where a message fills a block or spills into a second."""

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


# "x" repeated around the padding boundaries: 55 bytes leave room for the 9 bytes of
# padding in one block, 56 do not; 64 fill a block exactly. Digests computed with
# OpenSSL 3's legacy provider (``openssl dgst -md4 -provider legacy``).
BOUNDARIES = [
    (55, "92f32bb82c95ad10e8f87ae58ab06807"),
    (56, "374d5f08103b7092c83b4626ebceffab"),
    (63, "2870452596e98fffd48332289b3472b9"),
    (64, "b1abf956a5ae6f3221e5fe85e300fbb0"),
    (65, "afc1a3308fc176a53238a09aeddec2e6"),
    (119, "b55ae15e41e55643b0c3daad5e05c905"),
    (120, "d8f9adfc41ec43552619606c70cfd287"),
    (128, "7c087dd92a6743e09f3763a6d99c9d26"),
]


@pytest.mark.parametrize(("size", "digest"), BOUNDARIES)
def test_lengths_around_block_boundaries(size: int, digest: str) -> None:
    assert md4(b"x" * size).hex() == digest
