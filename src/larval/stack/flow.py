"""Reading what the SPD matches a packet on (addresses, protocol, ports or ICMP type)
out of an IPv4 or IPv6 packet."""

from __future__ import annotations

import ipaddress
import struct

from larval.errors import DecodeError
from larval.spd import Flow

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PORTS = struct.Struct("!HH")
_WITH_PORTS = frozenset({6, 17, 132, 136})  # TCP, UDP, SCTP, UDP-Lite
_ICMP = frozenset({1, 58})
# RFC 8200 §4: extension headers walked to find the upper-layer protocol.
_IPV6_EXTENSIONS = frozenset({0, 43, 60})


class PacketError(DecodeError):
    """The packet is too short or not IP: counted and dropped."""


def parse_flow(packet: bytes) -> Flow:
    """The selector fields of an IPv4 or IPv6 packet (RFC 4301 §4.4.1.1)."""
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    src: IPAddress
    dst: IPAddress
    upper: int | None
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            raise PacketError("truncated IPv4 header")
        proto = packet[9]
        src = ipaddress.IPv4Address(packet[12:16])
        dst = ipaddress.IPv4Address(packet[16:20])
        # A non-first fragment carries no ports (RFC 4301 §7).
        offset = int.from_bytes(packet[6:8], "big") & 0x1FFF
        upper = ihl if offset == 0 else None
    elif version == 6:
        if len(packet) < 40:
            raise PacketError("truncated IPv6 header")
        src = ipaddress.IPv6Address(packet[8:24])
        dst = ipaddress.IPv6Address(packet[24:40])
        proto, upper = packet[6], 40
        while proto in _IPV6_EXTENSIONS and upper is not None:
            if len(packet) < upper + 2:
                raise PacketError("truncated IPv6 extension header")
            proto, upper = packet[upper], upper + (packet[upper + 1] + 1) * 8
        if proto == 44:  # fragment header: ports only in the first fragment
            if len(packet) < upper + 8:
                raise PacketError("truncated IPv6 fragment header")
            first = int.from_bytes(packet[upper + 2 : upper + 4], "big") >> 3 == 0
            proto, upper = packet[upper], (upper + 8 if first else None)
    else:
        raise PacketError(f"IP version {version}")
    if upper is None:
        return Flow(src, dst, proto)
    if proto in _WITH_PORTS and len(packet) >= upper + 4:
        sport, dport = _PORTS.unpack_from(packet, upper)
        return Flow(src, dst, proto, sport, dport)
    if proto in _ICMP and len(packet) >= upper + 1:
        return Flow(src, dst, proto, icmp_type=packet[upper])
    return Flow(src, dst, proto)
