"""Traffic-selector narrowing (RFC 7296 §2.9) and duplicated messages, two sessions in memory."""

from __future__ import annotations

import ipaddress

import pytest

from larval.ike import IKE_PORT
from larval.ike.config import ChildConfig
from larval.ike.events import ChildSaFailed, ChildSaUp
from larval.ikev2.constants import TsType
from larval.ikev2.negotiate import selectors_for
from larval.ikev2.session import IkeSession, State
from larval.ikev2.ts_payload import UnknownTrafficSelector
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


@pytest.mark.parametrize("known_too", [True, False], ids=["with a range", "alone"])
def test_a_selector_of_an_unknown_ts_type_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, known_too: bool
) -> None:
    """IKE_AUTH { ..., TSi(FC range, 198.51.100.0/24), TSr(203.0.113.0/24) } -->: the
    responder asks its policy about the ranges it knows, narrows them, and answers; with
    only the unknown type in TSi, TS_UNACCEPTABLE. Nothing raises (RFC 7296 §2.9)."""
    fc = UnknownTrafficSelector(TsType(9), bytes(15))  # TS_FC_ADDR_RANGE (RFC 4595)

    def with_fc(networks: object, protocol: int = 0) -> tuple[object, ...]:
        ranges = selectors_for(networks, protocol) if known_too else ()  # type: ignore[arg-type]
        return (fc, *ranges)

    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    monkeypatch.setattr("larval.ikev2.exchanges.ike_auth.selectors_for", with_fc)  # TSi, TSr
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    events_r = list(Pair.events(pair.r))
    ups = [e for e in events_r if isinstance(e, ChildSaUp)]
    if known_too:
        assert len(ups) == 1 and ups[0].remote_ts == (NET_A,) and ups[0].local_ts == (NET_B,)
    else:
        assert ups == []
        failed = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaFailed)]
        assert failed and "TS_UNACCEPTABLE" in failed[0].reason


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
