"""The road warrior's host: virtual addresses and routes on the TUN device, DNS servers in
``daemon.resolv_file``, kept as the key manager's IKE SAs say (`larval.keymgr.road_warrior`).

After every turn of the key manager the daemon hands `RoadWarrior.sync` the state it
wants; nothing happens unless it changed. Netlink runs on a thread of its own (pyroute2's
synchronous calls cannot run inside the event loop), in order, one change after the other.
The resolver file is written at once, replaced atomically (a temporary file in the same
directory, then rename), and put back as it was when no IKE SA gives DNS servers any
more, and when the daemon stops. One file for the host, as strongSwan's ``resolve``
plugin keeps one (``charon.plugins.resolve.file``): a resolver reads one file, whichever
connection the servers came from.
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from larval.keymgr.road_warrior import HostState
from larval.net.errors import NetError
from larval.net.virtual_ip import VirtualIpInstaller

__all__ = ["ResolvFile", "RoadWarrior", "resolv_text"]

log = logging.getLogger("larval.daemon")

_HEADER = "# written by larval: the DNS servers of the IKE SA(s) of {}\n"


def resolv_text(state: HostState) -> str:
    """resolv.conf(5) lines for the state's DNS servers and domains ('' for none)."""
    if not state.dns and not state.domains:
        return ""
    lines = [_HEADER.format(", ".join(state.connections))]
    lines.extend(f"nameserver {server}\n" for server in state.dns)
    if state.domains:
        lines.append(f"search {' '.join(state.domains)}\n")
    return "".join(lines)


class ResolvFile:
    """``daemon.resolv_file``: the received DNS servers written ahead of what the file
    held before larval first wrote it, and that put back when there are none."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._original: str | None = None  # what was there before; None: no file
        self._written = False

    def write(self, text: str) -> None:
        """`text` ('' for none) ahead of the original content; an OSError names the file."""
        if not self._written:
            if not text:
                return  # nothing was written, nothing to put back
            try:
                self._original = self.path.read_text()
            except FileNotFoundError:
                self._original = None
        if text:
            self._replace(text + (self._original or ""))
            self._written = True
            return
        if self._original is None:
            self.path.unlink(missing_ok=True)
        else:
            self._replace(self._original)
        self._written = False

    def _replace(self, content: str) -> None:
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)  # a resolver file is read by every user's programs
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class RoadWarrior:
    """The host's side of the virtual addresses: TUN device `tun` (None: no dataplane,
    nothing to put them on), its routes in routing table `table` looked up by a rule of
    `priority` (``daemon.routing_table``; 0: the main table), and `resolv_file` (None:
    no file written)."""

    def __init__(
        self, tun: str | None, resolv_file: str | None, table: int = 0, priority: int = 0
    ) -> None:
        self._installer = VirtualIpInstaller(tun, table, priority) if tun else None
        self._resolv = ResolvFile(resolv_file) if resolv_file else None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="larval-vip")
        self._state = HostState()

    @property
    def state(self) -> HostState:
        return self._state

    def sync(self, state: HostState) -> None:
        """Make the host match `state`, if it is not what it was."""
        old, self._state = self._state, state
        if state == old:
            return
        for address in state.addresses:
            if address not in old.addresses:
                log.info("installing virtual IP %s%s", address,
                         f" on {self._installer.device}" if self._installer else
                         " (no TUN device: not on an interface)")  # fmt: skip
        for address in old.addresses:
            if address not in state.addresses:
                log.info("removing virtual IP %s", address)
        if self._installer is not None and (
            state.addresses != old.addresses or state.routes != old.routes
            or state.peers != old.peers
        ):  # fmt: skip
            self._executor.submit(self._install, state)
        text, before = resolv_text(state), resolv_text(old)
        if self._resolv is not None and text != before:
            self._write_resolv(text, state)

    def _install(self, state: HostState) -> None:
        assert self._installer is not None
        try:
            self._installer.apply(state.addresses, state.routes, state.peers)
        except NetError as e:
            log.error("%s", e)
            return
        except Exception as e:  # on the netlink thread: said in the log, or nowhere at all
            log.error("virtual IP on %s: %s", self._installer.device, e)
            return
        table = self._installer.table
        where = f", table {table}" if table else ""
        for net, source in state.routes:
            log.debug("route %s via %s, source %s%s", net, self._installer.device, source, where)

    def _remove_rules(self) -> None:
        assert self._installer is not None
        try:
            self._installer.close()
        except NetError as e:
            log.error("%s", e)

    def _write_resolv(self, text: str, state: HostState) -> None:
        assert self._resolv is not None
        try:
            self._resolv.write(text)
        except OSError as e:
            log.error("daemon.resolv_file %s: %s", self._resolv.path, e.strerror or e)
            return
        if text:
            servers = ", ".join(str(s) for s in state.dns) or "none"
            log.info("DNS servers %s written to %s", servers, self._resolv.path)
        else:
            log.info("%s put back as it was: no DNS servers received any more", self._resolv.path)

    def close(self) -> None:
        """The daemon stops: addresses, routes, the routing rule and the resolver file
        go, and the thread."""
        self.sync(HostState())
        if self._installer is not None:
            self._executor.submit(self._remove_rules)  # after the routes, in order
        self._executor.shutdown(wait=True)
