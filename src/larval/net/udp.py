"""The UDP socket of ESP-in-UDP (RFC 3948, port 4500) and IKE (RFC 7296 §2.23), batched.

Per-datagram system calls cost more than the ESP transform itself, so the socket uses
the kernel's UDP segmentation offloads (Documentation/networking/segmentation-offloads.rst,
"UDP Fragmentation Offload"/GSO and the UDP GRO socket option):

* `send_segments` hands the kernel up to 64 datagrams of one size (a shorter last one
  allowed) in one `sendmsg` with a `UDP_SEGMENT` control message; the kernel cuts them
  apart (in software, or in the NIC). Kernels or routes that refuse (EIO, EINVAL,
  ENOPROTOOPT) are remembered and sent one `sendto` per datagram from then on.
* `recv_batch` with `UDP_GRO` gets several datagrams of one flow, back to back in one
  buffer, and their size in a `UDP_GRO` control message; it splits them again. Without
  GRO (or when the kernel did not merge) a call brings one datagram. `recv_into` leaves
  them back to back in the caller's buffer, and says their size and number: the
  dataplane gathers several receives in one buffer and hands it on as it is.

An ICMP port unreachable from an earlier send comes back as ECONNREFUSED on a later call
(RFC 1122 §4.1.3.3); it is counted and the call goes on.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from larval.esp.helper import compiled
from larval.esp.transforms import BytesLike
from larval.net.errors import NetError
from larval.net.handles import BoundSocket

__all__ = [
    "RX_ROOM",
    "SOL_UDP",
    "UDP_GRO",
    "UDP_MAX_SEGMENTS",
    "UDP_SEGMENT",
    "UdpCounters",
    "UdpSocket",
]

# include/uapi/linux/udp.h
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
# The kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9; 64 is accepted everywhere.
UDP_MAX_SEGMENTS = 64
#: The room one receive needs: a GRO batch is up to 64 KB.
RX_ROOM = 65536
_NAME_ROOM = 128  # sizeof(struct sockaddr_storage)
# One GSO send is one UDP datagram before segmentation: its length field is 16 bits.
_MAX_GSO_PAYLOAD = {socket.AF_INET: 65535 - 20 - 8, socket.AF_INET6: 65535 - 8}

_GSO_SIZE = struct.Struct("=H")  # UDP_SEGMENT takes a native u16
_GRO_SIZE = struct.Struct("=i")  # UDP_GRO reports a native int
_SOCKADDR_FAMILY = struct.Struct("=H")  # sa_family_t
_PORT = struct.Struct("!H")
# Errors that mean "this kernel or route cannot do UDP GSO" (udp_send_skb()).
_GSO_UNSUPPORTED = frozenset((errno.EIO, errno.EINVAL, errno.ENOPROTOOPT))

Address = tuple[str, int]


@dataclass
class UdpCounters:
    """What the socket has done; read them, never write them."""

    datagrams_sent: int = 0
    datagrams_received: int = 0
    gso_calls: int = 0  # sendmsg calls with UDP_SEGMENT that the kernel took
    gro_batches: int = 0  # receives that brought more than one datagram
    fallbacks: int = 0  # times GSO was turned off because the kernel refused it
    refused: int = 0  # ECONNREFUSED reports (earlier ICMP port unreachable) absorbed
    truncated: int = 0  # datagrams dropped because they did not fit the receive buffer


class UdpSocket(BoundSocket):
    """A bound UDP socket with batched send (GSO) and receive (GRO)."""

    def __init__(self, sock: socket.socket, *, gro: bool) -> None:
        super().__init__(sock)
        self.gro = gro
        self.gso = True
        self.counters = UdpCounters()
        self._max_gso = _MAX_GSO_PAYLOAD[self.family]
        self._ancsize = socket.CMSG_SPACE(_GRO_SIZE.size) if gro else 0
        self._buffer = bytearray()
        self._mmsg_arrays: tuple[Any, ...] | None = None  # `_recv_mmsg`'s, made once

    @classmethod
    def bind(cls, address: str, port: int, *, gro: bool = True) -> UdpSocket:
        """Bind a UDP socket to `address`:`port` (port 0: any free port).

        With `gro`, ask for UDP GRO; a kernel without it gives a socket that receives
        one datagram per call (`.gro` is then False).
        """
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError as e:
            sock.close()
            raise NetError(_bind_message(address, port, e)) from e
        if gro:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            except OSError:
                gro = False  # Linux < 5.0: no UDP GRO; every receive is one datagram
        return cls(sock, gro=gro)

    def send(self, data: BytesLike, addr: Address) -> None:
        """Send one datagram to `addr`."""
        self._sendto(data, addr)

    def send_segments(self, segments: Sequence[BytesLike], addr: Address) -> None:
        """Send each of `segments` as its own datagram to `addr`, batching runs of equal
        size (a shorter last one allowed) into single GSO sends.

        With the compiled helper, the GSO sends and lone datagrams of the whole batch
        are handed to the kernel by sendmmsg, up to 64 at a time; from a send it
        refuses on, the batch goes on here one send per call (which counts, retries or
        falls back as it always has)."""
        if self.gso and len(segments) > 2:
            module = compiled()
            if module is not None:
                done = self._send_mmsg(module, segments, addr)
                if done == len(segments):
                    return
                segments = segments[done:]
        n = len(segments)
        i = 0
        while i < n:
            size = len(segments[i])
            j = i + 1
            if self.gso and size:
                limit = i + min(UDP_MAX_SEGMENTS, self._max_gso // size)
                while j < n and j < limit:
                    length = len(segments[j])
                    if length > size:
                        break
                    j += 1
                    if length < size:
                        break  # a shorter datagram ends the batch (udp_gso_segment)
            if j - i == 1:
                self._sendto(segments[i], addr)
            else:
                self._send_gso(segments[i:j], size, addr)
            i = j

    def _send_mmsg(self, module: Any, segments: Sequence[BytesLike], addr: Address) -> int:
        """`send_segments` by the compiled helper's sendmmsg; the number of datagrams
        the kernel took (the others are left to the caller)."""
        try:
            name = _sockaddr(self.family, addr[0], addr[1])
        except (OSError, ValueError):
            return 0  # a scoped IPv6 address, say: the Python path sends it
        ffi, lib = module.ffi, module.lib
        joined = b"".join(segments)
        done = ffi.new("size_t *")
        gso_msgs = ffi.new("size_t *")
        err = lib.larval_udp_send_gso(
            self.sock.fileno(), ffi.from_buffer(joined), len(segments),
            ffi.new("size_t[]", [len(s) for s in segments]), ffi.from_buffer(name), len(name),
            self._max_gso, done, gso_msgs,
        )  # fmt: skip
        self.counters.gso_calls += gso_msgs[0]
        self.counters.datagrams_sent += done[0]
        if err == errno.ECONNREFUSED:
            self.counters.refused += 1  # an earlier datagram's; the caller sends this one
        return int(done[0])

    def _send_gso(self, batch: Sequence[BytesLike], size: int, addr: Address) -> None:
        control = [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(size))]
        for attempt in (0, 1):
            try:
                self.sock.sendmsg(batch, control, 0, addr)
            except ConnectionRefusedError:
                # The error belonged to an earlier datagram; this one was not sent.
                self.counters.refused += 1
                if attempt:
                    return
                continue
            except BlockingIOError:
                raise
            except OSError as e:
                if e.errno in _GSO_UNSUPPORTED:
                    self.gso = False
                    self.counters.fallbacks += 1
                elif e.errno != errno.EMSGSIZE:
                    raise NetError(f"UDP send to {addr[0]}:{addr[1]}: {e.strerror}") from e
                # EMSGSIZE: the segments do not fit the route's MTU; let the kernel
                # fragment them one by one this time.
                for segment in batch:
                    self._sendto(segment, addr)
                return
            self.counters.gso_calls += 1
            self.counters.datagrams_sent += len(batch)
            return

    def _sendto(self, data: BytesLike, addr: Address) -> None:
        for attempt in (0, 1):
            try:
                self.sock.sendto(data, addr)
            except ConnectionRefusedError:
                self.counters.refused += 1
                if attempt:
                    return
                continue
            except BlockingIOError:
                raise
            except OSError as e:
                raise NetError(f"UDP send to {addr[0]}:{addr[1]}: {e.strerror}") from e
            self.counters.datagrams_sent += 1
            return

    def recv_batch(self, max_bytes: int = 65536) -> list[tuple[bytes, Address]]:
        """Block for the next datagram, or the next GRO batch of datagrams from one
        sender, and return each with its sender's (host, port).

        `max_bytes` bounds one receive; with GRO it should stay at 65536, since a batch
        may hold up to 64 KB. Datagrams cut short by the buffer are dropped and counted.
        """
        if len(self._buffer) != max_bytes:
            self._buffer = bytearray(max_bytes)
        with memoryview(self._buffer) as view:
            nbytes, size, count, sender = self.recv_into(view)
            if count <= 1:
                return [(bytes(view[:nbytes]), sender)] if count else []
            return [
                (bytes(view[start : min(start + size, nbytes)]), sender)
                for start in range(0, nbytes, size)
            ]

    def recv_into(self, view: memoryview) -> tuple[int, int, int, Address]:
        """`recv_batch` into `view`, the datagrams left there back to back: (bytes
        received, the segment size, the number of datagrams, the sender).

        Every datagram but the last is `size` bytes; the last may be shorter. With GRO,
        `view` should have room for 65536 bytes. A single datagram cut short by `view`
        gives a count of 0; a GRO batch cut short keeps the whole datagrams before the
        cut. Both are counted as `recv_batch` counts them."""
        while True:
            try:
                nbytes, ancdata, flags, addr = self.sock.recvmsg_into([view], self._ancsize)
            except ConnectionRefusedError:
                self.counters.refused += 1
                continue
            except (BlockingIOError, TimeoutError):
                raise
            except OSError as e:
                raise NetError(f"UDP receive: {e.strerror}") from e
            break
        sender: Address = (addr[0], addr[1])
        size = nbytes
        for level, kind, data in ancdata:
            if level == SOL_UDP and kind == UDP_GRO and len(data) >= _GRO_SIZE.size:
                size = _GRO_SIZE.unpack_from(data)[0]
        if flags & socket.MSG_TRUNC:
            self.counters.truncated += 1
            if size >= nbytes:
                return 0, 0, 0, sender  # one datagram, cut short
            nbytes -= nbytes % size  # a GRO batch: keep the whole datagrams before the cut
        if size >= nbytes or size <= 0:
            self.counters.datagrams_received += 1
            return nbytes, nbytes, 1, sender
        count = -(-nbytes // size)
        self.counters.gro_batches += 1
        self.counters.datagrams_received += count
        return nbytes, size, count, sender

    def recv_ready(self, buffer: memoryview, most: int) -> list[tuple[int, int, int, Address]]:
        """The receives ready now, up to `most` of them, without waiting: what `recv_into`
        would give for each, one after another, their datagrams back to back from the
        start of `buffer`, which needs `RX_ROOM` bytes per receive. [] if none is ready.

        With the compiled helper they come by one recvmmsg (up to 64); otherwise by
        `recv_into` until none is ready (the socket must not block). A receive that
        fails raises `NetError` if it is the first, else ends the receives: what came
        before it is returned (recvmmsg does the same)."""
        module = compiled()
        most = min(most, len(buffer) // RX_ROOM)
        if module is not None:
            return self._recv_mmsg(module, buffer, min(most, UDP_MAX_SEGMENTS))
        got: list[tuple[int, int, int, Address]] = []
        off = 0
        while len(got) < most:
            try:
                received = self.recv_into(buffer[off : off + RX_ROOM])
            except (BlockingIOError, TimeoutError):
                break
            except NetError:
                if got:
                    break  # what came before it is handed on
                raise
            got.append(received)
            off += received[0]
        return got

    def _recv_mmsg(
        self, module: Any, buffer: memoryview, most: int
    ) -> list[tuple[int, int, int, Address]]:
        ffi, lib = module.ffi, module.lib
        arrays = self._mmsg_arrays
        if arrays is None:
            arrays = self._mmsg_arrays = (
                ffi.new("size_t[]", UDP_MAX_SEGMENTS), ffi.new("size_t[]", UDP_MAX_SEGMENTS),
                ffi.new("size_t[]", UDP_MAX_SEGMENTS),
                ffi.new("unsigned char[]", UDP_MAX_SEGMENTS),
                ffi.new("unsigned char[]", UDP_MAX_SEGMENTS * _NAME_ROOM),
                ffi.new("uint32_t[]", UDP_MAX_SEGMENTS),
            )  # fmt: skip
        kept, seg, count, trunc, names, name_len = arrays
        while True:
            r = lib.larval_udp_recv_many(
                self.sock.fileno(), ffi.from_buffer(buffer), RX_ROOM, most, kept, seg, count,
                trunc, names, _NAME_ROOM, name_len,
            )  # fmt: skip
            if r >= 0:
                break
            if -r in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            if -r == errno.ECONNREFUSED:
                self.counters.refused += 1
                continue
            raise NetError(f"UDP receive: {os.strerror(-r)}")
        got: list[tuple[int, int, int, Address]] = []
        raw = ffi.buffer(names, r * _NAME_ROOM)
        counters = self.counters
        for k in range(r):
            n = count[k]
            if trunc[k]:
                counters.truncated += 1
            if n > 1:
                counters.gro_batches += 1
            counters.datagrams_received += n
            start = k * _NAME_ROOM
            sender = _address(raw[start : start + name_len[k]])
            got.append((kept[k], seg[k], n, sender))
        return got

    def __repr__(self) -> str:
        return f"UdpSocket({self.local_address!r}, gro={self.gro}, gso={self.gso})"


@functools.lru_cache(maxsize=1024)
def _address(name: bytes) -> Address:
    """(host, port) of a `struct sockaddr_in` or `sockaddr_in6` from the compiled receive."""
    family = _SOCKADDR_FAMILY.unpack_from(name)[0]
    port = _PORT.unpack_from(name, 2)[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(family, name[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, name[8:24]), port


@functools.lru_cache(maxsize=1024)
def _sockaddr(family: int, host: str, port: int) -> bytes:
    """The `struct sockaddr_in` or `sockaddr_in6` of (host, port), for the compiled send
    (family in host order, port and address in network order)."""
    packed = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        return _SOCKADDR_FAMILY.pack(family) + _PORT.pack(port) + packed + bytes(8)
    return (_SOCKADDR_FAMILY.pack(family) + _PORT.pack(port) + bytes(4) + packed
            + bytes(4))  # fmt: skip


def _bind_message(address: str, port: int, e: OSError) -> str:
    where = f"UDP {address} port {port}"
    if e.errno == errno.EADDRINUSE:
        return f"{where} is already in use by another socket"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {address} is not an address of this host"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{where}: ports below 1024 need root (CAP_NET_BIND_SERVICE)"
    return f"{where}: {e.strerror}"
