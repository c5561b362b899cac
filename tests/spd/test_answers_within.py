"""`Spd.answers_within`: what the SPD may answer for the packets of an address box (any
protocol, ports and ICMP type). Over random SPDs of overlapping policies, with and
without protocols and ports, of several priorities, every packet of the box gets one of
the policies named, or none only when that is said; a box that one plain policy holds
whole, with nothing before it, has that policy as its only answer."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.spd import Action, Direction, Spd, SpdError
from larval.spd.index import SCAN_LIMIT
from tests.spd.support import policy

TCP, UDP, ICMP = 6, 17, 1
IN, OUT = Direction.IN, Direction.OUT

#: Few addresses, so that prefixes of these lengths overlap often.
ADDRS = {
    4: ("10.0.0.0", "10.0.0.1", "10.0.0.4", "10.0.0.5", "10.1.0.0", "10.1.0.1", "192.0.2.1"),
    6: ("2001:db8::", "2001:db8::1", "2001:db8::4", "2001:db8:1::", "fd00::1"),
}
LENGTHS = {4: (0, 8, 16, 30, 31, 32), 6: (0, 32, 48, 126, 127, 128)}
#: (protocol, local port, remote port, ICMP type) of the packets tried in each box.
TRANSPORTS = (
    (TCP, 80, 5001), (TCP, 5001, 80), (UDP, 80, 80), (UDP, 5001, 5002), (ICMP, 0, 0),
    (50, 0, 0),
)  # fmt: skip


def prefix(version: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)),
        st.sampled_from(ADDRS[version]),
        st.sampled_from(LENGTHS[version]),
    )


def transport() -> st.SearchStrategy[dict[str, Any]]:
    """A selector's protocol part: none, a protocol, ports, or an ICMP type."""
    return st.sampled_from(
        [
            {},
            {"proto": TCP},
            {"proto": UDP, "local_ports": 80},
            {"proto": TCP, "remote_ports": (5000, 5001)},
            {"proto": ICMP},
            {"proto": ICMP, "icmp_type": 8},
        ]
    )


def policies(version: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    return st.lists(
        st.tuples(
            st.sampled_from([IN, IN, IN, OUT]),
            prefix(version),
            prefix(version),
            transport(),
            st.sampled_from([Action.PROTECT, Action.BYPASS, Action.DISCARD]),
            st.sampled_from([-1, -1, 5, 10]),
        ),
        max_size=12,
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([4, 6]).flatmap(lambda v: st.tuples(policies(v), prefix(v), prefix(v))))
def test_every_packet_of_the_box_gets_an_answer_named(
    drawn: tuple[list[tuple[Any, ...]], str, str],
) -> None:
    chosen, local, remote = drawn
    spd = Spd()
    for i, (direction, lnet, rnet, fields, action, priority) in enumerate(chosen):
        spd.add(policy(f"p{i}", lnet, rnet, direction=direction, action=action,
                       priority=priority, **fields))  # fmt: skip
    lbox, rbox = ipaddress.ip_network(local), ipaddress.ip_network(remote)
    found = spd.answers_within(IN, lbox, rbox)
    assert found is not None  # a dozen policies never pass the scan limit
    answers, none_found = found
    keys = {id(p): i for i, p in enumerate(spd.policies())}
    assert len(set(map(id, answers))) == len(answers)
    assert all(p.direction is IN for p in answers)
    version = lbox.version
    for la in ADDRS[version]:
        for ra in ADDRS[version]:
            if ipaddress.ip_address(la) not in lbox or ipaddress.ip_address(ra) not in rbox:
                continue
            for proto, lport, rport in TRANSPORTS:
                icmp = 8 if proto == ICMP else None
                got = spd.lookup_local(IN, la, ra, proto, lport, rport, icmp)
                if got is None:
                    assert none_found, (la, ra, proto)
                else:
                    assert any(got is p for p in answers), (la, ra, proto, got, keys)


def test_a_box_inside_one_plain_policy_has_it_alone() -> None:
    spd = Spd()
    wide = spd.add(policy("wide", "10.2.0.0/16", "10.1.0.0/16", direction=IN))
    other = spd.add(policy("other", "10.3.0.0/16", "10.1.0.0/16", direction=IN))
    spd.add(policy("out", "10.2.0.0/16", "10.1.0.0/16", direction=OUT, proto=TCP))
    box = ipaddress.ip_network("10.2.0.7/32"), ipaddress.ip_network("10.1.0.0/16")
    assert spd.answers_within(IN, *box) == ([wide], False)
    # Wider than the policy on a side: a packet may match none.
    wider = ipaddress.ip_network("10.0.0.0/8")
    assert spd.answers_within(IN, wider, box[1]) == ([wide, other], True)
    assert spd.answers_within(IN, ipaddress.ip_network("10.9.0.0/16"), box[1]) == ([], True)


def test_a_policy_with_ports_before_the_plain_one_is_named_too() -> None:
    spd = Spd()
    wide = spd.add(policy("wide", "10.2.0.0/16", "10.1.0.0/16", direction=IN))
    ike = spd.add(policy("ike", "10.2.0.0/24", "0.0.0.0/0", direction=IN, proto=UDP,
                         local_ports=500, action=Action.BYPASS, priority=1))  # fmt: skip
    # After the plain one: never an answer in its box.
    spd.add(policy("late", "10.2.0.0/24", "10.1.0.0/24", direction=IN, proto=TCP,
                   priority=200_000))  # fmt: skip
    box = ipaddress.ip_network("10.2.0.7/32"), ipaddress.ip_network("10.1.0.0/16")
    assert spd.answers_within(IN, *box) == ([ike, wide], False)
    # A narrower plain policy before the wide one, meeting the box in part.
    part = spd.add(policy("part", "10.2.0.7/32", "10.1.2.0/24", direction=IN))
    assert spd.answers_within(IN, *box) == ([ike, part, wide], False)
    assert spd.answers_within(IN, box[0], ipaddress.ip_network("10.1.2.0/24")) == (
        [ike, part],
        False,
    )


def test_too_many_narrower_prefixes_are_not_scanned() -> None:
    spd = Spd()
    for k in range(SCAN_LIMIT + 1):
        spd.add(policy(f"host{k}", f"10.2.0.{k}/32", "10.1.0.0/16", direction=IN))
    assert spd.answers_within(IN, ipaddress.ip_network("10.2.0.0/24"),
                              ipaddress.ip_network("10.1.0.0/16")) is None  # fmt: skip
    # A box that each policy holds or misses needs no scan.
    found = spd.answers_within(IN, ipaddress.ip_network("10.2.0.3/32"),
                               ipaddress.ip_network("10.1.0.0/24"))  # fmt: skip
    assert found is not None and [p.name for p in found[0]] == ["host3"] and not found[1]


def test_a_box_of_two_families_is_refused() -> None:
    with pytest.raises(SpdError, match="IPv4 and IPv6"):
        Spd().answers_within(IN, ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::/0"))
