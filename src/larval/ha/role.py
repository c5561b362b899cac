"""`larval run` with ``[ha]``: what the daemon does as a standby, at takeover, when fenced
and when it stops.

Theory of operation
-------------------
* Standby: the stack, PF_KEY and the control socket are up; no IKE socket is bound (the
  virtual address is not here), the key manager is not started, the stack has no ESP
  state writer and no SAs; `HaNode` follows the state and campaigns.
* Takeover, on the event loop, in this order: the store of the new epoch, primed with
  the state (`HaNode.take_over`); the virtual addresses put on and announced; the
  dataplane started if there is one (its UDP socket binds the virtual address); the
  stack's ESP state writer on the new store, so that each SA ADDed resumes at its
  reserved high-water mark (RFC 4106 §3: a sequence number is an AES-GCM nonce); the
  IKE sockets; the key manager's restore, the same as after a restart
  (`larval.keymgr.persist.restore`). Then it sends. One line says the epoch and what
  was restored.
* Fenced (the election's deadline passed, or etcd refused a write), from whichever
  thread noticed: every ESP SA is revoked at once (`EspStateWriter.fence`), and every
  IKE send and every datagram of the dataplane is refused (`HaNode.may_send`, checked
  before each send: a node stopped past its deadline and woken sends nothing, even
  before its other threads notice). Then, on the event loop: the IKE sockets close,
  the key manager is replaced by a new one (its IKE SAs forgotten without a DELETE: the
  new owner carries them on), the SADB is flushed, the dataplane stops, the virtual
  addresses go, and the node follows the state again as a standby; the election
  campaigns again only after its back-off.
* SIGTERM of the owner: sending stops (`may_send`), the ESP state writer writes its last
  round and ends, the virtual addresses go and the node resigns (its lease revoked) so
  that a standby takes over at once. No DELETE is sent: the next owner carries the SAs
  on.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from larval.ha.node import OWNER, HaNode
from larval.ha.vip import VirtualAddresses
from larval.net.dataplane import Dataplane
from larval.net.errors import NetError
from larval.net.udp import UdpSocket
from larval.pfkey import PfkeyMessage, SadbMsgType, SaType
from larval.pools import Pools
from larval.store import StoreError
from larval.store.crypto import StateKey, read_key_file
from larval.store.etcd import owner_key

if TYPE_CHECKING:
    from larval.daemon.config import DaemonConfig
    from larval.daemon.ike_daemon import IkeDaemon

__all__ = ["HaRole", "bind_shared"]

log = logging.getLogger("larval.ha")

#: How long a takeover tries to bind its IKE sockets (the old owner may hold the port
#: on this host a moment longer, the virtual address may still be settling).
BIND_TRIES = 20
BIND_PAUSE = 0.1


def bind_shared(address: str, port: int) -> UdpSocket:
    """A UDP socket on `address`:`port` that a node of the same group on this host (a
    fenced owner still closing) does not keep from being bound; a `NetError` names both."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        raise NetError(f"IKE on {address}:{port}: {e.strerror}") from e
    return UdpSocket(sock, gro=False)


class HaRole:
    """The daemon's side of `HaNode` (module docstring)."""

    def __init__(self, daemon: IkeDaemon, cfg: DaemonConfig, config_path: str) -> None:
        ha = cfg.ha
        assert ha is not None and cfg.state_key is not None
        self.daemon = daemon
        self.config_path = config_path
        key = StateKey(read_key_file(cfg.state_key), f"{config_path}: daemon.state_key")
        self.node = HaNode(ha.endpoints, ha.group, ha.node, ha.lease_ttl, key,
                           VirtualAddresses(ha.virtual_addresses, ha.interface),
                           on_owner=self._won, on_fenced=self._fenced)  # fmt: skip
        # The pools as configured: a fenced node's new key manager starts with them.
        self._pools = copy.deepcopy(cfg.pools)
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The dataplane waits for each takeover (its socket binds the virtual address):
        #: the daemon has none to start with.
        self.dataplane_config, daemon.dataplane_config = daemon.dataplane_config, None
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<HaRole {self.node!r}>"

    # -- from any thread -------------------------------------------------------------------

    def may_send(self) -> bool:
        if self.node.may_send():
            self.node.ike_sent += 1
            return True
        self.node.ike_held += 1
        return False

    def _won(self, epoch: int) -> None:
        loop = self._loop
        if loop is not None and not self._stopping:
            loop.call_soon_threadsafe(lambda: self._spawn(loop, self._take_over(epoch)))

    def _fenced(self, reason: str) -> None:
        # Before anything else, in this thread: no ESP SA sends again. (Stopping, sending
        # has ended already: the resignation is what fenced.)
        writer = self.daemon.stack.esp_state
        if writer is not None and not self._stopping:
            writer.fence(f"fenced in group {self.node.group}: {reason}")
        loop = self._loop
        if loop is not None and not self._stopping:
            loop.call_soon_threadsafe(lambda: self._spawn(loop, self._stand_down(reason)))

    # -- on the event loop -----------------------------------------------------------------

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
        """A task kept until it ends (the loop holds its tasks only weakly)."""
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        await loop.run_in_executor(None, self._left_behind)
        await loop.run_in_executor(None, self.node.start)
        vips = ", ".join(map(str, self.node.vips.addresses)) or "none"
        log.info("ha: %s stands by in group %s (virtual addresses %s)", self.node.node,
                 self.node.group, vips)  # fmt: skip

    def _left_behind(self) -> None:
        """A virtual address on an interface here at start was left by a run of this node
        killed before (or is another node's on this host): taken away if no node owns
        the group, or this one's last run still does (its lease not yet run out), so that
        no neighbour answers for it here while another node owns it; else named."""
        node = self.node
        try:
            here = node.vips.found()
            owner = node.client.get(owner_key(node.group)) if here else None
        except (NetError, StoreError) as e:
            log.warning("ha: looking for virtual addresses left here: %s", e)
            return
        holder = owner.value.decode("utf-8", "replace") if owner is not None else None
        for placed in here:
            if holder not in (None, node.node):
                log.warning("ha: virtual address %s is on %s while %s owns group %s: if %s "
                            "is on another host, take it away here", placed.address,
                            placed.device, holder, node.group, holder)  # fmt: skip
                continue
            log.warning("ha: virtual address %s was left on %s by a run that did not stop "
                        "cleanly; taking it away, this node stands by", placed.address,
                        placed.device)  # fmt: skip
            node.vips.placed.append(placed)
        try:
            node.vips.drop()
        except NetError as e:
            log.error("ha: %s", e)

    async def _take_over(self, epoch: int) -> None:
        loop = asyncio.get_running_loop()
        node, daemon = self.node, self.daemon
        async with self._lock:
            if node.election.epoch != epoch:
                return
            began = time.monotonic()
            try:
                store = await loop.run_in_executor(None, node.take_over)
                if store is None:
                    return
                await loop.run_in_executor(None, node.vips.take)
                # Sent at once; arping lingers a second after it: not waited for.
                self._spawn(loop, self._announce(loop))
                config = self.dataplane_config
                if config is not None and daemon.dataplane is None:
                    daemon.dataplane_config = config
                    await loop.run_in_executor(None, daemon._start_dataplane, config)
                    daemon.dataplane_started()
                if daemon.dataplane is not None:
                    self._guard(daemon.dataplane)
                if node.election.epoch != epoch:
                    return  # fenced meanwhile: the stand-down waiting for the lock undoes it
                writer = daemon.stack.use_store(store)
                writer.start()
                daemon.keymgr.attach_store(store)
                await self._listen(loop)
                daemon.keymgr.start(time.time())
                store.primed = None
            except (StoreError, NetError, OSError) as e:
                log.error("ha: %s: taking over group %s (epoch %d) failed: %s; giving it up",
                          node.node, node.group, epoch, e)  # fmt: skip
                node.election.fence(f"the takeover failed: {e}")
                return
            except Exception as e:  # an owner that does not serve must not stay the owner
                log.error("ha: %s: taking over group %s (epoch %d) failed: %s: %s; giving it "
                          "up", node.node, node.group, epoch, type(e).__name__, e)  # fmt: skip
                node.election.fence(f"the takeover failed: {type(e).__name__}")
                return
            node.owning()
            keymgr = daemon.keymgr
            log.info("ha: %s owns group %s (epoch %d): restored %d IKE_SA(s), %d CHILD_SA(s), "
                     "%d SA(s) in the stack in %.0f ms; virtual addresses %s", node.node,
                     node.group, epoch, len(keymgr.sessions), len(keymgr.children),
                     len(daemon.stack.sadb), 1000 * (time.monotonic() - began),
                     ", ".join(f"{p.address} on {p.device}" for p in node.vips.placed)
                     or "none")  # fmt: skip
            daemon.flush_ike()

    def _guard(self, dataplane: Dataplane) -> None:
        """Every datagram the dataplane sends (ESP, NAT keepalives) passes `may_send`
        first: a node that was stopped past its deadline, woken, sends nothing even
        before its other threads notice. One clock reading per batch."""
        node = self.node

        def may_send(datagrams: int) -> bool:
            if node.may_send():
                return True
            node.esp_held += datagrams
            return False

        dataplane.may_send = may_send

    async def _announce(self, loop: asyncio.AbstractEventLoop) -> None:
        for problem in await loop.run_in_executor(None, self.node.vips.announce):
            log.warning("ha: %s", problem)

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        for tries in range(BIND_TRIES, 0, -1):
            try:
                await self.daemon.listen_ike(loop, bind_shared)
                return
            except NetError:
                self.daemon.close_ike_sockets()
                if tries == 1:
                    raise
                await asyncio.sleep(BIND_PAUSE)

    async def _stand_down(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        node, daemon = self.node, self.daemon
        async with self._lock:
            if node.may_send():
                return  # owns a later epoch already
            daemon.close_ike_sockets()
            forgotten = len(daemon.keymgr.sessions)
            self._forget()
            flushed = len(daemon.stack.sadb)
            daemon.emit_replies(daemon.stack.handle_pfkey(
                PfkeyMessage(SadbMsgType.FLUSH, SaType.UNSPEC), time.time()))  # fmt: skip
            # The virtual addresses go before anything that may wait on etcd (the ESP
            # writer's last round): the new owner may be announcing them already.
            try:
                await loop.run_in_executor(None, node.vips.drop)
            except NetError as e:
                log.error("ha: %s", e)
            writer, daemon.stack.esp_state = daemon.stack.esp_state, None
            daemon.stack.sadb.on_removed = None
            if writer is not None:
                await loop.run_in_executor(None, writer.stop)
            # The dataplane too (TUN, routes, the socket on the virtual address): a standby
            # neither forwards nor asks for SAs; the next takeover starts it again.
            await loop.run_in_executor(None, daemon._stop_dataplane)
            log.warning("ha: %s fenced in group %s (%s): %d IKE_SA(s) forgotten without a "
                        "DELETE, %d SA(s) flushed, virtual addresses dropped; standing by",
                        node.node, node.group, reason, forgotten, flushed)  # fmt: skip
            # Following the group again may wait on an etcd it cannot reach.
            await loop.run_in_executor(None, node.stood_down)

    def pools_defined(self, pools: Pools) -> None:
        """A reload's pools, as defined (no lease yet): a new key manager starts with them."""
        self._pools = copy.deepcopy(pools)

    def _forget(self) -> None:
        """A new key manager in place of the one whose IKE SAs the new owner carries on:
        nothing of theirs is sent (no DELETE), nothing kept."""
        self.daemon.new_node(copy.deepcopy(self._pools))

    async def stop(self) -> None:
        """SIGTERM: hand over (module docstring); a standby just leaves the group."""
        loop = asyncio.get_running_loop()
        node, daemon = self.node, self.daemon
        self._stopping = True
        owner = node.role == OWNER
        kept = len(daemon.keymgr.sessions)
        # Nothing leaves from here on: every IKE and dataplane send asks `may_send`.
        node.stop_sending()
        writer = daemon.stack.esp_state
        if writer is not None:
            # Its last reservations and replay checkpoints, while still the owner.
            await loop.run_in_executor(None, writer.stop)
        daemon.close_ike_sockets()
        try:
            await loop.run_in_executor(None, node.vips.drop)
        except NetError as e:
            log.error("ha: %s", e)
        await loop.run_in_executor(None, lambda: node.stop(resign=True))
        if owner:
            log.info("ha: %s resigned group %s: %d IKE_SA(s) left to the next owner, no "
                     "DELETE sent", node.node, node.group, kept)  # fmt: skip
