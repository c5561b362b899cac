"""swanctl's auth words as the signature schemes they allow."""

from __future__ import annotations

import pytest

from larval.ike.auth_config import SCHEMES, parse_auth


@pytest.mark.parametrize(
    ("word", "schemes"),
    [
        ("rsa/pss-sha256", ("rsa/pss-sha256",)),
        ("ecdsa-sha384", ("ecdsa-sha384",)),
        ("pubkey-sha384", ("rsa-sha384", "ecdsa-sha384")),
        ("ed25519", ("ed25519",)),
        ("ed448", ("ed448",)),
        ("rsa-sha1", ("rsa-sha1",)),
        ("ecdsa", ("ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512")),
        ("rsa/pss", ("rsa/pss-sha256", "rsa/pss-sha384", "rsa/pss-sha512")),
        ("pubkey-sha256-sha512", ("rsa-sha256", "ecdsa-sha256", "rsa-sha512", "ecdsa-sha512")),
    ],
)
def test_a_word_allows_exactly_its_schemes(word: str, schemes: tuple[str, ...]) -> None:
    assert parse_auth(word) == ("pubkey", schemes)


def test_psk_allows_no_signature() -> None:
    assert parse_auth("psk") == ("psk", ())


def test_pubkey_allows_every_scheme_but_sha1() -> None:
    kind, schemes = parse_auth("pubkey")
    assert kind == "pubkey"
    assert set(schemes) == set(SCHEMES) - {"rsa-sha1"}
    assert schemes[0] == "rsa-sha256"  # charon's default first


def test_rsa_takes_pkcs1_and_pss_but_not_sha1() -> None:
    _, schemes = parse_auth("rsa")
    assert "rsa-sha1" not in schemes
    assert {"rsa-sha256", "rsa/pss-sha256"} <= set(schemes)
    assert all(s.startswith("rsa") for s in schemes)


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("pubkey-md5", "not an auth method"),
        ("dsa", "not an auth method"),
        ("ed25519-sha256", "signs without a separate hash"),
        ("", "not an auth method"),
        ("ecdsa-sha1", "names no signature scheme"),
    ],
)
def test_a_bad_word_says_what_is_allowed(word: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_auth(word)
