"""The namespace helpers: creation and cleanup, commands and callables inside, veth."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from larval.net.errors import NetError
from larval.net.netns import Netns, call_in, run_in, veth_pair

from .conftest import fresh_name, root_and_tun


def test_call_in_runs_inside(netns: Netns) -> None:
    names = call_in(netns, lambda: [name for _, name in socket.if_nameindex()])
    assert names == ["lo"]
    # The caller's thread is where it was.
    assert len(socket.if_nameindex()) >= 1
    assert os.stat("/proc/thread-self/ns/net").st_ino != os.stat(netns.path).st_ino


def test_call_in_raises_what_fn_raises(netns: Netns) -> None:
    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 3"):
        netns.call(fail, 3)


def test_call_in_missing_namespace() -> None:
    reason = root_and_tun()
    if reason:
        pytest.skip(reason)
    with pytest.raises(NetError, match="entering network namespace lvnet-none"):
        call_in("lvnet-none", lambda: None)


def test_run_in(netns: Netns) -> None:
    out = run_in(netns, ["ip", "-o", "link", "show"])
    assert "lo:" in out and "UP" in out
    with pytest.raises(NetError, match="exited 1"):
        netns.run(["false"])
    assert netns.run(["false"], check=False) == ""


def test_cleanup_on_failure() -> None:
    reason = root_and_tun()
    if reason:
        pytest.skip(reason)
    name = fresh_name()
    stray: subprocess.Popen[bytes] | None = None
    try:
        with pytest.raises(RuntimeError, match="test failed"), Netns(name) as ns:
            proc = ns.popen(["sleep", "60"])
            # Started behind the helper's back, but inside: also ended.
            stray = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"])
            deadline = time.monotonic() + 5
            while stray.pid not in ns.pids() and time.monotonic() < deadline:
                time.sleep(0.01)  # until `ip netns exec` has entered the namespace
            raise RuntimeError("test failed")
        assert not os.path.exists(f"/run/netns/{name}")
        assert proc.poll() is not None
        assert stray is not None and stray.wait(5) is not None
    finally:
        if stray is not None and stray.poll() is None:
            stray.kill()
            stray.wait()


def test_existing_name_refused(netns: Netns) -> None:
    with pytest.raises(NetError, match="already exists"), Netns(netns.name):
        pass
    assert os.path.exists(netns.path)  # the refusal deleted nothing


def test_veth_pair_carries_udp(netns_pair: tuple[Netns, Netns]) -> None:
    a, b = netns_pair
    assert veth_pair(a, b, "198.51.100.1/24", "198.51.100.2/24") == ("veth0", "veth0")
    assert "198.51.100.2/24" in b.run(["ip", "-o", "addr", "show", "veth0"])

    def bound() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("198.51.100.2", 4500))
        return s

    receiver = b.call(bound)
    sender = a.call(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.settimeout(5)
        sender.sendto(b"across", ("198.51.100.2", 4500))
        assert receiver.recvfrom(100) == (b"across", ("198.51.100.1", sender.getsockname()[1]))
