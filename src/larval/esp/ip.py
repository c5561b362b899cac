"""The IPv4 and IPv6 headers that carry ESP: building, parsing and checksums.

Only what ESP needs: a fresh outer header for tunnel mode (RFC 4301 §5.1.2), the fix-ups
of transport mode (protocol, length, checksum), and parsing of a received outer header.
IPv4 options are carried through unchanged; IPv6 extension headers are not supported.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from larval.esp.errors import EspMalformedError
from larval.esp.transforms import BytesLike

__all__ = [
    "IPPROTO_ESP",
    "IPPROTO_IPV4",
    "IPPROTO_IPV6",
    "IPPROTO_UDP",
    "IPV4_HEADER",
    "IPV6_HEADER",
    "MAX_MTU",
    "MIN_MTU",
    "IpHeader",
    "internet_checksum",
    "ipv4_set_checksum",
    "parse_ip_header",
    "udp_checksum",
]

#: The MTUs a link may have: IPv4's minimum datagram (RFC 791) to the largest IP packet.
MIN_MTU, MAX_MTU = 68, 65535

IPPROTO_IPV4 = 4
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ESP = 50

# RFC 791 §3.1: Version/IHL, TOS, Total Length, Identification, Flags/Fragment Offset,
# TTL, Protocol, Header Checksum, Source, Destination.
IPV4_HEADER = struct.Struct(">BBHHHBBH4s4s")
# RFC 8200 §3: Version/Traffic Class/Flow Label, Payload Length, Next Header, Hop Limit,
# Source, Destination.
IPV6_HEADER = struct.Struct(">IHBB16s16s")
_U16 = struct.Struct(">H")

_IPV4_MF = 0x2000
_IPV4_OFFSET = 0x1FFF


def internet_checksum(data: BytesLike) -> int:
    """The one's-complement checksum of RFC 1071 over `data` (padded to even length)."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    # The one's-complement sum of 16-bit words is the value modulo 0xFFFF, because
    # 0x10000 ≡ 1 (RFC 1071 §2(B)); a non-zero multiple of 0xFFFF sums to 0xFFFF.
    value = int.from_bytes(data, "big")
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    return ~total & 0xFFFF


def ipv4_set_checksum(buf: bytearray, offset: int, header_len: int) -> None:
    """Compute and write the IPv4 header checksum of the header at `offset`."""
    buf[offset + 10 : offset + 12] = b"\x00\x00"
    _U16.pack_into(buf, offset + 10, internet_checksum(buf[offset : offset + header_len]))


def udp_checksum(src: bytes, dst: bytes, udp: BytesLike) -> int:
    """The UDP checksum over the pseudo-header (RFC 768, RFC 8200 §8.1) and `udp`.

    `udp` is the whole datagram with its checksum field zero. A computed 0 is sent as
    0xFFFF.
    """
    if len(src) == 4:
        pseudo = src + dst + struct.pack(">BBH", 0, IPPROTO_UDP, len(udp))
    else:
        pseudo = src + dst + struct.pack(">IxxxB", len(udp), IPPROTO_UDP)
    return internet_checksum(pseudo + bytes(udp)) or 0xFFFF


class IpHeader(NamedTuple):
    """What ESP needs of a received IP header."""

    version: int
    header_len: int
    protocol: int  # IPv4 Protocol, IPv6 Next Header
    end: int  # offset just past the packet (Total Length / Payload Length)
    src: bytes
    dst: bytes


def parse_ip_header(packet: BytesLike) -> IpHeader:
    """Parse the IPv4 or IPv6 header at the start of `packet`; check lengths.

    Raises `EspMalformedError` for a header that does not parse, a bad IPv4 checksum or
    an IPv4 fragment (ESP is processed after reassembly, RFC 4303 §3.4.1).
    """
    n = len(packet)
    if n < 20:
        raise EspMalformedError(f"IP packet of {n} bytes")
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        _, _, total, _, frag, _, proto, _, src, dst = IPV4_HEADER.unpack_from(packet)
        if ihl < 20 or total < ihl or total > n:
            raise EspMalformedError(f"IPv4 header length {ihl}, total length {total}, got {n}")
        if internet_checksum(packet[:ihl]) != 0:
            raise EspMalformedError("IPv4 header checksum wrong")
        if frag & (_IPV4_MF | _IPV4_OFFSET):
            raise EspMalformedError("IPv4 fragment; reassemble before ESP (RFC 4303 §3.4.1)")
        return IpHeader(4, ihl, proto, total, src, dst)
    if version == 6:
        if n < 40:
            raise EspMalformedError(f"IPv6 packet of {n} bytes")
        _, plen, nh, _, src, dst = IPV6_HEADER.unpack_from(packet)
        if 40 + plen > n:
            raise EspMalformedError(f"IPv6 payload length {plen}, got {n - 40}")
        return IpHeader(6, 40, nh, 40 + plen, src, dst)
    raise EspMalformedError(f"IP version {version}")
