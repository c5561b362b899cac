"""GETSPI, UPDATE and ADD in their usual shapes, PF_KEY bytes in and bytes out.

Theory of operation
-------------------
A key manager sends the stack three messages for every CHILD_SA: GETSPI for the inbound
SPI, UPDATE of that LARVAL SA with its keys, ADD of the outbound SA (RFC 2367 §3.1.1-3).
The full path decodes each into a `PfkeyMessage` of extension objects, `Sadb.handle`
acts on those, and the answer is another message encoded again. Here the same work is
done from the bytes: the fixed layouts are read with precompiled structs, the SADB is
changed as the full path changes it, and the answer is packed from the request's own
bytes, as illumos turns a request into its answer.

What is read once and kept: a GETSPI's extensions (its addresses and SPI range, the
same bytes for every SA between two hosts) as a `_GetspiShape`, judged by the full
decoder; each address extension of UPDATE and ADD by its bytes; the lifetimes by theirs
(shared by the SAs that have the same: they are replaced, never changed in place); and
whether an algorithm pair with given key sizes is one `Sadb._check_keys` accepts.

The rule that keeps the two paths one: `FastPath.handle` returns None for any request it
does not take whole — another message type or SA type, an extension it does not know or
finds twice, a length that does not hold, anything the SADB would refuse, an SA that is
not in the state the usual case needs — *before it has changed anything*, and the caller
gives the same bytes to the full path (`decode`, `Sadb.handle`), so that every errno,
diagnostic, audience and log line stays the full path's. The one refusal answered here is
a GETSPI whose SPI range is full, found only after the SPIs were drawn: its answer is
the full path's (`Sadb.error_reply`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from larval.pfkey import (
    PF_KEY_V2,
    Extension,
    ExtType,
    PfkeyError,
    SadbAddress,
    SadbKey,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbXInnerPairs,
    SaState,
    SaType,
    decode,
)
from larval.sadb.errors import SadbError
from larval.sadb.sa import NEVER_NOTICE, Lifetime, SecurityAssociation
from larval.sadb.sadb import (
    MAX_SPI,
    MIN_SPI,
    Audience,
    Sadb,
    _check_idle,
    _check_inner,
    _check_soft_below_hard,
    _inner_state,
    _packed,
)

__all__ = ["FastPath", "WireReply"]


class WireReply(NamedTuple):
    """A PF_KEY message encoded, for the socket layer to send, and to whom."""

    data: bytes
    audience: Audience
    satype: int


# RFC 2367 §2.3.1 sadb_msg, §2.2 sadb_ext, §2.3.2 sadb_sa (its SPI in network byte order),
# §2.3.3 sadb_key's bits, illumos sadb_x_pair's SPI: the layouts `larval.pfkey` writes.
_HEADER = struct.Struct("<BBBBHHII")
_HEADER_SIZE = _HEADER.size
_EXT = struct.Struct("<HH")
_SA_BODY = struct.Struct("<4sBBBBI")
_KEY_BITS = struct.Struct("<H")
_EXT_TYPE = struct.Struct("<H")
_LIFETIME_BODY = struct.Struct("<IQQQ")
_LIFETIME_SIZE = 4 + _LIFETIME_BODY.size
# The header of a GETSPI answer's SA extension: 2 words, SADB_EXT_SA.
_SA_HEAD = _EXT.pack(2, int(ExtType.SA))


# Plain ints for the per-request paths (an enum member is an attribute lookup each time).
_GETSPI, _UPDATE, _ADD = int(SadbMsgType.GETSPI), int(SadbMsgType.UPDATE), int(SadbMsgType.ADD)
_ESP = int(SaType.ESP)
_LARVAL, _MATURE = int(SaState.LARVAL), int(SaState.MATURE)
_EXT_SA = int(ExtType.SA)
_HARD, _SOFT, _IDLE = (
    int(ExtType.LIFETIME_HARD),
    int(ExtType.LIFETIME_SOFT),
    int(ExtType.X_LIFETIME_IDLE),
)
_SRC, _DST = int(ExtType.ADDRESS_SRC), int(ExtType.ADDRESS_DST)
_PROXY, _INNER_DST = int(ExtType.ADDRESS_PROXY), int(ExtType.X_ADDRESS_INNER_DST)
_INNER_PAIRS = int(ExtType.X_LARVAL_INNER_PAIRS)
_NATT_LOC, _NATT_REM = int(ExtType.X_ADDRESS_NATT_LOC), int(ExtType.X_ADDRESS_NATT_REM)
_KEY_AUTH, _KEY_ENCRYPT = int(ExtType.KEY_AUTH), int(ExtType.KEY_ENCRYPT)
_PAIR = int(ExtType.X_PAIR)
_KEYED = frozenset({_UPDATE, _ADD})
_ALL, _SENDER = Audience.ALL, Audience.SENDER

# `WireReply(...)` without the named tuple's Python __new__, for the answers of every SA.
_reply = tuple.__new__

#: Entries kept in each cache before it is emptied: a burst of distinct peers or
#: lifetimes costs a decode each, never unbounded memory.
CACHE_MAX = 4096


class _GetspiShape(NamedTuple):
    """A GETSPI's extensions, judged once by the full decoder: the SA it makes and the
    addresses its answer carries."""

    src: bytes  # packed, shared (`larval.sadb.sadb._packed`)
    dst: bytes
    src_port: int
    dst_port: int
    proto: int
    low: int  # the usable SPI range
    high: int
    #: The answer's packer, taking (its first 8 bytes, seq, pid, the SA extension's
    #: header, the SPI, the rest), and those bytes: the header without its sequence
    #: number and pid; the SA extension after its SPI, and the address extensions as
    #: the full path encodes them.
    answer: tuple[Callable[..., bytes], bytes, bytes]
    usual: bool  # the range is [MIN_SPI, MAX_SPI], whose SPIs are drawn ahead


class _Address(NamedTuple):
    """An address extension read once: the value the SA keeps, its packed address, and
    its bytes as the full path writes them back."""

    ext: SadbAddress
    packed: bytes
    wire: bytes


class _Lifetimes(NamedTuple):
    """SADB_EXT_LIFETIME_SOFT and _HARD and SADB_X_EXT_LIFETIME_IDLE as an SA holds them."""

    soft: Lifetime | None
    hard: Lifetime | None
    idle_add: int
    idle_use: int
    #: Where the limits are add times alone (no bytes, use or idle time): the first of
    #: them, for a MATURE SA's next deadline after its add time (`next_deadline`); None
    #: otherwise, or where there is no limit.
    addtime_after: int | None = None


class _InnerPairs(NamedTuple):
    """An X_LARVAL_INNER_PAIRS extension read once: its value and its bytes, which the
    full path writes back as they came."""

    ext: SadbXInnerPairs
    wire: bytes


class _Layout(NamedTuple):
    """Where the extensions of an UPDATE or ADD lie, and how to tell that another
    message of the same size is laid out the same: its extension headers (`headers`
    reads them all at once) are `expected`."""

    headers: Callable[[bytes], tuple[int, ...]]
    expected: tuple[int, ...]
    at: dict[int, tuple[int, int]]


def _layout(at: dict[int, tuple[int, int]]) -> _Layout:
    fmt, pos, expected = "<", 0, []
    for ext_type, (off, end) in sorted(at.items(), key=lambda item: item[1]):
        fmt += f"{off - pos}xHH"
        pos = off + _EXT.size
        expected += [(end - off) >> 3, ext_type]
    return _Layout(struct.Struct(fmt).unpack_from, tuple(expected), dict(at))


class _KeyedShape(NamedTuple):
    """What an UPDATE or ADD says besides its SPIs and keys, judged once: what the SA
    takes from it, and its answer around the SPIs."""

    src: bytes  # packed, shared
    dst: bytes
    src_port: int
    dst_port: int
    proto: int
    sa_fields: tuple[int, int, int, int]  # auth, encrypt, replay, flags
    lifetimes: _Lifetimes
    optional: bool  # an optional extension to apply (`_apply_optional`)
    idle: bool
    proxy: _Address | None
    inner_dst: _Address | None
    natt_loc: _Address | None
    natt_rem: _Address | None
    inner_more: _InnerPairs | None  # X_LARVAL_INNER_PAIRS: the pairs after the first
    per_sa: Callable[[bytes], tuple[bytes, ...]]  # the SPI, keys and paired SPI
    #: The answer's packer, taking (its first 8 bytes, seq, pid, before, the SPI,
    #: between, the paired SPI, after), and those bytes: the header without its sequence
    #: number and pid, and the answer's body before, between and after the SPIs.
    answer: tuple[Callable[..., bytes], bytes, bytes, bytes, bytes]


class _Holes(NamedTuple):
    """Where the per-SA bytes of the requests of one size lie, and the shapes seen."""

    where: tuple[tuple[int, int, int], ...]
    fixed: Callable[[bytes], tuple[bytes, ...]]  # every byte but the per-SA ones
    per_sa: Callable[[bytes], tuple[bytes, ...]]  # (SPI, auth key, encrypt key, pair SPI)
    shapes: dict[tuple[bytes, ...], _KeyedShape]  # by the fixed bytes


#: The last UPDATE or ADD shape of a message type (`FastPath._last_keyed`).
_LastKeyed = tuple[int, Callable[[bytes], tuple[bytes, ...]], tuple[bytes, ...], _KeyedShape]

_NO_LIFETIMES = _Lifetimes(None, None, 0, 0)
_LifetimeKey = tuple[bytes | None, bytes | None, bytes | None]
_KeysKey = tuple[int, int, int, int]  # auth, encrypt, bits of each key (0: none)


class FastPath:
    """GETSPI, UPDATE and ADD of ESP SAs from bytes, for `sadb`; `handle` is the entry."""

    def __init__(
        self,
        sadb: Sadb,
        others: dict[int, Callable[[bytes, float], list[WireReply] | None]] | None = None,
    ) -> None:
        self.sadb = sadb
        # By message type, what answers other requests from bytes (the stack's inverse
        # ACQUIRE): the same contract as `handle`.
        self._others = others or {}
        self._table = sadb._tables[_ESP]
        self._wheel = self._table.expiry
        # The inbound table's dict, never replaced: UPDATE's lookup without the call.
        self._by_spi = self._table._by_spi
        # Values are None where the full path must judge (a refusal, an unusual form).
        self._getspi_shapes: dict[bytes, _GetspiShape | None] = {}
        self._addresses: dict[bytes, _Address | None] = {}  # by the extension's bytes
        self._lifetimes: dict[_LifetimeKey, _Lifetimes | None] = {}
        self._keys: dict[_KeysKey, bool] = {}
        self._inner: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._pairs_exts: dict[bytes, _InnerPairs | None] = {}  # by the extension's bytes
        self._layouts: dict[int, _Layout] = {}  # by message size
        self._holes: dict[int, _Holes] = {}  # by message size
        # The last GETSPI body taken, and its shape (no message has an empty body).
        self._last_getspi: tuple[bytes, _GetspiShape | None] = (b"", None)
        # By message type, the last UPDATE or ADD shape found by its fixed bytes: the
        # message size, the reader of those bytes (`_Holes.fixed`), the bytes, the shape.
        self._last_keyed: dict[int, _LastKeyed] = {}

    def handle(self, data: bytes, now: float) -> list[WireReply] | None:
        """The answers to one PF_KEY request, encoded, if it is one the fast path takes
        whole; None (nothing changed) for the full path to carry out."""
        if type(data) is not bytes or len(data) < _HEADER_SIZE:
            return None
        version, msg_type, _, satype, words, _, seq, pid = _HEADER.unpack_from(data)
        if version != PF_KEY_V2 or satype != _ESP or words << 3 != len(data):
            return None
        if msg_type == _GETSPI:
            return self._getspi(data, seq, pid, now)
        if msg_type in _KEYED:
            return self._keyed(data, msg_type, seq, pid, now)
        other = self._others.get(msg_type)
        return None if other is None else other(data, now)

    # -- GETSPI ---------------------------------------------------------------------------

    def _getspi(self, data: bytes, seq: int, pid: int, now: float) -> list[WireReply] | None:
        """GETSPI <base, address(S, D), SPI range> -> <base, SA(LARVAL), address(S, D)>."""
        # The last shape's body first, compared where it lies (no slice, no hash).
        last_body, shape = self._last_getspi
        if len(data) != _HEADER_SIZE + len(last_body) or not data.endswith(last_body):
            body = data[_HEADER_SIZE:]
            shapes = self._getspi_shapes
            try:
                shape = shapes[body]
            except KeyError:
                if len(shapes) >= CACHE_MAX:
                    shapes.clear()
                shape = shapes[body] = _getspi_shape(body)
            if shape is None:
                return None
            self._last_getspi = (body, shape)
        if shape is None:
            return None
        # One unpacking rather than an attribute lookup per field (a named tuple's are
        # not specialised by the interpreter).
        src, dst, src_port, dst_port, proto, low, high, answer, usual = shape
        sadb = self.sadb
        table = self._table
        sa = SecurityAssociation(0, _ESP, src, dst, _LARVAL, now, src_port, dst_port, proto)
        larval = sa.hard = sadb._larval_hard
        try:
            if usual:
                # The first random probe, as `Sadb._random_spi` draws it; almost always
                # free. A taken one goes on as the full path's probes would.
                try:
                    spi = sa.spi = sadb._spi_pool.pop()
                except IndexError:
                    spi = sa.spi = sadb._random_spi(MIN_SPI, MAX_SPI)
                wheel = self._wheel
                if larval.addtime and wheel is not None:
                    # On the wheel before any other thread can find it, so that nothing
                    # can change it meanwhile: `ExpiryWheel.enter` without its checks,
                    # the SA's lock and the call, in the bucket of the larval deadline
                    # and with no byte count to notice. A DELETE once it is in the table
                    # takes it off.
                    sa.expiry = wheel
                    sa.expiry_at = second = int((now + larval.addtime) // 1)
                    with wheel._lock:
                        bucket = wheel._buckets.get(second)
                        if bucket is None:
                            wheel._new_bucket(sa, second)
                        else:
                            bucket[sa] = None
                    inserted = table.insert_unpublished(sa)
                else:
                    inserted = table.insert_if_absent(sa)
                if not inserted:
                    spi = sadb._place(table, sa, MIN_SPI, MAX_SPI, 1)
            else:
                spi = sadb._place(table, sa, low, high)
        except SadbError as e:
            # The range is full: nothing was inserted, and the SPIs drawn are spent as
            # the full path would have spent them. Its answer, RFC 2367 §3.1.
            if sa.expiry_at is not None:
                self._wheel.leave(sa)  # type: ignore[union-attr]
            error = _HEADER.pack(PF_KEY_V2, _GETSPI, e.errno, _ESP, 2, e.diagnostic, seq, pid)
            return [WireReply(error, _SENDER, _ESP)]
        freezer = sadb.gc_freezer
        # `len(table)` without its call.
        if freezer is not None and len(self._by_spi) + table._shared_extra >= freezer.next_at:
            sadb._grown(table)
        pack, head, rest = answer
        return [_reply(WireReply, (pack(head, seq, pid, _SA_HEAD, spi.to_bytes(4, "big"), rest),
                                   _SENDER, _ESP))]  # fmt: skip

    # -- UPDATE and ADD -------------------------------------------------------------------

    def _keyed(
        self, data: bytes, msg_type: int, seq: int, pid: int, now: float
    ) -> list[WireReply] | None:
        # A key manager's requests of one size are laid out alike, and those for one SA
        # kind between two hosts differ only in their SPIs and keys: the holes of the
        # last layout of this size are read at once, the rest looked up as a whole.
        size = len(data)
        # The last shape of this message type first, its fixed bytes read by one struct
        # and compared as a tuple (none hashed): the next SA of a key manager's is alike.
        # The size first: the reader needs the whole message.
        last = self._last_keyed.get(msg_type)
        if last is not None and last[0] == size and last[1](data) == last[2]:
            shape = last[3]
        else:
            holes = self._holes.get(size)
            found = None
            if holes is not None:
                fixed = holes.fixed(data)
                found = holes.shapes.get(fixed)
                if found is not None:
                    self._last_keyed[msg_type] = (size, holes.fixed, fixed, found)
            if found is None:
                found = self._keyed_shape(data, size)
                if found is None:
                    return None
            shape = found
        # One unpacking rather than an attribute lookup per field.
        (src, dst, src_port, dst_port, proto, sa_fields, lifetimes, optional, _, _, _, _, _, _,
         per_sa, answer) = shape  # fmt: skip
        spi_raw, auth_key, encrypt_key, pair_raw = per_sa(data)
        spi = int.from_bytes(spi_raw, "big")
        table = self._table
        sadb = self.sadb
        soft, hard, _, _, first = lifetimes
        if msg_type == _UPDATE:
            entry = self._by_spi.get(spi)
            if type(entry) is SecurityAssociation and entry.dst == dst:
                sa: SecurityAssociation | None = entry
            else:
                sa = table.get(spi, dst)  # none, or an SPI that SAs to others share
            if sa is None or sa.src != src:
                return None
            with sa.lock:
                if sa.state != _LARVAL:
                    return None  # keys for a MATURE SA, or one that died: refused there
                track_inner = optional or sa.inner_dst is not None
                inner_before = _inner_state(sa) if track_inner else None
                sa.auth, sa.encrypt, sa.replay, sa.flags = sa_fields
                sa.auth_key, sa.encrypt_key = auth_key, encrypt_key
                sa.soft, sa.hard = soft, hard  # the larval one ends
                if optional:
                    _apply_optional(sa, shape, pair_raw)
                sa.state = _MATURE
                table.generation += 1  # `SaTable.bump`: a lookup may choose it now
                if sa.held:
                    released = sa.mature()
                else:
                    sa.ready = True  # `mature` where no packet waits
                    released = False
                # The larval lifetime ends; these apply.
                if first is None or optional or sa.idle_add or sa.idle_use:
                    sadb._expiry.reschedule(sa)
                else:
                    # `ExpiryWheel.reschedule_at` without its calls and the wheel's lock
                    # where the larval entry comes first, as it does unless the limits
                    # are shorter than the larval lifetime: only the notice is reset. The
                    # entry is read without the wheel's lock: it leaves only to be
                    # evaluated (`Sadb.age`) under this SA's lock, held here, and that
                    # evaluation, after this UPDATE, schedules the SA again.
                    at = sa.expiry_at
                    if at is not None and at <= (sa.addtime + first) // 1:
                        # `notice_at`'s setter where, as for every SA still LARVAL
                        # here, no ESP context has given the SA its C block (`life`).
                        sa._notice_at = NEVER_NOTICE
                    else:
                        sadb._expiry.reschedule_at(sa, sa.addtime + first)
                reindex = track_inner and inner_before != _inner_state(sa)
            if reindex:
                table.reindex_inner(sa)
            if sadb.on_keyed is not None:
                sadb.on_keyed(sa)
            if released:
                sa.release_held(sadb.on_inbound_release, sadb.counters)
        else:
            if spi < MIN_SPI:
                return None
            sa = SecurityAssociation(spi, _ESP, src, dst, _MATURE, now, src_port, dst_port, proto)
            sa.auth, sa.encrypt, sa.replay, sa.flags = sa_fields
            sa.auth_key, sa.encrypt_key = auth_key, encrypt_key
            sa.soft, sa.hard = soft, hard
            if optional:
                _apply_optional(sa, shape, pair_raw)
            if not table.insert_if_absent(sa):
                return None  # the SPI is taken: EEXIST, from the full path
            freezer = sadb.gc_freezer
            if freezer is not None and len(table) >= freezer.next_at:
                sadb._grown(table)
            if sadb.on_keyed is not None:
                sadb.on_keyed(sa)
        if sadb._acquires._by_key:
            sadb._release_acquires(sa)
        # RFC 2367 §3.1.2-3: the request as it came, less its keys (illumos sadb_strip),
        # with a header of its own.
        pack, head, before, between, after = answer
        answer_data = pack(head, seq, pid, before, spi_raw, between, pair_raw, after)
        return [_reply(WireReply, (answer_data, _ALL, _ESP))]

    def _keyed_shape(self, data: bytes, size: int) -> _KeyedShape | None:
        """What an UPDATE or ADD says besides its SPIs and keys, read from its bytes and
        judged as the full path judges them; kept, with where its per-SA bytes lie, for
        the next request alike. None (nothing kept) for what the full path must carry
        out."""
        layout = self._layouts.get(size)
        if layout is not None and layout.headers(data) == layout.expected:
            at = layout.at.copy()
        else:
            walked = self._walk(data, size)
            if walked is None:
                return None
            at = walked
        # What the full path would refuse, or do otherwise than the usual case does, goes
        # to it: no SA extension, a missing address (an UPDATE may omit its source, as
        # RFC 2367 §3.1.2 allows: the full path reads that), no key (an UPDATE of
        # lifetimes alone), an extension the fast path does not apply.
        sa_at, src_at, dst_at = at.pop(_EXT_SA, None), at.pop(_SRC, None), at.pop(_DST, None)
        auth_at, encrypt_at = at.pop(_KEY_AUTH, None), at.pop(_KEY_ENCRYPT, None)
        if sa_at is None or src_at is None or dst_at is None:
            return None
        if auth_at is None and encrypt_at is None:
            return None
        hard_at, soft_at, idle_at = at.pop(_HARD, None), at.pop(_SOFT, None), at.pop(_IDLE, None)
        proxy: _Address | None = None
        inner_dst: _Address | None = None
        natt_loc: _Address | None = None
        natt_rem: _Address | None = None
        more: _InnerPairs | None = None
        pair_at = None
        optional = bool(at) or idle_at is not None
        if at:
            proxy_at, inner_dst_at = at.pop(_PROXY, None), at.pop(_INNER_DST, None)
            natt_loc_at, natt_rem_at = at.pop(_NATT_LOC, None), at.pop(_NATT_REM, None)
            pair_at, pairs_at = at.pop(_PAIR, None), at.pop(_INNER_PAIRS, None)
            if at:
                return None
            if pairs_at is not None:
                more = self._inner_pairs_of(data[pairs_at[0] : pairs_at[1]])
                if more is None:
                    return None
            wheres = (proxy_at, inner_dst_at, natt_loc_at, natt_rem_at)
            read = [self._address(data, w) if w is not None else None for w in wheres]
            if any(w is not None and r is None for w, r in zip(wheres, read, strict=True)):
                return None
            proxy, inner_dst, natt_loc, natt_rem = read
            if pair_at is not None and pair_at[1] - pair_at[0] != 8:
                return None
        src, dst = self._address(data, src_at), self._address(data, dst_at)
        if src is None or dst is None or len(src.packed) != len(dst.packed):
            return None  # unreadable, or not as written back; or families that differ
        if sa_at[1] - sa_at[0] != 16:
            return None
        _, replay, state, auth, encrypt, flags = _SA_BODY.unpack_from(data, sa_at[0] + 4)
        if state != _MATURE:
            return None
        auth_bits, encrypt_bits = _key_bits(data, auth_at), _key_bits(data, encrypt_at)
        if auth_bits < 0 or encrypt_bits < 0:
            return None
        keys_key = (auth, encrypt, auth_bits, encrypt_bits)
        keys_ok = self._keys.get(keys_key)
        if keys_ok is None:
            keys_ok = self._keys[keys_key] = _keys_accepted(*keys_key)
        if not keys_ok:
            return None
        lifetimes = (
            _NO_LIFETIMES
            if soft_at is None and hard_at is None and idle_at is None
            else self._lifetimes_of(
                data[soft_at[0] : soft_at[1]] if soft_at is not None else None,
                data[hard_at[0] : hard_at[1]] if hard_at is not None else None,
                data[idle_at[0] : idle_at[1]] if idle_at is not None else None,
            )
        )
        if lifetimes is None:
            return None
        if (proxy is not None or inner_dst is not None or more is not None) and not self._inner_ok(
            proxy, inner_dst, more
        ):
            return None
        # The bytes that differ from SA to SA: the SPI, each key (up to the end of its
        # extension: the padding is not read, RFC 2367 §2.3.3) and the paired SPI, in
        # the order a key manager writes them; every other byte, the header's sequence
        # number and pid aside, is the shape's.
        spi_at = sa_at[0] + 4
        per_sa: list[tuple[int, int, int]] = [(spi_at, spi_at + 4, 4)]
        for where, bits in ((auth_at, auth_bits), (encrypt_at, encrypt_bits), (pair_at, 32)):
            if where is None:
                per_sa.append((per_sa[-1][1], per_sa[-1][1], 0))
            else:
                per_sa.append((where[0] + (4 if where is pair_at else 8), where[1],
                               (bits + 7) >> 3))  # fmt: skip
        if any(per_sa[i][0] < per_sa[i - 1][1] for i in range(1, 4)):
            return None  # another order: the full path reads it
        holes = self._holes_for(size, tuple(per_sa))
        fixed = holes.fixed(data)
        body = _stripped(data, auth_at, encrypt_at)
        # Where the SPIs lie in the answer: the keys come between them, or after both.
        spi_in_body = spi_at - _HEADER_SIZE
        if pair_at is None:
            parts = (body[:spi_in_body], body[spi_in_body + 4 :], b"")
        else:
            gone = sum(w[1] - w[0] for w in (auth_at, encrypt_at) if w is not None)
            pair_in_body = pair_at[0] + 4 - _HEADER_SIZE - gone
            parts = (
                body[:spi_in_body],
                body[spi_in_body + 4 : pair_in_body],
                body[pair_in_body + 4 :],
            )
        before, between, after = parts
        words = (_HEADER_SIZE + len(body)) >> 3
        head = _HEADER.pack(PF_KEY_V2, data[1], 0, _ESP, words, 0, 0, 0)[:8]
        pack = struct.Struct(f"<8sII{len(before)}s4s{len(between)}s"
                             f"{4 if pair_at is not None else 0}s{len(after)}s").pack  # fmt: skip
        shape = _KeyedShape(
            src.packed, dst.packed, src.ext.port, dst.ext.port, dst.ext.proto,
            (auth, encrypt, replay, flags), lifetimes, optional, idle_at is not None, proxy,
            inner_dst, natt_loc, natt_rem, more, holes.per_sa,
            (pack, head, before, between, after),
        )  # fmt: skip
        shapes = holes.shapes
        if len(shapes) >= CACHE_MAX:
            shapes.clear()
        shapes[fixed] = shape
        return shape

    def _holes_for(self, size: int, per_sa: tuple[tuple[int, int, int], ...]) -> _Holes:
        """The readers of a request of `size` bytes whose per-SA bytes lie at `per_sa`
        (offset, end, bytes read: the SPI, the keys, the paired SPI; an absent one is
        empty): of its shape's bytes, and of its per-SA bytes. Those of the last such
        layout are kept, with the shapes seen in it."""
        holes = self._holes.get(size)
        if holes is not None and holes.where == per_sa:
            return holes
        fixed_fmt, per_sa_fmt, pos = "<8s8x", "<16x", _HEADER_SIZE
        for off, end, used in per_sa:
            if off > pos:
                fixed_fmt += f"{off - pos}s"
            fixed_fmt += f"{end - off}x"
            per_sa_fmt += f"{off - pos}x{used}s{end - off - used}x"
            pos = end
        if size > pos:
            fixed_fmt += f"{size - pos}s"
        holes = _Holes(per_sa, struct.Struct(fixed_fmt).unpack_from,
                       struct.Struct(per_sa_fmt).unpack_from, {})  # fmt: skip
        if len(self._holes) >= CACHE_MAX:
            self._holes.clear()
        self._holes[size] = holes
        return holes

    def _walk(self, data: bytes, size: int) -> dict[int, tuple[int, int]] | None:
        """Where each extension of `data` lies, by type, found by walking their headers
        (RFC 2367 §2.2); None for what the decoder refuses (a zero length, one that runs
        past the message, a known type twice) or keeps (an unknown type twice). The
        layout is kept for the next request of the same size."""
        at: dict[int, tuple[int, int]] = {}
        off = _HEADER_SIZE
        ext_header = _EXT.unpack_from
        while off < size:
            words, ext_type = ext_header(data, off)
            if not words or ext_type in at:
                return None
            end = off + (words << 3)
            at[ext_type] = (off, end)
            off = end
        if off != size:
            return None
        layouts = self._layouts
        if len(layouts) >= CACHE_MAX:
            layouts.clear()
        layouts[size] = _layout(at)
        return at

    def _address(self, data: bytes, where: tuple[int, int]) -> _Address | None:
        """The address extension at `where`, read once for its bytes; None if the full
        path must read it (unreadable, or not written back as it came)."""
        whole = data[where[0] : where[1]]
        cache = self._addresses
        try:
            return cache[whole]
        except KeyError:
            if len(cache) >= CACHE_MAX:
                cache.clear()
            found = cache[whole] = _address(whole)
            return found

    def _lifetimes_of(
        self, soft_raw: bytes | None, hard_raw: bytes | None, idle_raw: bytes | None
    ) -> _Lifetimes | None:
        key = (soft_raw, hard_raw, idle_raw)
        cache = self._lifetimes
        try:
            return cache[key]
        except KeyError:
            if len(cache) >= CACHE_MAX:
                cache.clear()
            found = cache[key] = _lifetimes(soft_raw, hard_raw, idle_raw)
            return found

    def _inner_ok(
        self, proxy: _Address | None, inner_dst: _Address | None, more: _InnerPairs | None
    ) -> bool:
        key = (
            proxy.wire if proxy else b"",
            inner_dst.wire if inner_dst else b"",
            more.wire if more else b"",
        )
        cache = self._inner
        ok = cache.get(key)
        if ok is None:
            if len(cache) >= CACHE_MAX:
                cache.clear()
            ok = cache[key] = _inner_accepted(proxy, inner_dst, more)
        return ok

    def _inner_pairs_of(self, whole: bytes) -> _InnerPairs | None:
        """The X_LARVAL_INNER_PAIRS extension `whole`, read once for its bytes; None if
        the full path must read it (unreadable, or not written back as it came)."""
        cache = self._pairs_exts
        try:
            return cache[whole]
        except KeyError:
            if len(cache) >= CACHE_MAX:
                cache.clear()
            found = cache[whole] = _inner_pairs(whole)
            return found


def _apply_optional(sa: SecurityAssociation, shape: _KeyedShape, pair_raw: bytes) -> None:
    """`Sadb._apply_optional` for the optional extensions the fast path takes. New inner
    selectors replace every pair of the SA's: X_LARVAL_INNER_PAIRS's are the pairs after
    the first, and without it there are none."""
    if pair_raw:
        sa.pair_spi = int.from_bytes(pair_raw, "big")
    if shape.idle:
        sa.idle_add, sa.idle_use = shape.lifetimes.idle_add, shape.lifetimes.idle_use
    if shape.natt_loc is not None:
        sa.natt_loc = shape.natt_loc.ext
    if shape.natt_rem is not None:
        sa.natt_rem = shape.natt_rem.ext
    if shape.proxy is not None:
        sa.inner_src = shape.proxy.ext
        sa.inner_more = ()
    if shape.inner_dst is not None:
        sa.inner_dst = shape.inner_dst.ext
        sa.inner_more = ()
    if shape.inner_more is not None:
        sa.inner_more = shape.inner_more.ext.pairs


# -- what is judged once, by the full path's own code ---------------------------------------


def _getspi_shape(body: bytes) -> _GetspiShape | None:
    """A GETSPI body the usual case takes: decoded by `decode` to its address pair and
    SPI range and nothing else, of one family, with a usable range."""
    header = _HEADER.pack(PF_KEY_V2, _GETSPI, 0, _ESP, (_HEADER_SIZE + len(body)) >> 3, 0, 0, 0)
    try:
        msg = decode(header + body)
    except PfkeyError:
        return None
    exts = {e.ext_type: e for e in msg.extensions}
    if len(msg.extensions) != 3:
        return None
    src, dst, spirange = exts.get(_SRC), exts.get(_DST), exts.get(int(ExtType.SPIRANGE))
    if not isinstance(src, SadbAddress) or not isinstance(dst, SadbAddress):
        return None
    if not isinstance(spirange, SadbSpirange) or type(src.addr) is not type(dst.addr):
        return None
    low, high = max(spirange.min, MIN_SPI), min(spirange.max, MAX_SPI)
    if low > high:
        return None
    # RFC 2367 §3.1.1: the answer, an SA extension (LARVAL, no algorithms) where the
    # SPI range was, and the addresses.
    rest = _SA_BODY.pack(b"", 0, _LARVAL, 0, 0, 0)[4:] + src.encode() + dst.encode()
    words = (_HEADER_SIZE + 8 + len(rest)) >> 3
    head = _HEADER.pack(PF_KEY_V2, _GETSPI, 0, _ESP, words, 0, 0, 0)[:8]
    pack = struct.Struct(f"<8sII4s4s{len(rest)}s").pack
    return _GetspiShape(_packed(src), _packed(dst), src.port, dst.port, dst.proto, low, high,
                        (pack, head, rest), low == MIN_SPI and high == MAX_SPI)  # fmt: skip


def _address(whole: bytes) -> _Address | None:
    """An address extension as the full path reads it, if it writes it back as it came
    (reserved bytes and padding zero, RFC 2367 §2.2)."""
    (ext_type,) = _EXT_TYPE.unpack_from(whole, 2)
    try:
        ext = SadbAddress.decode(ext_type, whole[4:])
    except PfkeyError:
        return None
    wire = ext.encode()
    return _Address(ext, _packed(ext), wire) if wire == whole else None


def _key_bits(data: bytes, where: tuple[int, int] | None) -> int:
    """The bits of the key extension at `where`: 0 if there is none, -1 if the decoder
    would refuse it (no bits, or a length that does not fit them: illumos keysock
    ext_check)."""
    if where is None:
        return 0
    off, end = where
    (bits,) = _KEY_BITS.unpack_from(data, off + 4)
    if not bits or end - off != 8 + ((((bits + 7) >> 3) + 7) & ~7):
        return -1
    return int(bits)


def _stripped(data: bytes, first: tuple[int, int] | None, second: tuple[int, int] | None) -> bytes:
    """The extensions of `data` without the one or two at `first` and `second`."""
    if first is None or second is None:
        off, end = first or second  # type: ignore[misc]
        return data[_HEADER_SIZE:off] + data[end:]
    if second[0] < first[0]:
        first, second = second, first
    return data[_HEADER_SIZE : first[0]] + data[first[1] : second[0]] + data[second[1] :]


def _lifetime(raw: bytes | None) -> Lifetime | None:
    if raw is None:
        return None
    allocations, nbytes, addtime, usetime = _LIFETIME_BODY.unpack_from(raw, 4)
    return Lifetime(allocations, nbytes, addtime, usetime)


def _lifetimes(
    soft_raw: bytes | None, hard_raw: bytes | None, idle_raw: bytes | None
) -> _Lifetimes | None:
    """The lifetimes as `Sadb._lifetimes` reads and checks them; None if it refuses them
    (or the decoder does: a lifetime extension is 4 words)."""
    if any(
        raw is not None and len(raw) != _LIFETIME_SIZE for raw in (soft_raw, hard_raw, idle_raw)
    ):
        return None
    soft, hard = _lifetime(soft_raw), _lifetime(hard_raw)
    idle = _lifetime(idle_raw)
    try:
        _check_soft_below_hard(soft, hard)
        if idle is not None:
            _check_idle(Lifetime(0, 0, idle.addtime, idle.usetime), soft, hard)
    except SadbError:
        return None
    if idle is None:
        limits = [lt for lt in (soft, hard) if lt is not None]
        after = None
        if not any(lt.bytes or lt.usetime for lt in limits):
            after = min((lt.addtime for lt in limits if lt.addtime), default=None)
        return _Lifetimes(soft, hard, 0, 0, after)
    return _Lifetimes(soft, hard, idle.addtime, idle.usetime)


def _keys_accepted(auth: int, encrypt: int, auth_bits: int, encrypt_bits: int) -> bool:
    """Whether `Sadb._check_keys` takes these algorithms with keys of these sizes."""
    sa_ext = SadbSa(0, 0, _MATURE, auth, encrypt)
    akey = SadbKey(_KEY_AUTH, auth_bits, bytes((auth_bits + 7) >> 3)) if auth_bits else None
    ekey = (
        SadbKey(_KEY_ENCRYPT, encrypt_bits, bytes((encrypt_bits + 7) >> 3))
        if encrypt_bits
        else None
    )
    try:
        Sadb._check_keys(_ESP, sa_ext, akey, ekey)
    except SadbError:
        return False
    return True


def _inner_pairs(whole: bytes) -> _InnerPairs | None:
    """An X_LARVAL_INNER_PAIRS extension as the full path reads it, if it writes it back
    as it came."""
    try:
        ext = SadbXInnerPairs.decode(_INNER_PAIRS, whole[4:])
        wire = ext.encode()
    except (PfkeyError, ValueError):
        return None
    return _InnerPairs(ext, wire) if wire == whole else None


def _inner_accepted(
    proxy: _Address | None, inner_dst: _Address | None, more: _InnerPairs | None
) -> bool:
    """Whether `larval.sadb.sadb._check_inner` takes these inner selectors."""
    exts: dict[int, Extension] = {}
    if proxy is not None:
        exts[_PROXY] = proxy.ext
    if inner_dst is not None:
        exts[_INNER_DST] = inner_dst.ext
    if more is not None:
        exts[_INNER_PAIRS] = more.ext
    try:
        _check_inner(exts)
    except SadbError:
        return False
    return True
