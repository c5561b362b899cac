"""The IKEv2 pseudorandom functions (HMAC-SHA2, RFC 4868) and prf+ (RFC 7296 §2.13).

``prf(K, S)`` is HMAC with the negotiated hash. HMAC takes keys of any length (shorter
ones are padded, longer ones hashed, RFC 2104 §2), which is why RFC 7296 §2.14 can key
it with Ni | Nr whole. ``prf+`` stretches one prf into as much keying material as the
SA needs:

    prf+ (K,S) = T1 | T2 | T3 | ...
    T1 = prf (K, S | 0x01),  Tn = prf (K, Tn-1 | S | n)

The counter is one octet, so at most 255 blocks can be produced.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import PrfId

__all__ = ["Prf"]

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    PrfId.HMAC_SHA2_256: hashes.SHA256,
    PrfId.HMAC_SHA2_384: hashes.SHA384,
    PrfId.HMAC_SHA2_512: hashes.SHA512,
}

_PRF_PLUS_MAX_BLOCKS = 255  # RFC 7296 §2.13: the iteration counter is a single octet


class Prf:
    """One negotiated PRF. Holds no key: every call takes its key."""

    __slots__ = ("_hash", "prf_id")

    def __init__(self, prf_id: int) -> None:
        try:
            hash_cls = _HASHES[prf_id]
        except KeyError:
            raise IkeCryptoError(f"unsupported PRF {PrfId(prf_id).name}") from None
        self.prf_id = PrfId(prf_id)
        self._hash = hash_cls()

    def __repr__(self) -> str:
        return f"Prf({self.prf_id.name})"

    @property
    def output_size(self) -> int:
        """Bytes of one prf output."""
        return self._hash.digest_size

    @property
    def key_size(self) -> int:
        """The preferred key length: SK_d, SK_pi and SK_pr are this long (RFC 7296 §2.14).

        RFC 4868 §2.1.2: for PRF_HMAC_SHA2 the preferred key size equals the output size.
        """
        return self._hash.digest_size

    def prf(self, key: bytes, data: bytes) -> bytes:
        """prf(key, data)."""
        mac = hmac.HMAC(key, self._hash)
        mac.update(data)
        return mac.finalize()

    def prf_plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """The first ``length`` bytes of prf+(key, seed) (RFC 7296 §2.13)."""
        if length < 0:
            raise IkeCryptoError(f"prf+ cannot produce {length} bytes")
        if length > _PRF_PLUS_MAX_BLOCKS * self.output_size:
            raise IkeCryptoError(
                f"prf+ with {self.prf_id.name} yields at most "
                f"{_PRF_PLUS_MAX_BLOCKS * self.output_size} bytes, {length} asked"
            )
        keyed = hmac.HMAC(key, self._hash)  # each block copies it: the key is set up once
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            mac = keyed.copy()
            mac.update(block + seed + bytes((counter,)))
            block = mac.finalize()
            out += block
            counter += 1
        return bytes(out[:length])
