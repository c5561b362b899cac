"""Socket paths: what may be replaced, what is refused, and that only our own is removed."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from larval.lograte import LogLimiter
from larval.net.unix_socket import (
    MAX_PATH,
    SocketBusyError,
    SocketPathError,
    UnixListener,
    check_path,
    listen,
)


def test_the_socket_is_0600_from_the_start_and_the_umask_is_restored(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    old = os.umask(0o022)
    try:
        sock, bound = listen(path, socket.SOCK_SEQPACKET, "--pfkey-socket")
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)
    with sock:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        bound.remove()
    assert not os.path.lexists(path)


def test_a_path_replaced_behind_our_back_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sock, bound = listen(str(path), socket.SOCK_STREAM, "--control-socket")
    sock.close()
    path.unlink()
    path.write_text("somebody else's\n")
    bound.remove()
    assert path.read_text() == "somebody else's\n"


def test_a_live_socket_of_another_type_is_somebody_elses(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(path)
        theirs.listen()
        with pytest.raises(SocketBusyError, match="already serving"):
            listen(path, socket.SOCK_SEQPACKET, "--pfkey-socket")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # still theirs


def test_a_symlink_to_a_dead_socket_is_refused(tmp_path: Path) -> None:
    dead = str(tmp_path / "dead")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.bind(dead)
    (tmp_path / "link").symlink_to("dead")
    with pytest.raises(SocketPathError, match="link: a symbolic link, not a socket"):
        listen(str(tmp_path / "link"), socket.SOCK_STREAM, "--control-socket")
    assert os.path.islink(tmp_path / "link") and stat.S_ISSOCK(os.lstat(dead).st_mode)


def test_sun_path_holds_107_bytes(tmp_path: Path) -> None:
    base = str(tmp_path) + "/"
    check_path(base + "a" * (MAX_PATH - len(base)), "--socket")
    with pytest.raises(SocketPathError, match=f"--socket .*: {MAX_PATH + 1} bytes, but a unix"):
        check_path(base + "a" * (MAX_PATH + 1 - len(base)), "--socket")


def test_a_live_socket_with_a_full_backlog_is_busy_and_does_not_hang(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as theirs:
        theirs.bind(path)
        theirs.listen(0)
        waiting = []
        for _ in range(4):  # fill the backlog: nobody accepts
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.close()
                break
            waiting.append(sock)
        raised: list[BaseException] = []

        def claim() -> None:
            try:
                listen(path, socket.SOCK_SEQPACKET, "--pfkey-socket")
            except BaseException as e:
                raised.append(e)

        try:
            probe = threading.Thread(target=claim, daemon=True)
            probe.start()
            probe.join(5)
            assert not probe.is_alive(), "hangs on a listener that does not accept"
            assert isinstance(raised[0], SocketBusyError), raised
        finally:
            for sock in waiting:
                sock.close()


def test_a_listener_bound_ahead_is_given_away_served_and_removed_at_close(tmp_path: Path) -> None:
    # As `larval run --user` does: bound as root, its file handed to the user before the
    # drop, then served (no second bind), and its file removed when it closes.
    path = str(tmp_path / "s")
    listener = UnixListener(path, socket.SOCK_SEQPACKET, "--pfkey-socket")
    listener.bind()
    first = os.lstat(path)
    listener.bind()  # bound already: the same file, not a new one
    assert os.lstat(path).st_ino == first.st_ino
    if os.geteuid() == 0:
        listener.give_to(65534, 65534)
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)
    accepted: list[socket.socket] = []

    async def run() -> None:
        listener.serve(accepted.append, LogLimiter(logging.getLogger("test")), lambda: 0.0)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
            client.setblocking(False)
            await asyncio.get_running_loop().sock_connect(client, path)
            for _ in range(100):
                if accepted:
                    break
                await asyncio.sleep(0.01)
            assert len(accepted) == 1 and accepted[0].type == socket.SOCK_SEQPACKET
            accepted[0].send(b"hello")
            assert client.recv(16) == b"hello"
        await listener.close()

    asyncio.run(run())
    for sock in accepted:
        sock.close()
    assert not os.path.lexists(path)  # ours, given away or not: removed
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as late,
        pytest.raises(FileNotFoundError),
    ):
        late.connect(path)


def test_a_listener_names_its_option_when_the_path_is_taken(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(path)
        theirs.listen()
        listener = UnixListener(path, socket.SOCK_STREAM, "--control-socket")
        with pytest.raises(SocketBusyError, match=f"--control-socket {path}: already serving"):
            listener.bind()
        asyncio.run(listener.close())  # nothing bound: closing leaves their socket be
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
