"""virtio_net_hdr, TCP segmentation of TSO super-packets and coalescing back into them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import helper
from larval.esp.ip import internet_checksum, ipv4_set_checksum
from larval.net.errors import OffloadError
from larval.net.offload import (
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_LEN,
    ZERO_VIRTIO_HDR,
    VirtioNetHdr,
    checksummed_read,
    coalesce,
    finish_checksum,
    plain_read,
    split_read,
    tcp_segment,
)

from .packets import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    V4_DST,
    V4_SRC,
    V6_DST,
    V6_SRC,
    addr,
    checksums_ok,
    ip_packet,
    pseudo_header,
    super_packet,
    tcp_fields,
    tcp_packet,
    udp_packet,
)

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


def flow(version: int) -> tuple[str, str]:
    return (V4_SRC, V4_DST) if version == 4 else (V6_SRC, V6_DST)


# --- the header ------------------------------------------------------------------------


def test_virtio_hdr_layout() -> None:
    hdr = VirtioNetHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, 52, 1448, 20, 16)
    raw = hdr.encode()
    assert len(raw) == VIRTIO_NET_HDR_LEN == 10
    # flags u8, gso_type u8, then four u16 in host order (little-endian here).
    assert raw == struct.pack("=BBHHHH", 1, 1, 52, 1448, 20, 16)
    assert VirtioNetHdr.decode(raw + b"rest") == hdr
    assert VirtioNetHdr.decode(ZERO_VIRTIO_HDR) == VirtioNetHdr()


def test_virtio_hdr_short() -> None:
    with pytest.raises(OffloadError, match="needs 10 bytes, got 9"):
        VirtioNetHdr.decode(bytes(9))


# --- segmentation ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_segment_super_packet(version: int) -> None:
    hdr, packet = super_packet(version, PAYLOAD, 1448, seq=0xFFFFF000, flags=ACK | PSH | FIN)
    segments = tcp_segment(hdr, packet)
    assert [len(tcp_fields(s)[2]) for s in segments] == [1448] * 7 + [10240 - 7 * 1448]
    assert b"".join(tcp_fields(s)[2] for s in segments) == PAYLOAD
    ip_len = 20 if version == 4 else 40
    for i, seg in enumerate(segments):
        assert checksums_ok(seg), i
        seq, flags, _ = tcp_fields(seg)
        assert seq == (0xFFFFF000 + i * 1448) & 0xFFFFFFFF  # wraps past 2**32
        last = i == len(segments) - 1
        assert flags == (ACK | PSH | FIN if last else ACK)
        assert len(seg) <= ip_len + 20 + 1448
        if version == 4:
            assert struct.unpack_from(">H", seg, 4)[0] == 0x1234 + i  # IP ID + i
            assert seg[6] & 0x40  # DF kept


def test_segment_ip_id_wraps() -> None:
    hdr, packet = super_packet(4, PAYLOAD[:3000], 1000, ip_id=0xFFFF)
    ids = [struct.unpack_from(">H", s, 4)[0] for s in tcp_segment(hdr, packet)]
    assert ids == [0xFFFF, 0, 1]


def test_segment_cwr_only_on_first() -> None:
    hdr, packet = super_packet(4, PAYLOAD[:3000], 1000, flags=ACK | CWR | ECE | PSH)
    hdr = hdr._replace(gso_type=GSO_TCPV4 | GSO_ECN)
    flags = [tcp_fields(s)[1] for s in tcp_segment(hdr, packet)]
    assert flags == [ACK | CWR | ECE, ACK | ECE, ACK | ECE | PSH]


def test_segment_with_options() -> None:
    # Timestamps (RFC 7323 §3), padded with two NOPs: every segment carries them.
    options = b"\x01\x01\x08\x0a" + struct.pack(">II", 7, 9)
    hdr, packet = super_packet(6, PAYLOAD[:5000], 1436, options=options)
    segments = tcp_segment(hdr, packet)
    assert len(segments) == 4
    for seg in segments:
        assert checksums_ok(seg)
        assert seg[40 + 20 : 40 + 32] == options


def test_segment_one_short_payload() -> None:
    hdr, packet = super_packet(4, b"tiny", 1448)
    (seg,) = tcp_segment(hdr, packet)
    assert checksums_ok(seg)
    assert tcp_fields(seg)[2] == b"tiny"


def test_segment_odd_gso_size() -> None:
    hdr, packet = super_packet(4, PAYLOAD[:1001], 333)
    segments = tcp_segment(hdr, packet)
    assert [len(tcp_fields(s)[2]) for s in segments] == [333, 333, 333, 2]
    assert all(checksums_ok(s) for s in segments)


def test_no_gso_needs_csum_finished() -> None:
    packet = bytearray(udp_packet(V4_SRC, V4_DST, 500, 4500, b"x" * 101))
    # Leave only the pseudo-header sum, as the kernel does for CHECKSUM_PARTIAL.
    pseudo = pseudo_header(addr(V4_SRC), addr(V4_DST), 17, 8 + 101)
    struct.pack_into(">H", packet, 26, 0xFFFF - internet_checksum(pseudo))
    assert not checksums_ok(bytes(packet))
    hdr = VirtioNetHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_NONE, 0, 0, 20, 6)
    (done,) = split_read(hdr.encode() + packet)
    assert checksums_ok(done)
    finish_checksum(packet, 20, 6)
    assert bytes(packet) == done


def test_no_gso_plain_passes() -> None:
    packet = udp_packet(V6_SRC, V6_DST, 1, 2, b"abc")
    assert split_read(ZERO_VIRTIO_HDR + packet) == [packet]


def test_finish_checksum_outside() -> None:
    with pytest.raises(OffloadError, match="outside a packet of 30 bytes"):
        finish_checksum(bytearray(30), 20, 16)


@pytest.mark.parametrize(
    ("hdr", "packet", "message"),
    [
        (VirtioNetHdr(1, GSO_UDP_L4, 28, 1000, 20, 6), b"", "not TCP segmentation"),
        (VirtioNetHdr(1, GSO_TCPV4, 40, 0, 20, 16), b"", "gso_size 0"),
        (
            VirtioNetHdr(1, GSO_TCPV6, 40, 1000, 20, 16),
            tcp_packet(V4_SRC, V4_DST, 1, 2, 0, b"x"),
            "not TCP over IP",
        ),
        (
            VirtioNetHdr(1, GSO_TCPV4, 40, 1000, 20, 16),
            udp_packet(V4_SRC, V4_DST, 1, 2, b"x" * 40),
            "not TCP over IP",
        ),
        (
            VirtioNetHdr(1, GSO_TCPV4, 40, 1000, 20, 16),
            ip_packet(V4_SRC, V4_DST, 6, b"\x00" * 12 + b"\xf0" + b"\x00" * 20),
            "TCP header of 60 bytes",
        ),
    ],
)
def test_segment_refuses(hdr: VirtioNetHdr, packet: bytes, message: str) -> None:
    with pytest.raises(OffloadError, match=message):
        tcp_segment(hdr, packet)


# --- coalescing ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_round_trip_byte_exact(version: int) -> None:
    """Segment a super-packet, coalesce the segments: the very same write comes back."""
    hdr, packet = super_packet(version, PAYLOAD, 1448)
    segments = tcp_segment(hdr, packet)
    (write,) = coalesce(segments)
    got = VirtioNetHdr.decode(write)
    assert got == hdr
    assert write[VIRTIO_NET_HDR_LEN:] == packet
    assert tcp_segment(got, write[VIRTIO_NET_HDR_LEN:]) == segments


def test_coalesced_checksum_finishes_to_valid() -> None:
    hdr, packet = super_packet(4, PAYLOAD[:4000], 1000)
    (write,) = coalesce(tcp_segment(hdr, packet))
    got = VirtioNetHdr.decode(write)
    body = bytearray(write[VIRTIO_NET_HDR_LEN:])
    finish_checksum(body, got.csum_start, got.csum_offset)
    assert checksums_ok(bytes(body))


def segs(version: int, sizes: list[int], **kw: int) -> list[bytes]:
    src, dst = flow(version)
    out, seq = [], 5000
    for i, size in enumerate(sizes):
        out.append(tcp_packet(src, dst, 40000, 443, seq, PAYLOAD[:size], ip_id=0x100 + i, **kw))
        seq += size
    return out


def unpack(writes: list[bytes]) -> list[tuple[VirtioNetHdr, bytes]]:
    return [(VirtioNetHdr.decode(w), w[VIRTIO_NET_HDR_LEN:]) for w in writes]


def test_shorter_last_segment_joins() -> None:
    ((hdr, packet),) = unpack(coalesce(segs(4, [1000, 1000, 300])))
    assert hdr.gso_type == GSO_TCPV4 and hdr.gso_size == 1000
    assert len(packet) == 20 + 20 + 2300


def test_segment_after_shorter_starts_new_write() -> None:
    writes = unpack(coalesce(segs(4, [1000, 300, 300])))
    assert [(h.gso_type, len(p) - 40) for h, p in writes] == [(GSO_TCPV4, 1300), (GSO_NONE, 300)]


def test_larger_segment_starts_new_write() -> None:
    writes = unpack(coalesce(segs(6, [500, 500, 1000, 1000])))
    assert [(h.gso_type, h.gso_size) for h, _ in writes] == [(GSO_TCPV6, 500), (GSO_TCPV6, 1000)]


def test_psh_only_on_last() -> None:
    packets = segs(4, [1000, 1000, 1000])
    packets[1] = tcp_packet(V4_SRC, V4_DST, 40000, 443, 6000, PAYLOAD[:1000], flags=ACK | PSH)
    writes = unpack(coalesce(packets))
    # PSH on the second closes the first write, which then carries PSH.
    assert [len(p) - 40 for _, p in writes] == [2000, 1000]
    assert tcp_fields(writes[0][1])[1] == ACK | PSH
    assert writes[1][0] == VirtioNetHdr()


@pytest.mark.parametrize("flag", [SYN, FIN, RST, URG])
def test_control_flags_pass_through(flag: int) -> None:
    packets = segs(4, [1000, 1000, 1000])
    packets[1] = tcp_packet(V4_SRC, V4_DST, 40000, 443, 6000, PAYLOAD[:1000], flags=ACK | flag)
    writes = coalesce(packets)
    assert writes == [ZERO_VIRTIO_HDR + p for p in packets]


def test_bad_checksum_passes_through() -> None:
    packets = segs(4, [1000, 1000])
    bad = bytearray(packets[1])
    bad[-1] ^= 0xFF
    packets[1] = bytes(bad)
    assert coalesce(packets) == [ZERO_VIRTIO_HDR + p for p in packets]


def test_bad_ipv4_header_checksum_passes_through() -> None:
    packets = segs(4, [1000, 1000])
    bad = bytearray(packets[0])
    bad[10] ^= 0x01
    packets[0] = bytes(bad)
    assert coalesce(packets) == [ZERO_VIRTIO_HDR + p for p in packets]


def test_sequence_gap_starts_new_write() -> None:
    packets = segs(4, [1000, 1000, 1000, 1000])
    del packets[2]
    writes = unpack(coalesce(packets))
    assert [len(p) - 40 for _, p in writes] == [2000, 1000]


def test_different_ack_or_window_not_merged() -> None:
    a = tcp_packet(V4_SRC, V4_DST, 1, 2, 0, b"a" * 100)
    b = tcp_packet(V4_SRC, V4_DST, 1, 2, 100, b"b" * 100, ack=99)
    c = tcp_packet(V4_SRC, V4_DST, 1, 2, 200, b"c" * 100, ack=99, window=9)
    assert len(coalesce([a, b, c])) == 3


def test_ipv4_ids_without_df_must_increase() -> None:
    ok = segs(4, [800, 800, 800], df=False)
    assert len(coalesce(ok)) == 1
    src, dst = flow(4)
    jump = [
        tcp_packet(src, dst, 40000, 443, 5000, PAYLOAD[:800], ip_id=7, df=False),
        tcp_packet(src, dst, 40000, 443, 5800, PAYLOAD[:800], ip_id=9, df=False),
    ]
    assert len(coalesce(jump)) == 2
    # With DF the IDs do not matter (RFC 6864 §4.1).
    jump_df = [
        tcp_packet(src, dst, 40000, 443, 5000, PAYLOAD[:800], ip_id=7),
        tcp_packet(src, dst, 40000, 443, 5800, PAYLOAD[:800], ip_id=9),
    ]
    assert len(coalesce(jump_df)) == 1


def test_interleaved_flows_merge_per_flow() -> None:
    a = segs(4, [1000, 1000, 1000])
    b = [
        tcp_packet(V4_SRC, V4_DST, 40001, 443, 9000 + i * 700, PAYLOAD[:700], ip_id=i)
        for i in range(3)
    ]
    udp = udp_packet(V4_SRC, V4_DST, 53, 53, b"q")
    writes = unpack(coalesce([a[0], b[0], udp, a[1], b[1], a[2], b[2]]))
    assert [(h.gso_size, len(p)) for h, p in writes] == [(1000, 3040), (700, 2140), (0, len(udp))]


def test_non_tcp_and_pure_acks_untouched() -> None:
    acks = [tcp_packet(V4_SRC, V4_DST, 1, 2, 0, b"", ack=1000 * i) for i in range(3)]
    udp = udp_packet(V6_SRC, V6_DST, 4500, 4500, b"esp")
    packets = [*acks, udp, b"\x45junk"]
    assert coalesce(packets) == [ZERO_VIRTIO_HDR + p for p in packets]


def test_fragment_untouched() -> None:
    pkt = bytearray(segs(4, [1000])[0])
    pkt[6] = 0x20  # MF
    ipv4_set_checksum(pkt, 0, 20)
    packets = [bytes(pkt), segs(4, [1000, 1000])[1]]
    assert coalesce(packets) == [ZERO_VIRTIO_HDR + p for p in packets]


def test_write_stays_within_64k() -> None:
    writes = unpack(coalesce(segs(4, [1400] * 100)))
    assert [len(p) for _, p in writes] == [40 + 46 * 1400, 40 + 46 * 1400, 40 + 8 * 1400]
    assert all(len(p) <= 0xFFFF for _, p in writes)
    writes6 = unpack(coalesce(segs(6, [1400] * 100)))
    assert all(len(p) - 40 <= 0xFFFF for _, p in writes6)
    assert sum(len(p) - 60 for _, p in writes6) == 140000


@settings(max_examples=150, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    length=st.integers(1, 30000),
    gso_size=st.integers(1, 2000),
    seq=st.integers(0, 2**32 - 1),
    ip_id=st.integers(0, 0xFFFF),
)
def test_round_trip_property(
    version: int, length: int, gso_size: int, seq: int, ip_id: int
) -> None:
    payload = (PAYLOAD * 3)[:length]
    hdr, packet = super_packet(version, payload, gso_size, seq=seq, ip_id=ip_id)
    segments = tcp_segment(hdr, packet)
    assert all(checksums_ok(s) for s in segments)
    assert b"".join(tcp_fields(s)[2] for s in segments) == payload
    writes = coalesce(segments)
    if len(segments) == 1:
        assert writes == [ZERO_VIRTIO_HDR + segments[0]]
        return
    (write,) = writes
    assert VirtioNetHdr.decode(write) == hdr
    assert write[VIRTIO_NET_HDR_LEN:] == packet


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0, VIRTIO_NET_HDR_F_NEEDS_CSUM, 2, 3]),
    st.sampled_from([GSO_NONE, GSO_ECN, 1, 3, 4, 0x81, 5]),
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=0, max_size=80),
)
def test_plain_read_is_split_read_of_a_read_that_needs_no_work(
    flags: int, gso_type: int, rest: bytes, packet: bytes
) -> None:
    data = bytes([flags, gso_type]) + rest + packet
    plain = plain_read(data)
    if plain is not None:
        assert [plain] == split_read(data) and plain == packet
    # Every read without GSO or a partial checksum is one, but an empty packet.
    assert (plain is not None) == (
        not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM and gso_type & ~GSO_ECN == GSO_NONE
        and len(packet) > 0
    )  # fmt: skip
    assert plain_read(data[:VIRTIO_NET_HDR_LEN]) is None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0, VIRTIO_NET_HDR_F_NEEDS_CSUM, 2, 3]),
    st.sampled_from([GSO_NONE, GSO_ECN, GSO_TCPV4, 0x81]),
    st.integers(0, 90),
    st.integers(0, 90),
    st.binary(min_size=0, max_size=80),
)
def test_checksummed_read_is_split_read_of_a_partial_datagram(
    flags: int, gso_type: int, csum_start: int, csum_offset: int, packet: bytes
) -> None:
    """`checksummed_read` gives the one packet the Python path of `split_read` makes of
    a read without GSO whose checksum is partial, byte for byte; None for any other read
    (GSO, no partial checksum, a field outside the packet, an empty packet), and
    without the compiled helper."""
    if not helper.built()[0]:
        pytest.skip(f"the compiled ESP helper is {helper.built()[1]}")
    module = helper.compiled()
    hdr = VirtioNetHdr(flags, gso_type, 0, 0, csum_start, csum_offset)
    data = hdr.encode() + packet
    done = checksummed_read(data, module)
    assert checksummed_read(data, None) is None
    partial = flags & VIRTIO_NET_HDR_F_NEEDS_CSUM and gso_type & ~GSO_ECN == GSO_NONE
    fits = csum_start < len(packet) and csum_start + csum_offset + 2 <= len(packet)
    assert (done is not None) == bool(partial and fits)
    if done is not None:
        assert [done] == split_read(data, None)
    elif partial and packet:
        with pytest.raises(OffloadError, match="outside a packet"):
            split_read(data, None)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=1600), st.integers(0, 1700), st.integers(0, 1700))
def test_finish_checksum_compiled_as_python(data: bytes, csum_start: int, csum_offset: int) -> None:
    """The compiled helper's `finish_checksum` writes what the Python sum writes, or
    refuses what it refuses, for any packet, odd lengths and all-zero sums included."""
    if not helper.built()[0]:
        pytest.skip(f"the compiled ESP helper is {helper.built()[1]}")
    done: dict[str, bytearray | str] = {}
    for path in ("compiled", "python"):
        packet = bytearray(data)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(helper.HELPER_ENV, path)
            try:
                finish_checksum(packet, csum_start, csum_offset)
                done[path] = packet
            except OffloadError as e:
                done[path] = str(e)
    assert done["compiled"] == done["python"]


def test_finish_checksum_of_zeros_is_all_ones() -> None:
    """A sum of 0 (a datagram of zeros and a zero pseudo-header) goes out as 0xFFFF on
    either path (RFC 768)."""
    for path in ("compiled", "python"):
        packet = bytearray(40)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(helper.HELPER_ENV, path)
            finish_checksum(packet, 20, 6)
        assert packet[26:28] == b"\xff\xff" and packet.count(0) == 38


@pytest.mark.parametrize("version", [4, 6])
def test_split_read_uses_the_module_given(version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that read `helper.compiled()` once passes it down: `split_read` then does
    not ask again, and the compiled helper and the Python path (None) make the same
    packets of a partial-checksum UDP read and of a TCP super-packet."""
    if not helper.built()[0]:
        pytest.skip(f"the compiled ESP helper is {helper.built()[1]}")
    module = helper.compiled()
    assert module is not None

    def asked() -> None:
        raise AssertionError("split_read asked for the helper it was given")

    src, dst = flow(version)
    udp = bytearray(udp_packet(src, dst, 500, 4500, b"y" * 333))
    ip_len = 20 if version == 4 else 40
    pseudo = pseudo_header(addr(src), addr(dst), 17, 8 + 333)
    struct.pack_into(">H", udp, ip_len + 6, 0xFFFF - internet_checksum(pseudo))
    partial = VirtioNetHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_NONE, 0, 0, ip_len, 6).encode()
    hdr, tso = super_packet(version, PAYLOAD, 1448, seq=7, flags=ACK | PSH)
    monkeypatch.setattr(helper, "compiled", asked)
    for read in (partial + udp, hdr.encode() + tso):
        made = split_read(read, module)
        assert made == split_read(read, None)
        assert all(checksums_ok(p) for p in made)
