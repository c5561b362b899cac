"""Hand-built IPv4/IPv6 TCP and UDP packets for the offload and TUN tests, and checks of
their checksums with `internet_checksum` (RFC 1071)."""

from __future__ import annotations

import ipaddress
import struct

from larval.esp.ip import internet_checksum, ipv4_set_checksum, udp_checksum
from larval.net.offload import (
    GSO_TCPV4,
    GSO_TCPV6,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VirtioNetHdr,
)

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

V4_SRC, V4_DST = "192.0.2.1", "198.51.100.7"
V6_SRC, V6_DST = "2001:db8::1", "2001:db8:1::7"


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack(">BBH", 0, proto, length)
    return src + dst + struct.pack(">IxxxB", length, proto)


def ip_packet(
    src: str,
    dst: str,
    proto: int,
    l4: bytes,
    *,
    ip_id: int = 0x1234,
    df: bool = True,
    ttl: int = 64,
    tos: int = 0,
) -> bytes:
    s, d = addr(src), addr(dst)
    if len(s) == 4:
        hdr = bytearray(
            struct.pack(
                ">BBHHHBBH4s4s",
                0x45,
                tos,
                20 + len(l4),
                ip_id,
                0x4000 if df else 0,
                ttl,
                proto,
                0,
                s,
                d,
            )
        )
        ipv4_set_checksum(hdr, 0, 20)
        return bytes(hdr) + l4
    return struct.pack(">IHBB16s16s", 6 << 28 | tos << 20, len(l4), proto, ttl, s, d) + l4


def tcp_packet(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    payload: bytes,
    *,
    ack: int = 0x01020304,
    flags: int = ACK,
    window: int = 502,
    options: bytes = b"",
    ip_id: int = 0x1234,
    df: bool = True,
    partial: bool = False,
) -> bytes:
    """A TCP packet with valid checksums, or (`partial`) only the pseudo-header sum in
    the checksum field, as the kernel leaves it for CHECKSUM_PARTIAL."""
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    tcp = bytearray(
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0)
    )
    tcp += options + payload
    pseudo = pseudo_header(addr(src), addr(dst), 6, len(tcp))
    if partial:
        struct.pack_into(">H", tcp, 16, 0xFFFF - internet_checksum(pseudo))
    else:
        struct.pack_into(">H", tcp, 16, internet_checksum(pseudo + tcp))
    return ip_packet(src, dst, 6, bytes(tcp), ip_id=ip_id, df=df)


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = bytearray(struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)
    struct.pack_into(">H", udp, 6, udp_checksum(addr(src), addr(dst), udp))
    return ip_packet(src, dst, 17, bytes(udp))


def super_packet(
    version: int,
    payload: bytes,
    gso_size: int,
    *,
    seq: int = 1000,
    flags: int = ACK | PSH,
    options: bytes = b"",
    ip_id: int = 0x1234,
) -> tuple[VirtioNetHdr, bytes]:
    """A TSO super-packet as a TUN read brings it: whole headers, partial checksum."""
    src, dst = (V4_SRC, V4_DST) if version == 4 else (V6_SRC, V6_DST)
    packet = tcp_packet(
        src, dst, 40000, 443, seq, payload, flags=flags, options=options, ip_id=ip_id, partial=True
    )
    ip_len = 20 if version == 4 else 40
    hdr = VirtioNetHdr(
        VIRTIO_NET_HDR_F_NEEDS_CSUM,
        GSO_TCPV4 if version == 4 else GSO_TCPV6,
        ip_len + 20 + len(options),
        gso_size,
        ip_len,
        16,
    )
    return hdr, packet


def ip_layout(packet: bytes) -> tuple[int, int, bytes, bytes, int]:
    """(version, IP header length, src, dst, protocol)."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        return 4, ihl, packet[12:16], packet[16:20], packet[9]
    return 6, 40, packet[8:24], packet[24:40], packet[6]


def checksums_ok(packet: bytes) -> bool:
    """Whether the IPv4 header checksum (if any) and the TCP/UDP checksum verify."""
    version, ihl, src, dst, proto = ip_layout(packet)
    if version == 4:
        if internet_checksum(packet[:ihl]) != 0:
            return False
        if struct.unpack_from(">H", packet, 2)[0] != len(packet):
            return False
    elif struct.unpack_from(">H", packet, 4)[0] + 40 != len(packet):
        return False
    l4 = packet[ihl:]
    return internet_checksum(pseudo_header(src, dst, proto, len(l4)) + l4) == 0


def tcp_fields(packet: bytes) -> tuple[int, int, bytes]:
    """(sequence number, flags, payload) of a TCP packet."""
    _, ihl, _, _, proto = ip_layout(packet)
    assert proto == 6
    seq = struct.unpack_from(">I", packet, ihl + 4)[0]
    doff = (packet[ihl + 12] >> 4) * 4
    return seq, packet[ihl + 13], packet[ihl + doff :]


def rewrite_addresses(packet: bytes, src: bytes, dst: bytes) -> bytes:
    """`packet` with new addresses and recomputed checksums (TCP or UDP)."""
    version, ihl, _, _, proto = ip_layout(packet)
    buf = bytearray(packet)
    if version == 4:
        buf[12:16], buf[16:20] = src, dst
        ipv4_set_checksum(buf, 0, ihl)
    else:
        buf[8:24], buf[24:40] = src, dst
    field = ihl + (16 if proto == 6 else 6)
    buf[field : field + 2] = b"\x00\x00"
    l4 = bytes(buf[ihl:])
    csum = internet_checksum(pseudo_header(src, dst, proto, len(l4)) + l4)
    if proto == 17:
        csum = csum or 0xFFFF
    struct.pack_into(">H", buf, field, csum)
    return bytes(buf)
