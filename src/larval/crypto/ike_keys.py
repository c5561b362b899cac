"""IKEv2 key derivation: the IKE SA's seven keys, a rekeyed IKE SA's, a CHILD_SA's.

RFC 7296 §2.14 (new IKE SA):

    SKEYSEED = prf(Ni | Nr, g^ir)
    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
                = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)

RFC 7296 §2.18 (IKE SA rekeyed by CREATE_CHILD_SA): SKEYSEED = prf(SK_d (old), g^ir
(new) | Ni | Nr), computed with the old SA's PRF (the exchange belongs to the old SA);
prf+ then runs with the new SA's PRF over the new SPIs.

RFC 7296 §2.17 (CHILD_SA): KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), taken as the
initiator-to-responder SA's encryption then integrity key, then the
responder-to-initiator SA's.

Lengths: SK_d, SK_pi and SK_pr are the PRF's preferred key size; SK_a* the integrity
key size (0 for an AEAD); SK_e* the cipher key plus, for an AEAD, its 4-byte salt
(RFC 5282 §7.1, RFC 7634 §2). Nonces and SPIs are the raw payload values. No repr here
shows a key byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.prf import Prf

__all__ = [
    "ChildSaKeyMaterial",
    "ChildSaKeys",
    "IkeSaKeys",
    "derive_child_sa_keys",
    "derive_ike_sa_keys",
    "derive_rekeyed_ike_sa_keys",
]

_SPI_SIZE = 8  # RFC 7296 §3.1: IKE SA SPIs are 8 octets


@dataclass(frozen=True, slots=True, repr=False)
class IkeSaKeys:
    """SKEYSEED and the seven keys of an IKE SA (RFC 7296 §2.14)."""

    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        return (
            f"IkeSaKeys(sk_d={len(self.sk_d)}B, sk_a={len(self.sk_ai)}B, "
            f"sk_e={len(self.sk_ei)}B, sk_p={len(self.sk_pi)}B)"
        )


class ChildSaKeys(NamedTuple):
    """The keys of one direction of a CHILD_SA: the cipher key (salt included) and the
    integrity key (empty for an AEAD)."""

    encr_key: bytes
    integ_key: bytes

    def __repr__(self) -> str:
        return f"ChildSaKeys(encr_key={len(self.encr_key)}B, integ_key={len(self.integ_key)}B)"


class ChildSaKeyMaterial(NamedTuple):
    """A CHILD_SA's KEYMAT split into its two directions, in the order §2.17 takes them."""

    initiator_to_responder: ChildSaKeys
    responder_to_initiator: ChildSaKeys

    def outbound(self, initiator: bool) -> ChildSaKeys:
        """The keys this end sends with; ``initiator`` is its role in the exchange."""
        return self.initiator_to_responder if initiator else self.responder_to_initiator

    def inbound(self, initiator: bool) -> ChildSaKeys:
        """The keys this end receives with."""
        return self.responder_to_initiator if initiator else self.initiator_to_responder


def derive_ike_sa_keys(
    prf: Prf,
    nonce_i: bytes,
    nonce_r: bytes,
    shared_secret: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int,
) -> IkeSaKeys:
    """The keys of a new IKE SA from IKE_SA_INIT (RFC 7296 §2.14)."""
    # HMAC takes variable-length keys, so Ni | Nr is the key whole (§2.14's halving
    # applies to fixed-key PRFs only).
    skeyseed = prf.prf(nonce_i + nonce_r, shared_secret)
    return _split_ike_keys(
        prf, skeyseed, nonce_i, nonce_r, spi_i, spi_r, encr_key_len, integ_key_len
    )


def derive_rekeyed_ike_sa_keys(
    prf_old: Prf,
    sk_d_old: bytes,
    prf_new: Prf,
    shared_secret: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int,
) -> IkeSaKeys:
    """The keys of an IKE SA that replaces another by CREATE_CHILD_SA (RFC 7296 §2.18).

    ``nonce_i``/``nonce_r`` are the CREATE_CHILD_SA exchange's nonces, ``spi_i``/``spi_r``
    the new IKE SA's SPIs, both named from the initiator of that exchange.
    """
    skeyseed = prf_old.prf(sk_d_old, shared_secret + nonce_i + nonce_r)
    return _split_ike_keys(
        prf_new, skeyseed, nonce_i, nonce_r, spi_i, spi_r, encr_key_len, integ_key_len
    )


def _split_ike_keys(
    prf: Prf,
    skeyseed: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int,
) -> IkeSaKeys:
    if len(spi_i) != _SPI_SIZE or len(spi_r) != _SPI_SIZE:
        raise IkeCryptoError(f"IKE SPIs are {_SPI_SIZE} bytes, got {len(spi_i)} and {len(spi_r)}")
    _check_lengths(encr_key_len, integ_key_len)
    prf_key_len = prf.key_size
    lengths = (
        prf_key_len,  # SK_d
        integ_key_len,  # SK_ai
        integ_key_len,  # SK_ar
        encr_key_len,  # SK_ei
        encr_key_len,  # SK_er
        prf_key_len,  # SK_pi
        prf_key_len,  # SK_pr
    )
    keymat = prf.prf_plus(skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(lengths))
    sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr = _cut(keymat, lengths)
    return IkeSaKeys(skeyseed, sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr)


def derive_child_sa_keys(
    prf: Prf,
    sk_d: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    shared_secret: bytes | None,
    encr_key_len: int,
    integ_key_len: int,
) -> ChildSaKeyMaterial:
    """A CHILD_SA's keys (RFC 7296 §2.17); ``shared_secret`` is the PFS g^ir or None."""
    _check_lengths(encr_key_len, integ_key_len)
    seed = (shared_secret or b"") + nonce_i + nonce_r
    lengths = (encr_key_len, integ_key_len, encr_key_len, integ_key_len)
    keymat = prf.prf_plus(sk_d, seed, sum(lengths))
    ei, ai, er, ar = _cut(keymat, lengths)
    return ChildSaKeyMaterial(ChildSaKeys(ei, ai), ChildSaKeys(er, ar))


def _check_lengths(encr_key_len: int, integ_key_len: int) -> None:
    if encr_key_len < 0 or integ_key_len < 0:
        raise IkeCryptoError(
            f"key lengths cannot be negative (encr {encr_key_len}, integ {integ_key_len})"
        )


def _cut(keymat: bytes, lengths: tuple[int, ...]) -> list[bytes]:
    out = []
    pos = 0
    for n in lengths:
        out.append(keymat[pos : pos + n])
        pos += n
    return out
