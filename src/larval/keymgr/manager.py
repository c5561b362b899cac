"""The key manager: IKE sessions on one side, the stack's PF_KEY on the other.

Sans-I/O. PF_KEY is bytes at this edge, as if a socket lay between the key manager and
the stack: requests are encoded here and go through `pfkey`, a `PfkeyPort` that answers
with the encoded replies meant for this key manager (`larval.node.Node` joins it to a
stack); messages the stack originates (ACQUIRE, EXPIRE) arrive encoded via
`pfkey_message`. IKE datagrams arrive via `receive_ike` and leave via
`datagrams_to_send`; time through `handle_timer` and `get_timer`. `now` is the time of
the call being served, and the stack's for the PF_KEY requests that call makes.

IKE SAs are `larval.ike.sa.IkeSa` of either version; `larval.keymgr.versions` reads a
datagram for no IKE SA, refuses it or builds the session it opens.

Which connection answers (as strongSwan's backend manager): the one whose local_addrs and
remote_addrs take the IKE SA's addresses best (`_connections_from`: an address before a
subnet before %any); an IKEv2 IKE SA may then move to another of those, by the proposals
offered in IKE_SA_INIT or by the peer's identity and method in IKE_AUTH
(`larval.ikev2.exchanges.select`, given the `_candidates`). A connection for many peers
(%any, a subnet) gives each IKE SA its own copy of the configuration with the addresses it
was opened with, so GETSPI, inverse ACQUIRE, UPDATE and ADD name that peer; IKE SAs are
kept by SPI, so that clients behind one NAT (one address, a port each) stay apart.

The flow, as the seed's racoon2 port does it on OpenSolaris: an extended ACQUIRE
(every alternative of the policy) starts an IKE SA as initiator; as responder, an
inverse ACQUIRE asks the stack what policy accepts for the proposed selectors; every
inbound SPI is a GETSPI'd LARVAL SA before it is sent; a CHILD_SA's keys become an
UPDATE of that LARVAL SA and an ADD of the outbound SA, which carries the ACQUIRE's
sequence number so the held packets leave; DELETE when the CHILD_SA goes.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import ipaddress
import itertools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from larval.crypto.ike_proposals import format_esp_proposal, format_ike_proposal
from larval.crypto.ike_transforms import EncrId, EsnId, IntegId, Transform, TransformType
from larval.crypto.proposals import EspProposal
from larval.crypto.randomness import RandomBytes, system_random
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig, IkeConfig, Suite, address_quality
from larval.ike.counters import IkeCounters
from larval.ike.datagram import address_of, version_of
from larval.ike.errors import IkeNotifyError
from larval.ike.events import (
    ChildSaDown,
    ChildSaFailed,
    ChildSaUp,
    IkeSaDown,
    IkeSaReauthDue,
    IkeSaRekeyed,
    IkeSaUp,
)
from larval.ike.sa import IkeSa, Phase
from larval.ike.state import IkeSaState
from larval.ikev2.negotiate import suite_get
from larval.ikev2.stateless import Cookies
from larval.keymgr import persist as persistence
from larval.keymgr.pfkey_side import (
    AcquireError,
    ChildKeys,
    Endpoint,
    Lifetimes,
    PolicyRequest,
    delete_sa,
    extended_register,
    getspi_bytes,
    getspi_reply_spi,
    inverse_acquire_answer,
    inverse_acquire_bytes,
    keyed_sa_bytes,
    natt_update,
    parse_policy_request,
    selector_pairs,
)
from larval.keymgr.versions import (
    VERSIONS,
    Candidate,
    Candidates,
    IkeVersion,
    SessionHooks,
    Start,
    restore_session,
)
from larval.lograte import LogLimiter
from larval.pfkey import (
    ExtType,
    PfkeyHeader,
    PfkeyMessage,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaState,
    decode,
    decode_header,
)
from larval.pfkey.requests import by_spi
from larval.pools import Lease, PoolAttributes, Pools
from larval.store import StateStore

log = logging.getLogger("larval.keymgr")

#: Inverse ACQUIRE answers kept (`KeyManager._ask_policy`) before they are all forgotten.
_POLICY_ANSWERS_KEPT = 1024

#: Seconds the inbound SA of a renewed CHILD_SA outlives its DELETE: the peer switched to
#: the new CHILD_SA before the DELETE, and ESP it sent on the old one just before may
#: still be on its way, or queued behind the DELETE here (charon's delete_rekeyed_delay,
#: 5 s). The outbound SA goes at once.
REKEYED_INBOUND_DELAY = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]
#: The key manager's PF_KEY: an encoded request in, the encoded replies meant for it out.
PfkeyPort = Callable[[bytes], list[bytes]]


@dataclass(frozen=True)
class Connection:
    """A configured connection: the IKE side and its CHILD_SAs."""

    ike: IkeConfig
    children: tuple[ChildConfig, ...]
    start_action: dict[str, str] = field(default_factory=dict)  # child name -> none|trap|start
    version: int = 2  # 1, 2, or 0: initiate IKEv2, respond to both (swanctl's `version`)
    aggressive: bool = False  # IKEv1 Aggressive Mode instead of Main Mode
    # The address pools a responder hands virtual addresses from, in order (by name).
    pools: tuple[str, ...] = ()


@dataclass
class ChildRecord:
    """An installed CHILD_SA, for status and for its DELETE."""

    connection: str
    name: str
    spi_in: int
    spi_out: int
    suite: Suite
    local: IPAddress
    remote: IPAddress
    local_ts: tuple[IPNetwork, ...]
    remote_ts: tuple[IPNetwork, ...]
    installed: float
    natt_port: int = 0  # where the outbound SA sends ESP in UDP (0: plain ESP)


def esp_suite(proposal: EspProposal) -> Suite:
    """An ESP alternative of PF_KEY as IKE transforms (ids are IANA's on both sides)."""
    encr = Transform(TransformType.ENCR, proposal.encrypt, proposal.encrypt_bits or None)
    if proposal.encrypt == EncrId.CHACHA20_POLY1305:
        encr = Transform(TransformType.ENCR, proposal.encrypt)
    suite = [encr]
    if proposal.auth:
        # SADB_AALG 5/6/7 are AUTH_HMAC_SHA2_256_128 / 384_192 / 512_256 (12/13/14).
        suite.append(Transform(TransformType.INTEG, proposal.auth + 7))
    suite.append(Transform(TransformType.ESN, EsnId.YES if proposal.esn else EsnId.NO))
    return tuple(suite)


@functools.lru_cache(maxsize=256)
def proposal_of(suite: Suite) -> EspProposal:
    """The negotiated ESP transforms as the SADB names them (the same few suites in every
    setup: converted once each)."""
    encr = suite_get(suite, TransformType.ENCR)
    integ = suite_get(suite, TransformType.INTEG)
    assert encr is not None
    auth = integ.id - 7 if integ is not None and integ.id != IntegId.NONE else 0
    bits = encr.key_bits or (256 if encr.id == EncrId.CHACHA20_POLY1305 else 0)
    auth_bits = {5: 256, 6: 384, 7: 512}.get(auth, 0)
    esn = suite_get(suite, TransformType.ESN)
    return EspProposal(encr.id, bits, auth, auth_bits,
                       esn=esn is not None and esn.id == EsnId.YES)  # fmt: skip


class KeyManager:
    """IKE sessions for the configured connections, joined to the stack by PF_KEY."""

    def __init__(
        self,
        connections: list[Connection],
        pfkey: PfkeyPort,
        *,
        random_bytes: RandomBytes = system_random,
        pools: Pools | None = None,
    ) -> None:
        self.connections = {c.ike.name: c for c in connections}
        # One set of pools for every connection: an identity holds its address whichever
        # connection it comes in on, and two never share one.
        self.pools = pools if pools is not None else Pools()
        self._pfkey = pfkey
        self._random = random_bytes
        self.sessions: dict[bytes, IkeSa] = {}  # by SPIi (IKEv1: CKY-I)
        self._session_conn: dict[bytes, Connection] = {}
        self._requests: dict[int, PolicyRequest] = {}  # ACQUIRE seq -> what it asked
        # Outbound SAs to ADD later, by their CHILD_SA's inbound SPI: (when, the ADD).
        self._outbound_due: dict[int, tuple[float, Callable[[], None]]] = {}
        #: A CHILD_SA the peer renewed (inbound SPI) -> its successor, whose outbound SA
        #: waits in `_outbound_due` for the old one's deletion.
        self._renewed_by: dict[int, int] = {}
        #: Inbound SAs of renewed CHILD_SAs deleted, by SPI: when they go from the stack,
        #: and the CHILD_SA they were of (`REKEYED_INBOUND_DELAY`).
        self._inbound_due: dict[int, tuple[float, ChildRecord]] = {}
        self._acquiring: set[tuple[str, str]] = set()  # (connection, child) under way
        self.children: dict[int, ChildRecord] = {}  # by inbound SPI
        self._outbox: list[tuple[bytes, Address]] = []
        self._half_open_spis: set[bytes] = set()  # responder sessions after IKE_SA_INIT
        self._replacing: dict[bytes, IkeSa] = {}  # IKEv1 reauthentication -> the old
        self._cookies = Cookies(random_bytes)
        self.cookies_sent = 0
        #: What the IKE SAs did (exchanges, retransmissions, failures), for the metrics.
        self.ike_counters = IkeCounters()
        #: Told of each CHILD_SA about to be deleted, while its SAs are still in the
        #: stack: the metrics keep what they carried (`larval.daemon.metrics`).
        self.on_child_gone: Callable[[ChildRecord], None] | None = None
        #: IKEv1 messages dropped as malformed, by name (`_count_dropped`).
        self.ikev1_dropped: dict[str, int] = {}
        # What anyone can make us say by sending a datagram (an opener we have no
        # connection for, a half-open IKE SA that dies) is logged per source address
        # within limits, with a count of what was held back.
        self.noise = LogLimiter(log)
        self._authenticated: set[int] = set()  # id() of the sessions that got IkeSaUp
        # Each IKE SA filed under its next timer: a heap of (due, order, session), and the
        # due time each session is filed under now (by id(); entries under another time
        # are stale and skipped). `handle_timer` looks at the due ones only, not at every
        # IKE SA: `bench ike` keeps thousands. A session's timer changes only in the calls
        # the key manager makes, after each of which `_schedule` files it again.
        self._timers: list[tuple[float, int, IkeSa]] = []
        self._filed: dict[int, float] = {}
        self._order = itertools.count()
        self._seq = 0
        # What the stack's answers to inverse ACQUIREs allowed, by (answer's extensions,
        # local selector), with the connection they were read for (`_ask_policy`).
        self._policy_answers: dict[tuple[bytes, IPNetwork], tuple[Connection, ChildConfig]] = {}
        self.pid = os.getpid()
        self.now = 0.0
        #: Where IKE SAs and CHILD_SAs are kept across a restart (`attach_store`).
        self.persist: persistence.Persistence | None = None
        #: Called with each IKE SA as it is established or made by a rekey, once its
        #: keys are final (``[daemon] save_keys``, `larval.daemon.wireshark_keys`).
        self.on_ike_sa_up: Callable[[IkeSa], None] | None = None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _call(self, request: PfkeyMessage) -> list[bytes]:
        """A PF_KEY request, encoded here; the stack's replies to it, as they came."""
        return self._pfkey(request.encode())

    def _refusal(self, request: PfkeyMessage) -> PfkeyHeader | None:
        """A request whose answer says no more than whether the stack took it (UPDATE,
        ADD): the header of the first reply that refuses it, if one does."""
        return self._refused(self._call(request))

    @staticmethod
    def _refused(replies: list[bytes]) -> PfkeyHeader | None:
        """The header of the first of `replies` that refuses the request, if one does.
        Only the base headers are read: the answers echo the request's extensions back."""
        for reply in replies:
            header = decode_header(reply)
            if header.errno:
                return header
        return None

    # -- start ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Extended REGISTER, then the CHILD_SAs configured with start_action = start."""
        self.now = now
        self._call(extended_register(self._next_seq(), self.pid))
        up = self._restore(now)
        for conn in self.connections.values():
            for child in conn.children:
                if conn.start_action.get(child.name) != "start":
                    continue
                if (conn.ike.name, child.name) in up:
                    continue  # restored from the state store
                if not conn.ike.can_initiate:
                    log.warning("%s: start_action = start, but remote_addrs names no "
                                "one address to initiate to; only answering",
                                conn.ike.name)  # fmt: skip
                    continue
                self.initiate(conn.ike.name, child.name, now)

    def initiate(self, conn_name: str, child_name: str | None, now: float) -> None:
        """`larval up`: a new IKE SA for the connection, with the named CHILD_SA."""
        self.now = now
        conn = self.connections[conn_name]
        if not conn.ike.can_initiate:
            addrs = ", ".join(map(str, conn.ike.remote_addrs))
            raise KeyError(f"connection {conn_name} has no one peer address to initiate to "
                           f"(remote_addrs {addrs}); it answers only")  # fmt: skip
        child = next((c for c in conn.children if child_name in (None, c.name)), None)
        if child is None:
            raise KeyError(f"connection {conn_name} has no child {child_name}")
        self._start_session(conn, child, now)

    def _start_session(
        self, conn: Connection, child: ChildConfig, now: float, ike: IkeConfig | None = None
    ) -> None:
        # IKEv1's INITIAL-CONTACT only when there is no ISAKMP SA with the peer (as
        # strongSwan): the peer deletes everything it has with us when it sees one.
        # Only IKEv1 sends it, so only IKEv1's sessions are looked through (`bench ike`
        # starts thousands of IKEv2 SAs on one connection).
        version = _initiated(conn)
        initial = version == 1 and not self._live_sessions(conn, version)
        ike = ike or conn.ike
        session = self._new_session(conn, initiator=True, initial_contact=initial, ike=ike)
        first = "IKE_SA_INIT" if version == 2 else (
            "Aggressive Mode" if conn.aggressive else "Main Mode")  # fmt: skip
        self._acquiring.add((conn.ike.name, child.name))
        log.info("%s: initiating %s to %s", conn.ike.name, first, ike.remote_addr)
        session.initiate(child, now)
        self.sessions[session.spi_i] = session
        self._session_conn[session.spi_i] = conn
        self._drain(session, now)

    def _new_session(
        self, conn: Connection, *, initiator: bool, version: int | None = None,
        spi_i: bytes | None = None, initial_contact: bool = True, ike: IkeConfig | None = None,
        candidates: Candidates | None = None,
    ) -> IkeSa:  # fmt: skip
        """A session for the connection, of its version (a responder: the peer's), between
        the addresses of `ike` (the connection's own by default; for a connection that
        names more than one peer, those of this IKE SA)."""
        ike = ike or conn.ike
        start = Start(initiator, spi_i, conn.aggressive, initial_contact)
        session = VERSIONS[version or _initiated(conn)].session(
            ike, self._hooks(conn, ike, candidates), start
        )
        session.counters = self.ike_counters
        return session

    def _hooks(
        self, conn: Connection, ike: IkeConfig, candidates: Candidates | None = None
    ) -> SessionHooks:
        """What a session of `conn` between the addresses of `ike` asks the key manager
        for: SPIs, the policy of a child it answers, randomness, its pools."""
        return SessionHooks(
            allocate_spi=lambda: self._getspi(ike),
            child_policy=lambda tsi, tsr, mode="tunnel": self._responder_policy(
                conn, ike, tsi, tsr, mode
            ),
            random_bytes=self._random,
            fragment_size=_message_size(ike),
            address_pool=_ConnectionPools(self, conn.pools) if conn.pools else None,
            candidates=candidates,
        )

    def _live_sessions(
        self, conn: Connection, version: int, *, but: IkeSa | None = None
    ) -> list[IkeSa]:
        """The connection's sessions of that version that are neither closed nor replaced."""
        return [
            s for spi, s in self.sessions.items()
            if s.version == version and s is not but and self._session_conn[spi] is conn
            and s.phase not in (Phase.CLOSED, Phase.REPLACED)
        ]  # fmt: skip

    def _reauthenticate(self, conn: Connection, old: IkeSa, now: float) -> None:
        """IKEv1 has no rekey exchange: a new Main Mode with the peer, without INITIAL-CONTACT;
        once it is up it takes over the CHILD_SAs (`_adopt`)."""
        if old.phase is not Phase.ESTABLISHED or any(
            s.phase is not Phase.ESTABLISHED
            for s in self._live_sessions(conn, old.version, but=old)
        ):
            return  # another ISAKMP SA with the peer is on its way up and will take over
        new = self._new_session(conn, initiator=True, version=old.version, initial_contact=False,
                                ike=old.config)  # fmt: skip
        new.initiate(None, now)
        log.info("%s: reauthenticating ISAKMP SA %s with %s", conn.ike.name, old.spi_i.hex(),
                 new.spi_i.hex())  # fmt: skip
        self.sessions[new.spi_i] = new
        self._session_conn[new.spi_i] = conn
        self._replacing[new.spi_i] = old
        self._drain(new, now)

    def _adopt(self, conn: Connection, new: IkeSa, initial_contact: bool, now: float) -> None:
        """A new ISAKMP SA with the peer is up: it takes over the CHILD_SAs of the ones it
        replaces, which are deleted a little later. As strongSwan does (its reauthentication
        and its adopt_children job), an initiator takes them from the one it reauthenticates,
        and a responder from every established one. After INITIAL-CONTACT the peer has
        forgotten the old ones: they go now, CHILD_SAs and all."""
        origin = self._replacing.pop(new.spi_i, None)
        if new.initiator:
            olds = [origin] if origin is not None else []
        else:
            olds = self._live_sessions(conn, new.version, but=new)
        for old in olds:
            if old.phase is not Phase.ESTABLISHED or not _same_peer(old, new):
                continue
            if initial_contact:
                log.info("%s: INITIAL-CONTACT on %s: deleting ISAKMP SA %s and its CHILD_SAs",
                         conn.ike.name, new.spi_i.hex(), old.spi_i.hex())  # fmt: skip
                old.delete(now, "the peer made initial contact again")
                self._drain(old, now)
                continue
            moved = new.adopt_children(old)
            old.retire(now)
            self._schedule(old)
            log.info("%s: ISAKMP SA %s takes over %d CHILD_SA(s) from %s", conn.ike.name,
                     new.spi_i.hex(), len(moved), old.spi_i.hex())  # fmt: skip

    def down(self, conn_name: str, now: float) -> int:
        """`larval down`: delete every IKE SA of the connection (INFORMATIONAL D)."""
        self.now = now
        count = 0
        for spi, session in list(self.sessions.items()):
            if self._session_conn[spi].ike.name == conn_name:
                session.delete(now)
                self._drain(session, now)
                count += 1
        return count

    def shutdown(self, now: float) -> None:
        """SIGTERM: delete every IKE SA gracefully, and their SAs in the stack."""
        self.now = now
        for session in list(self.sessions.values()):
            session.delete(now)
            self._drain(session, now)
        for spi_in in list(self._inbound_due):
            self._delete_inbound(spi_in)

    # -- PF_KEY from the stack ----------------------------------------------------------

    def pfkey_message(self, data: bytes, now: float) -> None:
        """ACQUIRE and EXPIRE from the stack (broadcasts, not replies), encoded."""
        self.now = now
        msg = decode(data)
        if msg.msg_type == SadbMsgType.ACQUIRE and msg.errno == 0:
            self._acquire(msg, now)
        elif msg.msg_type == SadbMsgType.EXPIRE:
            self._expire(msg, now)

    def _acquire(self, msg: PfkeyMessage, now: float) -> None:
        try:
            request = parse_policy_request(msg)
        except AcquireError as e:
            if msg.find(ExtType.X_EPROP) is not None:
                log.warning("ACQUIRE %d ignored: %s", msg.seq, e)
            return  # the regular ACQUIRE that accompanies every extended one
        match = self._connection_for(request.dst.address, request.remote_ts.network)
        if match is None:
            log.warning("ACQUIRE for %s: no connection to that peer", request.dst.address)
            return
        conn, child = match
        peer = _between(conn.ike, request.src.address, request.dst.address)
        if (conn.ike.name, child.name) in self._acquiring:
            return  # one negotiation per CHILD_SA at a time
        session = self._established_session(conn, peer.remote_addr)
        carrier = None if session is None else self._carried_already(session, child, request)
        if carrier is not None:
            log.info("%s: ACQUIRE %d for %s ignored: CHILD_SA %08x/%08x, installed since "
                     "it was sent, carries its traffic", conn.ike.name, request.seq,
                     child.name, carrier.spi_in, carrier.spi_out)  # fmt: skip
            return
        self._requests[request.seq] = request
        life = request.alternatives[0].lifetimes
        child = ChildConfig(
            child.name,
            _suites(request, child) or child.proposals,
            (request.local_ts.network,), (request.remote_ts.network,), child.mode,
            life.soft_addtime or child.rekey_time, life.hard_addtime or child.life_time,
            life.soft_bytes, life.hard_bytes, request.replay_window,
            inactivity=child.inactivity,
            reference=request.seq,
        )  # fmt: skip
        log.info("%s: ACQUIRE %d for %s", conn.ike.name, request.seq, child.name)
        if session is not None:
            # RFC 7296 §1.3.1: another CHILD_SA on the IKE SA already there.
            self._acquiring.add((conn.ike.name, child.name))
            if not self._create_child(session, child, now):
                self._acquiring.discard((conn.ike.name, child.name))
            self._drain(session, now)
            return
        self._start_session(conn, child, now, peer)

    def _carried_already(
        self, session: IkeSa, child: ChildConfig, request: PolicyRequest
    ) -> ChildRecord | None:
        """An installed CHILD_SA of `session`'s, made for `child`, whose selectors hold
        every pair the ACQUIRE asks for, and whose outbound SA the stack has alive:
        the ACQUIRE was queued before that SA was ADDed (a restore, after a restart or a
        takeover, ADDs the SAs of CHILD_SAs already up, while packets flow), and the ADD
        has sent the packets it held. A key manager that lost an SA the stack no longer
        has (no GET answer) negotiates again, as racoon does."""
        asked = [(request.local_ts.network, request.remote_ts.network),
                 *((lo.network, re.network) for lo, re in request.more_pairs)]  # fmt: skip
        for spi_in in session.children:
            record = self.children.get(spi_in)
            if record is None or record.name != child.name:
                continue
            held = selector_pairs(record.local_ts, record.remote_ts)
            if not all(any(_covered(lo, (hl,)) and _covered(re, (hr,)) for hl, hr in held)
                       for lo, re in asked):  # fmt: skip
                continue
            get = by_spi(SadbMsgType.GET, record.spi_out, record.remote, seq=self._next_seq(),
                         pid=self.pid)  # fmt: skip
            for raw in self._call(get):
                header = decode_header(raw)
                if header.msg_type != SadbMsgType.GET or header.errno:
                    continue
                sa = decode(raw).find(ExtType.SA)
                if isinstance(sa, SadbSa) and sa.state in (SaState.MATURE, SaState.DYING):
                    return record
        return None

    def _create_child(self, session: IkeSa, child: ChildConfig, now: float) -> bool:
        """A new CHILD_SA (IKEv2) or Quick Mode (IKEv1) on an established IKE SA; False,
        logged, if it could not start (the stack refused an SPI)."""
        try:
            session.create_child(child, now)
        except IkeNotifyError as exc:  # either version's
            log.warning("%s: cannot start a CHILD_SA for %s: %s", session.config.name,
                        child.name, exc)  # fmt: skip
            return False
        return True

    def _rekey_child(self, session: IkeSa, record: ChildRecord, now: float) -> None:
        """The CHILD_SA's soft lifetime ran out: renew it (RFC 7296 §2.8; IKEv1: a new
        Quick Mode, and the old SAs run out at their hard lifetime, RFC 2409 §5.5)."""
        try:
            session.rekey_child(record.spi_in, now)
        except IkeNotifyError as exc:  # either version's
            log.warning("%s: cannot start a CHILD_SA for %s: %s", session.config.name,
                        record.name, exc)  # fmt: skip

    def _established_session(
        self, conn: Connection, remote: IPAddress | None = None
    ) -> IkeSa | None:
        """An established IKE SA of the connection (with `remote`, where it names one)."""
        for spi, session in self.sessions.items():
            if (self._session_conn[spi] is conn and session.phase is Phase.ESTABLISHED
                    and remote in (None, session.config.remote_addr)):  # fmt: skip
                return session
        return None

    def _expire(self, msg: PfkeyMessage, now: float) -> None:
        sa_ext = msg.find(ExtType.SA)
        if not isinstance(sa_ext, SadbSa):
            return
        hard = isinstance(msg.find(ExtType.LIFETIME_HARD), SadbLifetime)
        # An idle EXPIRE (illumos SADB_X_EXT_LIFETIME_IDLE): the CHILD_SA carried nothing for
        # its inactivity time, so it is closed, as strongSwan's `inactivity` does.
        hard = hard or isinstance(msg.find(ExtType.X_LIFETIME_IDLE), SadbLifetime)
        record = self.children.get(sa_ext.spi) or next(
            (c for c in self.children.values() if c.spi_out == sa_ext.spi), None
        )
        if record is None:
            return
        # A soft expiry rekeys the CHILD_SA (RFC 7296 §2.8); a hard one deletes it.
        log.info("%s: %s EXPIRE for SPI %08x", record.connection, "hard" if hard else "soft",
                 sa_ext.spi)  # fmt: skip
        for session in list(self.sessions.values()):
            if record.spi_in in session.children:
                if hard:
                    session.delete_child(record.spi_in, now)
                else:
                    self._rekey_child(session, record, now)
                self._drain(session, now)

    def _connection_for(
        self, remote: IPAddress, remote_net: IPNetwork | None
    ) -> tuple[Connection, ChildConfig] | None:
        """The connection an ACQUIRE to `remote` opens: the one whose remote_addrs name it
        best (an address before a subnet before %any), and its child for `remote_net`."""
        ranked = sorted(
            (c for c in self.connections.values()
             if address_quality(c.ike.remote_addrs, c.ike.remote_addr, remote)),
            key=lambda c: -address_quality(c.ike.remote_addrs, c.ike.remote_addr, remote),
        )  # fmt: skip
        for conn in ranked:
            for child in conn.children:
                if remote_net is None or _covered(remote_net, child.remote_ts):
                    return conn, child
            if conn.children:
                return conn, conn.children[0]
        return None

    # -- IKE datagrams --------------------------------------------------------------------

    def receive_ike(self, data: bytes, addr: Address, local: IPAddress, now: float) -> None:
        """An IKE datagram of either version from `addr` to `local`; sessions by SPIi
        (IKEv1: CKY-I). An opener for no session starts one, unless no connection of its
        version takes the peer (refused), or the responder is busy and the opener brings
        no valid COOKIE (answered with one)."""
        self.now = now
        number = version_of(data)
        version = VERSIONS.get(number) if number is not None else None
        if version is None:
            return  # too short, or a version larval does not speak
        recipient = version.recipient(data)
        if recipient is None:
            self._count_dropped(version.number, {"invalid_header": 1})
            return
        key = recipient.spi_i
        session = self.sessions.get(key)
        if session is not None and session.version != version.number:
            session = None
        created = False
        if session is None or session.phase is Phase.CLOSED:
            if not recipient.opens:
                return  # not the start of an IKE SA
            session = self._respond(version, data, addr, local, key, now)
            if session is None:
                return
            self.sessions[key] = session
            created = True
        session.receive_datagram(data, addr, now)
        take = getattr(session, "take_dropped", None)  # IKEv1's
        if take is not None:
            self._count_dropped(session.version, take())
        if created and self._forget_unstarted(session, key, now):
            return
        if session.spi_i and session.spi_i != key:
            self.sessions[session.spi_i] = self.sessions.pop(key)
            self._session_conn[session.spi_i] = self._session_conn.pop(key)
        self._drain(session, now)

    def _respond(
        self, version: IkeVersion, data: bytes, addr: Address, local: IPAddress, spi_i: bytes,
        now: float,
    ) -> IkeSa | None:  # fmt: skip
        """The responder's session for an opener, or None with the stateless answer."""
        ranked = self._connections_from(addr, local, (0, version.number))
        conn = ranked[0] if ranked else None
        if conn is None:
            # As strongSwan: the peer learns at once that nothing here will do.
            name = f"IKEv{version.number}"
            self.noise.log(now, addr[0], logging.INFO, "%s from %s: no %s connection for that "
                           "peer, sending NO_PROPOSAL_CHOSEN", version.opener, addr[0],
                           name)  # fmt: skip
            self._outbox.append((version.refusal(spi_i, self._random), addr))
            self.ike_counters.error_sent(version.number, "NO_PROPOSAL_CHOSEN")
            if version.number == 2:
                self.ike_counters.exchange(2, "IKE_SA_INIT", "refused")
            return None
        if version.cookies and self._half_open() >= conn.ike.cookie_threshold:
            check = self._cookies.check(data, addr[0], spi_i, now)
            if check.reply is not None:
                self._outbox.append((check.reply, addr))
                self.cookies_sent += 1
            if not check.admitted:
                return None
        remote = address_of(addr[0])
        ike = _between(conn.ike, local, remote)

        def candidates() -> list[Candidate]:
            return self._candidates(spi_i, addr, local, version.number)

        # With one connection for the addresses, IKE_AUTH has nothing to choose.
        choice = candidates if len(ranked) > 1 else None
        session = self._new_session(conn, initiator=False, version=version.number, spi_i=spi_i,
                                    ike=ike, candidates=choice)  # fmt: skip
        self._session_conn[spi_i] = conn
        return session

    def _count_dropped(self, version: int, dropped: dict[str, int]) -> None:
        """IKEv1 messages dropped as malformed, counted by name for status."""
        if version != 1:
            return
        for name, count in dropped.items():
            self.ikev1_dropped[name] = self.ikev1_dropped.get(name, 0) + count

    def _forget_unstarted(self, session: IkeSa, key: bytes, now: float) -> bool:
        """A responder session whose first message started nothing (it did not decode,
        or was answered statelessly) is not kept: garbage must not fill memory."""
        if session.phase is not Phase.IDLE:
            return False
        self.sessions.pop(key, None)
        self._session_conn.pop(key, None)
        self._outbox.extend(session.datagrams_to_send(now))
        return True

    def _connections_from(
        self, addr: Address, local: IPAddress, versions: tuple[int, ...]
    ) -> list[Connection]:
        """The connections for an IKE SA between `local` and the peer at `addr`, best
        first, as strongSwan's backend manager ranks ike_cfgs: an exact address before a
        subnet (the longer prefix first) before a range or %any, the remote address
        weighing twice the local, a connection of the version asked before one of both
        (``version = 0``); in the order configured where they tie."""
        try:
            remote = address_of(addr[0])
        except ValueError:
            return []
        ranked = []
        for order, c in enumerate(self.connections.values()):
            if c.version not in versions:
                continue
            quality = c.ike.match_addresses(local, remote)
            if quality:
                ranked.append((-(quality + (4 if c.version else 0)), order, c))
        return [c for *_, c in sorted(ranked, key=lambda e: (e[0], e[1]))]

    def _candidates(
        self, spi_i: bytes, addr: Address, local: IPAddress, version: int
    ) -> list[Candidate]:
        """The connections a responder's IKE SA from `addr` to `local` may be of, best
        match by addresses first, each as the session takes it: IKE_AUTH chooses among
        them by the peer's identity (`larval.ikev2.exchanges.select`), and the one it
        takes is the session's connection from then on."""
        remote = address_of(addr[0])
        out = []
        for conn in self._connections_from(addr, local, (0, version)):
            ike = _between(conn.ike, local, remote)

            def policy(
                tsi: tuple[IPNetwork, ...], tsr: tuple[IPNetwork, ...], mode: str = "tunnel",
                conn: Connection = conn, ike: IkeConfig = ike,
            ) -> ChildConfig | None:  # fmt: skip
                return self._responder_policy(conn, ike, tsi, tsr, mode)

            def take(conn: Connection = conn) -> None:
                if spi_i in self._session_conn:
                    self._session_conn[spi_i] = conn

            out.append(Candidate(
                ike, policy, _ConnectionPools(self, conn.pools) if conn.pools else None,
                conn.ike.match_addresses(local, remote), take,
            ))  # fmt: skip
        return out

    def _half_open(self) -> int:
        return len(self._half_open_spis)

    @property
    def half_open_sas(self) -> int:
        """Responder IKE SAs that answered IKE_SA_INIT and wait for IKE_AUTH."""
        return len(self._half_open_spis)

    def handle_timer(self, now: float) -> None:
        self.now = now
        self.noise.flush(now)
        persistence.checkpoint_bytes(self, now)
        for spi_in, (due, add) in list(self._outbound_due.items()):
            if due <= now:
                del self._outbound_due[spi_in]
                add()
        for spi_in, (due, _) in list(self._inbound_due.items()):
            if due <= now:
                self._delete_inbound(spi_in)
        timers, filed = self._timers, self._filed
        due_now = []
        while timers and timers[0][0] <= now:
            due, _, session = heapq.heappop(timers)
            if filed.get(id(session)) == due:
                del filed[id(session)]
                due_now.append(session)
        for session in due_now:
            timer = session.get_timer()
            if timer is not None and timer <= now:
                session.handle_timer(now)
                self._drain(session, now)
            else:
                self._schedule(session)

    def get_timer(self) -> float | None:
        timers, filed = self._timers, self._filed
        while timers and filed.get(id(timers[0][2])) != timers[0][0]:
            heapq.heappop(timers)  # stale
        due = [due for due, _ in self._outbound_due.values() if due != math.inf]
        due += [due for due, _ in self._inbound_due.values()]
        if timers:
            due.append(timers[0][0])
        return min(due) if due else None

    def _schedule(self, session: IkeSa) -> None:
        """File the session under its next timer, unless it is filed under it already."""
        key = id(session)
        due = session.get_timer() if session.phase is not Phase.CLOSED else None
        if due is None:
            self._filed.pop(key, None)
        elif self._filed.get(key) != due:
            self._filed[key] = due
            heapq.heappush(self._timers, (due, next(self._order), session))
            if len(self._timers) > 2 * len(self._filed) + 64:
                # Drop the stale entries before they outnumber the live ones.
                self._timers = [e for e in self._timers if self._filed.get(id(e[2])) == e[0]]
                heapq.heapify(self._timers)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        if not persistence.flush_or_hold(self):
            self._outbox = []  # not durable: retransmission sends it again, written first
            return []
        out, self._outbox = self._outbox, []
        return out

    # -- the state store (larval.keymgr.persist) -------------------------------------------

    def attach_store(self, store: StateStore) -> None:
        """Keep IKE SAs and CHILD_SAs in `store`; `start` restores what it holds."""
        self.persist = persistence.Persistence(store)

    def _restore(self, now: float) -> set[tuple[str, str]]:
        """What the store holds, back (`larval.keymgr.persist.restore`); the
        (connection, child) pairs that are up again."""
        if self.persist is None:
            return set()
        persistence.restore(self, now)
        return {(c.connection, c.name) for c in self.children.values()}

    def _restore_session(self, conn: Connection, value: IkeSaState, local: IPAddress) -> IkeSa:
        """The session `value` holds, of `conn` between `local` and its peer."""
        ike = _between(conn.ike, local, ipaddress.ip_address(value.transport.remote[0]))
        restored = restore_session(value, ike, self._hooks(conn, ike))
        restored.counters = self.ike_counters
        self._session_conn[restored.spi_i] = conn
        return restored

    def _restored(self, session: IkeSa, now: float) -> None:
        self.sessions[session.spi_i] = session
        self._authenticated.add(id(session))
        self._drain(session, now)

    def _kept_as(self, session: IkeSa) -> dict[str, Any] | None:
        """A session's connection name, local address and pool leases, for its record
        in the store; None if it is no longer kept."""
        if self.sessions.get(session.spi_i) is not session:
            return None
        conn = self._session_conn.get(session.spi_i)
        if conn is None or self.persist is None:
            return None
        leases = persistence.leases_of(self.pools, session,
                                       self.persist.leases.get(id(session)))  # fmt: skip
        return {"connection": conn.ike.name, "local": str(session.config.local_addr),
                "leases": leases}  # fmt: skip

    # -- what sessions report --------------------------------------------------------------

    def _drain(self, session: IkeSa, now: float) -> None:
        self._outbox.extend(session.datagrams_to_send(now))
        conn = self._session_conn[session.spi_i]
        name = conn.ike.name
        while (event := session.next_event()) is not None:
            if isinstance(event, IkeSaUp):
                self._authenticated.add(id(session))
                if log.isEnabledFor(logging.INFO):  # the suite is formatted to be written only
                    log.info("%s: IKE_SA %s/%s established (%s)%s", name, event.spi_i.hex(),
                             event.spi_r.hex(), format_ike_proposal(event.suite),
                             ", UDP-encapsulated" if event.natted else "")  # fmt: skip
                if self.on_ike_sa_up is not None:
                    self.on_ike_sa_up(session)
                if event.takes_over:
                    self._adopt(conn, session, event.initial_contact, now)
            elif isinstance(event, IkeSaReauthDue):
                self._reauthenticate(conn, session, now)
            elif isinstance(event, ChildSaUp):
                self._install(conn, session, event, now)
            elif isinstance(event, ChildSaDown):
                self._uninstall(event.spi_in, now, rekeyed=event.rekeyed)
            elif isinstance(event, ChildSaFailed):
                log.warning("%s: CHILD_SA %s failed: %s", name, event.child.name, event.reason)
                self._acquiring.discard((name, event.child.name))
                self._fail_acquire(event.child)
            elif isinstance(event, IkeSaRekeyed):
                new = event.new
                self.sessions[new.spi_i] = new
                self._session_conn[new.spi_i] = conn
                if self.persist is not None:
                    self.persist.leases_moved(session, new)
                log.info("%s: IKE_SA %s rekeyed, now %s/%s", name, session.spi_i.hex(),
                         new.spi_i.hex(), new.spi_r.hex())  # fmt: skip
                if self.on_ike_sa_up is not None:
                    self.on_ike_sa_up(new)
                self._drain(new, now)
            elif isinstance(event, IkeSaDown):
                self._log_down(session, name, event.reason, now)
                old = self._replacing.pop(session.spi_i, None)
                if old is not None:
                    old.reauth_failed(now)
                    self._schedule(old)
                if not any(s.phase is not Phase.CLOSED and self._session_conn[k] is conn
                           for k, s in self.sessions.items() if s is not session):  # fmt: skip
                    for child in conn.children:
                        self._acquiring.discard((name, child.name))
                if self._established_session(conn, session.config.remote_addr) is None:
                    # No IKE SA with the peer carries on (not a rekey, not a
                    # reauthentication): the renewed CHILD_SAs' inbound SAs go with it.
                    self._delete_inbound_of(name, session.config.remote_addr)
        if session.natted:
            self._follow_nat(session, name)
        if session.phase is Phase.REPLACED and session.children:
            # IKEv1: a Quick Mode that was in flight when this ISAKMP SA was replaced has
            # finished: its CHILD_SA goes with the others to the one that replaced it.
            successor = self._established_session(conn)
            if successor is not None and successor.version == session.version:
                successor.adopt_children(session)
                self._schedule(successor)
        if session.phase is Phase.HALF_OPEN:
            self._half_open_spis.add(session.spi_i)
        else:
            self._half_open_spis.discard(session.spi_i)
        if session.phase is Phase.CLOSED:
            self.sessions.pop(session.spi_i, None)
            self._authenticated.discard(id(session))
        if self.persist is not None:
            if session.phase is Phase.CLOSED:
                self.persist.release_leases(session, self.pools)
            self.persist.touch(session)
        self._schedule(session)

    def _log_down(self, session: IkeSa, name: str, reason: str, now: float) -> None:
        """An IKE SA that never authenticated its peer may be anyone's doing (an
        IKE_SA_INIT with the peer's address forged): its end is noise, limited."""
        text = "%s: IKE_SA %s down: %s"
        if id(session) in self._authenticated:
            log.info(text, name, session.spi_i.hex(), reason)
        else:
            self.noise.log(now, session.remote[0], logging.INFO, text, name,
                           session.spi_i.hex(), reason)  # fmt: skip

    def _follow_nat(self, session: IkeSa, name: str) -> None:
        """The peer's NAT gave its 4500 another port (a mapping timed out, the NAT
        restarted): the session answers there now, and the outbound SAs send there too
        (RFC 7296 §2.23)."""
        port = _natt_port(session)
        for spi_in in session.children:
            record = self.children.get(spi_in)
            if record is None or not record.natt_port or record.natt_port == port:
                continue
            update = natt_update(record.spi_out, record.local, record.remote, port,
                                 seq=self._next_seq(), pid=self.pid)  # fmt: skip
            refused = self._refusal(update)
            if refused is not None:
                log.warning("%s: the stack refused to move SPI %08x to port %d", name,
                            record.spi_out, port)  # fmt: skip
                continue
            log.info("%s: CHILD_SA %s: the peer's NAT mapping changed, ESP in UDP to port %d "
                     "(was %d)", name, record.name, port, record.natt_port)  # fmt: skip
            record.natt_port = port
            if self.persist is not None:
                self.persist.child_moved(spi_in, port)

    def _fail_acquire(self, child: ChildConfig) -> None:
        seq = child.reference
        if isinstance(seq, int) and self._requests.pop(seq, None) is not None:
            # RFC 2367 §3.1.6: ACQUIRE with errno tells the stack to drop its record.
            self._call(PfkeyMessage(SadbMsgType.ACQUIRE, 3, seq=seq, pid=self.pid, errno=1))

    def _getspi(self, ike: IkeConfig) -> int | None:
        """GETSPI: an inbound SPI from the peer, LARVAL in the stack; None if it gave none."""
        replies = self._pfkey(getspi_bytes(ike.remote_addr, ike.local_addr,
                                           seq=self._next_seq(), pid=self.pid))  # fmt: skip
        for reply in replies:
            spi = getspi_reply_spi(reply)
            if spi is not None:
                return spi
        return None

    def _responder_policy(
        self, conn: Connection, ike: IkeConfig, tsi: tuple[IPNetwork, ...],
        tsr: tuple[IPNetwork, ...], mode: str = "tunnel",
    ) -> ChildConfig | None:  # fmt: skip
        """Inverse ACQUIRE: what does the stack's policy accept for these selectors?

        A request for transport mode asks first without inner addresses, for a
        transport-mode policy between the two hosts (`larval.spd.acquire`); with none,
        the tunnel-mode question decides, as a responder may answer USE_TRANSPORT_MODE
        with a tunnel (RFC 7296 §1.3.1)."""
        remote_nets = list(tsi)
        local_nets = list(tsr)
        pairs = _first_pair_of_each_family(local_nets, remote_nets)
        if not pairs:
            return None
        if mode == "transport":
            found = self._ask_policy(conn, ike, pairs[0][0], None, None)
            if found is not None:
                return found
        # One question per family: a CHILD_SA that asked for IPv4 and IPv6 keeps each
        # family the policy allows (one SA for both, RFC 7296 §2.9).
        allowed = [self._ask_family(conn, ike, local, remote) for local, remote in pairs]
        found = _joined([a for a in allowed if a is not None])
        if found is None:
            log.warning("%s: no policy for %s <-> %s", conn.ike.name, local_nets, remote_nets)
        return found

    def _ask_family(
        self, conn: Connection, ike: IkeConfig, local: IPNetwork, remote: IPNetwork
    ) -> ChildConfig | None:
        """The tunnel policy for one family's selectors as the peer proposed them, or, if
        they are wider than any policy (a native client's ``0.0.0.0/0``, ``::/0``), for
        the connection's own networks inside them: the responder narrows (RFC 7296 §2.9)."""
        found = self._ask_policy(conn, ike, local, local, remote)
        if found is not None:
            return found
        locals_ = [local, *_inside_of(local, [n for c in conn.children for n in c.local_ts])]
        remotes = [remote, *_inside_of(remote, [n for c in conn.children for n in c.remote_ts])]
        answers = [
            self._ask_policy(conn, ike, near, near, far)
            for near in locals_
            for far in remotes
            if (near, far) != (local, remote)
        ]
        return _joined([a for a in answers if a is not None])

    def _ask_policy(
        self, conn: Connection, ike: IkeConfig, local_net: IPNetwork,
        inner_local: IPNetwork | None, inner_remote: IPNetwork | None,
    ) -> ChildConfig | None:  # fmt: skip
        """One inverse ACQUIRE between this IKE SA's addresses, with inner addresses for a
        tunnel-mode policy or without for a transport-mode one: the CHILD_SA it allows."""
        replies = self._pfkey(
            inverse_acquire_bytes(ike.local_addr, ike.remote_addr, inner_local, inner_remote,
                                  seq=self._next_seq(), pid=self.pid)
        )  # fmt: skip
        for reply in replies:
            answer = inverse_acquire_answer(reply)
            if answer is None:
                continue
            # The same answer for the same connection and selector: the same CHILD_SA
            # (the sequence number in the header aside, nothing of it is per question).
            key = (answer, local_net)
            kept = self._policy_answers.get(key)
            if kept is not None and kept[0] is conn:
                return kept[1]
            found = self._child_of_policy(conn, local_net, parse_policy_request(decode(reply)))
            if len(self._policy_answers) >= _POLICY_ANSWERS_KEPT:
                self._policy_answers.clear()  # policies and connections changed a lot
            self._policy_answers[key] = (conn, found)
            return found
        return None

    @staticmethod
    def _child_of_policy(
        conn: Connection, local_net: IPNetwork, request: PolicyRequest
    ) -> ChildConfig:
        """The CHILD_SA an inverse ACQUIRE's answer allows, named and tuned as the
        connection's child whose local selectors cover `local_net`."""
        base = next(
            (c for c in conn.children if _covered(local_net, c.local_ts)),
            conn.children[0] if conn.children else None,
        )
        name = base.name if base else "child"
        life = request.alternatives[0].lifetimes
        return ChildConfig(
            name, _suites(request, base),
            (request.local_ts.network,), (request.remote_ts.network,),
            "tunnel" if request.tunnel else "transport",
            life.soft_addtime or 3600, life.hard_addtime or 3960,
            life.soft_bytes, life.hard_bytes, request.replay_window,
            inactivity=base.inactivity if base else 0,
            reference=None,
        )  # fmt: skip

    def _install(self, conn: Connection, session: IkeSa, up: ChildSaUp, now: float) -> None:
        """UPDATE the inbound LARVAL SA, ADD the outbound one (RFC 2367 §3.1.2-3), between
        the addresses of this IKE SA."""
        ike = session.config
        proposal = proposal_of(up.suite)
        seq = up.child.reference if isinstance(up.child.reference, int) else self._next_seq()
        request = self._requests.pop(seq, None) if isinstance(up.child.reference, int) else None
        if request is None or request.tunnel != (up.child.mode == "tunnel"):
            # No ACQUIRE asked for it, or the responder chose tunnel mode for a transport-
            # mode policy's request (RFC 7296 §1.3.1): the SAs are as negotiated.
            request = self._synthetic_request(ike, up, seq)
        else:
            request = _with_negotiated_pairs(request, up.local_ts, up.remote_ts)
        # strongSwan's rand_time: each end rekeys a little before rekey_time, at a random
        # moment, so that the two ends rarely rekey the same CHILD_SA at once (§2.8.1).
        spread = max(0, up.child.life_time - up.child.rekey_time) // 2
        jitter = int.from_bytes(self._random(2), "big") % (spread + 1) if spread else 0
        soft = max(1, up.child.rekey_time - jitter) if up.child.rekey_time else 0
        lifetimes = Lifetimes(soft, up.child.life_time, up.child.rekey_bytes, up.child.life_bytes,
                              idle=up.child.inactivity)  # fmt: skip
        # ESP in UDP goes where the peer's IKE on 4500 comes from: behind a NAT, the port
        # the NAT made of its 4500 (RFC 3948, RFC 7296 §2.23).
        natt = _natt_port(session) if up.natted else 0
        inbound = ChildKeys(up.spi_in, ike.remote_addr, ike.local_addr, proposal,
                            up.keys_in.encr_key, up.keys_in.integ_key)  # fmt: skip
        outbound = ChildKeys(up.spi_out, ike.local_addr, ike.remote_addr, proposal,
                             up.keys_out.encr_key, up.keys_out.integ_key)  # fmt: skip

        def install(msg_type: int, keys: ChildKeys, is_in: bool, pair: int) -> None:
            message = keyed_sa_bytes(msg_type, keys, request, lifetimes, inbound=is_in,
                                     seq=seq, pid=self.pid, pair_spi=pair,
                                     natt_port=natt)  # fmt: skip
            refused = self._refused(self._pfkey(message))
            if refused is None and self.persist is not None:
                self.persist.sa_installed(up.spi_in, "in" if is_in else "out", message)
            if refused is not None:
                log.warning("%s: %s of SPI %08x refused: errno %d, diagnostic %d", ike.name,
                            SadbMsgType(msg_type).name, keys.spi, refused.errno,
                            refused.diagnostic)  # fmt: skip

        record = ChildRecord(
            ike.name, up.child.name, up.spi_in, up.spi_out, up.suite, ike.local_addr,
            ike.remote_addr, up.local_ts, up.remote_ts, now, natt_port=natt,
        )  # fmt: skip
        if self.persist is not None:
            doc = dict(_child_doc(record, lifetimes), ike_sa=persistence.ike_key(session))
            self.persist.child_installed(record, doc)
        install(SadbMsgType.UPDATE, inbound, True, 0)
        if up.replaces is not None and up.replaces in self.children:
            # The peer's rekey: our outbound SA waits for its DELETE of the old CHILD_SA
            # (`_uninstall` adds it then); traffic goes on over the old one meanwhile.
            self._outbound_due[up.spi_in] = (
                math.inf,
                lambda: install(SadbMsgType.ADD, outbound, False, up.spi_in),
            )
            self._renewed_by[up.replaces] = up.spi_in
        elif up.outbound_after > 0:
            # The outbound SA, and the packets the stack holds for it, wait until the peer
            # can take them (IKEv1: QM3 has reached it); `handle_timer` adds it then.
            self._outbound_due[up.spi_in] = (
                now + up.outbound_after,
                lambda: install(SadbMsgType.ADD, outbound, False, up.spi_in),
            )
            if self.persist is not None:
                # Kept already: a restart after the peer has QM3 adds it at once.
                self.persist.sa_installed(up.spi_in, "out", keyed_sa_bytes(
                    SadbMsgType.ADD, outbound, request, lifetimes, inbound=False, seq=seq,
                    pid=self.pid, pair_spi=up.spi_in, natt_port=natt))  # fmt: skip
        else:
            install(SadbMsgType.ADD, outbound, False, up.spi_in)
        self._acquiring.discard((ike.name, up.child.name))
        self.children[up.spi_in] = record
        if log.isEnabledFor(logging.INFO):  # the suite is formatted to be written only
            log.info("%s: CHILD_SA %s installed, SPIs %08x in / %08x out, %s", ike.name,
                     up.child.name, up.spi_in, up.spi_out,
                     format_esp_proposal(up.suite))  # fmt: skip

    def _synthetic_request(self, ike: IkeConfig, up: ChildSaUp, seq: int) -> PolicyRequest:
        """What an ACQUIRE would have said, for a CHILD_SA nobody ACQUIREd (responder,
        `larval up`): the selectors negotiated, in tunnel or transport mode. Every
        same-family pair of TSi x TSr goes into the one SA (the first as its inner
        addresses, the rest as further pairs): a road warrior's IPv4 and IPv6 together."""

        def ep(net: IPNetwork) -> Endpoint:
            return Endpoint(net.network_address, net.prefixlen, 0, 0)

        tunnel = up.child.mode == "tunnel"
        pairs = selector_pairs(up.local_ts, up.remote_ts) if tunnel else []
        return PolicyRequest(
            seq,
            Endpoint(ike.local_addr, ike.local_addr.max_prefixlen, 0, 0),
            Endpoint(ike.remote_addr, ike.remote_addr.max_prefixlen, 0, 0),
            ep(pairs[0][0]) if pairs else None,
            ep(pairs[0][1]) if pairs else None,
            (),
            up.child.replay_window,
            0,
            tuple((ep(local), ep(remote)) for local, remote in pairs[1:]),
        )

    def _uninstall(self, spi_in: int, now: float, *, rekeyed: bool = False) -> None:
        """The CHILD_SA's SAs leave the stack. Of a renewed one (`rekeyed`, or one the
        peer renewed), the outbound SA goes now and the inbound one after
        `REKEYED_INBOUND_DELAY` (RFC 7296 §2.8; as strongSwan's child_delete)."""
        record = self.children.pop(spi_in, None)
        if self.persist is not None:
            self.persist.child_gone(spi_in)
        if record is None:
            return
        if self.on_child_gone is not None:
            self.on_child_gone(record)
        successor = self._renewed_by.pop(spi_in, None)
        renewal = self._outbound_due.pop(successor, None) if successor is not None else None
        if renewal is not None:
            renewal[1]()  # the new outbound SA first, then the old one goes
        if self._outbound_due.pop(spi_in, None) is None:  # else never added
            self._call(delete_sa(record.spi_out, record.local, record.remote,
                                 seq=self._next_seq(), pid=self.pid))  # fmt: skip
        if rekeyed or successor is not None:
            self._inbound_due[spi_in] = (now + REKEYED_INBOUND_DELAY, record)
            log.info("%s: CHILD_SA %s deleted (SPIs %08x/%08x), its inbound SA kept %g s "
                     "for packets in flight", record.connection, record.name, record.spi_in,
                     record.spi_out, REKEYED_INBOUND_DELAY)  # fmt: skip
            return
        self._call(delete_sa(record.spi_in, record.remote, record.local,
                             seq=self._next_seq(), pid=self.pid))  # fmt: skip
        log.info("%s: CHILD_SA %s deleted (SPIs %08x/%08x)", record.connection, record.name,
                 record.spi_in, record.spi_out)  # fmt: skip

    def _delete_inbound(self, spi_in: int) -> None:
        """The kept inbound SA of a renewed CHILD_SA leaves the stack (a hard lifetime
        may have taken it already: the stack's refusal then says so, and is not read)."""
        _, record = self._inbound_due.pop(spi_in)
        self._call(delete_sa(spi_in, record.remote, record.local, seq=self._next_seq(),
                             pid=self.pid))  # fmt: skip
        log.debug("%s: inbound SA %08x of the renewed CHILD_SA %s deleted", record.connection,
                  spi_in, record.name)  # fmt: skip

    def _delete_inbound_of(self, connection: str, remote: IPAddress | None = None) -> None:
        """Now, the kept inbound SAs of the connection's renewed CHILD_SAs (with `remote`,
        where it names one)."""
        for spi_in, (_, record) in list(self._inbound_due.items()):
            if record.connection == connection and remote in (None, record.remote):
                self._delete_inbound(spi_in)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, list[dict[str, Any]]]:
        ike_sas = [
            {
                "name": self._session_conn[spi].ike.name,
                "state": s.state.value,
                "initiator": s.initiator,
                "spi_i": s.spi_i.hex(),
                "spi_r": s.spi_r.hex(),
                "remote": s.remote[0],
                "remote_port": s.remote[1],  # behind a NAT, what it made of the peer's port
                "encapsulated": s.natted,
                "version": s.version,
                "rekey_at": s.rekey_at,  # the key manager's clock; IKEv1: reauthentication
                "expires_at": s.expires_at,
                "suite": format_ike_proposal(s.suite),  # "" until one is chosen
                # How each end authenticated; None until the IKE SA is established.
                "auth_local": _auth_info(s.auth_local),
                "auth_remote": _auth_info(s.auth_remote),
                # The peer's (responder) or this end's (initiator) virtual addresses.
                "virtual_ips": [str(a) for a in s.virtual_ips],
            }
            for spi, s in self.sessions.items()
        ]
        child_sas = [
            {
                "connection": c.connection,
                "name": c.name,
                "spi_in": f"{c.spi_in:08x}",
                "spi_out": f"{c.spi_out:08x}",
                "esp": format_esp_proposal(c.suite),
                "local": str(c.local),
                "remote": str(c.remote),
                "local_ts": [str(n) for n in c.local_ts],
                "remote_ts": [str(n) for n in c.remote_ts],
                "installed": c.installed,
            }
            for c in self.children.values()
        ]
        # Inbound SAs of renewed CHILD_SAs, kept for packets in flight: when each goes.
        kept = [
            {
                "connection": record.connection,
                "name": record.name,
                "spi_in": f"{spi_in:08x}",
                "local": str(record.local),
                "remote": str(record.remote),
                "delete_at": due,  # the key manager's clock
            }
            for spi_in, (due, record) in self._inbound_due.items()
        ]
        return {"ike_sas": ike_sas, "child_sas": child_sas, "rekeyed_inbound": kept}


class _ConnectionPools:
    """A connection's pools as its IKE SAs ask them (`AddressPool`): the key manager's
    current `Pools`, so that a reload's pools serve the IKE SAs set up before it."""

    __slots__ = ("_keymgr", "_names")

    def __init__(self, keymgr: KeyManager, names: tuple[str, ...]) -> None:
        self._keymgr = keymgr
        self._names = names

    def acquire(
        self, identity: str, requested: IPAddress, peer: Address
    ) -> tuple[Lease, PoolAttributes] | None:
        pools = self._keymgr.pools
        names = [n for n in self._names if n in pools]  # a reload may have removed one
        lease = pools.acquire(names, identity, requested, peer)
        return (lease, pools[lease.pool].attributes) if lease is not None else None

    def release(self, identity: str, lease: Lease) -> None:
        self._keymgr.pools.release(identity, lease)


#: AuthInfo's fields, in order: what `_auth_info` shows.
_AUTH_FIELDS = tuple(f.name for f in dataclasses.fields(AuthInfo))


def _auth_info(info: AuthInfo | None) -> dict[str, Any] | None:
    """method ("psk", "pubkey", "eap-mschapv2", "eap-md5"), scheme, the certificate's
    subject and issuer, and the EAP identity ("identity") where there is one; the
    further rounds of RFC 4739 ("rounds", each the same) where there are any."""
    if info is None:
        return None
    # The fields as they are (strings; the rounds replaced below): asdict's deep copy
    # of each made `status` at 10,000 IKE SAs take half a second.
    fields = {name: getattr(info, name) for name in _AUTH_FIELDS}
    if not info.identity:
        del fields["identity"]  # only an EAP end has one
    del fields["rounds"]
    if info.rounds:
        fields["rounds"] = [_auth_info(r) for r in info.rounds]
    return fields


def _child_doc(record: ChildRecord, lifetimes: Lifetimes) -> dict[str, Any]:
    """A CHILD_SA's record in the state store, lifetimes as absolute times."""
    at = record.installed
    return {
        "connection": record.connection, "name": record.name, "spi_out": record.spi_out,
        "suite": persistence.suite_json(record.suite),
        "local": str(record.local), "remote": str(record.remote),
        "local_ts": [str(n) for n in record.local_ts],
        "remote_ts": [str(n) for n in record.remote_ts],
        "installed": at, "natt_port": record.natt_port,
        "soft_at": at + lifetimes.soft_addtime if lifetimes.soft_addtime else None,
        "hard_at": at + lifetimes.hard_addtime if lifetimes.hard_addtime else None,
    }  # fmt: skip


def _same_peer(old: IkeSa, new: IkeSa) -> bool:
    """Are two IKE SAs with the same peer? Of its address; behind a NAT, where several
    peers may share one address, of the NAT's mapping too (its port), so that a second
    client behind it neither takes over nor clears the first one's SAs."""
    if old.remote[0] != new.remote[0]:
        return False
    return not (old.natted and new.natted) or old.remote[1] == new.remote[1]


def _between(ike: IkeConfig, local: IPAddress, remote: IPAddress) -> IkeConfig:
    """The connection's configuration for an IKE SA between `local` and `remote`, which
    its local_addrs and remote_addrs admit: the same, where those are its own."""
    if ike.local_addr == local and ike.remote_addr == remote:
        return ike
    return dataclasses.replace(ike, local_addr=local, remote_addr=remote)


def _initiated(conn: Connection) -> int:
    """The IKE version the connection initiates: 1, or 2 (also for `version = 0`)."""
    return 1 if conn.version == 1 else 2


def _message_size(ike: IkeConfig) -> int:
    """The largest IKE message sent whole: `fragment_size` is an IP datagram's, as
    strongSwan's; less the IP and UDP headers and the non-ESP marker."""
    ip_header = 20 if ike.remote_addr.version == 4 else 40
    return ike.fragment_size - ip_header - 8 - 4


def _natt_port(session: IkeSa) -> int:
    """Where ESP in UDP goes: where the peer's IKE on 4500 comes from. Behind a NAT, the
    port the NAT made of its 4500 (RFC 3948, RFC 7296 §2.23); before any float, 4500."""
    port = session.remote[1]
    return port if port != IKE_PORT else NAT_T_PORT


def _suites(request: PolicyRequest, child: ChildConfig | None) -> tuple[Suite, ...]:
    """The policy's alternatives as ESP suites. PF_KEY says only "PFS" of an alternative
    (SADB_SAFLAGS_PFS); the group is the one the connection's child names."""
    proposals = child.proposals if child is not None else ()
    groups = [t for suite in proposals for t in suite if t.type == TransformType.DH]
    return tuple(
        esp_suite(a.proposal) + ((groups[0],) if a.pfs and groups else ())
        for a in request.alternatives
    )


def _first_pair_of_each_family(
    local_nets: list[IPNetwork], remote_nets: list[IPNetwork]
) -> list[tuple[IPNetwork, IPNetwork]]:
    """The first (TSr, TSi) networks of each address family, in TSr's order: a client
    with an address of each family sends both in every TSi (strongSwan's dynamic TSi),
    also for a CHILD_SA whose TSr is of one family only; a policy joins networks of one."""
    pairs: dict[int, tuple[IPNetwork, IPNetwork]] = {}
    for local in local_nets:
        for remote in remote_nets:
            if local.version == remote.version and local.version not in pairs:
                pairs[local.version] = (local, remote)
    return list(pairs.values())


def _inside_of(net: IPNetwork, nets: list[IPNetwork]) -> list[IPNetwork]:
    """The networks of `nets` strictly inside `net`, once each, in order."""
    return list(dict.fromkeys(
        n for n in nets if n.version == net.version and n != net and n.subnet_of(net)  # type: ignore[arg-type]
    ))  # fmt: skip


def _joined(allowed: list[ChildConfig]) -> ChildConfig | None:
    """The policies' answers for each family as one CHILD_SA: the first answer, with the
    selectors of the others of its mode added."""
    if not allowed:
        return None
    first = allowed[0]
    local_ts, remote_ts = list(first.local_ts), list(first.remote_ts)
    for other in allowed[1:]:
        if other.mode != first.mode:
            continue
        local_ts += [n for n in other.local_ts if n not in local_ts]
        remote_ts += [n for n in other.remote_ts if n not in remote_ts]
    if len(local_ts) == len(first.local_ts) and len(remote_ts) == len(first.remote_ts):
        return first
    return dataclasses.replace(first, local_ts=tuple(local_ts), remote_ts=tuple(remote_ts))


def _with_negotiated_pairs(
    request: PolicyRequest, local_ts: tuple[IPNetwork, ...], remote_ts: tuple[IPNetwork, ...]
) -> PolicyRequest:
    """An ACQUIRE's request, for an SA that also carries the negotiated selector pairs
    its own pair does not cover (the other family of a dual-stack CHILD_SA)."""
    if not request.tunnel or request.inner_src is None or request.inner_dst is None:
        return request
    near, far = request.inner_src.network, request.inner_dst.network
    more = tuple(
        (Endpoint(lo.network_address, lo.prefixlen, 0, 0),
         Endpoint(re.network_address, re.prefixlen, 0, 0))
        for lo, re in selector_pairs(local_ts, remote_ts)
        if not (_covered(lo, (near,)) and _covered(re, (far,)))
    )  # fmt: skip
    return dataclasses.replace(request, more_pairs=more) if more else request


def _covered(net: IPNetwork, nets: tuple[IPNetwork, ...]) -> bool:
    return any(net.version == n.version and net.subnet_of(n) for n in nets)  # type: ignore[arg-type]
