"""The systemd unit in the package data (`larval unit`), and the readiness it announces
(`larval.daemon.sd_notify`)."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from larval.commands.unit import shipped_unit, unit_text
from larval.daemon import sd_notify
from tests.badinput import closed_pipe_run, larval


def parsed(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment, method-assign]  # systemd's keys are cased
    unit.read_string(text)
    return unit


def test_the_unit_ships_in_the_package_and_parses() -> None:
    unit = parsed(shipped_unit())
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["ExecStart"] == "larval run -c /etc/larval/larval.toml --user larval"
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_has_its_hardening() -> None:
    service = parsed(shipped_unit())["Service"]
    assert service["ProtectSystem"] == "strict"
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert service[key] == "yes", key
    assert set(service["CapabilityBoundingSet"].split()) == {
        "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID",
        "CAP_CHOWN", "CAP_DAC_OVERRIDE"}  # fmt: skip
    assert service["AmbientCapabilities"] == ""
    assert service["DevicePolicy"] == "closed"
    assert service["DeviceAllow"] == "/dev/net/tun rw"
    assert set(service["RestrictAddressFamilies"].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}  # fmt: skip
    assert set(service["ReadWritePaths"].split()) == {"/run/larval", "/var/lib/larval"}
    assert service["RuntimeDirectory"] == "larval"
    assert service["StateDirectory"] == "larval"


def test_larval_unit_prints_it_with_this_larvals_path(tmp_path: Path) -> None:
    shown = larval("unit")
    assert shown.returncode == 0, shown.stderr
    start = parsed(shown.stdout)["Service"]["ExecStart"]
    program, rest = start.split(" ", 1)
    assert os.path.isabs(program) and os.access(program, os.X_OK), start
    assert rest == "run -c /etc/larval/larval.toml --user larval"
    other = larval("unit", "-c", "/etc/vpn.toml", "--user", "vpn")
    assert other.stdout.count(" run -c /etc/vpn.toml --user vpn\n") == 1
    assert larval("unit", "--shipped").stdout == shipped_unit()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_it(tmp_path: Path) -> None:
    program = parsed(larval("unit").stdout)["Service"]["ExecStart"].split()[0]
    path = tmp_path / "larval.service"
    path.write_text(unit_text(program, "/etc/larval/larval.toml", "larval"))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # An unknown key is only a line on stderr: none may be there.
    assert "larval.service" not in done.stderr, done.stderr


def test_ready_goes_to_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        assert sd_notify.notify("READY=1")
        assert listener.recv(100) == b"READY=1"
    # Abstract namespace: "@name".
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        name = f"larval-test-{os.getpid()}"
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.notify("STOPPING=1")
        assert listener.recv(100) == b"STOPPING=1"


def test_no_notify_socket_sends_nothing_and_a_dead_one_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sd_notify.notify("READY=1")
    assert "READY=1 not sent" in caplog.text


def test_larval_unit_into_a_closed_pipe_exits_quietly() -> None:
    result = closed_pipe_run("unit")
    assert (result.returncode, result.stderr) == (1, "")
