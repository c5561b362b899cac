"""The packet path, sans-I/O: cleartext packets out to ESP datagrams, ESP datagrams in to
cleartext packets, with every drop counted by name.

Outbound (RFC 4301 §5.1): SPD → SA or acquire record → ESP → a datagram for the peer's
UDP port 4500 (RFC 3948). Inbound (§5.2): SPI lookup → the LARVAL hold path → replay
check, decryption and the replay window (in `EspSa`) → the inbound policy check → the
cleartext packet. Held packets come back through the SADB's release callbacks, in the
thread that made their SA usable, and take the same path from there. The inbound policy
check keeps, per SA, the verdict every packet inside its inner selectors gets, when the
SPD gives them all one (`PacketPath._inbound_refusal`): with many SAs, each SA's packet
is then checked without a policy lookup. Where that verdict passes an IPv4 packet, a
compiled SA's C block keeps the box too (`EspContext.set_memo`), and the receive of many
SAs' packets has C say which opened packets lie in their SA's box (`open_boxed`).

The I/O layer gives `send` (a datagram to the network) and `deliver` (a cleartext
packet to the host) and feeds `outbound` and `inbound` from its loops.

The batch entries (`outbound_batch`, `inbound_batch`, `inbound_udp_batch`) take what a
loop read in one wake-up. They look the policy or SA up once per run of consecutive
packets of one flow or SPI, group the packets by SA, and give everything unusual (no
SA, a LARVAL SA, BYPASS, DISCARD, keepalives, IKE, short packets) to the per-packet
path. The groups go on through one function for both directions (`protect_groups`,
`open_groups`): an SA's run in one `EspSa` batch call under its lock, accounted once;
the single packets of many SAs in one `seal_handles`/`open_many` call, sent in one
`send_many` per peer or delivered in one `deliver_many`, those calls counting the
packets against the SAs' lifetimes in their C blocks themselves (`attach_life`). The
bytes, drops and counters are those the per-packet entries give for the same packets,
each SA's in the same order.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network
from itertools import accumulate
from typing import Any, NamedTuple

from larval.esp import (
    NAT_T_PORT,
    EspDropError,
    EspDummyPacket,
    EspSa,
    EspSeqExhausted,
    EspSeqUnreserved,
    classify_udp4500,
)
from larval.esp.errors import EspError
from larval.esp.helper import BOX_NOTICED, open_boxed, sa_box, sa_life, sa_unbox
from larval.esp.ip import IPPROTO_IPV4, IPPROTO_IPV6
from larval.esp.run import EspRun, esp_spis, one_spi
from larval.esp.sa import IPPROTO_NONE, OPEN_COUNTERS, EspDecrypted, seal_handles
from larval.esp.transforms import BytesLike
from larval.pfkey import (
    SEQ_STATE_NEXT,
    SEQ_STATE_REPLAY,
    SadbAddress,
    SadbXSeqState,
    SaFlags,
    SaState,
)
from larval.sadb import HoldResult, SecurityAssociation
from larval.sadb.inner import inner_prefixlen
from larval.sadb.sa import account_each, counted_each, counted_held, uncount
from larval.spd import Action, Direction, Policy
from larval.stack.flow import PacketError
from larval.stack.flow_cache import flow_key
from larval.stack.stack import Stack, Verdict

_SPI = slice(0, 4)
_NON_ESP_MARKER = b"\x00\x00\x00\x00"
# RFC 8200 §4: IPv6 extension headers put the ports elsewhere; such packets go one by one.
_IPV6_EXTENSIONS = frozenset({0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254})


#: `Datagram.port` for plain ESP, IP protocol 50 (RFC 4303 without RFC 3948).
PLAIN_ESP = 0


class Datagram(NamedTuple):
    """ESP (or IKE) for the peer: payload, packed destination address, and the UDP port,
    or `PLAIN_ESP` for ESP straight over IP."""

    payload: bytes
    dst: bytes
    port: int


#: An inner selector as the inbound check tests it: ``address >> shift == network`` for an
#: address of IP version ``version``.
_Prefix = tuple[int, int, int]  # (network, shift, version)

#: The inbound check's verdict for every packet in an SA's box (its first pair of inner
#: selectors, any protocol and ports): (SPD generation, the SA's inner source and
#: destination extensions it was made from, IP version of the box or 0 for no verdict
#: kept, source network and shift, destination network and shift, the verdict).
_BoxMemo = tuple[
    int, "SadbAddress | None", "SadbAddress | None", int, int, int, int, int, "str | None"
]
_NO_MEMO: _BoxMemo = (-1, None, None, 0, 0, 0, 0, 0, None)
#: `EspContext.box_src`/`box_dst` where the SA's C block keeps no box: no SA's selector.
_UNBOXED = object()
#: Numbers the changes to the boxes the C blocks keep (`EspContext.box_made`), so that a
#: receive trusts the flags of a box that was not changed after the opening began.
_BOX_CHANGES = itertools.count(1)
# parse_flow walks these IPv6 headers (and reads a fragment header): a packet with one
# takes the full check, which counts a truncated one as parse_flow does.
_IPV6_WALKED = frozenset({0, 43, 44, 60})


class EspContext:
    """The dataplane's state for one SA: its `EspSa`, used by one thread at a time under
    `lock`, which `PacketPath._context` makes the SA's own (one lock per SA)."""

    __slots__ = (
        "_more_exts", "box_dst", "box_made", "box_src", "checkpoint_at", "esp", "handle",
        "inner_exts", "inner_more", "inner_prefixes", "lock", "natt", "policy_memo", "port",
        "tunnel",
    )  # fmt: skip

    def __init__(
        self,
        esp: EspSa,
        port: int,
        tunnel: bool,
        natt: SadbAddress | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        """`lock` serialises the use of `esp` (a new one if not given)."""
        self.esp = esp
        # The SA's C block (`EspSa.handle`, None where Python runs), which holds its
        # outbound numbers and its inbound window and counters: the many-SA paths reach
        # it without touching the `EspSa`. (Tests of the inbound check make contexts
        # without one.)
        self.handle: Any = esp.handle if esp is not None else None
        # A release and the loop may meet on one SA.
        self.lock = threading.Lock() if lock is None else lock
        self.port = port
        self.tunnel = tunnel
        self.natt = natt  # the SA's NAT-T remote address the port came from
        # The SA's inner selectors (its ADDRESS_PROXY and INNER_DST extensions) as the
        # inbound check tests them, and the extensions they were made from.
        self.inner_exts: tuple[SadbAddress | None, SadbAddress | None] = (None, None)
        self.inner_prefixes: tuple[_Prefix | None, _Prefix | None] = (None, None)
        # The prefixes of the SA's further pairs (X_LARVAL_INNER_PAIRS), and their source.
        self.inner_more: tuple[tuple[_Prefix | None, _Prefix | None], ...] = ()
        self._more_exts: tuple[tuple[SadbAddress, SadbAddress], ...] = ()
        # Packets received by which a replay checkpoint is due (with a state store).
        self.checkpoint_at = 0
        # The inbound policy check's verdict for the SA's box (`PacketPath._box_memo`);
        # made on the first packet.
        self.policy_memo: _BoxMemo = _NO_MEMO
        # The inner selectors (the memo's) of the IPv4 box the C block keeps while the
        # memo's verdict is to pass (`set_memo`), or `_UNBOXED`: `open_boxed` flags the
        # packets inside it, which pass while the SA keeps these selectors. `box_made`
        # numbers the box's last change (`_BOX_CHANGES`).
        self.box_src: object = _UNBOXED
        self.box_dst: object = _UNBOXED
        self.box_made = 0

    def set_memo(self, memo: _BoxMemo) -> None:
        """Keep `memo` as the inbound check's verdict for the SA's box and, on a compiled
        tunnel SA, the box in its C block where the verdict is to pass an IPv4 packet
        (else no box there), under the SA's lock, as `open_boxed` reads the block. A
        transport SA's plaintext is no IP packet: its block keeps no box, and `open_boxed`
        flags (and counts) none of its packets."""
        with self.lock:
            self.policy_memo = memo
            handle = self.handle
            if handle is None:
                return
            generation, src, dst, version, src_net, src_shift, dst_net, dst_shift, refused = memo
            if version == 4 and refused is None and self.tunnel:
                sa_box(handle, generation, src_net, src_shift, dst_net, dst_shift)
                self.box_src, self.box_dst = src, dst
            else:
                sa_unbox(handle)
                self.box_src = self.box_dst = _UNBOXED
            # Numbered after the block's box changed, under the lock the opening holds.
            self.box_made = next(_BOX_CHANGES)

    def seq_state(self) -> SadbXSeqState:
        """The SA's sequence numbers as GET and DUMP show them (X_LARVAL_SEQ_STATE): the
        next it sends, the reserved mark (0 without a store), its replay window."""
        esp = self.esp
        window = esp.replay
        reserved = esp.seq_mark if esp.reserve is not None or esp.revoked else 0
        flags = SEQ_STATE_NEXT | (SEQ_STATE_REPLAY if window.size else 0)
        bits = window.size
        return SadbXSeqState(flags, esp.seq + 1, reserved, window.top if bits else 0, bits,
                             window.bitmap if bits else 0)  # fmt: skip

    def inner_of(self, sa: SecurityAssociation) -> tuple[_Prefix | None, _Prefix | None]:
        """The SA's inner source and destination prefixes, made again only when UPDATE
        gave it other extensions."""
        src, dst = sa.inner_src, sa.inner_dst
        exts = self.inner_exts
        if exts[0] is not src or exts[1] is not dst:
            # Prefixes first, then what they were made from: a thread that sees the new
            # extensions finds their prefixes.
            self.inner_prefixes = (_prefix(src), _prefix(dst))
            self.inner_exts = (src, dst)
        return self.inner_prefixes

    def more_of(self, sa: SecurityAssociation) -> tuple[tuple[_Prefix | None, _Prefix | None], ...]:
        """The prefixes of the SA's pairs after the first, made again when they change."""
        more = sa.inner_more
        if self._more_exts is not more:
            self.inner_more = tuple((_prefix(s), _prefix(d)) for s, d in more)
            self._more_exts = more
        return self.inner_more


DROP_COUNTERS = (
    "malformed",  # not an IP packet we can read
    "no_policy",  # outbound with no PROTECT policy: nothing routes it in the clear here
    "discard",  # a DISCARD policy
    "unknown_spi",
    "dead_sa",
    "inbound_policy",  # decrypted, but outside the SA's selectors (RFC 4301 §5.2)
    "no_peer_sa",  # outbound under a tunnel to any peer, and no SA covers the destination
    "inner_outside_sa",  # from a peer of a tunnel to any peer, with addresses not its own
    "seq_exhausted",
    "seq_unreserved",  # the SA's next sequence number was not reserved in time: not sent
    "fenced",  # the state store fenced this node: nothing more is sent
    "ike_unhandled",  # IKE on UDP 4500 with no key manager listening
    "truncated",
    # ... and the ESP layer's own: replay, replay_old, auth, bad_padding, ...
)


class PacketPath:
    """Moves packets between the host and the network through the stack."""

    def __init__(
        self,
        stack: Stack,
        *,
        send: Callable[[Datagram], None],
        deliver: Callable[[bytes], None],
        on_ike: Callable[[bytes, bytes, int], None] | None = None,
        plain_esp: bool = False,
        send_many: Callable[[bytes, int, list[bytes]], None] | None = None,
        deliver_many: Callable[[bytes, list[int], list[int]], None] | None = None,
    ) -> None:
        """`send_many(dst, port, payloads)`, if given, sends the datagrams of a batch to
        one peer at once; without it the batch entries call `send` for each.
        `deliver_many(buffer, starts, lengths)`, if given, takes the cleartext packets of
        a decrypted tunnel-mode run where they lie in the run's plaintext buffer (packet
        i: `lengths[i]` bytes from `starts[i]`); without it each goes to `deliver`."""
        self.stack = stack
        # SAs with no NAT-T port go as plain ESP when the I/O layer can send it, else
        # in UDP to port 4500 (what kernel-libipsec peers always use).
        self.default_port = PLAIN_ESP if plain_esp else NAT_T_PORT
        # Peers this host must send NAT keepalives to (RFC 3948 §2.3): those of outbound
        # SAs flagged SADB_X_SAFLAGS_NATTED, i.e. this host is behind a NAT.
        self._natted: dict[tuple[bytes, int], SecurityAssociation] = {}
        self.send = send
        self.send_many = send_many
        self.deliver = deliver
        self.deliver_many = deliver_many
        self.on_ike = on_ike
        self._lock = threading.Lock()
        self._making = threading.Lock()  # ESP contexts are made one at a time
        self.drops: dict[str, int] = dict.fromkeys(DROP_COUNTERS, 0)
        self.sent = 0
        self.delivered = 0
        stack.sadb.on_inbound_release = self._inbound_released
        stack.sadb.on_outbound_release = self._outbound_released
        stack.sadb.on_keyed = self._keyed

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "delivered": self.delivered, **self.drops}

    def drop(self, counter: str) -> None:
        """Count a packet dropped for reason `counter`."""
        with self._lock:
            self.drops[counter] = self.drops.get(counter, 0) + 1

    # -- outbound -----------------------------------------------------------------------

    def outbound(self, packet: bytes, now: float) -> None:
        """A cleartext packet from the host."""
        result = self.stack.outbound(packet, now)
        verdict = result.verdict
        if verdict is Verdict.PROTECT:
            assert result.sa is not None
            self._protect(result.sa, packet, now)
        else:
            self._verdict(verdict)

    def outbound_batch(self, packets: Sequence[bytes], now: float) -> None:
        """`outbound` for each of `packets`; one SPD and SADB lookup per run of consecutive
        packets of one flow. The protected packets are grouped by SA, each SA's in their
        order, and each SA's sealed in one `encrypt_batch` call: a batch's packets of
        different SAs (or not protected) may leave in another order than they came, never
        those of one SA.

        A batch whose every flow has its answer remembered (`Stack.protected_for`, asked
        once per run of a flow's packets) is sealed without another lookup: one SA for
        all, in one batch call; an SA each, in one `seal_handles` call; else grouped by
        SA as above."""
        protected_for = self.stack.protected_for
        sas: list[SecurityAssociation] = []
        last: bytes | None = None
        for packet in packets:
            key = flow_key(packet)
            if key is None:
                break
            if key != last:
                found = protected_for(key)
                if found is None:
                    break
                current, last = found, key
            sas.append(current)
        else:
            distinct = len(set(sas))
            if distinct == len(sas):
                self._seal_spread(sas, packets, now)
                return
            if distinct == 1:
                self._protect_batch(sas[0], packets, now)
                return
            self.protect_groups(_grouped_by_sa(zip(sas, packets, strict=True)), now)
            return
        n = len(packets)
        runs: dict[int, tuple[SecurityAssociation, list[bytes]]] = {}
        i = 0
        while i < n:
            packet = packets[i]
            key = _flow_key(packet)
            j = i + 1
            if key is not None:
                while j < n and _flow_key(packets[j]) == key:
                    j += 1
            result = self.stack.outbound(packet, now)
            if result.verdict is Verdict.PROTECT:
                sa = result.sa
                assert sa is not None
                run = runs.get(id(sa))
                if run is None:
                    runs[id(sa)] = (sa, list(packets[i:j]))
                else:
                    run[1].extend(packets[i:j])
            else:
                # Held, dropped or not ours: the first packet's verdict is done; the
                # others of the run take the per-packet path (each held or counted).
                self._verdict(result.verdict)
                for other in packets[i + 1 : j]:
                    self.outbound(other, now)
            i = j
        self.protect_groups(runs.values(), now)

    def protect_groups(
        self, groups: Iterable[tuple[SecurityAssociation, list[bytes]]], now: float
    ) -> None:
        """Seal and send each SA's cleartext packets of a batch, in their order: an SA of
        two or more in one `encrypt_batch` call, the SAs of one packet together in one
        `seal_handles` call."""
        _by_group_size(groups, self._protect_batch, self._protect_each, self._protect, now)

    def _verdict(self, verdict: Verdict) -> None:
        """Count an outbound verdict other than PROTECT."""
        if verdict is Verdict.BYPASS:
            # The host routes only protected traffic into the stack: nothing here sends
            # in the clear, so a packet without a PROTECT policy goes no further.
            self.drop("no_policy")
        elif verdict is Verdict.DROP:
            self.drop("malformed")
        elif verdict is Verdict.DISCARD:
            self.drop("discard")
        elif verdict is Verdict.NO_PEER_SA:
            self.drop("no_peer_sa")
        # HELD: on an acquire record; the SADB releases it to `_outbound_released`.

    def _protect_batch(self, sa: SecurityAssociation, packets: Sequence[bytes], now: float) -> None:
        """`_protect` for a run of tunnel-mode packets of one SA, encrypted in one call."""
        ctx = self._context(sa)
        if ctx is None or not ctx.tunnel:
            for packet in packets:
                self._protect(sa, packet, now)
            return
        error: EspError | None
        with ctx.lock:
            sealed, error = ctx.esp.encrypt_batch(_tunnel_items(packets))
        done = self._sealed(sa, ctx, packets, sealed, error, now)
        if done:
            with self._lock:
                self.sent += done

    def _protect_each(
        self, singles: Sequence[tuple[SecurityAssociation, bytes]], now: float
    ) -> None:
        """`_protect` for one packet each of several SAs (a batch spread over many SAs):
        `_seal_spread`."""
        self._seal_spread([sa for sa, _ in singles], [packet for _, packet in singles], now)

    def _seal_spread(
        self, sas: Sequence[SecurityAssociation], packets: Sequence[bytes], now: float
    ) -> None:
        """`_protect` for packet i of SA i, each SA once: the compiled tunnel SAs' sealed
        in one `seal_handles` call under their locks, which counts them against their
        lifetimes in their blocks (their use times set under those same locks); what
        they make for one peer leaves in one `send_many`. The others take `_protect`,
        each on its own."""
        chosen: list[SecurityAssociation] = []
        contexts: list[EspContext] = []
        inners: list[bytes] = []
        for sa, packet in zip(sas, packets, strict=True):
            ctx = sa.transform
            if type(ctx) is not EspContext or ctx.natt is not sa.natt_rem:
                ctx = self._context(sa)
            if ctx is None or not ctx.tunnel:
                self._protect(sa, packet, now)
            else:
                chosen.append(sa)
                contexts.append(ctx)
                inners.append(packet)
        if not chosen:
            return
        noticed: list[int] = []
        locks = _hold_all([ctx.lock for ctx in contexts])
        try:
            # The call counts what it seals against the SAs' lifetimes in their blocks.
            made = seal_handles([ctx.handle for ctx in contexts], inners, None, noticed)
            counted_held(chosen, made, noticed, now)
        finally:
            for lock in locks:
                lock.release()
        by_peer: dict[tuple[bytes, int], list[bytes]] = {}
        # The packets of a batch mostly go to one peer: the last one's list is kept at hand.
        last_dst: bytes | None = None
        last_port = -1
        sent: list[bytes] = []
        for sa, ctx, packet, esp in zip(chosen, contexts, inners, made, strict=True):
            if esp is None:
                self._protect(sa, packet, now)  # a stop in its numbers, or Python's SA
                continue
            dst = sa.dst
            port = ctx.port
            if port == last_port and dst == last_dst:
                sent.append(esp)
                continue
            peer = (dst, port)
            got = by_peer.get(peer)
            if got is None:
                sent = by_peer[peer] = [esp]
            else:
                sent = got
                sent.append(esp)
            last_dst, last_port = dst, port
        if not by_peer:
            return
        count = 0
        send_many = self.send_many
        for (dst, port), payloads in by_peer.items():
            count += len(payloads)
            if send_many is not None:
                send_many(dst, port, payloads)
            else:
                for esp in payloads:
                    self.send(Datagram(esp, dst, port))
        with self._lock:
            self.sent += count

    def _sealed(
        self,
        sa: SecurityAssociation,
        ctx: EspContext,
        packets: Sequence[bytes],
        sealed: list[bytes],
        error: EspError | None,
        now: float,
    ) -> int:
        """Account and send what a batch call sealed of `packets`; the packets after an
        error take the per-packet path. The number sent by the batch call."""
        done = len(sealed)
        if done:
            sa.account_run(sum(map(len, packets[:done])), done, now)
            if self.send_many is not None:
                self.send_many(sa.dst, ctx.port, sealed)
            else:
                send, dst, port = self.send, sa.dst, ctx.port
                for esp in sealed:
                    send(Datagram(esp, dst, port))
        if error is not None:
            # Exhausted or unreserved at packet `done`: the per-packet path expires the SA
            # or waits for the reservation, and counts, for it and each after it.
            for packet in packets[done:]:
                self._protect(sa, packet, now)
        return done

    def _keyed(self, sa: SecurityAssociation) -> None:
        """An outbound SA got its keys: with a state store, make its ESP context now, so
        that its first block of sequence numbers is reserved before its first packet."""
        if self.stack.esp_state is not None and sa.flags & SaFlags.X_OUTBOUND:
            self._context(sa)

    def _outbound_released(self, sa: SecurityAssociation, packet: bytes) -> None:
        # Released by the ADD that installed `sa`: no clock here, the SA's own times serve.
        self._protect(sa, packet, sa.lastuse or sa.addtime)

    def _protect(self, sa: SecurityAssociation, packet: bytes, now: float) -> None:
        ctx = self._context(sa)
        if ctx is None:
            self.drop("dead_sa")
            return
        tunnel = ctx.tunnel
        if tunnel:
            payload, next_header = packet, (IPPROTO_IPV4 if packet[0] >> 4 == 4 else IPPROTO_IPV6)
        else:
            try:
                payload, next_header = _transport_payload(packet)
            except PacketError:
                self.drop("malformed")
                return
        try:
            with ctx.lock:
                esp = ctx.esp.encrypt(payload, next_header)
        except EspSeqExhausted:
            self.drop("seq_exhausted")
            self.stack.emit(self.stack.sadb.expire_now(sa, now))
            return
        except EspSeqUnreserved:
            sealed = self._held_for_reservation(ctx, payload, next_header)
            if sealed is None:
                return
            esp = sealed
        sa.account(len(packet), now)
        with self._lock:
            self.sent += 1
        self.send(Datagram(esp, sa.dst, ctx.port))

    def _held_for_reservation(
        self, ctx: EspContext, payload: bytes, next_header: int
    ) -> bytes | None:
        """The packet passed its SA's reserved mark: wait briefly for the next block to be
        durable, then send it, or drop it and count why. Never sent unreserved."""
        writer = self.stack.esp_state
        if writer is not None:
            deadline = time.monotonic() + writer.hold
            while (left := deadline - time.monotonic()) > 0 and writer.wait_round(left):
                try:
                    with ctx.lock:
                        return ctx.esp.encrypt(payload, next_header)
                except EspSeqUnreserved:
                    continue
        self.drop("fenced" if writer is not None and writer.fenced else "seq_unreserved")
        return None

    # -- inbound ------------------------------------------------------------------------

    def inbound_udp(
        self, payload: bytes, local: bytes, peer: bytes, peer_port: int, now: float
    ) -> None:
        """A datagram on UDP 4500: IKE (behind the non-ESP marker), a keepalive, or ESP."""
        try:
            kind, body = classify_udp4500(payload)
        except EspDropError as e:
            self.drop(e.counter)
            return
        if kind == "esp":
            assert body is not None
            self.inbound(body, local, now)
        elif kind == "ike":
            if self.on_ike is None:
                self.drop("ike_unhandled")
            else:
                assert body is not None
                self.on_ike(body, peer, peer_port)
        # A NAT keepalive (RFC 3948 §2.3) only keeps the mapping open.

    def inbound(self, esp: bytes, local: bytes, now: float) -> None:
        """An ESP packet for the local address `local` (packed)."""
        if len(esp) < 8:
            self.drop("truncated")
            return
        spi = int.from_bytes(esp[_SPI], "big")
        sa = self.stack.sadb.lookup_esp(spi, local)
        if sa is None:
            self.drop("unknown_spi")
            return
        # The seed's rule: a packet for a LARVAL SA is held, the state checked again
        # under the SA's lock; if the SA matured meanwhile, it is processed now.
        if not sa.ready and self.stack.sadb.hold_inbound(sa, esp) is HoldResult.HELD:
            return
        self._open(sa, esp, now)

    def inbound_udp_batch(
        self, datagrams: Sequence[tuple[bytes, bytes, int]], local: bytes, now: float
    ) -> None:
        """`inbound_udp` for each (payload, peer, peer port) of `datagrams`, in order: runs
        of ESP go to `inbound_batch`, everything else (IKE, keepalives, runts) one by one."""
        run: list[bytes] = []
        for payload, peer, peer_port in datagrams:
            if len(payload) >= 8 and payload[:4] != _NON_ESP_MARKER:
                run.append(payload)
                continue
            if run:
                self.inbound_batch(run, local, now)
                run = []
            self.inbound_udp(payload, local, peer, peer_port, now)
        if run:
            self.inbound_batch(run, local, now)

    def inbound_batch(self, packets: Sequence[bytes], local: bytes, now: float) -> None:
        """`inbound` for each of `packets`: one SADB lookup per SPI; the packets of usable
        SAs grouped by SA, each SA's in their order, and each SA's decrypted in one
        `decrypt_batch` call. A batch's packets of different SAs (or of none, or of a
        LARVAL SA) may be delivered in another order than they came, never those of one
        SA.

        A batch spread over many SAs is handled in one pass: its packets go to
        `_open_each` as they were found, without being grouped (an SA that comes twice
        has its packets received in their order there). A batch of runs, on average two
        packets or more per usable SA, goes through `open_groups` instead."""
        lookup = self.stack.sadb.lookup_esp
        found: dict[bytes, SecurityAssociation | None] = {}
        usable: list[tuple[SecurityAssociation, bytes]] = []
        repeated = False
        for esp in packets:
            if len(esp) >= 8:
                spi = esp[_SPI]
                if spi in found:
                    sa = found[spi]
                    repeated = True
                else:
                    sa = found[spi] = lookup(int.from_bytes(spi, "big"), local)
                if sa is not None and sa.ready:
                    usable.append((sa, esp))
                    continue
            # A runt, an unknown SPI or a LARVAL SA: the per-packet path counts or holds
            # it (the hold checks the state under the SA's lock).
            self.inbound(esp, local, now)
        if repeated and 2 * len({id(sa) for sa, _ in usable}) <= len(usable):
            self.open_groups(_grouped_by_sa(usable), now)
        elif len(usable) > 1:
            self._open_each(usable, now)
        elif usable:
            self._open(*usable[0], now)

    def open_groups(
        self, groups: Iterable[tuple[SecurityAssociation, list[bytes]]], now: float
    ) -> None:
        """Open, check and deliver each usable SA's ESP packets of a batch, in their
        order: an SA of two or more in one `decrypt_batch` call, the SAs of one packet
        together in one `_open_each` call."""
        _by_group_size(groups, self._open_batch, self._open_each, self._open, now)

    def _open_batch(self, sa: SecurityAssociation, packets: Sequence[bytes], now: float) -> None:
        """`_open` for a run of packets of one SA, decrypted in one call."""
        ctx = self._context(sa)
        if ctx is None:
            for _ in packets:
                self.drop("dead_sa")
            return
        if ctx.tunnel and self.deliver_many is not None:
            self._open_tunnel_batch(sa, ctx, packets, self.deliver_many, now)
            return
        with ctx.lock:
            results = ctx.esp.decrypt_batch(packets)
        delivered = self._opened(sa, ctx, results, now)
        if delivered:
            with self._lock:
                self.delivered += delivered

    def _open_each(self, singles: Sequence[tuple[SecurityAssociation, bytes]], now: float) -> None:
        """`_open` for packets of several SAs (a batch spread over many SAs; an SA may
        come more than once, its packets in their order), the compiled ones received in
        one `open_many` call on their blocks, under their locks; the others, of SAs on
        the Python path, by `_open` after. A packet inside its SA's box takes the box's
        kept verdict here (what `_inbound_refusal` gives it, without the call); any other
        goes through `_inbound_refusal`."""
        opening: list[tuple[SecurityAssociation, EspContext]] = []
        handles: list[object] = []
        chosen: list[bytes] = []
        locks: list[threading.Lock] = []
        later: list[tuple[SecurityAssociation, bytes]] = []
        for sa, esp in singles:
            ctx = sa.transform
            if type(ctx) is not EspContext or ctx.natt is not sa.natt_rem:
                ctx = self._context(sa)
                if ctx is None:
                    self.drop("dead_sa")
                    continue
            handle = ctx.handle
            if handle is None:
                later.append((sa, esp))
                continue
            opening.append((sa, ctx))
            handles.append(handle)
            chosen.append(esp)
            locks.append(ctx.lock)
        if opening:
            self._open_held(opening, handles, locks, chosen, None, now)
        for sa, esp in later:
            self._open(sa, esp, now)

    def _open_spread(self, run: EspRun, local: bytes, now: float) -> bool:
        """`inbound_batch` for a receive's datagrams spread over several SAs, where they
        lie in its buffer: the packets of ready tunnel SAs with compiled AES-GCM opened in
        one `open_many` call without a copy each (as `_open_each` opens them), the
        others copied out and given to `inbound` after, in order (what each does is
        decided once per SPI, so an SA's packets keep their order). False, with nothing
        done, when a datagram is not ESP (IKE or a keepalive on the same port): the
        caller then takes the datagrams one by one."""
        spis = esp_spis(run)
        if spis is None:
            return False
        buffer = run.buffer
        lookup = self.stack.sadb.lookup_esp
        found: dict[int, tuple[SecurityAssociation, EspContext] | None] = {}
        opening: list[tuple[SecurityAssociation, EspContext]] = []
        handles: list[object] = []
        starts: list[int] = []
        lengths: list[int] = []
        locks: list[threading.Lock] = []
        later: list[tuple[int, int]] = []
        for start, length, spi in zip(run.offsets(), run.lengths, spis, strict=True):
            if spi in found:
                pair = found[spi]
            else:
                pair = None
                sa = lookup(spi, local)
                if sa is not None and sa.ready:
                    made = sa.transform
                    usable: EspContext | None
                    if type(made) is EspContext and made.natt is sa.natt_rem:
                        usable = made
                    else:
                        usable = self._context(sa)
                    if usable is not None and usable.handle is not None and usable.tunnel:
                        pair = (sa, usable)
                found[spi] = pair
            if pair is None:
                later.append((start, length))
                continue
            ctx = pair[1]
            opening.append(pair)
            handles.append(ctx.handle)
            starts.append(start)
            lengths.append(length)
            locks.append(ctx.lock)
        if opening:
            self._open_held(opening, handles, locks, [], (buffer, starts, lengths), now)
        for start, length in later:
            # An unknown SPI, a LARVAL SA, Python's or a transport SA: the per-packet path.
            self.inbound(bytes(buffer[start : start + length]), local, now)
        return True

    def _open_held(
        self,
        opening: list[tuple[SecurityAssociation, EspContext]],
        handles: list[object],
        locks: list[threading.Lock],
        packets: list[bytes],
        at: tuple[BytesLike, list[int], list[int]] | None,
        now: float,
    ) -> None:
        """`open_many` of `opening`'s packets (`packets`, or where `at` says they lie)
        under their SAs' locks, then `_opened_each`."""
        # A box changed from here on may have been another when its packets were flagged.
        since = next(_BOX_CHANGES)
        held = _hold_all(locks)
        try:
            opened = open_boxed(handles, packets, at, self.stack.spd.generation)
        finally:
            for lock in held:
                lock.release()
        plain, offsets, status, lengths, next_headers, _, boxed = opened
        self._opened_each(opening, plain, offsets, status, lengths, next_headers, boxed, since, now)

    def _opened_each(
        self,
        opening: list[tuple[SecurityAssociation, EspContext]],
        plain: Any,
        offsets: list[int],
        status: bytes,
        lengths: list[int],
        next_headers: bytes,
        boxed: bytes,
        since: int,
        now: float,
    ) -> None:
        """Count, check and deliver what `open_boxed` received of `_open_each`'s packets:
        a tunnel's packets from where they lie in `plain`, through `deliver_many`; a
        transport SA's, rebuilt, each on its own. A tunnel's packet `boxed` flags (inside
        its SA's box as the block kept it, at the SPD's generation) passes if the box has
        not changed since `since` (a `_BOX_CHANGES` number taken before the opening: an
        earlier packet's check, or another thread, may have made it again) and the SA
        still has the inner selectors the box was made from; any other takes
        `_inbound_refusal`, which makes the box again where it is stale."""
        writer = self.stack.esp_state
        refusal_of = self._inbound_refusal
        view = memoryview(plain)
        starts: list[int] = []
        kept: list[int] = []
        rebuilt: list[bytes] = []
        done: list[tuple[SecurityAssociation, int]] = []
        counted: list[SecurityAssociation] = []  # counted by the call (boxed)
        noticed: list[SecurityAssociation] = []
        for k, (sa, ctx) in enumerate(opening):
            verdict = status[k]
            next_header = next_headers[k]
            if verdict:
                self.drop(OPEN_COUNTERS[verdict])
            elif next_header != IPPROTO_NONE:  # a dummy packet is discarded, not counted
                start = offsets[k]
                length = lengths[k]
                if not ctx.tunnel:
                    packet = _transport_packet(sa, next_header, bytes(view[start : start + length]))
                    refused = refusal_of(sa, ctx, packet)
                    if refused is not None:
                        self.drop(refused)
                    else:
                        done.append((sa, len(packet)))
                        rebuilt.append(packet)
                # `_inbound_refusal`'s IPv4 box check, made in C, which also counted the
                # packet against the SA's lifetimes.
                elif (
                    boxed[k]
                    and ctx.box_made < since
                    and ctx.box_src is sa.inner_src
                    and ctx.box_dst is sa.inner_dst
                ):
                    counted.append(sa)
                    if boxed[k] & BOX_NOTICED:
                        noticed.append(sa)
                    starts.append(start)
                    kept.append(length)
                else:
                    flag = boxed[k]
                    refused = refusal_of(sa, ctx, bytes(view[start : start + length]))
                    if refused is not None:
                        self.drop(refused)
                        if flag:
                            # Counted by the call against a box that no longer holds: the
                            # count is taken back. A notice it made is kept (the wheel's
                            # pass finds nothing due, and sets the notice again).
                            uncount(sa, length)
                            if flag & BOX_NOTICED:
                                noticed.append(sa)
                    else:
                        if flag:
                            counted.append(sa)
                            if flag & BOX_NOTICED:
                                noticed.append(sa)
                        else:
                            done.append((sa, length))
                        starts.append(start)
                        kept.append(length)
            if writer is not None:
                received = ctx.handle.packets_in
                if received >= ctx.checkpoint_at:
                    ctx.checkpoint_at = received + writer.checkpoint_packets
                    writer.checkpoint_due()
        account_each(done, now)
        if counted or noticed:
            counted_each(counted, noticed, now)
        if starts:
            deliver_many = self.deliver_many
            if deliver_many is not None:
                with self._lock:
                    self.delivered += len(starts)
                deliver_many(plain, starts, kept)
            else:
                self._deliver_all(
                    [bytes(view[a : a + n]) for a, n in zip(starts, kept, strict=True)]
                )
        if rebuilt:
            self._deliver_all(rebuilt)

    def _deliver_all(self, packets: list[bytes]) -> None:
        """Count and deliver cleartext packets of several SAs: through `deliver_many` at
        once (from one buffer, as a decrypted run), or each to `deliver`."""
        with self._lock:
            self.delivered += len(packets)
        deliver_many = self.deliver_many
        if deliver_many is None:
            for packet in packets:
                self.deliver(packet)
            return
        lengths = [len(p) for p in packets]
        starts = list(accumulate(lengths, initial=0))
        starts.pop()
        deliver_many(b"".join(packets), starts, lengths)

    def _opened(
        self, sa: SecurityAssociation, ctx: EspContext, results: list[EspDecrypted], now: float
    ) -> int:
        """Count, check and deliver what a batch call opened of one SA's packets; the
        number delivered."""
        writer = self.stack.esp_state
        tunnel = ctx.tunnel
        # The inbound policy check looks at the flow only: asked once per flow of the run.
        refusals: dict[bytes, str | None] = {}
        deliver, refusal_of = self.deliver, self._inbound_refusal
        delivered = nbytes = 0
        for result in results:
            if isinstance(result, EspDropError):
                if not isinstance(result, EspDummyPacket):
                    self.drop(result.counter)
                continue
            next_header, payload = result
            packet = payload if tunnel else _transport_packet(sa, next_header, payload)
            key = _flow_key(packet)
            if key is None:
                refused = refusal_of(sa, ctx, packet)
            elif key in refusals:
                refused = refusals[key]
            else:
                refused = refusals[key] = refusal_of(sa, ctx, packet)
            if refused is not None:
                self.drop(refused)
                continue
            nbytes += len(packet)
            delivered += 1
            deliver(packet)
        sa.account_run(nbytes, delivered, now)
        if writer is not None and ctx.esp.packets_in >= ctx.checkpoint_at:
            ctx.checkpoint_at = ctx.esp.packets_in + writer.checkpoint_packets
            writer.checkpoint_due()
        return delivered

    def _open_tunnel_batch(
        self,
        sa: SecurityAssociation,
        ctx: EspContext,
        packets: Sequence[bytes],
        deliver_many: Callable[[bytes, list[int], list[int]], None],
        now: float,
    ) -> None:
        """`_open_batch` of a tunnel-mode run whose cleartext packets stay in the
        plaintext buffer of the decryption and are delivered from there, all at once."""
        with ctx.lock:
            plain, spans = ctx.esp.decrypt_spans(packets)
        refusals: dict[bytes, str | None] = {}
        refusal_of = self._inbound_refusal
        starts: list[int] = []
        lengths: list[int] = []
        # The last IPv4 flow looked at (protocol; addresses and ports) and its verdict:
        # a packet of the same flow, the usual case, is compared in place, not keyed.
        last_proto, last_tail, last_refused = -1, b"", None
        for span in spans:
            if isinstance(span, EspDropError):
                if not isinstance(span, EspDummyPacket):
                    self.drop(span.counter)
                continue
            _, start, length = span
            if (
                length >= 24
                and plain[start] == 0x45
                and plain[start + 9] == last_proto
                and not (plain[start + 6] & 0x3F or plain[start + 7])
                and plain.startswith(last_tail, start + 12)
            ):
                refused = last_refused
            else:
                key = _flow_key_at(plain, start, length)
                if key is not None and key in refusals:
                    refused = refusals[key]
                else:
                    refused = refusal_of(sa, ctx, plain[start : start + length])
                    if key is not None:
                        refusals[key] = refused
                if key is not None and plain[start] == 0x45:
                    last_proto, last_tail, last_refused = key[0], key[1:], refused
            if refused is not None:
                self.drop(refused)
                continue
            starts.append(start)
            lengths.append(length)
        sa.account_run(sum(lengths), len(lengths), now)
        writer = self.stack.esp_state
        if writer is not None and ctx.esp.packets_in >= ctx.checkpoint_at:
            ctx.checkpoint_at = ctx.esp.packets_in + writer.checkpoint_packets
            writer.checkpoint_due()
        if starts:
            with self._lock:
                self.delivered += len(starts)
            deliver_many(plain, starts, lengths)

    def _inbound_released(self, sa: SecurityAssociation, esp: bytes) -> None:
        self._open(sa, esp, sa.lastuse or sa.addtime)

    def _open(self, sa: SecurityAssociation, esp: bytes, now: float) -> None:
        ctx = self._context(sa)
        if ctx is None:
            self.drop("dead_sa")
            return
        try:
            with ctx.lock:
                next_header, payload = ctx.esp.decrypt(esp)
        except EspDummyPacket:
            return  # RFC 4303 §2.6: authenticated traffic-flow padding, discarded
        except EspDropError as e:
            self.drop(e.counter)
            return
        writer = self.stack.esp_state
        if writer is not None and ctx.esp.packets_in >= ctx.checkpoint_at:
            ctx.checkpoint_at = ctx.esp.packets_in + writer.checkpoint_packets
            writer.checkpoint_due()
        packet = payload if ctx.tunnel else _transport_packet(sa, next_header, payload)
        refused = self._inbound_refusal(sa, ctx, packet)
        if refused is not None:
            self.drop(refused)
            return
        sa.account(len(packet), now)
        with self._lock:
            self.delivered += 1
        self.deliver(packet)

    def _inbound_refusal(
        self, sa: SecurityAssociation, ctx: EspContext, packet: bytes
    ) -> str | None:
        """RFC 4301 §5.2 step 4: the inner packet must be one the SA was made for.

        None if it is, else the counter to drop it under (`_checked_refusal` says how it
        is decided). A packet inside the SA's box, its first pair of inner selectors,
        takes the verdict the SA's context keeps for the box, if there is one: one
        generation compare, two identity compares and the integer address check. The
        verdict is made again when the SPD's generation moves or UPDATE gives the SA
        other inner selectors (`EspContext.set_memo`, which gives a compiled SA's block
        the box as well); the rest of what the check reads of the SA (its outer
        addresses, the table's key) is fixed for the SA's life. Any other packet takes
        the full check.
        """
        memo = ctx.policy_memo
        if (
            memo[0] != self.stack.spd.generation
            or memo[1] is not sa.inner_src
            or memo[2] is not sa.inner_dst
        ):
            memo = self._box_memo(sa)
            ctx.set_memo(memo)
        _, _, _, version, src_net, src_shift, dst_net, dst_shift, refused = memo
        if version == 4 and (
            len(packet) >= 20
            and packet[0] == 0x45
            and int.from_bytes(packet[12:16], "big") >> src_shift == src_net
            and int.from_bytes(packet[16:20], "big") >> dst_shift == dst_net
        ):
            return refused
        if version == 6 and (
            len(packet) >= 40
            and packet[0] >> 4 == 6
            and packet[6] not in _IPV6_WALKED
            and int.from_bytes(packet[8:24], "big") >> src_shift == src_net
            and int.from_bytes(packet[24:40], "big") >> dst_shift == dst_net
        ):
            return refused
        return self._checked_refusal(sa, ctx, packet)

    def _box_memo(self, sa: SecurityAssociation) -> _BoxMemo:
        """The verdict every packet in the SA's box gets, with what it was made from.

        The box is the SA's first pair of inner selectors (a missing one: every address
        of the other's family), any protocol, ports and ICMP type. Inside it the inner
        addresses pass, so a packet's verdict is `_policy_refusal` of the policy the SPD
        finds for it; `Spd.answers_within` names the policies it may find. If they all
        (and no policy, if that may be found) give one verdict, it is kept; else the
        memo keeps version 0, which no packet matches. The generation is read first: a
        change to the SPD during the walk moves it on, and the memo is not used again.
        """
        generation = self.stack.spd.generation
        src_ext, dst_ext = sa.inner_src, sa.inner_dst
        src, dst = _prefix(src_ext), _prefix(dst_ext)
        version = src[2] if src is not None else dst[2] if dst is not None else 0
        if dst is not None and dst[2] != version:
            version = 0  # a box of two families holds no packet
        if version == 0:
            return (generation, src_ext, dst_ext, 0, 0, 0, 0, 0, None)
        network = IPv4Network if version == 4 else IPv6Network
        bits = 32 if version == 4 else 128
        src_net, src_shift = (src[0], src[1]) if src is not None else (0, bits)
        dst_net, dst_shift = (dst[0], dst[1]) if dst is not None else (0, bits)
        answers = self.stack.spd.answers_within(
            Direction.IN,
            network((dst_net << dst_shift, bits - dst_shift)),
            network((src_net << src_shift, bits - src_shift)),
        )
        if answers is not None:
            policies, none_found = answers
            named = src_ext is not None and dst_ext is not None
            verdicts = {_policy_refusal(sa, p, named) for p in policies}
            if none_found:
                verdicts.add(_policy_refusal(sa, None, named))
            if len(verdicts) == 1:
                (refused,) = verdicts
                return (generation, src_ext, dst_ext, version, src_net, src_shift, dst_net,
                        dst_shift, refused)  # fmt: skip
        return (generation, src_ext, dst_ext, 0, 0, 0, 0, 0, None)

    def _checked_refusal(
        self, sa: SecurityAssociation, ctx: EspContext, packet: bytes
    ) -> str | None:
        """`_inbound_refusal` without the box's verdict: the packet's policy from the
        SPD (through the flow cache), its inner addresses against the SA's selectors.

        A tunnel to a fixed peer takes the packet from the SA with that peer's outer
        address. A tunnel to any peer takes it from an SA with any outer address (the
        SPI chose the SA, and a peer's NAT mapping may change), but only with inner
        addresses inside that SA's own inner selectors: one road warrior cannot send
        with another's virtual address.
        """
        try:
            policy = self.stack.inbound_policies.lookup(packet)
            if sa.inner_src is not None or sa.inner_dst is not None:
                # The policy lookup read the packet's header: its addresses are there.
                version, src, dst = _addresses(packet)
                src_prefix, dst_prefix = ctx.inner_of(sa)
                if not (
                    _inside(version, src, src_prefix) and _inside(version, dst, dst_prefix)
                ) and not (
                    sa.inner_more
                    and any(
                        _inside(version, src, s) and _inside(version, dst, d)
                        for s, d in ctx.more_of(sa)
                    )
                ):
                    return "inner_outside_sa" if _to_any_peer(policy) else "inbound_policy"
        except PacketError:
            return "inbound_policy"
        return _policy_refusal(sa, policy, sa.inner_src is not None and sa.inner_dst is not None)

    # -- per-SA ESP state ---------------------------------------------------------------

    def _context(self, sa: SecurityAssociation) -> EspContext | None:
        ctx = sa.transform
        if isinstance(ctx, EspContext):
            if ctx.natt is not sa.natt_rem:
                self._follow_natt(sa, ctx)
            return ctx
        if sa.state not in (SaState.MATURE, SaState.DYING):
            return None
        # The context's lock is the SA's own: a packet takes one lock of its SA, for its
        # ESP state and then for the SADB's accounting, so that a batch spread over many
        # SAs reaches one lock per SA, not two. `_resume` takes it (its store's first
        # reservation), so the context is made under `_making`, and the SA's lock is
        # held only to read the SA and to publish the context.
        with self._making:
            ctx = sa.transform
            if isinstance(ctx, EspContext):
                return ctx
            with sa.lock:
                tunnel = bool(sa.flags & SaFlags.X_TUNNEL) or sa.inner_src is not None
                esp = EspSa(
                    sa.spi, sa.encrypt, sa.encrypt_key, sa.auth, sa.auth_key,
                    replay_window=sa.replay, mode="tunnel" if tunnel else "transport",
                    esn=bool(sa.flags & SaFlags.X_ESN), random_bytes=self.stack.random_bytes,
                )  # fmt: skip
                natt = sa.natt_rem
            port = self._port_of(natt)
            ctx = EspContext(esp, port, tunnel, natt, sa.lock)
            self._resume(sa, ctx)
            with sa.lock:
                if ctx.handle is not None:
                    # The compiled calls count the SA's packets in its block from now on.
                    sa.attach_life(sa_life(ctx.handle))
                sa.transform = ctx
        if sa.flags & SaFlags.X_NATTED and sa.flags & SaFlags.X_OUTBOUND and port != PLAIN_ESP:
            with self._lock:
                self._natted[(sa.dst, port)] = sa
        return ctx

    def _resume(self, sa: SecurityAssociation, ctx: EspContext) -> None:
        """Start the SA's numbers where ADD or UPDATE said (X_LARVAL_SEQ_STATE, after a
        restart), and with a state store send only reserved numbers from there."""
        esp = ctx.esp
        first = 1
        given = sa.seq_state
        if given is not None:
            if given.flags & SEQ_STATE_NEXT:
                first = given.next
            if given.flags & SEQ_STATE_REPLAY:
                esp.replay.restore(given.top, given.bitmap)
        writer = self.stack.esp_state
        if writer is not None:
            writer.attach(sa, esp, ctx.lock, first, bool(sa.flags & SaFlags.X_OUTBOUND))
            ctx.checkpoint_at = writer.checkpoint_packets
        elif first > 1:
            esp.start_at(first)

    def _follow_natt(self, sa: SecurityAssociation, ctx: EspContext) -> None:
        """The key manager moved the SA's NAT-T port (a NAT mapping of the peer's changed,
        RFC 7296 §2.23): ESP in UDP, and keepalives, go to the new one."""
        with sa.lock:
            natt = sa.natt_rem
            old, ctx.natt = ctx.port, natt
            ctx.port = self._port_of(natt)
        # The inbound check's box verdict reads no NAT-T address, but a peer that moved
        # is asked about afresh.
        ctx.set_memo(_NO_MEMO)
        with self._lock:
            if self._natted.get((sa.dst, old)) is sa:
                del self._natted[(sa.dst, old)]
                self._natted[(sa.dst, ctx.port)] = sa

    def _port_of(self, natt: SadbAddress | None) -> int:
        """The UDP port ESP goes to: the SA's NAT-T remote port, or the dataplane's own."""
        return natt.port if natt is not None and natt.port else self.default_port

    def keepalive_peers(self) -> list[tuple[bytes, int]]:
        """The (address, port) pairs NAT keepalives are owed to, while their SA lives."""
        with self._lock:
            for peer, sa in list(self._natted.items()):
                if sa.state == SaState.DEAD:
                    del self._natted[peer]
            return list(self._natted)


def _grouped_by_sa(
    items: Iterable[tuple[SecurityAssociation, bytes]],
) -> Iterable[tuple[SecurityAssociation, list[bytes]]]:
    """(SA, packet) pairs as (SA, its packets), each SA's in their order, the SAs in the
    order of their first packet."""
    groups: dict[int, tuple[SecurityAssociation, list[bytes]]] = {}
    for sa, packet in items:
        group = groups.get(id(sa))
        if group is None:
            groups[id(sa)] = (sa, [packet])
        else:
            group[1].append(packet)
    return groups.values()


def _by_group_size(
    groups: Iterable[tuple[SecurityAssociation, list[bytes]]],
    many: Callable[[SecurityAssociation, list[bytes], float], None],
    each: Callable[[list[tuple[SecurityAssociation, bytes]], float], None],
    one: Callable[[SecurityAssociation, bytes, float], None],
    now: float,
) -> None:
    """Hand each SA's packets of a batch on by how many there are: two or more to `many`
    (one batch call for the SA), the single packets of several SAs to `each` at once (one
    call for them all), and a lone single packet to `one` (the per-packet path, without a
    batch call's set-up)."""
    singles: list[tuple[SecurityAssociation, bytes]] = []
    for sa, packets in groups:
        if len(packets) > 1:
            many(sa, packets, now)
        elif packets:
            singles.append((sa, packets[0]))
    if len(singles) > 1:
        each(singles, now)
    elif singles:
        one(*singles[0], now)


def _tunnel_items(packets: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Tunnel-mode packets with the Next Header each is sent under (RFC 4303 §2.6)."""
    return [(p, IPPROTO_IPV4 if p[0] >> 4 == 4 else IPPROTO_IPV6) for p in packets]


def _hold_all(locks: list[threading.Lock]) -> list[threading.Lock]:
    """Take every lock of `locks` (a lock may come more than once) without waiting in a
    cycle with another thread: each is tried without waiting, in the order given; if one
    is busy (or came twice), those taken are let go and the distinct locks are taken in
    one order for every thread (by id), waiting: two threads that each take several
    never wait on each other in a cycle. The locks taken, each once, to release."""
    held = 0
    for lock in locks:
        if not lock.acquire(False):
            break
        held += 1
    else:
        return locks
    for lock in locks[:held]:
        lock.release()
    ordered = sorted(set(locks), key=id)
    for lock in ordered:
        lock.acquire()
    return ordered


def _flow_key(packet: bytes) -> bytes | None:
    """What the SPD and the inbound check read of a packet (protocol, addresses, ports or
    ICMP type), as bytes: packets with equal keys get the same verdict. None for a
    packet the batch entries leave to the per-packet path (options, fragments, IPv6
    extension headers, anything short or not IP)."""
    if len(packet) >= 24 and packet[0] == 0x45:
        if packet[6] & 0x3F or packet[7]:  # a fragment: only the first has ports
            return None
        return packet[9:10] + packet[12:24]
    if len(packet) >= 44 and packet[0] >> 4 == 6 and packet[6] not in _IPV6_EXTENSIONS:
        return packet[6:7] + packet[8:44]
    return None


def _flow_key_at(buf: bytes, start: int, length: int) -> bytes | None:
    """`_flow_key` of the packet of `length` bytes at `start` of `buf`."""
    if length >= 24 and buf[start] == 0x45:
        if buf[start + 6] & 0x3F or buf[start + 7]:
            return None
        return buf[start + 9 : start + 10] + buf[start + 12 : start + 24]
    if length >= 44 and buf[start] >> 4 == 6 and buf[start + 6] not in _IPV6_EXTENSIONS:
        return buf[start + 6 : start + 7] + buf[start + 8 : start + 44]
    return None


def _policy_refusal(sa: SecurityAssociation, policy: Policy | None, named: bool) -> str | None:
    """The inbound check's verdict for a packet whose inner addresses passed the SA's
    selectors, by the policy the SPD found for it; `named`: the SA names both inner
    selectors."""
    if policy is None or policy.action is not Action.PROTECT:
        return "inbound_policy"
    tunnel = policy.tunnel
    if tunnel is None:
        return None
    if tunnel.any_remote:
        if not named:
            return "inner_outside_sa"  # an SA that names no inner addresses owns none
        return None if tunnel.local_packed == sa.dst else "inbound_policy"
    if tunnel.remote_packed == sa.src and tunnel.local_packed == sa.dst:
        return None
    return "inbound_policy"


def _to_any_peer(policy: Policy | None) -> bool:
    tunnel = policy.tunnel if policy is not None else None
    return tunnel is not None and tunnel.any_remote


def _prefix(ext: SadbAddress | None) -> _Prefix | None:
    """The prefix an inner address extension names, for `_inside`; None for none."""
    if ext is None:
        return None
    shift = ext.addr.max_prefixlen - inner_prefixlen(ext)
    return int(ext.addr) >> shift, shift, ext.addr.version


def _addresses(packet: bytes) -> tuple[int, int, int]:
    """(IP version, source, destination) of an IP packet whose header has been read."""
    if packet[0] >> 4 == 4:
        return 4, int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big")
    return 6, int.from_bytes(packet[8:24], "big"), int.from_bytes(packet[24:40], "big")


def _inside(version: int, address: int, prefix: _Prefix | None) -> bool:
    """Whether an address of IP version `version` lies in `prefix` (None: any)."""
    if prefix is None:
        return True
    network, shift, prefix_version = prefix
    return version == prefix_version and address >> shift == network


def _transport_payload(packet: bytes) -> tuple[bytes, int]:
    """RFC 4303 §3.1.1: what follows the IP header, and its protocol."""
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < ihl or ihl < 20:
            raise PacketError("truncated IPv4 header")
        return packet[ihl:], packet[9]
    if version == 6 and len(packet) >= 40:
        return packet[40:], packet[6]
    raise PacketError("not an IP packet")


def _transport_packet(sa: SecurityAssociation, next_header: int, payload: bytes) -> bytes:
    """The IP packet a transport-mode payload came in: the SA's addresses around it."""
    from larval.esp.ip import IPV4_HEADER, IPV6_HEADER, internet_checksum

    if len(sa.src) == 4:
        header = bytearray(
            IPV4_HEADER.pack(0x45, 0, 20 + len(payload), 0, 0x4000, 64, next_header, 0,
                             sa.src, sa.dst)
        )  # fmt: skip
        header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
        return bytes(header) + payload
    return IPV6_HEADER.pack(6 << 28, len(payload), next_header, 64, sa.src, sa.dst) + payload


def inbound_udp_run(
    path: PacketPath,
    run: EspRun,
    senders: Sequence[tuple[int, bytes, int]],
    local: bytes,
    now: float,
) -> None:
    """`PacketPath.inbound_udp_batch` for datagrams that lie back to back in one buffer
    (`run`: what a wake-up's receives of UDP GRO batches brought), each receive's
    datagrams from one sender: `senders` holds (number of datagrams, packed address,
    port) per receive, in order.

    When every datagram is ESP of one SPI whose SA takes the batch path of a tunnel
    with `deliver_many`, the run goes to the decryption as it lies, without a copy per
    datagram; when every datagram is ESP of several SPIs, `PacketPath._open_spread`
    opens those of compiled tunnel SAs where they lie; otherwise each datagram is copied
    out and `inbound_udp_batch` takes them. Either way the deliveries, drops and counters
    are those of `inbound_udp_batch`."""
    deliver_many = path.deliver_many
    if len(run) > 1 and deliver_many is not None:
        spi = one_spi(run)
        if spi is not None:
            # What `inbound_batch` does for a batch of one ready SA's packets.
            sa = path.stack.sadb.lookup_esp(spi, local)
            if sa is not None and sa.ready:
                ctx = path._context(sa)
                if ctx is not None and ctx.tunnel:
                    path._open_tunnel_batch(sa, ctx, run, deliver_many, now)
                    return
        elif path._open_spread(run, local, now):
            return
    datagrams: list[tuple[bytes, bytes, int]] = []
    packets = iter(run)
    for count, peer, port in senders:
        datagrams.extend((next(packets), peer, port) for _ in range(count))
    path.inbound_udp_batch(datagrams, local, now)
