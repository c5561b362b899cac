"""The daemon's garbage collector settings: frozen start-up, raised thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.daemon import gc_policy

from .conftest import RunningStack


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Whatever a test changes in the collector is undone for the tests after it."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_settle_freezes_what_lives_and_raises_the_thresholds(restored_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [object() for _ in range(10)]
    gc_policy.settle()
    assert gc.get_threshold() == gc_policy.THRESHOLDS
    assert gc.get_freeze_count() >= len(kept)


def test_settle_takes_other_thresholds(restored_gc: None) -> None:
    gc_policy.settle((1000, 5, 7))
    assert gc.get_threshold() == (1000, 5, 7)


def test_the_running_daemon_has_settled_its_collector(tmp_path: Path, restored_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    stack = RunningStack(tmp_path, settle_gc=True)  # as `larval stack` and `larval run` set it
    stack.start()
    try:
        stack.settle()
        assert gc.get_threshold() == gc_policy.THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        stack.stop()


def test_a_service_inside_another_program_leaves_its_collector_alone(
    tmp_path: Path, restored_gc: None
) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    stack = RunningStack(tmp_path)
    stack.start()
    try:
        stack.settle()
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        stack.stop()
