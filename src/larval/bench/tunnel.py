"""Tunnel benchmark (root): iperf3 TCP through larval↔larval and charon↔charon, measured in
the same run, plus the plain veth between the two namespaces.

Both tunnels use aes128gcm16 with ESP in UDP 4500 between 192.0.2.1 and 192.0.2.2, and
carry 198.51.100.1 ↔ 203.0.113.1. larval is keyed by hand (`larval sa add`), charon by
IKEv2 with a PSK; the key exchange is not measured. Each figure is the median of runs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from larval.bench.charon import Charon, ChildConfig, ConnConfig, charon_available
from larval.net.netns import Netns, veth_pair

OUTER = {"a": "192.0.2.1", "b": "192.0.2.2"}
INNER = {"a": "198.51.100.1", "b": "203.0.113.1"}
NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}
PSK = "larval-bench-psk-0123456789"


def _iperf(client: Netns, server: Netns, dst: str, src: str, seconds: int) -> tuple[float, int]:
    """(Mbit/s received, TCP retransmits) of one iperf3 run from `client` to `server`."""
    srv = server.popen(["iperf3", "-s", "-1", "-B", dst], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        out = client.run(
            ["iperf3", "-c", dst, "-B", src, "-t", str(seconds), "-J"], timeout=seconds + 30
        )
    finally:
        srv.kill()
        srv.wait()
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))


def _pair(tag: str) -> tuple[Netns, Netns]:
    a, b = Netns(f"lbA{tag}"), Netns(f"lbB{tag}")
    a.__enter__()
    try:
        b.__enter__()
    except BaseException:
        a.delete()
        raise
    veth_pair(a, b, f"{OUTER['a']}/24", f"{OUTER['b']}/24")
    for ns in (a, b):
        ns.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])
    return a, b


def _larval(seconds: int, runs: int, workdir: Path) -> dict[str, Any]:
    a, b = _pair(uuid.uuid4().hex[:6])
    try:
        for me, peer, ns in (("a", "b", a), ("b", "a", b)):
            policy = workdir / f"{me}.toml"
            policy.write_text(
                f'[policies.bench]\nlocal_ts = ["{NET[me]}"]\nremote_ts = ["{NET[peer]}"]\n'
                f'mode = "tunnel"\nlocal_addrs = ["{OUTER[me]}"]\n'
                f'remote_addrs = ["{OUTER[peer]}"]\nesp_proposals = ["aes128gcm16"]\n'
            )
            ns.popen(
                [sys.executable, "-m", "larval", "stack",
                 "--pfkey-socket", str(workdir / f"{me}.pfkey"),
                 "--control-socket", str(workdir / f"{me}.control"),
                 "--policy", str(policy), "--tun", "larval0", "--local", OUTER[me],
                 "--tun-address", f"{INNER[me]}/24", "--route", NET[peer],
                 "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not all((workdir / f"{n}.control").exists() for n in "ab"):
            if time.monotonic() > deadline:
                raise RuntimeError("larval stack did not start")
            time.sleep(0.1)
        keys = {"ab": ("0x1001", "11" * 20), "ba": ("0x2002", "22" * 20)}
        for me, ns in (("a", a), ("b", b)):
            for direction, (spi, key) in keys.items():
                src, dst = OUTER[direction[0]], OUTER[direction[1]]
                ns.run([sys.executable, "-m", "larval", "sa", "add",
                        "--socket", str(workdir / f"{me}.pfkey"), "--spi", spi,
                        "--src", src, "--dst", dst, "--alg", "aes128gcm16",
                        "--encrypt-key", key])  # fmt: skip
        results = [_iperf(a, b, INNER["b"], INNER["a"], seconds) for _ in range(runs)]
    finally:
        a.delete()
        b.delete()
    return _summary(results)


def _strongswan(seconds: int, runs: int, workdir: Path) -> dict[str, Any]:
    a, b = _pair(uuid.uuid4().hex[:6])
    charons: list[Charon] = []
    try:
        for me, peer, ns in (("a", "b", a), ("b", "a", b)):
            ns.run(["ip", "address", "add", f"{INNER[me]}/32", "dev", "lo"])
            charon = Charon(ns, workdir / f"charon-{me}")
            charon.write_config(
                ConnConfig(OUTER[me], OUTER[peer], PSK,
                           ChildConfig(NET[me], NET[peer], esp_proposals="aes128gcm16"))
            )  # fmt: skip
            charon.start()
            charons.append(charon)
        charons[0].initiate()
        results = [_iperf(a, b, INNER["b"], INNER["a"], seconds) for _ in range(runs)]
    finally:
        for charon in charons:
            charon.stop()
        a.delete()
        b.delete()
    return _summary(results)


def _veth(seconds: int, runs: int) -> dict[str, Any]:
    a, b = _pair(uuid.uuid4().hex[:6])
    try:
        results = [_iperf(a, b, OUTER["b"], OUTER["a"], seconds) for _ in range(runs)]
    finally:
        a.delete()
        b.delete()
    return _summary(results)


def _summary(results: list[tuple[float, int]]) -> dict[str, Any]:
    return {
        "mbps": round(statistics.median(r[0] for r in results), 1),
        "retransmits": int(statistics.median(r[1] for r in results)),
        "runs": [{"mbps": round(m, 1), "retransmits": r} for m, r in results],
    }


def run(seconds: int = 5, runs: int = 3) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("iperf3") is None:
        return {"skipped": "needs root, network namespaces and iperf3"}
    with tempfile.TemporaryDirectory(prefix="larval-bench-") as tmp:
        workdir = Path(tmp)
        larval = _larval(seconds, runs, workdir)
        strongswan = (
            _strongswan(seconds, runs, workdir)
            if charon_available()
            else {"mbps": None, "retransmits": None, "runs": []}
        )
        veth = _veth(seconds, 1)
    ratio = round(larval["mbps"] / strongswan["mbps"], 2) if strongswan["mbps"] else None
    return {
        "larval_mbps": larval["mbps"],
        "strongswan_mbps": strongswan["mbps"],
        "veth_mbps": veth["mbps"],
        "ratio": ratio,
        "larval_retransmits": larval["retransmits"],
        "strongswan_retransmits": strongswan["retransmits"],
        "runs": {"larval": larval["runs"], "strongswan": strongswan["runs"]},
        "target": {"ratio": 5},
        "note": f"iperf3 TCP, {seconds} s, median of {runs}; aes128gcm16, ESP in UDP 4500",
    }
