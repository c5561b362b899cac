"""How `bench ike` and `bench tunnel` give what the state store costs: on/off of paired
runs, against the goal of under 10%."""

from __future__ import annotations

import pytest

from larval.bench import store_cost
from larval.bench.stored_stack import main as stored_stack


def test_modes_say_which_runs_are_made() -> None:
    assert store_cost.wants("off") == (True, False)
    assert store_cost.wants("on") == (False, True)
    assert store_cost.wants("both") == (True, True)
    assert store_cost.wants("etcd") == (True, True)  # both, the store in etcd
    with pytest.raises(ValueError, match="--store 'redis': one of off, on, both, etcd"):
        store_cost.wants("redis")


def test_ratio_is_the_median_of_paired_runs() -> None:
    # Runs are paired by their order: a slow round slows both of its runs alike.
    assert store_cost.ratio([100.0, 50.0, 80.0], [95.0, 45.0, 80.0]) == 0.95
    # A run that did not finish (None, 0) pairs with nothing.
    assert store_cost.ratio([100.0, None], [90.0, 70.0]) == 0.9
    assert store_cost.ratio([0.0], [1.0]) is None
    assert store_cost.ratio([], []) is None


def test_summary_states_the_cost_against_the_goal() -> None:
    rate = store_cost.summary("IKE SAs/s", [400.0, 420.0], [380.0, 378.0], True)
    assert rate["ratio"] == 0.925
    assert rate["cost"] == "IKE SAs/s on/off 0.925: +7.5% cost, within the goal of 10% (2 runs)"
    cpu = store_cost.summary("CPU/IKE SA", [2.0], [2.5], False)
    assert cpu == {
        "ratio": 1.25,
        "cost": "CPU/IKE SA on/off 1.250: +25.0% cost, above the goal of 10% (1 runs)",
    }
    none = store_cost.summary("Mbit/s", [None], [300.0], True)
    assert none == {"ratio": None, "cost": "Mbit/s: not measured both ways"}


def test_stored_stack_without_a_state_path_says_how_it_is_called(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert stored_stack([]) == 2
    assert "python -m larval.bench.stored_stack STATE" in capsys.readouterr().err
