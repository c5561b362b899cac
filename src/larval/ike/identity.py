"""Identities: the ID types both IKE versions number alike, and an identity as configured.

IKEv2's ID Type (RFC 7296 §3.5) took the numbers of the IPsec DOI's Identification Type
(RFC 2407 §4.6.2.1, IKEv1) for the identities a peer authenticates as: ID_IPV4_ADDR 1,
ID_FQDN 2, ID_RFC822_ADDR 3 (IKEv1's ID_USER_FQDN), ID_IPV6_ADDR 5, ID_DER_ASN1_DN 9,
ID_DER_ASN1_GN 10 and ID_KEY_ID 11. An identity configured once (`identity()`) so goes
on the wire of either version as the same number.

The registries differ beyond those: IKEv1's 4 and 6-8 are subnets and ranges (Quick Mode
client IDs), reserved in IKEv2, and IKEv2's ID_NULL 13 (RFC 7619) is not IKEv1's. So
`larval.ikev1.constants.IdType` stays IKEv1's own registry, and this is IKEv2's.
"""

from __future__ import annotations

import ipaddress

from larval.wire import LenientIntEnum

__all__ = ["IdType", "identity"]


class IdType(LenientIntEnum):
    """ID Type of IDi and IDr (RFC 7296 §3.5; ID_NULL from RFC 7619)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_NULL = 13


def identity(text: str) -> tuple[IdType, bytes]:
    """An identity as swanctl writes it: an address, an FQDN, or user@FQDN."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if "@" in text:
            return IdType.ID_RFC822_ADDR, text.encode()
        return IdType.ID_FQDN, text.encode()
    kind = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
    return kind, address.packed
