"""Two IKEv1 sessions in memory with a fake clock, each step annotated with its message."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import warnings
from collections.abc import Iterator

import pytest

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.events import (
    ChildSaDown,
    ChildSaFailed,
    ChildSaUp,
    Event,
    IkeSaDown,
    IkeSaReauthDue,
    IkeSaUp,
)
from larval.ike.identity import identity
from larval.ikev1 import (
    ExchangeType,
    IkeEncryption,
    IkeHash,
    NotifyPayload,
    NotifyType,
    PayloadType,
    SaPayload,
    decode_message,
)
from larval.ikev1.constants import IkeAttr
from larval.ikev1.errors import IkeV1ProtocolError
from larval.ikev1.informational import Informational
from larval.ikev1.phase1 import MainModeResponder
from larval.ikev1.quick_mode import QuickModeInitiator, QuickModeResponder
from larval.ikev1.session import IkeV1Session, State

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
NET_A, NET_B = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")
PSK = b"interop-test-psk-0123456789"

# cryptography warns about the MODP groups; they are what IKEv1 peers still use.
warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def config(
    local: ipaddress.IPv4Address,
    remote: ipaddress.IPv4Address,
    *,
    psk: bytes = PSK,
    proposals: tuple[str, ...] = ("aes128-sha256-ecp256",),
    encap: bool = False,
    dpd: float = 0.0,
) -> IkeConfig:
    return IkeConfig(
        name="s2s",
        local_addr=local,
        remote_addr=remote,
        local_id=identity(str(local)),
        remote_id=identity(str(remote)),
        psk=psk,
        proposals=tuple(parse_ike_proposal(p) for p in proposals),
        encap=encap,
        dpd_delay=dpd,
    )


def child(
    local: ipaddress.IPv4Network,
    remote: ipaddress.IPv4Network,
    esp: tuple[str, ...] = ("aes128gcm16",),
) -> ChildConfig:
    return ChildConfig("net", tuple(esp_proposal_transforms(p) for p in esp), (local,), (remote,))


class Pair:
    """An initiator at A and a responder at B, joined by a wire the test controls."""

    def __init__(
        self,
        init_cfg: IkeConfig,
        resp_cfg: IkeConfig,
        resp_child: ChildConfig | None,
        *,
        aggressive: bool = False,
        init_child: ChildConfig | None = None,
        encrypt_am3: bool = True,
    ) -> None:
        spis = itertools.count(0x1000)
        self.now = 0.0
        self.allocated: list[int] = []

        def allocate() -> int:
            spi = next(spis)
            self.allocated.append(spi)
            return spi

        self.i = IkeV1Session(
            init_cfg,
            initiator=True,
            allocate_spi=allocate,
            aggressive=aggressive,
            child_policy=lambda tsi, tsr: init_child,
            encrypt_am3=encrypt_am3,
        )
        self.r = IkeV1Session(
            resp_cfg,
            initiator=False,
            allocate_spi=allocate,
            child_policy=lambda tsi, tsr: resp_child,
        )
        self.wire: list[tuple[str, bytes]] = []

    def step(self, sender: IkeV1Session, drop: bool = False) -> int:
        """Carry what `sender` has queued to the other end; how many datagrams."""
        other, source = (self.r, A) if sender is self.i else (self.i, B)
        addr = (str(source), sender.local_port)
        out = sender.datagrams_to_send(self.now)
        for data, _ in out:
            self.wire.append(("i->r" if sender is self.i else "r->i", data))
            if not drop:
                other.receive_datagram(data, addr, self.now)
        return len(out)

    def flush(self) -> int:
        """Carry datagrams both ways until quiet."""
        moved = 0
        while True:
            n = self.step(self.i) + self.step(self.r)
            if not n:
                return moved
            moved += n

    def advance(self, seconds: float) -> None:
        """Let time pass, firing each session's timer when it falls due."""
        end = self.now + seconds
        while True:
            due = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            for session in (self.i, self.r):
                timer = session.get_timer()
                if timer is not None and timer <= self.now:
                    session.handle_timer(self.now)
            self.flush()
        self.now = end


def events(session: IkeV1Session) -> Iterator[Event]:
    while (e := session.next_event()) is not None:
        yield e


def test_main_mode_and_quick_mode_both_sides_agree() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    assert pair.step(pair.i) == 1  # MM1 { SA, VID, VID } -->
    assert pair.step(pair.r) == 1  # <-- MM2 { SA, VID, VID }
    assert pair.step(pair.i) == 1  # MM3 { KE, Ni, NAT-D, NAT-D } -->
    assert pair.step(pair.r) == 1  # <-- MM4 { KE, Nr, NAT-D, NAT-D }
    assert pair.step(pair.i) == 1  # MM5 *{ IDii, HASH_I, N(INITIAL_CONTACT) } -->
    assert pair.step(pair.r) == 1  # <-- MM6 *{ IDir, HASH_R }
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert pair.r.peer_initial_contact
    assert pair.step(pair.i) == 1  # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->
    assert pair.step(pair.r) == 1  # <-- QM2 *{ HASH(2), SA, Nr, IDci, IDcr }
    assert pair.step(pair.i) == 1  # QM3 *{ HASH(3) } -->
    ev_i, ev_r = list(events(pair.i)), list(events(pair.r))
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    ci, cr = ev_i[1], ev_r[1]
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert ci.spi_out == cr.spi_in and ci.spi_in == cr.spi_out
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert ci.keys_in != ci.keys_out  # each direction keyed with its own SPI
    assert len(ci.keys_out.encr_key) == 20 and ci.keys_out.integ_key == b""  # AES-128-GCM
    assert ci.local_ts == (NET_A,) and ci.remote_ts == (NET_B,)
    assert cr.local_ts == (NET_B,) and cr.remote_ts == (NET_A,)
    assert not ci.natted and not cr.natted


def established(pair: Pair, first_child: ChildConfig) -> tuple[ChildSaUp, ChildSaUp]:
    """Main Mode and the first Quick Mode, carried whole; the two ChildSaUp events."""
    pair.i.initiate(first_child, pair.now)
    pair.flush()
    ups_i = [e for e in events(pair.i) if isinstance(e, ChildSaUp)]
    ups_r = [e for e in events(pair.r) if isinstance(e, ChildSaUp)]
    assert len(ups_i) == 1 and len(ups_r) == 1
    return ups_i[0], ups_r[0]


def test_quick_mode_with_pfs_keys_agree_and_differ_from_without() -> None:
    esp = ("aes256-sha384-modp2048",)
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A, esp))
    # MM1..MM6, then QM1 *{ HASH(1), SA, Ni, KE, IDci, IDcr } -->
    # <-- QM2 *{ HASH(2), SA, Nr, KE, IDci, IDcr }   QM3 *{ HASH(3) } -->
    ci, cr = established(pair, child(NET_A, NET_B, esp))
    assert [t.id for t in ci.suite] == [12, 13, 14, 0]  # AES-CBC, SHA-384, MODP-2048, no ESN
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert len(ci.keys_out.encr_key) == 32 and len(ci.keys_out.integ_key) == 48
    qm1 = [data for way, data in pair.wire if way == "i->r"][3]
    assert decode_header_exchange(qm1) == ExchangeType.QUICK_MODE

    plain = Pair(config(A, B), config(B, A), child(NET_B, NET_A, ("aes256-sha384",)))
    pi, pr = established(plain, child(NET_A, NET_B, ("aes256-sha384",)))
    assert [t.id for t in pi.suite] == [12, 13, 0]
    assert pi.keys_out == pr.keys_in and pi.keys_in == pr.keys_out


def decode_header_exchange(data: bytes) -> int:
    return data[18]


def test_responder_role_has_the_same_keys_the_other_way() -> None:
    # The responder's second Quick Mode, initiated by it over the same ISAKMP SA.
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), init_child=child(NET_A, NET_B))
    established(pair, child(NET_A, NET_B))
    pair.r.create_child(child(NET_B, NET_A), pair.now)
    assert pair.step(pair.r) == 1  # <-- QM1 *{ HASH(1), SA, Ni, IDci, IDcr }
    assert pair.step(pair.i) == 1  # QM2 *{ HASH(2), SA, Nr, IDci, IDcr } -->
    assert pair.step(pair.r) == 1  # <-- QM3 *{ HASH(3) }
    (ur,) = events(pair.r)
    (ui,) = events(pair.i)
    assert isinstance(ur, ChildSaUp) and isinstance(ui, ChildSaUp)
    assert ur.keys_out == ui.keys_in and ur.keys_in == ui.keys_out
    assert ur.local_ts == (NET_B,) and ui.local_ts == (NET_A,)
    assert len(pair.i.children) == len(pair.r.children) == 2


def test_aggressive_mode() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), aggressive=True)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    assert pair.step(pair.i) == 1  # AM1 { SA, KE, Ni, IDii, VID, VID } -->
    assert pair.step(pair.r) == 1  # <-- AM2 { SA, KE, Nr, IDir, HASH_R, NAT-D, NAT-D, VID, VID }
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.AM2_SENT
    # AM3 *{ HASH_I, NAT-D, NAT-D, N(INITIAL_CONTACT) } -->: nothing answers it, so QM1
    # waits one AM1 -> AM2 round trip (at least 20 ms) for AM3 to reach the responder.
    assert pair.step(pair.i) == 1
    assert pair.r.state is State.ESTABLISHED
    assert pair.i.get_timer() == pytest.approx(0.02)
    pair.advance(0.02)  # QM1 -->, <-- QM2, QM3 -->
    ev_i, ev_r = list(events(pair.i)), list(events(pair.r))
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    ci, cr = ev_i[1], ev_r[1]
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert pair.r.peer_initial_contact
    assert decode_header_exchange(pair.wire[0][1]) == ExchangeType.AGGRESSIVE


def test_second_of_two_ike_transforms_chosen() -> None:
    init = config(A, B, proposals=("aes256-sha384-ecp384", "aes128-sha256-modp2048"))
    resp = config(B, A, proposals=("aes128-sha256-modp2048",))
    pair = Pair(init, resp, child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # MM1 { SA(T1 aes256/sha384/ecp384, T2 aes128/sha256/modp2048) } -->
    pair.step(pair.r)  # <-- MM2 { SA(T2) }
    mm2 = decode_message(pair.wire[1][1])
    sa = mm2.first(SaPayload)
    assert sa is not None and len(sa.proposals[0].transforms) == 1
    chosen = sa.proposals[0].transforms[0]
    assert chosen.number == 2
    assert chosen.attribute(IkeAttr.ENCRYPTION_ALGORITHM) == IkeEncryption.AES_CBC
    assert chosen.attribute(IkeAttr.KEY_LENGTH) == 128
    assert chosen.attribute(IkeAttr.HASH_ALGORITHM) == IkeHash.SHA2_256
    assert chosen.attribute(IkeAttr.GROUP_DESCRIPTION) == 14
    assert chosen.attribute(IkeAttr.LIFE_DURATION) == 28800
    pair.flush()
    up = [e for e in events(pair.i) if isinstance(e, IkeSaUp)]
    assert [t.id for t in up[0].suite] == [12, 5, 12, 14]


def test_no_common_ike_transform_is_refused() -> None:
    pair = Pair(config(A, B), config(B, A, proposals=("aes256-sha512-ecp384",)), None)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()  # MM1 -->  <-- INFORMATIONAL { N(NO_PROPOSAL_CHOSEN) }
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    down = [e for e in events(pair.i) if isinstance(e, IkeSaDown)]
    assert down and "NO_PROPOSAL_CHOSEN" in down[0].reason and down[0].by_peer


def test_wrong_psk_refused_nothing_established() -> None:
    pair = Pair(config(A, B), config(B, A, psk=b"another-psk"), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    for _ in range(4):
        pair.step(pair.i)  # MM1, MM3 -->
        pair.step(pair.r)  # <-- MM2, MM4
    # MM5 *{ IDii, HASH_I } --> does not verify (or even decrypt) with the responder's keys:
    # <-- INFORMATIONAL { N(AUTHENTICATION_FAILED) }
    informational = decode_message(pair.wire[-1][1])
    assert informational.exchange_type == ExchangeType.INFORMATIONAL
    notify = informational.first(NotifyPayload)
    assert notify is not None and notify.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert pair.r.state is State.CLOSED and pair.i.state is State.CLOSED
    ev_i, ev_r = list(events(pair.i)), list(events(pair.r))
    assert not any(isinstance(e, (IkeSaUp, ChildSaUp)) for e in ev_i + ev_r)
    assert [type(e) for e in ev_r] == [IkeSaDown]
    assert [type(e) for e in ev_i] == [ChildSaFailed, IkeSaDown]


def test_a_resent_message_is_answered_from_the_cache_without_reaching_the_exchange(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.r.state is State.ESTABLISHED
    mm = [d for _, d in pair.wire if d[18] == ExchangeType.MAIN_MODE]
    mm5, mm6 = mm[4], mm[5]
    list(events(pair.r))

    def exchange(*args: object) -> None:
        raise AssertionError("a retransmitted message reached the exchange")

    for task in (MainModeResponder, QuickModeResponder, QuickModeInitiator, Informational):
        monkeypatch.setattr(task, "process", exchange)
    # MM5 again: its bytes are known, so MM6 goes again (RFC 2408 §5), and nothing else.
    pair.r.receive_datagram(mm5, (str(A), IKE_PORT), 1.0)
    assert [d for d, _ in pair.r.datagrams_to_send(1.0)] == [mm6]
    assert list(events(pair.r)) == []


def test_lost_message_retransmitted_and_lost_answer_replayed() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i, drop=True)  # MM1 --> lost
    assert pair.r.state is State.IDLE
    pair.advance(4.0)  # MM1 again (retransmit_timeout) -->  <-- MM2, MM3 -->, ... all through
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    mm1s = [d for way, d in pair.wire if way == "i->r" and d[18] == ExchangeType.MAIN_MODE]
    assert mm1s[0] == mm1s[1]  # the same bytes again

    # A lost answer: QM2 vanishes, the initiator resends QM1, the responder replays QM2.
    pair.i.create_child(child(NET_A, NET_B), pair.now)
    list(events(pair.i)), list(events(pair.r))
    pair.step(pair.i)  # QM1 -->
    pair.step(pair.r, drop=True)  # <-- QM2, lost
    sent = len(pair.wire)
    pair.advance(4.0)  # QM1 again -->  <-- the same QM2   QM3 -->
    again = pair.wire[sent:]
    qm1, qm2 = pair.wire[sent - 2][1], pair.wire[sent - 1][1]
    assert ("i->r", qm1) in again  # resent by the initiator
    assert [d for w, d in again if w == "r->i"] == [qm2, qm2]  # resent, and replayed
    assert any(isinstance(e, ChildSaUp) for e in events(pair.i))
    assert any(isinstance(e, ChildSaUp) for e in events(pair.r))


def test_phase1_given_up_after_retransmissions() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i, drop=True)  # MM1 --> lost, and every retransmission too
    while (timer := pair.i.get_timer()) is not None and pair.i.state is not State.CLOSED:
        pair.now = timer
        pair.i.handle_timer(pair.now)
        pair.step(pair.i, drop=True)
    assert pair.i.state is State.CLOSED
    assert [type(e) for e in events(pair.i)] == [ChildSaFailed, IkeSaDown]


def test_qm3_delayed_responder_inbound_sa_stays_larval_until_it_arrives() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    for _ in range(3):
        pair.step(pair.i)  # MM1, MM3, MM5 -->
        pair.step(pair.r)  # <-- MM2, MM4, MM6
    list(events(pair.i)), list(events(pair.r))
    assert len(pair.allocated) == 1  # the initiator's inbound SPI, in the QM1 it queued
    pair.step(pair.i)  # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->
    assert len(pair.allocated) == 2  # the responder GETSPIs at QM1: a LARVAL SA
    responder_spi = pair.allocated[-1]
    pair.step(pair.r)  # <-- QM2
    # The initiator has both SAs now and may send ESP (the seed's window)...
    (ui,) = events(pair.i)
    assert isinstance(ui, ChildSaUp) and ui.spi_out == responder_spi
    held = pair.i.datagrams_to_send(pair.now)  # QM3 *{ HASH(3) } --> held back
    assert len(held) == 1
    # ... while the responder has no ChildSaUp: its inbound SA is still LARVAL.
    assert list(events(pair.r)) == []
    assert responder_spi not in pair.r.children
    pair.now += 1.0
    pair.r.receive_datagram(held[0][0], (str(A), IKE_PORT), pair.now)  # QM3 arrives
    (ur,) = events(pair.r)
    assert isinstance(ur, ChildSaUp) and ur.spi_in == responder_spi
    assert ur.keys_in == ui.keys_out and ur.keys_out == ui.keys_in
    # QM2 is no longer resent: what is left is the reauthentication, hours away.
    assert (pair.r.get_timer() or 0) > pair.now + 3600


def test_qm3_lost_responder_resends_qm2_and_initiator_replays_qm3() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    for _ in range(4):
        pair.step(pair.i)  # MM1, MM3, MM5, QM1 -->
        pair.step(pair.r)  # <-- MM2, MM4, MM6, QM2
    pair.step(pair.i, drop=True)  # QM3 --> lost
    assert not any(isinstance(e, ChildSaUp) for e in events(pair.r))
    pair.advance(4.0)  # <-- QM2 again   QM3 again -->
    assert any(isinstance(e, ChildSaUp) for e in events(pair.r))


def test_delete_ipsec_sa_and_isakmp_sa() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    ci, cr = established(pair, child(NET_A, NET_B))
    # INFORMATIONAL *{ HASH(1), D(ESP, SPI) } -->
    pair.i.delete_child(ci.spi_in, pair.now)
    pair.flush()
    assert list(events(pair.i)) == [ChildSaDown(ci.spi_in, ci.spi_out, by_peer=False)]
    assert list(events(pair.r)) == [ChildSaDown(cr.spi_in, cr.spi_out, by_peer=True)]
    assert not pair.i.children and not pair.r.children
    # A second pair of SAs, then <-- INFORMATIONAL *{ HASH(1), D(ESP) }, *{ HASH(1), D(ISAKMP) }
    pair.i.create_child(child(NET_A, NET_B), pair.now)
    pair.flush()
    list(events(pair.i)), list(events(pair.r))
    pair.r.delete(pair.now)
    pair.flush()
    assert [type(e) for e in events(pair.r)] == [ChildSaDown, IkeSaDown]
    down = list(events(pair.i))
    assert [type(e) for e in down] == [ChildSaDown, IkeSaDown]
    assert isinstance(down[1], IkeSaDown) and down[1].by_peer
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED


def test_dpd_answers_a_live_peer_and_notices_a_vanished_one() -> None:
    pair = Pair(config(A, B, dpd=30.0), config(B, A), child(NET_B, NET_A))
    established(pair, child(NET_A, NET_B))
    assert pair.i.peer_dpd and pair.r.peer_dpd
    # 30 s of quiet: INFORMATIONAL *{ HASH, N(R-U-THERE, seq) } -->
    #                <-- INFORMATIONAL *{ HASH, N(R-U-THERE-ACK, seq) }
    sent = len(pair.wire)
    pair.advance(31.0)
    assert [w for w, _ in pair.wire[sent:]] == ["i->r", "r->i"]
    assert pair.i.state is State.ESTABLISHED
    assert pair.i.get_timer() == 30.0 + 30.0  # the next check, from the ACK heard at 30 s
    # The responder vanishes: R-U-THERE, resent with back-off, then the SA is declared dead.
    pair.r = IkeV1Session(config(B, A), initiator=False, allocate_spi=lambda: 0)
    pair.r.state = State.CLOSED
    pair.advance(600.0)
    assert pair.i.state is State.CLOSED
    ev = list(events(pair.i))
    assert [type(e) for e in ev] == [ChildSaDown, IkeSaDown]
    assert isinstance(ev[1], IkeSaDown) and "dead" in ev[1].reason


def test_encap_forces_udp_encapsulation_and_port_4500() -> None:
    pair = Pair(config(A, B, encap=True), config(B, A), child(NET_B, NET_A))
    ci, cr = established(pair, child(NET_A, NET_B))
    assert pair.i.natted and pair.r.natted
    assert pair.i.remote[1] == NAT_T_PORT
    assert ci.natted and cr.natted
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    # MM5 onwards went to port 4500 (RFC 3947 §4), and the responder followed.
    assert pair.r.remote[1] == NAT_T_PORT


def test_responder_lifetime_shortens_the_initiators_sa() -> None:
    short = ChildConfig("net", (esp_proposal_transforms("aes128gcm16"),), (NET_B,), (NET_A,),
                        rekey_time=1500, life_time=1800)  # fmt: skip
    pair = Pair(config(A, B), config(B, A), short)
    # QM1 { ..., SA(SA_LIFE_DURATION 3960) } -->
    # <-- QM2 { ..., N(RESPONDER-LIFETIME, SA_LIFE_DURATION 1800) }
    ci, cr = established(pair, child(NET_A, NET_B))
    assert ci.child.life_time == 1800 and ci.child.rekey_time == 1620  # rekey at 90 %
    assert cr.child.life_time == 1800
    assert ci.keys_out == cr.keys_in


def test_aggressive_mode_am3_in_the_clear_accepted() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), aggressive=True,
                encrypt_am3=False)  # fmt: skip
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # AM1 { SA, KE, Ni, IDii } -->
    pair.step(pair.r)  # <-- AM2 { SA, KE, Nr, IDir, HASH_R }
    pair.step(pair.i)  # AM3 { HASH_I, NAT-D, NAT-D, N(INITIAL_CONTACT) } -->
    am3 = decode_message(pair.wire[2][1])  # flag E clear: it decodes without keys
    assert am3.exchange_type == ExchangeType.AGGRESSIVE
    pair.advance(0.02)  # QM1 --> (a round trip after AM3), <-- QM2, QM3 -->
    ci, cr = (next(e for e in events(s) if isinstance(e, ChildSaUp)) for s in (pair.i, pair.r))
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out


def test_aggressive_mode_am3_lost_responder_resends_am2() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), aggressive=True)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # AM1 -->
    pair.step(pair.r)  # <-- AM2
    pair.step(pair.i, drop=True)  # AM3 --> lost
    assert pair.r.state is State.AM2_SENT
    pair.advance(0.02)  # QM1 --> (a round trip after AM3): B, without AM3, drops it
    assert pair.r.state is State.AM2_SENT
    # <-- AM2 again (4 s)   AM3 replayed -->   QM1 again (4.02 s) -->   <-- QM2   QM3 -->
    pair.advance(4.1)
    assert pair.r.state is State.ESTABLISHED
    assert any(isinstance(e, ChildSaUp) for e in events(pair.r))


def test_quick_mode_refused_by_policy_fails_the_child_only() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    list(events(pair.i)), list(events(pair.r))
    other = ipaddress.ip_network("10.9.0.0/16")
    pair.i.create_child(child(NET_A, other), pair.now)
    # QM1 *{ HASH(1), SA, Ni, IDci, IDcr(10.9.0.0/16) } -->
    # <-- INFORMATIONAL *{ HASH(1), N(INVALID_ID_INFORMATION, ESP, SPI) }
    assert pair.flush() == 2
    (failed,) = events(pair.i)
    assert isinstance(failed, ChildSaFailed) and "INVALID_ID_INFORMATION" in failed.reason
    # QM1 is no longer resent: what is left is the reauthentication, hours away.
    assert (pair.i.get_timer() or 0) > pair.now + 3600
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED


def test_reauthentication_falls_due_before_the_lifetime_that_deletes_the_isakmp_sa() -> None:
    pair = Pair(dataclasses.replace(config(A, B), rekey_time=100.0), config(B, A),
                child(NET_B, NET_A))  # fmt: skip
    pair.i.ike_lifetime = 110  # offered; the responder's own is 8 hours: the shorter holds
    established(pair, child(NET_A, NET_B))
    assert pair.i.choice is not None and pair.r.choice is not None
    assert pair.i.choice.lifetime == pair.r.choice.lifetime == 110

    def due() -> tuple[bool, bool]:
        return (any(isinstance(e, IkeSaReauthDue) for e in events(pair.i)),
                any(isinstance(e, IkeSaReauthDue) for e in events(pair.r)))  # fmt: skip

    # The initiator reauthenticates at its rekey_time less up to a tenth of it; the
    # responder, bound only by the lifetime, at 97% of it less up to 1%: after the initiator.
    pair.advance(89.9)
    assert due() == (False, False)
    pair.advance(100.1 - pair.now)
    assert due() == (True, False)
    pair.advance(105.5 - pair.now)
    assert due() == (False, False)
    pair.advance(106.8 - pair.now)
    assert due() == (False, True)  # and the initiator's was reported once
    # Nobody reauthenticated: at 110 s the ISAKMP SA is deleted with its CHILD_SA.
    pair.advance(110.1 - pair.now)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    down_i, down_r = list(events(pair.i)), list(events(pair.r))
    assert [type(e) for e in down_i] == [ChildSaDown, IkeSaDown]
    assert isinstance(down_i[1], IkeSaDown) and down_i[1].reason == "ISAKMP SA lifetime expired"
    assert ChildSaDown in [type(e) for e in down_r]
    assert pair.i.get_timer() is None and pair.r.get_timer() is None


def test_a_replaced_isakmp_sa_hands_over_its_child_sas_and_deletes_itself_later() -> None:
    old = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    up_i, _ = established(old, child(NET_A, NET_B))
    new = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    new.now = old.now
    new.i.initiate(None, new.now)  # Main Mode alone
    new.flush()
    assert [type(e) for e in events(new.i)] == [type(e) for e in events(new.r)] == [IkeSaUp]
    for replacement, replaced in ((new.i, old.i), (new.r, old.r)):
        assert replacement.adopt_children(replaced) == [c for c in replacement.children]
        replaced.retire(old.now)
        assert replaced.state is State.REKEYED and not replaced.children
        with pytest.raises(IkeV1ProtocolError):
            replaced.create_child(child(NET_A, NET_B), old.now)  # starts nothing
    assert list(new.i.children) == [up_i.spi_in]
    list(events(old.i)), list(events(old.r))
    # Ten seconds later the replaced SA sends D(ISAKMP) alone: no CHILD_SA goes with it.
    old.advance(10.0)
    assert old.i.state is State.CLOSED and old.r.state is State.CLOSED
    assert [type(e) for e in events(old.i)] == [IkeSaDown]
    assert [type(e) for e in events(old.r)] == [IkeSaDown]
    # The CHILD_SA is the new ISAKMP SA's to delete now.
    new.i.delete_child(up_i.spi_in, new.now)
    assert new.flush() == 1
    assert [type(e) for e in events(new.r)] == [ChildSaDown]


def fragments_on(wire: list[tuple[str, bytes]], way: str) -> int:
    return sum(1 for w, d in wire if w == way and d[16] == PayloadType.FRAGMENT)


def test_main_mode_and_quick_mode_in_fragments_both_ways() -> None:
    """Both ends announce fragmentation (in MM1 and MM2); with a 200-byte fragment size
    every longer message after that goes as Fragment messages, is put back together, and
    the keys agree: MM3 and MM4 (KE, nonce, NAT-D) in 2 each, QM1 and QM2 (SA, nonce, KE,
    IDs) in 3 each."""
    esp = ("aes256-sha384-modp2048",)
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A, esp))
    pair.i.fragment_size = pair.r.fragment_size = 200
    ci, cr = established(pair, child(NET_A, NET_B, esp))
    assert pair.i.peer_fragmentation and pair.r.peer_fragmentation
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert fragments_on(pair.wire, "i->r") == fragments_on(pair.wire, "r->i") == 5
    assert all(len(d) <= 200 for _, d in pair.wire)


def test_no_fragments_to_a_peer_that_did_not_announce_them() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.fragment_size = 200
    pair.r.fragmentation = False  # takes no fragments, and so announces none
    established(pair, child(NET_A, NET_B))
    assert not pair.i.peer_fragmentation and pair.r.peer_fragmentation
    assert fragments_on(pair.wire, "i->r") == fragments_on(pair.wire, "r->i") == 0


def test_a_fragmented_message_is_retransmitted_whole_and_answered_once() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.fragment_size = pair.r.fragment_size = 200
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # MM1 -->
    pair.step(pair.r)  # <-- MM2
    mm3 = pair.i.datagrams_to_send(pair.now)
    assert len(mm3) > 1  # MM3 in fragments
    # The first fragment is lost: the responder holds the rest and answers nothing.
    for data, _ in mm3[1:]:
        pair.r.receive_datagram(data, (str(A), IKE_PORT), pair.now)
    assert pair.r.datagrams_to_send(pair.now) == []
    pair.now = 4.0
    pair.i.handle_timer(pair.now)
    again = pair.i.datagrams_to_send(pair.now)
    assert [d for d, _ in again] == [d for d, _ in mm3]  # every fragment, as before
    for data, _ in again:
        pair.r.receive_datagram(data, (str(A), IKE_PORT), pair.now)
    mm4 = pair.r.datagrams_to_send(pair.now)
    assert len(mm4) > 1 and pair.r.state is State.MM4_SENT  # MM4, in fragments, once
    for data, _ in mm4:
        pair.i.receive_datagram(data, (str(B), IKE_PORT), pair.now)
    pair.flush()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED


def test_a_quick_mode_ikev1_cannot_carry_reserves_no_spi() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    established(pair, child(NET_A, NET_B))
    reserved = list(pair.allocated)
    # RFC 4304's ESN attribute is not offered, and a suite with ESN only leaves nothing.
    pair.i.create_child(child(NET_A, NET_B, ("aes128gcm16-esn",)), pair.now)
    (failed,) = events(pair.i)
    assert isinstance(failed, ChildSaFailed) and "IKEv1 can carry" in failed.reason
    assert pair.allocated == reserved  # no GETSPI, so no LARVAL SA waiting 90 s for nothing
    assert pair.i.datagrams_to_send(pair.now) == []


def test_a_message_too_long_for_sixteen_fragments_goes_whole() -> None:
    """With 12 bytes a fragment, MM3 and MM4 (over 192 bytes) would need more than 16: they
    go whole, the shorter messages in fragments, and the exchange completes."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.fragment_size = pair.r.fragment_size = 48
    established(pair, child(NET_A, NET_B))
    # Whole: MM1 (the peer's fragmentation VID is not known yet), MM3 and MM4.
    whole = [(way, len(d)) for way, d in pair.wire if len(d) > 48]
    assert [way for way, _ in whole] == ["i->r", "i->r", "r->i"], whole
    assert all(size > 16 * 12 for _, size in whole[1:])
    assert fragments_on(pair.wire, "i->r") > 0 and fragments_on(pair.wire, "r->i") > 0


@pytest.mark.parametrize(("rtt", "wait"), [(0.0, 0.02), (0.15, 0.15), (2.0, 0.3)])
def test_aggressive_mode_qm1_waits_a_round_trip_after_am3(rtt: float, wait: float) -> None:
    """A threaded responder may take a QM1 sent right behind AM3 first and drop it: QM1
    leaves one AM1 -> AM2 round trip after AM3 (20 ms to 300 ms)."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), aggressive=True)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.step(pair.i)  # AM1 -->
    pair.now = rtt
    pair.step(pair.r)  # <-- AM2
    assert pair.step(pair.i) == 1  # AM3 --> alone
    assert pair.i.get_timer() == pytest.approx(rtt + wait)
    pair.i.handle_timer(rtt + wait - 0.001)
    assert pair.i.datagrams_to_send(rtt + wait - 0.001) == []
    pair.now = rtt + wait
    pair.i.handle_timer(pair.now)
    assert pair.step(pair.i) == 1  # QM1 -->
    pair.flush()
    assert ChildSaUp in [type(e) for e in events(pair.i)]
