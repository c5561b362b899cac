"""`bench sadb` runs its pairs through PF_KEY bytes and reports each figure against its
goal."""

from __future__ import annotations

import gc

from larval.bench import sadb
from larval.sadb.heap import DEFAULT_FREEZE_FROM
from larval.sadb.sa import SecurityAssociation


def test_reports_figures_beside_their_goals() -> None:
    result = sadb.run(n_sas=300, n_lookups=1000)
    assert result["sas"] == 300
    for name, goal in sadb.GOALS.items():
        assert result["goals"][name] == goal
        assert result["ratio_to_goal"][name] == round(result[name] / goal, 2)
    assert result["getspi_update_per_s"] > 0 and result["lookups_per_s"] > 0
    cpu = result["by_cpu_time"]
    assert cpu["getspi_update_per_s"] > 0 and cpu["lookups_per_s"] > 0
    assert result["lookups_per_s_of_kept_ints"] > 0
    assert "4 bytes of an ESP header" in result["note"]


def test_reports_one_aging_pass() -> None:
    result = sadb.run(n_sas=300, n_lookups=100)
    age = result["age_pass_ms"]
    assert set(age) == {"wall", "cpu"} and age["wall"] >= 0 and age["cpu"] >= 0
    assert "one Sadb.age pass" in result["note"]


def test_reports_the_passes_of_the_larval_deadlines() -> None:
    result = sadb.run(n_sas=300, n_lookups=100)
    assert result["larval_deadline_cpu_us_per_sa"] >= 0
    assert "larval_deadline_cpu_us_per_sa" in result["note"]


def test_the_collector_is_put_back_as_it_was() -> None:
    # The run settles the collector as the daemon does; what runs after it does not.
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    sadb.run(n_sas=300, n_lookups=100)
    assert gc.get_threshold() == thresholds
    if not frozen:
        assert gc.get_freeze_count() == 0


def test_the_sadb_is_collected_before_the_run_returns() -> None:
    # Its SAs are in cycles: left to the collector's next full pass, they would be
    # collected in the middle of whatever `bench all` measures next.
    def bench_sas() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is SecurityAssociation)

    gc.collect()  # what earlier tests left, out of the count
    before = bench_sas()
    # Past the SADB's first freeze (`GcFreezer`): its SAs left in the oldest generation.
    sadb.run(n_sas=DEFAULT_FREEZE_FROM + 1000, n_lookups=100)
    assert bench_sas() == before
