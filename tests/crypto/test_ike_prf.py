"""prf (HMAC-SHA2, RFC 4868) and prf+ (RFC 7296 §2.13)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from larval.crypto.ike import IkeCryptoError, Prf, PrfId

# RFC 4868 §2.7.1 PRF test vectors (the RFC 4231 §4.2/§4.3/§4.7 cases):
# PRF-1 key 0x0b * 20, data "Hi There"; PRF-2 key "Jefe", data "what do ya want for
# nothing?"; PRF-6 key 0xaa * 131 (longer than the hash block, so hashed first).
PRF_1 = (bytes([0x0B] * 20), b"Hi There")
PRF_2 = (b"Jefe", b"what do ya want for nothing?")
PRF_6 = (bytes([0xAA] * 131), b"Test Using Larger Than Block-Size Key - Hash Key First")

VECTORS = [
    (
        PrfId.HMAC_SHA2_256,
        PRF_1,
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        PrfId.HMAC_SHA2_256,
        PRF_2,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        PrfId.HMAC_SHA2_256,
        PRF_6,
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        PrfId.HMAC_SHA2_384,
        PRF_1,
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6",
    ),
    (
        PrfId.HMAC_SHA2_384,
        PRF_2,
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649",
    ),
    (
        PrfId.HMAC_SHA2_512,
        PRF_1,
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    ),
    (
        PrfId.HMAC_SHA2_512,
        PRF_2,
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    ),
]


@pytest.mark.parametrize(("prf_id", "case", "want"), VECTORS)
def test_prf_known_answers(prf_id: PrfId, case: tuple[bytes, bytes], want: str) -> None:
    key, data = case
    assert Prf(prf_id).prf(key, data).hex() == want


@pytest.mark.parametrize(
    ("prf_id", "size"),
    [(PrfId.HMAC_SHA2_256, 32), (PrfId.HMAC_SHA2_384, 48), (PrfId.HMAC_SHA2_512, 64)],
)
def test_sizes(prf_id: PrfId, size: int) -> None:
    # RFC 4868 §2.1.2: the preferred key size is the output size.
    prf = Prf(prf_id)
    assert prf.output_size == size
    assert prf.key_size == size


def test_prf_plus_by_hand() -> None:
    # RFC 7296 §2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
    key, seed = b"K" * 40, b"seed: Ni | Nr | SPIi | SPIr"

    def h(data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()

    t1 = h(seed + b"\x01")
    t2 = h(t1 + seed + b"\x02")
    t3 = h(t2 + seed + b"\x03")
    t4 = h(t3 + seed + b"\x04")
    prf = Prf(PrfId.HMAC_SHA2_256)
    assert prf.prf_plus(key, seed, 100) == (t1 + t2 + t3 + t4)[:100]
    assert prf.prf_plus(key, seed, 32) == t1
    assert prf.prf_plus(key, seed, 0) == b""
    # Shorter outputs are prefixes of longer ones.
    assert prf.prf_plus(key, seed, 1000)[:100] == prf.prf_plus(key, seed, 100)


def test_prf_plus_limit() -> None:
    prf = Prf(PrfId.HMAC_SHA2_256)
    assert len(prf.prf_plus(b"k", b"s", 255 * 32)) == 255 * 32
    with pytest.raises(IkeCryptoError) as info:
        prf.prf_plus(b"k", b"s", 255 * 32 + 1)
    assert str(info.value) == "prf+ with HMAC_SHA2_256 yields at most 8160 bytes, 8161 asked"


def test_unsupported_prf() -> None:
    with pytest.raises(IkeCryptoError) as info:
        Prf(2)
    assert str(info.value) == "unsupported PRF UNKNOWN_2"
    assert repr(Prf(PrfId.HMAC_SHA2_384)) == "Prf(HMAC_SHA2_384)"
