"""The IKEv2 session's transition table and where its refusals go: the table is total, a
message it refuses is answered with the refusal's Notify or dropped, with a log line that
names state and input; and IKE_AUTH's authenticator is a step of its own, swapped without
touching the other exchanges."""

from __future__ import annotations

import datetime
import itertools
import logging

import pytest

from larval.crypto.prf import Prf
from larval.ike import IKE_PORT
from larval.ike.auth_config import AuthInfo
from larval.ike.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp
from larval.ikev2.auth import (
    AuthenticationFailed,
    PeerClaim,
    PeerOffer,
    Proof,
    PskAuthenticator,
)
from larval.ikev2.constants import AuthMethod, ExchangeType, NotifyType, ProtocolId
from larval.ikev2.exchanges import IkeAuth, IkeAuthResponder
from larval.ikev2.message import IkeMessage
from larval.ikev2.payloads import AuthPayload, CertReqPayload, NotifyPayload, Payload
from larval.ikev2.session import (
    REQUESTER,
    TRANSITIONS,
    Direction,
    IkeSession,
    Refusal,
    State,
    Transition,
)
from tests.ikev2.test_session import NET_A, NET_B, PSK, A, B, Pair, child, config

CELLS = list(itertools.product(State, ExchangeType, Direction))

#: What the session took before the table held next states; every other cell refuses.
TAKEN = {
    (State.IDLE, ExchangeType.IKE_SA_INIT, Direction.REQUEST),
    (State.INIT_SENT, ExchangeType.IKE_SA_INIT, Direction.RESPONSE),
    (State.INIT_DONE, ExchangeType.IKE_AUTH, Direction.REQUEST),
    # RFC 7296 §2.21.2: an initiator's own N(AUTHENTICATION_FAILED) during IKE_AUTH.
    (State.INIT_DONE, ExchangeType.INFORMATIONAL, Direction.REQUEST),
    (State.AUTH_SENT, ExchangeType.IKE_AUTH, Direction.RESPONSE),
    (State.ESTABLISHED, ExchangeType.INFORMATIONAL, Direction.REQUEST),
    (State.ESTABLISHED, ExchangeType.INFORMATIONAL, Direction.RESPONSE),
    (State.ESTABLISHED, ExchangeType.CREATE_CHILD_SA, Direction.REQUEST),
    (State.ESTABLISHED, ExchangeType.CREATE_CHILD_SA, Direction.RESPONSE),
    (State.DELETING, ExchangeType.INFORMATIONAL, Direction.REQUEST),
    (State.DELETING, ExchangeType.INFORMATIONAL, Direction.RESPONSE),
}


# -- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "-".join(x.name for x in c))
def test_every_cell_is_a_task_or_a_named_refusal(
    cell: tuple[State, ExchangeType, Direction],
) -> None:
    """A request goes to a responder task of its own exchange, a response to the task
    whose request it answers."""
    entry = TRANSITIONS[cell]
    _state, exchange, direction = cell
    if cell in TAKEN:
        assert isinstance(entry, Transition)
        if direction is Direction.RESPONSE:
            assert entry.step is REQUESTER
        else:
            assert entry.step is not None and entry.step.exchange is exchange  # type: ignore[attr-defined]
        assert entry.next is None or isinstance(entry.next, State)
    else:
        assert isinstance(entry, Refusal) and entry.reason


def test_the_table_holds_nothing_but_its_cells() -> None:
    assert set(TRANSITIONS) == set(CELLS)


def test_responses_and_a_closed_ike_sa_are_never_answered() -> None:
    """RFC 7296 §2.21: no answer to a response; only a request to an IKE SA being
    deleted hears why (TEMPORARY_FAILURE, §2.25)."""
    answered = {c: e.notify for c, e in TRANSITIONS.items() if isinstance(e, Refusal) and e.notify}
    assert answered == {
        (State.DELETING, ExchangeType.CREATE_CHILD_SA, Direction.REQUEST): (
            NotifyType.TEMPORARY_FAILURE
        )
    }


def test_the_next_states_set_up_the_ike_sa_in_order() -> None:
    def next_of(state: State, exchange: ExchangeType, direction: Direction) -> State | None:
        entry = TRANSITIONS[(state, exchange, direction)]
        assert isinstance(entry, Transition)
        return entry.next

    assert next_of(State.IDLE, ExchangeType.IKE_SA_INIT, Direction.REQUEST) is State.INIT_DONE
    assert next_of(State.INIT_SENT, ExchangeType.IKE_SA_INIT, Direction.RESPONSE) is State.AUTH_SENT
    for state, direction in ((State.INIT_DONE, Direction.REQUEST),
                             (State.AUTH_SENT, Direction.RESPONSE)):  # fmt: skip
        assert next_of(state, ExchangeType.IKE_AUTH, direction) is State.ESTABLISHED


# -- refusals on the wire ----------------------------------------------------------------


def _established() -> Pair:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    list(Pair.events(pair.i))
    list(Pair.events(pair.r))
    return pair


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]


def test_a_request_the_table_refuses_is_dropped_with_a_line_naming_state_and_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _established()
    # IKE_AUTH { SK{} } -->  to an established IKE SA: dropped, unanswered.
    pair.i._send_request(ExchangeType.IKE_AUTH, (), 1.0)
    (request,) = pair.i.datagrams_to_send(1.0)
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.r.receive_datagram(request[0], (str(A), IKE_PORT), 1.0)
    assert pair.r.datagrams_to_send(1.0) == []
    assert pair.r.state is State.ESTABLISHED and pair.r.next_event() is None
    (line,) = _refusals(caplog)
    assert "IKE_AUTH request 2 refused" in line
    assert "not allowed in state ESTABLISHED: the IKE SA is authenticated already" in line
    assert line.endswith(", dropped")
    # Unopened: no "received" line for it.
    assert not any("received IKE_AUTH" in r.getMessage() for r in caplog.records)


def test_a_request_to_an_ike_sa_being_deleted_gets_temporary_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _established()
    # CREATE_CHILD_SA { SK{SA, Ni, TSi, TSr} } -->  crossing the responder's DELETE;
    # <-- { SK{N(TEMPORARY_FAILURE)} } (RFC 7296 §2.25)
    pair.i.create_child(child(NET_A, NET_B), 1.0)
    pair.r.delete(1.0)
    request = pair.i.datagrams_to_send(1.0)
    held = pair.r.datagrams_to_send(1.0)  # the DELETE, held for now
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        for data, _ in request:
            pair.r.receive_datagram(data, (str(A), IKE_PORT), 1.0)
    for data, _ in pair.r.datagrams_to_send(1.0):
        pair.i.receive_datagram(data, (str(B), IKE_PORT), 1.0)
    failed = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaFailed)]
    assert [e.reason for e in failed] == ["CREATE_CHILD_SA refused: TEMPORARY_FAILURE"]
    (line,) = _refusals(caplog)
    assert "CREATE_CHILD_SA request 2 refused: CREATE_CHILD_SA request not allowed" in line
    assert "in state DELETING: the IKE SA is being deleted (TEMPORARY_FAILURE)" in line
    assert pair.r.state is State.DELETING
    for data, _ in held:
        pair.i.receive_datagram(data, (str(B), IKE_PORT), 1.0)
    pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED


def test_an_exchange_refusal_is_answered_with_its_notify(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _established()
    # CREATE_CHILD_SA for selectors the responder's policy has nothing for:
    # <-- { SK{N(TS_UNACCEPTABLE)} }, and the IKE SA stays.
    pair.r._child_policy = lambda tsi, tsr: None
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.i.create_child(child(NET_A, NET_B), 1.0)
        pair.flush()
    failed = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaFailed)]
    assert [e.reason for e in failed] == ["CREATE_CHILD_SA refused: TS_UNACCEPTABLE"]
    (line,) = _refusals(caplog)
    assert "CREATE_CHILD_SA request 2 refused: no policy for the selectors" in line
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED


# -- the authenticator -------------------------------------------------------------------


class Refusing(PskAuthenticator):
    """Proves itself with the PSK, and believes no peer."""

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        raise AuthenticationFailed("AUTH does not verify")


class Token:
    """A toy method, to show a prover and verifier of another kind fit: AUTH carries a
    token both ends know (method 14, as a signature's would be)."""

    method = AuthMethod.DIGITAL_SIGNATURE
    pubkey = False

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.built = 0

    def check(self, peer: PeerOffer) -> None:
        return

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        self.built += 1
        auth = AuthPayload(self.method, self.token + prf.prf(self.token, octets))
        return Proof((), auth, AuthInfo("token"))

    def certreq(self) -> CertReqPayload | None:
        return None

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        if claim.auth.data != self.token + prf.prf(self.token, octets):
            raise AuthenticationFailed("not the token")
        return AuthInfo("token")


def _pair(auth_i: object, auth_r: object) -> Pair:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    for side, auth, initiator in (("i", auth_i, True), ("r", auth_r, False)):
        old = getattr(pair, side)
        setattr(pair, side, IkeSession(old.config, initiator=initiator,
                                       allocate_spi=old._allocate_spi,
                                       child_policy=old._child_policy,
                                       prover=auth, verifier=auth))  # type: ignore[arg-type]  # fmt: skip
    return pair


def test_an_authenticator_that_refuses_gives_authentication_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _pair(PskAuthenticator(PSK), Refusing(PSK))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT as ever; IKE_AUTH -->  <-- { SK{N(AUTHENTICATION_FAILED)} }
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    (down,) = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaDown)]
    assert "AUTHENTICATION_FAILED" in down.reason
    (line,) = _refusals(caplog)
    assert (
        "IKE_AUTH request 1 refused: authentication of the initiator failed: AUTH does not verify"
        in line
    )


def test_another_authenticator_sets_up_the_ike_sa_with_the_same_exchanges() -> None:
    token_i, token_r = Token(b"shared token"), Token(b"shared token")
    pair = _pair(token_i, token_r)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    assert pair.flush() == 4
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert (token_i.built, token_r.built) == (1, 1)
    for side in (pair.i, pair.r):
        assert [type(e) for e in Pair.events(side)] == [IkeSaUp, ChildSaUp]
        assert side.auth_local == side.auth_remote == AuthInfo("token")


def test_a_peer_of_another_method_is_refused() -> None:
    pair = _pair(Token(b"shared token"), PskAuthenticator(PSK))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    (down,) = [e for e in Pair.events(pair.r) if isinstance(e, IkeSaDown)]
    assert down.reason == (
        "authentication of the initiator failed: AUTH is of method DIGITAL_SIGNATURE, "
        "not SHARED_KEY_MIC"
    )


def test_the_psk_authenticator_keeps_its_key_out_of_repr() -> None:
    assert PSK.decode() not in repr(PskAuthenticator(PSK))


def test_a_response_no_task_awaits_is_dropped_and_the_state_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table lets an IKE_SA_INIT response in while INIT_SENT, but only the task that
    sent the request takes it: with no task awaiting it, nothing moves."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D) } -->  <-- { SA, KE, Nr, N(NAT_D) }
    for data, _ in pair.i.datagrams_to_send(0.0):
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 0.0)
    (response,) = pair.r.datagrams_to_send(0.0)
    monkeypatch.setattr(pair.i._tasks, "response", lambda *_: None)
    pair.i.receive_datagram(response[0], (str(B), IKE_PORT), 0.0)
    assert pair.i.state is State.INIT_SENT
    assert pair.i.datagrams_to_send(0.0) == [] and pair.i.next_event() is None
    # The task that sent the request still takes the response when it comes again.
    monkeypatch.undo()
    pair.i.receive_datagram(response[0], (str(B), IKE_PORT), 0.0)
    assert pair.i.state is State.AUTH_SENT
    pair.flush()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED


# -- IKE_AUTH of more than one round trip --------------------------------------------------

#: A round that proves nothing yet (as an EAP round would carry EAP), a status type.
ROUND = NotifyPayload(ProtocolId.NONE, 40969, b"round 1")


class TwoRoundAuth(IkeAuth):
    """The initiator's IKE_AUTH with a first round before the usual one."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.done = False
        self.rounds = 0

    def build(self, now: float) -> tuple[Payload, ...]:
        return (ROUND,) if self.rounds == 0 else super().build(now)

    def process(self, message: IkeMessage, now: float) -> None:
        self.rounds += 1
        if self.rounds == 1:
            assert message.notify(40969) is not None
            return
        self.done = True
        super().process(message, now)


class TwoRoundAuthResponder(IkeAuthResponder):
    made: list[TwoRoundAuthResponder] = []

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.done = False
        TwoRoundAuthResponder.made.append(self)

    def process(self, message: IkeMessage, now: float) -> None:
        if message.first(AuthPayload) is None:
            self._answer = (ROUND,)
            return
        self.done = True
        super().process(message, now)

    def answered(self, now: float) -> None:
        if self.done:
            super().answered(now)


def test_ike_auth_may_take_more_than_one_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ends' IKE_AUTH tasks take two round trips; the state holds between them, the
    responder's second request goes to the task under way, and the IKE SA comes up as
    with one round. Nothing else changes for it: the table, the other exchanges."""
    monkeypatch.setattr("larval.ikev2.session.IkeAuth", TwoRoundAuth)
    cell = (State.INIT_DONE, ExchangeType.IKE_AUTH, Direction.REQUEST)
    monkeypatch.setitem(TRANSITIONS, cell, Transition(TwoRoundAuthResponder, State.ESTABLISHED))
    TwoRoundAuthResponder.made.clear()
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT -->  <--;  IKE_AUTH { SK{N(40969)} } -->  <-- { SK{N(40969)} }
    for _ in range(2):
        for data, _ in pair.i.datagrams_to_send(0.0):
            pair.r.receive_datagram(data, (str(A), IKE_PORT), 0.0)
        for data, _ in pair.r.datagrams_to_send(0.0):
            pair.i.receive_datagram(data, (str(B), IKE_PORT), 0.0)
    assert pair.i.state is State.AUTH_SENT and pair.r.state is State.INIT_DONE
    assert pair.i.next_event() is None and pair.r.next_event() is None
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{IDr, AUTH, SA, TSi, TSr} }
    assert pair.flush() == 2
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    for side in (pair.i, pair.r):
        assert [type(e) for e in Pair.events(side)] == [IkeSaUp, ChildSaUp]
    assert len(TwoRoundAuthResponder.made) == 1
    # The second round went as Message ID 2 (the first as 1), and was answered.
    assert [(way, int.from_bytes(data[20:24], "big")) for way, data in pair.wire] == [
        ("i->r", 2),
        ("r->i", 2),
    ]
