"""The in-memory network: endpoints shaped like `UdpSocket`, the caller's clock, each
impairment on its own (deterministic under a seeded `random.Random`), and `MemoryTun`."""

from __future__ import annotations

import random

import pytest

from larval.net.errors import NetError
from larval.net.memnet import MemoryDatagram, MemoryEndpoint, MemoryNetwork, MemoryTun

A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"


def pair(net: MemoryNetwork) -> tuple[MemoryEndpoint, MemoryEndpoint]:
    return net.attach(A, 4500, name="alice"), net.attach(B, 4500, name="bob")


def numbered(n: int) -> list[bytes]:
    return [i.to_bytes(2, "big") for i in range(n)]


def received(endpoint: MemoryEndpoint) -> list[bytes]:
    return [data for data, _ in endpoint.recv_batch()]


def send_all(a: MemoryEndpoint, payloads: list[bytes], to: str = B) -> None:
    for p in payloads:
        a.send(p, (to, 4500))


# -- endpoints and the clock ----------------------------------------------------------


def test_datagrams_arrive_on_advance_in_order() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    assert a.local_address == (A, 4500)
    send_all(a, numbered(3))
    assert b.recv_batch() == []  # nothing moves until the caller moves the clock
    assert net.next_due() == 0.0 and net.in_flight() == 3
    assert net.advance(0.0) == 3
    assert b.recv_batch() == [(p, (A, 4500)) for p in numbered(3)]
    assert b.recv_batch() == []
    assert (a.counters.datagrams_sent, b.counters.datagrams_received) == (3, 3)
    assert net.counters.sent == net.counters.delivered == 3


def test_latency_and_replies() -> None:
    net = MemoryNetwork(latency=0.01)
    a, b = pair(net)
    a.send(b"ping", (B, 4500))
    net.advance(0.005)
    assert b.recv_batch() == []
    assert net.next_due() == pytest.approx(0.01)
    net.advance(0.01)
    [(data, sender)] = b.recv_batch()
    b.send(data.replace(b"i", b"o"), sender)
    net.advance(0.02)
    assert received(a) == [b"pong"]


def test_ephemeral_ports_address_spelling_and_errors() -> None:
    net = MemoryNetwork()
    e1 = net.attach("2001:db8:0::1", 0)
    e2 = net.attach("2001:db8::1", 0)
    assert e1.local_address[0] == "2001:db8::1" and e1.local_address[1] != e2.local_address[1]
    with pytest.raises(NetError, match="already in use"):
        net.attach("2001:db8::1", e1.local_address[1])
    with pytest.raises(NetError, match="not an IP address"):
        net.attach("not-an-address", 1)
    with pytest.raises(NetError, match="outside"):
        net.attach(A, 70000)
    with pytest.raises(ValueError, match="time runs forward"):
        net.advance(-1.0)


def test_unreachable_closed_and_truncated() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    a.send(b"x", (C, 4500))  # no such host
    a.send(b"y", (B, 500))  # no such port
    net.advance(0.0)
    assert net.counters.unreachable == 2
    a.send(b"z" * 100, (B, 4500))
    a.send(b"ok", (B, 4500))
    net.advance(0.0)
    assert b.recv_batch(max_bytes=10) == [(b"ok", (A, 4500))]
    assert b.counters.truncated == 1 and net.counters.truncated == 1
    with b:
        pass
    assert b.closed and net.endpoint(B, 4500) is None
    with pytest.raises(NetError, match="closed"):
        b.send(b"late", (A, 4500))
    a.send(b"after close", (B, 4500))
    net.advance(0.0)
    assert net.counters.unreachable == 3


def test_an_endpoint_is_closed_when_its_block_raises() -> None:
    net = MemoryNetwork()
    a, _ = pair(net)
    with pytest.raises(RuntimeError, match="inside"), a as entered:
        assert entered is a
        raise RuntimeError("inside")
    assert a.closed and net.endpoint(A, 4500) is None


def test_tap_sees_every_event() -> None:
    events: list[tuple[str, bytes]] = []
    net = MemoryNetwork(tap=lambda event, d: events.append((event, d.data)))
    a, _ = pair(net)
    net.impair(A, B, drop=lambda d: d.data == b"lost")
    send_all(a, [b"kept", b"lost"])
    net.advance(0.0)
    assert events == [
        ("sent", b"kept"), ("sent", b"lost"), ("dropped", b"lost"), ("delivered", b"kept"),
    ]  # fmt: skip
    assert net.name_of(A) == "alice" and net.name_of(C) == C


# -- impairments ----------------------------------------------------------------------


def test_drop_probability_is_deterministic() -> None:
    def run(seed: int) -> list[bytes]:
        net = MemoryNetwork(rng=random.Random(seed))
        a, b = pair(net)
        imp = net.impair(drop=0.3)
        send_all(a, numbered(200))
        net.advance(0.0)
        got = received(b)
        assert imp.counters.dropped == net.counters.dropped == 200 - len(got)
        return got

    first = run(7)
    assert first == run(7)  # same seed, same losses
    assert first != run(8)
    assert 100 < len(first) < 180  # about 70 % kept
    assert first == sorted(first)  # loss alone never reorders


def test_drop_predicate_and_link_scope() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    c = net.attach(C, 4500)
    imp = net.impair(A, B, drop=lambda d: d.data.startswith(b"\x00\x00\x00\x00"))
    send_all(a, [b"\x00\x00\x00\x00ike", b"esp!"])
    send_all(a, [b"\x00\x00\x00\x00ike"], to=C)  # another link: not impaired
    net.advance(0.0)
    assert received(b) == [b"esp!"] and received(c) == [b"\x00\x00\x00\x00ike"]
    assert imp.counters.dropped == 1 and imp.counters.sent == 2
    # One direction only, unless asked for both.
    b.send(b"\x00\x00\x00\x00back", (A, 4500))
    net.advance(0.0)
    assert received(a) == [b"\x00\x00\x00\x00back"]
    net.impair(A, B, both_ways=True, drop=1.0)
    b.send(b"gone", (A, 4500))
    net.advance(0.0)
    assert received(a) == []
    net.clear_impairments()
    b.send(b"back again", (A, 4500))
    net.advance(0.0)
    assert received(a) == [b"back again"]


def test_delay_and_jitter() -> None:
    net = MemoryNetwork(rng=random.Random(1))
    a, b = pair(net)
    imp = net.impair(delay=0.5)
    a.send(b"slow", (B, 4500))
    net.advance(0.49)
    assert received(b) == []
    assert net.next_due() == pytest.approx(0.5)
    net.advance(0.5)
    assert received(b) == [b"slow"] and imp.counters.delayed == 1
    net.impair(delay=0.1, jitter=0.2)
    send_all(a, numbered(50))
    net.advance(0.6)
    early = received(b)
    net.advance(0.8)
    rest = received(b)
    assert sorted(early + rest) == numbered(50)
    assert early + rest != numbered(50)  # jitter wider than the gaps reorders
    assert net.counters.delayed == 51


def test_duplicate() -> None:
    net = MemoryNetwork(rng=random.Random(3))
    a, b = pair(net)
    imp = net.impair(duplicate=0.25)
    send_all(a, numbered(100))
    net.advance(0.0)
    got = received(b)
    assert len(got) == 100 + imp.counters.duplicated and 10 < imp.counters.duplicated < 40
    assert sorted(set(got)) == numbered(100)
    # A copy arrives right behind its original.
    assert all(got[i] <= got[i + 1] for i in range(len(got) - 1))


def test_reorder_holds_back_behind_later_datagrams() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    net.impair(A, B, reorder=1.0, reorder_depth=2)
    a.send(b"first", (B, 4500))
    net.impair(A, B)  # the rest go straight through
    send_all(a, [b"second", b"third", b"fourth"])
    net.advance(0.0)
    assert received(b) == [b"second", b"third", b"first", b"fourth"]


def test_reorder_probability_keeps_everything() -> None:
    def run(seed: int) -> tuple[list[bytes], int]:
        net = MemoryNetwork(rng=random.Random(seed))
        a, b = pair(net)
        imp = net.impair(reorder=0.2, reorder_timeout=0.5)
        send_all(a, numbered(100))
        net.advance(0.0)
        net.advance(1.0)  # the last held-back ones go on their timeout
        assert net.in_flight() == 0
        return received(b), imp.counters.reordered

    got, reordered = run(5)
    assert (got, reordered) == run(5)
    assert sorted(got) == numbered(100) and got != numbered(100) and reordered > 5


def test_reorder_timeout_when_nothing_follows() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    net.impair(reorder=1.0, reorder_timeout=0.25)
    a.send(b"alone", (B, 4500))
    net.advance(0.0)
    assert received(b) == [] and net.next_due() == pytest.approx(0.25)
    net.advance(0.25)
    assert received(b) == [b"alone"]


def test_hold_and_release_make_one_datagram_late() -> None:
    net = MemoryNetwork()
    a, b = pair(net)

    def is_ike(d: MemoryDatagram) -> bool:
        return d.data.startswith(b"\x00\x00\x00\x00")

    net.hold(is_ike)
    send_all(a, [b"\x00\x00\x00\x00IKE_AUTH", b"esp-1", b"esp-2"])
    net.advance(0.0)
    assert received(b) == [b"esp-1", b"esp-2"]
    assert [d.data for d in net.held] == [b"\x00\x00\x00\x00IKE_AUTH"]
    assert net.next_due() is None  # held datagrams wait for release, not for time
    assert net.release() == 1
    a.send(b"\x00\x00\x00\x00INFORMATIONAL", (B, 4500))  # holding stopped with release()
    net.advance(0.0)
    assert received(b) == [b"\x00\x00\x00\x00IKE_AUTH", b"\x00\x00\x00\x00INFORMATIONAL"]
    assert (net.counters.held, net.counters.released) == (1, 1)


def test_hold_limit_and_selective_release() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    net.hold(lambda d: d.data.startswith(b"x"), limit=2)
    send_all(a, [b"x1", b"x2", b"x3"])
    net.advance(0.0)
    assert received(b) == [b"x3"]  # the hold was spent on the first two
    assert net.release(lambda d: d.data == b"x2") == 1
    net.advance(0.0)
    assert received(b) == [b"x2"]
    assert [d.data for d in net.held] == [b"x1"]
    net.release()
    net.advance(0.0)
    assert received(b) == [b"x1"]


def test_hold_comes_before_drop() -> None:
    net = MemoryNetwork()
    a, b = pair(net)
    net.impair(drop=1.0)
    net.hold(lambda d: d.data == b"keep")
    send_all(a, [b"keep", b"lose"])
    net.release()
    net.advance(0.0)
    assert received(b) == [b"keep"] and net.counters.dropped == 1


def test_run_steps_through_due_times() -> None:
    net = MemoryNetwork(latency=0.1)
    a, b = pair(net)
    a.send(b"one", (B, 4500))
    steps = []
    for now in net.run():
        steps.append(now)
        for data, sender in b.recv_batch():
            if data == b"one":
                b.send(b"two", sender)
    assert steps == [pytest.approx(0.1), pytest.approx(0.2)]
    assert received(a) == [b"two"]


def test_bad_impairments_are_refused() -> None:
    net = MemoryNetwork()
    for kwargs in ({"drop": 1.5}, {"duplicate": -0.1}, {"delay": -1.0}, {"reorder_depth": 0}):
        with pytest.raises(ValueError):
            net.impair(**kwargs)
    with pytest.raises(ValueError, match="both src and dst"):
        net.impair(A, drop=0.5)


# -- the TUN stand-in -----------------------------------------------------------------


def test_memory_tun() -> None:
    tun = MemoryTun()
    with pytest.raises(BlockingIOError):
        tun.read()
    tun.inject(b"p1")
    tun.inject(b"p2")
    assert tun.read() == b"p1" and tun.read_batch() == [b"p2"] and tun.read_batch() == []
    tun.write(b"c1")
    assert tun.take() == [b"c1"] and tun.written == []
