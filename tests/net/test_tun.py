"""TunDevice in a fresh network namespace: packets routed into the device are read from
it, packets written to it reach sockets, and with vnet_hdr + TSO a TCP connection
through the device comes out as super-packets that `tcp_segment` splits and
`coalesce` merges back into writes the kernel accepts."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from larval.net.errors import NetError
from larval.net.netns import Netns
from larval.net.offload import (
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_LEN,
    ZERO_VIRTIO_HDR,
    VirtioNetHdr,
    coalesce,
    split_read,
)
from larval.net.tun import TunDevice

from .packets import addr, checksums_ok, ip_layout, rewrite_addresses, tcp_fields, udp_packet

MTU = 1400


@pytest.fixture
def closing(netns: Netns) -> Iterator[contextlib.ExitStack]:
    """Closed before the namespace is deleted, whatever the test did."""
    with contextlib.ExitStack() as stack:
        yield stack


def read_until(tun: TunDevice, wanted: Callable[[bytes], bool], timeout: float = 5) -> bytes:
    """The first packet read from `tun` that is `wanted` (the kernel also sends IPv6
    router solicitations and MLD reports when a link comes up)."""
    while True:
        ready, _, _ = select.select([tun.fd], [], [], timeout)
        if not ready:
            raise AssertionError("nothing wanted came out of the TUN device")
        data = tun.read()
        packet = data[VIRTIO_NET_HDR_LEN:] if tun.vnet_hdr else data
        if wanted(packet):
            return data


def is_ipv4_udp(packet: bytes) -> bool:
    return packet[0] >> 4 == 4 and packet[9] == 17


def test_read_routed_datagram(netns: Netns, closing: contextlib.ExitStack) -> None:
    def setup() -> tuple[TunDevice, socket.socket]:
        tun = closing.enter_context(TunDevice.create("lv0"))
        tun.configure(["192.0.2.1/24"], mtu=MTU, routes=["198.51.100.0/24"])
        return tun, closing.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

    tun, sock = netns.call(setup)
    assert (tun.name, tun.vnet_hdr) == ("lv0", False)
    assert "mtu 1400" in netns.run(["ip", "link", "show", "lv0"])
    assert "qlen 1000" in netns.run(["ip", "link", "show", "lv0"])
    sock.sendto(b"into the tunnel", ("198.51.100.9", 4500))
    packet = read_until(tun, is_ipv4_udp)
    version, ihl, src, dst, proto = ip_layout(packet)
    assert (version, ihl, proto) == (4, 20, 17)
    assert (src, dst) == (addr("192.0.2.1"), addr("198.51.100.9"))
    sport, dport, length, _ = struct.unpack_from(">HHHH", packet, 20)
    assert (sport, dport, length) == (sock.getsockname()[1], 4500, 8 + 15)
    assert packet[28:] == b"into the tunnel"
    assert checksums_ok(packet)  # without offload the kernel finishes every checksum


def test_write_reaches_socket(netns: Netns, closing: contextlib.ExitStack) -> None:
    def setup() -> tuple[TunDevice, socket.socket]:
        tun = closing.enter_context(TunDevice.create("lv0"))
        tun.configure(["192.0.2.1/24"], mtu=MTU, routes=["198.51.100.0/24"])
        sock = closing.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.bind(("192.0.2.1", 7777))
        return tun, sock

    tun, sock = netns.call(setup)
    sock.settimeout(5)
    tun.write(udp_packet("198.51.100.9", "192.0.2.1", 5555, 7777, b"out of the tunnel"))
    assert sock.recvfrom(100) == (b"out of the tunnel", ("198.51.100.9", 5555))


def test_vnet_hdr_plain_packets(netns: Netns, closing: contextlib.ExitStack) -> None:
    def setup() -> tuple[TunDevice, socket.socket]:
        tun = closing.enter_context(TunDevice.create("lv0", vnet_hdr=True))
        tun.configure(["192.0.2.1/24"], mtu=MTU, routes=["198.51.100.0/24"])
        sock = closing.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.bind(("192.0.2.1", 7777))
        return tun, sock

    tun, sock = netns.call(setup)
    sock.settimeout(5)
    sock.sendto(b"x" * 101, ("198.51.100.9", 4500))
    data = read_until(tun, is_ipv4_udp)
    hdr = VirtioNetHdr.decode(data)
    # Checksum offload: the kernel leaves the UDP checksum to us (CHECKSUM_PARTIAL).
    assert hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM
    assert (hdr.gso_type, hdr.csum_start, hdr.csum_offset) == (GSO_NONE, 20, 6)
    (packet,) = split_read(data)
    assert checksums_ok(packet)
    tun.write(ZERO_VIRTIO_HDR + udp_packet("198.51.100.9", "192.0.2.1", 5555, 7777, b"back"))
    assert sock.recvfrom(100) == (b"back", ("198.51.100.9", 5555))


def test_create_errors(netns: Netns, closing: contextlib.ExitStack) -> None:
    with pytest.raises(NetError, match="1 to 15 ASCII characters"):
        TunDevice.create("a-name-far-too-long")

    def taken() -> None:
        closing.enter_context(TunDevice.create("lv0"))
        with pytest.raises(NetError, match="lv0 is taken: another process has it open"):
            TunDevice.create("lv0")
        with pytest.raises(NetError, match="lo is taken by a device of another kind"):
            TunDevice.create("lo")

    netns.call(taken)


def test_configure_errors(netns: Netns, closing: contextlib.ExitStack) -> None:
    def setup() -> TunDevice:
        return closing.enter_context(TunDevice.create("lv0"))

    tun = netns.call(setup)
    with pytest.raises(NetError, match="does not appear to be an IPv4 or IPv6 interface"):
        netns.call(tun.configure, ["192.0.2.300/24"], MTU)
    with pytest.raises(NetError, match="not in this network namespace"):
        tun.configure(["192.0.2.1/24"], MTU)  # called from the namespace of the tests
    with pytest.raises(NetError, match="configuring TUN device lv0: Invalid argument"):
        netns.call(tun.configure, ["192.0.2.1/24"], 20)  # below the IPv4 minimum MTU
    # Twice is fine: what is there is kept.
    netns.call(tun.configure, ["192.0.2.1/24"], MTU, ["198.51.100.0/24"])
    netns.call(tun.configure, ["192.0.2.1/24"], MTU, ["198.51.100.0/24"])


@dataclass
class Reflector:
    """Turns the namespace's TCP connection to `peer` back into the namespace, as if it
    came from `alias` (a 1:1 NAT): local→peer becomes alias→local and local→alias
    becomes peer→local. Reads are split with `split_read`, writes are `coalesce`d."""

    tun: TunDevice
    local: bytes
    peer: bytes
    alias: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    reads: int = 0
    super_reads: int = 0
    largest_read: int = 0
    gso_types: set[int] = field(default_factory=set)
    segments: int = 0
    writes: int = 0
    gso_writes: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:
            self.errors.append(repr(e))

    def _loop(self) -> None:
        os.set_blocking(self.tun.fd, False)
        while not self.stop.is_set():
            ready, _, _ = select.select([self.tun.fd], [], [], 0.05)
            if not ready:
                continue
            batch: list[bytes] = []
            for _ in range(64):
                try:
                    data = self.tun.read()
                except BlockingIOError:
                    break
                batch.extend(self._take(data))
            for write in coalesce(batch):
                self.tun.write(write)
                self.writes += 1
                if VirtioNetHdr.decode(write).gso_type != GSO_NONE:
                    self.gso_writes += 1

    def _take(self, data: bytes) -> list[bytes]:
        hdr = VirtioNetHdr.decode(data)
        self.reads += 1
        self.largest_read = max(self.largest_read, len(data) - VIRTIO_NET_HDR_LEN)
        if hdr.gso_type != GSO_NONE:
            self.super_reads += 1
            self.gso_types.add(hdr.gso_type)
        out = []
        segments = split_read(data)
        expected_seq = None
        for i, seg in enumerate(segments):
            _, _, src, dst, proto = ip_layout(seg)
            if proto != 6:
                continue
            self.segments += 1
            if not checksums_ok(seg):
                self.errors.append(f"bad checksum in segment {i} of a read of {len(data)}")
            if len(seg) > MTU:
                self.errors.append(f"segment of {len(seg)} bytes above the MTU")
            seq, flags, payload = tcp_fields(seg)
            if expected_seq is not None and seq != expected_seq:
                self.errors.append(f"segment {i}: sequence {seq}, expected {expected_seq}")
            if i < len(segments) - 1 and flags & 0x09:
                self.errors.append(f"FIN/PSH on segment {i} of {len(segments)}")
            expected_seq = (seq + len(payload)) & 0xFFFFFFFF
            if src == self.local and dst == self.peer:
                out.append(rewrite_addresses(seg, self.alias, self.local))
            elif src == self.local and dst == self.alias:
                out.append(rewrite_addresses(seg, self.peer, self.local))
        return out


@pytest.mark.parametrize("version", [4, 6])
def test_tso_super_packets_through_tun(
    netns: Netns, closing: contextlib.ExitStack, version: int
) -> None:
    if version == 4:
        family, local, peer, alias, plen = socket.AF_INET, "192.0.2.1", "192.0.2.2", "192.0.2.3", 24
    else:
        family, local, peer, alias, plen = (
            socket.AF_INET6,
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::3",
            64,
        )

    def setup() -> tuple[TunDevice, socket.socket, socket.socket]:
        tun = closing.enter_context(TunDevice.create("lv0", vnet_hdr=True, mtu=MTU))
        tun.configure([f"{local}/{plen}"], mtu=MTU)
        listener = closing.enter_context(socket.socket(family, socket.SOCK_STREAM))
        listener.bind((local, 0))
        listener.listen(1)
        client = closing.enter_context(socket.socket(family, socket.SOCK_STREAM))
        client.bind((local, 0))
        return tun, listener, client

    tun, listener, client = netns.call(setup)
    reflector = Reflector(tun, addr(local), addr(peer), addr(alias))
    thread = threading.Thread(target=reflector.run, name="reflector", daemon=True)
    thread.start()
    closing.callback(thread.join, 5)
    closing.callback(reflector.stop.set)

    data = (hashlib.sha256(b"larval").digest() * 32) * 1024  # 1 MiB
    data *= 8
    listener.settimeout(10)
    client.settimeout(20)
    client.connect((peer, listener.getsockname()[1]))
    conn, remote = listener.accept()
    closing.enter_context(conn)
    assert remote[0] == alias
    conn.settimeout(20)

    def send() -> None:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = hashlib.sha256()
    total = 0
    while chunk := conn.recv(1 << 20):
        received.update(chunk)
        total += len(chunk)
    sender.join(10)
    reflector.stop.set()
    thread.join(5)

    assert reflector.errors == []
    assert total == len(data)
    assert received.digest() == hashlib.sha256(data).digest()
    # TSO: the kernel handed over TCP super-packets larger than the MTU...
    assert reflector.super_reads > 0
    assert reflector.largest_read > MTU
    assert reflector.gso_types <= {GSO_TCPV4 if version == 4 else GSO_TCPV6}
    # ...and took merged writes back (else the transfer would not have finished).
    assert reflector.gso_writes > 0
