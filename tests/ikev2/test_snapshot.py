"""An IKEv2 IKE SA as a value: both ends written out mid-life (after a CHILD_SA rekey),
read back into new sessions, which carry on the exchanges of the old ones — a DELETE, a
CHILD_SA rekey, a liveness check, an IKE SA rekey — and agree on keys that carry ESP."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import logging
import warnings

import pytest

from larval.ike import IKE_PORT
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.events import ChildSaDown, ChildSaUp, Event, IkeSaRekeyed
from larval.ike.state import IkeSaState, IkeStateError, PendingRequest, Secret
from larval.ikev1.session import IkeV1Session
from larval.ikev2.session import IkeSession, State
from tests.ikev1.test_snapshot import esp_agrees

from .test_session import NET_A, NET_B, PSK, A, B, Pair, child, config

warnings.filterwarnings("ignore", category=DeprecationWarning)

_spis = itertools.count(0x5000)
MORE = ChildConfig("more", child(NET_A, NET_B).proposals, (NET_A,), (NET_B,))


def events(session: IkeSession) -> list[Event]:
    return list(Pair.events(session))


def ups(session: IkeSession) -> list[ChildSaUp]:
    return [e for e in events(session) if isinstance(e, ChildSaUp)]


def through_json(session: IkeSession, cfg: IkeConfig) -> IkeSession:
    """`session` written out as JSON and read back into a new session."""
    text = session.snapshot().to_json()
    return IkeSession.restore(
        IkeSaState.from_json(text),
        cfg,
        allocate_spi=lambda: next(_spis),
        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
    )


def restore_both(pair: Pair) -> None:
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    pair.r = through_json(pair.r, config(B, A))


def run_timers(pair: Pair, until: float) -> None:
    """Let the clock run to `until`, each timer handled when it is due, the wire carried."""
    while True:
        due = [t for t in (pair.i.get_timer(), pair.r.get_timer()) if t is not None]
        if not due or min(due) > until:
            break
        pair.now = min(due)
        for session in (pair.i, pair.r):
            timer = session.get_timer()
            if timer is not None and timer <= pair.now:
                session.handle_timer(pair.now)
        pair.flush()
    pair.now = until


def agree(a: ChildSaUp, b: ChildSaUp) -> bool:
    return (a.spi_out, a.spi_in, a.keys_out, a.keys_in) == (b.spi_in, b.spi_out, b.keys_in,
                                                            b.keys_out)  # fmt: skip


def mid_life(
    ike: str = "aes128-sha256-x25519",
) -> tuple[Pair, tuple[ChildSaUp, ChildSaUp], tuple[ChildSaUp, ChildSaUp]]:
    """IKE_SA_INIT and IKE_AUTH with a CHILD_SA, another CHILD_SA, then a rekey of the first
    by the responder; the ChildSaUp of the second (`more`) and of the renewed one at each
    end."""
    proposals = (ike,)
    pair = Pair(config(A, B, dpd=30.0, proposals=proposals), config(B, A, proposals=proposals),
                child(NET_B, NET_A))  # fmt: skip
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D) } -->  <-- { SA, KE, Nr, N(NAT_D) }
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{IDr, AUTH, SA, TSi, TSr} }
    assert pair.flush() == 4
    (first_i,), (first_r,) = ups(pair.i), ups(pair.r)
    # CREATE_CHILD_SA { SK{SA, Ni, TSi, TSr} } -->  <-- { SK{SA, Nr, TSi, TSr} }
    pair.now = 10.0
    pair.i.create_child(MORE, pair.now)
    assert pair.flush() == 2
    (more_i,), (more_r,) = ups(pair.i), ups(pair.r)
    # <-- CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, TSi, TSr} }   { SK{SA, Nr, TSi, TSr} } -->
    # <-- INFORMATIONAL { SK{D(ESP, old)} }   { SK{D(ESP, old)} } -->
    pair.now = 100.0
    assert pair.r.rekey_child(first_r.spi_in, pair.now)
    assert pair.flush() == 4
    ev_i, ev_r = events(pair.i), events(pair.r)
    (new_i,) = [e for e in ev_i if isinstance(e, ChildSaUp)]
    (new_r,) = [e for e in ev_r if isinstance(e, ChildSaUp)]
    # Renewed: the key managers keep each old inbound SA a little (`ChildSaDown.rekeyed`).
    assert ChildSaDown(first_i.spi_in, first_i.spi_out, by_peer=True, rekeyed=True) in ev_i
    assert ChildSaDown(first_r.spi_in, first_r.spi_out, by_peer=False, rekeyed=True) in ev_r
    assert sorted(pair.i.children) == sorted((more_i.spi_in, new_i.spi_in))
    return pair, (more_i, more_r), (new_i, new_r)


def test_restored_sessions_delete_renew_check_liveness_rekey_and_carry_traffic() -> None:
    pair, (more_i, more_r), (up_i, up_r) = mid_life()
    before_i, before_r = pair.i.snapshot(), pair.r.snapshot()
    restore_both(pair)
    assert pair.i.snapshot() == before_i and pair.r.snapshot() == before_r
    assert pair.i.snapshot().to_json() == before_i.to_json()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert (pair.r.spi_i, pair.r.spi_r) == (before_i.spi_i, before_i.spi_r)
    assert pair.i.get_timer() == 130.0  # the liveness check, 30 s after the last request

    # INFORMATIONAL { SK{D(ESP, more)} } -->  <-- { SK{D(ESP, more)} }
    pair.now = 110.0
    pair.i.delete_child(more_i.spi_in, pair.now)
    assert pair.flush() == 2
    assert events(pair.i) == [ChildSaDown(more_i.spi_in, more_i.spi_out, by_peer=False)]
    assert events(pair.r) == [ChildSaDown(more_r.spi_in, more_r.spi_out, by_peer=True)]
    assert list(pair.i.children) == [up_i.spi_in] and list(pair.r.children) == [up_r.spi_in]

    # The CHILD_SA renewed before the snapshot, renewed again; keys from the restored SK_d:
    # CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, TSi, TSr} } -->  <-- { SK{SA, Nr, TSi, TSr} }
    # INFORMATIONAL { SK{D(ESP, old)} } -->  <-- { SK{D(ESP, old)} }
    pair.now = 200.0
    assert pair.i.rekey_child(up_i.spi_in, pair.now)
    assert pair.flush() == 4
    (new_i,), (new_r,) = ups(pair.i), ups(pair.r)
    assert agree(new_i, new_r) and new_i.keys_out != up_i.keys_out
    assert new_i.local_ts == up_i.local_ts == (NET_A,)
    assert list(pair.i.children) == [new_i.spi_in] and list(pair.r.children) == [new_r.spi_in]

    # 30 s of quiet: INFORMATIONAL { SK{} } -->  <-- { SK{} }
    sent = len(pair.wire)
    run_timers(pair, 235.0)
    assert [way for way, _ in pair.wire[sent:]] == ["i->r", "r->i"]
    assert pair.i.get_timer() == 230.0 + 30.0  # answered: the next check
    assert not events(pair.i) and not events(pair.r)

    # CREATE_CHILD_SA <-- { SK{SA(IKE), Ni, KEr} }   { SK{SA, Nr, KEr} } -->
    # <-- INFORMATIONAL { SK{D(IKE)} } (on the restored IKE SA)   { SK{} } -->
    assert pair.r.rekey_ike(pair.now)
    pair.flush()
    ev_i, ev_r = events(pair.i), events(pair.r)
    (next_i,) = [e.new for e in ev_i if isinstance(e, IkeSaRekeyed)]
    (next_r,) = [e.new for e in ev_r if isinstance(e, IkeSaRekeyed)]
    assert isinstance(next_i, IkeSession) and isinstance(next_r, IkeSession)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert not any(isinstance(e, ChildSaDown) for e in ev_i + ev_r)
    assert list(next_i.children) == [new_i.spi_in] and list(next_r.children) == [new_r.spi_in]

    # The IKE SA made from the restored one's SK_d works, and has a value of its own, from
    # which it is restored in turn: a CHILD_SA rekey through the restored successors.
    assert next_i.snapshot().spi_i == next_r.snapshot().spi_i != before_i.spi_i
    pair.i, pair.r = next_i, next_r
    restore_both(pair)
    assert pair.i.snapshot() == next_i.snapshot() and pair.r.snapshot() == next_r.snapshot()
    pair.now = 300.0
    assert pair.i.rekey_child(new_i.spi_in, pair.now)
    assert pair.flush() == 4
    (last_i,), (last_r,) = ups(pair.i), ups(pair.r)
    assert agree(last_i, last_r)

    # ESP both ways on the CHILD_SAs made through the restored sessions and their successor.
    for a, b in ((new_i, new_r), (last_i, last_r)):
        assert esp_agrees(a, b) and esp_agrees(b, a)


def test_the_selectors_a_responder_narrowed_to_are_in_the_value_and_restored() -> None:
    wide_a = ipaddress.ip_network("198.51.0.0/16")
    host_b = ipaddress.ip_network("203.0.113.7/32")
    pair = Pair(config(A, B), config(B, A), child(host_b, NET_A))
    # IKE_AUTH { ..., TSi(198.51.0.0/16), TSr(203.0.113.0/24) } -->
    # <-- { ..., TSi(198.51.100.0/24), TSr(203.0.113.7/32) }
    pair.i.initiate(ChildConfig("net", child(NET_A, NET_B).proposals, (wide_a,), (NET_B,)), 0.0)
    pair.flush()
    (up_i,) = ups(pair.i)
    (kept,) = pair.i.snapshot().children
    assert (kept.local_ts, kept.remote_ts) == ((NET_A,), (host_b,))
    assert kept.config.local_ts == (wide_a,)
    restored = through_json(pair.i, config(A, B))
    (child_sa,) = restored.children.values()
    assert (child_sa.local_ts, child_sa.remote_ts) == ((NET_A,), (host_b,))
    # A rekey proposes what was agreed, and the responder keeps it:
    # CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, TSi, TSr} } -->  <-- { SK{SA, Nr, TSi, TSr} }
    pair.i, pair.r = restored, through_json(pair.r, config(B, A))
    assert pair.i.rekey_child(up_i.spi_in, 1.0)
    pair.flush()
    (new_i,), (new_r,) = ups(pair.i), ups(pair.r)
    assert agree(new_i, new_r) and (new_i.local_ts, new_i.remote_ts) == ((NET_A,), (host_b,))


KEYS = ["sk_d", "sk_ei", "sk_ai", "sk_er", "sk_ar"]


@pytest.mark.parametrize("key", KEYS)
def test_a_value_with_a_key_changed_does_not_carry_on(key: str) -> None:
    # The restore must be what makes the exchanges work: one key off, and they don't.
    pair, _, (up_i, _) = mid_life()
    value = pair.r.snapshot()
    assert value.ikev2 is not None
    raw = getattr(value.ikev2, key).value
    changed = dataclasses.replace(value.ikev2, **{key: Secret(bytes([raw[0] ^ 1]) + raw[1:])})
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    pair.r = IkeSession.restore(dataclasses.replace(value, ikev2=changed), config(B, A),
                                allocate_spi=lambda: next(_spis))  # fmt: skip
    assert pair.i.rekey_child(up_i.spi_in, pair.now)
    pair.flush()
    got_i, got_r = ups(pair.i), ups(pair.r)
    assert not (len(got_i) == len(got_r) == 1 and agree(got_i[0], got_r[0]))


def test_an_aead_ike_sa_counts_its_ivs_on_from_the_value() -> None:
    # RFC 5282 §3.1: an IV never repeats under a key, so the restored session takes up the
    # counter where the old one left it, rather than drawing a new start.
    pair, (more_i, _), _ = mid_life("aes128gcm16-prfsha256-x25519")
    value = pair.i.snapshot()
    assert value.ikev2 is not None and value.ikev2.next_iv is not None
    assert value.ikev2.sk_ai.value == value.ikev2.sk_ar.value == b""
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    pair.r = through_json(pair.r, config(B, A))
    # INFORMATIONAL { SK{D(ESP, more)} } -->  <-- { SK{D(ESP, more)} }
    pair.i.delete_child(more_i.spi_in, pair.now)
    assert pair.flush() == 2
    request = pair.wire[-2][1]
    assert request[32:40] == value.ikev2.next_iv.to_bytes(8, "big")  # SK's IV, after HDR
    after = pair.i.snapshot().ikev2
    assert after is not None and after.next_iv == value.ikev2.next_iv + 1


def test_a_liveness_check_in_flight_is_resent_after_restore_and_answered() -> None:
    pair, _, _ = mid_life()
    pair.now = 130.0
    pair.i.handle_timer(pair.now)  # INFORMATIONAL { SK{} } -->  lost
    ((lost, _),) = pair.i.datagrams_to_send(pair.now)
    value = pair.i.snapshot()
    assert value.ikev2 is not None and value.ikev2.liveness_check == 3
    ((request),) = value.transport.requests
    assert (request.message_id, request.datagrams, request.due) == (3, (lost,), 134.0)
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    assert pair.i.get_timer() == 134.0
    pair.now = 134.0
    pair.i.handle_timer(pair.now)
    # The same datagram again, and the answer is taken by the restored session:
    # INFORMATIONAL { SK{} } -->  <-- { SK{} }
    sent = len(pair.wire)
    assert pair.flush() == 2
    assert pair.wire[sent] == ("i->r", lost)
    assert pair.i.get_timer() == 134.0 + 30.0 and not pair.i.snapshot().transport.requests
    assert pair.i.state is State.ESTABLISHED and not events(pair.i)


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_a_retransmitted_request_gets_the_response_sent_before_the_snapshot(side: str) -> None:
    pair, _, _ = mid_life()
    if side == "initiator":  # the peer's last request: the DELETE after its CHILD_SA rekey
        request, response = pair.wire[-2][1], pair.wire[-1][1]
        restored, peer = through_json(pair.i, config(A, B, dpd=30.0)), (str(B), IKE_PORT)
    else:  # the CREATE_CHILD_SA of the CHILD_SA `more`: another CHILD_SA if taken again
        request, response = pair.wire[4][1], pair.wire[5][1]
        restored, peer = through_json(pair.r, config(B, A)), (str(A), IKE_PORT)
    children = dict(restored.children)
    restored.receive_datagram(request, peer, pair.now)
    assert restored.datagrams_to_send(pair.now) == [(response, peer)]
    assert not events(restored) and restored.children.keys() == children.keys()


def _rekeyed_responder() -> Pair:
    """The responder has answered the initiator's IKE SA rekey; the DELETE of the old one
    is still to come."""
    pair, _, _ = mid_life()
    # CREATE_CHILD_SA { SK{SA(IKE), Ni, KEi} } -->  <-- { SK{SA, Nr, KEr} }
    assert pair.i.rekey_ike(pair.now)
    for data, _ in pair.i.datagrams_to_send(pair.now):
        pair.r.receive_datagram(data, (str(A), IKE_PORT), pair.now)
    return pair


def test_only_an_established_ike_sa_between_its_own_exchanges_has_a_snapshot() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    with pytest.raises(IkeStateError, match="no snapshot in state 'idle'"):
        pair.i.snapshot()
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    with pytest.raises(IkeStateError, match="'IKE_SA_INIT sent'"):
        pair.i.snapshot()
    for data, _ in pair.i.datagrams_to_send(0.0):
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 0.0)
    with pytest.raises(IkeStateError, match="'IKE_SA_INIT answered'"):
        pair.r.snapshot()  # half-open
    pair.flush()
    pair.i.snapshot()
    events(pair.i)

    pair.i.create_child(MORE, 1.0)  # CREATE_CHILD_SA --> : a nonce awaits the answer
    with pytest.raises(IkeStateError, match="while CREATE_CHILD_SA is under way"):
        pair.i.snapshot()
    pair.flush()
    (up,) = ups(pair.i)
    pair.i.delete_child(up.spi_in, 2.0)  # INFORMATIONAL { D(ESP) } -->
    with pytest.raises(IkeStateError, match="while a DELETE of a CHILD_SA is under way"):
        pair.i.snapshot()
    pair.flush()
    assert pair.i.rekey_ike(3.0)  # CREATE_CHILD_SA { SA(IKE), Ni, KEi } -->
    with pytest.raises(IkeStateError, match="while an IKE SA rekey is under way"):
        pair.i.snapshot()

    rekeyed = _rekeyed_responder()
    with pytest.raises(IkeStateError, match="a rekey replaced this IKE SA"):
        rekeyed.r.snapshot()

    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    pair.i.delete(1.0)  # INFORMATIONAL { D(IKE) } -->
    with pytest.raises(IkeStateError, match="'deleting'"):
        pair.i.snapshot()
    pair.flush()
    with pytest.raises(IkeStateError, match="'closed'"):
        pair.i.snapshot()


def test_a_liveness_check_with_a_request_queued_behind_it_has_no_snapshot() -> None:
    pair, _, _ = mid_life()
    pair.now = 130.0
    pair.i.handle_timer(pair.now)  # INFORMATIONAL { SK{} } -->
    pair.i.snapshot()
    pair.i.create_child(MORE, pair.now)  # queued behind the window
    with pytest.raises(IkeStateError, match="while INFORMATIONAL, CREATE_CHILD_SA is under"):
        pair.i.snapshot()


def test_restore_refuses_another_connection_version_or_a_request_it_cannot_take_up() -> None:
    pair, _, _ = mid_life()
    value = pair.i.snapshot()
    other = dataclasses.replace(config(A, B), name="other")
    with pytest.raises(IkeStateError, match="does not fit connection 'other': its name differ"):
        IkeSession.restore(value, other, allocate_spi=lambda: next(_spis))
    with pytest.raises(IkeStateError, match="local identity, peer address"):
        IkeSession.restore(value, config(B, A), allocate_spi=lambda: next(_spis))
    with pytest.raises(IkeStateError, match="is IKEv2"):
        IkeV1Session.restore(value, config(A, B), allocate_spi=lambda: next(_spis))
    v1 = dataclasses.replace(value, ike_version=1, ikev2=None)
    with pytest.raises(IkeStateError, match="is IKEv1"):
        IkeSession.restore(v1, config(A, B), allocate_spi=lambda: next(_spis))
    # A CREATE_CHILD_SA request in the transport: its nonce is not in the value.
    create = PendingRequest(3, (b"CREATE_CHILD_SA",), 100.0, 104.0, "CREATE_CHILD_SA request 3")
    odd = dataclasses.replace(value, transport=dataclasses.replace(value.transport,
                                                                   requests=(create,)))  # fmt: skip
    with pytest.raises(IkeStateError, match=r"request 3 \(CREATE_CHILD_SA request 3\) is not a"):
        IkeSession.restore(odd, config(A, B), allocate_spi=lambda: next(_spis))
    assert value.ikev2 is not None
    lost = dataclasses.replace(value, ikev2=dataclasses.replace(value.ikev2, liveness_check=3))
    with pytest.raises(IkeStateError, match="liveness check 3 is not among the requests"):
        IkeSession.restore(lost, config(A, B), allocate_spi=lambda: next(_spis))


def test_the_value_its_session_and_their_logs_show_no_key_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="larval")
    pair, _, (up_i, _) = mid_life()
    value = pair.i.snapshot()
    assert value.ikev2 is not None
    keys = [getattr(value.ikev2, key).value for key in KEYS] + [PSK]
    restore_both(pair)
    assert pair.i.rekey_child(up_i.spi_in, pair.now)  # and an exchange with the keys
    pair.flush()
    logging.getLogger("larval.ike").info("value: %s %r", value, value)
    shown = repr(value) + str(value) + repr(pair.i) + caplog.text
    assert "Secret(32B)" in shown and "IKE SA resumed with 2 CHILD_SAs" in caplog.text
    text = value.to_json()
    for key in keys:
        assert len(key) >= 16
        assert key.hex() not in shown and repr(key) not in shown
    for key in keys[:-1]:
        assert key.hex() in text  # the store encrypts it; logs never see it
    assert PSK.hex() not in text and PSK.decode() not in text


def test_a_restored_responder_still_knows_the_child_sa_a_rekey_replaced() -> None:
    """The responder of a CHILD_SA rekey waits for the initiator's DELETE of the old one;
    written out in between and read back, it still reports that DELETE as the end of a
    renewed CHILD_SA (its key manager keeps the inbound SA for packets in flight)."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    (old_i,), (old_r,) = ups(pair.i), ups(pair.r)
    pair.now = 50.0
    assert pair.i.rekey_child(old_i.spi_in, pair.now)
    # CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, TSi, TSr} } -->  <-- { SK{SA, Nr, TSi, TSr} }
    (request,) = pair.i.datagrams_to_send(pair.now)
    pair.r.receive_datagram(request[0], (str(A), IKE_PORT), pair.now)
    (response,) = pair.r.datagrams_to_send(pair.now)
    pair.i.receive_datagram(response[0], (str(B), IKE_PORT), pair.now)
    assert pair.r.children[old_r.spi_in].rekeyed
    pair.r = through_json(pair.r, config(B, A))
    assert pair.r.children[old_r.spi_in].rekeyed
    # INFORMATIONAL { SK{D(ESP, old)} } -->  <-- { SK{D(ESP, old)} }
    assert pair.flush() == 2
    assert ChildSaDown(old_r.spi_in, old_r.spi_out, by_peer=True, rekeyed=True) in events(pair.r)
