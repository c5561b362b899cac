"""One ISAKMP SA, sans-I/O: Main or Aggressive Mode with a pre-shared key or signatures,
Quick Mode with and without PFS, and Informational exchanges (DELETE, INITIAL-CONTACT,
DPD), both roles.

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

The session is the ISAKMP SA (`larval.ikev1.isakmp.IsakmpSa`: cookies, keys, NAT state,
CHILD_SAs) plus the dispatcher. The exchanges are tasks that `process` what they receive
and `build` what they send, with no I/O and no clock of their own: Main and Aggressive
Mode (`larval.ikev1.phase1`, proved by a pluggable `larval.ikev1.auth` authenticator),
Quick Mode (`larval.ikev1.quick_mode`), Informational and DPD
(`larval.ikev1.informational`), and the Transaction exchanges of XAuth and Mode Config
(`larval.ikev1.transaction`, driven by `larval.ikev1.remote_access`). One Phase 1 task
at a time; Quick Modes and Transactions by their Message ID, any number at once. A
responder handed other connections for the peer's addresses (`candidates`) may change
to one of them once Phase 1 names the peer: Aggressive Mode at AM1, Main Mode at MM5
among those keyed alike (`larval.ikev1.select`). Where
XAuth is configured, Phase 1 done is state XAUTH: the ISAKMP SA is reported up
(`IkeSaUp`) and takes Quick Mode only once XAuth succeeded; a client that asks for a
virtual address starts its Quick Mode once Mode Config has given it one.

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
   AUTHENTICATION_FAILED. A Phase 1 that does not prove the peer (`IkeV1AuthFailed`) is a
   warning, and where the peer already took Phase 1 for done, its ISAKMP SA is deleted
   with a protected D(ISAKMP) rather than answered in the clear.
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
import logging
from collections.abc import Callable
from dataclasses import replace

from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import Transform as Ikev2Transform
from larval.crypto.ikev1_keys import Phase1Keys
from larval.crypto.randomness import RandomBytes, system_random
from larval.ike import NAT_T_PORT, exchange_log
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig
from larval.ike.events import (
    ChildSaDown,
    ChildSaFailed,
    IkeSaDown,
    IkeSaReauthDue,
    IkeSaUp,
)
from larval.ike.sa import Phase
from larval.ike.sk_keys import IkeSkKeys
from larval.ike.state import ChildSaState, IkeSaState, IkeStateError, Ikev1State, Secret
from larval.ike.task import Task
from larval.ike.transitions import Refusal, Transition, complete
from larval.ike.transport import Verdict

from .auth import Phase1Authenticator, WallClock, phase1_authenticator, utc_now
from .config import Phase1Choice, phase1_choices
from .constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from .errors import IkeV1AuthFailed, IkeV1ExchangeError, IkeV1OutOfPlace, IkeV1ProtocolError
from .fragments import FRAGMENT_SIZE
from .framing import Ikev1Framing
from .informational import Dpd, Informational, protected
from .isakmp import PHASE1, Address, ChildSa, Inbound, IsakmpSa, Outgoing, delivery_wait
from .message import IkeV1Header, decode_header
from .modecfg import AttributePayload, ReceivedConfig
from .payloads import DeletePayload, IdPayload, NotifyPayload, Payload
from .phase1 import (
    AggressiveInitiator,
    AggressiveResponder,
    MainModeInitiator,
    MainModeResponder,
    Phase1Settings,
    Phase1Task,
    claimed,
)
from .quick_mode import QuickModeInitiator, QuickModeResponder, QuickModeTask
from .remote_access import AddressPool, RemoteAccess
from .select import Candidates, Fits, select_connection
from .transaction import Answered, TransactionInitiator, TransactionResponder

__all__ = [
    "TRANSITIONS",
    "IkeV1Session",
    "Refusal",
    "State",
    "Step",
    "Transition",
    "Turn",
    "dropped_name",
    "offered_lifetime",
]

log = logging.getLogger("larval.ike")
IKE_LIFETIME = 28800  # seconds; RFC 2407 §4.5's default, strongSwan's ikelifetime 3h is 10800
REAUTH_DELETE_DELAY = 10.0  # seconds a replaced ISAKMP SA stays (strongSwan's adopt job: 10)
MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE
TX = ExchangeType.TRANSACTION
_INFO = ExchangeType.INFORMATIONAL
#: How the metrics name the exchanges (`larval.ike.counters`); any other is ``other``.
_COUNTED = {MM: "MAIN_MODE", AM: "AGGRESSIVE", QM: "QUICK_MODE", _INFO: "INFORMATIONAL",
            TX: "TRANSACTION"}  # fmt: skip


class State(enum.Enum):
    IDLE = "idle"
    MM1_SENT = "MM1 sent"
    MM2_SENT = "MM2 sent"
    MM3_SENT = "MM3 sent"
    MM4_SENT = "MM4 sent"
    MM5_SENT = "MM5 sent"
    AM1_SENT = "AM1 sent"
    AM2_SENT = "AM2 sent"
    XAUTH = "XAuth"  # Phase 1 is done, XAuth under way (`larval.ikev1.remote_access`)
    ESTABLISHED = "established"
    REKEYED = "rekeyed"  # replaced by a newer ISAKMP SA, deleted soon
    CLOSED = "closed"


class Turn(enum.Enum):
    """Where a received message stands in its exchange. IKEv1 has no response flag: a
    Phase 1 message with CKY-R zero opens Main or Aggressive Mode, a Quick Mode with a
    Message ID no exchange under way holds opens one, and an Informational exchange is one
    message; everything else continues an exchange under way."""

    OPENS = "opening"
    CONTINUES = "continuing"


class Step(enum.Enum):
    """What takes a message the table lets in."""

    MAIN_MODE_RESPONDER = "Main Mode responder"  # MM1: a new responder task
    AGGRESSIVE_RESPONDER = "Aggressive Mode responder"  # AM1: a new responder task
    PHASE1 = "the Phase 1 task under way"
    QUICK_MODE_RESPONDER = "Quick Mode responder"  # QM1: a new responder task
    QUICK_MODE = "the Quick Mode task with its Message ID"
    INFORMATIONAL = "Informational"
    TRANSACTION_RESPONDER = "Transaction responder"  # XAuth or Mode Config of the peer's
    TRANSACTION = "the Transaction task with its Message ID"


Input = tuple[State, ExchangeType, Turn]
#: A row: the step and the next state, or a refusal. IKEv1 answers no out-of-place
#: message (RFC 2408 §5: nothing unauthenticated is worth an answer), so none has a notify.
Entry = Transition[Step, State] | Refusal[NotifyType]
_OPENS, _CONTINUES = Turn.OPENS, Turn.CONTINUES

#: (state, exchange, opening|continuing) -> what takes the message and the next state,
#: or why it is refused. Total over State x ExchangeType x Turn; an exchange type that
#: is not in the enum is refused like one of its members with no row.
TRANSITIONS: dict[Input, Entry] = {
    (State.IDLE, MM, _OPENS): Transition(Step.MAIN_MODE_RESPONDER, State.MM2_SENT),  # MM1
    (State.MM1_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM3_SENT),  # MM2
    (State.MM2_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM4_SENT),  # MM3
    (State.MM3_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.MM5_SENT),  # MM4
    (State.MM4_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # MM5
    (State.MM5_SENT, MM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # MM6
    (State.IDLE, AM, _OPENS): Transition(Step.AGGRESSIVE_RESPONDER, State.AM2_SENT),  # AM1
    (State.AM1_SENT, AM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # AM2
    (State.AM2_SENT, AM, _CONTINUES): Transition(Step.PHASE1, State.ESTABLISHED),  # AM3
    (State.ESTABLISHED, QM, _OPENS): Transition(Step.QUICK_MODE_RESPONDER),  # QM1
    (State.ESTABLISHED, QM, _CONTINUES): Transition(Step.QUICK_MODE),  # QM2, QM3
    # XAuth, then Mode Config (draft-beaulieu-ike-xauth, draft-dukes-ike-mode-cfg).
    (State.XAUTH, TX, _OPENS): Transition(Step.TRANSACTION_RESPONDER),
    (State.XAUTH, TX, _CONTINUES): Transition(Step.TRANSACTION),
    (State.ESTABLISHED, TX, _OPENS): Transition(Step.TRANSACTION_RESPONDER),
    (State.ESTABLISHED, TX, _CONTINUES): Transition(Step.TRANSACTION),
    # A replaced ISAKMP SA answers what the peer starts on it until its DELETE.
    (State.REKEYED, QM, _OPENS): Transition(Step.QUICK_MODE_RESPONDER),
    (State.REKEYED, QM, _CONTINUES): Transition(Step.QUICK_MODE),
}
for _state in State:
    if _state is not State.CLOSED:
        # RFC 2409 §5.7: an Informational exchange is one message, taken in every state
        # (before Phase 1 is done, only a refusal in the clear means anything).
        TRANSITIONS[(_state, _INFO, _OPENS)] = Transition(Step.INFORMATIONAL)


#: The exchanges as the exchange lines name them (RFC 2409's words).
_EXCHANGE_NAMES = {MM: "Main Mode", AM: "Aggressive Mode", QM: "Quick Mode",
                   _INFO: "Informational", TX: "Transaction"}  # fmt: skip


def _refusal(state: State, exchange: ExchangeType, turn: Turn) -> Refusal[NotifyType]:
    """The rows the table does not spell out, by rule; none is answered."""
    if state is State.CLOSED:
        return Refusal("the ISAKMP SA is closed")
    if exchange in (MM, AM):
        if state in (State.ESTABLISHED, State.REKEYED, State.XAUTH):
            return Refusal("Phase 1 is done")
        if turn is Turn.OPENS:
            return Refusal("Phase 1 is under way")
        return Refusal("not the message this Phase 1 exchange awaits")
    if exchange is QM:
        if state is State.XAUTH:
            return Refusal("no Quick Mode before XAuth is done")
        return Refusal("no Quick Mode before Phase 1 is done")
    if exchange is TX:
        if state is State.REKEYED:
            return Refusal("no Transaction exchange on a replaced ISAKMP SA")
        return Refusal("no Transaction exchange before Phase 1 is done")
    if exchange is _INFO:
        return Refusal("an Informational exchange is one message")
    return Refusal("an exchange larval does not take")


complete(TRANSITIONS, _refusal, State, ExchangeType, Turn)

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
    State.XAUTH: Phase.CONNECTING,
    State.ESTABLISHED: Phase.ESTABLISHED,
    State.REKEYED: Phase.REPLACED,
    State.CLOSED: Phase.CLOSED,
}


def offered_lifetime(config: IkeConfig) -> int:
    """The Phase 1 LIFE_DURATION of a connection, in seconds: its ``rekey_time`` and a
    tenth (strongSwan offers rekey_time + over_time), or RFC 2407's 8 hours."""
    rekey = config.rekey_time
    return int(rekey * 1.1) if rekey else IKE_LIFETIME


def dropped_name(error: IkeV1ProtocolError | IkeCryptoError) -> str:
    """How status names a dropped message: the notification its fault maps to
    (``payload_malformed``, ``invalid_payload_type``, ``invalid_hash_information``, ...),
    or ``undecryptable`` where the keys could not take it."""
    if isinstance(error, IkeV1ProtocolError):
        return error.notify.name.lower()
    return "undecryptable"


class IkeV1Session(IsakmpSa):
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
        authenticator: Phase1Authenticator | None = None,
        wall_clock: WallClock = utc_now,
        address_pool: AddressPool | None = None,
        candidates: Candidates | None = None,
    ) -> None:
        """`aggressive`: an initiator uses Aggressive Mode (a responder answers either);
        `ike_lifetime`: the Phase 1 LIFE_DURATION offered, in seconds; `initial_contact`:
        send N(INITIAL-CONTACT) with HASH_I; `encrypt_am3`: AM3 with flag E (a responder
        accepts either); `fragmentation`: announce and take IKEv1 fragments, and send a
        message longer than `fragment_size` bytes as fragments to a peer that announced
        them too (`larval.ikev1.fragments`); `authenticator`: how Phase 1 proves each end
        (by default the configured pre-shared key, or the certificates of
        `config.local_auth` and `config.remote_auth`: `larval.ikev1.auth`; one side of each
        raises `IkeV1ConfigError`); `wall_clock`: the time certificates are checked at;
        `address_pool`: a gateway's pools, for Mode Config (`larval.ikev1.remote_access`);
        `candidates`: a responder's other connections for the peer's addresses, among
        which Phase 1 chooses by IDii (`larval.ikev1.select`)."""
        framing = Ikev1Framing(
            int.from_bytes(random_bytes(2), "big"),
            enabled=fragmentation,
            fragment_size=fragment_size,
            exchange=AM if aggressive else MM,
        )
        super().__init__(config, initiator=initiator, allocate_spi=allocate_spi,
                         child_policy=child_policy, random_bytes=random_bytes,
                         framing=framing)  # fmt: skip
        # How Phase 1 goes (`Phase1Settings`, made when a Phase 1 task starts).
        self.aggressive, self.ike_lifetime = aggressive, ike_lifetime
        self.encrypt_am3, self._initial_contact = encrypt_am3, initial_contact
        self._authenticator = authenticator or phase1_authenticator(config, wall_clock)
        self._wall_clock, self._candidates = wall_clock, candidates
        self._enter(State.IDLE)
        # The exchanges under way: Phase 1's, and the Quick Modes by Message ID.
        self._phase1: Phase1Task | None = None
        self._quick: dict[int, QuickModeTask] = {}
        # XAuth and Mode Config: the Transaction exchanges this end opened, by Message ID.
        self._transactions: dict[int, TransactionInitiator] = {}
        self._remote_access = self._new_remote_access(address_pool)
        self._now = 0.0  # the time of the message or timer being handled
        self._dropped: dict[str, int] = {}  # malformed messages by name (`take_dropped`)
        self._dpd = Dpd(self, int.from_bytes(random_bytes(4), "big") & 0x7FFFFFFF)
        self.unique_id = exchange_log.next_unique_id()  # how the exchange lines name it
        self._notified: str | None = None  # the error of the Informational just taken
        self._pending_child: ChildConfig | None = None
        # What follows a message of ours that nothing answers (AM3, the XAuth ACK) once
        # it has landed: (when, in which state, what).
        self._deferred: tuple[float, State, Callable[[float], None]] | None = None
        self._deadline: float | None = None  # half-open
        self.established_at: float | None = None
        self._reauth_at: float | None = None  # IkeSaReauthDue
        self._expire_at: float | None = None  # the agreed lifetime: DELETE
        self._retire_at: float | None = None  # REKEYED: DELETE

    version = 1

    @property
    def phase(self) -> Phase:
        return _PHASES[self.state]

    def sk_keys(self) -> IkeSkKeys | None:
        """The Phase 1 encryption key (RFC 2409 Appendix B) as both SK_e; None before
        the keys are derived."""
        if self.keys is None:
            return None
        enc_key = Secret(self.keys.enc_key)
        return IkeSkKeys(enc_key, enc_key, Secret(b""), Secret(b""))

    @property
    def suite(self) -> tuple[Ikev2Transform, ...]:
        """The Phase 1 suite chosen, in IKEv2 numbering; () until then."""
        return self.choice.suite() if self.choice is not None else ()

    @property
    def rekey_at(self) -> float | None:
        """When this ISAKMP SA is due for reauthentication (None: not scheduled)."""
        return self._reauth_at

    @property
    def expires_at(self) -> float | None:
        """When this ISAKMP SA's lifetime ends, or a replaced one is deleted."""
        return self._retire_at if self._retire_at is not None else self._expire_at

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        spis = f"{self.spi_i.hex()}/{self.spi_r.hex()}"
        return f"<IkeV1Session {self.config.name} {role} {spis} {self.state.value}>"

    # -- the five-method surface ---------------------------------------------------------

    def get_timer(self) -> float | None:
        times = [self._transport.get_timer(), self._deadline, self._dpd_due(), self._reauth_at,
                 self._expire_at, self._retire_at,
                 self._deferred[0] if self._deferred is not None else None]  # fmt: skip
        return min((t for t in times if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        self._now = now
        counted = self.counters
        for gave_up in self._transport.handle_timer(now):
            if exchange_log.enabled():
                self._exchange_over(self._exchange_of(gave_up.message_id), True, "no answer",
                                    len(self._events))  # fmt: skip
            reason = f"no answer to {gave_up.text} after {gave_up.transmissions} transmissions"
            if gave_up.message_id == PHASE1:
                counted.exchange(1, "AGGRESSIVE" if self.aggressive else "MAIN_MODE", "timeout")
                self._close(reason, now)
                return
            if gave_up.message_id == self._dpd.message_id:
                counted.exchange(1, "INFORMATIONAL", "timeout")
                self._close("peer is dead: no R-U-THERE-ACK", now)
                return
            if self._transactions.pop(gave_up.message_id, None) is not None:
                counted.exchange(1, "TRANSACTION", "timeout")
                self._close(reason, now)  # XAuth or Mode Config unanswered
                return
            counted.exchange(1, "QUICK_MODE", "timeout")
            qm = self._quick.pop(gave_up.message_id, None)
            if isinstance(qm, QuickModeInitiator) and qm.child is not None:
                self.report(ChildSaFailed(qm.child, reason))
        if self._deferred is not None and now >= self._deferred[0]:
            _, state, then = self._deferred
            self._deferred = None
            if self.state is state:
                then(now)
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if self.state is not State.ESTABLISHED:
                if exchange_log.enabled() and self.state not in (State.IDLE, State.XAUTH):
                    self._exchange_over(self._exchange_of(PHASE1), self.initiator, "no answer",
                                        len(self._events))  # fmt: skip
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
                log.info("%s: ISAKMP SA due for reauthentication", self.name())
                self.report(IkeSaReauthDue())
        dpd = self._dpd_due()
        if dpd is not None and now >= dpd:
            # R-U-THERE when the peer has been quiet for `dpd_delay` (RFC 3706 §5.3), resent
            # until its ACK comes, each time as a new one with the next sequence number
            # (§5.5); after the configured tries the peer is dead.
            out = self._dpd.build(now)
            mid = self._dpd.message_id
            assert mid is not None
            datagrams = self._framed(out)
            self._transport.send_request(mid, datagrams, now, "R-U-THERE", renew=self._r_u_there)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self._now = now
        try:
            self._receive(data, addr, now)
        except (IkeV1ProtocolError, IkeCryptoError) as exc:
            # A message that does not decode, decrypt or authenticate is dropped (RFC 2408
            # §5: an unauthenticated notify would let anyone tear the SA down), and counted
            # by what was wrong, for the key manager's status (`take_dropped`).
            log.info("%s: dropped a message: %s", self.name(), exc)
            name = dropped_name(exc)
            self._dropped[name] = self._dropped.get(name, 0) + 1

    def take_dropped(self) -> dict[str, int]:
        """The messages dropped since the last call, by what was wrong with them
        (`dropped_name`); the counts start again from zero."""
        dropped, self._dropped = self._dropped, {}
        return dropped

    # -- user calls ------------------------------------------------------------------------

    def initiate(self, child: ChildConfig | None, now: float) -> None:
        """Start Main (or Aggressive) Mode; Quick Mode for `child` follows Phase 1."""
        if not self.initiator or self.state is not State.IDLE:
            raise IkeV1ProtocolError(
                NotifyType.INVALID_EXCHANGE_TYPE, f"cannot initiate in {self.state}"
            )
        method = self._authenticator.method
        choices = phase1_choices(self.config.proposals, self.ike_lifetime, method)
        if not choices:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "no proposal IKEv1 can carry")
        self._pending_child = child
        self.spi_i = self.random(8)
        self._deadline = now + self.config.half_open_timeout
        if self.aggressive:
            self._phase1 = AggressiveInitiator(self, self._phase1_settings(), choices)
            self._enter(State.AM1_SENT)
        else:
            self._phase1 = MainModeInitiator(self, self._phase1_settings(), choices)
            self._enter(State.MM1_SENT)
        self._send(self._phase1.build(now), now)

    def create_child(self, child: ChildConfig, now: float) -> None:
        """QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->  another pair of IPsec SAs."""
        if self.state is not State.ESTABLISHED:
            raise IkeV1ProtocolError(
                NotifyType.INVALID_EXCHANGE_TYPE, f"no Quick Mode in {self.state}"
            )
        self._quick_mode(child, now)

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
            self._inform((DeletePayload(ProtocolId.ISAKMP, 16, (cookies,)),))
        self._close(reason, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        """D(ESP, our inbound SPI): the peer deletes its outbound SA, we ours."""
        child = self.children.pop(spi_in, None)
        if child is None or self.state not in (State.ESTABLISHED, State.REKEYED):
            return
        self._inform((DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),)),))
        self.report(ChildSaDown(child.spi_in, child.spi_out, by_peer=False,
                                rekeyed=child.renewed))  # fmt: skip

    def adopt_children(self, old: IkeV1Session) -> list[int]:
        """Take over the CHILD_SAs of `old`, an ISAKMP SA with the same peer that this one
        replaces: their DELETE, renewal and status go through this one now. Returns their
        inbound SPIs."""
        moved = list(old.children)
        # A Quick Mode that finished on `old` after it was replaced renews this one's.
        moving = [child.config for child in old.children.values()]
        for child in self.children.values():
            child.renewed = child.renewed or any(child.same_as(c) for c in moving)
        self.children.update(old.children)
        old.children.clear()
        return moved

    def retire(self, now: float, delay: float = REAUTH_DELETE_DELAY) -> None:
        """A newer ISAKMP SA with the peer has taken over: no more DPD, reauthentication or
        Quick Modes of our own; D(ISAKMP) after `delay`."""
        if self.state is not State.ESTABLISHED:
            return
        log.info("%s: ISAKMP SA replaced, deleting it in %g s", self.name(), delay)
        self._enter(State.REKEYED)
        self._reauth_at = None
        self._dpd.cancel()
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
                f"{self.name()}: no snapshot in state {self.state.value!r}: "
                "only an established ISAKMP SA has one"
            )
        if self._quick or self._pending_child is not None:
            raise IkeStateError(f"{self.name()}: no snapshot while a Quick Mode is under way")
        choice, keys = self.choice, self.keys
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
            phase1_last_block=self.p1_last,
            fragmentation=self.fragmentation,
            peer_fragmentation=self.peer_fragmentation,
            fragment_size=self.fragment_size,
            fragment_id=self._framing.fragment_id,
            peer_dpd=self.peer_dpd,
            peer_nat_t=self.peer_nat_t,
            peer_initial_contact=self.peer_initial_contact,
            dpd_seq=self._dpd.seq,
            dpd_message_id=self._dpd.message_id,
            last_heard=self._dpd.last_heard,
            xauth_user=self._remote_access.user,
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
            virtual_ips=tuple(self.virtual_ips),
            auth_local=self.auth_local,
            auth_remote=self.auth_remote,
            dns=self.received.dns,
            dns_domains=self.received.domains,
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
        choice = Phase1Choice(v1.encryption, v1.key_bits, v1.hash, v1.group, v1.lifetime)
        # SKEYID and the first Phase 1 IV served Phase 1 only, and are not kept.
        keys = Phase1Keys(
            b"", v1.skeyid_d.value, v1.skeyid_a.value, v1.skeyid_e.value, v1.enc_key.value, b""
        )
        self.keyed(choice, keys)
        self.p1_last = v1.phase1_last_block
        self.established_at = value.established_at
        self._reauth_at, self._expire_at = value.rekey_at, value.expires_at
        dpd = self._dpd
        dpd.last_heard, dpd.seq, dpd.message_id = v1.last_heard, v1.dpd_seq, v1.dpd_message_id
        for c in value.children:
            self.children[c.spi_in] = ChildSa(c.config, c.spi_in, c.spi_out, c.suite, c.renewed)
        mid = dpd.message_id
        self._transport.restore(value.transport, {mid: self._r_u_there} if mid is not None else {})
        # Only an established ISAKMP SA has a value: its XAuth, if any, succeeded, and
        # its Mode Config, if any, gave its virtual addresses (the key manager takes the
        # gateway's pool leases again from its own record).
        self._remote_access.xauth_done = True
        self._remote_access.user = v1.xauth_user
        self.virtual_ips = value.virtual_ips
        self.received = ReceivedConfig(value.virtual_ips, value.dns, value.dns_domains)
        self.auth_local, self.auth_remote = value.auth_local, value.auth_remote
        self._enter(State.ESTABLISHED)
        log.info("%s: ISAKMP SA resumed with %d CHILD_SAs", self.name(), len(self.children))

    # -- receiving -------------------------------------------------------------------------

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self._transport.receive(data, addr) is Verdict.REPLAYED:
            # No message IDs in Phase 1: the same bytes again are a retransmission, and
            # get the same answer (RFC 2408 §5, as RFC 7296 §2.1).
            log.debug("%s: retransmitted message, answer again", self.name())
            return
        header = decode_header(data)
        self.source = addr
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
                log.debug("%s: reassembled a message of %d bytes", self.name(), len(whole))
                self._receive(whole, addr, now)
        elif not self._dispatch(Inbound(header, data, addr), now):
            return  # dropped: the same bytes again are looked at again
        self._transport.remember(data, sent)

    def _turn(self, header: IkeV1Header) -> Turn:
        """Whether the message opens an exchange here or continues one (`Turn`)."""
        exchange = header.exchange_type
        if exchange in (MM, AM):
            return Turn.OPENS if header.cookie_r == bytes(8) else Turn.CONTINUES
        if exchange is QM and header.message_id in self._quick:
            return Turn.CONTINUES
        if exchange is TX and header.message_id in self._transactions:
            return Turn.CONTINUES
        return Turn.OPENS

    def _dispatch(self, inbound: Inbound, now: float) -> bool:
        """Hand a message to what the table names, and enter the table's next state; what
        the table or an exchange refuses is answered or dropped here, in one place. False
        when it was dropped."""
        header = inbound.header
        state, exchange, turn = self.state, header.exchange_type, self._turn(header)
        key = (state, exchange, turn)
        entry = TRANSITIONS.get(key) or _refusal(*key)  # an exchange type with no name
        marked, initiated = len(self._events), self._initiated(entry, header)
        try:
            if isinstance(entry, Refusal):
                text = f"{exchange.name} ({turn.value}) not allowed in state {state.name}"
                raise IkeV1OutOfPlace(
                    NotifyType.INVALID_EXCHANGE_TYPE, f"{text}: {entry.reason}", answered=False
                )
            self._take(entry.step, inbound, now)
        except IkeV1ExchangeError as error:
            if not isinstance(error, IkeV1OutOfPlace) and exchange is not _INFO:
                self._dpd.heard(now)  # refused, but the peer's, and alive
            self._refused(exchange, error, now)
            if exchange_log.enabled() and not isinstance(error, IkeV1OutOfPlace):
                self._exchange_over(exchange, initiated, error.notify.name, marked)
            return error.answered
        if exchange is not _INFO:
            self._dpd.heard(now)
        elif turn is Turn.OPENS:
            self.counters.exchange(1, "INFORMATIONAL", "ok")
        if exchange_log.enabled() and self._over(entry, header):
            result = (self._notified if exchange is _INFO else None) or "ok"
            self._exchange_over(exchange, initiated, result, marked)
        if entry.next is not None and self.state is not State.CLOSED:
            self._enter(entry.next)
            if entry.next is State.ESTABLISHED:
                self.counters.exchange(1, _COUNTED.get(exchange, "other"), "ok")
                self._established(now)
        return True

    def _initiated(self, entry: Entry, header: IkeV1Header) -> bool:
        """Did this end open the exchange the message is of? (Asked before the message
        is taken: a Quick Mode's task is gone once it is over.)"""
        if isinstance(entry, Refusal):
            return False
        match entry.step:
            case Step.PHASE1:
                return self.initiator
            case Step.QUICK_MODE:
                return isinstance(self._quick.get(header.message_id), QuickModeInitiator)
            case Step.TRANSACTION:
                return True
        return False  # the peer's opening message, or an Informational

    def _over(self, entry: Transition[Step, State], header: IkeV1Header) -> bool:
        """Is the exchange of the message just taken over? Phase 1 once the ISAKMP SA
        is keyed and proved, a Quick Mode or Transaction once its task is done (the
        responder's Transaction answers at once), an Informational at its one message."""
        match entry.step:
            case Step.PHASE1 | Step.MAIN_MODE_RESPONDER | Step.AGGRESSIVE_RESPONDER:
                return entry.next is State.ESTABLISHED
            case Step.QUICK_MODE:
                return header.message_id not in self._quick
            case Step.TRANSACTION:
                return header.message_id not in self._transactions
            case Step.TRANSACTION_RESPONDER | Step.INFORMATIONAL:
                return True
        return False  # QM1: QM3 ends it

    def _exchange_of(self, message_id: int) -> ExchangeType:
        """The exchange of a request of ours by its Message ID."""
        if message_id == PHASE1:
            return AM if self.aggressive else MM
        if message_id == self._dpd.message_id:
            return _INFO
        return TX if message_id in self._transactions else QM

    def _exchange_over(self, exchange: ExchangeType, initiated: bool, result: str,
                       marked: int) -> None:  # fmt: skip
        """The exchange is over with `result` (``ok``, or the notification that ended it):
        its line at INFO (`larval.ike.exchange_log`), with the CHILD_SAs among the events
        reported since `marked`. The caller checked that INFO is on."""
        exchange_log.log_exchange(self.config.name, self.unique_id, self.spi_i, self.spi_r,
                                  _EXCHANGE_NAMES.get(exchange, exchange.name), initiated,
                                  result, self.remote, list(self._events)[marked:])  # fmt: skip

    def _take(self, step: Step, inbound: Inbound, now: float) -> None:
        """Hand a message to the task the table's step names, and send what it builds."""
        header = inbound.header
        match step:
            case Step.MAIN_MODE_RESPONDER | Step.AGGRESSIVE_RESPONDER:
                new = MainModeResponder if step is Step.MAIN_MODE_RESPONDER else AggressiveResponder
                self._phase1 = new(self, self._phase1_settings())
                self._run(self._phase1, inbound, now)
                self._deadline = now + self.config.half_open_timeout
            case Step.PHASE1:
                assert self._phase1 is not None
                self._run(self._phase1, inbound, now)
            case Step.QUICK_MODE_RESPONDER:
                responder = QuickModeResponder(self, header.message_id)
                self._run(responder, inbound, now)
                self._quick[header.message_id] = responder
            case Step.QUICK_MODE:
                task = self._quick[header.message_id]
                self._run(task, inbound, now)
                if task.done:
                    del self._quick[header.message_id]
                    self.counters.exchange(1, "QUICK_MODE", "ok")
            case Step.TRANSACTION_RESPONDER:
                answering = TransactionResponder(self, header.message_id,
                                                 self._remote_access.answer)  # fmt: skip
                self._run(answering, inbound, now)
                then = self._remote_access.answered()
                if then is not None:
                    # Nothing answers the XAuth ACK: a threaded gateway may take a Mode
                    # Config or QM1 sent right behind it first and drop it (charon: "quick
                    # mode request for unestablished IKE_SA, ignored"), as after AM3.
                    rtt = self._phase1.round_trip if self._phase1 is not None else None
                    self._deferred = (now + delivery_wait(rtt), State.XAUTH, then)
            case Step.TRANSACTION:
                transaction = self._transactions[header.message_id]
                self._run(transaction, inbound, now)
                if transaction.done:
                    self._transactions.pop(header.message_id, None)
            case Step.INFORMATIONAL:
                informational = Informational(
                    self, self._dpd, established=self.state is State.ESTABLISHED,
                    close=lambda why, by_peer: self._close(why, now, by_peer),
                    refused=self._quick_mode_refused,
                )  # fmt: skip
                self._run(informational, inbound, now)
                self._notified = informational.error

    def _run(self, task: Task[Inbound, Outgoing | None], inbound: Inbound, now: float) -> None:
        """The task processes the message, and what it builds in answer goes out
        (`larval.ike.task.Task`: build and process for its role)."""
        task.process(inbound, now)
        while (out := task.build(now)) is not None:
            self._send(out, now)

    def _refused(self, exchange: ExchangeType, error: IkeV1ExchangeError, now: float) -> None:
        """Answer a refused message with its notification, or drop it; then close the
        ISAKMP SA if the refusal ends it. Before Phase 1 is done the notification goes in
        the clear about the ISAKMP SA (RFC 2409 §5.7: the peer cannot read anything we
        would encrypt), unless both ends hold the Phase 1 keys already; after, protected,
        about the IPsec SA it names."""
        answered = "" if error.answered else ", dropped"
        if isinstance(error, IkeV1AuthFailed) and error.delete:
            answered = ", the peer's ISAKMP SA deleted"
        # A peer that fails to prove itself is worth a warning (with the reason and the
        # certificate's subject); any other refusal is the protocol at work.
        level = logging.WARNING if isinstance(error, IkeV1AuthFailed) else logging.INFO
        self._count_refusal(exchange, error)
        log.log(level, "%s: %s refused in state %s: %s%s", self.name(), exchange.name,
                self.state.name, error, answered)  # fmt: skip
        if error.answered and self.state in (State.ESTABLISHED, State.REKEYED):
            self._inform((NotifyPayload(error.notify, ProtocolId.ESP, error.spi),))
        elif isinstance(error, IkeV1AuthFailed) and error.delete:
            self._inform((DeletePayload(ProtocolId.ISAKMP, 16, (self.spi_i + self.spi_r,)),))
        elif error.answered and self.p1_last:
            # Phase 1 keyed on both ends (a Main Mode responder refusing MM5): protected.
            self._inform((NotifyPayload(error.notify, ProtocolId.ISAKMP,
                                        self.spi_i + self.spi_r),))  # fmt: skip
        elif error.answered:
            notify = NotifyPayload(error.notify, ProtocolId.ISAKMP,
                                   self.spi_i + (self.spi_r or bytes(8)))  # fmt: skip
            message = self.message(_INFO, (notify,), self._transport.new_message_id())
            log.info("%s: sending INFORMATIONAL [ N(%s) ]", self.name(), error.notify.name)
            self._transport.send((message.encode(),))
        if error.close is not None:
            self._close(error.close, now)

    def _count_refusal(self, exchange: ExchangeType, error: IkeV1ExchangeError) -> None:
        """A refused message, for the metrics (`larval.ike.counters`): its exchange, the
        notification it is answered with, and why a peer did not prove itself."""
        counted = self.counters
        counted.exchange(1, _COUNTED.get(exchange, "other"), "refused")
        if error.answered:
            counted.error_sent(1, error.notify.name)
        if isinstance(error, IkeV1AuthFailed):
            identity = error.notify is NotifyType.INVALID_ID_INFORMATION
            counted.auth_failed("identity" if identity else "auth_data")

    def _enter(self, state: State) -> None:
        """The one place the state changes: to the table's next state when a message is
        taken, and otherwise when the user opens, replaces or deletes the ISAKMP SA, it is
        restored, or it closes."""
        self.state = state

    # -- Phase 1 ---------------------------------------------------------------------------

    def _new_remote_access(self, pool: AddressPool | None) -> RemoteAccess:
        return RemoteAccess(
            self, pool, self._open_transaction, authenticated=self._xauth_done,
            failed=self._xauth_failed, configured=self._configured,
        )  # fmt: skip

    def select_connection(self, idii: IdPayload, fits: Fits) -> Phase1Settings | None:
        """Phase 1 named the peer: switch to the connection that fits it best, before any
        CHILD_SA; its configuration, policy, pools, authenticator and lifetime are this
        ISAKMP SA's now (`larval.ikev1.select`)."""
        if self.initiator or self._candidates is None:
            return None
        chosen = select_connection(self._candidates(), idii, fits, self._wall_clock)
        if chosen is None or chosen[0].config.name == self.config.name:
            return None
        candidate, auth = chosen
        assert not self.children and self.state in (State.IDLE, State.MM4_SENT)
        log.info("%s: switching to connection %s for IDii %s", self.name(),
                 candidate.config.name, claimed(idii))  # fmt: skip
        self.config = candidate.config
        self.child_policy = candidate.child_policy
        self._authenticator = auth
        self._remote_access = self._new_remote_access(candidate.address_pool)
        self.ike_lifetime = offered_lifetime(candidate.config)
        candidate.take()
        return self._phase1_settings()

    def _phase1_settings(self) -> Phase1Settings:
        return Phase1Settings(self._authenticator, self.ike_lifetime, self._initial_contact,
                              self.encrypt_am3)  # fmt: skip

    def _established(self, now: float) -> None:
        """Phase 1 is done: XAuth first where it is configured, then the ISAKMP SA is up."""
        if not self._remote_access.xauth_done:
            self._enter(State.XAUTH)
            self._remote_access.phase1_done(now)
            return
        self._up(now)
        self._remote_access.phase1_done(now)

    def _xauth_done(self, now: float) -> None:
        """XAuth succeeded (`RemoteAccess`): the ISAKMP SA is up now."""
        if self.state is State.XAUTH:
            self._enter(State.ESTABLISHED)
            self._up(now)

    def _xauth_failed(self, reason: str, now: float) -> None:
        """XAuth failed: D(ISAKMP) and the ISAKMP SA goes, nothing leased."""
        log.warning("%s: %s, deleting the ISAKMP SA", self.name(), reason)
        self._inform((DeletePayload(ProtocolId.ISAKMP, 16, (self.spi_i + self.spi_r,)),))
        self._close(reason, now)

    def _configured(self, now: float) -> None:
        """A client has its virtual addresses: the Quick Mode that waited for them."""
        if self.state is State.ESTABLISHED:
            self._start_pending_child(now)

    def _open_transaction(self, attr: AttributePayload, answered: Answered) -> None:
        """TRANSACTION *{ HASH, ATTR } -->, resent until answered."""
        task = TransactionInitiator(self, attr, answered)
        self._transactions[task.message_id] = task
        self._send(task.build(self._now), self._now)

    def _up(self, now: float) -> None:
        assert self.choice is not None
        self._deadline = None
        self._dpd.heard(now)
        self._schedule(now)
        log.info("%s: ISAKMP SA established", self.name())
        self.report(
            IkeSaUp(self.spi_i, self.spi_r, self.choice.suite(), self.initiator, self.natted,
                    takes_over=True, initial_contact=self.peer_initial_contact)
        )  # fmt: skip
        phase1, self._phase1 = self._phase1, None  # its nonces and DH pair go with it
        if self._remote_access.wants_config and not self.virtual_ips:
            return  # Quick Mode waits for the virtual address (`_configured`)
        if self._pending_child is not None:
            if self.aggressive and self.initiator:
                # Nothing answers AM3: QM1 waits until AM3 has reached the peer.
                rtt = phase1.round_trip if phase1 is not None else None
                self._deferred = (now + delivery_wait(rtt), State.ESTABLISHED,
                                  self._start_pending_child)  # fmt: skip
            else:
                self._start_pending_child(now)

    def _start_pending_child(self, now: float) -> None:
        if self._pending_child is not None:
            child, self._pending_child = self._pending_child, None
            self._quick_mode(child, now)

    def _schedule(self, now: float) -> None:
        """The lifetime's end, and the reauthentication before it (module docstring)."""
        assert self.choice is not None
        self.established_at = now
        life, rekey = self.choice.lifetime, self.config.rekey_time
        if life <= 0:
            return
        self._expire_at = now + life
        if not self.initiator and self.config.remote_xauth is not None:
            # A road warrior's gateway cannot start Main Mode and XAuth towards it: the
            # client reauthenticates (its user's password is the client's to give).
            return
        if rekey and rekey < life * 0.9:
            due, spread = rekey, rekey / 10  # strongSwan's rand_time
        else:
            due, spread = life * (0.9 if self.initiator else 0.97), life / 100
        jitter = int.from_bytes(self.random(2), "big") / 0xFFFF * spread
        self._reauth_at = now + max(1.0, due - jitter)

    # -- Quick Mode and Informational ------------------------------------------------------

    def _quick_mode(self, child: ChildConfig, now: float) -> None:
        """QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->; a client with a virtual address
        speaks for it alone (IDci)."""
        vips = [ipaddress.ip_network(v) for v in self.virtual_ips]
        if self.initiator and vips:
            local = tuple(v for v in vips if v.version == child.local_ts[0].version) or tuple(
                vips[:1]
            )
            child = replace(child, local_ts=local)
        task = QuickModeInitiator.start(self, child)
        if task is not None:
            self._quick[task.message_id] = task
            self._send(task.build(now), now)

    def _quick_mode_refused(self, spi_in: int, kind: NotifyType) -> None:
        """The peer refused a Quick Mode of ours, naming the SPI we offered."""
        for mid, qm in list(self._quick.items()):
            if isinstance(qm, QuickModeInitiator) and qm.spi_in == spi_in and qm.child:
                del self._quick[mid]
                self.answered(mid)
                self.counters.exchange(1, "QUICK_MODE", "failed")
                self.report(ChildSaFailed(qm.child, f"Quick Mode refused: {kind.name}"))

    def _inform(self, payloads: tuple[Payload, ...]) -> None:
        """INFORMATIONAL *{ HASH(1), N/D } -->, once (RFC 2409 §5.7): an Informational
        exchange of ours, whose line names the error it carries, if any."""
        self._transport.send(self._framed(protected(self, payloads)[1]))
        if exchange_log.enabled():
            errors = [p.notify_type.name for p in payloads
                      if isinstance(p, NotifyPayload) and p.notify_type.is_error]  # fmt: skip
            self._exchange_over(_INFO, True, errors[0] if errors else "ok", len(self._events))

    def _dpd_due(self) -> float | None:
        if self.state is not State.ESTABLISHED or not self.config.dpd_delay or not self.peer_dpd:
            return None
        return self._dpd.due(self.config.dpd_delay)

    def _r_u_there(self) -> tuple[int, tuple[bytes, ...]]:
        """A resent R-U-THERE: a new one, with the next sequence number (RFC 3706 §5.5)."""
        mid, out = self._dpd.renew()
        return mid, self._framed(out)

    # -- sending ---------------------------------------------------------------------------

    def _send(self, out: Outgoing | None, now: float) -> None:
        """Send what a task built; with its `resend` Message ID, until it is answered."""
        if out is None:
            return
        datagrams = self._framed(out)
        if out.resend is None:
            self._transport.send(datagrams)
        else:
            self._transport.send_request(out.resend, datagrams, now, out.text.split()[0])

    def _framed(self, out: Outgoing) -> tuple[bytes, ...]:
        """The message whole, or in fragments where they are agreed; logged as it goes."""
        text = out.text
        try:
            datagrams = self._transport.frame(out.datagram)
        except ValueError as exc:
            log.info("%s: sent whole, not in fragments: %s", self.name(), exc)
            datagrams = (out.datagram,)
        if len(datagrams) > 1:
            text += f" in {len(datagrams)} fragments"
        log.info("%s: sending %s", self.name(), text)
        return datagrams

    def _close(self, reason: str, now: float, by_peer: bool = False) -> None:
        if self.state is State.CLOSED:
            return
        for child in self.children.values():
            self.report(ChildSaDown(child.spi_in, child.spi_out, by_peer=by_peer))
        self.children.clear()
        for qm in self._quick.values():
            if isinstance(qm, QuickModeInitiator) and qm.child is not None:
                self.report(ChildSaFailed(qm.child, reason))
        self._quick.clear()
        self._transactions.clear()
        self._remote_access.release()
        self._phase1 = None
        if self._pending_child is not None:
            self.report(ChildSaFailed(self._pending_child, reason))
            self._pending_child = None
        log.info("%s: ISAKMP SA closed: %s", self.name(), reason)
        self._transport.cancel()
        self._deadline = None
        self._dpd.message_id = None
        self._reauth_at = self._expire_at = self._retire_at = None
        self.report(IkeSaDown(reason, by_peer))
        self._enter(State.CLOSED)
