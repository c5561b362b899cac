"""IKE and CHILD_SA proposal strings in strongSwan's words, as IKEv2 transforms.

An IKE proposal (swanctl.conf ``proposals``) is keywords joined by ``-``; unlike an ESP
proposal it may list several algorithms of one type, all of them alternatives within
the one proposal (RFC 7296 §3.3: "aes128-aes256-sha256-x25519-ecp256" offers either
cipher with either group):

* ciphers: ``aes128``, ``aes192``, ``aes256`` (CBC), ``aes128gcm16`` (also ``gcm128``),
  ``aes128gcm12`` (``gcm96``), ``aes128gcm8`` (``gcm64``) for each key size, and
  ``chacha20poly1305``;
* integrity: ``sha256``, ``sha384``, ``sha512`` (HMAC-SHA2 truncated to half, RFC 4868);
  each also implies the PRF of the same hash unless a PRF is named;
* PRFs: ``prfsha256``, ``prfsha384``, ``prfsha512``; an AEAD proposal must name one,
  having no integrity algorithm to take it from (RFC 5282 §8);
* DH groups: ``modp2048``, ``modp3072``, ``ecp256``, ``ecp384``, ``ecp521``,
  ``x25519`` (``curve25519``), ``x448`` (``curve448``); one at least, since IKE_SA_INIT
  always carries a KE payload.

AEAD and non-AEAD ciphers cannot share a proposal (RFC 5282 §8), because an AEAD
proposal has no integrity transform. The transforms come out ordered by type (ENCR,
PRF, INTEG, DH) and within a type as written, which is the order of preference.

A CHILD_SA proposal (``esp_proposals``) is parsed by `larval.crypto.proposals` and
translated here into ENCR, INTEG (absent for an AEAD), an optional DH group for PFS and
the ESN transform RFC 7296 §3.3 requires in every ESP proposal.

`format_ike_proposal` and `format_esp_proposal` go the other way, for status and logs:
a negotiated suite in the same words (``aes128-sha256-modp2048``,
``aes128gcm16-prfsha256-x25519``, ``aes128gcm16``, ``aes128-sha256-modp2048-esn``), each
the inverse of its parser: parsing what they write gives the same transforms back.
"""

from __future__ import annotations

from collections.abc import Iterable

from larval.crypto.algorithms import (
    AALG_SHA256HMAC,
    AALG_SHA384HMAC,
    AALG_SHA512HMAC,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
)
from larval.crypto.ike_errors import IkeProposalError
from larval.crypto.ike_transforms import (
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    Transform,
    TransformType,
    is_aead,
)
from larval.crypto.proposals import (
    DH_GROUPS,
    ENCRYPTION_KEYWORDS,
    INTEGRITY_KEYWORDS,
    ProposalError,
    parse_esp_proposal,
)

__all__ = [
    "IKE_DH_KEYWORDS",
    "IKE_ENCRYPTION_KEYWORDS",
    "IKE_INTEGRITY_KEYWORDS",
    "IKE_PRF_KEYWORDS",
    "esp_proposal_transforms",
    "format_esp_proposal",
    "format_ike_proposal",
    "parse_ike_proposal",
]


_GCM_BY_ICV = ((16, EncrId.AES_GCM_16), (12, EncrId.AES_GCM_12), (8, EncrId.AES_GCM_8))


def _ike_ciphers() -> dict[str, Transform]:
    table: dict[str, Transform] = {}
    for bits in (128, 192, 256):
        table[f"aes{bits}"] = Transform(TransformType.ENCR, EncrId.AES_CBC, bits)
    # strongSwan names the GCM ICV in octets (gcm16) or bits (gcm128).
    for icv_octets, encr_id in _GCM_BY_ICV:
        for bits in (128, 192, 256):
            transform = Transform(TransformType.ENCR, encr_id, bits)
            table[f"aes{bits}gcm{icv_octets}"] = transform
            table[f"aes{bits}gcm{icv_octets * 8}"] = transform
    # RFC 7634 §3: a fixed key size, so no Key Length attribute.
    table["chacha20poly1305"] = Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305)
    return table


# keyword -> ENCR transform.
IKE_ENCRYPTION_KEYWORDS: dict[str, Transform] = _ike_ciphers()

# The SADB_AALG of the ESP keyword tables -> the IKE INTEG id and the PRF it implies.
_AALG_TO_IKE: dict[int, tuple[IntegId, PrfId]] = {
    AALG_SHA256HMAC: (IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256),
    AALG_SHA384HMAC: (IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384),
    AALG_SHA512HMAC: (IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512),
}

# keyword -> INTEG transform (same keywords as ESP).
IKE_INTEGRITY_KEYWORDS: dict[str, Transform] = {
    word: Transform(TransformType.INTEG, _AALG_TO_IKE[aalg][0])
    for word, aalg in INTEGRITY_KEYWORDS.items()
}
# The PRF an integrity keyword implies when no prf keyword is given.
_IMPLIED_PRF: dict[str, Transform] = {
    word: Transform(TransformType.PRF, _AALG_TO_IKE[aalg][1])
    for word, aalg in INTEGRITY_KEYWORDS.items()
}

# keyword -> PRF transform.
IKE_PRF_KEYWORDS: dict[str, Transform] = {
    "prfsha256": Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
    "prfsha384": Transform(TransformType.PRF, PrfId.HMAC_SHA2_384),
    "prfsha512": Transform(TransformType.PRF, PrfId.HMAC_SHA2_512),
}

# keyword -> DH transform (same keywords as ESP PFS groups).
IKE_DH_KEYWORDS: dict[str, Transform] = {
    word: Transform(TransformType.DH, group) for word, group in DH_GROUPS.items()
}

_KEYWORDS: dict[str, Transform] = {
    **IKE_ENCRYPTION_KEYWORDS,
    **IKE_INTEGRITY_KEYWORDS,
    **IKE_PRF_KEYWORDS,
    **IKE_DH_KEYWORDS,
}
_ALLOWED = ", ".join(_KEYWORDS)
_TYPE_ORDER = (TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH)


def parse_ike_proposal(text: str) -> tuple[Transform, ...]:
    """Parse one strongSwan IKE proposal string; raises `IkeProposalError`."""
    if not isinstance(text, str) or not text.strip():
        raise IkeProposalError(f"empty IKE proposal {text!r}; allowed keywords: {_ALLOWED}")
    # transform -> the keyword that named it, per type, in the order written.
    named: dict[int, dict[Transform, str]] = {t: {} for t in _TYPE_ORDER}
    for word in text.strip().lower().split("-"):
        transform = _KEYWORDS.get(word)
        if transform is None:
            raise IkeProposalError(
                f"unknown keyword {word!r} in IKE proposal {text!r}; allowed: {_ALLOWED}"
            )
        same_type = named[transform.type]
        if transform in same_type:
            raise IkeProposalError(
                f"IKE proposal {text!r} names the same transform twice "
                f"({same_type[transform]}, {word})"
            )
        same_type[transform] = word

    ciphers = named[TransformType.ENCR]
    integs = named[TransformType.INTEG]
    prfs = named[TransformType.PRF]
    groups = named[TransformType.DH]
    if not ciphers:
        raise IkeProposalError(
            f"IKE proposal {text!r} has no encryption algorithm; one of: "
            + ", ".join(IKE_ENCRYPTION_KEYWORDS)
        )
    aead = [word for t, word in ciphers.items() if is_aead(t.id)]
    plain = [word for t, word in ciphers.items() if not is_aead(t.id)]
    if aead and plain:
        # RFC 5282 §8: AEAD and non-AEAD ciphers go in separate proposals.
        raise IkeProposalError(
            f"IKE proposal {text!r} mixes AEAD ({aead[0]}) and non-AEAD ({plain[0]}) "
            "ciphers; list them as separate proposals"
        )
    if aead:
        if integs:
            raise IkeProposalError(
                f"IKE proposal {text!r}: AEAD cipher {aead[0]} takes no integrity "
                f"algorithm, but {next(iter(integs.values()))} is given"
            )
        if not prfs:
            raise IkeProposalError(
                f"IKE proposal {text!r}: AEAD cipher {aead[0]} needs a PRF, one of: "
                + ", ".join(IKE_PRF_KEYWORDS)
            )
    else:
        if not integs:
            raise IkeProposalError(
                f"IKE proposal {text!r}: cipher {plain[0]} needs an integrity algorithm, "
                "one of: " + ", ".join(IKE_INTEGRITY_KEYWORDS)
            )
        if not prfs:
            # strongSwan's rule: without a prf keyword, each integrity algorithm brings
            # the PRF built on the same hash.
            for word in integs.values():
                prfs.setdefault(_IMPLIED_PRF[word], word)
    if not groups:
        raise IkeProposalError(
            f"IKE proposal {text!r} has no Diffie-Hellman group; one of: "
            + ", ".join(IKE_DH_KEYWORDS)
        )
    return tuple(t for ttype in _TYPE_ORDER for t in named[ttype])


# SADB_EALG -> IKE ENCR id; illumos numbers ESP ciphers as IANA does, the table says so.
_EALG_TO_ENCR: dict[int, EncrId] = {
    EALG_NULL: EncrId.NULL,
    EALG_AES_CBC: EncrId.AES_CBC,
    EALG_AES_GCM_16: EncrId.AES_GCM_16,
    EALG_CHACHA20_POLY1305: EncrId.CHACHA20_POLY1305,
}


def esp_proposal_transforms(text: str) -> tuple[Transform, ...]:
    """The transforms of one ESP proposal string for a CHILD_SA's SA payload.

    ENCR (with a Key Length attribute for AES), INTEG unless the cipher is an AEAD
    (RFC 5282 §8), DH if a PFS group is named, and ESN (RFC 7296 §3.3.2: always
    present for ESP). Raises `IkeProposalError` with the ESP parser's message.
    """
    try:
        proposal = parse_esp_proposal(text)
    except ProposalError as exc:
        raise IkeProposalError(str(exc)) from None
    out = [_esp_cipher(proposal.encrypt, proposal.encrypt_bits)]
    if not proposal.aead:
        out.append(Transform(TransformType.INTEG, _AALG_TO_IKE[proposal.auth][0]))
    if proposal.dh_group is not None:
        out.append(Transform(TransformType.DH, proposal.dh_group))
    out.append(Transform(TransformType.ESN, EsnId.YES if proposal.esn else EsnId.NO))
    return tuple(out)


def _esp_cipher(ealg: int, bits: int) -> Transform:
    encr_id = _EALG_TO_ENCR[ealg]
    # RFC 7296 §3.3.5: the attribute goes with variable-length ciphers only.
    key_bits = bits if encr_id in (EncrId.AES_CBC, EncrId.AES_GCM_16) else None
    return Transform(TransformType.ENCR, encr_id, key_bits)


# -- suites back into keywords -----------------------------------------------------------


def _first_names(table: Iterable[tuple[str, Transform]]) -> dict[Transform, str]:
    """transform -> its keyword; of synonyms ("aes128gcm16", "aes128gcm128") the first
    listed, which is the one strongSwan writes."""
    names: dict[Transform, str] = {}
    for word, transform in table:
        names.setdefault(transform, word)
    return names


_IKE_NAMES = _first_names(_KEYWORDS.items())
_ESP_NAMES = _first_names(
    [
        *((w, _esp_cipher(*cipher)) for w, cipher in ENCRYPTION_KEYWORDS.items()),
        *IKE_INTEGRITY_KEYWORDS.items(),
        *IKE_DH_KEYWORDS.items(),
    ]
)


def _word(names: dict[Transform, str], transform: Transform) -> str:
    """The keyword of a transform; one no keyword names (a peer's unknown id) is
    written as its type and number, never as a Python repr."""
    word = names.get(transform)
    if word is not None:
        return word
    bits = f"_{transform.key_bits}" if transform.key_bits else ""
    return f"{TransformType(transform.type).name.lower()}{int(transform.id)}{bits}"


def _of_type(suite: Iterable[Transform], ttype: TransformType) -> list[Transform]:
    return [t for t in suite if t.type == ttype]


def format_ike_proposal(suite: Iterable[Transform]) -> str:
    """An IKE suite in strongSwan's keywords: ciphers, integrity, PRFs, DH groups.

    The PRFs are written only when they are not those the integrity algorithms imply
    (always, for an AEAD cipher), so `parse_ike_proposal` gives the suite back.
    """
    suite = tuple(suite)
    integs = [t for t in _of_type(suite, TransformType.INTEG) if t.id != IntegId.NONE]
    prfs = _of_type(suite, TransformType.PRF)
    implied = [_IMPLIED_PRF.get(_IKE_NAMES.get(t, "")) for t in integs]
    words = [_word(_IKE_NAMES, t) for t in (*_of_type(suite, TransformType.ENCR), *integs)]
    if prfs != implied:
        words += [_word(_IKE_NAMES, t) for t in prfs]
    words += [_word(_IKE_NAMES, t) for t in _of_type(suite, TransformType.DH)]
    return "-".join(words)


def format_esp_proposal(suite: Iterable[Transform]) -> str:
    """A CHILD_SA's suite in strongSwan's ESP keywords: cipher, integrity, the PFS group
    if any, and ``esn`` when 64-bit sequence numbers were chosen (``noesn``, the
    default, is not written); `esp_proposal_transforms` gives the suite back."""
    suite = tuple(suite)
    words = [
        _word(_ESP_NAMES, t)
        for ttype in (TransformType.ENCR, TransformType.INTEG, TransformType.DH)
        for t in _of_type(suite, ttype)
        if t.id != 0 or ttype == TransformType.ENCR  # INTEG NONE, DH NONE: not offered
    ]
    if any(t.id == EsnId.YES for t in _of_type(suite, TransformType.ESN)):
        words.append("esn")
    return "-".join(words)
