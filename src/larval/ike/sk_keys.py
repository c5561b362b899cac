"""The keys that protect an IKE SA's own messages, as a session gives them out for a
decryption table (`larval.keymgr.wireshark`): `IkeSkKeys`."""

from __future__ import annotations

from dataclasses import dataclass

from larval.ike.state import Secret

__all__ = ["IkeSkKeys"]


@dataclass(frozen=True)
class IkeSkKeys:
    """SK_ei, SK_er, SK_ai and SK_ar of an IKEv2 SA (RFC 7296 §2.14): an AEAD's SK_e ends
    with its salt (RFC 5282 §7.1) and its SK_a are empty. An ISAKMP SA (IKEv1) has one
    encryption key for both ways (RFC 2409 Appendix B), given as both SK_e; its SK_a are
    empty. Every field is a `Secret`: the repr shows lengths only."""

    sk_ei: Secret
    sk_er: Secret
    sk_ai: Secret
    sk_ar: Secret
