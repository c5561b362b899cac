"""Tunnel benchmark (root): iperf3 TCP through larval↔larval and charon↔charon, measured in
the same run, plus the plain veth between the two namespaces.

Both tunnels use aes128gcm16 with ESP in UDP 4500 between 192.0.2.1 and 192.0.2.2, and
carry 198.51.100.1 ↔ 203.0.113.1. larval is keyed by hand (`larval sa add`), charon by
IKEv2 with a PSK; the key exchange is not measured. Each figure is the median of runs.

The state store: with ``--store both`` (the default) a second larval pair runs beside the
first, each stack keeping its state as `larval run` does with ``[daemon] state``
(`larval.bench.stored_stack`): outbound sequence numbers reserved in blocks before use,
replay windows checkpointed, in an SQLite store under a fresh key. Both pairs are up at
once and their iperf3 runs alternate; the cost is on/off of the throughput
(`larval.bench.store_cost`), and the records each store held at the end are reported.
"""

from __future__ import annotations

import contextlib
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

from larval.bench import store_cost
from larval.bench.charon import Charon, ChildConfig, ConnConfig, charon_available
from larval.net.control import control_request
from larval.net.netns import Netns, veth_pair
from larval.store.sqlite import open_store

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


class _LarvalPair:
    """Two larval stacks in two namespaces, keyed by hand, ready for iperf3; `state`: a
    directory for each end's state store (the store on), None for none."""

    def __init__(self, workdir: Path, state: Path | None = None) -> None:
        self.workdir = workdir
        self.state = state
        self.pids: list[int] = []  # the two stacks' (`ip netns exec` execs them)
        #: Each iperf3 run's CPU of both stacks per ESP packet a sent, µs.
        self.cpu_us_per_packet: list[float] = []
        self.a, self.b = _pair(uuid.uuid4().hex[:6])
        try:
            self._start()
        except BaseException:
            self.delete()
            raise

    def _start(self) -> None:
        workdir = self.workdir
        for me, peer, ns in (("a", "b", self.a), ("b", "a", self.b)):
            policy = workdir / f"{me}.toml"
            policy.write_text(
                f'[policies.bench]\nlocal_ts = ["{NET[me]}"]\nremote_ts = ["{NET[peer]}"]\n'
                f'mode = "tunnel"\nlocal_addrs = ["{OUTER[me]}"]\n'
                f'remote_addrs = ["{OUTER[peer]}"]\nesp_proposals = ["aes128gcm16"]\n'
            )
            command = [sys.executable, "-m", "larval", "stack"]
            if self.state is not None:
                command = [sys.executable, "-m", "larval.bench.stored_stack",
                           str(self.state / me / "state.db")]  # fmt: skip
            proc = ns.popen(
                [*command,
                 "--pfkey-socket", str(workdir / f"{me}.pfkey"),
                 "--control-socket", str(workdir / f"{me}.control"),
                 "--policy", str(policy), "--tun", "larval0", "--local", OUTER[me],
                 "--tun-address", f"{INNER[me]}/24", "--route", NET[peer],
                 "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.pids.append(proc.pid)
        deadline = time.monotonic() + 20
        while not all((workdir / f"{n}.control").exists() for n in "ab"):
            if time.monotonic() > deadline:
                raise RuntimeError("larval stack did not start")
            time.sleep(0.1)
        keys = {"ab": ("0x1001", "11" * 20), "ba": ("0x2002", "22" * 20)}
        for me, ns in (("a", self.a), ("b", self.b)):
            for direction, (spi, key) in keys.items():
                src, dst = OUTER[direction[0]], OUTER[direction[1]]
                ns.run([sys.executable, "-m", "larval", "sa", "add",
                        "--socket", str(workdir / f"{me}.pfkey"), "--spi", spi,
                        "--src", src, "--dst", dst, "--alg", "aes128gcm16",
                        "--encrypt-key", key])  # fmt: skip

    def iperf(self, seconds: int) -> tuple[float, int]:
        """One iperf3 run from a to b; its CPU per packet is kept."""
        cpu, sent = self._cpu(), self._sent()
        result = _iperf(self.a, self.b, INNER["b"], INNER["a"], seconds)
        packets = self._sent() - sent
        if packets > 0:
            self.cpu_us_per_packet.append(round((self._cpu() - cpu) * 1e6 / packets, 2))
        return result

    def _cpu(self) -> float:
        """utime + stime of both stacks, every thread (proc(5)), seconds."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def _sent(self) -> int:
        """ESP packets a sent, from its status."""
        status = control_request(str(self.workdir / "a.control"), {"op": "status"})
        return int(status.get("packets", {}).get("sent", 0))

    def delete(self) -> None:
        """Stop both stacks (SIGTERM: their last checkpoints are written) and the
        namespaces."""
        self.a.delete()
        self.b.delete()

    def records(self) -> dict[str, dict[str, int]]:
        """Once deleted: each end's store's records by kind, as a restart would find them."""
        if self.state is None:
            return {}
        found = {}
        for me in "ab":
            store = open_store(self.state / me / "state.db").store
            try:
                found[me] = {kind: len(keys) for kind, keys in store.load().items()}
            finally:
                store.close()
        return found


def _larval(
    seconds: int, runs: int, workdir: Path, store: str = "off"
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """iperf3 through the larval pair with the state store off and on (`store`,
    `larval.bench.store_cost`), both pairs up at once and their runs alternated; the
    summary of each that ran, the store's with the records it held at the end."""
    off, on = store_cost.wants(store)
    pairs: dict[str, _LarvalPair] = {}
    results: dict[str, list[tuple[float, int]]] = {"off": [], "on": []}
    try:
        if off:
            (workdir / "off").mkdir()
            pairs["off"] = _LarvalPair(workdir / "off")
        if on:
            (workdir / "on").mkdir()
            pairs["on"] = _LarvalPair(workdir / "on", workdir / "on" / "state")
        for _ in range(runs):
            for which, pair in pairs.items():
                results[which].append(pair.iperf(seconds))
    finally:
        for pair in pairs.values():
            pair.delete()
    summaries: dict[str, dict[str, Any]] = {}
    for which, pair in pairs.items():
        summaries[which] = _summary(results[which])
        per_packet = pair.cpu_us_per_packet
        summaries[which]["cpu_us_per_packet"] = (
            round(statistics.median(per_packet), 2) if per_packet else None
        )
        summaries[which]["cpu_us_per_packet_runs"] = per_packet
    if on:
        summaries["on"]["records"] = pairs["on"].records()
    return summaries.get("off"), summaries.get("on")


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


def run(seconds: int = 5, runs: int = 3, store: str = "both") -> dict[str, Any]:
    """The larval pair (with the state store `store`: off, on or both), the strongSwan
    pair and the veth."""
    store_cost.wants(store)  # ValueError before anything is made
    etcd = store == "etcd"
    if etcd:
        store = "off"  # bench ike measures etcd (larval.bench.store_cost)
    off, on = store_cost.wants(store)
    if os.geteuid() != 0 or shutil.which("iperf3") is None:
        return {"skipped": "needs root, network namespaces and iperf3"}
    with tempfile.TemporaryDirectory(prefix="larval-bench-") as tmp:
        workdir = Path(tmp)
        plain, stored = _larval(seconds, runs, workdir, store)
        strongswan = (
            _strongswan(seconds, runs, workdir)
            if charon_available()
            else {"mbps": None, "retransmits": None, "runs": []}
        )
        veth = _veth(seconds, 1)
    larval = plain or stored
    assert larval is not None
    ratio = round(larval["mbps"] / strongswan["mbps"], 2) if strongswan["mbps"] else None
    figures: dict[str, Any] = {
        "larval_mbps": larval["mbps"],
        "strongswan_mbps": strongswan["mbps"],
        "veth_mbps": veth["mbps"],
        "ratio": ratio,
        "larval_cpu_us_per_packet": larval["cpu_us_per_packet"],
    }
    if stored is not None:
        cost = store_cost.summary(
            "Mbit/s",
            [m for m, _ in _pairs_of(plain)],
            [m for m, _ in _pairs_of(stored)],
            True,
        )
        cpu = store_cost.summary(
            "CPU/packet",
            plain["cpu_us_per_packet_runs"] if plain else [],
            stored["cpu_us_per_packet_runs"],
            False,
        )
        figures.update(
            store_mbps=stored["mbps"],
            store_cpu_us_per_packet=stored["cpu_us_per_packet"],
            store_ratio=cost["ratio"],
            store_cpu_ratio=cpu["ratio"],
            store_cost=f"{cost['cost']}; {cpu['cost']}",
            store_retransmits=stored["retransmits"],
            store_records=stored["records"],
        )
    figures.update(
        larval_retransmits=larval["retransmits"],
        strongswan_retransmits=strongswan["retransmits"],
        runs={
            "larval": plain["runs"] if plain else [],
            "larval_store": stored["runs"] if stored else [],
            "strongswan": strongswan["runs"],
        },
        target={
            "ratio": 5,
            "store_ratio": 1 - store_cost.GOAL,
            "store_cpu_ratio": 1 + store_cost.GOAL,
        },
        note=f"iperf3 TCP, {seconds} s, median of {runs}; aes128gcm16, ESP in UDP 4500; "
        "cpu_us_per_packet: both larval stacks' CPU per ESP packet sent"
        + _store_note(off, on)
        + ("; --store etcd is measured by bench ike only" if etcd else ""),
    )
    return figures


def _pairs_of(summary: dict[str, Any] | None) -> list[tuple[float, int]]:
    return [(r["mbps"], r["retransmits"]) for r in summary["runs"]] if summary else []


def _store_note(off: bool, on: bool) -> str:
    what = (
        "each larval stack's outbound sequence numbers reserved (blocks of 16384) and "
        "replay windows checkpointed (every 100 ms) in an SQLite state store (WAL, "
        "synchronous=FULL, values sealed under a fresh key, a temporary directory)"
    )
    if not on:
        return "; state store off"
    if not off:
        return f"; state store on: {what}"
    return (
        f"; state store: {what}, beside a pair without, both up at once and their runs "
        "alternated; store_ratio is on/off"
    )
