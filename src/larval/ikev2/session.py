"""One IKE SA, sans-I/O: IKE_SA_INIT, IKE_AUTH with a PSK and the first CHILD_SA, and
INFORMATIONAL (DELETE, liveness), for both roles; IKE message fragmentation (RFC 7383).

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
   request|response): the step that takes it and the state once it is taken, or a named
   `Refusal`. The table is total over `State` x `ExchangeType` x `Direction`.
2. Input the table refuses raises `IkeOutOfPlace`, naming state and input; an exchange
   that refuses a request raises `IkeExchangeError` with its Notify. `_receive` catches
   both, in one place, and answers with the error notification or drops the message,
   logging it either way (RFC 7296 §2.21). A message that does not decode or decrypt is
   dropped before that (§2.21.1).
3. The state changes in `_enter` only: to the table's next state once a message is taken
   (unless the exchange starts over or the IKE SA closed), and otherwise when the user
   opens or deletes the IKE SA, or it closes.
4. The requests this end sends are tasks (`larval.ikev2.exchanges`), run by a
   `larval.ike.task.TaskManager`: queued behind the window (one request each way, §2.3),
   each response handed to the task whose request it answers, and a rekey of ours that
   collides with the peer's found there (§2.8).
5. Message IDs, retransmission with back-off (§2.1), the cached response and fragments are
   the transport's (`larval.ike.transport`, with `WindowedIds` and
   `larval.ikev2.framing`): the exchanges hand it messages and take what it lets through.
6. IKE_AUTH proves each end with an `Authenticator` (`larval.ikev2.auth`); PSK by default.

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

Logging (`larval.ike`): one line per message sent or received, as strongSwan writes them,
``s2s[SPIi/SPIr]: sending IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]``, at INFO, and at
DEBUG for retransmissions. Only payload names are logged, never keys, nonces or AUTH
data. A NO_PROPOSAL_CHOSEN sent by this end logs both sides' proposals. A refused
message has one line at INFO naming the exchange, the state and why, and whether it was
answered or dropped.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import logging
import struct
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from larval.crypto.dh import DhGroup, DhKeyPair
from larval.crypto.ike_auth import signed_octets
from larval.crypto.ike_errors import IkeCryptoError, IkeIntegrityError
from larval.crypto.ike_keys import (
    derive_child_sa_keys,
    derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
)
from larval.crypto.ike_transforms import (
    TransformType,
    encr_key_size,
    integ_key_size,
)
from larval.crypto.prf import Prf
from larval.crypto.randomness import RandomBytes, system_random
from larval.crypto.sk import SkCipher
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress, IPNetwork, Suite
from larval.ike.events import (
    ChildSaDown,
    ChildSaFailed,
    ChildSaUp,
    Event,
    IkeSaDown,
    IkeSaRekeyed,
    IkeSaUp,
)
from larval.ike.render import suite_text
from larval.ike.sa import Phase
from larval.ike.state import IkeSaState
from larval.ike.task import TaskManager, redundant
from larval.ike.transport import (
    IkeTransport,
    OverTransport,
    Verdict,
    WindowedIds,
)
from larval.ikev2 import snapshot as sa_value
from larval.ikev2.auth import Authenticator, PskAuthenticator
from larval.ikev2.constants import (
    ExchangeType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from larval.ikev2.errors import IkeExchangeError, IkeOutOfPlace, IkeProtocolError
from larval.ikev2.exchanges import IKE_SA, ChildCreate, IkeAuth, IkeRekey, Informational
from larval.ikev2.framing import FRAGMENT_SIZE, Ikev2Framing
from larval.ikev2.message import IkeMessage, decode_message
from larval.ikev2.negotiate import (
    choose,
    from_wire,
    narrow,
    networks_of,
    selectors_for,
    suite_get,
    to_wire,
)
from larval.ikev2.payloads import (
    AuthPayload,
    DeletePayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SkfPayload,
)
from larval.ikev2.render import describe, message_names
from larval.ikev2.sa_payload import Proposal, SaPayload
from larval.ikev2.stateless import init_error
from larval.ikev2.ts_payload import TsPayload

Address = tuple[str, int]
log = logging.getLogger("larval.ike")
NONCE_SIZE = 32


class State(enum.Enum):
    IDLE = "idle"
    INIT_SENT = "IKE_SA_INIT sent"
    AUTH_SENT = "IKE_AUTH sent"
    INIT_DONE = "IKE_SA_INIT answered"  # responder, waiting for IKE_AUTH
    ESTABLISHED = "established"
    DELETING = "deleting"
    CLOSED = "closed"


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


class Step(enum.Enum):
    """What takes a message the table lets in."""

    INIT_RESPONDER = "IKE_SA_INIT responder"  # answers SA, KE, Nr
    INIT_INITIATOR = "IKE_SA_INIT initiator"  # takes SA, KE, Nr; sends IKE_AUTH
    AUTH_RESPONDER = "IKE_AUTH responder"
    CHILD_RESPONDER = "CREATE_CHILD_SA responder"
    INFORMATIONAL_RESPONDER = "INFORMATIONAL responder"
    REQUESTER = "the task whose request it answers"


@dataclass(frozen=True, slots=True)
class Transition:
    """A message the state allows: who takes it, and the state once it is taken (None:
    the state stays)."""

    step: Step
    next: State | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message the state does not allow, and why: answered with `notify` once it has
    proved itself (decrypted), or, with no notify, dropped unopened and logged."""

    reason: str
    notify: NotifyType | None = None


Input = tuple[State, ExchangeType, Direction]
_REQ, _RESP = Direction.REQUEST, Direction.RESPONSE
_X = ExchangeType

#: (state, exchange, request|response received) -> what takes it and the next state, or
#: why it is refused. Total over State x ExchangeType x Direction; an exchange type that
#: is not in the enum is refused like one of its members with no row.
TRANSITIONS: dict[Input, Transition | Refusal] = {
    (State.IDLE, _X.IKE_SA_INIT, _REQ): Transition(Step.INIT_RESPONDER, State.INIT_DONE),
    (State.INIT_SENT, _X.IKE_SA_INIT, _RESP): Transition(Step.INIT_INITIATOR, State.AUTH_SENT),
    (State.INIT_DONE, _X.IKE_AUTH, _REQ): Transition(Step.AUTH_RESPONDER, State.ESTABLISHED),
    (State.AUTH_SENT, _X.IKE_AUTH, _RESP): Transition(Step.REQUESTER, State.ESTABLISHED),
    (State.ESTABLISHED, _X.CREATE_CHILD_SA, _REQ): Transition(Step.CHILD_RESPONDER),
    (State.ESTABLISHED, _X.CREATE_CHILD_SA, _RESP): Transition(Step.REQUESTER),
    (State.ESTABLISHED, _X.INFORMATIONAL, _REQ): Transition(Step.INFORMATIONAL_RESPONDER),
    (State.ESTABLISHED, _X.INFORMATIONAL, _RESP): Transition(Step.REQUESTER),
    (State.DELETING, _X.INFORMATIONAL, _REQ): Transition(Step.INFORMATIONAL_RESPONDER),
    (State.DELETING, _X.INFORMATIONAL, _RESP): Transition(Step.REQUESTER),
    # RFC 7296 §2.8.2, §2.25: this IKE SA is going; the peer may try again on another.
    (State.DELETING, _X.CREATE_CHILD_SA, _REQ): Refusal(
        "the IKE SA is being deleted", NotifyType.TEMPORARY_FAILURE
    ),
}


def _refusal(state: State, exchange: ExchangeType, direction: Direction) -> Refusal:
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


for _key in itertools.product(State, ExchangeType, Direction):
    TRANSITIONS.setdefault(_key, _refusal(*_key))


class ChildSa:
    """A CHILD_SA of this IKE SA, as far as IKE is concerned."""

    __slots__ = ("config", "local_ts", "remote_ts", "spi_in", "spi_out", "suite")

    def __init__(
        self,
        config: ChildConfig,
        spi_in: int,
        spi_out: int,
        suite: Suite,
        local_ts: tuple[IPNetwork, ...] = (),
        remote_ts: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.config = config
        self.spi_in = spi_in
        self.spi_out = spi_out
        self.suite = suite
        self.local_ts = local_ts or config.local_ts
        self.remote_ts = remote_ts or config.remote_ts


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
        authenticator: Authenticator | None = None,
    ) -> None:
        """`fragmentation`: announce RFC 7383 support; `fragment_size`: the largest
        protected message sent whole when both ends announced it (§2.5.1);
        `authenticator`: how IKE_AUTH proves each end (the configured PSK by default)."""
        self.config = config
        self.initiator = initiator
        self._allocate_spi = allocate_spi
        self._child_policy = child_policy
        self._random = random_bytes
        self._authenticator = authenticator or PskAuthenticator(config.psk)
        self._enter(State.IDLE)
        self.spi_i = spi_i if spi_i is not None else (random_bytes(8) if initiator else b"")
        self.spi_r = b""
        # Message IDs, the window, retransmission, the cached response and fragments.
        self._framing = Ikev2Framing(fragment_size)
        self._transport: IkeTransport[IkeMessage] = IkeTransport.of(
            config, WindowedIds(), self._framing, self._name
        )
        self.natted = False
        self.children: dict[int, ChildSa] = {}  # by inbound SPI
        self.suite: Suite = ()
        self._events: deque[Event] = deque()
        self._request_text = self._response_text = ""  # how the logs name them
        # RFC 7383: offered by us; agreed (`fragmentation`) once the peer announced it (§2.3).
        self._fragmentation_offered = fragmentation
        self._pending_child: ChildConfig | None = None
        # CHILD_SAs whose DELETE is unanswered: they go down when the peer has deleted its
        # half, so that what it sent on the old SA meanwhile still arrives.
        self._deleting: dict[int, ChildSaDown] = {}
        self._dh_group = 0
        self._dh: DhKeyPair | None = None
        self._cookie = b""
        self._nonce_i = self._nonce_r = b""
        self._init_request = self._init_response = b""
        self._prf: Prf | None = None
        self._sk_d = self._sk_pi = self._sk_pr = b""
        self._child_spi_in = 0
        # The requests of this end, as tasks: one out at a time (RFC 7296 §2.3), the rest
        # queued; each response to the task that sent its request; collisions (§2.8).
        self._tasks: TaskManager[IkeMessage, tuple[Payload, ...]] = TaskManager(
            self._transport, self._send_request, self._name
        )
        self._ike_rekey_started = False
        self._replaced_by: IkeSession | None = None  # the IKE SA that took our CHILD_SAs
        self._rekey_at: float | None = None
        self._deadline: float | None = None  # half-open or liveness
        self.established_at: float | None = None
        self._delete_reason = "deleted"

    version = 2

    @property
    def phase(self) -> Phase:
        return _PHASES[self.state]

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
            self._close(f"no answer after {gave_up.transmissions} transmissions", now)
            return
        if self._deadline is not None and now >= self._deadline:
            if self.state in (State.INIT_DONE, State.INIT_SENT, State.AUTH_SENT):
                self._close("half-open IKE SA timed out", now)
            elif self.state is State.ESTABLISHED:
                self._deadline = None
                if self._rekey_at is not None and now >= self._rekey_at:
                    self._rekey_at = None
                    self.rekey_ike(now)
                elif self.config.dpd_delay and self._transport.window_open():
                    # RFC 7296 §2.4: an empty INFORMATIONAL request checks liveness.
                    self._tasks.queue(Informational((), self._informational_response), now)

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
        self._pending_child = child
        self._dh_group = _first_dh(self.config.proposals)
        self._send_init(now)
        self._enter(State.INIT_SENT)
        self._deadline = now + self.config.half_open_timeout

    def delete(self, now: float, reason: str = "deleted") -> None:
        """INFORMATIONAL { D(IKE) }: the IKE SA and all its CHILD_SAs go."""
        if self.state is not State.ESTABLISHED:
            self._close(f"{reason} before it was established", now)
            return
        self._delete_reason = reason
        self._enter(State.DELETING)
        delete = Informational((DeletePayload(ProtocolId.IKE),), self._informational_response)
        self._tasks.queue(delete, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        """INFORMATIONAL { D(ESP, SPI) } for one CHILD_SA (RFC 7296 §1.4.1)."""
        child = self.children.pop(spi_in, None)
        if child is None or self.state is not State.ESTABLISHED:
            return
        self._deleting[spi_in] = ChildSaDown(child.spi_in, child.spi_out, by_peer=False)

        def deleted(response: IkeMessage, at: float) -> None:
            # RFC 7296 §1.4.1: the answer says the peer deleted its half; until then
            # packets it sent on the old SA are still on their way, and are received.
            down = self._deleting.pop(spi_in, None)
            if down is not None:
                self._events.append(down)
            self._informational_response(response, at)

        payload = DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),))
        self._tasks.queue(Informational((payload,), deleted), now)

    def create_child(self, child: ChildConfig, now: float) -> None:
        """CREATE_CHILD_SA {SA, Ni, TSi, TSr} -->  another CHILD_SA (RFC 7296 §1.3.1)."""
        if self.state is not State.ESTABLISHED:
            raise IkeProtocolError(NotifyType.INVALID_SYNTAX, f"no CHILD_SA in {self.state}")
        self._request_child(child, None, now)

    def rekey_child(self, spi_in: int, now: float) -> bool:
        """CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi, TSr} -->  (RFC 7296 §1.3.3); the old
        CHILD_SA is deleted once the new one is up (§2.8). False if there is nothing to do."""
        child = self.children.get(spi_in)
        if (
            child is None
            or self.state is not State.ESTABLISHED
            or self._tasks.rekeying(("child", spi_in)) is not None
        ):
            return False
        self._request_child(child.config, child, now)
        return True

    # IKEv2 rekeys its IKE SA in place (CREATE_CHILD_SA, RFC 7296 §1.3.2), CHILD_SAs and
    # all: the reauthentication steps of `larval.ike.sa.IkeSa` have nothing to do here.

    def adopt_children(self, old: IkeSession) -> list[int]:
        return []

    def retire(self, now: float) -> None:
        return

    def reauth_failed(self, now: float) -> None:
        return

    # -- as a value (larval.ike.state, larval.ikev2.snapshot) -----------------------------

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

    def _request_child(self, config: ChildConfig, old: ChildSa | None, now: float) -> None:
        spi_in = self._allocate_spi()
        nonce_i = self._random(NONCE_SIZE)
        spi = spi_in.to_bytes(4, "big")
        proposals = tuple(
            to_wire(n + 1, ProtocolId.ESP, spi, suite) for n, suite in enumerate(config.proposals)
        )
        payloads: list[Payload] = []
        if old is not None:
            payloads.append(
                NotifyPayload(ProtocolId.ESP, NotifyType.REKEY_SA, old.spi_in.to_bytes(4, "big"))
            )
        if config.mode == "transport":
            payloads.append(NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE))
        local_ts = old.local_ts if old is not None else config.local_ts
        remote_ts = old.remote_ts if old is not None else config.remote_ts
        payloads += [SaPayload(proposals), NoncePayload(nonce_i)]
        # PFS (RFC 7296 §1.3.1): a KE for the first group the proposals name.
        groups = _groups(config.proposals)
        dh = DhGroup.of(groups[0]).generate(self._random) if groups else None
        if dh is not None:
            payloads.append(KePayload(groups[0], dh.public_bytes))
        payloads += [
            TsPayload(PayloadType.TSi, selectors_for(local_ts)),
            TsPayload(PayloadType.TSr, selectors_for(remote_ts)),
        ]

        task = ChildCreate(tuple(payloads), self._create_child_response, config, old, spi_in,
                           nonce_i, dh)  # fmt: skip
        self._tasks.queue(task, now)

    def _create_child_response(self, task: ChildCreate, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}  or an error notify."""
        config, old, spi_in, nonce_i, dh = task.config, task.old, task.spi_in, task.nonce_i, task.dh
        collision = task.collision
        sa, nonce = message.first(SaPayload), message.first(NoncePayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        refusals = [n for n in message.get(NotifyPayload) if n.notify_type < 16384]
        chosen = choose(config.proposals, sa.proposals, ProtocolId.ESP) if sa else None
        if refusals or sa is None or nonce is None or not tsi or not tsr or chosen is None:
            reason = ", ".join(NotifyType(n.notify_type).name for n in refusals) or "bad answer"
            if collision is not None:
                # §2.8.1, §2.25: the peer's rekey of the same CHILD_SA went through (and
                # it deletes the old one); ours is simply not needed.
                log.info("%s: CHILD_SA %08x was rekeyed by the peer, our rekey is void (%s)",
                         self._name(), old.spi_in if old else 0, reason)  # fmt: skip
                return
            self._events.append(ChildSaFailed(config, f"CREATE_CHILD_SA refused: {reason}"))
            return
        shared = None
        if suite_get(chosen[1], TransformType.DH) is not None:
            ke = message.first(KePayload)
            if dh is None or ke is None or ke.dh_group != dh.group.dh_id:
                self._events.append(ChildSaFailed(config, "CREATE_CHILD_SA: no KE for PFS"))
                return
            try:
                shared = dh.shared_secret(ke.data)
            except IkeCryptoError:
                self._events.append(ChildSaFailed(config, "CREATE_CHILD_SA: invalid KE"))
                return
        spi_out = int.from_bytes(sa.proposals[0].spi, "big")
        self._child_up(config, spi_in, spi_out, chosen[1], *_proposed_networks(tsi[0], tsr[0]),
                       nonces=(nonce_i, nonce.data), exchange_initiator=True,
                       shared=shared)  # fmt: skip
        if old is not None and collision is not None:
            _, peer_nonce_i, peer_nonce_r = collision
            # RFC 7296 §2.8.1: of the two new CHILD_SAs, the redundant one is deleted by
            # the node that created it, its exchange's initiator; the initiator of the
            # other one deletes the old CHILD_SA.
            if redundant((nonce_i, nonce.data), (peer_nonce_i, peer_nonce_r)):
                log.info("%s: simultaneous rekey of CHILD_SA %08x, ours is redundant",
                         self._name(), old.spi_in)  # fmt: skip
                self.delete_child(spi_in, now)
                return
            log.info("%s: simultaneous rekey of CHILD_SA %08x, the peer's is redundant",
                     self._name(), old.spi_in)  # fmt: skip
        if old is not None and old.spi_in in self.children:
            # §2.8: the initiator of the rekey deletes the old CHILD_SA.
            self.delete_child(old.spi_in, now)

    def rekey_ike(self, now: float) -> bool:
        """CREATE_CHILD_SA {SA, Ni, KEi} -->  a new IKE SA replaces this one (§1.3.2)."""
        if (
            self.state is not State.ESTABLISHED
            or self._ike_rekey_started
            or self._replaced_by is not None
        ):
            return False
        self._ike_rekey_started = True
        group = suite_get(self.suite, TransformType.DH)
        assert group is not None
        dh = DhGroup.of(group.id).generate(self._random)
        spi_i = self._random(8)
        nonce_i = self._random(NONCE_SIZE)
        proposals = tuple(
            to_wire(n + 1, ProtocolId.IKE, spi_i, suite)
            for n, suite in enumerate(_with_group_first(self.config.proposals, group.id))
        )
        payloads: tuple[Payload, ...] = (
            SaPayload(proposals),
            NoncePayload(nonce_i),
            KePayload(group.id, dh.public_bytes),
        )

        self._tasks.queue(IkeRekey(payloads, self._rekey_ike_response, spi_i, nonce_i, dh), now)
        return True

    def _rekey_ike_response(self, task: IkeRekey, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {SA, Nr, KEr}: the new IKE SA, then DELETE of this one (§2.18).

        After a collision (§2.8.2) one of the two new IKE SAs is redundant: the one made
        with the lowest of the four nonces, deleted by its initiator. The other takes the
        CHILD_SAs, and its initiator deletes this one."""
        collision, spi_i, nonce_i, dh = task.collision, task.spi_i, task.nonce_i, task.dh
        sa, nonce, ke = (
            message.first(SaPayload),
            message.first(NoncePayload),
            message.first(KePayload),
        )
        chosen = choose(self.config.proposals, sa.proposals, ProtocolId.IKE) if sa else None
        if (
            sa is None
            or nonce is None
            or ke is None
            or chosen is None
            or len(sa.proposals[0].spi) != 8
        ):
            self._rekey_ike_failed(collision)
            return
        try:
            shared = dh.shared_secret(ke.data)
        except IkeCryptoError:
            self._rekey_ike_failed(collision)
            return
        new = self._successor(chosen[1], shared, spi_i, sa.proposals[0].spi, nonce_i, nonce.data,
                              initiator=True, now=now)  # fmt: skip
        self._events.append(IkeSaRekeyed(new))
        if collision is not None:
            theirs, peer_nonce_i, peer_nonce_r = collision
            if redundant((nonce_i, nonce.data), (peer_nonce_i, peer_nonce_r)):
                # §2.8.2: ours is redundant; we made it, we delete it. The peer's survives
                # with the CHILD_SAs, and the peer deletes this IKE SA.
                log.info("%s: simultaneous IKE SA rekey, ours (%s) is redundant",
                         self._name(), new.spi_i.hex())  # fmt: skip
                self._replace(theirs)
                new.delete(now)
                return
            log.info("%s: simultaneous IKE SA rekey, the peer's (%s) is redundant",
                     self._name(), theirs.spi_i.hex())  # fmt: skip
        self._replace(new)
        self.delete(now)

    def _rekey_ike_failed(self, collision: tuple[IkeSession, bytes, bytes] | None) -> None:
        if collision is not None:
            # §2.8.2: the peer finished its rekey without noticing ours (it answers with
            # TEMPORARY_FAILURE): the IKE SA its exchange made is the one that stays.
            self._replace(collision[0])
        else:
            self._ike_rekey_started = False  # try again at the next timer

    def _replace(self, new: IkeSession) -> None:
        """`new` succeeds this IKE SA: the CHILD_SAs move over (RFC 7296 §2.18)."""
        new.children.update(self.children)
        self.children = {}
        self._replaced_by = new

    def _rekey_ike_request(self, message: IkeMessage, sa: SaPayload, now: float) -> None:
        """HDR, SK {SA, Ni, KEi} -->  answered with <-- HDR, SK {SA, Nr, KEr} (§1.3.2)."""
        nonce, ke = message.first(NoncePayload), message.first(KePayload)
        chosen = choose(self.config.proposals, sa.proposals, ProtocolId.IKE)
        if chosen is None or nonce is None or ke is None or len(chosen[0].spi) != 8:
            self._log_no_proposal("IKE", self.config.proposals, sa)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no IKE proposal chosen")
        answer, suite = chosen
        group = suite_get(suite, TransformType.DH)
        if group is None or ke.dh_group != group.id:
            data = struct.pack("!H", group.id) if group is not None else b""
            raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", data)
        dh = DhGroup.of(group.id).generate(self._random)
        try:
            shared = dh.shared_secret(ke.data)
        except IkeCryptoError:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "invalid KE data") from None
        spi_r, nonce_r = self._random(8), self._random(NONCE_SIZE)
        mine = to_wire(answer.number, ProtocolId.IKE, spi_r, suite)
        self._answer(
            message,
            (SaPayload((mine,)), NoncePayload(nonce_r), KePayload(group.id, dh.public_bytes)),
        )
        new = self._successor(suite, shared, answer.spi, spi_r, nonce.data, nonce_r,
                              initiator=False, now=now)  # fmt: skip
        self._events.append(IkeSaRekeyed(new))
        ours = self._tasks.rekeying(IKE_SA)
        if isinstance(ours, IkeRekey):
            # §2.8.2: our own rekey is under way. Which new IKE SA stays is known when it
            # completes; until then the CHILD_SAs stay here.
            ours.collision = (new, nonce.data, nonce_r)
        else:
            self._replace(new)

    def _successor(
        self, suite: Suite, shared: bytes, spi_i: bytes, spi_r: bytes, nonce_i: bytes,
        nonce_r: bytes, *, initiator: bool, now: float,
    ) -> IkeSession:  # fmt: skip
        """The IKE SA that replaces this one: keys from the old SK_d (§2.18), the CHILD_SAs
        moved over by `_replace`, message IDs from zero. `initiator` is the role in the
        rekey."""
        assert self._prf is not None
        encr = suite_get(suite, TransformType.ENCR)
        prf_t = suite_get(suite, TransformType.PRF)
        integ = suite_get(suite, TransformType.INTEG)
        assert encr is not None and prf_t is not None
        integ_id = integ.id if integ is not None else 0
        new = IkeSession(self.config, initiator=initiator, allocate_spi=self._allocate_spi,
                         child_policy=self._child_policy, random_bytes=self._random,
                         spi_i=spi_i, fragmentation=self._fragmentation_offered,
                         fragment_size=self._framing.fragment_size,
                         authenticator=self._authenticator)  # fmt: skip
        new.spi_r = spi_r
        # What IKE_SA_INIT agreed holds for the IKE SA that replaces it (RFC 7383 §2.3).
        new._framing.fragmentation = self.fragmentation
        new.remote = self.remote
        new.natted = self.natted
        new.suite = suite
        new._nonce_i, new._nonce_r = nonce_i, nonce_r
        new._prf = Prf(prf_t.id)
        keys = derive_rekeyed_ike_sa_keys(
            self._prf, self._sk_d, new._prf, shared, nonce_i, nonce_r, spi_i, spi_r,
            encr_key_size(encr), integ_key_size(integ_id),
        )  # fmt: skip
        new._sk_d, new._sk_pi, new._sk_pr = keys.sk_d, keys.sk_pi, keys.sk_pr
        to_r = SkCipher.of(encr, integ_id, keys.sk_ei, keys.sk_ai, random_bytes=self._random)
        to_i = SkCipher.of(encr, integ_id, keys.sk_er, keys.sk_ar, random_bytes=self._random)
        framing = new._framing
        framing.outbound, framing.inbound = (to_r, to_i) if initiator else (to_i, to_r)
        new._enter(State.ESTABLISHED)
        new.established_at = now
        new._schedule(now)
        return new

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

    def _create_child_request(self, message: IkeMessage, now: float) -> None:
        """HDR, SK {[N(REKEY_SA)], SA, Ni, TSi, TSr} -->  answered with <-- SA, Nr, TSi, TSr"""
        if self._replaced_by is not None:
            # RFC 7296 §2.8.2, §2.25: this IKE SA is on its way out.
            raise IkeExchangeError(NotifyType.TEMPORARY_FAILURE, "the IKE SA was rekeyed")
        rekey = message.notify(NotifyType.REKEY_SA)
        sa, nonce = message.first(SaPayload), message.first(NoncePayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        if sa is not None and any(p.protocol_id == ProtocolId.IKE for p in sa.proposals):
            self._rekey_ike_request(message, sa, now)
            return
        if sa is None or nonce is None or not tsi or not tsr:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "CREATE_CHILD_SA without SA, Ni, TS")
        old: ChildSa | None = None
        if rekey is not None:
            spi = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
            old = next((c for c in self.children.values() if c.spi_out == spi), None)
            if old is None:
                raise IkeExchangeError(NotifyType.CHILD_SA_NOT_FOUND, "no such CHILD_SA to rekey",
                                       protocol_id=ProtocolId.ESP, spi=rekey.spi)  # fmt: skip
            policy: ChildConfig | None = old.config
        else:
            policy = (
                self._child_policy(*_proposed_networks(tsi[0], tsr[0]))
                if self._child_policy
                else None
            )
        if policy is None:
            raise IkeExchangeError(NotifyType.TS_UNACCEPTABLE, "no policy for the selectors")
        chosen = choose(policy.proposals, sa.proposals, ProtocolId.ESP)
        if chosen is None or len(chosen[0].spi) != 4:
            self._log_no_proposal("ESP", policy.proposals, sa)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no ESP proposal chosen")
        if old is not None:
            ts_i, ts_r = selectors_for(old.remote_ts), selectors_for(old.local_ts)
        else:
            ts_i = narrow(tsi[0].selectors, policy.remote_ts)  # type: ignore[arg-type]
            ts_r = narrow(tsr[0].selectors, policy.local_ts)  # type: ignore[arg-type]
        if not ts_i or not ts_r:
            raise IkeExchangeError(NotifyType.TS_UNACCEPTABLE, "the selectors do not narrow")
        answer, suite = chosen
        group = suite_get(suite, TransformType.DH)
        shared = None
        ke_r: list[Payload] = []
        if group is not None and group.id:
            ke = message.first(KePayload)
            if ke is None or ke.dh_group != group.id:
                # §1.3.1 with §1.2: ask for the group chosen.
                data = struct.pack("!H", group.id)
                raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", data)
            dh = DhGroup.of(group.id).generate(self._random)
            try:
                shared = dh.shared_secret(ke.data)
            except IkeCryptoError:
                raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "invalid KE data") from None
            ke_r = [KePayload(group.id, dh.public_bytes)]
        spi_out = int.from_bytes(answer.spi, "big")
        spi_in = self._allocate_spi()
        nonce_r = self._random(NONCE_SIZE)
        mine = to_wire(answer.number, ProtocolId.ESP, spi_in.to_bytes(4, "big"), suite)
        answer_payloads: tuple[Payload, ...] = (
            SaPayload((mine,)),
            NoncePayload(nonce_r),
            *ke_r,
            TsPayload(PayloadType.TSi, ts_i),
            TsPayload(PayloadType.TSr, ts_r),
        )
        self._answer(message, answer_payloads)
        self._child_up(policy, spi_in, spi_out, suite, tuple(networks_of(ts_r)),
                       tuple(networks_of(ts_i)), nonces=(nonce.data, nonce_r),
                       exchange_initiator=False, shared=shared)  # fmt: skip
        ours = self._tasks.rekeying(("child", old.spi_in)) if old is not None else None
        if isinstance(ours, ChildCreate):
            # RFC 7296 §2.8.1: both ends rekey this CHILD_SA at once. Answer as usual and
            # decide which new one stays when our own exchange completes.
            ours.collision = (spi_in, nonce.data, nonce_r)

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
            again = self._take(entry.step, data, message, addr, now)
        except IkeExchangeError as error:
            # The one place where what the table refuses, and what an exchange refuses,
            # turns into an answer or a logged drop (RFC 7296 §2.21).
            self._refused(header, error, addr, now)
            return
        if entry.next is not None and not again and self.state is not State.CLOSED:
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
        message = self._transport.unframe(data)
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
        self, step: Step, data: bytes, message: IkeMessage, addr: Address, now: float
    ) -> bool:
        """Hand a message to what the table names; True when the exchange starts over and
        the state stays (a COOKIE, or another DH group asked for: RFC 7296 §1.2, §2.6)."""
        match step:
            case Step.INIT_RESPONDER:
                self._init_request_received(data, message, addr, now)
            case Step.INIT_INITIATOR:
                return self._init_response_received(data, message, now)
            case Step.AUTH_RESPONDER:
                self._auth_request_received(message, addr, now)
            case Step.CHILD_RESPONDER:
                self._create_child_request(message, now)
            case Step.INFORMATIONAL_RESPONDER:
                self._informational_request(message, now)
            case Step.REQUESTER:
                self._tasks.response(message.message_id, message, now)
        return False

    def _refused(self, request: IkeMessage, error: IkeExchangeError, addr: Address,
                 now: float) -> None:  # fmt: skip
        """Answer a refused request with its error notification, or drop it; then close
        the IKE SA if the refusal ends it. A response is never answered (§2.21)."""
        kind = "response" if request.is_response else "request"
        answered = error.answered and not request.is_response
        log.info("%s: %s %s %d refused: %s%s", self._name(), request.exchange_type.name, kind,
                 request.message_id, error, "" if answered else ", dropped")  # fmt: skip
        if not answered:
            pass
        elif request.exchange_type is ExchangeType.IKE_SA_INIT:
            self._refuse_init(request, error.notify, error.data, addr)
        else:
            notify = NotifyPayload(error.protocol_id, error.notify, error.spi, error.data)
            self._answer(request, (notify,))
        if error.close is not None:
            self._close(error.close, now)

    def _enter(self, state: State) -> None:
        """The one place the state changes: to the table's next state when a message is
        taken, and otherwise when the user opens or deletes the IKE SA or it closes."""
        self.state = state

    # -- IKE_SA_INIT ---------------------------------------------------------------------

    def _send_init(self, now: float) -> None:
        """HDR, SA, KE, Ni, N(NAT_DETECTION_*) -->  (RFC 7296 §1.2)"""
        group = DhGroup.of(self._dh_group)
        self._dh = group.generate(self._random)
        # §2.6: a retry with a COOKIE must leave the other payloads, the nonce included,
        # unchanged, since the cookie covers Ni.
        self._nonce_i = self._nonce_i or self._random(NONCE_SIZE)
        proposals = tuple(
            to_wire(n + 1, ProtocolId.IKE, b"", suite)
            for n, suite in enumerate(_with_group_first(self.config.proposals, self._dh_group))
        )
        payloads: list[Payload] = []
        if self._cookie:
            payloads.append(NotifyPayload(ProtocolId.NONE, NotifyType.COOKIE, b"", self._cookie))
        payloads += [
            SaPayload(proposals),
            KePayload(self._dh_group, self._dh.public_bytes),
            NoncePayload(self._nonce_i),
            *self._nat_detection(bytes(8), self.config.remote_addr, self.remote[1]),
            *self._fragmentation_notify(),
        ]
        message = IkeMessage(
            self.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, True, False, 0, tuple(payloads)
        )
        (self._init_request,) = self._transport.frame(message)
        self._log_message("sending", message)
        # Message 0, a retry with a COOKIE or another group too (§2.6, §1.2).
        self._transport.send_request(0, (self._init_request,), now, self._request_text)

    def _fragmentation_notify(self) -> list[NotifyPayload]:
        """N(IKEV2_FRAGMENTATION_SUPPORTED), empty, in IKE_SA_INIT (RFC 7383 §2.3)."""
        if not self._fragmentation_offered:
            return []
        return [NotifyPayload(ProtocolId.NONE, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)]

    def _nat_detection(self, spi_r: bytes, peer: IPAddress, port: int) -> list[NotifyPayload]:
        """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | port) of this end, and of the peer as
        this end sees it (the initiator: as configured; the responder: where the request
        came from)."""
        local = _nat_hash(self.spi_i, spi_r, self.config.local_addr, IKE_PORT)
        remote = _nat_hash(self.spi_i, spi_r, peer, port)
        if self.config.encap:
            # As strongSwan's encap=yes: a source hash nobody can match makes both ends
            # believe in a NAT, so ESP goes in UDP 4500 (RFC 3948).
            local = self._random(20)
        return [
            NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_SOURCE_IP, b"", local),
            NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_DESTINATION_IP, b"", remote),
        ]

    def _nat_seen(self, message: IkeMessage, spi_r: bytes, peer: Address) -> bool:
        """Did the peer's NAT_DETECTION notifies reveal a NAT (or its own encap)?"""
        source = [n for n in message.get(NotifyPayload)
                  if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]  # fmt: skip
        dest = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not source or dest is None:
            return False
        expected_src = _nat_hash(self.spi_i, spi_r, ipaddress_of(peer[0]), peer[1])
        expected_dst = _nat_hash(self.spi_i, spi_r, self.config.local_addr, IKE_PORT)
        return all(n.data != expected_src for n in source) or dest.data != expected_dst

    def _init_response_received(self, data: bytes, header: IkeMessage, now: float) -> bool:
        """<--  HDR, SA, KE, Nr, [CERTREQ]  or an error notify. True: IKE_SA_INIT goes
        again, with a COOKIE or another group."""
        message = header
        cookie = message.notify(NotifyType.COOKIE)
        if cookie is not None:
            # RFC 7296 §2.6: try again with the cookie in front.
            self._cookie = cookie.data
            self._transport.answered(0)
            self._send_init(now)
            return True
        invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) == 2:
            group = struct.unpack("!H", invalid_ke.data)[0]
            if group in _groups(self.config.proposals) and group != self._dh_group:
                # §1.2: the responder asks for another group; start over with it.
                self._dh_group = group
                self._transport.answered(0)
                self._send_init(now)
                return True
        for n in message.get(NotifyPayload):
            if n.notify_type < 16384:
                self._close(f"IKE_SA_INIT refused: {NotifyType(n.notify_type).name}", now)
                return False
        sa, ke, nonce = (
            message.first(SaPayload),
            message.first(KePayload),
            message.first(NoncePayload),
        )
        if sa is None or ke is None or nonce is None or len(sa.proposals) != 1:
            self._close("IKE_SA_INIT response without SA, KE and Nr", now)
            return False
        chosen = choose(self.config.proposals, sa.proposals, ProtocolId.IKE)
        if chosen is None or suite_get(chosen[1], TransformType.DH) is None:
            self._close("the responder chose a proposal we did not offer", now)
            return False
        suite = chosen[1]
        dh = suite_get(suite, TransformType.DH)
        assert dh is not None and self._dh is not None
        if ke.dh_group != dh.id or dh.id != self._dh_group:
            self._close("the responder's KE is not of the chosen group", now)
            return False
        self._transport.answered(0)
        self.spi_r = message.spi_r
        self._nonce_r = nonce.data
        self._init_response = data
        self._framing.fragmentation = self._fragmentation_offered and (
            message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        self.natted = self.config.encap or self._nat_seen(message, self.spi_r, self.remote)
        if self.natted:
            self.remote = (self.remote[0], NAT_T_PORT)  # RFC 7296 §2.23: float to 4500
        self._derive(suite, self._dh.shared_secret(ke.data))
        self._send_auth(now)
        return False

    def _init_request_received(
        self, data: bytes, message: IkeMessage, addr: Address, now: float
    ) -> None:
        """HDR, SA, KE, Ni -->   answered with  <-- HDR, SA, KE, Nr (RFC 7296 §1.2)"""
        self.spi_i = message.spi_i
        self.remote = addr
        sa, ke, nonce = (
            message.first(SaPayload),
            message.first(KePayload),
            message.first(NoncePayload),
        )
        if sa is None or ke is None or nonce is None:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "IKE_SA_INIT without SA, KE and Ni")
        chosen = choose(self.config.proposals, sa.proposals, ProtocolId.IKE)
        if chosen is None:
            self._log_no_proposal("IKE", self.config.proposals, sa)
            reason = "no proposal chosen: " + describe(sa)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close=reason)
        answer, suite = chosen
        dh = suite_get(suite, TransformType.DH)
        if dh is None:
            reason = "the chosen proposal has no DH group"
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close=reason)
        if ke.dh_group != dh.id:
            # §1.2: tell the initiator which group to use; it starts over. The answer keeps
            # no state (§2.6): this session stays IDLE for the retry.
            group = struct.pack("!H", dh.id)
            raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", group)
        self.spi_r = self._random(8)
        self._nonce_i, self._nonce_r = nonce.data, self._random(NONCE_SIZE)
        self._dh = DhGroup.of(dh.id).generate(self._random)
        try:
            shared = self._dh.shared_secret(ke.data)
        except IkeCryptoError:
            reason = "invalid KE data"
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, reason, close=reason) from None
        self._init_request = data
        self.natted = self._nat_seen(message, b"\x00" * 8, addr) or self.config.encap
        # RFC 7383 §2.3: announced in the response only when the request announced it.
        peer_fragments = message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        self._framing.fragmentation = self._fragmentation_offered and peer_fragments
        response = IkeMessage(
            self.spi_i, self.spi_r, ExchangeType.IKE_SA_INIT, False, True, 0,
            (SaPayload((answer,)), KePayload(dh.id, self._dh.public_bytes),
             NoncePayload(self._nonce_r),
             *self._nat_detection(self.spi_r, ipaddress_of(addr[0]), addr[1]),
             *(self._fragmentation_notify() if peer_fragments else [])),
        )  # fmt: skip
        (self._init_response,) = self._transport.frame(response)
        self._log_message("sending", response)
        self._derive(suite, shared)
        self._transport.reply(0, (self._init_response,), addr, self._response_text)
        self._deadline = now + self.config.half_open_timeout

    def _refuse_init(self, message: IkeMessage, notify: int, data: bytes, addr: Address) -> None:
        """<-- HDR, N(error): a stateless IKE_SA_INIT error response (§1.2, §2.6)."""
        response = init_error(message.spi_i, notify, data)
        self._log_message("sending", response)
        self._transport.send(self._transport.frame(response), addr)

    def _derive(self, suite: Suite, shared: bytes) -> None:
        """SKEYSEED and the seven keys (RFC 7296 §2.14), and the SK ciphers of each way."""
        encr = suite_get(suite, TransformType.ENCR)
        prf_t = suite_get(suite, TransformType.PRF)
        integ = suite_get(suite, TransformType.INTEG)
        assert encr is not None and prf_t is not None
        integ_id = integ.id if integ is not None else 0
        self.suite = suite
        self._prf = Prf(prf_t.id)
        keys = derive_ike_sa_keys(
            self._prf, self._nonce_i, self._nonce_r, shared, self.spi_i, self.spi_r,
            encr_key_size(encr), integ_key_size(integ_id),
        )  # fmt: skip
        self._sk_d, self._sk_pi, self._sk_pr = keys.sk_d, keys.sk_pi, keys.sk_pr
        to_r = SkCipher.of(encr, integ_id, keys.sk_ei, keys.sk_ai, random_bytes=self._random)
        to_i = SkCipher.of(encr, integ_id, keys.sk_er, keys.sk_ar, random_bytes=self._random)
        framing = self._framing
        framing.outbound, framing.inbound = (to_r, to_i) if self.initiator else (to_i, to_r)

    # -- IKE_AUTH ------------------------------------------------------------------------

    def _id_payload(self, payload_type: PayloadType) -> IdPayload:
        id_type, data = self.config.local_id
        return IdPayload(payload_type, id_type, data)

    def _send_auth(self, now: float) -> None:
        """HDR, SK {IDi, AUTH, SAi2, TSi, TSr} -->  (RFC 7296 §1.2)"""
        child = self._pending_child
        assert child is not None and self._prf is not None
        idi = self._id_payload(PayloadType.IDi)
        octets = signed_octets(self._init_request, self._nonce_r, self._prf, self._sk_pi,
                               idi.encode_body())  # fmt: skip
        auth = self._authenticator.build(self._prf, octets)
        self._child_spi_in = self._allocate_spi()
        spi = self._child_spi_in.to_bytes(4, "big")
        # No KE in IKE_AUTH, so no PFS for its CHILD_SA: DH transforms are left out, as
        # strongSwan does (RFC 7296 §1.2).
        proposals = tuple(
            to_wire(n + 1, ProtocolId.ESP, spi, suite)
            for n, suite in enumerate(_without_dh(child.proposals))
        )
        payloads: list[Payload] = [
            idi,
            auth,
            SaPayload(proposals),
            TsPayload(PayloadType.TSi, selectors_for(child.local_ts)),
            TsPayload(PayloadType.TSr, selectors_for(child.remote_ts)),
        ]
        if child.mode == "transport":
            payloads.insert(2, NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE))
        self._tasks.queue(IkeAuth(tuple(payloads), self._auth_response_received), now)

    def _auth_response_received(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}"""
        assert self._prf is not None and self._pending_child is not None
        child = self._pending_child
        idr, auth = message.first(IdPayload), message.first(AuthPayload)
        if idr is None or auth is None:
            errors = [NotifyType(n.notify_type).name for n in message.get(NotifyPayload)
                      if n.notify_type < 16384]  # fmt: skip
            self._close("IKE_AUTH refused: " + (", ".join(errors) or "no IDr/AUTH"), now)
            return
        if not self._peer_id_ok(idr):
            self._close("the responder's identity is not the one configured", now)
            return
        octets = signed_octets(self._init_response, self._nonce_i, self._prf, self._sk_pr,
                               idr.encode_body())  # fmt: skip
        if not self._authenticator.verify(self._prf, octets, auth):
            self._close("the responder's AUTH does not verify (wrong PSK?)", now)
            return
        self._established(now)
        sa = message.first(SaPayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        refusals = [n for n in message.get(NotifyPayload) if n.notify_type < 16384]
        if sa is None or len(sa.proposals) != 1 or not tsi or not tsr or refusals:
            reason = ", ".join(NotifyType(n.notify_type).name for n in refusals) or "no SA"
            self._events.append(ChildSaFailed(child, f"CHILD_SA refused: {reason}"))
            self._pending_child = None
            return
        chosen = choose(_without_dh(child.proposals), sa.proposals, ProtocolId.ESP)
        if chosen is None or len(sa.proposals[0].spi) != 4:
            self._events.append(
                ChildSaFailed(child, "the responder chose an ESP proposal we did not offer")
            )
            return
        spi_out = int.from_bytes(sa.proposals[0].spi, "big")
        self._child_up(child, self._child_spi_in, spi_out, chosen[1],
                       *_proposed_networks(tsi[0], tsr[0]))  # fmt: skip
        self._pending_child = None

    def _auth_request_received(self, message: IkeMessage, addr: Address, now: float) -> None:
        """HDR, SK {IDi, AUTH, SAi2, TSi, TSr}  -->  answered with <-- HDR, SK {IDr, AUTH, ...}"""
        assert self._prf is not None
        self.remote = addr
        idi, auth = message.first(IdPayload), message.first(AuthPayload)
        if idi is None or auth is None or auth.method != self._authenticator.method:
            reason = "IKE_AUTH without IDi and an AUTH of the configured method"
            raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
        octets = signed_octets(self._init_request, self._nonce_r, self._prf, self._sk_pi,
                               idi.encode_body())  # fmt: skip
        if not self._peer_id_ok(idi) or not self._authenticator.verify(self._prf, octets, auth):
            reason = "the initiator's AUTH does not verify (wrong PSK or identity)"
            raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
        idr = self._id_payload(PayloadType.IDr)
        octets_r = signed_octets(self._init_response, self._nonce_i, self._prf, self._sk_pr,
                                 idr.encode_body())  # fmt: skip
        auth_r = self._authenticator.build(self._prf, octets_r)
        child_payloads, child_up = self._respond_child(message)
        self._answer(message, (idr, auth_r, *child_payloads))
        self._established(now)
        if child_up is not None:
            self._child_up(*child_up)

    def _respond_child(self, message: IkeMessage) -> tuple[tuple[Payload, ...], tuple | None]:  # type: ignore[type-arg]
        """The CHILD_SA part of the responder's IKE_AUTH: choose, narrow, or refuse."""
        sa = message.first(SaPayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        if sa is None or not tsi or not tsr:
            return (), None
        policy = (
            self._child_policy(*_proposed_networks(tsi[0], tsr[0])) if self._child_policy else None
        )
        if policy is None:
            return (NotifyPayload(ProtocolId.NONE, NotifyType.TS_UNACCEPTABLE),), None
        chosen = choose(_without_dh(policy.proposals), _strip_dh(sa.proposals), ProtocolId.ESP)
        if chosen is None:
            self._log_no_proposal("ESP", _without_dh(policy.proposals), sa)
            self._events.append(ChildSaFailed(policy, "no ESP proposal chosen: " + describe(sa)))
            return (NotifyPayload(ProtocolId.NONE, NotifyType.NO_PROPOSAL_CHOSEN),), None
        # TSi is the initiator's side: our remote selectors; TSr ours (RFC 7296 §2.9).
        ts_i = narrow(tsi[0].selectors, policy.remote_ts)  # type: ignore[arg-type]
        ts_r = narrow(tsr[0].selectors, policy.local_ts)  # type: ignore[arg-type]
        if not ts_i or not ts_r:
            return (NotifyPayload(ProtocolId.NONE, NotifyType.TS_UNACCEPTABLE),), None
        answer, suite = chosen
        if len(answer.spi) != 4:
            return (NotifyPayload(ProtocolId.NONE, NotifyType.INVALID_SYNTAX),), None
        spi_out = int.from_bytes(answer.spi, "big")
        spi_in = self._allocate_spi()
        mine = to_wire(answer.number, ProtocolId.ESP, spi_in.to_bytes(4, "big"), suite)
        payloads: list[Payload] = [SaPayload((mine,)), TsPayload(PayloadType.TSi, ts_i),
                                   TsPayload(PayloadType.TSr, ts_r)]  # fmt: skip
        if message.notify(NotifyType.USE_TRANSPORT_MODE) and policy.mode == "transport":
            payloads.insert(0, NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE))
        return tuple(payloads), (policy, spi_in, spi_out, suite,
                                 tuple(networks_of(ts_r)), tuple(networks_of(ts_i)))  # fmt: skip

    def _peer_id_ok(self, payload: IdPayload) -> bool:
        expected = self.config.remote_id
        return expected is None or (payload.id_type, payload.data) == expected

    def _established(self, now: float) -> None:
        self.established_at = now
        self._schedule(now)
        self._events.append(
            IkeSaUp(self.spi_i, self.spi_r, self.suite, self.initiator, self.natted)
        )

    def _child_up(
        self, child: ChildConfig, spi_in: int, spi_out: int, suite: Suite,
        local_ts: tuple, remote_ts: tuple,  # type: ignore[type-arg]
        nonces: tuple[bytes, bytes] | None = None,
        exchange_initiator: bool | None = None,
        shared: bytes | None = None,
    ) -> None:  # fmt: skip
        """CHILD_SA keys (RFC 7296 §2.17): KEYMAT = prf+(SK_d, Ni | Nr), with the nonces of
        IKE_AUTH's IKE_SA_INIT or of the CREATE_CHILD_SA exchange."""
        assert self._prf is not None
        encr = suite_get(suite, TransformType.ENCR)
        integ = suite_get(suite, TransformType.INTEG)
        assert encr is not None
        integ_id = integ.id if integ is not None else 0
        nonce_i, nonce_r = nonces if nonces is not None else (self._nonce_i, self._nonce_r)
        material = derive_child_sa_keys(
            self._prf, self._sk_d, nonce_i, nonce_r, shared,
            encr_key_size(encr), integ_key_size(integ_id),
        )  # fmt: skip
        self.children[spi_in] = ChildSa(child, spi_in, spi_out, suite, local_ts, remote_ts)
        # §2.17: "initiator" is the initiator of the exchange that made the CHILD_SA, which
        # for a CREATE_CHILD_SA may be the IKE SA's original responder.
        first = self.initiator if exchange_initiator is None else exchange_initiator
        self._events.append(
            ChildSaUp(child, spi_in, spi_out, suite, material.inbound(first),
                      material.outbound(first), local_ts, remote_ts, self.initiator,
                      self.natted)
        )  # fmt: skip

    # -- INFORMATIONAL -------------------------------------------------------------------

    def _informational_request(self, message: IkeMessage, now: float) -> None:
        answer: list[Payload] = []
        for d in message.get(DeletePayload):
            if d.protocol_id == ProtocolId.IKE:
                self._answer(message, ())
                rekey = self._tasks.rekeying(IKE_SA)
                if isinstance(rekey, IkeRekey) and rekey.collision is not None:
                    # §2.8.2: the peer completed its rekey without noticing ours; the IKE
                    # SA made by its exchange stays, ours is forgotten.
                    self._replace(rekey.collision[0])
                reason = "replaced by a rekey" if self._replaced_by else "deleted by the peer"
                self._close(reason, now, by_peer=True)
                return
            ours: list[bytes] = []
            for raw in d.spis:
                spi_out = int.from_bytes(raw, "big")
                for spi_in, child in list(self.children.items()):
                    if child.spi_out == spi_out:
                        del self.children[spi_in]
                        ours.append(spi_in.to_bytes(4, "big"))
                        self._events.append(ChildSaDown(spi_in, spi_out, by_peer=True))
            if ours:
                # RFC 7296 §1.4.1: answer with the SPIs of our half of each pair.
                answer.append(DeletePayload(ProtocolId.ESP, 4, tuple(ours)))
        self._answer(message, tuple(answer))
        if self.config.dpd_delay:
            self._deadline = min(now + self.config.dpd_delay, self._rekey_at or float("inf"))

    def _informational_response(self, message: IkeMessage, now: float) -> None:
        if self.state is State.DELETING:
            # A rekeyed SA's CHILD_SAs live on in its successor: none go down here.
            rekeyed = self._ike_rekey_started
            self._close(self._delete_reason if not rekeyed else "replaced by a rekey", now)
        elif self.config.dpd_delay:
            self._deadline = min(now + self.config.dpd_delay, self._rekey_at or float("inf"))

    # -- sending -------------------------------------------------------------------------

    def _send_request(self, exchange: Hashable, payloads: tuple[Payload, ...], now: float) -> int:
        """A started task's request goes out, resent until answered; its Message ID."""
        assert isinstance(exchange, ExchangeType)
        mid = self._transport.new_message_id()
        message = IkeMessage(self.spi_i, self.spi_r, exchange, self.initiator, False, mid, payloads)
        datagrams = self._transport.frame(message)
        self._log_message("sending", message, len(datagrams))
        self._transport.send_request(mid, datagrams, now, self._request_text)
        return mid

    def _answer(self, request: IkeMessage, payloads: tuple[Payload, ...]) -> None:
        message = IkeMessage(self.spi_i, self.spi_r, request.exchange_type, self.initiator, True,
                             request.message_id, payloads)  # fmt: skip
        datagrams = self._transport.frame(message)
        self._log_message("sending", message, len(datagrams))
        self._transport.reply(request.message_id, datagrams, self.remote, self._response_text)

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

    def _log_no_proposal(self, what: str, ours: tuple[Suite, ...], sa: SaPayload) -> None:
        """NO_PROPOSAL_CHOSEN: both sides' proposals, so that an operator sees why."""
        mine = ", ".join(suite_text(s) for s in ours) or "none"
        theirs = ", ".join(suite_text(from_wire(p)) for p in sa.proposals) or "none"
        log.warning(
            "%s: no %s proposal chosen; ours: %s; theirs: %s", self._name(), what, mine, theirs
        )

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
        self._transport.cancel()
        self._tasks.close()
        self._deadline = None
        self._events.append(IkeSaDown(reason, by_peer))


def _out_of_place(
    state: State, exchange: ExchangeType, direction: Direction, refusal: Refusal
) -> IkeOutOfPlace:
    """The error for a message the table refuses, naming the state and the input."""
    text = f"{exchange.name} {direction.value} not allowed in state {state.name}: {refusal.reason}"
    notify = refusal.notify if refusal.notify is not None else NotifyType.INVALID_SYNTAX
    return IkeOutOfPlace(notify, text, answered=refusal.notify is not None)


def _nat_hash(spi_i: bytes, spi_r: bytes, address: IPAddress, port: int) -> bytes:
    return hashlib.sha1(spi_i + spi_r + address.packed + port.to_bytes(2, "big")).digest()


def ipaddress_of(text: str) -> IPAddress:
    import ipaddress

    return ipaddress.ip_address(text)


def _groups(proposals: tuple[Suite, ...]) -> list[int]:
    return [t.id for suite in proposals for t in suite if t.type == TransformType.DH]


def _first_dh(proposals: tuple[Suite, ...]) -> int:
    groups = _groups(proposals)
    if not groups:
        raise IkeProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "IKE proposals name no DH group")
    return groups[0]


def _with_group_first(proposals: tuple[Suite, ...], group: int) -> tuple[Suite, ...]:
    """The proposals as configured, those with the KE's group first (RFC 7296 §1.2)."""
    return tuple(sorted(proposals, key=lambda s: not any(
        t.type == TransformType.DH and t.id == group for t in s)))  # fmt: skip


def _without_dh(suites: tuple[Suite, ...]) -> tuple[Suite, ...]:
    return tuple(dict.fromkeys(tuple(t for t in s if t.type != TransformType.DH) for s in suites))


def _strip_dh(proposals: tuple[Proposal, ...]) -> tuple[Proposal, ...]:
    """An IKE_AUTH's CHILD_SA proposals without DH transforms, which it cannot use."""
    return tuple(
        Proposal(p.number, p.protocol_id, p.spi,
                 tuple(t for t in p.transforms if int(t.transform_type) != int(TransformType.DH)))
        for p in proposals
    )  # fmt: skip


def _proposed_networks(
    tsi: TsPayload, tsr: TsPayload
) -> tuple[tuple[IPNetwork, ...], tuple[IPNetwork, ...]]:
    """The networks of TSi and TSr: what a responder's policy is asked about, and what
    an initiator takes from the answer (§2.9)."""
    return tuple(networks_of(tsi.selectors)), tuple(networks_of(tsr.selectors))
