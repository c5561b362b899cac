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
_UDP_LEN = 8


class EspInbound(NamedTuple):
    """A decapsulated packet and the SA that authenticated it."""

    sa: EspSa
    packet: bytes


def _udp_fill(buf: bytearray, offset: int, ports: tuple[int, int], src: bytes, dst: bytes) -> None:
    length = len(buf) - offset
    UDP_HEADER.pack_into(buf, offset, ports[0], ports[1], length, 0)
    if len(src) == 16:
        _U16.pack_into(buf, offset + 6, udp_checksum(src, dst, memoryview(buf)[offset:]))


def esp_encapsulate_tunnel(
    sa: EspSa,
    inner: bytes,
    outer_src: bytes,
    outer_dst: bytes,
    *,
    nat_t_ports: tuple[int, int] | None = None,
    ttl: int = 64,
) -> bytearray:
    """The outer packet carrying `inner` (an IPv4 or IPv6 packet) in tunnel mode.

    `outer_src` and `outer_dst` are packed addresses: 4 bytes for an IPv4 outer header,
    16 for IPv6.
    """
    if not inner:
        raise EspError("empty inner packet")
    version = inner[0] >> 4
    if version == 4:
        next_header = IPPROTO_IPV4
        tos = inner[1] if len(inner) > 1 else 0
        flags = _IPV4_DF if len(inner) > 6 and inner[6] & 0x40 else 0
    elif version == 6:
        next_header = IPPROTO_IPV6
        tos = ((inner[0] & 0x0F) << 4 | inner[1] >> 4) if len(inner) > 1 else 0
        flags = 0
    else:
        raise EspError(f"inner packet of IP version {version}")
    udp = _UDP_LEN if nat_t_ports else 0
    if len(outer_src) == 4 and len(outer_dst) == 4:
        buf = sa.encrypt_with_headroom(inner, next_header, 20 + udp)
        IPV4_HEADER.pack_into(
            buf, 0, 0x45, tos, len(buf), sa.seq & 0xFFFF, flags, ttl,
            IPPROTO_UDP if udp else IPPROTO_ESP, 0, outer_src, outer_dst,
        )  # fmt: skip
        _U16.pack_into(buf, 10, internet_checksum(buf[:20]))
        if nat_t_ports:
            _udp_fill(buf, 20, nat_t_ports, outer_src, outer_dst)
        return buf
    if len(outer_src) == 16 and len(outer_dst) == 16:
        buf = sa.encrypt_with_headroom(inner, next_header, 40 + udp)
        IPV6_HEADER.pack_into(
            buf, 0, 0x60000000 | tos << 20, len(buf) - 40,
            IPPROTO_UDP if udp else IPPROTO_ESP, ttl, outer_src, outer_dst,
        )  # fmt: skip
        if nat_t_ports:
            _udp_fill(buf, 40, nat_t_ports, outer_src, outer_dst)
        return buf
    raise EspError("outer addresses must both be 4 bytes (IPv4) or both 16 bytes (IPv6)")


def esp_encapsulate_transport(
    sa: EspSa, packet: bytes, *, nat_t_ports: tuple[int, int] | None = None
) -> bytearray:
    """`packet` with ESP inserted after its IP header (transport mode)."""
    header = parse_ip_header(packet)
    hl = header.header_len
    udp = _UDP_LEN if nat_t_ports else 0
    outer_proto = IPPROTO_UDP if udp else IPPROTO_ESP
    buf = sa.encrypt_with_headroom(packet[hl : header.end], header.protocol, hl + udp)
    buf[:hl] = packet[:hl]
    if header.version == 4:
        buf[9] = outer_proto
        _U16.pack_into(buf, 2, len(buf))
        buf[10:12] = b"\x00\x00"
        _U16.pack_into(buf, 10, internet_checksum(buf[:hl]))
    else:
        buf[6] = outer_proto
        _U16.pack_into(buf, 4, len(buf) - 40)
    if nat_t_ports:
        _udp_fill(buf, hl, nat_t_ports, header.src, header.dst)
    return buf


def esp_decapsulate(sa_lookup: SaLookup, packet: BytesLike) -> EspInbound:
    """Authenticate, decrypt and decapsulate a received ESP (or ESP-in-UDP) IP packet.

    Tunnel mode returns the inner packet; transport mode the packet with its IP header
    restored. Raises an `EspDropError` subclass, and nothing else, for any bytes.
    """
    header = parse_ip_header(packet)
    view = memoryview(packet)
    start = header.header_len
    end = header.end
    if header.protocol == IPPROTO_UDP:
        # RFC 3948 §2.1: ESP follows the UDP header directly.
        if end - start < _UDP_LEN:
            raise EspTruncatedError("UDP header truncated")
        udp_len = _U16.unpack_from(view, start + 4)[0]
        if udp_len < _UDP_LEN or start + udp_len > end:
            raise EspMalformedError(f"UDP length {udp_len}")
        end = start + udp_len
        start += _UDP_LEN
        if end - start < 8 or bytes(view[start : start + 4]) == NON_ESP_MARKER:
            # A keepalive or an IKE message (RFC 3948 §2.2, §2.3): not for this path.
            raise EspMalformedError("UDP payload is not ESP (keepalive or IKE)")
    elif header.protocol != IPPROTO_ESP:
        raise EspMalformedError(f"IP protocol {header.protocol} is not ESP")
    if end - start < 8:
        raise EspTruncatedError("ESP header truncated")
    spi = _SPI.unpack_from(view, start)[0]
    sa = sa_lookup(spi)
    if sa is None:
        raise EspUnknownSpiError(f"no SA for SPI {spi:#010x}")
    next_header, payload = sa.decrypt(view[start:end])
    if sa.mode == "tunnel":
        # RFC 4303 §2.6, RFC 4301 §5.2: a tunnel carries IP packets only.
        if not (
            (next_header == IPPROTO_IPV4 and payload[:1] and payload[0] >> 4 == 4)
            or (next_header == IPPROTO_IPV6 and payload[:1] and payload[0] >> 4 == 6)
        ):
            raise EspBadNextHeaderError(f"Next Header {next_header} in a tunnel-mode SA")
        return EspInbound(sa, payload)
    hl = header.header_len
    out = bytearray(view[:hl])
    if header.version == 4:
        out[9] = next_header
        _U16.pack_into(out, 2, hl + len(payload))
        out[10:12] = b"\x00\x00"
        _U16.pack_into(out, 10, internet_checksum(out))
    else:
        out[6] = next_header
        _U16.pack_into(out, 4, len(payload))
    return EspInbound(sa, bytes(out) + payload)
