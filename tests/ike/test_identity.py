"""Identities configured once go on the wire of either version as the same number."""

from __future__ import annotations

import pytest

from larval.ike.identity import IdType, identity
from larval.ikev1.constants import IdType as Ikev1IdType


@pytest.mark.parametrize(
    ("text", "kind", "data"),
    [
        ("192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01")),
        ("vpn.example", IdType.ID_FQDN, b"vpn.example"),
        ("me@vpn.example", IdType.ID_RFC822_ADDR, b"me@vpn.example"),
    ],
)
def test_identity(text: str, kind: IdType, data: bytes) -> None:
    assert identity(text) == (kind, data)


def test_ikev1_numbers_the_shared_types_alike() -> None:
    """RFC 2407 §4.6.2.1 and RFC 7296 §3.5 share these numbers; IKEv1 sends them as is."""
    shared = {
        IdType.ID_IPV4_ADDR: Ikev1IdType.ID_IPV4_ADDR,
        IdType.ID_FQDN: Ikev1IdType.ID_FQDN,
        IdType.ID_RFC822_ADDR: Ikev1IdType.ID_USER_FQDN,
        IdType.ID_IPV6_ADDR: Ikev1IdType.ID_IPV6_ADDR,
        IdType.ID_DER_ASN1_DN: Ikev1IdType.ID_DER_ASN1_DN,
        IdType.ID_DER_ASN1_GN: Ikev1IdType.ID_DER_ASN1_GN,
        IdType.ID_KEY_ID: Ikev1IdType.ID_KEY_ID,
    }
    assert all(Ikev1IdType(int(v2)) is v1 for v2, v1 in shared.items())
    # Where the registries part: IKEv1's subnets and ranges, IKEv2's ID_NULL.
    assert IdType(4).name == "UNKNOWN_4" and Ikev1IdType(13).name == "UNKNOWN_13"
