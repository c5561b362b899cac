"""AF_UNIX listeners: paths checked, claimed without harm, bound at mode 0600 and removed
only if ours; the accept loop; and `UnixListener`, which the PF_KEY and control sockets
share to bind, hand to the `--user`, serve and close.

A path given for a socket may already hold something a user cares about. Only a socket
file that nobody listens on any more (left behind by a crash) is replaced; a regular
file, a directory or a symbolic link (to anything) is refused and left as it is, and a
socket somebody answers on belongs to them. `bind(2)` itself never replaces anything,
so a path that appears between the check and the bind makes the bind fail, not vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

from larval.lograte import LogLimiter
from larval.net.errors import NetError

__all__ = [
    "MAX_PATH",
    "BoundPath",
    "SocketBusyError",
    "SocketPathError",
    "UnixListener",
    "accept_forever",
    "check_path",
    "check_vacant",
    "listen",
    "why_unreachable",
]

#: sun_path holds 108 bytes on Linux, the terminating NUL included (unix(7)).
MAX_PATH = 107


class SocketPathError(NetError):
    """A path that cannot be, or must not be, a unix socket."""


class SocketBusyError(SocketPathError):
    """A live socket is at the path: someone is serving there already."""


#: After a failed accept() (EMFILE, ENFILE, ENOBUFS, ENOMEM: out of descriptors or
#: memory), wait this long rather than spin on a listener that stays readable.
ACCEPT_BACKOFF = 0.1  # seconds


async def accept_forever(
    listener: socket.socket,
    accepted: Callable[[socket.socket], None],
    limiter: LogLimiter,
    clock: Callable[[], float],
) -> None:
    """Hand every connection on `listener` to `accepted`, until cancelled.

    One failed accept must not end the loop: every later client would get no answer,
    for good (EMFILE at the descriptor limit, say). Failures are logged within
    `limiter`'s limits. asyncio's own server loop is not used: in 3.11 it logs a
    traceback per pending connection on EMFILE and retries after a whole second.
    """
    loop = asyncio.get_running_loop()
    where = listener.getsockname()
    while True:
        try:
            sock, _ = await loop.sock_accept(listener)
        except OSError as e:
            limiter.log(clock(), f"accept on {where}", logging.WARNING,
                        "%s: accept failed: %s", where, e.strerror or e)  # fmt: skip
            if e.errno != errno.ECONNABORTED:  # that one: gone before accepted; next
                await asyncio.sleep(ACCEPT_BACKOFF)
            continue
        sock.setblocking(False)
        accepted(sock)


class UnixListener:
    """A listening socket of `kind` at `path` and the file it made: bound once, as root
    ahead of serving where `larval run --user` asks it, then served by `accept_forever`
    until closed. `option` names where the path came from, for error messages."""

    def __init__(self, path: str, kind: socket.SocketKind, option: str) -> None:
        self.path = path
        self.kind = kind
        self.option = option
        self._sock: socket.socket | None = None
        self._bound: BoundPath | None = None
        self._accept_task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        """Create the listening socket now, unless it is already (`larval run --user`
        does it as root, before the drop)."""
        if self._sock is None:
            self._sock, self._bound = listen(self.path, self.kind, self.option)

    def give_to(self, uid: int, gid: int) -> None:
        """The bound socket file given to `uid`:`gid` (mode 0600): root and that user
        reach it."""
        if self._bound is not None:
            self._bound = self._bound.give_to(uid, gid)

    def serve(
        self,
        accepted: Callable[[socket.socket], None],
        limiter: LogLimiter,
        clock: Callable[[], float],
    ) -> None:
        """Bind if not yet bound, and hand every connection to `accepted` from a task of
        the running loop (`accept_forever`) until `close`."""
        self.bind()
        assert self._sock is not None
        self._accept_task = asyncio.create_task(
            accept_forever(self._sock, accepted, limiter, clock)
        )

    async def close(self) -> None:
        """Stop accepting, close the socket, and remove its file if it is still ours."""
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sock is not None:
            self._sock.close()
        if self._bound is not None:
            self._bound.remove()


def check_path(path: str, option: str) -> None:
    """Refuse a path longer than sun_path holds; `option` names where it came from."""
    size = len(os.fsencode(path))
    if size > MAX_PATH:
        raise SocketPathError(
            f"{option} {path}: {size} bytes, but a unix socket path is at most {MAX_PATH}"
        )


@dataclass(frozen=True)
class BoundPath:
    """The socket file this process created, known by its inode and change time (an
    inode number alone is soon reused), so that it is only ever removed while it is
    still the one we made."""

    path: str
    device: int
    inode: int
    changed_ns: int

    @classmethod
    def of(cls, path: str) -> BoundPath:
        st = os.lstat(path)
        return cls(path, st.st_dev, st.st_ino, st.st_ctime_ns)

    def remove(self) -> None:
        # PermissionError: the process dropped root (`larval run --user`) and may no
        # longer reach or change the directory; the dead socket is taken back at the
        # next start.
        try:
            st = os.lstat(self.path)
        except (FileNotFoundError, PermissionError):
            return
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino, st.st_ctime_ns) == (
            self.device,
            self.inode,
            self.changed_ns,
        ):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(self.path)

    def give_to(self, uid: int, gid: int) -> BoundPath:
        """The socket file given to `uid`:`gid`, its mode (0600) kept: the file as it is
        now (the change of owner changed its ctime)."""
        os.chown(self.path, uid, gid)
        return BoundPath.of(self.path)


def listen(
    path: str, kind: socket.SocketKind, option: str, backlog: int = 64
) -> tuple[socket.socket, BoundPath]:
    """A non-blocking listening socket of `kind` at `path`, mode 0600, and its file.

    The file is created under a 0077 umask, so it never exists with wider permissions.
    """
    _claim(path, kind, option)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        old_umask = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
    except OSError as e:
        sock.close()
        raise _bind_error(path, option, e) from e
    try:
        os.chmod(path, 0o600)
        bound = BoundPath.of(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)  # made by the bind above, a moment ago
        raise SocketPathError(f"{option} {path}: {e.strerror}") from e
    return sock, bound


def check_vacant(path: str, option: str) -> bool:
    """Refuse a path too long, or holding anything but a socket; True if a socket is
    there (live or dead: `listen` finds out)."""
    check_path(path, option)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False  # NotADirectoryError: the directory it goes in is a file; bind says so
    except OSError as e:
        raise SocketPathError(f"{option} {path}: {e.strerror}") from e
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{option} {path}: {_what(st.st_mode)}, not a socket; left as it is")
    return True


def _claim(path: str, kind: socket.SocketKind, option: str) -> None:
    """Make way at `path`: nothing there, or a dead socket (removed); else refuse."""
    if not check_vacant(path, option):
        return
    if _is_live(path, kind, option):
        raise SocketBusyError(f"{option} {path}: already serving (a live socket is there)")
    try:
        os.unlink(path)  # a socket nobody listens on: what a crash leaves behind
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SocketPathError(f"{option} {path}: cannot remove a dead socket: {e.strerror}") from e


def _is_live(path: str, kind: socket.SocketKind, option: str) -> bool:
    with socket.socket(socket.AF_UNIX, kind) as probe:
        probe.setblocking(False)  # a listener with a full backlog must not hang us
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as e:
            # EPROTOTYPE: a live socket of another type; EAGAIN: its backlog is full.
            if e.errno in (errno.EPROTOTYPE, errno.EAGAIN):
                return True
            raise SocketPathError(f"{option} {path}: {e.strerror}") from e
    return True


def why_unreachable(path: str, e: OSError) -> str:
    """What a client says when connect() to `path` failed: what lies there, in words,
    rather than "Connection refused" for a regular file."""
    try:
        st = os.stat(path)  # as connect() does, through symbolic links
    except OSError:
        return e.strerror or str(e)
    if not stat.S_ISSOCK(st.st_mode):
        return f"{_what(st.st_mode)}, not a socket"
    if e.errno == errno.ECONNREFUSED:
        return "nobody serves there (a socket left behind by a process that ended)"
    if e.errno == errno.EPROTOTYPE:
        return "a socket of another kind (the other of the PF_KEY and control sockets?)"
    return e.strerror or str(e)


def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"


def _bind_error(path: str, option: str, e: OSError) -> SocketPathError:
    if e.errno == errno.EADDRINUSE:
        # Something appeared at the path after it was checked: it is not ours to replace.
        return SocketBusyError(f"{option} {path}: something else was created there meanwhile")
    return SocketPathError(f"{option} {path}: {e.strerror or e}")
