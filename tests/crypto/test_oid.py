"""`larval.crypto.oid.dotted`: X.690 §8.19 OIDs as text, and what is no OID."""

from __future__ import annotations

import pytest

from larval.crypto.oid import dotted


@pytest.mark.parametrize(
    ("der", "text"),
    [
        (bytes.fromhex("2a864886f70d01010b"), "1.2.840.113549.1.1.11"),  # sha256WithRSA
        (bytes.fromhex("550403"), "2.5.4.3"),  # id-at-commonName
        (bytes.fromhex("2b6570"), "1.3.101.112"),  # id-Ed25519 (RFC 8410)
        (bytes.fromhex("8837"), "2.999"),  # X.690 §8.19.5's example: arcs 2 and 999
    ],
)
def test_known_oids(der: bytes, text: str) -> None:
    assert dotted(der) == text


@pytest.mark.parametrize("der", [b"", b"\x2a\x86"])
def test_empty_or_unfinished_is_no_oid(der: bytes) -> None:
    with pytest.raises(ValueError, match="bad OID"):
        dotted(der)
