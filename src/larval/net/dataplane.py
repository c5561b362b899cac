"""The dataplane's I/O: a thread per direction between the TUN device and UDP port 4500.

Not a per-packet asyncio callback: each direction is a blocking loop that drains what
the kernel has ready. Outbound, it reads the TUN until it would block (up to a batch),
runs the packets through the packet path as one batch (`outbound_batch`), and sends the
ESP datagrams of the batch to each peer with UDP GSO (one `sendmsg` for many segments)
where the kernel allows it. Inbound, it receives with UDP GRO (several datagrams per
call), hands what one wake-up brought to `inbound_udp_batch`, and writes the cleartext
packets to the TUN. Packets released from held queues are sent or written at once from
whichever thread released them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import ipaddress
import logging
import os
import select
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from larval.esp import helper
from larval.esp.run import EspRun
from larval.esp.transforms import BytesLike
from larval.net.errors import NetError, OffloadError
from larval.net.keepalive import NatKeepalive
from larval.net.offload import (
    ZERO_VIRTIO_HDR,
    PacketRun,
    checksummed_read,
    coalesce_runs,
    plain_read,
    split_read,
)
from larval.net.raw_esp import RawEspSocket
from larval.net.tun import TunDevice
from larval.net.udp import RX_ROOM, UdpSocket
from larval.stack.packet_path import PLAIN_ESP, Datagram, PacketPath, inbound_udp_run
from larval.stack.stack import Stack

log = logging.getLogger("larval.dataplane")

BATCH = 64  # reads from the TUN before the batch is sent; receives from UDP per wake-up
# The inbound loop's receive buffer: room for a wake-up's BATCH receives, each of which
# may be a GRO batch of up to 64 KB (they end back to back at its start).
RX_BYTES = BATCH * RX_ROOM
POLL_MS = 200  # how often a loop looks at the stop flag
SOCKET_BUFFER = 8 << 20  # bytes: a burst of GSO batches must not overflow the socket
# A thread that waits for the GIL waits up to the switch interval (5 ms by default): an
# ACK queued behind a busy receive loop would come that much later and TCP would slow to
# the pace of those delays. The loops release the GIL in every system call anyway.
SWITCH_INTERVAL = 0.0002


class Dataplane:
    """Runs the packet path between `tun` and `udp` for `stack`."""

    def __init__(
        self, stack: Stack, tun: TunDevice, udp: UdpSocket, raw: RawEspSocket | None = None
    ) -> None:
        self.stack = stack
        self.tun = tun
        self.udp = udp
        self.raw = raw  # plain ESP, IP protocol 50, for SAs without UDP encapsulation
        # With IFF_VNET_HDR the TUN hands over TCP super-packets to segment, and takes
        # coalesced ones back (notes/dataplane-performance.md: the largest single gain).
        self.offload = tun.vnet_hdr
        host = udp.local_address[0]
        self.local = ipaddress.ip_address(host).packed
        self._batch = threading.local()
        self._rx = bytearray(RX_BYTES)  # the inbound loop's (`_drain_udp`)
        self.path = PacketPath(
            stack,
            send=self._send,
            deliver=self._deliver,
            plain_esp=raw is not None,
            send_many=self._send_many,
            deliver_many=self._deliver_many,
        )
        self.keepalive = NatKeepalive()
        #: Asked with their number before datagrams leave (ESP, NAT keepalives); False:
        #: they are not sent (a node of an ``[ha]`` group that no longer owns it, which
        #: counts them). None: everything leaves.
        self.may_send: Callable[[int], bool] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.write_errors = 0
        # Batching at work: reads vs packets out of them, packets vs writes back.
        self.tun_reads = 0
        self.tun_read_packets = 0
        self.tun_writes = 0
        self.tun_written_packets = 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)
        os.set_blocking(self.tun.fd, False)
        self.udp.settimeout(0.0)  # non-blocking: the loops wait in poll() and then drain
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                self.udp.sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        loops = [("outbound", self._outbound_loop), ("inbound", self._inbound_loop)]
        if self.raw is not None:
            self.raw.settimeout(0.0)
            loops.append(("inbound-esp", self._raw_inbound_loop))
        for name, target in loops:
            t = threading.Thread(target=target, name=f"larval-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    # -- sinks of the packet path -------------------------------------------------------

    def _send(self, datagram: Datagram) -> None:
        pending: dict[tuple[bytes, int], list[bytes]] | None = getattr(self._batch, "pending", None)
        if pending is not None:  # inside an outbound batch: sent together at its end
            pending[(datagram.dst, datagram.port)].append(datagram.payload)
            return
        self._send_now(datagram.dst, datagram.port, [datagram.payload])

    def _send_many(self, dst: bytes, port: int, payloads: list[bytes]) -> None:
        pending: dict[tuple[bytes, int], list[bytes]] | None = getattr(self._batch, "pending", None)
        if pending is not None:
            pending[(dst, port)].extend(payloads)
            return
        self._send_now(dst, port, payloads)

    def _send_now(self, dst: bytes, port: int, payloads: list[bytes]) -> None:
        if self.may_send is not None and not self.may_send(len(payloads)):
            return
        host = str(ipaddress.ip_address(dst))
        if port == PLAIN_ESP:
            self._send_plain(host, payloads)
            return
        addr = (host, port)
        self.keepalive.note_sent((dst, port), time.time())
        try:
            if len(payloads) == 1:
                self.udp.send(payloads[0], addr)
            else:
                self.udp.send_segments(payloads, addr)
        except NetError as e:
            log.debug("send to %s failed: %s", addr, e)

    def _keepalives(self) -> None:
        """RFC 3948 §2.3: keep a NAT's mapping open when nothing else went out."""
        peers = self.path.keepalive_peers()
        if peers:
            for datagram in self.keepalive.due(time.time(), peers):
                self._send_now(datagram.dst, datagram.port, [datagram.payload])

    def _send_plain(self, host: str, payloads: list[bytes]) -> None:
        if self.raw is None:
            return
        for payload in payloads:
            try:
                self.raw.send(payload, host)
            except (NetError, BlockingIOError) as e:
                log.debug("ESP to %s failed: %s", host, e)

    def _deliver(self, packet: bytes) -> None:
        pending: list[PacketRun] | None = getattr(self._batch, "delivered", None)
        if pending is not None:  # inside an inbound batch: coalesced and written at its end
            pending.append((packet, (0,), (len(packet),)))
            return
        self._write([ZERO_VIRTIO_HDR + packet] if self.offload else [packet])

    def _deliver_many(self, plain: bytes, starts: list[int], lengths: list[int]) -> None:
        """Cleartext packets where they lie in a decrypted run's buffer."""
        pending: list[PacketRun] | None = getattr(self._batch, "delivered", None)
        if pending is not None:
            pending.append((plain, starts, lengths))
            return
        self._write(_writes([(plain, starts, lengths)], self.offload))

    def io_counters(self) -> dict[str, int]:
        return {
            "tun_reads": self.tun_reads,
            "tun_read_packets": self.tun_read_packets,
            "tun_writes": self.tun_writes,
            "tun_written_packets": self.tun_written_packets,
            "tun_write_errors": self.write_errors,
            **{f"udp_{k}": v for k, v in dataclasses.asdict(self.udp.counters).items()},
            **(
                {f"esp_{k}": v for k, v in dataclasses.asdict(self.raw.counters).items()}
                if self.raw is not None
                else {}
            ),
        }

    def _write(self, writes: list[BytesLike]) -> None:
        self.tun_writes += len(writes)
        for data in writes:
            try:
                self.tun.write(data)
            except (NetError, OSError):
                self.write_errors += 1

    # -- the loops ----------------------------------------------------------------------

    def _outbound_loop(self) -> None:
        poller = select.poll()
        poller.register(self.tun.fd, select.POLLIN)
        read, path, batch = os.read, self.path, self._batch
        fd, offload = self.tun.fd, self.offload
        while not self._stop.is_set():
            if not poller.poll(POLL_MS):
                self._keepalives()
                continue
            now = time.time()
            module = helper.compiled()  # once per wake-up: the call reads the environment
            pending: dict[tuple[bytes, int], list[bytes]] = defaultdict(list)
            batch.pending = pending
            packets: list[bytes] = []
            try:
                for _ in range(BATCH):
                    try:
                        data = read(fd, 65546)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        if e.errno == errno.EBADF:
                            return
                        raise
                    self.tun_reads += 1
                    if not offload:
                        packets.append(data)
                        continue
                    plain = plain_read(data) or checksummed_read(data, module)
                    if plain is not None:
                        packets.append(plain)
                        continue
                    try:
                        segments = split_read(data, module)
                    except OffloadError:
                        path.drop("malformed")
                        continue
                    packets.extend(segments)
                self.tun_read_packets += len(packets)
                path.outbound_batch(packets, now)
            finally:
                batch.pending = None
            for (dst, port), payloads in pending.items():
                self._send_now(dst, port, payloads)

    def _inbound_loop(self) -> None:
        self._receive_loop(self.udp, self._drain_udp)

    def _raw_inbound_loop(self) -> None:
        assert self.raw is not None
        self._receive_loop(self.raw, self._drain_raw)

    def _receive_loop(self, sock: UdpSocket | RawEspSocket, drain: Callable[[float], bool]) -> None:
        """Wait for ``sock``, then ``drain(now)`` what is ready; the cleartext it delivers
        is coalesced and written once per wake-up. A drain returns False to end the loop."""
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(POLL_MS):
                continue
            now = time.time()
            delivered: list[PacketRun] = []
            self._batch.delivered = delivered
            try:
                if not drain(now):
                    return
            finally:
                self._batch.delivered = None
            if delivered:
                self.tun_written_packets += sum(len(starts) for _, starts, _ in delivered)
                self._write(_writes(delivered, self.offload))

    def _drain_udp(self, now: float) -> bool:
        """Every datagram ready on the UDP socket, up to a batch of receives: they land
        back to back in one buffer (`UdpSocket.recv_ready`), which goes to the packet
        path as it lies (`inbound_udp_run`)."""
        view = memoryview(self._rx)
        try:
            receives = self.udp.recv_ready(view, BATCH)
        except NetError as e:
            if self._stop.is_set():
                return False
            log.warning("UDP receive failed: %s", e)
            return True
        lengths: list[int] = []
        senders: list[tuple[int, bytes, int]] = []
        off = 0
        for nbytes, size, count, (host, port) in receives:
            if not count:
                continue
            if count > 1:
                lengths.extend([size] * (count - 1))
                lengths.append(nbytes - size * (count - 1))
            else:
                lengths.append(nbytes)
            # A receive (one GRO batch) comes from one sender: its address is packed once.
            senders.append((count, _packed(host), port))
            off += nbytes
        if lengths:
            inbound_udp_run(self.path, EspRun(view[:off], lengths), senders, self.local, now)
        return True

    def _drain_raw(self, now: float) -> bool:
        """Plain ESP from the raw socket: the same path, without the UDP framing."""
        assert self.raw is not None
        try:
            batch = self.raw.recv_batch()
        except (BlockingIOError, TimeoutError):
            return True
        except NetError as e:
            log.warning("ESP receive failed: %s", e)
            return True
        path, local = self.path, self.local
        path.inbound_batch([esp for esp, _ in batch], local, now)
        return True


def _writes(runs: list[PacketRun], offload: bool) -> list[BytesLike]:
    """The TUN writes of the cleartext packets of `runs`: coalesced with offload, else
    each packet alone (a view of its buffer, not a copy)."""
    if offload:
        return coalesce_runs(runs)
    writes: list[BytesLike] = []
    for buf, starts, lengths in runs:
        view = memoryview(buf)
        writes.extend(view[s : s + n] for s, n in zip(starts, lengths, strict=True))
    return writes


@functools.lru_cache(maxsize=1024)
def _packed(host: str) -> bytes:
    return ipaddress.ip_address(host).packed
