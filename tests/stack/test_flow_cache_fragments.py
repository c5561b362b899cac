"""`FlowCache` and `Stack.outbound` remember IPv4 fragments' answers (`flow_key`): a first
fragment as the whole packet it starts, a later one by protocol and addresses. Whatever
the packets and the policies, the remembered answer is the one an SPD lookup of the
packet's `parse_flow` gives, asked before and after a policy change."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.spd import Direction, Spd, load_policy_text
from larval.stack.flow import parse_flow
from larval.stack.flow_cache import FlowCache, flow_key
from larval.stack.stack import Verdict
from tests.stack.test_packet_path import A_NET, A_OUTER, B_NET, B_OUTER, policy

#: Policies with protocol and port selectors, so that ports (or their absence) matter.
POLICIES = """
[policies.web]
local_ts = ["198.51.100.0/24[tcp/80]"]
remote_ts = ["203.0.113.0/25"]
action = "discard"

[policies.dns]
local_ts = ["198.51.100.0/24[udp/53]"]
remote_ts = ["203.0.113.0/24"]
action = "bypass"

[policies.icmp]
local_ts = ["198.51.100.0/24[icmp]"]
remote_ts = ["203.0.113.128/25"]
action = "discard"
"""

SOURCES = ("198.51.100.1", "198.51.100.7")
DESTINATIONS = ("203.0.113.1", "203.0.113.200", "192.0.2.9")


def ipv4(src: str, dst: str, proto: int, flags_offset: int, body: bytes) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, flags_offset, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + body  # fmt: skip


packets = st.builds(
    ipv4,
    st.sampled_from(SOURCES),
    st.sampled_from(DESTINATIONS),
    st.sampled_from((1, 6, 17, 47)),
    # Whole (DF or nothing), a first fragment (MF), a middle one, a last one.
    st.sampled_from((0x4000, 0, 0x2000, 0x2000 | 175, 175, 1)),
    st.binary(min_size=0, max_size=12).map(lambda b: b[:2] + b"\x00\x50" + b[4:])
    | st.sampled_from((b"\x9c\x40\x00\x35data", b"\x08\x00\x00\x00ping")),
)


def fresh(spd: Spd, packet: bytes) -> object:
    flow = parse_flow(packet)
    return spd.lookup(
        Direction.OUT, flow.src, flow.dst, flow.proto, flow.sport, flow.dport, flow.icmp_type
    )


def test_fragment_keys_say_what_parse_flow_reads() -> None:
    body = b"\x9c\x40\x00\x35" + b"x" * 8
    whole = ipv4(*SOURCES[:1], DESTINATIONS[0], 17, 0x4000, body)
    first = ipv4(*SOURCES[:1], DESTINATIONS[0], 17, 0x2000, body)
    later = ipv4(*SOURCES[:1], DESTINATIONS[0], 17, 175, b"rest of it")
    # The first fragment has the ports: the whole packet's key.
    assert flow_key(first) == flow_key(whole) == whole[9:10] + whole[12:24]
    # A later one has none: protocol and addresses, a key no packet with ports has.
    assert flow_key(later) == later[9:10] + later[12:20]
    assert len(flow_key(later) or b"") == 9 and len(flow_key(whole) or b"") == 13
    # A later fragment of any protocol carries the same three fields.
    assert flow_key(ipv4(SOURCES[0], DESTINATIONS[0], 47, 1, b"")) is not None
    # A first fragment of a protocol without ports, and runts, are not keyed.
    assert flow_key(ipv4(SOURCES[0], DESTINATIONS[0], 47, 0x2000, b"abcd")) is None
    assert flow_key(later[:19]) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, min_size=1, max_size=30), st.integers(0, 29))
def test_flow_cache_answers_fragments_as_the_spd_does(batch: list[bytes], change: int) -> None:
    spd = Spd()
    for p in load_policy_text(POLICIES, "test"):
        spd.add(p)
    cache = FlowCache(spd, Direction.OUT)
    for i, packet in enumerate(batch + batch):
        if i == change:
            # A policy change: nothing remembered before it may answer after it.
            for p in load_policy_text(policy(A_NET, B_NET, A_OUTER, B_OUTER), "test"):
                spd.add(p)
        assert cache.lookup(packet) is fresh(spd, packet)


def test_stack_outbound_remembers_a_fragmented_datagrams_sa() -> None:
    from tests.stack.test_outbound_sa_cache import World

    world = World()
    world.add(0x1001, None, 0, 0, update=False, fast=False)
    src, dst = "198.51.100.1", "203.0.113.1"
    first = ipv4(src, dst, 17, 0x2000, b"\x9c\x40\x13\x89" + b"x" * 100)
    later = ipv4(src, dst, 17, 14, b"y" * 30)
    stack = world.stack
    answers = [stack.outbound(p, 1.0) for p in (first, later, first, later)]
    assert all(a.verdict is Verdict.PROTECT for a in answers)
    assert len({id(a.sa) for a in answers}) == 1
    assert flow_key(later) in stack._protected and flow_key(first) in stack._protected
    # Deleted, the SA is not answered from memory any more.
    world.delete(0x1001)
    assert stack.outbound(later, 2.0).verdict is not Verdict.PROTECT
