"""`SecurityAssociation.account_run` against `account` packet by packet: two SADBs with
the same SA and lifetimes, one told of each packet, the other of each run at once, aged
at the same times; the SAs' counters and byte-limit notices, and the EXPIREs, agree.
`account_each` (one packet each of several SAs in one call), and the compiled calls'
counts in the SAs' C blocks (`seal_handles`, with `counted_held` for the rest, by a
caller holding the SAs' locks) are held to `account` the same way."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import helper
from larval.esp.sa import seal_handles
from larval.pfkey import ExtType, SadbLifetime
from larval.sadb import Sadb, SecurityAssociation
from larval.sadb.sa import account_each, counted_held
from tests.sadb.support import PEER_B, add
from tests.sadb.test_expiry import expired

SPI = 0x180


def _sa(soft_bytes: int, hard_bytes: int, soft_use: int) -> tuple[Sadb, SecurityAssociation]:
    """An inbound SA with these limits (0: none; a soft limit is under the hard one)."""
    sadb, (sa,) = _sas([(soft_bytes, hard_bytes)], soft_use)
    return sadb, sa


def _sas(limits: list[tuple[int, int]], soft_use: int) -> tuple[Sadb, list[SecurityAssociation]]:
    """Inbound SAs in one SADB, SPI after SPI, with these (soft, hard) byte limits."""
    sadb = Sadb()
    sas: list[SecurityAssociation] = []
    for k, (soft_bytes, hard_bytes) in enumerate(limits):
        soft = SadbLifetime(ExtType.LIFETIME_SOFT, bytes=soft_bytes, usetime=soft_use)
        hard = SadbLifetime(ExtType.LIFETIME_HARD, bytes=hard_bytes)
        sadb.handle(add(SPI + k, soft=soft, hard=hard), 0.0)
        sa = sadb.lookup_inbound(SPI + k, PEER_B)
        assert sa is not None
        sas.append(sa)
    return sadb, sas


def _state(sadb: Sadb, sa: SecurityAssociation) -> tuple[object, ...]:
    return (sa.bytes, sa.packets, sa.usetime, sa.lastuse, sa.notice_at, sa.state,
            sadb._expiry.traffic.count(sa))  # fmt: skip


_runs = st.lists(
    st.tuples(st.lists(st.integers(0, 1500), max_size=12), st.booleans()),
    min_size=1, max_size=25,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20_000), st.integers(0, 20_000), st.integers(0, 30), _runs)
def test_a_run_accounts_as_its_packets_do(
    soft_bytes: int, more_bytes: int, soft_use: int, runs: list[tuple[list[int], bool]]
) -> None:
    hard_bytes = soft_bytes + more_bytes if more_bytes else 0
    one, one_sa = _sa(soft_bytes, hard_bytes, soft_use)
    run, run_sa = _sa(soft_bytes, hard_bytes, soft_use)
    for step, (sizes, age) in enumerate(runs):
        now = 1.0 + step
        for size in sizes:
            one_sa.account(size, now)
        run_sa.account_run(sum(sizes), len(sizes), now)
        assert _state(run, run_sa) == _state(one, one_sa)
        if age:
            assert expired(run.age(now + 0.5)) == expired(one.age(now + 0.5))
            assert _state(run, run_sa) == _state(one, one_sa)


def test_a_run_crossing_the_soft_limit_is_noticed_once() -> None:
    sadb, sa = _sa(1000, 3000, 0)
    sa.account_run(999, 3, 1.0)
    assert sadb._expiry.traffic == [] and sa.packets == 3 and sa.usetime == 1.0
    sa.account_run(400, 2, 2.0)  # crosses 1000 within the run
    assert sadb._expiry.traffic == [sa] and sa.bytes == 1399 and sa.lastuse == 2.0
    sa.account_run(2000, 2, 2.5)  # past the hard limit too, before the pass: still once
    assert sadb._expiry.traffic == [sa]
    assert [which for _, which, _ in expired(sadb.age(3.0))] == ["hard"]
    sa.account_run(0, 0, 4.0)  # an empty run changes nothing
    assert sa.packets == 7 and sa.lastuse == 2.5


_limits = st.lists(
    st.tuples(st.integers(0, 6_000), st.integers(0, 6_000)), min_size=1, max_size=6
).map(lambda pairs: [(soft, soft + more if more else 0) for soft, more in pairs])
_singles = st.lists(
    st.tuples(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1500)), max_size=8),
              st.booleans()),
    min_size=1, max_size=25,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_limits, st.integers(0, 30), _singles)
def test_each_accounts_as_its_packets_do(
    limits: list[tuple[int, int]], soft_use: int, steps: list[tuple[list[tuple[int, int]], bool]]
) -> None:
    one, one_sas = _sas(limits, soft_use)
    each, each_sas = _sas(limits, soft_use)
    for step, (packets, age) in enumerate(steps):
        now = 1.0 + step
        picked = [(k % len(limits), size) for k, size in packets]
        for k, size in picked:
            one_sas[k].account(size, now)
        account_each([(each_sas[k], size) for k, size in picked], now)
        assert [_state(each, sa) for sa in each_sas] == [_state(one, sa) for sa in one_sas]
        if age:
            assert expired(each.age(now + 0.5)) == expired(one.age(now + 0.5))
            assert [_state(each, sa) for sa in each_sas] == [_state(one, sa) for sa in one_sas]


def test_each_notices_each_sa_once() -> None:
    sadb, (first, second) = _sas([(1000, 3000), (0, 0)], 0)
    account_each([(first, 999), (second, 5000)], 1.0)
    assert sadb._expiry.traffic == [] and first.packets == 1 and second.bytes == 5000
    account_each([(first, 1), (first, 2500), (second, 1)], 2.0)  # soft, then hard, in one call
    assert sadb._expiry.traffic == [first] and first.packets == 3 and first.lastuse == 2.0
    assert [which for _, which, _ in expired(sadb.age(3.0))] == ["hard"]
    account_each([], 4.0)  # nothing to account changes nothing
    assert first.lastuse == 2.0 and second.packets == 2


def _block(sa: SecurityAssociation) -> Any:
    """A compiled SA block for `sa`, its counts moved there (`attach_life`), numbers
    free to seal: the handle."""
    key, salt = os.urandom(16), os.urandom(4)
    handle = helper.sa_handle(helper.gcm_batch(key, salt, "compiled"), key, salt, sa.spi, False)
    helper.sa_numbers(handle)[1] = 1 << 62
    with sa.lock:
        sa.attach_life(helper.sa_life(handle))
    return handle


@settings(max_examples=200, deadline=None)
@given(
    _limits, st.integers(0, 30), _singles, st.lists(st.booleans(), max_size=40),
    st.integers(0, 25), st.booleans(),
)  # fmt: skip
def test_counted_in_the_block_as_its_packets_are_accounted(
    limits: list[tuple[int, int]],
    soft_use: int,
    steps: list[tuple[list[tuple[int, int]], bool]],
    skipped: list[bool],
    attach_at: int,
    one_in_blocks: bool,
) -> None:
    """`seal_handles` counting in the SAs' blocks, `counted_held` doing the rest (the
    caller holds the SAs' locks; a packet with no handle is not sealed, nor counted),
    against `account` for the packets sealed: the counts, use times, notices (each SA
    once, where its bytes reach the notice) and EXPIREs. The blocks are attached at
    step `attach_at`, after what `account` counted in the SAs themselves (a base the
    blocks add to); `account` itself counts in blocks where `one_in_blocks`."""
    if not helper.built()[0]:
        pytest.skip(f"the compiled ESP helper is {helper.built()[1]}")
    one, one_sas = _sas(limits, soft_use)
    held, held_sas = _sas(limits, soft_use)
    handles: list[Any] = [None] * len(limits)
    kept: list[Any] = []  # the one world's blocks, kept alive
    for step, (packets, age) in enumerate(steps):
        now = 1.0 + step
        if step == attach_at:
            handles = [_block(sa) for sa in held_sas]
            if one_in_blocks:
                kept.extend(_block(sa) for sa in one_sas)
        picked = [(k % len(limits), size) for k, size in packets]
        left = [i < len(skipped) and skipped[i] for i in range(len(picked))]
        for (k, size), out in zip(picked, left, strict=True):
            if not out:
                one_sas[k].account(size, now)
        sas = [held_sas[k] for k, _ in picked]
        if handles[0] is None:
            for (k, size), out in zip(picked, left, strict=True):
                if not out:
                    held_sas[k].account(size, now)
        else:
            locks = {id(sa.lock): sa.lock for sa in sas}.values()
            for lock in locks:
                lock.acquire()
            try:
                noticed: list[int] = []
                made = seal_handles(
                    [None if out else handles[k] for (k, _), out in zip(picked, left, strict=True)],
                    [bytes(size) for _, size in picked], None, noticed,
                )  # fmt: skip
                assert [m is None for m in made] == left
                counted_held(sas, made, noticed, now)
            finally:
                for lock in locks:
                    lock.release()
        assert [_state(held, sa) for sa in held_sas] == [_state(one, sa) for sa in one_sas]
        if age:
            assert expired(held.age(now + 0.5)) == expired(one.age(now + 0.5))
            assert [_state(held, sa) for sa in held_sas] == [_state(one, sa) for sa in one_sas]


def test_a_block_carries_on_from_the_counts_before_it() -> None:
    """Attached after traffic, the block adds to what the SA counted, and the notice
    keeps its place in bytes; set again, it lands where the SA's total says."""
    if not helper.built()[0]:
        pytest.skip(f"the compiled ESP helper is {helper.built()[1]}")
    sadb, sa = _sa(1000, 3000, 0)
    sa.account(600, 1.0)
    handle = _block(sa)
    life = sa.life
    assert life is not None
    assert (sa.bytes, sa.packets, sa.notice_at) == (600, 1, 1000)
    assert life.tolist() == [0, 0, 400]
    noticed: list[int] = []
    with sa.lock:
        made = seal_handles([handle, handle], [bytes(300), bytes(100)], None, noticed)
    assert [len(m or b"") > 0 for m in made] == [True, True] and noticed == [1]
    assert (sa.bytes, sa.packets, sa.notice_at) == (1000, 3, 1 << 64)
    sa.notice_at = 1500
    assert life[2] == 900 and sa.notice_at == 1500
    sa.notice_at = 10  # behind the count already: the next packet is noticed
    assert life[2] == 0 and sa.notice_at == 600
    sa.bytes = 5000
    assert (sa.bytes, life[0]) == (5000, 400)
    sadb._expiry.traffic.clear()
    sa.account(1, 2.0)
    assert sadb._expiry.traffic == [sa] and sa.bytes == 5001 and sa.packets == 4
