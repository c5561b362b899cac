"""`larval run --user nobody`: a road warrior that opened its TUN device and sockets as root
and then dropped to nobody with only CAP_NET_ADMIN still sets up its IKE SA and CHILD_SA
with a larval gateway, puts the virtual address it is given on its TUN device and routes
the gateway's network to it (pyroute2, after the drop), pings through, answers `larval
status`, and takes it all away again when it stops.

Python and larval must be readable by nobody for the daemon to import what it imports
late. Where the interpreter lives under a directory only root may enter (``/root``), the
daemon runs in a mount namespace of its own where that directory is a tmpfs holding
only what it needs, bound in (`tests.unprivileged`); the host's mounts are not touched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from larval.net.control import control_request
from tests.interop.harness import (
    INNER,
    OUTER,
    LarvalDaemon,
    Site,
    Topology,
    larval_config,
    needs_netns,
)
from tests.interop.rw_setup import VIP, as_road_warrior, until, vip_on_tun, with_pool_a
from tests.interop.test_metrics import answers, scrape
from tests.unprivileged import readable_prefix

pytestmark = [needs_netns]

NOBODY = 65534
CAP_NET_ADMIN = 1 << 12


class DroppingDaemon(LarvalDaemon):
    """`larval run --user nobody` in the site's namespace."""

    def start(self) -> None:
        (self.site.dir / "control").unlink(missing_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - the process owns it
        argv = [*readable_prefix(), "ip", "netns", "exec", self.site.ns.name, sys.executable,
                "-m", "larval", "run", "-c", str(self.config), "--log-level", "debug",
                "--user", "nobody"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while (
            "running as nobody" not in self.log.read_text()
            or not (self.site.dir / "control").exists()
        ):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"larval run --user did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def status_file(self, task: str = "") -> dict[str, str]:
        """/proc/PID/status of the daemon's process (or of one of its threads), by field."""
        assert self.proc is not None
        where = f"/proc/{self.proc.pid}" + (f"/task/{task}" if task else "")
        text = Path(f"{where}/status").read_text()
        return dict(re.findall(r"^(\w+):\s*(.*)$", text, re.M))

    def tasks(self) -> list[dict[str, str]]:
        assert self.proc is not None
        return [self.status_file(t) for t in os.listdir(f"/proc/{self.proc.pid}/task")]


def _gateway(site: Site) -> str:
    config = larval_config(site, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                           start_action="none")  # fmt: skip
    return with_pool_a(config)


def _road_warrior(site: Site) -> str:
    """Its state store in a directory of its own, which the drop gives to nobody."""
    config = larval_config(site, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                           start_action="none")  # fmt: skip
    config = as_road_warrior(config, site)
    return config.replace("[daemon]\n", f'[daemon]\nstate = "{site.dir / "state" / "s.db"}"\n')


def test_a_road_warrior_as_nobody_gets_its_address_routes_and_tunnel(tmp_path: Path) -> None:
    with Topology(tmp_path) as topo:
        gateway = LarvalDaemon(topo.a, _gateway(topo.a))
        topo.daemons.append(gateway)
        gateway.start()
        rw = DroppingDaemon(topo.b, _road_warrior(topo.b))
        topo.daemons.append(rw)
        rw.start()
        # nobody, in every id and group, with CAP_NET_ADMIN alone and no way back.
        status = rw.status_file()
        assert status["Uid"].split() == [str(NOBODY)] * 4, status
        assert status["Gid"].split() == [str(NOBODY)] * 4, status
        assert status["Groups"].split() == [str(NOBODY)], status
        for field in ("CapEff", "CapPrm"):
            assert int(status[field], 16) == CAP_NET_ADMIN, (field, status)
        assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0, status
        assert status["NoNewPrivs"] == "1", status
        # Every thread, native ones too: nobody's, with nothing beyond CAP_NET_ADMIN.
        for task in rw.tasks():
            assert task["Uid"].split() == [str(NOBODY)] * 4, task
            assert int(task["CapEff"], 16) & ~CAP_NET_ADMIN == 0, task
            assert int(task["CapPrm"], 16) & ~CAP_NET_ADMIN == 0, task
        # The control socket is nobody's, mode 0600; root reaches it.
        control = topo.b.dir / "control"
        st = control.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o600)
        # The state store and its WAL are nobody's, and so is their own directory.
        store = topo.b.dir / "state"
        for path in (store, store / "s.db", store / "s.db-wal"):
            assert path.stat().st_uid == NOBODY, path
        assert (store / "state.key").stat().st_uid == 0  # read once, as root
        # The exchange, and after it the address and the route, made as nobody.
        rw.up("s2s/net")
        answer = rw.wait_for("child")
        (ike,) = answer["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [VIP], ike  # type: ignore[index]
        until("the virtual address on larval0", lambda: vip_on_tun(topo.b), rw)
        route = topo.b.ns.run(["ip", "route", "get", INNER["a"]])
        assert "dev larval0" in route and f"src {VIP}" in route, route
        ping = subprocess.run(
            ["ip", "netns", "exec", topo.b.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             INNER["a"]], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in ping.stdout, (ping.stdout, rw.log.read_text()[-3000:])
        shown = subprocess.run(
            [sys.executable, "-m", "larval", "status", "--control-socket", str(control)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert f"virtual IP (this end's): {VIP}" in shown.stdout, shown.stdout
        # The CHILD_SA's sequence numbers went to the store, written as nobody.
        esp_state = rw.status()["stack"]["esp_state"]  # type: ignore[index]
        assert esp_state["writes"] > 0 and esp_state["write_errors"] == 0, esp_state
        # Down: the address and its route go, removed as nobody too.
        control_request(str(control), {"op": "down", "target": "s2s"})
        until("the virtual address gone", lambda: not vip_on_tun(topo.b), rw)
        assert f"src {VIP}" not in topo.b.ns.run(["ip", "route", "show", "table", "all"])
        stopped = rw.stop()
        log = rw.log.read_text()
        assert stopped == 0, log[-4000:]
        assert "Traceback" not in log, log[-4000:]
        assert OUTER["a"] in log


def test_metrics_on_a_port_below_1024_are_served_as_nobody(tmp_path: Path) -> None:
    """``daemon.metrics`` on port 443 with ``--user nobody``: bound as root before the
    drop, scraped after it. A reload (read as nobody) that moves the endpoint to port 444
    cannot bind it: the log says why, and the endpoint stays on 443."""
    # The configuration where nobody may read it at the reload: pytest's own directory
    # is root's alone. Its owner may be the --user (`larval run` allows that).
    home = Path(tempfile.mkdtemp(prefix=f"larval-lp-{os.getpid()}-"))
    try:
        home.chmod(0o711)
        with Topology(tmp_path) as topo:
            first = int(topo.b.ns.run(["sysctl", "-n", "net.ipv4.ip_unprivileged_port_start"]))
            assert first > 444, "the namespace lets anyone bind port 444: nothing to test"
            config = larval_config(topo.b, proposals=["aes128-sha256-x25519"],
                                   esp=["aes128gcm16"], start_action="none")  # fmt: skip
            config = config.replace("[daemon]\n", '[daemon]\nmetrics = "127.0.0.1:443"\n')
            rw = DroppingDaemon(topo.b, config)
            rw.config = home / "larval.toml"
            rw.config.write_text(config)
            rw.config.chmod(0o600)
            os.chown(rw.config, NOBODY, NOBODY)
            topo.daemons.append(rw)
            rw.start()
            assert rw.status_file()["Uid"].split() == [str(NOBODY)] * 4
            assert int(rw.status_file()["CapEff"], 16) == CAP_NET_ADMIN
            samples = scrape(topo.b, 443)
            assert ("larval_spd_policies", frozenset()) in samples, samples
            # The reload, as nobody: 444 is refused, by name and with why; 443 stays.
            assert rw.proc is not None
            rw.config.write_text(config.replace("127.0.0.1:443", "127.0.0.1:444"))
            rw.proc.send_signal(signal.SIGHUP)
            until("the reload's word on the metrics",
                  lambda: "the metrics stay where they were" in rw.log.read_text(), rw)  # fmt: skip
            log = rw.log.read_text()
            refused = (f"{rw.config}: daemon.metrics 127.0.0.1:444: cannot listen: Permission "
                       "denied (a port below 1024 needs root")  # fmt: skip
            assert refused in log, log[-4000:]
            assert answers(topo.b, 443) and not answers(topo.b, 444)
            assert rw.stop() == 0, rw.log.read_text()[-4000:]
            assert "Traceback" not in rw.log.read_text()
    finally:
        shutil.rmtree(home, ignore_errors=True)
