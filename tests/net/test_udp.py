"""UdpSocket over loopback: GSO sends, GRO receives, the batch split and the fallbacks."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest

from larval.net.errors import NetError
from larval.net.udp import RX_ROOM, UDP_MAX_SEGMENTS, UdpSocket

SO_NO_CHECK = 11  # include/uapi/asm-generic/socket.h


@pytest.fixture
def sockets(request: pytest.FixtureRequest) -> Iterator[tuple[UdpSocket, UdpSocket]]:
    """(sender, receiver) on loopback; the parameter is the receiver's `gro`."""
    host = getattr(request, "param", ("127.0.0.1", True))
    address, gro = host
    sender = UdpSocket.bind(address, 0, gro=False)
    try:
        receiver = UdpSocket.bind(address, 0, gro=gro)
    except BaseException:
        sender.close()
        raise
    receiver.settimeout(5)
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def receive(receiver: UdpSocket, count: int) -> tuple[list[bytes], int]:
    """`count` datagrams and the number of recv_batch calls it took."""
    got: list[bytes] = []
    calls = 0
    while len(got) < count:
        batch = receiver.recv_batch()
        calls += 1
        got.extend(data for data, _ in batch)
    return got, calls


def ten_segments() -> list[bytes]:
    return [bytes([i]) * 1200 for i in range(9)] + [b"\x09" * 700]


ALL_HOSTS = [("127.0.0.1", False), ("127.0.0.1", True), ("::1", False), ("::1", True)]


@pytest.mark.parametrize("sockets", ALL_HOSTS, indirect=True, ids=lambda h: f"{h[0]}-gro{h[1]}")
def test_gso_send_ten(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    segments = ten_segments()
    sender.send_segments(segments, receiver.local_address)
    assert sender.counters.gso_calls == 1
    assert sender.counters.datagrams_sent == 10
    got, calls = receive(receiver, 10)
    assert got == segments
    assert receiver.counters.datagrams_received == 10
    if receiver.gro:
        # Loopback hands the GSO packet to a GRO socket whole: one receive, split by
        # the segment size from the UDP_GRO control message.
        assert calls == 1
        assert receiver.counters.gro_batches == 1
    else:
        assert calls == 10
        assert receiver.counters.gro_batches == 0


def test_sender_address_reported(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    sender.send(b"ike", receiver.local_address)
    sender.send_segments([b"a" * 100, b"b" * 100], receiver.local_address)
    batches = [receiver.recv_batch(), receiver.recv_batch()]
    datagrams = [d for batch in batches for d in batch]
    assert [d for d, _ in datagrams] == [b"ike", b"a" * 100, b"b" * 100]
    assert {a for _, a in datagrams} == {sender.local_address}


def test_batching_rules(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    # 70 equal: 64 + 6; then a larger one starts a batch, a shorter one ends it; the
    # one after the shorter one starts again.
    segments = [b"x" * 500] * 70 + [b"y" * 900, b"y" * 900, b"z" * 10, b"w" * 10]
    sender.send_segments(segments, receiver.local_address)
    assert sender.counters.gso_calls == 3  # 64, 6, [900, 900, 10]; "w" alone
    assert sender.counters.datagrams_sent == len(segments)
    got, _ = receive(receiver, len(segments))
    assert got == segments


def test_batch_bounded_by_64k(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    segments = [bytes([i % 256]) * 1436 for i in range(100)]
    sender.send_segments(segments, receiver.local_address)
    # 65507 // 1436 = 45 segments per call at most.
    assert sender.counters.gso_calls == 3
    got, _ = receive(receiver, 100)
    assert got == segments
    assert UDP_MAX_SEGMENTS == 64


def test_gro_batch_split_sizes(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    assert receiver.gro
    segments = [b"\x01" * 333] * 5 + [b"\x02" * 1]
    sender.send_segments(segments, receiver.local_address)
    batch = receiver.recv_batch()
    assert [len(d) for d, _ in batch] == [333] * 5 + [1]


def test_fallback_when_kernel_refuses(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    # A socket without UDP checksums cannot use GSO: the kernel answers EINVAL
    # (udp_send_skb()), so the socket falls back to one sendto per datagram for good.
    sender.sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    segments = ten_segments()
    sender.send_segments(segments, receiver.local_address)
    assert not sender.gso
    assert sender.counters.fallbacks == 1
    assert sender.counters.gso_calls == 0
    assert sender.counters.datagrams_sent == 10
    sender.send_segments(segments, receiver.local_address)
    assert sender.counters.fallbacks == 1
    assert sender.counters.datagrams_sent == 20
    got, _ = receive(receiver, 20)
    assert got == segments + segments


def test_refused_does_not_kill(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, _ = sockets
    closed = UdpSocket.bind("127.0.0.1", 0)
    dead = closed.local_address
    closed.close()
    # Connected, the socket hears the ICMP port unreachable (RFC 1122 §4.1.3.3) and
    # reports ECONNREFUSED on its next call.
    sender.sock.connect(dead)
    sender.send(b"first", dead)
    sender.send(b"second", dead)
    sender.send_segments([b"s" * 100] * 3, dead)
    assert sender.counters.refused >= 1
    sender.send(b"again", dead)
    sender.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sender.recv_batch()
    assert sender.counters.refused >= 2


def test_bind_errors() -> None:
    with UdpSocket.bind("127.0.0.1", 0) as first:
        port = first.local_address[1]
        with pytest.raises(NetError, match=f"port {port} is already in use"):
            UdpSocket.bind("127.0.0.1", port)
    with pytest.raises(NetError, match="not an address of this host"):
        UdpSocket.bind("192.0.2.99", 0)


def test_truncated_datagram_dropped(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    sender.send(b"x" * 3000, receiver.local_address)
    sender.send(b"y" * 100, receiver.local_address)
    assert receiver.recv_batch(max_bytes=1000) == []
    assert receiver.counters.truncated == 1
    assert [d for d, _ in receiver.recv_batch(max_bytes=1000)] == [b"y" * 100]


def test_recv_into_leaves_a_gro_batch_back_to_back(sockets: tuple[UdpSocket, UdpSocket]) -> None:
    sender, receiver = sockets
    assert receiver.gro
    segments = [bytes([n]) * 333 for n in range(5)] + [b"\x09" * 7]
    sender.send_segments(segments, receiver.local_address)
    sender.send(b"alone", receiver.local_address)
    buffer = bytearray(3 * 65536)
    view = memoryview(buffer)
    nbytes, size, count, peer = receiver.recv_into(view[100:])
    assert (nbytes, size, count) == (5 * 333 + 7, 333, 6)
    assert peer == sender.local_address
    assert bytes(buffer[100 : 100 + nbytes]) == b"".join(segments)
    # The next receive lands where the caller says: after the first, in the same buffer.
    assert receiver.recv_into(view[100 + nbytes :])[:3] == (5, 5, 1)
    assert bytes(buffer[100 + nbytes : 105 + nbytes]) == b"alone"
    assert receiver.counters.gro_batches == 1 and receiver.counters.datagrams_received == 7


def test_recv_into_keeps_the_whole_datagrams_of_a_cut_batch(
    sockets: tuple[UdpSocket, UdpSocket],
) -> None:
    sender, receiver = sockets
    assert receiver.gro
    segments = [bytes([n]) * 300 for n in range(6)]
    sender.send_segments(segments, receiver.local_address)
    sender.send(b"z" * 2000, receiver.local_address)
    buffer = bytearray(1000)
    # 1,800 bytes into 1,000: the three whole datagrams before the cut are kept.
    nbytes, size, count, _ = receiver.recv_into(memoryview(buffer))
    assert (nbytes, size, count) == (900, 300, 3)
    assert bytes(buffer[:900]) == b"".join(segments[:3])
    # One datagram cut short: none.
    assert receiver.recv_into(memoryview(buffer))[2] == 0
    assert receiver.counters.truncated == 2


SEND_PATTERNS = {
    # The UDP 1,400 B case: each datagram two fragments, so a big and a small ESP packet
    # by turns, 70 messages (more than one sendmmsg of 64).
    "alternating": [bytes([i % 251]) * (1436 if i % 2 == 0 else 92) for i in range(140)],
    "130 equal": [bytes([i]) * 1000 for i in range(130)],
    "runs and lone ones": [b"a" * 500] * 3
    + [b"b" * 600] * 3
    + [b"c" * 10]
    + [b"d" * 700, b"e" * 800, b"f" * 800],
    "the 64 KB limit": [bytes([i]) * 30000 for i in range(5)],
}


@pytest.mark.parametrize("pattern", list(SEND_PATTERNS))
@pytest.mark.parametrize("sockets", ALL_HOSTS[1::2], indirect=True, ids=["v4", "v6"])
def test_send_segments_the_same_on_both_paths(
    sockets: tuple[UdpSocket, UdpSocket], pattern: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled sendmmsg sends what the Python loop sends, in the same GSO messages
    (so the same counters), for the datagrams in order."""
    from larval.esp import helper

    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")
    sender, receiver = sockets
    segments = SEND_PATTERNS[pattern]
    seen = []
    for path in ("python", "compiled"):
        monkeypatch.setenv(helper.HELPER_ENV, path)
        before = (sender.counters.gso_calls, sender.counters.datagrams_sent)
        sender.send_segments(segments, receiver.local_address)
        got, _ = receive(receiver, len(segments))
        assert got == segments, path
        seen.append(
            (sender.counters.gso_calls - before[0], sender.counters.datagrams_sent - before[1])
        )
    assert seen[0] == seen[1]
    assert seen[0][1] == len(segments)


def test_a_send_the_kernel_refuses_goes_on_in_python(
    sockets: tuple[UdpSocket, UdpSocket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GSO send refused (no UDP checksums: EINVAL) stops the compiled send; the Python
    loop takes the batch from there and falls back to one datagram per send, as alone."""
    from larval.esp import helper

    monkeypatch.setenv(helper.HELPER_ENV, "compiled")
    if not helper.built()[0]:
        pytest.skip("no compiled helper")
    sender, receiver = sockets
    sender.sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    # A lone datagram first (sent by sendmmsg), then a GSO message the kernel refuses.
    segments = [b"x" * 100, b"y" * 200, *ten_segments()]
    sender.send_segments(segments, receiver.local_address)
    assert not sender.gso and sender.counters.fallbacks == 1
    assert sender.counters.gso_calls == 0 and sender.counters.datagrams_sent == 12
    got, _ = receive(receiver, 12)
    assert got == segments


@pytest.mark.parametrize("sockets", ALL_HOSTS, indirect=True, ids=lambda h: f"{h[0]}-gro{h[1]}")
def test_recv_ready_gives_what_recv_into_gives_on_both_paths(
    sockets: tuple[UdpSocket, UdpSocket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receives ready, by one recvmmsg (compiled) or by recv_into one after another
    (Python): the same receives, senders and counters, the datagrams back to back."""
    from larval.esp import helper

    sender, receiver = sockets
    other = UdpSocket.bind(sender.local_address[0], 0, gro=False)
    receiver.settimeout(0.0)
    batches = [
        (sender, [b"a" * 900] * 4 + [b"b" * 100]),
        (other, [b"c" * 1436, b"d" * 92]),
        (sender, [b"e" * 40]),
        (other, [bytes([i]) * 1200 for i in range(9)] + [b"f" * 700]),
        (sender, [b"g" * 1436, b"h" * 92]),
    ]
    paths = ["python", "compiled"] if helper.built()[0] else ["python"]
    seen = []
    other_address = other.local_address
    try:
        for path in paths:
            monkeypatch.setenv(helper.HELPER_ENV, path)
            for sock, segments in batches:
                sock.send_segments(segments, receiver.local_address)
            before = dataclasses.replace(receiver.counters)
            buffer = bytearray(64 * RX_ROOM)
            view = memoryview(buffer)
            # At most two receives, then what is left.
            first = receiver.recv_ready(view, 2)
            assert len(first) == 2
            rest_at = sum(n for n, _, _, _ in first)
            rest = receiver.recv_ready(view[rest_at:], 64)
            got = first + rest
            total = sum(n for n, _, _, _ in got)
            assert bytes(buffer[:total]) == b"".join(b"".join(s) for _, s in batches)
            assert receiver.recv_ready(view, 64) == []  # nothing more ready
            counters = receiver.counters
            seen.append(
                (got, counters.datagrams_received - before.datagrams_received,
                 counters.gro_batches - before.gro_batches)
            )  # fmt: skip
    finally:
        other.close()
    assert all(s == seen[0] for s in seen)
    got = seen[0][0]
    assert [(n, count) for n, _, count, _ in got] == (
        [(3700, 5), (1528, 2), (40, 1), (11500, 10), (1528, 2)] if receiver.gro
        else [(900, 1)] * 4 + [(100, 1), (1436, 1), (92, 1), (40, 1)]
        + [(1200, 1)] * 9 + [(700, 1), (1436, 1), (92, 1)]
    )  # fmt: skip
    senders = [peer for _, _, _, peer in got]
    assert senders[0][:2] == sender.local_address[:2]
    if receiver.gro:
        assert senders[1][:2] == other_address[:2]
        assert seen[0][1:] == (20, 4)


def test_recv_ready_hands_on_what_came_before_a_failed_receive(
    sockets: tuple[UdpSocket, UdpSocket], monkeypatch: pytest.MonkeyPatch
) -> None:
    from larval.esp import helper

    monkeypatch.setenv(helper.HELPER_ENV, "python")
    sender, receiver = sockets
    receiver.settimeout(0.0)
    sender.send(b"first", receiver.local_address)
    sender.send(b"second", receiver.local_address)
    receive_into = receiver.recv_into
    calls: list[int] = []

    def failing_second(view: memoryview) -> tuple[int, int, int, tuple[str, int]]:
        calls.append(1)
        if len(calls) == 2:
            raise NetError("UDP receive: No buffer space available")
        return receive_into(view)

    monkeypatch.setattr(receiver, "recv_into", failing_second)
    buffer = memoryview(bytearray(4 * RX_ROOM))
    got = receiver.recv_ready(buffer, 4)
    assert [(n, count) for n, _, count, _ in got] == [(5, 1)] and bytes(buffer[:5]) == b"first"
    with pytest.raises(NetError, match="No buffer space"):
        calls.clear()
        calls.append(1)  # the next call is the failing one
        receiver.recv_ready(buffer, 4)
