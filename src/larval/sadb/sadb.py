"""The SADB: every PF_KEY operation on security associations, message in, replies out.

Each operation takes a decoded `PfkeyMessage` and returns the `PfkeyReply` list to send,
each with its audience, so the stack's PF_KEY socket only moves bytes (RFC 2367 §3.1).
The dataplane meets the SADB through `lookup_inbound`, `hold_inbound`, `lookup_outbound`,
`lookup_outbound_inner` (tunnels to any peer) and `hold_outbound`; held packets come back
out through the release callbacks, in the thread that made the SA usable.

Semantics follow illumos ``usr/src/uts/common/inet/ip/sadb.c``: LARVAL SAs from GETSPI
made MATURE by UPDATE, a larval lifetime, EXPIRE on soft and hard lifetimes, errors
answered with an errno and an SADB_X_DIAGNOSTIC code.
"""

from __future__ import annotations

import enum
import errno
import functools
import ipaddress
import struct
from collections.abc import Callable, Hashable, Iterator
from typing import NamedTuple

from larval.crypto.algorithms import AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS
from larval.crypto.randomness import RandomBytes, random_int, system_random
from larval.pfkey import (
    Diagnostic,
    Extension,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbAlg,
    SadbKey,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbSupported,
    SadbXEdump,
    SadbXInnerPairs,
    SadbXKmc,
    SadbXPair,
    SadbXReplayCtr,
    SadbXSeqState,
    SaFlags,
    SaState,
    SaType,
)
from larval.sadb.acquire import (
    DEFAULT_ACQUIRE_HOLD_LIMIT,
    DEFAULT_ACQUIRE_TIMEOUT,
    AcquireRecord,
    AcquireTable,
)
from larval.sadb.counters import SadbCounters
from larval.sadb.errors import SadbError
from larval.sadb.expiry import ExpiryWheel, next_deadline
from larval.sadb.heap import GcFreezer
from larval.sadb.sa import (
    DEFAULT_HOLD_LIMIT,
    HoldResult,
    Lifetime,
    Packet,
    ReleaseFn,
    SaEvent,
    SecurityAssociation,
    next_state,
)
from larval.sadb.table import SaTable

#: Seconds a LARVAL SA lives without an UPDATE (illumos' larval timeout).
DEFAULT_LARVAL_LIFETIME = 90

#: RFC 4303 §2.1: SPIs 1-255 are reserved by IANA and 0 is for local use.
MIN_SPI = 256
MAX_SPI = 0xFFFFFFFF

#: SPIs drawn from the random source at once for the usual range [MIN_SPI, MAX_SPI]: one
#: call of the source (a system call for the OS's CSPRNG) for this many GETSPIs.
SPI_BATCH = 256
_SPI_WORDS = struct.Struct(f">{SPI_BATCH}I")
_SPI_SPAN = MAX_SPI - MIN_SPI  # random_int's span for the usual range: 4 bytes a draw

#: A request's extensions by type.
Exts = dict[int, Extension]

#: The SA types with a table. AH (RFC 4302) is not implemented: its requests are refused
#: as illumos keysock refuses a type with no consumer module, EINVAL and UNKNOWN_SATYPE.
SUPPORTED_SATYPES: tuple[int, ...] = (SaType.ESP,)


class Audience(enum.Enum):
    """Who a reply goes to (RFC 2367 §3.1)."""

    SENDER = "sender"  # the socket that sent the request
    ALL = "all"  # every PF_KEY socket (ADD, UPDATE, DELETE, FLUSH; keys removed)
    REGISTERED = "registered"  # sockets registered for the SA type, either way (EXPIRE)
    REGISTERED_PLAIN = "registered-plain"  # RFC 2367 REGISTER only (a regular ACQUIRE)
    REGISTERED_EXTENDED = "registered-extended"  # illumos extended REGISTER (extended ACQUIRE)


class PfkeyReply(NamedTuple):
    """A PF_KEY message for the socket layer to send, and to whom."""

    message: PfkeyMessage
    audience: Audience


# One bytes object per packed address: the many SAs to a few peers share them (about
# 70 bytes less per SA), and the inbound index compares its keys' destinations against
# the same few objects, which stay in cache. Bounded like the decoder's address cache.
_PACKED: dict[bytes, bytes] = {}
_PACKED_MAX = 65536


def _packed(ext: SadbAddress) -> bytes:
    raw = ext.packed()
    shared = _PACKED.get(raw)
    if shared is None:
        if len(_PACKED) >= _PACKED_MAX:
            _PACKED.clear()
        shared = _PACKED[raw] = raw
    return shared


@functools.lru_cache(maxsize=4096)
def _address_ext(ext_type: int, packed: bytes, port: int, proto: int) -> SadbAddress:
    """The address extension of a reply, shared: SAs have few distinct peers."""
    return SadbAddress(ext_type, ipaddress.ip_address(packed), port, proto)


#: Extensions that GETSPI, ADD and UPDATE may carry beyond the ones they need.
_OPTIONAL_EXTS = frozenset(
    int(t)  # plain ints: tested against the types of every GETSPI, ADD and UPDATE
    for t in (
        ExtType.X_KM_COOKIE,
        ExtType.X_REPLAY_VALUE,
        ExtType.X_PAIR,
        ExtType.X_LIFETIME_IDLE,
        ExtType.X_ADDRESS_NATT_LOC,
        ExtType.X_ADDRESS_NATT_REM,
        ExtType.ADDRESS_PROXY,
        ExtType.X_ADDRESS_INNER_DST,
        ExtType.X_LARVAL_INNER_PAIRS,
        ExtType.X_LARVAL_SEQ_STATE,
    )
)


#: Extensions read as lifetimes by `Sadb._lifetimes`.
_LIFETIME_EXTS = frozenset(
    {int(ExtType.LIFETIME_SOFT), int(ExtType.LIFETIME_HARD), int(ExtType.X_LIFETIME_IDLE)}
)

# Members bound to plain names for the per-request paths: each `SaState.X` or
# `ExtType.X` there is an attribute lookup on the enum class, about 0.2 us on 3.11.
_LARVAL, _MATURE, _DYING, _DEAD = SaState.LARVAL, SaState.MATURE, SaState.DYING, SaState.DEAD
_KEY_AUTH, _KEY_ENCRYPT = int(ExtType.KEY_AUTH), int(ExtType.KEY_ENCRYPT)
_SEQ_STATE = int(ExtType.X_LARVAL_SEQ_STATE)
_EXT_SA, _EXT_SPIRANGE = int(ExtType.SA), int(ExtType.SPIRANGE)
_EXT_SRC, _EXT_DST = int(ExtType.ADDRESS_SRC), int(ExtType.ADDRESS_DST)
_UNSPEC, _ESP = int(SaType.UNSPEC), int(SaType.ESP)
_GETSPI = SadbMsgType.GETSPI
_UPDATE_KEYS, _UPDATE_LIFETIMES = SaEvent.UPDATE_KEYS, SaEvent.UPDATE_LIFETIMES


def _lifetime_of(ext: SadbLifetime | None) -> Lifetime | None:
    if ext is None:
        return None
    return Lifetime(ext.allocations, ext.bytes, ext.addtime, ext.usetime)


#: (field, soft-above-hard diagnostic) in the order illumos checks them.
_HSERR = (
    ("allocations", Diagnostic.ALLOC_HSERR),
    ("bytes", Diagnostic.BYTES_HSERR),
    ("addtime", Diagnostic.ADDTIME_HSERR),
    ("usetime", Diagnostic.USETIME_HSERR),
)


def _check_soft_below_hard(soft: Lifetime | None, hard: Lifetime | None) -> None:
    """RFC 2367 §2.3.4: a soft limit past its hard limit is refused (0 is no limit)."""
    if soft is None or hard is None:
        return
    for field, diag in _HSERR:
        s, h = getattr(soft, field), getattr(hard, field)
        if s and h and s > h:
            raise SadbError(errno.EINVAL, diag, f"soft {field} {s} is above hard {field} {h}")


def _check_idle(idle: Lifetime, soft: Lifetime | None, hard: Lifetime | None) -> None:
    """An idle time (SADB_X_EXT_LIFETIME_IDLE) past the soft or the hard one is refused,
    as illumos sadb_hardsoftchk() does: only when both of those are given, and with the
    add-time or use-time diagnostic."""
    if soft is None or hard is None:
        return
    for name, limit in (("soft", soft), ("hard", hard)):
        for field, diag in _HSERR[2:]:  # addtime, usetime: what an idle lifetime holds
            i, other = getattr(idle, field), getattr(limit, field)
            if i and other and i > other:
                raise SadbError(
                    errno.EINVAL, diag, f"idle {field} {i} is above {name} {field} {other}"
                )


def _unsupported_satype(satype: int) -> SadbError:
    return SadbError(
        errno.EINVAL,
        Diagnostic.UNKNOWN_SATYPE,
        f"SA type {SaType(satype).name} is not supported: larval implements ESP only",
    )


class Sadb:
    """The security association database of one stack."""

    def __init__(
        self,
        *,
        on_inbound_release: ReleaseFn | None = None,
        on_outbound_release: ReleaseFn | None = None,
        larval_lifetime: int = DEFAULT_LARVAL_LIFETIME,
        hold_limit: int = DEFAULT_HOLD_LIMIT,
        acquire_hold_limit: int = DEFAULT_ACQUIRE_HOLD_LIMIT,
        acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT,
        random_bytes: RandomBytes = system_random,
        gc_freezer: GcFreezer | None = None,
    ) -> None:
        """`gc_freezer`: keeps the cyclic collector off the SAs as the SADB grows
        (`larval.sadb.heap`); None leaves the collector alone."""
        self.counters = SadbCounters()
        # Every SA's next lifetime deadline, for `age` (`larval.sadb.expiry`).
        self._expiry = ExpiryWheel()
        self._tables: dict[int, SaTable] = {
            int(t): SaTable(expiry=self._expiry) for t in SUPPORTED_SATYPES
        }
        # `lookup_inbound` for ESP, the dataplane's case, called once per packet: the
        # table's own lookup, with no call around it (`SaTable.get`: one dict lookup by
        # SPI and a check of the destination, no lock, no tuple).
        self.lookup_esp: Callable[[int, bytes], SecurityAssociation | None] = self._tables[
            SaType.ESP
        ].get
        # The ESP table, whose `generation` says when a remembered lookup may be stale.
        self.esp_table: SaTable = self._tables[SaType.ESP]
        self._acquires = AcquireTable(self.counters, acquire_hold_limit, acquire_timeout)
        self.on_inbound_release = on_inbound_release or _discard
        self.on_outbound_release = on_outbound_release or _discard
        # Told of every SA that leaves the tables (DELETE, FLUSH, expiry): the stack's
        # state store forgets its sequence numbers.
        self.on_removed: Callable[[SecurityAssociation], None] | None = None
        # Told of every SA that got its keys (ADD, or UPDATE of a LARVAL SA), before
        # packets waiting for it are released: the dataplane prepares it.
        self.on_keyed: Callable[[SecurityAssociation], None] | None = None
        self.larval_lifetime = larval_lifetime
        self._larval_hard = Lifetime(addtime=larval_lifetime)
        self.hold_limit = hold_limit
        self._random = random_bytes  # SPIs are drawn from it
        # SPIs of the usual range drawn ahead, the next one last (`_random_spi`).
        self._spi_pool: list[int] = []
        self.gc_freezer = gc_freezer
        self._handlers: dict[int, Callable[[PfkeyMessage, Exts, float], list[PfkeyReply]]] = {
            SadbMsgType.GETSPI: self._getspi,
            SadbMsgType.UPDATE: self._update,
            SadbMsgType.ADD: self._add,
            SadbMsgType.DELETE: self._delete,
            SadbMsgType.GET: self._get,
            SadbMsgType.ACQUIRE: self._acquire,
            SadbMsgType.REGISTER: self._register,
            SadbMsgType.FLUSH: self._flush,
            SadbMsgType.DUMP: self._dump,
            SadbMsgType.X_UPDATEPAIR: self._updatepair,
            SadbMsgType.X_DELPAIR: self._delpair,
            SadbMsgType.X_DELPAIR_STATE: self._delpair_state,
        }

    # -- the PF_KEY face ----------------------------------------------------------------

    def handle(self, msg: PfkeyMessage, now: float) -> list[PfkeyReply]:
        """Carry out one PF_KEY request; errors become an errno reply to the sender."""
        handler = self._handlers.get(msg.msg_type)
        try:
            if handler is None:
                raise SadbError(
                    errno.EOPNOTSUPP
                    if msg.msg_type <= SadbMsgType.X_DELPAIR_STATE
                    else errno.EINVAL,
                    Diagnostic.UNKNOWN_MSG,
                    f"message type {msg.msg_type} is not an SADB request",
                )
            # One pass over the extensions; decode refused duplicates (RFC 2367 §2.3).
            return handler(msg, {e.ext_type: e for e in reversed(msg.extensions)}, now)
        except SadbError as e:
            return [self.error_reply(msg, e)]

    @staticmethod
    def error_reply(msg: PfkeyMessage, error: SadbError) -> PfkeyReply:
        """RFC 2367 §3.1: the request's base header with errno set, to the sender."""
        base = PfkeyMessage(
            msg.msg_type,
            msg.satype,
            seq=msg.seq,
            pid=msg.pid,
            errno=error.errno,
            diagnostic=error.diagnostic,
        )
        return PfkeyReply(base, Audience.SENDER)

    # -- the dataplane face -------------------------------------------------------------

    def lookup_inbound(
        self, spi: int, dst: bytes, satype: int = SaType.ESP
    ) -> SecurityAssociation | None:
        """The SA for an inbound packet, by (SPI, destination, protocol), in O(1).

        One dict lookup and no lock: this runs once per packet. A destination other
        than the SA's misses, as (SPI, destination) is the key.
        """
        table = self._tables.get(satype)
        return table.get(spi, dst) if table is not None else None

    def hold_inbound(self, sa: SecurityAssociation, packet: Packet) -> HoldResult:
        """Hold `packet` on `sa` if it is still LARVAL (checked under its lock)."""
        return sa.hold(packet, self.hold_limit, self.counters)

    def lookup_outbound(
        self,
        src: bytes,
        dst: bytes,
        satype: int = SaType.ESP,
        covers: Callable[[SecurityAssociation], bool] | None = None,
        inner: tuple[bytes, bytes] | None = None,
    ) -> SecurityAssociation | None:
        """The SA to protect traffic from `src` to `dst` with, if one is usable; of
        several, one that `covers` accepts, found by the `inner` addresses of a tunnelled
        packet where they are given (`SaTable.outbound`)."""
        table = self._tables.get(satype)
        return table.outbound(src, dst, covers, inner) if table is not None else None

    def lookup_outbound_inner(
        self, local: bytes, src: bytes, dst: bytes, satype: int = SaType.ESP
    ) -> SecurityAssociation | None:
        """The SA to protect an inner packet from `src` to `dst` with, sent from the local
        outer address `local` to whichever peer the SA names: for tunnels to any peer,
        whose SAs only their inner destination tells apart (`larval.sadb.inner`)."""
        table = self._tables.get(satype)
        return table.inner.lookup(local, src, dst) if table is not None else None

    def hold_outbound(
        self,
        key: Hashable,
        satype: int,
        src: bytes,
        dst: bytes,
        packet: Packet,
        now: float,
        covers: Callable[[SecurityAssociation], bool] | None = None,
        inner: tuple[bytes, bytes] | None = None,
    ) -> AcquireRecord | None:
        """Hold an outbound packet that waits for an SA; a new record means: send ACQUIRE.

        If an SA appeared since the caller looked (one `covers` accepts), the packet is
        released at once.
        """
        record = self._acquires.hold(key, satype, src, dst, packet, now)
        sa = self.lookup_outbound(src, dst, satype, covers, inner)
        if sa is not None:
            self._release_acquires(sa)
            return None
        return record

    def expire_now(self, sa: SecurityAssociation, now: float) -> list[PfkeyReply]:
        """A hard expiry the dataplane found (sequence numbers exhausted, RFC 4303 §3.3.3):
        the SA dies now and registered key managers hear of it."""
        with sa.lock:
            if sa.state == SaState.DEAD:
                return []
            sa.state = next_state(sa.state, SaEvent.HARD_EXPIRE)
            sa.drop_held(self.counters)
        self._remove(sa)
        spent = Lifetime(0, sa.bytes, int(now - sa.addtime), 0)
        return [self._expire_message(sa.satype, sa, spent, ExtType.LIFETIME_HARD)]

    def fail_acquire(self, seq: int) -> None:
        """Drop the acquire record `seq` (e.g. the ACQUIRE reached no key manager)."""
        self._acquires.fail(seq)

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    @property
    def acquire_records(self) -> int:
        return len(self._acquires)

    def all_sas(self) -> Iterator[SecurityAssociation]:
        """Every SA of every type, from a snapshot of each table (`SaTable.__iter__`):
        safe to walk from any thread while others change the tables."""
        for table in self._tables.values():
            yield from table

    # -- aging --------------------------------------------------------------------------

    def age(self, now: float) -> list[PfkeyReply]:
        """Apply lifetimes at time `now`: EXPIRE messages for what went DYING, DEAD or idle.

        Dead SAs are reaped; a LARVAL SA past its larval lifetime dies silently with its
        held packets (no key manager asked for it to be kept); timed-out acquire records
        are dropped with their packets.

        Only the SAs the expiry wheel hands over are looked at: those with a deadline up
        to `now` and those whose traffic went past a byte limit or started a use time.
        Each is evaluated as a walk of every SA would, in the order of its deadline.
        """
        replies: list[PfkeyReply] = []
        expiry = self._expiry
        taken = expiry.take(now)
        if len(taken) > 1:
            taken.sort(key=lambda sa: _order(sa, now))
        for sa in taken:
            with sa.lock:
                if sa.state == _DEAD:
                    continue  # deleted since its entry was made: already out of the table
                event, which, ext_type = self._due(sa, now)
                if event is None and which is None:
                    expiry.reschedule(sa)
                    continue
                was_larval = sa.state == _LARVAL
                if event is not None:
                    sa.state = next_state(sa.state, event)
                if sa.state == _DEAD:
                    sa.drop_held(self.counters)
                else:
                    expiry.reschedule(sa)
                if which is not None and not was_larval:
                    replies.append(self._expire_message(sa.satype, sa, which, ext_type))
            if sa.state == _DEAD:
                self._remove(sa)
        self._acquires.age(now)
        return replies

    @staticmethod
    def _due(sa: SecurityAssociation, now: float) -> tuple[SaEvent | None, Lifetime | None, int]:
        """Under the SA's lock: the event `sa` has reached, the lifetime that did it, and the
        lifetime extension type the EXPIRE carries it in."""
        hard = sa.hard
        if hard is not None and _reached(sa, hard, now):
            return SaEvent.HARD_EXPIRE, hard, ExtType.LIFETIME_HARD
        if sa.state == SaState.MATURE:
            soft = sa.soft
            if soft is not None and _reached(sa, soft, now):
                return SaEvent.SOFT_EXPIRE, soft, ExtType.LIFETIME_SOFT
        idle = sa.idle_time()
        if idle and sa.state != SaState.LARVAL:
            # illumos sadb_age_assoc: idleness is reported once per quiet spell; the key
            # manager decides what to do with an idle SA.
            last = sa.lastuse or sa.addtime
            if now - last >= idle and sa.idle_reported != last:
                sa.idle_reported = last
                return (
                    None,
                    Lifetime(addtime=sa.idle_add, usetime=sa.idle_use),
                    ExtType.X_LIFETIME_IDLE,
                )
        return None, None, 0

    def _expire_message(
        self, satype: int, sa: SecurityAssociation, which: Lifetime, ext_type: int
    ) -> PfkeyReply:
        """RFC 2367 §3.1.8: EXPIRE <base, SA, lifetime(C and S|H), address(S, D)>."""
        exts: list[Extension] = [
            self._sa_ext(sa),
            self._current_lifetime(sa),
            SadbLifetime(ext_type, which.allocations, which.bytes, which.addtime, which.usetime),
            *self._address_exts(sa),
        ]
        msg = PfkeyMessage(SadbMsgType.EXPIRE, satype, extensions=tuple(exts))
        return PfkeyReply(msg, Audience.REGISTERED)

    # -- requests -----------------------------------------------------------------------

    def _getspi(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """GETSPI <base, address(S, D), SPI range> -> <base, SA(LARVAL), address(S, D)>."""
        table = self._table(msg)
        src, dst = self._addresses(msg, ext)
        spirange = ext.get(_EXT_SPIRANGE)
        if not isinstance(spirange, SadbSpirange):
            raise SadbError(errno.EINVAL, Diagnostic.MISSING_RANGE, "GETSPI needs an SPI range")
        low, high = max(spirange.min, MIN_SPI), min(spirange.max, MAX_SPI)
        if low > high:
            raise SadbError(
                errno.EINVAL,
                Diagnostic.MALFORMED_RANGE,
                f"SPI range {spirange.min:#x}-{spirange.max:#x} holds no usable SPI",
            )
        sa = SecurityAssociation(
            0, msg.satype, _packed(src), _packed(dst), _LARVAL, now,
            src_port=src.port, dst_port=dst.port, proto=dst.proto,
        )  # fmt: skip
        sa.hard = self._larval_hard  # shared: never changed in place, replaced by UPDATE
        if len(ext) > 3:  # anything beyond SRC, DST and the SPI range
            _check_inner(ext)
            self._apply_optional(sa, msg)
        sa.spi = self._place(table, sa, low, high)
        self._grown(table)
        # illumos turns the request into the reply: its addresses, and an SA extension
        # where the SPI range was.
        reply = PfkeyMessage(
            _GETSPI,
            msg.satype,
            seq=msg.seq,
            pid=msg.pid,
            extensions=(SadbSa(sa.spi, 0, _LARVAL), src, dst),
        )
        return [PfkeyReply(reply, Audience.SENDER)]

    def _place(
        self, table: SaTable, sa: SecurityAssociation, low: int, high: int, probed: int = 0
    ) -> int:
        """Give `sa` a free SPI in [low, high] and insert it; EEXIST if the range is full.
        `probed`: random probes the caller made already, each a taken SPI."""
        # Random probes first (SPIs should not be predictable, RFC 4303 §2.1), then, for a
        # crowded small range, a walk from a random start so that a free SPI is found.
        span = high - low + 1
        for _ in range(min(span, 16) - probed):
            sa.spi = self._random_spi(low, high)
            if table.insert_if_absent(sa):
                return sa.spi
        start = self._random_spi(low, high)
        for i in range(span):
            sa.spi = low + (start - low + i) % span
            if table.insert_if_absent(sa):
                return sa.spi
        raise SadbError(errno.EEXIST, Diagnostic.NONE, f"no free SPI in {low:#x}-{high:#x}")

    def _grown(self, table: SaTable) -> None:
        """An SA was inserted into `table`: freeze the collector's view if it is time."""
        freezer = self.gc_freezer
        if freezer is not None and len(table) >= freezer.next_at:
            freezer.grown(len(table))

    def _random_spi(self, low: int, high: int) -> int:
        """A random SPI in [low, high]. For the usual range, [MIN_SPI, MAX_SPI], SPIs are
        drawn `SPI_BATCH` at a time from one call of the source, the same way and in the
        same order as `random_int` draws them one at a time (4 bytes a draw, big-endian,
        a draw past the span dropped); other ranges draw one at a time."""
        if low != MIN_SPI or high != MAX_SPI:
            return random_int(self._random, low, high)
        pool = self._spi_pool
        while True:
            try:
                return pool.pop()  # atomic: threads never take the same one
            except IndexError:
                words = _SPI_WORDS.unpack(self._random(_SPI_WORDS.size))
                pool.extend([MIN_SPI + w for w in reversed(words) if w <= _SPI_SPAN])

    def _update(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """UPDATE: a LARVAL SA gets its keys and matures; a MATURE one new lifetimes."""
        self._update_one(msg, ext, now)
        return [_stripped(msg)]

    def _update_one(self, msg: PfkeyMessage, ext: Exts, now: float) -> SecurityAssociation:
        sa = self._find(msg, ext)
        sa_ext = self._sa(msg, ext)
        _check_mature(msg, sa_ext)
        akey, ekey = ext.get(_KEY_AUTH), ext.get(_KEY_ENCRYPT)
        # The usual UPDATE (SA, addresses, keys) carries none of the optional extensions
        # nor lifetimes: their checks and their work are skipped at once.
        optional = not _OPTIONAL_EXTS.isdisjoint(ext)
        if _LIFETIME_EXTS.isdisjoint(ext):
            soft = hard = None
        else:
            soft, hard = self._lifetimes(msg, ext)
        if optional:
            _check_inner(ext)
            if _SEQ_STATE in ext and sa.transform is not None:
                raise SadbError(
                    errno.EINVAL,
                    Diagnostic.MALFORMED_SEQ_STATE,
                    f"SA {sa.spi:#x} carries traffic already: its sequence numbers cannot be set",
                )
        released = False
        with sa.lock:
            # What `InnerIndex` keys the SA by can change only if the SA or the request
            # has inner selectors (the flags alone do not index an SA).
            track_inner = optional or sa.inner_dst is not None
            inner_before = _inner_state(sa) if track_inner else None
            state = sa.state
            if akey is not None or ekey is not None:
                if state in (_MATURE, _DYING):
                    # RFC 2367 §3.1.2: the keys of a MATURE SA never change.
                    diag = Diagnostic.AKEY_PRESENT if akey is not None else Diagnostic.EKEY_PRESENT
                    raise SadbError(errno.EINVAL, diag, "keys of a MATURE SA cannot change")
                new_state = next_state(state, _UPDATE_KEYS)
                self._check_keys(msg.satype, sa_ext, akey, ekey)
                self._set_keys(sa, sa_ext, akey, ekey)
            else:
                if state == _LARVAL:
                    raise SadbError(
                        errno.EINVAL,
                        Diagnostic.MISSING_EKEY,
                        "UPDATE of a LARVAL SA must bring its keys",
                    )
                new_state = next_state(state, _UPDATE_LIFETIMES)
            was_larval = state == _LARVAL
            if soft is not None or was_larval:
                sa.soft = soft
            if hard is not None or was_larval:
                sa.hard = hard  # the larval lifetime ends with LARVAL
            if optional:
                self._apply_optional(sa, msg)
            sa.state = new_state
            if was_larval:
                self._tables[sa.satype].bump()  # a lookup may choose it now
                released = sa.mature()
            self._expiry.reschedule(sa)  # new lifetimes, or soft and idle ones now apply
            reindex = track_inner and inner_before != _inner_state(sa)
        if reindex:
            self._tables[sa.satype].reindex_inner(sa)
        if was_larval and self.on_keyed is not None:
            self.on_keyed(sa)
        if released:
            sa.release_held(self.on_inbound_release, self.counters)
        self._release_acquires(sa)
        return sa

    def _add(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """ADD <base, SA, [lifetimes], address(S, D), key(A, E)>: a MATURE SA at once."""
        table = self._table(msg)
        sa_ext = self._sa(msg, ext)
        src, dst = self._addresses(msg, ext)
        _check_mature(msg, sa_ext)
        if sa_ext.spi < MIN_SPI:
            raise SadbError(
                errno.EINVAL,
                Diagnostic.MALFORMED_SA,
                f"SPI {sa_ext.spi} is reserved (RFC 4303 §2.1)",
            )
        akey, ekey = ext.get(ExtType.KEY_AUTH), ext.get(ExtType.KEY_ENCRYPT)
        self._check_keys(msg.satype, sa_ext, akey, ekey)
        soft, hard = self._lifetimes(msg, ext)
        _check_inner(ext)
        sa = SecurityAssociation(
            sa_ext.spi, msg.satype, _packed(src), _packed(dst), SaState.MATURE, now,
            src_port=src.port, dst_port=dst.port, proto=dst.proto,
        )  # fmt: skip
        self._set_keys(sa, sa_ext, akey, ekey)
        sa.soft, sa.hard = soft, hard
        self._apply_optional(sa, msg)
        if not table.insert_if_absent(sa):
            raise SadbError(
                errno.EEXIST, Diagnostic.NONE, f"SPI {sa_ext.spi:#x} to {dst.addr} exists already"
            )
        self._grown(table)
        if self.on_keyed is not None:
            self.on_keyed(sa)
        self._release_acquires(sa)
        return [_stripped(msg)]

    def _delete(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """DELETE <base, SA(*), address(S*, D)>."""
        sa = self._find(msg, ext)
        self._kill(sa)
        return [self._all_reply(msg, sa)]

    def _get(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """GET <base, SA(*), address(S*, D)> -> the whole SA, keys included, to the sender."""
        sa = self._find(msg, ext)
        reply = PfkeyMessage(
            SadbMsgType.GET, msg.satype, seq=msg.seq, pid=msg.pid,
            extensions=self._full_exts(sa, with_keys=True),
        )  # fmt: skip
        return [PfkeyReply(reply, Audience.SENDER)]

    def _acquire(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """A key manager's ACQUIRE with errno set: it could not get the SA (RFC 2367 §3.1.6)."""
        if msg.errno == 0:
            raise SadbError(
                errno.EINVAL, Diagnostic.UNKNOWN_MSG, "only the stack originates ACQUIRE"
            )
        self._acquires.fail(msg.seq)
        return []

    def _register(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """REGISTER -> <base, supported(A, E)>: what larval's ESP implements (§3.1.7)."""
        if msg.satype != SaType.UNSPEC and msg.satype not in SUPPORTED_SATYPES:
            raise _unsupported_satype(msg.satype)
        reply = PfkeyMessage(
            SadbMsgType.REGISTER, msg.satype, seq=msg.seq, pid=msg.pid,
            extensions=supported_extensions(msg.satype),
        )  # fmt: skip
        return [PfkeyReply(reply, Audience.SENDER)]

    def _flush(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """FLUSH: every SA of the type (all types for UNSPEC) is deleted."""
        for satype in self._satypes(msg):
            for sa in self._tables[satype]:
                self._kill(sa)
        self._acquires.flush()
        reply = PfkeyMessage(SadbMsgType.FLUSH, msg.satype, seq=msg.seq, pid=msg.pid)
        return [PfkeyReply(reply, Audience.ALL)]

    def _dump(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """DUMP: one message per SA, then a lone base header to mark the end.

        With SADB_X_EXT_EDUMP only the SAs idle for longer than its timeout are listed.
        """
        edump = ext.get(ExtType.X_EDUMP)
        idle_over = edump.timeout if isinstance(edump, SadbXEdump) else None
        replies = []
        for satype in self._satypes(msg):
            for sa in self._tables[satype]:
                if idle_over is not None and now - (sa.lastuse or sa.addtime) <= idle_over:
                    continue
                with sa.lock:
                    exts = self._full_exts(sa, with_keys=True, now=now)
                dump = PfkeyMessage(
                    SadbMsgType.DUMP, satype, seq=msg.seq, pid=msg.pid, extensions=exts
                )
                replies.append(PfkeyReply(dump, Audience.SENDER))
        # illumos keysock: the end is a lone base header with seq 0.
        end = PfkeyMessage(SadbMsgType.DUMP, msg.satype, seq=0, pid=msg.pid)
        replies.append(PfkeyReply(end, Audience.SENDER))
        return replies

    def _updatepair(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """X_UPDATEPAIR: UPDATE the SA, then give its pair the same lifetimes."""
        sa = self._update_one(msg, ext, now)
        pair = self._pair_of(sa)
        if pair is not None:
            soft, hard = self._lifetimes(msg, ext)
            with pair.lock:
                if pair.state in (SaState.MATURE, SaState.DYING):
                    pair.soft = soft if soft is not None else pair.soft
                    pair.hard = hard if hard is not None else pair.hard
                    self._expiry.reschedule(pair)
        return [self._all_reply(msg, sa)]

    def _delpair(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """X_DELPAIR: DELETE the SA and the SA paired with it."""
        sa = self._find(msg, ext)
        pair = self._pair_of(sa)
        self._kill(sa)
        if pair is not None:
            self._kill(pair)
        return [self._all_reply(msg, sa)]

    def _delpair_state(self, msg: PfkeyMessage, ext: Exts, now: float) -> list[PfkeyReply]:
        """X_DELPAIR_STATE: delete every SA (and its pair) in the state the SA extension names."""
        sa_ext = self._sa(msg, ext)
        for satype in self._satypes(msg):
            for sa in self._tables[satype]:
                if sa.state == sa_ext.state:
                    pair = self._pair_of(sa)
                    self._kill(sa)
                    if pair is not None:
                        self._kill(pair)
        reply = PfkeyMessage(SadbMsgType.X_DELPAIR_STATE, msg.satype, seq=msg.seq, pid=msg.pid)
        return [PfkeyReply(reply, Audience.ALL)]

    # -- helpers ------------------------------------------------------------------------

    def _table(self, msg: PfkeyMessage) -> SaTable:
        if msg.satype == _UNSPEC:
            raise SadbError(
                errno.EINVAL, Diagnostic.SATYPE_NEEDED, f"{_msg_name(msg)} needs an SA type"
            )
        table = self._tables.get(msg.satype)
        if table is None:
            raise _unsupported_satype(msg.satype)
        return table

    def _satypes(self, msg: PfkeyMessage) -> tuple[int, ...]:
        if msg.satype == SaType.UNSPEC:
            return SUPPORTED_SATYPES
        self._table(msg)
        return (msg.satype,)

    @staticmethod
    def _sa(msg: PfkeyMessage, ext: Exts) -> SadbSa:
        sa_ext = ext.get(_EXT_SA)
        if not isinstance(sa_ext, SadbSa):
            raise SadbError(
                errno.EINVAL, Diagnostic.MISSING_SA, f"{_msg_name(msg)} needs an SA extension"
            )
        return sa_ext

    @staticmethod
    def _addresses(msg: PfkeyMessage, ext: Exts) -> tuple[SadbAddress, SadbAddress]:
        """Source and destination, both required."""
        src, dst = Sadb._dst_and_src(msg, ext)
        if src is None:
            raise SadbError(
                errno.EINVAL, Diagnostic.MISSING_SRC, f"{_msg_name(msg)} needs a source address"
            )
        return src, dst

    @staticmethod
    def _dst_and_src(msg: PfkeyMessage, ext: Exts) -> tuple[SadbAddress | None, SadbAddress]:
        """Destination required, source optional (RFC 2367 §3.1: address(S*, D))."""
        src = ext.get(_EXT_SRC)
        dst = ext.get(_EXT_DST)
        if not isinstance(dst, SadbAddress):
            raise SadbError(
                errno.EINVAL,
                Diagnostic.MISSING_DST,
                f"{_msg_name(msg)} needs a destination address",
            )
        if not isinstance(src, SadbAddress):
            return None, dst
        if type(src.addr) is not type(dst.addr):
            raise SadbError(
                errno.EINVAL,
                Diagnostic.AF_MISMATCH,
                f"source {src.addr} and destination {dst.addr} differ in family",
            )
        return src, dst

    def _find(self, msg: PfkeyMessage, ext: Exts) -> SecurityAssociation:
        table = self._table(msg)
        sa_ext = self._sa(msg, ext)
        src, dst = self._dst_and_src(msg, ext)
        sa = table.get(sa_ext.spi, _packed(dst))
        if sa is None or (src is not None and sa.src != _packed(src)):
            raise SadbError(
                errno.ESRCH, Diagnostic.SA_NOTFOUND, f"no SA with SPI {sa_ext.spi:#x} to {dst.addr}"
            )
        return sa

    def _pair_of(self, sa: SecurityAssociation) -> SecurityAssociation | None:
        if not sa.pair_spi:
            return None
        return self._tables[sa.satype].get(sa.pair_spi, sa.src)

    @staticmethod
    def _lifetimes(msg: PfkeyMessage, ext: Exts) -> tuple[Lifetime | None, Lifetime | None]:
        soft_ext = ext.get(ExtType.LIFETIME_SOFT)
        hard_ext = ext.get(ExtType.LIFETIME_HARD)
        soft = _lifetime_of(soft_ext if isinstance(soft_ext, SadbLifetime) else None)
        hard = _lifetime_of(hard_ext if isinstance(hard_ext, SadbLifetime) else None)
        _check_soft_below_hard(soft, hard)
        idle_ext = ext.get(ExtType.X_LIFETIME_IDLE)
        if isinstance(idle_ext, SadbLifetime):
            _check_idle(Lifetime(0, 0, idle_ext.addtime, idle_ext.usetime), soft, hard)
        return soft, hard

    @staticmethod
    def _check_keys(satype: int, sa_ext: SadbSa, akey: object, ekey: object) -> None:
        """The algorithms are ones larval implements, with keys of the right length."""
        if satype == _ESP:
            cipher = ENCRYPT_ALGORITHMS.get(sa_ext.encrypt)
            if cipher is None:
                raise SadbError(
                    errno.EINVAL,
                    Diagnostic.BAD_EALG,
                    f"encryption algorithm {sa_ext.encrypt} is not supported",
                )
            if cipher.key_bits != (0,):
                if not isinstance(ekey, SadbKey):
                    raise SadbError(
                        errno.EINVAL,
                        Diagnostic.MISSING_EKEY,
                        f"{cipher.name} needs an encryption key",
                    )
                if not cipher.accepts_key_bits(ekey.bits):
                    raise SadbError(
                        errno.EINVAL,
                        Diagnostic.BAD_EKEYBITS,
                        f"{cipher.name} takes no {ekey.bits}-bit key",
                    )
            elif ekey is not None:
                raise SadbError(
                    errno.EINVAL, Diagnostic.BAD_EKEYBITS, "NULL encryption takes no key"
                )
            if cipher.aead:
                if sa_ext.auth != 0 or akey is not None:
                    raise SadbError(
                        errno.EINVAL,
                        Diagnostic.BAD_AALG,
                        f"{cipher.name} authenticates itself: no integrity algorithm",
                    )
                return
            if sa_ext.auth == 0:
                # RFC 4303 §3.2: NULL encryption needs integrity; so does CBC, RFC 8221.
                raise SadbError(
                    errno.EINVAL, Diagnostic.BAD_AALG, f"{cipher.name} needs an integrity algorithm"
                )
        integ = AUTH_ALGORITHMS.get(sa_ext.auth)
        if integ is None:
            raise SadbError(
                errno.EINVAL,
                Diagnostic.BAD_AALG,
                f"integrity algorithm {sa_ext.auth} is not supported",
            )
        if not isinstance(akey, SadbKey):
            raise SadbError(
                errno.EINVAL, Diagnostic.MISSING_AKEY, f"{integ.name} needs an integrity key"
            )
        if akey.bits != integ.key_bits:
            raise SadbError(
                errno.EINVAL,
                Diagnostic.BAD_AKEYBITS,
                f"{integ.name} takes a {integ.key_bits}-bit key, not {akey.bits}",
            )

    @staticmethod
    def _set_keys(sa: SecurityAssociation, sa_ext: SadbSa, akey: object, ekey: object) -> None:
        sa.auth, sa.encrypt = sa_ext.auth, sa_ext.encrypt
        sa.replay, sa.flags = sa_ext.replay, sa_ext.flags
        sa.auth_key = akey.key if isinstance(akey, SadbKey) else b""
        sa.encrypt_key = ekey.key if isinstance(ekey, SadbKey) else b""

    @staticmethod
    def _apply_optional(sa: SecurityAssociation, msg: PfkeyMessage) -> None:
        """The extensions any of GETSPI, ADD and UPDATE may carry. New inner selectors
        replace all the SA's pairs: without X_LARVAL_INNER_PAIRS it has only the first."""
        for ext in msg.extensions:
            t = ext.ext_type
            if t not in _OPTIONAL_EXTS:
                continue
            if t == ExtType.X_LARVAL_INNER_PAIRS and isinstance(ext, SadbXInnerPairs):
                sa.inner_more = ext.pairs
                continue
            if t == ExtType.X_KM_COOKIE and isinstance(ext, SadbXKmc):
                sa.km_proto, sa.km_cookie = ext.proto, ext.cookie
            elif t == ExtType.X_REPLAY_VALUE and isinstance(ext, SadbXReplayCtr):
                sa.replay_value = ext.replay64 or ext.replay32
            elif t == ExtType.X_LARVAL_SEQ_STATE and isinstance(ext, SadbXSeqState):
                sa.seq_state = ext
            elif t == ExtType.X_PAIR and isinstance(ext, SadbXPair):
                sa.pair_spi = ext.spi
            elif t == ExtType.X_LIFETIME_IDLE and isinstance(ext, SadbLifetime):
                sa.idle_add, sa.idle_use = ext.addtime, ext.usetime
            elif isinstance(ext, SadbAddress):
                if t == ExtType.X_ADDRESS_NATT_LOC:
                    sa.natt_loc = ext
                elif t == ExtType.X_ADDRESS_NATT_REM:
                    sa.natt_rem = ext
                elif t == ExtType.ADDRESS_PROXY:
                    sa.inner_src = ext
                    if msg.find(ExtType.X_LARVAL_INNER_PAIRS) is None:
                        sa.inner_more = ()
                elif t == ExtType.X_ADDRESS_INNER_DST:
                    sa.inner_dst = ext
                    if msg.find(ExtType.X_LARVAL_INNER_PAIRS) is None:
                        sa.inner_more = ()

    def _kill(self, sa: SecurityAssociation) -> None:
        """DELETE or FLUSH: DEAD at once, held packets dropped, out of the tables."""
        with sa.lock:
            if sa.state == SaState.DEAD:
                return
            sa.state = next_state(sa.state, SaEvent.DELETE)
            sa.drop_held(self.counters)
        self._remove(sa)

    def _remove(self, sa: SecurityAssociation) -> None:
        table = self._tables[sa.satype]
        table.remove(sa)
        self._expiry.leave(sa)
        freezer = self.gc_freezer
        if freezer is not None and len(table) <= freezer.unfreeze_at:
            freezer.shrunk(len(table))
        if self.on_removed is not None:
            self.on_removed(sa)

    def _release_acquires(self, sa: SecurityAssociation) -> None:
        """Send the outbound packets that waited for an SA like `sa`."""
        if sa.state not in (_MATURE, _DYING):
            return
        for record in self._acquires.take_for_sa(sa.satype, sa.src, sa.dst):
            for packet in record.packets:
                self.on_outbound_release(sa, packet)

    # -- reply building -----------------------------------------------------------------

    def _all_reply(self, msg: PfkeyMessage, sa: SecurityAssociation) -> PfkeyReply:
        """ADD, UPDATE, DELETE: the SA without its keys, to every socket (RFC 2367 §3.1.2)."""
        with sa.lock:
            exts = self._full_exts(sa, with_keys=False)
        reply = PfkeyMessage(msg.msg_type, msg.satype, seq=msg.seq, pid=msg.pid, extensions=exts)
        return PfkeyReply(reply, Audience.ALL)

    @staticmethod
    def _sa_ext(sa: SecurityAssociation) -> SadbSa:
        return SadbSa(sa.spi, sa.replay, sa.state, sa.auth, sa.encrypt, sa.flags)

    @staticmethod
    def _current_lifetime(sa: SecurityAssociation) -> SadbLifetime:
        return SadbLifetime(ExtType.LIFETIME_CURRENT, 0, sa.bytes, int(sa.addtime), int(sa.usetime))

    @staticmethod
    def _address_exts(sa: SecurityAssociation) -> tuple[SadbAddress, SadbAddress]:
        return (
            _address_ext(ExtType.ADDRESS_SRC, sa.src, sa.src_port, sa.proto),
            _address_ext(ExtType.ADDRESS_DST, sa.dst, sa.dst_port, sa.proto),
        )

    def _full_exts(
        self, sa: SecurityAssociation, *, with_keys: bool, now: float | None = None
    ) -> tuple[Extension, ...]:
        exts: list[Extension] = [self._sa_ext(sa), self._current_lifetime(sa)]
        for ext_type, lt in ((ExtType.LIFETIME_HARD, sa.hard), (ExtType.LIFETIME_SOFT, sa.soft)):
            if lt is not None:
                exts.append(
                    SadbLifetime(ext_type, lt.allocations, lt.bytes, lt.addtime, lt.usetime)
                )
        if sa.idle_add or sa.idle_use:
            exts.append(SadbLifetime(ExtType.X_LIFETIME_IDLE, 0, 0, sa.idle_add, sa.idle_use))
        exts.extend(self._address_exts(sa))
        for extra in (sa.inner_src, sa.inner_dst, sa.natt_loc, sa.natt_rem):
            if extra is not None:
                exts.append(extra)
        if sa.inner_more:
            exts.append(SadbXInnerPairs(sa.inner_more))
        if with_keys:
            if sa.auth_key:
                exts.append(SadbKey(ExtType.KEY_AUTH, len(sa.auth_key) * 8, sa.auth_key))
            if sa.encrypt_key:
                exts.append(SadbKey(ExtType.KEY_ENCRYPT, len(sa.encrypt_key) * 8, sa.encrypt_key))
        if sa.km_proto or sa.km_cookie:
            exts.append(SadbXKmc(sa.km_proto, sa.km_cookie))
        if sa.pair_spi:
            exts.append(SadbXPair(sa.pair_spi))
        if sa.replay_value:
            exts.append(SadbXReplayCtr(sa.replay_value & 0xFFFFFFFF, sa.replay_value))
        # The dataplane's own numbers once the SA carried traffic, else those given.
        live = getattr(sa.transform, "seq_state", None)
        seq_state = live() if live is not None else sa.seq_state
        if seq_state is not None:
            exts.append(seq_state)
        return tuple(exts)


def supported_extensions(satype: int) -> tuple[SadbSupported, ...]:
    """SUPPORTED_AUTH and SUPPORTED_ENCRYPT for a REGISTER reply."""
    auth = SadbSupported(
        ExtType.SUPPORTED_AUTH,
        tuple(SadbAlg(a.alg_id, 0, a.key_bits, a.key_bits) for a in AUTH_ALGORITHMS.values()),
    )
    encrypt = SadbSupported(
        ExtType.SUPPORTED_ENCRYPT,
        tuple(
            SadbAlg(
                e.alg_id,
                e.iv_bits,
                e.min_bits,
                e.max_bits,
                64 if e.max_bits > e.min_bits else 0,
                e.salt_bits,
            )
            for e in ENCRYPT_ALGORITHMS.values()
        ),
    )
    return (auth, encrypt)


_KEYS = (ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT)


def _stripped(msg: PfkeyMessage) -> PfkeyReply:
    """RFC 2367 §3.1.2-3: a successful ADD or UPDATE goes back to every socket as it was
    sent, less its keys (illumos ``sadb_strip``)."""
    exts = msg.extensions
    kept = tuple(e for e in exts if e.ext_type not in _KEYS)
    if len(kept) == len(exts):
        return PfkeyReply(msg, Audience.ALL)
    reply = PfkeyMessage(msg.msg_type, msg.satype, seq=msg.seq, pid=msg.pid, extensions=kept)
    return PfkeyReply(reply, Audience.ALL)


def _check_inner(ext: Exts) -> None:
    """Inner selectors (tunnel mode) hold a prefix no longer than their address and one
    family between them, as illumos checks them (``sadb_addrcheck``); so does each pair
    of X_LARVAL_INNER_PAIRS, which only follows a first pair."""
    isrc, idst = ext.get(ExtType.ADDRESS_PROXY), ext.get(ExtType.X_ADDRESS_INNER_DST)
    _check_pair(isrc, idst, "")
    more = ext.get(ExtType.X_LARVAL_INNER_PAIRS)
    if not isinstance(more, SadbXInnerPairs):
        return
    if not isinstance(isrc, SadbAddress) or not isinstance(idst, SadbAddress):
        raise SadbError(
            errno.EINVAL,
            Diagnostic.MISSING_INNER_SRC if isrc is None else Diagnostic.MISSING_INNER_DST,
            "further inner pairs (X_LARVAL_INNER_PAIRS) without a first inner source and "
            "destination",
        )
    for index, (src, dst) in enumerate(more.pairs, 2):
        _check_pair(src, dst, f" of pair {index}")


def _check_pair(isrc: object, idst: object, where: str) -> None:
    for inner, diag, what in (
        (isrc, Diagnostic.PREFIX_INNER_SRC, "inner source"),
        (idst, Diagnostic.PREFIX_INNER_DST, "inner destination"),
    ):
        if isinstance(inner, SadbAddress) and inner.prefixlen > inner.addr.max_prefixlen:
            raise SadbError(
                errno.EINVAL,
                diag,
                f"{what} {inner.addr}/{inner.prefixlen}{where}: prefix too long",
            )
    if (
        isinstance(isrc, SadbAddress)
        and isinstance(idst, SadbAddress)
        and isrc.addr.version != idst.addr.version
    ):
        raise SadbError(
            errno.EINVAL,
            Diagnostic.INNER_AF_MISMATCH,
            f"inner source {isrc.addr} and destination {idst.addr}{where} differ in family",
        )


_X_INBOUND = int(SaFlags.X_INBOUND)  # a plain int: IntFlag's & builds a flag each time


def _inner_state(sa: SecurityAssociation) -> tuple[object, ...]:
    """What `InnerIndex` keys an SA by: a change of it re-indexes the SA."""
    return (sa.inner_src, sa.inner_dst, sa.inner_more, sa.flags & _X_INBOUND)


def _check_mature(msg: PfkeyMessage, sa_ext: SadbSa) -> None:
    """ADD and UPDATE describe the SA as it is to be: MATURE (illumos esp_add_sa)."""
    if sa_ext.state != _MATURE:
        raise SadbError(
            errno.EINVAL,
            Diagnostic.BAD_SASTATE,
            f"{_msg_name(msg)} must set the SA state to MATURE, not {sa_ext.state}",
        )


def _msg_name(msg: PfkeyMessage) -> str:
    return SadbMsgType(msg.msg_type).name  # UNKNOWN_<n> for a number it does not know


def _discard(sa: SecurityAssociation, packet: Packet) -> None:
    """Release target when none was given: the packet goes nowhere."""


def _order(sa: SecurityAssociation, now: float) -> float:
    """Where `sa` comes in an aging pass: by the deadline that made it due."""
    deadline, _ = next_deadline(sa)
    return now if deadline is None else deadline


def _reached(sa: SecurityAssociation, lt: Lifetime, now: float) -> bool:
    if lt.addtime and now >= sa.addtime + lt.addtime:
        return True
    if lt.usetime and sa.usetime and now >= sa.usetime + lt.usetime:
        return True
    return bool(lt.bytes and sa.bytes >= lt.bytes)
