"""An ISAKMP SA as a value: both ends written out mid-life, read back into new sessions,
which carry on the exchanges of the old ones (DELETE, Quick Mode, DPD) and agree on keys."""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import pytest

from larval.esp import EspSa
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaDown, ChildSaUp, IkeSaDown
from larval.ike.state import IkeSaState, IkeStateError, Secret
from larval.ikev1.session import IkeV1Session, State
from larval.keymgr.manager import proposal_of

from .test_session import NET_A, NET_B, A, B, Pair, child, config, established, events

warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

_spis = itertools.count(0x5000)


def through_json(session: IkeV1Session, cfg: IkeConfig) -> IkeV1Session:
    """`session` written out as JSON and read back into a new session."""
    text = session.snapshot().to_json()
    return IkeV1Session.restore(
        IkeSaState.from_json(text),
        cfg,
        allocate_spi=lambda: next(_spis),
        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
    )


def mid_life() -> tuple[Pair, ChildSaUp, ChildSaUp]:
    """Main Mode, Quick Mode, then a Quick Mode renewal; the renewed CHILD_SA's ChildSaUp
    at each end (the first one is still there, `renewed`)."""
    pair = Pair(config(A, B, dpd=30.0), config(B, A), child(NET_B, NET_A))
    first_i, _ = established(pair, child(NET_A, NET_B))
    pair.now = 100.0
    assert pair.i.rekey_child(first_i.spi_in, pair.now)
    # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2 *{ ... }  QM3 *{ HASH(3) } -->
    assert pair.flush() == 3
    (up_i,) = events(pair.i)
    (up_r,) = events(pair.r)
    assert isinstance(up_i, ChildSaUp) and isinstance(up_r, ChildSaUp)
    assert len(pair.i.children) == len(pair.r.children) == 2
    return pair, up_i, up_r


def restore_both(pair: Pair) -> None:
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    pair.r = through_json(pair.r, config(B, A))


def esp_agrees(sender: ChildSaUp, receiver: ChildSaUp) -> bool:
    """ESP sealed with the sender's outbound SA opens with the receiver's inbound one."""
    p = proposal_of(sender.suite)
    out = EspSa(sender.spi_out, p.encrypt, sender.keys_out.encr_key, p.auth,
                sender.keys_out.integ_key)  # fmt: skip
    q = proposal_of(receiver.suite)
    inb = EspSa(receiver.spi_in, q.encrypt, receiver.keys_in.encr_key, q.auth,
                receiver.keys_in.integ_key)  # fmt: skip
    packet = out.encrypt(b"\x45" + bytes(39), 4)
    try:
        return inb.decrypt(packet) == (4, b"\x45" + bytes(39))
    except Exception:
        return False


def test_restored_sessions_delete_renew_check_liveness_and_carry_traffic() -> None:
    pair, up_i, up_r = mid_life()
    before_i, before_r = pair.i.snapshot(), pair.r.snapshot()
    restore_both(pair)
    assert pair.i.snapshot() == before_i and pair.r.snapshot() == before_r
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert (pair.i.spi_i, pair.i.spi_r) == (before_i.spi_i, before_i.spi_r)
    old_i = next(c for c in pair.i.children.values() if c.renewed)
    old_r = next(c for c in pair.r.children.values() if c.renewed)

    # INFORMATIONAL *{ HASH(1), D(ESP, old inbound SPI) } -->
    pair.i.delete_child(old_i.spi_in, pair.now)
    assert pair.step(pair.i) == 1
    # Renewed: the key managers keep each old inbound SA a little (`ChildSaDown.rekeyed`).
    assert list(events(pair.i)) == [
        ChildSaDown(old_i.spi_in, old_i.spi_out, by_peer=False, rekeyed=True)
    ]
    assert list(events(pair.r)) == [
        ChildSaDown(old_r.spi_in, old_r.spi_out, by_peer=True, rekeyed=True)
    ]
    assert list(pair.i.children) == [up_i.spi_in] and list(pair.r.children) == [up_r.spi_in]

    # Another Quick Mode, renewing the CHILD_SA made before the snapshot:
    # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2 *{ ... }  QM3 *{ HASH(3) } -->
    pair.now = 200.0
    assert pair.i.rekey_child(up_i.spi_in, pair.now)
    assert pair.flush() == 3
    (new_i,) = events(pair.i)
    (new_r,) = events(pair.r)
    assert isinstance(new_i, ChildSaUp) and isinstance(new_r, ChildSaUp)
    assert new_i.spi_out == new_r.spi_in and new_i.spi_in == new_r.spi_out
    assert new_i.keys_out == new_r.keys_in and new_i.keys_in == new_r.keys_out
    assert new_i.keys_out != up_i.keys_out  # fresh nonces, fresh keys

    # 30 s of quiet: INFORMATIONAL *{ HASH, N(R-U-THERE, seq) } -->
    #                <-- INFORMATIONAL *{ HASH, N(R-U-THERE-ACK, seq) }
    sent = len(pair.wire)
    pair.advance(31.0)
    assert [way for way, _ in pair.wire[sent:]] == ["i->r", "r->i"]
    assert pair.i.get_timer() == 230.0 + 30.0  # the ACK was taken: the next check
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert not list(events(pair.i)) and not list(events(pair.r))

    # Traffic both ways on the CHILD_SA the restored sessions made.
    assert esp_agrees(new_i, new_r) and esp_agrees(new_r, new_i)


@pytest.mark.parametrize("what", ["skeyid_a", "skeyid_d", "enc_key", "phase1_last_block"])
def test_a_value_with_a_key_or_iv_changed_does_not_carry_on(what: str) -> None:
    # The restore must be what makes the exchanges work: one key or IV off, and they don't.
    pair, up_i, _ = mid_life()
    value = pair.r.snapshot()
    v1 = value.ikev1
    assert v1 is not None
    old = getattr(v1, what)
    raw = old.value if isinstance(old, Secret) else old
    changed = bytes([raw[0] ^ 1]) + raw[1:]
    v1 = dataclasses.replace(v1, **{what: Secret(changed) if isinstance(old, Secret) else changed})
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    pair.r = IkeV1Session.restore(
        dataclasses.replace(value, ikev1=v1),
        config(B, A),
        allocate_spi=lambda: next(_spis),
        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
    )
    assert pair.i.rekey_child(up_i.spi_in, pair.now)
    pair.flush()
    ups_i = [e for e in events(pair.i) if isinstance(e, ChildSaUp)]
    ups_r = [e for e in events(pair.r) if isinstance(e, ChildSaUp)]
    agreed = len(ups_i) == len(ups_r) == 1 and ups_i[0].keys_out == ups_r[0].keys_in
    assert not agreed


def test_a_retransmitted_request_gets_the_reply_sent_before_the_snapshot() -> None:
    pair, _, _ = mid_life()
    qm1 = [data for way, data in pair.wire if way == "i->r"][-2]  # the renewal's QM1
    qm2 = [data for way, data in pair.wire if way == "r->i"][-1]
    pair.r = through_json(pair.r, config(B, A))
    pair.r.receive_datagram(qm1, (str(A), 500), pair.now)
    assert pair.r.datagrams_to_send(pair.now) == [(qm2, (str(A), 500))]
    assert not list(events(pair.r)) and len(pair.r.children) == 2


def test_an_r_u_there_in_flight_is_resent_after_restore_and_acknowledged() -> None:
    pair, _, _ = mid_life()
    pair.now = 130.0  # 30 s after the renewal, the last message heard: DPD is due
    assert pair.i.get_timer() == 130.0
    pair.i.handle_timer(pair.now)
    assert pair.step(pair.i, drop=True) == 1  # INFORMATIONAL *{ HASH, N(R-U-THERE) } --> lost
    value = pair.i.snapshot()
    assert value.ikev1 is not None and value.ikev1.dpd_message_id is not None
    assert [r.renews for r in value.transport.requests] == [True]
    pair.i = through_json(pair.i, config(A, B, dpd=30.0))
    assert pair.i.get_timer() == value.transport.requests[0].due
    # The retransmission is a new R-U-THERE, with the next sequence number (RFC 3706 §5.5):
    # INFORMATIONAL *{ HASH, N(R-U-THERE, seq + 1) } -->  <-- *{ HASH, N(R-U-THERE-ACK) }
    sent = len(pair.wire)
    pair.advance(value.transport.requests[0].due - pair.now)
    assert [way for way, _ in pair.wire[sent:]] == ["i->r", "r->i"]
    after = pair.i.snapshot().ikev1
    assert after is not None and after.dpd_message_id is None
    assert after.dpd_seq == (value.ikev1.dpd_seq + 1) & 0xFFFFFFFF  # made anew once
    assert pair.i.state is State.ESTABLISHED


def test_only_an_established_isakmp_sa_between_quick_modes_has_a_snapshot() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    with pytest.raises(IkeStateError, match="no snapshot in state 'idle'"):
        pair.i.snapshot()
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # MM1 -->
    with pytest.raises(IkeStateError, match="'MM1 sent'"):
        pair.i.snapshot()
    pair.flush()
    pair.i.create_child(child(NET_A, NET_B), pair.now)  # QM1 queued: a Quick Mode under way
    with pytest.raises(IkeStateError, match="Quick Mode is under way"):
        pair.i.snapshot()
    pair.flush()
    pair.i.snapshot()
    pair.i.delete(pair.now)
    assert any(isinstance(e, IkeSaDown) for e in events(pair.i))
    with pytest.raises(IkeStateError, match="'closed'"):
        pair.i.snapshot()


def test_restore_refuses_a_value_of_another_connection_or_version() -> None:
    pair, _, _ = mid_life()
    value = pair.i.snapshot()
    other = dataclasses.replace(config(A, B), name="other")
    with pytest.raises(IkeStateError, match="does not fit connection 'other': its name differ"):
        IkeV1Session.restore(value, other, allocate_spi=lambda: next(_spis))
    with pytest.raises(IkeStateError, match="local identity, peer address"):
        IkeV1Session.restore(value, config(B, A), allocate_spi=lambda: next(_spis))
    v2 = dataclasses.replace(value, ike_version=2, ikev1=None)
    with pytest.raises(IkeStateError, match="is IKEv2"):
        IkeV1Session.restore(v2, config(A, B), allocate_spi=lambda: next(_spis))


def test_the_value_and_its_session_show_no_key_bytes() -> None:
    pair, _, _ = mid_life()
    value = pair.i.snapshot()
    assert value.ikev1 is not None
    keys = [value.ikev1.skeyid_d, value.ikev1.skeyid_a, value.ikev1.skeyid_e,
            value.ikev1.enc_key]  # fmt: skip
    shown = repr(value) + repr(through_json(pair.i, config(A, B, dpd=30.0)))
    for key in keys:
        assert len(key.value) >= 16
        assert key.value.hex() not in shown and repr(key.value) not in shown
        assert key.value.hex() in value.to_json()  # the store encrypts it; logs never see it
