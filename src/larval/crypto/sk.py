"""Protection of the Encrypted payload, SK {...} (RFC 7296 §3.14, RFC 5282, RFC 7634).

The SK payload body is IV | ciphertext | ICV, where the ciphertext encrypts the inner
payloads followed by Padding and a one-octet Pad Length:

* AES-CBC with HMAC-SHA2 (RFC 7296 §3.14, RFC 4868): a random 16-byte IV; the padded
  plaintext is a whole number of 16-byte blocks; the ICV is the truncated HMAC over the
  message from the IKE header to the end of the ciphertext.
* AES-GCM with an 8/12/16-byte ICV (RFC 5282) and ChaCha20-Poly1305 (RFC 7634): an
  8-byte IV, nonce = salt | IV with the 4-byte salt from the end of SK_e; the associated
  data is everything before the IV, i.e. the IKE header, any unencrypted payloads and
  the SK payload header (RFC 5282 §5.1); the ICV is the tag. No block alignment is
  needed, so no padding is added (Pad Length 0).

Both cases take the same two inputs, which is what the message codec holds when it
builds or parses a message: ``aad``, the bytes from the start of the IKE header to the
end of the SK payload header (whose Payload Length already counts the IV, ciphertext
and ICV: `overhead` says how much to add to the plaintext length), and the payload body.

One `SkCipher` protects one direction of one IKE SA (SK_ei/SK_ai or SK_er/SK_ar). An
AEAD IV must never repeat under a key (RFC 5282 §3.1), so an instance counts its IVs up
from a random start; make one instance per direction and keep it.
"""

from __future__ import annotations

import hmac as std_hmac
from abc import ABC, abstractmethod

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from larval.crypto.ike_errors import IkeCryptoError, IkeIntegrityError
from larval.crypto.ike_transforms import (
    EncrId,
    IntegId,
    Transform,
    TransformType,
    encr_key_size,
    integ_icv_size,
    integ_key_size,
    is_aead,
)
from larval.crypto.randomness import RandomBytes, system_random

__all__ = ["SkCipher"]

_AES_BLOCK = 16
_AEAD_IV = 8  # RFC 5282 §3.1, RFC 7634 §2
_SALT = 4
_GCM_ICV = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    IntegId.HMAC_SHA2_256_128: hashes.SHA256,
    IntegId.HMAC_SHA2_384_192: hashes.SHA384,
    IntegId.HMAC_SHA2_512_256: hashes.SHA512,
}


class SkCipher(ABC):
    """Encrypts and decrypts SK payload bodies for one direction of an IKE SA."""

    iv_size: int
    icv_size: int
    # The padded plaintext (payloads | Padding | Pad Length) is a multiple of this.
    block_size: int

    def __init__(self, encr: Transform, integ_id: IntegId, random_bytes: RandomBytes) -> None:
        self.encr = encr
        self.integ_id = integ_id
        self._random = random_bytes

    @property
    @abstractmethod
    def keys(self) -> tuple[bytes, bytes]:
        """SK_e (with its salt, for an AEAD) and SK_a (b"" for an AEAD): what `of` took,
        for an IKE SA written out as a value (`larval.ike.state`)."""

    @property
    def next_iv(self) -> int | None:
        """The counter the next AEAD IV is taken from; None where each IV is random."""
        return None

    def __repr__(self) -> str:
        return f"SkCipher({self.encr!r}, {self.integ_id.name})"

    @staticmethod
    def of(
        encr: Transform,
        integ_id: int,
        encr_key: bytes,
        integ_key: bytes,
        *,
        random_bytes: RandomBytes = system_random,
        next_iv: int | None = None,
    ) -> SkCipher:
        """The cipher for a negotiated ENCR transform and INTEG id with SK_e and SK_a.

        ``encr_key`` includes the AEAD salt; ``integ_key`` is b"" for an AEAD; IVs are
        drawn from ``random_bytes``, or an AEAD's counted on from ``next_iv`` (the
        `next_iv` of the cipher it continues, so that no IV repeats under the key).
        Raises `IkeCryptoError` for an unsupported or inconsistent combination or a
        key of the wrong length.
        """
        integ = IntegId(integ_id)
        if encr.type != TransformType.ENCR:
            raise IkeCryptoError(f"{encr!r} is not an encryption transform")
        if encr.id == EncrId.NULL:
            raise IkeCryptoError("ENCR_NULL gives no confidentiality and is for ESP only")
        want = encr_key_size(encr)
        if len(encr_key) != want:
            raise IkeCryptoError(f"{encr!r} needs {want} bytes of SK_e, got {len(encr_key)}")
        if is_aead(encr.id):
            if integ != IntegId.NONE:
                # RFC 5282 §8: an AEAD cipher is never combined with an integrity transform.
                raise IkeCryptoError(
                    f"AEAD {encr!r} takes no integrity algorithm, got {integ.name}"
                )
            if integ_key:
                raise IkeCryptoError(f"AEAD {encr!r} takes no SK_a, got {len(integ_key)} bytes")
            return _AeadSkCipher(encr, integ, random_bytes, bytes(encr_key), next_iv)
        if integ == IntegId.NONE:
            # RFC 7296 §3.3: a non-AEAD cipher needs an integrity algorithm.
            raise IkeCryptoError(f"{encr!r} needs an integrity algorithm")
        want = integ_key_size(integ)
        if len(integ_key) != want:
            raise IkeCryptoError(f"{integ.name} needs {want} bytes of SK_a, got {len(integ_key)}")
        return _CbcHmacSkCipher(encr, integ, random_bytes, bytes(encr_key), bytes(integ_key))

    def pad_length(self, plaintext_len: int) -> int:
        """Octets of Padding the sender adds to ``plaintext_len`` octets of payloads."""
        return -(plaintext_len + 1) % self.block_size

    def overhead(self, plaintext_len: int) -> int:
        """SK payload body length minus ``plaintext_len``: IV, padding, Pad Length, ICV."""
        return self.iv_size + self.pad_length(plaintext_len) + 1 + self.icv_size

    def _pad(self, plaintext: bytes) -> bytes:
        # RFC 7296 §3.14: Padding may hold any value; zeros, then the Pad Length octet.
        pad = self.pad_length(len(plaintext))
        return bytes(plaintext) + bytes(pad) + bytes((pad,))

    @staticmethod
    def _unpad(padded: bytes) -> bytes:
        if not padded:
            raise IkeIntegrityError("SK payload has no Pad Length octet")
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise IkeIntegrityError(
                f"SK payload Pad Length {pad} exceeds the {len(padded)}-byte plaintext"
            )
        return padded[: len(padded) - pad - 1]

    @abstractmethod
    def encrypt(self, plaintext: bytes, aad: bytes, iv: bytes | None = None) -> bytes:
        """IV | ciphertext | ICV for the inner payloads ``plaintext``.

        ``aad`` is the message from the IKE header to the end of the SK payload header;
        ``iv`` is drawn here unless given (tests).
        """

    @abstractmethod
    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        """The inner payloads of the SK payload body ``data`` (IV | ciphertext | ICV);
        raises `IkeIntegrityError` if the ICV, the tag or the padding is wrong."""


class _CbcHmacSkCipher(SkCipher):
    """AES-CBC then HMAC-SHA2 over IKE header .. ciphertext (RFC 7296 §3.14)."""

    def __init__(
        self,
        encr: Transform,
        integ_id: IntegId,
        random_bytes: RandomBytes,
        encr_key: bytes,
        integ_key: bytes,
    ) -> None:
        super().__init__(encr, integ_id, random_bytes)
        self.iv_size = _AES_BLOCK
        self.block_size = _AES_BLOCK
        self.icv_size = integ_icv_size(integ_id)
        self._algorithm = algorithms.AES(encr_key)
        self._integ_key = integ_key
        self._hash = _HASHES[integ_id]()

    @property
    def keys(self) -> tuple[bytes, bytes]:
        return bytes(self._algorithm.key), self._integ_key

    def _icv(self, aad: bytes, iv: bytes, ciphertext: bytes) -> bytes:
        mac = hmac.HMAC(self._integ_key, self._hash)
        mac.update(aad)
        mac.update(iv)
        mac.update(ciphertext)
        # RFC 4868 §2.1.2: truncated to the leftmost half of the HMAC output.
        return mac.finalize()[: self.icv_size]

    def encrypt(self, plaintext: bytes, aad: bytes, iv: bytes | None = None) -> bytes:
        if iv is None:
            # RFC 7296 §3.14: the IV must be unpredictable to the peer.
            iv = self._random(self.iv_size)
        elif len(iv) != self.iv_size:
            raise IkeCryptoError(f"AES-CBC IV must be {self.iv_size} bytes, got {len(iv)}")
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(self._pad(plaintext)) + encryptor.finalize()
        return bytes(iv) + ciphertext + self._icv(aad, iv, ciphertext)

    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        data = bytes(data)
        body = len(data) - self.iv_size - self.icv_size
        if body < self.block_size or body % self.block_size:
            raise IkeIntegrityError(
                f"SK payload body of {len(data)} bytes does not hold a {self.iv_size}-byte "
                f"IV, whole {self.block_size}-byte blocks and a {self.icv_size}-byte ICV"
            )
        iv = data[: self.iv_size]
        ciphertext = data[self.iv_size : self.iv_size + body]
        icv = data[self.iv_size + body :]
        # Verify before decrypting (RFC 7296 §3.14), in constant time.
        if not std_hmac.compare_digest(self._icv(aad, iv, ciphertext), icv):
            raise IkeIntegrityError(f"SK payload ICV ({self.integ_id.name}) does not verify")
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        return self._unpad(decryptor.update(ciphertext) + decryptor.finalize())


class _AeadSkCipher(SkCipher):
    """AES-GCM (RFC 5282) or ChaCha20-Poly1305 (RFC 7634) with salt | IV nonces."""

    def __init__(
        self,
        encr: Transform,
        integ_id: IntegId,
        random_bytes: RandomBytes,
        encr_key: bytes,
        next_iv: int | None = None,
    ) -> None:
        super().__init__(encr, integ_id, random_bytes)
        self.iv_size = _AEAD_IV
        self.block_size = 1  # a stream mode: any plaintext length encrypts
        key, self._salt = encr_key[:-_SALT], encr_key[-_SALT:]
        self._key = key
        self._aead: AESGCM | ChaCha20Poly1305
        if encr.id == EncrId.CHACHA20_POLY1305:
            self.icv_size = 16  # RFC 7634 §2: the full Poly1305 tag
            self._aead = ChaCha20Poly1305(key)
        else:
            self.icv_size = _GCM_ICV[EncrId(encr.id)]
            self._aead = AESGCM(key)
        if next_iv is None:
            next_iv = int.from_bytes(random_bytes(_AEAD_IV), "big")
        elif not 0 <= next_iv < 1 << 64:
            raise IkeCryptoError(f"an AEAD IV counter is 64 bits, not {next_iv}")
        self._next_iv = next_iv

    @property
    def keys(self) -> tuple[bytes, bytes]:
        return self._key + self._salt, b""

    @property
    def next_iv(self) -> int | None:
        return self._next_iv

    def _take_iv(self) -> bytes:
        iv = self._next_iv.to_bytes(_AEAD_IV, "big")
        self._next_iv = (self._next_iv + 1) % (1 << 64)
        return iv

    def encrypt(self, plaintext: bytes, aad: bytes, iv: bytes | None = None) -> bytes:
        if iv is None:
            iv = self._take_iv()
        elif len(iv) != self.iv_size:
            raise IkeCryptoError(f"AEAD IV must be {self.iv_size} bytes, got {len(iv)}")
        sealed = self._aead.encrypt(self._salt + iv, self._pad(plaintext), bytes(aad))
        # A truncated GCM tag is the leading octets of the full tag (RFC 5282 §3, NIST
        # SP 800-38D §5.2.1.2); cryptography's one-shot API always makes 16.
        return bytes(iv) + sealed[: len(sealed) - 16 + self.icv_size]

    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        data = bytes(data)
        if len(data) < self.iv_size + 1 + self.icv_size:
            raise IkeIntegrityError(
                f"SK payload body of {len(data)} bytes does not hold a {self.iv_size}-byte "
                f"IV, a Pad Length octet and a {self.icv_size}-byte ICV"
            )
        nonce = self._salt + data[: self.iv_size]
        ciphertext = data[self.iv_size : len(data) - self.icv_size]
        tag = data[len(data) - self.icv_size :]
        try:
            if self.icv_size == 16:
                padded = self._aead.decrypt(nonce, ciphertext + tag, bytes(aad))
            else:
                decryptor = Cipher(
                    algorithms.AES(self._key), modes.GCM(nonce, tag, min_tag_length=self.icv_size)
                ).decryptor()
                decryptor.authenticate_additional_data(bytes(aad))
                padded = decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag:
            raise IkeIntegrityError(f"SK payload tag ({self.encr!r}) does not verify") from None
        return self._unpad(padded)
