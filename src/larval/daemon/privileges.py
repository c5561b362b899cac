"""`larval run --user NAME`: open what needs root, then go on as NAME with only
``CAP_NET_ADMIN``.

Theory of operation
-------------------
* Everything that needs root is opened first, as root, while the process has one thread
  (`BeforeDrop`): UDP 500 (and 4500), the TUN device with its addresses and routes, the
  raw ESP socket, the PF_KEY and control sockets (then given to the user, mode 0600, so
  that root and the user reach them), the metrics endpoint's TCP socket (served by a
  thread that starts after the drop), and the state store's files.
* Then `drop_to` changes identity, the way strongSwan's charon and OpenSSH do it:
  ``prctl(PR_SET_KEEPCAPS)`` so that the permitted capabilities survive the change of
  user, ``setgroups``/``setresgid``/``setresuid`` to the user's groups and ids, then
  ``capset`` (linux/capability.h, version 3) to keep only ``CAP_NET_ADMIN`` permitted and
  effective, none inheritable and none ambient, and ``PR_SET_NO_NEW_PRIVS``. The bounding
  set is cut to ``CAP_NET_ADMIN`` too where the process may (``CAP_SETPCAP``).
* ``CAP_NET_ADMIN`` is what pyroute2 needs later: a road warrior's virtual address and
  its routes, added when its CHILD_SA comes up. Nothing else that needs root is done
  after the drop; what would (a new address or TUN device on reload) waits for a restart
  (`larval.daemon.reload.daemon_changes`), and a raw socket opened later fails with an
  error that names it, never a traceback.
* Credentials are a thread's own on Linux: ``capset`` and ``PR_SET_NO_NEW_PRIVS`` change
  only the calling thread. So the drop is refused while a second Python thread runs;
  threads made after it inherit the main thread's credentials. Native threads (a
  numerical library's workers) follow glibc's set*id calls and, without KEEPCAPS, lose
  every capability; `_verify` checks every thread after the drop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import logging
import os
import platform
import pwd
import threading
from collections.abc import Callable
from dataclasses import dataclass

from larval.errors import LarvalError

__all__ = [
    "CAP_NET_ADMIN",
    "BeforeDrop",
    "DropTarget",
    "PrivilegeError",
    "drop_to",
    "look_up_user",
]

log = logging.getLogger("larval.daemon")

CAP_NET_ADMIN = 12  # linux/capability.h
_CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
#: ``__NR_capset`` by machine (glibc's wrapper is not public API; libcap calls the
#: system call the same way).
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "riscv64": 91, "i386": 185, "i686": 185,
               "armv7l": 185, "armv6l": 185, "s390x": 185, "ppc64le": 184,
               "ppc64": 184}  # fmt: skip


class PrivilegeError(LarvalError):
    """The drop cannot be done: not root, an unknown user, or a system call refused."""


@dataclass(frozen=True)
class DropTarget:
    """Whom `larval run --user` becomes: the user's name, ids and groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def look_up_user(name: str, where: str = "--user") -> DropTarget:
    """The user `name` of the passwd database with their supplementary groups; a
    `PrivilegeError` naming `where` for an unknown user, or for root itself."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"{where} {name}: no such user (create it with "
                             f"`useradd --system --no-create-home {name}`)") from None  # fmt: skip
    if entry.pw_uid == 0:
        raise PrivilegeError(f"{where} {name}: that is root; name an unprivileged user")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return DropTarget(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class BeforeDrop:
    """The steps that open, as root, what the daemon needs root for, run by `open_all`
    before the drop. Each step keeps what it opened where its owner finds it later; its
    `undo` closes it if the start fails after all. A part of the daemon that binds
    something privileged at start (a port below 1024, a raw socket) adds its step here."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._undo: list[Callable[[], None]] = []

    def add(self, what: str, step: Callable[[], None]) -> None:
        self._steps.append((what, step))

    def on_failure(self, undo: Callable[[], None]) -> None:
        """`undo` closes what a step opened, if the start fails before it is used."""
        self._undo.append(undo)

    @property
    def steps(self) -> list[str]:
        return [what for what, _ in self._steps]

    def open_all(self) -> None:
        try:
            for what, step in self._steps:
                log.debug("opening as root: %s", what)
                step()
        except BaseException:
            self.undo()
            raise

    def undo(self) -> None:
        for undo in reversed(self._undo):
            try:
                undo()
            except OSError as e:
                log.debug("closing what was opened before the drop: %s", e)
        self._undo.clear()


def _verify(target: DropTarget) -> None:
    """Every thread of the process, the native ones too (a numerical library's workers,
    which glibc's set*id changes with the rest), is the user's with at most
    ``CAP_NET_ADMIN``; a `PrivilegeError` otherwise."""
    allowed = 1 << CAP_NET_ADMIN
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return  # no /proc: the calls above said nothing against it
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # a thread that ended meanwhile
        uids = {int(v) for v in fields["Uid"].split()}
        caps = int(fields["CapEff"], 16) | int(fields["CapPrm"], 16)
        if uids != {target.uid} or caps & ~allowed:
            raise PrivilegeError(f"--user {target.name}: thread {task} kept uid "
                                 f"{sorted(uids)} or capabilities {caps:#x}")  # fmt: skip


def drop_to(target: DropTarget) -> None:
    """Become `target` with only ``CAP_NET_ADMIN`` (see the module's docstring). Call
    it from the main thread while it is the only one; a `PrivilegeError` otherwise, or
    if a system call refuses (the process is then not to go on)."""
    if os.geteuid() != 0:
        raise PrivilegeError(f"--user {target.name}: dropping privileges needs root, and "
                             f"this process runs as uid {os.geteuid()}")  # fmt: skip
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate())
        raise PrivilegeError(f"--user {target.name}: threads run ({names}); the drop must "
                             "come before any thread starts")  # fmt: skip
    libc = _libc()
    _bounding_set(libc)
    _prctl(libc, _PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS")
    try:
        os.setgroups(list(target.groups))
        os.setresgid(target.gid, target.gid, target.gid)
        os.setresuid(target.uid, target.uid, target.uid)
    except OSError as e:
        raise PrivilegeError(f"--user {target.name}: cannot change to its ids: "
                             f"{e.strerror}") from None  # fmt: skip
    _capset(libc, 1 << CAP_NET_ADMIN)
    _prctl(libc, _PR_SET_KEEPCAPS, 0, "PR_SET_KEEPCAPS")
    # Ambient capabilities would pass to programs run later; there are none to keep.
    _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL",
           optional=True)  # fmt: skip
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    _verify(target)
    log.info("running as %s, groups %s, with CAP_NET_ADMIN only", target.describe(),
             ",".join(group_name(g) for g in target.groups))  # fmt: skip


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int, name: str, *, optional: bool = False) -> None:
    args = (ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0))  # fmt: skip
    if libc.prctl(*args) != 0:
        code = ctypes.get_errno()
        if optional and code == errno.EINVAL:
            return  # a kernel older than the option (ambient capabilities: 4.3)
        raise PrivilegeError(f"--user: prctl({name}): {os.strerror(code)}")


def _bounding_set(libc: ctypes.CDLL) -> None:
    """Cut the bounding set to ``CAP_NET_ADMIN``, as far as the process may: without
    ``CAP_SETPCAP`` (a unit's CapabilityBoundingSet can take it away) the unit's bound
    stands instead."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        if cap in (CAP_NET_ADMIN, _CAP_SETPCAP):
            continue
        _drop_bound(libc, cap)
    _drop_bound(libc, _CAP_SETPCAP)  # last: it is what lets the others go


def _drop_bound(libc: ctypes.CDLL, cap: int) -> None:
    if libc.prctl(ctypes.c_int(_PR_CAPBSET_DROP), ctypes.c_ulong(cap), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:  # fmt: skip
        log.debug("bounding set: capability %d stays (%s)", cap, os.strerror(ctypes.get_errno()))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]  # fmt: skip


def _capset(libc: ctypes.CDLL, keep: int) -> None:
    """capset(2), version 3: two 32-bit words per set; `keep` permitted and effective,
    nothing inheritable, for this thread."""
    number = _SYS_CAPSET.get(platform.machine())
    if number is None:
        raise PrivilegeError(f"--user: capset on {platform.machine()} is not known to larval")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (keep >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    if libc.syscall(ctypes.c_long(number), ctypes.byref(header), ctypes.byref(data)) != 0:
        code = ctypes.get_errno()
        raise PrivilegeError(f"--user: capset(CAP_NET_ADMIN): {os.strerror(code)}")
