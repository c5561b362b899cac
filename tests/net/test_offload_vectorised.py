"""The numpy paths of segmentation and coalescing against the per-packet reference
(`internet_checksum`, RFC 1071): same bytes, valid checksums, and no merging of packets
whose checksums do not verify."""

from __future__ import annotations

import itertools
import os
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import helper
from larval.esp.ip import internet_checksum, ipv4_set_checksum
from larval.net import offload
from larval.net.offload import (
    GSO_NONE,
    VIRTIO_NET_HDR_LEN,
    ZERO_VIRTIO_HDR,
    PacketRun,
    VirtioNetHdr,
    coalesce,
    coalesce_runs,
    tcp_segment,
)

from .packets import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    V4_DST,
    V4_SRC,
    V6_DST,
    V6_SRC,
    checksums_ok,
    super_packet,
    tcp_fields,
    tcp_packet,
    udp_packet,
)

ALWAYS, NEVER = 1, 1 << 30


@contextmanager
def esp_helper(path: str) -> Iterator[None]:
    """Run offload on `path`: ``python`` (numpy and per-packet) or ``compiled``."""
    saved = os.environ.get(helper.HELPER_ENV)
    os.environ[helper.HELPER_ENV] = path
    try:
        yield
    finally:
        if saved is None:
            del os.environ[helper.HELPER_ENV]
        else:
            os.environ[helper.HELPER_ENV] = saved


@contextmanager
def thresholds(segments: int, verify: int) -> Iterator[None]:
    """Force the vectorised or the per-packet path of tcp_segment and coalesce (on the
    Python path: the compiled helper, where built, would otherwise take both)."""
    saved = offload._VECTOR_MIN_SEGMENTS, offload._VECTOR_MIN_VERIFY
    offload._VECTOR_MIN_SEGMENTS, offload._VECTOR_MIN_VERIFY = segments, verify
    try:
        with esp_helper("python"):
            yield
    finally:
        offload._VECTOR_MIN_SEGMENTS, offload._VECTOR_MIN_VERIFY = saved


def compiled_built() -> None:
    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")


def with_ip_options(packet: bytes, options: bytes) -> bytes:
    """An IPv4 `packet` with `options` after its 20-byte header (IHL, Total Length and
    header checksum fixed; the TCP checksum does not cover them)."""
    assert len(options) % 4 == 0 and packet[0] == 0x45
    buf = bytearray(packet[:20] + options + packet[20:])
    buf[0] = 0x40 | (20 + len(options)) // 4
    struct.pack_into(">H", buf, 2, len(buf))
    ipv4_set_checksum(buf, 0, 20 + len(options))
    return bytes(buf)


def ip_header_len(packet: bytes) -> int:
    return (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40


# Record route (RFC 791 §3.1), padded with an End of Option List.
IP_OPTIONS = b"\x07\x07\x04" + bytes(4) + b"\x00"
TCP_OPTIONS = b"\x01\x01\x08\x0a" + struct.pack(">II", 7, 9)


@st.composite
def super_packets(draw: st.DrawFn) -> tuple[VirtioNetHdr, bytes, int]:
    """A TSO super-packet: IPv4 (with or without IP options) or IPv6, any gso_size
    (odd ones included), a payload that may end in a short segment."""
    version = draw(st.sampled_from([4, 6]))
    gso_size = draw(st.one_of(st.integers(1, 64), st.integers(500, 1500)))
    segments = draw(st.integers(1, 60))
    short = draw(st.integers(0, gso_size - 1))
    length = max(1, min((segments - 1) * gso_size + (short or gso_size), 0xFFFF - 120))
    payload = draw(st.binary(min_size=length, max_size=length))
    flags = draw(st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN, ACK | CWR | ECE | PSH]))
    hdr, packet = super_packet(
        version,
        payload,
        gso_size,
        seq=draw(st.integers(0, 2**32 - 1)),
        flags=flags,
        options=draw(st.sampled_from([b"", TCP_OPTIONS])),
        ip_id=draw(st.integers(0, 0xFFFF)),
    )
    if version == 4 and draw(st.booleans()):
        packet = with_ip_options(packet, IP_OPTIONS)
    return hdr, packet, len(payload)


@settings(max_examples=300, deadline=None)
@given(sp=super_packets())
def test_segment_vectorised_matches_reference(sp: tuple[VirtioNetHdr, bytes, int]) -> None:
    hdr, packet, length = sp
    with thresholds(ALWAYS, ALWAYS):
        vectorised = tcp_segment(hdr, packet)
    with thresholds(NEVER, NEVER):
        reference = tcp_segment(hdr, packet)
    assert vectorised == reference
    ip_len = ip_header_len(packet)
    tcp_len = (packet[ip_len + 12] >> 4) * 4
    payload = packet[ip_len + tcp_len :]
    assert len(payload) == length
    seq0, flags0, _ = tcp_fields(packet)
    count = len(vectorised)
    assert count == -(-length // hdr.gso_size)
    for i, seg in enumerate(vectorised):
        # The checksums as the per-packet reference computes them.
        assert checksums_ok(seg), i
        if seg[0] >> 4 == 4:
            assert internet_checksum(seg[:ip_len]) == 0
            ip_id0 = struct.unpack_from(">H", packet, 4)[0]
            assert struct.unpack_from(">H", seg, 4)[0] == (ip_id0 + i) & 0xFFFF
        seq, flags, chunk = tcp_fields(seg)
        assert chunk == payload[i * hdr.gso_size : (i + 1) * hdr.gso_size]
        assert seq == (seq0 + i * hdr.gso_size) & 0xFFFFFFFF
        expected = flags0
        if i < count - 1:
            expected &= ~(FIN | PSH)
        if i:
            expected &= ~CWR
        assert flags == expected
        # Everything else is the super-packet's: addresses, ports, ack, window, options.
        assert seg[ip_len + 8 : ip_len + 13] == packet[ip_len + 8 : ip_len + 13]
        assert seg[ip_len + 14 : ip_len + 16] == packet[ip_len + 14 : ip_len + 16]
        assert seg[ip_len + 18 : ip_len + tcp_len] == packet[ip_len + 18 : ip_len + tcp_len]


@settings(max_examples=100, deadline=None)
@given(sp=super_packets())
def test_segment_default_threshold_matches_reference(sp: tuple[VirtioNetHdr, bytes, int]) -> None:
    hdr, packet, _ = sp
    default = tcp_segment(hdr, packet)
    with thresholds(NEVER, NEVER):
        assert default == tcp_segment(hdr, packet)


@settings(max_examples=300, deadline=None)
@given(sp=super_packets())
def test_segment_compiled_matches_reference(sp: tuple[VirtioNetHdr, bytes, int]) -> None:
    compiled_built()
    hdr, packet, _ = sp
    with esp_helper("compiled"):
        compiled = tcp_segment(hdr, packet)
    with thresholds(NEVER, NEVER):
        reference = tcp_segment(hdr, packet)
    assert compiled == reference


def flow_segments(
    version: int, sport: int, sizes: list[int], *, df: bool, ip_options: bool
) -> list[bytes]:
    src, dst = (V4_SRC, V4_DST) if version == 4 else (V6_SRC, V6_DST)
    out, seq = [], 1000 * sport
    for i, size in enumerate(sizes):
        payload = bytes((seq + j) & 0xFF for j in range(size))
        pkt = tcp_packet(
            src, dst, sport, 443, seq, payload, ip_id=(sport + i) & 0xFFFF, df=df, flags=ACK
        )
        if version == 4 and ip_options:
            pkt = with_ip_options(pkt, IP_OPTIONS)
        out.append(pkt)
        seq += size
    return out


@st.composite
def batches(draw: st.DrawFn) -> list[bytes]:
    """A receive batch: a few TCP flows of mostly equal segments (IPv4 and IPv6, odd and
    even sizes), interleaved, with some bytes flipped and some other packets mixed in."""
    packets: list[bytes] = []
    for sport in range(draw(st.integers(1, 3))):
        size = draw(st.sampled_from([1, 7, 100, 1347, 1348]))
        n = draw(st.integers(1, 12))
        sizes = [size] * n
        if draw(st.booleans()):
            sizes[-1] = draw(st.integers(1, size))
        flow = flow_segments(
            draw(st.sampled_from([4, 6])),
            40000 + sport,
            sizes,
            df=draw(st.booleans()),
            ip_options=draw(st.booleans()),
        )
        # Interleave with what is there already, keeping each flow's order.
        last = -1
        for pkt in flow:
            last = draw(st.integers(last + 1, len(packets)))
            packets.insert(last, pkt)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(packets) - 1))
        bad = bytearray(packets[i])
        pos = draw(st.integers(0, len(bad) - 1))
        bad[pos] ^= 1 << draw(st.integers(0, 7))
        packets[i] = bytes(bad)
    if draw(st.booleans()):
        packets.insert(draw(st.integers(0, len(packets))), udp_packet(V4_SRC, V4_DST, 53, 53, b"q"))
    return packets


def expand(writes: list[bytes]) -> list[bytes]:
    """The IP packets that the writes carry, merged ones segmented again."""
    out: list[bytes] = []
    for write in writes:
        hdr = VirtioNetHdr.decode(write)
        body = write[VIRTIO_NET_HDR_LEN:]
        if hdr.gso_type == GSO_NONE:
            assert hdr == VirtioNetHdr()
            out.append(body)
        else:
            out.extend(tcp_segment(hdr, body))
    return out


@settings(max_examples=300, deadline=None)
@given(packets=batches())
def test_coalesce_vectorised_matches_reference(packets: list[bytes]) -> None:
    with thresholds(ALWAYS, ALWAYS):
        vectorised = coalesce(packets)
    with thresholds(NEVER, NEVER):
        reference = coalesce(packets)
    assert vectorised == reference
    assert coalesce(packets) == reference
    # Every packet comes back exactly once, and the writes are valid.
    assert Counter(expand(vectorised)) == Counter(packets)
    passed = {w[VIRTIO_NET_HDR_LEN:] for w in vectorised if w.startswith(ZERO_VIRTIO_HDR)}
    for packet in packets:
        if packet[9 if packet[0] >> 4 == 4 else 6] == 6 and not checksums_ok(packet):
            # A flipped bit anywhere the checksums cover: never merged.
            assert packet in passed


def in_runs(packets: list[bytes]) -> list[PacketRun]:
    """`packets` left in three buffers, in order, as a decrypted batch leaves them: each
    buffer holds its packets with other bytes before, between and after them."""
    runs: list[PacketRun] = []
    cut = [0, len(packets) // 3, 2 * len(packets) // 3, len(packets)]
    for first, end in itertools.pairwise(cut):
        buf = bytearray(b"\xaa" * 3)
        starts, lengths = [], []
        for k, packet in enumerate(packets[first:end]):
            starts.append(len(buf))
            lengths.append(len(packet))
            buf += packet + b"\xbb" * (k % 4)
        runs.append((bytes(buf), starts, lengths))
    return runs


def compiled_against_reference(packets: list[bytes]) -> list[bytes]:
    """The compiled helper's writes for `packets`, once they are checked equal to the
    reference's: of `coalesce`, and of `coalesce_runs` with the packets left in buffers."""
    compiled_built()
    runs = in_runs(packets)
    with esp_helper("compiled"):
        compiled = coalesce(packets)
        compiled_in_place = [bytes(w) for w in coalesce_runs(runs)]
    with thresholds(NEVER, NEVER):
        reference = coalesce(packets)
        reference_in_place = [bytes(w) for w in coalesce_runs(runs)]
    assert compiled == reference
    assert compiled_in_place == reference
    assert reference_in_place == reference
    return compiled


@settings(max_examples=300, deadline=None)
@given(packets=batches())
def test_coalesce_compiled_matches_reference(packets: list[bytes]) -> None:
    compiled = compiled_against_reference(packets)
    assert Counter(expand(compiled)) == Counter(packets)


@st.composite
def awkward_batches(draw: st.DrawFn) -> list[bytes]:
    """Segments of two flows that break the merging rules at random: PSH, FIN, SYN, RST
    and URG, sequence gaps, another ack or window, TCP options on some, IPv4 options on
    some (the same flow in another shape), DF clear with IDs in or out of step, long
    payloads near the 64 KB limit, short ones; IPv4 and IPv6."""
    packets: list[bytes] = []
    seqs = {0: 1000, 1: 0xFFFFFF00}
    ip_ids = {0: 0xFFFE, 1: 7}
    for _ in range(draw(st.integers(1, 40))):
        flow = draw(st.integers(0, 1))
        version = draw(st.sampled_from([4, 4, 6]))
        src, dst = (V4_SRC, V4_DST) if version == 4 else (V6_SRC, V6_DST)
        size = draw(st.sampled_from([1, 2, 100, 100, 100, 1000, 1000, 9000]))
        seq = seqs[flow] + draw(st.sampled_from([0, 0, 0, 0, 1, size]))
        flags = ACK | draw(st.sampled_from([0, 0, 0, 0, PSH, FIN, 0x02, 0x04, 0x20, CWR]))
        df = draw(st.booleans())
        ip_id = ip_ids[flow] + draw(st.sampled_from([0, 0, 1]))
        pkt = tcp_packet(
            src, dst, 40000 + flow, 443, seq & 0xFFFFFFFF, bytes([flow]) * size,
            ack=draw(st.sampled_from([5, 5, 5, 6])), flags=flags,
            window=draw(st.sampled_from([502, 502, 503])),
            options=draw(st.sampled_from([b"", b"", TCP_OPTIONS])),
            ip_id=ip_id & 0xFFFF, df=df,
        )  # fmt: skip
        if version == 4 and draw(st.integers(0, 5)) == 0:
            pkt = with_ip_options(pkt, IP_OPTIONS)
        packets.append(pkt)
        seqs[flow] = (seq + size) & 0xFFFFFFFF
        ip_ids[flow] = (ip_id + 1) & 0xFFFF
    return packets


@settings(max_examples=400, deadline=None)
@given(packets=awkward_batches())
def test_coalesce_compiled_keeps_every_rule_of_the_reference(packets: list[bytes]) -> None:
    compiled = compiled_against_reference(packets)
    # Every segment comes back once with its payload. (Not byte for byte: a merged write
    # renumbers IPv4 IDs where DF makes them free, RFC 6864 §4.1, and keeps CWR on its
    # first segment only, as TSO does.)
    expanded = expand(compiled)
    assert len(expanded) == len(packets)
    assert b"".join(sorted(tcp_fields(p)[2] for p in expanded)) == b"".join(
        sorted(tcp_fields(p)[2] for p in packets)
    )


def test_a_bad_helper_choice_falls_back_to_python_in_the_packet_loops() -> None:
    """The dataplane refuses a bad LARVAL_ESP_HELPER at start; should one appear later,
    segmentation and coalescing run the reference instead of raising in the loop."""
    hdr, packet = super_packet(4, bytes(range(200)) * 20, 1000, seq=1, flags=ACK, options=b"")
    with thresholds(NEVER, NEVER):
        segments = tcp_segment(hdr, packet)
        writes = coalesce(segments)
    with esp_helper("fastest"):
        assert helper.compiled() is None
        assert tcp_segment(hdr, packet) == segments
        assert coalesce(segments) == writes
    assert len(segments) == 4 and len(writes) == 1


@pytest.mark.parametrize("path", ["python", "compiled"])
def test_corrupted_tcp_payload_or_header_not_merged_on_either_path(path: str) -> None:
    """A flipped bit in the payload, the TCP header, or the IPv4 header of one segment:
    that segment alone is written unmerged."""
    if path == "compiled":
        compiled_built()
    for version, where in ((4, -1), (4, 30), (4, 11), (6, -3), (6, 55)):
        packets = flow_segments(version, 40004, [1000] * 6, df=True, ip_options=False)
        bad = bytearray(packets[2])
        bad[where] ^= 0x04
        packets[2] = bytes(bad)
        with esp_helper(path):
            writes = coalesce(packets)
        assert ZERO_VIRTIO_HDR + packets[2] in writes, (version, where)
        assert len(writes) == 3, (version, where)
        assert Counter(expand(writes)) == Counter(packets)


def test_corrupted_batch_not_merged() -> None:
    """A whole batch of one size verified at once: only the bad ones stay out."""
    packets = flow_segments(4, 40000, [1348] * 10, df=True, ip_options=False)
    bad = bytearray(packets[4])
    bad[-2] ^= 0x10
    packets[4] = bytes(bad)
    writes = coalesce(packets)
    assert [VirtioNetHdr.decode(w).gso_type != GSO_NONE for w in writes] == [
        True,
        False,
        True,
    ]
    assert writes[1] == ZERO_VIRTIO_HDR + packets[4]
    assert Counter(expand(writes)) == Counter(packets)


def test_corrupted_ip_header_in_batch_not_merged() -> None:
    """IPv4 with options and an odd size: a bad header checksum keeps the packet out."""
    packets = flow_segments(4, 40002, [1347] * 8, df=False, ip_options=True)
    bad = bytearray(packets[0])
    bad[22] ^= 0x01  # inside the IP options
    packets[0] = bytes(bad)
    writes = coalesce(packets)
    assert writes[0] == ZERO_VIRTIO_HDR + packets[0]
    # The second packet starts the write; its ID is the first of that write's.
    assert [VirtioNetHdr.decode(w).gso_size for w in writes] == [0, 1347]
    assert Counter(expand(writes)) == Counter(packets)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("ip_options", [False, True])
def test_tiny_segments_merge(version: int, ip_options: bool) -> None:
    """One-byte segments, the shortest that merge, with and without IPv4 options."""
    packets = flow_segments(version, 40003, [1] * 5, df=True, ip_options=ip_options)
    (write,) = coalesce(packets)
    hdr = VirtioNetHdr.decode(write)
    assert hdr.gso_size == 1
    assert expand([write]) == packets
