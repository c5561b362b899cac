"""IKEv2 transform identifiers (IANA, RFC 7296 §3.3.2) and the key sizes each one needs.

A `Transform` is one entry of an SA payload's proposal: its type, its id and, for the
variable-key ciphers, the Key Length attribute (attribute type 14, in bits, RFC 7296
§3.3.5). The same numbers serve the IKE SA and CHILD_SAs; the ESP-only ones (ENCR_NULL,
ESN) are listed too so a CHILD_SA proposal is expressed in the same vocabulary.
The enums are lenient (`larval.wire.LenientIntEnum`): a peer's unknown transform id
survives decoding and is simply not chosen (RFC 7296 §3.3.6).

The size helpers answer the questions key derivation asks (RFC 7296 §2.14, §2.17): how
many bytes of keying material a cipher takes (the salt of an AEAD included, RFC 5282
§7.1, RFC 4106 §8.1, RFC 7634 §2) and how long an integrity key is (RFC 4868 §2.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from larval.crypto.ike_errors import IkeCryptoError
from larval.wire import LenientIntEnum

__all__ = [
    "KEY_LENGTH_ATTRIBUTE",
    "DhId",
    "EncrId",
    "EsnId",
    "IntegId",
    "PrfId",
    "Transform",
    "TransformType",
    "encr_key_size",
    "integ_icv_size",
    "integ_key_size",
    "is_aead",
]

# RFC 7296 §3.3.5: the only transform attribute defined, in TV format, value in bits.
KEY_LENGTH_ATTRIBUTE = 14


class TransformType(LenientIntEnum):
    """Transform Type (RFC 7296 §3.3.2)."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class EncrId(LenientIntEnum):
    """Transform Type 1, encryption algorithms (RFC 7296 §3.3.2, RFC 5282 §8, RFC 7634 §4)."""

    NULL = 11  # ESP only (RFC 2410)
    AES_CBC = 12
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    CHACHA20_POLY1305 = 28


class PrfId(LenientIntEnum):
    """Transform Type 2, pseudorandom functions (RFC 4868 §4)."""

    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class IntegId(LenientIntEnum):
    """Transform Type 3, integrity algorithms (RFC 4868 §4); NONE goes with AEAD ciphers."""

    NONE = 0
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class DhId(LenientIntEnum):
    """Transform Type 4, key exchange groups (RFC 3526, RFC 5903, RFC 8031)."""

    NONE = 0
    MODP_2048 = 14
    MODP_3072 = 15
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31
    CURVE448 = 32


class EsnId(LenientIntEnum):
    """Transform Type 5, Extended Sequence Numbers (RFC 7296 §3.3.2)."""

    NO = 0
    YES = 1


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform of a proposal; ``key_bits`` is the Key Length attribute or None."""

    type: int
    id: int
    key_bits: int | None = None

    def __repr__(self) -> str:
        ttype = TransformType(self.type)
        enum_of: dict[int, type[LenientIntEnum]] = {
            TransformType.ENCR: EncrId,
            TransformType.PRF: PrfId,
            TransformType.INTEG: IntegId,
            TransformType.DH: DhId,
            TransformType.ESN: EsnId,
        }
        ids = enum_of.get(ttype)
        name = ids(self.id).name if ids is not None else str(self.id)
        bits = "" if self.key_bits is None else f", key_bits={self.key_bits}"
        return f"Transform({ttype.name}, {name}{bits})"


_AES_KEY_BITS = (128, 192, 256)
_AEAD_SALT = 4  # RFC 5282 §7.1 (GCM), RFC 7634 §2 (ChaCha20-Poly1305)
_AEADS = frozenset(
    {EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305}
)
# RFC 4868 §2.1.1: the key is as long as the hash output; §2.1.2: the ICV is half of it.
_INTEG_SIZES: dict[int, tuple[int, int]] = {
    IntegId.NONE: (0, 0),
    IntegId.HMAC_SHA2_256_128: (32, 16),
    IntegId.HMAC_SHA2_384_192: (48, 24),
    IntegId.HMAC_SHA2_512_256: (64, 32),
}


def is_aead(encr_id: int) -> bool:
    """Whether the cipher authenticates by itself (and so takes no INTEG transform)."""
    return encr_id in _AEADS


def encr_key_size(encr: Transform) -> int:
    """Bytes of keying material the cipher takes from prf+, the AEAD salt included."""
    if encr.type != TransformType.ENCR:
        raise IkeCryptoError(f"{encr!r} is not an encryption transform")
    if encr.id == EncrId.NULL:
        return 0
    if encr.id == EncrId.CHACHA20_POLY1305:
        # RFC 7634 §2/§3: a fixed 256-bit key, no Key Length attribute.
        if encr.key_bits not in (None, 256):
            raise IkeCryptoError(f"{encr!r}: ChaCha20-Poly1305 takes a 256-bit key only")
        return 32 + _AEAD_SALT
    if encr.id in (EncrId.AES_CBC, EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16):
        # RFC 7296 §3.3.5: AES has a variable key, so the attribute is required.
        if encr.key_bits not in _AES_KEY_BITS:
            raise IkeCryptoError(f"{encr!r}: AES needs a key length of 128, 192 or 256 bits")
        key = encr.key_bits // 8
        return key + _AEAD_SALT if encr.id in _AEADS else key
    raise IkeCryptoError(f"unsupported encryption transform {encr!r}")


def integ_key_size(integ_id: int) -> int:
    """Bytes of an integrity key (RFC 4868 §2.1.1); 0 for NONE."""
    try:
        return _INTEG_SIZES[integ_id][0]
    except KeyError:
        raise IkeCryptoError(f"unsupported integrity algorithm {IntegId(integ_id).name}") from None


def integ_icv_size(integ_id: int) -> int:
    """Bytes of the truncated ICV (RFC 4868 §2.1.2); 0 for NONE."""
    try:
        return _INTEG_SIZES[integ_id][1]
    except KeyError:
        raise IkeCryptoError(f"unsupported integrity algorithm {IntegId(integ_id).name}") from None
