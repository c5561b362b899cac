"""Spd.lookup: priority then specificity, actions, directions, and the index against a
brute-force scan of 10,000 random policies; lookups while other threads write."""

from __future__ import annotations

import ipaddress
import random
import threading
from dataclasses import replace

import pytest

from larval.spd import Action, Direction, Policy, Selector, Spd, SpdError, default_priority
from tests.spd.support import LinearScan, brute_force, policy

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
OUT, IN = Direction.OUT, Direction.IN


@pytest.fixture
def spd() -> Spd:
    return Spd()


def test_empty(spd: Spd) -> None:
    assert spd.lookup(OUT, "10.0.0.1", "10.0.0.2") is None
    assert spd.lookup("in", "::1", "::2") is None


def test_bypass_discard_protect(spd: Spd) -> None:
    spd.add(policy("ike", "0.0.0.0/0", "0.0.0.0/0", action=Action.BYPASS, proto=UDP,
                   local_ports=500, priority=1))  # fmt: skip
    spd.add(policy("block", "10.0.0.0/8", "0.0.0.0/0", action=Action.DISCARD))
    spd.add(policy("vpn", "10.0.0.0/8", "192.0.2.0/24"))
    assert spd.lookup(OUT, "10.1.1.1", "192.0.2.5", TCP, 1, 2).name == "vpn"  # type: ignore[union-attr]
    assert spd.lookup(OUT, "10.1.1.1", "8.8.8.8", TCP, 1, 2).name == "block"  # type: ignore[union-attr]
    hit = spd.lookup(OUT, "10.1.1.1", "192.0.2.5", UDP, 500, 500)
    assert hit is not None and hit.action is Action.BYPASS
    assert spd.lookup(OUT, "11.1.1.1", "192.0.2.5") is None


def test_directions_are_separate_and_inbound_swaps(spd: Spd) -> None:
    out = spd.add(policy("web", "10.0.0.0/8", "0.0.0.0/0", proto=TCP, remote_ports=443))
    inb = spd.add(out.mirrored())
    # Outbound: src local, dst remote; inbound: src remote, dst local.
    assert spd.lookup(OUT, "10.0.0.1", "1.1.1.1", TCP, 5555, 443) is out
    assert spd.lookup(IN, "1.1.1.1", "10.0.0.1", TCP, 443, 5555) is inb
    assert spd.lookup(IN, "10.0.0.1", "1.1.1.1", TCP, 5555, 443) is None
    assert out.reqid != inb.reqid


def test_priority_beats_specificity(spd: Spd) -> None:
    narrow = spd.add(policy("narrow", "10.1.2.0/24", "192.0.2.0/24"))
    wide = spd.add(policy("wide", "10.0.0.0/8", "0.0.0.0/0", priority=10))
    assert spd.lookup(OUT, "10.1.2.3", "192.0.2.1") is wide
    spd.remove("wide")
    assert spd.lookup(OUT, "10.1.2.3", "192.0.2.1") is narrow


def test_specificity_order(spd: Spd) -> None:
    # Same explicit priority: longer prefixes, then protocol, then ports, then ICMP type.
    p = 50
    any_ = spd.add(policy("any", "10.0.0.0/8", "0.0.0.0/0", priority=p))
    longer = spd.add(policy("longer", "10.1.0.0/16", "0.0.0.0/0", priority=p))
    proto = spd.add(policy("proto", "10.1.0.0/16", "0.0.0.0/0", proto=TCP, priority=p))
    port = spd.add(policy("port", "10.1.0.0/16", "0.0.0.0/0", proto=TCP, remote_ports=22,
                          priority=p))  # fmt: skip
    icmp = spd.add(policy("icmp", "10.1.0.0/16", "0.0.0.0/0", proto=ICMP, icmp_type=8,
                          priority=p))  # fmt: skip
    icmp_any = spd.add(policy("icmpany", "10.1.0.0/16", "0.0.0.0/0", proto=ICMP, priority=p))
    assert spd.lookup(OUT, "10.2.0.1", "1.1.1.1", TCP, 1, 22) is any_
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1", UDP, 1, 22) is longer
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1", TCP, 1, 23) is proto
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1", TCP, 1, 22) is port
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1", ICMP, icmp_type=8) is icmp
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1", ICMP, icmp_type=0) is icmp_any


def test_default_priority_is_derived_from_specificity() -> None:
    a = policy("a", "10.0.0.0/8", "0.0.0.0/0")
    b = policy("b", "10.0.0.0/16", "0.0.0.0/0")
    c = policy("c", "10.0.0.0/16", "0.0.0.0/0", proto=TCP, remote_ports=80)
    assert a.priority == default_priority(a.selector) == 100_000 - 64 * 8
    assert c.priority < b.priority < a.priority
    # The remote prefix counts as much as the local one.
    d = policy("d", "0.0.0.0/0", "10.0.0.0/16")
    assert d.priority == b.priority


def test_equal_keys_first_added_wins(spd: Spd) -> None:
    first = spd.add(policy("first", "10.0.0.0/8", "0.0.0.0/0", priority=5))
    spd.add(policy("second", "10.0.0.0/8", "0.0.0.0/0", priority=5))
    assert spd.lookup(OUT, "10.0.0.1", "1.2.3.4") is first


def test_ipv6(spd: Spd) -> None:
    site = spd.add(policy("site", "2001:db8:1::/48", "2001:db8:2::/48"))
    host = spd.add(policy("host", "2001:db8:1::1/128", "2001:db8:2::/48", proto=ICMPV6,
                          icmp_type=128))  # fmt: skip
    assert spd.lookup(OUT, "2001:db8:1::1", "2001:db8:2::9", ICMPV6, icmp_type=128) is host
    assert spd.lookup(OUT, "2001:db8:1::1", "2001:db8:2::9", ICMPV6, icmp_type=129) is site
    assert spd.lookup(OUT, ipaddress.ip_address("2001:db8:1::7"), "2001:db8:2::9") is site
    packed = ipaddress.ip_address("2001:db8:1::7").packed
    assert spd.lookup(OUT, packed, ipaddress.ip_address("2001:db8:2::9").packed) is site
    # An IPv4 packet never meets an IPv6 policy.
    assert spd.lookup(OUT, "10.0.0.1", "10.0.0.2") is None


def test_port_ranges(spd: Spd) -> None:
    hi = spd.add(policy("hi", "0.0.0.0/0", "0.0.0.0/0", proto=UDP, local_ports=(1024, 65535)))
    assert spd.lookup(OUT, "1.1.1.1", "2.2.2.2", UDP, 1024, 53) is hi
    assert spd.lookup(OUT, "1.1.1.1", "2.2.2.2", UDP, 1023, 53) is None
    assert spd.lookup(IN, "2.2.2.2", "1.1.1.1", UDP, 53, 2000) is None  # out policy only


def test_remove_flush_policies(spd: Spd) -> None:
    a = spd.add(policy("a", "10.0.0.0/8", "0.0.0.0/0"))
    spd.add(a.mirrored())
    spd.add(policy("b", "10.0.0.0/16", "0.0.0.0/0"))
    assert [p.name for p in spd.policies()] == ["a", "a", "b"]
    assert len(spd) == 3
    assert spd.remove("a") == 2
    assert spd.remove("a") == 0
    assert spd.lookup(OUT, "10.1.0.1", "1.1.1.1") is None
    assert spd.lookup(OUT, "10.0.0.1", "1.1.1.1").name == "b"  # type: ignore[union-attr]
    spd.flush()
    assert spd.policies() == [] and len(spd) == 0
    assert spd.lookup(OUT, "10.0.0.1", "1.1.1.1") is None


def test_reqids_unique_and_duplicates_refused(spd: Spd) -> None:
    a = spd.add(policy("a", "10.0.0.0/8", "0.0.0.0/0"))
    assert a.reqid == 1
    with pytest.raises(SpdError, match=r"policy a already has an out entry for 10\.0\.0\.0/8"):
        spd.add(policy("a", "10.0.0.0/8", "0.0.0.0/0"))
    with pytest.raises(SpdError, match="reqid 1 is already in use"):
        spd.add(replace(policy("c", "10.0.0.0/8", "0.0.0.0/0"), reqid=1))
    # add_all is all or nothing.
    good = policy("d", "10.0.0.0/8", "0.0.0.0/0")
    with pytest.raises(SpdError):
        spd.add_all([good, policy("a", "10.0.0.0/8", "0.0.0.0/0")])
    assert [p.name for p in spd.policies()] == ["a"]


def test_check_inbound() -> None:
    sel = Selector.of("10.0.0.0/24", "192.0.2.0/24", TCP, 0, 80)
    # A decrypted packet from the peer's web server to us.
    assert Spd.check_inbound(sel, "192.0.2.7", "10.0.0.9", TCP, 80, 40000)
    assert not Spd.check_inbound(sel, "192.0.2.7", "10.0.0.9", TCP, 81, 40000)
    assert not Spd.check_inbound(sel, "10.0.0.9", "192.0.2.7", TCP, 40000, 80)
    pol = policy("p", "10.0.0.0/24", "192.0.2.0/24", direction=IN)
    assert Spd().check_inbound(pol, "192.0.2.1", "10.0.0.1", UDP, 1, 2)
    assert not Spd.check_inbound(pol, "198.51.100.1", "10.0.0.1", UDP, 1, 2)


# -- the index against a linear scan ---------------------------------------------------

V4_LENGTHS = [0, 8, 12, 16, 20, 24, 28, 32]
V6_LENGTHS = [0, 32, 48, 56, 64, 128]


def _random_net(rng: random.Random, v6: bool) -> str:
    # Addresses from a small space, so that random packets hit random policies.
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    if v6:
        addr = ipaddress.IPv6Address((0x20010DB8 << 96) | (rng.getrandbits(4) << 80)
                                     | rng.getrandbits(4))  # fmt: skip
        length = rng.choice(V6_LENGTHS)
    else:
        addr = ipaddress.IPv4Address((10 << 24) | (rng.getrandbits(3) << 16) | rng.getrandbits(3))
        length = rng.choice(V4_LENGTHS)
    return str(ipaddress.ip_network(f"{addr}/{length}", strict=False))


def _random_policy(rng: random.Random, i: int) -> Policy:
    v6 = rng.random() < 0.3
    proto = rng.choice([0, 0, TCP, UDP, ICMPV6 if v6 else ICMP])
    kwargs: dict = {}  # type: ignore[type-arg]
    if proto in (TCP, UDP) and rng.random() < 0.5:
        lo = rng.choice([0, 80, 443, 1024])
        kwargs["remote_ports"] = (lo, lo + rng.choice([0, 0, 10, 1000]))
    if proto in (ICMP, ICMPV6) and rng.random() < 0.5:
        kwargs["icmp_type"] = rng.choice([0, 8, 128])
    return policy(
        f"p{i}",
        _random_net(rng, v6),
        _random_net(rng, v6),
        direction=rng.choice([OUT, IN]),
        action=rng.choice(list(Action)),
        proto=proto,
        priority=rng.choice([-1, -1, -1, rng.randrange(0, 200_000)]),
        **kwargs,
    )


def _random_packet(rng: random.Random) -> tuple:  # type: ignore[type-arg]
    v6 = rng.random() < 0.3
    net = _random_net
    src = ipaddress.ip_network(net(rng, v6)).network_address + rng.getrandbits(2)
    dst = ipaddress.ip_network(net(rng, v6)).network_address + rng.getrandbits(2)
    proto = rng.choice([TCP, UDP, ICMPV6 if v6 else ICMP, 47])
    sport = rng.choice([80, 443, 1024, 1030, 40000]) if proto in (TCP, UDP) else 0
    dport = rng.choice([80, 443, 1024, 1030, 2000]) if proto in (TCP, UDP) else 0
    icmp = rng.choice([0, 8, 128]) if proto in (ICMP, ICMPV6) else None
    return rng.choice([OUT, IN]), src, dst, proto, sport, dport, icmp


def test_10000_random_policies_agree_with_linear_scan() -> None:
    rng = random.Random(20081209)
    spd = Spd()
    spd.add_all(_random_policy(rng, i) for i in range(10_000))
    scan = LinearScan(spd)
    hits = 0
    for _ in range(2000):
        packet = _random_packet(rng)
        want = scan(*packet)
        assert spd.lookup(*packet) is want, packet
        hits += want is not None
    assert hits > 600  # the packets do meet policies

    # Remove a third of them; the index still agrees.
    for i in range(0, 10_000, 3):
        assert spd.remove(f"p{i}") == 1
    scan = LinearScan(spd)
    for _ in range(1000):
        packet = _random_packet(rng)
        assert spd.lookup(*packet) is scan(*packet), packet
    # And a few against the plain scan over spd.policies().
    for _ in range(20):
        packet = _random_packet(rng)
        assert spd.lookup(*packet) is brute_force(spd, *packet), packet


def test_lookups_while_writers_add_and_remove() -> None:
    # A fixed policy that must be found whatever the writers do meanwhile.
    spd = Spd()
    anchor = spd.add(policy("anchor", "10.9.9.0/24", "10.8.8.0/24", priority=1))
    rng = random.Random(7)
    churn = [_random_policy(rng, i) for i in range(400)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                for p in churn:
                    spd.add(p)
                for p in churn:
                    spd.remove(p.name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            raise

    threads = [threading.Thread(target=writer) for _ in range(1)]
    for t in threads:
        t.start()
    try:
        for _ in range(20_000):
            assert spd.lookup(OUT, "10.9.9.1", "10.8.8.1", TCP, 1, 2) is anchor
            spd.lookup(*_random_packet(rng))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert spd.policies() == [anchor]
