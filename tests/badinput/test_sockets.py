"""`larval stack` and `larval run` given socket paths and addresses they cannot use, and
their sockets under load a first-time user produced: a full descriptor table, a large
DUMP, a flood of garbage, a request nested 100,000 deep.

Every process and path a test makes is removed, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType
from larval.pfkey.requests import getspi, keyed
from tests.badinput import larval, one_line, snapshot, write_private

LONG = "x" * 120  # with any directory in front, beyond the 107 bytes of sun_path


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A short directory (socket paths are limited to 107 bytes), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="lv-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class StackProcess:
    """A `larval stack` process; stop() signals it and returns its exit status."""

    def __init__(
        self, tmp: Path, *extra: str, preexec: Callable[[], None] | None = None, log: str = "info"
    ) -> None:
        self.pfkey = str(tmp / "pfkey")
        self.control = str(tmp / "control")
        self.stderr = ""
        # The log goes to a file, not a pipe: a flood must not block the stack on a pipe.
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read and closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "larval", "stack", "--pfkey-socket", self.pfkey,
             "--control-socket", self.control, "--log-level", log, *extra],
            stdout=subprocess.DEVNULL, stderr=self._log, text=True, preexec_fn=preexec,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not (_live(self.pfkey, socket.SOCK_SEQPACKET) and _live(self.control)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"larval stack did not start: {self.stderr}")
            time.sleep(0.05)

    def client(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(10)
        sock.connect(self.pfkey)
        return sock

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        finally:
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if not self._log.closed:
            self._log.seek(0)
            self.stderr = self._log.read()
            self._log.close()


def _live(path: str, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_UNIX, kind) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture
def start(tmp: Path) -> Iterator[Callable[..., StackProcess]]:
    started: list[StackProcess] = []

    def run(*extra: str, **kwargs: object) -> StackProcess:
        stack = StackProcess(tmp, *extra, **kwargs)  # type: ignore[arg-type]
        started.append(stack)
        return stack

    try:
        yield run
    finally:
        for stack in started:
            stack.kill()


# -- paths that are not ours to replace ------------------------------------------------


def _regular(p: Path) -> None:
    p.write_text("important data\n")


def _directory(p: Path) -> None:
    p.mkdir()
    (p / "inside").write_text("kept\n")


def _link_to_file(p: Path) -> None:
    (p.parent / "target.txt").write_text("important data\n")
    p.symlink_to("target.txt")


def _dangling_link(p: Path) -> None:
    p.symlink_to("nowhere")


@pytest.mark.parametrize("option", ["--pfkey-socket", "--control-socket"])
@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_regular, "a regular file"),
        (_directory, "a directory"),
        (_link_to_file, "a symbolic link"),
        (_dangling_link, "a symbolic link"),
    ],
)
def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(
    tmp: Path, option: str, make: Callable[[Path], None], what: str
) -> None:
    target = tmp / "there"
    make(target)
    other = "--control-socket" if option == "--pfkey-socket" else "--pfkey-socket"
    before = snapshot(tmp)
    result = larval("stack", option, str(target), other, str(tmp / "other"))
    line = one_line(result, 2)
    assert f"{option} {target}: {what}, not a socket" in line
    assert snapshot(tmp) == before


def test_both_sockets_given_one_path(tmp: Path) -> None:
    path = str(tmp / "s" / "sock")
    result = larval("stack", "--pfkey-socket", path, "--control-socket", path)
    assert (
        one_line(result, 2) == f"larval: --control-socket {path}: the same path as --pfkey-socket"
    )
    assert snapshot(tmp) == {}


def test_both_sockets_given_one_existing_file(tmp: Path) -> None:
    (tmp / "important.txt").write_text("data\n")
    before = snapshot(tmp)
    path = str(tmp / "important.txt")
    one_line(larval("stack", "--pfkey-socket", path, "--control-socket", path), 2)
    assert snapshot(tmp) == before


@pytest.mark.parametrize("option", ["--pfkey-socket", "--control-socket"])
def test_a_socket_path_over_107_bytes_is_refused_by_the_servers(tmp: Path, option: str) -> None:
    long = str(tmp / LONG)
    args = {"--pfkey-socket": str(tmp / "p"), "--control-socket": str(tmp / "c"), option: long}
    result = larval("stack", *[x for kv in args.items() for x in kv])
    assert "a unix socket path is at most 107" in one_line(result, 2)
    assert snapshot(tmp) == {}


@pytest.mark.parametrize(
    "args",
    [
        ("sa", "dump", "--socket"),
        ("sa", "monitor", "--socket"),
        ("status", "--control-socket"),
        ("policy", "list", "--control-socket"),
    ],
)
def test_a_socket_path_over_107_bytes_is_refused_by_the_clients(
    tmp: Path, args: tuple[str, ...]
) -> None:
    line = one_line(larval(*args, str(tmp / LONG)), 2)
    assert line.endswith("bytes, but a unix socket path is at most 107"), line


# -- a socket that is live, or dead ------------------------------------------------------


def test_a_second_stack_on_a_live_socket_is_refused(
    tmp: Path, start: Callable[..., StackProcess]
) -> None:
    first = start()
    other = tmp / "second"
    other.mkdir()
    result = larval("stack", "--pfkey-socket", first.pfkey, "--control-socket", str(other / "c"))
    assert one_line(result, 2) == (
        f"larval: --pfkey-socket {first.pfkey}: already serving (a live socket is there)"
    )
    assert snapshot(other) == {}  # refused before its control socket was made
    result = larval("stack", "--pfkey-socket", str(other / "p"), "--control-socket", first.control)
    assert "already serving" in one_line(result, 2)
    assert snapshot(other) == {}  # the PF_KEY socket it had made is gone again
    # The first stack is untouched and still answers on both sockets.
    assert larval("sa", "dump", "--socket", first.pfkey).returncode == 0
    assert larval("policy", "list", "--control-socket", first.control).returncode == 0
    assert first.stop() == 0


def test_a_dead_socket_left_by_a_crash_is_replaced(
    tmp: Path, start: Callable[..., StackProcess]
) -> None:
    for name in ("pfkey", "control"):
        kind = socket.SOCK_SEQPACKET if name == "pfkey" else socket.SOCK_STREAM
        with socket.socket(socket.AF_UNIX, kind) as dead:
            dead.bind(str(tmp / name))  # closed without unlink, as a crash leaves it
    stack = start()
    assert larval("sa", "dump", "--socket", stack.pfkey).returncode == 0
    assert stack.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sockets_are_removed_on_a_signal(
    tmp: Path, start: Callable[..., StackProcess], sig: int
) -> None:
    stack = start()
    assert stack.stop(sig) == 0
    assert snapshot(tmp) == {}


def test_a_control_socket_that_fails_takes_the_pfkey_socket_with_it(tmp: Path) -> None:
    # Somebody else serves at the control path: the stack refuses after it has made its
    # PF_KEY socket, and must not leave that behind.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(str(tmp / "control"))
        theirs.listen()
        result = larval("stack", "--pfkey-socket", str(tmp / "pfkey"),
                        "--control-socket", str(tmp / "control"))  # fmt: skip
        assert "already serving" in one_line(result, 2)
        assert sorted(os.listdir(tmp)) == ["control"]


# -- values the command line range-checks -------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "99999", "99999 is out of range: 1 to 65535"),
        ("--port", "0", "0 is out of range: 1 to 65535"),
        ("--mtu", "10", "10 is out of range: 68 to 65535 bytes"),
        ("--mtu", "70000", "70000 is out of range: 68 to 65535 bytes"),
        ("--mtu", "big", "'big' is not a number"),
    ],
)
def test_port_and_mtu_ranges(tmp: Path, option: str, value: str, message: str) -> None:
    result = larval("stack", "--pfkey-socket", str(tmp / "p"), "--tun", "lvx0",
                    "--local", "127.0.0.1", option, value)  # fmt: skip
    # argparse's own usage error: a usage block, then the line that says what was wrong
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"argument {option}: {message}" in result.stderr.strip().splitlines()[-1]
    assert snapshot(tmp) == {}


# -- addresses and ports `larval run` and the dataplane cannot bind -----------------------


def _config(tmp: Path, address: str) -> Path:
    path = tmp / "larval.toml"
    return write_private(
        path,
        f'[daemon]\naddresses = ["{address}"]\n'
        f'control_socket = "{tmp}/run/control"\npfkey_socket = "{tmp}/run/pfkey"\n'
        f'[connections.s2s]\nlocal_addrs = ["{address}"]\nremote_addrs = ["198.51.100.7"]\n'
        '[secrets.ike-s2s]\nsecret = "0123456789abcdef-a-test-psk"\n',
    )


def _without_bind_service() -> None:
    """Root, but without CAP_NET_BIND_SERVICE: ports below 1024 are refused (EACCES),
    as for an unprivileged user. prctl(PR_CAPBSET_DROP) before exec: the new program
    gets no capability outside the bounding set."""
    pr_capbset_drop, cap_net_bind_service = 24, 10
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_capbset_drop, cap_net_bind_service, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops a capability root has")
def test_run_without_the_right_to_bind_port_500(tmp: Path) -> None:
    config = _config(tmp, "127.0.0.1")
    result = larval("run", "-c", str(config), preexec=_without_bind_service)
    assert one_line(result, 2) == (
        "larval: UDP 127.0.0.1 port 500: ports below 1024 need root (CAP_NET_BIND_SERVICE)"
    )
    assert os.listdir(tmp / "run") == []  # both sockets were made, and removed again


def test_run_on_an_address_not_of_this_host(tmp: Path) -> None:
    config = _config(tmp, "192.0.2.77")
    result = larval("run", "-c", str(config))
    assert one_line(result, 2) == (
        "larval: UDP 192.0.2.77 port 500: 192.0.2.77 is not an address of this host"
    )
    assert os.listdir(tmp / "run") == []


def test_run_names_the_config_key_of_a_bad_socket_path(tmp: Path) -> None:
    config = _config(tmp, "127.0.0.1")
    (tmp / "run").mkdir()
    (tmp / "run" / "pfkey").write_text("data\n")
    before = snapshot(tmp)
    line = one_line(larval("run", "-c", str(config)), 2)
    assert line == (
        f"larval: {config}: daemon.pfkey_socket {tmp}/run/pfkey: a regular file, not a "
        "socket; left as it is"
    )
    assert snapshot(tmp) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="IKE's UDP 500 needs root")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_removes_its_sockets_on_a_signal(tmp: Path, sig: int) -> None:
    # An address of our own on loopback (all of 127/8 is local), so that no other test
    # binding 127.0.0.1:500 meets this one.
    address = f"127.{os.getpid() % 250 + 1}.{sig}.1"
    config = _config(tmp, address)
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "larval", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            while not (_live(str(tmp / "run" / "control"))
                       and _live(str(tmp / "run" / "pfkey"), socket.SOCK_SEQPACKET)):  # fmt: skip
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
            proc.send_signal(sig)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        assert "Traceback" not in log.read()
    assert os.listdir(tmp / "run") == []


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"), reason="a TUN device needs root"
)
def test_a_dataplane_on_an_address_not_of_this_host(tmp: Path) -> None:
    tun = f"lvt{os.getpid() % 100000}"
    result = larval("stack", "--pfkey-socket", str(tmp / "p"), "--control-socket", str(tmp / "c"),
                    "--tun", tun, "--local", "192.0.2.77", "--port", "14500")  # fmt: skip
    assert one_line(result, 2) == (
        "larval: UDP 192.0.2.77 port 14500: 192.0.2.77 is not an address of this host"
    )
    assert snapshot(tmp) == {}
    assert not os.path.exists(f"/sys/class/net/{tun}")  # the TUN device went with it


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"), reason="a TUN device needs root"
)
def test_a_dataplane_started_is_stopped_when_a_socket_fails(tmp: Path) -> None:
    tun = f"lvs{os.getpid() % 100000}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as theirs:
        theirs.bind(str(tmp / "p"))
        theirs.listen()
        result = larval("stack", "--pfkey-socket", str(tmp / "p"), "--control-socket",
                        str(tmp / "c"), "--tun", tun, "--local", "127.0.0.1",
                        "--port", str(20000 + os.getpid() % 20000))  # fmt: skip
    assert "already serving" in one_line(result, 2)
    assert sorted(os.listdir(tmp)) == ["p"]  # theirs, and nothing of ours
    assert not os.path.exists(f"/sys/class/net/{tun}")


# -- load ----------------------------------------------------------------------------------


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_pfkey_accepts_again_once_descriptors_are_free(
    start: Callable[..., StackProcess],
) -> None:
    stack = start(preexec=_limit_descriptors, log="warning")
    clients = []
    try:
        for _ in range(300):  # beyond the stack's 256 descriptors: accept() fails, EMFILE
            for _attempt in range(20):
                try:
                    clients.append(stack.client())
                    break
                except BlockingIOError:
                    time.sleep(0.01)  # the listen backlog is full: let the stack accept
        time.sleep(0.5)
        assert len(clients) > 256
        # A control request while the stack is out of descriptors: answered once
        # descriptors are free.
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        clients.append(waiting)
        waiting.settimeout(10)
        waiting.connect(stack.control)
        waiting.sendall(b'{"op": "status"}\n')
        time.sleep(0.5)
    finally:
        for sock in clients[:-1]:
            sock.close()
    with waiting:
        assert json.loads(waiting.makefile("rb").readline())["ok"] is True
    result = larval("sa", "dump", "--socket", stack.pfkey, "--json", timeout=20)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
    result = larval("policy", "list", "--control-socket", stack.control, timeout=20)
    assert result.returncode == 0, result.stderr
    assert stack.stop() == 0
    assert "Traceback" not in stack.stderr, stack.stderr
    for path in (stack.pfkey, stack.control):
        failed = [line for line in stack.stderr.splitlines() if f"{path}: accept failed" in line]
        assert 1 <= len(failed) <= 5, stack.stderr  # said, and rate-limited
        assert failed[0].endswith("accept failed: Too many open files")


def test_a_dump_of_4500_sas_arrives_whole(start: Callable[..., StackProcess]) -> None:
    stack = start(log="warning")
    with stack.client() as km:
        for i in range(4500):
            add = keyed(SadbMsgType.ADD, 0x10000 + i, "192.0.2.2", "192.0.2.1", seq=i,
                        pid=1, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20))  # fmt: skip
            km.send(add.encode())
            assert km.recv(65536)[2] == 0  # sadb_msg_errno of the ADD's reply
    result = larval("sa", "dump", "--socket", stack.pfkey, "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    sas = json.loads(result.stdout)
    assert len(sas) == 4500 and len({sa["spi"] for sa in sas}) == 4500
    assert stack.stop() == 0


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:"))


def test_a_promiscuous_client_that_never_reads_costs_bounded_memory(
    start: Callable[..., StackProcess],
) -> None:
    stack = start(log="warning")
    with stack.client() as watcher, stack.client() as sender:
        watcher.send(PfkeyMessage(SadbMsgType.X_PROMISC, 1, seq=1, pid=3).encode())
        watcher.recv(65536)
        before = _rss_mb(stack.proc.pid)
        big = b"\x02\x01\x00\x03\xff\xff" + bytes(200_000)  # refused, but copied first
        for _ in range(500):
            sender.send(big)
            assert sender.recv(65536)[2] != 0
        grown = _rss_mb(stack.proc.pid) - before
        assert grown < 16, f"{grown} MB for 100 MB of copies nobody reads"
        status = stack_status(stack)
        assert status["pfkey_missed"] > 480  # counted, for `larval status`
    assert stack.stop() == 0


def test_malformed_pfkey_messages_are_logged_within_limits(
    start: Callable[..., StackProcess],
) -> None:
    stack = start()
    with stack.client() as bad:
        for _ in range(10_000):
            bad.send(b"\x02\x01\x00\x03\xff\xff")  # shorter than a base header
            assert bad.recv(65536)[2] != 0  # answered with an errno each time
    assert stack.stop() == 0
    lines = stack.stderr.splitlines()
    assert len(lines) < 20, lines[:30]
    assert sum("malformed" in line for line in lines) == 5
    assert any("9995 more like this suppressed" in line for line in lines), lines


def test_a_request_nested_100000_deep_is_answered(start: Callable[..., StackProcess]) -> None:
    stack = start(log="warning")
    for request, error in (
        (b"[" * 100_000, "the request nests arrays or objects too deeply"),
        (b'{"a":' * 100_000, "the request nests arrays or objects too deeply"),
        (b'"' + b"a" * (2 << 20) + b'"', "a request is at most 1048576 bytes"),
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(stack.control)
            with contextlib.suppress(BrokenPipeError):  # answered the first MiB, hung up
                sock.sendall(request + b"\n")
            answer = sock.makefile("rb").readline()
        assert json.loads(answer) == {"ok": False, "error": error}
    assert larval("policy", "list", "--control-socket", stack.control).returncode == 0
    assert stack.stop() == 0
    assert "Traceback" not in stack.stderr and "RecursionError" not in stack.stderr


def test_monitor_shows_garbage_and_keeps_running(start: Callable[..., StackProcess]) -> None:
    stack = start(log="warning")
    monitor = subprocess.Popen(
        [sys.executable, "-m", "larval", "sa", "monitor", "--socket", stack.pfkey],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while stack_status(stack)["pfkey_clients"] < 1:  # the monitor is connected and promiscuous
            assert monitor.poll() is None and time.monotonic() < deadline, monitor.stderr
            time.sleep(0.05)
        secret = bytes.fromhex("5ec7e75ec7e75ec7")
        with stack.client() as other:
            other.send(b"\x02\x01\x00\x03\xff\xff" + bytes(10) + secret)  # a lying length
            other.recv(65536)
            time.sleep(0.5)
            assert monitor.poll() is None, monitor.communicate()  # still running
            other.send(getspi("192.0.2.1", "192.0.2.2", seq=7, pid=42).encode())
            other.recv(65536)
        time.sleep(0.5)
        assert monitor.poll() is None, monitor.communicate()  # still running
    finally:
        monitor.terminate()
        out, err = monitor.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].startswith("X_PROMISC "), lines  # its own request, answered
    assert lines[1].startswith("garbage: 24 bytes: "), lines
    assert "GETSPI ESP seq=7 pid=42" in lines[2] and "GETSPI ESP seq=7 pid=42" in lines[3]
    assert "5ec7e7" not in out + err and "Traceback" not in err
    assert stack.stop() == 0


def stack_status(stack: StackProcess) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(stack.control)
        sock.sendall(b'{"op": "status"}\n')
        answer = json.loads(sock.makefile("rb").readline())
    assert answer["ok"] is True
    return dict(answer)


def test_the_monitor_says_what_a_slow_reader_missed() -> None:
    from larval.commands.sa import describe, format_message
    from larval.net.pfkey_server import missed_notice_bytes
    from larval.pfkey import decode

    notice = decode(missed_notice_bytes(SadbMsgType.GETSPI, 3, 1234))
    assert describe(notice)["missed"] == 1234
    assert format_message(notice) == (
        "missed 1234 message(s): this monitor read too slowly (ENOBUFS)"
    )
    odd = decode(bytes([2, 200, 0, 77, 2, 0, 0, 0]) + bytes(8))  # types no enum knows
    assert format_message(odd) == "UNKNOWN_200 UNKNOWN_77 seq=0 pid=0 []"
