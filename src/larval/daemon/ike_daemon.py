"""`larval run -c FILE`: the stack, its dataplane and the IKE key manager in one process.

The key manager and the stack meet only in PF_KEY messages, encoded and decoded at the
boundary as if a socket lay between them (`larval.node.Node`): requests go in as bytes and
the replies come back as bytes; what the stack originates (ACQUIRE, EXPIRE) reaches the
key manager the same way, handed from the dataplane's and the ager's threads to the event
loop. IKE runs on UDP 500 and, behind the non-ESP marker, on the dataplane's UDP
4500 socket (RFC 3948 §2.2); asyncio drives it, the dataplane keeps its own threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from larval.daemon.config import DaemonConfig
from larval.daemon.group_commit import GroupCommit
from larval.daemon.loading import load_daemon
from larval.daemon.metrics import ConnectionTraffic, IkeReading, Sources, read_ike
from larval.daemon.privileges import BeforeDrop
from larval.daemon.reload import (
    RELOADED,
    by_name,
    connection_changes,
    daemon_changes,
    keep_pools,
    keep_unchanged,
    policy_changes,
)
from larval.daemon.road_warrior import RoadWarrior
from larval.daemon.stack_service import DataplaneConfig, StackService
from larval.daemon.wireshark_keys import KeySaver, live_tables
from larval.esp import NON_ESP_MARKER
from larval.ha.role import HaRole
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.keymgr.persist import take_batch
from larval.keymgr.road_warrior import host_state
from larval.logs import apply_config_levels
from larval.net.control import ControlError
from larval.net.udp import UdpSocket
from larval.node import Node
from larval.pools import Pools
from larval.sadb import PfkeyReply, WireReply
from larval.spd import SpdError
from larval.store import StateStore
from larval.store.sqlite import open_store

log = logging.getLogger("larval.daemon")

TICK = 0.1  # seconds between IKE timer checks
NAT_T_PEERS_KEPT = 4096  # peer (address, port)s last heard on UDP 4500


class _IkeProtocol(asyncio.DatagramProtocol):
    def __init__(self, daemon: IkeDaemon, local: str, nat_t: bool) -> None:
        self.daemon = daemon
        self.local = ipaddress.ip_address(local)
        self.nat_t = nat_t
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.nat_t:
            if not data.startswith(NON_ESP_MARKER):
                return  # ESP on a 4500 socket without a dataplane: nobody to give it to
            data = data[len(NON_ESP_MARKER) :]
        self.daemon.ike_received(data, (addr[0], addr[1]), self.local, nat_t=self.nat_t)

    def error_received(self, exc: Exception) -> None:
        log.debug("IKE socket: %s", exc)


def _road_warrior(config: DaemonConfig) -> RoadWarrior | None:
    """The host side of virtual IPs, for a configuration with a connection that asks for
    them or a resolver file to write; None for a gateway, which needs neither."""
    if not config.resolv_file and not any(c.ike.vips for c in config.connections):
        return None
    return RoadWarrior(config.tun, config.resolv_file, config.routing_table,
                       config.routing_table_prio)  # fmt: skip


def _open_state(cfg: DaemonConfig, config_path: str, *, fresh: bool) -> StateStore | None:
    """The state store of ``[daemon] state``, if one is configured: what `KeyManager.start`
    restores from, and where it keeps what it does. `fresh`: the store found is moved
    aside (`larval run --fresh`); a corrupt one is too, logged with its path."""
    if cfg.state is None:
        if fresh:
            log.info("%s: no daemon.state: --fresh has no store to set aside", config_path)
        return None
    opened = open_store(cfg.state, cfg.state_key, fresh=fresh)
    if opened.moved_to is not None:
        log.warning("%s: state store %s moved aside to %s (%s); starting clean", config_path,
                    cfg.state, opened.moved_to, opened.why)  # fmt: skip
    return opened.store


def _factory(proto: _IkeProtocol) -> Callable[[], _IkeProtocol]:
    return lambda: proto


def _ha_role(
    daemon: IkeDaemon, cfg: DaemonConfig, config_path: str, *, fresh: bool
) -> HaRole | None:
    """With ``[ha]``, this node's role in its group; None without."""
    if cfg.ha is None:
        return None
    if fresh:
        log.info("%s: [ha]: the state is the group's in etcd; --fresh sets nothing aside",
                 config_path)  # fmt: skip
    return HaRole(daemon, cfg, config_path)


def _bind_ike(address: str, port: int) -> UdpSocket:
    return UdpSocket.bind(address, port, gro=False)


class IkeDaemon(StackService):
    """The daemon of DESIGN.md."""

    def __init__(self, config_path: str, *, fresh: bool = False, user: str | None = None) -> None:
        """`user`: whom `larval run --user` becomes (`larval.daemon.privileges`); the
        files that hold secrets must be root's or that user's."""
        self.config_path = config_path
        # Before any socket opens: a credentials problem, or a connection's certificate
        # that is not among them, stops the start, every line shown.
        self.config, self.credentials = load_daemon(config_path, user=user)
        #: What `larval run --user` opens as root before the drop: the daemon's own
        #: sockets (`larval.daemon.run_as`), and any other part's that needs root.
        self.before_drop = BeforeDrop()
        #: UDP sockets bound ahead of the start, by (address, port), for `_bind_ike`.
        self.prebound: dict[tuple[str, int], UdpSocket] = {}
        cfg = self.config
        apply_config_levels(cfg.log_levels)
        dataplane = None
        if cfg.tun:
            # A road warrior's routes wait for its virtual address (`RoadWarrior`).
            routes = sorted({str(n) for c in cfg.connections if not c.ike.vips
                             for ch in c.children for n in ch.remote_ts})  # fmt: skip
            dataplane = DataplaneConfig(
                cfg.tun, cfg.addresses[0], cfg.tun_addresses, routes, NAT_T_PORT, cfg.mtu,
                plain_esp=cfg.plain_esp,
            )  # fmt: skip
        options = (f"{config_path}: daemon.pfkey_socket", f"{config_path}: daemon.control_socket")
        # One store for the stack's sequence numbers and the key manager's SAs; with
        # [ha] the group's, in etcd, from the first takeover on (`larval.ha.role`).
        self.store = _open_state(cfg, config_path, fresh=fresh)
        super().__init__(cfg.pfkey_socket, cfg.control_socket, dataplane, options,
                         store=self.store)  # fmt: skip
        self.ha = _ha_role(self, cfg, config_path, fresh=fresh)
        for policy in cfg.policies:
            self.stack.spd.add(policy)
        self.key_saver: KeySaver | None = None
        self.node = Node(cfg.connections, stack=self.stack, broadcast=self._broadcast,
                         wake=self._wake, pools=cfg.pools)  # fmt: skip
        self.keymgr = self.node.keymgr
        self._save_keys()
        self._metrics_setup()
        if self.store is not None:
            self.keymgr.attach_store(self.store)
        self.add_listener(self.node.stack_emitted)
        self.handlers.update({"up": self._up, "down": self._down, "ike.status": self._ike_status,
                              "ike.pools": self._ike_pools, "ike.keys": self._ike_keys,
                              "ha.status": self._ha_status})  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ike500: dict[str, _IkeProtocol] = {}
        self._ike4500: dict[str, _IkeProtocol] = {}
        # Behind a NAT a peer's 4500 arrives as some other port: what came in on our 4500
        # is answered from our 4500, with the non-ESP marker (RFC 3948 §2.2), whatever the
        # port (RFC 7296 §2.23, RFC 3947 §4).
        self._nat_t_peers: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._road_warrior = _road_warrior(cfg)
        self._commit: GroupCommit | None = None  # made with the first flush on the loop

    # -- PF_KEY from the stack -----------------------------------------------------------

    def _wake(self) -> None:
        """ACQUIRE or EXPIRE queued for the key manager; from any thread (the dataplane's,
        the ager's): it is handed over on the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._deliver_to_keymgr)

    def _deliver_to_keymgr(self) -> None:
        self.node.deliver(time.time())
        self._flush()

    # -- IKE datagrams ---------------------------------------------------------------------

    def ike_received(
        self, data: bytes, addr: tuple[str, int], local: Any, *, nat_t: bool = False
    ) -> None:
        """An IKE message from `addr`; `nat_t`: it came on our UDP 4500."""
        if self.ha is not None and not self.ha.node.may_send():
            return  # a standby answers nothing
        if nat_t and addr[1] != NAT_T_PORT:
            self._nat_t_peers[addr] = None
            self._nat_t_peers.move_to_end(addr)
            while len(self._nat_t_peers) > NAT_T_PEERS_KEPT:
                self._nat_t_peers.popitem(last=False)
        self.keymgr.receive_ike(data, addr, local, time.time())
        self._flush()

    def _ike_from_dataplane(self, body: bytes, peer: bytes, port: int) -> None:
        """IKE that arrived on the dataplane's 4500 socket (dataplane thread)."""
        if self._loop is None or self.dataplane is None:
            return
        local = ipaddress.ip_address(self.dataplane.udp.local_address[0])
        addr = (str(ipaddress.ip_address(peer)), port)
        self._loop.call_soon_threadsafe(lambda: self.ike_received(body, addr, local, nat_t=True))

    def _flush(self) -> None:
        """What the key manager did leaves: with a state store, by group commit (one
        write for the whole pass of the loop, then its datagrams; `GroupCommit`),
        without one at once."""
        if self._loop is not None and (self.keymgr.persist is not None or self._commit is not None):
            if self._commit is None:
                self._commit = GroupCommit(self._loop, lambda: take_batch(self.keymgr),
                                           self._sent)  # fmt: skip
            self._commit.request()
            return
        self._sent(self.keymgr.datagrams_to_send())

    def _sent(self, datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
        for data, (host, port) in datagrams:
            self._send_ike(data, host, port)
        if self._road_warrior is not None:
            self._road_warrior.sync(host_state(self.keymgr))

    def _send_ike(self, data: bytes, host: str, port: int) -> None:
        if self.ha is not None and not self.ha.may_send():
            return  # not the owner (fenced, or a standby): nothing leaves
        local = self.config.addresses[0]
        if port != NAT_T_PORT and (host, port) not in self._nat_t_peers:
            proto = self._ike500.get(local)
            if proto is not None and proto.transport is not None:
                proto.transport.sendto(data, (host, port))
            return
        framed = NON_ESP_MARKER + data  # RFC 3948 §2.2
        if self.dataplane is not None:
            self.dataplane.udp.send(framed, (host, port))
        elif (p := self._ike4500.get(local)) is not None and p.transport is not None:
            p.transport.sendto(framed, (host, port))

    def _broadcast(self, replies: list[WireReply]) -> None:
        """What the stack told every socket of the key manager's requests: other PF_KEY
        clients see it, as on one keysock, and so does ``save_keys``."""
        if self.pfkey is not None:
            self.pfkey.emit_wire(replies)
        if self.key_saver is not None:
            self.key_saver.stack_replied(replies)

    def _save_keys(self) -> None:
        """``[daemon] save_keys`` as configured now (at start, and at each reload). The
        loader's advice (`larval.daemon.advice`) warns in the log at each load while it
        is on; turning it off is said here."""
        path = self.config.save_keys
        if path is None:
            if self.key_saver is not None:
                log.warning("daemon.save_keys is off: no more keys are written to %s",
                            self.key_saver.path)  # fmt: skip
            self.key_saver = None
        else:
            if self.key_saver is None or self.key_saver.path != path:
                self.key_saver = KeySaver(path, self.stack.sadb)
        self.keymgr.on_ike_sa_up = self.key_saver.ike_sa_up if self.key_saver else None

    # -- metrics (larval.daemon.metrics) ---------------------------------------------------

    def _metrics_setup(self) -> None:
        """``[daemon] metrics``: where the endpoint listens once `run` starts; the
        CHILD_SAs deleted keep their bytes and packets in their connection's totals."""
        self.metrics_at = self.config.metrics
        self.metrics_option = f"{self.config_path}: daemon.metrics"
        self._traffic = ConnectionTraffic()
        self.keymgr.on_child_gone = lambda record: self._traffic.retire(record, self.stack.sadb)

    def metrics_sources(self) -> Sources:
        return Sources(lambda: self._status({}), self.stack.sadb, self._metrics_ike)

    def _metrics_ike(self) -> IkeReading:
        ha = self.ha.node.status() if self.ha is not None else None
        return read_ike(self.keymgr, self._traffic, self.stack.sadb, ha)

    def _on_tick(self) -> None:
        """IKE timers (retransmission, liveness, rekeying) are seconds apart: a tick every
        TICK seconds serves them all, with no per-datagram timer bookkeeping."""
        assert self._loop is not None
        self.keymgr.handle_timer(time.time())
        self._flush()
        self._timer = self._loop.call_later(TICK, self._on_tick)

    # -- life cycle --------------------------------------------------------------------------

    async def started(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if self.ha is not None:
            await self._ha_started(loop)
            return
        try:
            for address in self.config.addresses:
                self._ike500[address] = await self._listen(loop, address, IKE_PORT,
                                                           self._bind_ike)  # fmt: skip
                if self.dataplane is None:
                    self._ike4500[address] = await self._listen(loop, address, NAT_T_PORT,
                                                                self._bind_ike)  # fmt: skip
        except BaseException:
            self._close_ike_sockets()  # those bound before the one that failed
            raise
        if self.dataplane is not None:
            self.dataplane.path.on_ike = self._ike_from_dataplane
        log.info("IKE on %s, UDP 500 and 4500", ", ".join(self.config.addresses))
        self._start_keymgr(time.time())
        self._flush()
        self._timer = loop.call_later(TICK, self._on_tick)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    # -- restart from the state store --------------------------------------------------------

    _keymgr_started = False

    def _start_keymgr(self, now: float) -> None:
        if not self._keymgr_started:
            self._keymgr_started = True
            self.keymgr.start(now)
        else:
            # Started before the dataplane: what the stack queued for it since then (no
            # loop to wake it yet) is handed over now.
            self.node.deliver(now)

    def _start_dataplane(self, config: DataplaneConfig) -> None:
        """With a state store (and no ``[ha]``, whose standby restores nothing), the key
        manager restores its SAs before the dataplane opens: the stored SAs and their
        policies are in the stack before the TUN device and UDP 4500 take a packet, so
        ESP the peer kept sending while larval was away is opened at once, not dropped
        for an unknown SPI, and outbound traffic finds its policy. (An executor thread:
        the loop serves nothing else yet; what the key manager would send waits for the
        first flush, once the IKE sockets are up.)"""
        if self.store is not None and self.config.ha is None:
            self._start_keymgr(time.time())
        super()._start_dataplane(config)

    async def stopping(self) -> None:
        """SIGTERM: delete every IKE SA and CHILD_SA gracefully before going; with [ha]
        hand them to the next owner instead, without a DELETE (`HaRole.stop`)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.ha is not None:
            await self.ha.stop()
            self._close_ike_sockets()
            return
        self.keymgr.shutdown(time.time())
        self._flush()
        if self._commit is not None:
            await self._commit.drained()
        await asyncio.sleep(0.2)  # let the DELETEs leave, and their answers come
        self._close_ike_sockets()
        if self._road_warrior is not None:
            self._road_warrior.close()

    async def run(self) -> None:
        """The service; then the state store closes, after the stack's last writes."""
        try:
            await super().run()
        finally:
            if self._commit is not None:
                self._commit.close()
            if self.store is not None:
                self.store.close()

    async def _listen(
        self,
        loop: asyncio.AbstractEventLoop,
        address: str,
        port: int,
        bind: Callable[[str, int], UdpSocket] = _bind_ike,
    ) -> _IkeProtocol:
        """IKE on UDP `address`:`port`; a NetError naming both if it cannot be bound
        (port 500 needs root, the address must be one of this host's)."""
        udp = bind(address, port)
        proto = _IkeProtocol(self, address, nat_t=port == NAT_T_PORT)
        try:
            await loop.create_datagram_endpoint(_factory(proto), sock=udp.sock)
        except BaseException:
            udp.close()
            raise
        return proto

    def _bind_ike(self, address: str, port: int) -> UdpSocket:
        """The socket bound before the drop (`prebound`), else one bound now."""
        sock = self.prebound.pop((address, port), None)
        return sock if sock is not None else _bind_ike(address, port)

    def _close_ike_sockets(self) -> None:
        for proto in (*self._ike500.values(), *self._ike4500.values()):
            if proto.transport is not None:
                proto.transport.close()

    def reload(self) -> None:
        """SIGHUP: read the file again and make what came from it match it.

        Policies and connections the file no longer has go, new ones come, changed
        ones are replaced; the policies loaded over the control socket stay, including
        one that took a configured name (`larval.daemon.reload` says why). IKE SAs up
        keep running. The credentials directory is loaded again and the connections'
        certificates resolved against it: a new CRL or CA applies to the IKE SAs set up
        from then on. `[daemon]` (addresses, sockets, TUN) is bound to what was opened
        at start: a change there is logged and waits for a restart, except
        ``save_keys``, the log levels and the metrics endpoint, which follow the file. A file or a
        credentials directory that does not load, or policies the SPD refuses, change
        nothing; every line of the problem is logged. The log says what changed. A pool
        whose definition is unchanged keeps its leases (`keep_pools`).
        """
        try:
            fresh, credentials = load_daemon(self.config_path)
        except Exception as e:  # a bad file or bad credentials keep the running ones
            for line in str(e).splitlines():
                log.error("reload refused: %s", line.strip())
            return
        configured = by_name(fresh.policies)
        policies = policy_changes(by_name(self.stack.spd.policies()), configured,
                                  self.control_policies)  # fmt: skip
        try:
            self.replace_policies(
                {n: configured[n] for n in (*policies.added, *policies.changed)}, policies.removed
            )
        except SpdError as e:
            log.error("reload refused: %s: %s", self.config_path, e)
            return
        fresh_conns = {c.ike.name: c for c in fresh.connections}
        # A connection's trust compares equal whatever it holds: one whose certificate
        # sides changed is renewed, and with new credentials every one that uses
        # certificates, so that a new CRL or CA applies to the IKE SAs set up from now on.
        renewed = {name for name, cert_auth in fresh.cert_auth.items()
                   if credentials != self.credentials
                   or self.config.cert_auth.get(name) != cert_auth}  # fmt: skip
        connections = connection_changes(self.keymgr.connections, fresh_conns, renewed)
        self.keymgr.connections = keep_unchanged(self.keymgr.connections, fresh_conns, renewed)
        if self.ha is not None:
            self.ha.pools_defined(fresh.pools)  # before any lease is taken in them
        self.keymgr.pools, pools = keep_pools(self.keymgr.pools, fresh.pools)
        pending = daemon_changes(self.config, fresh)
        self.config = dataclasses.replace(
            self.config, **{name: getattr(fresh, name) for name in RELOADED}
        )
        self.credentials = credentials
        # A connection that asks for virtual IPs now needs the host side (its routes wait
        # for the address, so the dataplane's routes at start do not matter to it).
        self._road_warrior = self._road_warrior or _road_warrior(self.config)
        if pending:
            log.warning("reload: [daemon] %s changed; that takes a restart",
                        ", ".join(pending))  # fmt: skip
        for name in policies.kept:
            log.warning("reload: policy %s stays as loaded over the control socket, not as "
                        "configured (until `larval policy flush`)", name)  # fmt: skip
        done = [c.describe(what) for c, what in ((policies, "policies"),
                                                  (connections, "connections"),
                                                  (pools, "pools")) if c]  # fmt: skip
        log.info("configuration reloaded from %s: %s", self.config_path,
                 "; ".join(done) or "nothing changed")  # fmt: skip
        self._save_keys()
        apply_config_levels(self.config.log_levels)
        if self._loop is not None:
            self.move_metrics(self.config.metrics, self._loop)

    # -- control operations ------------------------------------------------------------------

    def _up(self, request: dict[str, Any]) -> dict[str, Any]:
        target = request.get("target")
        conn, child = self._target(target, children=True)
        try:
            self.keymgr.initiate(conn, child, time.time())
        except KeyError as e:  # a connection without children
            raise ControlError(str(e.args[0])) from None
        self._flush()
        return {"initiated": target}

    def _down(self, request: dict[str, Any]) -> dict[str, Any]:
        conn, _ = self._target(request.get("target"), children=False)
        count = self.keymgr.down(conn, time.time())
        self._flush()
        return {"deleted": count}

    def _target(self, target: object, *, children: bool) -> tuple[str, str | None]:
        """`CONN` or, where a child may be named, `CONN/CHILD`, both configured; else a
        refusal that names what is configured (as swanctl --initiate/--terminate)."""
        text = target if isinstance(target, str) else ""
        conn_name, slash, child_name = text.partition("/") if children else (text, "", "")
        conn = self.keymgr.connections.get(conn_name)
        if conn is None:
            known = ", ".join(self.keymgr.connections) or "none"
            raise ControlError(f"no connection {conn_name!r} (configured: {known})")
        if not slash:
            return conn_name, None
        if child_name not in {c.name for c in conn.children}:
            known = ", ".join(f"{conn_name}/{c.name}" for c in conn.children) or "none"
            raise ControlError(f"connection {conn_name} has no child {child_name!r} "
                               f"(configured: {known})")  # fmt: skip
        return conn_name, child_name

    def _ike_pools(self, request: dict[str, Any]) -> dict[str, Any]:
        """`larval pools`: each pool with its leases (`larval.pools.PoolStatus`)."""
        return {"pools": [p.to_dict() for p in self.keymgr.pools.status()]}

    def _ike_keys(self, request: dict[str, Any]) -> dict[str, Any]:
        """`larval keys --wireshark`: Wireshark's decryption tables of the live SAs
        (`larval.daemon.wireshark_keys.live_tables`). The answer holds keys: it goes to
        the asking client only, over the control socket (0600), and is never logged."""
        return live_tables(self.keymgr, self.stack.sadb).to_dict()

    def _ike_status(self, request: dict[str, Any]) -> dict[str, Any]:
        status = self.keymgr.status()
        now = time.time()
        for ike in status["ike_sas"]:
            for key, when in (("rekey_in_s", ike.pop("rekey_at")),
                              ("expires_in_s", ike.pop("expires_at"))):  # fmt: skip
                if when is not None:
                    ike[key] = round(when - now)
        for record in status["child_sas"]:
            local = ipaddress.ip_address(record["local"]).packed
            remote = ipaddress.ip_address(record["remote"]).packed
            for way, spi, dst in (
                ("in", record["spi_in"], local),
                ("out", record["spi_out"], remote),
            ):
                sa = self.stack.sadb.lookup_esp(int(spi, 16), dst)
                record[f"bytes_{way}"] = sa.bytes if sa is not None else 0
                record[f"packets_{way}"] = sa.packets if sa is not None else 0
                if way == "in" and sa is not None:
                    soft, hard = sa.soft, sa.hard
                    if soft is not None and soft.addtime:
                        record["rekey_in_s"] = round(sa.addtime + soft.addtime - now)
                    if hard is not None and hard.addtime:
                        record["expires_in_s"] = round(sa.addtime + hard.addtime - now)
        for record in status["rekeyed_inbound"]:
            record["deleted_in_s"] = max(0, round(record.pop("delete_at") - now))
            local = ipaddress.ip_address(record["local"]).packed
            sa = self.stack.sadb.lookup_esp(int(record["spi_in"], 16), local)
            record["bytes_in"] = sa.bytes if sa is not None else 0
            record["packets_in"] = sa.packets if sa is not None else 0
        return {**status, "stack": self._status({}), "ikev1_dropped": self.keymgr.ikev1_dropped}

    # -- [ha] (larval.ha.role) ----------------------------------------------------------------

    async def listen_ike(
        self, loop: asyncio.AbstractEventLoop, bind: Callable[[str, int], UdpSocket]
    ) -> None:
        """IKE on UDP 500 (and 4500 without a dataplane) of every address of ours, on
        sockets from `bind`: at a takeover."""
        try:
            for address in self.config.addresses:
                self._ike500[address] = await self._listen(loop, address, IKE_PORT, bind)
                if self.dataplane is None:
                    self._ike4500[address] = await self._listen(loop, address, NAT_T_PORT, bind)
        except BaseException:
            self._close_ike_sockets()  # those bound before the one that failed
            raise
        log.info("IKE on %s, UDP 500 and 4500", ", ".join(self.config.addresses))

    def dataplane_started(self) -> None:
        """IKE that arrives on the dataplane's UDP 4500 comes to the key manager."""
        if self.dataplane is not None:
            self.dataplane.path.on_ike = self._ike_from_dataplane

    async def _ha_started(self, loop: asyncio.AbstractEventLoop) -> None:
        """A standby: no IKE socket, the key manager not started, until a takeover."""
        assert self.ha is not None
        self._timer = loop.call_later(TICK, self._on_tick)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.ha.start(loop)

    def flush_ike(self) -> None:
        self._flush()

    def close_ike_sockets(self) -> None:
        self._close_ike_sockets()
        self._ike500.clear()
        self._ike4500.clear()

    def new_node(self, pools: Pools) -> None:
        """A new key manager, joined to the stack as the first was; the old one and its
        IKE SAs are dropped without a word to the peers (a fenced node of a group)."""
        old = self.node
        self.node = Node(list(old.keymgr.connections.values()), stack=self.stack,
                         broadcast=old.broadcast, wake=self._wake, pools=pools)  # fmt: skip
        self._listeners = [f for f in self._listeners if f != old.stack_emitted]
        self.add_listener(self.node.stack_emitted)
        self.keymgr = self.node.keymgr
        self.keymgr.on_ike_sa_up = self.key_saver.ike_sa_up if self.key_saver else None
        self.keymgr.on_child_gone = old.keymgr.on_child_gone

    def emit_replies(self, replies: list[PfkeyReply]) -> None:
        """What the stack answered to a request of the daemon's own, to PF_KEY clients."""
        self._emit(replies)

    def _ha_status(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.ha is None:
            raise ControlError(f"{self.config_path} has no [ha]: this daemon is in no group")
        return self.ha.node.status()
