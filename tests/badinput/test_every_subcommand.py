"""Every subcommand the parser has, against what a first-time user gets wrong about the
socket it talks to: nothing there, a file, a directory, a path too long, a socket nobody
serves, a server that hangs up or answers nonsense, and output into a closed pipe.

The table below is checked against the parser, so a new subcommand cannot miss these
cases. Each one ends in one line, the right exit status, no traceback, no key bytes,
and nothing on disk changed.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from larval.cli import _parser
from tests.badinput import closed_pipe_run, larval, one_line, snapshot

GCM_KEY = "00112233445566778899aabbccddeeff01020304"

#: Each subcommand that talks to a socket: its socket option, and otherwise good values.
CLIENTS: dict[tuple[str, ...], tuple[str, list[str]]] = {
    ("sa", "getspi"): ("--socket", ["--src", "192.0.2.1", "--dst", "192.0.2.2"]),
    ("sa", "add"): ("--socket", ["--spi", "0x1000", "--src", "192.0.2.2", "--dst", "192.0.2.1",
                                 "--alg", "aes128gcm16", "--encrypt-key", GCM_KEY]),
    ("sa", "update"): ("--socket", ["--spi", "0x1000", "--src", "192.0.2.2", "--dst",
                                    "192.0.2.1", "--alg", "aes128gcm16",
                                    "--encrypt-key", GCM_KEY]),
    ("sa", "delete"): ("--socket", ["--spi", "0x1000", "--dst", "192.0.2.1"]),
    ("sa", "get"): ("--socket", ["--spi", "0x1000", "--dst", "192.0.2.1", "--keys"]),
    ("sa", "flush"): ("--socket", []),
    ("sa", "dump"): ("--socket", ["--json", "--keys"]),
    ("sa", "monitor"): ("--socket", []),
    ("policy", "load"): ("--control-socket", ["{policy}"]),
    ("policy", "list"): ("--control-socket", []),
    ("policy", "flush"): ("--control-socket", []),
    ("up",): ("--control-socket", ["s2s/net"]),
    ("down",): ("--control-socket", ["s2s"]),
    ("status",): ("--control-socket", []),
    ("pools",): ("--control-socket", ["--json"]),
    ("ha", "status"): ("--control-socket", ["--json"]),
    ("keys",): ("--control-socket", ["--wireshark", "{keys}"]),
}  # fmt: skip
#: The ones that serve rather than connect, or talk to nothing: their own modules
#: (test_sockets, test_config, test_sa, tests/pki, test_profile, test_check,
#: tests/daemon/test_unit) feed them bad input.
SERVERS = {("stack",), ("run",), ("demo",), ("profile",), ("check",), ("unit",)} | {
    ("pki", name) for name in ("gen", "self", "issue", "print", "keyid", "signcrl")
}

POLICY = """\
[policies.web]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
action = "bypass"
"""


def _subcommands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*prefix, name))
            return
    yield prefix


def test_the_table_covers_every_subcommand() -> None:
    assert set(_subcommands(_parser())) == set(CLIENTS) | SERVERS


def _run(command: tuple[str, ...], path: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    option, values = CLIENTS[command]
    policy = tmp / "policy.toml"
    if not policy.exists():
        policy.write_text(POLICY)
    args = [v.format(policy=policy, keys=tmp / "wireshark-keys") for v in values]
    return larval(*command, *args, option, path, timeout=20)


COMMANDS = sorted(CLIENTS)


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A directory of the user's, holding a file they care about."""
    (tmp_path / "notes.txt").write_text("keep me\n")
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_nothing_at_the_path(command: tuple[str, ...], place: Path) -> None:
    path = str(place / "nothing")
    (place / "policy.toml").write_text(POLICY)
    before = snapshot(place)
    line = one_line(_run(command, path, place), 1, never=[GCM_KEY])
    assert path in line and "No such file or directory" in line
    assert snapshot(place) == before


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_regular_file_at_the_path_is_named_and_left_alone(
    command: tuple[str, ...], place: Path
) -> None:
    path = place / "notes.txt"
    (place / "policy.toml").write_text(POLICY)
    before = snapshot(place)
    line = one_line(_run(command, str(path), place), 1, never=[GCM_KEY])
    assert f"{path}: a regular file, not a socket" in line
    assert snapshot(place) == before


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_directory_at_the_path_is_named(command: tuple[str, ...], place: Path) -> None:
    (place / "policy.toml").write_text(POLICY)
    before = snapshot(place)
    line = one_line(_run(command, str(place), place), 1, never=[GCM_KEY])
    assert f"{place}: a directory, not a socket" in line
    assert snapshot(place) == before


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_path_too_long_for_af_unix(command: tuple[str, ...], place: Path) -> None:
    path = str(place / ("s" * 120))
    line = one_line(_run(command, path, place), 2, never=[GCM_KEY])
    assert path in line and "at most 107" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_socket_nobody_serves_is_left_alone(command: tuple[str, ...], place: Path) -> None:
    kind = socket.SOCK_SEQPACKET if CLIENTS[command][0] == "--socket" else socket.SOCK_STREAM
    path = place / "left-behind"
    with socket.socket(socket.AF_UNIX, kind) as dead:
        dead.bind(str(path))
    (place / "policy.toml").write_text(POLICY)
    before = snapshot(place)
    line = one_line(_run(command, str(path), place), 1, never=[GCM_KEY])
    assert "nobody serves there" in line
    assert snapshot(place) == before  # a client removes nothing


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_other_kind_of_socket(command: tuple[str, ...], place: Path) -> None:
    """The control socket given where the PF_KEY one belongs, and the other way round."""
    kind = socket.SOCK_STREAM if CLIENTS[command][0] == "--socket" else socket.SOCK_SEQPACKET
    with _server(place / "other", kind, lambda conn: None) as path:
        line = one_line(_run(command, path, place), 1, never=[GCM_KEY])
    assert "a socket of another kind" in line


def _hang_up(conn: socket.socket) -> None:
    conn.close()


def _nonsense(conn: socket.socket) -> None:
    """Answer whatever comes with bytes that are neither PF_KEY nor JSON."""
    try:
        conn.recv(65536)
        conn.send(b"\xff\x00garbage\n")
    finally:
        conn.close()


@pytest.mark.parametrize("server", [_hang_up, _nonsense], ids=["hangs up", "nonsense"])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_server_that_hangs_up_or_answers_nonsense(
    command: tuple[str, ...], server: Callable[[socket.socket], None], place: Path
) -> None:
    kind = socket.SOCK_SEQPACKET if CLIENTS[command][0] == "--socket" else socket.SOCK_STREAM
    with _server(place / "odd", kind, server) as path:
        result = _run(command, path, place)
    if command == ("sa", "monitor") and server is _nonsense:
        # A monitor shows what does not decode, and goes on until the socket closes.
        assert "garbage: 10 bytes" in result.stdout
    line = one_line(result, 1, never=[GCM_KEY])
    assert path in line or "malformed" in line


@contextmanager
def _server(path: Path, kind: int, handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A listener at `path` that gives each connection to `handle`, in a thread."""
    listener = socket.socket(socket.AF_UNIX, kind)
    listener.bind(str(path))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield str(path)
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        path.unlink()


@pytest.mark.parametrize(
    "args",
    [["--help"], ["sa", "dump", "--help"], ["policy", "--help"], ["status", "--help"]],
    ids=" ".join,
)
def test_help_into_a_closed_pipe_is_quiet(args: list[str]) -> None:
    result = closed_pipe_run(*args)
    assert result.stderr == "" and result.returncode in (0, 1)


def test_every_argument_of_every_subcommand_says_what_it_takes() -> None:
    def bare(parser: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from bare(sub, f"{prefix} {name}")
            elif action.dest != "help" and not action.help:
                yield f"{prefix} {(action.option_strings or [action.dest])[0]}"

    assert list(bare(_parser(), "larval")) == []
