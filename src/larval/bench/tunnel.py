"""Tunnel benchmark (root): iperf3 TCP through larval↔larval, charon↔charon (kernel-libipsec)
and wireguard-go↔wireguard-go, measured in the same run, plus the plain veth between the two
namespaces; and a UDP case (iperf3 ``-u`` at 64 and 1400 bytes of payload, ``-b 0``):
packets per second delivered and lost through each tunnel.

The two IPsec tunnels use aes128gcm16 with ESP in UDP 4500 between 192.0.2.1 and 192.0.2.2, and
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from larval.bench import store_cost, wireguard
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


#: The UDP case's iperf3 payloads (`-l`), bytes; sent with `-b 0` (as fast as it can).
UDP_SIZES = (64, 1400)


def _iperf_udp(
    client: Netns, server: Netns, dst: str, src: str, seconds: int, size: int
) -> tuple[float, float]:
    """(packets per second delivered, lost) of one iperf3 UDP run at `size` bytes of
    payload from `client` to `server`, by the receiver's count."""
    srv = server.popen(["iperf3", "-s", "-1", "-B", dst], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        out = client.run(
            ["iperf3", "-c", dst, "-B", src, "-u", "-l", str(size), "-b", "0",
             "-t", str(seconds), "-J"],
            timeout=seconds + 30,
        )  # fmt: skip
    finally:
        srv.kill()
        srv.wait()
    return _udp_rates(json.loads(out))


def _udp_rates(result: dict[str, Any]) -> tuple[float, float]:
    """(delivered, lost) packets per second from iperf3's JSON of a UDP run: the
    receiver's sum (``sum_received``, or ``sum`` from iperf3 before 3.11)."""
    end = result["end"]
    received = end.get("sum_received") or end["sum"]
    seconds = float(received["seconds"]) or float(end["sum"]["seconds"])
    if seconds <= 0:
        raise ValueError("iperf3 reported a UDP run of no time")
    lost = max(int(received["lost_packets"]), 0)
    delivered = max(int(received["packets"]) - lost, 0)
    return delivered / seconds, lost / seconds


def _udp(
    client: Netns,
    server: Netns,
    seconds: int,
    runs: int,
    sizes: tuple[int, ...] = UDP_SIZES,
    cpu: Callable[[], tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The UDP case through a pair already up, a to b: per payload size, the median of
    `runs` of delivered and lost packets per second. With `cpu` (the CPU seconds each
    gateway has used so far, sender first), also each gateway's CPU per packet
    delivered, µs, the median of the runs."""
    figures: dict[str, Any] = {}
    for size in sizes:
        results = []
        sender_us: list[float] = []
        receiver_us: list[float] = []
        for _ in range(runs):
            before = cpu() if cpu is not None else (0.0, 0.0)
            pps, lost = _iperf_udp(client, server, INNER["b"], INNER["a"], seconds, size)
            results.append((pps, lost))
            if cpu is not None and pps > 0:
                after = cpu()
                sender_us.append(round((after[0] - before[0]) * 1e6 / (pps * seconds), 2))
                receiver_us.append(round((after[1] - before[1]) * 1e6 / (pps * seconds), 2))
        figures[str(size)] = {
            "pps": round(statistics.median(r[0] for r in results)),
            "lost_pps": round(statistics.median(r[1] for r in results)),
            "runs_pps": [round(r[0]) for r in results],
        }
        if sender_us:
            figures[str(size)].update(
                sender_cpu_us=statistics.median(sender_us),
                receiver_cpu_us=statistics.median(receiver_us),
            )
    return figures


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
    directory for each end's state store (the store on), None for none. `nets`: each
    end's protected network (its policy's local_ts, routed into the peer's TUN);
    `keyed`: the one SA of each direction added by hand (`bench tunnel --sas` adds its
    own)."""

    def __init__(
        self,
        workdir: Path,
        state: Path | None = None,
        nets: dict[str, str] | None = None,
        keyed: bool = True,
    ) -> None:
        self.workdir = workdir
        self.state = state
        self.nets = nets or NET
        self.keyed = keyed
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
        workdir, nets = self.workdir, self.nets
        for me, peer, ns in (("a", "b", self.a), ("b", "a", self.b)):
            policy = workdir / f"{me}.toml"
            policy.write_text(
                f'[policies.bench]\nlocal_ts = ["{nets[me]}"]\nremote_ts = ["{nets[peer]}"]\n'
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
                 "--tun-address", f"{INNER[me]}/24", "--route", nets[peer],
                 "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.pids.append(proc.pid)
        deadline = time.monotonic() + 20
        while not all((workdir / f"{n}.control").exists() for n in "ab"):
            if time.monotonic() > deadline:
                raise RuntimeError("larval stack did not start")
            time.sleep(0.1)
        if not self.keyed:
            return
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

    def udp(self, seconds: int, runs: int, sizes: tuple[int, ...] = UDP_SIZES) -> dict[str, Any]:
        """The UDP case from a to b (not counted in the TCP CPU per packet), with each
        gateway's CPU per packet delivered."""
        return _udp(self.a, self.b, seconds, runs, sizes, self._cpu_each)

    def _cpu(self) -> float:
        """utime + stime of both stacks, every thread (proc(5)), seconds."""
        return sum(self._cpu_each())

    def _cpu_each(self) -> tuple[float, float]:
        """utime + stime of stack a and of stack b, every thread (proc(5)), seconds."""
        each = [0.0, 0.0]
        for i, pid in enumerate(self.pids[:2]):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                each[i] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return each[0], each[1]

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
    seconds: int, runs: int, workdir: Path, store: str = "off", udp: bool = False
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """iperf3 through the larval pair with the state store off and on (`store`,
    `larval.bench.store_cost`), both pairs up at once and their runs alternated; the
    summary of each that ran, the store's with the records it held at the end; with
    `udp`, the first pair's summary has the UDP case too."""
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
        udp_figures = next(iter(pairs.values())).udp(seconds, runs) if udp else None
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
    if udp_figures is not None:
        summaries[next(iter(pairs))]["udp"] = udp_figures
    return summaries.get("off"), summaries.get("on")


def _strongswan(
    seconds: int, runs: int, workdir: Path, tcp: bool = True, sizes: tuple[int, ...] = UDP_SIZES
) -> dict[str, Any]:
    """iperf3 TCP (with `tcp`) and the UDP case at `sizes` through a charon pair."""
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
        results = [_iperf(a, b, INNER["b"], INNER["a"], seconds) for _ in range(runs if tcp else 0)]
        udp = _udp(a, b, seconds, runs, sizes)
    finally:
        for charon in charons:
            charon.stop()
        a.delete()
        b.delete()
    return {**(_summary(results) if results else {}), "udp": udp}


def _wireguard(
    seconds: int, runs: int, workdir: Path, tcp: bool = True, sizes: tuple[int, ...] = UDP_SIZES
) -> dict[str, Any]:
    """iperf3 TCP (with `tcp`) and the UDP case at `sizes` through a wireguard-go pair
    (`larval.bench.wireguard`) on the same veth, between the same inner addresses."""
    a, b = _pair(uuid.uuid4().hex[:6])
    pair: wireguard.WireguardPair | None = None
    try:
        pair = wireguard.WireguardPair(a, b, OUTER, INNER, NET, workdir)
        results = [_iperf(a, b, INNER["b"], INNER["a"], seconds) for _ in range(runs if tcp else 0)]
        udp = _udp(a, b, seconds, runs, sizes)
    finally:
        if pair is not None:
            pair.stop()
        a.delete()
        b.delete()
    return {**(_summary(results) if results else {}), "udp": udp}


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
        plain, stored = _larval(seconds, runs, workdir, store, udp=True)
        strongswan = (
            _strongswan(seconds, runs, workdir)
            if charon_available()
            else {"mbps": None, "retransmits": None, "runs": [], "udp": {}}
        )
        wg = (
            _wireguard(seconds, runs, workdir)
            if wireguard.available()
            else {"mbps": None, "retransmits": None, "runs": [], "udp": {}}
        )
        veth = _veth(seconds, 1)
    larval = plain or stored
    assert larval is not None
    figures: dict[str, Any] = {
        "larval_mbps": larval["mbps"],
        "strongswan_mbps": strongswan["mbps"],
        "wireguard_mbps": wg["mbps"],
        "veth_mbps": veth["mbps"],
        "ratio": _ratio(larval["mbps"], strongswan["mbps"]),
        "wireguard_ratio": _ratio(larval["mbps"], wg["mbps"]),
        "larval_cpu_us_per_packet": larval["cpu_us_per_packet"],
    }
    figures.update(udp_figures(larval["udp"], strongswan["udp"], wg["udp"]))
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
        wireguard_retransmits=wg["retransmits"],
        runs={
            "larval": plain["runs"] if plain else [],
            "larval_store": stored["runs"] if stored else [],
            "strongswan": strongswan["runs"],
            "wireguard": wg["runs"],
        },
        target={
            "ratio": 5,
            "wireguard_ratio": 1,
            **{f"udp{size}_ratio": 1 for size in UDP_SIZES},
            **{f"udp{size}_wireguard_ratio": 1 for size in UDP_SIZES},
            "store_ratio": 1 - store_cost.GOAL,
            "store_cpu_ratio": 1 + store_cost.GOAL,
        },
        note=f"iperf3 TCP, {seconds} s, median of {runs}; aes128gcm16, ESP in UDP 4500; "
        "wireguard: Debian's wireguard-go (userspace, TUN MTU 1400 as larval's and libipsec's) "
        "on the same veth; "
        f"udpN: iperf3 -u -l N -b 0, {seconds} s, median of {runs}, packets per second the "
        "receiver got (pps) and counted lost (lost_pps), ratio larval/libipsec and "
        "larval/wireguard-go of pps; "
        "cpu_us_per_packet: both larval stacks' CPU per ESP packet sent"
        + _store_note(off, on)
        + ("; --store etcd is measured by bench ike only" if etcd else ""),
    )
    return figures


def run_udp(seconds: int = 5, runs: int = 3, sizes: tuple[int, ...] = UDP_SIZES) -> dict[str, Any]:
    """The UDP case alone (``bench tunnel --udp-only``): larval (no state store), libipsec
    and wireguard-go, at the payload sizes `sizes`, with each larval gateway's CPU per
    packet delivered; no TCP runs and no veth."""
    if os.geteuid() != 0 or shutil.which("iperf3") is None:
        return {"skipped": "needs root, network namespaces and iperf3"}
    with tempfile.TemporaryDirectory(prefix="larval-bench-") as tmp:
        workdir = Path(tmp)
        pair = _LarvalPair(workdir)
        try:
            larval = pair.udp(seconds, runs, sizes)
        finally:
            pair.delete()
        strongswan = (
            _strongswan(seconds, runs, workdir, tcp=False, sizes=sizes)["udp"]
            if charon_available()
            else {}
        )
        wg = (
            _wireguard(seconds, runs, workdir, tcp=False, sizes=sizes)["udp"]
            if wireguard.available()
            else {}
        )
    figures: dict[str, Any] = udp_figures(larval, strongswan, wg, sizes)
    for size in sizes:
        got = larval.get(str(size), {})
        figures[f"udp{size}_larval_runs_pps"] = got.get("runs_pps")
        figures[f"udp{size}_sender_cpu_us"] = got.get("sender_cpu_us")
        figures[f"udp{size}_receiver_cpu_us"] = got.get("receiver_cpu_us")
        for name, peer in (("strongswan", strongswan), ("wireguard", wg)):
            figures[f"udp{size}_{name}_runs_pps"] = peer.get(str(size), {}).get("runs_pps")
    figures["note"] = (
        f"udpN: iperf3 -u -l N -b 0, {seconds} s, median of {runs}, packets per second the "
        "receiver got (pps) and counted lost (lost_pps); sender/receiver_cpu_us: each larval "
        "gateway's CPU (all threads) per packet delivered"
    )
    return figures


def _ratio(larval: float | None, peer: float | None) -> float | None:
    """larval / peer, two decimals; None when either was not measured or the peer is 0."""
    return round(larval / peer, 2) if larval is not None and peer else None


def udp_figures(
    larval: dict[str, Any],
    strongswan: dict[str, Any],
    wg: dict[str, Any],
    sizes: tuple[int, ...] = UDP_SIZES,
) -> dict[str, Any]:
    """The UDP case's printed figures from each pair's `_udp` result (empty: not
    measured): per size, each pair's delivered and lost packets per second and the
    ratios of larval's delivered rate to libipsec's and to wireguard-go's."""
    figures: dict[str, Any] = {}
    for size in sizes:
        key = str(size)
        for name, result in (("larval", larval), ("strongswan", strongswan), ("wireguard", wg)):
            got = result.get(key, {})
            figures[f"udp{size}_{name}_pps"] = got.get("pps")
            figures[f"udp{size}_{name}_lost_pps"] = got.get("lost_pps")
        pps = figures[f"udp{size}_larval_pps"]
        figures[f"udp{size}_ratio"] = _ratio(pps, figures[f"udp{size}_strongswan_pps"])
        figures[f"udp{size}_wireguard_ratio"] = _ratio(pps, figures[f"udp{size}_wireguard_pps"])
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
