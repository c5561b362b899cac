"""IKE proposal strings (strongSwan keywords) to IKEv2 transforms; ESP proposals likewise."""

from __future__ import annotations

import pytest

from larval.crypto.ike import (
    DhId,
    EncrId,
    EsnId,
    IkeProposalError,
    IntegId,
    PrfId,
    Transform,
    TransformType,
    esp_proposal_transforms,
    parse_ike_proposal,
)
from larval.crypto.proposals import ProposalError
from larval.errors import LarvalError

T = TransformType


def encr(encr_id: EncrId, bits: int | None = None) -> Transform:
    return Transform(T.ENCR, encr_id, bits)


def prf(prf_id: PrfId) -> Transform:
    return Transform(T.PRF, prf_id)


def integ(integ_id: IntegId) -> Transform:
    return Transform(T.INTEG, integ_id)


def dh(dh_id: DhId) -> Transform:
    return Transform(T.DH, dh_id)


def esn(esn_id: EsnId) -> Transform:
    return Transform(T.ESN, esn_id)


SHA256 = (prf(PrfId.HMAC_SHA2_256), integ(IntegId.HMAC_SHA2_256_128))

IKE_GOOD = [
    (
        "aes128-sha256-x25519",
        (encr(EncrId.AES_CBC, 128), *SHA256, dh(DhId.CURVE25519)),
    ),
    (
        "aes256-sha384-ecp384",
        (
            encr(EncrId.AES_CBC, 256),
            prf(PrfId.HMAC_SHA2_384),
            integ(IntegId.HMAC_SHA2_384_192),
            dh(DhId.ECP_384),
        ),
    ),
    (
        "aes128gcm16-prfsha256-ecp256",
        (encr(EncrId.AES_GCM_16, 128), prf(PrfId.HMAC_SHA2_256), dh(DhId.ECP_256)),
    ),
    (
        "chacha20poly1305-prfsha256-x25519",
        (encr(EncrId.CHACHA20_POLY1305), prf(PrfId.HMAC_SHA2_256), dh(DhId.CURVE25519)),
    ),
    (
        "aes128-sha256-modp2048",
        (encr(EncrId.AES_CBC, 128), *SHA256, dh(DhId.MODP_2048)),
    ),
    # Several of one type are alternatives, kept in the order written.
    (
        "aes128-aes256-sha256-x25519-ecp256",
        (
            encr(EncrId.AES_CBC, 128),
            encr(EncrId.AES_CBC, 256),
            *SHA256,
            dh(DhId.CURVE25519),
            dh(DhId.ECP_256),
        ),
    ),
    # Each integrity keyword brings its PRF when none is named.
    (
        "aes192-sha512-sha256-ecp521",
        (
            encr(EncrId.AES_CBC, 192),
            prf(PrfId.HMAC_SHA2_512),
            prf(PrfId.HMAC_SHA2_256),
            integ(IntegId.HMAC_SHA2_512_256),
            integ(IntegId.HMAC_SHA2_256_128),
            dh(DhId.ECP_521),
        ),
    ),
    # An explicit PRF replaces the implied ones.
    (
        "aes128-sha256-prfsha512-modp3072",
        (
            encr(EncrId.AES_CBC, 128),
            prf(PrfId.HMAC_SHA2_512),
            integ(IntegId.HMAC_SHA2_256_128),
            dh(DhId.MODP_3072),
        ),
    ),
    (
        "aes256gcm128-aes128gcm12-aes192gcm64-prfsha384-x448",
        (
            encr(EncrId.AES_GCM_16, 256),
            encr(EncrId.AES_GCM_12, 128),
            encr(EncrId.AES_GCM_8, 192),
            prf(PrfId.HMAC_SHA2_384),
            dh(DhId.CURVE448),
        ),
    ),
    # Keyword order does not matter, case does not either.
    (
        "X25519-SHA2_256-AES128",
        (encr(EncrId.AES_CBC, 128), *SHA256, dh(DhId.CURVE25519)),
    ),
]


@pytest.mark.parametrize(("text", "want"), IKE_GOOD)
def test_parse_ike_proposal_good(text: str, want: tuple[Transform, ...]) -> None:
    assert parse_ike_proposal(text) == want


ALLOWED = (
    "aes128, aes192, aes256, aes128gcm16, aes128gcm128, aes192gcm16, aes192gcm128, "
    "aes256gcm16, aes256gcm128, aes128gcm12, aes128gcm96, aes192gcm12, aes192gcm96, "
    "aes256gcm12, aes256gcm96, aes128gcm8, aes128gcm64, aes192gcm8, aes192gcm64, "
    "aes256gcm8, aes256gcm64, chacha20poly1305, sha256, sha2_256, sha384, sha2_384, "
    "sha512, sha2_512, prfsha256, prfsha384, prfsha512, modp2048, modp3072, ecp256, "
    "ecp384, ecp521, x25519, curve25519, x448, curve448"
)
CIPHERS = ALLOWED.split(", sha256")[0]

IKE_BAD = [
    ("", f"empty IKE proposal ''; allowed keywords: {ALLOWED}"),
    ("  ", f"empty IKE proposal '  '; allowed keywords: {ALLOWED}"),
    (
        "aes128-sha256-foo",
        f"unknown keyword 'foo' in IKE proposal 'aes128-sha256-foo'; allowed: {ALLOWED}",
    ),
    (
        "aes128-sha256-x25519-esn",
        f"unknown keyword 'esn' in IKE proposal 'aes128-sha256-x25519-esn'; allowed: {ALLOWED}",
    ),
    (
        "null-sha256-x25519",
        f"unknown keyword 'null' in IKE proposal 'null-sha256-x25519'; allowed: {ALLOWED}",
    ),
    (
        "sha256-x25519",
        f"IKE proposal 'sha256-x25519' has no encryption algorithm; one of: {CIPHERS}",
    ),
    (
        "aes128gcm16-aes128-prfsha256-x25519",
        "IKE proposal 'aes128gcm16-aes128-prfsha256-x25519' mixes AEAD (aes128gcm16) and "
        "non-AEAD (aes128) ciphers; list them as separate proposals",
    ),
    (
        "aes128gcm16-sha256-x25519",
        "IKE proposal 'aes128gcm16-sha256-x25519': AEAD cipher aes128gcm16 takes no "
        "integrity algorithm, but sha256 is given",
    ),
    (
        "aes128gcm16-x25519",
        "IKE proposal 'aes128gcm16-x25519': AEAD cipher aes128gcm16 needs a PRF, one of: "
        "prfsha256, prfsha384, prfsha512",
    ),
    (
        "aes128-x25519",
        "IKE proposal 'aes128-x25519': cipher aes128 needs an integrity algorithm, one of: "
        "sha256, sha2_256, sha384, sha2_384, sha512, sha2_512",
    ),
    (
        "aes128-sha256",
        "IKE proposal 'aes128-sha256' has no Diffie-Hellman group; one of: modp2048, "
        "modp3072, ecp256, ecp384, ecp521, x25519, curve25519, x448, curve448",
    ),
    (
        "x25519-aes128-sha256-curve25519",
        "IKE proposal 'x25519-aes128-sha256-curve25519' names the same transform twice "
        "(x25519, curve25519)",
    ),
    (
        "aes128gcm16-aes128gcm128-prfsha256-x25519",
        "IKE proposal 'aes128gcm16-aes128gcm128-prfsha256-x25519' names the same transform "
        "twice (aes128gcm16, aes128gcm128)",
    ),
]


@pytest.mark.parametrize(("text", "message"), IKE_BAD)
def test_parse_ike_proposal_bad(text: str, message: str) -> None:
    with pytest.raises(IkeProposalError) as info:
        parse_ike_proposal(text)
    assert str(info.value) == message
    assert isinstance(info.value, LarvalError)
    assert isinstance(info.value, ProposalError)


ESP_GOOD = [
    ("aes128gcm16", (encr(EncrId.AES_GCM_16, 128), esn(EsnId.NO))),
    ("aes256gcm128-esn", (encr(EncrId.AES_GCM_16, 256), esn(EsnId.YES))),
    (
        "chacha20poly1305-x25519",
        (encr(EncrId.CHACHA20_POLY1305), dh(DhId.CURVE25519), esn(EsnId.NO)),
    ),
    (
        "aes128-sha256",
        (encr(EncrId.AES_CBC, 128), integ(IntegId.HMAC_SHA2_256_128), esn(EsnId.NO)),
    ),
    (
        "aes256-sha512-ecp384-esn",
        (
            encr(EncrId.AES_CBC, 256),
            integ(IntegId.HMAC_SHA2_512_256),
            dh(DhId.ECP_384),
            esn(EsnId.YES),
        ),
    ),
    ("null-sha384", (encr(EncrId.NULL), integ(IntegId.HMAC_SHA2_384_192), esn(EsnId.NO))),
]


@pytest.mark.parametrize(("text", "want"), ESP_GOOD)
def test_esp_proposal_transforms(text: str, want: tuple[Transform, ...]) -> None:
    assert esp_proposal_transforms(text) == want


def test_esp_proposal_error_keeps_the_esp_message() -> None:
    with pytest.raises(IkeProposalError) as info:
        esp_proposal_transforms("aes128gcm16-sha256")
    assert str(info.value) == (
        "ESP proposal 'aes128gcm16-sha256': AEAD cipher aes128gcm16 takes no integrity "
        "algorithm, but sha256 is given"
    )
