"""A failover rig on one machine: two larval gateways sharing a virtual address, three etcd
members, charon as the client, numbered traffic through the tunnel, a capture of it all.

    cli  192.0.2.2   charon, client of 192.0.2.10; 198.51.100.1 behind it
    gw1  192.0.2.11  larval run, [ha] node gw1; 203.0.113.1 behind it, a UDP echo there
    gw2  192.0.2.12  larval run, [ha] node gw2; the same 203.0.113.1 and echo
    etcd 192.0.2.21, .22, .23  three members, one address each
    sw   br0: every host's link ends here; the capture runs on it

Each host is a network namespace with one veth whose other end is a port of the bridge in
``sw``; the virtual address 192.0.2.10 is on whichever gateway owns the group. The bridge
sees every frame any host sends, so one capture on it is the whole test's evidence
(`tests.interop.failover_evidence`); each host's link segments what larval sends with UDP
GSO, so that a frame holds one ESP packet, as on a wire. What can go wrong is a method
each: `Gateway.kill`, `pause`/`resume` (SIGSTOP past the lease, then SIGCONT), `link`
(the cable out of its bridge port), `cut_from_etcd` (nftables in the gateway, dropping
to and from the members only) and `EtcdMembers.kill_leader` (found through
``/v3/maintenance/status``).

Everything the rig starts goes when its `with` block ends, whatever happened in it:
processes (deleting a namespace ends every process in it), namespaces and etcd's data
directories.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from larval.bench.charon import Charon, ChildConfig, ConnConfig
from larval.net.netns import Netns
from larval.store.etcd import EtcdClient, owner_key
from tests.ha.members import MemberSet, member_command
from tests.interop.harness import LarvalDaemon, Site

VIP = "192.0.2.10"
PREFIX = 24
HOSTS = {"cli": "192.0.2.2", "gw1": "192.0.2.11", "gw2": "192.0.2.12"}
#: Fixed, so that a capture tells who sent each frame (locally administered addresses).
MACS = {"cli": "02:00:00:00:00:02", "gw1": "02:00:00:00:00:11", "gw2": "02:00:00:00:00:12",
        "etcd": "02:00:00:00:00:20"}  # fmt: skip
ETCD_ADDRESSES = ("192.0.2.21", "192.0.2.22", "192.0.2.23")
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
CLIENT_INNER, CLIENT_NET = "198.51.100.1", "198.51.100.0/24"
SERVED, SERVED_NET = "203.0.113.1", "203.0.113.0/24"
ECHO_PORT = 7007
GROUP = "gw"
PSK = "failover-rig-psk-0123456789abcdef"
IKE_PROPOSAL = "aes128-sha256-x25519"
#: AES-GCM: a sequence number sent twice would reuse a nonce (the notes' one rule).
ESP_PROPOSAL = "aes128gcm16"
LEASE_TTL = 5
RATE = 200

#: Sends each datagram back where it came from, on SERVED (on lo, so it is there before
#: and after larval's TUN).
ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{SERVED}", {ECHO_PORT}))
while True:
    data, peer = s.recvfrom(64)
    s.sendto(data, peer)
"""

#: Numbered datagrams at a steady rate until SIGTERM; then it waits for the last echoes
#: and writes when it sent each and which came back, as JSON.
SENDER = """
import json, signal, socket, struct, sys, threading, time
src, dst, port, rate, out, linger = sys.argv[1:7]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
echoed = set()
def receive():
    while True:
        data = s.recv(64)
        if len(data) == 8:
            echoed.add(struct.unpack("!Q", data)[0])
threading.Thread(target=receive, daemon=True).start()
interval = 1 / float(rate)
sent = {}
n, start = 0, time.monotonic()
while not stop.is_set():
    delay = start + n * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    elif delay < -0.1:  # starved: go on from now rather than burst
        start = time.monotonic() - n * interval
    sent[n] = time.time()
    try:
        s.sendto(struct.pack("!Q", n), (dst, int(port)))
    except OSError:
        pass  # no route for a moment: the datagram counts as lost
    n += 1
time.sleep(float(linger))
with open(out, "w") as f:
    json.dump({"interval": interval, "sent": sent, "echoed": sorted(echoed)}, f)
"""


def _ip(ns: Netns, *argv: str) -> str:
    return ns.run(["ip", *argv])


class EtcdMembers(MemberSet):
    """Three etcd members in the ``etcd`` namespace, one address each, with short raft
    timings (as `tests.ha.members`): a leader's loss costs well under the lease TTL."""

    def __init__(self, ns: Netns, base: Path) -> None:
        self.ns = ns
        self.base = base
        self.names = [f"m{i}" for i in range(len(ETCD_ADDRESSES))]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.names)

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{a}:{ETCD_CLIENT_PORT}" for a in ETCD_ADDRESSES]

    def start(self) -> None:
        cluster = ",".join(f"{n}=http://{a}:{ETCD_PEER_PORT}"
                           for n, a in zip(self.names, ETCD_ADDRESSES, strict=True))  # fmt: skip
        for i, (name, address) in enumerate(zip(self.names, ETCD_ADDRESSES, strict=True)):
            client = f"http://{address}:{ETCD_CLIENT_PORT}"
            peer = f"http://{address}:{ETCD_PEER_PORT}"
            log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - the member keeps it
            self.procs[i] = self.ns.popen(
                member_command(name, self.base / name, client, peer, cluster,
                               f"larval-failover-{os.getpid()}"),
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            log.close()
        if self.wait_for_leader(20) is None:
            raise RuntimeError(f"etcd members did not elect a leader; logs in {self.base}")

    def status(self, i: int) -> dict[str, object] | None:
        """Member `i`'s ``/v3/maintenance/status``, asked from inside its namespace."""
        return self.ns.call(_status, ETCD_ADDRESSES[i])

    def kill_leader(self) -> int:
        """SIGKILL the leader; its index."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("the etcd members have no leader to kill")
        self.kill(leader)
        return leader

    def owner(self) -> tuple[str, int] | None:
        """The group's owner and epoch (the owner key's create revision), as etcd has them."""
        return self.ns.call(_owner, self.endpoints)

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)
        for name in self.names:
            shutil.rmtree(self.base / name, ignore_errors=True)


def _status(address: str) -> dict[str, object] | None:
    conn = http.client.HTTPConnection(address, ETCD_CLIENT_PORT, timeout=1)
    try:
        conn.request("POST", "/v3/maintenance/status", "{}")
        response = conn.getresponse()
        answer = json.loads(response.read())
        return answer if response.status == 200 and isinstance(answer, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _owner(endpoints: list[str]) -> tuple[str, int] | None:
    kv = EtcdClient(endpoints, timeout=2).get(owner_key(GROUP))
    return None if kv is None else (kv.value.decode(errors="replace"), kv.create_revision)


@dataclass
class Gateway:
    name: str  # "gw1" or "gw2"
    ns: Netns
    dir: Path
    rig: FailoverRig
    daemon: LarvalDaemon | None = None
    #: When each fault was done to it (time.time()), for the capture's checks.
    events: dict[str, float] = field(default_factory=dict)

    @property
    def mac(self) -> str:
        return MACS[self.name]

    @property
    def address(self) -> str:
        return HOSTS[self.name]

    @property
    def pid(self) -> int:
        assert self.daemon is not None and self.daemon.proc is not None, "larval not started"
        return self.daemon.proc.pid

    def start(self, config: str) -> LarvalDaemon:
        """`larval run` with `config` (`FailoverRig.gateway_config`)."""
        self.daemon = LarvalDaemon(Site(self.name, self.ns, self.dir, VIP), config)
        self.daemon.start()
        return self.daemon

    def kill(self) -> None:
        """SIGKILL: nothing is said, nothing revoked."""
        os.kill(self.pid, signal.SIGKILL)
        assert self.daemon is not None and self.daemon.proc is not None
        self.daemon.proc.wait()
        self.events["killed"] = time.time()

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.events["paused"] = time.time()

    def resume(self) -> None:
        self.events["resumed"] = time.time()
        os.kill(self.pid, signal.SIGCONT)

    def link(self, up: bool) -> None:
        """Its cable in or out: the bridge's port to it up or down."""
        _ip(self.rig.sw, "link", "set", f"p-{self.name}", "up" if up else "down")
        self.events["link up" if up else "link down"] = time.time()

    def cut_from_etcd(self) -> None:
        """Drop everything to and from the etcd members in this gateway, nothing else."""
        members = ", ".join(ETCD_ADDRESSES)
        rules = self.dir / "cut.nft"
        rules.write_text(
            "table ip larval_cut {\n"
            f" chain out {{ type filter hook output priority 0; ip daddr {{ {members} }} drop; }}\n"
            f" chain in {{ type filter hook input priority 0; ip saddr {{ {members} }} drop; }}\n"
            "}\n"
        )
        self.ns.run(["nft", "-f", str(rules)])
        self.events["cut"] = time.time()

    def rejoin_etcd(self) -> None:
        self.ns.run(["nft", "delete", "table", "ip", "larval_cut"])
        self.events["rejoined"] = time.time()

    def has_vip(self) -> bool:
        return f" {VIP}/" in _ip(self.ns, "-4", "-o", "address", "show", "dev", "eth0")

    def reaches_etcd(self) -> bool:
        """Whether one etcd member answers its status from here."""
        return any(self.ns.call(_status, a) is not None for a in ETCD_ADDRESSES)


@dataclass
class TrafficResult:
    interval: float
    sent: dict[int, float]  # number -> time.time() it left
    echoed: set[int]


class Traffic:
    """Numbered UDP from CLIENT_INNER to SERVED's echo at `rate` a second, through the
    tunnel, until `stop`."""

    def __init__(self, ns: Netns, out: Path, rate: int = RATE) -> None:
        self.ns = ns
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.out.unlink(missing_ok=True)
        argv = [CLIENT_INNER, SERVED, str(ECHO_PORT), str(self.rate), str(self.out), "1.0"]
        self.proc = self.ns.popen([sys.executable, "-c", SENDER, *argv])

    def stop(self) -> TrafficResult:
        assert self.proc is not None, "traffic not started"
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        data = json.loads(self.out.read_text())
        return TrafficResult(float(data["interval"]),
                             {int(n): float(t) for n, t in data["sent"].items()},
                             set(data["echoed"]))  # fmt: skip


class Capture:
    """dumpcap on the bridge, from `start` to `stop`: every frame any host sent."""

    def __init__(self, ns: Netns, path: Path) -> None:
        self.ns = ns
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.path.with_suffix(".log"), "wb")  # noqa: SIM115 - dumpcap keeps it
        self.proc = self.ns.popen(["dumpcap", "-q", "-i", "br0", "-w", str(self.path)],
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while not (self.path.exists() and self.path.stat().st_size > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dumpcap did not start: {self.path.with_suffix('.log')}")
            time.sleep(0.05)

    def stop(self) -> Path:
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.5)  # the last frames reach the file
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(15)
        return self.path


class FailoverRig:
    """The namespaces, the bridge, etcd, the echoes and the capture, inside a `with`
    block; `gateway_config` and `Gateway.start` bring larval up, `client` charon."""

    def __init__(self, tmp: Path, *, lease_ttl: int = LEASE_TTL) -> None:
        self.tmp = tmp
        self.lease_ttl = lease_ttl
        self.stack = ExitStack()
        self.state_key = tmp / "state.key"
        self.charon: Charon | None = None
        self.traffic: Traffic | None = None

    def __enter__(self) -> FailoverRig:
        try:
            self._build()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _build(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.sw = self.stack.enter_context(Netns(f"foSw{tag}"))
        _ip(self.sw, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip(self.sw, "link", "set", "br0", "up")
        hosts = {}
        for name in ("cli", "gw1", "gw2", "etcd"):
            ns = self.stack.enter_context(Netns(f"fo{name.capitalize()}{tag}"))
            port = f"p-{name}"
            _ip(self.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", ns.name)  # fmt: skip
            _ip(ns, "link", "set", "eth0", "address", MACS[name])
            # Segmented before the link, as a NIC puts a UDP GSO send on the wire: one ESP
            # packet a frame in the capture (veth would carry the whole send as one).
            _ip(ns, "link", "set", "eth0", "gso_max_segs", "1")
            _ip(self.sw, "link", "set", port, "master", "br0")
            _ip(self.sw, "link", "set", port, "up")
            for address in ETCD_ADDRESSES if name == "etcd" else (HOSTS[name],):
                _ip(ns, "address", "add", f"{address}/{PREFIX}", "dev", "eth0")
            _ip(ns, "link", "set", "eth0", "up")
            ns.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])
            (self.tmp / name).mkdir(parents=True, exist_ok=True)
            hosts[name] = ns
        self.cli = hosts["cli"]
        self.gw1 = Gateway("gw1", hosts["gw1"], self.tmp / "gw1", self)
        self.gw2 = Gateway("gw2", hosts["gw2"], self.tmp / "gw2", self)
        # The capture first: it holds everything from the first frame on.
        self.capture = Capture(self.sw, self.tmp / "bridge.pcapng")
        self.capture.start()
        self.stack.callback(self.capture.stop)
        self.etcd = EtcdMembers(hosts["etcd"], self.tmp / "etcd")
        self.stack.callback(self.etcd.stop)  # before the namespace goes: data dirs too
        self.etcd.start()
        for gw in self.gateways:
            _ip(gw.ns, "address", "add", f"{SERVED}/32", "dev", "lo")
            gw.ns.popen([sys.executable, "-c", ECHO])
        _ip(self.cli, "address", "add", f"{CLIENT_INNER}/32", "dev", "lo")
        self.state_key.write_bytes(os.urandom(32))
        self.state_key.chmod(0o600)
        self.stack.callback(self._stop_daemons)

    @property
    def gateways(self) -> tuple[Gateway, Gateway]:
        return self.gw1, self.gw2

    def _stop_daemons(self) -> None:
        if self.traffic is not None and self.traffic.proc is not None:
            self.traffic.proc.kill()
        for gw in self.gateways:
            if gw.daemon is not None and gw.daemon.proc is not None:
                if gw.daemon.proc.poll() is None:
                    os.kill(gw.daemon.proc.pid, signal.SIGCONT)  # a paused one hears SIGTERM
                gw.daemon.stop()
        if self.charon is not None:
            self.charon.stop()

    def gateway_config(self, gw: Gateway, *, ha: bool = True, rekey: str = "1h",
                       dpd: str = "0s") -> str:  # fmt: skip
        """larval's configuration for `gw`: the client's connection on the virtual address,
        and with `ha` the group in etcd, sealed with the one state key."""
        d = gw.dir
        text = f"""
[daemon]
addresses = ["{VIP}"]
tun = "larval0"
tun_addresses = ["{SERVED}/24"]
control_socket = "{d / "control"}"
pfkey_socket = "{d / "pfkey"}"
{f'state_key = "{self.state_key}"' if ha else ""}

[connections.cli]
version = 2
local_addrs = ["{VIP}"]
remote_addrs = ["{HOSTS["cli"]}"]
proposals = ["{IKE_PROPOSAL}"]
encap = true
dpd_delay = "{dpd}"
local = {{ auth = "psk", id = "{VIP}" }}
remote = {{ auth = "psk", id = "{HOSTS["cli"]}" }}

[connections.cli.children.net]
local_ts = ["{SERVED_NET}"]
remote_ts = ["{CLIENT_NET}"]
esp_proposals = ["{ESP_PROPOSAL}"]
start_action = "none"
rekey_time = "{rekey}"

[secrets.ike-cli]
ids = ["{VIP}", "{HOSTS["cli"]}"]
secret = "{PSK}"
"""
        if ha:
            text += f"""
[ha]
backend = "etcd"
endpoints = {json.dumps(self.etcd.endpoints)}
group = "{GROUP}"
node = "{gw.name}"
virtual_addresses = ["{VIP}"]
lease_ttl = "{self.lease_ttl}s"
"""
        return text

    def client(self, *, rekey: str = "1h", dpd: str = "2") -> Charon:
        """charon in ``cli``, configured for the virtual address, started (not yet
        initiating)."""
        charon = Charon(self.cli, self.tmp / "cli" / "charon")
        charon.write_config(
            ConnConfig(HOSTS["cli"], VIP, PSK,
                       ChildConfig(CLIENT_NET, SERVED_NET, esp_proposals=ESP_PROPOSAL,
                                   rekey_time=rekey),
                       proposals=IKE_PROPOSAL, dpd_delay=dpd, local_id=HOSTS["cli"])
        )  # fmt: skip
        self.charon = charon
        charon.start()
        return charon

    def start_traffic(self, rate: int = RATE) -> Traffic:
        self.traffic = Traffic(self.cli, self.tmp / "cli" / "traffic.json", rate)
        self.traffic.start()
        return self.traffic

    def move_vip(self, source: Gateway, target: Gateway) -> None:
        """What a takeover does to the address, by hand: off one, onto the other, and a
        gratuitous ARP from there (RFC 5227 §3)."""
        _ip(source.ns, "address", "del", f"{VIP}/32", "dev", "eth0")
        _ip(target.ns, "address", "add", f"{VIP}/32", "dev", "eth0")
        target.ns.run(["arping", "-U", "-c", "1", "-I", "eth0", "-s", VIP, VIP], check=False)

    def client_sees_vip_at(self) -> str:
        """The Ethernet address the client's neighbour table has for the virtual address."""
        out = _ip(self.cli, "neigh", "show", VIP, "dev", "eth0")
        words = out.split()
        return words[words.index("lladdr") + 1] if "lladdr" in words else ""
