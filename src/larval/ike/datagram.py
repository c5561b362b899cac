"""What a datagram says before any IKE SA reads it: its IKE version, and the IKE SA it is for.

Both versions' headers put the version octet at the same place, the 18th (RFC 7296 §3.1,
RFC 2408 §3.1: MjVer in its high four bits), behind the two SPIs (IKEv1: the cookies), so
`version_of` tells them apart without decoding either. Each version's `stateless` module
reads the rest into a `Recipient`.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import NamedTuple

__all__ = ["HEADER_SIZE", "Recipient", "address_of", "version_of"]

HEADER_SIZE = 28  # octets, IKEv2's header and ISAKMP's alike
_VERSION_OCTET = 17


#: Distinct peer addresses whose parsed form is remembered: a gateway hears from the
#: same few again and again, and parsing the text costs more than the rest of a lookup.
_ADDRESSES_KEPT = 4096


@functools.lru_cache(maxsize=_ADDRESSES_KEPT)
def address_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """`ipaddress.ip_address` of a datagram's source or destination as the socket gives
    it (addresses are immutable: one object serves every datagram); ValueError for text
    that is no address."""
    return ipaddress.ip_address(text)


def version_of(datagram: bytes) -> int | None:
    """The major version of the IKE message `datagram` (1: ISAKMP, 2: IKEv2, or whatever
    else the octet holds), or None if it is shorter than an IKE header."""
    if len(datagram) < HEADER_SIZE:
        return None
    return datagram[_VERSION_OCTET] >> 4


class Recipient(NamedTuple):
    """The IKE SA a message is for, by the initiator's SPI (IKEv1: CKY-I), and whether it
    opens a new one (IKE_SA_INIT request; Main or Aggressive Mode without CKY-R)."""

    spi_i: bytes
    opens: bool
