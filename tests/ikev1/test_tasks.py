"""The IKEv1 exchanges as tasks, driven without a session: two ISAKMP SAs in memory, each
task `build`ing what its end sends and `process`ing what it receives, with no I/O of its
own; and Phase 1's authenticator as a step a session takes from outside."""

from __future__ import annotations

import itertools
import warnings

import pytest

from larval.crypto.ikev1_keys import Ikev1Prf
from larval.ike.auth_config import AuthInfo
from larval.ike.events import ChildSaUp, IkeSaDown, IkeSaUp
from larval.ike.transitions import Refusal, Transition, complete
from larval.ikev1 import ExchangeType
from larval.ikev1.auth import (
    AuthenticationError,
    Phase1Authenticator,
    Phase1Material,
    PskAuthenticator,
)
from larval.ikev1.config import phase1_choices
from larval.ikev1.framing import Ikev1Framing
from larval.ikev1.isakmp import PHASE1, Inbound, IsakmpSa, Outgoing
from larval.ikev1.message import IkeV1Message, decode_header
from larval.ikev1.payloads import IdPayload, Payload
from larval.ikev1.phase1 import MainModeInitiator, MainModeResponder, Phase1Settings
from larval.ikev1.quick_mode import QuickModeInitiator, QuickModeResponder
from larval.ikev1.session import IkeV1Session, State
from tests.seeded import SeededRandom

from .test_session import NET_A, NET_B, PSK, A, B, Pair, child, config, events

warnings.filterwarnings("ignore", category=DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

PFS = ("aes256-sha384-modp2048",)


def isakmp(initiator: bool) -> IsakmpSa:
    spis = iter(range(0x100 if initiator else 0x200, 0x300))
    cfg = config(A, B) if initiator else config(B, A)
    return IsakmpSa(
        cfg, initiator=initiator, allocate_spi=lambda: next(spis),
        child_policy=lambda tsi, tsr: child(NET_B, NET_A, PFS),
        random_bytes=SeededRandom("i" if initiator else "r"), framing=Ikev1Framing(1),
    )  # fmt: skip


def carry(out: Outgoing | None, task: MainModeResponder | MainModeInitiator | QuickModeInitiator
          | QuickModeResponder, source: IsakmpSa) -> None:  # fmt: skip
    """Hand what one task built to the other end's task, as received from `source`."""
    assert out is not None
    addr = (str(source.config.local_addr), 500)
    task.process(Inbound(decode_header(out.datagram), out.datagram, addr), 0.0)


def test_main_mode_and_quick_mode_tasks_agree_on_keys_and_do_no_io() -> None:
    i, r = isakmp(True), isakmp(False)
    settings = Phase1Settings(PskAuthenticator(PSK), 28800)
    i.spi_i = b"\x11" * 8
    mm_i = MainModeInitiator(i, settings, phase1_choices(i.config.proposals, 28800))
    mm_r = MainModeResponder(r, settings)
    r.spi_i, r.spi_r = i.spi_i, b"\x22" * 8  # the session takes CKY-I and makes CKY-R
    sent: list[Outgoing] = []
    done: list[tuple[bool, bool]] = []
    # MM1 { SA, VID } -->  <-- MM2   MM3 { KE, Ni } -->  <-- MM4   MM5 *{ IDii, HASH_I } -->
    # <-- MM6 *{ IDir, HASH_R }
    for sender, receiver, source in [(mm_i, mm_r, i), (mm_r, mm_i, r)] * 3:
        out = sender.build(0.0)
        assert out is not None
        sent.append(out)
        carry(out, receiver, source)
        done.append((mm_i.done, mm_r.done))
    # The responder is through once MM5 has proved the initiator; the initiator at MM6.
    assert done == [(False, False)] * 4 + [(False, True), (True, True)]
    assert [o.text.split()[0] for o in sent] == ["MM1", "MM2", "MM3", "MM4", "MM5", "MM6"]
    # Only what waits for an answer is resent: MM1, MM3, MM5 (Message ID 0).
    assert [o.resend for o in sent] == [PHASE1, None] * 3
    assert mm_i.build(0.0) is None and mm_r.build(0.0) is None
    assert i.keys is not None and r.keys is not None
    assert (i.keys.skeyid_d, i.keys.skeyid_a, i.keys.enc_key) == (
        r.keys.skeyid_d, r.keys.skeyid_a, r.keys.enc_key)  # fmt: skip
    assert i.p1_last == r.p1_last and i.spi_r == r.spi_r and r.peer_initial_contact
    # The tasks handed everything to their ends; nothing went out on its own.
    assert i.datagrams_to_send(0.0) == [] and r.datagrams_to_send(0.0) == []

    # QM1 *{ HASH(1), SA, Ni, KE, IDci, IDcr } -->  <-- QM2 *{ ... KE ... }  QM3 *{ HASH(3) } -->
    qm_i = QuickModeInitiator.start(i, child(NET_A, NET_B, PFS))
    assert qm_i is not None
    qm1 = qm_i.build(0.0)
    assert qm1 is not None and qm1.resend == qm_i.message_id and "KE" in qm1.text
    qm_r = QuickModeResponder(r, qm_i.message_id)
    carry(qm1, qm_r, i)
    qm2 = qm_r.build(0.0)
    assert qm2 is not None and qm2.resend == qm_i.message_id  # until QM3 comes
    assert r.next_event() is None  # the responder's inbound SA stays LARVAL until QM3
    carry(qm2, qm_i, r)
    up_i = i.next_event()
    qm3 = qm_i.build(0.0)
    assert qm3 is not None and qm3.resend is None and qm_i.done and not qm_r.done
    carry(qm3, qm_r, i)
    up_r = r.next_event()
    assert isinstance(up_i, ChildSaUp) and isinstance(up_r, ChildSaUp) and qm_r.done
    assert up_i.keys_out == up_r.keys_in and up_i.keys_in == up_r.keys_out
    assert up_i.outbound_after > 0  # the first packet waits for QM3 to land
    assert list(i.children) == [up_i.spi_in] and list(r.children) == [up_r.spi_in]
    assert i.datagrams_to_send(0.0) == [] and r.datagrams_to_send(0.0) == []


class Counting:
    """An authenticator of its own: the pre-shared key's proofs, counted, and refused
    from one end when `refuse` is set."""

    def __init__(self, psk: bytes, refuse: bool = False) -> None:
        self.psk = PskAuthenticator(psk)
        self.method = self.psk.method
        self.refuse = refuse
        self.built = self.verified = 0

    def accepts(self, method: int) -> bool:
        return self.psk.accepts(method)

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return self.psk.skeyid(prf, nonce_i, nonce_r, g_xy)

    def requests(self) -> tuple[Payload, ...]:
        return ()

    def build(self, material: Phase1Material, id_b: bytes, initiator: bool,
              asked: bool) -> tuple[Payload, ...]:  # fmt: skip
        self.built += 1
        return self.psk.build(material, id_b, initiator, asked)

    def verify(self, material: Phase1Material, peer_id: IdPayload, id_b: bytes,
               message: IkeV1Message, initiator: bool) -> AuthInfo:  # fmt: skip
        self.verified += 1
        if self.refuse:
            raise AuthenticationError("refused")
        return self.psk.verify(material, peer_id, id_b, message, initiator)

    def local_info(self, material: Phase1Material) -> AuthInfo:
        return self.psk.local_info(material)


def with_authenticators(
    auth_i: Phase1Authenticator, auth_r: Phase1Authenticator, aggressive: bool = False
) -> Pair:
    """A pair whose ends prove themselves with these authenticators."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A), aggressive=aggressive)
    spis = itertools.count(0x1000)
    pair.i = IkeV1Session(config(A, B), initiator=True, allocate_spi=lambda: next(spis),
                          aggressive=aggressive, authenticator=auth_i)  # fmt: skip
    pair.r = IkeV1Session(config(B, A), initiator=False, allocate_spi=lambda: next(spis),
                          child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                          authenticator=auth_r)  # fmt: skip
    return pair


@pytest.mark.parametrize("aggressive", [False, True])
def test_phase1_proves_each_end_with_the_authenticator_it_is_given(aggressive: bool) -> None:
    auth_i, auth_r = Counting(PSK), Counting(PSK)
    pair = with_authenticators(auth_i, auth_r, aggressive)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    pair.advance(1.0)
    assert (auth_i.built, auth_i.verified, auth_r.built, auth_r.verified) == (1, 1, 1, 1)
    assert IkeSaUp in [type(e) for e in events(pair.i)]
    assert IkeSaUp in [type(e) for e in events(pair.r)]


def test_an_authenticator_that_refuses_the_initiator_fails_phase1() -> None:
    pair = with_authenticators(PskAuthenticator(PSK), Counting(PSK, refuse=True))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    # MM5 *{ IDii, HASH_I } -->  <-- INFORMATIONAL *{ HASH, N(AUTHENTICATION_FAILED) }:
    # both ends hold the Phase 1 keys, so the refusal goes protected and the initiator reads it.
    refusal = decode_header(pair.wire[-1][1])
    assert refusal.exchange_type == ExchangeType.INFORMATIONAL and refusal.encrypted
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert [type(e) for e in events(pair.r)] == [IkeSaDown]
    downs = [e for e in events(pair.i) if isinstance(e, IkeSaDown)]
    assert [e.reason for e in downs] == ["peer refused: AUTHENTICATION_FAILED"]


def test_secrets_stay_out_of_repr() -> None:
    psk = b"do-not-print-this-psk"
    assert psk.decode() not in repr(PskAuthenticator(psk))
    i = isakmp(True)
    i.spi_i = b"\x11" * 8
    task = MainModeInitiator(i, Phase1Settings(PskAuthenticator(psk), 28800),
                             phase1_choices(i.config.proposals, 28800))  # fmt: skip
    assert psk.decode() not in repr(task) and "PskAuthenticator" not in repr(task)


def test_complete_fills_every_missing_row_by_the_rule_and_keeps_the_others() -> None:
    table: dict[tuple[str, int], Transition[str, str] | Refusal[int]] = {
        ("a", 1): Transition("step", "b"),
    }
    complete(table, lambda s, n: Refusal(f"{s}{n}"), ("a", "b"), (1, 2))
    assert table == {
        ("a", 1): Transition("step", "b"),
        ("a", 2): Refusal("a2"),
        ("b", 1): Refusal("b1"),
        ("b", 2): Refusal("b2"),
    }
