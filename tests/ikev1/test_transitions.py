"""The ISAKMP SA's transition table: total, and what it refuses is dropped with one line
naming the state and the input."""

from __future__ import annotations

import itertools
import logging
import warnings

import pytest

from larval.ike import IKE_PORT
from larval.ikev1 import ExchangeType
from larval.ikev1.session import TRANSITIONS, Refusal, State, Step, Transition, Turn

from .test_session import NET_A, NET_B, A, B, Pair, child, config, events

warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def test_the_table_is_total_and_only_phase1_states_continue_phase1() -> None:
    assert set(TRANSITIONS) == set(itertools.product(State, ExchangeType, Turn))
    for (state, exchange, turn), entry in TRANSITIONS.items():
        if state is State.CLOSED:
            assert isinstance(entry, Refusal)
        if isinstance(entry, Transition) and entry.step is Step.PHASE1:
            assert state.name.endswith("_SENT") and turn is Turn.CONTINUES
            assert exchange in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)
    opened = [k for k, e in TRANSITIONS.items() if isinstance(e, Transition) and e.next]
    # Only Phase 1 moves the state; Quick Mode and Informational leave it.
    assert {k[1] for k in opened} == {ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE}


def test_a_message_out_of_place_is_dropped_and_logged_once_naming_state_and_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    list(events(pair.i)), list(events(pair.r))
    mm = [d for _, d in pair.wire if d[18] == ExchangeType.MAIN_MODE]
    # MM3 again, changed in its last octet: not a retransmission, and Phase 1 is done.
    late = mm[2][:-1] + bytes([mm[2][-1] ^ 1])
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.r.receive_datagram(late, (str(A), IKE_PORT), pair.now)
    assert pair.r.datagrams_to_send(pair.now) == []
    assert pair.r.state is State.ESTABLISHED and list(events(pair.r)) == []
    (line,) = [r.getMessage() for r in caplog.records]
    assert "IDENTITY_PROTECTION (continuing) not allowed in state ESTABLISHED" in line
    assert "Phase 1 is done" in line and "dropped" in line
    # Dropped, not answered: the same bytes again are looked at (and dropped) again.
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.r.receive_datagram(late, (str(A), IKE_PORT), pair.now)
    assert len(caplog.records) == 2


def test_quick_mode_before_phase1_is_done_is_refused() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    for _ in range(3):
        pair.step(pair.i)  # MM1, MM3, MM5 -->
        pair.step(pair.r)  # <-- MM2, MM4, MM6
    qm1 = pair.i.datagrams_to_send(pair.now)[0][0]
    fresh = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    fresh.i.initiate(child(NET_A, NET_B), 0.0)
    fresh.step(fresh.i)  # MM1 -->
    assert fresh.r.state is State.MM2_SENT and len(fresh.r.datagrams_to_send(0.0)) == 1
    cookies = fresh.i.spi_i + fresh.r.spi_r  # QM1 of another ISAKMP SA, with these cookies
    fresh.r.receive_datagram(cookies + qm1[16:], (str(A), IKE_PORT), 0.0)
    assert fresh.r.state is State.MM2_SENT and fresh.r.datagrams_to_send(0.0) == []
    entry = TRANSITIONS[(State.MM2_SENT, ExchangeType.QUICK_MODE, Turn.OPENS)]
    assert isinstance(entry, Refusal) and "Phase 1" in entry.reason


def test_a_first_message_that_does_not_decode_leaves_the_responder_as_it_was() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    ((mm1, _),) = pair.i.datagrams_to_send(0.0)
    # The SA payload's length lies: the header decodes, the message does not (dropped).
    pair.r.receive_datagram(mm1[:30] + b"\xff\xff" + mm1[32:], (str(A), IKE_PORT), 0.0)
    assert pair.r.state is State.IDLE and pair.r.spi_r == b"" and pair.r.get_timer() is None
    pair.r.receive_datagram(mm1, (str(A), IKE_PORT), 0.0)  # MM1 whole -->
    assert pair.r.state is State.MM2_SENT and len(pair.r.spi_r) == 8
    pair.flush()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
