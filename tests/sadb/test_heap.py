"""`GcFreezer`: the collector's view is frozen at the thresholds, and only there; the SADB
calls it as it grows, and freed SAs are still freed."""

from __future__ import annotations

import gc
import itertools
import weakref

import pytest

from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SadbSa, SaType
from larval.pfkey.requests import by_spi, getspi, keyed
from larval.sadb import GcFreezer, Sadb
from larval.sadb.heap import DEFAULT_FREEZE_FROM, DEFAULT_GROWTH

from .support import LOCAL, PEER


class Tracked:
    """Stands in the SA's dataplane slot: it goes when the SA goes."""


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_freezes_from_the_first_threshold_then_at_each_growth() -> None:
    count = Counter()
    freezer = GcFreezer(freeze_from=100, growth=1.25, freeze=count)
    frozen_at = [n for n in range(1, 1000) if freezer.grown(n)]
    assert frozen_at == [100, 126, 158, 198, 248, 311, 389, 487, 609, 762, 953]
    assert count.calls == freezer.freezes == len(frozen_at)
    # Each threshold is past the count of the last freeze by the growth factor.
    for before, after in itertools.pairwise(frozen_at):
        assert after == int(before * 1.25) + 1


def test_the_defaults_are_65536_and_a_quarter() -> None:
    count = Counter()
    freezer = GcFreezer(freeze=count)
    assert (DEFAULT_FREEZE_FROM, DEFAULT_GROWTH) == (65_536, 1.25)
    assert not freezer.grown(65_535)
    assert freezer.grown(65_536)
    assert not freezer.grown(81_920)
    assert freezer.grown(81_921)
    assert count.calls == 2


def test_a_shrunken_sadb_freezes_no_earlier_than_the_first_threshold() -> None:
    count = Counter()
    freezer = GcFreezer(freeze_from=100, growth=2.0, freeze=count)
    assert freezer.grown(100) and freezer.next_at == 201
    assert not freezer.grown(50)
    assert freezer.grown(201)
    assert count.calls == 2


@pytest.mark.parametrize(("start", "growth"), [(0, 1.25), (100, 1.0), (100, 0.5)])
def test_refuses_thresholds_that_would_freeze_on_every_insert(start: int, growth: float) -> None:
    with pytest.raises(ValueError, match="need"):
        GcFreezer(freeze_from=start, growth=growth)


def _fill(sadb: Sadb, n: int) -> list[int]:
    spis = []
    for seq in range(n):
        [reply] = sadb.handle(getspi(PEER, LOCAL, seq=seq), 0.0)
        sa_ext = reply.message.extensions[0]
        assert isinstance(sa_ext, SadbSa) and reply.message.errno == 0
        spis.append(sa_ext.spi)
    return spis


def test_the_sadb_freezes_as_getspi_and_add_fill_it() -> None:
    count = Counter()
    sadb = Sadb(gc_freezer=GcFreezer(freeze_from=10, growth=2.0, freeze=count))
    _fill(sadb, 9)
    assert count.calls == 0
    _fill(sadb, 1)
    assert count.calls == 1  # 10 SAs
    _fill(sadb, 10)
    assert count.calls == 1  # the next at 21
    add = keyed(SadbMsgType.ADD, 0x5000, PEER, LOCAL, encrypt=EncryptAlg.AES_GCM_16,
                encrypt_key=bytes(20))  # fmt: skip
    [reply] = sadb.handle(add, 0.0)
    assert reply.message.errno == 0 and len(sadb) == 21
    assert count.calls == 2


def test_without_a_freezer_the_collector_is_left_alone() -> None:
    assert Sadb().gc_freezer is None
    before = gc.get_freeze_count()
    _fill(Sadb(), 50)
    assert gc.get_freeze_count() == before


def test_frozen_sas_are_still_freed_when_deleted() -> None:
    sadb = Sadb(gc_freezer=GcFreezer(freeze_from=5, growth=2.0))
    try:
        _fill(sadb, 5)
        assert gc.get_freeze_count() > 0
        sa = next(iter(sadb._tables[3]))
        tracked = Tracked()
        sa.transform = tracked
        gone = weakref.ref(tracked)
        spi = sa.spi
        del sa, tracked
        delete = by_spi(SadbMsgType.DELETE, spi, LOCAL, PEER)
        [reply] = sadb.handle(delete, 0.0)
        assert reply.message.errno == 0
        del reply
        assert gone() is None  # by reference counting, no collection needed
    finally:
        gc.unfreeze()


def test_unfreezes_only_well_below_the_last_freeze() -> None:
    frozen, thawed = Counter(), Counter()
    freezer = GcFreezer(freeze_from=100, growth=1.25, freeze=frozen, shrink=0.5, unfreeze=thawed)
    assert not freezer.shrunk(0)  # nothing frozen: nothing to undo
    assert freezer.grown(200) and freezer.unfreeze_at == 100
    # Shrinking a little, or back under the first threshold but above half, keeps it.
    assert not any(freezer.shrunk(n) for n in range(199, 100, -1))
    assert thawed.calls == 0
    assert freezer.shrunk(100)
    assert thawed.calls == freezer.unfreezes == 1 and freezer.unfreeze_at == -1
    assert not freezer.shrunk(10)  # once per freeze
    # The next freeze waits for growth again: a quarter past the size at the unfreeze,
    # and never before the first threshold.
    assert freezer.next_at == 126
    assert not freezer.grown(125) and freezer.grown(126)
    assert frozen.calls == 2 and freezer.unfreeze_at == 63


def test_unfreeze_after_a_shrink_to_below_the_first_threshold() -> None:
    freezer = GcFreezer(freeze_from=100, growth=2.0, freeze=Counter(), unfreeze=Counter())
    assert freezer.grown(100)
    assert freezer.shrunk(20)
    assert freezer.next_at == 100


@pytest.mark.parametrize("shrink", [0.0, 1.0, 1.5, -0.5])
def test_refuses_an_unfreeze_threshold_outside_the_freeze(shrink: float) -> None:
    with pytest.raises(ValueError, match="need"):
        GcFreezer(freeze_from=100, shrink=shrink)


def test_the_sadb_unfreezes_when_deletes_shrink_it() -> None:
    frozen, thawed = Counter(), Counter()
    sadb = Sadb(gc_freezer=GcFreezer(freeze_from=10, growth=2.0, freeze=frozen, unfreeze=thawed))
    spis = _fill(sadb, 12)
    assert frozen.calls == 1 and thawed.calls == 0  # frozen at 10: undone at 5
    for spi in spis[:7]:  # down to 5 SAs
        [reply] = sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL, PEER), 0.0)
        assert reply.message.errno == 0
        assert thawed.calls == (1 if len(sadb) <= 5 else 0)
    for spi in spis[7:]:
        sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL, PEER), 0.0)
    assert thawed.calls == 1 and len(sadb) == 0
    # Unfrozen at 5 SAs: the next freeze at twice that plus one.
    _fill(sadb, 10)
    assert frozen.calls == 1
    _fill(sadb, 1)
    assert frozen.calls == 2


def test_a_flushed_sadb_gives_the_heap_back_to_the_collector() -> None:
    sadb = Sadb(gc_freezer=GcFreezer(freeze_from=5, growth=2.0))
    try:
        _fill(sadb, 6)
        assert gc.get_freeze_count() > 0
        [reply] = sadb.handle(PfkeyMessage(SadbMsgType.FLUSH, SaType.ESP), 0.0)
        assert reply.message.errno == 0 and len(sadb) == 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
