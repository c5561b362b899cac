"""NAT keepalive scheduling (RFC 3948 §2.3): one 0xFF byte per peer per interval, only
when nothing else went to the peer; and the keepalives over the in-memory network."""

from __future__ import annotations

import ipaddress

import pytest

from larval.esp import NAT_KEEPALIVE, classify_udp4500
from larval.net.keepalive import NatKeepalive
from larval.net.memnet import MemoryDataplane, MemoryNetwork, MemoryTun
from larval.stack import Stack
from larval.stack.packet_path import Datagram

P1 = (ipaddress.IPv4Address("192.0.2.2").packed, 4500)
P2 = (ipaddress.IPv4Address("198.51.100.7").packed, 31337)  # a NAT-mapped port


def test_first_sight_starts_the_timer() -> None:
    k = NatKeepalive(interval=20.0)
    assert k.get_timer() is None
    assert k.due(100.0, [P1]) == []
    assert k.get_timer() == 120.0
    assert k.due(119.9, [P1]) == []
    assert k.due(120.0, [P1]) == [Datagram(NAT_KEEPALIVE, P1[0], 4500)]
    assert k.due(125.0, [P1]) == []  # at most one per interval
    assert k.due(140.0, [P1]) == [Datagram(b"\xff", P1[0], 4500)]
    assert k.sent == 2


def test_traffic_within_the_interval_suppresses_the_keepalive() -> None:
    k = NatKeepalive(interval=20.0)
    k.due(0.0, [P1, P2])
    k.note_sent(P1, 15.0)  # ESP went to P1
    assert k.due(20.0, [P1, P2]) == [Datagram(NAT_KEEPALIVE, *P2)]  # P2's own port
    assert k.get_timer([P1]) == 35.0 and k.get_timer() == 35.0
    k.note_sent(P1, 10.0)  # an older send never moves the timer back
    assert k.due(35.0, [P1, P2]) == [Datagram(NAT_KEEPALIVE, *P1)]


def test_callers_last_sent_mapping() -> None:
    k = NatKeepalive(interval=10.0)
    k.due(0.0, [P1])
    assert k.due(10.0, [P1], last_sent={P1: 5.0}) == []
    assert k.due(15.0, [P1], last_sent={P1: 5.0}) == [Datagram(NAT_KEEPALIVE, *P1)]


def test_peers_that_leave_are_forgotten() -> None:
    k = NatKeepalive(interval=10.0)
    k.due(0.0, [P1, P2])
    assert k.due(5.0, [P1]) == []
    # P2 comes back as a new peer: its timer starts again rather than firing at once.
    assert k.due(30.0, [P1, P2]) == [Datagram(NAT_KEEPALIVE, *P1)]
    k.forget(P1)
    assert k.get_timer() == 40.0  # only P2 (seen at 30) is left
    assert k.due(40.0, [P2]) == [Datagram(NAT_KEEPALIVE, *P2)]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        NatKeepalive(interval=0.0)


def test_keepalives_cross_the_memory_network_and_are_absorbed() -> None:
    net = MemoryNetwork()
    a_end, b_end = net.attach("192.0.2.1", 4500), net.attach("192.0.2.2", 4500)
    a = MemoryDataplane(Stack(), MemoryTun(), a_end, keepalive=NatKeepalive(interval=20.0))
    b = MemoryDataplane(Stack(), MemoryTun(), b_end)
    a.keepalive_peers.add(P1)
    for now in range(0, 61, 5):
        a.step(float(now))
        net.advance(float(now))
        seen = b_end.pending()
        b.step(float(now))
        if now in (20, 40, 60):
            assert seen == 1, now
        else:
            assert seen == 0, now
    assert a.keepalive is not None and a.keepalive.sent == 3
    assert classify_udp4500(NAT_KEEPALIVE) == ("keepalive", None)
    counters = b.path.counters()
    assert counters["delivered"] == 0 and sum(counters.values()) == 0  # nothing dropped
