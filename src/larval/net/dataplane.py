"""The dataplane's I/O: a thread per direction between the TUN device and UDP port 4500.

Not a per-packet asyncio callback: each direction is a blocking loop that drains what
the kernel has ready. Outbound, it reads the TUN until it would block (up to a batch),
runs each packet through the packet path, and sends the ESP datagrams of the batch to
each peer with UDP GSO (one `sendmsg` for many segments) where the kernel allows it.
Inbound, it receives with UDP GRO (several datagrams per call) and writes the cleartext
packets to the TUN. Packets released from held queues are sent or written at once from
whichever thread released them.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import threading
import time
from collections import defaultdict

from larval.net.errors import NetError
from larval.net.tun import TunDevice
from larval.net.udp import UdpSocket
from larval.stack.packet_path import Datagram, PacketPath
from larval.stack.stack import Stack

log = logging.getLogger("larval.dataplane")

BATCH = 64  # packets read from the TUN before the batch is sent
POLL_MS = 200  # how often a loop looks at the stop flag


class Dataplane:
    """Runs the packet path between `tun` and `udp` for `stack`."""

    def __init__(self, stack: Stack, tun: TunDevice, udp: UdpSocket) -> None:
        self.stack = stack
        self.tun = tun
        self.udp = udp
        host = udp.local_address[0]
        self.local = ipaddress.ip_address(host).packed
        self._batch = threading.local()
        self.path = PacketPath(stack, send=self._send, deliver=self._deliver)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.write_errors = 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        os.set_blocking(self.tun.fd, False)
        self.udp.settimeout(POLL_MS / 1000)
        for name, target in (("outbound", self._outbound_loop), ("inbound", self._inbound_loop)):
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

    def _send_now(self, dst: bytes, port: int, payloads: list[bytes]) -> None:
        addr = (str(ipaddress.ip_address(dst)), port)
        try:
            if len(payloads) == 1:
                self.udp.send(payloads[0], addr)
            else:
                self.udp.send_segments(payloads, addr)
        except NetError as e:
            log.debug("send to %s failed: %s", addr, e)

    def _deliver(self, packet: bytes) -> None:
        try:
            self.tun.write(packet)
        except (NetError, OSError):
            self.write_errors += 1

    # -- the loops ----------------------------------------------------------------------

    def _outbound_loop(self) -> None:
        poller = select.poll()
        poller.register(self.tun.fd, select.POLLIN)
        read, path, batch = os.read, self.path, self._batch
        fd = self.tun.fd
        while not self._stop.is_set():
            if not poller.poll(POLL_MS):
                continue
            now = time.time()
            pending: dict[tuple[bytes, int], list[bytes]] = defaultdict(list)
            batch.pending = pending
            try:
                for _ in range(BATCH):
                    try:
                        packet = read(fd, 65535)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        if e.errno == errno.EBADF:
                            return
                        raise
                    path.outbound(packet, now)
            finally:
                batch.pending = None
            for (dst, port), payloads in pending.items():
                self._send_now(dst, port, payloads)

    def _inbound_loop(self) -> None:
        path, local = self.path, self.local
        while not self._stop.is_set():
            try:
                batch = self.udp.recv_batch()
            except (TimeoutError, BlockingIOError):
                continue
            except NetError as e:
                if self._stop.is_set():
                    return
                log.warning("UDP receive failed: %s", e)
                continue
            now = time.time()
            for payload, (host, port) in batch:
                path.inbound_udp(payload, local, ipaddress.ip_address(host).packed, port, now)
