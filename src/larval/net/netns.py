"""Network namespaces for tests and operations: topologies of hosts and gateways on one
machine, each with its own interfaces, addresses and routes (ip-netns(8)).

`Netns` creates a named namespace (/run/netns/NAME) and deletes it on exit, after ending
every process it started and every process still inside. `call_in` runs a Python
callable in a namespace on a thread of its own: setns(2) with CLONE_NEWNET moves only
the calling thread, and sockets or TUN devices opened there stay in that namespace when
other threads use them. Addresses in examples are from the documentation prefixes
(RFC 5737, RFC 3849).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Self, TypeVar

from larval.net.errors import NetError
from larval.net.handles import Closeable

__all__ = ["NETNS_RUN_DIR", "Netns", "call_in", "run_in", "veth_pair"]

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

P = ParamSpec("P")
T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _name(ns: str | Netns) -> str:
    return ns.name if isinstance(ns, Netns) else ns


def _ip(argv: Sequence[str], what: str) -> None:
    try:
        proc = subprocess.run(
            ["ip", *argv], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError as e:
        raise NetError("the 'ip' command (iproute2) is not installed") from e
    if proc.returncode != 0:
        raise NetError(f"{what}: {proc.stderr.strip() or f'ip exited {proc.returncode}'}")


class Netns(Closeable):
    """A named network namespace that exists inside a `with` block.

    On entry the namespace is created and its loopback brought up; on exit every
    process started with `popen`, and any other process left inside, is ended and the
    namespace deleted, whatever happened in the block.
    """

    def __init__(self, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise NetError(f"network namespace name {name!r} is not valid")
        self.name = name
        self.path = os.path.join(NETNS_RUN_DIR, name)
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        if os.path.exists(self.path):
            raise NetError(f"network namespace {self.name} already exists")
        _ip(["netns", "add", self.name], f"creating network namespace {self.name}")
        try:
            _ip(["-n", self.name, "link", "set", "lo", "up"], f"bringing up lo in {self.name}")
        except BaseException:
            self.delete()
            raise
        return self

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
        """`run_in(self, argv)`."""
        return run_in(self, argv, check=check, timeout=timeout)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside the namespace; it is ended when the namespace is deleted."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv], **kwargs
        )
        self._processes.append(proc)
        return proc

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call_in(self, fn, ...)`."""
        return call_in(self, fn, *args, **kwargs)

    def pids(self) -> list[int]:
        """The processes whose main thread is in this namespace, this one excepted."""
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    found.append(int(entry))
            except OSError:
                continue  # gone, or not ours to look at
        return found

    def delete(self) -> None:
        """End the namespace's processes and delete it; safe to call twice."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._processes.clear()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if os.path.exists(self.path):
            _ip(["netns", "del", self.name], f"deleting network namespace {self.name}")

    close = delete  # leaving the `with` block deletes the namespace

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"


def run_in(ns: str | Netns, argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    """Run `argv` inside namespace `ns` and return its standard output.

    With `check`, a non-zero exit raises `NetError` with the command's standard error.
    """
    name = _name(ns)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise NetError("the 'ip' command (iproute2) is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise NetError(f"{' '.join(argv)} in {name}: no answer after {timeout} s") from e
    if check and proc.returncode != 0:
        raise NetError(
            f"{' '.join(argv)} in {name} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.stdout


def call_in(ns: str | Netns, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call `fn(*args, **kwargs)` on a fresh thread inside namespace `ns` and return
    its result (or raise its exception). Sockets and devices it opens stay there."""
    name = _name(ns)
    path = name if "/" in name else os.path.join(NETNS_RUN_DIR, name)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except OSError as e:
            error.append(NetError(f"entering network namespace {name}: {e.strerror}"))
            return
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def veth_pair(
    ns_a: str | Netns,
    ns_b: str | Netns,
    addr_a: str,
    addr_b: str,
    *,
    name_a: str = "veth0",
    name_b: str = "veth0",
) -> tuple[str, str]:
    """Join two namespaces with a veth pair, address both ends ("192.0.2.1/24") and
    bring them up. Returns the interface names; deleting either namespace removes both."""
    a, b = _name(ns_a), _name(ns_b)
    _ip(
        ["-n", a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", b],
        f"creating veth pair {a}:{name_a} - {b}:{name_b}",
    )
    for ns, dev, addr in ((a, name_a, addr_a), (b, name_b, addr_b)):
        # IPv6: no duplicate address detection on a link we just made (RFC 4862 §5.4).
        nodad = ["nodad"] if ":" in addr else []
        _ip(
            ["-n", ns, "address", "add", addr, "dev", dev, *nodad],
            f"adding {addr} to {ns}:{dev}",
        )
        _ip(["-n", ns, "link", "set", dev, "up"], f"bringing up {ns}:{dev}")
    return name_a, name_b
