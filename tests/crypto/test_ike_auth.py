"""Shared-key AUTH data and the signed octets (RFC 7296 §2.15)."""

from __future__ import annotations

import hashlib
import hmac

from larval.crypto.ike import KEY_PAD, Prf, PrfId, psk_auth, signed_octets, verify_psk_auth

PRF = Prf(PrfId.HMAC_SHA2_256)
PSK = b"interop-test-psk-0123456789"
MESSAGE_1 = bytes.fromhex("0011223344556677" + "00" * 8 + "21202208" + "00000000" + "0000001c")
NONCE_R = bytes(range(32))
SK_PI = b"\x5a" * 32
# IDi body: ID Type ID_IPV4_ADDR (1), three reserved octets, 192.0.2.1.
ID_I_BODY = bytes([1, 0, 0, 0, 192, 0, 2, 1])


def h(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def test_key_pad_is_the_17_ascii_octets() -> None:
    assert KEY_PAD == b"Key Pad for IKEv2"
    assert len(KEY_PAD) == 17


def test_signed_octets_layout() -> None:
    # InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    octets = signed_octets(MESSAGE_1, NONCE_R, PRF, SK_PI, ID_I_BODY)
    assert octets == MESSAGE_1 + NONCE_R + h(SK_PI, ID_I_BODY)


def test_psk_auth_by_hand() -> None:
    octets = signed_octets(MESSAGE_1, NONCE_R, PRF, SK_PI, ID_I_BODY)
    want = h(h(PSK, b"Key Pad for IKEv2"), octets)
    assert psk_auth(PRF, PSK, octets) == want
    assert verify_psk_auth(PRF, PSK, octets, want)
    assert not verify_psk_auth(PRF, PSK + b"!", octets, want)
    assert not verify_psk_auth(PRF, PSK, octets, want[:-1] + bytes([want[-1] ^ 1]))


def test_both_sides_agree() -> None:
    # The responder checks the initiator's AUTH by computing it from its own view.
    octets_at_i = signed_octets(MESSAGE_1, NONCE_R, PRF, SK_PI, ID_I_BODY)
    octets_at_r = signed_octets(bytes(MESSAGE_1), bytes(NONCE_R), PRF, SK_PI, ID_I_BODY)
    assert verify_psk_auth(PRF, PSK, octets_at_r, psk_auth(PRF, PSK, octets_at_i))
