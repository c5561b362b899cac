"""The ESP algorithms larval supports, described as PF_KEY names them.

The SADB checks keys against these descriptions (algorithm known, key length right) and
the PF_KEY REGISTER reply lists them in SUPPORTED_AUTH and SUPPORTED_ENCRYPT. Numbering
follows illumos, which uses the IANA ESP transform and integrity identifiers.

For the AEAD transforms the PF_KEY key carries the 4-byte salt after the cipher key,
as RFC 4106 §8.1 and RFC 7634 §2 describe for keying material from IKE, so a 128-bit
AES-GCM SA has a 160-bit SADB_EXT_KEY_ENCRYPT.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EspEncryptAlgorithm:
    """An ESP cipher: its SADB_EALG id, cipher key sizes (bits, salt excluded), IV and salt."""

    alg_id: int
    name: str
    key_bits: tuple[int, ...]
    iv_bits: int
    salt_bits: int = 0
    aead: bool = False
    icv_bytes: int = 0

    @property
    def min_bits(self) -> int:
        return min(self.key_bits)

    @property
    def max_bits(self) -> int:
        return max(self.key_bits)

    def accepts_key_bits(self, bits: int) -> bool:
        """Whether a PF_KEY key of `bits` (salt included) fits this cipher."""
        return bits - self.salt_bits in self.key_bits


@dataclass(frozen=True, slots=True)
class EspAuthAlgorithm:
    """An ESP integrity algorithm: its SADB_AALG id, key size and truncated ICV length."""

    alg_id: int
    name: str
    key_bits: int
    icv_bytes: int


# SADB_EALG values (illumos net/pfkeyv2.h; 28 is IANA's ChaCha20-Poly1305, RFC 7634 §4).
EALG_NULL = 11
EALG_AES_CBC = 12
EALG_AES_GCM_16 = 20
EALG_CHACHA20_POLY1305 = 28
# SADB_AALG values.
AALG_NONE = 0
AALG_SHA256HMAC = 5
AALG_SHA384HMAC = 6
AALG_SHA512HMAC = 7

ENCRYPT_ALGORITHMS: dict[int, EspEncryptAlgorithm] = {
    a.alg_id: a
    for a in (
        # RFC 2410: NULL encryption, only with an integrity algorithm.
        EspEncryptAlgorithm(EALG_NULL, "null", (0,), 0),
        # RFC 3602.
        EspEncryptAlgorithm(EALG_AES_CBC, "aes-cbc", (128, 192, 256), 128),
        # RFC 4106: 8-byte explicit IV, 4-byte salt, 16-byte ICV.
        EspEncryptAlgorithm(
            EALG_AES_GCM_16, "aes-gcm-16", (128, 192, 256), 64, 32, aead=True, icv_bytes=16
        ),
        # RFC 7634.
        EspEncryptAlgorithm(
            EALG_CHACHA20_POLY1305, "chacha20-poly1305", (256,), 64, 32, aead=True, icv_bytes=16
        ),
    )
}

AUTH_ALGORITHMS: dict[int, EspAuthAlgorithm] = {
    a.alg_id: a
    for a in (
        # RFC 4868 §2.1: the key is as long as the hash output; the ICV is half of it.
        EspAuthAlgorithm(AALG_SHA256HMAC, "hmac-sha256-128", 256, 16),
        EspAuthAlgorithm(AALG_SHA384HMAC, "hmac-sha384-192", 384, 24),
        EspAuthAlgorithm(AALG_SHA512HMAC, "hmac-sha512-256", 512, 32),
    )
}
