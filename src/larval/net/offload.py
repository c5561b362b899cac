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

Where the compiled helper runs (`larval.esp.helper`), segmentation and coalescing (with
its checksum checks) are one C call each; the Python (numpy and per-packet) paths are the
reference it is tested against byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from larval.esp import helper
from larval.esp.ip import internet_checksum
from larval.esp.transforms import BytesLike
from larval.net.errors import OffloadError

#: The `module` argument's default: the function asks `helper.compiled()` itself. A loop
#: over many reads asks once (a call reads the environment, about 1 µs) and passes it.
ASK: Any = object()

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
    "checksummed_read",
    "coalesce",
    "coalesce_runs",
    "finish_checksum",
    "plain_read",
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


def finish_checksum(
    packet: bytearray, csum_start: int, csum_offset: int, module: Any = ASK
) -> None:
    """Complete the checksum of a `VIRTIO_NET_HDR_F_NEEDS_CSUM` packet in place.

    The field at `csum_start + csum_offset` holds the pseudo-header sum; the checksum is
    the complement of the sum from `csum_start` to the end (the kernel's
    skb_checksum_help). A result of 0 is sent as 0xFFFF, which UDP requires (RFC 768)
    and TCP accepts. Summed by `module`, the compiled helper (`helper.compiled()`), or
    in Python where it is None.
    """
    field = csum_start + csum_offset
    if csum_start >= len(packet) or field + 2 > len(packet):
        raise OffloadError(
            f"checksum at {csum_start}+{csum_offset} outside a packet of {len(packet)} bytes"
        )
    if module is ASK:
        module = helper.compiled()
    if module is not None:
        # The compiled helper's sum: a call for a UDP datagram of 1,400 bytes takes
        # about 2.5 µs here, against 5.5 µs with Python's big-integer sum below.
        module.lib.larval_finish_checksum(
            module.ffi.from_buffer(packet), len(packet), csum_start, csum_offset
        )
        return
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


def plain_read(data: bytes) -> bytes | None:
    """The IP packet of a read that `split_read` would return alone and as it is (no
    GSO, checksum complete: every read of traffic TSO cannot batch, such as UDP or
    fragments), without decoding the header; None for any other read."""
    if len(data) > VIRTIO_NET_HDR_LEN and not (
        data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM or data[1] & ~GSO_ECN
    ):
        return data[VIRTIO_NET_HDR_LEN:]
    return None


#: A virtio header's csum_start and csum_offset (host order, as `VIRTIO_NET_HDR`).
_CSUM_FIELDS = struct.Struct("=HH")


def checksummed_read(data: bytes, module: Any) -> bytes | None:
    """The IP packet `split_read` makes of a read without GSO whose checksum the kernel
    left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`: a datagram of a local UDP socket, most
    often), its checksum completed by `module` (the compiled helper) in one call, without
    decoding the header into an object; None for any other read (`split_read` takes it,
    and refuses a bad one by name), or where `module` is None."""
    if (
        module is None
        or len(data) <= VIRTIO_NET_HDR_LEN
        or not data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM
        or data[1] & ~GSO_ECN
    ):
        return None
    csum_start, csum_offset = _CSUM_FIELDS.unpack_from(data, 6)
    packet = bytearray(memoryview(data)[VIRTIO_NET_HDR_LEN:])
    if module.lib.larval_finish_checksum(
        module.ffi.from_buffer(packet), len(packet), csum_start, csum_offset
    ):
        return None  # the field outside the packet
    return bytes(packet)


def split_read(data: BytesLike, module: Any = ASK) -> list[bytes]:
    """One read of an `IFF_VNET_HDR` TUN (header included) as plain IP packets, made by
    `module` (as `tcp_segment`)."""
    hdr = VirtioNetHdr.decode(data)
    return tcp_segment(hdr, memoryview(data)[VIRTIO_NET_HDR_LEN:], module)


# From this many segments on, one numpy pass over the whole super-packet is cheaper than
# a Python loop: ~28 µs for the pass whatever the count (a few hundred ns per segment)
# against ~5 µs per segment, mostly the checksum of its payload.
_VECTOR_MIN_SEGMENTS = 6


class _Layout(NamedTuple):
    """What segmentation needs to know of a super-packet, parsed once."""

    version: int
    tcp: int  # offset of the TCP header
    hlen: int  # IP + TCP header bytes
    end: int  # offset past the IP datagram
    size: int  # payload bytes per segment (gso_size)
    n_segments: int
    seq0: int
    flags0: int
    ip_id0: int  # IPv4 ID of the first segment (0 for IPv6)
    base_sum: int  # see tcp_segment


def tcp_segment(hdr: VirtioNetHdr, packet: BytesLike, module: Any = ASK) -> list[bytes]:
    """Split the TCP super-packet `packet` (the read without its virtio header) into
    packets of at most `hdr.gso_size` bytes of payload, each with complete checksums.

    Per segment i: IPv4 ID + i, Total Length (IPv4) or Payload Length (IPv6), the IPv4
    header checksum, TCP sequence number + i·gso_size, FIN and PSH only on the last
    segment, CWR only on the first (RFC 3168 §6.1.2), the full TCP checksum. A packet
    without GSO comes back alone, its checksum completed if it was left partial. The
    work is done by `module`, the compiled helper (`helper.compiled()`), or in Python
    where it is None.
    """
    gso_type = hdr.gso_type & ~GSO_ECN
    if gso_type == GSO_NONE:
        if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            buf = bytearray(packet)
            finish_checksum(buf, hdr.csum_start, hdr.csum_offset, module)
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
    count = max(1, -(-(ip.end - hlen) // size))
    layout = _Layout(ip.version, tcp, hlen, ip.end, size, count, seq0, flags0, ip_id0, base_sum)
    if module is ASK:
        module = helper.compiled()
    if module is not None:
        return _segment_compiled(module, view, template, layout)
    if count >= _VECTOR_MIN_SEGMENTS and ip.end > hlen:
        return _segment_vectorised(view, template, layout)
    return _segment_python(view, template, layout)


def _segment_compiled(
    module: Any, view: memoryview, template: bytearray, lay: _Layout
) -> list[bytes]:
    """`tcp_segment` in one call of the compiled helper (`larval_tcp_segment`), its
    segments written back to back into one buffer."""
    ffi, lib = module.ffi, module.lib
    payload = view[lay.hlen : lay.end]
    count, hlen = lay.n_segments, lay.hlen
    cap = count * hlen + len(payload)
    out = helper.new_uncleared("unsigned char[]", max(1, cap))
    lengths = helper.new_uncleared("size_t[]", count)
    rc = lib.larval_tcp_segment(
        bytes(template), hlen, lay.tcp, lay.version, ffi.from_buffer(payload), len(payload),
        lay.size, count, lay.seq0, lay.flags0, lay.ip_id0, lay.base_sum, out, cap, lengths,
    )  # fmt: skip
    if rc != 0:
        raise OffloadError(f"TCP segmentation of {lay.end} bytes failed")
    buf = ffi.buffer(out, cap)[:]
    # Every segment but the last is hlen + size bytes.
    stride = hlen + lay.size
    segments = [buf[i : i + stride] for i in range(0, (count - 1) * stride, stride)]
    segments.append(buf[(count - 1) * stride : cap])
    return segments


def _segment_python(view: memoryview, template: bytearray, lay: _Layout) -> list[bytes]:
    """`tcp_segment` one segment at a time, with `internet_checksum`."""
    tcp, hlen, size, count = lay.tcp, lay.hlen, lay.size, lay.n_segments
    tcp_hdr_len = hlen - tcp
    segments: list[bytes] = []
    for i in range(count):
        start = hlen + i * size
        chunk = view[start : min(start + size, lay.end)]
        last = i == count - 1
        seg = bytearray(template)
        if lay.version == 4:
            _U16.pack_into(seg, 2, hlen + len(chunk))
            _U16.pack_into(seg, 4, (lay.ip_id0 + i) & 0xFFFF)
            seg[10:12] = b"\x00\x00"
            _U16.pack_into(seg, 10, internet_checksum(seg[:tcp]))
        else:
            _U16.pack_into(seg, 4, tcp_hdr_len + len(chunk))
        seq = (lay.seq0 + i * size) & 0xFFFFFFFF
        _U32.pack_into(seg, tcp + 4, seq)
        flags = lay.flags0
        if not last:
            flags &= ~(_FIN | _PSH)
        if i:
            flags &= ~_CWR
        seg[tcp + 13] = flags
        # The sequence number and flags are summed here rather than in the base sum; the
        # TCP header length is even, so the payload's words line up.
        total = (
            lay.base_sum
            + (seq >> 16)
            + (seq & 0xFFFF)
            + flags
            + tcp_hdr_len
            + len(chunk)
            + _sum(chunk)
        )
        _U16.pack_into(seg, tcp + 16, _fold_checksum(total))
        seg += chunk
        segments.append(bytes(seg))
    return segments


_BE16 = np.dtype(">u2")
_BE32 = np.dtype(">u4")
_LE16 = np.dtype("<u2")


def _le_sums(words: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """The one's-complement sums (modulo 0xFFFF, not folded) of the rows of `words`, an
    array of rows of even length, each row read as big-endian 16-bit words.

    The rows are summed as little-endian words, which needs no byte swap on the usual
    hosts; a little-endian sum is the big-endian one times 2**8 (RFC 1071 §2(B)), so
    times 2**8 once more (2**16 ≡ 1) gives it back. A row of up to 64 KB sums within
    32 bits.
    """
    le = words.view(_LE16).sum(axis=1, dtype=np.uint32).astype(np.uint64)
    result: npt.NDArray[np.uint64] = (le << np.uint64(8)) % np.uint64(0xFFFF)
    return result


def _folded(total: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """`_fold_checksum` of every element."""
    m = np.uint64(0xFFFF)
    result: npt.NDArray[np.uint64] = (m - total % m) % m
    return result


def _put16(out: npt.NDArray[np.uint8], offset: int, values: npt.NDArray[np.uint64]) -> None:
    """Write `values` as big-endian 16-bit fields at `offset` of every row of `out`."""
    out[:, offset : offset + 2] = values.astype(_BE16).view(np.uint8).reshape(-1, 2)


def _segment_vectorised(view: memoryview, template: bytearray, lay: _Layout) -> list[bytes]:
    """`tcp_segment` for all segments at once: the segments are rows of one array, their
    headers filled column by column and their payloads summed in one reduction."""
    tcp, hlen, size, count = lay.tcp, lay.hlen, lay.size, lay.n_segments
    tcp_hdr_len = hlen - tcp
    payload_len = lay.end - hlen
    n_full = payload_len // size
    rem = payload_len - n_full * size  # payload of a shorter last segment, if any
    stride = hlen + size
    # An odd gso_size gets one zero byte after each payload, so that every row sums as
    # whole words, as internet_checksum pads an odd length.
    pitch = stride + (size & 1)

    # The template holds what most segments carry: the full length, the flags of a
    # middle segment. The first and last rows are corrected below.
    middle_flags = lay.flags0 & ~(_FIN | _PSH | _CWR)
    first_flags = lay.flags0 & ~(_FIN | _PSH) if count > 1 else lay.flags0
    last_flags = lay.flags0 & ~_CWR if count > 1 else lay.flags0
    template[tcp + 13] = middle_flags
    if lay.version == 4:
        _U16.pack_into(template, 2, stride)
        template[4:6] = template[10:12] = b"\x00\x00"
        ip_base = _sum(memoryview(template)[:tcp])
    else:
        _U16.pack_into(template, 4, tcp_hdr_len + size)
        ip_base = 0

    out = np.empty((count, pitch), np.uint8)
    out[:, :hlen] = np.frombuffer(template, np.uint8)
    body = np.frombuffer(view, np.uint8, n_full * size, hlen)
    out[:n_full, hlen:stride] = body.reshape(n_full, size)
    if size & 1:
        out[:, stride] = 0
    if rem:
        tail = np.frombuffer(view, np.uint8, rem, hlen + n_full * size)
        out[n_full, hlen : hlen + rem] = tail
        out[n_full, hlen + rem :] = 0
    payload_sums = _le_sums(out[:, hlen:])

    index = np.arange(count, dtype=np.uint64)
    seqs = (np.uint64(lay.seq0) + index * np.uint64(size)) & np.uint64(0xFFFFFFFF)
    out[:, tcp + 4 : tcp + 8] = seqs.astype(_BE32).view(np.uint8).reshape(-1, 4)
    # Pseudo-header length and flags as a middle segment has them; the first and last
    # differ by a constant.
    constant = lay.base_sum + tcp_hdr_len + size + middle_flags
    totals = payload_sums + (seqs >> np.uint64(16)) + (seqs & np.uint64(0xFFFF))
    totals += np.uint64(constant)
    totals[0] += np.uint64((first_flags - middle_flags) % 0xFFFF)
    last_fix = (last_flags - middle_flags if count > 1 else 0) + (rem - size if rem else 0)
    totals[-1] += np.uint64(last_fix % 0xFFFF)
    _put16(out, tcp + 16, _folded(totals))
    out[0, tcp + 13] = first_flags
    out[-1, tcp + 13] = last_flags
    last_len = stride if not rem else hlen + rem
    if lay.version == 4:
        ids = (np.uint64(lay.ip_id0) + index) & np.uint64(0xFFFF)
        ip_totals = ids + np.uint64(ip_base)
        ip_totals[-1] += np.uint64((last_len - stride) % 0xFFFF)
        _put16(out, 4, ids)
        _put16(out, 10, _folded(ip_totals))
        out[-1, 2:4] = divmod(last_len, 0x100)
    else:
        out[-1, 4:6] = divmod(last_len - tcp, 0x100)

    buf = out.tobytes()
    segments = [buf[i : i + stride] for i in range(0, (count - 1) * pitch, pitch)]
    last_start = (count - 1) * pitch
    segments.append(buf[last_start : last_start + last_len])
    return segments


# What merging needs of the headers, read at once: of an IPv4 header without options
# (Total Length, ID, flags and fragment offset, protocol, addresses) and its TCP header
# (ports, sequence number, data offset, flags); of an IPv6 header (Payload Length, Next
# Header, addresses) and its TCP header. The addresses and ports are read as one field,
# the flow's key.
_IPV4_TCP_FIELDS = struct.Struct(">2xHHHxB2x12sI4xBB")
_IPV6_TCP_FIELDS = struct.Struct(">4xHBx36sI4xBB")
# The same for an IPv4 header with options, in two parts.
_IPV4_FIELDS = struct.Struct(">HHHxB")
_TCP_FIELDS = struct.Struct(">IxxxxBB")

# From this many packets of one length and layout on, one numpy pass (~13 µs, plus
# ~0.1 µs per packet) verifies their checksums faster than `internet_checksum` on each
# (~4 µs for 1400 bytes).
_VECTOR_MIN_VERIFY = 3

# Masks by the first byte of the IP header (version and IHL) and the TCP data offset.
_shape_masks: dict[int, int] = {}


def _shape_mask(version: int, tcp: int, hlen: int) -> int:
    """A mask over the headers, read as one big-endian number, that keeps what must be
    equal in every segment of one write and clears what may differ: IPv4 Total Length,
    ID and header checksum, IPv6 Payload Length, the TCP sequence number, PSH and the
    TCP checksum. What it keeps beyond that (version, addresses, ports, protocol, a zero
    fragment offset) is equal within a flow anyway.
    """
    bits = bytearray(b"\xff" * hlen)
    if version == 4:
        bits[2:6] = bytes(4)
        bits[10:12] = bytes(2)
    else:
        bits[4:6] = bytes(2)
    bits[tcp + 4 : tcp + 8] = bytes(4)
    bits[tcp + 13] = 0xFF & ~_PSH
    bits[tcp + 16 : tcp + 18] = bytes(2)
    return int.from_bytes(bits, "big")


# A TCP data segment that may be merged: flow key (addresses and ports), shape (the
# headers under `_shape_mask`), TCP offset, header length, sequence number, flags, and
# the IPv4 ID when it must increase by one per segment (DF clear), else None.
_Candidate = tuple[bytes, int, int, int, int, int, int | None]


def _candidate(packet: bytes) -> _Candidate | None:
    """What merging needs of `packet` if it is a TCP data segment that may be merged
    (checksums not yet verified), else None."""
    n = len(packet)
    if n < 40:
        return None
    b0 = packet[0]
    if b0 == 0x45:
        total, ident, frag, proto, key, seq, offset, flags = _IPV4_TCP_FIELDS.unpack_from(packet)
        if total != n or proto != _IPPROTO_TCP or frag & _IPV4_MF_OFFSET:
            return None
        tcp = 20
    elif b0 >> 4 == 6:
        if n < 60:
            return None
        payload_len, proto, key, seq, offset, flags = _IPV6_TCP_FIELDS.unpack_from(packet)
        if payload_len + 40 != n or proto != _IPPROTO_TCP:
            return None
        tcp = 40
        ident, frag = 0, _IPV4_DF  # no IPv4 ID to keep
    elif b0 >> 4 == 4:
        tcp = (b0 & 0x0F) * 4
        if tcp < 20 or tcp + 20 > n:
            return None
        total, ident, frag, proto = _IPV4_FIELDS.unpack_from(packet, 2)
        if total != n or proto != _IPPROTO_TCP or frag & _IPV4_MF_OFFSET:
            return None
        key = packet[12:20] + packet[tcp : tcp + 4]
        seq, offset, flags = _TCP_FIELDS.unpack_from(packet, tcp + 4)
    else:
        return None
    hlen = tcp + (offset >> 4) * 4
    if offset < 0x50 or hlen >= n or flags & _NO_COALESCE or not flags & _ACK:
        return None
    mask = _shape_masks.get(b0 << 4 | offset >> 4)
    if mask is None:
        mask = _shape_masks[b0 << 4 | offset >> 4] = _shape_mask(b0 >> 4, tcp, hlen)
    shape = int.from_bytes(packet[:hlen], "big") & mask
    # Without DF the receiver may reassemble by ID, so IDs must stay as TSO would make
    # them: the first segment's, plus one per segment.
    return key, shape, tcp, hlen, seq, flags, None if frag & _IPV4_DF else ident


def _checksums_ok(packet: bytes, tcp: int) -> bool:
    """Whether the IPv4 header checksum (if any) and the TCP checksum of `packet` verify."""
    with memoryview(packet) as view:
        if packet[0] >> 4 == 4:
            if internet_checksum(view[:tcp]) != 0:
                return False
            addresses = int.from_bytes(view[12:20], "big")
        else:
            addresses = int.from_bytes(view[8:40], "big")
        tcp_sum = _sum(view[tcp:])
    return (addresses + _IPPROTO_TCP + len(packet) - tcp + tcp_sum) % 0xFFFF == 0


def _checksums_ok_vectorised(packets: list[bytes], tcp: int) -> list[bool]:
    """`_checksums_ok` of packets of one length and one IP header length, in one pass:
    the packets are the rows of one array.

    The rows are summed as little-endian words, which needs no byte swap on the usual
    hosts. A little-endian sum is the big-endian one times 2**8 modulo 0xFFFF (RFC 1071
    §2(B)), so it is zero when that one is; a big-endian constant C is added as C·2**8,
    since 2**16 ≡ 1. A row of up to 64 KB sums within 32 bits.
    """
    length = len(packets[0])
    # For an odd length, a zero byte after each packet pads its last word, as
    # internet_checksum does.
    pad = b"\x00" * (length & 1)
    data = pad.join(packets) + pad
    words = np.frombuffer(data, _LE16).reshape(len(packets), (length + 1) // 2)
    m = np.uint64(0xFFFF)
    # Protocol and TCP length of the pseudo-header.
    pseudo = np.uint64((_IPPROTO_TCP + length - tcp) * 0x100 % 0xFFFF)
    if packets[0][0] >> 4 == 6:
        # The addresses are right before the TCP header.
        tcp_sums = words[:, 4:].sum(axis=1, dtype=np.uint32)
        return ((tcp_sums + pseudo) % m == 0).tolist()  # type: ignore[no-any-return]
    header_ok = words[:, : tcp // 2].sum(axis=1, dtype=np.uint64) % m == 0
    if tcp == 20:
        # No options: the addresses are right before the TCP header.
        tcp_sums = words[:, 6:].sum(axis=1, dtype=np.uint32) + pseudo
    else:
        tcp_sums = words[:, tcp // 2 :].sum(axis=1, dtype=np.uint32) + pseudo
        tcp_sums += words[:, 6:10].sum(axis=1, dtype=np.uint64)
    tcp_ok = tcp_sums % m == 0
    return (header_ok & tcp_ok).tolist()  # type: ignore[no-any-return]


def _verify(
    packets: list[bytes], candidates: list[_Candidate | None], batches: dict[int, list[int]]
) -> None:
    """Replace by None each candidate whose checksums do not verify.

    The kernel will not check a merged packet (CHECKSUM_PARTIAL), so each part is
    checked here; `batches` holds the indices of candidates of one length and layout,
    which are checked together.
    """
    for indices in batches.values():
        tcp = candidates[indices[0]][2]  # type: ignore[index]
        if len(indices) < _VECTOR_MIN_VERIFY:
            for i in indices:
                if not _checksums_ok(packets[i], tcp):
                    candidates[i] = None
            continue
        oks = _checksums_ok_vectorised([packets[i] for i in indices], tcp)
        for i, ok in zip(indices, oks, strict=True):
            if not ok:
                candidates[i] = None


class _Group:
    """Segments of one flow being merged into one write."""

    __slots__ = (
        "gso_size",
        "hlen",
        "last_flags",
        "limit",
        "next_id",
        "next_seq",
        "packets",
        "shape",
        "tcp",
        "total",
    )

    def __init__(self, packet: bytes, cand: _Candidate) -> None:
        _, shape, tcp, hlen, seq, flags, ip_id = cand
        self.packets = [packet]
        self.shape = shape
        self.tcp = tcp
        self.hlen = hlen
        self.gso_size = len(packet) - hlen
        self.total = len(packet)
        self.last_flags = flags
        # IPv4 Total Length counts the IP header, IPv6 Payload Length does not.
        self.limit = _MAX_IP_LEN + (40 if packet[0] >> 4 == 6 else 0)
        self.next_seq = (seq + self.gso_size) & 0xFFFFFFFF
        self.next_id = None if ip_id is None else (ip_id + 1) & 0xFFFF

    def build(self) -> bytes:
        """The write: a virtio header and the packet, merged if there is more than one."""
        first = self.packets[0]
        if len(self.packets) == 1:
            return ZERO_VIRTIO_HDR + first
        tcp, hlen = self.tcp, self.hlen
        head = bytearray(first[:hlen])
        if first[0] >> 4 == 4:
            _U16.pack_into(head, 2, self.total)
            head[10:12] = b"\x00\x00"
            _U16.pack_into(head, 10, internet_checksum(head[:tcp]))
            gso_type = GSO_TCPV4
            addresses = head[12:20]
        else:
            _U16.pack_into(head, 4, self.total - 40)
            gso_type = GSO_TCPV6
            addresses = head[8:40]
        head[tcp + 13] |= self.last_flags & _PSH
        # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented; the
        # kernel adds the rest from csum_start on (include/linux/skbuff.h, "CHECKSUM_PARTIAL").
        pseudo = (
            int.from_bytes(addresses, "big") + _IPPROTO_TCP + self.total - tcp
        ) % 0xFFFF or 0xFFFF
        _U16.pack_into(head, tcp + _TCP_CSUM_OFFSET, pseudo)
        vnet = VIRTIO_NET_HDR.pack(
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hlen,
            self.gso_size,
            tcp,
            _TCP_CSUM_OFFSET,
        )
        return b"".join([vnet, head, *[p[hlen:] for p in self.packets]])


def coalesce(packets: Sequence[BytesLike]) -> list[bytes]:
    """Turn plain IP packets into TUN writes (each with its virtio header), merging
    consecutive segments of one TCP flow into one GSO_TCPV4/GSO_TCPV6 super-packet.

    Segments merge when they have the same addresses and ports, contiguous sequence
    numbers, the same acknowledgment, window, options and flags (PSH allowed on the last
    only), no SYN/FIN/RST/URG, valid checksums, and equal payload sizes but a shorter
    last. Writes keep the order of their first packet; packets of one flow keep their
    order. Everything else passes through behind a zero header.
    """
    module = helper.compiled()
    if module is not None:
        return _coalesce_compiled(module, packets)
    plain: list[bytes] = []
    candidates: list[_Candidate | None] = []
    # Indices of candidates by length and first byte (IP version and header length).
    batches: dict[int, list[int]] = {}
    for data in packets:
        packet = data if type(data) is bytes else bytes(data)
        cand = _candidate(packet)
        if cand is not None:
            batch_key = len(packet) << 8 | packet[0]
            batch = batches.get(batch_key)
            if batch is None:
                batches[batch_key] = [len(plain)]
            else:
                batch.append(len(plain))
        plain.append(packet)
        candidates.append(cand)
    _verify(plain, candidates, batches)
    writes: list[_Group | bytes] = []
    open_groups: dict[bytes, _Group] = {}
    for packet, cand in zip(plain, candidates, strict=True):
        if cand is None:
            writes.append(ZERO_VIRTIO_HDR + packet)
            continue
        key, shape, _, hlen, seq, flags, ip_id = cand
        payload = len(packet) - hlen
        group = open_groups.get(key)
        if (
            group is not None
            and shape == group.shape
            and seq == group.next_seq
            and payload <= group.gso_size
            and ip_id == group.next_id
            and group.total + payload <= group.limit
        ):
            group.packets.append(packet)
            group.total += payload
            group.last_flags = flags
            group.next_seq = (seq + payload) & 0xFFFFFFFF
            if ip_id is not None:
                group.next_id = (ip_id + 1) & 0xFFFF
        else:
            group = _Group(packet, cand)
            writes.append(group)
            open_groups[key] = group
        # Nothing may follow a segment with PSH, or one shorter than the first.
        if flags & _PSH or payload < group.gso_size:
            del open_groups[key]
    return [w if type(w) is bytes else w.build() for w in writes]  # type: ignore[union-attr]


def _coalesce_compiled(module: Any, packets: Sequence[BytesLike]) -> list[bytes]:
    """`coalesce` in one call of the compiled helper (`larval_tcp_coalesce`)."""
    n = len(packets)
    if not n:
        return []
    ffi, lib = module.ffi, module.lib
    joined = b"".join(packets)
    # At worst every packet is its own write, behind a zero header.
    cap = len(joined) + VIRTIO_NET_HDR_LEN * n
    out = helper.new_uncleared("unsigned char[]", cap)
    lengths = helper.new_uncleared("size_t[]", n)
    count = lib.larval_tcp_coalesce(
        n, ffi.from_buffer(joined), ffi.new("size_t[]", [len(p) for p in packets]), out, cap,
        lengths,
    )  # fmt: skip
    if count < 0:
        raise OffloadError(f"coalescing {n} packets failed")
    buf = ffi.buffer(out, cap)
    writes: list[bytes] = []
    off = 0
    for length in lengths[0:count]:
        writes.append(buf[off : off + length])
        off += length
    return writes


#: Packets left in the buffer they were decrypted into: the buffer, and each packet's
#: start and length in it.
PacketRun = tuple[BytesLike, Sequence[int], Sequence[int]]


def coalesce_runs(runs: Sequence[PacketRun]) -> list[BytesLike]:
    """`coalesce` of the packets of `runs`, in order, without first cutting them out of
    their buffers: the compiled helper reads them in place and builds the writes in one
    buffer, given back as views of it (one TUN write each)."""
    module = helper.compiled()
    if module is None:
        packets = [
            bytes(base[s : s + n])
            for base, starts, lengths in runs
            for s, n in zip(starts, lengths, strict=True)
        ]
        return list(coalesce(packets))
    ffi, lib = module.ffi, module.lib
    starts = list(chain.from_iterable(r[1] for r in runs))
    lengths = list(chain.from_iterable(r[2] for r in runs))
    n = len(starts)
    if not n:
        return []
    # The cffi views of the buffers, kept alive for the call.
    bases = [ffi.from_buffer("unsigned char[]", r[0]) for r in runs]
    # At worst every packet is its own write, behind a zero header.
    cap = sum(lengths) + VIRTIO_NET_HDR_LEN * n
    out = helper.new_uncleared("unsigned char[]", cap)
    sizes = helper.new_uncleared("size_t[]", n)
    counts = [len(r[1]) for r in runs]
    count = lib.larval_tcp_coalesce_runs(
        len(runs), ffi.new("unsigned char *[]", bases), ffi.new("size_t[]", counts),
        ffi.new("size_t[]", starts), ffi.new("size_t[]", lengths), out, cap, sizes,
    )  # fmt: skip
    if count < 0:
        raise OffloadError(f"coalescing {n} packets failed")
    view = memoryview(ffi.buffer(out, cap))
    writes: list[BytesLike] = []
    off = 0
    for size in ffi.unpack(sizes, count):
        end = off + size
        writes.append(view[off:end])
        off = end
    return writes
