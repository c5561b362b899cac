"""`larval run` with ``[ha]``: real etcd members, real daemons (subprocesses, each with its
own configuration, PF_KEY and control sockets), and a third larval as the peer that
negotiates with the group's owner.

The group's "virtual address" here is 127.0.0.2, bound only by the owner (a standby
binds no IKE socket); putting it on and announcing it is `test_vip`'s, in namespaces.
The kill -9 test runs everything in a network namespace of its own, the gateways with a
dataplane (a TUN device each), so that the owner reserves ESP sequence numbers in etcd
as it keys its outbound SA; the others run on the host's loopback without one.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from larval.net.control import ControlError, control_request
from larval.net.netns import Netns
from larval.store import ESP_SEQ
from larval.store.etcd import EtcdClient, EtcdStore
from tests.ha.members import EtcdCluster, cluster, needs_etcd

pytestmark = [
    needs_etcd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (IKE on UDP 500)"),
]

SRC = str(Path(__file__).resolve().parents[2] / "src")
VIP, PEER = "127.0.0.2", "127.0.0.4"
NS_VIP, NS_VIP6 = "192.0.2.10", "2001:db8::10"
GROUP = "edge"
TTL = 2  # s; the election's margin is 0.5 s

GATEWAY = """
[daemon]
addresses = ["{vip}"]
control_socket = "{dir}/control"
pfkey_socket = "{dir}/pfkey"
state_key = "{key}"

[ha]
endpoints = {endpoints}
group = "{group}"
node = "{node}"
lease_ttl = "{ttl}s"
{vips}

[connections.home]
version = 2
local_addrs = ["{vip}"]
remote_addrs = ["{peer}"]
proposals = ["aes128-sha256-x25519"]
local = {{ auth = "psk", id = "{vip}" }}
remote = {{ auth = "psk", id = "{peer}" }}
{dpd}
[connections.home.children.net]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "none"

[secrets.ike]
ids = ["{vip}", "{peer}"]
secret = "0123456789abcdef-psk"
"""

PEER_CONFIG = """
[daemon]
addresses = ["{peer}"]
control_socket = "{dir}/control"
pfkey_socket = "{dir}/pfkey"

[connections.home]
version = 2
local_addrs = ["{peer}"]
remote_addrs = ["{vip}"]
proposals = ["aes128-sha256-x25519"]
local = {{ auth = "psk", id = "{peer}" }}
remote = {{ auth = "psk", id = "{vip}" }}
dpd_delay = "1s"

[connections.home.children.net]
local_ts = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "start"

[secrets.ike]
ids = ["{vip}", "{peer}"]
secret = "0123456789abcdef-psk"
"""


class Larval:
    """One `larval run`, its log in its directory; killed at the end, whatever happened."""

    def __init__(self, name: str, base: Path, text: str, ns: Netns | None = None) -> None:
        self.name = name
        self.ns = ns
        self.dir = base / name
        self.dir.mkdir()
        self.config = self.dir / "larval.toml"
        self.config.write_text(text.replace("{dir}", str(self.dir)))
        self.config.chmod(0o600)
        self.log = self.dir / "log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "larval", "run", "-c", str(self.config),
                "--log-level", "info"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": SRC}
        with open(self.log, "ab") as log:
            if self.ns is not None:
                # `ip netns exec` execs the daemon: a signal to it reaches the daemon.
                self.proc = self.ns.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            else:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 20, count: int = 1) -> None:
        wait(lambda: self.text().count(needle) >= count, timeout,
             lambda: f"{self.name}: no {needle!r} in its log:\n{self.text()[-4000:]}")  # fmt: skip

    def ask(self, op: str) -> dict[str, Any]:
        return control_request(str(self.dir / "control"), {"op": op})

    def larval(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "larval", *args, "--control-socket", str(self.dir / "control")],
            capture_output=True, text=True, timeout=20, env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def wait(cond: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(why())


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    yield from cluster(tmp_path, 1)


class Rig:
    def __init__(self, base: Path, etcd: EtcdCluster, ns: Netns | None = None) -> None:
        self.base = base
        self.etcd = etcd
        self.ns = ns
        #: In the namespace the group has a real virtual address, on eth0's subnet.
        self.vip = NS_VIP if ns is not None else VIP
        self.key = base / "state.key"
        self.key.write_text(secrets.token_hex(32))
        self.key.chmod(0o600)
        self.daemons: list[Larval] = []

    def gateway(
        self, node: str, *, dpd: str = "", vip: str | None = None, ttl: int = TTL
    ) -> Larval:
        endpoints = "[" + ", ".join(f'"{e}"' for e in self.etcd.endpoints) + "]"
        vip = vip or self.vip
        # With an IPv6 address beside it, announced by an unsolicited NA.
        vips = f'virtual_addresses = ["{vip}", "{NS_VIP6}"]' if self.ns is not None else ""
        text = GATEWAY.format(vip=self.vip, peer=PEER, key=self.key, endpoints=endpoints,
                              group=GROUP, node=node, ttl=ttl, dir="{dir}", vips=vips,
                              dpd=f'dpd_delay = "{dpd}"' if dpd else "")  # fmt: skip
        if self.ns is not None:
            # A TUN of its own; the network behind it the same on every node.
            text = text.replace("[daemon]\n", f'[daemon]\ntun = "ha{node[-1]}"\n'
                                'tun_addresses = ["203.0.113.1/24"]\n', 1)  # fmt: skip
        daemon = Larval(node, self.base, text, self.ns)
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def peer(self) -> Larval:
        text = PEER_CONFIG.format(vip=self.vip, peer=PEER, dir="{dir}")
        daemon = Larval("peer", self.base, text, self.ns)
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def marks(self) -> dict[str, int]:
        """The reserved ESP sequence marks in the group's state, by record key."""
        return self.ns.call(self._marks) if self.ns is not None else self._marks()

    def _marks(self) -> dict[str, int]:
        store = EtcdStore(
            EtcdClient(self.etcd.endpoints), GROUP, bytes.fromhex(self.key.read_text())
        )
        try:
            return {k: struct.unpack(">Q", v)[0] for k, v in store.load().get(ESP_SEQ, {}).items()}
        finally:
            store.close()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()


@pytest.fixture
def rig(tmp_path: Path, etcd: EtcdCluster) -> Iterator[Rig]:
    rig = Rig(tmp_path, etcd)
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture
def netns_rig(tmp_path: Path) -> Iterator[Rig]:
    """Etcd and every daemon in a network namespace of their own."""
    with Netns(f"ha{secrets.token_hex(3)}") as ns:
        ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])
        ns.run(["ip", "address", "add", "192.0.2.1/24", "dev", "eth0"])
        ns.run(["ip", "address", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
        for device in ("eth0", "eth1"):
            ns.run(["ip", "link", "set", device, "up"])
        members = EtcdCluster(tmp_path, 1)
        try:
            ns.call(members.start)
            rig = Rig(tmp_path, members, ns)
            try:
                yield rig
            finally:
                rig.close()
        finally:
            members.stop()


def _ike_sas(daemon: Larval) -> list[tuple[str, str]]:
    return [(s["spi_i"], s["spi_r"]) for s in daemon.ask("ike.status")["ike_sas"]]


def _children(daemon: Larval) -> list[tuple[str, str]]:
    return sorted((c["spi_in"], c["spi_out"]) for c in daemon.ask("ike.status")["child_sas"])


def _up(rig: Rig, gw1_dpd: str = "") -> tuple[Larval, Larval, Larval]:
    """gw1 owns the group, gw2 stands by, the peer has its IKE SA and CHILD_SA with gw1."""
    gw1 = rig.gateway("gw1", dpd=gw1_dpd)
    gw1.wait_log("ha: gw1 owns group edge")
    gw2 = rig.gateway("gw2", dpd=gw1_dpd)
    gw2.wait_log("ha: gw2 stands by in group edge")
    peer = rig.peer()
    wait(lambda: len(_children(gw1)) == 1, 20, lambda: f"no CHILD_SA at gw1:\n{gw1.text()[-3000:]}")
    return gw1, gw2, peer


def test_kill_9_of_the_owner_the_standby_carries_on(netns_rig: Rig) -> None:
    rig = netns_rig
    gw1, gw2, peer = _up(rig)
    if rig.ns is not None:
        # gw1's virtual address, on this same host: gw2 names it and leaves it alone.
        assert f"ha: virtual address {NS_VIP} is on eth0 while gw1 owns group edge" in gw2.text()
    # The standby: no SAs, no IKE SA, no IKE socket; it follows the state.
    assert gw2.ask("status")["sas"] == 0
    assert _ike_sas(gw2) == []
    standby = gw2.ask("ha.status")
    assert (standby["role"], standby["owner"], standby["epoch"]) == ("standby", "gw1", 0)
    owner = gw1.ask("ha.status")
    assert owner["role"] == "owner" and owner["epoch"] > 0
    ike, children = _ike_sas(gw1), _children(gw1)
    assert _ike_sas(peer) == ike and len(children) == 1

    # The standby's mirror has caught up with what the owner wrote: no lag.
    def caught_up() -> bool:
        status = gw2.ask("ha.status")
        seen = status["seen_s_ago"] is not None  # etcd's side read, not only its own
        return seen and status["lag"] == 0 and status["revision"] == status["state_revision"] > 0

    wait(caught_up, 5, lambda: str(gw2.ask("ha.status")))
    wait(lambda: rig.marks() != {}, 5, lambda: "no ESP_SEQ reservation in etcd")
    before = rig.marks()
    assert gw1.ask("status")["sas"] == 2
    initiated = peer.text().count("initiating IKE_SA_INIT")

    gw1.signal(signal.SIGKILL)
    gw2.wait_log("ha: gw2 owns group edge", timeout=15)
    text = gw2.text()
    assert "restored 1 IKE_SA(s), 1 CHILD_SA(s), 2 SA(s) in the stack" in text, text[-3000:]
    # The same IKE SA and CHILD_SA, and the SAs in gw2's stack.
    assert _ike_sas(gw2) == ike and _children(gw2) == children
    assert gw2.ask("status")["sas"] == 2
    # Each outbound SA resumed at the old owner's mark: its next block lies above it.
    after = rig.marks()
    assert after.keys() >= before.keys()
    for key, mark in before.items():
        assert after[key] >= mark + 16384 - 1, (key, mark, after[key])
    # The peer's liveness checks are answered by the new owner: same IKE SA, no new one.
    sent = gw2.ask("ha.status")["ike_sent"]
    wait(lambda: gw2.ask("ha.status")["ike_sent"] >= sent + 2, 10,
         lambda: f"gw2 answered no DPD:\n{gw2.text()[-3000:]}")  # fmt: skip
    assert _ike_sas(peer) == ike
    assert peer.text().count("initiating IKE_SA_INIT") == initiated
    status = gw2.ask("ha.status")
    assert (status["role"], status["owner"], status["lag"]) == ("owner", "gw2", 0)
    assert status["epoch"] > owner["epoch"]
    # ESP leaves the new owner: the dataplane started at the takeover, its guard passes.
    assert rig.ns is not None
    rig.ns.run(["ping", "-c2", "-i0.2", "-W1", "-I", "203.0.113.1", "198.51.100.1"], check=False)
    assert gw2.ask("status")["packets"]["sent"] >= 2
    assert gw2.ask("ha.status")["esp_held"] == 0
    # The virtual address: on eth0 (its subnet's), which gw1 left there when killed.
    assert f"virtual addresses {NS_VIP} on eth0, {NS_VIP6} on eth0" in text
    # Every announcement went out (a problem would be logged once the election was won).
    assert "ha: virtual address" not in gw2.text().split("gw2: owns group edge (epoch")[1]
    assert f"inet {NS_VIP}/32" in rig.ns.run(["ip", "-o", "address", "show", "dev", "eth0"])
    # A graceful stop hands over: the address goes, no DELETE leaves.
    gw2.signal(signal.SIGTERM)
    assert gw2.proc is not None and gw2.proc.wait(10) == 0
    shown = rig.ns.run(["ip", "-o", "address", "show", "dev", "eth0"])
    assert NS_VIP not in shown and NS_VIP6 not in shown, shown
    assert "resigned group edge: 1 IKE_SA(s) left to the next owner, no DELETE sent" in gw2.text()
    assert _ike_sas(peer) == ike


def test_a_stopped_owner_is_fenced_and_sends_nothing(rig: Rig) -> None:
    # gw1 checks liveness itself every second: on waking it has something to send.
    gw1, gw2, peer = _up(rig, gw1_dpd="1s")
    ike = _ike_sas(gw1)
    gw1.signal(signal.SIGSTOP)
    try:
        gw2.wait_log("ha: gw2 owns group edge", timeout=15)
    finally:
        gw1.signal(signal.SIGCONT)
    gw1.wait_log("ha: gw1 fenced in group edge", timeout=10)
    assert "standing by" in gw1.text()
    wait(lambda: gw1.ask("ha.status")["role"] == "standby", 5, lambda: gw1.text()[-3000:])
    time.sleep(2)  # its DPD timer is long due: it tries, and nothing leaves
    status = gw1.ask("ha.status")
    assert status["ike_sent_since_fenced"] == 0, status
    assert status["fenced_reason"] and "no lease renewal" in status["fenced_reason"]
    assert gw1.ask("status")["sas"] == 0 and _ike_sas(gw1) == []
    assert _ike_sas(gw2) == ike and _ike_sas(peer) == ike
    # Both nodes, as each said last.
    wait(lambda: {n["node"]: n["role"] for n in gw1.ask("ha.status")["nodes"]}
         == {"gw1": "standby", "gw2": "owner"}, 5, lambda: str(gw1.ask("ha.status")))  # fmt: skip
    as_json = gw1.larval("ha", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert (answer["group"], answer["node"], answer["role"], answer["owner"]) == (
        "edge", "gw1", "standby", "gw2")  # fmt: skip
    shown = gw1.larval("ha", "status")
    assert shown.returncode == 0, shown.stderr
    assert "group edge, node gw1: standby; owner gw2" in shown.stdout, shown.stdout
    assert "gw2" in shown.stdout.split("nodes:")[1] and "owner" in shown.stdout.split("nodes:")[1]
    # Back to a standby in the same process: it takes over again when gw2 goes.
    gw2.signal(signal.SIGKILL)
    gw1.wait_log("ha: gw1 owns group edge", timeout=15, count=2)
    assert "restored 1 IKE_SA(s), 1 CHILD_SA(s), 2 SA(s)" in gw1.text().rsplit("owns group", 1)[1]
    assert _ike_sas(gw1) == ike and gw1.ask("ha.status")["role"] == "owner"
    sent = gw1.ask("ha.status")["ike_sent"]
    wait(lambda: gw1.ask("ha.status")["ike_sent"] > sent, 10, lambda: gw1.text()[-3000:])
    assert _ike_sas(peer) == ike


def test_sigterm_of_the_owner_hands_over_without_delete(rig: Rig) -> None:
    gw1, gw2, peer = _up(rig)
    ike = _ike_sas(gw1)
    began = time.monotonic()
    gw1.signal(signal.SIGTERM)
    gw2.wait_log("ha: gw2 owns group edge", timeout=10)
    # The lease was revoked: no wait for it to run out.
    assert time.monotonic() - began < TTL
    assert gw1.proc is not None and gw1.proc.wait(10) == 0
    assert "resigned group edge: 1 IKE_SA(s) left to the next owner" in gw1.text()
    assert _ike_sas(gw2) == ike
    time.sleep(1.5)
    assert _ike_sas(peer) == ike  # no DELETE reached it


def test_without_ha_ha_status_says_so(tmp_path: Path) -> None:
    daemon = Larval("solo", tmp_path, PEER_CONFIG.format(vip=VIP, peer=PEER, dir="{dir}")
                    .replace('start_action = "start"', 'start_action = "none"'))  # fmt: skip
    try:
        daemon.start()
        wait(lambda: (daemon.dir / "control").exists(), 20, daemon.text)
        daemon.wait_log("IKE on")
        with pytest.raises(ControlError, match="has no \\[ha\\]: this daemon is in no group"):
            daemon.ask("ha.status")
        shown = daemon.larval("ha", "status")
        assert shown.returncode == 1 and "has no [ha]" in shown.stderr, shown
        assert "Traceback" not in shown.stderr
    finally:
        daemon.kill()


def test_a_takeover_that_fails_gives_ownership_up(netns_rig: Rig) -> None:
    rig = netns_rig
    # No interface's subnet holds the address, and no ha.interface says where it goes.
    gw1 = rig.gateway("gw1", vip="198.51.100.77")
    gw1.wait_log("ha: gw1: taking over group edge")
    gw1.wait_log("virtual address 198.51.100.77: no interface's subnet holds it, and no "
                 "ha.interface is given; giving it up")  # fmt: skip
    gw1.wait_log("ha: gw1 fenced in group edge (the takeover failed")
    assert "Traceback" not in gw1.text()
    assert gw1.proc is not None and gw1.proc.poll() is None
    status = gw1.ask("ha.status")
    assert status["role"] in ("standby", "fenced") and "takeover failed" in status["fenced_reason"]
    assert gw1.ask("status")["sas"] == 0


def test_an_owner_whose_key_is_taken_fences_itself(rig: Rig) -> None:
    gw1, gw2, peer = _up(rig)
    ike = _ike_sas(gw1)
    # The owner key deleted by hand: gw2 campaigns at once; gw1's lease lives on.
    EtcdClient(rig.etcd.endpoints).delete(f"/larval/{GROUP}/owner".encode())
    gw2.wait_log("ha: gw2 owns group edge", timeout=10)
    gw1.wait_log("ha: gw1 fenced in group edge", timeout=10)
    assert gw1.ask("ha.status")["ike_sent_since_fenced"] == 0
    assert gw1.ask("status")["sas"] == 0
    assert _ike_sas(gw2) == ike and _ike_sas(peer) == ike


def test_the_etcd_leader_s_loss_moves_nothing(tmp_path: Path) -> None:
    """Three members; the leader killed under an owner and a standby: a new etcd leader
    within a second, and the lease (5 s) rides it out: no fence, no takeover."""
    members = EtcdCluster(tmp_path, 3)
    rig = Rig(tmp_path, members)
    try:
        members.start()
        gw1 = rig.gateway("gw1", ttl=5)
        gw1.wait_log("ha: gw1 owns group edge")
        gw2 = rig.gateway("gw2", ttl=5)
        gw2.wait_log("ha: gw2 stands by in group edge")
        epoch = gw1.ask("ha.status")["epoch"]
        leader = members.leader()
        assert leader is not None
        members.kill(leader)
        wait(lambda: members.leader() is not None, 10, lambda: "no new etcd leader")
        time.sleep(6)  # past the lease's TTL
        assert (gw1.ask("ha.status")["role"], gw1.ask("ha.status")["epoch"]) == ("owner", epoch)
        assert gw2.ask("ha.status")["role"] == "standby"
        assert "fenced" not in gw1.text() and "ha: gw2 owns group" not in gw2.text()
    finally:
        rig.close()
        members.stop()


def test_an_address_a_killed_run_left_is_taken_away_at_start(netns_rig: Rig) -> None:
    rig = netns_rig
    assert rig.ns is not None
    # As a run of gw1 killed with -9 leaves it, and no node owns the group now.
    rig.ns.run(["ip", "address", "add", f"{NS_VIP}/32", "dev", "eth0"])
    gw1 = rig.gateway("gw1")
    gw1.wait_log(f"ha: virtual address {NS_VIP} was left on eth0 by a run that did not stop "
                 "cleanly; taking it away, this node stands by")  # fmt: skip
    gw1.wait_log("ha: gw1 stands by in group edge")  # logged once the node has started
    text = gw1.text()
    assert text.index("was left on eth0") < text.index("stands by in group edge")
    # Then it wins, and puts it on again as the owner.
    gw1.wait_log("ha: gw1 owns group edge")
    assert f"inet {NS_VIP}/32" in rig.ns.run(["ip", "-o", "address", "show", "dev", "eth0"])
