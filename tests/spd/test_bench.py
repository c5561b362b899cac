"""The SPD benchmark runs and reports its figures (small sizes)."""

from __future__ import annotations

from larval.bench import spd


def test_bench_runs_small() -> None:
    figures = spd.run(n_policies=300, n_lookups=300)
    assert figures["policies"] == 300
    for key in ("lookups_per_s", "lookups_per_s_100_policies", "linear_scan_lookups_per_s"):
        assert figures[key] > 0
    assert figures["hit_ratio"] == 1.0
