"""`larval run --user NAME`: what the IKE daemon opens as root before it drops to NAME.

The steps go on the daemon's `BeforeDrop` list after any other part's: the metrics
endpoint's TCP socket (a port below 1024 too; served after the drop), UDP 500 (and 4500
without a dataplane) on each address, the dataplane (TUN device with its addresses and
routes, UDP 4500, the raw ESP socket), the PF_KEY and control sockets (given to the user,
mode 0600), the socket directories larval made, and the state store's files. Then
`larval.daemon.privileges.drop_to`. What is refused: ``[ha]``, whose takeovers bind
UDP 500 on the group's virtual addresses and announce them on raw sockets, both root's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from larval.daemon.ike_daemon import IkeDaemon, _bind_ike
from larval.daemon.listen_address import show_listen
from larval.daemon.privileges import DropTarget, PrivilegeError, drop_to, look_up_user
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.net.unix_socket import UnixListener
from larval.store.sqlite import DEFAULT_KEY_NAME

__all__ = ["drop_target", "run_as", "written_later"]

log = logging.getLogger("larval.daemon")

_STORE_SIDE_FILES = ("-wal", "-shm", "-journal")


def drop_target(daemon: IkeDaemon, user: str | None) -> DropTarget | None:
    """Whom the daemon becomes: ``--user`` (`user`), else ``daemon.user``; None: it
    stays as it is. A `PrivilegeError` if that cannot be."""
    name = user or daemon.config.user
    if name is None:
        return None
    where = "--user" if user else f"{daemon.config_path}: daemon.user"
    if os.geteuid() != 0:
        raise PrivilegeError(f"{where} {name}: only root can become another user, and this "
                             f"process runs as uid {os.geteuid()}")  # fmt: skip
    target = look_up_user(name, where)
    if daemon.config.ha is not None:
        raise PrivilegeError(f"{where} {name}: not with [ha]: a takeover binds UDP 500 on the "
                             "group's virtual addresses and announces them on raw sockets, "
                             "which needs root; run it as root")  # fmt: skip
    return target


def run_as(daemon: IkeDaemon, target: DropTarget, made_dirs: list[str]) -> None:
    """Open what needs root (the daemon's `before_drop` steps, then its own), then drop
    to `target`. `made_dirs`: the socket directories larval created, given to the user."""
    before = daemon.before_drop
    cfg = daemon.config
    if daemon.metrics_at is not None:  # first: a port in use stops the start before the rest
        before.add(f"metrics {show_listen(daemon.metrics_at)}", daemon.bind_metrics)
        before.on_failure(daemon.close_bound_metrics)
    for address in cfg.addresses:
        ports = (IKE_PORT,) if daemon.dataplane_config is not None else (IKE_PORT, NAT_T_PORT)
        for port in ports:
            before.add(f"UDP {address}:{port}", _prebind(daemon, address, port))
    before.on_failure(lambda: _close_prebound(daemon))
    if daemon.dataplane_config is not None:
        before.add(f"TUN {daemon.dataplane_config.tun} and ESP sockets", daemon.open_dataplane)
        before.on_failure(daemon.close_opened_dataplane)
    for server in (daemon.pfkey, daemon.control):
        if server is not None:
            before.add(f"socket {server.path}", _give_socket(server.listener, target))
    before.add("socket directories", lambda: _give_dirs(made_dirs, target))
    if cfg.state is not None:
        state = cfg.state
        before.add(f"state store {state}", lambda: _give_store(state, target))
    before.open_all()
    try:
        drop_to(target)
    except BaseException:
        before.undo()
        raise
    for problem in written_later(cfg.resolv_file, cfg.save_keys, target):
        log.warning("%s", problem)


def written_later(resolv_file: str | None, save_keys: str | None, target: DropTarget) -> list[str]:
    """What the daemon writes after the drop, in a directory `target` may not write:
    ``daemon.resolv_file`` (replaced by rename, so its directory) and ``daemon.save_keys``
    (the directory itself). One line each, for the log: the daemon still runs."""
    problems = []
    for key, path, directory in (
        ("daemon.resolv_file", resolv_file, os.path.dirname(resolv_file or "") or "."),
        ("daemon.save_keys", save_keys, save_keys),
    ):
        if path is None or directory is None:
            continue
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            continue  # made when first written; its parent says
        except OSError as e:
            problems.append(f"{key} {path}: {directory}: {e.strerror}")
            continue
        if not _writable_by(st, target):
            problems.append(f"{key} {path}: {target.name} may not write in {directory} after "
                            "the drop; nothing will be written there (give it to "
                            f"{target.name}, or choose a directory of its own)")  # fmt: skip
    return problems


def _writable_by(st: os.stat_result, target: DropTarget) -> bool:
    """Whether `target` may create files in the directory `st` (its mode bits; with
    CAP_NET_ADMIN alone there is no override)."""
    if st.st_uid == target.uid:
        return bool(st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IXUSR)
    if st.st_gid in target.groups or st.st_gid == target.gid:
        return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IWOTH and st.st_mode & stat.S_IXOTH)


def _prebind(daemon: IkeDaemon, address: str, port: int) -> Callable[[], None]:
    def step() -> None:
        daemon.prebound[(address, port)] = _bind_ike(address, port)

    return step


def _close_prebound(daemon: IkeDaemon) -> None:
    for sock in daemon.prebound.values():
        sock.close()
    daemon.prebound.clear()


def _give_socket(listener: UnixListener, target: DropTarget) -> Callable[[], None]:
    """Bind the socket as root, then give its file to the user (mode 0600 kept)."""

    def step() -> None:
        listener.bind()
        listener.give_to(target.uid, target.gid)

    return step


def _give_dirs(dirs: list[str], target: DropTarget) -> None:
    for directory in dirs:
        os.chown(directory, target.uid, target.gid)


def _give_store(path: str, target: DropTarget) -> None:
    """The store and its side files (-wal, -shm) to the user, who writes them from now
    on; its directory too when it holds nothing else (``/var/lib/larval``), so that
    SQLite can remove its WAL when it closes. A shared directory is left as it is."""
    for name in (path, *(path + side for side in _STORE_SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            os.chown(name, target.uid, target.gid, follow_symlinks=False)
    directory, own = Path(path).parent, Path(path).name
    try:
        st = directory.stat()
        others = [e.name for e in directory.iterdir()
                  if not e.name.startswith(own) and e.name != DEFAULT_KEY_NAME]  # fmt: skip
    except OSError:
        return
    if not others and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chown(directory, target.uid, target.gid)
    else:
        log.debug("state store: %s is shared, left as it is; the WAL stays at stop", directory)
