"""Two stacks on the in-memory network: manual SAs through PF_KEY, ESP in UDP 4500 both
ways through `MemoryDataplane`, over a lossy, duplicating, reordering network.

What the receiver must make of it (RFC 4303 §3.4.3): a duplicate is dropped by the
anti-replay window and counted, a reordered packet still inside the window is delivered,
a lost one is simply missing, and nothing raises.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from larval.esp import NON_ESP_MARKER
from larval.net.memnet import MemoryDatagram, MemoryDataplane, MemoryNetwork, MemoryTun
from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SadbSa, SaFlags, SaState
from larval.pfkey.requests import getspi, keyed
from larval.spd import load_policy_text
from larval.stack import Stack

A_OUTER, B_OUTER = "192.0.2.1", "192.0.2.2"
A_NET, B_NET = "198.51.100.0/24", "203.0.113.0/24"
A_HOST, B_HOST = "198.51.100.1", "203.0.113.1"
KEY_AB, KEY_BA = bytes(range(20)), bytes(range(20, 40))  # AES-128-GCM key and salt
SPI_AB, SPI_BA = 0x1001, 0x2002
WINDOW = 32  # packets (sadb_sa_replay)
STEP = 0.001  # seconds between dataplane steps


def icmp_echo(src: str, dst: str, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, seq) + b"ping"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), seq, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + body  # fmt: skip


def echo_seq(packet: bytes) -> int:
    return int(struct.unpack_from("!H", packet, 26)[0])


class Host:
    """A gateway: its stack, the TUN stand-in and UDP 4500 on the memory network."""

    def __init__(
        self, net: MemoryNetwork, outer: str, name: str, local_net: str, remote_net: str,
        remote: str,
    ) -> None:  # fmt: skip
        self.stack = Stack()
        self.tun = MemoryTun(f"{name}0")
        self.ike: list[tuple[bytes, bytes, int]] = []
        endpoint = net.attach(outer, 4500, name=name)
        self.dp = MemoryDataplane(
            self.stack, self.tun, endpoint, on_ike=lambda *m: self.ike.append(m)
        )
        text = f"""
[policies.net]
local_ts = ["{local_net}"]
remote_ts = ["{remote_net}"]
mode = "tunnel"
local_addrs = ["{outer}"]
remote_addrs = ["{remote}"]
esp_proposals = ["aes128gcm16"]
"""
        for p in load_policy_text(text, "test"):
            self.stack.spd.add(p)

    def pfkey(self, msg: PfkeyMessage) -> PfkeyMessage:
        reply = self.stack.handle_pfkey(msg, 0.0)[0].message
        assert reply.errno == 0, reply
        return reply

    def add(
        self, spi: int, src: str, dst: str, key: bytes, msg_type: int = SadbMsgType.ADD
    ) -> None:
        msg = keyed(msg_type, spi, src, dst, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=key,
                    replay=WINDOW)  # fmt: skip
        sa = SadbSa(spi, WINDOW, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL)
        self.pfkey(PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa, *msg.extensions[1:])))

    def counters(self) -> dict[str, int]:
        return self.dp.path.counters()


class Pair:
    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.a = Host(net, A_OUTER, "alice", A_NET, B_NET, B_OUTER)
        self.b = Host(net, B_OUTER, "bob", B_NET, A_NET, A_OUTER)
        self.now = 0.0

    def keyed(self) -> Pair:
        a, b = self.a, self.b
        a.add(SPI_AB, A_OUTER, B_OUTER, KEY_AB)
        b.add(SPI_AB, A_OUTER, B_OUTER, KEY_AB)
        b.add(SPI_BA, B_OUTER, A_OUTER, KEY_BA)
        a.add(SPI_BA, B_OUTER, A_OUTER, KEY_BA)
        return self

    def step(self) -> None:
        self.now += STEP
        self.a.dp.step(self.now)
        self.b.dp.step(self.now)
        self.net.advance(self.now)

    def settle(self, seconds: float = 2.0) -> None:
        """Step until the network has carried (and the hosts read) all it will."""
        end = self.now + seconds
        while self.now < end:
            self.step()
        self.a.dp.step(self.now)
        self.b.dp.step(self.now)
        assert self.net.in_flight() == 0


def esp_seq(d: MemoryDatagram) -> int:
    """The ESP Sequence Number of a datagram on UDP 4500 (RFC 4303 §2.2)."""
    return int.from_bytes(d.data[4:8], "big")


def test_ping_both_ways_over_the_memory_network() -> None:
    pair = Pair(MemoryNetwork(latency=0.005)).keyed()
    request = icmp_echo(A_HOST, B_HOST, 1)
    pair.a.tun.inject(request)
    pair.settle(0.02)
    assert pair.b.tun.take() == [request]
    reply = icmp_echo(B_HOST, A_HOST, 1)
    pair.b.tun.inject(reply)
    pair.settle(0.02)
    assert pair.a.tun.take() == [reply]
    assert pair.net.counters.delivered == 2
    assert pair.a.counters()["sent"] == pair.b.counters()["delivered"] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_loss_duplication_and_reordering_both_ways(seed: int) -> None:
    net = MemoryNetwork(rng=random.Random(seed), latency=0.002)
    pair = Pair(net).keyed()
    a_to_b = net.impair(A_OUTER, B_OUTER, drop=0.1, duplicate=0.1, reorder=0.15,
                        reorder_depth=3)  # fmt: skip
    b_to_a = net.impair(B_OUTER, A_OUTER, drop=0.05, duplicate=0.2, reorder=0.1,
                        delay=0.001, jitter=0.004)  # fmt: skip
    n = 200
    sent_ab = [icmp_echo(A_HOST, B_HOST, i) for i in range(n)]
    sent_ba = [icmp_echo(B_HOST, A_HOST, i) for i in range(n)]
    for i in range(n):
        # A steady exchange, a few packets per step each way.
        pair.a.tun.inject(sent_ab[i])
        pair.b.tun.inject(sent_ba[i])
        if i % 4 == 3:
            pair.step()
    pair.settle()

    for impairment, sender, receiver, sent in (
        (a_to_b, pair.a, pair.b, sent_ab),
        (b_to_a, pair.b, pair.a, sent_ba),
    ):
        got = receiver.tun.take()
        c = impairment.counters
        counters = receiver.counters()
        assert sender.counters()["sent"] == n == c.sent
        assert c.dropped > 0 and c.duplicated > 0 and c.reordered > 0
        # Lost packets are missing; no packet is delivered twice.
        assert len(got) == len(set(got)) == n - c.dropped
        assert set(got) <= set(sent)
        # Every extra copy met the replay window; none was too old for it.
        assert counters["replay"] == c.duplicated
        assert counters.get("replay_old", 0) == 0
        # Reordered packets were delivered, in the order they arrived.
        seqs = [echo_seq(p) for p in got]
        assert seqs != sorted(seqs)
        assert counters["delivered"] == n - c.dropped
        assert all(counters.get(k, 0) == 0 for k in ("auth", "unknown_spi", "malformed"))


def test_held_esp_is_late_but_inside_the_window() -> None:
    net = MemoryNetwork()
    pair = Pair(net).keyed()
    net.hold(lambda d: d.src[0] == A_OUTER and esp_seq(d) == 1)
    for i in range(5):
        pair.a.tun.inject(icmp_echo(A_HOST, B_HOST, i))
    pair.settle(0.01)
    assert [echo_seq(p) for p in pair.b.tun.take()] == [1, 2, 3, 4]
    assert net.release() == 1
    pair.settle(0.01)
    assert [echo_seq(p) for p in pair.b.tun.take()] == [0]  # RFC 4303 §3.4.3: in the window


def test_held_esp_later_than_the_window_is_dropped() -> None:
    net = MemoryNetwork()
    pair = Pair(net).keyed()
    net.hold(lambda d: esp_seq(d) == 1, limit=1)
    for i in range(WINDOW + 5):
        pair.a.tun.inject(icmp_echo(A_HOST, B_HOST, i))
    pair.settle(0.01)
    net.release()
    pair.settle(0.01)
    assert len(pair.b.tun.take()) == WINDOW + 4
    assert pair.b.counters()["replay_old"] == 1  # left of the window: too late


def test_esp_for_a_larval_sa_waits_for_update() -> None:
    # B has reserved its inbound SPI (GETSPI, the SA is LARVAL); A already has its
    # outbound SA and sends. The ESP crosses the network, is held by B's SADB, and
    # reaches B's host when UPDATE fills the SA in.
    net = MemoryNetwork(latency=0.001)
    pair = Pair(net)
    a, b = pair.a, pair.b
    spi = b.pfkey(getspi(A_OUTER, B_OUTER)).extensions[0].spi  # type: ignore[union-attr]
    a.add(spi, A_OUTER, B_OUTER, KEY_AB)
    packets = [icmp_echo(A_HOST, B_HOST, i) for i in range(3)]
    for p in packets:
        a.tun.inject(p)
    pair.settle(0.01)
    assert b.tun.take() == [] and b.stack.sadb.counters["held"] == 3
    b.add(spi, A_OUTER, B_OUTER, KEY_AB, SadbMsgType.UPDATE)
    assert b.tun.take() == packets


def test_ike_on_4500_reaches_the_key_manager_after_the_esp_it_keyed() -> None:
    # The network makes the IKE message late: ESP for the SA it carries arrives first.
    net = MemoryNetwork()
    pair = Pair(net).keyed()
    net.hold(lambda d: d.data.startswith(NON_ESP_MARKER))
    pair.a.dp.send_ike(b"IKE message", ipaddress.IPv4Address(B_OUTER).packed)
    pair.a.tun.inject(icmp_echo(A_HOST, B_HOST, 7))
    pair.settle(0.01)
    assert len(pair.b.tun.take()) == 1 and pair.b.ike == []
    net.release()
    pair.settle(0.01)
    assert pair.b.ike == [(b"IKE message", ipaddress.IPv4Address(A_OUTER).packed, 4500)]
