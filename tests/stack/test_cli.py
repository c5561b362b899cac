"""`larval stack`, `larval sa` and `larval policy` as a user runs them: separate processes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.badinput.stackproc import StackProcess, larval_stack

GCM_KEY = "00112233445566778899aabbccddeeff01020304"  # 16-byte key + 4-byte salt


def larval(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "larval", *args], capture_output=True, text=True, timeout=30
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


class Stack(StackProcess):
    def sa(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        op, rest = args[0], args[1:]
        return larval("sa", op, "--socket", self.pfkey, *rest, check=check)

    def policy(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        op, rest = args[0], args[1:]
        return larval("policy", op, "--control-socket", self.control, *rest, check=check)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with larval_stack(tmp_path) as running:
        s = Stack(tmp_path)
        assert (s.pfkey, s.control) == (running.pfkey, running.control)
        yield s


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return lines[-1]


def test_manual_keying_round_trip(stack: Stack) -> None:
    stack.sa("add", "--spi", "0x1000", "--src", "192.0.2.2", "--dst", "192.0.2.1",
             "--alg", "aes128gcm16", "--encrypt-key", GCM_KEY,
             "--soft-time", "300", "--hard-time", "360")  # fmt: skip
    got = json.loads(stack.sa("get", "--spi", "0x1000", "--dst", "192.0.2.1", "--json").stdout)
    assert got["state"] == "mature" and got["encrypt"] == "aes-gcm-16"
    assert "encrypt_key" not in got  # keys only when asked for
    with_keys = stack.sa("get", "--spi", "0x1000", "--dst", "192.0.2.1", "--json", "--keys")
    assert json.loads(with_keys.stdout)["encrypt_key"] == GCM_KEY
    assert got["soft"]["addtime"] == 300 and got["hard"]["addtime"] == 360

    larval_sa = json.loads(
        stack.sa("getspi", "--src", "192.0.2.1", "--dst", "192.0.2.2", "--json").stdout
    )
    assert larval_sa["state"] == "larval"

    dump = json.loads(stack.sa("dump", "--json").stdout)
    assert sorted(sa["state"] for sa in dump) == ["larval", "mature"]
    assert all("encrypt_key" not in sa for sa in dump)
    assert "encrypt_key" not in stack.sa("dump").stdout  # the table shows no keys

    stack.sa("delete", "--spi", "0x1000", "--dst", "192.0.2.1")
    gone = stack.sa("get", "--spi", "0x1000", "--dst", "192.0.2.1", check=False)
    assert gone.returncode == 1 and "ESRCH" in gone.stderr
    stack.sa("flush")
    assert json.loads(stack.sa("dump", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--alg", "aes999", "--encrypt-key", GCM_KEY], "aes999"),
        (["--alg", "aes128gcm16", "--encrypt-key", GCM_KEY[:-8]], "20-byte"),
        (["--alg", "aes128-sha256", "--encrypt-key", "00" * 16, "--auth-key", "11" * 20],
         "--auth-key"),
        (["--alg", "aes128gcm16", "--encrypt-key", GCM_KEY, "--soft-time", "500",
          "--hard-time", "400"], "--soft-time 500"),
        (["--alg", "aes128gcm16", "--encrypt-key", "zz" * 20], "not hexadecimal"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_value(stack: Stack, args: list[str], named: str) -> None:
    result = stack.sa(
        "add", "--spi", "0x1000", "--src", "192.0.2.2", "--dst", "192.0.2.1", *args, check=False
    )
    line = one_line_error(result)
    assert named in line
    assert "zz" * 20 not in result.stderr  # key material never echoed
    assert json.loads(stack.sa("dump", "--json").stdout) == []


def test_malformed_address_is_named(stack: Stack) -> None:
    result = stack.sa("getspi", "--src", "192.0.2.300", "--dst", "192.0.2.1", check=False)
    assert "192.0.2.300" in one_line_error(result)


def test_policy_load_list_flush(stack: Stack, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[policies.web]\nlocal_ts = ["203.0.113.0/24"]\nremote_ts = ["198.51.100.0/24"]\n'
        'mode = "tunnel"\nlocal_addrs = ["192.0.2.2"]\nremote_addrs = ["192.0.2.1"]\n'
        'esp_proposals = ["aes128gcm16"]\n'
    )
    assert "loaded 2 policies" in stack.policy("load", str(policy)).stdout  # out and in
    listed = json.loads(stack.policy("list", "--json").stdout)
    assert sorted(p["direction"] for p in listed) == ["in", "out"]
    assert "web" in stack.policy("list").stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[policies.web]\nmode = "tunel"\n')
    line = one_line_error(stack.policy("load", str(bad), check=False))
    assert "bad.toml" in line and "mode" in line

    assert "flushed 2" in stack.policy("flush").stdout
    assert json.loads(stack.policy("list", "--json").stdout) == []


def test_policy_to_any_peer_is_listed_as_any(stack: Stack, tmp_path: Path) -> None:
    policy = tmp_path / "gateway.toml"
    policy.write_text(
        '[policies.rw]\nlocal_ts = ["203.0.113.0/24"]\nremote_ts = ["10.3.0.0/24"]\n'
        'mode = "tunnel"\nlocal_addrs = ["192.0.2.2"]\nremote_addrs = ["%any"]\n'
    )
    assert "loaded 2 policies" in stack.policy("load", str(policy)).stdout
    listed = json.loads(stack.policy("list", "--json").stdout)
    assert [p["remote_addrs"] for p in listed] == [["%any"], ["%any"]]
    assert "%any" in stack.policy("list").stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(policy.read_text().replace('"%any"', '"%any6"'))
    line = one_line_error(stack.policy("load", str(bad), check=False))
    assert line.endswith(
        'bad.toml: policies.rw.remote_addrs[0]: "%any6" is any IPv6 peer, and local_addrs '
        "192.0.2.2 is not IPv6"
    )


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines `process` prints, read by a thread, so that a test waits with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_monitor_sees_other_clients(stack: Stack) -> None:
    monitor = subprocess.Popen(
        [sys.executable, "-m", "larval", "sa", "monitor", "--socket", stack.pfkey, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = _lines_of(monitor)
    try:
        # The monitor prints the answer to its X_PROMISC once promiscuous mode is on: only
        # then can it see another client's ADD.
        seen = [json.loads(lines.get(timeout=30))]
        stack.sa("add", "--spi", "0x2000", "--src", "192.0.2.2", "--dst", "192.0.2.1",
                 "--alg", "aes128gcm16", "--encrypt-key", GCM_KEY)  # fmt: skip
        while len(seen) < 3:
            seen.append(json.loads(lines.get(timeout=30)))
    finally:
        monitor.terminate()
        monitor.wait(10)
    types = [m["type"] for m in seen]
    assert types[0] == "X_PROMISC" and types[1:] == ["ADD", "ADD"]  # request, then reply
    assert all("encrypt_key" not in m.get("sa", {}) for m in seen)


def test_unreachable_socket_is_a_clear_error(tmp_path: Path) -> None:
    result = larval("sa", "dump", "--socket", str(tmp_path / "nothing"), check=False)
    assert result.returncode == 1
    assert "cannot reach the PF_KEY socket" in result.stderr and "Traceback" not in result.stderr
