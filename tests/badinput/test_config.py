"""`larval run -c FILE`, `larval policy load FILE` and `larval stack --policy FILE` fed
bad files: one line naming the file (and the key), exit status 2, no secret shown, and
nothing on disk changed. The configuration is read before any socket is opened."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.badinput import larval, one_line, snapshot

PSK = "a-long-enough-test-psk-0123"


def config(tmp: Path, *, conn: str = "", child: str = "", secret: str = PSK) -> str:
    """A working configuration, with lines added to the connection and the child."""
    return f"""
[daemon]
control_socket = "{tmp / "run" / "control"}"
pfkey_socket = "{tmp / "run" / "pfkey"}"

[connections.s2s]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
{conn}

[connections.s2s.children.net]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
{child}

[secrets.ike-s2s]
secret = "{secret}"
"""


def run_refused(tmp: Path, text: str | bytes, *, mode: int = 0o600) -> str:
    """`larval run -c` on a file holding `text`: its one line, checked."""
    path = tmp / "larval.toml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)
    before = snapshot(tmp)
    line = one_line(larval("run", "-c", str(path), timeout=20), 2, never=[PSK, "hunter2"])
    assert str(path) in line
    assert snapshot(tmp) == before  # no socket, no directory: nothing was started
    return line


@pytest.mark.parametrize(
    ("conn", "child", "named"),
    [
        ("", 'rekey_time = "99999999999999999999d"', "children.net.rekey_time"),
        ("", "rekey_bytes = 18446744073709551617", "children.net.rekey_bytes"),
        ("", 'life_time = "18446744073709551616"', "children.net.life_time"),
        ("", "replay_window = 256", "children.net.replay_window"),
        ("", 'inactivity = "213503982334602d"', "children.net.inactivity"),
        ('dpd_delay = "99999999999999999999s"', "", "connections.s2s.dpd_delay"),
        ('rekey_time = "99999999999999999999h"', "", "connections.s2s.rekey_time"),
        ("version = true", "", "connections.s2s.version"),
        ("version = 2.0", "", "connections.s2s.version"),
        ("children = 5", "", "connections.s2s.children"),
        ('encap = "yes"', "", "connections.s2s.encap"),
        ("local = { id = 5 }", "", "connections.s2s.local.id"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(
    tmp_path: Path, conn: str, child: str, named: str
) -> None:
    text = config(tmp_path, conn=conn, child=child)
    if conn == "children = 5":  # a key, then the table of the same name: drop the table
        text = text.split("[connections.s2s.children.net]")[0] + f'[secrets.x]\nsecret = "{PSK}"\n'
    assert named in run_refused(tmp_path, text)


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        ('state = "state.db"', 'daemon.state: "state.db" is not an absolute path'),
        ('state = "/var/lib/larval/"', 'daemon.state: "/var/lib/larval/" names a directory'),
        ("state = 5", "daemon.state: 5 is not a path"),
        ('state_key = "/etc/k"', "daemon.state_key: given without daemon.state"),
    ],
)
def test_a_bad_state_path_is_one_line_naming_the_key(
    tmp_path: Path, lines: str, named: str
) -> None:
    text = config(tmp_path).replace("[daemon]\n", f"[daemon]\n{lines}\n", 1)
    assert f"larval.toml: {named}" in run_refused(tmp_path, text)


@pytest.mark.parametrize("key", ["connections", "secrets"])
def test_a_table_that_is_a_number(tmp_path: Path, key: str) -> None:
    line = run_refused(tmp_path, f"{key} = 5\n")
    assert line.endswith(f"larval.toml: {key}: 5 is not a table")


def test_a_missing_local_addrs_says_missing(tmp_path: Path) -> None:
    text = config(tmp_path).replace('local_addrs = ["192.0.2.2"]\n', "")
    line = run_refused(tmp_path, text)
    assert "connections.s2s.local_addrs: missing" in line and "null" not in line


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_secrets_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    line = run_refused(tmp_path, config(tmp_path), mode=mode)
    assert line.endswith(
        f"holds [secrets] but is readable by group or others (mode {mode:04o}); chmod 600 it"
    )


def test_a_short_psk_is_refused_without_showing_it(tmp_path: Path) -> None:
    line = run_refused(tmp_path, config(tmp_path, secret="hunter2"))
    assert "secrets.ike-s2s.secret: 7 bytes, shorter than 16" in line
    assert "connections.s2s.short_psk = true" in line


def test_invalid_utf8_names_the_offset_never_the_bytes(tmp_path: Path) -> None:
    text = config(tmp_path).encode().replace(b"192.0.2.1", b"192.0.2.\xff\xfe", 1)
    offset = text.index(b"\xff")
    line = run_refused(tmp_path, text)
    assert line.endswith(f"larval.toml: not UTF-8 at byte {offset}")
    assert "xff" not in line.lower() and "\\x" not in line


def test_a_binary_file(tmp_path: Path) -> None:
    line = run_refused(tmp_path, bytes(range(256)) * 4)
    assert "larval.toml: not UTF-8 at byte 128" in line


def test_not_toml(tmp_path: Path) -> None:
    assert "larval.toml: not TOML" in run_refused(tmp_path, "[connections\n")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("DIR", "Is a directory"),
        ("DIR/none.toml", "No such file or directory"),
        ("/dev/zero", "larger than 16 MiB"),
    ],
)
def test_a_file_that_is_no_config(tmp_path: Path, path: str, problem: str) -> None:
    path = path.replace("DIR", str(tmp_path))
    before = snapshot(tmp_path)
    line = one_line(larval("run", "-c", path, timeout=20), 2)
    assert line == f"larval: {path}: {problem}" or line.startswith(f"larval: {path}: {problem}")
    assert snapshot(tmp_path) == before


def test_policy_load_of_a_bad_file_names_it_before_sending(tmp_path: Path) -> None:
    # No control socket exists: the file is refused before anything is sent.
    socket = str(tmp_path / "control")
    bad = tmp_path / "p.toml"
    bad.write_bytes(b"[policies.x]\n# \xe9\n")
    line = one_line(larval("policy", "load", "--control-socket", socket, str(bad)), 2)
    assert line == f"larval: {bad}: not UTF-8 at byte 15"
    big = tmp_path / "q.toml"
    big.write_text('[policies.x]\nmode = "transport"\nrekey_time = "99999999999999999999d"\n')
    line = one_line(larval("policy", "load", "--control-socket", socket, str(big)), 2)
    assert "policies.x.rekey_time" in line and "maximum 18446744073709551615 s" in line
    line = one_line(larval("policy", "load", "--control-socket", socket, "/dev/zero"), 2)
    assert line == "larval: /dev/zero: larger than 16 MiB, too large for a policy or config"


def test_stack_policy_of_a_bad_file_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_bytes(b"\xc3(")
    before = snapshot(tmp_path)
    sockets = ("--pfkey-socket", str(tmp_path / "pfkey"), "--control-socket", str(tmp_path / "c"))
    result = larval("stack", *sockets, "--policy", str(bad))
    assert one_line(result, 2) == f"larval: --policy {bad}: not UTF-8 at byte 0"
    assert snapshot(tmp_path) == before


def test_an_empty_config_starts_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text(f'[daemon]\ncontrol_socket = "{tmp_path / "control"}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "larval", "run", "-c", str(path)],
        stderr=subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while b"nothing will be negotiated" not in seen and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.2)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert b"WARNING" in seen and b"no [connections]" in seen, seen
        assert proc.poll() is None  # and it runs, as strongSwan does
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert not (tmp_path / "control").exists()
