"""The interop harness: two network namespaces joined by a veth, charon in one, `larval run`
in the other (or larval in both), configs written per test, everything cleaned up."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from larval.bench.charon import Charon, ChildConfig, ConnConfig, charon_available
from larval.net.control import control_request
from larval.net.netns import Netns, veth_pair

PSK = "interop-test-psk-0123456789"
OUTER = {"a": "192.0.2.1", "b": "192.0.2.2"}
#: A site behind the NAT router has this address; the router shows OUTER[site] outside.
PRIVATE, ROUTER_INSIDE = "192.0.2.130", "192.0.2.129"
#: The router maps every source port into this range, as a NAT shared by many hosts does.
NAT_PORTS = "20000-30000"
INNER = {"a": "198.51.100.1", "b": "203.0.113.1"}
NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and iproute2 (network namespaces)",
)
needs_charon = pytest.mark.skipif(
    not charon_available(),
    reason="needs strongSwan (strongswan-charon, strongswan-swanctl, libcharon-extra-plugins)",
)


@dataclass
class Site:
    name: str  # "a" or "b"
    ns: Netns
    dir: Path
    address: str = ""  # its own outer address: OUTER[name], or PRIVATE behind the NAT

    @property
    def peer(self) -> str:
        return "b" if self.name == "a" else "a"

    def ping(self, count: int = 5, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "ping", "-c", str(count), "-i", "0.2",
             "-W", "2", "-I", INNER[self.name], INNER[self.peer]],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def pinger(site: Site, count: int) -> subprocess.Popen[str]:
    """`count` pings from the site's inner address to its peer's, in the background."""
    return subprocess.Popen(
        ["ip", "netns", "exec", site.ns.name, "ping", "-c", str(count), "-i", "0.2", "-W", "2",
         "-I", INNER[site.name], INNER[site.peer]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def spis(listing: str) -> set[str]:
    """The inbound SPIs in charon's `--list-sas`."""
    return set(re.findall(r"\bin\s+([0-9a-f]{8})", listing))


def larval_config(site: Site, *, proposals: list[str], esp: list[str], start_action: str,
                  encap: bool = True, dpd: str = "0s", rekey: str = "1h",
                  life: str = "66m", retransmit: float = 4.0,
                  ike_rekey: str = "4h", version: int = 2,
                  aggressive: bool = False, fragment_size: int = 1280,
                  local: str = "", remote: str = "", credentials: str = "",
                  psk_ids: list[str] | None = None) -> str:  # fmt: skip
    """`local`, `remote`: the sides' TOML inline tables (default: the PSK with the outer
    addresses as IDs); `credentials`: a swanctl credentials directory; `psk_ids`: the IDs
    the PSK is for (default: the outer addresses)."""
    me, peer = site.name, site.peer
    local = local or f'{{ auth = "psk", id = "{OUTER[me]}" }}'
    remote = remote or f'{{ auth = "psk", id = "{OUTER[peer]}" }}'
    return f"""
[daemon]
{f'credentials = "{credentials}"' if credentials else ""}
addresses = ["{site.address}"]
tun = "larval0"
tun_addresses = ["{INNER[me]}/24"]
control_socket = "{site.dir / "control"}"
pfkey_socket = "{site.dir / "pfkey"}"
retransmit_timeout = {retransmit}
retransmit_tries = {5 if retransmit >= 4 else 2}
fragment_size = {fragment_size}

[connections.s2s]
version = {version}
aggressive = {"true" if aggressive else "false"}
local_addrs = ["{site.address}"]
remote_addrs = ["{OUTER[peer]}"]
proposals = {json.dumps(proposals)}
encap = {"true" if encap else "false"}
dpd_delay = "{dpd}"
rekey_time = "{ike_rekey}"
local = {local}
remote = {remote}

[connections.s2s.children.net]
local_ts = ["{NET[me]}"]
remote_ts = ["{NET[peer]}"]
esp_proposals = {json.dumps(esp)}
start_action = "{start_action}"
rekey_time = "{rekey}"
life_time = "{life}"

[secrets.ike-s2s]
ids = {json.dumps(psk_ids or [OUTER["a"], OUTER["b"]])}
secret = "{PSK}"
"""


class LarvalDaemon:
    #: How `larval run` logs (a test may ask for more, or JSON).
    log_args: tuple[str, ...] = ("--log-level", "debug")

    def __init__(self, site: Site, config: str) -> None:
        self.site = site
        self.config = site.dir / "larval.toml"
        self.config.write_text(config)
        self.config.chmod(0o600)  # it holds [secrets]: larval refuses it readable by others
        self.log = site.dir / "larval.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.site.dir / "control").unlink(missing_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - the process owns it
        self.proc = self.site.ns.popen(
            [sys.executable, "-m", "larval", "run", "-c", str(self.config), *self.log_args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while not (self.site.dir / "control").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"larval run did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def status(self) -> dict[str, object]:
        return control_request(str(self.site.dir / "control"), {"op": "ike.status"})

    def up(self, target: str = "s2s/net") -> None:
        control_request(str(self.site.dir / "control"), {"op": "up", "target": target})

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def wait_for(self, predicate: str, timeout: float = 20) -> dict[str, object]:
        """Poll the status until `predicate` (e.g. "child") holds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            ike = [s for s in status["ike_sas"] if s["state"] == "established"]  # type: ignore[union-attr, index]
            if (predicate == "ike" and ike) or (predicate == "child" and status["child_sas"]):
                return status
            if predicate == "none" and not status["ike_sas"] and not status["child_sas"]:
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"no {predicate} SA within {timeout}s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)


class Topology:
    """Namespaces a and b, a veth between them (or a NAT router namespace), a working
    directory; all of it goes when the `with` block ends, whatever happened in it."""

    def __init__(self, tmp: Path, *, nat: str | None = None) -> None:
        """`nat`: the site ("a" or "b") that sits behind a NAT router, which shows it to
        the other as OUTER[site] with every source port translated."""
        self.tmp = tmp
        self.nat = nat
        self.stack = ExitStack()
        self.daemons: list[LarvalDaemon] = []
        self.charons: list[Charon] = []
        self.charon_loglevel = 1  # charon's filelog default (4: keys and nonces too)

    def __enter__(self) -> Topology:
        tag = uuid.uuid4().hex[:6]
        ns_a = self.stack.enter_context(Netns(f"ioA{tag}"))
        ns_b = self.stack.enter_context(Netns(f"ioB{tag}"))
        self.a = Site("a", ns_a, self.tmp / "a", OUTER["a"])
        self.b = Site("b", ns_b, self.tmp / "b", OUTER["b"])
        if self.nat is None:
            veth_pair(ns_a, ns_b, f"{OUTER['a']}/24", f"{OUTER['b']}/24")
        else:
            self._nat_router(tag)
        for site in (self.a, self.b):
            site.dir.mkdir(parents=True, exist_ok=True)
            site.ns.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])
        self.stack.callback(self._stop_all)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _nat_router(self, tag: str) -> None:
        """inside --- router (NAT) --- outside, on 192.0.2.128/25 and 192.0.2.0/25."""
        inside = self.a if self.nat == "a" else self.b
        outside = self.b if inside is self.a else self.a
        router = self.stack.enter_context(Netns(f"ioN{tag}"))
        inside.address = PRIVATE
        veth_pair(inside.ns, router, f"{PRIVATE}/25", f"{ROUTER_INSIDE}/25", name_b="in0")
        veth_pair(router, outside.ns, f"{OUTER[inside.name]}/25", f"{OUTER[outside.name]}/25",
                  name_a="out0")  # fmt: skip
        inside.ns.run(["ip", "route", "add", "default", "via", ROUTER_INSIDE])
        router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        rules = self.tmp / "nat.nft"
        rules.write_text(
            "table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
            f'  oifname "out0" meta l4proto udp masquerade to :{NAT_PORTS}\n'
            '  oifname "out0" masquerade\n }\n}\n'
        )
        router.run(["nft", "-f", str(rules)])
        self.router = router

    def nat_forgets(self) -> None:
        """The NAT router drops every mapping (as when it restarts): the next packets from
        inside get new outside ports."""
        self.router.run(["conntrack", "-F"])

    def _stop_all(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        for charon in self.charons:
            charon.stop()

    def larval(self, site: Site, **kw: object) -> LarvalDaemon:
        daemon = LarvalDaemon(site, larval_config(site, **kw))  # type: ignore[arg-type]
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def charon(self, site: Site, *, proposals: str, esp: str, start_action: str = "none",
               dpd: str = "0", rekey: str = "1h", ike_rekey: str = "4h",
               life: str = "", rand: str = "",
               version: int = 2, aggressive: bool = False,
               fragment_size: int = 0, swanctl: str = "",
               credentials: Path | None = None) -> Charon:  # fmt: skip
        """`swanctl`: a swanctl.conf of the test's own in place of the PSK one;
        `credentials`: a directory in swanctl's layout copied into charon's; `life`,
        `rand`: the CHILD_SA's life_time and rand_time (swanctl's defaults if empty: a
        rekey_time of a few seconds then gives a life_time equal to it, and the CHILD_SA
        expires and is made again instead of being rekeyed)."""
        site.ns.run(["ip", "address", "add", f"{INNER[site.name]}/32", "dev", "lo"])
        charon = Charon(site.ns, site.dir / "charon", self.charon_loglevel)
        charon.write_config(
            ConnConfig(site.address, OUTER[site.peer], PSK,
                       ChildConfig(NET[site.name], NET[site.peer], esp_proposals=esp,
                                   start_action=start_action, rekey_time=rekey,
                                   life_time=life, rand_time=rand),
                       proposals=proposals, dpd_delay=dpd, rekey_time=ike_rekey,
                       version=version, aggressive=aggressive, fragment_size=fragment_size,
                       local_id=OUTER[site.name])
        )  # fmt: skip
        if swanctl:
            (charon.dir / "swanctl" / "swanctl.conf").write_text(swanctl)
        if credentials is not None:
            shutil.copytree(credentials, charon.dir / "swanctl", dirs_exist_ok=True)
        self.charons.append(charon)
        charon.start()
        return charon
