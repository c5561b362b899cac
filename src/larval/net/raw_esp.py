"""Plain ESP (IP protocol 50, RFC 4303) on a raw socket, without UDP encapsulation.

Where the peer is not behind a NAT, ESP may travel directly in IP (RFC 4303 §3, the
protocol number from RFC 4303 §2 / IANA). A raw socket of protocol 50 sends ESP packets
for which the kernel writes the IP header, and receives a copy of every protocol 50
packet for the bound address. That needs CAP_NET_RAW; it works on kernels without the
ESP module (no xfrm state matches, the raw socket is the only consumer and the kernel
sends no ICMP protocol unreachable, since a raw socket took the packet).

Receiving, Linux hands raw IPv4 sockets the whole datagram, IPv4 header included (raw(7));
raw IPv6 sockets get the payload only (RFC 3542 §3). `recv_batch` returns the ESP bytes
either way, after the kernel's reassembly of fragments.
"""

from __future__ import annotations

import errno
import select
import socket
from dataclasses import dataclass

from larval.esp.ip import IPPROTO_ESP
from larval.esp.transforms import BytesLike
from larval.net.errors import NetError
from larval.net.handles import BoundSocket

__all__ = ["RawEspCounters", "RawEspSocket"]

Address = tuple[str, int]

BATCH = 64  # receives drained after the first, per `recv_batch`
_ESP_MIN = 8  # SPI and Sequence Number (RFC 4303 §2)


@dataclass
class RawEspCounters:
    """What the socket has done; read them, never write them."""

    packets_sent: int = 0
    packets_received: int = 0
    malformed: int = 0  # IPv4 datagrams whose header length does not fit, or short ESP
    truncated: int = 0  # datagrams cut short by the receive buffer
    refused: int = 0  # errors queued by earlier ICMP reports, absorbed


class RawEspSocket(BoundSocket):
    """A raw IP socket for protocol 50 bound to one local address."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.counters = RawEspCounters()
        self._buffer = bytearray()

    @classmethod
    def bind(cls, address: str) -> RawEspSocket:
        """Open a raw ESP socket receiving what is sent to `address` (IPv4 or IPv6)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
        except PermissionError as e:
            raise NetError("raw ESP socket (IP protocol 50): needs root or CAP_NET_RAW") from e
        except OSError as e:
            raise NetError(f"raw ESP socket (IP protocol 50): {e.strerror}") from e
        try:
            sock.bind((address, 0))
        except OSError as e:
            sock.close()
            raise NetError(_bind_message(address, e)) from e
        return cls(sock)

    def send(self, esp: BytesLike, dst_address: str) -> None:
        """Send one ESP packet to `dst_address`; the kernel adds the IP header."""
        for attempt in (0, 1):
            try:
                self.sock.sendto(esp, (dst_address, 0))
            except ConnectionRefusedError:
                # An error queued by an earlier ICMP report; this packet was not sent.
                self.counters.refused += 1
                if attempt:
                    return
                continue
            except BlockingIOError:
                raise
            except OSError as e:
                raise NetError(f"ESP send to {dst_address}: {e.strerror}") from e
            self.counters.packets_sent += 1
            return

    def recv_batch(self, max_bytes: int = 65536) -> list[tuple[bytes, Address]]:
        """Block for the next ESP packet (as the socket's timeout allows), then take the
        ones already queued, up to a batch; each with its sender as (host, 0).

        Packets that are not ESP (too short, a broken IPv4 header) or cut short by the
        buffer are dropped and counted; the list may then be empty.
        """
        if len(self._buffer) != max_bytes:
            self._buffer = bytearray(max_bytes)
        out: list[tuple[bytes, Address]] = []
        poller: select.poll | None = None
        for _ in range(BATCH):
            if poller is not None and not poller.poll(0):
                break  # drained what was queued
            try:
                received = self._recv()
            except (BlockingIOError, TimeoutError):
                if poller is not None:
                    break
                raise
            if poller is None:
                # A socket timeout makes Python wait before each receive, MSG_DONTWAIT
                # or not: ask poll() whether more is queued instead.
                poller = select.poll()
                poller.register(self.sock.fileno(), select.POLLIN)
            if received is not None:
                out.append(received)
        self.counters.packets_received += len(out)
        return out

    def _recv(self) -> tuple[bytes, Address] | None:
        buffer = self._buffer
        while True:
            try:
                nbytes, _, msg_flags, addr = self.sock.recvmsg_into([buffer])
            except ConnectionRefusedError:
                self.counters.refused += 1
                continue
            except (BlockingIOError, TimeoutError):
                raise
            except OSError as e:
                raise NetError(f"ESP receive: {e.strerror}") from e
            break
        if msg_flags & socket.MSG_TRUNC:
            self.counters.truncated += 1
            return None
        start = 0
        if self.family == socket.AF_INET:
            # raw(7): an IPv4 raw socket receives the IP header too; skip IHL words.
            if nbytes < 20 or buffer[0] >> 4 != 4 or buffer[0] & 0x0F < 5:
                self.counters.malformed += 1
                return None
            start = (buffer[0] & 0x0F) * 4
        if nbytes - start < _ESP_MIN:
            self.counters.malformed += 1
            return None
        return bytes(buffer[start:nbytes]), (addr[0], 0)

    def __repr__(self) -> str:
        return f"RawEspSocket({self.local_address[0]!r})"


def _bind_message(address: str, e: OSError) -> str:
    where = f"raw ESP socket on {address}"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {address} is not an address of this host"
    if e.errno == errno.EINVAL:
        return f"{where}: {address} is not a usable local address"
    return f"{where}: {e.strerror}"
