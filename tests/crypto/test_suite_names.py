"""Negotiated suites back into strongSwan's keywords: the exact inverse of the parsers."""

from __future__ import annotations

import itertools

import pytest

from larval.crypto.ike_proposals import (
    IKE_DH_KEYWORDS,
    IKE_ENCRYPTION_KEYWORDS,
    IKE_INTEGRITY_KEYWORDS,
    IKE_PRF_KEYWORDS,
    esp_proposal_transforms,
    format_esp_proposal,
    format_ike_proposal,
    parse_ike_proposal,
)
from larval.crypto.ike_transforms import EncrId, IntegId, Transform, TransformType, is_aead
from larval.crypto.proposals import DH_GROUPS, ENCRYPTION_KEYWORDS, INTEGRITY_KEYWORDS


def _ike_strings() -> list[str]:
    """Every IKE keyword at least once, in every place it can stand."""
    out = []
    for cipher in IKE_ENCRYPTION_KEYWORDS:
        aead = is_aead(IKE_ENCRYPTION_KEYWORDS[cipher].id)
        for group in IKE_DH_KEYWORDS:
            if aead:
                out += [f"{cipher}-{prf}-{group}" for prf in IKE_PRF_KEYWORDS]
            else:
                out += [f"{cipher}-{integ}-{group}" for integ in IKE_INTEGRITY_KEYWORDS]
                out += [f"{cipher}-sha256-{prf}-{group}" for prf in IKE_PRF_KEYWORDS]
    out += ["aes128-aes256-sha256-sha512-x25519-ecp256", "aes128gcm16-aes256gcm8-prfsha384-"
            "prfsha256-modp3072-x448", "aes192-sha384-sha256-prfsha512-ecp521"]  # fmt: skip
    return out


def _esp_strings() -> list[str]:
    out = []
    for cipher in ENCRYPTION_KEYWORDS:
        aead = cipher.startswith("chacha") or "gcm" in cipher
        integs = [""] if aead else [f"-{i}" for i in INTEGRITY_KEYWORDS]
        for integ, group, esn in itertools.product(
            integs, ["", *(f"-{g}" for g in DH_GROUPS)], ["", "-esn", "-noesn"]
        ):
            out.append(f"{cipher}{integ}{group}{esn}")
    return out


@pytest.mark.parametrize("text", _ike_strings())
def test_ike_parse_of_format_is_the_suite(text: str) -> None:
    suite = parse_ike_proposal(text)
    words = format_ike_proposal(suite)
    assert parse_ike_proposal(words) == suite
    assert "Transform(" not in words and " " not in words


@pytest.mark.parametrize("text", _esp_strings())
def test_esp_parse_of_format_is_the_suite(text: str) -> None:
    suite = esp_proposal_transforms(text)
    words = format_esp_proposal(suite)
    assert esp_proposal_transforms(words) == suite
    assert "Transform(" not in words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("aes128-sha256-modp2048", "aes128-sha256-modp2048"),
        ("aes128-sha2_256-prfsha256-modp2048", "aes128-sha256-modp2048"),
        ("aes128-sha256-prfsha512-curve25519", "aes128-sha256-prfsha512-x25519"),
        ("aes128gcm128-prfsha256-x25519", "aes128gcm16-prfsha256-x25519"),
        ("aes256gcm96-prfsha384-ecp384", "aes256gcm12-prfsha384-ecp384"),
        ("chacha20poly1305-prfsha256-curve448", "chacha20poly1305-prfsha256-x448"),
    ],
)
def test_ike_words_are_strongswans(text: str, words: str) -> None:
    assert format_ike_proposal(parse_ike_proposal(text)) == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("aes128gcm16", "aes128gcm16"),
        ("aes128gcm128-noesn", "aes128gcm16"),
        ("aes128-sha2_256", "aes128-sha256"),
        ("aes256-sha512-curve25519-esn", "aes256-sha512-x25519-esn"),
        ("null-sha256", "null-sha256"),
    ],
)
def test_esp_words_are_strongswans(text: str, words: str) -> None:
    assert format_esp_proposal(esp_proposal_transforms(text)) == words


def test_a_negotiated_suite_without_integrity_or_with_none() -> None:
    # An AEAD suite chosen from a peer's proposal may carry INTEG NONE (RFC 5282 §8).
    suite = (*parse_ike_proposal("aes128gcm16-prfsha256-x25519"),
             Transform(TransformType.INTEG, IntegId.NONE))  # fmt: skip
    assert format_ike_proposal(suite) == "aes128gcm16-prfsha256-x25519"


def test_an_unknown_transform_is_named_by_type_and_number() -> None:
    suite = (Transform(TransformType.ENCR, EncrId(99), 128),)
    assert format_ike_proposal(suite) == "encr99_128"
    assert format_esp_proposal(suite) == "encr99_128"
