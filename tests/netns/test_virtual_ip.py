"""As root, in a network namespace of its own: `VirtualIpInstaller` puts a road warrior's
virtual addresses on a device and routes the protected networks into it from them, moves
from one state to the next by the difference, and takes away all it set."""

from __future__ import annotations

import ipaddress
import os
import shutil
import uuid

import pytest

from larval.net.errors import NetError
from larval.net.netns import Netns
from larval.net.virtual_ip import VirtualIpInstaller

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces)",
)

V4, V6 = ipaddress.ip_address("10.3.0.1"), ipaddress.ip_address("2001:db8:3::1")
HOME, HOME6 = ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:1::/48")


def test_addresses_and_routes_come_and_go() -> None:
    with Netns(f"vip{uuid.uuid4().hex[:6]}") as ns:
        ns.run(["ip", "link", "add", "rw0", "type", "veth", "peer", "name", "rw1"])
        for device in ("rw0", "rw1"):
            ns.run(["ip", "link", "set", device, "up"])
        # A route of the same network set before (a connection's static route) is taken over.
        ns.run(["ip", "route", "add", str(HOME), "dev", "rw0"])
        installer = VirtualIpInstaller("rw0")
        ns.call(installer.apply, (V4, V6), ((HOME, V4), (HOME6, V6)))
        addresses = ns.run(["ip", "-o", "address", "show", "dev", "rw0"])
        assert "inet 10.3.0.1/32" in addresses and "inet6 2001:db8:3::1/128" in addresses
        routes = ns.run(["ip", "route", "show", "dev", "rw0"])
        assert "203.0.113.0/24 proto static scope link src 10.3.0.1" in routes, routes
        routes6 = ns.run(["ip", "-6", "route", "show", "dev", "rw0"])
        assert "2001:db8:1::/48" in routes6 and "src 2001:db8:3::1" in routes6, routes6
        # The kernel picks the virtual address to reach the protected network.
        got = ns.run(["ip", "route", "get", "203.0.113.9"])
        assert "src 10.3.0.1" in got, got
        # The IPv6 IKE SA goes: only its address and route are removed.
        ns.call(installer.apply, (V4,), ((HOME, V4),))
        assert "2001:db8:3::1" not in ns.run(["ip", "-o", "address", "show", "dev", "rw0"])
        assert "2001:db8:1::/48" not in ns.run(["ip", "-6", "route", "show", "dev", "rw0"])
        assert "src 10.3.0.1" in ns.run(["ip", "route", "show", "dev", "rw0"])
        ns.call(installer.apply, (), ())
        assert "10.3.0.1" not in ns.run(["ip", "-o", "address", "show", "dev", "rw0"])
        assert "203.0.113.0/24" not in ns.run(["ip", "route", "show", "dev", "rw0"])
        assert installer.addresses == () and installer.routes == ()


def test_a_device_that_is_not_there_is_named() -> None:
    with Netns(f"vip{uuid.uuid4().hex[:6]}") as ns:
        installer = VirtualIpInstaller("nothere0")
        with pytest.raises(NetError, match="virtual IP: no device nothere0 in this namespace"):
            ns.call(installer.apply, (V4,), ())
        ns.call(installer.apply, (), ())  # nothing to take away: no error


def test_a_route_of_everything_is_two_halves_and_the_gateway_keeps_its_way() -> None:
    gateway = ipaddress.ip_address("198.51.100.1")
    with Netns(f"vip{uuid.uuid4().hex[:6]}") as ns:
        for a, b in (("rw0", "rw1"), ("up0", "up1")):
            ns.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
            for device in (a, b):
                ns.run(["ip", "link", "set", device, "up"])
        ns.run(["ip", "address", "add", "192.0.2.1/24", "dev", "up0"])
        ns.run(["ip", "route", "add", "default", "via", "192.0.2.254", "dev", "up0"])
        installer = VirtualIpInstaller("rw0")
        everything = ipaddress.ip_network("0.0.0.0/0")
        ns.call(installer.apply, (V4,), ((everything, V4),), (gateway,))
        routes = ns.run(["ip", "route", "show"])
        assert "default via 192.0.2.254 dev up0" in routes, routes
        assert "0.0.0.0/1 dev rw0 proto static scope link src 10.3.0.1" in routes, routes
        assert "128.0.0.0/1 dev rw0 proto static scope link src 10.3.0.1" in routes, routes
        # IKE and ESP to the gateway go the way they went; everything else into the tunnel.
        assert "via 192.0.2.254 dev up0" in ns.run(["ip", "route", "get", str(gateway)])
        assert "dev rw0 src 10.3.0.1" in ns.run(["ip", "route", "get", "203.0.113.9"])
        ns.call(installer.apply, (), (), ())
        routes = ns.run(["ip", "route", "show"])
        assert "rw0" not in routes and str(gateway) not in routes, routes
        assert "default via 192.0.2.254 dev up0" in routes, routes


def _links(ns: Netns, *pairs: tuple[str, str]) -> None:
    for a, b in pairs:
        ns.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        for device in (a, b):
            ns.run(["ip", "link", "set", device, "up"])


def _tx_packets(ns: Netns, device: str) -> int:
    return int(ns.run(["cat", f"/sys/class/net/{device}/statistics/tx_packets"]))


@pytest.mark.parametrize("everything", [False, True], ids=["net", "everything"])
def test_routes_in_a_table_of_their_own_leave_the_main_table_alone(everything: bool) -> None:
    """``daemon.routing_table = 220``: the routes and the gateway's host route go into
    table 220, found first by the rule ``220: from all lookup 220``; the host's main
    table (a default route, a /1, a route of the protected network itself) is the same
    before, during and after, and what is sent to the protected network leaves through
    the tunnel's device from the virtual address. The rule goes when the daemon stops."""
    gateway = ipaddress.ip_address("198.51.100.1")
    protected = ipaddress.ip_network("0.0.0.0/0") if everything else HOME
    with Netns(f"vip{uuid.uuid4().hex[:6]}") as ns:
        _links(ns, ("rw0", "rw1"), ("up0", "up1"))
        ns.run(["ip", "link", "set", "rw0", "arp", "off"])  # as a TUN device: no neighbours
        ns.run(["ip", "address", "add", "192.0.2.1/24", "dev", "up0"])
        ns.run(["ip", "route", "add", "default", "via", "192.0.2.254", "dev", "up0"])
        ns.run(["ip", "route", "add", "0.0.0.0/1", "via", "192.0.2.253", "dev", "up0"])
        ns.run(["ip", "route", "add", str(HOME), "via", "192.0.2.252", "dev", "up0"])
        main = ns.run(["ip", "route", "show", "table", "main"])
        installer = VirtualIpInstaller("rw0", table=220, priority=220)
        ns.call(installer.apply, (V4,), ((protected, V4),), (gateway,))
        assert ns.run(["ip", "route", "show", "table", "main"]) == main
        rules = ns.run(["ip", "rule", "show"])
        assert "220:\tfrom all lookup 220" in rules, rules
        table = ns.run(["ip", "route", "show", "table", "220"])
        shown = "default" if everything else str(protected)  # whole, not two halves
        assert f"{shown} dev rw0 proto static scope link src 10.3.0.1" in table, table
        # A gateway the routes cover keeps the way it was reached, in table 220 as well.
        assert ("198.51.100.1 via 192.0.2.254 dev up0" in table) is everything, table
        # The kernel sends to the protected network from the virtual address, into rw0,
        # past the main table's more specific /1 and its route of the network itself.
        got = ns.run(["ip", "route", "get", "203.0.113.9"])
        assert "dev rw0 table 220 src 10.3.0.1" in got, got
        before, beside = _tx_packets(ns, "rw0"), _tx_packets(ns, "up0")
        # (Ten of them: a new link sends a few IPv6 neighbour discovery packets too.)
        ns.run(["ping", "-c", "10", "-i", "0.05", "-W", "1", "203.0.113.9"], check=False)
        assert _tx_packets(ns, "rw0") >= before + 10
        assert _tx_packets(ns, "up0") < beside + 10
        # The IKE SA goes: table 220 is empty, main as it was, the rule stays until the end.
        ns.call(installer.apply, (), (), ())
        assert ns.run(["ip", "route", "show", "table", "220"]).strip() == ""
        assert ns.run(["ip", "route", "show", "table", "main"]) == main
        assert "via 192.0.2.252 dev up0" in ns.run(["ip", "route", "get", "203.0.113.9"])
        ns.call(installer.close)
        assert "lookup 220" not in ns.run(["ip", "rule", "show"])
        assert installer.rules == ()


def test_a_rule_left_behind_is_taken_and_an_ipv6_route_gets_its_own_rule() -> None:
    with Netns(f"vip{uuid.uuid4().hex[:6]}") as ns:
        _links(ns, ("rw0", "rw1"))
        ns.run(["ip", "rule", "add", "priority", "300", "table", "4000"])  # a daemon killed
        installer = VirtualIpInstaller("rw0", table=4000, priority=300)
        ns.call(installer.apply, (V4, V6), ((HOME, V4), (HOME6, V6)))
        assert ns.run(["ip", "rule", "show"]).count("lookup 4000") == 1
        assert "300:\tfrom all lookup 4000" in ns.run(["ip", "-6", "rule", "show"])
        assert "src 2001:db8:3::1" in ns.run(["ip", "-6", "route", "show", "table", "4000"])
        ns.call(installer.apply, (), ())
        ns.call(installer.close)
        assert "lookup 4000" not in ns.run(["ip", "rule", "show"])
        assert "lookup 4000" not in ns.run(["ip", "-6", "rule", "show"])
