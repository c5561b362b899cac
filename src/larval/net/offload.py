"""TUN offload: the virtio_net_hdr, TCP segmentation of super-packets, and coalescing.

A TUN device opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 |
TUN_F_TSO6)` prefixes every read and every write with a 10-byte `struct virtio_net_hdr`
(include/uapi/linux/virtio_net.h; Documentation/networking/segmentation-offloads.rst):

* a read may be a TCP *super-packet* of up to 64 KB (`gso_type` TCPV4/TCPV6) that the
  kernel has not segmented, with only the pseudo-header sum in the TCP checksum field
  (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, i.e. CHECKSUM_PARTIAL). `tcp_segment` turns it into
  MSS-sized packets with complete checksums, as a NIC doing TSO would (RFC 9293 §3.1
  for the TCP header, RFC 791 §3.1 for the IPv4 header);
* a write may likewise be a super-packet: `coalesce` merges consecutive segments of one
  TCP flow into one, so the kernel's receive path sees one large packet (as with GRO).
  The kernel trusts the CHECKSUM_PARTIAL of such a write, so every segment's checksum is
  verified before it is merged.

The header uses the host's byte order: without `TUNSETVNETLE` the device speaks legacy
virtio, which is native-endian (little-endian on x86 and arm64).

IPv6 extension headers are not segmented or coalesced; IPv4 options are carried.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from larval.esp.ip import internet_checksum
from larval.esp.transforms import BytesLike
from larval.net.errors import OffloadError

__all__ = [
    "GSO_ECN",
    "GSO_NONE",
    "GSO_TCPV4",
    "GSO_TCPV6",
    "GSO_UDP_L4",
    "VIRTIO_NET_HDR",
    "VIRTIO_NET_HDR_F_DATA_VALID",
    "VIRTIO_NET_HDR_F_NEEDS_CSUM",
    "VIRTIO_NET_HDR_LEN",
    "ZERO_VIRTIO_HDR",
    "VirtioNetHdr",
    "coalesce",
    "finish_checksum",
    "split_read",
    "tcp_segment",
]

# struct virtio_net_hdr: flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16,
# csum_offset u16 (virtio 1.2 §5.1.6, legacy layout, native byte order).
VIRTIO_NET_HDR = struct.Struct("=BBHHHH")
VIRTIO_NET_HDR_LEN = VIRTIO_NET_HDR.size
ZERO_VIRTIO_HDR = bytes(VIRTIO_NET_HDR_LEN)

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

_IPPROTO_TCP = 6

# TCP flag bits (RFC 9293 §3.1; CWR/ECE from RFC 3168 §6.1).
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_PSH = 0x08
_ACK = 0x10
_URG = 0x20
_CWR = 0x80
# Segments carrying these are never merged: they change the connection's state or mark
# a point in the byte stream that merging would move.
_NO_COALESCE = _SYN | _FIN | _RST | _URG

_TCP_CSUM_OFFSET = 16  # offset of the checksum field in the TCP header
_IPV4_DF = 0x4000
_IPV4_MF_OFFSET = 0x3FFF  # MF flag and fragment offset
_MAX_IP_LEN = 0xFFFF  # IPv4 Total Length / IPv6 Payload Length are 16 bits

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class VirtioNetHdr(NamedTuple):
    """The 10-byte header in front of every read and write of an `IFF_VNET_HDR` TUN."""

    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @classmethod
    def decode(cls, data: BytesLike) -> VirtioNetHdr:
        if len(data) < VIRTIO_NET_HDR_LEN:
            raise OffloadError(f"virtio_net_hdr needs {VIRTIO_NET_HDR_LEN} bytes, got {len(data)}")
        return cls(*VIRTIO_NET_HDR.unpack_from(data))

    def encode(self) -> bytes:
        return VIRTIO_NET_HDR.pack(*self)


def _sum(data: BytesLike) -> int:
    """The one's-complement sum of `data` (not complemented), modulo 0xFFFF.

    Partial sums of even-length pieces add up modulo 0xFFFF (RFC 1071 §2(B)).
    """
    return 0xFFFF - internet_checksum(data)


def _fold_checksum(total: int) -> int:
    """The checksum field for data whose one's-complement sum is `total` (mod 0xFFFF).

    For a sum ≡ 0 this gives 0, as Linux's csum_fold does; 0xFFFF would verify as well.
    """
    return (0xFFFF - total % 0xFFFF) % 0xFFFF


def finish_checksum(packet: bytearray, csum_start: int, csum_offset: int) -> None:
    """Complete the checksum of a `VIRTIO_NET_HDR_F_NEEDS_CSUM` packet in place.

    The field at `csum_start + csum_offset` holds the pseudo-header sum; the checksum is
    the complement of the sum from `csum_start` to the end (the kernel's
    skb_checksum_help). A result of 0 is sent as 0xFFFF, which UDP requires (RFC 768)
    and TCP accepts.
    """
    field = csum_start + csum_offset
    if csum_start >= len(packet) or field + 2 > len(packet):
        raise OffloadError(
            f"checksum at {csum_start}+{csum_offset} outside a packet of {len(packet)} bytes"
        )
    with memoryview(packet) as view:
        csum = internet_checksum(view[csum_start:])
    _U16.pack_into(packet, field, csum or 0xFFFF)


class _Ip(NamedTuple):
    """The layout of an IP packet that carries TCP, as segmentation needs it."""

    version: int
    ip_len: int  # IPv4 IHL in bytes, or 40
    end: int  # offset past the IP datagram
    src: bytes
    dst: bytes


def _parse_ip_tcp(packet: BytesLike) -> _Ip | None:
    """The IP layout of `packet` if it is an unfragmented TCP packet, else None."""
    n = len(packet)
    if n < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ip_len = (packet[0] & 0x0F) * 4
        total = _U16.unpack_from(packet, 2)[0]
        frag = _U16.unpack_from(packet, 6)[0]
        if ip_len < 20 or total < ip_len or total > n or packet[9] != _IPPROTO_TCP:
            return None
        if frag & _IPV4_MF_OFFSET:
            return None
        return _Ip(4, ip_len, total, bytes(packet[12:16]), bytes(packet[16:20]))
    if version == 6 and n >= 40:
        end = 40 + _U16.unpack_from(packet, 4)[0]
        if packet[6] != _IPPROTO_TCP or end > n:
            return None
        return _Ip(6, 40, end, bytes(packet[8:24]), bytes(packet[24:40]))
    return None


def _pseudo_sum(ip: _Ip) -> int:
    """The pseudo-header sum without its length (RFC 9293 §3.1, RFC 8200 §8.1).

    The addresses are a whole number of 16-bit words, so their sum modulo 0xFFFF is
    their value as one big number modulo 0xFFFF (RFC 1071 §2(B)).
    """
    return (int.from_bytes(ip.src + ip.dst, "big") + _IPPROTO_TCP) % 0xFFFF


def split_read(data: BytesLike) -> list[bytes]:
    """One read of an `IFF_VNET_HDR` TUN (header included) as plain IP packets."""
    hdr = VirtioNetHdr.decode(data)
    return tcp_segment(hdr, memoryview(data)[VIRTIO_NET_HDR_LEN:])


def tcp_segment(hdr: VirtioNetHdr, packet: BytesLike) -> list[bytes]:
    """Split the TCP super-packet `packet` (the read without its virtio header) into
    packets of at most `hdr.gso_size` bytes of payload, each with complete checksums.

    Per segment i: IPv4 ID + i, Total Length (IPv4) or Payload Length (IPv6), the IPv4
    header checksum, TCP sequence number + i·gso_size, FIN and PSH only on the last
    segment, CWR only on the first (RFC 3168 §6.1.2), the full TCP checksum. A packet
    without GSO comes back alone, its checksum completed if it was left partial.
    """
    gso_type = hdr.gso_type & ~GSO_ECN
    if gso_type == GSO_NONE:
        if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            buf = bytearray(packet)
            finish_checksum(buf, hdr.csum_start, hdr.csum_offset)
            return [bytes(buf)]
        return [bytes(packet)]
    if gso_type not in (GSO_TCPV4, GSO_TCPV6):
        raise OffloadError(f"gso_type {hdr.gso_type:#x} is not TCP segmentation offload")
    if hdr.gso_size == 0:
        raise OffloadError("TCP segmentation offload with gso_size 0")
    ip = _parse_ip_tcp(packet)
    if ip is None or ip.version != (4 if gso_type == GSO_TCPV4 else 6):
        raise OffloadError(f"gso_type {hdr.gso_type:#x} on a packet that is not TCP over IP")
    tcp = ip.ip_len
    if tcp + 20 > ip.end:
        raise OffloadError(f"TCP header truncated: packet of {ip.end} bytes")
    tcp_hdr_len = (packet[tcp + 12] >> 4) * 4
    hlen = tcp + tcp_hdr_len
    if tcp_hdr_len < 20 or hlen > ip.end:
        raise OffloadError(f"TCP header of {tcp_hdr_len} bytes in a packet of {ip.end}")

    view = memoryview(packet)
    template = bytearray(view[:hlen])
    template[tcp + 16 : tcp + 18] = b"\x00\x00"
    seq0 = _U32.unpack_from(template, tcp + 4)[0]
    flags0 = template[tcp + 13]
    ip_id0 = _U16.unpack_from(template, 4)[0] if ip.version == 4 else 0
    # The sum of what is the same in every segment: pseudo-header addresses and protocol,
    # and the TCP header with its sequence number, flags and checksum zeroed.
    fixed = bytearray(template[tcp:])
    fixed[4:8] = b"\x00\x00\x00\x00"
    fixed[13] = 0
    base_sum = (_pseudo_sum(ip) + _sum(fixed)) % 0xFFFF

    size = hdr.gso_size
    payload_len = ip.end - hlen
    count = max(1, -(-payload_len // size))
    segments: list[bytes] = []
    for i in range(count):
        start = hlen + i * size
        chunk = view[start : min(start + size, ip.end)]
        last = i == count - 1
        seg = bytearray(template)
        if ip.version == 4:
            _U16.pack_into(seg, 2, hlen + len(chunk))
            _U16.pack_into(seg, 4, (ip_id0 + i) & 0xFFFF)
            seg[10:12] = b"\x00\x00"
            _U16.pack_into(seg, 10, internet_checksum(seg[:tcp]))
        else:
            _U16.pack_into(seg, 4, tcp_hdr_len + len(chunk))
        seq = (seq0 + i * size) & 0xFFFFFFFF
        _U32.pack_into(seg, tcp + 4, seq)
        flags = flags0
        if not last:
            flags &= ~(_FIN | _PSH)
        if i:
            flags &= ~_CWR
        seg[tcp + 13] = flags
        # The sequence number and flags are summed here rather than in `fixed`; the TCP
        # header length is even, so the payload's words line up.
        total = (
            base_sum + (seq >> 16) + (seq & 0xFFFF) + flags + tcp_hdr_len + len(chunk) + _sum(chunk)
        )
        _U16.pack_into(seg, tcp + 16, _fold_checksum(total))
        seg += chunk
        segments.append(bytes(seg))
    return segments


class _Segment(NamedTuple):
    """A TCP segment that may be merged with its neighbours of the same flow."""

    packet: bytes
    ip: _Ip
    hlen: int  # IP + TCP header bytes
    seq: int
    flags: int
    ip_id: int | None  # IPv4 ID when it must increase by one per segment (DF clear)


def _coalescable(packet: bytes) -> tuple[tuple[object, ...], bytes, _Segment] | None:
    """(flow key, header shape, segment) for a TCP data segment that may be merged, or
    None. The shape is everything that must be equal in every segment of one write."""
    ip = _parse_ip_tcp(packet)
    if ip is None or ip.end != len(packet):
        return None
    tcp = ip.ip_len
    if tcp + 20 > ip.end:
        return None
    tcp_hdr_len = (packet[tcp + 12] >> 4) * 4
    hlen = tcp + tcp_hdr_len
    flags = packet[tcp + 13]
    if tcp_hdr_len < 20 or hlen >= ip.end or flags & _NO_COALESCE or not flags & _ACK:
        return None
    if ip.version == 4 and internet_checksum(packet[:tcp]) != 0:
        return None
    # The kernel will not check the merged packet (CHECKSUM_PARTIAL): check each part.
    seg_len = ip.end - tcp
    with memoryview(packet) as view:
        if (_pseudo_sum(ip) + seg_len + _sum(view[tcp:])) % 0xFFFF != 0:
            return None
    ip_id: int | None = None
    if ip.version == 4:
        if not packet[6] & (_IPV4_DF >> 8):
            # Without DF the receiver may reassemble by ID, so IDs must stay as TSO
            # would make them: the first segment's, plus one per segment.
            ip_id = _U16.unpack_from(packet, 4)[0]
        # TOS, DF, TTL and options must agree; ID, length and checksum may differ.
        shape = bytes((packet[1], packet[6] & 0xE0, packet[8])) + packet[20:tcp]
    else:
        # Traffic class, flow label and hop limit.
        shape = packet[0:4] + packet[7:8]
    # Acknowledgment, data offset, flags but PSH, window, urgent pointer and options.
    shape += (
        packet[tcp + 8 : tcp + 13]
        + bytes((flags & ~_PSH,))
        + packet[tcp + 14 : tcp + 16]
        + packet[tcp + 18 : hlen]
    )
    key = (ip.src, ip.dst, packet[tcp : tcp + 4])
    seq = _U32.unpack_from(packet, tcp + 4)[0]
    return key, shape, _Segment(packet, ip, hlen, seq, flags, ip_id)


class _Group:
    """Segments of one flow being merged into one write."""

    __slots__ = ("gso_size", "next_id", "next_seq", "segments", "shape", "total")

    def __init__(self, shape: bytes, segment: _Segment) -> None:
        self.shape = shape
        self.segments = [segment]
        self.gso_size = segment.ip.end - segment.hlen
        self.total = segment.ip.end
        self.next_seq = (segment.seq + self.gso_size) & 0xFFFFFFFF
        self.next_id = None if segment.ip_id is None else (segment.ip_id + 1) & 0xFFFF

    def closed_by(self, segment: _Segment) -> bool:
        """Whether nothing may follow `segment` in a merged write."""
        return bool(segment.flags & _PSH) or segment.ip.end - segment.hlen < self.gso_size

    def accepts(self, shape: bytes, segment: _Segment) -> bool:
        payload = segment.ip.end - segment.hlen
        return (
            shape == self.shape
            and segment.seq == self.next_seq
            and payload <= self.gso_size
            and segment.ip_id == self.next_id
            # IPv4 Total Length counts the IP header, IPv6 Payload Length does not.
            and self.total + payload - (40 if segment.ip.version == 6 else 0) <= _MAX_IP_LEN
        )

    def add(self, segment: _Segment) -> None:
        payload = segment.ip.end - segment.hlen
        self.segments.append(segment)
        self.total += payload
        self.next_seq = (self.next_seq + payload) & 0xFFFFFFFF
        if self.next_id is not None:
            self.next_id = (self.next_id + 1) & 0xFFFF

    def build(self) -> bytes:
        """The write: a virtio header and the packet, merged if there is more than one."""
        first = self.segments[0]
        if len(self.segments) == 1:
            return ZERO_VIRTIO_HDR + first.packet
        ip, hlen = first.ip, first.hlen
        tcp = ip.ip_len
        out = bytearray(VIRTIO_NET_HDR_LEN)
        out += first.packet[:hlen]
        h = VIRTIO_NET_HDR_LEN
        if ip.version == 4:
            _U16.pack_into(out, h + 2, self.total)
            out[h + 10 : h + 12] = b"\x00\x00"
            _U16.pack_into(out, h + 10, internet_checksum(out[h : h + tcp]))
            gso_type = GSO_TCPV4
        else:
            _U16.pack_into(out, h + 4, self.total - 40)
            gso_type = GSO_TCPV6
        out[h + tcp + 13] |= self.segments[-1].flags & _PSH
        # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented; the
        # kernel adds the rest from csum_start on (include/linux/skbuff.h, "CHECKSUM_PARTIAL").
        pseudo = (_pseudo_sum(ip) + self.total - tcp) % 0xFFFF or 0xFFFF
        _U16.pack_into(out, h + tcp + _TCP_CSUM_OFFSET, pseudo)
        VIRTIO_NET_HDR.pack_into(
            out,
            0,
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hlen,
            self.gso_size,
            tcp,
            _TCP_CSUM_OFFSET,
        )
        for segment in self.segments:
            out += segment.packet[segment.hlen :]
        return bytes(out)


def coalesce(packets: Sequence[BytesLike]) -> list[bytes]:
    """Turn plain IP packets into TUN writes (each with its virtio header), merging
    consecutive segments of one TCP flow into one GSO_TCPV4/GSO_TCPV6 super-packet.

    Segments merge when they have the same addresses and ports, contiguous sequence
    numbers, the same acknowledgment, window, options and flags (PSH allowed on the last
    only), no SYN/FIN/RST/URG, valid checksums, and equal payload sizes but a shorter
    last. Writes keep the order of their first packet; packets of one flow keep their
    order. Everything else passes through behind a zero header.
    """
    groups: list[_Group | bytes] = []
    open_groups: dict[tuple[object, ...], _Group] = {}
    for packet in packets:
        if not isinstance(packet, bytes):
            packet = bytes(packet)
        found = _coalescable(packet)
        if found is None:
            groups.append(ZERO_VIRTIO_HDR + packet)
            continue
        key, shape, segment = found
        group = open_groups.get(key)
        if group is not None and group.accepts(shape, segment):
            group.add(segment)
        else:
            group = _Group(shape, segment)
            groups.append(group)
            open_groups[key] = group
        if group.closed_by(segment):
            del open_groups[key]
    return [g if isinstance(g, bytes) else g.build() for g in groups]
