"""Plain ESP (IP protocol 50) on raw sockets between two namespaces joined by a veth:
packets built with `EspSa` in one are decrypted in the other, over IPv4 and IPv6."""

from __future__ import annotations

import errno
import socket

import pytest

from larval.esp import EspReplayError, EspSa
from larval.esp.ip import IPPROTO_IPV4
from larval.net.errors import NetError
from larval.net.netns import Netns, veth_pair
from larval.net.raw_esp import RawEspSocket
from larval.pfkey import EncryptAlg

from .packets import udp_packet

KEY = bytes(range(20))  # AES-128-GCM key and salt, for the test only
SPI = 0x5150


@pytest.mark.parametrize(
    ("addr_a", "addr_b"),
    [("192.0.2.1/24", "192.0.2.2/24"), ("2001:db8::1/64", "2001:db8::2/64")],
    ids=["ipv4", "ipv6"],
)
def test_esp_crosses_between_namespaces(
    netns_pair: tuple[Netns, Netns], addr_a: str, addr_b: str
) -> None:
    a, b = netns_pair
    veth_pair(a, b, addr_a, addr_b)
    src, dst = addr_a.split("/")[0], addr_b.split("/")[0]
    receiver = b.call(RawEspSocket.bind, dst)
    sender = a.call(RawEspSocket.bind, src)
    outbound = EspSa(SPI, EncryptAlg.AES_GCM_16, KEY)
    inbound = EspSa(SPI, EncryptAlg.AES_GCM_16, KEY)
    inner = [
        udp_packet("198.51.100.1", "203.0.113.1", 1000 + n, 53, b"query %d" % n) for n in range(5)
    ]
    with receiver, sender:
        receiver.settimeout(5)
        assert receiver.local_address[0] == dst
        for packet in inner:
            sender.send(outbound.encrypt(packet, IPPROTO_IPV4), dst)
        got: list[tuple[bytes, tuple[str, int]]] = []
        while len(got) < len(inner):
            got.extend(receiver.recv_batch())
        assert {sender_addr for _, sender_addr in got} == {(src, 0)}
        assert [inbound.decrypt(esp) for esp, _ in got] == [(IPPROTO_IPV4, p) for p in inner]
        with pytest.raises(EspReplayError):
            inbound.decrypt(got[0][0])  # the bytes are exactly what was sent
        assert sender.counters.packets_sent == receiver.counters.packets_received == 5
        # Nothing more is queued: a socket without a timeout would block, one with a
        # short timeout says so.
        receiver.settimeout(0.05)
        with pytest.raises(TimeoutError):
            receiver.recv_batch()


def test_bind_errors(netns: Netns) -> None:
    with pytest.raises(NetError, match="not an address of this host"):
        netns.call(RawEspSocket.bind, "192.0.2.99")


def test_unprivileged_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # What socket(2) says without CAP_NET_RAW, whoever runs the test.
    def refuse(*args: object) -> socket.socket:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refuse)
    with pytest.raises(NetError, match="needs root or CAP_NET_RAW"):
        RawEspSocket.bind("127.0.0.1")
