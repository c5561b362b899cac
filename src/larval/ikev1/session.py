"""One ISAKMP SA, sans-I/O: Main or Aggressive Mode with a pre-shared key, Quick Mode with
and without PFS, and Informational exchanges (DELETE, INITIAL-CONTACT, DPD), both roles.

Theory of operation
-------------------
Driven exactly like IKEv2's `IkeSession`: `receive_datagram(data, addr, now)`,
`handle_timer(now)` and the user calls `initiate`, `create_child`, `delete`,
`delete_child`; drained with `datagrams_to_send(now)`, `get_timer()` and `next_event()`.
The events and the configuration are those of both versions (`larval.ike.events`,
`larval.ike.config`), so a key manager drives both versions the same way;
`larval.ikev1.config` maps the configured suites onto IKEv1 attributes. Two callbacks
reach the key manager: `allocate_spi` (a GETSPI: the SPI is LARVAL before it goes on the
wire) and, for a responder, `child_policy(tsi, tsr)` (an inverse ACQUIRE), called with
the networks of the Quick Mode IDs.

Phase 1 (RFC 2409 §5, §5.4)::

    Main Mode                               Aggressive Mode
    MM1 { SA, VID }              -->        AM1 { SA, KE, Ni, IDii, VID }     -->
        <-- MM2 { SA, VID }                     <-- AM2 { SA, KE, Nr, IDir, HASH_R, NAT-D }
    MM3 { KE, Ni, NAT-D }        -->        AM3 *{ HASH_I, NAT-D, N }          -->
        <-- MM4 { KE, Nr, NAT-D }
    MM5 *{ IDii, HASH_I, N }     -->
        <-- MM6 *{ IDir, HASH_R }

Quick Mode (§5.5)::

    QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr }  -->
        <-- QM2 *{ HASH(2), SA, Nr, [KE], IDci, IDcr }
    QM3 *{ HASH(3) }                            -->

The initiator has both SAs at QM2 and reports `ChildSaUp` before it sends QM3; it may
send ESP at once. The responder's inbound SPI was reserved (LARVAL) when QM1 arrived, and
it reports `ChildSaUp` only when QM3 does: an ESP packet can reach its LARVAL SA before
the key manager fills it in, which the stack holds and releases then.

Phase 1 has no message IDs, so a retransmission is recognised by its bytes: every reply
is kept by the digest of the message it answered and sent again when that message comes
again. A message that waits for an answer (MM1, MM3, MM5, AM1, QM1) is resent with
exponential back-off until answered or given up; so is one whose answer would not be
answered (AM2 until AM3, QM2 until QM3). All of that, the Message IDs and the fragments
are the transport's (`larval.ike.transport`, with IKEv1's `RandomIds` and
`larval.ikev1.framing`).

Rules
-----
1. What a received message may do is the table `TRANSITIONS`, keyed by (state, exchange,
   whether the message opens an exchange or continues one): the step that takes it and
   the state once it is taken, or a named `Refusal`. The table is total over `State` x
   `ExchangeType` x `Turn`.
2. Input the table refuses raises `IkeV1OutOfPlace`, naming state and input; an exchange
   that refuses a message raises `IkeV1ExchangeError` with its notification. `_dispatch`
   catches both, in one place, logs one line, and answers (in the clear before Phase 1
   is done, protected after: RFC 2409 §5.7) or drops the message. A message that fails
   to decode or decrypt is dropped before that, except MM5 at the responder, where it
   means the keys differ (the pre-shared key, in practice) and is answered with
   AUTHENTICATION_FAILED.
3. The state changes in `_enter` only: to the table's next state once a message is taken
   (unless the ISAKMP SA closed), and otherwise when the user opens or deletes the ISAKMP
   SA, it is replaced or restored, or it closes.

Lifetime and reauthentication: the ISAKMP SA lives for the LIFE_DURATION agreed in Phase
1 (the initiator offers `ike_lifetime`; a responder takes the shorter of the offer and
its own). IKEv1 has no rekey exchange, so before that an end reauthenticates, as
strongSwan does: the session reports `IkeSaReauthDue` at `config.rekey_time` less up to a
tenth of it (or, when the lifetime is shorter, at 90% of it for the Phase 1 initiator and
97% less up to 1% for the responder, so that a peer that offered the lifetime goes first:
two new ISAKMP SAs at once can leave the ends holding the CHILD_SAs on different ones),
and the key manager starts a new Main Mode with the same peer. The new ISAKMP SA takes
over the CHILD_SAs of the one it replaces (`adopt_children`), which `retire` marks
REKEYED: it answers what is in flight (Quick Modes, DPD) but starts nothing, and sends its
DELETE after `REAUTH_DELETE_DELAY`, as strongSwan's responder does, so that the peer has
moved its CHILD_SAs across first. An ISAKMP SA that reaches its lifetime is deleted with
the CHILD_SAs it still holds.

Liveness (RFC 3706): both ends announce the DPD vendor ID; with `dpd_delay` set, an end
that has heard nothing for that long sends R-U-THERE with the next sequence number and
resends it, each time with a new one, until R-U-THERE-ACK echoes it; no answer after the
configured tries closes the ISAKMP SA.

Logging (`larval.ike`): one line per message, ``s2s[CKY-I/CKY-R]: sending MM3 [ KE No
NAT-D NAT-D ]``; payload names only, never keys or nonces.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import logging
import secrets
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from larval.crypto.dh import DhKeyPair
from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_keys import ChildSaKeys
from larval.crypto.ike_transforms import Transform as Ikev2Transform
from larval.crypto.ike_transforms import TransformType, encr_key_size, integ_key_size
from larval.crypto.ikev1_keys import (
    Ikev1Cipher,
    Ikev1Prf,
    Phase1Keys,
    derive_phase1,
    hash1,
    hash2,
    hash3,
    hash_i,
    hash_r,
    ikev1_dh_group,
    informational_hash,
    informational_iv,
    phase2_iv,
    quick_mode_keymat,
    skeyid_psk,
)
from larval.crypto.randomness import RandomBytes, system_random
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress, IPNetwork
from larval.ike.events import (
    ChildSaDown,
    ChildSaFailed,
    ChildSaUp,
    Event,
    IkeSaDown,
    IkeSaReauthDue,
    IkeSaUp,
)
from larval.ike.sa import Phase
from larval.ike.state import ChildSaState, IkeSaState, IkeStateError, Ikev1State, Secret
from larval.ike.transport import (
    IkeTransport,
    OverTransport,
    RandomIds,
    Verdict,
)
from larval.wire import Buffer

from .config import EspChoice, Phase1Choice, esp_choices, phase1_choices
from .constants import (
    SIT_IDENTITY_ONLY,
    VID_DPD,
    VID_FRAGMENTATION_CAPABLE,
    VID_NAT_T_RFC3947,
    EncapsulationMode,
    ExchangeType,
    IdType,
    IpsecAttr,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
    is_fragmentation_vid,
)
from .errors import IkeV1DecodeError, IkeV1ExchangeError, IkeV1OutOfPlace, IkeV1ProtocolError
from .fragments import FRAGMENT_SIZE
from .framing import Ikev1Framing
from .message import (
    IkeV1Header,
    IkeV1Message,
    decode_encrypted,
    decode_header,
    decode_message,
    encode_chain,
    encode_encrypted,
)
from .payloads import (
    DeletePayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    VendorIdPayload,
)
from .render import payload_names
from .rules import check_payloads
from .sa_payload import Attribute, Proposal, SaPayload, Transform

__all__ = ["TRANSITIONS", "IkeV1Session", "Refusal", "State", "Step", "Transition", "Turn"]

Address = tuple[str, int]
log = logging.getLogger("larval.ike")
#: Bounds of the wait after a message nothing answers (AM3, QM3), for what must follow it
#: only once the peer has it: QM1, the first ESP on a new outbound SA (seconds).
DELIVERY_WAIT_MIN, DELIVERY_WAIT_MAX = 0.02, 0.3
NONCE_SIZE = 32
IKE_LIFETIME = 28800  # seconds; RFC 2407 §4.5's default, strongSwan's ikelifetime 3h is 10800
PHASE1 = 0  # the Message ID of every Phase 1 message (RFC 2408 §3.1)
REAUTH_DELETE_DELAY = 10.0  # seconds a replaced ISAKMP SA stays (strongSwan's adopt job: 10)


class State(enum.Enum):
    IDLE = "idle"
    MM1_SENT = "MM1 sent"
    MM2_SENT = "MM2 sent"
    MM3_SENT = "MM3 sent"
    MM4_SENT = "MM4 sent"
    MM5_SENT = "MM5 sent"
    AM1_SENT = "AM1 sent"
    AM2_SENT = "AM2 sent"
    ESTABLISHED = "established"
    REKEYED = "rekeyed"  # replaced by a newer ISAKMP SA, deleted soon
    CLOSED = "closed"


#: Each state as `larval.ike.sa.Phase` names it for the key manager.
_PHASES = {
    State.IDLE: Phase.IDLE,
    State.MM1_SENT: Phase.CONNECTING,
    State.MM2_SENT: Phase.CONNECTING,
    State.MM3_SENT: Phase.CONNECTING,
    State.MM4_SENT: Phase.CONNECTING,
    State.MM5_SENT: Phase.CONNECTING,
    State.AM1_SENT: Phase.CONNECTING,
    State.AM2_SENT: Phase.CONNECTING,
    State.ESTABLISHED: Phase.ESTABLISHED,
    State.REKEYED: Phase.REPLACED,
    State.CLOSED: Phase.CLOSED,
}

MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE
_INFO = ExchangeType.INFORMATIONAL


class Turn(enum.Enum):
    """Where a received message stands in its exchange. IKEv1 has no response flag: a
    Phase 1 message with CKY-R zero opens Main or Aggressive Mode, a Quick Mode with a
    Message ID no exchange under way holds opens one, and an Informational exchange is one
    message; everything else continues an exchange under way."""

    OPENS = "opening"
    CONTINUES = "continuing"


class Step(enum.Enum):
    """What takes a message the table lets in."""

    MAIN_MODE_RESPONDER = "Main Mode responder"  # MM1: a new responder
    AGGRESSIVE_RESPONDER = "Aggressive Mode responder"  # AM1: a new responder
    PHASE1 = "the Phase 1 exchange under way"
    QUICK_MODE_RESPONDER = "Quick Mode responder"  # QM1: a new responder
    QUICK_MODE = "the Quick Mode with its Message ID"
    INFORMATIONAL = "Informational"


@dataclass(frozen=True, slots=True)
class Transition:
    """A message the state allows: who takes it, and the state once it is taken (None:
    the state stays)."""

    step: Step
    next: State | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message the state does not allow, and why: dropped and logged (RFC 2408 §5: no
    answer to what cannot be authenticated)."""

    reason: str


Input = tuple[State, ExchangeType, Turn]
_OPENS, _CONTINUES = Turn.OPENS, Turn.CONTINUES

#: (state, exchange, opening|continuing) -> what takes the message and the next state,
#: or why it is refused. Total over State x ExchangeType x Turn; an exchange type that
#: is not in the enum is refused like one of its members with no row.
TRANSITIONS: dict[Input, Transition | Refusal] = {
    (State.IDLE, MM, _OPENS): Transition(Step.MAIN_MODE_RESPONDER, State.MM2_SENT),
    (State.MM1_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM3_SENT),  # MM2
    (State.MM2_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM4_SENT),  # MM3
    (State.MM3_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM5_SENT),  # MM4
    (State.MM4_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # MM5
    (State.MM5_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # MM6
    (State.IDLE, AM, _OPENS): Transition(Step.AGGRESSIVE_RESPONDER, State.AM2_SENT),
    (State.AM1_SENT, AM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # AM2
    (State.AM2_SENT, AM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # AM3
    (State.ESTABLISHED, QM, _OPENS): Transition(Step.QUICK_MODE_RESPONDER),
    (State.ESTABLISHED, QM, _CONTINUES): Transition(Step.QUICK_MODE),
    # A replaced ISAKMP SA answers what the peer starts on it until its DELETE.
    (State.REKEYED, QM, _OPENS): Transition(Step.QUICK_MODE_RESPONDER),
    (State.REKEYED, QM, _CONTINUES): Transition(Step.QUICK_MODE),
}
for _state in State:
    if _state is not State.CLOSED:
        # RFC 2409 §5.7: an Informational exchange is one message, taken in every state
        # (before Phase 1 is done, only a refusal in the clear means anything).
        TRANSITIONS[(_state, _INFO, _OPENS)] = Transition(Step.INFORMATIONAL)


def _refusal(state: State, exchange: ExchangeType, turn: Turn) -> Refusal:
    """The rows the table does not spell out, by rule; none is answered."""
    if state is State.CLOSED:
        return Refusal("the ISAKMP SA is closed")
    if exchange in (MM, AM):
        if state in (State.ESTABLISHED, State.REKEYED):
            return Refusal("Phase 1 is done")
        if turn is Turn.OPENS:
            return Refusal("Phase 1 is under way")
        return Refusal("not the message this Phase 1 exchange awaits")
    if exchange is QM:
        return Refusal("no Quick Mode before Phase 1 is done")
    if exchange is _INFO:
        return Refusal("an Informational exchange is one message")
    return Refusal("an exchange larval does not take")


for _key in itertools.product(State, ExchangeType, Turn):
    TRANSITIONS.setdefault(_key, _refusal(*_key))


class _ChildSa:
    __slots__ = ("config", "renewed", "spi_in", "spi_out", "suite")

    def __init__(
        self, config: ChildConfig, spi_in: int, spi_out: int, suite: tuple[Ikev2Transform, ...]
    ) -> None:
        self.config = config
        self.spi_in = spi_in
        self.spi_out = spi_out
        self.suite = suite
        self.renewed = False  # a newer Quick Mode for the same child replaces it


@dataclass
class _QuickMode:
    """One Quick Mode exchange in progress, by its Message ID (RFC 2409 §5.5)."""

    message_id: int
    initiator: bool
    iv: bytes  # the CBC IV of the exchange's next message (Appendix B)
    spi_in: int
    nonce_i: bytes
    child: ChildConfig | None = None
    offered: tuple[EspChoice, ...] = ()
    dh: DhKeyPair | None = None
    local_ts: IPNetwork | None = None
    remote_ts: IPNetwork | None = None
    nonce_r: bytes = b""
    up: ChildSaUp | None = None  # responder: reported when QM3 arrives


class IkeV1Session(OverTransport):
    """One ISAKMP SA between `config.local_addr` and `config.remote_addr`."""

    def __init__(
        self,
        config: IkeConfig,
        *,
        initiator: bool,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None = None,
        random_bytes: RandomBytes = system_random,
        aggressive: bool = False,
        ike_lifetime: int = IKE_LIFETIME,
        initial_contact: bool = True,
        encrypt_am3: bool = True,
        fragmentation: bool = True,
        fragment_size: int = FRAGMENT_SIZE,
    ) -> None:
        """`aggressive`: an initiator uses Aggressive Mode (a responder answers either);
        `ike_lifetime`: the Phase 1 LIFE_DURATION offered, in seconds; `initial_contact`:
        send N(INITIAL-CONTACT) with HASH_I; `encrypt_am3`: AM3 with flag E (a responder
        accepts either); `fragmentation`: announce and take IKEv1 fragments, and send a
        message longer than `fragment_size` bytes as fragments to a peer that announced
        them too (`larval.ikev1.fragments`)."""
        self.config = config
        self.initiator = initiator
        self.aggressive = aggressive
        self.ike_lifetime = ike_lifetime
        self._allocate_spi = allocate_spi
        self._child_policy = child_policy
        self._random = random_bytes
        self._initial_contact = initial_contact
        self.encrypt_am3 = encrypt_am3
        self._enter(State.IDLE)
        self.spi_i = b""  # CKY-I (RFC 2408 §3.1)
        self.spi_r = b""  # CKY-R
        # Message IDs, retransmission, the replies to retransmitted messages and fragments.
        self._framing = Ikev1Framing(
            int.from_bytes(random_bytes(2), "big"),
            enabled=fragmentation,
            fragment_size=fragment_size,
            exchange=AM if aggressive else MM,
        )
        self._transport: IkeTransport[bytes] = IkeTransport.of(
            config, RandomIds(random_bytes), self._framing, self._name
        )
        self.local_port = IKE_PORT
        self.natted = False
        self.peer_dpd = self.peer_nat_t = False
        self.peer_initial_contact = False
        self.children: dict[int, _ChildSa] = {}  # by inbound SPI
        self.choice: Phase1Choice | None = None
        self._events: deque[Event] = deque()
        self._pending_child: ChildConfig | None = None
        self._pending_child_at: float | None = None  # Aggressive Mode: QM1 after AM3 lands
        self._am_rtt: float | None = None  # AM1 -> AM2, if AM1 was sent once
        # Phase 1 material.
        self._sai_b = b""
        self._dh: DhKeyPair | None = None
        self._g_xi = self._g_xr = b""
        self._nonce_i = self._nonce_r = b""
        self._prf: Ikev1Prf | None = None
        self._cipher: Ikev1Cipher | None = None
        self._keys: Phase1Keys | None = None
        self._p1_iv = b""  # chained through MM5/MM6 or AM3 (Appendix B)
        self._p1_last = b""  # the last Phase 1 CBC block: Phase 2 IVs start from it
        self._idii_b = b""  # Aggressive Mode responder: IDii from AM1, for HASH_I in AM3
        self._quick: dict[int, _QuickMode] = {}
        self._deadline: float | None = None  # half-open
        self._last_heard = 0.0
        self._dpd_seq = int.from_bytes(random_bytes(4), "big") & 0x7FFFFFFF
        self._dpd: int | None = None  # the Message ID of the R-U-THERE awaiting its ACK
        self.established_at: float | None = None
        self._source: Address | None = None  # where the message being taken came from
        self._reauth_at: float | None = None  # IkeSaReauthDue
        self._expire_at: float | None = None  # the agreed lifetime: DELETE
        self._retire_at: float | None = None  # REKEYED: DELETE

    version = 1

    @property
    def phase(self) -> Phase:
        return _PHASES[self.state]

    @property
    def suite(self) -> tuple[Ikev2Transform, ...]:
        """The Phase 1 suite chosen, in IKEv2 numbering; () until then."""
        return self.choice.suite() if self.choice is not None else ()

    @property
    def fragmentation(self) -> bool:
        """This end announces and takes IKEv1 fragments."""
        return self._framing.enabled

    @fragmentation.setter
    def fragmentation(self, enabled: bool) -> None:
        self._framing.enabled = enabled

    @property
    def peer_fragmentation(self) -> bool:
        """The peer announced the FRAGMENTATION vendor ID."""
        return self._framing.peer

    @property
    def fragment_size(self) -> int:
        """The longest message sent whole to a peer that takes fragments."""
        return self._framing.fragment_size

    @fragment_size.setter
    def fragment_size(self, size: int) -> None:
        self._framing.fragment_size = size

    @property
    def rekey_at(self) -> float | None:
        """When this ISAKMP SA is due for reauthentication (None: not scheduled)."""
        return self._reauth_at

    @property
    def expires_at(self) -> float | None:
        """When this ISAKMP SA's lifetime ends, or a replaced one is deleted."""
        return self._retire_at if self._retire_at is not None else self._expire_at

    def _name(self) -> str:
        return (
            f"{self.config.name}[{(self.spi_i or bytes(8)).hex()}/{(self.spi_r or bytes(8)).hex()}]"
        )

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        spis = f"{self.spi_i.hex()}/{self.spi_r.hex()}"
        return f"<IkeV1Session {self.config.name} {role} {spis} {self.state.value}>"

    # -- the five-method surface ---------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for t in (self._transport.get_timer(), self._deadline) if t is not None]
        dpd = self._dpd_due()
        if dpd is not None:
            times.append(dpd)
        times += [t for t in (self._reauth_at, self._expire_at, self._retire_at,
                              self._pending_child_at) if t is not None]  # fmt: skip
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for gave_up in self._transport.handle_timer(now):
            reason = f"no answer to {gave_up.text} after {gave_up.transmissions} transmissions"
            if gave_up.message_id == PHASE1:
                self._close(reason, now)
                return
            if gave_up.message_id == self._dpd:
                self._close("peer is dead: no R-U-THERE-ACK", now)
                return
            qm = self._quick.pop(gave_up.message_id, None)
            if qm is not None and qm.initiator and qm.child is not None:
                self._events.append(ChildSaFailed(qm.child, reason))
        if self._pending_child_at is not None and now >= self._pending_child_at:
            self._pending_child_at = None
            if self.state is State.ESTABLISHED and self._pending_child is not None:
                child, self._pending_child = self._pending_child, None
                self._quick_mode_1(child, now)
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if self.state is not State.ESTABLISHED:
                self._close("half-open ISAKMP SA timed out", now)
                return
        if self._expire_at is not None and now >= self._expire_at:
            self.delete(now, "ISAKMP SA lifetime expired")
            return
        if self._retire_at is not None and now >= self._retire_at:
            self.delete(now, "replaced by a new ISAKMP SA")
            return
        if self._reauth_at is not None and now >= self._reauth_at:
            self._reauth_at = None
            if self.state is State.ESTABLISHED:
                log.info("%s: ISAKMP SA due for reauthentication", self._name())
                self._events.append(IkeSaReauthDue())
        dpd = self._dpd_due()
        if dpd is not None and now >= dpd:
            self._dpd_check(now)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        try:
            self._receive(data, addr, now)
        except (IkeV1ProtocolError, IkeCryptoError) as exc:
            # A message that does not decode, decrypt or authenticate is dropped (RFC 2408
            # §5: an unauthenticated notify would let anyone tear the SA down).
            log.info("%s: dropped a message: %s", self._name(), exc)

    # -- user calls ------------------------------------------------------------------------

    def initiate(self, child: ChildConfig | None, now: float) -> None:
        """Start Main (or Aggressive) Mode; Quick Mode for `child` follows Phase 1."""
        if not self.initiator or self.state is not State.IDLE:
            raise IkeV1ProtocolError(
                NotifyType.INVALID_EXCHANGE_TYPE, f"cannot initiate in {self.state}"
            )
        choices = phase1_choices(self.config.proposals, self.ike_lifetime)
        if not choices:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "no proposal IKEv1 can carry")
        self._pending_child = child
        self.spi_i = self._random(8)
        self._deadline = now + self.config.half_open_timeout
        if self.aggressive:
            # RFC 2409 §5: the KE goes with the offer, so every transform has its group.
            group = choices[0].group
            choices = [c for c in choices if c.group == group]
        sa = SaPayload(
            (
                Proposal(
                    1,
                    ProtocolId.ISAKMP,
                    b"",
                    tuple(c.transform(n) for n, c in enumerate(choices, 1)),
                ),
            ),
            situation=SIT_IDENTITY_ONLY,
        )
        self._sai_b = sa.encode_body()
        vids = self._vids()
        if not self.aggressive:
            self._enter(State.MM1_SENT)
            self._send(MM, (sa, *vids), now, resend=PHASE1, text="MM1")
            return
        self._dh = ikev1_dh_group(choices[0].group).generate(self._random)
        self._g_xi = self._dh.public_bytes
        self._nonce_i = self._random(NONCE_SIZE)
        self._enter(State.AM1_SENT)
        payloads: tuple[Payload, ...] = (
            sa,
            KePayload(self._g_xi),
            NoncePayload(self._nonce_i),
            self._id_payload(),
            *vids,
        )
        self._send(AM, payloads, now, resend=PHASE1, text="AM1")

    def create_child(self, child: ChildConfig, now: float) -> None:
        """QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->  another pair of IPsec SAs."""
        if self.state is not State.ESTABLISHED:
            raise IkeV1ProtocolError(
                NotifyType.INVALID_EXCHANGE_TYPE, f"no Quick Mode in {self.state}"
            )
        self._quick_mode_1(child, now)

    def rekey_child(self, spi_in: int, now: float) -> bool:
        """IKEv1 has no rekey exchange: a new Quick Mode for the same child, and the old SAs
        run out at their hard lifetime (RFC 2409 §5.5). Both SAs of the pair expire, and
        either end may start it: only the first soft EXPIRE of a CHILD_SA that no newer
        Quick Mode replaced yet starts one."""
        child = self.children.get(spi_in)
        if child is None or child.renewed:
            return False
        child.renewed = True
        self.create_child(child.config, now)
        return True

    def delete(self, now: float, reason: str = "deleted") -> None:
        """D(ESP) for every IPsec SA, then D(ISAKMP): everything goes (RFC 2408 §3.15)."""
        if self.state in (State.ESTABLISHED, State.REKEYED):
            for child in list(self.children.values()):
                self.delete_child(child.spi_in, now)
            cookies = self.spi_i + self.spi_r
            self._send_informational((DeletePayload(ProtocolId.ISAKMP, 16, (cookies,)),), now)
        self._close(reason, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        """D(ESP, our inbound SPI): the peer deletes its outbound SA, we ours."""
        child = self.children.pop(spi_in, None)
        if child is None or self.state not in (State.ESTABLISHED, State.REKEYED):
            return
        payload = DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),))
        self._send_informational((payload,), now)
        self._events.append(ChildSaDown(child.spi_in, child.spi_out, by_peer=False))

    def adopt_children(self, old: IkeV1Session) -> list[int]:
        """Take over the CHILD_SAs of `old`, an ISAKMP SA with the same peer that this one
        replaces: their DELETE, renewal and status go through this one now. Returns their
        inbound SPIs."""
        moved = list(old.children)
        # A Quick Mode that finished on `old` after it was replaced renews this one's.
        names = {child.config.name for child in old.children.values()}
        for child in self.children.values():
            child.renewed = child.renewed or child.config.name in names
        self.children.update(old.children)
        old.children.clear()
        return moved

    def retire(self, now: float, delay: float = REAUTH_DELETE_DELAY) -> None:
        """A newer ISAKMP SA with the peer has taken over: no more DPD, reauthentication or
        Quick Modes of our own; D(ISAKMP) after `delay`."""
        if self.state is not State.ESTABLISHED:
            return
        log.info("%s: ISAKMP SA replaced, deleting it in %g s", self._name(), delay)
        self._enter(State.REKEYED)
        self._reauth_at = None
        if self._dpd is not None:
            self._transport.cancel(self._dpd)
            self._dpd = None
        self._retire_at = now + delay

    def reauth_failed(self, now: float) -> None:
        """The new ISAKMP SA meant to replace this one did not come up: try again halfway
        to the end of this one's lifetime, if there is time left (strongSwan retries)."""
        if self.state is not State.ESTABLISHED or self._expire_at is None:
            return
        left = self._expire_at - now
        if left > 2 * self.config.retransmit_timeout:
            self._reauth_at = now + left / 2

    # -- as a value (larval.ike.state) ----------------------------------------------------

    def snapshot(self) -> IkeSaState:
        """This ISAKMP SA and its CHILD_SAs as a value, for `restore`. Only an established
        ISAKMP SA between Quick Modes has one (a Quick Mode under way holds a DH secret
        and half an exchange): raises `IkeStateError` otherwise. An R-U-THERE awaiting
        its ACK is kept, and resent as before."""
        if self.state is not State.ESTABLISHED:
            raise IkeStateError(
                f"{self._name()}: no snapshot in state {self.state.value!r}: "
                "only an established ISAKMP SA has one"
            )
        if self._quick or self._pending_child is not None:
            raise IkeStateError(f"{self._name()}: no snapshot while a Quick Mode is under way")
        choice, keys = self.choice, self._keys
        assert choice is not None and keys is not None and self.established_at is not None
        v1 = Ikev1State(
            aggressive=self.aggressive,
            ike_lifetime=self.ike_lifetime,
            encryption=choice.encryption,
            key_bits=choice.key_bits,
            hash=choice.hash,
            group=choice.group,
            lifetime=choice.lifetime,
            skeyid_d=Secret(keys.skeyid_d),
            skeyid_a=Secret(keys.skeyid_a),
            skeyid_e=Secret(keys.skeyid_e),
            enc_key=Secret(keys.enc_key),
            phase1_last_block=self._p1_last,
            fragmentation=self.fragmentation,
            peer_fragmentation=self.peer_fragmentation,
            fragment_size=self.fragment_size,
            fragment_id=self._framing.fragment_id,
            peer_dpd=self.peer_dpd,
            peer_nat_t=self.peer_nat_t,
            peer_initial_contact=self.peer_initial_contact,
            dpd_seq=self._dpd_seq,
            dpd_message_id=self._dpd,
            last_heard=self._last_heard,
        )
        children = tuple(
            ChildSaState(c.spi_in, c.spi_out, c.suite, replace(c.config, reference=None), c.renewed)
            for c in self.children.values()
        )
        remote_id = self.config.remote_id
        return IkeSaState(
            ike_version=self.version,
            name=self.config.name,
            initiator=self.initiator,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            local_id=(int(self.config.local_id[0]), self.config.local_id[1]),
            remote_id=None if remote_id is None else (int(remote_id[0]), remote_id[1]),
            suite=self.suite,
            local_port=self.local_port,
            natted=self.natted,
            established_at=self.established_at,
            rekey_at=self._reauth_at,
            expires_at=self._expire_at,
            transport=self._transport.snapshot(),
            children=children,
            ikev1=v1,
        )

    @classmethod
    def restore(
        cls,
        value: IkeSaState,
        config: IkeConfig,
        *,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None = None,
        random_bytes: RandomBytes = system_random,
    ) -> IkeV1Session:
        """The ISAKMP SA `snapshot` made `value` of, established, with its CHILD_SAs: it
        continues the old one's exchanges (Quick Mode, Informational, DPD) with the same
        cookies, keys and IVs. `config` must be the connection it is of (`IkeStateError`
        otherwise); the callbacks are as for a new session."""
        v1 = value.ikev1
        if value.ike_version != cls.version or v1 is None:
            raise IkeStateError(f"IKE SA state of {value.name!r} is IKEv{value.ike_version}")
        value.check_config(config)
        session = cls(
            config,
            initiator=value.initiator,
            allocate_spi=allocate_spi,
            child_policy=child_policy,
            random_bytes=random_bytes,
            aggressive=v1.aggressive,
            ike_lifetime=v1.ike_lifetime,
            fragmentation=v1.fragmentation,
            fragment_size=v1.fragment_size,
        )
        session._resume(value, v1)
        return session

    def _resume(self, value: IkeSaState, v1: Ikev1State) -> None:
        self.spi_i, self.spi_r = value.spi_i, value.spi_r
        self.local_port, self.natted = value.local_port, value.natted
        self.peer_dpd, self.peer_nat_t = v1.peer_dpd, v1.peer_nat_t
        self.peer_initial_contact = v1.peer_initial_contact
        self._framing.peer, self._framing.fragment_id = v1.peer_fragmentation, v1.fragment_id
        self.choice = Phase1Choice(v1.encryption, v1.key_bits, v1.hash, v1.group, v1.lifetime)
        self._prf = Ikev1Prf(self.choice.hash_name)
        # SKEYID and the first Phase 1 IV served Phase 1 only, and are not kept.
        self._keys = Phase1Keys(
            b"", v1.skeyid_d.value, v1.skeyid_a.value, v1.skeyid_e.value, v1.enc_key.value, b""
        )
        self._cipher = Ikev1Cipher(self.choice.encryption, v1.enc_key.value)
        self._p1_last = v1.phase1_last_block
        self.established_at = value.established_at
        self._reauth_at, self._expire_at = value.rekey_at, value.expires_at
        self._last_heard, self._dpd_seq, self._dpd = v1.last_heard, v1.dpd_seq, v1.dpd_message_id
        for c in value.children:
            child = _ChildSa(c.config, c.spi_in, c.spi_out, c.suite)
            child.renewed = c.renewed
            self.children[c.spi_in] = child
        renew = {self._dpd: self._r_u_there} if self._dpd is not None else {}
        self._transport.restore(value.transport, renew)
        self._enter(State.ESTABLISHED)
        log.info("%s: ISAKMP SA resumed with %d CHILD_SAs", self._name(), len(self.children))

    # -- receiving -------------------------------------------------------------------------

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self._transport.receive(data, addr) is Verdict.REPLAYED:
            # No message IDs in Phase 1: the same bytes again are a retransmission, and
            # get the same answer (RFC 2408 §5, as RFC 7296 §2.1).
            log.debug("%s: retransmitted message, answer again", self._name())
            return
        header = decode_header(data)
        self._source = addr
        responder_start = not self.initiator and self.state is State.IDLE
        if responder_start:
            self.remote = addr  # answer where the first message came from, port and all
        if not responder_start and header.cookie_i != self.spi_i:
            raise IkeV1ProtocolError(NotifyType.INVALID_COOKIE, "not this ISAKMP SA's CKY-I")
        if self.spi_r and header.cookie_r != self.spi_r:
            raise IkeV1ProtocolError(NotifyType.INVALID_COOKIE, "not this ISAKMP SA's CKY-R")
        if addr[1] == NAT_T_PORT and self.remote[1] != NAT_T_PORT:
            self.remote = (self.remote[0], NAT_T_PORT)  # RFC 3947 §4: the peer floated
        sent = self._transport.mark()
        if header.next_payload == PayloadType.FRAGMENT:
            whole = self._transport.unframe(data)
            if whole is not None:
                log.debug("%s: reassembled a message of %d bytes", self._name(), len(whole))
                self._receive(whole, addr, now)
        elif not self._dispatch(header, data, addr, now):
            return  # dropped: the same bytes again are looked at again
        self._transport.remember(data, sent)

    def _turn(self, header: IkeV1Header) -> Turn:
        """Whether the message opens an exchange here or continues one (`Turn`)."""
        exchange = header.exchange_type
        if exchange in (MM, AM):
            return Turn.OPENS if header.cookie_r == bytes(8) else Turn.CONTINUES
        if exchange is QM and header.message_id in self._quick:
            return Turn.CONTINUES
        return Turn.OPENS

    def _dispatch(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> bool:
        """Hand a message to what the table names, and enter the table's next state; what
        the table or an exchange refuses is answered or dropped here, in one place. False
        when it was dropped."""
        state, exchange, turn = self.state, header.exchange_type, self._turn(header)
        key = (state, exchange, turn)
        entry = TRANSITIONS.get(key) or _refusal(*key)  # an exchange type with no name
        try:
            if isinstance(entry, Refusal):
                text = f"{exchange.name} ({turn.value}) not allowed in state {state.name}"
                raise IkeV1OutOfPlace(
                    NotifyType.INVALID_EXCHANGE_TYPE, f"{text}: {entry.reason}", answered=False
                )
            self._take(entry.step, header, data, addr, now)
        except IkeV1ExchangeError as error:
            if not isinstance(error, IkeV1OutOfPlace) and exchange is not _INFO:
                self._last_heard = now  # refused, but the peer's, and alive
            self._refused(exchange, error, now)
            return error.answered
        if exchange is not _INFO:
            self._last_heard = now
        if entry.next is not None and self.state is not State.CLOSED:
            self._enter(entry.next)
            if entry.next is State.ESTABLISHED:
                self._established(now)
        return True

    def _take(self, step: Step, header: IkeV1Header, data: bytes, addr: Address,
              now: float) -> None:  # fmt: skip
        match step:
            case Step.MAIN_MODE_RESPONDER:
                self._mm1(header, data, addr, now)
            case Step.AGGRESSIVE_RESPONDER:
                self._am1(header, data, addr, now)
            case Step.PHASE1:
                continuing = {
                    State.MM1_SENT: self._mm2,
                    State.MM2_SENT: self._mm3,
                    State.MM3_SENT: self._mm4,
                    State.MM4_SENT: self._mm5,
                    State.MM5_SENT: self._mm6,
                    State.AM1_SENT: self._am2,
                    State.AM2_SENT: self._am3,
                }
                continuing[self.state](header, data, addr, now)
            case Step.QUICK_MODE_RESPONDER | Step.QUICK_MODE:
                self._quick_mode(header, data, now)
            case Step.INFORMATIONAL:
                self._informational(header, data, now)

    def _refused(self, exchange: ExchangeType, error: IkeV1ExchangeError, now: float) -> None:
        """Answer a refused message with its notification, or drop it; then close the
        ISAKMP SA if the refusal ends it. Before Phase 1 is done the notification goes in
        the clear about the ISAKMP SA (RFC 2409 §5.7: the peer cannot read anything we
        would encrypt); after, protected, about the IPsec SA it names."""
        answered = "" if error.answered else ", dropped"
        log.info("%s: %s refused in state %s: %s%s", self._name(), exchange.name,
                 self.state.name, error, answered)  # fmt: skip
        if error.answered and self.state in (State.ESTABLISHED, State.REKEYED):
            notify = NotifyPayload(error.notify, ProtocolId.ESP, error.spi)
            self._send_informational((notify,), now)
        elif error.answered:
            self._refuse(error.notify)
        if error.close is not None:
            self._close(error.close, now)

    def _enter(self, state: State) -> None:
        """The one place the state changes: to the table's next state when a message is
        taken, and otherwise when the user opens, replaces or deletes the ISAKMP SA, it is
        restored, or it closes."""
        self.state = state

    # -- Main Mode (RFC 2409 §5) -----------------------------------------------------------

    def _mm1(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """MM1 { SA, VID } -->  responder: choose, answer MM2 { SA, VID }."""
        message = self._clear(data, 1)
        self.spi_i, self.spi_r = header.cookie_i, self._random(8)
        self._deadline = now + self.config.half_open_timeout
        self._vendor_ids(message)
        answer = self._choose_phase1(message)
        self._send(MM, (answer, *self._vids()), now, text="MM2")

    def _mm2(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """<-- MM2 { SA, VID }: MM3 { KE, Ni, NAT-D } -->"""
        message = self._clear(data, 2)
        self._accept_phase1(header, message)
        assert self.choice is not None
        self._dh = ikev1_dh_group(self.choice.group).generate(self._random)
        self._g_xi = self._dh.public_bytes
        self._nonce_i = self._random(NONCE_SIZE)
        self._transport.answered(PHASE1)
        payloads: tuple[Payload, ...] = (
            KePayload(self._g_xi),
            NoncePayload(self._nonce_i),
            *self._nat_d(),
        )
        self._send(MM, payloads, now, resend=PHASE1, text="MM3")

    def _mm3(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """MM3 { KE, Ni, NAT-D } -->  responder: MM4 { KE, Nr, NAT-D }, keys."""
        message = self._clear(data, 3)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None and self.choice is not None
        self._dh = ikev1_dh_group(self.choice.group).generate(self._random)
        self._g_xi, self._g_xr = ke.data, self._dh.public_bytes
        self._nonce_i, self._nonce_r = nonce.data, self._random(NONCE_SIZE)
        self._check_nat(message, addr)
        self._derive(self._dh.shared_secret(ke.data))
        payloads: tuple[Payload, ...] = (
            KePayload(self._g_xr),
            NoncePayload(self._nonce_r),
            *self._nat_d(),
        )
        self._send(MM, payloads, now, text="MM4")

    def _mm4(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """<-- MM4 { KE, Nr, NAT-D }: keys, then MM5 *{ IDii, HASH_I, N(INITIAL_CONTACT) } -->"""
        message = self._clear(data, 4)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None and self._dh is not None
        self._g_xr, self._nonce_r = ke.data, nonce.data
        self._check_nat(message, addr)
        self._derive(self._dh.shared_secret(ke.data))
        if self.natted:
            self._float()
        self._transport.answered(PHASE1)
        idii = self._id_payload()
        payloads: list[Payload] = [idii, HashPayload(self._hash_i(idii.encode_body()))]
        if self._initial_contact:
            payloads.append(self._notify(NotifyType.INITIAL_CONTACT))
        datagram, self._p1_iv = self._seal(self._message(MM, payloads), self._p1_iv)
        names = payload_names(payloads)
        self._send_datagram(datagram, now, resend=PHASE1, text=f"MM5 [ {names} ]")

    def _mm5(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """MM5 *{ IDii, HASH_I } -->  responder: check, MM6 *{ IDir, HASH_R }."""
        try:
            message, next_iv = self._open(data, self._p1_iv)
            check_payloads(message, 5, encrypted=True)
        except IkeV1ProtocolError:
            # Keys that differ decrypt to noise: in practice the pre-shared keys differ.
            raise _auth_failed("MM5 does not decrypt (pre-shared keys differ?)") from None
        self._authenticate_i(message)
        self._p1_iv = next_iv
        idir = self._id_payload()
        payloads = (idir, HashPayload(self._hash_r(idir.encode_body())))
        datagram, self._p1_last = self._seal(self._message(MM, payloads), self._p1_iv)
        self._send_datagram(datagram, now, text="MM6 [ ID HASH ]")

    def _mm6(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """<-- MM6 *{ IDir, HASH_R }: check; the ISAKMP SA is up."""
        message, next_iv = self._open(data, self._p1_iv)
        check_payloads(message, 6, encrypted=True)
        self._authenticate_r(message)
        self._p1_last = next_iv
        self._transport.answered(PHASE1)

    # -- Aggressive Mode (RFC 2409 §5) -----------------------------------------------------

    def _am1(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """AM1 { SA, KE, Ni, IDii, VID } -->  responder: AM2 { SA, KE, Nr, IDir, HASH_R }."""
        message = self._clear(data, 1)
        self.spi_i, self.spi_r = header.cookie_i, self._random(8)
        self._deadline = now + self.config.half_open_timeout
        self._vendor_ids(message)
        answer = self._choose_phase1(message)
        assert self.choice is not None
        ke, nonce, idii = (
            message.first(KePayload),
            message.first(NoncePayload),
            message.first(IdPayload),
        )
        assert ke is not None and nonce is not None and idii is not None
        if not self._peer_id_ok(idii):
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, "unexpected IDii",
                                     close="unexpected IDii")  # fmt: skip
        self._idii_b = _body_of(message, PayloadType.ID)
        self._dh = ikev1_dh_group(self.choice.group).generate(self._random)
        self._g_xi, self._g_xr = ke.data, self._dh.public_bytes
        self._nonce_i, self._nonce_r = nonce.data, self._random(NONCE_SIZE)
        self._derive(self._dh.shared_secret(ke.data))
        idir = self._id_payload()
        payloads: tuple[Payload, ...] = (
            answer,
            KePayload(self._g_xr),
            NoncePayload(self._nonce_r),
            idir,
            HashPayload(self._hash_r(idir.encode_body())),
            *self._nat_d(),
            *self._vids(),
        )
        # Nothing answers AM3: AM2 is resent until it comes (RFC 2408 §2.5).
        self._send(AM, payloads, now, resend=PHASE1, text="AM2")

    def _am2(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """<-- AM2 { SA, KE, Nr, IDir, HASH_R, NAT-D }: AM3 *{ HASH_I, NAT-D, N } -->"""
        message = self._clear(data, 2)
        self._accept_phase1(header, message)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None and self._dh is not None
        self._vendor_ids(message)
        self._g_xr, self._nonce_r = ke.data, nonce.data
        self._derive(self._dh.shared_secret(ke.data))
        self._authenticate_r(message)
        self._check_nat(message, addr)
        if self.natted:
            self._float()
        am1 = self._transport.answered(PHASE1)
        self._am_rtt = am1.round_trip(now) if am1 is not None else None
        payloads: list[Payload] = [HashPayload(self._hash_i(self._id_payload().encode_body()))]
        payloads += self._nat_d()
        if self._initial_contact:
            payloads.append(self._notify(NotifyType.INITIAL_CONTACT))
        # RFC 2409 §5 shows AM3 in the clear; strongSwan and most others encrypt it. In
        # the clear, Phase 2 IVs start from the first Phase 1 IV (Appendix B).
        message = self._message(AM, payloads)
        if self.encrypt_am3:
            datagram, self._p1_last = self._seal(message, self._p1_iv)
        else:
            datagram, self._p1_last = message.encode(), self._p1_iv
        names = payload_names(payloads)
        self._send_datagram(datagram, now, text=f"AM3 [ {names} ]")

    def _am3(self, header: IkeV1Header, data: bytes, addr: Address, now: float) -> None:
        """AM3 [*]{ HASH_I, NAT-D, N } -->  responder: the ISAKMP SA is up."""
        if header.encrypted:
            message, self._p1_last = self._open(data, self._p1_iv)
        else:
            message, self._p1_last = decode_message(data), self._p1_iv
        check_payloads(message, 3, encrypted=header.encrypted)
        hash_payload = message.first(HashPayload)
        assert hash_payload is not None
        if not secrets.compare_digest(hash_payload.data, self._hash_i(self._idii_b)):
            raise _auth_failed("HASH_I does not verify")
        self._authenticated()
        self._check_nat(message, addr)
        self.peer_initial_contact = message.notify(NotifyType.INITIAL_CONTACT) is not None
        self._transport.answered(PHASE1)

    # -- Phase 1 helpers -------------------------------------------------------------------

    def _choose_phase1(self, message: IkeV1Message) -> SaPayload:
        """The responder's answer: the first of its own transforms the offer contains, as
        offered (RFC 2409 §5: the transform comes back unchanged), or NO_PROPOSAL_CHOSEN."""
        sa = message.first(SaPayload)
        assert sa is not None
        self._sai_b = _body_of(message, PayloadType.SA)
        offered = [
            (p, t, Phase1Choice.from_transform(t))
            for p in sa.proposals
            if p.protocol_id == ProtocolId.ISAKMP
            for t in p.transforms
        ]
        for ours in phase1_choices(self.config.proposals, self.ike_lifetime):
            for proposal, transform, theirs in offered:
                if theirs is not None and theirs == ours:
                    self.choice = replace(ours, lifetime=min(theirs.lifetime, ours.lifetime))
                    answer = Proposal(
                        proposal.number, ProtocolId.ISAKMP, proposal.spi, (transform,)
                    )
                    return SaPayload((answer,), sa.doi, sa.situation)
        reason = f"no proposal chosen among {len(offered)} transforms"
        raise IkeV1ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close="no proposal chosen")

    def _accept_phase1(self, header: IkeV1Header, message: IkeV1Message) -> None:
        """The initiator checks the responder's choice is one transform it offered."""
        sa = message.first(SaPayload)
        assert sa is not None
        if header.cookie_r == bytes(8):
            raise IkeV1ProtocolError(NotifyType.INVALID_COOKIE, "CKY-R is zero")
        if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
            raise IkeV1ProtocolError(NotifyType.BAD_PROPOSAL_SYNTAX, "not one transform chosen")
        choice = Phase1Choice.from_transform(sa.proposals[0].transforms[0])
        ours = phase1_choices(self.config.proposals, self.ike_lifetime)
        if choice is None or choice not in ours:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "a transform we did not offer")
        if self.aggressive and choice.group != ours[0].group:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "another group than our KE's")
        self.spi_r = header.cookie_r
        self.choice = choice
        self._vendor_ids(message)

    def _derive(self, g_xy: bytes) -> None:
        """SKEYID (§5.4), SKEYID_d/a/e (§5), the cipher key and first IV (Appendix B)."""
        assert self.choice is not None
        self._prf = Ikev1Prf(self.choice.hash_name)
        skeyid = skeyid_psk(self._prf, self.config.psk, self._nonce_i, self._nonce_r)
        block = Ikev1Cipher.block_size_of(self.choice.encryption)
        self._keys = derive_phase1(
            self._prf,
            skeyid,
            g_xy,
            self.spi_i,
            self.spi_r,
            self.choice.key_size,
            block,
            g_xi=self._g_xi,
            g_xr=self._g_xr,
        )
        self._cipher = Ikev1Cipher(self.choice.encryption, self._keys.enc_key)
        self._p1_iv = self._keys.iv

    def _hash_i(self, idii_b: bytes) -> bytes:
        assert self._prf is not None and self._keys is not None
        return hash_i(
            self._prf,
            self._keys.skeyid,
            self._g_xi,
            self._g_xr,
            self.spi_i,
            self.spi_r,
            self._sai_b,
            idii_b,
        )

    def _hash_r(self, idir_b: bytes) -> bytes:
        assert self._prf is not None and self._keys is not None
        return hash_r(
            self._prf,
            self._keys.skeyid,
            self._g_xi,
            self._g_xr,
            self.spi_i,
            self.spi_r,
            self._sai_b,
            idir_b,
        )

    def _authenticate_i(self, message: IkeV1Message) -> None:
        """The responder checks IDii and HASH_I (MM5)."""
        idii, hash_payload = message.first(IdPayload), message.first(HashPayload)
        assert idii is not None
        if not self._peer_id_ok(idii):
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, "unexpected IDii",
                                     close="unexpected IDii")  # fmt: skip
        if hash_payload is None or not secrets.compare_digest(
            hash_payload.data, self._hash_i(_body_of(message, PayloadType.ID))
        ):
            raise _auth_failed("HASH_I does not verify")
        self.peer_initial_contact = message.notify(NotifyType.INITIAL_CONTACT) is not None
        self._authenticated()

    def _authenticate_r(self, message: IkeV1Message) -> None:
        """The initiator checks IDir and HASH_R (MM6, AM2)."""
        idir, hash_payload = message.first(IdPayload), message.first(HashPayload)
        assert idir is not None
        ok = hash_payload is not None and secrets.compare_digest(
            hash_payload.data, self._hash_r(_body_of(message, PayloadType.ID))
        )
        if not self._peer_id_ok(idir) or not ok:
            reason = "the responder's IDir or HASH_R does not verify"
            raise IkeV1ExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason,
                                     answered=False)  # fmt: skip
        self._authenticated()

    def _refuse(self, notify_type: NotifyType) -> None:
        """An unprotected Informational { N(error) } (RFC 2409 §5.7)."""
        payload = NotifyPayload(
            notify_type, ProtocolId.ISAKMP, self.spi_i + (self.spi_r or bytes(8))
        )
        message = IkeV1Message(
            self.spi_i,
            self.spi_r or bytes(8),
            ExchangeType.INFORMATIONAL,
            self._transport.new_message_id(),
            (payload,),
        )
        log.info("%s: sending INFORMATIONAL [ N(%s) ]", self._name(), notify_type.name)
        self._transport.send((message.encode(),))

    def _established(self, now: float) -> None:
        assert self.choice is not None
        self._deadline = None
        self._last_heard = now
        self._schedule(now)
        log.info("%s: ISAKMP SA established", self._name())
        self._events.append(
            IkeSaUp(self.spi_i, self.spi_r, self.choice.suite(), self.initiator, self.natted,
                    takes_over=True, initial_contact=self.peer_initial_contact)
        )  # fmt: skip
        if self._pending_child is not None:
            if self.aggressive and self.initiator:
                # Nothing answers AM3: QM1 waits until AM3 has reached the peer.
                self._pending_child_at = now + _delivery_wait(self._am_rtt)
            else:
                child, self._pending_child = self._pending_child, None
                self._quick_mode_1(child, now)

    def _schedule(self, now: float) -> None:
        """The lifetime's end, and the reauthentication before it (module docstring)."""
        assert self.choice is not None
        self.established_at = now
        life, rekey = self.choice.lifetime, self.config.rekey_time
        if life <= 0:
            return
        self._expire_at = now + life
        if rekey and rekey < life * 0.9:
            due, spread = rekey, rekey / 10  # strongSwan's rand_time
        else:
            due, spread = life * (0.9 if self.initiator else 0.97), life / 100
        jitter = int.from_bytes(self._random(2), "big") / 0xFFFF * spread
        self._reauth_at = now + max(1.0, due - jitter)

    # -- NAT traversal (RFC 3947) ----------------------------------------------------------

    def _nat_hash(self, address: IPAddress, port: int) -> bytes:
        """HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2)."""
        assert self.choice is not None
        prf = Ikev1Prf(self.choice.hash_name)
        return prf.hash(self.spi_i + self.spi_r + address.packed + struct.pack(">H", port))

    def _nat_d(self) -> tuple[NatDPayload, ...]:
        """NAT-D of the destination, then of the source (RFC 3947 §3.2); with `encap`, a
        source that cannot match, so both ends take a NAT for granted (as strongSwan)."""
        if not self.peer_nat_t:
            return ()
        remote = self._nat_hash(self.config.remote_addr, self.remote[1])
        local = self._nat_hash(self.config.local_addr, self.local_port)
        if self.config.encap:
            local = self._random(len(local))
        return NatDPayload(remote), NatDPayload(local)

    def _check_nat(self, message: IkeV1Message, addr: Address) -> None:
        hashes = [p.data for p in message.get(NatDPayload)]
        natted = self.config.encap
        if hashes:
            ours = self._nat_hash(self.config.local_addr, self.local_port)
            theirs = self._nat_hash(ipaddress.ip_address(addr[0]), addr[1])
            natted = natted or hashes[0] != ours or theirs not in hashes[1:]
        self.natted = natted and self.peer_nat_t

    def _float(self) -> None:
        # RFC 3947 §4: once a NAT is detected, the initiator moves to port 4500.
        self.remote = (self.remote[0], NAT_T_PORT)
        self.local_port = NAT_T_PORT

    def _vendor_ids(self, message: IkeV1Message) -> None:
        vids = {p.data for p in message.get(VendorIdPayload)}
        self.peer_dpd = self.peer_dpd or VID_DPD in vids
        self.peer_nat_t = self.peer_nat_t or VID_NAT_T_RFC3947 in vids
        self._framing.peer = self._framing.peer or any(map(is_fragmentation_vid, vids))

    def _vids(self) -> tuple[VendorIdPayload, ...]:
        """DPD and NAT-T always; fragmentation when we take fragments, and as a responder
        only when the initiator announced it too (as strongSwan)."""
        vids: tuple[VendorIdPayload, ...] = (
            VendorIdPayload(VID_DPD),
            VendorIdPayload(VID_NAT_T_RFC3947),
        )
        if self.fragmentation and (self.initiator or self.peer_fragmentation):
            vids += (VendorIdPayload(VID_FRAGMENTATION_CAPABLE),)
        return vids

    # -- Quick Mode (RFC 2409 §5.5) --------------------------------------------------------

    def _quick_mode_1(self, child: ChildConfig, now: float) -> None:
        """QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->"""
        mode = self._encapsulation(child.mode)
        offered = tuple(esp_choices(child.proposals, child.life_time, mode))
        if not offered:
            self._events.append(ChildSaFailed(child, "no ESP proposal IKEv1 can carry"))
            return
        spi_in = self._allocate_spi()  # only now: a LARVAL SA nobody completes lingers
        mid = self._transport.new_message_id()
        nonce_i = self._random(NONCE_SIZE)
        groups = [c.group for c in offered if c.group is not None]
        dh = ikev1_dh_group(groups[0]).generate(self._random) if groups else None
        if dh is not None:
            # One KE for one group: the PFS transforms are those of the first group.
            offered = tuple(c for c in offered if c.group in (None, dh.group.dh_id))
        spi = spi_in.to_bytes(4, "big")
        transforms = tuple(c.transform(n) for n, c in enumerate(offered, 1))
        after: list[Payload] = [
            SaPayload((Proposal(1, ProtocolId.ESP, spi, transforms),)),
            NoncePayload(nonce_i),
        ]
        if dh is not None:
            after.append(KePayload(dh.public_bytes))
        local_ts, remote_ts = child.local_ts[0], child.remote_ts[0]
        after += [IdPayload.for_network(local_ts), IdPayload.for_network(remote_ts)]
        assert self._prf is not None and self._keys is not None
        digest = hash1(self._prf, self._keys.skeyid_a, mid, encode_chain(after))
        qm = _QuickMode(
            mid,
            True,
            self._phase2_iv(mid),
            spi_in,
            nonce_i,
            child,
            offered,
            dh,
            local_ts,
            remote_ts,
        )
        self._quick[mid] = qm
        message = self._message(QM, (HashPayload(digest), *after), mid)
        datagram, qm.iv = self._seal(message, qm.iv)
        text = f"QM1 [ HASH SA No{' KE' if dh else ''} ID ID ]"
        self._send_datagram(datagram, now, resend=mid, text=text)

    def _quick_mode(self, header: IkeV1Header, data: bytes, now: float) -> None:
        qm = self._quick.get(header.message_id)
        if qm is None:
            if header.message_id == 0:
                raise IkeV1ProtocolError(NotifyType.INVALID_MESSAGE_ID, "Quick Mode with M-ID 0")
            self._quick_mode_2(header, data, now)
        elif qm.initiator:
            self._quick_mode_3(qm, data, now)
        else:
            self._quick_mode_done(qm, data, now)

    def _quick_mode_2(self, header: IkeV1Header, data: bytes, now: float) -> None:
        """QM1 -->  responder: GETSPI (LARVAL), then <-- QM2 *{ HASH(2), SA, Nr, [KE], IDs }."""
        mid = header.message_id
        message, iv = self._open(data, self._phase2_iv(mid))
        check_payloads(message, 1, encrypted=True)
        assert self._prf is not None and self._keys is not None
        self._verify_hash(message, hash1(self._prf, self._keys.skeyid_a, mid, _after_hash(message)))
        sa, nonce = message.first(SaPayload), message.first(NoncePayload)
        assert sa is not None and nonce is not None
        # A refusal names the initiator's SPI, so that it can tell which Quick Mode failed.
        spi = next((p.spi for p in sa.proposals if len(p.spi) == 4), b"")
        ids = message.get(IdPayload)
        remote_ts = ids[0].network if ids else ipaddress.ip_network(self.config.remote_addr)
        local_ts = ids[1].network if ids else ipaddress.ip_network(self.config.local_addr)
        if remote_ts is None or local_ts is None:
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, "IDs that are no networks",
                                     spi=spi)  # fmt: skip
        policy = self._child_policy((remote_ts,), (local_ts,)) if self._child_policy else None
        if (
            policy is None
            or not _within(remote_ts, policy.remote_ts)
            or not _within(local_ts, policy.local_ts)
        ):
            reason = f"Quick Mode IDs {remote_ts} === {local_ts} not in policy"
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, reason, spi=spi)
        chosen = self._choose_esp(sa, policy, message.first(KePayload) is not None)
        if chosen is None:
            self._events.append(ChildSaFailed(policy, "no ESP proposal chosen"))
            raise IkeV1ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no ESP proposal chosen",
                                     spi=spi)  # fmt: skip
        proposal, transform, choice = chosen
        if len(proposal.spi) != 4:
            raise IkeV1ExchangeError(NotifyType.INVALID_SPI, "no 4-octet SPI", spi=spi)
        shared, dh = None, None
        if choice.group is not None:
            ke = message.first(KePayload)
            assert ke is not None
            dh = ikev1_dh_group(choice.group).generate(self._random)
            shared = dh.shared_secret(ke.data)
        spi_in = self._allocate_spi()  # RFC 2367 §2.3.2: GETSPI, LARVAL until QM3
        spi_out = int.from_bytes(proposal.spi, "big")
        nonce_r = self._random(NONCE_SIZE)
        answer = Proposal(proposal.number, ProtocolId.ESP, spi_in.to_bytes(4, "big"), (transform,))
        after: list[Payload] = [SaPayload((answer,)), NoncePayload(nonce_r)]
        if dh is not None:
            after.append(KePayload(dh.public_bytes))
        if ids:
            after += list(ids)  # echoed unchanged (RFC 2409 §5.5)
        if policy.life_time < choice.lifetime:
            # RFC 2407 §4.6.3.1: our policy's lifetime is shorter than the offer's.
            after.append(_responder_lifetime(spi_in, policy.life_time))
        digest = hash2(self._prf, self._keys.skeyid_a, mid, nonce.data, encode_chain(after))
        qm = _QuickMode(
            mid, False, iv, spi_in, nonce.data, policy, (choice,), dh, local_ts, remote_ts, nonce_r
        )
        qm.up = self._child_sa_up(qm, choice, spi_out, shared)
        self._quick[mid] = qm
        datagram, qm.iv = self._seal(self._message(QM, (HashPayload(digest), *after), mid), iv)
        # Nothing answers QM3, so QM2 is resent until QM3 comes.
        self._send_datagram(datagram, now, resend=mid, text="QM2 [ HASH SA No ID ID ]")

    def _quick_mode_3(self, qm: _QuickMode, data: bytes, now: float) -> None:
        """<-- QM2: the IPsec SAs are up here; QM3 *{ HASH(3) } -->"""
        message, iv = self._open(data, qm.iv)
        check_payloads(message, 2, encrypted=True)
        assert self._prf is not None and self._keys is not None and qm.child is not None
        nonce = message.first(NoncePayload)
        assert nonce is not None
        self._verify_hash(
            message,
            hash2(self._prf, self._keys.skeyid_a, qm.message_id, qm.nonce_i, _after_hash(message)),
        )
        qm1 = self._transport.answered(qm.message_id)
        rtt = qm1.round_trip(now) if qm1 is not None else None
        del self._quick[qm.message_id]
        qm.nonce_r = nonce.data
        sa = message.first(SaPayload)
        assert sa is not None
        if (
            len(sa.proposals) != 1
            or len(sa.proposals[0].transforms) != 1
            or len(sa.proposals[0].spi) != 4
        ):
            self._events.append(ChildSaFailed(qm.child, "QM2: not one ESP transform chosen"))
            return
        choice = EspChoice.from_transform(sa.proposals[0].transforms[0])
        if choice not in qm.offered:
            self._events.append(ChildSaFailed(qm.child, "QM2: a transform we did not offer"))
            return
        shared = None
        if choice.group is not None:
            ke = message.first(KePayload)
            if ke is None or qm.dh is None:
                self._events.append(ChildSaFailed(qm.child, "QM2: no KE for PFS"))
                return
            shared = qm.dh.shared_secret(ke.data)
        lifetime = message.notify(NotifyType.RESPONDER_LIFETIME)
        if lifetime is not None:
            seconds = _lifetime_seconds(lifetime.data)
            if seconds is not None and seconds < qm.child.life_time:
                # RFC 2407 §4.6.3.1: the responder's shorter lifetime is the SA's.
                qm.child = replace(
                    qm.child,
                    life_time=seconds,
                    rekey_time=min(qm.child.rekey_time, seconds * 9 // 10),
                )
        spi_out = int.from_bytes(sa.proposals[0].spi, "big")
        up = replace(
            self._child_sa_up(qm, choice, spi_out, shared), outbound_after=_delivery_wait(rtt)
        )
        self._add_child(up)
        self._events.append(up)
        digest = hash3(self._prf, self._keys.skeyid_a, qm.message_id, qm.nonce_i, qm.nonce_r)
        datagram, _ = self._seal(self._message(QM, (HashPayload(digest),), qm.message_id), iv)
        self._send_datagram(datagram, now, text="QM3 [ HASH ]")

    def _quick_mode_done(self, qm: _QuickMode, data: bytes, now: float) -> None:
        """QM3 *{ HASH(3) } -->  responder: now the inbound SA may be filled in."""
        message, _ = self._open(data, qm.iv)
        check_payloads(message, 3, encrypted=True)
        assert self._prf is not None and self._keys is not None and qm.up is not None
        self._verify_hash(
            message, hash3(self._prf, self._keys.skeyid_a, qm.message_id, qm.nonce_i, qm.nonce_r)
        )
        self._transport.answered(qm.message_id)
        del self._quick[qm.message_id]
        up = qm.up
        self._add_child(up)
        self._events.append(up)

    def _add_child(self, up: ChildSaUp) -> None:
        """A Quick Mode for a child, started by either end, replaces the SAs it had: their
        soft EXPIREs need not start another one (`rekey_child`)."""
        for child in self.children.values():
            child.renewed = child.renewed or child.config.name == up.child.name
        self.children[up.spi_in] = _ChildSa(up.child, up.spi_in, up.spi_out, up.suite)

    def _choose_esp(
        self, sa: SaPayload, policy: ChildConfig, with_ke: bool
    ) -> tuple[Proposal, Transform, EspChoice] | None:
        """The first of policy's ESP transforms the offer contains (ours decide)."""
        mode = self._encapsulation(policy.mode)
        offered = [
            (p, t, EspChoice.from_transform(t))
            for p in sa.proposals
            if p.protocol_id == ProtocolId.ESP
            for t in p.transforms
        ]
        for ours in esp_choices(policy.proposals, policy.life_time, mode, pfs=with_ke):
            for proposal, transform, theirs in offered:
                tunnel_ok = theirs.tunnel == (policy.mode != "transport")
                if theirs == ours and tunnel_ok and (theirs.group is not None) == with_ke:
                    return proposal, transform, theirs
        return None

    def _child_sa_up(
        self, qm: _QuickMode, choice: EspChoice, spi_out: int, shared: bytes | None
    ) -> ChildSaUp:
        """KEYMAT for each direction with that direction's SPI (RFC 2409 §5.5)."""
        assert self._prf is not None and self._keys is not None and qm.child is not None
        suite = choice.suite()
        encr = next(t for t in suite if t.type == TransformType.ENCR)
        integ = next((t.id for t in suite if t.type == TransformType.INTEG), 0)
        encr_len, integ_len = encr_key_size(encr), integ_key_size(integ)

        prf, skeyid_d = self._prf, self._keys.skeyid_d

        def keys(spi: int) -> ChildSaKeys:
            material = quick_mode_keymat(
                prf,
                skeyid_d,
                ProtocolId.ESP,
                spi.to_bytes(4, "big"),
                qm.nonce_i,
                qm.nonce_r,
                encr_len + integ_len,
                shared,
            )
            return ChildSaKeys(material[:encr_len], material[encr_len:])

        assert qm.local_ts is not None and qm.remote_ts is not None
        natted = self.natted or choice.udp
        return ChildSaUp(
            qm.child,
            qm.spi_in,
            spi_out,
            suite,
            keys(qm.spi_in),
            keys(spi_out),
            (qm.local_ts,),
            (qm.remote_ts,),
            self.initiator,
            natted,
        )

    def _encapsulation(self, mode: str) -> int:
        if mode == "transport":
            return EncapsulationMode.UDP_TRANSPORT if self.natted else EncapsulationMode.TRANSPORT
        return EncapsulationMode.UDP_TUNNEL if self.natted else EncapsulationMode.TUNNEL

    # -- Informational (RFC 2409 §5.7, RFC 3706) -------------------------------------------

    def _informational(self, header: IkeV1Header, data: bytes, now: float) -> None:
        if not header.encrypted:
            message = decode_message(data)
            check_payloads(message, 1, encrypted=False)
            errors = [n for n in message.get(NotifyPayload) if n.notify_type.is_error]
            if errors and self.state is not State.ESTABLISHED:
                # Before Phase 1 is done nothing can be authenticated (RFC 2409 §5.7); a
                # refusal that names our cookies ends the attempt.
                self._close(f"peer refused: {errors[0].notify_type.name}", now, by_peer=True)
            return
        if self._keys is None or self._prf is None or not self._p1_last:
            return
        mid = header.message_id
        message, _ = self._open(data, informational_iv(self._prf.hash_name, self._p1_last, mid))
        check_payloads(message, 1, encrypted=True)
        self._verify_hash(
            message, informational_hash(self._prf, self._keys.skeyid_a, mid, _after_hash(message))
        )
        self._last_heard = now
        for payload in message.payloads:
            if isinstance(payload, NotifyPayload):
                self._notified(payload, now)
            elif isinstance(payload, DeletePayload):
                self._deleted(payload, now)
                if self.state is State.CLOSED:
                    return

    def _notified(self, payload: NotifyPayload, now: float) -> None:
        kind = payload.notify_type
        if kind == NotifyType.R_U_THERE:
            # RFC 3706 §5.3: the ACK echoes the sequence number.
            ack = NotifyPayload(
                NotifyType.R_U_THERE_ACK, ProtocolId.ISAKMP, self.spi_i + self.spi_r, payload.data
            )
            self._send_informational((ack,), now)
        elif kind == NotifyType.R_U_THERE_ACK:
            seq = int.from_bytes(payload.data[:4], "big") if len(payload.data) == 4 else -1
            if self._dpd is not None and seq == self._dpd_seq:
                self._transport.answered(self._dpd)
                self._dpd = None
        elif kind == NotifyType.INITIAL_CONTACT:
            self.peer_initial_contact = True
        elif kind.is_error and payload.protocol_id == ProtocolId.ESP and len(payload.spi) == 4:
            # A Quick Mode of ours refused: the notify names the SPI we offered.
            spi_in = int.from_bytes(payload.spi, "big")
            for mid, qm in list(self._quick.items()):
                if qm.initiator and qm.spi_in == spi_in and qm.child is not None:
                    del self._quick[mid]
                    self._transport.answered(mid)
                    self._events.append(ChildSaFailed(qm.child, f"Quick Mode refused: {kind.name}"))
        else:
            log.info("%s: received N(%s)", self._name(), kind.name)

    def _deleted(self, payload: DeletePayload, now: float) -> None:
        if payload.protocol_id == ProtocolId.ISAKMP:
            self._close("deleted by the peer", now, by_peer=True)
            return
        if payload.protocol_id != ProtocolId.ESP or payload.spi_size != 4:
            return
        for spi in payload.spis:
            # RFC 2408 §3.15: the SPIs are the sender's inbound ones, our outbound.
            spi_out = int.from_bytes(spi, "big")
            child = next((c for c in self.children.values() if c.spi_out == spi_out), None)
            if child is not None:
                del self.children[child.spi_in]
                self._events.append(ChildSaDown(child.spi_in, child.spi_out, by_peer=True))

    def _send_informational(self, payloads: tuple[Payload, ...], now: float) -> None:
        _, datagrams = self._informational_datagrams(payloads)
        self._transport.send(datagrams)

    def _informational_datagrams(
        self, payloads: tuple[Payload, ...]
    ) -> tuple[int, tuple[bytes, ...]]:
        """HDR*, HASH(1), N/D: its own M-ID and IV (RFC 2409 §5.7, Appendix B); the M-ID,
        and the datagrams as they go out."""
        assert self._prf is not None and self._keys is not None
        mid = self._transport.new_message_id()
        digest = informational_hash(self._prf, self._keys.skeyid_a, mid, encode_chain(payloads))
        message = self._message(ExchangeType.INFORMATIONAL, (HashPayload(digest), *payloads), mid)
        datagram, _ = self._seal(message, informational_iv(self._prf.hash_name, self._p1_last, mid))
        names = payload_names(payloads)
        return mid, self._framed(datagram, f"INFORMATIONAL [ HASH {names} ]")

    def _dpd_due(self) -> float | None:
        if self.state is not State.ESTABLISHED or not self.config.dpd_delay or not self.peer_dpd:
            return None
        if self._dpd is not None:
            return None  # an R-U-THERE is out: the transport resends it, or gives up
        return self._last_heard + self.config.dpd_delay

    def _dpd_check(self, now: float) -> None:
        """R-U-THERE when the peer has been quiet for `dpd_delay` (RFC 3706 §5.3), resent
        until its ACK comes, each time as a new one with the next sequence number (§5.5);
        after the configured tries the peer is dead."""
        mid, datagrams = self._r_u_there()
        self._transport.send_request(mid, datagrams, now, "R-U-THERE", renew=self._r_u_there)

    def _r_u_there(self) -> tuple[int, tuple[bytes, ...]]:
        self._dpd_seq = (self._dpd_seq + 1) & 0xFFFFFFFF
        notify = NotifyPayload(
            NotifyType.R_U_THERE,
            ProtocolId.ISAKMP,
            self.spi_i + self.spi_r,
            self._dpd_seq.to_bytes(4, "big"),
        )
        self._dpd, datagrams = self._informational_datagrams((notify,))
        return self._dpd, datagrams

    # -- plumbing --------------------------------------------------------------------------

    def _id_payload(self) -> IdPayload:
        id_type, data = self.config.local_id
        return IdPayload(IdType(int(id_type)), data)

    def _peer_id_ok(self, payload: IdPayload) -> bool:
        expected = self.config.remote_id
        return expected is None or (int(payload.id_type), payload.data) == (
            int(expected[0]),
            expected[1],
        )

    def _notify(self, notify_type: NotifyType) -> NotifyPayload:
        return NotifyPayload(notify_type, ProtocolId.ISAKMP, self.spi_i + self.spi_r)

    def _phase2_iv(self, mid: int) -> bytes:
        assert self._prf is not None
        return phase2_iv(self._prf.hash_name, self._p1_last, mid)

    def _message(
        self, exchange: ExchangeType, payloads: tuple[Payload, ...] | list[Payload], mid: int = 0
    ) -> IkeV1Message:
        return IkeV1Message(self.spi_i, self.spi_r or bytes(8), exchange, mid, tuple(payloads))

    def _clear(self, data: bytes, number: int) -> IkeV1Message:
        message = decode_message(data)
        check_payloads(message, number, encrypted=False)
        return message

    def _seal(self, message: IkeV1Message, iv: bytes) -> tuple[bytes, bytes]:
        """The message encrypted with `iv`, and the IV of the next (Appendix B)."""
        cipher = self._cipher
        assert cipher is not None
        next_iv = [iv]

        def encrypt(plaintext: bytes) -> bytes:
            ciphertext, next_iv[0] = cipher.encrypt(plaintext, iv)
            return ciphertext

        return encode_encrypted(message, encrypt, cipher.block_size), next_iv[0]

    def _open(self, data: bytes, iv: bytes) -> tuple[IkeV1Message, bytes]:
        cipher = self._cipher
        if cipher is None:
            raise IkeV1DecodeError(
                "an encrypted message before there are keys", NotifyType.INVALID_FLAGS
            )
        next_iv = [iv]

        def decrypt(ciphertext: bytes) -> bytes:
            plaintext, next_iv[0] = cipher.decrypt(ciphertext, iv)
            return plaintext

        return decode_encrypted(data, decrypt, cipher.block_size), next_iv[0]

    def _verify_hash(self, message: IkeV1Message, expected: bytes) -> None:
        first = message.payloads[0] if message.payloads else None
        if not isinstance(first, HashPayload) or not secrets.compare_digest(first.data, expected):
            raise IkeV1ProtocolError(NotifyType.INVALID_HASH_INFORMATION, "HASH does not verify")
        self._authenticated()

    def _authenticated(self) -> None:
        """The message being taken is the peer's: answer, and send ESP in UDP, where it came
        from. Behind a NAT that is the port the NAT made of the peer's 4500 (RFC 3947 §4
        expects it; RFC 7296 §2.23 says the same of IKEv2), learnt only from a message
        that proves itself, so that no forged source can divert the SA."""
        source = self._source
        if source is not None and source[0] == self.remote[0] and source[1] != IKE_PORT:
            self.remote = source  # the port; an SA's addresses stay what they are

    def _send(
        self,
        exchange: ExchangeType,
        payloads: tuple[Payload, ...],
        now: float,
        *,
        resend: int | None = None,
        text: str,
    ) -> None:
        datagram = self._message(exchange, payloads).encode()
        names = payload_names(payloads)
        self._send_datagram(datagram, now, resend=resend, text=f"{text} [ {names} ]")

    def _send_datagram(
        self,
        datagram: bytes,
        now: float,
        *,
        resend: int | None = None,
        text: str,
    ) -> None:
        """Send `datagram`; with `resend`, its Message ID, until it is answered."""
        datagrams = self._framed(datagram, text)
        if resend is None:
            self._transport.send(datagrams)
        else:
            self._transport.send_request(resend, datagrams, now, text.split()[0])

    def _framed(self, datagram: bytes, text: str) -> tuple[bytes, ...]:
        """`datagram` whole, or in fragments where they are agreed; logged as it goes."""
        try:
            datagrams = self._transport.frame(datagram)
        except ValueError as exc:
            log.info("%s: sent whole, not in fragments: %s", self._name(), exc)
            datagrams = (datagram,)
        if len(datagrams) > 1:
            text += f" in {len(datagrams)} fragments"
        log.info("%s: sending %s", self._name(), text)
        return datagrams

    def _close(self, reason: str, now: float, by_peer: bool = False) -> None:
        if self.state is State.CLOSED:
            return
        for child in self.children.values():
            self._events.append(ChildSaDown(child.spi_in, child.spi_out, by_peer=by_peer))
        self.children.clear()
        for qm in self._quick.values():
            if qm.initiator and qm.child is not None:
                self._events.append(ChildSaFailed(qm.child, reason))
        self._quick.clear()
        if self._pending_child is not None:
            self._events.append(ChildSaFailed(self._pending_child, reason))
            self._pending_child = None
        log.info("%s: ISAKMP SA closed: %s", self._name(), reason)
        self._transport.cancel()
        self._deadline = None
        self._dpd = None
        self._reauth_at = self._expire_at = self._retire_at = None
        self._events.append(IkeSaDown(reason, by_peer))
        self._enter(State.CLOSED)


def _auth_failed(reason: str) -> IkeV1ExchangeError:
    """AUTHENTICATION_FAILED in the clear, and the ISAKMP SA goes."""
    return IkeV1ExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)


def _body_of(message: IkeV1Message, payload_type: PayloadType) -> bytes:
    """The body of the first payload of that type as received (SAi_b, IDii_b: §5)."""
    for payload, wire in zip(message.payloads, message.wire_payloads, strict=True):
        if payload.payload_type == payload_type:
            return wire[4:]
    raise IkeV1ProtocolError(NotifyType.PAYLOAD_MALFORMED, f"no {payload_type.name} payload")


def _after_hash(message: IkeV1Message) -> bytes:
    """The payloads after HASH as received, generic headers included (§5.5, §5.7)."""
    return b"".join(message.wire_payloads[1:])


def _within(network: IPNetwork, allowed: tuple[IPNetwork, ...]) -> bool:
    return any(
        network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
        for a in allowed
    )


def _delivery_wait(rtt: float | None) -> float:
    """How long after a message nothing answers (AM3, QM3) what depends on it waits.

    IKEv1 acknowledges neither: the responder fills in its inbound SA only when QM3
    arrives (RFC 2409 §5.5), and a peer without a LARVAL hold (charon with kernel-
    libipsec) drops ESP that comes first, so the first packet, held since the ACQUIRE,
    would leave with QM3 and be lost; a threaded responder may take a QM1 sent right
    behind AM3 first, and drop it. One round trip, as the exchange's first pair took
    (AM1 -> AM2, QM1 -> QM2), lets the message arrive and be processed; bounded, as the
    commit bit (§5.5) that would say so exactly is not widely honoured.
    """
    if rtt is None:
        return DELIVERY_WAIT_MAX
    return min(max(rtt, DELIVERY_WAIT_MIN), DELIVERY_WAIT_MAX)


def _lifetime_seconds(data: bytes) -> int | None:
    """SA_LIFE_DURATION in seconds from RESPONDER-LIFETIME's attributes (RFC 2407 §4.6.3.1)."""
    offset, life_type, seconds = 0, LifeType.SECONDS, None
    while offset + 4 <= len(data):
        word, value = struct.unpack_from(">HH", data, offset)
        offset += 4
        number = value
        if not word & 0x8000:
            number = int.from_bytes(data[offset : offset + value], "big")
            offset += value
        attr = word & 0x7FFF
        if attr == IpsecAttr.SA_LIFE_TYPE:
            life_type = LifeType(number)
        elif attr == IpsecAttr.SA_LIFE_DURATION and life_type == LifeType.SECONDS:
            seconds = number
    return seconds


def _responder_lifetime(spi_in: int, seconds: int) -> NotifyPayload:
    """N(RESPONDER-LIFETIME) for our inbound SA: SA_LIFE_TYPE seconds, SA_LIFE_DURATION."""
    buf = Buffer()
    Attribute(IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS).encode(buf)
    Attribute.of(IpsecAttr.SA_LIFE_DURATION, seconds).encode(buf)
    return NotifyPayload(
        NotifyType.RESPONDER_LIFETIME, ProtocolId.ESP, spi_in.to_bytes(4, "big"), buf.data
    )
