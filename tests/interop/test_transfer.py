"""10 MB over TCP through the tunnel, larval on one side and charon on the other: the far
end's SHA-256 of what it received must be that of what was sent."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.harness import INNER, Topology, needs_charon, needs_netns

pytestmark = [needs_netns, needs_charon]

RECEIVER = """
import hashlib, socket, sys
srv = socket.create_server((sys.argv[1], 5001))
conn, _ = srv.accept()
h, n = hashlib.sha256(), 0
while data := conn.recv(1 << 16):
    h.update(data)
    n += len(data)
print(n, h.hexdigest(), flush=True)
"""

SENDER = """
import socket, sys
data = open(sys.argv[3], "rb").read()
s = socket.create_connection((sys.argv[1], 5001), source_address=(sys.argv[2], 0), timeout=60)
s.sendall(data)
s.close()
"""


@pytest.mark.parametrize("larval_side", ["sender", "receiver"])
def test_ten_megabytes_arrive_intact(tmp_path: Path, larval_side: str) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(hashlib.shake_256(b"larval").digest(10 * 1024 * 1024))
    with Topology(tmp_path) as topo:
        larval = topo.larval(topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                             start_action="none")  # fmt: skip
        charon = topo.charon(topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16")
        charon.initiate()
        larval.wait_for("child")
        # larval in b: as sender it runs the client there; as receiver, the server.
        recv_site, send_site = (topo.a, topo.b) if larval_side == "sender" else (topo.b, topo.a)
        receiver = recv_site.ns.popen(
            [sys.executable, "-c", RECEIVER, INNER[recv_site.name]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(0.5)
        send_site.ns.run(
            [sys.executable, "-c", SENDER, INNER[recv_site.name], INNER[send_site.name],
             str(payload)], timeout=120,
        )  # fmt: skip
        out, _ = receiver.communicate(timeout=60)
        size, digest = out.decode().split()
        assert int(size) == payload.stat().st_size
        assert digest == hashlib.sha256(payload.read_bytes()).hexdigest()
