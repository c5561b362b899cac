"""An in-memory network: hosts and UDP-like endpoints in one process, with impairments.

`MemoryNetwork` stands in for the kernel's IP and UDP where a test or the embedded demo
needs two (or more) peers without root. An endpoint from `attach(address, port)` has
the receiving and sending shape of `UdpSocket` (`send`, `recv_batch`, `local_address`),
so code written against one runs over the other; `MemoryTun` stands in for the TUN
device on the host side, and `MemoryDataplane` joins both to a `PacketPath`.

Theory of operation, sans-I/O: nothing happens on its own. `send` puts a datagram on
the wire with a due time (the network's clock plus latency and any delay); the caller
moves the clock with `advance(now)`, which hands every datagram that is due to its
endpoint, earliest first and in sending order among equals. `next_due()` says when the
next one is due, as a protocol machine's `get_timer()` would. There are no threads and
no clock reads, so a run is repeatable to the byte.

Impairments act when a datagram is sent, in this order, on every datagram of a link
(a direction between two host addresses) or of the whole network:

* `hold(predicate)` sets aside the datagrams it matches until `release()`: the explicit
  way to make one particular message late, e.g. an IKE message that must arrive after
  the ESP it keyed;
* `drop`: a probability, or a predicate on the datagram;
* `duplicate`: a probability that a second copy follows the first;
* `reorder`: a probability that a datagram is held back until `reorder_depth` later
  datagrams of its link have gone ahead of it (or `reorder_timeout` seconds passed);
* `delay` and `jitter`: seconds added to the due time (jitter uniform in [0, jitter)).

Random choices come from one injectable `random.Random` and are drawn only for
impairments that are switched on, so adding a link's settings never shifts the choices
made for another's. Every impairment counts what it did (`MemoryCounters`), per link
and for the whole network.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

from larval.esp.transforms import BytesLike
from larval.esp.udp_encap import NAT_T_PORT, NON_ESP_MARKER
from larval.net.errors import NetError
from larval.net.handles import Closeable
from larval.net.keepalive import NatKeepalive
from larval.net.udp import UdpCounters
from larval.stack.packet_path import Datagram, PacketPath
from larval.stack.stack import Stack

__all__ = [
    "Address",
    "Impairment",
    "MemoryCounters",
    "MemoryDatagram",
    "MemoryDataplane",
    "MemoryEndpoint",
    "MemoryNetwork",
    "MemoryTun",
]

Address = tuple[str, int]
Predicate = Callable[["MemoryDatagram"], bool]

_EPHEMERAL_PORTS = range(49152, 65536)  # RFC 6335 §6: the dynamic port range


@dataclass(frozen=True)
class MemoryDatagram:
    """One datagram on the in-memory wire: its bytes, its source and destination."""

    data: bytes
    src: Address
    dst: Address
    sent_at: float

    @property
    def link(self) -> tuple[str, str]:
        """The direction it travels: (source host, destination host)."""
        return self.src[0], self.dst[0]


@dataclass
class MemoryCounters:
    """What the network (or one link) did to datagrams; read them, never write them."""

    sent: int = 0
    delivered: int = 0
    dropped: int = 0  # by the `drop` impairment
    duplicated: int = 0  # extra copies made
    reordered: int = 0  # datagrams held back behind later ones
    delayed: int = 0  # datagrams given a `delay` or `jitter`
    held: int = 0  # set aside by `hold`
    released: int = 0  # given back by `release`
    unreachable: int = 0  # no endpoint at the destination (the kernel's ICMP unreachable)
    truncated: int = 0  # longer than the receiver's `recv_batch(max_bytes)`

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Impairment:
    """What a link (or the whole network) does to the datagrams that cross it.

    `drop` is a probability in [0, 1] or a predicate on the datagram; `duplicate` and
    `reorder` are probabilities; `delay` and `jitter` are seconds.
    """

    drop: float | Predicate = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_depth: int = 1  # later datagrams that overtake a reordered one
    reorder_timeout: float = 1.0  # seconds after which a reordered datagram goes anyway
    counters: MemoryCounters = field(default_factory=MemoryCounters)

    def __post_init__(self) -> None:
        for name in ("duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} probability {value} outside [0, 1]")
        if not callable(self.drop) and not 0.0 <= self.drop <= 1.0:
            raise ValueError(f"drop probability {self.drop} outside [0, 1]")
        if self.delay < 0 or self.jitter < 0 or self.reorder_timeout < 0:
            raise ValueError("delay, jitter and reorder_timeout are seconds, not negative")
        if self.reorder_depth < 1:
            raise ValueError(f"reorder_depth {self.reorder_depth}: at least 1")


@dataclass
class _HoldBack:
    """A reordered datagram waiting for `remaining` later ones, or for `deadline`."""

    datagram: MemoryDatagram
    due: float  # when it would have arrived in order
    remaining: int
    deadline: float


@dataclass
class _Hold:
    predicate: Predicate
    limit: int | None  # how many more datagrams to set aside; None: no limit


class MemoryEndpoint(Closeable):
    """A bound endpoint of a `MemoryNetwork`, shaped like `UdpSocket`."""

    def __init__(self, network: MemoryNetwork, address: Address, name: str | None) -> None:
        self.network = network
        self.name = name or f"{address[0]}:{address[1]}"
        self.counters = UdpCounters()
        self._address = address
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._closed = False

    @property
    def local_address(self) -> Address:
        return self._address

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: BytesLike, addr: Address) -> None:
        """Put one datagram for `addr` on the network; it arrives on a later `advance`."""
        if self._closed:
            raise NetError(f"memory endpoint {self.name}: send on a closed endpoint")
        self.network._send(bytes(data), self._address, (addr[0], addr[1]))
        self.counters.datagrams_sent += 1

    def send_segments(self, segments: Sequence[BytesLike], addr: Address) -> None:
        """Each of `segments` as its own datagram, as `UdpSocket.send_segments`."""
        for segment in segments:
            self.send(segment, addr)

    def recv_batch(self, max_bytes: int = 65536) -> list[tuple[bytes, Address]]:
        """Every datagram delivered so far, oldest first; an empty list when none is
        queued (never blocks). Datagrams longer than `max_bytes` are dropped and counted,
        as `UdpSocket` does with ones cut short by its buffer."""
        out: list[tuple[bytes, Address]] = []
        queue = self._queue
        while queue:
            data, sender = queue.popleft()
            if len(data) > max_bytes:
                self.counters.truncated += 1
                self.network.counters.truncated += 1
                continue
            out.append((data, sender))
        self.counters.datagrams_received += len(out)
        return out

    def pending(self) -> int:
        """How many delivered datagrams wait for `recv_batch`."""
        return len(self._queue)

    def _deliver(self, data: bytes, sender: Address) -> None:
        self._queue.append((data, sender))

    def close(self) -> None:
        """Detach from the network; queued datagrams are discarded."""
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self.network._detach(self._address)

    def __repr__(self) -> str:
        return f"MemoryEndpoint({self.name!r}, {self._address!r})"


class MemoryNetwork:
    """Endpoints keyed by (address, port), a clock moved by the caller, impairments."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        latency: float = 0.0,
        now: float = 0.0,
        tap: Callable[[str, MemoryDatagram], None] | None = None,
    ) -> None:
        """`latency`: seconds every datagram takes; `now`: the clock's start; `tap`:
        called with ("sent" | "dropped" | "held" | "delivered" | "unreachable", datagram)
        for every datagram event, for tracing (the demo's ladder)."""
        if latency < 0:
            raise ValueError(f"latency {latency} is negative")
        self.rng = rng if rng is not None else random.Random(0)
        self.latency = latency
        self.now = now
        self.tap = tap
        self.counters = MemoryCounters()
        self.impairment: Impairment | None = None
        self._links: dict[tuple[str, str], Impairment] = {}
        self._endpoints: dict[Address, MemoryEndpoint] = {}
        self._names: dict[str, str] = {}
        # (due, order, datagram): `order` keeps sending order among equal due times.
        self._queue: list[tuple[float, int, MemoryDatagram]] = []
        self._order = itertools.count()
        self._holdbacks: dict[tuple[str, str], list[_HoldBack]] = {}
        self._holds: list[_Hold] = []
        self._held: list[MemoryDatagram] = []

    # -- hosts and endpoints ------------------------------------------------------------

    def attach(self, address: str, port: int, *, name: str | None = None) -> MemoryEndpoint:
        """Bind an endpoint to `address`:`port` (port 0: a free one), like `UdpSocket.bind`.

        `name` labels the host at `address` in traces and reprs.
        """
        try:
            host = str(ipaddress.ip_address(address))  # one spelling per address
        except ValueError as e:
            raise NetError(f"memory network: {address!r} is not an IP address") from e
        if port == 0:
            port = next((p for p in _EPHEMERAL_PORTS if (host, p) not in self._endpoints), -1)
            if port < 0:
                raise NetError(f"memory network: no free port on {host}")
        elif not 0 < port < 65536:
            raise NetError(f"memory network: port {port} outside 1..65535")
        key = (host, port)
        if key in self._endpoints:
            raise NetError(f"UDP {host} port {port} is already in use by another endpoint")
        if name is not None:
            self._names[host] = name
        endpoint = MemoryEndpoint(self, key, f"{name}:{port}" if name else None)
        self._endpoints[key] = endpoint
        return endpoint

    def _detach(self, address: Address) -> None:
        self._endpoints.pop(address, None)

    def endpoint(self, address: str, port: int) -> MemoryEndpoint | None:
        return self._endpoints.get((str(ipaddress.ip_address(address)), port))

    def name_of(self, address: str) -> str:
        """The host name given at `attach`, or the address itself."""
        return self._names.get(address, address)

    # -- impairments --------------------------------------------------------------------

    def impair(
        self,
        src: str | None = None,
        dst: str | None = None,
        *,
        both_ways: bool = False,
        drop: float | Predicate = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_depth: int = 1,
        reorder_timeout: float = 1.0,
    ) -> Impairment:
        """Impair the link from host `src` to host `dst` (and back, with `both_ways`),
        or every link when both are None. A link's own settings replace the network's;
        calling again replaces the earlier settings. Returns the `Impairment`, whose
        `counters` count what it did (both directions share one with `both_ways`)."""
        imp = Impairment(
            drop=drop, delay=delay, jitter=jitter, duplicate=duplicate, reorder=reorder,
            reorder_depth=reorder_depth, reorder_timeout=reorder_timeout,
        )  # fmt: skip
        if src is None and dst is None:
            self.impairment = imp
            return imp
        if src is None or dst is None:
            raise ValueError("a link needs both src and dst (or neither, for every link)")
        a, b = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
        self._links[(a, b)] = imp
        if both_ways:
            self._links[(b, a)] = imp
        return imp

    def clear_impairments(self) -> None:
        """A perfect network again (holds and held datagrams are kept)."""
        self.impairment = None
        self._links.clear()

    def hold(self, predicate: Predicate, *, limit: int | None = None) -> None:
        """Set aside every datagram sent from now on that `predicate` matches (the first
        `limit` of them, if given) until `release`."""
        if limit is not None and limit < 1:
            raise ValueError(f"hold limit {limit}: at least 1")
        self._holds.append(_Hold(predicate, limit))

    def release(self, predicate: Predicate | None = None) -> int:
        """Put the held datagrams (those `predicate` matches, or all) back on the wire,
        due now: they arrive after whatever is already due. Stops holding when all are
        released. Returns how many were released."""
        if predicate is None:
            out, self._held = self._held, []
            self._holds.clear()
        else:
            out = [d for d in self._held if predicate(d)]
            self._held = [d for d in self._held if not predicate(d)]
        for d in out:
            self._count(d, "released")
            self._enqueue(d, self.now)
        return len(out)

    @property
    def held(self) -> list[MemoryDatagram]:
        """The datagrams set aside by `hold`, in sending order."""
        return list(self._held)

    def _impairment(self, link: tuple[str, str]) -> Impairment | None:
        return self._links.get(link, self.impairment)

    def _count(self, d: MemoryDatagram, name: str, n: int = 1) -> None:
        setattr(self.counters, name, getattr(self.counters, name) + n)
        imp = self._impairment(d.link)
        if imp is not None:
            setattr(imp.counters, name, getattr(imp.counters, name) + n)

    # -- the wire -----------------------------------------------------------------------

    def _send(self, data: bytes, src: Address, dst: Address) -> None:
        host = str(ipaddress.ip_address(dst[0]))
        d = MemoryDatagram(data, src, (host, dst[1]), self.now)
        self._count(d, "sent")
        self._trace("sent", d)
        for hold in self._holds:
            if hold.predicate(d):
                if hold.limit is not None:
                    hold.limit -= 1
                    if hold.limit == 0:
                        self._holds.remove(hold)
                self._held.append(d)
                self._count(d, "held")
                self._trace("held", d)
                return
        imp = self._impairment(d.link)
        if imp is None:
            self._enqueue(d, self.now + self.latency)
            self._overtaken(d.link)
            return
        rng = self.rng
        if imp.drop(d) if callable(imp.drop) else _chance(rng, imp.drop):
            self._count(d, "dropped")
            self._trace("dropped", d)
            return
        copies = 2 if _chance(rng, imp.duplicate) else 1
        if copies == 2:
            self._count(d, "duplicated")
        due = self.now + self.latency
        if imp.delay or imp.jitter:
            due += imp.delay + (rng.random() * imp.jitter if imp.jitter else 0.0)
            self._count(d, "delayed", copies)
        if _chance(rng, imp.reorder):
            # Held back behind later datagrams of this link; its copy (if any) too.
            self._count(d, "reordered")
            backs = self._holdbacks.setdefault(d.link, [])
            deadline = self.now + imp.reorder_timeout
            backs.extend(_HoldBack(d, due, imp.reorder_depth, deadline) for _ in range(copies))
            return
        for _ in range(copies):
            self._enqueue(d, due)
        self._overtaken(d.link, due)

    def _overtaken(self, link: tuple[str, str], due: float | None = None) -> None:
        """A datagram of `link` went ahead: held-back ones that waited for it follow it."""
        backs = self._holdbacks.get(link)
        if not backs:
            return
        at = self.now + self.latency if due is None else due
        waiting = []
        for back in backs:
            back.remaining -= 1
            if back.remaining <= 0:
                self._enqueue(back.datagram, max(at, back.due))
            else:
                waiting.append(back)
        self._holdbacks[link] = waiting

    def _enqueue(self, d: MemoryDatagram, due: float) -> None:
        heapq.heappush(self._queue, (due, next(self._order), d))

    def _trace(self, event: str, d: MemoryDatagram) -> None:
        if self.tap is not None:
            self.tap(event, d)

    def next_due(self) -> float | None:
        """When the next datagram is due (or a held-back one times out); None if idle.

        Datagrams set aside by `hold` wait for `release` and have no due time."""
        times = [self._queue[0][0]] if self._queue else []
        times.extend(max(b.deadline, b.due) for backs in self._holdbacks.values() for b in backs)
        return min(times) if times else None

    def in_flight(self) -> int:
        """Datagrams on the wire or held back for reordering (not those set aside)."""
        return len(self._queue) + sum(len(b) for b in self._holdbacks.values())

    def advance(self, now: float) -> int:
        """Move the clock to `now` and deliver every datagram due by then; how many."""
        if now < self.now:
            raise ValueError(f"time runs forward: {now} < {self.now}")
        self.now = now
        for link, backs in self._holdbacks.items():
            late = [b for b in backs if b.deadline <= now]
            if late:
                self._holdbacks[link] = [b for b in backs if b.deadline > now]
                for b in late:
                    self._enqueue(b.datagram, max(b.deadline, b.due))
        delivered = 0
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, d = heapq.heappop(queue)
            endpoint = self._endpoints.get(d.dst)
            if endpoint is None:
                self._count(d, "unreachable")
                self._trace("unreachable", d)
                continue
            endpoint._deliver(d.data, d.src)
            self._count(d, "delivered")
            self._trace("delivered", d)
            delivered += 1
        return delivered

    def run(self, until: float | None = None) -> Iterator[float]:
        """Advance from due time to due time, yielding each (until nothing is due, or
        past `until`), so the caller can let endpoints answer between steps."""
        while True:
            due = self.next_due()
            if due is None or (until is not None and due > until):
                return
            self.advance(max(due, self.now))
            yield self.now

    def __repr__(self) -> str:
        return (
            f"MemoryNetwork(endpoints={len(self._endpoints)}, now={self.now}, "
            f"in_flight={self.in_flight()}, held={len(self._held)})"
        )


def _chance(rng: random.Random, probability: float) -> bool:
    """True with `probability`; draws nothing when it is zero (see the module notes)."""
    return probability > 0.0 and rng.random() < probability


class MemoryTun:
    """The host side, like a TUN device: inject cleartext packets that the host sends,
    collect the ones written to it (delivered to the host)."""

    vnet_hdr = False  # whole IP packets, no virtio_net_hdr in front

    def __init__(self, name: str = "mem0") -> None:
        self.name = name
        self.written: list[bytes] = []
        self._outgoing: deque[bytes] = deque()

    def inject(self, packet: bytes) -> None:
        """A packet from the host's stack, to be read by the dataplane."""
        self._outgoing.append(bytes(packet))

    def read(self) -> bytes:
        """The next injected packet; `BlockingIOError` when none, as a non-blocking TUN."""
        if not self._outgoing:
            raise BlockingIOError("no packet injected")
        return self._outgoing.popleft()

    def read_batch(self) -> list[bytes]:
        """Every injected packet not read yet, oldest first."""
        out = list(self._outgoing)
        self._outgoing.clear()
        return out

    def write(self, packet: bytes) -> None:
        """A packet for the host (decrypted cleartext)."""
        self.written.append(bytes(packet))

    def take(self) -> list[bytes]:
        """The packets written so far, and forget them."""
        out, self.written = self.written, []
        return out

    def __repr__(self) -> str:
        return f"MemoryTun({self.name!r}, queued={len(self._outgoing)})"


class MemoryDataplane:
    """A `PacketPath` between a `MemoryTun` and a `MemoryEndpoint`, stepped by the caller:
    the in-memory counterpart of the threaded `Dataplane`.

    `step(now)` reads every injected packet through the outbound path, then every
    received datagram through the inbound path (UDP 4500, RFC 3948), then sends the NAT
    keepalives that are due to `keepalive_peers` (RFC 3948 §2.3).
    """

    def __init__(
        self,
        stack: Stack,
        tun: MemoryTun,
        endpoint: MemoryEndpoint,
        *,
        on_ike: Callable[[bytes, bytes, int], None] | None = None,
        keepalive: NatKeepalive | None = None,
    ) -> None:
        self.stack = stack
        self.tun = tun
        self.endpoint = endpoint
        self.local = ipaddress.ip_address(endpoint.local_address[0]).packed
        self.keepalive = keepalive
        self.keepalive_peers: set[tuple[bytes, int]] = set()
        self.path = PacketPath(stack, send=self._send, deliver=tun.write, on_ike=on_ike)
        self._now = 0.0

    def _send(self, datagram: Datagram) -> None:
        host = str(ipaddress.ip_address(datagram.dst))
        self.endpoint.send(datagram.payload, (host, datagram.port))
        if self.keepalive is not None:
            self.keepalive.note_sent((datagram.dst, datagram.port), self._now)

    def send_ike(self, message: bytes, peer: bytes, port: int = NAT_T_PORT) -> None:
        """An IKE message for `peer`; on port 4500 behind the Non-ESP Marker (RFC 3948
        §2.2), the key manager's way out through this endpoint."""
        self._send(Datagram(NON_ESP_MARKER + message, peer, port))

    def step(self, now: float) -> None:
        self._now = now
        for packet in self.tun.read_batch():
            self.path.outbound(packet, now)
        for payload, (host, port) in self.endpoint.recv_batch():
            self.path.inbound_udp(payload, self.local, ipaddress.ip_address(host).packed,
                                  port, now)  # fmt: skip
        if self.keepalive is not None:
            for d in self.keepalive.due(now, self.keepalive_peers):
                self.endpoint.send(d.payload, (str(ipaddress.ip_address(d.dst)), d.port))
