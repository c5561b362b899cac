"""IKEv2 authentication data for a shared key (RFC 7296 §2.15).

Each side signs its own first message, the peer's nonce and a MAC of its own ID:

    InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
    MACedIDForI = prf(SK_pi, RestOfInitIDPayload)

(and symmetrically RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload) for the
responder). RestOfInitIDPayload is the ID payload after its generic header: ID Type,
the three reserved octets and the identification data. With a pre-shared key:

    AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
"""

from __future__ import annotations

import hmac

from larval.crypto.prf import Prf

__all__ = ["KEY_PAD", "psk_auth", "signed_octets", "verify_psk_auth"]

# RFC 7296 §2.15: the 17 ASCII characters, no terminating NUL.
KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(
    message_bytes: bytes, nonce_peer: bytes, prf: Prf, sk_p: bytes, id_payload_body: bytes
) -> bytes:
    """<SignedOctets> of one side (RFC 7296 §2.15).

    ``message_bytes`` is this side's IKE_SA_INIT message as sent (RealMessage1 or 2),
    ``nonce_peer`` the peer's Nonce Data, ``sk_p`` this side's SK_pi or SK_pr and
    ``id_payload_body`` its IDi/IDr payload without the 4-byte generic header.
    """
    return message_bytes + nonce_peer + prf.prf(sk_p, id_payload_body)


def psk_auth(prf: Prf, psk: bytes, signed_octets: bytes) -> bytes:
    """The AUTH payload's data for Shared Key Message Integrity Code (method 2)."""
    # Not kept across calls: EAP methods pass their per-session MSK here (RFC 7296 §2.16),
    # which must not outlive the session in a cache.
    return prf.prf(prf.prf(psk, KEY_PAD), signed_octets)


def verify_psk_auth(prf: Prf, psk: bytes, signed_octets: bytes, auth_data: bytes) -> bool:
    """Whether the peer's AUTH data is right; compared in constant time."""
    return hmac.compare_digest(psk_auth(prf, psk, signed_octets), auth_data)
