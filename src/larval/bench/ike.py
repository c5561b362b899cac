"""IKE setup benchmark (root): complete IKE_SA + first CHILD_SA setups per second between
two larval key managers, and between two strongSwan charons, measured in the same run.

Both pairs negotiate the same thing: IKEv2 with a PSK, IKE proposal
aes128gcm16-prfsha256-x25519, one CHILD_SA in tunnel mode with aes128gcm16 between
198.51.100.0/24 and 203.0.113.0/24, and UDP encapsulation forced (encap = yes: charon's
kernel-libipsec installs only UDP-encapsulated SAs), so IKE_AUTH moves to UDP 4500 as
RFC 7296 §2.23 says. `in_flight` setups are kept under way until `n` are done.

larval: two processes, each a `Stack` and a `KeyManager` joined by PF_KEY messages that
are encoded and decoded at the boundary as `larval run` does (a `larval.node.Node`),
with UDP 500 and 4500 sockets on 127.0.0.1 and 127.0.0.2 in a network namespace of their
own (IKE's ports are fixed at 500 and 4500). The initiator calls `KeyManager.initiate`
for one connection again and again: each call is a new IKE SA with a new SPI. Time runs
from the first IKE_SA_INIT to the last CHILD_SA installed on either side; CPU is the two
processes' `time.process_time` over the same span.

strongSwan: charon with kernel-libipsec in each of two namespaces joined by a veth pair
(two charons cannot share a namespace: both bind UDP 500). Debian builds no load-tester
plugin, so the initiator is driven over its VICI socket: `initiate` with `timeout = -1`
returns at once, `reuse_ikesa = no` makes each a new IKE SA, `unique = never` keeps the
responder from closing the earlier ones, and DoS protection is off (the half-open limits
would refuse a loopback flood from one address). The larval responder's is off too: with
64 setups in flight it would otherwise ask nearly every opener for a COOKIE (RFC 7296
§2.6), a round trip charon is spared. Completion is counted from each side's
`child-updown` events; CPU from /proc for both charon processes.

Certificates: the same again with each end proving itself with a certificate under one CA
in place of the PSK (ECDSA P-256, and RSA-2048), made by `larval.pki` and loaded from a
credentials directory in swanctl's layout by both larval and charon. Both ends send
CERTREQ and so their certificate; each signs with what strongSwan picks for its key
(RFC 7427 when the peer announces SIGNATURE_HASH_ALGORITHMS, as both do).

The state store: each case's larval pair runs again with each end keeping its state
as `larval run` does with ``[daemon] state`` (`_with_store`): an SQLite store in a
temporary directory under a fresh key, shared by the stack (its sequence number writer
running) and the key manager, which writes an IKE SA's and its CHILD_SA's records before
the datagram that follows from them leaves, on an event loop with `larval run`'s group
commit (`_serve`: one write per pass for every IKE SA that changed in it).
``--store both`` (the default) runs it after the store-off pair in each round and gives
the cost as on/off (`larval.bench.store_cost`);
the records each store held at the end are reported, so a run that wrote nothing shows.
No ESP flows here (no dataplane): what reserving sequence numbers costs is `bench tunnel`'s.

`run` alternates the pairs `runs` times for each case and reports the median run of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import select
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from larval import pki
from larval.bench import store_cost
from larval.bench.charon import (
    Charon,
    CharonError,
    ChildConfig,
    ConnConfig,
    charon_available,
)
from larval.bench.stores import EtcdMember, etcd_available, open_bench_store
from larval.daemon import gc_policy
from larval.daemon.auth import load_and_resolve
from larval.daemon.config import parse_config
from larval.daemon.group_commit import GroupCommit
from larval.esp import NON_ESP_MARKER
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.keymgr.manager import KeyManager
from larval.keymgr.persist import take_batch
from larval.net.netns import Netns, veth_pair
from larval.node import Node
from larval.store import StateStore, StoreError

IKE_PROPOSAL = "aes128gcm16-prfsha256-x25519"
ESP_PROPOSAL = "aes128gcm16"
PSK = "larval-bench-psk-0123456789"
NET = {"i": "198.51.100.0/24", "r": "203.0.113.0/24"}
LOOPBACK = {"i": "127.0.0.1", "r": "127.0.0.2"}
OUTER = {"i": "192.0.2.1", "r": "192.0.2.2"}
INNER = {"i": "198.51.100.1", "r": "203.0.113.1"}
TIMER_PERIOD = 0.1  # s between retransmission/expiry checks of every IKE SA
# Half-open IKE SAs before a responder asks for COOKIEs, on both sides: the flood of
# openers from one address is the benchmark, not an attack.
COOKIE_THRESHOLD = 1_000_000
#: The certificate cases: each end's key (and the CA's), as `larval pki gen` takes them.
CERT_CASES = {"ecdsa-p256": ("ecdsa", 256), "rsa-2048": ("rsa", 2048)}
#: Each end's identity, a dNSName of its certificate.
CERT_ID = {"i": "i.bench.example", "r": "r.bench.example"}


# -- larval ----------------------------------------------------------------------------


def _config(me: str, peer: str, credentials: Path | None = None) -> dict[str, Any]:
    """The connection of one larval peer: with the PSK, or with the certificates of a
    credentials directory (`_credentials`)."""
    connection: dict[str, Any] = {
        "local_addrs": [LOOPBACK[me]],
        "remote_addrs": [LOOPBACK[peer]],
        "proposals": [IKE_PROPOSAL],
        "encap": True,
        "children": {
            "net": {
                "local_ts": [NET[me]],
                "remote_ts": [NET[peer]],
                "esp_proposals": [ESP_PROPOSAL],
            }
        },
    }
    if credentials is None:
        return {"connections": {"bench": connection}, "secrets": {"bench": {"secret": PSK}}}
    connection["local"] = {"auth": "pubkey", "certs": [f"{me}.pem"], "id": CERT_ID[me]}
    connection["remote"] = {"auth": "pubkey", "id": CERT_ID[peer]}
    return {"daemon": {"credentials": str(credentials)}, "connections": {"bench": connection}}


def _credentials(directory: Path, kind: str, size: int) -> Path:
    """A CA and a certificate for each end under it, in swanctl's layout (`x509ca/`,
    `x509/`, `private/`), as `larval pki` makes them."""
    ca_key = pki.generate_key(kind, size)
    ca = pki.make_certificate(
        pki.CertRequest(pki.parse_dn("C=CH, O=larval bench, CN=bench CA"), ca=True),
        ca_key.public_key(), ca_key,
    )  # fmt: skip
    for sub in ("x509ca", "x509", "private"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "x509ca" / "ca.pem").write_bytes(ca.public_bytes(pki.encoding("pem")))
    for me, fqdn in CERT_ID.items():
        key = pki.generate_key(kind, size)
        request = pki.CertRequest(pki.parse_dn(f"C=CH, O=larval bench, CN={fqdn}"),
                                  sans=[pki.parse_san(fqdn)])  # fmt: skip
        cert = pki.make_certificate(request, key.public_key(), ca_key, ca)
        (directory / "x509" / f"{me}.pem").write_bytes(cert.public_bytes(pki.encoding("pem")))
        path = directory / "private" / f"{me}.pem"
        path.touch(0o600)
        path.write_bytes(pki.private_key_bytes(key))
    return directory


def _node(me: str, peer: str, credentials: Path | None = None) -> Node:
    """One larval peer: a stack and a key manager that meet only in PF_KEY bytes."""
    config = parse_config(_config(me, peer, credentials), f"ike-bench-{me}")
    if credentials is not None:
        config, _ = load_and_resolve(config, f"ike-bench-{me}")
    connections = [
        dataclasses.replace(c, ike=dataclasses.replace(c.ike, cookie_threshold=COOKIE_THRESHOLD))
        for c in config.connections
    ]
    node = Node(connections)
    for policy in config.policies:
        node.stack.spd.add(policy)
    return node


def _with_store(node: Node, where: Path | str, me: str) -> StateStore:
    """The node keeps its state as `larval run` with ``[daemon] state`` does: one store
    for the stack's sequence number reservations (its writer thread running) and the key
    manager's IKE_SA and CHILD_SA records, written by group commit before the datagrams
    that follow from them leave (`_serve`). `where`:
    an SQLite file (a fresh key beside it), or an etcd endpoint
    (`larval.bench.stores.open_bench_store`)."""
    store = open_bench_store(where, me)
    node.stack.use_store(store).start()
    node.keymgr.attach_store(store)
    return store


def _store_report(node: Node, store: StateStore) -> dict[str, Any]:
    """What the store holds once the run is over (the writer stopped): records by kind,
    and the batches written (SQLite counts them)."""
    writer = node.stack.esp_state
    if writer is not None:
        writer.stop()
    records = {kind: len(keys) for kind, keys in store.load().items()}
    writes = getattr(store, "writes", None)
    store.close()
    return {"records": records, "writes": writes}


def _bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((address, port))
    sock.setblocking(False)
    return sock


def _sender(
    sockets: tuple[socket.socket, socket.socket],
) -> Callable[[list[tuple[bytes, tuple[str, int]]]], None]:
    def send(datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
        for data, (host, port) in datagrams:
            if port == NAT_T_PORT:
                sockets[1].sendto(NON_ESP_MARKER + data, (host, port))  # RFC 3948 §2.2
            else:
                sockets[0].sendto(data, (host, port))

    return send


def _peer(
    me: str,
    peer: str,
    sockets: tuple[socket.socket, socket.socket],
    n: int,
    in_flight: int,
    ready: Barrier,
    stop: Event,
    results: Pipe,
    credentials: Path | None = None,
    state: Path | str | None = None,
) -> None:
    """A process's whole life: set up, wait for the other, run, report. `state`: where
    the state store is (`_with_store`); None: no store. The log is at WARNING, as a
    gateway under load would run it: no exchange line is made (`larval.ike.exchange_log`)."""
    logging.getLogger("larval").setLevel(logging.WARNING)
    node = _node(me, peer, credentials)
    keymgr = node.keymgr
    try:
        store = _with_store(node, state, me) if state is not None else None
    except StoreError as e:
        # Said in the figures; the other end is let go at once rather than left waiting.
        ready.wait()
        stop.set()
        results.send({"done": 0, "started": 0, "first": 0.0, "last": 0.0, "cpu": 0.0,
                      "store": {"error": str(e)}})  # fmt: skip
        results.close()
        return
    gc_policy.settle()  # as `larval run` does once it has started
    ready.wait()
    cpu0 = time.process_time()
    report = asyncio.run(_serve(keymgr, sockets, me == "i", n, in_flight, stop))
    report["cpu"] = time.process_time() - cpu0
    if store is not None:
        report["store"] = _store_report(node, store)
    results.send(report)
    # The other side may still be waiting for our last datagrams.
    results.close()


async def _serve(
    keymgr: KeyManager,
    sockets: tuple[socket.socket, socket.socket],
    initiator: bool,
    n: int,
    in_flight: int,
    stop: Event,
) -> dict[str, Any]:
    """The key manager on an event loop as `larval run` drives it (`IkeDaemon`): each
    datagram read is handled at once; what that changed and sends goes by group commit
    (`larval.daemon.group_commit`: one write on a writer thread per pass, the datagrams
    after it) with the store on, and leaves at once with it off; timers every
    `TIMER_PERIOD`. (The daemon's asyncio transport reads a datagram per socket per
    turn of the loop, this reads all that are there: that affects both runs alike.)
    What a datagram's handling sends leaves before the next is read, and the initiator
    tops its setups up to `in_flight` after each, so the other end works on them while
    this one reads on: the two ends overlap as two charons do."""
    loop = asyncio.get_running_loop()
    send = _sender(sockets)
    commit = GroupCommit(loop, lambda: take_batch(keymgr), send)
    local = keymgr.connections["bench"].ike.local_addr
    natt = sockets[1]
    state = {"started": 0, "first": 0.0, "last": 0.0}
    finished = loop.create_future()

    def flush() -> None:
        if keymgr.persist is not None:
            commit.request()
        else:
            send(keymgr.datagrams_to_send())

    def progress() -> None:
        done = len(keymgr.children)
        if done > progress.done:  # type: ignore[attr-defined]
            progress.done = done  # type: ignore[attr-defined]
            state["last"] = time.monotonic()
        if initiator:
            # Sessions that closed (failed) leave `sessions`; installed ones stay.
            pending = len(keymgr.sessions) - len(keymgr.children)
            now = time.time()
            while state["started"] < n and pending < in_flight:
                if not state["started"]:
                    state["first"] = time.monotonic()
                keymgr.initiate("bench", "net", now)
                state["started"] += 1
                pending += 1
        flush()
        if (done >= n or stop.is_set()) and not finished.done():
            finished.set_result(None)

    progress.done = 0  # type: ignore[attr-defined]

    def readable(sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                break
            if sock is natt:
                if not data.startswith(NON_ESP_MARKER):
                    continue  # ESP: nobody here to decrypt it
                data = data[len(NON_ESP_MARKER) :]
            keymgr.receive_ike(data, addr, local, time.time())
            # What it answered leaves now, as `larval run` sends after each datagram:
            # the peer works on it while this end reads the next.
            progress()

    def tick() -> None:
        keymgr.handle_timer(time.time())
        progress()
        ticking[0] = loop.call_later(TIMER_PERIOD, tick)

    for sock in sockets:
        loop.add_reader(sock, readable, sock)
    ticking = [loop.call_later(TIMER_PERIOD, tick)]
    progress()
    try:
        await asyncio.wait_for(finished, max(60.0, n / 10))
    except TimeoutError:
        pass
    finally:
        ticking[0].cancel()
        for sock in sockets:
            loop.remove_reader(sock)
    await commit.drained()
    commit.close()
    return {"done": len(keymgr.children), "started": state["started"],
            "first": state["first"], "last": state["last"]}  # fmt: skip


def _larval(
    n: int, in_flight: int, credentials: Path | None = None, state: Path | str | None = None
) -> dict[str, Any]:
    """One run of the larval pair; `state`: a directory for each peer's SQLite state
    store, or an etcd endpoint for both (the store on); None for none (off)."""
    ctx = multiprocessing.get_context("fork")
    with Netns(f"lbIke{uuid.uuid4().hex[:6]}") as ns:
        sockets = {
            me: ns.call(lambda a: (_bind(a, IKE_PORT), _bind(a, NAT_T_PORT)), LOOPBACK[me])
            for me in "ir"
        }
        ready = ctx.Barrier(2)
        stop = ctx.Event()
        pipes = {me: ctx.Pipe(duplex=False) for me in "ir"}
        procs = {
            me: ctx.Process(
                target=_peer,
                args=(
                    me,
                    peer,
                    sockets[me],
                    n,
                    in_flight,
                    ready,
                    stop,
                    pipes[me][1],
                    credentials,
                    state / me / "state.db" if isinstance(state, Path) else state,
                ),
                name=f"larval-ike-{me}",
            )
            for me, peer in (("i", "r"), ("r", "i"))
        }
        for proc in procs.values():
            proc.start()
        out: dict[str, dict[str, Any]] = {}
        try:
            out["i"] = pipes["i"][0].recv()
            stop.set()  # the initiator is done: whatever the responder lacks will not come
            out["r"] = pipes["r"][0].recv()
        finally:
            stop.set()
            for proc in procs.values():
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            for pair in sockets.values():
                for sock in pair:
                    sock.close()
    i, r = out["i"], out["r"]
    figures = _figures(
        min(i["done"], r["done"]), i["first"], max(i["last"], r["last"]), i["cpu"], r["cpu"]
    )
    if state is not None:
        figures["store"] = {"initiator": i.get("store"), "responder": r.get("store")}
    return figures


def _figures(done: int, first: float, last: float, cpu_i: float, cpu_r: float) -> dict[str, Any]:
    elapsed = last - first if done else 0.0
    return {
        "done": done,
        "elapsed_s": round(elapsed, 3) if done else None,
        "ike_sa_per_s": round(done / elapsed, 1) if done and elapsed > 0 else None,
        "cpu_ms_per_ike_sa": round((cpu_i + cpu_r) * 1000 / done, 3) if done else None,
        "cpu_s": {"initiator": round(cpu_i, 3), "responder": round(cpu_r, 3)},
    }


# -- strongSwan ------------------------------------------------------------------------

_VICI_CMD_REQUEST, _VICI_CMD_RESPONSE, _VICI_CMD_UNKNOWN = 0, 1, 2
_VICI_EVENT_REGISTER, _VICI_EVENT_CONFIRM, _VICI_EVENT_UNKNOWN, _VICI_EVENT = 3, 5, 6, 7
_SECTION_START, _SECTION_END, _KEY_VALUE, _LIST_START, _LIST_ITEM, _LIST_END = range(1, 7)


class _Vici:
    """Just enough of strongSwan's VICI protocol for commands and events."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, name: str, body: bytes = b"") -> None:
        packet = bytes([kind, len(name)]) + name.encode() + body
        self.sock.sendall(struct.pack("!I", len(packet)) + packet)

    def _recv(self) -> bytes:
        while True:
            if len(self._buf) >= 4:
                size = struct.unpack("!I", self._buf[:4])[0]
                if len(self._buf) >= 4 + size:
                    packet, self._buf = self._buf[4 : 4 + size], self._buf[4 + size :]
                    return packet
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("charon closed its VICI socket")
            self._buf += chunk

    def pending(self) -> bool:
        """Is a whole packet already buffered (so select would not see it)?"""
        return len(self._buf) >= 4 and len(self._buf) >= 4 + struct.unpack("!I", self._buf[:4])[0]

    def request(self, command: str, fields: dict[str, str]) -> dict[str, Any]:
        body = b"".join(
            bytes([_KEY_VALUE, len(k)]) + k.encode() + struct.pack("!H", len(v)) + v.encode()
            for k, v in fields.items()
        )
        self._send(_VICI_CMD_REQUEST, command, body)
        packet = self._recv()
        if packet[0] != _VICI_CMD_RESPONSE:
            raise ConnectionError(f"VICI {command}: packet type {packet[0]}")
        return _vici_decode(packet[1:])

    def register(self, event: str) -> None:
        self._send(_VICI_EVENT_REGISTER, event)
        packet = self._recv()
        if packet[0] != _VICI_EVENT_CONFIRM:
            raise ConnectionError(f"VICI event {event} refused")

    def event(self) -> tuple[str, dict[str, Any]]:
        packet = self._recv()
        if packet[0] != _VICI_EVENT:
            return "", {}
        name = packet[2 : 2 + packet[1]].decode()
        return name, _vici_decode(packet[2 + packet[1] :])


def _vici_decode(data: bytes) -> dict[str, Any]:
    stack: list[dict[str, Any]] = [{}]
    items: list[str] | None = None
    pos = 0

    def name() -> str:
        nonlocal pos
        size = data[pos]
        pos += 1 + size
        return data[pos - size : pos].decode()

    def value() -> str:
        nonlocal pos
        size = struct.unpack("!H", data[pos : pos + 2])[0]
        pos += 2 + size
        return data[pos - size : pos].decode(errors="replace")

    while pos < len(data):
        kind = data[pos]
        pos += 1
        if kind == _SECTION_START:
            section: dict[str, Any] = {}
            stack[-1][name()] = section
            stack.append(section)
        elif kind == _SECTION_END:
            stack.pop()
        elif kind == _KEY_VALUE:
            key = name()
            stack[-1][key] = value()
        elif kind == _LIST_START:
            items = stack[-1][name()] = []
        elif kind == _LIST_ITEM and items is not None:
            items.append(value())
        elif kind == _LIST_END:
            items = None
    return stack[0]


class _BenchCharon(Charon):
    """A charon tuned for many IKE SAs between one pair of addresses."""

    def write_config(self, conn: ConnConfig) -> None:
        super().write_config(conn)
        (self.dir / "strongswan.conf").write_text(
            self._strongswan_conf(
                f"""\
    install_routes = no
    install_virtual_ip = no
    reuse_ikesa = no
    dos_protection = no
    cookie_threshold = {COOKIE_THRESHOLD}
    block_threshold = 1000000
    init_limit_half_open = 0
    ikesa_table_size = 4096
    ikesa_table_segments = 16
    retransmit_tries = 3
    retransmit_timeout = 4.0
""",
                ike_name=False,
            )
        )
        swanctl = self.dir / "swanctl" / "swanctl.conf"
        swanctl.write_text(
            swanctl.read_text().replace("        mobike = no\n",
                                        "        mobike = no\n        unique = never\n")
        )  # fmt: skip

    def pid(self) -> int:
        for pid in self.ns.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "charon":
                    return pid
            except OSError:
                continue
        raise RuntimeError(f"no charon in {self.ns.name}")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _up_events(vici: _Vici) -> Iterator[bool]:
    """Drain the buffered and readable events; True for each CHILD_SA that came up."""
    while vici.pending() or select.select([vici.sock], (), (), 0)[0]:
        name, message = vici.event()
        if name == "child-updown" and message.get("up") == "yes":
            yield True


def _strongswan(
    n: int, in_flight: int, workdir: Path, credentials: Path | None = None
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    with Netns(f"lbIkeSi{tag}") as ns_i, Netns(f"lbIkeSr{tag}") as ns_r:
        veth_pair(ns_i, ns_r, f"{OUTER['i']}/24", f"{OUTER['r']}/24")
        charons: dict[str, _BenchCharon] = {}
        vicis: list[_Vici] = []
        try:
            for me, peer, ns in (("i", "r", ns_i), ("r", "i", ns_r)):
                # kernel-libipsec routes the remote net via ipsec0 from a local TS address.
                ns.run(["ip", "address", "add", f"{INNER[me]}/32", "dev", "lo"])
                charon = _BenchCharon(ns, workdir / f"charon-{me}", loglevel=-1)
                conn = ConnConfig(OUTER[me], OUTER[peer], PSK,
                                  ChildConfig(NET[me], NET[peer], esp_proposals=ESP_PROPOSAL),
                                  proposals=IKE_PROPOSAL, encap=True)  # fmt: skip
                if credentials is not None:
                    conn = dataclasses.replace(
                        conn, local_cert=f"{me}.pem", local_id=CERT_ID[me], remote_id=CERT_ID[peer]
                    )
                charon.write_config(conn)
                if credentials is not None:
                    # The files larval loads, where swanctl --load-all finds them.
                    swanctl = charon.dir / "swanctl"
                    for sub, name in (("x509ca", "ca.pem"), ("x509", f"{me}.pem"),
                                      ("private", f"{me}.pem")):  # fmt: skip
                        (swanctl / sub / name).write_bytes((credentials / sub / name).read_bytes())
                    (swanctl / "private" / f"{me}.pem").chmod(0o600)
                charons[me] = charon
                charon.start()
            command = _Vici(charons["i"].vici)
            events = {me: _Vici(charons[me].vici) for me in "ir"}
            vicis = [command, *events.values()]
            for v in events.values():
                v.register("child-updown")
            pids = {me: c.pid() for me, c in charons.items()}
            cpu0 = {me: _cpu_seconds(pid) for me, pid in pids.items()}
            done = {"i": 0, "r": 0}
            last = {"i": 0.0, "r": 0.0}
            started = 0
            first = time.monotonic()
            deadline = first + max(60.0, n / 10)
            while min(done.values()) < n and time.monotonic() < deadline:
                while started < n and started - done["i"] < in_flight:
                    command.request("initiate", {"child": "net", "timeout": "-1"})
                    started += 1
                select.select([v.sock for v in events.values()], (), (), 0.1)
                for me, v in events.items():
                    ups = sum(_up_events(v))
                    if ups:
                        done[me] += ups
                        last[me] = time.monotonic()
            cpu = {me: _cpu_seconds(pid) - cpu0[me] for me, pid in pids.items()}
        finally:
            for v in vicis:
                v.close()
            for charon in charons.values():
                charon.stop()
    return _figures(min(done.values()), first, max(last.values()), cpu["i"], cpu["r"])


# -- both ------------------------------------------------------------------------------


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (an incomplete run counts as the slowest)."""
    ranked = sorted(runs, key=lambda r: r["ike_sa_per_s"] or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def _pairs(
    n: int,
    in_flight: int,
    runs: int,
    workdir: Path,
    credentials: Path | None,
    why_not: str,
    store: str = "off",
    etcd: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, list[dict[str, Any]]], str]:
    """Both pairs `runs` times, alternated so that whatever else the machine does falls on
    both alike: the median run of each, every run, and why strongSwan was not measured.
    `store` (`larval.bench.store_cost`): larval with its state store off, on, or both, one
    after the other in each round, the store in SQLite or, given its endpoint, in `etcd`;
    the median run is of the store off when it ran."""
    off, on = store_cost.wants(store)
    runs_of: dict[str, list[dict[str, Any]]] = {"larval": [], "larval_store": [], "strongswan": []}
    for k in range(runs):
        if off:
            runs_of["larval"].append(_larval(n, in_flight, credentials))
        if on:
            state = etcd or workdir / f"state-{k}"
            runs_of["larval_store"].append(_larval(n, in_flight, credentials, state))
        if not why_not:
            try:
                runs_of["strongswan"].append(
                    _strongswan(n, in_flight, workdir / str(k), credentials)
                )
            except (CharonError, ConnectionError, OSError) as e:
                why_not = f"charon failed: {e}"
    strongswan = _median_run(runs_of["strongswan"]) if runs_of["strongswan"] else None
    every = {name: r for name, r in runs_of.items() if r}
    larval = _median_run(runs_of["larval"] or runs_of["larval_store"])
    return larval, strongswan, every, why_not


def _store_figures(every: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The store's figures and its cost, from the runs with it on (and off)."""
    on = every.get("larval_store")
    if not on:
        return {}
    off = every.get("larval", [])
    median = _median_run(on)
    rate = store_cost.summary(
        "IKE SAs/s", [r["ike_sa_per_s"] for r in off], [r["ike_sa_per_s"] for r in on], True
    )
    cpu = store_cost.summary(
        "CPU/IKE SA",
        [r["cpu_ms_per_ike_sa"] for r in off],
        [r["cpu_ms_per_ike_sa"] for r in on],
        False,
    )
    return {
        "store_ike_sa_per_s": median["ike_sa_per_s"],
        "store_cpu_ms_per_ike_sa": median["cpu_ms_per_ike_sa"],
        "store_ratio": rate["ratio"],
        "store_cpu_ratio": cpu["ratio"],
        "store_cost": f"{rate['cost']}; {cpu['cost']}",
        "store_records": median["store"],
    }


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 2) if ours and theirs else None


def run(
    n: int = 2000, in_flight: int = 64, runs: int = 3, cert_n: int = 1000, store: str = "both"
) -> dict[str, Any]:
    """The PSK case (`n` setups) and the certificate cases (`cert_n` setups each), each
    with larval's state store `store` (`larval.bench.store_cost`: off, on or both)."""
    store_cost.wants(store)  # ValueError before anything is made
    if os.geteuid() != 0:
        return {"skipped": "needs root: network namespaces, and IKE's UDP ports 500 and 4500"}
    if store == "etcd" and not etcd_available():
        return {"skipped": "--store etcd needs etcd 3.4 (Debian etcd-server)"}
    why_not = "" if charon_available() else "charon or swanctl is not installed"
    certificates: dict[str, Any] = {}
    with contextlib.ExitStack() as cleanup:
        tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="larval-bench-"))
        etcd = None
        if store == "etcd":
            etcd = cleanup.enter_context(EtcdMember(Path(tmp) / "etcd")).endpoint
        larval, strongswan, every, why_not = _pairs(n, in_flight, runs, Path(tmp) / "psk",
                                                    None, why_not, store, etcd)  # fmt: skip
        for case, (kind, size) in CERT_CASES.items():
            if not cert_n:
                break
            credentials = _credentials(Path(tmp) / case / "credentials", kind, size)
            ours, theirs, case_runs, why_not = _pairs(
                cert_n, in_flight, runs, Path(tmp) / case, credentials, why_not, store, etcd
            )
            certificates[case] = {
                "ike_sa_per_s": ours["ike_sa_per_s"],
                "cpu_ms_per_ike_sa": ours["cpu_ms_per_ike_sa"],
                "strongswan_ike_sa_per_s": theirs["ike_sa_per_s"] if theirs else None,
                "strongswan_cpu_ms_per_ike_sa": theirs["cpu_ms_per_ike_sa"] if theirs else None,
                "ratio": _ratio(ours["ike_sa_per_s"], theirs["ike_sa_per_s"] if theirs else None),
                **_store_figures(case_runs),
                "n": cert_n,
                "runs": case_runs,
            }
    ours, theirs = larval["ike_sa_per_s"], strongswan["ike_sa_per_s"] if strongswan else None
    return {
        "ike_sa_per_s": ours,
        "cpu_ms_per_ike_sa": larval["cpu_ms_per_ike_sa"],
        "strongswan_ike_sa_per_s": theirs,
        "strongswan_cpu_ms_per_ike_sa": strongswan["cpu_ms_per_ike_sa"] if strongswan else None,
        "ratio": _ratio(ours, theirs),
        **_store_figures(every),
        "n": n,
        "in_flight": in_flight,
        "runs": every,
        "certificates": certificates,
        # The IKE work's goal: 1.5 times strongSwan; the state store's: under 10% cost.
        "target": {
            "ratio": 1.5,
            "store_ratio": 1 - store_cost.GOAL,
            "store_cpu_ratio": 1 + store_cost.GOAL,
        },
        "note": (
            f"median of {runs} runs each, alternated; IKEv2 PSK, IKE {IKE_PROPOSAL}, one "
            f"tunnel-mode CHILD_SA {ESP_PROPOSAL}, encap = yes; {n} setups, {in_flight} in "
            "flight; time from the first IKE_SA_INIT to the last CHILD_SA installed on "
            "either side, CPU of both peers. larval: two processes (stack + key manager "
            "joined by PF_KEY bytes each), UDP 500/4500 on 127.0.0.1 and 127.0.0.2 in a "
            "namespace; strongSwan: two charons (kernel-libipsec, no logging) in two "
            "namespaces over veth, driven by VICI initiate (no load-tester plugin in "
            "Debian), reuse_ikesa = no, unique = never, dos_protection = no; no COOKIEs on "
            f"either side. certificates: the same with {cert_n} setups, each end a "
            f"certificate under one CA ({', '.join(CERT_CASES)}), CERTREQ and CERT both ways"
            + _store_note(store)
            + (f". strongSwan not measured: {why_not}" if why_not and not theirs else "")
            + (f". strongSwan stopped early: {why_not}" if why_not and theirs else "")
        ),
    }


def _store_note(store: str) -> str:
    if store == "off":
        return ". State store off"
    where = (
        "in etcd 3.4 (one member the bench started on a loopback port; each end the "
        "owner of a group of its own, each write one txn fenced by the owner key's create "
        "revision; values sealed under a fresh key; etcd's own CPU is not counted)"
        if store == "etcd"
        else "in an SQLite store (WAL, synchronous=FULL, values sealed under a fresh "
        "key, a temporary directory)"
    )
    what = (
        f"each case's larval pair with each end's state {where}, the IKE_SA and CHILD_SA "
        "records of a pass of the event loop written in one group commit before its "
        "datagrams leave"
    )
    if store == "on":
        return f". State store on: {what}"
    return f". State store: {what}, run after the store off in each round; store_ratio is on/off"


if __name__ == "__main__":
    import json
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    json.dump(run(size), sys.stdout, indent=1)
    print()
