"""strongSwan's DN and SAN words, read by larval.pki."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from larval.pki import PkiError, format_dn, parse_dn, parse_san


def test_a_dn_keeps_the_order_written_and_prints_back_the_same() -> None:
    text = "C=US, O=Example\\, Inc., OU=VPN, CN=carol, E=carol@example.org"
    name = parse_dn(text)
    assert [(a.oid, a.value) for a in name] == [
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.ORGANIZATION_NAME, "Example, Inc."),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "VPN"),
        (NameOID.COMMON_NAME, "carol"),
        (NameOID.EMAIL_ADDRESS, "carol@example.org"),
    ]
    assert format_dn(name) == text
    assert parse_dn("emailAddress=a@b, 2.5.4.3=x") == x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "x")]),
        ]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--dn '': empty"),
        ("CN=a,, O=b", "--dn: '' is not NAME=value"),
        ("CN=", "--dn: 'CN=' is not NAME=value"),
        ("C=USA", "--dn: 'C=USA': "),
        ("Q=1", "--dn: 'Q=1': unknown attribute 'Q'"),
    ],
)
def test_a_bad_dn_names_its_part(text: str, message: str) -> None:
    with pytest.raises(PkiError) as e:
        parse_dn(text)
    assert str(e.value).startswith(message)


def test_sans_are_typed_as_strongswan_types_them() -> None:
    assert parse_san("192.0.2.1") == x509.IPAddress(ipaddress.ip_address("192.0.2.1"))
    assert parse_san("2001:db8::1") == x509.IPAddress(ipaddress.ip_address("2001:db8::1"))
    assert parse_san("carol@example.org") == x509.RFC822Name("carol@example.org")
    assert parse_san("vpn.example.org") == x509.DNSName("vpn.example.org")
    assert parse_san("*.example.org") == x509.DNSName("*.example.org")
