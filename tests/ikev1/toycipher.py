"""A stand-in for the crypto layer's IKEv1 cipher, for framing tests only: no secrecy.

A CBC-shaped toy: each 8-byte block is XORed with the previous ciphertext block (the
IV for the first) and with a constant key byte. Like real CBC it needs whole blocks, keeps
the length, and leaves the last ciphertext block as the next message's IV (RFC 2409
Appendix B), so a test sees whether the codec padded, framed and passed the right bytes.
"""

from __future__ import annotations

from larval.errors import LarvalError

BLOCK = 8
KEY = 0x5A


class ToyCipherError(LarvalError):
    """Input that is not a whole number of blocks."""


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y ^ KEY for x, y in zip(a, b, strict=True))


class ToyCipher:
    def __init__(self, iv: bytes = bytes(BLOCK)) -> None:
        self.iv = iv
        self.plaintexts: list[bytes] = []

    def encrypt(self, plaintext: bytes) -> bytes:
        if len(plaintext) % BLOCK:
            raise ToyCipherError(f"{len(plaintext)} bytes, not whole blocks")
        self.plaintexts.append(plaintext)
        out = b""
        prev = self.iv
        for i in range(0, len(plaintext), BLOCK):
            prev = _xor(plaintext[i : i + BLOCK], prev)
            out += prev
        self.iv = prev
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) % BLOCK:
            raise ToyCipherError(f"{len(ciphertext)} bytes, not whole blocks")
        out = b""
        prev = self.iv
        for i in range(0, len(ciphertext), BLOCK):
            block = ciphertext[i : i + BLOCK]
            out += _xor(block, prev)
            prev = block
        self.iv = prev
        return out
