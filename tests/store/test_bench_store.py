"""`python -m larval.bench store`: its figures are there and make sense."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from larval.bench import store


def test_the_store_benchmark_reports_both_backends() -> None:
    figures = store.run(n_batches=200)
    assert figures["sqlite_batches_per_s"] > 0
    assert figures["sqlite_records_per_s"] == pytest.approx(
        figures["sqlite_batches_per_s"] * 16, rel=0.01
    )
    assert figures["memory_batches_per_s"] > figures["sqlite_batches_per_s"]
    assert 0 < figures["sqlite_write_p50_us"] <= figures["sqlite_write_p99_us"]


def test_it_runs_from_the_command_line() -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(
        [sys.executable, "-m", "larval.bench", "store", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=120,
        check=True,
    )
    assert "sqlite_batches_per_s" in json.loads(out.stdout)
