"""AUTH with a shared secret, prf(prf(Shared Secret, "Key Pad for IKEv2"), octets): RFC
7296 §2.15's for each secret and PRF, whatever was asked before."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from larval.crypto.ike_auth import psk_auth, verify_psk_auth
from larval.crypto.ike_transforms import PrfId
from larval.crypto.prf import Prf


def _hmac(algorithm: hashes.HashAlgorithm, key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, algorithm)
    mac.update(data)
    return mac.finalize()


def test_each_secret_and_prf_gets_its_own_pad() -> None:
    octets = b"signed octets"
    cases = [
        (PrfId.HMAC_SHA2_256, hashes.SHA256(), b"first secret"),
        (PrfId.HMAC_SHA2_384, hashes.SHA384(), b"first secret"),
        (PrfId.HMAC_SHA2_256, hashes.SHA256(), b"second secret"),
        (PrfId.HMAC_SHA2_256, hashes.SHA256(), bytearray(b"second secret")),
    ]
    for _ in range(2):  # the second round gets the same answers
        for prf_id, algorithm, psk in cases:
            expected = _hmac(algorithm, _hmac(algorithm, bytes(psk), b"Key Pad for IKEv2"), octets)
            assert psk_auth(Prf(prf_id), psk, octets) == expected
            assert verify_psk_auth(Prf(prf_id), psk, octets, expected)
            assert not verify_psk_auth(Prf(prf_id), psk + b"x", octets, expected)
