"""One IKE SA, sans-I/O, for both roles: its state, keys and CHILD_SAs, the wire, and the
table that hands each message to a task of its exchange (`larval.ikev2.exchanges`:
IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL); IKE message fragmentation (RFC 7383).

Theory of operation
-------------------
The session is driven like aioquic's connection: `receive_datagram(data, addr, now)`,
`handle_timer(now)`, and the user calls `initiate`, `delete`, `delete_child`; it is
drained with `datagrams_to_send(now)`, `get_timer()` and `next_event()`. It never
touches a socket or a clock. Two callbacks reach the key manager: `allocate_spi` (a
GETSPI, so the SPI is LARVAL before it goes on the wire) and, for a responder,
`child_policy` (an inverse ACQUIRE: what does policy accept for these selectors?).

Rules
-----
1. What a received message may do is the table `TRANSITIONS`, keyed by (state, exchange,
   request|response): the task that takes it and the state once its exchange is over,
   or a named `Refusal`. The table is total over `State` x `ExchangeType` x `Direction`.
2. Input the table refuses raises `IkeOutOfPlace`, naming state and input; an exchange
   that refuses a request raises `IkeExchangeError` with its Notify. `_receive` catches
   both, in one place, and answers with the error notification or drops the message,
   logging it either way (RFC 7296 §2.21). A message that does not decode or decrypt is
   dropped before that (§2.21.1).
3. The state changes in `_enter` only: to the table's next state once the task that took
   a message is done (not while its exchange goes on, nor when the IKE SA closed), and
   otherwise when the user opens or deletes the IKE SA, or it closes.
4. Each exchange is a task for its role, with `build` and `process` and no I/O. A
   request goes to a new task of its exchange's responder (or to the one under way, for
   an exchange of more than one round trip), which processes it and builds the answer
   the session sends. The requests this end sends are tasks run by a
   `larval.ike.task.TaskManager`: queued behind the window (one request each way, §2.3),
   each response handed to the task whose request it answers (a response no task awaits
   is dropped and the state stays), and a rekey of ours that collides with the peer's
   found there (§2.8). Tasks see the IKE SA through `Ikev2Sa`: the IKE SA's own state
   (SPIs, keys, suite, nonces, CHILD_SAs, NAT state, deadlines) stays here.
5. Message IDs, retransmission with back-off (§2.1), the cached response and fragments are
   the transport's (`larval.ike.transport`, with `WindowedIds` and
   `larval.ikev2.framing`): the exchanges hand it messages and take what it lets through.
6. IKE_AUTH proves this end with a `Prover` and checks the peer with a `Verifier`
   (`larval.ikev2.auth`), each made from the configuration (a certificate, EAP or the
   PSK) unless given; with EAP, IKE_AUTH takes several round trips
   (`larval.ikev2.exchanges.eap_auth`).

Fragmentation (RFC 7383): both ends announce N(IKEV2_FRAGMENTATION_SUPPORTED) in
IKE_SA_INIT (§2.3); once both have, a protected message longer than `fragment_size`
goes as SKF fragments (§2.5), each checked and opened on arrival and reassembled before
the message is processed (§2.6). A request or response is kept as the list of datagrams
it went out as, so a retransmission resends every fragment (§2.6.2).

Rekeying: each new IKE SA is announced with `IkeSaRekeyed` as soon as it exists, and the
caller drives it like any other session. When both ends rekey at once (RFC 7296 §2.8),
the exchange with the lowest of the four nonces made a redundant SA, which its creator
deletes: a redundant IKE SA is announced too, holds no CHILD_SA, and closes with its
DELETE; the CHILD_SAs go to the IKE SA that stays (§2.8.2).

Logging (`larval.ike`): one line per exchange at INFO, once it is over, naming the IKE
SA, the peer, the result and the SPIs (`larval.ike.exchange_log`); one line per message
sent or received, as strongSwan writes them,
``s2s[SPIi/SPIr]: sending IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]``, at INFO, and at
DEBUG for retransmissions. Only payload names are logged, never keys, nonces or AUTH
data. A NO_PROPOSAL_CHOSEN sent by this end logs both sides' proposals. A refused
message has one line at INFO naming the exchange, the state and why, and whether it was
answered or dropped.
"""

from __future__ import annotations

import datetime
import enum
import logging
from collections import deque
from collections.abc import Callable, Hashable

from larval.crypto.ike_errors import IkeCryptoError, IkeIntegrityError
from larval.crypto.ike_keys import IkeSaKeys, derive_rekeyed_ike_sa_keys
from larval.crypto.prf import Prf
from larval.crypto.randomness import RandomBytes, system_random
from larval.ike import IKE_PORT, exchange_log
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress, Suite
from larval.ike.counters import IkeCounters
from larval.ike.events import ChildSaDown, ChildSaFailed, Event, IkeSaDown, IkeSaUp
from larval.ike.sa import Phase
from larval.ike.sk_keys import IkeSkKeys
from larval.ike.state import IkeSaState, Secret
from larval.ike.task import TaskManager
from larval.ike.transitions import Refusal, Transition, complete
from larval.ike.transport import IkeTransport, OverTransport, Verdict, WindowedIds
from larval.ikev2 import snapshot as sa_value
from larval.ikev2.auth import EapProver, PeerOffer, Prover, Verifier, prover_for, verifier_for
from larval.ikev2.constants import ExchangeType, NotifyType, ProtocolId
from larval.ikev2.errors import IkeExchangeError, IkeOutOfPlace, IkeProtocolError
from larval.ikev2.exchanges import (
    ChildCreate,
    ChildSa,
    CreateChildSaResponder,
    EapIkeAuth,
    IkeAuth,
    IkeRekey,
    IkeSaInit,
    IkeSaInitResponder,
    Ikev2Sa,
    Informational,
    InformationalResponder,
    RoundsIkeAuth,
    State,
    ike_auth_responder,
)
from larval.ikev2.exchanges.config_payload import AddressPool, ReceivedConfig, release_leases
from larval.ikev2.exchanges.create_child_sa import renewing
from larval.ikev2.exchanges.ike_sa_init import take_keys
from larval.ikev2.exchanges.informational import UnauthenticatedInformationalResponder
from larval.ikev2.exchanges.sa import Address, log
from larval.ikev2.exchanges.select import Candidate, Candidates
from larval.ikev2.exchanges.tasks import AnswerTask
from larval.ikev2.framing import FRAGMENT_SIZE, Ikev2Framing
from larval.ikev2.message import IkeMessage, decode_message
from larval.ikev2.payloads import DeletePayload, NotifyPayload, Payload, SkfPayload
from larval.ikev2.render import message_names
from larval.ikev2.stateless import init_error
from larval.pools import Lease

__all__ = [
    "REQUESTER",
    "TRANSITIONS",
    "ChildSa",
    "Direction",
    "IkeSession",
    "Refusal",
    "State",
    "Transition",
]


#: Each state as `larval.ike.sa.Phase` names it for the key manager.
_PHASES = {
    State.IDLE: Phase.IDLE,
    State.INIT_SENT: Phase.CONNECTING,
    State.AUTH_SENT: Phase.CONNECTING,
    State.INIT_DONE: Phase.HALF_OPEN,
    State.ESTABLISHED: Phase.ESTABLISHED,
    State.DELETING: Phase.DELETING,
    State.CLOSED: Phase.CLOSED,
}


class Direction(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"


#: A task of an exchange's responder, made for a request the table lets in.
Responder = Callable[[Ikev2Sa], AnswerTask]


#: A response goes to the task that sent its request; the task manager knows which.
REQUESTER = None

#: A row of the table: for a request, the responder task its exchange makes (for a
#: response, `REQUESTER`) and the state once the exchange is over (None: the state
#: stays); or why the message is refused, with the Notify that answers it once it has
#: proved itself (decrypted), or none: dropped unopened and logged.
Entry = Transition[Responder | None, State] | Refusal[NotifyType]

Input = tuple[State, ExchangeType, Direction]
_REQ, _RESP = Direction.REQUEST, Direction.RESPONSE
_X = ExchangeType

#: (state, exchange, request|response received) -> what takes it and the next state, or
#: why it is refused. Total over State x ExchangeType x Direction; an exchange type that
#: is not in the enum is refused like one of its members with no row.
TRANSITIONS: dict[Input, Entry] = {
    (State.IDLE, _X.IKE_SA_INIT, _REQ): Transition(IkeSaInitResponder, State.INIT_DONE),
    (State.INIT_SENT, _X.IKE_SA_INIT, _RESP): Transition(REQUESTER, State.AUTH_SENT),
    (State.INIT_DONE, _X.IKE_AUTH, _REQ): Transition(ike_auth_responder, State.ESTABLISHED),
    (State.AUTH_SENT, _X.IKE_AUTH, _RESP): Transition(REQUESTER, State.ESTABLISHED),
    (State.ESTABLISHED, _X.CREATE_CHILD_SA, _REQ): Transition(CreateChildSaResponder),
    (State.ESTABLISHED, _X.CREATE_CHILD_SA, _RESP): Transition(REQUESTER),
    # RFC 7296 §2.21.2: an initiator that gave up its authentication says so on its own.
    (State.INIT_DONE, _X.INFORMATIONAL, _REQ): Transition(UnauthenticatedInformationalResponder),
    (State.ESTABLISHED, _X.INFORMATIONAL, _REQ): Transition(InformationalResponder),
    (State.ESTABLISHED, _X.INFORMATIONAL, _RESP): Transition(REQUESTER),
    (State.DELETING, _X.INFORMATIONAL, _REQ): Transition(InformationalResponder),
    (State.DELETING, _X.INFORMATIONAL, _RESP): Transition(REQUESTER),
    # RFC 7296 §2.8.2, §2.25: this IKE SA is going; the peer may try again on another.
    (State.DELETING, _X.CREATE_CHILD_SA, _REQ): Refusal(
        "the IKE SA is being deleted", NotifyType.TEMPORARY_FAILURE
    ),
}


def _refusal(state: State, exchange: ExchangeType, direction: Direction) -> Entry:
    """The rows the table does not spell out, by rule: nothing is answered (RFC 7296
    §2.21: never an answer to a response; a request out of place gets none either)."""
    if state is State.CLOSED:
        return Refusal("the IKE SA is closed")
    if direction is Direction.RESPONSE:
        return Refusal("no request of ours awaits it")
    if exchange is ExchangeType.IKE_SA_INIT:
        return Refusal("IKE_SA_INIT is under way or done")
    if exchange is ExchangeType.IKE_AUTH and state in (State.ESTABLISHED, State.DELETING):
        return Refusal("the IKE SA is authenticated already")
    if state is State.DELETING:
        return Refusal("the IKE SA is being deleted")
    return Refusal("the IKE SA is not set up yet")


complete(TRANSITIONS, _refusal, State, ExchangeType, Direction)


class IkeSession(OverTransport):
    """One IKE SA between `config.local_addr` and `config.remote_addr`."""

    def __init__(
        self,
        config: IkeConfig,
        *,
        initiator: bool,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None = None,
        random_bytes: RandomBytes = system_random,
        spi_i: bytes | None = None,
        fragmentation: bool = True,
        fragment_size: int = FRAGMENT_SIZE,
        prover: Prover | None = None,
        verifier: Verifier | None = None,
        wall_clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        signature_hashes: bool = True,
        address_pool: AddressPool | None = None,
        candidates: Candidates | None = None,
        counters: IkeCounters | None = None,
    ) -> None:
        """`fragmentation`: announce RFC 7383 support; `fragment_size`: the largest
        protected message sent whole when both ends announced it (§2.5.1);
        `prover`, `verifier`: how IKE_AUTH proves this end and checks the peer (by default
        as `config` says: its certificates, else the PSK); `wall_clock`: the time a peer's
        certificate must be valid at; `signature_hashes`: announce RFC 7427's hashes when
        a public key is in play (§4); `address_pool`: a responder's connection's pools,
        for a peer's CFG_REQUEST (§2.19); `candidates`: a responder's connections that
        matched the addresses, among which IKE_AUTH chooses by the peer's identity and
        method (`larval.ikev2.exchanges.select`); `counters`: the key manager's
        (`larval.ike.counters`), where exchanges and failures are counted."""
        self.config = config
        self.initiator = initiator
        self._allocate_spi = allocate_spi
        self._child_policy = child_policy
        self._random = random_bytes
        self._prover = prover or prover_for(config)
        self._verifier = verifier or verifier_for(config)
        self._wall_clock = wall_clock
        self._signature_hashes_offered = signature_hashes
        self._peer_offer = PeerOffer()
        # How each end authenticated, once established (`larval.ike.auth_config.AuthInfo`).
        self.auth_local: AuthInfo | None = None
        self.auth_remote: AuthInfo | None = None
        # Virtual addresses (RFC 7296 §2.19): a responder's leases, an initiator's given.
        self._address_pool = address_pool
        self._candidates = candidates
        self.virtual_ips: tuple[IPAddress, ...] = ()
        self.received = ReceivedConfig()  # an initiator's CFG_REPLY
        self._leases: tuple[Lease, ...] = ()
        self._lease_identity = ""
        self._enter(State.IDLE)
        self.spi_i = spi_i if spi_i is not None else (random_bytes(8) if initiator else b"")
        self.spi_r = b""
        # Message IDs, the window, retransmission, the cached response and fragments.
        self._framing = Ikev2Framing(fragment_size)
        self._transport: IkeTransport[IkeMessage] = IkeTransport.of(
            config, WindowedIds(), self._framing, self._name, counters
        )
        self.natted = False
        self.children: dict[int, ChildSa] = {}  # by inbound SPI
        self.suite: Suite = ()
        self._events: deque[Event] = deque()
        self.unique_id = exchange_log.next_unique_id()  # how the exchange lines name it
        self._request_text = self._response_text = ""  # how the logs name them
        # RFC 7383: offered by us; agreed (`fragmentation`) once the peer announced it (§2.3).
        self._fragmentation_offered = fragmentation
        self._pending_child: ChildConfig | None = None
        # CHILD_SAs whose DELETE is unanswered: they go down when the peer has deleted its
        # half, so that what it sent on the old SA meanwhile still arrives.
        self._deleting: dict[int, ChildSaDown] = {}
        self._nonce_i = self._nonce_r = b""
        self._init_request = self._init_response = b""
        self._prf: Prf | None = None
        self._sk_d = self._sk_pi = self._sk_pr = b""
        # The requests of this end, as tasks: one out at a time (RFC 7296 §2.3), the rest
        # queued; each response to the task that sent its request; collisions (§2.8).
        self._tasks: TaskManager[IkeMessage, tuple[Payload, ...]] = TaskManager(
            self._transport, self._send_request, self._name
        )
        # The peer's exchange of more than one round trip under way (IKE_AUTH with EAP).
        self._responding: AnswerTask | None = None
        self._ike_rekey_started = False
        self._replaced_by: IkeSession | None = None  # the IKE SA that took our CHILD_SAs
        self._rekey_at: float | None = None
        self._deadline: float | None = None  # half-open or liveness
        self.established_at: float | None = None
        self._delete_reason = "deleted"

    version = 2

    @property
    def phase(self) -> Phase:
        return self._phase

    def sk_keys(self) -> IkeSkKeys | None:
        """SK_ei, SK_er, SK_ai, SK_ar (RFC 7296 §2.14), as `snapshot` reads them; None
        before IKE_SA_INIT has made them."""
        to_r, to_i = self._framing.outbound, self._framing.inbound
        if to_r is None or to_i is None:
            return None
        if not self.initiator:
            to_r, to_i = to_i, to_r
        (sk_ei, sk_ai), (sk_er, sk_ar) = to_r.keys, to_i.keys
        return IkeSkKeys(Secret(sk_ei), Secret(sk_er), Secret(sk_ai), Secret(sk_ar))

    @property
    def fragmentation(self) -> bool:
        """Both ends announced RFC 7383 fragmentation (§2.3)."""
        return self._framing.fragmentation

    @property
    def rekey_at(self) -> float | None:
        """When this IKE SA is due for rekeying (None: not scheduled)."""
        return self._rekey_at

    @property
    def expires_at(self) -> float | None:
        """IKEv2 SAs have no lifetime of their own: they live until rekeyed or deleted."""
        return None

    def _name(self) -> str:
        """How log lines name this IKE SA: connection[SPIi/SPIr], as strongSwan does."""
        return f"{self.config.name}[{self.spi_i.hex()}/{(self.spi_r or bytes(8)).hex()}]"

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return (
            f"<IkeSession {self.config.name} {role} {self.spi_i.hex()}/{self.spi_r.hex()} "
            f"{self.state.value}>"
        )

    # -- the five-method surface ---------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for t in (self._transport.get_timer(), self._deadline) if t]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for gave_up in self._transport.handle_timer(now):
            exchange = self._tasks.exchange_of(gave_up.message_id)
            name = _exchange_name(exchange) if isinstance(exchange, ExchangeType) else "other"
            self.counters.exchange(2, name, "timeout")
            if exchange_log.enabled():  # the request's text names its exchange
                self._exchange_over(gave_up.text.split(" ", 1)[0] or "request", True,
                                    "no answer")  # fmt: skip
            self._close(f"no answer after {gave_up.transmissions} transmissions", now)
            return
        if self._deadline is not None and now >= self._deadline:
            if self.state in (State.INIT_DONE, State.INIT_SENT, State.AUTH_SENT):
                if exchange_log.enabled() and self.state is not State.INIT_DONE:
                    under_way = "IKE_SA_INIT" if self.state is State.INIT_SENT else "IKE_AUTH"
                    self._exchange_over(under_way, True, "no answer")
                self._close("half-open IKE SA timed out", now)
            elif self.state is State.ESTABLISHED:
                self._deadline = None
                if self._rekey_at is not None and now >= self._rekey_at:
                    self._rekey_at = None
                    self.rekey_ike(now)
                elif self.config.dpd_delay and self._transport.window_open():
                    # RFC 7296 §2.4: an empty INFORMATIONAL request checks liveness.
                    self._tasks.queue(Informational(self), now)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        try:
            self._receive(data, addr, now)
        except (IkeProtocolError, IkeIntegrityError, IkeCryptoError):
            # RFC 7296 §2.21.1: a message that does not decode or authenticate is dropped;
            # the exchange's own errors were answered where they arose.
            return

    # -- user calls ------------------------------------------------------------------------

    def initiate(self, child: ChildConfig | None, now: float) -> None:
        """Start IKE_SA_INIT; the CHILD_SA `child` comes with IKE_AUTH."""
        if not self.initiator or self.state is not State.IDLE:
            raise IkeProtocolError(NotifyType.INVALID_SYNTAX, f"cannot initiate in {self.state}")
        if child is None:
            raise IkeProtocolError(NotifyType.INVALID_SYNTAX, "IKE_AUTH carries a CHILD_SA")
        init = IkeSaInit(self)
        self._pending_child = child
        self._tasks.queue(init, now)
        # Built once IKE_SA_INIT is through; a client of EAP's takes several round trips.
        auth = EapIkeAuth(self) if isinstance(self._prover, EapProver) else IkeAuth(self)
        if len(self.config.local_rounds) > 1:
            auth = RoundsIkeAuth(self)  # RFC 4739: a certificate, then EAP
        self._tasks.queue(auth, now)
        self._enter(State.INIT_SENT)
        self._deadline = now + self.config.half_open_timeout

    def delete(self, now: float, reason: str = "deleted") -> None:
        """INFORMATIONAL { D(IKE) }: the IKE SA and all its CHILD_SAs go."""
        if self.state is not State.ESTABLISHED:
            self._close(f"{reason} before it was established", now)
            return
        self._delete_reason = reason
        self._enter(State.DELETING)
        # A CHILD_SA not yet asked for would only go with the IKE SA: it is not asked for
        # (a DELETE queued still goes: its CHILD_SA goes down when it is answered).
        self._tasks.drop_queued(lambda task: isinstance(task, ChildCreate))
        self._tasks.queue(Informational(self, (DeletePayload(ProtocolId.IKE),)), now)

    def delete_child(self, spi_in: int, now: float) -> None:
        """INFORMATIONAL { D(ESP, SPI) } for one CHILD_SA (RFC 7296 §1.4.1)."""
        child = self.children.pop(spi_in, None)
        if child is None or self.state is not State.ESTABLISHED:
            return
        self._deleting[spi_in] = ChildSaDown(child.spi_in, child.spi_out, by_peer=False,
                                             rekeyed=child.rekeyed)  # fmt: skip
        payload = DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),))
        self._tasks.queue(Informational(self, (payload,), spi_in), now)

    def create_child(self, child: ChildConfig, now: float) -> None:
        """CREATE_CHILD_SA {SA, Ni, TSi, TSr} -->  another CHILD_SA (RFC 7296 §1.3.1)."""
        if self.state is not State.ESTABLISHED:
            raise IkeProtocolError(NotifyType.INVALID_SYNTAX, f"no CHILD_SA in {self.state}")
        self._tasks.queue(ChildCreate(self, child, None), now)

    def rekey_child(self, spi_in: int, now: float) -> bool:
        """CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi, TSr} -->  (RFC 7296 §1.3.3); the old
        CHILD_SA is deleted once the new one is up (§2.8). False if there is nothing to do."""
        child = self.children.get(spi_in)
        if (
            child is None
            or self.state is not State.ESTABLISHED
            or self._tasks.rekeying(renewing(spi_in)) is not None
        ):
            return False
        self._tasks.queue(ChildCreate(self, child.config, child), now)
        return True

    def children_under_way(self) -> tuple[tuple[int, int | None], ...]:
        """The CHILD_SAs our CREATE_CHILD_SA exchanges under way (or queued) are making:
        each one's inbound SPI, and the inbound SPI of the CHILD_SA it renews (None for a
        new one)."""
        return tuple(
            (task.spi_in, task.old.spi_in if task.old is not None else None)
            for task in self._tasks.tasks()
            if isinstance(task, ChildCreate)
        )

    def delete_unheld_child(self, spi_in: int, now: float) -> None:
        """INFORMATIONAL { D(ESP, SPI) } for a CHILD_SA the peer may hold but this end
        does not: one whose CREATE_CHILD_SA the peer answered after this end lost the
        exchange (a restart). The peer deletes its half if it has one and answers either
        way (RFC 7296 §1.4.1); nothing goes down here."""
        if self.state is not State.ESTABLISHED or spi_in in self.children:
            return
        payload = DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),))
        self._tasks.queue(Informational(self, (payload,)), now)

    # IKEv2 rekeys its IKE SA in place (CREATE_CHILD_SA, RFC 7296 §1.3.2), CHILD_SAs and
    # all: the reauthentication steps of `larval.ike.sa.IkeSa` have nothing to do here.

    def adopt_children(self, old: IkeSession) -> list[int]:
        return []

    def retire(self, now: float) -> None:
        return

    def reauth_failed(self, now: float) -> None:
        return

    # -- as a value (larval.ike.state, larval.ikev2.snapshot) -----------------------------

    def sequence_marks(self) -> tuple[int, int, int | None]:
        """Our next Message ID, the peer's next, and the counter of our next AEAD IV:
        where a value written before an exchange under way must be moved on to, so that
        after a restart none of them is used twice (the value's own are behind)."""
        ours, peer = self._transport.ids.counters()
        outbound = self._framing.outbound
        return ours, peer, outbound.next_iv if outbound is not None else None

    def snapshot(self) -> IkeSaState:
        """This IKE SA and its CHILD_SAs as a value, for `restore`; raises `IkeStateError`
        while an exchange is under way that the value cannot hold (`larval.ikev2.snapshot`)."""
        return sa_value.snapshot(self)

    @classmethod
    def restore(
        cls,
        value: IkeSaState,
        config: IkeConfig,
        *,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None = None,
        random_bytes: RandomBytes = system_random,
    ) -> IkeSession:
        """The IKE SA `snapshot` made `value` of, established, with its CHILD_SAs: it
        continues the old one's exchanges with the same SPIs, keys and Message IDs.
        `config` must be the connection it is of (`IkeStateError` otherwise)."""
        return sa_value.restore(cls, value, config, allocate_spi=allocate_spi,
                                 child_policy=child_policy, random_bytes=random_bytes)  # fmt: skip

    def rekey_ike(self, now: float) -> bool:
        """CREATE_CHILD_SA {SA, Ni, KEi} -->  a new IKE SA replaces this one (§1.3.2)."""
        if (
            self.state is not State.ESTABLISHED
            or self._ike_rekey_started
            or self._replaced_by is not None
        ):
            return False
        self._ike_rekey_started = True
        self._tasks.queue(IkeRekey(self), now)
        return True

    def _replace(self, new: IkeSession) -> None:
        """`new` succeeds this IKE SA: the CHILD_SAs move over (RFC 7296 §2.18)."""
        new.children.update(self.children)
        self.children = {}
        # The virtual addresses belong to the IKE SA that goes on (RFC 7296 §2.18).
        new.virtual_ips, new._leases, new._lease_identity = (
            self.virtual_ips, self._leases, self._lease_identity)  # fmt: skip
        new.received = self.received
        self._leases = ()
        self._replaced_by = new

    def _successor(
        self, suite: Suite, shared: bytes, spi_i: bytes, spi_r: bytes, nonce_i: bytes,
        nonce_r: bytes, *, initiator: bool, now: float,
    ) -> IkeSession:  # fmt: skip
        """The IKE SA that replaces this one: keys from the old SK_d (§2.18), the CHILD_SAs
        moved over by `_replace`, message IDs from zero. `initiator` is the role in the
        rekey."""
        prf_old, sk_d_old = self._prf, self._sk_d
        assert prf_old is not None
        new = IkeSession(self.config, initiator=initiator, allocate_spi=self._allocate_spi,
                         child_policy=self._child_policy, random_bytes=self._random,
                         spi_i=spi_i, fragmentation=self._fragmentation_offered,
                         fragment_size=self._framing.fragment_size,
                         prover=self._prover, verifier=self._verifier,
                         wall_clock=self._wall_clock,
                         signature_hashes=self._signature_hashes_offered,
                         address_pool=self._address_pool, counters=self.counters)  # fmt: skip
        new.spi_r = spi_r
        # A rekeyed IKE SA is of the same peers, authenticated as they were (§2.18).
        new.auth_local, new.auth_remote = self.auth_local, self.auth_remote
        # What IKE_SA_INIT agreed holds for the IKE SA that replaces it (RFC 7383 §2.3).
        new._framing.fragmentation = self.fragmentation
        new.remote = self.remote
        new.natted = self.natted
        new._nonce_i, new._nonce_r = nonce_i, nonce_r

        def keys(prf: Prf, encr_size: int, integ_size: int) -> IkeSaKeys:
            return derive_rekeyed_ike_sa_keys(prf_old, sk_d_old, prf, shared, nonce_i, nonce_r,
                                              spi_i, spi_r, encr_size, integ_size)  # fmt: skip

        take_keys(new, suite, keys)
        new._enter(State.ESTABLISHED)
        new.established_at = now
        new._schedule(now)
        return new

    def _switch_connection(self, candidate: Candidate) -> None:
        """IKE_SA_INIT (by the proposals) or IKE_AUTH (by the peer's identity) chose
        another connection for this IKE SA, before any CHILD_SA: its configuration,
        policy, pools and the provers made from it are the IKE SA's now."""
        assert not self.children and self.state in (State.IDLE, State.INIT_DONE)
        self.config = candidate.config
        self._child_policy = candidate.child_policy
        self._address_pool = candidate.address_pool
        self._prover = prover_for(candidate.config)
        self._verifier = verifier_for(candidate.config)
        candidate.take()

    def _established(self, now: float) -> None:
        """IKE_AUTH proved both ends: the IKE SA is up, its liveness and rekey scheduled."""
        self.established_at = now
        self._schedule(now)
        self._events.append(
            IkeSaUp(self.spi_i, self.spi_r, self.suite, self.initiator, self.natted)
        )

    def _schedule(self, now: float) -> None:
        """The next liveness check or IKE SA rekey, whichever comes first."""
        times = []
        if self.config.dpd_delay:
            times.append(now + self.config.dpd_delay)
        if self.config.rekey_time and not self._ike_rekey_started:
            # Like strongSwan: a little before rekey_time, at random, to avoid collisions.
            jitter = int.from_bytes(self._random(2), "big") / 65536 * self.config.rekey_time * 0.1
            self._rekey_at = now + self.config.rekey_time - jitter
            times.append(self._rekey_at)
        self._deadline = min(times) if times else None

    # -- receiving -----------------------------------------------------------------------

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        header = decode_message(data) if len(data) >= 28 else None
        if header is None:
            return
        exchange, is_response = header.exchange_type, header.is_response
        last = header.payloads[-1] if header.payloads else None
        skf = last if isinstance(last, SkfPayload) else None
        # RFC 7296 §2.1: a resent request brings back our answer, and of a fragmented
        # request only fragment 1 does (RFC 7383 §2.6.1); a response must answer our
        # outstanding request.
        first = skf is None or skf.fragment_number == 1
        verdict = self._transport.receive(
            data, addr, header.message_id, is_response, first_fragment=first
        )
        if verdict is Verdict.REPLAYED:
            log.debug("%s: %s request %d received again, resending %s", self._name(),
                      exchange.name, header.message_id,
                      self._transport.reply_text(data, header.message_id))  # fmt: skip
            return
        if verdict is Verdict.DROPPED:
            return
        state, direction = self.state, Direction.RESPONSE if is_response else Direction.REQUEST
        key = (state, exchange, direction)
        entry = TRANSITIONS.get(key) or _refusal(*key)  # an exchange type with no name
        try:
            if isinstance(entry, Refusal) and entry.notify is None:
                raise _out_of_place(state, exchange, direction, entry)
            message = self._open(data, header, skf, addr)
            if message is None:
                return
            if isinstance(entry, Refusal):
                raise _out_of_place(state, exchange, direction, entry)
            over = self._take(entry.step, data, message, addr, now)
        except IkeExchangeError as error:
            # The one place where what the table refuses, and what an exchange refuses,
            # turns into an answer or a logged drop (RFC 7296 §2.21).
            self._refused(header, error, addr, now)
            if (
                exchange_log.enabled()
                and not isinstance(error, IkeOutOfPlace)
                and (is_response or error.answered)
            ):
                self._exchange_over(exchange.name, is_response, _notify_name(error.notify),
                                    peer=addr)  # fmt: skip
            return
        if entry.next is not None and over and self.state is not State.CLOSED:
            self._enter(entry.next)

    def _open(
        self, data: bytes, header: IkeMessage, skf: SkfPayload | None, addr: Address
    ) -> IkeMessage | None:
        """The message a datagram the table lets in carries, checked and decrypted; None
        while fragments of it are missing (RFC 7383 §2.6)."""
        if header.exchange_type is ExchangeType.IKE_SA_INIT:
            self._log_message("received", header)
            return header
        # RFC 7383 §2.6: each fragment is checked and opened on its own, then reassembled.
        message = self._transport.unframe(data, header)
        if skf is not None and self.fragmentation:
            log.debug("%s: received fragment %d of %d of %s %s %d", self._name(),
                      skf.fragment_number, skf.total_fragments, header.exchange_type.name,
                      "response" if header.is_response else "request",
                      header.message_id)  # fmt: skip
        if message is None:
            return None
        if self.natted and addr[0] == self.remote[0] and addr[1] not in (self.remote[1], IKE_PORT):
            # RFC 7296 §2.23: a NAT mapping of the peer's changed; what proves itself says
            # where the peer is now. Only the port: an SA's addresses stay what they are.
            log.info("%s: the peer is at %s[%d] now (was %s[%d])", self._name(), addr[0],
                     addr[1], self.remote[0], self.remote[1])  # fmt: skip
            self.remote = addr
        self._log_message("received", message)
        return message

    def _take(
        self, task_of: Responder | None, data: bytes, message: IkeMessage, addr: Address,
        now: float,
    ) -> bool:  # fmt: skip
        """Hand a message to the task the table names; True when its exchange is over.
        The state stays while it is not (IKE_SA_INIT again, with a COOKIE or another
        group: RFC 7296 §1.2, §2.6; another round of IKE_AUTH), and for a response no
        task awaits, which is dropped."""
        if message.exchange_type is ExchangeType.IKE_SA_INIT:
            # AUTH signs IKE_SA_INIT's messages as they went on the wire (§2.15).
            if message.is_response:
                self._init_response = data
            else:
                self._init_request = data
        marked = len(self._events)
        if task_of is REQUESTER:
            ours = self._tasks.response(message.message_id, message, now)
            if ours is not None:
                self._count_response(message)
            over = ours is not None and ours.done
            if over and exchange_log.enabled():
                self._exchange_over(message.exchange_type.name, True, _result(message.payloads),
                                    marked)  # fmt: skip
            return over
        if self.state in (State.IDLE, State.INIT_DONE):
            self.remote = addr  # §2.11: the IKE SA is answered where it is opened from
        task = self._responding
        if task is None or task.exchange is not message.exchange_type:
            task = task_of(self)
        task.process(message, now)
        answer = task.build(now)
        self._answer(message, answer)
        task.answered(now)
        self._responding = None if task.done else task
        if task.done and exchange_log.enabled():
            self._exchange_over(message.exchange_type.name, False, _result(answer), marked)
        return task.done

    def _exchange_over(
        self, exchange: str, initiated: bool, result: str, marked: int | None = None,
        peer: Address | None = None,
    ) -> None:  # fmt: skip
        """An exchange is over with `result` (``ok``, the error notify that ended it, or
        ``no answer``): its line at INFO (`larval.ike.exchange_log`), with the CHILD_SAs
        among the events reported since `marked`. The caller checked that INFO is on."""
        made = list(self._events)[marked:] if marked is not None else ()
        peer = peer or self.remote
        exchange_log.log_exchange(self.config.name, self.unique_id, self.spi_i, self.spi_r,
                                  exchange, initiated, result, peer, made)  # fmt: skip

    def _refused(self, request: IkeMessage, error: IkeExchangeError, addr: Address,
                 now: float) -> None:  # fmt: skip
        """Answer a refused request with its error notification, or drop it; then close
        the IKE SA if the refusal ends it. A response is never answered (§2.21)."""
        kind = "response" if request.is_response else "request"
        answered = error.answered and not request.is_response
        if request.is_response and not isinstance(error, IkeOutOfPlace):
            self.counters.exchange(2, _exchange_name(request.exchange_type), "failed")
        elif not answered:  # what this end answers is counted as it goes (`_answer`)
            self.counters.exchange(2, _exchange_name(request.exchange_type), "refused")
        log.info("%s: %s %s %d refused: %s%s", self._name(), request.exchange_type.name, kind,
                 request.message_id, error, "" if answered else ", dropped")  # fmt: skip
        if answered and request.exchange_type is ExchangeType.IKE_SA_INIT:
            self._refuse_init(request, error.notify, error.data, addr)
        elif answered:
            notify = NotifyPayload(error.protocol_id, error.notify, error.spi, error.data)
            self._answer(request, (notify,))
        if error.close is not None:
            self._close(error.close, now)

    def _enter(self, state: State) -> None:
        """The one place the state changes: to the table's next state when a message is
        taken, and otherwise when the user opens or deletes the IKE SA or it closes."""
        self.state = state
        # Looked up here, not in `phase`, which the key manager reads after every event:
        # an Enum's hash is computed in Python.
        self._phase = _PHASES[state]

    # -- sending -------------------------------------------------------------------------

    def _send_request(self, exchange: Hashable, payloads: tuple[Payload, ...], now: float) -> int:
        """A started task's request goes out, resent until answered; its Message ID."""
        assert isinstance(exchange, ExchangeType)
        # IKE_SA_INIT is Message ID 0, a retry with a COOKIE or another group too (§2.6, §1.2).
        init = exchange is ExchangeType.IKE_SA_INIT
        mid = 0 if init else self._transport.new_message_id()
        message = IkeMessage(self.spi_i, self.spi_r or bytes(8), exchange, self.initiator, False,
                             mid, payloads)  # fmt: skip
        datagrams = self._transport.frame(message)
        if init:
            self._init_request = datagrams[0]  # AUTH signs it (§2.15)
        self._log_message("sending", message, len(datagrams))
        self._transport.send_request(mid, datagrams, now, self._request_text)
        return mid

    def _count_response(self, response: IkeMessage) -> None:
        """A response to a request of ours was taken: its exchange is counted, ``failed``
        if the response carries an error notification (each counted by name)."""
        result = "ok"
        for payload in response.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type < 16384:
                self.counters.error_received(2, _notify_name(payload.notify_type))
                if payload.notify_type == NotifyType.AUTHENTICATION_FAILED:
                    self.counters.auth_failed("peer_refused")
                result = "failed"
        self.counters.exchange(2, _exchange_name(response.exchange_type), result)

    def _count_answer(self, exchange: ExchangeType, payloads: tuple[Payload, ...]) -> None:
        """An answer to the peer's request goes out: its exchange is counted, ``refused``
        if it carries an error notification (each counted by name)."""
        result = "ok"
        for payload in payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type < 16384:
                self.counters.error_sent(2, _notify_name(payload.notify_type))
                result = "refused"
        self.counters.exchange(2, _exchange_name(exchange), result)

    def _answer(self, request: IkeMessage, payloads: tuple[Payload, ...]) -> None:
        self._count_answer(request.exchange_type, payloads)
        message = IkeMessage(self.spi_i, self.spi_r, request.exchange_type, self.initiator, True,
                             request.message_id, payloads)  # fmt: skip
        datagrams = self._transport.frame(message)
        if request.exchange_type is ExchangeType.IKE_SA_INIT:
            self._init_response = datagrams[0]  # AUTH signs it (§2.15)
        self._log_message("sending", message, len(datagrams))
        self._transport.reply(request.message_id, datagrams, self.remote, self._response_text)

    def _notify_peer(self, notify: NotifyType) -> None:
        """INFORMATIONAL { N(notify) } sent once and not awaited: the initiator's word of
        an IKE_AUTH response it refuses, before it closes (RFC 7296 §2.21.2)."""
        message = IkeMessage(self.spi_i, self.spi_r, ExchangeType.INFORMATIONAL, self.initiator,
                             False, self._transport.new_message_id(),
                             (NotifyPayload(ProtocolId.NONE, notify),))  # fmt: skip
        datagrams = self._transport.frame(message)
        self._log_message("sending", message, len(datagrams))
        self._transport.send(datagrams)

    def _refuse_init(self, message: IkeMessage, notify: int, data: bytes, addr: Address) -> None:
        """<-- HDR, N(error): a stateless IKE_SA_INIT error response (§1.2, §2.6)."""
        response = init_error(message.spi_i, notify, data)
        self._count_answer(ExchangeType.IKE_SA_INIT, response.payloads)
        self._log_message("sending", response)
        self._transport.send(self._transport.frame(response), addr)

    def _log_message(self, verb: str, message: IkeMessage, fragments: int = 1) -> None:
        """``s2s[SPIi/SPIr]: sending IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]``"""
        if not log.isEnabledFor(logging.INFO):
            return  # the text costs more than the rest of handling a small message
        kind = "response" if message.is_response else "request"
        text = f"{message.exchange_type.name} {kind} {message.message_id} {message_names(message)}"
        if verb == "sending":
            if message.is_response:
                self._response_text = text
            else:
                self._request_text = text
        split = f" in {fragments} fragments" if fragments > 1 else ""
        log.info("%s: %s %s%s", self._name(), verb, text, split)

    def _close(self, reason: str, now: float, by_peer: bool = False) -> None:
        if self.state is State.CLOSED:
            return
        for child in self.children.values():
            self._events.append(ChildSaDown(child.spi_in, child.spi_out, by_peer=by_peer))
        self.children.clear()
        self._events.extend(self._deleting.values())
        self._deleting.clear()
        if self._pending_child is not None and self.state is not State.ESTABLISHED:
            self._events.append(ChildSaFailed(self._pending_child, reason))
            self._pending_child = None
        self._enter(State.CLOSED)
        release_leases(self)
        self._transport.cancel()
        self._tasks.close()
        self._deadline = None
        self._events.append(IkeSaDown(reason, by_peer))


#: The notify types larval names; a peer's other error numbers are counted as ``other``.
_KNOWN_NOTIFIES = frozenset(int(n) for n in NotifyType)


_KNOWN_EXCHANGES = frozenset(int(e) for e in ExchangeType)


def _notify_name(notify_type: int) -> str:
    """A bounded label for an error notification: its name, or ``other``."""
    return NotifyType(notify_type).name if notify_type in _KNOWN_NOTIFIES else "other"


def _exchange_name(exchange: ExchangeType) -> str:
    """A bounded label for an exchange type a peer may have made up: its name, or ``other``."""
    return exchange.name if exchange in _KNOWN_EXCHANGES else "other"


def _result(payloads: tuple[Payload, ...]) -> str:
    """``ok``, or the first error notification of a message's payloads (RFC 7296 §3.10.1)."""
    for p in payloads:
        if isinstance(p, NotifyPayload) and p.notify_type.is_error:
            return p.notify_type.name
    return "ok"


def _out_of_place(
    state: State, exchange: ExchangeType, direction: Direction, refusal: Refusal[NotifyType]
) -> IkeOutOfPlace:
    """The error for a message the table refuses, naming the state and the input."""
    text = f"{exchange.name} {direction.value} not allowed in state {state.name}: {refusal.reason}"
    notify = refusal.notify if refusal.notify is not None else NotifyType.INVALID_SYNTAX
    return IkeOutOfPlace(notify, text, answered=refusal.notify is not None)
