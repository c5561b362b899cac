"""`bench ra` with a few road warriors: every one connects by EAP-MSCHAPv2 and holds a
lease of the gateway's pool, and the figures are there and sane."""

from __future__ import annotations

import json
import subprocess
import sys

from larval.bench import ra


def test_every_road_warrior_connects_and_holds_a_lease() -> None:
    figures = ra.run(n=12, in_flight=4, queries=2)
    assert figures["clients"] == figures["connected"] == figures["leases_online"] == 12
    assert figures["failed"] == 0
    assert figures["setups_per_s"] > 0
    rss = figures["gateway_rss_kib"]
    assert 0 < rss["before"] <= rss["after"]
    assert figures["gateway_rss_kib_per_client"] >= 0
    assert figures["status_ms"] > 0 and figures["pools_ms"] > 0
    # The rendered status names each IKE SA and its user; pools lists each lease.
    assert figures["status_text_bytes"] > 12 * 100
    assert figures["pools_text_bytes"] > 12 * 40
    assert "VmRSS" in figures["note"]


def test_bench_ra_from_the_command_line_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "ra", "--clients", "5", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["connected"] == 5 and figures["setups_per_s"] > 0
    text = subprocess.run(
        [sys.executable, "-m", "larval.bench", "ra", "--clients", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "ra:\n  clients: 3\n  connected: 3\n" in text.stdout
    assert "  setups_per_s: " in text.stdout and "  status_ms: " in text.stdout
