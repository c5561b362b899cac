"""Traffic-selector narrowing (RFC 7296 §2.9) and duplicated messages, two sessions in memory."""

from __future__ import annotations

import ipaddress

from larval.ike import IKE_PORT
from larval.ike.config import ChildConfig
from larval.ike.events import ChildSaFailed, ChildSaUp
from larval.ikev2.session import IkeSession, State
from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child, config


def test_the_responder_narrows_what_the_initiator_proposes() -> None:
    wide_a = ipaddress.ip_network("198.51.0.0/16")
    host_b = ipaddress.ip_network("203.0.113.7/32")
    pair = Pair(config(A, B), config(B, A), child(host_b, NET_A))
    # IKE_AUTH { ..., TSi(198.51.0.0/16), TSr(203.0.113.0/24) } -->
    # <-- { ..., TSi(198.51.100.0/24), TSr(203.0.113.7/32) }: what the responder's policy allows
    pair.i.initiate(ChildConfig("net", child(NET_A, NET_B).proposals, (wide_a,), (NET_B,)), 0.0)
    pair.flush()
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    up_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    assert up_i.local_ts == (NET_A,) and up_i.remote_ts == (host_b,)
    assert up_r.local_ts == (host_b,) and up_r.remote_ts == (NET_A,)


def test_selectors_with_nothing_in_common_are_refused() -> None:
    elsewhere = ipaddress.ip_network("192.0.2.128/25")
    pair = Pair(config(A, B), config(B, A), child(elsewhere, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    failed = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaFailed)]
    assert failed and "TS_UNACCEPTABLE" in failed[0].reason
    assert pair.i.state is State.ESTABLISHED and not pair.i.children  # IKE SA stays


def test_a_duplicated_request_is_answered_from_the_cache_once_processed() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    init = pair.i.datagrams_to_send(0.0)[0][0]
    pair.r.receive_datagram(init, (str(A), IKE_PORT), 0.0)
    first = pair.r.datagrams_to_send(0.0)
    pair.r.receive_datagram(init, (str(A), IKE_PORT), 0.0)  # the same IKE_SA_INIT again
    again = pair.r.datagrams_to_send(0.0)
    assert again == first  # the cached response, not a second IKE SA's
    pair.i.receive_datagram(first[0][0], (str(B), IKE_PORT), 0.0)
    auth = pair.i.datagrams_to_send(0.0)[0][0]
    for _ in range(3):  # IKE_AUTH delivered three times: one CHILD_SA, same answer
        pair.r.receive_datagram(auth, (str(A), IKE_PORT), 0.0)
    answers = pair.r.datagrams_to_send(0.0)
    assert len(answers) == 3 and len({a[0] for a in answers}) == 1
    ups = [e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp)]
    assert len(ups) == 1
    assert isinstance(pair.r, IkeSession) and len(pair.r.children) == 1
