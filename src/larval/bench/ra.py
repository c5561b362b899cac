"""Remote-access benchmark (no root): `n` road warriors dial one gateway with
EAP-MSCHAPv2 and get an address of its pool, as ``larval bench ra`` reports it.

The gateway is a process of its own: a `Stack` and a `KeyManager` joined by PF_KEY bytes
(a `larval.node.Node`, as `larval run`), one connection ``rw`` proving itself with an
ECDSA P-256 certificate made by `larval.pki`, ``remote = { auth = "eap-mschapv2",
eap_id = "%any" }``, `n` users in ``[secrets.eap-userNNNN]`` and the pool ``rw``
(10.3.0.0/16). It serves the control socket ops ``ike.status`` and ``ike.pools`` over a
real AF_UNIX socket (`larval.net.control.ControlServer`), answered from the key
manager's ``status()`` and the pools' ``status()`` as `larval run`'s handlers answer them
(without the daemon's per-SA byte counters from its stack).

The road warriors are one key manager in the benchmark's process with one connection a
user (``vips = 0.0.0.0``), each IKE SA seen by the gateway from its own UDP port of one
address, as clients behind one NAT are (the gateway's connection names one peer
address); datagrams go between the processes over an AF_UNIX datagram socket pair, two
bytes of port ahead of each. `in_flight` setups are kept under way until `n` are done.

Figures: setups per second from the first IKE_SA_INIT to the last CHILD_SA installed on
the client side (each one EAP-Identity, MSCHAPv2 and the lease); the gateway's resident
memory per connected client as the growth of its RSS (/proc/PID/status VmRSS) from
before the first setup to after the last, divided by the clients; and the latency of
``larval status`` and ``larval pools`` with all of them up: `control_request` (the
commands' own client) on the gateway's socket plus the commands' text rendering, the
median of `queries` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import ipaddress
import multiprocessing
import os
import select
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from larval.commands.daemon import print_status
from larval.commands.pools import print_pools
from larval.credentials import Credentials
from larval.keymgr.manager import KeyManager
from larval.net.control import ControlServer, control_request
from larval.node import Node
from larval.ra_gateway import ESP_PROPOSAL, IKE_PROPOSAL, RaGateway

GATEWAY, CLIENTS = "192.0.2.2", "192.0.2.1"
GATEWAY_ID = "vpn.bench.example"
POOL = "10.3.0.0/16"
HOME_NET = "203.0.113.0/24"
TIMER_PERIOD = 0.1  # s between timer checks on both sides
COOKIE_THRESHOLD = 1_000_000  # the flood from one address is the benchmark, not an attack
_NAT_PORTS = {500: 20000, 4500: 40000}  # the clients' ports as the gateway sees them


def _user(i: int) -> str:
    return f"user{i:04d}"


def _password(i: int) -> str:
    return f"bench-Password-{i:04d}"


RA = RaGateway(GATEWAY, CLIENTS, GATEWAY_ID, HOME_NET, POOL, credentials_name="<bench>")


def credentials() -> Credentials:
    """The CA and the gateway's certificate, in memory."""
    return RA.credentials("larval bench", "bench CA")


def _users(n: int) -> dict[str, str]:
    return {_user(i): _password(i) for i in range(n)}


def gateway_node(n: int, creds: Credentials) -> Node:
    config = RA.gateway_config(_users(n), creds, "<bench gateway>")
    conns = [dataclasses.replace(c, ike=dataclasses.replace(c.ike,
                                                            cookie_threshold=COOKIE_THRESHOLD))
             for c in config.connections]  # fmt: skip
    node = Node(conns, pools=config.pools)
    for policy in config.policies:
        node.stack.spd.add(policy)
    return node


def clients_node(n: int, creds: Credentials) -> Node:
    """One key manager with a connection a user, each asking for an address."""
    users = _users(n)
    config = RA.clients_config({u: u for u in users}, users, creds, "<bench clients>")
    return Node(config.connections)


def _rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (proc(5))."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _received(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """The datagrams waiting on the non-blocking `sock` (64 at the most), each as its two
    bytes of port and the IKE message after them."""
    for _ in range(64):
        try:
            packet = sock.recv(65536)
        except BlockingIOError:
            return
        yield int.from_bytes(packet[:2], "big"), packet[2:]


# -- the gateway process -----------------------------------------------------------------


def _gateway(n: int, creds: Credentials, sock: socket.socket, control: str, ready: Any) -> None:
    asyncio.run(_serve_gateway(gateway_node(n, creds).keymgr, sock, control, ready))


async def _serve_gateway(
    keymgr: KeyManager, sock: socket.socket, control: str, ready: Any
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    keymgr.start(time.time())
    local = ipaddress.ip_address(GATEWAY)

    def flush() -> None:
        for data, (_, port) in keymgr.datagrams_to_send():
            sock.send(port.to_bytes(2, "big") + data)

    def readable() -> None:
        for port, data in _received(sock):
            keymgr.receive_ike(data, (CLIENTS, port), local, time.time())
            flush()

    def tick() -> None:
        keymgr.handle_timer(time.time())
        flush()
        loop.call_later(TIMER_PERIOD, tick)

    def stop(request: dict[str, Any]) -> dict[str, Any]:
        stopped.set()
        return {}

    server = ControlServer(control, {
        "ike.status": lambda request: {**keymgr.status(), "stack": {}},
        "ike.pools": lambda request: {"pools": [p.to_dict() for p in keymgr.pools.status()]},
        "bench.stop": stop,
    })  # fmt: skip
    await server.start()
    sock.setblocking(False)
    loop.add_reader(sock.fileno(), readable)
    loop.call_later(TIMER_PERIOD, tick)
    ready.send(os.getpid())
    await stopped.wait()
    loop.remove_reader(sock.fileno())
    await server.close()


# -- the clients and the figures ---------------------------------------------------------


def _send(keymgr: KeyManager, sock: socket.socket, ports: dict[tuple[bytes, int], int]) -> None:
    """The clients' datagrams, each IKE SA from its own port (a NAT's mapping)."""
    for data, (_, port) in keymgr.datagrams_to_send():
        flow = (data[:8], port)  # SPIi, and the gateway's port it goes to
        mapped = ports.get(flow)
        if mapped is None:
            mapped = ports[flow] = _NAT_PORTS[port] + len(ports) % 20000
        sock.send(mapped.to_bytes(2, "big") + data)


def _connect(
    keymgr: KeyManager, sock: socket.socket, n: int, in_flight: int, deadline: float
) -> tuple[int, float, float]:
    """Start `n` setups, `in_flight` at a time: (done, first, last) in monotonic time."""
    local = ipaddress.ip_address(CLIENTS)
    ports: dict[tuple[bytes, int], int] = {}
    started = 0
    first = last = time.monotonic()
    next_timer = first + TIMER_PERIOD
    names = list(keymgr.connections)
    while True:
        pending = len(keymgr.sessions) - len(keymgr.children)
        while started < n and pending < in_flight:
            keymgr.initiate(names[started], "net", time.time())
            started += 1
            pending += 1
        _send(keymgr, sock, ports)
        done = len(keymgr.children)
        mono = time.monotonic()
        # Every setup started has ended: installed, or failed (a failed session leaves
        # `sessions`, an installed one stays).
        settled = started >= n and len(keymgr.sessions) <= done
        if done >= n or settled or mono > deadline:
            return done, first, last
        if mono >= next_timer:
            keymgr.handle_timer(time.time())
            next_timer = mono + TIMER_PERIOD
        if not select.select([sock], (), (), TIMER_PERIOD)[0]:
            continue
        for port, data in _received(sock):
            gateway_port = 4500 if port >= _NAT_PORTS[4500] else 500
            keymgr.receive_ike(data, (GATEWAY, gateway_port), local, time.time())
            _send(keymgr, sock, ports)
        if len(keymgr.children) > done:
            last = time.monotonic()


def _latency(control: str, op: str, render: Any, queries: int) -> tuple[float, int]:
    """Median milliseconds of `op` asked and rendered as its command does; the answer's
    size in bytes."""
    times = []
    size = 0
    for _ in range(queries):
        t0 = time.perf_counter()
        answer = control_request(control, {"op": op}, timeout=120.0)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            render(answer)
        times.append(time.perf_counter() - t0)
        size = len(out.getvalue())
    return round(statistics.median(times) * 1000, 2), size


def _print_pools(answer: dict[str, Any]) -> None:
    print_pools(answer["pools"])


def run(n: int = 1000, in_flight: int = 32, queries: int = 5) -> dict[str, Any]:
    creds = credentials()
    client = clients_node(n, creds).keymgr
    client.start(time.time())
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    ctx = multiprocessing.get_context("fork")
    ready, ready_child = ctx.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="larval-bench-ra-") as tmp:
        control = str(Path(tmp) / "control")
        proc = ctx.Process(target=_gateway, args=(n, creds, theirs, control, ready_child),
                           name="larval-bench-ra-gateway", daemon=True)  # fmt: skip
        proc.start()
        try:
            if not ready.poll(120):
                raise RuntimeError("the gateway process did not start")
            pid = ready.recv()
            rss_before = _rss_kib(pid)
            ours.setblocking(False)
            cpu0 = time.process_time()
            done, first, last = _connect(client, ours, n, in_flight,
                                         time.monotonic() + max(120.0, n / 5))  # fmt: skip
            client_cpu = time.process_time() - cpu0
            rss_after = _rss_kib(pid)
            pools = control_request(control, {"op": "ike.pools"})["pools"]
            online = sum(len(p["online"]) for p in pools)
            status_ms, status_bytes = _latency(control, "ike.status", print_status, queries)
            pools_ms, pools_bytes = _latency(control, "ike.pools", _print_pools, queries)
            control_request(control, {"op": "bench.stop"})
            proc.join(30)
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join()
            ours.close()
            theirs.close()
    elapsed = last - first
    return {
        "clients": n,
        "connected": done,
        "failed": n - done,
        "leases_online": online,
        "setups_per_s": round(done / elapsed, 1) if done and elapsed > 0 else None,
        "elapsed_s": round(elapsed, 3),
        "client_cpu_ms_per_setup": round(client_cpu * 1000 / done, 2) if done else None,
        "gateway_rss_kib": {"before": rss_before, "after": rss_after},
        "gateway_rss_kib_per_client": round((rss_after - rss_before) / done, 1) if done else None,
        "status_ms": status_ms,
        "status_text_bytes": status_bytes,
        "pools_ms": pools_ms,
        "pools_text_bytes": pools_bytes,
        "in_flight": in_flight,
        "note": (
            f"{n} EAP-MSCHAPv2 road warriors (one key manager, a connection each, vips "
            f"0.0.0.0) against one gateway process (certificate ECDSA P-256, pool {POOL}), "
            f"IKE {IKE_PROPOSAL}, ESP {ESP_PROPOSAL}, {in_flight} in flight, datagrams over "
            "an AF_UNIX socket pair, each IKE SA from its own port of one address (behind "
            "one NAT). Memory: growth of the gateway's RSS (VmRSS) over the run per "
            "connected client. status/pools: median of "
            f"{queries} requests over the gateway's control socket (ike.status from the key "
            "manager's status without the stack's byte counters; ike.pools as larval run) "
            "with the commands' text rendering"
        ),
    }
