"""`bench tunnel` with the state store beside it: a short run prints the store's cost,
and the stores the stacks wrote hold their sequence marks and replay checkpoints."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iperf3") is None or shutil.which("ip") is None,
    reason="needs root, iproute2 (network namespaces, TUN) and iperf3",
)
def test_bench_tunnel_prints_the_store_cost_and_the_stores_were_written() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "tunnel", "--seconds", "1", "--runs", "1",
         "--store", "both"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    figures = dict(line[2:].split(": ", 1) for line in lines[1:] if line.startswith("  "))
    assert float(figures["larval_mbps"]) > 0 and float(figures["store_mbps"]) > 0
    assert float(figures["store_ratio"]) > 0 and float(figures["store_cpu_ratio"]) > 0
    # Both stacks' CPU per ESP packet, measured around each iperf3 run.
    assert 0 < float(figures["larval_cpu_us_per_packet"]) < 10_000
    assert 0 < float(figures["store_cpu_us_per_packet"]) < 10_000
    cost = figures["store_cost"]
    assert "Mbit/s on/off" in cost and "CPU/packet on/off" in cost and "goal of 10%" in cost
    assert ast.literal_eval(figures["target"]) == {
        "ratio": 5,
        "store_ratio": 0.9,
        "store_cpu_ratio": 1.1,
    }
    # Each end sent under a mark reserved in its store, and checkpointed its window.
    records = ast.literal_eval(figures["store_records"])
    assert records == {
        "a": {"esp_seq": 1, "esp_replay": 1},
        "b": {"esp_seq": 1, "esp_replay": 1},
    }


def test_bench_tunnel_refuses_an_unknown_store_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "tunnel", "--store", "sometimes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--store: invalid choice: 'sometimes'" in proc.stderr
