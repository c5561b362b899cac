"""ESP encapsulation and decapsulation of whole IP packets: tunnel and transport mode.

Tunnel mode (RFC 4303 §3.1.2, RFC 4301 §5.1.2): the inner IP packet becomes the ESP
payload (Next Header 4 or 41) behind a fresh outer IPv4 or IPv6 header. The outer header
copies the inner TOS / Traffic Class byte (DSCP copied, ECN by the normal mode of
RFC 6040 §4.1) and, for an IPv4 inner packet, its DF bit (RFC 4301 §8.1); TTL is fresh.

Transport mode (RFC 4303 §3.1.1): ESP goes right after the IP header, the header's
protocol becomes 50 and Next Header carries the original one. IPv6 transport mode takes
everything after the fixed 40-byte header as payload: extension headers are not
supported (they would end up encrypted).

With `nat_t_ports=(src, dst)` the ESP packet travels in UDP (RFC 3948 §2.1): zero UDP
checksum over IPv4 (§2.1 allows it), a computed one over IPv6 (RFC 8200 §8.1).

`esp_decapsulate` takes a received packet, finds the SA with `sa_lookup(spi)` and returns
the SA with the inner packet; checking the inner addresses against the SA's selectors is
the caller's (RFC 4301 §5.2). Transport mode over UDP does not fix the inner TCP/UDP
checksum after NAT (RFC 3948 §3.1.2): a NAT-OA is not known here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from larval.esp.errors import (
    EspBadNextHeaderError,
    EspError,
    EspMalformedError,
    EspTruncatedError,
    EspUnknownSpiError,
)
from larval.esp.ip import (
    IPPROTO_ESP,
    IPPROTO_IPV4,
    IPPROTO_IPV6,
    IPPROTO_UDP,
    IPV4_HEADER,
    IPV6_HEADER,
    internet_checksum,
    parse_ip_header,
    udp_checksum,
)
from larval.esp.sa import EspSa
from larval.esp.transforms import BytesLike
from larval.esp.udp_encap import NON_ESP_MARKER, UDP_HEADER

__all__ = [
    "EspInbound",
    "SaLookup",
    "esp_decapsulate",
    "esp_encapsulate_transport",
    "esp_encapsulate_tunnel",
]

SaLookup = Callable[[int], "EspSa | None"]

_SPI = struct.Struct(">I")
_U16 = struct.Struct(">H")
_IPV4_DF = 0x4000
# Total Length, Flags/Fragment Offset, Protocol of an IPv4 header.
_IPV4_FAST = struct.Struct(">2xH2xHxB")
# (inner IP version, Next Header) pairs a tunnel may carry.
_TUNNEL_NEXT_HEADERS = frozenset({(4, IPPROTO_IPV4), (6, IPPROTO_IPV6)})
_UDP_LEN = 8


class EspInbound(NamedTuple):
    """A decapsulated packet and the SA that authenticated it."""

    sa: EspSa
    packet: bytes


def _ipv4_header(total: int, ident: int, tos: int, flags: int, ttl: int, protocol: int,
                 src: bytes, dst: bytes) -> bytes:  # fmt: skip
    # RFC 1071: the one's-complement sum of the header's 16-bit words is their value
    # modulo 0xFFFF (0x10000 ≡ 1); the addresses sum as one 64-bit number.
    words = (
        int.from_bytes(src + dst) % 0xFFFF
        + (0x4500 | tos) + total + ident + flags + (ttl << 8 | protocol)
    )  # fmt: skip
    checksum = ~(words % 0xFFFF or 0xFFFF) & 0xFFFF
    return IPV4_HEADER.pack(0x45, tos, total, ident, flags, ttl, protocol, checksum, src, dst)


def _udp(ports: tuple[int, int], src: bytes, dst: bytes, esp: bytes) -> bytes:
    """The UDP header and `esp`; the checksum is zero over IPv4 (RFC 3948 §2.1) and computed
    over IPv6, where zero is not allowed (RFC 8200 §8.1)."""
    length = _UDP_LEN + len(esp)
    header = UDP_HEADER.pack(ports[0], ports[1], length, 0)
    if len(src) == 16:
        checksum = udp_checksum(src, dst, header + esp)
        header = UDP_HEADER.pack(ports[0], ports[1], length, checksum)
    return header + esp


def esp_encapsulate_tunnel(
    sa: EspSa,
    inner: bytes,
    outer_src: bytes,
    outer_dst: bytes,
    *,
    nat_t_ports: tuple[int, int] | None = None,
    ttl: int = 64,
) -> bytes:
    """The outer packet carrying `inner` (an IPv4 or IPv6 packet) in tunnel mode.

    `outer_src` and `outer_dst` are packed addresses: 4 bytes for an IPv4 outer header,
    16 for IPv6. `nat_t_ports` = (source, destination) adds a UDP header (RFC 3948).
    """
    if len(inner) < 2:
        raise EspError(f"inner packet of {len(inner)} bytes")
    version = inner[0] >> 4
    if version == 4:
        next_header = IPPROTO_IPV4
        tos = inner[1]
        flags = _IPV4_DF if len(inner) > 6 and inner[6] & 0x40 else 0
    elif version == 6:
        next_header = IPPROTO_IPV6
        tos = (inner[0] & 0x0F) << 4 | inner[1] >> 4
        flags = 0
    else:
        raise EspError(f"inner packet of IP version {version}")
    v4 = len(outer_src) == 4 and len(outer_dst) == 4
    if not v4 and not (len(outer_src) == 16 and len(outer_dst) == 16):
        raise EspError("outer addresses must both be 4 bytes (IPv4) or both 16 bytes (IPv6)")
    esp = sa.encrypt(inner, next_header)
    protocol = IPPROTO_ESP
    if nat_t_ports:
        esp = _udp(nat_t_ports, outer_src, outer_dst, esp)
        protocol = IPPROTO_UDP
    if v4:
        # RFC 6864 §4.1: the ID only has to differ among packets that may be fragmented.
        ident = sa.seq & 0xFFFF
        return _ipv4_header(20 + len(esp), ident, tos, flags, ttl, protocol, outer_src,
                            outer_dst) + esp  # fmt: skip
    first = 0x60000000 | tos << 20
    return IPV6_HEADER.pack(first, len(esp), protocol, ttl, outer_src, outer_dst) + esp


def _transport_header(ip_header: BytesLike, version: int, protocol: int, payload_len: int) -> bytes:
    """`ip_header` carrying `payload_len` bytes of `protocol` in place of what it did, the
    IPv4 checksum made anew: the header of a transport-mode packet as ESP is inserted
    (RFC 4303 §3.1.1) or taken out (§3.4.4)."""
    out = bytearray(ip_header)
    if version == 4:
        out[9] = protocol
        _U16.pack_into(out, 2, len(out) + payload_len)
        out[10:12] = b"\x00\x00"
        _U16.pack_into(out, 10, internet_checksum(out))
    else:
        out[6] = protocol
        _U16.pack_into(out, 4, payload_len)
    return bytes(out)


def esp_encapsulate_transport(
    sa: EspSa, packet: bytes, *, nat_t_ports: tuple[int, int] | None = None
) -> bytes:
    """`packet` with ESP inserted after its IP header (transport mode)."""
    header = parse_ip_header(packet)
    hl = header.header_len
    esp = sa.encrypt(packet[hl : header.end], header.protocol)
    protocol = IPPROTO_ESP
    if nat_t_ports:
        esp = _udp(nat_t_ports, header.src, header.dst, esp)
        protocol = IPPROTO_UDP
    return _transport_header(packet[:hl], header.version, protocol, len(esp)) + esp


def esp_decapsulate(sa_lookup: SaLookup, packet: BytesLike) -> EspInbound:
    """Authenticate, decrypt and decapsulate a received ESP (or ESP-in-UDP) IP packet.

    Tunnel mode returns the inner packet; transport mode the packet with its IP header
    restored. Raises an `EspDropError` subclass, and nothing else, for any bytes.
    """
    n = len(packet)
    if n >= 20 and packet[0] == 0x45:
        # The common case, an IPv4 header without options, checked inline: a valid header
        # sums to 0xFFFF, i.e. its value is a multiple of 0xFFFF (RFC 1071).
        total, frag, protocol = _IPV4_FAST.unpack_from(packet)
        if 20 <= total <= n and not frag & 0x3FFF and not int.from_bytes(packet[:20]) % 0xFFFF:
            start, end = 20, total
        else:
            header = parse_ip_header(packet)  # raises the precise error
            start, end, protocol = header.header_len, header.end, header.protocol
    else:
        header = parse_ip_header(packet)
        start, end, protocol = header.header_len, header.end, header.protocol
    view = memoryview(packet)
    if protocol == IPPROTO_UDP:
        # RFC 3948 §2.1: ESP follows the UDP header directly.
        if end - start < _UDP_LEN:
            raise EspTruncatedError("UDP header truncated")
        udp_len = _U16.unpack_from(view, start + 4)[0]
        if udp_len < _UDP_LEN or start + udp_len > end:
            raise EspMalformedError(f"UDP length {udp_len}")
        end = start + udp_len
        start += _UDP_LEN
        if end - start < 8 or view[start : start + 4] == NON_ESP_MARKER:
            # A keepalive or an IKE message (RFC 3948 §2.2, §2.3): not for this path.
            raise EspMalformedError("UDP payload is not ESP (keepalive or IKE)")
    elif protocol != IPPROTO_ESP:
        raise EspMalformedError(f"IP protocol {protocol} is not ESP")
    if end - start < 8:
        raise EspTruncatedError("ESP header truncated")
    sa = sa_lookup(_SPI.unpack_from(view, start)[0])
    if sa is None:
        raise EspUnknownSpiError(f"no SA for SPI {_SPI.unpack_from(view, start)[0]:#010x}")
    next_header, payload = sa.decrypt(view[start:end])
    if sa.mode == "tunnel":
        # RFC 4303 §2.6, RFC 4301 §5.2: a tunnel carries IP packets only.
        if not payload or (payload[0] >> 4, next_header) not in _TUNNEL_NEXT_HEADERS:
            raise EspBadNextHeaderError(f"Next Header {next_header} in a tunnel-mode SA")
        return EspInbound(sa, payload)
    header = parse_ip_header(packet)
    hl = header.header_len
    return EspInbound(
        sa, _transport_header(view[:hl], header.version, next_header, len(payload)) + payload
    )
