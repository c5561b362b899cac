"""Real etcd members for tests: own ports on 127.0.0.1, own data directories, always killed."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"

needs_etcd = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="needs etcd 3.4 (Debian etcd-server)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def member_command(
    name: str, data_dir: Path, client: str, peer: str, cluster: str, token: str
) -> list[str]:
    """etcd as member `name` of a new cluster (``n1=PEER-URL,...``) on its own URLs, with
    short raft timings: a leader's loss costs well under a second."""
    return [ETCD, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--log-level", "warn"]  # fmt: skip


class MemberSet:
    """Running etcd members, by index: which one leads, and killing one."""

    procs: list[subprocess.Popen[bytes] | None]

    def status(self, i: int) -> dict[str, object] | None:
        """Member `i`'s ``/v3/maintenance/status``; None if it does not answer."""
        raise NotImplementedError

    def leader(self) -> int | None:
        """The index of the leader, as every live member sees it."""
        ids, leaders = {}, set()
        for i, proc in enumerate(self.procs):
            if proc is None or proc.poll() is not None:
                continue
            status = self.status(i)
            if status is None or not status.get("leader"):
                return None
            ids[str(status["header"]["member_id"])] = i  # type: ignore[index]
            leaders.add(str(status["leader"]))
        return ids.get(leaders.pop()) if len(leaders) == 1 else None

    def wait_for_leader(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (leader := self.leader()) is not None:
                return leader
            time.sleep(0.1)
        return None

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.procs[i] = None


class EtcdCluster(MemberSet):
    """`size` members on loopback, with short raft timings so that a leader's loss costs
    well under a second (the lease TTLs the tests use stay far above it)."""

    def __init__(self, base: Path, size: int) -> None:
        self.base = base
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [_free_port() for _ in self.names]
        self.peer_ports = [_free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def start(self) -> None:
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        for i, name in enumerate(self.names):
            client = f"http://127.0.0.1:{self.client_ports[i]}"
            peer = f"http://127.0.0.1:{self.peer_ports[i]}"
            log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - the member keeps it
            self.procs[i] = subprocess.Popen(
                member_command(name, self.base / name, client, peer, cluster,
                               f"larval-test-{self.peer_ports[0]}"),
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            log.close()
        if self.wait_for_leader(20) is None:
            raise RuntimeError(f"etcd members did not elect a leader; logs in {self.base}")

    def status(self, i: int) -> dict[str, object] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_ports[i], timeout=1)
        try:
            conn.request("POST", "/v3/maintenance/status", "{}")
            response = conn.getresponse()
            answer = json.loads(response.read())
            return answer if response.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)
        for name in self.names:
            shutil.rmtree(self.base / name, ignore_errors=True)


def cluster(base: Path, size: int) -> Iterator[EtcdCluster]:
    members = EtcdCluster(base, size)
    try:
        members.start()
        yield members
    finally:
        members.stop()
