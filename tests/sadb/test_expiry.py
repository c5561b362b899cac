"""Aging by the expiry wheel: EXPIREs at the right times and in the order of their
deadlines, for mixes of ADD, UPDATE, DELETE, FLUSH and traffic; and the same EXPIREs as
a walk of every SA gives (the reference below, the aging pass as it was)."""

from __future__ import annotations

import random

import pytest

from larval.pfkey import (
    ExtType,
    PfkeyMessage,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaState,
    SaType,
)
from larval.pfkey.requests import address_pair, by_spi, getspi
from larval.sadb import PfkeyReply, Sadb, SecurityAssociation
from larval.sadb.sa import NEVER_NOTICE, next_state
from tests.sadb.support import LOCAL, LOCAL_B, PEER, PEER_B, add, larval_spi, only, update


def soft(**kw: int) -> SadbLifetime:
    return SadbLifetime(ExtType.LIFETIME_SOFT, **kw)


def hard(**kw: int) -> SadbLifetime:
    return SadbLifetime(ExtType.LIFETIME_HARD, **kw)


def expired(replies: list[PfkeyReply]) -> list[tuple[int, str, int]]:
    """(SPI, which lifetime, state) of each EXPIRE, in order."""
    found = []
    for reply in replies:
        msg = reply.message
        assert msg.msg_type == SadbMsgType.EXPIRE
        sa = msg.find(ExtType.SA)
        assert isinstance(sa, SadbSa)
        which = next(
            name
            for name, t in (
                ("hard", ExtType.LIFETIME_HARD),
                ("soft", ExtType.LIFETIME_SOFT),
                ("idle", ExtType.X_LIFETIME_IDLE),
            )
            if msg.find(t) is not None
        )
        found.append((sa.spi, which, sa.state))
    return found


def tick(sadb: Sadb, start: int, stop: int) -> dict[int, list[tuple[int, str, int]]]:
    """Age once a second from `start` to `stop`: the EXPIREs of each second that had any."""
    out = {}
    for now in range(start, stop + 1):
        got = expired(sadb.age(float(now)))
        if got:
            out[now] = got
    return out


M, Y, D = SaState.MATURE, SaState.DYING, SaState.DEAD


def test_expiries_come_at_their_seconds_in_deadline_order() -> None:
    sadb = Sadb()
    # Added at different times, deadlines interleaved: 0x101 soft 10 hard 25 (added at 0),
    # 0x102 hard 12 (at 1), 0x103 soft 8 hard 9 (at 1.5), 0x104 soft 11 (at 0.5).
    sadb.handle(add(0x101, soft=soft(addtime=10), hard=hard(addtime=25)), 0.0)
    sadb.handle(add(0x104, soft=soft(addtime=11)), 0.5)
    sadb.handle(add(0x102, hard=hard(addtime=12)), 1.0)
    sadb.handle(add(0x103, soft=soft(addtime=8), hard=hard(addtime=9)), 1.5)
    assert tick(sadb, 0, 30) == {
        10: [(0x103, "soft", Y), (0x101, "soft", Y)],  # 9.5 then 10.0
        11: [(0x103, "hard", D)],  # 10.5
        12: [(0x104, "soft", Y)],  # 11.5
        13: [(0x102, "hard", D)],
        25: [(0x101, "hard", D)],
    }
    assert len(sadb) == 1  # 0x104: DYING with no hard lifetime


def test_one_pass_gives_the_expiries_in_the_order_of_their_deadlines() -> None:
    sadb = Sadb()
    for spi, at in ((0x110, 5), (0x111, 2), (0x112, 9), (0x113, 1)):
        sadb.handle(add(spi, hard=hard(addtime=at)), 0.0)
    assert [spi for spi, _, _ in expired(sadb.age(100.0))] == [0x113, 0x111, 0x110, 0x112]


def test_update_brings_a_larval_sas_deadline_closer() -> None:
    sadb = Sadb()
    spi = larval_spi(sadb, now=0.0)  # larval lifetime: 90 s
    sadb.handle(update(spi, soft=soft(addtime=10), hard=hard(addtime=20)), 3.0)
    assert tick(sadb, 0, 100) == {10: [(spi, "soft", Y)], 20: [(spi, "hard", D)]}


def test_update_pushes_a_deadline_later_and_the_early_entry_only_looks() -> None:
    sadb = Sadb()
    sadb.handle(add(0x120, hard=hard(addtime=30)), 0.0)
    msg = PfkeyMessage(
        SadbMsgType.UPDATE,
        SaType.ESP,
        extensions=(SadbSa(0x120, state=M), hard(addtime=60), *address_pair(LOCAL, PEER)),
    )
    assert only(sadb.handle(msg, 5.0)).errno == 0
    assert tick(sadb, 0, 70) == {60: [(0x120, "hard", D)]}


def test_update_removing_lifetimes_leaves_nothing_due() -> None:
    sadb = Sadb()
    spi = larval_spi(sadb, now=0.0)
    assert len(sadb._expiry) == 1  # the larval lifetime
    sadb.handle(update(spi), 1.0)
    assert len(sadb._expiry) == 0  # nothing left to come: off the wheel at once
    assert tick(sadb, 0, 200) == {}
    assert sadb.lookup_inbound(spi, LOCAL_B) is not None


def test_deleted_and_flushed_sas_leave_the_wheel_at_once() -> None:
    sadb = Sadb()
    for spi in (0x130, 0x131, 0x132):
        sadb.handle(add(spi, hard=hard(addtime=50)), 0.0)
    larval = larval_spi(sadb, now=0.0)
    assert len(sadb._expiry) == 4
    assert only(sadb.handle(by_spi(SadbMsgType.DELETE, 0x131, PEER), 1.0)).errno == 0
    assert len(sadb._expiry) == 3
    assert tick(sadb, 0, 49) == {}
    sadb.handle(PfkeyMessage(SadbMsgType.FLUSH, SaType.ESP), 49.5)
    assert len(sadb._expiry) == 0 and len(sadb) == 0
    assert tick(sadb, 50, 100) == {}
    assert sadb.lookup_inbound(larval, LOCAL_B) is None


def test_a_readded_spi_is_aged_by_its_new_lifetimes_only() -> None:
    sadb = Sadb()
    sadb.handle(add(0x140, hard=hard(addtime=10)), 0.0)
    sadb.handle(by_spi(SadbMsgType.DELETE, 0x140, PEER), 1.0)
    sadb.handle(add(0x140, hard=hard(addtime=10)), 5.0)
    assert tick(sadb, 0, 20) == {15: [(0x140, "hard", D)]}


def test_byte_limits_are_noticed_where_traffic_is_counted() -> None:
    sadb = Sadb()
    sadb.handle(add(0x150, soft=soft(bytes=1000), hard=hard(bytes=3000)), 0.0)
    sa = sadb.lookup_inbound(0x150, PEER_B)
    assert sa is not None and sa.notice_at == 1000
    sa.account(999, 1.0)
    assert sadb._expiry.traffic == [] and sadb.age(2.0) == []
    sa.account(1, 2.5)
    assert sadb._expiry.traffic == [sa]
    sa.account(500, 2.6)  # noticed once until the pass
    assert sadb._expiry.traffic == [sa]
    assert expired(sadb.age(3.0)) == [(0x150, "soft", Y)]
    assert sa.notice_at == 3000  # DYING: only the hard limit is left
    sa.account(1499, 4.0)
    assert sadb.age(5.0) == []
    sa.account(1, 5.5)
    assert expired(sadb.age(6.0)) == [(0x150, "hard", D)]


def test_use_time_starts_at_the_first_packet() -> None:
    sadb = Sadb()
    sadb.handle(add(0x160, soft=soft(usetime=10), hard=hard(usetime=20)), 0.0)
    sa = sadb.lookup_inbound(0x160, PEER_B)
    assert sa is not None and sa.notice_at == 0
    assert tick(sadb, 0, 40) == {}
    sa.account(100, 40.2)
    assert sa.notice_at == NEVER_NOTICE
    sa.account(100, 45.0)
    # From 40.2: soft at 50.2, hard at 60.2, each seen by the next pass.
    assert tick(sadb, 41, 80) == {51: [(0x160, "soft", Y)], 61: [(0x160, "hard", D)]}


def test_idle_is_polled_by_its_deadline_and_rearmed_by_the_next_packet() -> None:
    sadb = Sadb()
    idle = SadbLifetime(ExtType.X_LIFETIME_IDLE, usetime=30)
    sadb.handle(add(0x170, extra=(idle,)), 0.0)
    sa = sadb.lookup_inbound(0x170, PEER_B)
    assert sa is not None
    sa.account(10, 20.0)
    sa.account(10, 25.0)
    assert tick(sadb, 0, 100) == {55: [(0x170, "idle", M)]}  # once per quiet spell
    assert sa.notice_at == 0
    sa.account(10, 101.0)
    assert tick(sadb, 101, 200) == {131: [(0x170, "idle", M)]}


def test_sas_without_deadlines_are_not_looked_at() -> None:
    sadb = Sadb()
    for spi in range(0x100, 0x200):
        sadb.handle(add(spi), 0.0)
    sadb.handle(add(0x300, hard=hard(addtime=5)), 0.0)
    assert len(sadb._expiry) == 1
    assert sadb._expiry.take(4.0) == []
    (sa,) = sadb._expiry.take(5.0)
    assert sa.spi == 0x300


# -- against a walk of every SA ---------------------------------------------------------


def walk_age(sadb: Sadb, now: float) -> list[PfkeyReply]:
    """The aging pass as it was: every SA of every table evaluated."""
    replies = []
    for satype, table in sadb._tables.items():
        for sa in table:
            with sa.lock:
                event, which, ext_type = sadb._due(sa, now)
                if event is None and which is None:
                    continue
                was_larval = sa.state == SaState.LARVAL
                if event is not None:
                    sa.state = next_state(sa.state, event)
                if sa.state == SaState.DEAD:
                    sa.drop_held(sadb.counters)
                if which is not None and not was_larval:
                    replies.append(sadb._expire_message(satype, sa, which, ext_type))
            if sa.state == SaState.DEAD:
                sadb._tables[sa.satype].remove(sa)
    return replies


def _lifetimes(rng: random.Random) -> dict[str, object]:
    kw: dict[str, object] = {}
    if rng.random() < 0.6:
        kw["soft"] = soft(
            addtime=rng.choice([0, 5, 20, 40]),
            usetime=rng.choice([0, 0, 7, 15]),
            bytes=rng.choice([0, 0, 300, 900]),
        )
    if rng.random() < 0.6:
        kw["hard"] = hard(
            addtime=rng.choice([0, 30, 45, 60]),
            usetime=rng.choice([0, 0, 20, 25]),
            bytes=rng.choice([0, 0, 1000, 2000]),
        )
    if rng.random() < 0.3:
        kw["extra"] = (
            SadbLifetime(
                ExtType.X_LIFETIME_IDLE,
                addtime=rng.choice([0, 10, 20]),
                usetime=rng.choice([0, 5, 12]),
            ),
        )
    return kw


def _valid(kw: dict[str, object]) -> bool:
    s, h = kw.get("soft"), kw.get("hard")
    if isinstance(s, SadbLifetime) and isinstance(h, SadbLifetime):
        for f in ("addtime", "usetime", "bytes"):
            a, b = getattr(s, f), getattr(h, f)
            if a and b and a > b:
                return False
        for idle in kw.get("extra", ()):  # type: ignore[attr-defined]
            for f in ("addtime", "usetime"):
                i = getattr(idle, f)
                if i and any(getattr(x, f) and i > getattr(x, f) for x in (s, h)):
                    return False
    return True


def _summary(replies: list[PfkeyReply]) -> list[tuple[int, str, int]]:
    return sorted(expired(replies))


@pytest.mark.parametrize("seed", range(12))
def test_the_wheel_expires_what_a_walk_of_every_sa_expires(seed: int) -> None:
    rng = random.Random(seed)
    wheel, walk = Sadb(), Sadb()
    now = 0.0
    spis: list[int] = []
    larval = 0
    for _step in range(300):
        now += rng.choice([0.0, 0.25, 0.5, 1.0, 3.0])
        op = rng.random()
        if op < 0.25:
            spi = rng.randrange(0x1000, 0x1040)
            kw = _lifetimes(rng)
            if not _valid(kw):
                continue
            for sadb in (wheel, walk):
                sadb.handle(add(spi, src=PEER, dst=LOCAL, **kw), now)
            spis.append(spi)
        elif op < 0.35:
            larval += 1
            msg = getspi(PEER, LOCAL, seq=larval, spi_min=0x2000 + larval, spi_max=0x2000 + larval)
            for sadb in (wheel, walk):
                assert only(sadb.handle(msg, now)).errno == 0
            spis.append(0x2000 + larval)
        elif op < 0.5 and spis:
            spi = rng.choice(spis)
            kw = _lifetimes(rng)
            if not _valid(kw):
                continue
            for sadb in (wheel, walk):
                sa = sadb.lookup_inbound(spi, LOCAL_B)
                if sa is not None and sa.state == SaState.LARVAL:
                    sadb.handle(update(spi, **kw), now)  # type: ignore[arg-type]
                else:
                    exts = [e for k in ("soft", "hard") if (e := kw.get(k)) is not None]
                    msg = PfkeyMessage(
                        SadbMsgType.UPDATE,
                        SaType.ESP,
                        extensions=(SadbSa(spi, state=M), *exts, *address_pair(PEER, LOCAL)),  # type: ignore[arg-type]
                    )
                    sadb.handle(msg, now)
        elif op < 0.57 and spis:
            spi = rng.choice(spis)
            for sadb in (wheel, walk):
                sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL), now)
        elif op < 0.59:
            for sadb in (wheel, walk):
                sadb.handle(PfkeyMessage(SadbMsgType.FLUSH, SaType.ESP), now)
        elif op < 0.8 and spis:
            spi = rng.choice(spis)
            nbytes = rng.choice([1, 50, 400])
            for sadb in (wheel, walk):
                sa = sadb.lookup_inbound(spi, LOCAL_B)
                if sa is not None and sa.state != SaState.LARVAL:
                    sa.account(nbytes, now)
        else:
            assert _summary(wheel.age(now)) == _summary(walk_age(walk, now)), (seed, now)
        states = {sa.spi: sa.state for sa in wheel._tables[SaType.ESP]}
        assert states == {sa.spi: sa.state for sa in walk._tables[SaType.ESP]}, (seed, now)


def test_an_sa_dead_by_the_dataplane_leaves_the_wheel() -> None:
    sadb = Sadb()
    sadb.handle(add(0x180, hard=hard(addtime=100)), 0.0)
    sa = sadb.lookup_inbound(0x180, PEER_B)
    assert isinstance(sa, SecurityAssociation)
    (reply,) = sadb.expire_now(sa, 3.0)
    assert reply.message.msg_type == SadbMsgType.EXPIRE
    assert len(sadb._expiry) == 0 and sadb.age(200.0) == []


def test_a_second_is_on_the_wheels_heap_once_however_often_its_bucket_empties() -> None:
    """GETSPI then an UPDATE without lifetimes, again and again in one second: each
    UPDATE empties the second's bucket (nothing is left to come) and the next GETSPI
    makes it again. The heap of seconds keeps that second once, not once a pair; and
    the SAs' larval deadlines still come."""
    sadb = Sadb()
    wheel = sadb._expiry
    for seq in range(1, 201):
        spi = larval_spi(sadb, now=5.25, seq=seq)
        assert only(sadb.handle(update(spi), 5.5)).errno == 0
        assert len(wheel) == 0
    assert wheel._seconds == [95] and wheel._queued == {95}
    larval_spi(sadb, now=5.75, seq=201)  # one left LARVAL: its larval lifetime ends
    assert wheel._seconds == [95] and len(sadb) == 201
    tick(sadb, 94, 94)
    assert len(sadb) == 201
    tick(sadb, 95, 96)
    assert len(sadb) == 200 and len(wheel) == 0
    assert wheel._seconds == [] and wheel._queued == set()
