"""MD4 (RFC 1320), the one hash MSCHAPv2 needs that `cryptography` does not offer.

RFC 2759 §8.3 hashes the password with MD4 (NtPasswordHash) and hashes that hash again
(HashNtPasswordHash). OpenSSL 3 keeps MD4 in its legacy provider, which `hashlib` and
`cryptography` do not load, so larval carries this small implementation. It is used for
nothing else: MD4 is broken as a general hash (RFC 6150).
"""

from __future__ import annotations

import struct

__all__ = ["md4"]

_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<16I")

# RFC 1320 §3.4: the shift amounts of each round, by step within a group of four.
_R1_SHIFTS = (3, 7, 11, 19)
_R2_SHIFTS = (3, 5, 9, 13)
_R3_SHIFTS = (3, 9, 11, 15)
# Round 3 takes the words in bit-reversed order of their index.
_R3_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_R2_CONST = 0x5A827999  # RFC 1320 §3.4: the square root of 2, 2^30 scaled
_R3_CONST = 0x6ED9EBA1  # the square root of 3, 2^30 scaled


def _rotl(x: int, s: int) -> int:
    return ((x << s) | (x >> (32 - s))) & _MASK


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = _WORDS.unpack(block)
    a, b, c, d = state
    # RFC 1320 §3.4 Round 1: F(X,Y,Z) = XY v not(X) Z
    for i in range(16):
        f = (b & c) | (~b & d)
        a, b, c, d = d, _rotl((a + f + x[i]) & _MASK, _R1_SHIFTS[i % 4]), b, c
    # Round 2: G(X,Y,Z) = XY v XZ v YZ, words taken by column
    for i in range(16):
        g = (b & c) | (b & d) | (c & d)
        k = (i % 4) * 4 + i // 4
        a, b, c, d = d, _rotl((a + g + x[k] + _R2_CONST) & _MASK, _R2_SHIFTS[i % 4]), b, c
    # Round 3: H(X,Y,Z) = X xor Y xor Z
    for i in range(16):
        h = b ^ c ^ d
        k = _R3_ORDER[i]
        a, b, c, d = d, _rotl((a + h + x[k] + _R3_CONST) & _MASK, _R3_SHIFTS[i % 4]), b, c
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data`` (RFC 1320 §3)."""
    # §3.1-3.2: a one bit, zeros to 56 mod 64 bytes, then the bit length, little-endian.
    padded = (
        data
        + b"\x80"
        + bytes(-(len(data) + 9) % 64)
        + struct.pack("<Q", (len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    )
    # §3.3: the initial buffer A, B, C, D.
    state = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
    for offset in range(0, len(padded), 64):
        state = _compress(state, padded[offset : offset + 64])
    return struct.pack("<4I", *state)
