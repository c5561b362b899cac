"""`bench tunnel` with the state store beside it: a short run prints the store's cost,
and the stores the stacks wrote hold their sequence marks and replay checkpoints; beside
charon, wireguard-go (TCP) and the UDP case (packets per second delivered and lost)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from larval.bench import tunnel, wireguard
from larval.bench.charon import charon_available
from larval.net.errors import NetError
from larval.net.netns import Netns

ROOT_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None


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
        # Ahead of wireguard-go over TCP, and of both peers in UDP packets per second.
        "wireguard_ratio": 1,
        "udp64_ratio": 1,
        "udp1400_ratio": 1,
        "udp64_wireguard_ratio": 1,
        "udp1400_wireguard_ratio": 1,
    }
    # Each end sent under a mark reserved in its store, and checkpointed its window.
    records = ast.literal_eval(figures["store_records"])
    assert records == {
        "a": {"esp_seq": 1, "esp_replay": 1},
        "b": {"esp_seq": 1, "esp_replay": 1},
    }
    # wireguard-go beside larval, TCP, when it is installed (CI installs it).
    if wireguard.available():
        assert float(figures["wireguard_mbps"]) > 0
        assert float(figures["wireguard_ratio"]) > 0
        assert int(figures["wireguard_retransmits"]) >= 0
    # The UDP case: packets delivered through larval (and libipsec, wireguard-go) at each
    # size, and the ratios.
    peers = ["larval"]
    if charon_available():
        peers.append("strongswan")
    if wireguard.available():
        peers.append("wireguard")
    for size in (64, 1400):
        for peer in peers:
            assert float(figures[f"udp{size}_{peer}_pps"]) > 0
            assert float(figures[f"udp{size}_{peer}_lost_pps"]) >= 0
        if "strongswan" in peers:
            assert float(figures[f"udp{size}_ratio"]) > 0
        if "wireguard" in peers:
            assert float(figures[f"udp{size}_wireguard_ratio"]) > 0


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iperf3") is None or shutil.which("ip") is None,
    reason="needs root, iproute2 (network namespaces, TUN) and iperf3",
)
def test_bench_tunnel_udp_only_gives_the_udp_case_and_each_gateways_cpu() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "tunnel", "--udp-only", "--udp-size", "1400",
         "--seconds", "1", "--runs", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    figures = dict(line[2:].split(": ", 1) for line in lines[1:] if line.startswith("  "))
    assert "larval_mbps" not in figures and "udp64_larval_pps" not in figures  # no TCP, one size
    assert float(figures["udp1400_larval_pps"]) > 0
    assert ast.literal_eval(figures["udp1400_larval_runs_pps"])[0] > 0
    assert 0 < float(figures["udp1400_sender_cpu_us"]) < 100_000
    assert 0 < float(figures["udp1400_receiver_cpu_us"]) < 100_000
    if wireguard.available():
        assert float(figures["udp1400_wireguard_pps"]) > 0
        assert float(figures["udp1400_wireguard_ratio"]) > 0
    if charon_available():
        assert float(figures["udp1400_strongswan_pps"]) > 0


def test_bench_tunnel_refuses_an_unknown_store_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larval.bench", "tunnel", "--store", "sometimes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--store: invalid choice: 'sometimes'" in proc.stderr


def _udp_json(packets: int, lost: int, seconds: float) -> dict[str, object]:
    received = {"seconds": seconds, "packets": packets, "lost_packets": lost}
    sent = {"seconds": seconds, "packets": packets, "lost_packets": 0}
    return {"end": {"sum": dict(received), "sum_sent": sent, "sum_received": received}}


def test_udp_rates_are_the_receivers_delivered_and_lost_packets_per_second() -> None:
    assert tunnel._udp_rates(_udp_json(10_000, 4_000, 2.0)) == (3_000.0, 2_000.0)
    # iperf3 before 3.11 has only `sum`, the receiver's.
    old = _udp_json(10_000, 4_000, 2.0)
    del old["end"]["sum_received"]  # type: ignore[attr-defined]
    assert tunnel._udp_rates(old) == (3_000.0, 2_000.0)
    # Reordering can make iperf3 count fewer than none lost; none is what was lost.
    assert tunnel._udp_rates(_udp_json(100, -3, 1.0)) == (100.0, 0.0)


def test_udp_rates_refuse_a_run_of_no_time() -> None:
    with pytest.raises(ValueError, match="no time"):
        tunnel._udp_rates(_udp_json(10, 0, 0.0))


def test_udp_figures_give_each_pair_and_the_ratios_and_none_for_what_did_not_run() -> None:
    larval = {"64": {"pps": 300, "lost_pps": 10}, "1400": {"pps": 90, "lost_pps": 0}}
    charon = {"64": {"pps": 100, "lost_pps": 50}, "1400": {"pps": 60, "lost_pps": 7}}
    figures = tunnel.udp_figures(larval, charon, {})
    assert figures["udp64_larval_pps"] == 300 and figures["udp64_larval_lost_pps"] == 10
    assert figures["udp64_strongswan_pps"] == 100
    assert figures["udp1400_strongswan_lost_pps"] == 7
    assert figures["udp64_ratio"] == 3.0 and figures["udp1400_ratio"] == 1.5
    # wireguard-go not installed: its figures and ratios are None, not an error.
    assert figures["udp64_wireguard_pps"] is None
    assert figures["udp64_wireguard_ratio"] is None
    assert figures["udp1400_wireguard_ratio"] is None
    # A peer that delivered nothing gives no ratio rather than a division by zero.
    assert tunnel.udp_figures(larval, {"64": {"pps": 0, "lost_pps": 9}}, {})["udp64_ratio"] is None


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def _wireguard_pids() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "wireguard-go":
                    found.add(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.skipif(
    not ROOT_NETNS or not wireguard.available(),
    reason="needs root, iproute2 (network namespaces, TUN), wireguard-go and wg",
)
def test_a_wireguard_pair_that_fails_to_configure_leaves_no_namespace_process_or_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    pair = tunnel._pair

    def recorded(tag: str) -> tuple[Netns, Netns]:
        a, b = pair(tag)
        made.extend((a.name, b.name))
        return a, b

    monkeypatch.setattr(tunnel, "_pair", recorded)
    before_pids = _wireguard_pids()
    before_socks = set(os.listdir(wireguard.SOCKET_DIR)) if wireguard.SOCKET_DIR.exists() else set()
    # `wg set` refuses the port, with both wireguard-go ends already running.
    monkeypatch.setattr(wireguard, "PORT", "no-port")
    with pytest.raises(NetError, match="wg set"):
        tunnel._wireguard(1, 1, tmp_path)
    assert len(made) == 2 and not set(made) & _namespaces()
    assert _wireguard_pids() <= before_pids
    after_socks = set(os.listdir(wireguard.SOCKET_DIR)) if wireguard.SOCKET_DIR.exists() else set()
    assert after_socks <= before_socks
    # No private key was left behind in the work directory.
    assert not list(tmp_path.glob("wg-*.key"))


@pytest.mark.skipif(
    not ROOT_NETNS or not wireguard.available() or shutil.which("ping") is None,
    reason="needs root, iproute2 (network namespaces, TUN), ping, wireguard-go and wg",
)
def test_a_wireguard_pair_carries_the_inner_networks_at_the_tunnels_mtu(tmp_path: Path) -> None:
    a, b = tunnel._pair("wgt" + os.urandom(2).hex())
    pair = None
    try:
        pair = wireguard.WireguardPair(a, b, tunnel.OUTER, tunnel.INNER, tunnel.NET, tmp_path)
        pids = {proc.pid for proc in pair.procs}
        assert len(pids) == 2 and pids <= _wireguard_pids()
        for end, ns in (("a", a), ("b", b)):
            link = ns.run(["ip", "-o", "link", "show", pair.names[end]])
            assert " mtu 1400 " in link
        # Through the tunnel: from a's inner address to b's, which only wireguard-go routes.
        a.run(["ping", "-c", "2", "-W", "2", "-I", tunnel.INNER["a"], tunnel.INNER["b"]])
        # The private keys were written for `wg set` only.
        assert not list(tmp_path.glob("wg-*.key"))
    finally:
        if pair is not None:
            pair.stop()
        a.delete()
        b.delete()
    assert pair is not None
    assert not any((wireguard.SOCKET_DIR / f"{n}.sock").exists() for n in pair.names.values())
    # Both wireguard-go processes ended (`ip netns exec` execs them: the pids are theirs).
    assert not pids & _wireguard_pids()
