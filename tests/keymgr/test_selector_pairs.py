"""The selector pairs one CHILD_SA's SAs carry: every same-family TSi x TSr pair, the first
in the inner addresses and the rest in X_LARVAL_INNER_PAIRS, turned round for the inbound
SA; an ACQUIRE's own pair first, with the negotiated pairs it does not cover after it."""

from __future__ import annotations

import ipaddress

from larval.crypto.proposals import EspProposal
from larval.keymgr.manager import _with_negotiated_pairs
from larval.keymgr.pfkey_side import (
    ChildKeys,
    Endpoint,
    Lifetimes,
    PolicyRequest,
    keyed_sa_bytes,
    selector_pairs,
)
from larval.pfkey import EncryptAlg, ExtType, SadbMsgType, SadbXInnerPairs, decode

net = ipaddress.ip_network
ip = ipaddress.ip_address
V4_HOME, V6_HOME = net("203.0.113.0/24"), net("2001:db8:1::/48")
V4_VIP, V6_VIP = net("10.3.0.1/32"), net("2001:db8:3::1/128")


def ep(n: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Endpoint:
    return Endpoint(n.network_address, n.prefixlen, 0, 0)


def test_pairs_are_the_same_family_cross_product_in_order() -> None:
    assert selector_pairs((V4_HOME, V6_HOME), (V4_VIP, V6_VIP)) == [
        (V4_HOME, V4_VIP),
        (V6_HOME, V6_VIP),
    ]
    two = net("198.51.100.0/24")
    assert selector_pairs((V4_HOME, two), (V4_VIP,)) == [(V4_HOME, V4_VIP), (two, V4_VIP)]
    assert selector_pairs((V6_HOME,), (V4_VIP,)) == []


def request(more: tuple[tuple[Endpoint, Endpoint], ...] = ()) -> PolicyRequest:
    return PolicyRequest(
        7, ep(net("192.0.2.2/32")), ep(net("192.0.2.1/32")), ep(V4_HOME), ep(V4_VIP),
        (), 32, 0, more,
    )  # fmt: skip


def test_the_inbound_sa_has_each_pair_turned_round() -> None:
    proposal = EspProposal(EncryptAlg.AES_GCM_16, 128, 0, 0)
    keys = ChildKeys(0x1001, ip("192.0.2.1"), ip("192.0.2.2"), proposal, bytes(20), b"")
    req = request(((ep(V6_HOME), ep(V6_VIP)),))
    for inbound, (src, dst) in ((False, (V6_HOME, V6_VIP)), (True, (V6_VIP, V6_HOME))):
        msg = decode(keyed_sa_bytes(SadbMsgType.UPDATE, keys, req, Lifetimes(), inbound=inbound,
                                    seq=1, pid=1))  # fmt: skip
        ext = msg.find(ExtType.X_LARVAL_INNER_PAIRS)
        assert isinstance(ext, SadbXInnerPairs)
        ((s, d),) = ext.pairs
        assert (net(f"{s.addr}/{s.prefixlen}"), net(f"{d.addr}/{d.prefixlen}")) == (src, dst)
    one = decode(keyed_sa_bytes(SadbMsgType.UPDATE, keys, request(), Lifetimes(), inbound=False,
                                seq=1, pid=1))  # fmt: skip
    assert one.find(ExtType.X_LARVAL_INNER_PAIRS) is None


def test_an_acquires_pair_stays_first_and_gets_the_uncovered_negotiated_pairs() -> None:
    req = request()
    # The responder narrowed inside the ACQUIRE's pair: nothing to add.
    assert _with_negotiated_pairs(req, (V4_HOME,), (V4_VIP,)) is req
    # ... and gave the IPv6 pair too: it goes after the ACQUIRE's own.
    both = _with_negotiated_pairs(req, (V4_HOME, V6_HOME), (V4_VIP, V6_VIP))
    assert (both.inner_src, both.inner_dst) == (req.inner_src, req.inner_dst)
    assert both.more_pairs == ((ep(V6_HOME), ep(V6_VIP)),)
