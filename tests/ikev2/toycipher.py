"""A stand-in for the crypto layer's SK cipher, for framing tests only: no secrecy at all.

It XORs the padded plaintext with one byte, uses a 4-byte counter as IV and a truncated
SHA-256 of ``aad | IV | ciphertext`` as ICV, so a test sees whether the codec passed the
final header bytes as ``aad`` and framed IV, ciphertext and ICV where RFC 7296 §3.14
puts them. Padding to 8-byte blocks makes the overhead depend on the length, as CBC's does.
"""

from __future__ import annotations

import hashlib

from larval.errors import LarvalError

BLOCK = 8
IV_SIZE = 4
ICV_SIZE = 8
KEY = 0x5A


class ToyIntegrityError(LarvalError):
    """The ICV did not verify."""


class ToyCipher:
    def __init__(self) -> None:
        self.counter = 0
        self.aads: list[bytes] = []

    def overhead(self, n: int) -> int:
        pad = -(n + 1) % BLOCK
        return IV_SIZE + pad + 1 + ICV_SIZE

    def protect(self, aad: bytes, plaintext: bytes) -> bytes:
        self.aads.append(aad)
        self.counter += 1
        iv = self.counter.to_bytes(IV_SIZE, "big")
        pad = -(len(plaintext) + 1) % BLOCK
        padded = plaintext + bytes(pad) + bytes([pad])
        ciphertext = bytes(b ^ KEY for b in padded)
        icv = hashlib.sha256(aad + iv + ciphertext).digest()[:ICV_SIZE]
        return iv + ciphertext + icv

    def unprotect(self, aad: bytes, body: bytes) -> bytes:
        if len(body) < IV_SIZE + 1 + ICV_SIZE:
            raise ToyIntegrityError("SK body too short")
        iv, ciphertext, icv = body[:IV_SIZE], body[IV_SIZE:-ICV_SIZE], body[-ICV_SIZE:]
        if hashlib.sha256(aad + iv + ciphertext).digest()[:ICV_SIZE] != icv:
            raise ToyIntegrityError("ICV mismatch")
        padded = bytes(b ^ KEY for b in ciphertext)
        pad = padded[-1]
        if pad >= len(padded):
            raise ToyIntegrityError("bad Pad Length")
        return padded[: -1 - pad]
