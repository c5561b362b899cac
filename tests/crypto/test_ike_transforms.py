"""IANA transform ids, unknown ids as pseudo-members, and the key sizes derivation uses."""

from __future__ import annotations

import pytest

from larval.crypto.ike import (
    DhId,
    EncrId,
    IkeCryptoError,
    IntegId,
    PrfId,
    Transform,
    TransformType,
    encr_key_size,
    integ_icv_size,
    integ_key_size,
    is_aead,
)


def test_iana_numbers() -> None:
    # RFC 7296 §3.3.2, RFC 5282 §8, RFC 7634 §4, RFC 4868 §4, RFC 8031 §4.
    assert [int(t) for t in TransformType] == [1, 2, 3, 4, 5]
    assert {e.name: int(e) for e in EncrId} == {
        "NULL": 11,
        "AES_CBC": 12,
        "AES_GCM_8": 18,
        "AES_GCM_12": 19,
        "AES_GCM_16": 20,
        "CHACHA20_POLY1305": 28,
    }
    assert [int(p) for p in PrfId] == [5, 6, 7]
    assert [int(i) for i in IntegId] == [0, 12, 13, 14]
    assert [int(d) for d in DhId] == [0, 14, 15, 19, 20, 21, 31, 32]


def test_unknown_ids_are_pseudo_members() -> None:
    unknown = EncrId(1031)
    assert unknown == 1031 and unknown.name == "UNKNOWN_1031"
    assert repr(Transform(TransformType.ENCR, 1031)) == "Transform(ENCR, UNKNOWN_1031)"


def test_transform_equals_plain_ints() -> None:
    assert Transform(TransformType.ENCR, EncrId.AES_CBC, 128) == Transform(1, 12, 128)
    assert repr(Transform(1, 12, 128)) == "Transform(ENCR, AES_CBC, key_bits=128)"


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        (Transform(1, EncrId.AES_CBC, 128), 16),
        (Transform(1, EncrId.AES_CBC, 256), 32),
        (Transform(1, EncrId.AES_GCM_16, 128), 20),
        (Transform(1, EncrId.AES_GCM_8, 192), 28),
        (Transform(1, EncrId.AES_GCM_12, 256), 36),
        (Transform(1, EncrId.CHACHA20_POLY1305), 36),
        (Transform(1, EncrId.NULL), 0),
    ],
)
def test_encr_key_size(transform: Transform, size: int) -> None:
    assert encr_key_size(transform) == size


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (
            Transform(1, EncrId.AES_CBC),
            "Transform(ENCR, AES_CBC): AES needs a key length of 128, 192 or 256 bits",
        ),
        (
            Transform(1, EncrId.AES_GCM_16, 512),
            "Transform(ENCR, AES_GCM_16, key_bits=512): AES needs a key length of 128, 192 "
            "or 256 bits",
        ),
        (
            Transform(1, EncrId.CHACHA20_POLY1305, 128),
            "Transform(ENCR, CHACHA20_POLY1305, key_bits=128): ChaCha20-Poly1305 takes a "
            "256-bit key only",
        ),
        (Transform(1, 3), "unsupported encryption transform Transform(ENCR, UNKNOWN_3)"),
        (Transform(3, 12), "Transform(INTEG, HMAC_SHA2_256_128) is not an encryption transform"),
    ],
)
def test_encr_key_size_errors(transform: Transform, message: str) -> None:
    with pytest.raises(IkeCryptoError) as info:
        encr_key_size(transform)
    assert str(info.value) == message


def test_integ_sizes() -> None:
    # RFC 4868 §2.1: key = hash output, ICV = half of it.
    assert [integ_key_size(i) for i in IntegId] == [0, 32, 48, 64]
    assert [integ_icv_size(i) for i in IntegId] == [0, 16, 24, 32]
    with pytest.raises(IkeCryptoError, match="unsupported integrity algorithm UNKNOWN_2"):
        integ_key_size(2)


def test_is_aead() -> None:
    assert [e.name for e in EncrId if is_aead(e)] == [
        "AES_GCM_8",
        "AES_GCM_12",
        "AES_GCM_16",
        "CHACHA20_POLY1305",
    ]
