"""IKEv1 keying: SKEYID and its children, the exchange hashes, the IVs, KEYMAT, the cipher.

Phase 1 (RFC 2409 §5, §5.1, §5.4), with ``prf`` the negotiated PRF or, when none was
negotiated, the HMAC of the negotiated hash (RFC 2409 §4):

    SKEYID   = prf(Ni_b | Nr_b, g^xy)                    signatures (§5.1)
    SKEYID   = prf(pre-shared-key, Ni_b | Nr_b)          pre-shared key (§5.4)
    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    HASH_I   = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
    HASH_R   = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)

0, 1 and 2 are single octets. SAi_b is the initiator's whole SA payload body without its
generic header; IDii_b and IDir_b are ID payload bodies likewise.

Appendix B: the cipher key is SKEYID_e cut to length, or, when SKEYID_e is too short,
the first bytes of K1 | K2 | ... with K1 = prf(SKEYID_e, 0) and Kn+1 = prf(SKEYID_e, Kn).
The first Phase 1 IV is hash(g^xi | g^xr); the first IV of a Phase 2 or Informational
exchange is hash(last Phase 1 CBC block | M-ID); each is cut to the cipher's block, and
every later message of an exchange takes the last ciphertext block of the one before.

Quick Mode (§5.5) and Informational exchanges (§5.7), M-ID four octets big-endian:

    HASH(1) = prf(SKEYID_a, M-ID | <payloads after HASH(1)>)
    HASH(2) = prf(SKEYID_a, M-ID | Ni_b | <payloads after HASH(2)>)
    HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
    HASH    = prf(SKEYID_a, M-ID | N/D)                  Informational
    KEYMAT  = K1 | K2 | ...,  K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
              Kn+1 = prf(SKEYID_d, Kn | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)

"Payloads after" the hash are taken whole, generic headers included, padding excluded.
Ni_b and Nr_b are nonce payload bodies. Every value is an argument, so the derivations
are deterministic; no repr here shows a key byte.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from larval.crypto.dh import DhGroup, _ModpGroup
from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import DhId

__all__ = [
    "Ikev1Cipher",
    "Ikev1EncrId",
    "Ikev1Prf",
    "Phase1Keys",
    "appendix_b_key",
    "derive_phase1",
    "hash1",
    "hash2",
    "hash3",
    "hash_i",
    "hash_r",
    "ikev1_dh_group",
    "informational_hash",
    "informational_iv",
    "pad",
    "phase1_iv",
    "phase2_iv",
    "quick_mode_keymat",
    "skeyid_psk",
    "skeyid_sig",
]

_COOKIE_SIZE: Final = 8  # RFC 2408 §3.1: Initiator and Responder Cookies are 8 octets
_MAX_MESSAGE_ID: Final = 0xFFFFFFFF  # RFC 2408 §3.1: the Message ID is 4 octets

# RFC 2409 §4: with no PRF attribute the PRF is HMAC of the negotiated hash. Appendix A
# lists MD5 and SHA; the IANA IKE attribute registry adds SHA2-256, -384 and -512.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class Ikev1Prf:
    """The negotiated hash and its HMAC, the Phase 1 PRF (RFC 2409 §4). Holds no key."""

    __slots__ = ("_hash", "hash_name")

    def __init__(self, hash_name: str) -> None:
        try:
            hash_cls = _HASHES[hash_name]
        except KeyError:
            raise IkeCryptoError(
                f"unsupported IKEv1 hash {hash_name!r} (one of {', '.join(_HASHES)})"
            ) from None
        self.hash_name = hash_name
        self._hash = hash_cls()

    def __repr__(self) -> str:
        return f"Ikev1Prf({self.hash_name})"

    @property
    def output_size(self) -> int:
        """Bytes of one prf (and one hash) output."""
        return self._hash.digest_size

    def prf(self, key: bytes, data: bytes) -> bytes:
        """prf(key, data): HMAC keyed with ``key`` (RFC 2104 takes keys of any length)."""
        mac = hmac.HMAC(key, self._hash)
        mac.update(data)
        return mac.finalize()

    def hash(self, data: bytes) -> bytes:
        """The negotiated hash itself, which the IVs use (RFC 2409 Appendix B)."""
        digest = hashes.Hash(self._hash)
        digest.update(data)
        return digest.finalize()


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Keys:
    """SKEYID, its three children, the cipher key and the first Phase 1 IV (RFC 2409 §5)."""

    skeyid: bytes
    skeyid_d: bytes
    skeyid_a: bytes
    skeyid_e: bytes
    enc_key: bytes
    iv: bytes

    def __repr__(self) -> str:
        return (
            f"Phase1Keys(skeyid={len(self.skeyid)}B, skeyid_d={len(self.skeyid_d)}B, "
            f"skeyid_a={len(self.skeyid_a)}B, skeyid_e={len(self.skeyid_e)}B, "
            f"enc_key={len(self.enc_key)}B, iv={len(self.iv)}B)"
        )


# -- Phase 1 (RFC 2409 §5) -------------------------------------------------------------


def skeyid_psk(prf: Ikev1Prf, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID for pre-shared key authentication: prf(pre-shared-key, Ni_b | Nr_b) (§5.4)."""
    return prf.prf(psk, ni_b + nr_b)


def skeyid_sig(prf: Ikev1Prf, ni_b: bytes, nr_b: bytes, g_xy: bytes) -> bytes:
    """SKEYID for signature authentication: prf(Ni_b | Nr_b, g^xy) (§5.1)."""
    return prf.prf(ni_b + nr_b, g_xy)


def derive_phase1(
    prf: Ikev1Prf,
    skeyid: bytes,
    g_xy: bytes,
    cky_i: bytes,
    cky_r: bytes,
    encr_key_len: int,
    block_size: int,
    *,
    g_xi: bytes,
    g_xr: bytes,
) -> Phase1Keys:
    """SKEYID_d, SKEYID_a, SKEYID_e (§5), the cipher key and first IV (Appendix B).

    ``g_xi`` and ``g_xr`` are the initiator's and responder's KE payload bodies; the IV
    hashes them in that order whichever end computes it.
    """
    _check_cookies(cky_i, cky_r)
    tail = g_xy + cky_i + cky_r
    skeyid_d = prf.prf(skeyid, tail + b"\x00")
    skeyid_a = prf.prf(skeyid, skeyid_d + tail + b"\x01")
    skeyid_e = prf.prf(skeyid, skeyid_a + tail + b"\x02")
    return Phase1Keys(
        skeyid=skeyid,
        skeyid_d=skeyid_d,
        skeyid_a=skeyid_a,
        skeyid_e=skeyid_e,
        enc_key=appendix_b_key(prf, skeyid_e, encr_key_len),
        iv=phase1_iv(prf.hash_name, g_xi, g_xr, block_size),
    )


def appendix_b_key(prf: Ikev1Prf, skeyid_e: bytes, length: int) -> bytes:
    """The first ``length`` bytes of SKEYID_e, stretched if too short (RFC 2409 App. B).

    Ka = K1 | K2 | ...,  K1 = prf(SKEYID_e, 0),  Kn+1 = prf(SKEYID_e, Kn)
    """
    _check_length(length)
    if len(skeyid_e) >= length:
        return skeyid_e[:length]
    out = bytearray()
    block = b"\x00"  # the single octet 0 that seeds K1
    while len(out) < length:
        block = prf.prf(skeyid_e, block)
        out += block
    return bytes(out[:length])


def phase1_iv(hash_name: str, g_xi: bytes, g_xr: bytes, block_size: int) -> bytes:
    """The IV of the first encrypted Phase 1 message: hash(g^xi | g^xr) (Appendix B)."""
    return _cut_iv(Ikev1Prf(hash_name).hash(g_xi + g_xr), block_size)


def hash_i(
    prf: Ikev1Prf,
    skeyid: bytes,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (§5)."""
    _check_cookies(cky_i, cky_r)
    return prf.prf(skeyid, g_xi + g_xr + cky_i + cky_r + sai_b + idii_b)


def hash_r(
    prf: Ikev1Prf,
    skeyid: bytes,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (§5).

    Arguments come in the same order as `hash_i`'s; the swap is done here. SAi_b is
    still the initiator's offer, not the responder's answer.
    """
    _check_cookies(cky_i, cky_r)
    return prf.prf(skeyid, g_xr + g_xi + cky_r + cky_i + sai_b + idir_b)


# -- Phase 2 and Informational (RFC 2409 §5.5, §5.7, Appendix B) ------------------------


def phase2_iv(hash_name: str, last_phase1_cbc_block: bytes, message_id: int) -> bytes:
    """The first IV of a Quick Mode exchange: hash(last Phase 1 CBC block | M-ID).

    Appendix B: the hash is Phase 1's; the result is cut to the cipher block, which is
    the length of the block passed in.
    """
    if not last_phase1_cbc_block:
        raise IkeCryptoError("the last Phase 1 CBC block is empty")
    digest = Ikev1Prf(hash_name).hash(last_phase1_cbc_block + _mid(message_id))
    return _cut_iv(digest, len(last_phase1_cbc_block))


def informational_iv(hash_name: str, last_phase1_cbc_block: bytes, message_id: int) -> bytes:
    """The IV of an Informational exchange, derived as Quick Mode's from its own M-ID.

    RFC 2409 §5.7 defers to Appendix B; the M-ID is the Informational exchange's, never
    that of the exchange it reports on.
    """
    return phase2_iv(hash_name, last_phase1_cbc_block, message_id)


def hash1(prf: Ikev1Prf, skeyid_a: bytes, message_id: int, payloads_after_hash: bytes) -> bytes:
    """Quick Mode HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [| KE] [| IDci | IDcr]) (§5.5)."""
    return prf.prf(skeyid_a, _mid(message_id) + payloads_after_hash)


def hash2(
    prf: Ikev1Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, payloads_after_hash: bytes
) -> bytes:
    """Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [| KE] [| IDci | IDcr])."""
    return prf.prf(skeyid_a, _mid(message_id) + ni_b + payloads_after_hash)


def hash3(prf: Ikev1Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b); 0 is one octet (§5.5)."""
    return prf.prf(skeyid_a, b"\x00" + _mid(message_id) + ni_b + nr_b)


def informational_hash(
    prf: Ikev1Prf, skeyid_a: bytes, message_id: int, payloads_after_hash: bytes
) -> bytes:
    """The Informational exchange's HASH(1) = prf(SKEYID_a, M-ID | N/D) (§5.7)."""
    return prf.prf(skeyid_a, _mid(message_id) + payloads_after_hash)


def quick_mode_keymat(
    prf: Ikev1Prf,
    skeyid_d: bytes,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    g_qm_xy: bytes | None = None,
) -> bytes:
    """``length`` bytes of KEYMAT for one SA of a Quick Mode (RFC 2409 §5.5).

    ``protocol`` and ``spi`` come from the SA's proposal: the inbound SA is keyed with the
    SPI this end chose, the outbound SA with the peer's, so each direction gets its own
    call. ``g_qm_xy`` is the Quick Mode's own shared secret when it carried KE (PFS).
    """
    _check_length(length)
    if not 0 <= protocol <= 0xFF:
        raise IkeCryptoError(f"protocol id {protocol} does not fit one octet")
    seed = (g_qm_xy or b"") + bytes((protocol,)) + spi + ni_b + nr_b
    out = bytearray()
    block = b""
    while len(out) < length:
        block = prf.prf(skeyid_d, block + seed)
        out += block
    return bytes(out[:length])


# -- Diffie-Hellman groups (RFC 2409 §6, RFC 3526, RFC 5903) ----------------------------

# RFC 2409 §6.2, the Second Oakley Group: 2^1024 - 2^960 - 1 + 2^64 * ([2^894 pi] + 129093).
_MODP_1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
# RFC 3526 §2, group 5: 2^1536 - 2^1472 - 1 + 2^64 * ([2^1406 pi] + 741804).
_MODP_1536 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)
_LEGACY_MODP: dict[int, int] = {2: _MODP_1024, 5: _MODP_1536}
# The IKEv1 Group Description values that mean the same group as IKEv2's Transform
# Type 4 id of the same number (RFC 3526, RFC 5903).
_SHARED_GROUPS = frozenset(
    {DhId.MODP_2048, DhId.MODP_3072, DhId.ECP_256, DhId.ECP_384, DhId.ECP_521}
)
_legacy_groups: dict[int, DhGroup] = {}


def ikev1_dh_group(group_id: int) -> DhGroup:
    """The group of an IKEv1 Group Description attribute (RFC 2409 Appendix A).

    Groups 2 (MODP 1024) and 5 (MODP 1536) are built here on the MODP machinery of
    `larval.crypto.dh`, with its peer-value checks; 14, 15, 19, 20 and 21 are IKEv2's
    groups of the same number. Anything else raises `IkeCryptoError`.
    """
    prime = _LEGACY_MODP.get(group_id)
    if prime is not None:
        group = _legacy_groups.get(group_id)
        if group is None:
            group = _legacy_groups[group_id] = _ModpGroup(DhId(group_id), prime)
        return group
    if group_id in _SHARED_GROUPS:
        return DhGroup.of(group_id)
    raise IkeCryptoError(f"unsupported IKEv1 Diffie-Hellman group {group_id}")


# -- Encryption (RFC 2409 Appendix B, RFC 3602) -----------------------------------------


class Ikev1EncrId(enum.IntEnum):
    """IKEv1 Encryption Algorithm attribute values this module implements."""

    TDES_CBC = 5  # RFC 2409 Appendix A
    AES_CBC = 7  # RFC 3602 §5.1


_AES_KEY_SIZES: Final = (16, 24, 32)
_TDES_KEY_SIZE: Final = 24


class Ikev1Cipher:
    """CBC encryption of IKEv1 messages with the IV chained by the caller (Appendix B).

    ISAKMP messages carry no IV: each takes the last ciphertext block of the message
    before it in the same exchange, which `encrypt` and `decrypt` return as ``next_iv``.
    """

    __slots__ = ("_algorithm", "encr_id")

    def __init__(self, encr_id: int, key: bytes) -> None:
        key = bytes(key)
        algorithm: CipherAlgorithm
        if encr_id == Ikev1EncrId.AES_CBC:
            if len(key) not in _AES_KEY_SIZES:
                raise IkeCryptoError(f"AES-CBC keys are 16, 24 or 32 bytes, got {len(key)}")
            algorithm = algorithms.AES(key)
        elif encr_id == Ikev1EncrId.TDES_CBC:
            if len(key) != _TDES_KEY_SIZE:
                raise IkeCryptoError(f"3DES-CBC keys are {_TDES_KEY_SIZE} bytes, got {len(key)}")
            algorithm = TripleDES(key)
        else:
            raise IkeCryptoError(f"unsupported IKEv1 encryption algorithm {encr_id}")
        self.encr_id = Ikev1EncrId(encr_id)
        self._algorithm = algorithm

    def __repr__(self) -> str:
        return f"Ikev1Cipher({self.encr_id.name}, key={self.key_size} bytes)"

    @staticmethod
    def block_size_of(encr_id: int) -> int:
        """The cipher block in bytes, which is also the IV length (Appendix B)."""
        if encr_id == Ikev1EncrId.AES_CBC:
            return 16
        if encr_id == Ikev1EncrId.TDES_CBC:
            return 8
        raise IkeCryptoError(f"unsupported IKEv1 encryption algorithm {encr_id}")

    @property
    def block_size(self) -> int:
        return self.block_size_of(self.encr_id)

    @property
    def key_size(self) -> int:
        return self._algorithm.key_size // 8

    def encrypt(self, plaintext_padded: bytes, iv: bytes) -> tuple[bytes, bytes]:
        """(ciphertext, next_iv); the plaintext must already fill whole blocks (`pad`)."""
        self._check(plaintext_padded, iv, "plaintext")
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(plaintext_padded) + encryptor.finalize()
        return ciphertext, self._next_iv(ciphertext, iv)

    def decrypt(self, ciphertext: bytes, iv: bytes) -> tuple[bytes, bytes]:
        """(plaintext, next_iv); the padding stays for the caller to strip."""
        self._check(ciphertext, iv, "ciphertext")
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        plaintext = decryptor.update(ciphertext) + decryptor.finalize()
        return plaintext, self._next_iv(ciphertext, iv)

    def _check(self, data: bytes, iv: bytes, what: str) -> None:
        block = self.block_size
        if len(iv) != block:
            raise IkeCryptoError(f"{self.encr_id.name} IV must be {block} bytes, got {len(iv)}")
        if len(data) % block:
            raise IkeCryptoError(
                f"{self.encr_id.name} {what} of {len(data)} bytes is not a whole number "
                f"of {block}-byte blocks"
            )

    def _next_iv(self, ciphertext: bytes, iv: bytes) -> bytes:
        # Appendix B: the next message's IV is this one's last ciphertext block.
        return ciphertext[-self.block_size :] if ciphertext else iv


def pad(data: bytes, block_size: int) -> bytes:
    """``data`` followed by 0x00 octets up to a whole block (RFC 2409 Appendix B)."""
    if block_size <= 0:
        raise IkeCryptoError(f"block size must be positive, got {block_size}")
    return data + bytes(-len(data) % block_size)


# -- helpers ---------------------------------------------------------------------------


def _mid(message_id: int) -> bytes:
    # RFC 2408 §3.1: the Message ID, as it sits in the ISAKMP header.
    if not 0 <= message_id <= _MAX_MESSAGE_ID:
        raise IkeCryptoError(f"message id {message_id} does not fit four octets")
    return message_id.to_bytes(4, "big")


def _cut_iv(digest: bytes, block_size: int) -> bytes:
    if not 0 < block_size <= len(digest):
        raise IkeCryptoError(
            f"an IV of {block_size} bytes cannot be cut from a {len(digest)}-byte hash"
        )
    return digest[:block_size]


def _check_cookies(cky_i: bytes, cky_r: bytes) -> None:
    if len(cky_i) != _COOKIE_SIZE or len(cky_r) != _COOKIE_SIZE:
        raise IkeCryptoError(
            f"ISAKMP cookies are {_COOKIE_SIZE} bytes, got {len(cky_i)} and {len(cky_r)}"
        )


def _check_length(length: int) -> None:
    if length < 0:
        raise IkeCryptoError(f"cannot produce {length} bytes of keying material")
