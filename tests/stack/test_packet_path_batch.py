"""The packet path's batch entries against the per-packet ones: two identical worlds, one
fed packet by packet, the other the same packets as one batch; the datagrams sent, the
packets delivered, every counter and the SADB's held and acquire state must agree, on
mixed batches (two SAs, a LARVAL SA, a forged ICV, a replay, runts, IKE, keepalives).
Every test runs with the batch calls on the Python path and on the compiled helper."""

from __future__ import annotations

import ipaddress
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import NON_ESP_MARKER, EspSa, helper
from larval.esp.ip import IPPROTO_IPV4
from larval.pfkey import EncryptAlg, ExtType, SadbAddress, SadbMsgType
from larval.pfkey.requests import getspi, keyed
from larval.stack.packet_path import Datagram, EspContext
from tests.esp.paths import esp_path
from tests.net.packets import udp_packet
from tests.stack.test_packet_path import (
    A_NET,
    A_OUTER,
    B_NET,
    B_OUTER,
    KEY_AB,
    KEY_BA,
    Host,
    icmp_echo,
)

__all__ = ["esp_path"]

LARVAL_SPI = 0x4004


#: Every test on both ESP paths: the stacks' SAs take the one `esp_path` sets.
pytestmark = pytest.mark.usefixtures("esp_path")


class World:
    """A sends to B's net over two SAs (each for half of it, by inner destination; a
    third part of B's net has none, so its packets wait on an ACQUIRE); B receives on
    0x1001 and 0x3003 and has reserved 0x4004, still LARVAL."""

    def __init__(self) -> None:
        self.a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
        self.b = Host(B_OUTER, B_NET, A_NET, A_OUTER)
        self.ike: list[tuple[bytes, bytes, int]] = []
        self.b.path.on_ike = lambda data, peer, port: self.ike.append((data, peer, port))
        self._inner_sa(self.a, 0x1001, "203.0.113.0/25")
        self._inner_sa(self.a, 0x2002, "203.0.113.128/26")
        self.b.add(0x1001, A_OUTER, B_OUTER, KEY_AB)
        self.b.add(0x3003, A_OUTER, B_OUTER, KEY_BA)
        reply = self.b.pfkey(getspi(A_OUTER, B_OUTER, spi_min=LARVAL_SPI, spi_max=LARVAL_SPI))
        assert reply.extensions[0].spi == LARVAL_SPI  # type: ignore[union-attr]

    @staticmethod
    def _inner_sa(host: Host, spi: int, inner_dst: str) -> None:
        net = ipaddress.ip_network(inner_dst)
        inner = (
            SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("198.51.100.0"), prefixlen=24),
            SadbAddress(ExtType.X_ADDRESS_INNER_DST, net.network_address, prefixlen=net.prefixlen),
        )
        msg = keyed(SadbMsgType.ADD, spi, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=KEY_AB, extra=inner)  # fmt: skip
        host.pfkey(msg)

    def seen_by_sa(self, host: Host) -> tuple[object, ...]:
        """`seen`, with the datagrams sent in order per SA and the packets delivered as a
        multiset: the batch entries group a batch by SA, so packets of different SAs
        may leave in another order than they came (never those of one SA)."""
        wire, got, *rest = self.seen(host)
        assert isinstance(wire, list) and isinstance(got, list)
        return (by_spi(wire), sorted(got), *rest)

    def seen(self, host: Host) -> tuple[object, ...]:
        sadb = host.stack.sadb
        return (
            list(host.wire), list(host.got), host.path.counters(), dict(host.stack.drops),
            sadb.counters.snapshot(),
            sadb.acquire_records,
        )  # fmt: skip


def by_spi(datagrams: list[Datagram]) -> dict[bytes, list[Datagram]]:
    """Datagrams by the SPI they carry, each SA's in the order they were sent."""
    found: dict[bytes, list[Datagram]] = {}
    for d in datagrams:
        found.setdefault(d.payload[:4], []).append(d)
    return found


def outbound_packets() -> list[bytes]:
    def echo(dst: str, seq: int) -> bytes:
        return icmp_echo("198.51.100.1", dst, seq)

    return [
        echo("203.0.113.1", 1), echo("203.0.113.1", 2), echo("203.0.113.1", 3),  # SA 0x1001
        echo("203.0.113.130", 1), echo("203.0.113.130", 2),  # SA 0x2002
        echo("203.0.113.200", 1), echo("203.0.113.200", 2),  # no SA: held on an ACQUIRE
        icmp_echo("198.51.100.1", "192.0.2.99", 1),  # no policy
        icmp_echo("198.51.100.1", "192.0.2.99", 2),
        b"\x45\x00", b"\x45\x00",  # malformed
        echo("203.0.113.1", 4), echo("203.0.113.1", 5),
        echo("203.0.113.2", 1),  # another flow on SA 0x1001
    ]  # fmt: skip


def test_outbound_batch_sends_what_outbound_sends() -> None:
    one, batch = World(), World()
    for packet in outbound_packets():
        one.a.path.outbound(packet, 1.0)
    batch.a.path.outbound_batch(outbound_packets(), 1.0)
    assert batch.seen_by_sa(batch.a) == one.seen_by_sa(one.a)
    counters = one.a.path.counters()
    assert counters["sent"] == 8 and counters["no_policy"] == 2 and counters["malformed"] == 2
    assert one.a.stack.sadb.acquire_records == 1


def test_outbound_batch_with_send_many_sends_the_same_datagrams() -> None:
    world = World()
    many: list[tuple[bytes, int, list[bytes]]] = []
    world.a.path.send_many = lambda dst, port, payloads: many.append((dst, port, payloads))
    world.a.path.outbound_batch(outbound_packets(), 1.0)
    one = World()
    for packet in outbound_packets():
        one.a.path.outbound(packet, 1.0)
    flat = [Datagram(p, dst, port) for dst, port, payloads in many for p in payloads]
    assert not world.a.wire  # each SA's packets go by one `send_many`
    assert by_spi(flat) == by_spi(one.a.wire)
    # SA 0x1001's three flows (3 + 2 + 1 packets) in one call, then SA 0x2002's.
    assert [len(payloads) for _, _, payloads in many] == [6, 2]


def sender(spi: int, key: bytes) -> EspSa:
    return EspSa(spi, EncryptAlg.AES_GCM_16, key)


def inbound_datagrams() -> list[bytes]:
    """ESP for B as UDP/4500 payloads, with IKE and keepalives among them."""
    s1, s3, sl = sender(0x1001, KEY_AB), sender(0x3003, KEY_BA), sender(LARVAL_SPI, KEY_AB)

    def seal(sa: EspSa, seq: int) -> bytes:
        return sa.encrypt(icmp_echo("198.51.100.1", "203.0.113.1", seq), IPPROTO_IPV4)

    run1 = [seal(s1, n) for n in range(1, 7)]
    run3 = [seal(s3, n) for n in range(1, 4)]
    larval = [seal(sl, n) for n in range(1, 3)]
    forged = bytearray(run1[4])
    forged[20] ^= 0x01
    outside = s1.encrypt(icmp_echo("192.0.2.77", "203.0.113.1", 9), IPPROTO_IPV4)
    return [
        run1[0], run1[1], run1[1], run1[2],  # a replay inside a run
        run3[0], run3[1],  # a second SA
        larval[0], larval[1],  # a LARVAL SA: held
        bytes(forged), run1[4],  # a forgery, then the genuine packet
        b"\xff",  # a NAT keepalive
        NON_ESP_MARKER + b"ike message",  # IKE
        b"\x00\x00",  # a runt
        b"\x00\x00\x99\x99" + run1[3][4:], b"\x00\x00\x99\x99" + run1[5][4:],  # unknown SPI
        run1[3][:10], run1[3],  # truncated, then whole
        outside,  # outside SA 0x1001's selectors: the inbound policy check drops it
        run3[2], run1[5],
    ]  # fmt: skip


PEER = ipaddress.ip_address(A_OUTER).packed


def test_inbound_udp_batch_delivers_what_inbound_udp_delivers(esp_path: str) -> None:
    one, batch = World(), World()
    for payload in inbound_datagrams():
        one.b.path.inbound_udp(payload, one.b.outer, PEER, 4500, 1.0)
    batch.b.path.inbound_udp_batch(
        [(p, PEER, 4500) for p in inbound_datagrams()], batch.b.outer, 1.0
    )
    assert batch.seen_by_sa(batch.b) == one.seen_by_sa(one.b)
    sa = batch.b.stack.sadb.lookup_esp(0x1001, batch.b.outer)
    assert sa is not None and isinstance(sa.transform, EspContext)
    assert (sa.transform.esp._batch is not None) == (esp_path == "compiled")
    assert batch.ike == one.ike == [(b"ike message", PEER, 4500)]
    counters = one.b.path.counters()
    assert counters["delivered"] == 9
    assert (counters["replay"], counters["auth"], counters["unknown_spi"]) == (1, 1, 2)
    assert counters["truncated"] == 2 and counters["inbound_policy"] == 1
    assert one.b.stack.sadb.counters["held"] == 2
    # The LARVAL SA matures: its held packets come out the same in both worlds.
    for world in (one, batch):
        world.b.add(LARVAL_SPI, A_OUTER, B_OUTER, KEY_AB, SadbMsgType.UPDATE)
    assert batch.seen_by_sa(batch.b) == one.seen_by_sa(one.b)
    assert one.b.path.counters()["delivered"] == 11


def test_inbound_udp_batch_with_deliver_many_delivers_the_same_packets() -> None:
    """Runs of a tunnel-mode SA are delivered where they lie in the decrypted buffer;
    read out of it, they are the packets, drops and counters of the per-packet path."""
    world = World()
    runs: list[int] = []

    def deliver_many(buf: bytes, starts: list[int], lengths: list[int]) -> None:
        runs.append(len(starts))
        world.b.got.extend(buf[s : s + n] for s, n in zip(starts, lengths, strict=True))

    world.b.path.deliver_many = deliver_many
    world.b.path.inbound_udp_batch(
        [(p, PEER, 4500) for p in inbound_datagrams()], world.b.outer, 1.0
    )
    one = World()
    for payload in inbound_datagrams():
        one.b.path.inbound_udp(payload, one.b.outer, PEER, 4500, 1.0)
    assert world.seen_by_sa(world.b) == one.seen_by_sa(one.b)
    # Calls, one per SA with two packets or more in a stretch between IKE and keepalives,
    # each SA's packets gathered: 0x1001's first six (one a replay, one forged, so four
    # delivered), 0x3003's two, then 0x1001's last four (one truncated, one outside its
    # selectors and dropped by the policy check). 0x3003's last packet, alone in its
    # stretch, takes `deliver`.
    assert runs == [4, 2, 2]
    for w in (one, world):
        w.b.add(LARVAL_SPI, A_OUTER, B_OUTER, KEY_AB, SadbMsgType.UPDATE)
    assert world.seen_by_sa(world.b) == one.seen_by_sa(one.b)


def test_a_run_of_flows_gets_the_verdicts_of_the_per_packet_path() -> None:
    """One SA's run of UDP packets of one flow, with packets of other flows between
    them, some outside the SA's selectors: each gets the verdict it gets alone."""
    s1 = sender(0x1001, KEY_AB)
    sources = ["198.51.100.1", "198.51.100.1", "192.0.2.77", "198.51.100.1", "198.51.100.2",
               "198.51.100.1", "192.0.2.77", "192.0.2.77", "198.51.100.1"]  # fmt: skip
    esp = [
        s1.encrypt(udp_packet(src, "203.0.113.1", 5000, 6000, bytes([n]) * 100), IPPROTO_IPV4)
        for n, src in enumerate(sources)
    ]
    one, world = World(), World()

    def deliver_many(buf: bytes, starts: list[int], lengths: list[int]) -> None:
        world.b.got.extend(buf[s : s + n] for s, n in zip(starts, lengths, strict=True))

    world.b.path.deliver_many = deliver_many
    for packet in esp:
        one.b.path.inbound(packet, one.b.outer, 1.0)
    world.b.path.inbound_batch(esp, world.b.outer, 1.0)
    assert world.seen(world.b) == one.seen(one.b)
    assert len(one.b.got) == 6 and one.b.path.counters()["inbound_policy"] == 3


def test_inbound_batch_of_plain_esp_matches_inbound() -> None:
    one, batch = World(), World()
    esp = [p for p in inbound_datagrams() if len(p) >= 8 and p[:4] != NON_ESP_MARKER]
    for packet in esp:
        one.b.path.inbound(packet, one.b.outer, 1.0)
    batch.b.path.inbound_batch(esp, batch.b.outer, 1.0)
    assert batch.seen_by_sa(batch.b) == one.seen_by_sa(one.b)
    assert one.b.path.counters()["delivered"] == 9


# -- many SAs in one batch ---------------------------------------------------------------

#: SAs of the many-SA worlds: the k-th carries B_NET's address .(k + 1), by its inner
#: destination selector (/32), with its own key.
MANY = 12


def _many_key(k: int) -> bytes:
    return bytes([k + 1]) * 20


def _many_inner(k: int) -> tuple[SadbAddress, SadbAddress]:
    return (
        SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("198.51.100.0"), prefixlen=24),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, _many_dst(k), prefixlen=32),
    )


def _many_dst(k: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address("203.0.113.1") + k


class ManyWorld:
    """A sends to MANY SAs' destinations (SA k: SPI 0x5000 + k); those of `missing` have
    no SA (their packets wait on an ACQUIRE). B has the same SAs inbound, but those of
    `larval` only reserved (GETSPI: packets for them are held) and those of `gone`
    deleted (their packets are of an unknown SPI)."""

    def __init__(self, missing: set[int], larval: set[int], gone: set[int]) -> None:
        self.a = Host(A_OUTER, A_NET, B_NET, B_OUTER)
        self.b = Host(B_OUTER, B_NET, A_NET, A_OUTER)
        for k in range(MANY):
            spi = 0x5000 + k
            add = keyed(SadbMsgType.ADD, spi, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                        encrypt_key=_many_key(k), extra=_many_inner(k))  # fmt: skip
            if k not in missing:
                self.a.pfkey(add)
            if k in larval:
                self.b.pfkey(getspi(A_OUTER, B_OUTER, spi_min=spi, spi_max=spi))
            elif k not in gone:
                self.b.pfkey(add)


def _many_packet(k: int, n: int) -> bytes:
    """Packet `n` to SA k's destination: its bytes say which it is."""
    return icmp_echo("198.51.100.1", str(_many_dst(k)), n)


def _many_packets(order: list[int]) -> list[bytes]:
    """A packet to SA k's destination for each k of `order`, each SA's numbered 1, 2, ..."""
    seq: dict[int, int] = {}
    packets = []
    for k in order:
        seq[k] = seq.get(k, 0) + 1
        packets.append(_many_packet(k, seq[k]))
    return packets


def _by_sa(packets: list[bytes]) -> dict[bytes, list[bytes]]:
    """Cleartext packets by inner destination (so by SA), each SA's in order."""
    found: dict[bytes, list[bytes]] = {}
    for p in packets:
        found.setdefault(p[16:20], []).append(p)
    return found


def _inbound_alike(one: ManyWorld, batch: ManyWorld, esp: list[bytes]) -> None:
    """`esp` into B of `one` packet by packet and into B of `batch` as one batch: the same
    packets out of each SA, in order, and the same counters."""
    for packet in esp:
        one.b.path.inbound(packet, one.b.outer, 1.0)
    batch.b.path.inbound_batch(esp, batch.b.outer, 1.0)
    assert _by_sa(batch.b.got) == _by_sa(one.b.got)
    assert batch.b.path.counters() == one.b.path.counters()
    assert batch.b.stack.sadb.counters.snapshot() == one.b.stack.sadb.counters.snapshot()


_sa_sets = st.sets(st.integers(0, MANY - 1), max_size=4)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, MANY - 1), min_size=1, max_size=60),
    _sa_sets, _sa_sets, _sa_sets,
    st.lists(st.integers(0, 59), max_size=6),
)  # fmt: skip
def test_a_batch_over_many_sas_matches_packet_by_packet(
    order: list[int], missing: set[int], larval: set[int], gone: set[int], replays: list[int]
) -> None:
    """Outbound: packets to many SAs (some with none) interleaved; inbound: what A sent,
    with some datagrams repeated (replays), to SAs some LARVAL, some deleted. The batch
    entries give what the per-packet ones give: every datagram and cleartext packet,
    in the same order within each SA, and every counter, held packet and ACQUIRE."""
    packets = _many_packets(order)
    one, batch = ManyWorld(missing, larval, gone), ManyWorld(missing, larval, gone)
    for packet in packets:
        one.a.path.outbound(packet, 1.0)
    batch.a.path.outbound_batch(packets, 1.0)
    for w in (one, batch):
        # One ACQUIRE for the pair of gateways, however many destinations wait on it.
        assert w.a.stack.sadb.acquire_records == int(bool(missing & set(order)))
    assert by_spi(batch.a.wire) == by_spi(one.a.wire)
    assert batch.a.path.counters() == one.a.path.counters()
    # Inbound: the datagrams A sent packet by packet, some again later (replays).
    esp = [d.payload for d in one.a.wire]
    esp += [esp[i] for i in replays if i < len(esp)]
    _inbound_alike(one, batch, esp)
    counters = one.b.path.counters()
    sent_to = {k for k in order if k not in missing}
    assert counters["unknown_spi"] == sum(
        1 for p in esp if p[:4] in _spis((gone - larval) & sent_to)
    )
    # The LARVAL SAs mature: what they held comes out the same, in order, in both.
    for world in (one, batch):
        for k in larval:
            world.b.pfkey(keyed(SadbMsgType.UPDATE, 0x5000 + k, A_OUTER, B_OUTER,
                                encrypt=EncryptAlg.AES_GCM_16, encrypt_key=_many_key(k),
                                extra=_many_inner(k)))  # fmt: skip
    assert _by_sa(batch.b.got) == _by_sa(one.b.got)
    assert batch.b.path.counters() == one.b.path.counters()


def _spis(ks: set[int]) -> set[bytes]:
    return {(0x5000 + k).to_bytes(4, "big") for k in ks}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, MANY - 1), min_size=1, max_size=60),
    _sa_sets, _sa_sets, _sa_sets,
)  # fmt: skip
def test_many_sas_through_send_many_and_deliver_many_match_packet_by_packet(
    order: list[int], missing: set[int], larval: set[int], gone: set[int]
) -> None:
    """As above, with the sinks the dataplane gives: the single packets of many SAs
    leave in one `send_many` per peer and arrive in one `deliver_many` per batch, and
    are the datagrams, packets and counters of the per-packet path."""
    packets = _many_packets(order)
    one, batch = ManyWorld(missing, larval, gone), ManyWorld(missing, larval, gone)
    calls: list[int] = []

    def send_many(dst: bytes, port: int, payloads: list[bytes]) -> None:
        calls.append(len(payloads))
        batch.a.wire.extend(Datagram(p, dst, port) for p in payloads)

    def deliver_many(buf: bytes, starts: list[int], lengths: list[int]) -> None:
        calls.append(len(starts))
        batch.b.got.extend(buf[s : s + n] for s, n in zip(starts, lengths, strict=True))

    batch.a.path.send_many = send_many
    batch.b.path.deliver_many = deliver_many
    for packet in packets:
        one.a.path.outbound(packet, 1.0)
    batch.a.path.outbound_batch(packets, 1.0)
    assert by_spi(batch.a.wire) == by_spi(one.a.wire)
    assert batch.a.path.counters() == one.a.path.counters()
    assert batch.a.stack.sadb.counters.snapshot() == one.a.stack.sadb.counters.snapshot()
    if os.environ.get(helper.HELPER_ENV) == "compiled":
        # Every datagram A sealed went by `send_many`: one call per SA of two packets
        # or more, and one for all the SAs of one packet (one peer); a lone single
        # packet takes the per-packet path and `send`.
        with_sa = [k for k in order if k not in missing]
        sizes = [with_sa.count(k) for k in set(with_sa)]
        singles = sizes.count(1)
        assert sorted(calls) == sorted([n for n in sizes if n > 1] + [singles] * (singles > 1))
    calls.clear()
    _inbound_alike(one, batch, [d.payload for d in one.a.wire])
    # Each SA counted the bytes and packets it carried, both ways, as packet by packet,
    # with the same use times and the same next byte-limit notice.
    for host in ("a", "b"):
        counted = []
        for w in (one, batch):
            end = getattr(w, host)
            sas = [end.stack.sadb.lookup_inbound(0x5000 + k, w.b.outer) for k in range(MANY)]
            counted.append(
                [
                    (sa.bytes, sa.packets, sa.usetime, sa.lastuse, sa.notice_at)
                    if sa is not None
                    else None
                    for sa in sas
                ]
            )
        assert counted[0] == counted[1]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, MANY - 1), min_size=1, max_size=MANY, unique=True),
    st.lists(st.sampled_from([4500, 4501, 4502]), min_size=MANY, max_size=MANY),
)
def test_single_packets_of_many_sas_leave_by_their_peer(order: list[int], ports: list[int]) -> None:
    """The single packets of many SAs whose peers differ (here by UDP port, set on each
    SA's context after its first packet): each datagram goes to its SA's peer, as packet
    by packet, and each peer's datagrams leave in one `send_many` call."""
    one, batch = ManyWorld(set(), set(), set()), ManyWorld(set(), set(), set())
    for w in (one, batch):
        for k in range(MANY):
            w.a.path.outbound(_many_packet(k, 1), 1.0)  # each SA's context made
            sa = w.a.stack.sadb.lookup_inbound(0x5000 + k, w.b.outer)
            assert sa is not None and isinstance(sa.transform, EspContext)
            sa.transform.port = ports[k]
        w.a.wire.clear()
    calls: list[tuple[bytes, int, int]] = []

    def send_many(dst: bytes, port: int, payloads: list[bytes]) -> None:
        calls.append((dst, port, len(payloads)))
        batch.a.wire.extend(Datagram(p, dst, port) for p in payloads)

    batch.a.path.send_many = send_many
    packets = [_many_packet(k, 2) for k in order]
    for packet in packets:
        one.a.path.outbound(packet, 2.0)
    batch.a.path.outbound_batch(packets, 2.0)
    assert by_spi(batch.a.wire) == by_spi(one.a.wire)
    assert sorted((d.payload[:4], d.port) for d in one.a.wire) == sorted(
        ((0x5000 + k).to_bytes(4, "big"), ports[k]) for k in order
    )
    assert batch.a.path.counters() == one.a.path.counters()
    if os.environ.get(helper.HELPER_ENV) == "compiled" and len(order) > 1:
        used = [ports[k] for k in order]
        assert sorted(port for _, port, _ in calls) == sorted(set(used))
        assert sorted(n for _, _, n in calls) == sorted(used.count(p) for p in set(used))
