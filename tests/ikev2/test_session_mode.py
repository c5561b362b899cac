"""The mode a responder chose, as the initiator takes it (RFC 7296 §1.3.1): without
N(USE_TRANSPORT_MODE) in the answer the CHILD_SA is tunnel mode, which a transport-mode
request takes (and says so); USE_TRANSPORT_MODE answering a tunnel-mode request is not
what this end allows: the CHILD_SA fails and the responder's half is deleted. Both in
IKE_AUTH and in CREATE_CHILD_SA, two sessions in memory."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from larval.ike.config import ChildConfig
from larval.ike.events import ChildSaDown, ChildSaFailed, ChildSaUp, Event
from larval.ikev2.constants import NotifyType, ProtocolId
from larval.ikev2.exchanges import create_child_sa, ike_auth
from larval.ikev2.payloads import NotifyPayload
from tests.ikev2.test_session import NET_A, NET_B, Pair, _established_pair, child, config
from tests.ikev2.test_session import A as ADDR_A
from tests.ikev2.test_session import B as ADDR_B


def transport(c: ChildConfig) -> ChildConfig:
    return dataclasses.replace(c, mode="transport")


def pair_with(resp_child: ChildConfig) -> Pair:
    """A pair whose responder answers every request, in either mode, with `resp_child`."""
    pair = Pair(config(ADDR_A, ADDR_B), config(ADDR_B, ADDR_A), resp_child)
    pair.r._child_policy = lambda tsi, tsr, mode="tunnel": resp_child
    return pair


def established() -> tuple[Pair, ChildSaUp]:
    pair, up_i, _ = _established_pair()  # the responder's policy is tunnel mode
    resp_child = child(NET_B, NET_A)
    pair.r._child_policy = lambda tsi, tsr, mode="tunnel": resp_child
    return pair, up_i


def events(pair: Pair) -> tuple[list[Event], list[Event]]:
    return list(Pair.events(pair.i)), list(Pair.events(pair.r))


def pushy(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the responder answers N(USE_TRANSPORT_MODE) whatever it was asked."""
    notify = (NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE),)
    for module in (ike_auth, create_child_sa):
        monkeypatch.setattr(module, "transport_notify", lambda message, policy: notify)


def test_ike_auth_transport_asked_tunnel_answered_is_a_tunnel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = pair_with(child(NET_B, NET_A))  # tunnel mode only
    caplog.set_level(logging.INFO, "larval")
    # IKE_AUTH { SK{IDi, AUTH, N(USE_TRANSPORT_MODE), SA, TSi, TSr} } -->
    #   <-- { SK{IDr, AUTH, SA, TSi, TSr} }  (no USE_TRANSPORT_MODE: tunnel)
    pair.i.initiate(transport(child(NET_A, NET_B)), 0.0)
    pair.flush()
    ev_i, ev_r = events(pair)
    up_i = next(e for e in ev_i if isinstance(e, ChildSaUp))
    up_r = next(e for e in ev_r if isinstance(e, ChildSaUp))
    assert up_i.child.mode == "tunnel" and up_r.child.mode == "tunnel"
    (record,) = pair.i.children.values()
    assert record.config.mode == "tunnel"  # its renewals ask for what it is
    assert "did not accept transport mode (no USE_TRANSPORT_MODE): tunnel mode" in caplog.text


def test_ike_auth_transport_asked_and_answered_stays_transport() -> None:
    pair = pair_with(transport(child(NET_B, NET_A)))
    pair.i.initiate(transport(child(NET_A, NET_B)), 0.0)
    pair.flush()
    ev_i, _ = events(pair)
    up_i = next(e for e in ev_i if isinstance(e, ChildSaUp))
    assert up_i.child.mode == "transport"


def test_ike_auth_tunnel_asked_transport_answered_fails_and_deletes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pair = pair_with(child(NET_B, NET_A))
    pushy(monkeypatch)
    caplog.set_level(logging.INFO, "larval")
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->
    #   <-- { SK{IDr, AUTH, N(USE_TRANSPORT_MODE), SA, TSi, TSr} }
    # INFORMATIONAL { SK{D(ESP, spi)} } -->  <-- { SK{D(ESP, spi)} }
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    assert pair.flush() == 6
    ev_i, ev_r = events(pair)
    assert not any(isinstance(e, ChildSaUp) for e in ev_i)
    (failed,) = [e for e in ev_i if isinstance(e, ChildSaFailed)]
    assert "the responder chose transport mode" in failed.reason
    up_r = next(e for e in ev_r if isinstance(e, ChildSaUp))
    assert any(isinstance(e, ChildSaDown) and e.spi_in == up_r.spi_in for e in ev_r)
    assert pair.i.children == {} and pair.r.children == {}
    assert "CHILD_SA net refused: the responder chose transport mode" in caplog.text


def test_create_child_sa_transport_asked_tunnel_answered_is_a_tunnel() -> None:
    pair, _ = established()
    # CREATE_CHILD_SA { SK{N(USE_TRANSPORT_MODE), SA, Ni, TSi, TSr} } -->
    #   <-- { SK{SA, Nr, TSi, TSr} }
    pair.i.create_child(transport(child(NET_A, NET_B)), 5.0)
    pair.flush()
    ev_i, _ = events(pair)
    (up,) = [e for e in ev_i if isinstance(e, ChildSaUp)]
    assert up.child.mode == "tunnel" and len(pair.i.children) == 2


def test_create_child_sa_tunnel_asked_transport_answered_fails_and_deletes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair, up_i = established()
    pushy(monkeypatch)
    # CREATE_CHILD_SA { SK{SA, Ni, TSi, TSr} } -->
    #   <-- { SK{N(USE_TRANSPORT_MODE), SA, Nr, TSi, TSr} }
    # INFORMATIONAL { SK{D(ESP, spi)} } -->  <-- { SK{D(ESP, spi)} }
    pair.i.create_child(child(NET_A, NET_B), 5.0)
    assert pair.flush() == 4
    ev_i, ev_r = events(pair)
    assert not any(isinstance(e, ChildSaUp) for e in ev_i)
    assert [type(e) for e in ev_i] == [ChildSaFailed]
    assert any(isinstance(e, ChildSaDown) for e in ev_r)
    # The first CHILD_SA is left as it was, on both ends.
    assert list(pair.i.children) == [up_i.spi_in] and len(pair.r.children) == 1
