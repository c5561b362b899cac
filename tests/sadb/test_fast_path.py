"""The fast path (`larval.sadb.fast_path`) is the full path, faster: for the same requests,
two SADBs alike in every way (their SPIs drawn from the same seed) give the same answer
bytes to the same audiences, and end with the same SAs, counters, released packets and
lookups, whether the requests go through `FastPath.handle` (falling back to `decode` and
`Sadb.handle` where it declines) or through the full path alone.

The requests are drawn as a key manager builds them (`getspi_bytes`, `keyed_sa_bytes`),
over every algorithm, with and without NAT-T, lifetimes, inner selectors, ESN and a
paired SPI, and then spoiled: a wrong SPI or state, an ADD of an SPI taken, an extension
dropped, doubled or unknown, bytes cut short, a header that does not hold."""

from __future__ import annotations

import ipaddress
import itertools
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS
from larval.crypto.proposals import EspProposal
from larval.keymgr.pfkey_side import (
    ChildKeys,
    Endpoint,
    Lifetimes,
    PolicyRequest,
    delete_sa,
    getspi_bytes,
    getspi_reply_spi,
    keyed_sa_bytes,
)
from larval.node import Node
from larval.pfkey import (
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbSpirange,
    SadbXKmc,
    SaState,
    SaType,
    decode,
    decode_header,
)
from larval.sadb import Audience, FastPath, Sadb, SecurityAssociation, WireReply
from larval.sadb.sa import Lifetime
from larval.stack import Stack

from .support import Released, recording_sadb

ip = ipaddress.ip_address
V4 = (ip("192.0.2.1"), ip("192.0.2.2"))
V6 = (ip("2001:db8::1"), ip("2001:db8::2"))
UPDATE, ADD, GETSPI = int(SadbMsgType.UPDATE), int(SadbMsgType.ADD), int(SadbMsgType.GETSPI)

Answer = tuple[bytes, Audience, int]


class Twin:
    """An SADB whose every outcome is recorded: answers, keyed SAs, released packets."""

    def __init__(self, seed: int) -> None:
        self.released = Released()
        self.keyed: list[tuple[int, bytes]] = []
        self.sadb = recording_sadb(self.released, random_bytes=random.Random(seed).randbytes)
        self.sadb.on_keyed = lambda sa: self.keyed.append((sa.spi, sa.dst))
        self.fast = FastPath(self.sadb)
        self.taken = 0  # requests the fast path answered

    def full(self, data: bytes, now: float) -> list[Answer] | tuple[int, int]:
        try:
            msg = decode(data)
        except PfkeyError as e:
            return (e.errno, e.diagnostic)
        return [
            (r.message.encode(), r.audience, r.message.satype) for r in self.sadb.handle(msg, now)
        ]

    def fast_first(self, data: bytes, now: float) -> list[Answer] | tuple[int, int]:
        fast = self.fast.handle(data, now)
        if fast is None:
            return self.full(data, now)
        self.taken += 1
        return [tuple(r) for r in fast]  # type: ignore[misc]


def _plain(value: object) -> object:
    if isinstance(value, Lifetime):
        return (value.allocations, value.bytes, value.addtime, value.usetime)
    if value is not None and type(value).__name__ == "deque":
        return list(value)  # type: ignore[call-overload]
    return value


def state(sadb: Sadb) -> dict[str, Any]:
    """Everything the SADB holds and tells, as plain values."""
    table = sadb._tables[SaType.ESP]
    sas = sorted(table, key=lambda sa: (sa.spi, sa.dst))
    rows = [
        {
            name: _plain(getattr(sa, name))
            for cls in SecurityAssociation.__mro__
            for name in getattr(cls, "__slots__", ())
            if name not in ("lock", "expiry")  # objects of each SADB: its lock, its wheel
        }
        for sa in sas
    ]
    found: list[object] = []
    for sa in sas:
        out = sadb.lookup_outbound(sa.src, sa.dst)
        found.append(out.spi if out is not None else None)
        if sa.inner_src is not None and sa.inner_dst is not None:
            inner = sadb.lookup_outbound_inner(sa.src, sa.inner_src.packed(), sa.inner_dst.packed())
            found.append(inner.spi if inner is not None else None)
    # The wheel's entries, bucket by bucket in their order (the order aging finds them).
    buckets = sorted(sadb._expiry._buckets.items(), key=lambda item: item[0])
    wheel = [(second, [(sa.spi, sa.dst) for sa in bucket]) for second, bucket in buckets]
    return {
        "sas": rows,
        "wheel": wheel,
        "len": len(sadb),
        "found": found,
        "counters": sadb.counters.snapshot(),
        "acquires": sadb.acquire_records,
    }


def _proposals() -> st.SearchStrategy[tuple[EspProposal, bytes, bytes]]:
    """Every algorithm with keys of the right sizes, or, now and then, one thing wrong:
    an algorithm larval does not know, integrity beside an AEAD or none beside CBC, a
    key of the wrong size or none."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[EspProposal, bytes, bytes]:
        flaw = draw(st.sampled_from(["none"] * 8 + ["encrypt", "auth", "ekey", "akey"]))
        cipher = draw(st.sampled_from(list(ENCRYPT_ALGORITHMS.values())))
        bits = draw(st.sampled_from(cipher.key_bits))
        ekey_bytes = (bits + cipher.salt_bits) // 8
        integ = None if cipher.aead else draw(st.sampled_from(list(AUTH_ALGORITHMS.values())))
        encrypt = 99 if flaw == "encrypt" else cipher.alg_id
        if flaw == "auth":
            integ = draw(st.sampled_from(list(AUTH_ALGORITHMS.values()))) if cipher.aead else None
        auth = integ.alg_id if integ is not None else 0
        akey_bytes = integ.key_bits // 8 if integ is not None else 0
        if flaw == "ekey":
            ekey_bytes = draw(st.sampled_from([0, 5, ekey_bytes + 8]))
        if flaw == "akey":
            akey_bytes = draw(st.sampled_from([0, 7, 32]))
        proposal = EspProposal(encrypt, bits, auth, akey_bytes * 8, esn=draw(st.booleans()))
        return proposal, bytes(range(ekey_bytes)), bytes(range(100, 100 + akey_bytes))

    return build()


def _endpoint(address: str, prefix: int) -> Endpoint:
    return Endpoint(ip(address), prefix, 0, 0)


def _request(draw: st.DrawFn) -> PolicyRequest | None:
    kind = draw(
        st.sampled_from(["transport"] * 3 + ["tunnel"] * 3 + ["bad-prefix", "mixed", "pairs"])
    )
    if kind == "transport":
        return None
    near, far = (
        _endpoint("10.1.0.0", 16),
        _endpoint("10.2.0.0", draw(st.sampled_from([16, 24, 32]))),
    )
    more: tuple[tuple[Endpoint, Endpoint], ...] = ()
    if kind == "bad-prefix":
        far = _endpoint("10.2.0.0", 40)
    elif kind == "mixed":
        far = _endpoint("2001:db8:2::", 48)
    elif kind == "pairs":
        more = ((_endpoint("2001:db8:1::", 48), _endpoint("2001:db8:2::", 48)),)
    window = draw(st.sampled_from([0, 32, 64, 300]))
    return PolicyRequest(0, near, far, near, far, (), window, 0, more)


def _lifetimes(draw: st.DrawFn) -> Lifetimes:
    soft = draw(st.sampled_from([0, 3420, 3420, 3600, 3600, 5000]))
    hard = draw(st.sampled_from([0, 3960]))
    soft_bytes = draw(st.sampled_from([0, 0, 1 << 30, 1 << 40]))
    hard_bytes = draw(st.sampled_from([0, 0, 1 << 32]))
    idle = draw(st.sampled_from([0, 0, 0, 300, 9000]))
    return Lifetimes(soft, hard, soft_bytes, hard_bytes, idle)


def _extensions(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each extension of a well-formed message."""
    found, off = [], 16
    while off + 4 <= len(data):
        words = int.from_bytes(data[off : off + 2], "little")
        if not words:
            break
        found.append((off, words * 8))
        off += words * 8
    return found


def _with_length(data: bytes) -> bytes:
    return data[:4] + (len(data) // 8).to_bytes(2, "little") + data[6:]


def _resized(data: bytes, off: int, size: int, by: int) -> bytes:
    """The extension at `off` a word longer (zeros after it) or shorter (its last word
    gone), the message's length kept right: the walk holds, the extension's layout not."""
    head = data[:off] + (size // 8 + by).to_bytes(2, "little")
    if by > 0:
        return _with_length(head + data[off + 2 : off + size] + bytes(8) + data[off + size :])
    return _with_length(head + data[off + 2 : off + size - 8] + data[off + size :])


SPOILS = ["drop", "double", "unknown", "cut", "satype", "version", "length", "zero-ext"]
SPOILS += ["state", "cookie", "grow", "shrink"]


@st.composite
def _spoiled(draw: st.DrawFn, data: bytes) -> bytes:
    """The message as sent, mostly; or spoiled one way."""
    how = "none"
    if draw(st.booleans()):
        how = draw(st.sampled_from(SPOILS))
    exts = _extensions(data)
    if how == "drop" and exts:
        off, size = draw(st.sampled_from(exts))
        return _with_length(data[:off] + data[off + size :])
    if how == "double" and exts:
        off, size = draw(st.sampled_from(exts))
        return _with_length(data + data[off : off + size])
    if how == "unknown":
        return _with_length(
            data + (1).to_bytes(2, "little") + (40).to_bytes(2, "little") + bytes(4)
        )
    if how == "cookie":
        return _with_length(data + SadbXKmc(4, 0x1234).encode())
    if how == "cut":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "satype":
        return data[:3] + bytes([draw(st.sampled_from([0, 2, 9]))]) + data[4:]
    if how == "version":
        return b"\x01" + data[1:]
    if how == "length":
        return data[:4] + (len(data) // 8 + 1).to_bytes(2, "little") + data[6:]
    if how in ("grow", "shrink") and exts:
        off, size = draw(st.sampled_from(exts))
        return _resized(data, off, size, 1 if how == "grow" else -1)
    if how == "zero-ext" and exts:
        off, _ = draw(st.sampled_from(exts))
        return data[:off] + bytes(2) + data[off + 2 :]
    if how == "state" and data[1] != GETSPI and exts and data[exts[0][0] + 2] == ExtType.SA:
        at = exts[0][0] + 9  # sadb_sa_state
        return (
            data[:at]
            + bytes([draw(st.sampled_from([SaState.LARVAL, SaState.DYING]))])
            + data[at + 1 :]
        )
    return data


@st.composite
def _getspi(draw: st.DrawFn, seq: int) -> bytes:
    peer, local = draw(st.sampled_from([V4, V4, V6]))
    shape = draw(st.sampled_from(["usual"] * 4 + ["narrow", "empty", "inner", "mixed"]))
    if shape == "usual":
        data = getspi_bytes(peer, local, seq=seq, pid=7)
    else:
        low, high = {"narrow": (0x1000, 0x1001), "empty": (0x10, 0x20)}.get(
            shape, (0x100, 0xFFFFFFFF)
        )
        exts: list[Any] = [
            SadbAddress(ExtType.ADDRESS_SRC, peer),
            SadbAddress(
                ExtType.ADDRESS_DST,
                local if shape != "mixed" else V6[1] if peer.version == 4 else V4[1],
            ),
            SadbSpirange(low, high),
        ]
        if shape == "inner":
            exts.append(SadbAddress(ExtType.ADDRESS_PROXY, ip("10.2.0.0"), prefixlen=24))
        data = PfkeyMessage(
            SadbMsgType.GETSPI, SaType.ESP, seq=seq, pid=7, extensions=tuple(exts)
        ).encode()
    return draw(_spoiled(data))


@st.composite
def _keyed(draw: st.DrawFn, seq: int, spis: list[tuple[int, Any, Any]]) -> bytes:
    msg_type = draw(st.sampled_from([UPDATE, UPDATE, ADD]))
    if msg_type == UPDATE and spis and draw(st.integers(0, 5)):
        spi, peer, local = draw(st.sampled_from(spis))
        src, dst, inbound = peer, local, True
    else:
        spi = draw(st.sampled_from([0x5000, 0x5001, 0x80, 0xDEADBEEF]))
        local, peer = draw(st.sampled_from([V4, V6]))
        src, dst, inbound = local, peer, False
    proposal, ekey, akey = draw(_proposals())
    keys = ChildKeys(spi, src, dst, proposal, ekey, akey)
    natt = draw(st.sampled_from([0, 0, 4500, 61000]))
    pair = draw(st.sampled_from([0, 0, 0x7000]))
    data = keyed_sa_bytes(msg_type, keys, _request(draw), _lifetimes(draw), inbound=inbound,
                          seq=seq, pid=7, pair_spi=pair, natt_port=natt)  # fmt: skip
    return draw(_spoiled(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_path_answers_and_acts_as_the_full_path(data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32), label="seed")
    fast, full = Twin(seed), Twin(seed)
    spis: list[tuple[int, Any, Any]] = []  # (SPI, peer, local) of the LARVAL SAs made
    now = 0.0
    for seq in range(1, data.draw(st.integers(1, 14), label="steps") + 1):
        now += data.draw(st.sampled_from([0.0, 1.0, 100.0]))
        step = data.draw(
            st.sampled_from(
                ["getspi", "getspi", "keyed", "keyed", "keyed", "hold", "acquire", "delete"]
            )
        )
        if step == "delete" and spis:
            # DELETE (the full path's) of an SA the fast path made: it leaves the wheel.
            spi, peer, local = data.draw(st.sampled_from(spis))
            request = delete_sa(spi, peer, local, seq=seq, pid=7).encode()
            assert fast.fast_first(request, now) == full.full(request, now)
            assert state(fast.sadb) == state(full.sadb)
            continue
        if step == "hold" and spis:
            # A packet waits on a LARVAL SA: the UPDATE that matures it releases it.
            spi, _, local = data.draw(st.sampled_from(spis))
            for twin in (fast, full):
                sa = twin.sadb.lookup_inbound(spi, local.packed)
                if sa is not None:
                    twin.sadb.hold_inbound(sa, b"held %d" % seq)
            continue
        if step == "acquire":
            # An outbound packet waits for an SA: an ADD (or UPDATE) between its hosts.
            local, peer = data.draw(st.sampled_from([V4, V6]))
            for twin in (fast, full):
                twin.sadb.hold_outbound((1, local, peer), SaType.ESP, local.packed, peer.packed,
                                        b"out %d" % seq, now)  # fmt: skip
            continue
        request = data.draw(_getspi(seq) if step == "getspi" else _keyed(seq, spis))
        got, want = fast.fast_first(request, now), full.full(request, now)
        assert got == want, request.hex()
        if step == "getspi" and isinstance(want, list):
            spi = getspi_reply_spi(want[0][0])
            if spi is not None:
                for peer, local in (V4, V6):
                    if full.sadb.lookup_inbound(spi, local.packed) is not None:
                        spis.append((spi, peer, local))
        assert state(fast.sadb) == state(full.sadb)
        assert fast.keyed == full.keyed
        assert fast.released == full.released


def _twin_stacks() -> tuple[Twin, list[bytes]]:
    """The three requests of a CHILD_SA as `KeyManager._install` sends them for a tunnel
    with NAT-T, lifetimes, ESN and a paired SPI: GETSPI, UPDATE, ADD."""
    twin = Twin(1)
    peer, local = V4
    answer = twin.fast_first(getspi_bytes(peer, local, seq=1, pid=7), 0.0)
    assert isinstance(answer, list)
    spi = getspi_reply_spi(answer[0][0])
    assert spi is not None
    near, far = _endpoint("10.1.0.0", 16), _endpoint("10.2.0.0", 24)
    request = PolicyRequest(0, near, far, near, far, (), 64, 0)
    proposal = EspProposal(20, 256, esn=True)
    lifetimes = Lifetimes(3420, 3960, idle=300)
    key = bytes(range(36))
    inbound = ChildKeys(spi, peer, local, proposal, key, b"")
    outbound = ChildKeys(0x4000, local, peer, proposal, key, b"")
    return twin, [
        keyed_sa_bytes(
            UPDATE, inbound, request, lifetimes, inbound=True, seq=1, pid=7, natt_port=4500
        ),
        keyed_sa_bytes(
            ADD,
            outbound,
            request,
            lifetimes,
            inbound=False,
            seq=1,
            pid=7,
            pair_spi=spi,
            natt_port=4500,
        ),
    ]


def test_what_a_key_manager_sends_takes_the_fast_path() -> None:
    twin, requests = _twin_stacks()
    for request in requests:
        answer = twin.fast_first(request, 0.0)
        assert isinstance(answer, list) and [a[1] for a in answer] == [Audience.ALL]
        assert decode_header(answer[0][0]).errno == 0
    assert twin.taken == 3  # GETSPI, UPDATE and ADD: none fell back
    assert len(twin.sadb) == 2
    for sa in twin.sadb._tables[SaType.ESP]:
        assert sa.state == SaState.MATURE and sa.flags & 0x400  # ESN
        assert sa.natt_rem is not None and sa.natt_rem.port == 4500
        assert sa.idle_add == 300 and sa.hard is not None and sa.hard.addtime == 3960


def test_the_answer_carries_no_key() -> None:
    twin, requests = _twin_stacks()
    key = bytes(range(36))
    for request in requests:
        answer = twin.fast_first(request, 0.0)
        assert isinstance(answer, list)
        assert key in request and key not in answer[0][0]
        kinds = {e.ext_type for e in decode(answer[0][0]).extensions}
        assert not kinds & {ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT}


def test_a_node_without_an_observer_broadcasts_the_fast_answers() -> None:
    broadcast: list[WireReply] = []
    node = Node(
        [], stack=Stack(random_bytes=random.Random(3).randbytes), broadcast=broadcast.extend
    )
    peer, local = V4
    spi = getspi_reply_spi(node.pfkey(getspi_bytes(peer, local, seq=1, pid=7))[0])
    assert spi is not None and broadcast == []  # a GETSPI's answer is the sender's
    keys = ChildKeys(spi, peer, local, EspProposal(20, 128), bytes(20), b"")
    update = keyed_sa_bytes(UPDATE, keys, None, Lifetimes(3420, 3960), inbound=True, seq=2, pid=7)
    answers = node.pfkey(update)
    assert [(r.data, r.audience, r.satype) for r in broadcast] == [
        (answers[0], Audience.ALL, SaType.ESP)
    ]
    assert decode(answers[0]).msg_type == SadbMsgType.UPDATE


def _spoils_of_one_size(request: bytes) -> list[bytes]:
    """The request with one extension's length zeroed, one's type made unknown, or two
    neighbours of one size swapped: the same size, laid out otherwise."""
    found = []
    exts = _extensions(request)
    for off, _ in exts:
        found.append(request[:off] + bytes(2) + request[off + 2 :])
        found.append(request[: off + 2] + (40).to_bytes(2, "little") + request[off + 4 :])
    for (a, a_size), (b, b_size) in itertools.pairwise(exts):
        if a_size == b_size:
            found.append(
                request[:a] + request[b : b + b_size] + request[a:b] + request[b + b_size :]
            )
    return found


def test_every_extension_of_the_usual_requests_resized_or_dropped() -> None:
    """Each extension of a key manager's UPDATE and ADD a word longer, a word shorter,
    dropped or doubled, or laid out otherwise in a message of the same size after one as
    it should be: the fast path answers as the full path does, or leaves it to it."""
    _, requests = _twin_stacks()
    for i, request in enumerate(requests):
        spoiled = []
        for off, size in _extensions(request):
            spoiled += [
                _resized(request, off, size, 1),
                _with_length(request[:off] + request[off + size :]),
                _with_length(request + request[off : off + size]),
            ]
            if size > 8:
                spoiled.append(_resized(request, off, size, -1))
        spoiled += _spoils_of_one_size(request)
        # The same request for an SPI that is not there: laid out as it should be.
        elsewhere = request[:20] + b"\x00\x00\x00\x99" + request[24:]
        for data in spoiled:
            fast, full = _twin_stacks()[0], _twin_stacks()[0]
            for earlier in [*requests[:i], elsewhere]:
                assert fast.fast_first(earlier, 0.0) == full.full(earlier, 0.0)
            assert fast.fast_first(data, 0.0) == full.full(data, 0.0), data.hex()
            assert state(fast.sadb) == state(full.sadb)


def test_lifetimes_an_update_brings_expire_as_on_the_full_path() -> None:
    """A LARVAL SA matured by the fast path has its new, earlier deadlines on the expiry
    wheel: the soft and hard EXPIREs come when the full path's would."""
    peer, local = V4
    expired: list[list[tuple[int, int]]] = []
    for path in ("fast_first", "full"):
        twin = Twin(5)
        answer = getattr(twin, path)(getspi_bytes(peer, local, seq=1, pid=7), 0.0)
        spi = getspi_reply_spi(answer[0][0])
        assert spi is not None
        keys = ChildKeys(spi, peer, local, EspProposal(20, 128), bytes(20), b"")
        update = keyed_sa_bytes(UPDATE, keys, None, Lifetimes(5, 8), inbound=True, seq=2, pid=7)
        assert decode_header(getattr(twin, path)(update, 1.0)[0][0]).errno == 0
        seen = []
        for second in range(2, 10):
            for reply in twin.sadb.age(float(second)):
                if reply.message.msg_type == SadbMsgType.EXPIRE:
                    seen.append((second, int(reply.message.find(ExtType.LIFETIME_HARD) is None)))
        expired.append(seen)
    assert expired[0] == expired[1] == [(5, 1), (8, 0)]  # from the SA's birth at GETSPI


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_fast_path_through_many_requests_of_the_same_shapes(data: st.DataObject) -> None:
    """The kept shapes (`_KeyedShape`, the last GETSPI's) answer every request alike as
    the full path does, among requests of the same sizes that differ elsewhere: another
    address, lifetime or paired SPI, or one byte changed anywhere; and the SADBs end
    alike."""
    seed = data.draw(st.integers(0, 2**32), label="seed")
    fast, full = Twin(seed), Twin(seed)
    larval: list[tuple[int, Any, Any]] = []
    proposal = EspProposal(20, 128)
    plain_getspis = 0
    for seq in range(1, 61):
        peer, local = data.draw(st.sampled_from([V4, V4, (V4[0], ip("192.0.2.9"))]))
        kind = data.draw(st.sampled_from(["getspi", "getspi", "update", "update", "add"]))
        if kind == "getspi":
            request = getspi_bytes(peer, local, seq=seq, pid=7)
        elif kind == "update" and larval:
            spi, peer, local = data.draw(st.sampled_from(larval))
            lifetimes = data.draw(st.sampled_from([Lifetimes(3420, 3960), Lifetimes(3000, 3960)]))
            keys = ChildKeys(spi, peer, local, proposal, bytes([seq]) * 20, b"")
            request = keyed_sa_bytes(UPDATE, keys, None, lifetimes, inbound=True, seq=seq, pid=7)
        else:
            spi = data.draw(st.integers(0x100, 0x140))
            keys = ChildKeys(spi, local, peer, proposal, bytes([seq]) * 20, b"")
            pair = data.draw(st.sampled_from([0, 9]))
            request = keyed_sa_bytes(ADD, keys, None, Lifetimes(3420, 3960), inbound=False,
                                     seq=seq, pid=7, pair_spi=pair)  # fmt: skip
        if data.draw(st.integers(0, 3)) == 3:
            # A byte changed, the size kept: a shape that is not the kept one.
            at = data.draw(st.integers(0, len(request) - 1))
            request = request[:at] + bytes([request[at] ^ 0x41]) + request[at + 1 :]
        elif kind == "getspi":
            plain_getspis += 1  # the usual GETSPI: the fast path takes every one
        now = float(seq)
        got, want = fast.fast_first(request, now), full.full(request, now)
        assert got == want, request.hex()
        if kind == "getspi" and isinstance(want, list) and want:
            spi_got = getspi_reply_spi(want[0][0])
            if spi_got is not None and full.sadb.lookup_inbound(spi_got, local.packed):
                larval.append((spi_got, peer, local))
    assert state(fast.sadb) == state(full.sadb)
    assert fast.keyed == full.keyed
    assert fast.taken >= plain_getspis


def test_getspis_whose_first_spi_is_taken_are_answered_as_the_full_path_answers() -> None:
    """A source of zeros draws the lowest SPI first every time: each GETSPI after the first
    finds it taken (to the same destination: the next SPI is placed; to another one: the
    SPI is shared), the usual GETSPI's insert falls back, and both SADBs end alike."""
    fast, full = Twin(0), Twin(0)
    for twin in (fast, full):
        twin.sadb._random = bytes
    other = ip("192.0.2.3")
    pairs = [V4, V4, (V4[0], other), V4, (V4[0], other)]
    requests = [getspi_bytes(*pair, seq=seq, pid=7) for seq, pair in enumerate(pairs)]
    for seq, request in enumerate(requests):
        got, want = fast.fast_first(request, float(seq)), full.full(request, float(seq))
        assert got == want
    assert fast.taken == len(requests)
    assert state(fast.sadb) == state(full.sadb)
    table = fast.sadb._tables[SaType.ESP]
    assert table.get(0x100, V4[1].packed) is not table.get(0x100, other.packed) is not None
    between = table.between(V4[0].packed, V4[1].packed)
    assert sorted(sa.spi for sa in between) == [0x100, 0x101, 0x102]


def test_a_child_sa_of_two_families_takes_the_fast_path() -> None:
    """A tunnel's CHILD_SA carrying an IPv4 and an IPv6 selector pair (the second in
    X_LARVAL_INNER_PAIRS, RFC 7296 §2.9): its UPDATE and ADD are taken by the fast path,
    answered as the full path answers them, and each SA is found by its inner pairs of
    both families, as the full path's are."""
    fast, full = Twin(3), Twin(3)
    peer, local = V4
    near, far = _endpoint("10.1.0.0", 16), _endpoint("10.2.0.0", 24)
    near6, far6 = _endpoint("2001:db8:1::", 48), _endpoint("2001:db8:2::", 48)
    request = PolicyRequest(0, near, far, near, far, (), 64, 0, ((near6, far6),))
    proposal = EspProposal(20, 256, esn=True)
    key = bytes(range(36))
    getspi = getspi_bytes(peer, local, seq=1, pid=7)
    answer = fast.fast_first(getspi, 0.0)
    assert answer == full.full(getspi, 0.0) and isinstance(answer, list)
    spi = getspi_reply_spi(answer[0][0])
    assert spi is not None
    lifetimes = Lifetimes(3420, 3960)
    requests = [
        keyed_sa_bytes(UPDATE, ChildKeys(spi, peer, local, proposal, key, b""), request,
                       lifetimes, inbound=True, seq=2, pid=7),
        keyed_sa_bytes(ADD, ChildKeys(0x4000, local, peer, proposal, key, b""), request,
                       lifetimes, inbound=False, seq=3, pid=7, pair_spi=spi),
    ]  # fmt: skip
    for request_bytes in requests:
        assert fast.fast_first(request_bytes, 1.0) == full.full(request_bytes, 1.0)
    assert fast.taken == 3  # GETSPI, UPDATE and ADD: none fell back
    assert state(fast.sadb) == state(full.sadb)
    for sa in fast.sadb._tables[SaType.ESP]:
        assert len(sa.inner_more) == 1
    out = fast.sadb.lookup_outbound_inner(
        local.packed, ip("10.1.2.3").packed, ip("10.2.0.9").packed
    )
    out6 = fast.sadb.lookup_outbound_inner(
        local.packed, ip("2001:db8:1::5").packed, ip("2001:db8:2::7").packed
    )
    assert out is not None and out is out6 and out.spi == 0x4000


def test_a_kept_update_shape_then_requests_of_other_sizes() -> None:
    """After UPDATEs alike enough for their shape to be the one kept as the last
    (`FastPath._last_keyed`), an UPDATE with a lifetime dropped (shorter) or doubled
    (longer), and then one alike again (taken by the fast path), are answered as the
    full path answers them."""
    peer, local = V4
    proposal = EspProposal(20, 128)
    fast, full = Twin(11), Twin(11)
    spis = []
    for seq in range(1, 6):
        getspi = getspi_bytes(peer, local, seq=seq, pid=7)
        answer = fast.fast_first(getspi, 0.0)
        assert answer == full.full(getspi, 0.0) and isinstance(answer, list)
        spi = getspi_reply_spi(answer[0][0])
        assert spi is not None
        spis.append(spi)

    def update(spi: int, seq: int) -> bytes:
        keys = ChildKeys(spi, peer, local, proposal, bytes([seq]) * 20, b"")
        return keyed_sa_bytes(UPDATE, keys, None, Lifetimes(3420, 3960), inbound=True,
                              seq=seq, pid=7)  # fmt: skip

    for seq, spi in enumerate(spis[:2], 10):
        assert fast.fast_first(update(spi, seq), 1.0) == full.full(update(spi, seq), 1.0)
    assert UPDATE in fast.fast._last_keyed
    request = update(spis[2], 20)
    off, size = next(e for e in _extensions(request) if e[1] == 32)  # a lifetime
    shorter = _with_length(request[:off] + request[off + size :])
    longer = _with_length(request + request[off : off + size])
    assert fast.fast_first(shorter, 2.0) == full.full(shorter, 2.0)
    assert fast.fast_first(longer, 2.0) == full.full(longer, 2.0)
    taken = fast.taken
    last = update(spis[4], 21)
    assert fast.fast_first(last, 3.0) == full.full(last, 3.0)
    assert fast.taken == taken + 1
    assert state(fast.sadb) == state(full.sadb)
