"""A road warrior's virtual addresses and routes on its TUN device, over rtnetlink.

Each virtual address goes on the device as a host address (/32, /128 without duplicate
address detection); each protected network is routed into the device with the virtual
address as the preferred source, so that what the host sends there leaves from the
address the gateway gave and its policy protects (RFC 7296 §2.19). `apply` moves the
device from what it set before to what is wanted now, and adds or removes only the
difference; `apply((), ())` removes all it set. Like `larval.net.tun`, the calls are
synchronous netlink in the calling thread's network namespace: run them off an event
loop.

The routes go into a routing table of their own (``daemon.routing_table``, 220 as
strongSwan's ``charon.routing_table``), looked up before the main table by a policy rule
(``from all lookup 220``, priority ``daemon.routing_table_prio``) added the first time a
route of its family is, and removed by `close` when the daemon stops, as strongSwan's
kernel-netlink adds and removes its rule. The host's own routes in the main table stay
as they were: a default route, or a route of the same network, comes back into use when
the IKE SA goes. Table 0 puts the routes in the main table instead, where a route of
the same network is replaced, and a network of everything (``0.0.0.0/0``, ``::/0``) is
routed as its two halves, more specific than the host's default route, which stays (as
OpenVPN's ``def1``, and strongSwan without a table of its own).

A gateway whose own address a routed network covers keeps a host route (in the same
table) by the way it was reached before (as strongSwan's kernel-libipsec does), so that
IKE and ESP to it do not loop into the tunnel.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from larval.net.errors import NetError
from larval.net.tun import IFA_F_NODAD

__all__ = ["VirtualIpInstaller"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Route = tuple[IPNetwork, IPAddress]

_SCOPE_LINK = 253  # RT_SCOPE_LINK, include/uapi/linux/rtnetlink.h
#: What a removal may find already gone: the device took it with it, or someone else did.
_GONE = (errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ENODEV)


class VirtualIpInstaller:
    """The virtual addresses and routes this daemon set on `device`, the routes in
    routing table `table` (0: the main table) looked up by a rule of `priority`."""

    def __init__(self, device: str, table: int = 0, priority: int = 0) -> None:
        self.device = device
        self.table = table
        self.priority = priority
        self.addresses: tuple[IPAddress, ...] = ()
        self.routes: tuple[Route, ...] = ()
        #: The gateways' host routes, as they were added (netlink arguments).
        self.exclusions: dict[IPAddress, dict[str, object]] = {}
        #: The address families (AF_INET, AF_INET6) whose rule for `table` this added.
        self.rules: tuple[int, ...] = ()

    def apply(
        self,
        addresses: Iterable[IPAddress],
        routes: Iterable[Route],
        peers: Iterable[IPAddress] = (),
    ) -> None:
        """Make the device carry `addresses` and `routes` (and no more of what this
        installer set), with a host route kept for each of `peers` (the gateways) that a
        route covers; a `NetError` names what failed, and what was done stays recorded."""
        want_addresses = tuple(addresses)
        split = _halves if not self.table else _whole
        want_routes = tuple(dict.fromkeys(half for r in routes for half in split(r)))
        covered = [p for p in peers if any(_covers(net, p) for net, _ in want_routes)]
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.device)
                if not found:
                    if not want_addresses and not want_routes:
                        self.addresses, self.routes = (), ()  # the device went, and with it all
                        return
                    raise NetError(f"virtual IP: no device {self.device} in this namespace")
                index = found[0]
                if self.table:
                    for net, _ in want_routes:
                        self._rule(ipr, net.version)
                for peer in covered:
                    if peer not in self.exclusions:
                        self._exclude(ipr, peer, index)
                # Routes first: they name the address as their source.
                for route in self.routes:
                    if route not in want_routes:
                        _quiet(ipr.route, "del", **_route(route, index, self.table))
                        self.routes = tuple(r for r in self.routes if r != route)
                for address in self.addresses:
                    if address not in want_addresses:
                        _quiet(ipr.addr, "del", **_address(address, index))
                        self.addresses = tuple(a for a in self.addresses if a != address)
                for address in want_addresses:
                    if address not in self.addresses:
                        _quiet(ipr.addr, "add", **_address(address, index))
                        self.addresses = (*self.addresses, address)
                for route in want_routes:
                    if route not in self.routes:
                        # replace: in the main table, a route of the same network set at
                        # start for another connection takes the virtual address as its
                        # source too; in our own, what a daemon killed before left.
                        ipr.route("replace", **_route(route, index, self.table))
                        self.routes = (*self.routes, route)
                for peer in list(self.exclusions):
                    if peer not in covered:
                        _quiet(ipr.route, "del", **self.exclusions.pop(peer))
        except NetlinkError as e:
            raise NetError(f"virtual IP on {self.device}: {os.strerror(e.code)}") from e
        except OSError as e:
            raise NetError(f"virtual IP on {self.device}: {e.strerror}") from e

    def close(self) -> None:
        """The daemon stops: the rules this added go (after `apply((), ())` took the
        routes); a `NetError` names what failed."""
        if not self.rules:
            return
        try:
            with IPRoute() as ipr:
                for family in self.rules:
                    _quiet(ipr.rule, "del", **self._rule_args(family))
                    self.rules = tuple(f for f in self.rules if f != family)
        except NetlinkError as e:
            raise NetError(f"routing table {self.table} rule: {os.strerror(e.code)}") from e

    def _rule(self, ipr: IPRoute, version: int) -> None:
        """``from all lookup TABLE`` at `priority` for the family, once (strongSwan's
        ``manage_rule``); one already there (a daemon killed before) is taken as ours."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        if family in self.rules:
            return
        _quiet(ipr.rule, "add", **self._rule_args(family))
        self.rules = (*self.rules, family)

    def _rule_args(self, family: int) -> dict[str, object]:
        return {"family": family, "table": self.table, "priority": self.priority}

    def _exclude(self, ipr: IPRoute, peer: IPAddress, index: int) -> None:
        """A host route to `peer` the way the kernel reaches it now, unless that is this
        device already (nothing else to keep then)."""
        (found,) = ipr.route("get", dst=str(peer))[:1]
        oif, gateway = found.get("RTA_OIF"), found.get("RTA_GATEWAY")
        if oif is None or oif == index:
            return
        route: dict[str, object] = {
            "dst": str(peer),
            "dst_len": peer.max_prefixlen,
            "family": socket.AF_INET if peer.version == 4 else socket.AF_INET6,
            "oif": oif,
        }
        if gateway is not None:
            route["gateway"] = gateway
        if self.table:
            route["table"] = self.table
        ipr.route("replace", **route)
        self.exclusions[peer] = route


def _halves(route: Route) -> tuple[Route, ...]:
    """A route of everything as its two halves (the host's default route stays)."""
    net, source = route
    if net.prefixlen:
        return (route,)
    return tuple((half, source) for half in net.subnets(prefixlen_diff=1))


def _whole(route: Route) -> tuple[Route, ...]:
    """A route as it is: in a table of its own, looked up first, even one of everything
    leaves the host's default route in the main table alone."""
    return (route,)


def _covers(net: IPNetwork, address: IPAddress) -> bool:
    return net.version == address.version and address in net


def _address(address: IPAddress, index: int) -> dict[str, object]:
    return {
        "index": index,
        "address": str(address),
        "prefixlen": address.max_prefixlen,
        # RFC 4862 §5.4: no duplicate detection on our own point-to-point device.
        "flags": IFA_F_NODAD if address.version == 6 else 0,
    }


def _route(route: Route, index: int, table: int = 0) -> dict[str, object]:
    net, source = route
    args: dict[str, object] = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
        "oif": index,
        "prefsrc": str(source),
        "scope": _SCOPE_LINK,  # on the device itself, no gateway (as `ip route add dev`)
    }
    if table:
        args["table"] = table
    return args


def _quiet(call: object, command: str, **kwargs: object) -> None:
    """An add of what is there, or a removal of what is gone, is not an error."""
    try:
        call(command, **kwargs)  # type: ignore[operator]
    except NetlinkError as e:
        if not (e.code == errno.EEXIST and command == "add") and not (
            e.code in _GONE and command == "del"
        ):
            raise
