"""The ESP transforms: cipher and integrity objects built once per SA from `cryptography`.

A transform turns the ESP header, the payload-plus-trailer and an IV into the protected
packet (`seal`) and back (`open`). It owns the keys; nothing here prints them.

* AEAD (RFC 4106 AES-GCM, RFC 7634 ChaCha20-Poly1305): the PF_KEY key ends with a 4-byte
  salt; nonce = salt || 8-byte IV; AAD = SPI || Sequence Number, or SPI || Seqh || Seql
  with ESN (RFC 4106 §5, RFC 7634 §2.1); the ICV is the 16-byte tag.
* AES-CBC (RFC 3602) or NULL (RFC 2410) followed by HMAC-SHA2 truncated to half the
  hash (RFC 4868 §2.1): the ICV covers SPI through the ciphertext and, with ESN, the high
  32 bits of the sequence number appended for the computation only (RFC 4303 §2.2.1).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from larval.crypto.algorithms import (
    AALG_NONE,
    AUTH_ALGORITHMS,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
    ENCRYPT_ALGORITHMS,
)
from larval.crypto.randomness import RandomBytes, system_random
from larval.esp.errors import EspAuthError, EspConfigError

__all__ = [
    "BytesLike",
    "EspAeadTransform",
    "EspCipherThenMacTransform",
    "EspTransform",
    "IvSource",
    "make_transform",
]

BytesLike = bytes | bytearray | memoryview
# Called with the 64-bit sequence number of the packet being sent; returns its IV.
IvSource = Callable[[int], bytes]

_SEQ64 = struct.Struct(">Q")
_ESP_HEADER_LEN = 8  # SPI + Sequence Number (RFC 4303 §2)

_HASHES = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}


class EspTransform(Protocol):
    """What `EspSa` needs from a transform."""

    name: str
    iv_size: int
    icv_size: int
    # Cipher block size: the ciphertext must be a whole number of these (RFC 4303 §2.4).
    block_size: int
    # Payload + trailer is padded to this: the block size, at least 4 (RFC 4303 §2.4).
    pad_to: int

    def default_iv(self, seq: int) -> bytes:
        """The IV for the packet with 64-bit sequence number `seq`."""
        ...

    def seal(self, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes) -> bytes:
        """ESP header || IV || ciphertext || ICV. `seq_hi` is b"" without ESN."""
        ...

    def seal_into(
        self, out: memoryview, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes
    ) -> None:
        """Write what `seal` returns into `out`, which is exactly that long."""
        ...

    def open(self, esp: BytesLike, seq_hi: bytes) -> bytes:
        """Verify and decrypt a whole ESP packet; payload || padding || Pad Length || NH.

        The caller has checked the length. Raises `EspAuthError` if the ICV is wrong.
        """
        ...

    def open_into(self, esp: BytesLike, seq_hi: bytes, out: memoryview) -> None:
        """Write what `open` returns into `out`, which is exactly that long."""
        ...


class EspAeadTransform:
    """AES-GCM with a 16-byte ICV (RFC 4106) or ChaCha20-Poly1305 (RFC 7634)."""

    __slots__ = ("_aead", "_salt", "name")

    iv_size = 8  # RFC 4106 §3.1, RFC 7634 §2
    icv_size = 16
    block_size = 1
    pad_to = 4

    def __init__(self, name: str, aead: AESGCM | ChaCha20Poly1305, salt: bytes) -> None:
        self.name = name
        self._aead = aead
        self._salt = salt

    def __repr__(self) -> str:
        return f"EspAeadTransform({self.name})"

    def default_iv(self, seq: int) -> bytes:
        # RFC 4106 §3.1: the IV must not repeat for a key; the sequence number never does.
        return _SEQ64.pack(seq)

    def seal(self, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes) -> bytes:
        # RFC 4106 §5: with ESN the AAD is SPI || Seqh || Seql.
        aad = header[:4] + seq_hi + header[4:] if seq_hi else header
        return header + iv + self._aead.encrypt(self._salt + iv, plaintext, aad)

    def seal_into(
        self, out: memoryview, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes
    ) -> None:
        aad = header[:4] + seq_hi + header[4:] if seq_hi else header
        out[:16] = header + iv
        self._aead.encrypt_into(self._salt + iv, plaintext, aad, out[16:])

    def open(self, esp: BytesLike, seq_hi: bytes) -> bytes:
        aad = bytes(esp[:4]) + seq_hi + bytes(esp[4:8]) if seq_hi else bytes(esp[:8])
        try:
            return self._aead.decrypt(self._salt + bytes(esp[8:16]), memoryview(esp)[16:], aad)
        except InvalidTag:
            raise EspAuthError("ICV mismatch") from None

    def open_into(self, esp: BytesLike, seq_hi: bytes, out: memoryview) -> None:
        aad = bytes(esp[:4]) + seq_hi + bytes(esp[4:8]) if seq_hi else bytes(esp[:8])
        nonce = self._salt + bytes(esp[8:16])
        try:
            self._aead.decrypt_into(nonce, memoryview(esp)[16:], aad, out)
        except InvalidTag:
            raise EspAuthError("ICV mismatch") from None


class EspCipherThenMacTransform:
    """AES-CBC (RFC 3602) or NULL (RFC 2410), then HMAC-SHA2 (RFC 4868)."""

    __slots__ = (
        "_aes",
        "_mac",
        "_random",
        "block_size",
        "icv_size",
        "iv_size",
        "name",
        "pad_to",
    )

    def __init__(
        self,
        name: str,
        aes: algorithms.AES | None,
        mac: hmac.HMAC,
        icv_size: int,
        random_bytes: RandomBytes = system_random,
    ) -> None:
        self.name = name
        self._aes = aes
        self._mac = mac
        self._random = random_bytes
        self.icv_size = icv_size
        self.iv_size = 16 if aes is not None else 0  # RFC 3602 §2.1; RFC 2410 has none
        self.block_size = 16 if aes is not None else 1
        self.pad_to = 16 if aes is not None else 4

    def __repr__(self) -> str:
        return f"EspCipherThenMacTransform({self.name})"

    def default_iv(self, seq: int) -> bytes:
        # RFC 3602 §2.1: the CBC IV must be unpredictable.
        return self._random(self.iv_size)

    def _icv(self, covered: BytesLike, seq_hi: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(covered)
        if seq_hi:
            # RFC 4303 §2.2.1: Seqh is part of the ICV computation, not of the packet.
            mac.update(seq_hi)
        return mac.digest()[: self.icv_size]

    def _encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        if self._aes is None:
            return plaintext
        encryptor = Cipher(self._aes, modes.CBC(iv)).encryptor()
        return encryptor.update(plaintext) + encryptor.finalize()

    def seal(self, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes) -> bytes:
        covered = header + iv + self._encrypt(iv, plaintext)
        return covered + self._icv(covered, seq_hi)

    def seal_into(
        self, out: memoryview, header: bytes, seq_hi: bytes, iv: bytes, plaintext: bytes
    ) -> None:
        out[:] = self.seal(header, seq_hi, iv, plaintext)

    def open_into(self, esp: BytesLike, seq_hi: bytes, out: memoryview) -> None:
        out[:] = self.open(esp, seq_hi)

    def open(self, esp: BytesLike, seq_hi: bytes) -> bytes:
        view = memoryview(esp)
        end = len(view) - self.icv_size
        if not hmac.compare_digest(self._icv(view[:end], seq_hi), view[end:]):
            raise EspAuthError("ICV mismatch")
        start = _ESP_HEADER_LEN + self.iv_size
        if self._aes is None:
            return bytes(view[start:end])
        decryptor = Cipher(self._aes, modes.CBC(bytes(view[8:start]))).decryptor()
        return decryptor.update(view[start:end]) + decryptor.finalize()


def make_transform(
    encrypt_alg: int,
    encrypt_key: bytes,
    auth_alg: int = AALG_NONE,
    auth_key: bytes = b"",
    random_bytes: RandomBytes = system_random,
) -> EspAeadTransform | EspCipherThenMacTransform:
    """Build the transform for PF_KEY algorithm ids and keys; refuse bad combinations.

    AES-CBC IVs are drawn from ``random_bytes``; an AEAD's IV is its sequence number.
    Messages name algorithms and lengths, never key bytes.
    """
    ealg = ENCRYPT_ALGORITHMS.get(encrypt_alg)
    if ealg is None:
        known = ", ".join(f"{a.alg_id} ({a.name})" for a in ENCRYPT_ALGORITHMS.values())
        raise EspConfigError(f"unknown ESP encryption algorithm {encrypt_alg}; known: {known}")
    key_bits = len(encrypt_key) * 8
    if not ealg.accepts_key_bits(key_bits):
        sizes = ", ".join(str(b + ealg.salt_bits) for b in ealg.key_bits)
        raise EspConfigError(
            f"{ealg.name}: encryption key of {key_bits} bits; expected {sizes} bits"
            + (f" (cipher key and {ealg.salt_bits}-bit salt)" if ealg.salt_bits else "")
        )
    if ealg.aead:
        # RFC 4303 §3.2: a combined-mode algorithm provides integrity itself.
        if auth_alg != AALG_NONE or auth_key:
            raise EspConfigError(f"{ealg.name} is a combined-mode algorithm: no integrity alg")
        salt_len = ealg.salt_bits // 8
        key, salt = encrypt_key[:-salt_len], encrypt_key[-salt_len:]
        if encrypt_alg == EALG_AES_GCM_16:
            return EspAeadTransform(f"{ealg.name}-{len(key) * 8}", AESGCM(key), salt)
        assert encrypt_alg == EALG_CHACHA20_POLY1305
        return EspAeadTransform(ealg.name, ChaCha20Poly1305(key), salt)

    aalg = AUTH_ALGORITHMS.get(auth_alg)
    if aalg is None:
        if auth_alg == AALG_NONE:
            # RFC 4303 §3.2 forbids NULL with no integrity; RFC 8221 §5 says the same of
            # confidentiality-only ESP in practice, so larval refuses both.
            raise EspConfigError(f"{ealg.name} needs an integrity algorithm")
        known = ", ".join(f"{a.alg_id} ({a.name})" for a in AUTH_ALGORITHMS.values())
        raise EspConfigError(f"unknown ESP integrity algorithm {auth_alg}; known: {known}")
    if len(auth_key) * 8 != aalg.key_bits:
        # RFC 4868 §2.1.1: the HMAC key is as long as the hash output.
        raise EspConfigError(
            f"{aalg.name}: integrity key of {len(auth_key) * 8} bits; expected {aalg.key_bits}"
        )
    mac = hmac.new(auth_key, digestmod=_HASHES[auth_alg])
    if encrypt_alg == EALG_NULL:
        return EspCipherThenMacTransform(
            f"null-{aalg.name}", None, mac, aalg.icv_bytes, random_bytes
        )
    assert encrypt_alg == EALG_AES_CBC
    name = f"{ealg.name}-{key_bits}-{aalg.name}"
    return EspCipherThenMacTransform(
        name, algorithms.AES(encrypt_key), mac, aalg.icv_bytes, random_bytes
    )
