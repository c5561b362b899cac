"""`bench tunnel --sas` and `bench ike --established`: small real runs, every figure
there and of the right sign (speed is the benchmarks' to report, not asserted here)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from larval.bench import udp_spread
from larval.bench.charon import charon_available

ROOT = os.geteuid() == 0 and shutil.which("ip") is not None


def test_spread_destinations_are_consecutive_and_counted() -> None:
    assert udp_spread.destinations("10.2.0.254", 4) == [
        "10.2.0.254", "10.2.0.255", "10.2.1.0", "10.2.1.1"]  # fmt: skip
    with pytest.raises(ValueError, match="at least 1"):
        udp_spread.destinations("10.2.0.1", 0)


def test_spread_send_stops_after_its_packets_however_long_the_pacing_sleeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm pass gives every destination one packet: a paced send with `packets`
    sends exactly that many, round-robin, even when each sleep of the pacing overruns
    the whole time given (as on a loaded machine), and stops there."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    clock = [0.0]
    monkeypatch.setattr(udp_spread.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(udp_spread.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + 1))
    try:
        port = sink.getsockname()[1]
        result = udp_spread.send("127.0.0.1", "127.0.0.1", 1, port, 30.0, 8, rate=100, packets=7)
        assert result["sent"] == 7 and result["refused"] == 0
        got = [sink.recv(64) for _ in range(7)]
        assert got == [bytes(8)] * 7
        sink.setblocking(False)
        with pytest.raises(BlockingIOError):
            sink.recv(64)
    finally:
        sink.close()
    # Without `packets`, the time given ends it: the old cut, for comparison.
    clock[0] = 0.0
    cut = udp_spread.send("127.0.0.1", "127.0.0.1", 1, port, 0.5, 8, rate=100)
    assert cut["sent"] == 1


def _bench(*argv: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", *argv, "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.mark.skipif(not ROOT, reason="needs root and iproute2 (network namespaces, TUN)")
def test_bench_tunnel_sas_every_sa_carries_traffic() -> None:
    result = _bench("tunnel", "--sas", "50", "--seconds", "1", "--runs", "1")
    assert result["sas"] == 50
    # The receiver counted the datagrams of each of the 50 SAs (b's SADB says so).
    assert result["sas_warmed"] == result["sas_with_traffic"] == 50
    for key in ("mbps", "one_sa_mbps", "pps", "one_sa_pps", "ratio", "cpu_us_per_packet",
                "one_sa_cpu_us_per_packet", "install_sas_per_s",
                "warm_s"):  # fmt: skip
        assert isinstance(result[key], int | float) and result[key] > 0, key
    assert result["target"] == {"ratio": 0.9}
    runs = result["runs"]
    assert isinstance(runs, dict) and len(runs["one"]) == len(runs["many"]) == 1


@pytest.mark.skipif(not ROOT, reason="needs root and iproute2 (a network namespace, UDP 500)")
def test_bench_ike_established_reports_memory_rate_and_status() -> None:
    result = _bench("ike", "--established", "20", "--next-setups", "20")
    larval = result["larval"]
    assert isinstance(larval, dict)
    # All 40 IKE_SAs are listed by `larval status --json`.
    assert larval["status_ike_sas"] == 40
    assert larval["established"] == 20 and larval["more"] == 20 and "incomplete" not in larval
    assert result["next_ike_sa_per_s"] > 0 and larval["next_cpu_ms_per_ike_sa"] > 0  # type: ignore[operator]
    assert result["status_s"] > 0  # type: ignore[operator]
    rss = larval["rss_per_ike_sa"]
    assert set(rss) == {"initiator", "responder", "mean"}
    assert all(isinstance(v, int) for v in rss.values())
    assert result["target"] == {"next_ratio": 1.5}
    if charon_available():
        charon = result["strongswan"]
        assert isinstance(charon, dict) and charon["status_ike_sas"] == 40
        assert result["strongswan_next_ike_sa_per_s"] > 0  # type: ignore[operator]
        assert result["next_ratio"] > 0  # type: ignore[operator]
        assert isinstance(result["strongswan_rss_per_ike_sa"], int)
