"""Why larval refuses the weak algorithms a copied strongSwan proposal may name.

The algorithms larval does not implement because they are broken or
deprecated (MODP groups below 2048 bits, SHA-1 and MD5 integrity and PRFs, DES and 3DES,
and the RFC 5114 groups) are errors of the proposal parsers already; `refused_why` adds
the reason to their message, so that a strongSwan user who copied ``modp1024`` learns why
it is refused rather than only what is allowed. What larval takes but a careful operator
would not choose is `larval.daemon.advice`'s.

The reasons cite RFC 8247 (IKEv2's algorithm requirements) and RFC 8221 (ESP's).
"""

from __future__ import annotations

__all__ = ["REFUSED_WEAK", "refused_why"]

_SMALL_MODP = ("below 2048 bits: RFC 8247 §2.4 says MUST NOT (768, 1024) or SHOULD NOT (1536); "
               "use modp2048 or larger, ecp256 or x25519")  # fmt: skip
_RFC5114 = ("an RFC 5114 group, whose small subgroups RFC 8247 §2.4 warns of (SHOULD NOT); "
            "use modp2048, ecp256 or x25519")  # fmt: skip
_SHA1 = ("SHA-1, whose collisions are practical: RFC 8247 §2.3 and RFC 8221 §6 keep it for "
         "old peers only; use sha256")  # fmt: skip
_MD5 = "MD5, broken: RFC 8247 §2.3 and RFC 8221 §6 say MUST NOT; use sha256"
_DES = "DES, a 56-bit key found by brute force: RFC 8247 §2.1 says MUST NOT; use aes128"
_3DES = ("3DES, a 64-bit block (Sweet32) and a third of the speed of AES: RFC 8221 §5 says "
         "SHOULD NOT; use aes128 or aes128gcm16")  # fmt: skip

#: Keyword -> why larval refuses it (strongSwan's names, which a copied proposal carries).
REFUSED_WEAK: dict[str, str] = {
    **{f"modp{bits}": f"MODP {bits} is {_SMALL_MODP}" for bits in (768, 1024, 1536)},
    **{w: f"{w} is {_RFC5114}" for w in ("modp1024s160", "modp2048s224", "modp2048s256")},
    **{w: f"{w} is {_SHA1}" for w in ("sha1", "sha", "sha1_160", "prfsha1")},
    **{w: f"{w} is {_MD5}" for w in ("md5", "md5_128", "prfmd5")},
    "des": f"des is {_DES}",
    "3des": f"3des is {_3DES}",
}


def refused_why(proposal: str) -> str:
    """``"MODP 1024 is ...; "`` for each weak keyword of `proposal` (the reason before the
    parser's own message and its list of what is allowed), or ``""``."""
    words = proposal.strip().lower().split("-") if isinstance(proposal, str) else []
    why = [REFUSED_WEAK[w] for w in dict.fromkeys(words) if w in REFUSED_WEAK]
    return "".join(f"{w}; " for w in why)
