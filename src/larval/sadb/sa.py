"""One security association: its state machine, lifetimes and held packets.

Theory of operation
-------------------
An SA is born LARVAL by GETSPI (an inbound SPI reserved, no keys) or MATURE by ADD.
UPDATE gives a LARVAL SA its keys and makes it MATURE; a soft lifetime makes it DYING;
a hard lifetime, DELETE or FLUSH make it DEAD, and the SADB reaps it. The legal moves
are the table `TRANSITIONS`; anything else is refused with the errno and diagnostic of
`REFUSALS` (RFC 2367 §3.1, as illumos ``sadb.c`` answers them).

Packets for a LARVAL SA are held on it. The seed's bug was to look at the state, let
key management finish, and only then take the lock to hold the packet, asserting that
the SA was still LARVAL. Here the state is tested again *under the SA's lock* before
the packet is held; if the SA matured meanwhile the packet is handed back to be
processed at once (a "lost race", counted). While UPDATE is releasing the held packets,
later arrivals queue behind them, so that per SA the order of arrival is the order of
processing.
"""

from __future__ import annotations

import enum
import errno
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from larval.pfkey import Diagnostic, SadbAddress, SadbXSeqState, SaState
from larval.sadb.errors import SadbError

if TYPE_CHECKING:
    from larval.sadb.counters import SadbCounters
    from larval.sadb.expiry import ExpiryWheel
    from larval.sadb.inner import InnerKey, SourceKey

Packet = bytes
ReleaseFn = Callable[["SecurityAssociation", Packet], None]

#: `SecurityAssociation.notice_at` when no byte count matters to its lifetimes: past any
#: 64-bit byte lifetime (RFC 2367 §2.3.4).
NEVER_NOTICE = 1 << 64
#: The notice in an SA's `life` words where none is due (`larval.esp.helper.LIFE_NEVER`).
_LIFE_NEVER = (1 << 64) - 1

#: Packets held per LARVAL SA before the oldest is dropped (illumos holds one; a
#: Quick Mode window with traffic in flight fills more than that).
DEFAULT_HOLD_LIMIT = 8


class SaEvent(enum.Enum):
    """What can happen to an SA."""

    # Members are singletons compared by identity: hashed by it too, in C, rather than by
    # Enum's hash of the name in Python (`next_state` hashes one for every UPDATE).
    __hash__ = object.__hash__

    UPDATE_KEYS = "UPDATE with keys"
    UPDATE_LIFETIMES = "UPDATE without keys"
    SOFT_EXPIRE = "soft lifetime reached"
    HARD_EXPIRE = "hard lifetime reached"
    DELETE = "DELETE"


class HoldResult(enum.Enum):
    """The answer of `SecurityAssociation.hold`."""

    HELD = "held"  # kept on the SA; UPDATE will release it
    PROCESS = "process"  # the SA is no longer LARVAL: process the packet now


_L, _M, _Y, _D = SaState.LARVAL, SaState.MATURE, SaState.DYING, SaState.DEAD

#: Packed addresses as SAs hold them, one object per address (`shared_address`).
_ADDRESSES: dict[bytes, bytes] = {}
#: How many addresses `_ADDRESSES` keeps at most: past it, new ones are held as given.
ADDRESSES_SHARED = 65536


def shared_address(address: bytes) -> bytes:
    """`address` (packed), as the one object every SA with that address holds.

    An inbound lookup compares the SA's destination with the packet's, and a send keys
    by the SA's peer: with thousands of SAs to one gateway, one object for the address
    is read warm where each SA's own copy would be read from memory. An address stays
    in the table for the process's life (at most `ADDRESSES_SHARED` of them, a few MB);
    past that many (a gateway of that many peers), new ones are kept as they come."""
    if type(address) is not bytes:
        return address
    got = _ADDRESSES.get(address)
    if got is not None:
        return got
    if len(_ADDRESSES) >= ADDRESSES_SHARED:
        return address
    return _ADDRESSES.setdefault(address, address)


#: (state, event) -> new state.
TRANSITIONS: dict[tuple[int, SaEvent], int] = {
    (_L, SaEvent.UPDATE_KEYS): _M,
    (_L, SaEvent.HARD_EXPIRE): _D,
    (_L, SaEvent.DELETE): _D,
    (_M, SaEvent.UPDATE_LIFETIMES): _M,
    (_M, SaEvent.SOFT_EXPIRE): _Y,
    (_M, SaEvent.HARD_EXPIRE): _D,
    (_M, SaEvent.DELETE): _D,
    (_Y, SaEvent.UPDATE_LIFETIMES): _Y,
    (_Y, SaEvent.HARD_EXPIRE): _D,
    (_Y, SaEvent.DELETE): _D,
}

#: (state, event) -> (errno, diagnostic) for the moves that are refused.
REFUSALS: dict[tuple[int, SaEvent], tuple[int, int]] = {
    # RFC 2367 §3.1.2: keys of a MATURE SA cannot change; illumos says which key.
    (_M, SaEvent.UPDATE_KEYS): (errno.EINVAL, Diagnostic.EKEY_PRESENT),
    (_Y, SaEvent.UPDATE_KEYS): (errno.EINVAL, Diagnostic.EKEY_PRESENT),
    # A LARVAL SA has nothing to update but its keys.
    (_L, SaEvent.UPDATE_LIFETIMES): (errno.EINVAL, Diagnostic.MISSING_EKEY),
    (_L, SaEvent.SOFT_EXPIRE): (errno.EINVAL, Diagnostic.BAD_SASTATE),
    (_Y, SaEvent.SOFT_EXPIRE): (errno.EINVAL, Diagnostic.BAD_SASTATE),
    (_D, SaEvent.UPDATE_KEYS): (errno.ESRCH, Diagnostic.SA_EXPIRED),
    (_D, SaEvent.UPDATE_LIFETIMES): (errno.ESRCH, Diagnostic.SA_EXPIRED),
    (_D, SaEvent.SOFT_EXPIRE): (errno.ESRCH, Diagnostic.SA_EXPIRED),
    (_D, SaEvent.HARD_EXPIRE): (errno.ESRCH, Diagnostic.SA_EXPIRED),
    (_D, SaEvent.DELETE): (errno.ESRCH, Diagnostic.SA_EXPIRED),
}


def next_state(state: int, event: SaEvent) -> int:
    """The state `event` moves `state` to, or SadbError naming both."""
    new = TRANSITIONS.get((state, event))
    if new is not None:
        return new
    err, diag = REFUSALS[(state, event)]
    raise SadbError(err, diag, f"SA in state {SaState(state).name}: {event.value} refused")


class Lifetime:
    """Soft or hard limits: allocations, bytes, seconds after add, seconds after first use.

    Zero means no limit (RFC 2367 §2.3.4).
    """

    __slots__ = ("addtime", "allocations", "bytes", "usetime")

    def __init__(self, allocations: int = 0, bytes: int = 0, addtime: int = 0, usetime: int = 0):
        self.allocations = allocations
        self.bytes = bytes
        self.addtime = addtime
        self.usetime = usetime

    def __repr__(self) -> str:
        return (
            f"Lifetime(allocations={self.allocations}, bytes={self.bytes}, "
            f"addtime={self.addtime}, usetime={self.usetime})"
        )


class _PacketFields:
    """The fields of an SA that its packets read or write: the dataplane's SADB lookup
    (`dst`), its ESP context and state (`transform`, `ready`, `state`, `natt_rem`), the
    inbound check's selectors, and the accounting under `lock`. Apart only for where
    CPython puts them: it lays out a class's slots sorted by name, a base class's first,
    so these sit together at the start of the SA, in two cache lines rather than spread
    over six; a batch spread over many SAs reads each SA's from memory."""

    __slots__ = (
        "_bytes",
        "_notice_at",
        "_packets",
        "dst",
        "inner_dst",
        "inner_src",
        "lastuse",
        "life",
        "lock",
        "natt_rem",
        "ready",
        "state",
        "transform",
        "usetime",
    )


class SecurityAssociation(_PacketFields):
    """An SA as the SADB holds it. Mutable fields change under `lock` only."""

    __slots__ = (
        "_draining",
        "addtime",
        "auth",
        "auth_key",
        "dst_port",
        "encrypt",
        "encrypt_key",
        "expiry",
        "expiry_at",
        "flags",
        "hard",
        "held",
        "idle_add",
        "idle_reported",
        "idle_use",
        "inner_key",
        "inner_more",
        "km_cookie",
        "km_proto",
        "natt_loc",
        "pair_inner_key",
        "pair_spi",
        "proto",
        "replay",
        "replay_value",
        "satype",
        "seq_state",
        "soft",
        "spi",
        "src",
        "src_port",
    )

    def __init__(
        self,
        spi: int,
        satype: int,
        src: bytes,
        dst: bytes,
        state: int,
        addtime: float,
        src_port: int = 0,
        dst_port: int = 0,
        proto: int = 0,
    ) -> None:
        self.spi = spi
        self.satype = satype
        # Packed addresses, the index keys: `shared_address`, with its usual case (an
        # address shared already) looked up here, not called (an SA per GETSPI).
        self.src = (_ADDRESSES.get(src) or shared_address(src)) if type(src) is bytes else src
        self.dst = (_ADDRESSES.get(dst) or shared_address(dst)) if type(dst) is bytes else dst
        self.src_port = src_port
        self.dst_port = dst_port
        self.proto = proto
        self.state = state
        # Inbound packets go straight to processing when `ready`; otherwise through
        # `hold`, under the lock. False while LARVAL and while UPDATE releases.
        self.ready = state != _L
        self._draining = False
        self.lock = threading.Lock()
        self.held: deque[Packet] | None = None  # allocated on the first hold
        self.replay = 0
        self.auth = 0
        self.encrypt = 0
        self.flags = 0
        self.auth_key = b""
        self.encrypt_key = b""
        self.soft: Lifetime | None = None
        self.hard: Lifetime | None = None
        # SADB_X_EXT_LIFETIME_IDLE: seconds of quiet allowed after add and after use.
        self.idle_add = 0
        self.idle_use = 0
        self.idle_reported = -1.0  # the last-use time an idle EXPIRE was sent for (none yet)
        self.addtime = addtime
        self.usetime = 0.0  # first use; 0 until then
        self.lastuse = 0.0
        # The counts against the lifetimes (`bytes`, `packets`): here, and once the SA
        # has its ESP context's C block (`attach_life`), from then on in `life`.
        self._bytes = 0
        self._packets = 0
        self.life: memoryview | None = None
        # The SADB's `ExpiryWheel` once the SA is in it; the whole second of the SA's
        # entry there (None: none); the byte count past which `account` tells the wheel
        # (`notice_at`).
        self.expiry: ExpiryWheel | None = None
        self.expiry_at: int | None = None
        self._notice_at = NEVER_NOTICE
        self.km_proto = 0
        self.km_cookie = 0
        self.pair_spi = 0
        self.replay_value = 0
        # NAT-T and inner addresses, kept as given to echo back in replies.
        self.natt_loc: SadbAddress | None = None
        self.natt_rem: SadbAddress | None = None
        self.inner_src: SadbAddress | None = None
        self.inner_dst: SadbAddress | None = None
        # The inner selector pairs after (inner_src, inner_dst), from larval's
        # X_LARVAL_INNER_PAIRS: one SA for TSi x TSr of several pairs (RFC 7296 §2.9).
        self.inner_more: tuple[tuple[SadbAddress, SadbAddress], ...] = ()
        # Where `InnerIndex` keeps the SA: (key, address size, source key) per selector
        # pair indexed, under its lock; None if not.
        self.inner_key: tuple[tuple[InnerKey, int, SourceKey], ...] | None = None
        # The same for the index by outer pair (`SaTable.outbound`).
        self.pair_inner_key: tuple[tuple[InnerKey, int, SourceKey], ...] | None = None
        # The sequence numbers ADD or UPDATE gave (X_LARVAL_SEQ_STATE): where the
        # dataplane starts the SA when it makes its ESP context.
        self.seq_state: SadbXSeqState | None = None
        # The dataplane's per-SA state (its ESP context), made on first use; its
        # `seq_state()`, if it has one, is what GET and DUMP show.
        self.transform: object | None = None

    def __repr__(self) -> str:
        # Keys never appear here: this is what logs and tracebacks show.
        return (
            f"<SA spi=0x{self.spi:08x} satype={self.satype} "
            f"state={SaState(self.state).name} auth={self.auth} encrypt={self.encrypt}>"
        )

    # -- held packets -------------------------------------------------------------------

    def hold(self, packet: Packet, limit: int, counters: SadbCounters) -> HoldResult:
        """Hold an inbound packet if the SA is still LARVAL, checked under the SA's lock.

        The caller saw the SA not ready without the lock; by now UPDATE may have run
        (the seed's race). Then the packet is not held but handed back, or, while
        UPDATE is still releasing, queued behind the packets it releases.
        """
        with self.lock:
            if self.ready:
                counters.add("lost_races")
                return HoldResult.PROCESS
            held = self.held
            if held is None:
                held = self.held = deque()
            if self._draining:
                # UPDATE is releasing right now: keep arrival order behind it.
                counters.add("lost_races")
                held.append(packet)
                return HoldResult.HELD
            if len(held) >= limit:
                held.popleft()
                counters.add("replaced")
            held.append(packet)
            counters.add("held")
            return HoldResult.HELD

    def mature(self) -> bool:
        """Under the lock: after UPDATE made the SA MATURE. True if packets wait."""
        if self.held:
            self._draining = True
            return True
        self.ready = True
        return False

    def release_held(self, release: ReleaseFn, counters: SadbCounters) -> None:
        """Hand every held packet to `release` in arrival order, then open the SA.

        Called after `mature()` returned True, outside the lock: one packet is taken
        under the lock at a time so that arrivals during the release queue behind.
        """
        while True:
            with self.lock:
                held = self.held
                if not held:
                    self._draining = False
                    self.ready = True
                    self.held = None
                    return
                packet = held.popleft()
            counters.add("released")
            release(self, packet)

    def drop_held(self, counters: SadbCounters) -> int:
        """Under the lock, when the SA dies: drop what it holds and count it."""
        held = self.held
        dropped = len(held) if held else 0
        self.held = None
        self._draining = False
        self.ready = True  # processing will find it DEAD and drop
        if dropped:
            counters.add("expired", dropped)
        return dropped

    def idle_time(self) -> int:
        """Seconds of quiet before an idle EXPIRE: the smaller of the two that are set."""
        set_ = [t for t in (self.idle_add, self.idle_use) if t]
        return min(set_) if set_ else 0

    # -- traffic ------------------------------------------------------------------------
    #
    # The counts against the lifetimes, `bytes` and `packets`, and `notice_at`, live in
    # the SA until its ESP context has a C block (the compiled path), and from then on in
    # the block's `life` words (`larval.esp.helper.sa_life`): the compiled calls of many
    # SAs count there what they seal and open, so that a packet of such a batch reads and
    # writes no count of the SA's in Python. What the SA held before carries on as a base
    # the words add to; the words' notice is kept relative to it.

    def attach_life(self, life: memoryview) -> None:
        """Under the SA's lock, as its ESP context is made: count in `life` from now on."""
        if self.life is not None:
            raise ValueError(f"{self!r} counts in a C block already")
        notice = self._notice_at
        self.life = life
        self.notice_at = notice

    @property
    def bytes(self) -> int:
        """Bytes counted against the lifetimes (`account`)."""
        life = self.life
        return self._bytes if life is None else self._bytes + life[0]

    @bytes.setter
    def bytes(self, value: int) -> None:
        life = self.life
        if life is None:
            self._bytes = value
            return
        notice = self.notice_at
        self._bytes = value - life[0]
        self.notice_at = notice

    @property
    def packets(self) -> int:
        """Packets counted against the lifetimes."""
        life = self.life
        return self._packets if life is None else self._packets + life[1]

    @packets.setter
    def packets(self, value: int) -> None:
        life = self.life
        self._packets = value if life is None else value - life[1]

    @property
    def notice_at(self) -> int:
        """The byte count at which `account` tells the SADB's `ExpiryWheel` (once:
        `NEVER_NOTICE` after)."""
        life = self.life
        if life is None:
            return self._notice_at
        left = life[2]
        return NEVER_NOTICE if left == _LIFE_NEVER else self._bytes + left

    @notice_at.setter
    def notice_at(self, value: int) -> None:
        life = self.life
        if life is None:
            self._notice_at = value
        else:
            life[2] = min(max(value - self._bytes, 0), _LIFE_NEVER)

    def account(self, nbytes: int, now: float, packets: int = 1) -> None:
        """Count processed packets against the byte and use lifetimes: one of `nbytes`
        bytes, or a run of `packets` of `nbytes` in all, which ends the SA as that many
        calls for its packets would. Past `notice_at` bytes the SADB's next aging pass
        looks at the SA (`larval.sadb.expiry`); byte totals only grow, so a run crosses
        it exactly when one of its packets would have, and the SA is noticed once."""
        lock = self.lock
        lock.acquire()  # cheaper than `with` on a path taken for every packet
        try:
            if not self.usetime:
                self.usetime = now
            self.lastuse = now
            life = self.life
            if life is None:
                self._bytes = total = self._bytes + nbytes
                self._packets += packets
                if total < self._notice_at:
                    return
                self._notice_at = NEVER_NOTICE  # once: the pass sets the next
            else:
                life[0] = total = life[0] + nbytes
                life[1] += packets
                if total < life[2]:
                    return
                life[2] = _LIFE_NEVER
            expiry = self.expiry
            if expiry is not None:
                expiry.traffic.append(self)
        finally:
            lock.release()

    def account_run(self, nbytes: int, packets: int, now: float) -> None:
        """`account` for a run of `packets` packets of `nbytes` bytes in all, processed at
        `now`, under one lock; an empty run counts nothing."""
        if packets > 0:
            self.account(nbytes, now, packets)


def counted_held(
    sas: Sequence[SecurityAssociation],
    results: Sequence[object | None],
    noticed: Iterable[int],
    now: float,
) -> None:
    """The rest of `account` for packet i of SA i, each whose result i is not None, that
    a compiled call counted in its SA's `life` words (`larval.esp.helper.seal_many`),
    processed at `now`, by a caller that holds every one of the SAs' locks (as it did
    for the call): the use times, and the SADB's wheel told of each SA whose count
    reached its notice (`noticed`: the indices of those packets)."""
    for sa, result in zip(sas, results, strict=True):
        if result is not None:
            if not sa.usetime:
                sa.usetime = now
            sa.lastuse = now
    for i in noticed:
        sa = sas[i]
        expiry = sa.expiry
        if expiry is not None:
            expiry.traffic.append(sa)


def counted_each(
    sas: Iterable[SecurityAssociation], noticed: Iterable[SecurityAssociation], now: float
) -> None:
    """The rest of `account` for one packet each of `sas` that a compiled call counted in
    their `life` words (`larval.esp.helper.open_boxed`), processed at `now`: the use
    times, each under its SA's lock, and the SADB's wheel told of each of `noticed`."""
    for sa in sas:
        lock = sa.lock
        lock.acquire()
        try:
            if not sa.usetime:
                sa.usetime = now
            sa.lastuse = now
        finally:
            lock.release()
    for sa in noticed:
        expiry = sa.expiry
        if expiry is not None:
            expiry.traffic.append(sa)


def uncount(sa: SecurityAssociation, nbytes: int) -> None:
    """Take back one packet of `nbytes` bytes that a compiled call counted in `sa`'s
    `life` words and that turned out not to be processed."""
    life = sa.life
    if life is None:
        raise ValueError(f"{sa!r} has no C block to count in")
    with sa.lock:
        life[0] -= nbytes
        life[1] -= 1


def account_each(done: Iterable[tuple[SecurityAssociation, int]], now: float) -> None:
    """`account` for one packet each of several SAs, (SA, bytes) in turn, processed at
    `now`; each lock is taken on its own, so no order among them matters."""
    for sa, nbytes in done:
        sa.account(nbytes, now)
