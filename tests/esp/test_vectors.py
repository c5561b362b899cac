"""Known-answer ESP packets, one per transform.

RFC 4106 has no ESP packet vectors, and the ChaCha20-Poly1305 AEAD vector of RFC 7634
is not an ESP packet either, so these packets come from an independent implementation:
scapy 2.8 `SecurityAssociation(ESP, spi=0x1001, seq_num=1, ...)` in tunnel mode with the
keys and IVs below, `raw(packet[ESP])`. larval, given the same keys and IV, must produce
the same bytes, and decrypt them back to the inner packet.
"""

from __future__ import annotations

import pytest

from larval.crypto.algorithms import (
    AALG_NONE,
    AALG_SHA256HMAC,
    AALG_SHA384HMAC,
    AALG_SHA512HMAC,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
)
from larval.esp import EspSa

# IPv4 198.51.100.1 -> 203.0.113.1, ICMP echo request id 0x1234 seq 1, data "larval".
INNER = bytes.fromhex("4500002200010000400114a4c6336401cb0071010800a586123400016c617276616c")

SALT = bytes.fromhex("a0a1a2a3")
AEAD_IV = bytes.fromhex("0000000000000001")  # the sequence number, larval's default
CBC_IV = bytes(range(0xF0, 0x100))

# (name, encrypt alg, encrypt key, auth alg, auth key, IV, expected ESP packet)
VECTORS = [
    (
        "aes128gcm16",
        EALG_AES_GCM_16, bytes(range(0x00, 0x10)) + SALT, AALG_NONE, b"", AEAD_IV,
        "00001001"  # SPI
        "00000001"  # Sequence Number
        "0000000000000001"  # IV (RFC 4106 §3.1); nonce = a0a1a2a3 || IV
        # ciphertext of INNER || Padding 01 02 || Pad Length 02 || Next Header 04
        "03711cd06c857750c76d52b31d37f067daf268829ef525247fc58b1170c72d648a97ceaf"
        "94e2a806c64fd60ea66438176449cff1",  # ICV, 16 bytes
    ),
    (
        "aes256gcm16",
        EALG_AES_GCM_16, bytes(range(0x00, 0x20)) + SALT, AALG_NONE, b"", AEAD_IV,
        "00001001" "00000001" "0000000000000001"
        "f5afb8ac6c75c6b45bdbb9cebd58698b861ae85c6060b9abbbe18d5f429f55e58a922b1a"
        "8c040cb0a13249d4172c8c8fd587bff8",
    ),
    (
        "chacha20poly1305",
        EALG_CHACHA20_POLY1305, bytes(range(0x80, 0xA0)) + SALT, AALG_NONE, b"", AEAD_IV,
        "00001001" "00000001" "0000000000000001"  # nonce = salt || IV (RFC 7634 §2)
        "df63ec27d8afea43bcd55aa1e1d90d65abe0a6f91f811ec4cd53aa1bb05e8c3e48a9938f"
        "875fc90a2cb501bcaf2c9e6ddc7e27f2",
    ),
    (
        "aes128-cbc-hmac-sha256-128",
        EALG_AES_CBC, bytes(range(0x10, 0x20)), AALG_SHA256HMAC, bytes(range(0x40, 0x60)),
        CBC_IV,
        "00001001" "00000001"
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"  # IV, 16 bytes (RFC 3602 §3)
        # 48 bytes: INNER (34) || Padding 01..0c || Pad Length 0c || Next Header 04
        "f07cd711ba647df6eb17559a7f07dddd94c57ff8bf44ca1d907cf12f12658a8c5ff13536"
        "982a7bb9fdfd06c4f7a8d1aa"
        "e5ad813987f6813afd3dc6b6252ede1e",  # ICV: HMAC-SHA-256 truncated to 128 bits
    ),
    (
        "aes256-cbc-hmac-sha384-192",
        EALG_AES_CBC, bytes(range(0x10, 0x30)), AALG_SHA384HMAC, bytes(range(0x40, 0x70)),
        CBC_IV,
        "00001001" "00000001" "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "5e811e1735c6098db9e4e1bcff1d4c57b8de8df3b76b2f8db393d3ec7d372f5d04a0279d"
        "ff6de34f480c0ca1c3b8bcb5"
        "99f9f9e29cf8fad16d683cbb7e010865357a7bf72e56064e",  # ICV, 192 bits
    ),
    (
        "aes256-cbc-hmac-sha512-256",
        EALG_AES_CBC, bytes(range(0x10, 0x30)), AALG_SHA512HMAC, bytes(range(0x40, 0x80)),
        CBC_IV,
        "00001001" "00000001" "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "5e811e1735c6098db9e4e1bcff1d4c57b8de8df3b76b2f8db393d3ec7d372f5d04a0279d"
        "ff6de34f480c0ca1c3b8bcb5"
        "9d3b0e18e2cce33bd6af06a105bd9921baf231945ee55ceecbe71538a519a4db",  # 256 bits
    ),
    (
        "null-hmac-sha256-128",
        EALG_NULL, b"", AALG_SHA256HMAC, bytes(range(0x40, 0x60)), b"",
        "00001001" "00000001"
        # RFC 2410: no IV; INNER in clear, 34 + 2 is 4-aligned: no padding,
        # Pad Length 00, Next Header 04
        "4500002200010000400114a4c6336401cb0071010800a586123400016c617276616c" "0004"
        "9b4d0e003e7befa2a3ed722beedbd1d7",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ealg", "ekey", "aalg", "akey", "iv", "expected"),
    [v[1:] for v in VECTORS],
    ids=[v[0] for v in VECTORS],
)
def test_known_answer(
    ealg: int, ekey: bytes, aalg: int, akey: bytes, iv: bytes, expected: str
) -> None:
    out = EspSa(0x1001, ealg, ekey, aalg, akey, iv_source=lambda seq: iv)
    esp = out.encrypt(INNER, 4)
    assert esp.hex() == expected
    inbound = EspSa(0x1001, ealg, ekey, aalg, akey)
    assert inbound.decrypt(bytes.fromhex(expected)) == (4, INNER)


def test_aead_default_iv_is_the_sequence_number() -> None:
    sa = EspSa(0x1001, EALG_AES_GCM_16, bytes(20))
    assert [sa.encrypt(b"x", 4)[8:16] for _ in range(3)] == [
        (n).to_bytes(8, "big") for n in (1, 2, 3)
    ]
