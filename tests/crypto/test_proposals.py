"""ESP proposal strings (strongSwan keywords) to EspProposal alternatives."""

from __future__ import annotations

import pytest

from larval.crypto.proposals import (
    EspProposal,
    ProposalError,
    parse_esp_proposal,
    parse_esp_proposals,
)
from larval.errors import LarvalError
from larval.pfkey import AuthAlg, EncryptAlg

GOOD = [
    # text, encrypt, encrypt_bits, auth, auth_bits, dh_group, esn
    ("aes128gcm16", EncryptAlg.AES_GCM_16, 128, 0, 0, None, False),
    ("aes256gcm16", EncryptAlg.AES_GCM_16, 256, 0, 0, None, False),
    ("aes128gcm128", EncryptAlg.AES_GCM_16, 128, 0, 0, None, False),
    ("aes256gcm128", EncryptAlg.AES_GCM_16, 256, 0, 0, None, False),
    ("chacha20poly1305", EncryptAlg.CHACHA20_POLY1305, 256, 0, 0, None, False),
    ("aes128-sha256", EncryptAlg.AES, 128, AuthAlg.SHA256HMAC, 256, None, False),
    ("aes192-sha384", EncryptAlg.AES, 192, AuthAlg.SHA384HMAC, 384, None, False),
    ("aes256-sha512", EncryptAlg.AES, 256, AuthAlg.SHA512HMAC, 512, None, False),
    ("aes128-sha2_256", EncryptAlg.AES, 128, AuthAlg.SHA256HMAC, 256, None, False),
    ("null-sha256", EncryptAlg.NULL, 0, AuthAlg.SHA256HMAC, 256, None, False),
    ("aes256gcm16-ecp384", EncryptAlg.AES_GCM_16, 256, 0, 0, 20, False),
    ("aes128gcm16-esn", EncryptAlg.AES_GCM_16, 128, 0, 0, None, True),
    ("aes128gcm16-noesn", EncryptAlg.AES_GCM_16, 128, 0, 0, None, False),
    ("aes128-sha256-modp2048", EncryptAlg.AES, 128, AuthAlg.SHA256HMAC, 256, 14, False),
    ("aes128-sha256-modp3072", EncryptAlg.AES, 128, AuthAlg.SHA256HMAC, 256, 15, False),
    ("aes128gcm16-ecp256", EncryptAlg.AES_GCM_16, 128, 0, 0, 19, False),
    ("aes128gcm16-ecp521", EncryptAlg.AES_GCM_16, 128, 0, 0, 21, False),
    ("aes128gcm16-x25519-esn", EncryptAlg.AES_GCM_16, 128, 0, 0, 31, True),
    ("sha256-aes128", EncryptAlg.AES, 128, AuthAlg.SHA256HMAC, 256, None, False),
    ("chacha20poly1305-x448", EncryptAlg.CHACHA20_POLY1305, 256, 0, 0, 32, False),
]


@pytest.mark.parametrize(("text", "ealg", "ebits", "aalg", "abits", "dh", "esn"), GOOD)
def test_parse_good(
    text: str, ealg: int, ebits: int, aalg: int, abits: int, dh: int | None, esn: bool
) -> None:
    assert parse_esp_proposal(text) == EspProposal(ealg, ebits, aalg, abits, dh, esn, text)


BAD = [
    (
        "aes512-sha256",
        "unknown keyword 'aes512' in ESP proposal 'aes512-sha256'; allowed: aes128, aes192, "
        "aes256, aes128gcm16, aes192gcm16, aes256gcm16, aes128gcm128, aes192gcm128, "
        "aes256gcm128, chacha20poly1305, null, sha256, sha2_256, sha384, sha2_384, sha512, "
        "sha2_512, modp2048, modp3072, ecp256, ecp384, ecp521, x25519, curve25519, x448, "
        "curve448, esn, noesn",
    ),
    (
        "aes128gcm16-sha256",
        "ESP proposal 'aes128gcm16-sha256': AEAD cipher aes128gcm16 takes no integrity "
        "algorithm, but sha256 is given",
    ),
    (
        "aes128",
        "ESP proposal 'aes128': cipher aes128 needs an integrity algorithm, one of: sha256, "
        "sha2_256, sha384, sha2_384, sha512, sha2_512",
    ),
    (
        "null",
        "ESP proposal 'null': cipher null needs an integrity algorithm, one of: sha256, "
        "sha2_256, sha384, sha2_384, sha512, sha2_512",
    ),
    (
        "sha256",
        "ESP proposal 'sha256' has no encryption algorithm; one of: aes128, aes192, aes256, "
        "aes128gcm16, aes192gcm16, aes256gcm16, aes128gcm128, aes192gcm128, aes256gcm128, "
        "chacha20poly1305, null",
    ),
    (
        "aes128-aes256-sha256",
        "ESP proposal 'aes128-aes256-sha256' names two ciphers (aes128, aes256); list "
        "alternatives as separate proposals",
    ),
    (
        "aes128-sha256-sha384",
        "ESP proposal 'aes128-sha256-sha384' names two integrity algorithms (sha256, sha384); "
        "list alternatives as separate proposals",
    ),
    (
        "aes128gcm16-ecp256-x25519",
        "ESP proposal 'aes128gcm16-ecp256-x25519' names two DH groups (ecp256, x25519); list "
        "alternatives as separate proposals",
    ),
    ("aes128gcm16-esn-noesn", "ESP proposal 'aes128gcm16-esn-noesn' names both esn and noesn"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(ProposalError) as info:
        parse_esp_proposal(text)
    assert str(info.value) == message
    assert isinstance(info.value, LarvalError)


def test_ike_only_keyword_is_unknown_for_esp() -> None:
    with pytest.raises(ProposalError, match="unknown keyword 'prfsha256'"):
        parse_esp_proposal("aes128gcm16-prfsha256")


@pytest.mark.parametrize("text", ["", "   ", "-", "aes128gcm16-"])
def test_empty_parts(text: str) -> None:
    with pytest.raises(ProposalError):
        parse_esp_proposal(text)


def test_alternatives_in_order_and_error_names_index() -> None:
    got = parse_esp_proposals(["aes128gcm16", "aes128-sha256"])
    assert [p.text for p in got] == ["aes128gcm16", "aes128-sha256"]
    with pytest.raises(ProposalError, match=r"^\[1\]: unknown keyword 'aes'"):
        parse_esp_proposals(["aes128gcm16", "aes-sha256"])


def test_keywords_canonical_when_built_by_hand() -> None:
    p = EspProposal(EncryptAlg.AES, 256, AuthAlg.SHA512HMAC, 512, 19, True)
    assert p.keywords == "aes256-sha512-ecp256-esn"
    assert parse_esp_proposal(p.keywords) == EspProposal(
        EncryptAlg.AES, 256, AuthAlg.SHA512HMAC, 512, 19, True, "aes256-sha512-ecp256-esn"
    )
    assert not p.aead
    assert parse_esp_proposal("aes128gcm16").aead
