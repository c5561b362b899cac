"""The Prometheus endpoint (``[daemon] metrics = "ADDRESS:PORT"``, `larval stack --metrics`).

Nothing is counted twice: a scrape reads the counters the stack, the dataplane and the key
manager keep anyway (those `larval status` shows, and `larval.ike.counters`), turns them
into metric families (`LarvalCollector`), and the packet path does no more per packet than
it did. The collector is registered on a registry of the endpoint's own, not the global
one, so that two daemons in one process (tests) do not meet; `prometheus_client`'s own
server serves it on a thread of its own.

What belongs to the event loop (the key manager's sessions and CHILD_SAs, the pools, the
[ha] role) is read on the loop, in one call handed over to it
(`MetricsEndpoint.on_loop`); the SADB, whose tables and counters are thread-safe, is
walked on the scrape's thread, so that the loop is not held for it.

The listening socket can be bound ahead of serving (`MetricsEndpoint.bind`): `larval run
--user` binds it as root, before the drop, so that a port below 1024 works, and the
serving thread starts after the drop, which refuses while a second thread runs. A reload
after the drop that moves the endpoint to a port below 1024 cannot bind it: the error is
logged and the endpoint stays where it was.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from larval.daemon.listen_address import show_listen
from larval.errors import LarvalError
from larval.ike.sa import Phase
from larval.pfkey import SaState

if TYPE_CHECKING:
    from larval.ike.counters import IkeCounters
    from larval.keymgr.manager import ChildRecord, KeyManager
    from larval.sadb import Sadb

log = logging.getLogger("larval.daemon")
_T = TypeVar("_T")

#: Seconds a scrape waits for the event loop to read the key manager's state.
LOOP_WAIT = 5.0

#: The SADB counters that count packets dropped (`larval.sadb.counters`): the held ones a
#: full queue or a dying SA or acquire record took. The others count events.
SADB_DROPS = ("replaced", "expired", "acquire_replaced", "acquire_expired")


class MetricsError(LarvalError):
    """The metrics endpoint cannot listen where it is configured."""


# -- what a scrape reads ---------------------------------------------------------------------


@dataclass
class ConnectionTraffic:
    """Bytes and packets of each connection's CHILD_SAs, both ways, as counters that never
    go down: the SADB's counts of the SAs that are up, plus those of the SAs already gone
    (`retire`, told by the key manager as it deletes a CHILD_SA; else what the last scrape
    saw of it)."""

    #: connection -> [bytes in, packets in, bytes out, packets out] of CHILD_SAs gone.
    retired: dict[str, list[int]] = field(default_factory=dict)
    #: inbound SPI -> (connection, its counts) as the last read saw them.
    _seen: dict[int, tuple[str, tuple[int, int, int, int]]] = field(default_factory=dict)

    def read(self, children: Mapping[int, ChildRecord], sadb: Sadb) -> dict[str, list[int]]:
        """Each connection's totals now (event loop: `children` is the key manager's)."""
        seen: dict[int, tuple[str, tuple[int, int, int, int]]] = {}
        for spi_in, record in children.items():
            seen[spi_in] = (record.connection, child_counts(sadb, record))
        for spi_in, (connection, counts) in self._seen.items():
            if spi_in not in seen:
                self._add(connection, counts)  # gone without a word: as last seen
        self._seen = seen
        totals = {name: list(v) for name, v in self.retired.items()}
        for connection, counts in seen.values():
            total = totals.setdefault(connection, [0, 0, 0, 0])
            for i, n in enumerate(counts):
                total[i] += n
        return totals

    def retire(self, record: ChildRecord, sadb: Sadb) -> None:
        """A CHILD_SA is being deleted, its SAs still in the SADB: what they carried stays
        in its connection's totals."""
        last = self._seen.pop(record.spi_in, None)
        counts = child_counts(sadb, record)
        if last is not None:  # the SAs may be gone already (a hard lifetime)
            counts = _most(counts, last[1])
        self._add(record.connection, counts)

    def _add(self, connection: str, counts: tuple[int, ...]) -> None:
        total = self.retired.setdefault(connection, [0, 0, 0, 0])
        for i, n in enumerate(counts):
            total[i] += n


def _most(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def sa_counts(sadb: Sadb, spi: int, dst: bytes) -> tuple[int, int]:
    """(bytes, packets) the SADB counted on the ESP SA `spi` to `dst`; zeros if it is gone."""
    sa = sadb.lookup_esp(spi, dst)
    return (sa.bytes, sa.packets) if sa is not None else (0, 0)


def child_counts(sadb: Sadb, record: ChildRecord) -> tuple[int, int, int, int]:
    """(bytes in, packets in, bytes out, packets out) of a CHILD_SA's two SAs."""
    bytes_in, packets_in = sa_counts(sadb, record.spi_in, record.local.packed)
    bytes_out, packets_out = sa_counts(sadb, record.spi_out, record.remote.packed)
    return bytes_in, packets_in, bytes_out, packets_out


@dataclass(frozen=True)
class IkeReading:
    """The key manager's part of a scrape, read on the event loop."""

    ike_sas: dict[tuple[str, int], int]  # (phase, version) -> IKE SAs
    child_sas: dict[str, int]  # connection -> CHILD_SAs
    half_open: int
    cookies_sent: int
    exchanges: dict[tuple[int, str, str], int]
    retransmits: int
    auth_failures: dict[str, int]
    errors_sent: dict[tuple[int, str], int]
    errors_received: dict[tuple[int, str], int]
    ikev1_dropped: dict[str, int]
    traffic: dict[str, list[int]]
    pools: list[tuple[str, int, int, int]]  # (pool, size, online, offline)
    ha: dict[str, Any] | None


def read_ike(
    keymgr: KeyManager, traffic: ConnectionTraffic, sadb: Sadb, ha: dict[str, Any] | None
) -> IkeReading:
    """What a scrape shows of `keymgr` (on the event loop)."""
    ike_sas: dict[tuple[str, int], int] = {}
    for session in keymgr.sessions.values():
        key = (_PHASE_NAMES[session.phase], session.version)
        ike_sas[key] = ike_sas.get(key, 0) + 1
    child_sas: dict[str, int] = {}
    for record in keymgr.children.values():
        child_sas[record.connection] = child_sas.get(record.connection, 0) + 1
    counters: IkeCounters = keymgr.ike_counters
    pools = [(p.name, p.size, len(p.online), len(p.offline)) for p in keymgr.pools.status()]
    return IkeReading(
        ike_sas, child_sas, keymgr.half_open_sas, keymgr.cookies_sent,
        dict(counters.exchanges), counters.retransmits, dict(counters.auth_failures),
        dict(counters.errors_sent), dict(counters.errors_received), dict(keymgr.ikev1_dropped),
        traffic.read(keymgr.children, sadb), pools, ha,
    )  # fmt: skip


_PHASE_NAMES = {p: p.name.lower() for p in Phase}
_SA_STATES = {int(s): s.name.lower() for s in (SaState.LARVAL, SaState.MATURE, SaState.DYING,
                                                SaState.DEAD)}  # fmt: skip


def sadb_states(sadb: Sadb) -> tuple[dict[str, int], int]:
    """The SAs by state, and the packets held on LARVAL SAs: a walk of the SADB (a
    snapshot of each table; thread-safe), on the scrape's thread."""
    states = dict.fromkeys(_SA_STATES.values(), 0)
    held = 0
    for sa in sadb.all_sas():
        states[_SA_STATES.get(sa.state, "dead")] += 1
        queue = sa.held
        if queue:
            held += len(queue)
    return states, held


# -- the collector ---------------------------------------------------------------------------


@dataclass
class Sources:
    """Where a scrape reads: the stack's status (`StackService._status`, what `larval
    status` shows) and its SADB; with a key manager, `ike` (on the loop)."""

    status: Callable[[], dict[str, Any]]
    sadb: Sadb
    ike: Callable[[], IkeReading] | None = None


#: What is read on the event loop: the stack's status and the key manager's part.
_LoopReading = tuple[dict[str, Any], IkeReading | None]


class LarvalCollector(Collector):
    """Every larval metric, made at scrape time from the live counters."""

    def __init__(
        self, sources: Sources, on_loop: Callable[[Callable[[], _LoopReading]], _LoopReading]
    ) -> None:
        self.sources = sources
        self.on_loop = on_loop

    def _read(self) -> _LoopReading:
        sources = self.sources
        return sources.status(), sources.ike() if sources.ike is not None else None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        status, ike = self.on_loop(self._read)
        sources = self.sources
        yield from _stack_families(status)
        states, held = sadb_states(sources.sadb)
        sas = GaugeMetricFamily("larval_sadb_sas", "Security associations in the SADB, by state",
                                labels=["state"])  # fmt: skip
        for state, n in states.items():
            sas.add_metric([state], n)
        yield sas
        yield GaugeMetricFamily("larval_sadb_held_packets",
                                "Inbound packets held on LARVAL SAs now", value=held)  # fmt: skip
        if ike is not None:
            yield from _ike_families(ike)


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily, rows: Iterable[tuple[Iterable[object], int]]
) -> CounterMetricFamily | GaugeMetricFamily:
    for labels, value in rows:
        family.add_metric([str(v) for v in labels], value)
    return family


def _stack_families(status: dict[str, Any]) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The stack's and the dataplane's counters, from the stack's status."""
    sadb: dict[str, int] = status["sadb_counters"]
    packets: dict[str, int] = dict(status.get("packets") or {})
    sent, delivered = packets.pop("sent", 0), packets.pop("delivered", 0)
    # The packet path counts the stack's verdicts too (`PacketPath._verdict`); without a
    # dataplane only the stack's own counters exist.
    drops = packets if status.get("packets") else dict(status["drops"])
    for name in SADB_DROPS:
        drops[name] = sadb.get(name, 0)
    yield _labelled(CounterMetricFamily(
        "larval_dropped_packets", "Packets dropped by the packet path and the SADB, by reason "
        "(the counter names of `larval status`)", labels=["reason"]),
        sorted(((name,), n) for name, n in drops.items()))  # fmt: skip
    yield _counter("larval_esp_sent_packets", "ESP packets sent to peers", sent)
    yield _counter("larval_delivered_packets", "Cleartext packets delivered to the host", delivered)
    yield _labelled(CounterMetricFamily(
        "larval_sadb_holds", "Packets held as they came, on a LARVAL SA (inbound) or an "
        "acquire record (outbound)", labels=["on"]),
        ((("larval_sa",), sadb["held"]), (("acquire",), sadb["acquire_held"])))  # fmt: skip
    yield _labelled(CounterMetricFamily(
        "larval_sadb_released_packets", "Held packets released by UPDATE or ADD", labels=["on"]),
        ((("larval_sa",), sadb["released"]), (("acquire",), sadb["acquire_released"])))  # fmt: skip
    yield _counter("larval_sadb_lost_races", "Packets that found their SA LARVAL, then mature "
                   "under its lock (processed at once)", sadb["lost_races"])  # fmt: skip
    yield _counter("larval_acquires", "ACQUIREs sent (acquire records opened)", sadb["acquires"])
    yield GaugeMetricFamily("larval_sadb_acquire_records", "Acquire records open",
                            value=status["acquire_records"])  # fmt: skip
    yield GaugeMetricFamily("larval_spd_policies", "Policies in the SPD", value=status["policies"])
    yield GaugeMetricFamily("larval_pfkey_clients", "PF_KEY clients connected",
                            value=status["pfkey_clients"])  # fmt: skip
    yield _counter("larval_pfkey_missed", "PF_KEY messages a slow client missed",
                   status["pfkey_missed"])  # fmt: skip
    io: dict[str, int] = status.get("io") or {}
    yield _labelled(CounterMetricFamily(
        "larval_dataplane_io", "The dataplane's system calls, packets and errors on the TUN "
        "device and the UDP socket, by counter", labels=["counter"]),
        sorted(((name,), n) for name, n in io.items()))  # fmt: skip
    store = status.get("esp_state")
    if store is not None:
        yield _counter("larval_store_esp_writes", "Sequence-number reservations and replay "
                       "checkpoints written to the state store", store["writes"])  # fmt: skip
        yield _counter("larval_store_esp_write_errors", "Writes to the state store that failed",
                       store["write_errors"])  # fmt: skip
        yield GaugeMetricFamily("larval_store_fenced", "1 when the state store fenced this node",
                                value=int(bool(store["fenced"])))  # fmt: skip


def _ike_families(ike: IkeReading) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    yield _labelled(GaugeMetricFamily(
        "larval_ike_sas", "IKE SAs, by state and IKE version", labels=["state", "version"]),
        sorted(ike.ike_sas.items()))  # fmt: skip
    yield _labelled(GaugeMetricFamily(
        "larval_child_sas", "CHILD_SAs installed, by connection", labels=["connection"]),
        sorted(((c,), n) for c, n in ike.child_sas.items()))  # fmt: skip
    yield GaugeMetricFamily("larval_ike_half_open_sas", "IKE SAs half open (responder, after "
                            "IKE_SA_INIT)", value=ike.half_open)  # fmt: skip
    yield _counter("larval_ike_cookies_sent", "COOKIEs sent to openers while half-open IKE SAs "
                   "were many (RFC 7296 §2.6)", ike.cookies_sent)  # fmt: skip
    yield _labelled(CounterMetricFamily(
        "larval_ike_exchanges", "IKE exchanges (a request and its response), by version, "
        "exchange type and result (ok, refused, failed, timeout)",
        labels=["version", "exchange", "result"]), sorted(ike.exchanges.items()))  # fmt: skip
    yield _counter("larval_ike_retransmits", "IKE requests sent again for want of an answer",
                   ike.retransmits)  # fmt: skip
    yield _labelled(CounterMetricFamily(
        "larval_ike_auth_failures", "Authentications that failed, by reason", labels=["reason"]),
        sorted(((r,), n) for r, n in ike.auth_failures.items()))  # fmt: skip
    notifies = CounterMetricFamily("larval_ike_error_notifies", "Error notifications sent to "
                                   "and received from peers, by version and type",
                                   labels=["version", "direction", "notify"])  # fmt: skip
    no_proposal = {"sent": 0, "received": 0}
    for direction, table in (("sent", ike.errors_sent), ("received", ike.errors_received)):
        for (version, name), n in sorted(table.items()):
            notifies.add_metric([str(version), direction, name], n)
            if name == "NO_PROPOSAL_CHOSEN":
                no_proposal[direction] += n
    yield notifies
    yield _labelled(CounterMetricFamily(
        "larval_ike_no_proposal_chosen", "NO_PROPOSAL_CHOSEN sent and received",
        labels=["direction"]), sorted(((d,), n) for d, n in no_proposal.items()))  # fmt: skip
    yield _labelled(CounterMetricFamily(
        "larval_ikev1_dropped_messages", "IKEv1 messages dropped as malformed, by reason",
        labels=["reason"]), sorted(((r,), n) for r, n in ike.ikev1_dropped.items()))  # fmt: skip
    traffic = sorted(ike.traffic.items())
    for unit, first in (("bytes", 0), ("packets", 1)):
        family = CounterMetricFamily(
            f"larval_connection_{unit}", f"ESP {unit} of a connection's CHILD_SAs, in and out",
            labels=["connection", "direction"])  # fmt: skip
        for connection, counts in traffic:
            family.add_metric([connection, "in"], counts[first])
            family.add_metric([connection, "out"], counts[first + 2])
        yield family
    yield _labelled(GaugeMetricFamily(
        "larval_pool_addresses", "Addresses of a virtual IP pool", labels=["pool"]),
        (((name,), size) for name, size, _, _ in ike.pools))  # fmt: skip
    leases = GaugeMetricFamily("larval_pool_leases", "Leases of a pool, online (an IKE SA up) "
                               "and offline (kept for the identity)",
                               labels=["pool", "state"])  # fmt: skip
    for name, _, online, offline in ike.pools:
        leases.add_metric([name, "online"], online)
        leases.add_metric([name, "offline"], offline)
    yield leases
    if ike.ha is not None:
        yield from _ha_families(ike.ha)


def _ha_families(ha: dict[str, Any]) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    role = GaugeMetricFamily("larval_ha_role", "This node's role in its [ha] group (1: the "
                             "one it has)", labels=["role"])  # fmt: skip
    role.add_metric([str(ha["role"])], 1)
    yield role
    yield GaugeMetricFamily("larval_ha_epoch", "The owner's epoch (0 when not the owner)",
                            value=ha["epoch"])  # fmt: skip
    yield GaugeMetricFamily("larval_ha_lag", "State revisions this node has yet to apply",
                            value=ha["lag"])  # fmt: skip
    for key, doc in (("ike_sent", "IKE messages sent"),
                     ("ike_held", "IKE messages held back (not the owner)"),
                     ("esp_held", "ESP packets held back (not the owner)")):  # fmt: skip
        yield _counter(f"larval_ha_{key}", doc, int(ha[key]))


# -- the endpoint ----------------------------------------------------------------------------


class MetricsEndpoint:
    """The HTTP endpoint: a registry of its own with one `LarvalCollector`, served by
    `prometheus_client`'s WSGI application on a thread; `bind` binds it ahead of serving,
    `listen` (re)binds and serves it, `close` stops it."""

    def __init__(self, sources: Sources, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LarvalCollector(sources, self.on_loop))
        self.address: tuple[str, int] | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: bound by `bind`, not served yet: (its address, the server)
        self._ahead: tuple[tuple[str, int], WSGIServer] | None = None

    def on_loop(self, read: Callable[[], _T]) -> _T:
        """`read()` on the event loop (the key manager's state is the loop's), waited for."""
        loop = self.loop
        if loop is None or _running_in(loop):
            return read()
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(read())
            except BaseException as e:  # handed to the scrape, which answers 500
                done.set_exception(e)

        loop.call_soon_threadsafe(run)
        return done.result(LOOP_WAIT)

    def bind(self, address: tuple[str, int], option: str) -> None:
        """Bind `address` now, without a thread, for `listen` to serve: as root before
        the drop (`larval run --user`). A MetricsError naming `option` if it cannot be."""
        self._close_ahead()
        self._ahead = (address, _bind(address, self.registry, option))

    def listen(self, address: tuple[str, int], option: str) -> None:
        """Serve on `address` (with the socket `bind` bound for it, if any); the one
        served before (if any) is closed once the new one is bound, and stays if it
        cannot be: a MetricsError naming `option` then."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == address:
            server = ahead[1]
        else:
            if ahead is not None:
                ahead[1].server_close()
            server = _bind(address, self.registry, option)
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        self.close()
        self._server, self._thread, self.address = server, thread, address
        log.info("metrics on http://%s/metrics", show_listen(address))

    @property
    def port(self) -> int | None:
        """The port served on (the one the system chose, for port 0); None: not serving."""
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        self._close_ahead()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.address = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def _close_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].server_close()


class _Server4(ThreadingWSGIServer):
    """A thread per scrape, as `prometheus_client.start_http_server` serves, on IPv4."""

    address_family = socket.AF_INET


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is not worth a line of the log."""


def _bind(address: tuple[str, int], registry: CollectorRegistry, option: str) -> WSGIServer:
    """A server for `registry` listening on `address` (an IP address and a port), not
    serving yet; a MetricsError naming `option` if it cannot listen there."""
    host, port = address
    server_class = _Server6 if ipaddress.ip_address(host).version == 6 else _Server4
    try:
        return make_server(host, port, make_wsgi_app(registry), server_class, _QuietHandler)
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno == errno.EACCES and port < 1024 and os.geteuid() != 0:
            # `larval run --user`: only the address bound at start, as root, can be one.
            why += (f" (a port below 1024 needs root, and this process runs as uid "
                    f"{os.geteuid()}: it binds one only at start, so restart larval)")  # fmt: skip
        raise MetricsError(f"{option} {show_listen(address)}: cannot listen: {why}") from None


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
