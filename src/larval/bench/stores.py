"""The state stores a benchmark runs larval with: an SQLite file in a temporary directory
(what ``[daemon] state`` opens), or etcd, through one member the benchmark starts
(`EtcdMember`) on a loopback port with its own data directory, and always kills.

In etcd each larval end is the owner of a group of its own (``bench-NAME-RANDOM``): it
puts the owner key, and the key's create revision is the epoch every write is fenced by,
one txn per write as `larval.store.etcd.EtcdStore` makes it. No election runs (no lease
to renew): what is measured is the writes."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from larval.store import StateStore
from larval.store.crypto import StateKey
from larval.store.etcd import EtcdClient, EtcdStore, owner_key
from larval.store.sqlite import open_store

__all__ = ["EtcdMember", "etcd_available", "open_bench_store"]


def etcd_available() -> bool:
    return shutil.which("etcd") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdMember:
    """One etcd member on 127.0.0.1 for the length of a `with` block; its data directory
    and log in `base`. Raises `RuntimeError` (naming the log) if it does not come up."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = _free_port()
        self.peer_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EtcdMember:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("etcd is not installed (Debian etcd-server)")
        self.base.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.base / "etcd.log", "wb") as log:
            self.proc = subprocess.Popen(
                [etcd, "--name", "bench", "--data-dir", str(self.base / "data"),
                 "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"bench={peer}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self._wait(20.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            if self._has_leader():
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not come up; its log is {self.base / 'etcd.log'}")

    def _has_leader(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("POST", "/v3/maintenance/status", "{}")
            response = conn.getresponse()
            return response.status == 200 and bool(json.loads(response.read()).get("leader"))
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.base / "data", ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def open_bench_store(where: Path | str, name: str) -> StateStore:
    """`where` a path: the SQLite store there, a new key created beside it. `where` an
    etcd endpoint (``http://HOST:PORT``): a group of etcd of this end's own, owned by it,
    under a fresh key."""
    if isinstance(where, Path):
        return open_store(where).store
    client = EtcdClient([where])
    group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    client.put(owner_key(group), name.encode())
    owner = client.get(owner_key(group))
    assert owner is not None
    return EtcdStore(client, group, StateKey(os.urandom(32)), epoch=owner.create_revision)
