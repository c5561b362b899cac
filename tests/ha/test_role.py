"""The dataplane's guard (`HaRole._guard`, `Dataplane.may_send`): each send asks the node
whether it still owns the group, so that a node stopped past its deadline and woken
sends no ESP, even before its other threads have noticed the fence."""

from __future__ import annotations

import ipaddress
import socket
import types
from pathlib import Path
from typing import Any

import pytest

from larval.daemon.ike_daemon import IkeDaemon
from larval.ha.role import HaRole
from larval.net.dataplane import Dataplane
from larval.net.udp import UdpSocket
from larval.stack import Stack
from larval.stack.packet_path import Datagram

LOOPBACK = bytes([127, 0, 0, 1])


class Node:
    def __init__(self) -> None:
        self.owner = True
        self.esp_held = 0
        self.asked = 0

    def may_send(self) -> bool:
        self.asked += 1
        return self.owner


def test_the_guard_asks_before_each_send() -> None:
    """A real dataplane's sends to a real socket on loopback, guarded by a node that
    stops owning the group halfway."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    port = receiver.getsockname()[1]
    udp = UdpSocket.bind("127.0.0.1", 0, gro=False)
    tun = types.SimpleNamespace(vnet_hdr=False)
    dataplane = Dataplane(Stack(), tun, udp)  # type: ignore[arg-type]
    role: Any = HaRole.__new__(HaRole)
    role.node = Node()
    role._guard(dataplane)
    role._guard(dataplane)  # a second takeover guards it once, as the first
    try:
        dataplane._send(Datagram(b"one", LOOPBACK, port))
        assert receiver.recv(100) == b"one" and role.node.asked == 1
        role.node.owner = False  # the deadline passed while the process was stopped
        dataplane._send(Datagram(b"two", LOOPBACK, port))
        dataplane._send_now(LOOPBACK, port, [b"three", b"four"])
        with pytest.raises(TimeoutError):
            receiver.recv(100)
        assert role.node.esp_held == 3
    finally:
        udp.sock.close()
        receiver.close()


def test_a_fenced_node_s_new_key_manager_has_the_pools_as_last_defined(tmp_path: Path) -> None:
    """`HaRole._forget`: a new Node and key manager, joined to the stack as the first, with
    the pools of the last reload and none of the forgotten IKE SAs' leases."""
    key = tmp_path / "state.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    config = tmp_path / "larval.toml"

    def write(addrs: str) -> None:
        config.write_text(CONFIG.format(dir=tmp_path, key=key, addrs=addrs))
        config.chmod(0o600)

    write("10.3.0.0/24")
    daemon = IkeDaemon(str(config))
    assert daemon.ha is not None and daemon.store is None
    old_node = daemon.node
    assert daemon.keymgr.pools.acquire(["rw"], "carol", ipaddress.ip_address("0.0.0.0"))
    write("10.4.0.0/24")
    daemon.reload()
    daemon.ha._forget()
    assert daemon.node is not old_node and daemon.keymgr is daemon.node.keymgr
    assert old_node.stack_emitted not in daemon._listeners
    assert daemon.node.stack_emitted in daemon._listeners
    (pool,) = daemon.keymgr.pools.status()
    assert (pool.addrs, pool.online, pool.offline) == ("10.4.0.0/24", (), ())
    assert list(daemon.keymgr.connections) == ["home"]


CONFIG = """
[daemon]
addresses = ["192.0.2.10"]
control_socket = "{dir}/control"
pfkey_socket = "{dir}/pfkey"
state_key = "{key}"

[ha]
endpoints = ["http://127.0.0.1:1"]
group = "edge"
node = "gw1"
virtual_addresses = ["192.0.2.10"]

[pools.rw]
addrs = "{addrs}"

[connections.home]
version = 2
local_addrs = ["192.0.2.10"]
remote_addrs = ["%any"]
proposals = ["aes128-sha256-x25519"]
pools = ["rw"]
local = {{ auth = "psk", id = "gw" }}
remote = {{ auth = "psk", id = "carol" }}

[connections.home.children.net]
local_ts = ["203.0.113.0/24"]
remote_ts = ["10.0.0.0/8"]
esp_proposals = ["aes128gcm16"]

[secrets.ike]
ids = ["gw", "carol"]
secret = "0123456789abcdef-psk"
"""
