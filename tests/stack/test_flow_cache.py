"""`FlowCache` against `Spd.lookup`: whatever policies come and go (with ports and
without, of either direction), a remembered answer, by flow or by protocol and
addresses, is the one the SPD gives for the packet."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.spd import Action, Direction, Policy, Spd
from larval.spd.selector import Selector
from larval.stack.flow import parse_flow
from larval.stack.flow_cache import FlowCache

HOSTS = ("198.51.100.1", "198.51.100.2", "203.0.113.1", "203.0.113.200")
PORTS = (5001, 5002, 40000)


def packet(proto: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    """An IPv4 TCP or UDP packet with these addresses and ports."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, proto, 0,
        ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
    )  # fmt: skip
    return header + struct.pack("!HH", sport, dport) + bytes(16)


#: Policies a step may add or remove: broad ones, and narrower ones with a protocol,
#: a port range or both, of each direction, some of higher priority than the broad.
POLICIES = {
    "broad-out": (Direction.OUT, Selector.of("198.51.100.0/24", "203.0.113.0/24"), 0),
    "broad-in": (Direction.IN, Selector.of("203.0.113.0/24", "198.51.100.0/24"), 0),
    "udp-out": (Direction.OUT, Selector.of("198.51.100.0/24", "203.0.113.0/25", 17), 0),
    "port-out": (
        Direction.OUT, Selector.of("198.51.100.0/24", "203.0.113.0/24", 17, remote_ports=5002), 1,
    ),
    "sport-out": (
        Direction.OUT, Selector.of("198.51.100.1/32", "203.0.113.0/24", 6,
                                   local_ports=(40000, 40010)), 1,
    ),
    "port-in": (
        Direction.IN, Selector.of("203.0.113.0/24", "198.51.100.0/24", 17, local_ports=5001), 1,
    ),
}  # fmt: skip


def policy(name: str) -> Policy:
    direction, selector, priority = POLICIES[name]
    action = Action.DISCARD if priority else Action.BYPASS
    return Policy(name, direction, selector, action=action, priority=priority or 1000)


#: Flows mostly between the same few hosts, on other ports: what the entries by
#: protocol and addresses answer.
_packets = st.lists(
    st.tuples(st.sampled_from([6, 17]), st.sampled_from(HOSTS[::2]), st.sampled_from(HOSTS[1:3]),
              st.sampled_from(PORTS), st.sampled_from(PORTS)),
    min_size=1, max_size=8,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, *sorted(POLICIES)]), _packets), max_size=20))
def test_remembered_policies_are_what_the_spd_finds(
    steps: list[tuple[str | None, list[tuple[int, str, str, int, int]]]],
) -> None:
    spd = Spd()
    caches = {d: FlowCache(spd, d) for d in Direction}
    present: set[str] = set()
    for name, flows in steps:
        # Toggle the policy (None: no change), then ask about the flows, each twice.
        if name is None:
            pass
        elif name in present:
            spd.remove(name)
            present.discard(name)
        else:
            spd.add(policy(name))
            present.add(name)
        for flow in flows:
            data = packet(*flow)
            parsed = parse_flow(data)
            for direction, cache in caches.items():
                fresh = spd.lookup(direction, parsed.src, parsed.dst, parsed.proto,
                                   parsed.sport, parsed.dport)  # fmt: skip
                assert cache.lookup(data) == fresh, (direction, flow, present)
                assert cache.lookup(data) == fresh, (direction, flow, present)


def test_a_new_port_between_known_hosts_is_answered_without_the_spd() -> None:
    spd = Spd()
    spd.add(policy("broad-out"))
    cache = FlowCache(spd, Direction.OUT)
    assert cache.lookup(packet(17, HOSTS[0], HOSTS[2], 40000, 5001)) is not None
    asked = []
    lookup = spd.lookup
    spd.lookup = lambda *a: asked.append(a) or lookup(*a)  # type: ignore[method-assign]
    found = cache.lookup(packet(17, HOSTS[0], HOSTS[2], 40001, 5001))
    assert found is not None and found.name == "broad-out" and asked == []
    # A policy with ports: the next new port is looked up.
    spd.add(policy("port-out"))
    found = cache.lookup(packet(17, HOSTS[0], HOSTS[2], 40002, 5002))
    assert found is not None and found.name == "port-out" and len(asked) == 1
    assert cache.lookup(packet(17, HOSTS[0], HOSTS[2], 40003, 5001)) == lookup(
        Direction.OUT, HOSTS[0], HOSTS[2], 17, 40003, 5001
    )
    assert len(asked) == 2
