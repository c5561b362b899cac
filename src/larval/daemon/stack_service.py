"""`larval stack`: the stack alone, serving PF_KEY (and policy over the control socket).

No key manager runs here: any PF_KEY client — `larval sa`, a script, another key
manager — drives the SADB, as keysock lets any process do on illumos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from larval.daemon import gc_policy, sd_notify
from larval.daemon.metrics import MetricsEndpoint, MetricsError, Sources
from larval.daemon.reload import by_name
from larval.esp import NAT_T_PORT, EspConfigError
from larval.esp.helper import esp_path
from larval.net.control import ControlError, ControlServer, Handler
from larval.net.dataplane import Dataplane
from larval.net.pfkey_server import PfkeyServer
from larval.net.raw_esp import RawEspSocket
from larval.net.tun import TunDevice
from larval.net.udp import UdpSocket
from larval.sadb import GcFreezer, PfkeyReply
from larval.spd import Policy, load_policy_text, policy_to_dict
from larval.spd.errors import SpdError
from larval.stack.stack import Emit, Stack
from larval.store import StateStore

log = logging.getLogger("larval.stack")

AGE_INTERVAL = 1.0  # seconds between lifetime checks


@dataclass
class DataplaneConfig:
    """Where the dataplane runs: the TUN device for cleartext, the UDP socket for ESP."""

    tun: str
    local: str  # the address ESP-in-UDP is received on
    addresses: list[str] = field(default_factory=list)  # on the TUN, e.g. "203.0.113.1/24"
    routes: list[str] = field(default_factory=list)  # protected networks routed into the TUN
    port: int = NAT_T_PORT
    mtu: int = 1400
    offload: bool = True  # TUN with IFF_VNET_HDR and TSO: TCP super-packets both ways
    plain_esp: bool = False  # SAs without NAT-T go as IP protocol 50, not in UDP 4500


class StackService:
    """The stack, its PF_KEY socket, its control socket, its ager and, if asked, its
    dataplane, in one process."""

    #: Once started, settle the cyclic collector (`gc_policy.settle`): set by the
    #: commands, whose process lives for this service; left off for a service run inside
    #: another program (a test, an embedding), whose collector is not the service's to set.
    settle_gc: bool = False

    def __init__(
        self,
        pfkey_path: str | None,
        control_path: str | None = None,
        dataplane: DataplaneConfig | None = None,
        options: tuple[str, str] = ("--pfkey-socket", "--control-socket"),
        store: StateStore | None = None,
    ) -> None:
        """`options` name where the two socket paths came from, for error messages.
        `store`: where ESP sequence numbers are reserved and replay windows checkpointed
        (`larval.stack.esp_state`); None when no state is configured."""
        # The daemon's SADB is what grows: the collector stops walking it as it does.
        self.stack = Stack(store=store, gc_freezer=GcFreezer())
        self.dataplane_config = dataplane
        self.dataplane: Dataplane | None = None
        #: The dataplane's devices opened ahead of the start (`open_dataplane`).
        self._dataplane_opened: tuple[TunDevice, UdpSocket, RawEspSocket | None] | None = None
        pfkey_option, control_option = options
        self.pfkey = (
            PfkeyServer(pfkey_path, self.stack, option=pfkey_option) if pfkey_path else None
        )
        # Who hears what the stack originates (ACQUIRE, EXPIRE): the PF_KEY socket's
        # registered clients, and an in-process key manager if there is one.
        self._listeners: list[Emit] = [self.pfkey.emit] if self.pfkey else []
        self.stack.emit = self._emit
        # The names of the policies loaded over the control socket (`larval policy load`)
        # since the last flush: a reload of the configuration leaves them alone.
        self.control_policies: set[str] = set()
        self.handlers: dict[str, Handler] = {
            "policy.load": self._policy_load,
            "policy.list": self._policy_list,
            "policy.flush": self._policy_flush,
            "status": self._status,
        }
        self.control = (
            ControlServer(control_path, self.handlers, option=control_option)
            if control_path
            else None
        )
        self._stopping = asyncio.Event()
        #: Where the Prometheus endpoint listens (`larval.daemon.metrics`; None: off), and
        #: the option that said so, for its errors.
        self.metrics_at: tuple[str, int] | None = None
        self.metrics_option = "--metrics"
        self.metrics: MetricsEndpoint | None = None
        self._metrics_ahead: MetricsEndpoint | None = None  # bound by `bind_metrics`

    def add_listener(self, listener: Emit) -> None:
        self._listeners.append(listener)

    def _emit(self, replies: list[PfkeyReply]) -> None:
        if replies:
            for listener in self._listeners:
                listener(replies)

    def load_policy(self, text: str, source: str) -> int:
        """Add the policies of a policy file; those of the same name are replaced."""
        policies = load_policy_text(text, source)
        self.replace_policies(by_name(policies), ())
        return len(policies)

    def replace_policies(
        self, groups: Mapping[str, tuple[Policy, ...]], removed: Iterable[str]
    ) -> None:
        """Put `groups` in place of the policies of their names and remove `removed`, all
        or nothing: if the SPD refuses one (a reqid taken), what was there is restored."""
        spd = self.stack.spd
        doomed = {*groups, *removed}
        before = [p for p in spd.policies() if p.name in doomed]
        for name in doomed:
            spd.remove(name)
        try:
            spd.add_all([p for group in groups.values() for p in group])
        except SpdError:
            spd.add_all(before)  # add_all added none of them
            raise

    def _policy_load(self, request: dict[str, Any]) -> dict[str, Any]:
        text, source = request.get("text"), request.get("source", "<control>")
        if not isinstance(text, str) or not isinstance(source, str):
            raise ControlError('policy.load needs "text" (and "source") as strings')
        policies = load_policy_text(text, source)
        names = by_name(policies)
        started = {p.name for p in self.stack.spd.policies()} - self.control_policies
        self.replace_policies(names, ())
        self.control_policies.update(names)
        for name in sorted(started & names.keys()):
            log.warning("policy %s from %s replaces the one of the configuration; a reload "
                        "leaves it in place until `larval policy flush`", name, source)  # fmt: skip
        return {"loaded": len(policies)}

    def _policy_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"policies": [policy_to_dict(p) for p in self.stack.spd.policies()]}

    def _policy_flush(self, request: dict[str, Any]) -> dict[str, Any]:
        count = len(self.stack.spd.policies())
        self.stack.spd.flush()
        self.control_policies.clear()
        return {"flushed": count}

    def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "key_manager": "ike.status" in self.handlers,
            "sas": len(self.stack.sadb),
            "acquire_records": self.stack.sadb.acquire_records,
            "policies": len(self.stack.spd.policies()),
            "sadb_counters": self.stack.sadb.counters.snapshot(),
            "drops": dict(self.stack.drops),
            **self._esp_state_status(),
            "pfkey_clients": self.pfkey.clients if self.pfkey is not None else 0,
            "pfkey_missed": self.pfkey.missed if self.pfkey is not None else 0,
            "packets": self.dataplane.path.counters() if self.dataplane is not None else {},
            "io": self.dataplane.io_counters() if self.dataplane is not None else {},
            "esp_path": esp_path_status(),
        }

    # -- metrics (larval.daemon.metrics) -------------------------------------------------------

    def metrics_sources(self) -> Sources:
        """What the metrics endpoint reads: the stack's status and its SADB."""
        return Sources(lambda: self._status({}), self.stack.sadb)

    def bind_metrics(self) -> None:
        """Bind the metrics endpoint's socket now, for `run` to serve: `larval run
        --user` does it as root, before the drop, so that a port below 1024 serves too."""
        if self.metrics_at is not None and self._metrics_ahead is None:
            endpoint = MetricsEndpoint(self.metrics_sources())
            endpoint.bind(self.metrics_at, self.metrics_option)
            self._metrics_ahead = endpoint

    def close_bound_metrics(self) -> None:
        """Close what `bind_metrics` bound, if the start failed before it was served."""
        ahead, self._metrics_ahead = self._metrics_ahead, None
        if ahead is not None:
            ahead.close()

    def move_metrics(
        self, address: tuple[str, int] | None, loop: asyncio.AbstractEventLoop, *,
        starting: bool = False,
    ) -> None:  # fmt: skip
        """Serve the metrics on `address` (None: stop serving them), on the socket
        `bind_metrics` bound if it is there. `starting`: a MetricsError stops the start;
        later (a reload) it is logged and the endpoint stays where it was, or off."""
        self.metrics_at = address
        if address is None:
            self.close_bound_metrics()
            if self.metrics is not None:
                self.metrics.close()
                self.metrics = None
            return
        if self.metrics is not None and self.metrics.address == address:
            return
        endpoint = self.metrics or self._metrics_ahead or MetricsEndpoint(self.metrics_sources())
        self._metrics_ahead = None
        endpoint.loop = loop
        try:
            endpoint.listen(address, self.metrics_option)
        except MetricsError as e:
            if starting:
                raise
            where = "where they were" if self.metrics is not None else "off"
            log.error("reload: %s; the metrics stay %s", e, where)
            return
        self.metrics = endpoint

    def _esp_state_status(self) -> dict[str, Any]:
        writer = self.stack.esp_state
        if writer is None:
            return {}
        return {"esp_state": {"writes": writer.writes, "write_errors": writer.write_errors,
                              "fenced": writer.fenced}}  # fmt: skip

    def open_dataplane(self) -> None:
        """Open the dataplane's TUN device (with its addresses and routes), UDP socket and
        raw ESP socket now, for `_start_dataplane` to use: before `larval run --user`
        drops root (`larval.daemon.privileges`)."""
        if self.dataplane_config is not None and self._dataplane_opened is None:
            self._dataplane_opened = _open_dataplane(self.dataplane_config)

    def close_opened_dataplane(self) -> None:
        """Close what `open_dataplane` opened, if the start failed before it was used."""
        opened, self._dataplane_opened = self._dataplane_opened, None
        if opened is not None:
            for part in opened:
                if part is not None:
                    part.close()

    def _start_dataplane(self, config: DataplaneConfig) -> None:
        # A bad LARVAL_ESP_HELPER is refused now, by name, not at the first packet.
        chosen = esp_path()
        opened, self._dataplane_opened = self._dataplane_opened, None
        tun, udp, raw = opened if opened is not None else _open_dataplane(config)
        self.dataplane = Dataplane(self.stack, tun, udp, raw)
        self.dataplane.start()
        log.debug("dataplane started; ESP path: %s", chosen)

    def _stop_dataplane(self) -> None:
        if self.dataplane is not None:
            self.dataplane.stop()
            self.dataplane.tun.close()
            self.dataplane.udp.close()
            if self.dataplane.raw is not None:
                self.dataplane.raw.close()
            self.dataplane = None

    async def run(self) -> None:
        """Start everything, serve until SIGTERM, SIGINT or stop(), and undo what was
        started on every way out: a signal, or a part that fails to start."""
        loop = asyncio.get_running_loop()
        # First: a port in use stops the start before anything else is made.
        self.move_metrics(self.metrics_at, loop, starting=True)
        signals = self._catch_signals(loop)
        writer = self.stack.esp_state
        if writer is not None:
            writer.start()
        try:
            if self.dataplane_config is not None:
                # pyroute2's synchronous netlink calls cannot run inside a running loop.
                await loop.run_in_executor(None, self._start_dataplane, self.dataplane_config)
            await self._serve()
        finally:
            self.close_opened_dataplane()  # opened ahead, unused: the start failed before
            self._stop_dataplane()
            if writer is not None:
                # After the dataplane: its last reservations and checkpoints are written.
                await loop.run_in_executor(None, writer.stop)
            for sig in signals:
                loop.remove_signal_handler(sig)
            self.move_metrics(None, loop)

    def _catch_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        """Turn SIGTERM and SIGINT into a clean stop, from the start on (only the main
        thread can; a stack run in another thread is stopped with stop())."""
        caught: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stopping.set)
                caught.append(sig)
        return caught

    async def _serve(self) -> None:
        # Each part is closed, in reverse order, only if it started: a control socket
        # that cannot be created must not leave the PF_KEY socket behind.
        async with contextlib.AsyncExitStack() as opened:
            if self.pfkey is not None:
                await self.pfkey.start()
                opened.push_async_callback(self.pfkey.close)
            if self.control is not None:
                await self.control.start()
                opened.push_async_callback(self.control.close)
            ager = asyncio.create_task(self._age())
            opened.push_async_callback(_cancel, ager)
            await self.started()
            opened.push_async_callback(self.stopping)
            if self.settle_gc:
                # Start-up is over: what it made stays, out of the collector's way.
                gc_policy.settle()
            self._log_started()
            sd_notify.notify("READY=1")  # systemd's Type=notify: up, every socket open
            await self._stopping.wait()
            sd_notify.notify("STOPPING=1")
        log.info("stopped")

    def _log_started(self) -> None:
        # Said once all is up, so that a start that fails says one line: what failed.
        config = self.dataplane_config
        if self.dataplane is not None and config is not None:
            log.info("dataplane: %s <-> ESP in UDP on %s:%d",
                     self.dataplane.tun.name, config.local, config.port)  # fmt: skip
        if self.pfkey is not None:
            log.info("serving PF_KEY on %s", self.pfkey.path)

    async def started(self) -> None:
        """Hook: the sockets are up (the IKE daemon starts its key manager here)."""

    async def stopping(self) -> None:
        """Hook: SIGTERM or stop(); runs before the sockets close."""

    def stop(self) -> None:
        self._stopping.set()

    async def _age(self) -> None:
        while True:
            now = time.time()
            self.stack.age(now)
            # The sockets' limited log lines: say what was held back once a window ends.
            for server in (self.pfkey, self.control):
                if server is not None:
                    server.log.flush(now)
            await asyncio.sleep(AGE_INTERVAL)


def _open_dataplane(
    config: DataplaneConfig,
) -> tuple[TunDevice, UdpSocket, RawEspSocket | None]:
    """The TUN device, configured, the UDP socket and, for plain ESP, the raw socket;
    what opened is closed again if a later part fails."""
    tun = TunDevice.create(config.tun, vnet_hdr=config.offload, mtu=config.mtu)
    try:
        tun.configure(config.addresses, config.mtu, config.routes)
        udp = UdpSocket.bind(config.local, config.port)
    except BaseException:
        tun.close()
        raise
    try:
        raw = RawEspSocket.bind(config.local) if config.plain_esp else None
    except BaseException:
        tun.close()
        udp.close()
        raise
    return tun, udp, raw


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def esp_path_status() -> dict[str, str]:
    """Which ESP batch path this process runs (`larval.esp.helper`): name and detail."""
    try:
        chosen = esp_path()
    except EspConfigError as e:
        return {"name": "unusable", "detail": str(e)}
    return {"name": chosen.name, "detail": chosen.detail}
