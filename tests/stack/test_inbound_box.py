"""The inbound policy check with the verdict an SA's context keeps for its box (its
first pair of inner selectors), against the check without it and against a reference
written here from RFC 4301 §5.2 step 4 with `Spd.lookup` and `ipaddress`.

Random SPDs (policies with and without protocols and ports, overlapping, of several
priorities and actions, tunnels to this SA's peer, another peer or any peer, transport
mode), random SAs (inner selectors of either family, one side or none named, a second
pair) and packets inside and outside the boxes (IPv4 and IPv6, fragments, options,
IPv6 extension headers, truncated ones), with policies added and removed and the SAs'
inner selectors changed between packets."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import ExtType, SadbAddress, SaState
from larval.sadb import SecurityAssociation
from larval.sadb.inner import inner_prefixlen
from larval.spd import Action, Direction, Policy, Spd
from larval.stack import Stack
from larval.stack.flow import PacketError, parse_flow
from larval.stack.flow_cache import FlowCache
from larval.stack.packet_path import EspContext, PacketPath
from tests.spd.support import policy

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
GATEWAY, PEER, OTHER = "192.0.2.2", "192.0.2.1", "198.51.100.9"
TUNNELS = {"peer": (GATEWAY, PEER), "other": (GATEWAY, OTHER), "any": (GATEWAY, "%any")}

ADDRS = {
    4: ("10.1.0.1", "10.1.0.2", "10.1.3.7", "10.2.0.1", "10.2.0.9", "192.0.2.77"),
    6: ("2001:db8::1", "2001:db8::2", "2001:db8:1::7", "fd00::1"),
}
#: Policies' prefixes mostly wide, SAs' mostly narrow: boxes often lie inside policies.
LENGTHS = {4: (0, 0, 8, 8, 16, 24, 31, 32), 6: (0, 0, 32, 48, 127, 128)}
SA_LENGTHS = {4: (0, 8, 16, 24, 31, 32, 32), 6: (0, 32, 48, 127, 128, 128)}
TRANSPORTS = (
    {}, {"proto": TCP}, {"proto": UDP, "local_ports": 5001},
    {"proto": TCP, "remote_ports": (1000, 2000)}, {"proto": ICMP, "icmp_type": 8},
    {"proto": ICMPV6},
)  # fmt: skip


def prefix(
    version: int, lengths: dict[int, tuple[int, ...]] = LENGTHS
) -> st.SearchStrategy[tuple[str, int]]:
    return st.tuples(st.sampled_from(ADDRS[version]), st.sampled_from(lengths[version]))


def net(p: tuple[str, int]) -> str:
    return str(ipaddress.ip_network(f"{p[0]}/{p[1]}", strict=False))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    version = draw(st.sampled_from([4, 6]))
    fields: dict[str, Any] = dict(draw(st.sampled_from(TRANSPORTS[:1] * 3 + TRANSPORTS)))
    if fields.get("proto") == (ICMPV6 if version == 4 else ICMP):
        fields = {}  # ICMP of the other family
    action = draw(st.sampled_from([Action.PROTECT] * 4 + [Action.BYPASS, Action.DISCARD]))
    tunnel = draw(st.sampled_from([None, "peer", "peer", "peer", "other", "any"]))
    return policy(
        "unnamed", net(draw(prefix(version))), net(draw(prefix(version))),
        direction=draw(st.sampled_from([Direction.IN, Direction.IN, Direction.OUT])),
        action=action, priority=draw(st.sampled_from([-1, -1, 5, 10])),
        tunnel=TUNNELS[tunnel] if tunnel and action is Action.PROTECT else None, **fields,
    )  # fmt: skip


@st.composite
def wide_policies(draw: st.DrawFn) -> Policy:
    """A plain PROTECT policy of wide prefixes, inbound: one that often holds an SA's
    box whole, for this SA's peer."""
    version = draw(st.sampled_from([4, 6]))
    wide = {4: (0, 8), 6: (0, 32)}
    return policy(
        "unnamed", net(draw(prefix(version, wide))), net(draw(prefix(version, wide))),
        direction=Direction.IN, priority=draw(st.sampled_from([-1, 5, 10])),
        tunnel=draw(st.sampled_from([None, TUNNELS["peer"], TUNNELS["any"]])),
    )  # fmt: skip


@st.composite
def inner_pairs(draw: st.DrawFn) -> tuple[SadbAddress | None, SadbAddress | None]:
    """An SA's first inner pair: prefixes of one family (rarely two), one side or none
    left out."""
    version = draw(st.sampled_from([4, 6]))
    other = version if draw(st.integers(0, 9)) else 10 - version
    src = draw(st.one_of(st.none(), prefix(version, SA_LENGTHS)))
    dst = draw(st.one_of(st.none(), prefix(other, SA_LENGTHS)))
    return ext(ExtType.ADDRESS_PROXY, src), ext(ExtType.X_ADDRESS_INNER_DST, dst)


def ext(ext_type: int, p: tuple[str, int] | None) -> SadbAddress | None:
    # A prefix length of 0 on an address other than the unspecified one means the host.
    return None if p is None else SadbAddress(ext_type, ipaddress.ip_address(p[0]), prefixlen=p[1])


#: A packet to make: version, source and destination (indexes into `ADDRS`), protocol,
#: ports, shape, and whether its addresses are those of the SA it is checked for (0: no;
#: 1: the SA's inner selector addresses; 2: those plus one, at a prefix's edge).
_Spec = tuple[int, int, int, int, int, int, str, int]

packet_specs = st.tuples(
    st.sampled_from([4, 4, 6]), st.integers(0, 5), st.integers(0, 5),
    st.sampled_from([TCP, UDP, ICMP, 50]), st.sampled_from([1500, 5001]),
    st.sampled_from([80, 5001]),
    st.sampled_from(["plain", "plain", "plain", "fragment", "options", "short", "short",
                     "extension", "cut extension", "junk"]),
    st.sampled_from([0, 1, 1, 2]),
)  # fmt: skip


def make_packet(spec: _Spec, sa: SecurityAssociation) -> bytes:
    version, src_i, dst_i, proto, sport, dport, shape, own = spec
    src: Any = ipaddress.ip_address(ADDRS[version][src_i % len(ADDRS[version])])
    dst: Any = ipaddress.ip_address(ADDRS[version][dst_i % len(ADDRS[version])])
    named = [e for e in (sa.inner_src, sa.inner_dst) if e is not None]
    if own and named:
        version = named[0].addr.version
        src = ipaddress.ip_address(ADDRS[version][src_i % len(ADDRS[version])])
        dst = ipaddress.ip_address(ADDRS[version][dst_i % len(ADDRS[version])])
        if sa.inner_src is not None and sa.inner_src.addr.version == version:
            src = sa.inner_src.addr + (own - 1)
        if sa.inner_dst is not None and sa.inner_dst.addr.version == version:
            dst = sa.inner_dst.addr + (own - 1)
    if proto == ICMP and version == 6:
        proto = ICMPV6
    body = struct.pack("!HH", sport, dport) + bytes(12)
    if proto in (ICMP, ICMPV6):
        body = b"\x08\x00" + bytes(6)
    if version == 4:
        flags = 0x0010 if shape == "fragment" else 0x4000
        options = bytes(4) if shape == "options" else b""
        header = struct.pack("!BBHHHBBH4s4s", 0x45 + len(options) // 4, 0,
                             20 + len(options) + len(body), 1, flags, 64, proto, 0,
                             src.packed, dst.packed) + options  # fmt: skip
        data = header + body
    else:
        if shape.endswith("extension"):  # hop-by-hop options, then the upper layer
            body = bytes([proto, 0]) + bytes(6) + body
            proto = 0
        data = struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64, src.packed,
                           dst.packed) + body  # fmt: skip
        if shape == "cut extension":
            data = data[:41]  # no room for the hop-by-hop header's length
    if shape == "short":
        data = data[: (0, 1, 12, 19, 30, 39)[(src_i + dst_i) % 6]]
    if shape == "junk":
        data = bytes([0x55]) + data[1:]
    return data


def reference(spd: Spd, sa: SecurityAssociation, packet: bytes) -> str | None:
    """RFC 4301 §5.2 step 4 as larval reads it, looked up afresh."""
    try:
        flow = parse_flow(packet)
    except PacketError:
        return "inbound_policy"
    found = spd.lookup(Direction.IN, flow.src, flow.dst, flow.proto, flow.sport, flow.dport,
                       flow.icmp_type)  # fmt: skip
    tunnel = found.tunnel if found is not None else None
    if sa.inner_src is not None or sa.inner_dst is not None:
        pairs = [(sa.inner_src, sa.inner_dst), *sa.inner_more]
        if not any(inside(flow.src, s) and inside(flow.dst, d) for s, d in pairs):
            return (
                "inner_outside_sa" if tunnel is not None and tunnel.any_remote else "inbound_policy"
            )
    if found is None or found.action is not Action.PROTECT:
        return "inbound_policy"
    if tunnel is None:
        return None
    if tunnel.any_remote:
        if sa.inner_src is None or sa.inner_dst is None:
            return "inner_outside_sa"
        return None if tunnel.local.packed == sa.dst else "inbound_policy"
    if (tunnel.remote.packed, tunnel.local.packed) == (sa.src, sa.dst):
        return None
    return "inbound_policy"


def inside(address: Any, selector: SadbAddress | None) -> bool:
    if selector is None:
        return True
    if address.version != selector.addr.version:
        return False
    return address in ipaddress.ip_network((selector.addr, inner_prefixlen(selector)), strict=False)


def make_sa(spi: int, src: str, first: tuple[Any, Any], more: bool) -> SecurityAssociation:
    sa = SecurityAssociation(spi, 3, ipaddress.ip_address(src).packed,
                             ipaddress.ip_address(GATEWAY).packed, SaState.MATURE, 0.0)  # fmt: skip
    sa.inner_src, sa.inner_dst = first
    if more and first[0] is not None and first[1] is not None:
        sa.inner_more = ((ext(ExtType.ADDRESS_PROXY, ("10.2.0.9", 32)),
                          ext(ExtType.X_ADDRESS_INNER_DST, ("10.1.0.0", 16))),)  # type: ignore[assignment]  # fmt: skip
    return sa


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("toggle"), st.integers(0, 11)),
        st.tuples(
            st.just("inner"),
            st.integers(0, 2),
            inner_pairs(),
            st.sampled_from(["both", "src", "dst"]),
        ),
        st.tuples(st.just("packet"), st.integers(0, 2), packet_specs),
        st.tuples(st.just("packet"), st.integers(0, 2), packet_specs),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(st.one_of(policies(), wide_policies()), min_size=12, max_size=12),
    start=st.lists(st.sampled_from([False, False, True]), min_size=12, max_size=12),
    firsts=st.lists(inner_pairs(), min_size=3, max_size=3),
    peers=st.lists(st.sampled_from([PEER, PEER, OTHER]), min_size=3, max_size=3),
    more=st.booleans(),
    steps=_steps,
)
def test_kept_verdicts_are_the_checks_verdicts(
    pool: list[Policy],
    start: list[bool],
    firsts: list[tuple[Any, Any]],
    peers: list[str],
    more: bool,
    steps: list[tuple[Any, ...]],
) -> None:
    stack = Stack()
    path = PacketPath(stack, send=lambda d: None, deliver=lambda p: None)
    present: dict[int, str] = {}

    def toggle(i: int) -> None:
        if i in present:
            stack.spd.remove(present.pop(i))
            return
        name = f"p{i}"
        stack.spd.add(replace(pool[i], name=name))
        present[i] = name

    for i, on in enumerate(start):
        if on:
            toggle(i)
    sas = [make_sa(0x100 + k, peers[k], firsts[k], more) for k in range(3)]
    # The check reads no ESP state: a context without an `EspSa` serves.
    contexts = [EspContext(None, 4500, True) for _ in sas]  # type: ignore[arg-type]
    for step in steps:
        if step[0] == "toggle":
            toggle(step[1])
        elif step[0] == "inner":
            sa = sas[step[1]]
            src, dst = step[2]
            with sa.lock:  # as UPDATE sets them: one or both, the further pairs gone
                if step[3] != "dst":
                    sa.inner_src = src
                if step[3] != "src":
                    sa.inner_dst = dst
                sa.inner_more = ()
        else:
            sa, ctx = sas[step[1]], contexts[step[1]]
            data = make_packet(step[2], sa)
            expected = reference(stack.spd, sa, data)
            assert path._checked_refusal(sa, ctx, data) == expected
            # Twice: the first may make the SA's kept verdict, the second uses it.
            assert path._inbound_refusal(sa, ctx, data) == expected, (sa.inner_src, sa.inner_dst)
            assert path._inbound_refusal(sa, ctx, data) == expected


class CountingCache(FlowCache):
    """The stack's inbound policy cache, counting the packets it is asked about."""

    __slots__ = ("asked",)

    def __init__(self, spd: Spd) -> None:
        super().__init__(spd, Direction.IN)
        self.asked = 0

    def lookup(self, packet: bytes) -> Policy | None:
        self.asked += 1
        return super().lookup(packet)


def udp(src: str, dst: str, dport: int) -> bytes:
    body = struct.pack("!HHHH", 40000, dport, 8, 0)
    a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0x4000, 64, UDP, 0, a, b) + body


def test_a_kept_verdict_answers_without_a_policy_lookup() -> None:
    stack = Stack()
    cache = stack.inbound_policies = CountingCache(stack.spd)
    path = PacketPath(stack, send=lambda d: None, deliver=lambda p: None)
    stack.spd.add(policy("in", "10.2.0.0/16", "10.1.0.0/16", direction=Direction.IN,
                         tunnel=(GATEWAY, PEER)))  # fmt: skip
    first = (ext(ExtType.ADDRESS_PROXY, ("10.1.0.0", 16)),
             ext(ExtType.X_ADDRESS_INNER_DST, ("10.2.0.1", 32)))  # fmt: skip
    sa = make_sa(0x100, PEER, first, False)
    ctx = EspContext(None, 4500, True)  # type: ignore[arg-type]
    for _ in range(3):
        assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.1", 80)) is None
    assert cache.asked == 0
    # Outside the box: the full check.
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.2", 80)) == "inbound_policy"
    assert cache.asked == 1
    # A policy with a port in front: the box's packets no longer share one verdict.
    stack.spd.add(policy("port", "10.2.0.0/24", "0.0.0.0/0", direction=Direction.IN, proto=UDP,
                         local_ports=5001, action=Action.DISCARD, priority=1))  # fmt: skip
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.1", 5001)) == "inbound_policy"
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.1", 80)) is None
    assert cache.asked == 3
    stack.spd.remove("port")
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.1", 5001)) is None
    assert cache.asked == 3
    # UPDATE gives the SA another inner destination: the box follows.
    with sa.lock:
        sa.inner_dst = ext(ExtType.X_ADDRESS_INNER_DST, ("10.2.0.2", 32))
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.2", 80)) is None
    assert cache.asked == 3
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.1", 80)) == "inbound_policy"
    assert cache.asked == 4
    # The SA of another peer than the policy's tunnel: refused from the kept verdict too.
    other = make_sa(0x101, OTHER, first, False)
    other_ctx = EspContext(None, 4500, True)  # type: ignore[arg-type]
    assert (
        path._inbound_refusal(other, other_ctx, udp("10.1.0.5", "10.2.0.1", 80)) == "inbound_policy"
    )
    assert cache.asked == 4
    # Another inner source alone: the box follows that too.
    with sa.lock:
        sa.inner_src = ext(ExtType.ADDRESS_PROXY, ("10.1.3.0", 24))
    assert path._inbound_refusal(sa, ctx, udp("10.1.3.5", "10.2.0.2", 80)) is None
    assert path._inbound_refusal(sa, ctx, udp("10.1.0.5", "10.2.0.2", 80)) == "inbound_policy"
    assert cache.asked == 5


def test_ipv6_headers_the_policy_lookup_walks_take_the_full_check() -> None:
    stack = Stack()
    cache = stack.inbound_policies = CountingCache(stack.spd)
    path = PacketPath(stack, send=lambda d: None, deliver=lambda p: None)
    stack.spd.add(policy("in6", "2001:db8:1::/48", "2001:db8::/32", direction=Direction.IN))
    first = (ext(ExtType.ADDRESS_PROXY, ("2001:db8::", 32)),
             ext(ExtType.X_ADDRESS_INNER_DST, ("2001:db8:1::7", 128)))  # fmt: skip
    sa = make_sa(0x100, PEER, first, False)
    ctx = EspContext(None, 4500, True)  # type: ignore[arg-type]
    spec: _Spec = (6, 0, 0, UDP, 1500, 80, "plain", 1)
    assert path._inbound_refusal(sa, ctx, make_packet(spec, sa)) is None
    assert cache.asked == 0
    hop_by_hop = make_packet((6, 0, 0, UDP, 1500, 80, "extension", 1), sa)
    assert path._inbound_refusal(sa, ctx, hop_by_hop) is None
    cut = make_packet((6, 0, 0, UDP, 1500, 80, "cut extension", 1), sa)
    assert path._inbound_refusal(sa, ctx, cut) == "inbound_policy"  # unreadable
    assert cache.asked == 2
