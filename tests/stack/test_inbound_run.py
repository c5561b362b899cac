"""`inbound_udp_run` (the datagrams of a wake-up's receives back to back in one buffer, as
the dataplane gathers UDP GRO batches) against `inbound_udp_batch` (the same datagrams as
a list): two identical worlds, the same batches; the packets delivered, every counter,
the held and acquire state, IKE handed on and each SA's replay window must agree. The
batches: one SA's run with replays, forgeries, runts and a short last datagram (the run
decrypted where it lies), and batches with keepalives, IKE behind the non-ESP marker,
runts, other and unknown SPIs and a LARVAL SA (copied out, the list entry's path). On the
Python path and on the compiled helper (`esp_path`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import NON_ESP_MARKER, EspSa
from larval.esp.ip import IPPROTO_IPV4
from larval.esp.run import EspRun, one_spi
from larval.pfkey import SadbMsgType
from larval.stack.packet_path import EspContext, inbound_udp_run
from tests.esp.paths import esp_path
from tests.net.packets import udp_packet
from tests.stack.test_packet_path import A_OUTER, B_OUTER, KEY_AB, KEY_BA, icmp_echo
from tests.stack.test_packet_path_batch import LARVAL_SPI, PEER, World, inbound_datagrams, sender

__all__ = ["esp_path"]

#: Every test on both ESP paths: the stacks' SAs take the one `esp_path` sets.
pytestmark = pytest.mark.usefixtures("esp_path")

OTHER_PEER = bytes([192, 0, 2, 77])


def with_deliver_many(world: World) -> list[int]:
    """`deliver_many` on B, its packets read out into `got`; the size of each call."""
    calls: list[int] = []

    def deliver_many(buf: bytes, starts: list[int], lengths: list[int]) -> None:
        calls.append(len(starts))
        world.b.got.extend(bytes(buf[s : s + n]) for s, n in zip(starts, lengths, strict=True))

    world.b.path.deliver_many = deliver_many
    return calls


def windows(world: World) -> dict[int, tuple[int, int]]:
    found = {}
    for spi in (0x1001, 0x3003, LARVAL_SPI):
        sa = world.b.stack.sadb.lookup_esp(spi, world.b.outer)
        if sa is not None and isinstance(sa.transform, EspContext):
            replay = sa.transform.esp.replay
            found[spi] = (replay.top, replay.bitmap)
    return found


def both(
    datagrams: list[bytes], counts: list[int], peers: list[tuple[bytes, int]] | None = None
) -> tuple[World, World, list[int]]:
    """The list world and the run world after `datagrams`, received as `counts`
    datagrams per receive (from `peers`, one per receive; A's port 4500 if None)."""
    peers = peers or [(PEER, 4500)] * len(counts)
    assert sum(counts) == len(datagrams) and len(peers) == len(counts)
    listed, joined = World(), World()
    with_deliver_many(listed)
    calls = with_deliver_many(joined)
    items = []
    k = 0
    for count, (peer, port) in zip(counts, peers, strict=True):
        items.extend((d, peer, port) for d in datagrams[k : k + count])
        k += count
    listed.b.path.inbound_udp_batch(items, listed.b.outer, 1.0)
    run = EspRun(memoryview(bytearray(b"".join(datagrams))), [len(d) for d in datagrams])
    senders = [(c, peer, port) for c, (peer, port) in zip(counts, peers, strict=True)]
    inbound_udp_run(joined.b.path, run, senders, joined.b.outer, 1.0)
    assert joined.seen_by_sa(joined.b) == listed.seen_by_sa(listed.b)
    assert joined.ike == listed.ike
    assert windows(joined) == windows(listed)
    # The same drops, by name, and the same SADB counters (held, released).
    assert joined.b.path.counters() == listed.b.path.counters()
    assert joined.b.stack.sadb.counters.snapshot() == listed.b.stack.sadb.counters.snapshot()
    return listed, joined, calls


def run_of_one_sa() -> list[bytes]:
    """SA 0x1001's datagrams: in order, a replay, a forgery, a runt of its SPI, a packet
    outside its selectors, a reordered one, and a shorter last datagram."""
    s1 = sender(0x1001, KEY_AB)
    big = [
        s1.encrypt(udp_packet("198.51.100.1", "203.0.113.1", 5000, 6000, bytes([n]) * 1372),
                   IPPROTO_IPV4)
        for n in range(8)
    ]  # fmt: skip
    outside = s1.encrypt(
        udp_packet("192.0.2.77", "203.0.113.1", 5000, 6000, b"o" * 1372), IPPROTO_IPV4
    )
    short = s1.encrypt(icmp_echo("198.51.100.1", "203.0.113.1", 9), IPPROTO_IPV4)
    forged = bytearray(big[5])
    forged[40] ^= 0x80
    return [big[0], big[1], big[1], big[3], bytes(forged), big[5], big[2], big[5][:12],
            outside, big[6], big[4], short]  # fmt: skip


def test_one_sas_run_is_decrypted_where_it_lies_with_the_list_entrys_outcome() -> None:
    datagrams = run_of_one_sa()
    listed, _, calls = both(datagrams, [3, 1, 5, 3])
    # One call for the whole run, as the list entry makes (`_open_tunnel_batch`).
    assert calls == [8]
    counters = listed.b.path.counters()
    assert counters["delivered"] == 8
    assert (counters["replay"], counters["auth"], counters["truncated"]) == (1, 1, 1)
    assert counters["inbound_policy"] == 1
    # Every datagram is ESP of SA 0x1001: the run goes to the decryption as it lies.
    assert one_spi(EspRun(b"".join(datagrams), [len(d) for d in datagrams])) == 0x1001


def test_the_run_path_takes_the_buffer_and_not_the_list_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    calls = with_deliver_many(world)
    datagrams = run_of_one_sa()
    monkeypatch.setattr(world.b.path, "inbound_udp_batch", None)  # would fail if called
    run = EspRun(bytearray(b"".join(datagrams)), [len(d) for d in datagrams])
    inbound_udp_run(world.b.path, run, [(len(datagrams), PEER, 4500)], world.b.outer, 1.0)
    assert calls == [8] and world.b.path.counters()["delivered"] == 8


@pytest.mark.parametrize(
    ("what", "tail"),
    [
        ("a NAT keepalive last", [b"\xff"]),
        ("IKE behind the non-ESP marker", [NON_ESP_MARKER + b"ike message, long enough"]),
        ("a runt", [b"\x00\x00\x10"]),
        ("another SA's packet", ["3003"]),
        ("an unknown SPI", [b"\x00\x00\x99\x99" + b"\x00" * 60]),
        ("a LARVAL SA's packet", ["larval"]),
    ],
)
def test_a_run_with_anything_else_takes_the_list_entrys_path(what: str, tail: list[object]) -> None:
    s3, sl = sender(0x3003, KEY_BA), sender(LARVAL_SPI, KEY_AB)
    extra = []
    for item in tail:
        if item == "3003":
            extra.append(s3.encrypt(icmp_echo("198.51.100.1", "203.0.113.1", 1), IPPROTO_IPV4))
        elif item == "larval":
            extra.append(sl.encrypt(icmp_echo("198.51.100.1", "203.0.113.1", 1), IPPROTO_IPV4))
        else:
            assert isinstance(item, bytes)
            extra.append(item)
    datagrams = run_of_one_sa()
    datagrams = datagrams[:4] + extra + datagrams[4:]
    listed, _, _ = both(datagrams, [4, len(extra), len(datagrams) - 4 - len(extra)])
    assert listed.b.path.counters()["delivered"] >= 5, what


def test_the_mixed_batch_from_two_senders() -> None:
    datagrams = inbound_datagrams()
    counts = [2, 2, 4, 2, 1, 1, 1, 2, 2, 1, 2]
    peers = [(PEER, 4500), (OTHER_PEER, 4500)] * 5 + [(PEER, 4500)]
    listed, joined, _ = both(datagrams, counts, peers)
    # IKE goes on with the sender of its own receive.
    assert listed.ike == [(b"ike message", OTHER_PEER, 4500)]
    assert listed.b.stack.sadb.counters["held"] == 2
    # The LARVAL SA matures: its held packets come out the same in both worlds.
    for world in (listed, joined):
        world.b.add(LARVAL_SPI, A_OUTER, B_OUTER, KEY_AB, SadbMsgType.UPDATE)
    assert joined.seen_by_sa(joined.b) == listed.seen_by_sa(listed.b)
    assert listed.b.path.counters()["delivered"] == 11


POOL_SIZE = 10


def pool() -> list[bytes]:
    """Datagrams a batch is drawn from: SA 0x1001's (sequence numbers 1 to 10, so that a
    draw may repeat or reorder them), 0x3003's, the LARVAL SA's, and the odd ones."""
    s1, s3, sl = sender(0x1001, KEY_AB), sender(0x3003, KEY_BA), sender(LARVAL_SPI, KEY_AB)

    def seal(sa: EspSa, n: int) -> bytes:
        return sa.encrypt(icmp_echo("198.51.100.1", "203.0.113.1", n), IPPROTO_IPV4)

    ones = [seal(s1, n) for n in range(1, POOL_SIZE + 1)]
    forged = bytearray(ones[2])
    forged[30] ^= 1
    odd = [b"\xff", NON_ESP_MARKER + b"ike", b"\x00", b"\x00\x00\x99\x99" + ones[1][4:]]
    return [*ones, seal(s3, 1), seal(s3, 2), seal(sl, 1), bytes(forged), ones[0][:9], *odd]


POOL = pool()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, POOL_SIZE - 1), st.integers(0, len(POOL) - 1)),
        min_size=1,
        max_size=24,
    ),
    st.lists(st.integers(1, 6), min_size=24, max_size=24),
)
def test_any_batch_gives_what_the_list_entry_gives(picks: list[int], sizes: list[int]) -> None:
    datagrams = [POOL[i] for i in picks]
    counts: list[int] = []
    left = len(datagrams)
    for size in sizes:
        if not left:
            break
        counts.append(min(size, left))
        left -= counts[-1]
    both(datagrams, counts)
