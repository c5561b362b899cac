"""`larval run`, `up`, `down`, `status` and SIGHUP as a user drives them: real daemons on
loopback addresses and AF_UNIX sockets in the test's directory, no TUN.

Each daemon gets loopback addresses of its own (127.x.y.1 and .2), so that tests run by
others at the same time do not meet on UDP 500.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from larval.net.control import ControlError, control_request
from tests.badinput import larval, one_line, write_private

if os.geteuid() != 0:
    pytest.skip("larval run binds UDP 500: root only", allow_module_level=True)

CONN = """
[connections.s2s]
version = 2
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128-sha256-modp2048"]
local = {{ auth = "psk", id = "{me}" }}
remote = {{ auth = "psk", id = "{peer}" }}

[connections.s2s.children.net]
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
esp_proposals = ["aes128gcm16"]
mode = "tunnel"
start_action = "none"

[secrets.ike]
ids = ["{me}", "{peer}"]
secret = "0123456789abcdef-a-test-psk"
"""

BYPASS = """
[policies.bypass]
action = "bypass"
local_ts = ["0.0.0.0/0[udp/53]"]
remote_ts = ["0.0.0.0/0"]
"""


@dataclass
class Daemon:
    """Where a running `larval run` listens, and its log."""

    address: str
    config: Path
    control: str
    pfkey: str
    log: Path
    proc: subprocess.Popen[bytes]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return larval(*args, "--control-socket", self.control)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.proc.poll() is None, self.log_text()
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log_text()}"
            time.sleep(0.05)


def loopback_pair() -> tuple[str, str]:
    base = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}"
    return f"{base}.1", f"{base}.2"


def config_text(tmp: Path, me: str, peer: str, local_ts: str, remote_ts: str) -> str:
    daemon = (f'[daemon]\naddresses = ["{me}"]\ncontrol_socket = "{tmp / "control"}"\n'
              f'pfkey_socket = "{tmp / "pfkey"}"\n')  # fmt: skip
    return daemon + CONN.format(me=me, peer=peer, local_ts=local_ts, remote_ts=remote_ts)


def _wait_ready(proc: subprocess.Popen[bytes], control: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            control_request(control, {"op": "status"}, timeout=2)
            return
        except ControlError:
            assert time.monotonic() < deadline, "larval run did not start"
            time.sleep(0.05)


@contextmanager
def larval_run(
    tmp: Path, me: str, peer: str, local_ts: str, remote_ts: str, *, text: str | None = None
) -> Iterator[Daemon]:
    """`larval run` on a configuration in `tmp` (`text`, or the PSK one `config_text`
    writes); SIGTERM on leaving, whatever happened, and its sockets gone afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "larval.toml"
    write_private(config, text or config_text(tmp, me, peer, local_ts, remote_ts))
    log = tmp / "larval.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "larval", "run", "-c", str(config), "--log-level", "info"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    daemon = Daemon(me, config, str(tmp / "control"), str(tmp / "pfkey"), log, proc)
    try:
        _wait_ready(proc, daemon.control, log)
        yield daemon
    finally:
        _stop(proc)
        for path in (daemon.control, daemon.pfkey):
            if os.path.exists(path):
                os.unlink(path)
    assert "Traceback" not in daemon.log_text(), daemon.log_text()


@contextmanager
def larval_stack(tmp: Path) -> Iterator[str]:
    """`larval stack` on sockets in `tmp`; the control socket's path."""
    tmp.mkdir(parents=True, exist_ok=True)
    control, pfkey, log = tmp / "control", tmp / "pfkey", tmp / "stack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "larval", "stack", "--pfkey-socket", str(pfkey),
             "--control-socket", str(control), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_ready(proc, str(control), log)
        yield str(control)
    finally:
        _stop(proc)
        for path in (control, pfkey):
            if path.exists():
                path.unlink()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def policies(daemon: Daemon) -> dict[str, list[dict[str, object]]]:
    result = daemon.cli("policy", "list", "--json")
    assert result.returncode == 0, result.stderr
    out: dict[str, list[dict[str, object]]] = {}
    for entry in json.loads(result.stdout):
        out.setdefault(str(entry["name"]), []).append(entry)
    return out


# -- SIGHUP --------------------------------------------------------------------------------


def test_sighup_keeps_what_policy_load_added_and_replaces_the_files(tmp_path: Path) -> None:
    me, peer = loopback_pair()
    with larval_run(tmp_path, me, peer, "203.0.113.0/24", "198.51.100.0/24") as d:
        bypass = tmp_path / "bypass.toml"
        bypass.write_text(BYPASS)
        loaded = d.cli("policy", "load", str(bypass))
        assert loaded.returncode == 0, loaded.stderr
        assert set(policies(d)) == {"s2s/net", "bypass"}
        write_private(
            d.config, config_text(tmp_path, me, peer, "203.0.113.0/25", "198.51.100.0/24")
        )
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
        after = policies(d)
        assert set(after) == {"s2s/net", "bypass"}  # the loaded policy survives the reload
        assert "203.0.113.0/25" in json.dumps(after["s2s/net"])  # the file's is replaced
        assert "203.0.113.0/24" not in json.dumps(after["s2s/net"])
        assert "policies changed s2s/net; connections changed s2s" in d.log_text()
        # Until a flush: then the next reload puts back the file's, and only it.
        assert d.cli("policy", "flush").returncode == 0
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("policies added s2s/net")
        assert set(policies(d)) == {"s2s/net"}


# -- up and down -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    me, peer = loopback_pair()
    tmp = tmp_path_factory.mktemp("daemon")
    with larval_run(tmp, me, peer, "203.0.113.0/24", "198.51.100.0/24") as d:
        yield d


@pytest.mark.parametrize("command", ["up", "down"])
@pytest.mark.parametrize("target", ["nosuch", "", "a/b/c", "/net", "nosuch/net"])
def test_up_and_down_of_what_is_not_configured_is_refused(
    daemon: Daemon, command: str, target: str
) -> None:
    line = one_line(daemon.cli(command, target), 1)
    assert "no connection" in line and "configured: s2s" in line


@pytest.mark.parametrize("target", ["s2s/nochild", "s2s/", "s2s/net/x"])
def test_up_of_a_child_that_is_not_configured_is_refused(daemon: Daemon, target: str) -> None:
    line = one_line(daemon.cli("up", target), 1)
    assert "has no child" in line and "configured: s2s/net" in line


def test_down_takes_a_connection_not_a_child(daemon: Daemon) -> None:
    line = one_line(daemon.cli("down", "s2s/net"), 1)
    assert "no connection 's2s/net'" in line


def test_down_of_a_connection_without_ike_sas_is_fine(daemon: Daemon) -> None:
    result = daemon.cli("down", "s2s")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == "down s2s: 0 IKE_SA(s) deleted"


# -- noise -------------------------------------------------------------------------------------


def test_ikev1_openers_to_an_ikev2_daemon_are_answered_and_counted(daemon: Daemon) -> None:
    """2,000 Main Mode openers from one address: each gets its NO_PROPOSAL_CHOSEN, the
    log gets a handful of lines (the count of the rest comes when the minute ends)."""
    before = daemon.log_text().count("no IKEv1 connection")
    answers = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        for batch in range(20):
            for n in range(100):
                cookie = (batch * 100 + n + 1).to_bytes(8, "big")
                mm1 = cookie + bytes(8) + bytes((1, 0x10, 2, 0)) + struct.pack("!II", 0, 28)
                sock.sendto(mm1, (daemon.address, 500))
            for _ in range(100):
                sock.recv(65536)
                answers += 1
    assert answers == 2000
    assert 1 <= daemon.log_text().count("no IKEv1 connection") - before <= 5


# -- status ------------------------------------------------------------------------------------


def test_status_against_larval_stack_shows_the_stacks_own(tmp_path: Path) -> None:
    with larval_stack(tmp_path) as control:
        text = larval("status", "--control-socket", control)
        as_json = larval("status", "--json", "--control-socket", control)
    for result in (text, as_json):
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert "unknown op" not in result.stdout
    first, *rest = text.stdout.splitlines()
    assert first.startswith("no key manager runs here")
    assert "0 SAs" in rest[0] and "0 policies" in rest[0] and "drops: none" in rest[1]
    answer = json.loads(as_json.stdout)
    assert answer["key_manager"] is False and answer["ike_sas"] == []
    assert answer["stack"]["drops"] == {"malformed": 0, "discard": 0}


@pytest.mark.parametrize("forced", ["", "python"])
def test_status_says_which_esp_path_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    from larval.esp import helper

    monkeypatch.setenv(helper.HELPER_ENV, forced)
    expected = helper.esp_path()
    with larval_stack(tmp_path) as control:
        text = larval("status", "--control-socket", control)
        as_json = larval("status", "--json", "--control-socket", control)
    assert f"  esp path: {expected}\n" in text.stdout
    answer = json.loads(as_json.stdout)
    assert answer["esp_path"] == {"name": expected.name, "detail": expected.detail}
    if forced:
        assert str(expected) == "python (forced by LARVAL_ESP_HELPER=python)"


def test_a_bad_esp_path_choice_stops_the_dataplane_by_name(tmp_path: Path) -> None:
    result = larval(
        "stack", "--pfkey-socket", str(tmp_path / "pfkey"), "--control-socket",
        str(tmp_path / "control"), "--tun", f"lvbad{os.getpid() % 10000}", "--local",
        "127.0.0.1", env={"LARVAL_ESP_HELPER": "fastest"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "larval: LARVAL_ESP_HELPER='fastest'; allowed: auto, compiled, python" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_names_suites_in_strongswans_words(tmp_path: Path) -> None:
    """Two daemons on loopback bring up an IKE_SA and its CHILD_SA: status, --json and
    the log name the suites as swanctl.conf does, and no repr leaks anywhere."""
    a_addr, b_addr = loopback_pair()
    nets = ("10.1.0.0/16", "10.2.0.0/16")
    with (
        larval_run(tmp_path / "a", a_addr, b_addr, *nets) as a,
        larval_run(tmp_path / "b", b_addr, a_addr, *reversed(nets)) as b,
    ):
        up = a.cli("up", "s2s/net")
        assert up.returncode == 0, up.stderr
        a.wait_log("CHILD_SA net installed")
        b.wait_log("CHILD_SA net installed")
        for d in (a, b):
            text, as_json = d.cli("status"), d.cli("status", "--json")
            assert text.returncode == as_json.returncode == 0
            assert "aes128-sha256-modp2048" in text.stdout and "aes128gcm16" in text.stdout
            answer = json.loads(as_json.stdout)
            assert answer["key_manager"] is True
            assert [s["suite"] for s in answer["ike_sas"]] == ["aes128-sha256-modp2048"]
            assert [c["esp"] for c in answer["child_sas"]] == ["aes128gcm16"]
            # How each end authenticated, in both forms.
            assert [(s["auth_local"], s["auth_remote"]) for s in answer["ike_sas"]] == [
                ({"method": "psk", "scheme": "", "subject": "", "issuer": ""},) * 2
            ]
            assert "  local authentication: psk\n  remote authentication: psk\n" in text.stdout
            log = d.log_text()
            assert "established (aes128-sha256-modp2048)" in log
            assert "out, aes128gcm16" in log
            for output in (text.stdout, as_json.stdout, log):
                assert "Transform(" not in output and "Phase1Choice(" not in output
        down = a.cli("down", "s2s")
        assert down.returncode == 0 and down.stdout.strip() == "down s2s: 1 IKE_SA(s) deleted"
