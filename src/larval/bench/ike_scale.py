"""`bench ike --established N` (root): N IKE_SAs up, each with its CHILD_SA, between two
larval daemons and between two charons in the same run; then what that costs.

Both pairs negotiate what `bench ike` does (IKEv2, PSK, aes128gcm16-prfsha256-x25519, a
tunnel-mode CHILD_SA aes128gcm16 between 198.51.100.0/24 and 203.0.113.0/24, encap =
yes), each setup a new IKE SA, `in_flight` under way at once. For each pair:

* ``rss_per_ike_sa``: resident memory (VmRSS) of the initiator and of the responder
  after the N setups less before the first, over N: bytes per IKE_SA (with its
  CHILD_SA and its two SAs in the stack) on each end, and the mean of the two;
* ``next_ike_sa_per_s``: with the N up, the rate of the next `more` setups (from the
  first initiate to the last CHILD_SA up on both ends), and both peers' CPU per setup;
* ``status_s``: the wall time of ``larval status --json`` on the initiator with N + `more`
  up (a new process, as a user runs it), beside ``swanctl --list-sas`` on charon's.

larval: two `larval run` daemons (`larval.bench.ike_daemon`: COOKIEs off, as `bench ike`
has them) on 127.0.0.1 and 127.0.0.2 in one namespace, no TUN; each setup an ``up`` on
the initiator's control socket, completion read from each stack's SA count (two SAs a
CHILD_SA). charon: `larval.bench.ike._BenchCharon` in two namespaces over a veth, driven
over VICI as `bench ike` drives it, completion from ``child-updown`` events.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from larval.bench.charon import CharonError, ChildConfig, ConnConfig, charon_available
from larval.bench.ike import (
    ESP_PROPOSAL,
    IKE_PROPOSAL,
    INNER,
    LOOPBACK,
    NET,
    OUTER,
    PSK,
    _BenchCharon,
    _cpu_seconds,
    _up_events,
    _Vici,
)
from larval.errors import LarvalError
from larval.net.netns import Netns, veth_pair

MORE = 2000  # setups measured with the N up (issue 15 §4)
IN_FLIGHT = 64
CONTROL_TIMEOUT = 60.0  # s for a daemon's answer on its control socket


class EstablishedError(LarvalError):
    """A daemon of the bench did not start, or did not answer."""


def _rss(pid: int) -> int:
    """Resident memory of `pid`, bytes (proc(5) VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise EstablishedError(f"no VmRSS for pid {pid}")


def _per_sa(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, int | None]:
    """Resident bytes per IKE_SA on each end and their mean."""
    if n <= 0:
        return {"initiator": None, "responder": None, "mean": None}
    each = {me: round((after[me] - before[me]) / n) for me in ("initiator", "responder")}
    return {**each, "mean": round((each["initiator"] + each["responder"]) / 2)}


# -- larval -----------------------------------------------------------------------------


def _daemon_config(me: str, peer: str, control: Path) -> str:
    return f"""\
[daemon]
addresses = ["{LOOPBACK[me]}"]
control_socket = "{control}"

[connections.bench]
version = 2
local_addrs = ["{LOOPBACK[me]}"]
remote_addrs = ["{LOOPBACK[peer]}"]
proposals = ["{IKE_PROPOSAL}"]
encap = true

[connections.bench.children.net]
local_ts = ["{NET[me]}"]
remote_ts = ["{NET[peer]}"]
esp_proposals = ["{ESP_PROPOSAL}"]

[secrets.ike-bench]
ids = ["{LOOPBACK["i"]}", "{LOOPBACK["r"]}"]
secret = "{PSK}"
"""


class _Control:
    """One connection to a daemon's control socket, a request a line."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONTROL_TIMEOUT)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            answer: dict[str, Any] = json.loads(self.file.readline() or b"{}")
        except TimeoutError:
            raise EstablishedError(
                f"control {request['op']}: no answer in {CONTROL_TIMEOUT:.0f} s"
            ) from None
        if not answer.get("ok"):
            raise EstablishedError(f"control {request['op']}: {answer.get('error', 'no answer')}")
        return answer

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class _LarvalDaemons:
    """The two daemons in one namespace, and the initiator's ups."""

    def __init__(self, ns: Netns, workdir: Path) -> None:
        self.workdir = workdir
        self.pids: dict[str, int] = {}
        self.controls: dict[str, _Control] = {}
        procs = []
        for me, peer in (("i", "r"), ("r", "i")):
            control = workdir / f"{me}.control"
            config = workdir / f"{me}.toml"
            config.touch(0o600)  # it holds the PSK
            config.write_text(_daemon_config(me, peer, control))
            log = open(workdir / f"{me}.log", "wb")  # noqa: SIM115 - owned by the process
            proc = ns.popen([sys.executable, "-m", "larval.bench.ike_daemon", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            log.close()
            self.pids[me] = proc.pid
            procs.append(proc)
        deadline = time.monotonic() + 20
        while not all((workdir / f"{me}.control").exists() for me in "ir"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                tail = (workdir / "i.log").read_text(errors="replace")[-2000:]
                raise EstablishedError(f"larval daemon did not start: {tail}")
            time.sleep(0.1)
        for me in "ir":
            self.controls[me] = _Control(workdir / f"{me}.control")

    def close(self) -> None:
        for control in self.controls.values():
            control.close()

    def done(self) -> dict[str, int]:
        """CHILD_SAs installed on each end: its stack's SAs (each CHILD_SA two; the
        initiator's count holds a LARVAL SA for each setup in IKE_AUTH, rounded away)."""
        return {me: c.request({"op": "status"})["sas"] // 2 for me, c in self.controls.items()}

    def setups(self, target: int, count: int, in_flight: int, timeout: float) -> tuple[float, int]:
        """Initiate `count` more setups until both ends have `target` CHILD_SAs, or
        `timeout` passes: the seconds from the first up to the last CHILD_SA installed
        on both ends (or to the timeout), and how many of the `count` were."""
        up = {"op": "up", "target": "bench/net"}
        started = 0
        first = time.monotonic()
        deadline = first + timeout
        base = target - count
        while True:
            done = self.done()
            least = min(done.values())
            if least >= target or time.monotonic() > deadline:
                return time.monotonic() - first, min(least, target) - base
            while started < count and started - (done["i"] - base) < in_flight:
                self.controls["i"].request(up)
                started += 1
            time.sleep(0.005)

    def status_seconds(self) -> tuple[float, int]:
        """The wall time of `larval status --json` on the initiator, and the IKE_SAs it
        listed."""
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "larval", "status", "--json",
             "--control-socket", str(self.workdir / "i.control")],
            capture_output=True, check=True, timeout=300,
        ).stdout  # fmt: skip
        elapsed = time.perf_counter() - start
        return elapsed, len(json.loads(out)["ike_sas"])

    def cpu(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids.values())


def _larval(n: int, more: int, in_flight: int, workdir: Path) -> dict[str, Any]:
    with Netns(f"lbEst{os.getpid()}{uuid.uuid4().hex[:4]}") as ns:
        daemons = _LarvalDaemons(ns, workdir)
        try:
            return _measure(daemons, n, more, in_flight)
        finally:
            daemons.close()


def _measure(daemons: _LarvalDaemons, n: int, more: int, in_flight: int) -> dict[str, Any]:
    time.sleep(0.5)  # the daemons settle (imports, first timers) before RSS is read
    pids = {"initiator": daemons.pids["i"], "responder": daemons.pids["r"]}
    return _phases(daemons, pids, n, more, in_flight)


def _phases(
    peers: _LarvalDaemons | _Charons,
    pids: dict[str, int],
    n: int,
    more: int,
    in_flight: int,
) -> dict[str, Any]:
    """N setups (RSS before and after), the next `more`, the status time: the figures.
    A phase that does not finish in its time (at least 20 setups a second) is cut
    short; the figures are then of the setups done, and `incomplete` says so."""
    before = {who: _rss(pid) for who, pid in pids.items()}
    up_s, up = peers.setups(n, n, in_flight, max(120.0, n / 20))
    after = {who: _rss(pid) for who, pid in pids.items()}
    cpu = peers.cpu()
    next_s, done = 0.0, 0
    if up == n and more:
        next_s, done = peers.setups(n + more, more, in_flight, max(120.0, more / 20))
    cpu = peers.cpu() - cpu
    status_s, listed = peers.status_seconds()
    figures = {
        "established": up,
        "up_s": round(up_s, 2),
        "rss_per_ike_sa": _per_sa(before, after, up),
        "more": done,
        "next_ike_sa_per_s": round(done / next_s, 1) if done and next_s > 0 else None,
        "next_cpu_ms_per_ike_sa": round(cpu * 1000 / done, 3) if done else None,
        "status_s": round(status_s, 3),
        "status_ike_sas": listed,
    }
    if up < n or done < more:
        figures["incomplete"] = f"{up} of {n} setups in {up_s:.0f} s" + (
            f", then {done} of {more} in {next_s:.0f} s" if up == n else ""
        )
    return figures


# -- strongSwan -------------------------------------------------------------------------


class _Charons:
    """Two bench charons over a veth, the initiator driven over VICI."""

    def __init__(self, ns_i: Netns, ns_r: Netns, workdir: Path) -> None:
        self.charons: dict[str, _BenchCharon] = {}
        self.vicis: list[_Vici] = []
        veth_pair(ns_i, ns_r, f"{OUTER['i']}/24", f"{OUTER['r']}/24")
        for me, peer, ns in (("i", "r", ns_i), ("r", "i", ns_r)):
            ns.run(["ip", "address", "add", f"{INNER[me]}/32", "dev", "lo"])
            charon = _BenchCharon(ns, workdir / f"charon-{me}", loglevel=-1)
            charon.write_config(
                ConnConfig(OUTER[me], OUTER[peer], PSK,
                           ChildConfig(NET[me], NET[peer], esp_proposals=ESP_PROPOSAL),
                           proposals=IKE_PROPOSAL, encap=True)
            )  # fmt: skip
            self.charons[me] = charon
            charon.start()
        self.command = _Vici(self.charons["i"].vici)
        self.events = {me: _Vici(self.charons[me].vici) for me in "ir"}
        self.vicis = [self.command, *self.events.values()]
        for v in self.events.values():
            v.register("child-updown")
        self.pids = {me: c.pid() for me, c in self.charons.items()}
        self.done = {"i": 0, "r": 0}

    def close(self) -> None:
        for v in self.vicis:
            v.close()
        for charon in self.charons.values():
            charon.stop()

    def setups(self, target: int, count: int, in_flight: int, timeout: float) -> tuple[float, int]:
        """As `_LarvalDaemons.setups`, over VICI."""
        started = 0
        first = time.monotonic()
        deadline = first + timeout
        base = target - count
        last = first
        while min(self.done.values()) < target and time.monotonic() < deadline:
            while started < count and started - (self.done["i"] - base) < in_flight:
                self.command.request("initiate", {"child": "net", "timeout": "-1"})
                started += 1
            select.select([v.sock for v in self.events.values()], (), (), 0.1)
            for me, v in self.events.items():
                ups = sum(_up_events(v))
                if ups:
                    self.done[me] += ups
                    last = time.monotonic()
        least = min(min(self.done.values()), target) - base
        return (last if least == count else time.monotonic()) - first, least

    def status_seconds(self) -> tuple[float, int]:
        start = time.perf_counter()
        out = self.charons["i"].swanctl("--list-sas", timeout=300)
        elapsed = time.perf_counter() - start
        return elapsed, sum(1 for line in out.splitlines() if line.startswith("s2s: #"))

    def cpu(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids.values())


def _strongswan(n: int, more: int, in_flight: int, workdir: Path) -> dict[str, Any]:
    tag = f"{os.getpid()}{uuid.uuid4().hex[:4]}"
    with Netns(f"lbEstSi{tag}") as ns_i, Netns(f"lbEstSr{tag}") as ns_r:
        charons = _Charons(ns_i, ns_r, workdir)
        try:
            time.sleep(0.5)
            pids = {"initiator": charons.pids["i"], "responder": charons.pids["r"]}
            return _phases(charons, pids, n, more, in_flight)
        finally:
            charons.close()


# -- both -------------------------------------------------------------------------------


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 2) if ours and theirs else None


def run(n: int = 10_000, more: int = MORE, in_flight: int = IN_FLIGHT) -> dict[str, Any]:
    """larval's pair, then charon's: N up, the next `more`, the status time."""
    if n < 1 or more < 0:
        raise ValueError(f"--established must be at least 1 (not {n}), the setups after it >= 0")
    if os.geteuid() != 0:
        return {"skipped": "needs root: network namespaces, and IKE's UDP ports 500 and 4500"}
    why_not = "" if charon_available() else "charon or swanctl is not installed"
    failed = ""
    with tempfile.TemporaryDirectory(prefix="larval-bench-") as tmp:
        (Path(tmp) / "larval").mkdir()
        larval: dict[str, Any] = {}
        try:
            larval = _larval(n, more, in_flight, Path(tmp) / "larval")
        except (EstablishedError, ConnectionError, OSError, subprocess.SubprocessError) as e:
            failed = f"larval failed: {e}"
        strongswan: dict[str, Any] | None = None
        if not why_not:
            try:
                strongswan = _strongswan(n, more, in_flight, Path(tmp))
            except (CharonError, EstablishedError, ConnectionError, OSError,
                    subprocess.SubprocessError) as e:  # fmt: skip
                why_not = f"charon failed: {e}"
    theirs = strongswan or {}
    rss_ours = (larval.get("rss_per_ike_sa") or {}).get("mean")
    rss_theirs = (theirs.get("rss_per_ike_sa") or {}).get("mean")
    return {
        "established": n,
        "rss_per_ike_sa": rss_ours,
        "strongswan_rss_per_ike_sa": rss_theirs,
        # Bytes: lower is better, so the ratio is charon's over larval's (>= 1 is ahead).
        "rss_ratio": _ratio(rss_theirs, rss_ours) if rss_ours and rss_ours > 0 else None,
        "next_ike_sa_per_s": larval.get("next_ike_sa_per_s"),
        "strongswan_next_ike_sa_per_s": theirs.get("next_ike_sa_per_s"),
        "next_ratio": _ratio(larval.get("next_ike_sa_per_s"), theirs.get("next_ike_sa_per_s")),
        "status_s": larval.get("status_s"),
        "strongswan_list_sas_s": theirs.get("status_s"),
        # Seconds: charon's over larval's, >= 1 when larval answers as fast or faster.
        "status_ratio": _ratio(theirs.get("status_s"), larval.get("status_s")),
        "larval": larval or None,
        "strongswan": strongswan,
        # The IKE goal, 1.5 times charon's setups; it sets none for the others.
        "target": {"next_ratio": 1.5},
        "note": (
            f"{n} IKE_SAs up (IKEv2 PSK, {IKE_PROPOSAL}, a CHILD_SA {ESP_PROPOSAL} each, "
            f"encap = yes, {in_flight} in flight), each a new IKE SA; rss_per_ike_sa: "
            "VmRSS growth over the N setups / N, bytes, mean of initiator and responder; "
            f"next_ike_sa_per_s: the next {more} setups with the N up; status_s: wall time "
            "of `larval status --json` (a new process) on the initiator with all up, "
            "beside `swanctl --list-sas`; rss_ratio and status_ratio are charon's / "
            "larval's (>= 1: larval ahead). larval: two `larval run` daemons on 127.0.0.1 "
            "and .2 in a namespace, no TUN, driven by `up` on the control socket; charon: "
            "two charons (kernel-libipsec, no logging) over a veth, driven by VICI"
            + (f". {failed}" if failed else "")
            + "".join(
                f". {who} incomplete: {r['incomplete']}"
                for who, r in (("larval", larval), ("strongSwan", theirs))
                if r.get("incomplete")
            )
            + (f". strongSwan not measured: {why_not}" if why_not else "")
        ),
    }


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        json.dump(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100), sys.stdout, indent=1)
        print()
