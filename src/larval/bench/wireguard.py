"""A wireguard-go pair for `bench tunnel` (root): Debian's userspace WireGuard over TUN in
the same two namespaces and veth as the larval and charon pairs, carrying the same inner
networks, so iperf3 through it is measured beside them in one run.

Keys are made with `wg genkey` / `wg pubkey`; each end is `wireguard-go -f` on its own
interface, configured with `wg set` (private key, listen port, the peer's public key,
endpoint and allowed IPs). The interface is given the MTU the larval and libipsec TUNs
have (`MTU`, 1400, on the veth's 1500), rather than wireguard-go's 1420, so that TCP's
segments and the UDP case's fragments are the same size through every tunnel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from larval.net.netns import Netns

PORT = 51820
#: The tunnel interface's MTU: that of larval's TUN (`larval stack --mtu`'s default) and of
#: strongSwan's kernel-libipsec TUN.
MTU = 1400
#: Where wireguard-go puts its UAPI socket (not per namespace, hence unique names).
SOCKET_DIR = Path("/var/run/wireguard")


def available() -> bool:
    """wireguard-go and wg are installed."""
    return shutil.which("wireguard-go") is not None and shutil.which("wg") is not None


def _wg(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(["wg", *argv], input=stdin, capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"wg {argv[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


class WireguardPair:
    """wireguard-go in namespaces `a` and `b` (already linked by the veth), each end's
    interface given `inner[end]`/24 and a route to the other's `net`; `stop()` ends both
    processes and removes their sockets (deleting the namespaces is the caller's)."""

    def __init__(
        self,
        a: Netns,
        b: Netns,
        outer: dict[str, str],
        inner: dict[str, str],
        net: dict[str, str],
        workdir: Path,
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        self.names = {"a": f"lwgA{tag}", "b": f"lwgB{tag}"}
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            self._start({"a": a, "b": b}, outer, inner, net, workdir)
        except BaseException:
            self.stop()
            raise

    def _start(
        self,
        ns: dict[str, Netns],
        outer: dict[str, str],
        inner: dict[str, str],
        net: dict[str, str],
        workdir: Path,
    ) -> None:
        private = {end: _wg(["genkey"]) for end in "ab"}
        public = {end: _wg(["pubkey"], private[end] + "\n") for end in "ab"}
        for end in "ab":
            name = self.names[end]
            self.procs.append(
                ns[end].popen(
                    ["wireguard-go", "-f", name],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 10
        while not all((SOCKET_DIR / f"{n}.sock").exists() for n in self.names.values()):
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"wireguard-go exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("wireguard-go did not start")
            time.sleep(0.05)
        for me, peer in (("a", "b"), ("b", "a")):
            name = self.names[me]
            key = workdir / f"wg-{me}.key"
            fd = os.open(
                key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )  # never readable by others
            with os.fdopen(fd, "w") as file:
                file.write(private[me] + "\n")
            try:
                ns[me].run(["wg", "set", name, "private-key", str(key),
                            "listen-port", str(PORT), "peer", public[peer],
                            "endpoint", f"{outer[peer]}:{PORT}",
                            "allowed-ips", net[peer]])  # fmt: skip
            finally:
                key.unlink()
            ns[me].run(["ip", "address", "add", f"{inner[me]}/24", "dev", name])
            ns[me].run(["ip", "link", "set", name, "mtu", str(MTU), "up"])
            ns[me].run(["ip", "route", "replace", net[peer], "dev", name])

    def stop(self) -> None:
        """End both wireguard-go processes; safe to call twice."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        for name in self.names.values():
            with contextlib.suppress(OSError):
                (SOCKET_DIR / f"{name}.sock").unlink()
