"""ESP proposal strings in strongSwan's words, parsed into one algorithm alternative each.

A proposal is keywords joined by ``-``, as swanctl.conf's ``esp_proposals`` writes them:
``aes128gcm16``, ``aes128-sha256``, ``aes256gcm16-ecp384``, ``aes128gcm16-esn``. One
string is one alternative: one cipher, at most one integrity algorithm (none for an
AEAD cipher, which authenticates by itself, RFC 4303 §3.2.3), at most one Diffie-Hellman
group for PFS and the ESN choice. A policy lists several strings for several
alternatives, in order of preference.

Algorithm numbers are PF_KEY's (`larval.crypto.algorithms`), DH groups the IKE
transform type 4 numbers (RFC 7296 §3.3.2, RFC 8031 for x25519/x448), so an
`EspProposal` goes straight into an ACQUIRE's combinations and an IKE SA payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from larval.crypto.algorithms import (
    AALG_NONE,
    AALG_SHA256HMAC,
    AALG_SHA384HMAC,
    AALG_SHA512HMAC,
    AUTH_ALGORITHMS,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
    ENCRYPT_ALGORITHMS,
)
from larval.errors import LarvalError

__all__ = [
    "DH_GROUPS",
    "ENCRYPTION_KEYWORDS",
    "INTEGRITY_KEYWORDS",
    "EspProposal",
    "ProposalError",
    "parse_esp_proposal",
    "parse_esp_proposals",
]


_V = TypeVar("_V")


class ProposalError(LarvalError):
    """A proposal string that does not name a valid ESP alternative."""


@dataclass(frozen=True, slots=True)
class EspProposal:
    """One ESP algorithm alternative.

    ``encrypt`` is the SADB_EALG id and ``encrypt_bits`` the cipher key length (the
    AEAD salt excluded, as in an ACQUIRE's sadb_comb_encrypt_minbits); ``auth`` the
    SADB_AALG id (0 for an AEAD cipher) and ``auth_bits`` its key length; ``dh_group``
    the PFS group (IKE number) or None; ``esn`` whether 64-bit sequence numbers are
    asked for (RFC 4303 §2.2.1). ``text`` is the string it was parsed from.
    """

    encrypt: int
    encrypt_bits: int
    auth: int = AALG_NONE
    auth_bits: int = 0
    dh_group: int | None = None
    esn: bool = False
    text: str = ""

    @property
    def aead(self) -> bool:
        return ENCRYPT_ALGORITHMS[self.encrypt].aead

    @property
    def keywords(self) -> str:
        """The proposal in strongSwan keywords: ``text`` if parsed, else canonical."""
        if self.text:
            return self.text
        words = [_name_of(ENCRYPTION_KEYWORDS, (self.encrypt, self.encrypt_bits))]
        if self.auth:
            words.append(_name_of(INTEGRITY_KEYWORDS, self.auth))
        if self.dh_group is not None:
            words.append(_name_of(DH_GROUPS, self.dh_group))
        if self.esn:
            words.append("esn")
        return "-".join(words)


def _name_of(table: dict[str, _V], value: _V) -> str:
    for name, v in table.items():
        if v == value:
            return name
    return str(value)


# keyword -> (SADB_EALG id, cipher key bits); strongSwan's names, "gcm128" is its
# synonym for the 16-byte ICV.
ENCRYPTION_KEYWORDS: dict[str, tuple[int, int]] = {
    "aes128": (EALG_AES_CBC, 128),
    "aes192": (EALG_AES_CBC, 192),
    "aes256": (EALG_AES_CBC, 256),
    "aes128gcm16": (EALG_AES_GCM_16, 128),
    "aes192gcm16": (EALG_AES_GCM_16, 192),
    "aes256gcm16": (EALG_AES_GCM_16, 256),
    "aes128gcm128": (EALG_AES_GCM_16, 128),
    "aes192gcm128": (EALG_AES_GCM_16, 192),
    "aes256gcm128": (EALG_AES_GCM_16, 256),
    "chacha20poly1305": (EALG_CHACHA20_POLY1305, 256),
    "null": (EALG_NULL, 0),
}

# keyword -> SADB_AALG id (HMAC-SHA2 truncated to half, RFC 4868 §2.1).
INTEGRITY_KEYWORDS: dict[str, int] = {
    "sha256": AALG_SHA256HMAC,
    "sha2_256": AALG_SHA256HMAC,
    "sha384": AALG_SHA384HMAC,
    "sha2_384": AALG_SHA384HMAC,
    "sha512": AALG_SHA512HMAC,
    "sha2_512": AALG_SHA512HMAC,
}

# keyword -> IKE transform type 4 id (RFC 3526, RFC 5903, RFC 8031).
DH_GROUPS: dict[str, int] = {
    "modp2048": 14,
    "modp3072": 15,
    "ecp256": 19,
    "ecp384": 20,
    "ecp521": 21,
    "x25519": 31,
    "curve25519": 31,
    "x448": 32,
    "curve448": 32,
}

_ESN_KEYWORDS = {"esn": True, "noesn": False}

_ALLOWED = ", ".join([*ENCRYPTION_KEYWORDS, *INTEGRITY_KEYWORDS, *DH_GROUPS, *_ESN_KEYWORDS])


def parse_esp_proposal(text: str) -> EspProposal:
    """Parse one strongSwan ESP proposal string; raises `ProposalError`."""
    if not isinstance(text, str) or not text.strip():
        raise ProposalError(f"empty ESP proposal {text!r}; allowed keywords: {_ALLOWED}")
    cipher: tuple[str, int, int] | None = None
    integrity: tuple[str, int] | None = None
    group: tuple[str, int] | None = None
    esn: tuple[str, bool] | None = None
    for word in text.strip().lower().split("-"):
        if word in ENCRYPTION_KEYWORDS:
            if cipher is not None:
                raise ProposalError(
                    f"ESP proposal {text!r} names two ciphers ({cipher[0]}, {word}); "
                    "list alternatives as separate proposals"
                )
            cipher = (word, *ENCRYPTION_KEYWORDS[word])
        elif word in INTEGRITY_KEYWORDS:
            if integrity is not None:
                raise ProposalError(
                    f"ESP proposal {text!r} names two integrity algorithms "
                    f"({integrity[0]}, {word}); list alternatives as separate proposals"
                )
            integrity = (word, INTEGRITY_KEYWORDS[word])
        elif word in DH_GROUPS:
            if group is not None:
                raise ProposalError(
                    f"ESP proposal {text!r} names two DH groups ({group[0]}, {word}); "
                    "list alternatives as separate proposals"
                )
            group = (word, DH_GROUPS[word])
        elif word in _ESN_KEYWORDS:
            if esn is not None:
                raise ProposalError(f"ESP proposal {text!r} names both {esn[0]} and {word}")
            esn = (word, _ESN_KEYWORDS[word])
        else:
            raise ProposalError(
                f"unknown keyword {word!r} in ESP proposal {text!r}; allowed: {_ALLOWED}"
            )
    if cipher is None:
        raise ProposalError(
            f"ESP proposal {text!r} has no encryption algorithm; one of: "
            + ", ".join(ENCRYPTION_KEYWORDS)
        )
    name, ealg, ebits = cipher
    if ENCRYPT_ALGORITHMS[ealg].aead:
        if integrity is not None:
            # RFC 4106 §6 / RFC 7634 §2: the AEAD's ICV is the integrity check.
            raise ProposalError(
                f"ESP proposal {text!r}: AEAD cipher {name} takes no integrity "
                f"algorithm, but {integrity[0]} is given"
            )
        aalg, abits = AALG_NONE, 0
    else:
        if integrity is None:
            # RFC 4303 §3.2: confidentiality without integrity is not offered.
            raise ProposalError(
                f"ESP proposal {text!r}: cipher {name} needs an integrity algorithm, one of: "
                + ", ".join(INTEGRITY_KEYWORDS)
            )
        aalg = integrity[1]
        abits = AUTH_ALGORITHMS[aalg].key_bits
    return EspProposal(
        encrypt=ealg,
        encrypt_bits=ebits,
        auth=aalg,
        auth_bits=abits,
        dh_group=None if group is None else group[1],
        esn=False if esn is None else esn[1],
        text=text,
    )


def parse_esp_proposals(texts: list[str] | tuple[str, ...]) -> tuple[EspProposal, ...]:
    """Parse a list of alternatives, in order; the error names the failing index."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(parse_esp_proposal(text))
        except ProposalError as exc:
            raise ProposalError(f"[{i}]: {exc}") from None
    return tuple(out)
