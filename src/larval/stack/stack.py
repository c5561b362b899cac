"""The stack's core: SADB and SPD behind PF_KEY, and the verdict for each outbound packet.

Sans-I/O: PF_KEY requests come in as decoded messages and leave as replies, or, for the
usual GETSPI, UPDATE and ADD and for inverse ACQUIREs, come in as bytes and leave as
bytes (`handle_pfkey_bytes`, `larval.sadb.fast_path`; what it declines, the caller
decodes); messages the stack originates (ACQUIRE, EXPIRE) go to `emit`, which the
PF_KEY socket provides. A packet leaving the host is matched against the SPD: BYPASS,
DISCARD, or PROTECT with an SA if one exists; otherwise it is held on an acquire record
and, for a new record, a regular ACQUIRE goes to plain registrants and an extended one
(every alternative of the policy, RFC 2367 §3.1.6 with the illumos SADB_X_EXT_EPROP) to
extended registrants.
A tunnel policy to any peer (``%any``) takes the SA whose inner destination covers the
packet's, and drops the packet if there is none: it has no peer to ACQUIRE for.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import NamedTuple

from larval.crypto.randomness import RandomBytes, system_random
from larval.pfkey import PfkeyError, PfkeyMessage, SadbAddress, SadbMsgType, SaState, SaType, decode
from larval.sadb import (
    Audience,
    FastPath,
    GcFreezer,
    PfkeyReply,
    Sadb,
    SadbError,
    SecurityAssociation,
    WireReply,
)
from larval.sadb.sa import Packet, ReleaseFn
from larval.spd import (
    Action,
    Direction,
    Flow,
    Mode,
    Policy,
    Spd,
    extended_acquire,
    inverse_acquire,
    regular_acquire,
)
from larval.stack.esp_state import (
    CHECKPOINT_INTERVAL,
    CHECKPOINT_PACKETS,
    HOLD,
    SEQ_BLOCK,
    EspStateWriter,
)
from larval.stack.flow import PacketError, parse_flow
from larval.stack.flow_cache import MAX_FLOWS, FlowCache, flow_key
from larval.store import StateStore

Emit = Callable[[list[PfkeyReply]], None]


class Verdict(enum.Enum):
    BYPASS = "bypass"  # send in the clear (a BYPASS policy, or no policy at all)
    DISCARD = "discard"  # a DISCARD policy
    PROTECT = "protect"  # encrypt with `sa`
    HELD = "held"  # waits on an acquire record for its SA
    DROP = "drop"  # not an IP packet we can read
    NO_PEER_SA = "no-peer-sa"  # a tunnel to any peer, and no SA covers the destination


_MATURE = SaState.MATURE
# Where a PF_KEY header's sequence number begins and its pid ends (RFC 2367 §2.3.1).
_SEQ_AT, _PID_END = 8, 16
#: Inverse ACQUIRE answers kept (`Stack._inverse_acquire_bytes`): one per question.
_INVERSE_ANSWERS_KEPT = 4096


class Outbound(NamedTuple):
    verdict: Verdict
    policy: Policy | None = None
    sa: SecurityAssociation | None = None


def _no_emit(replies: list[PfkeyReply]) -> None:
    """Nobody listens (no PF_KEY socket yet): the messages go nowhere."""


class Stack:
    """SADB + SPD, answering PF_KEY and judging packets. Thread-safe like the SADB."""

    def __init__(
        self,
        *,
        emit: Emit = _no_emit,
        on_inbound_release: ReleaseFn | None = None,
        on_outbound_release: ReleaseFn | None = None,
        random_bytes: RandomBytes = system_random,
        store: StateStore | None = None,
        gc_freezer: GcFreezer | None = None,
    ) -> None:
        """`random_bytes`: where SPIs and ESP IVs are drawn from. `store`: where ESP
        sequence numbers are reserved and replay windows checkpointed; None (no state
        configured) sends without reservations, as fast as ever. `gc_freezer`: keeps
        the cyclic collector off a large SADB (`larval.sadb.heap`), for a process whose
        SADB is what grows."""
        self.emit = emit
        self.random_bytes = random_bytes
        self.sadb = Sadb(
            on_inbound_release=on_inbound_release,
            on_outbound_release=on_outbound_release,
            random_bytes=random_bytes,
            gc_freezer=gc_freezer,
        )
        self.spd = Spd()
        # Inverse ACQUIRE answers by the request's bytes less its sequence number and pid,
        # with the SPD generation they were found at (`_inverse_acquire_bytes`).
        self._inverse_answers: dict[bytes, tuple[int, list[tuple[bytes, bytes, WireReply]]]] = {}
        # The usual GETSPI, UPDATE and ADD, and inverse ACQUIREs, from their bytes: the
        # answers encoded, or None (nothing done) for the caller to `decode` the request
        # and `handle_pfkey` it.
        self.handle_pfkey_bytes: Callable[[bytes, float], list[WireReply] | None] = FastPath(
            self.sadb, others={SadbMsgType.X_INVERSE_ACQUIRE: self._inverse_acquire_bytes}
        ).handle
        self.esp_state: EspStateWriter | None = None
        if store is not None:
            self.use_store(store)
        self.outbound_policies = FlowCache(self.spd, Direction.OUT)
        self.inbound_policies = FlowCache(self.spd, Direction.IN)
        # PROTECT verdicts by flow key, with the SPD and ESP table generations they were
        # found at (`outbound`).
        self._esp_table = self.sadb.esp_table
        self._protected: dict[bytes, tuple[int, int, SecurityAssociation, Outbound]] = {}
        # A tunnel's SAs by gateways and inner addresses, with the ESP table generation
        # they were found at (`_outbound`): the flows of one pair of hosts share one.
        self._by_inner: dict[bytes, tuple[int, SecurityAssociation]] = {}
        self._drops_lock = threading.Lock()
        # "no_peer_sa" joins them the first time a tunnel to any peer has no SA.
        self.drops: dict[str, int] = {"malformed": 0, "discard": 0}

    def use_store(
        self,
        store: StateStore,
        *,
        block: int = SEQ_BLOCK,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        checkpoint_packets: int = CHECKPOINT_PACKETS,
        hold: float = HOLD,
    ) -> EspStateWriter:
        """Reserve sequence numbers and checkpoint replay windows in `store` from now on,
        for the SAs whose ESP context is made after this (call it before traffic). The
        caller starts and stops the writer's thread (`EspStateWriter.start`)."""
        writer = EspStateWriter(
            store, block=block, checkpoint_interval=checkpoint_interval,
            checkpoint_packets=checkpoint_packets, hold=hold,
        )  # fmt: skip
        self.esp_state = writer
        self.sadb.on_removed = writer.forget
        return writer

    # -- PF_KEY -------------------------------------------------------------------------

    def handle_pfkey(self, msg: PfkeyMessage, now: float) -> list[PfkeyReply]:
        if msg.msg_type == SadbMsgType.X_INVERSE_ACQUIRE:
            try:
                reply = inverse_acquire(self.spd, msg)
            except SadbError as e:
                return [Sadb.error_reply(msg, e)]
            return [PfkeyReply(reply, Audience.SENDER)]
        return self.sadb.handle(msg, now)

    def _inverse_acquire_bytes(self, data: bytes, now: float) -> list[WireReply] | None:
        """An X_INVERSE_ACQUIRE from its bytes. The answer is a function of the request and
        the SPD alone (`inverse_acquire`; it copies the request's sequence number and
        pid), so a question asked again while the SPD is unchanged, as a responder asks
        it for every CHILD_SA of a peer, is answered from the bytes of the last answer.
        A request that does not decode: None, for the full path to refuse."""
        key = data[:_SEQ_AT] + data[_PID_END:]
        spd = self.spd
        kept = self._inverse_answers.get(key)
        if kept is not None and kept[0] == spd.generation:
            ids = data[_SEQ_AT:_PID_END]
            return [reply._replace(data=head + ids + tail) for head, tail, reply in kept[1]]
        generation = spd.generation  # before the lookup: a change during it is seen next time
        try:
            msg = decode(data)
        except PfkeyError:
            return None
        replies = [
            WireReply(r.message.encode(), r.audience, r.message.satype)
            for r in self.handle_pfkey(msg, now)
        ]
        ids = data[_SEQ_AT:_PID_END]
        if all(r.data[_SEQ_AT:_PID_END] == ids for r in replies):
            if len(self._inverse_answers) >= _INVERSE_ANSWERS_KEPT:
                self._inverse_answers.clear()
            self._inverse_answers[key] = (
                generation,
                [(r.data[:_SEQ_AT], r.data[_PID_END:], r) for r in replies],
            )
        return replies

    def age(self, now: float) -> None:
        """Apply lifetimes; the EXPIREs go out through `emit`."""
        self.emit(self.sadb.age(now))

    # -- packets ------------------------------------------------------------------------

    def outbound(self, packet: Packet, now: float) -> Outbound:
        """What to do with a packet leaving the host (RFC 4301 §5.1).

        A PROTECT verdict with a MATURE SA is remembered per flow (`flow_key`): it holds
        while the SPD and the SADB's ESP table are at the generations read before the
        lookup and the SA is still MATURE, as nothing else can change the answer. So a
        flow's later packets skip the policy and SA lookups, whatever the SAs' number."""
        key = flow_key(packet)
        if key is not None:
            hit = self._protected.get(key)
            if (
                hit is not None
                and hit[0] == self.spd.generation
                and hit[1] == self._esp_table.generation
                and hit[2].state == _MATURE
            ):
                return hit[3]
            generations = (self.spd.generation, self._esp_table.generation)
        result = self._outbound(packet, now)
        if key is not None and result.sa is not None and result.sa.state == _MATURE:
            protected = self._protected
            if len(protected) >= MAX_FLOWS:
                protected.clear()  # a scan or a flood: start over rather than grow
            protected[key] = (*generations, result.sa, result)
        return result

    def protected_by(self, packet: Packet) -> SecurityAssociation | None:
        """The MATURE SA `outbound` would PROTECT `packet` with, when its flow's answer
        is remembered and still holds; else None, and `outbound` answers."""
        key = flow_key(packet)
        return None if key is None else self.protected_for(key)

    def protected_for(self, key: bytes) -> SecurityAssociation | None:
        """`protected_by` for a packet whose `flow_key` is `key`. It reads the remembered
        SA only, without the `Outbound` record: a batch spread over many SAs reads one
        object less per packet, each from memory."""
        hit = self._protected.get(key)
        if (
            hit is not None
            and hit[0] == self.spd.generation
            and hit[1] == self._esp_table.generation
            and hit[2].state == _MATURE
        ):
            return hit[2]
        return None

    def _outbound(self, packet: Packet, now: float) -> Outbound:
        try:
            policy = self.outbound_policies.lookup(packet)
        except PacketError:
            self._drop("malformed")
            return Outbound(Verdict.DROP)
        if policy is None or policy.action is Action.BYPASS:
            return Outbound(Verdict.BYPASS, policy)
        if policy.action is Action.DISCARD:
            self._drop("discard")
            return Outbound(Verdict.DISCARD, policy)
        tunnel = policy.tunnel
        if tunnel is not None and tunnel.any_remote:
            return self._to_any_peer(policy, tunnel.local_packed, packet)
        flow = parse_flow(packet) if policy.mode is Mode.TRANSPORT else None
        src, dst = _outer(policy, flow)
        inner = _inner_addresses(packet) if tunnel is not None else None
        if inner is not None:
            # A tunnel's SA depends only on the gateways and the inner addresses: a new
            # flow between known addresses (another port) finds it here.
            ikey = src + dst + inner[0] + inner[1]
            generation = self._esp_table.generation
            hit = self._by_inner.get(ikey)
            if hit is not None and hit[0] == generation and hit[1].state == _MATURE:
                return Outbound(Verdict.PROTECT, policy, hit[1])
        covers = _inner_covers(packet)
        sa = self.sadb.lookup_outbound(src, dst, covers=covers, inner=inner)
        if sa is not None:
            if inner is not None and sa.state == _MATURE:
                by_inner = self._by_inner
                if len(by_inner) >= MAX_FLOWS:
                    by_inner.clear()
                by_inner[ikey] = (generation, sa)
            return Outbound(Verdict.PROTECT, policy, sa)
        flow = flow or parse_flow(packet)
        key = (policy.reqid, src, dst)
        record = self.sadb.hold_outbound(key, SaType.ESP, src, dst, packet, now, covers, inner)
        if record is not None:
            self.emit(
                [
                    PfkeyReply(
                        regular_acquire(policy, flow, record.seq), Audience.REGISTERED_PLAIN
                    ),
                    PfkeyReply(
                        extended_acquire(policy, flow, record.seq, policy.reqid),
                        Audience.REGISTERED_EXTENDED,
                    ),
                ]
            )
        return Outbound(Verdict.HELD, policy)

    def _to_any_peer(self, policy: Policy, local: bytes, packet: Packet) -> Outbound:
        """A tunnel to any peer: the SA whose inner destination covers the packet's.

        Every peer of such a policy has its own SA (a road warrior's, for its virtual
        address), made when the peer connected. Without one the packet is dropped: an
        ACQUIRE could name no peer to negotiate with, the peer's address being unknown.
        """
        src, dst = _inner_addresses(packet)
        sa = self.sadb.lookup_outbound_inner(local, src, dst)
        if sa is None:
            self._drop("no_peer_sa")
            return Outbound(Verdict.NO_PEER_SA, policy)
        return Outbound(Verdict.PROTECT, policy, sa)

    def _drop(self, counter: str) -> None:
        with self._drops_lock:
            self.drops[counter] = self.drops.get(counter, 0) + 1


def _inner_addresses(packet: Packet) -> tuple[bytes, bytes]:
    """The packet's own (source, destination), packed: a tunnel's inner addresses. The
    policy lookup has read the header already, so it is long enough."""
    if packet[0] >> 4 == 4:
        return packet[12:16], packet[16:20]
    return packet[8:24], packet[24:40]


def _outer(policy: Policy, flow: Flow | None) -> tuple[bytes, bytes]:
    """The SA's addresses: the tunnel's endpoints, or the packet's own in transport mode."""
    tunnel = policy.tunnel
    if tunnel is not None:
        return tunnel.local_packed, tunnel.remote_packed
    assert flow is not None
    return flow.src.packed, flow.dst.packed


def _pair_covers(src: SadbAddress | None, dst: SadbAddress | None, flow: Flow) -> bool:
    """Whether one inner selector pair holds the packet's addresses."""
    for ext, address in ((src, flow.src), (dst, flow.dst)):
        if ext is None:
            continue
        if ext.addr.version != address.version or ext.prefixlen > address.max_prefixlen:
            return False
        # The prefix as written: 0 is every address (packet_path's inbound check).
        if (int(ext.addr) ^ int(address)) >> (address.max_prefixlen - ext.prefixlen):
            return False
    return True


def _inner_covers(packet: Packet) -> Callable[[SecurityAssociation], bool]:
    """Whether a tunnel-mode SA's inner selectors hold the packet's addresses: which of
    several SAs between one pair of gateways carries it (an IPv4 and an IPv6 CHILD_SA of
    a client with an address of each family, or two children of one connection). The
    packet is parsed only when there is a choice to make."""
    flows: list[Flow | None] = []

    def covers(sa: SecurityAssociation) -> bool:
        if sa.inner_src is None and sa.inner_dst is None:
            return True
        if not flows:
            try:
                flows.append(parse_flow(packet))
            except PacketError:
                flows.append(None)
        flow = flows[0]
        if flow is None:
            return False
        if _pair_covers(sa.inner_src, sa.inner_dst, flow):
            return True
        # An SA of several selector pairs (X_LARVAL_INNER_PAIRS) carries any of them.
        return any(_pair_covers(src, dst, flow) for src, dst in sa.inner_more)

    return covers
