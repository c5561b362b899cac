"""A group's virtual addresses: put on the owner's interface, announced, and taken away.

Theory of operation
-------------------
* Peers reach the group at its virtual addresses (``ha.virtual_addresses``), whichever
  node owns it. The owner puts each one on an interface as a host address (/32, /128,
  without duplicate address detection so that it can be used at once, RFC 4862 §5.4):
  the interface whose connected subnet holds it, else ``ha.interface``.
* Then it tells the link the address has moved, so that neighbours stop sending to the
  old owner's MAC: a gratuitous ARP for IPv4 (RFC 5227 §3's ARP Announcement, sent by
  iputils' ``arping -U``), an unsolicited Neighbor Advertisement with the Override flag
  to all nodes for IPv6 (RFC 4861 §7.2.6), built here on a raw ICMPv6 socket.
* A fenced or stopping owner takes away what it put on; an address already gone is no
  error. A node that starts finds (`found`) what a run of it killed before left. Like
  `larval.net.virtual_ip`, the calls are synchronous netlink in the calling thread's
  network namespace: run them off an event loop.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from larval.net.errors import NetError
from larval.net.tun import IFA_F_NODAD

__all__ = ["Placed", "VirtualAddresses", "neighbor_advertisement"]

log = logging.getLogger("larval.ha")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALL_NODES = "ff02::1"
_ND_NEIGHBOR_ADVERT = 136
_NA_OVERRIDE = 0x20000000  # RFC 4861 §4.4: R, S, O are the top three bits
_OPT_TARGET_LLADDR = 2
_GONE = (errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ENODEV)


@dataclass(frozen=True)
class Placed:
    """A virtual address, on the device it went on."""

    address: IPAddress
    device: str
    index: int


def neighbor_advertisement(target: ipaddress.IPv6Address, mac: bytes | None) -> bytes:
    """An unsolicited NA for `target` (RFC 4861 §4.4): Override set, Solicited and Router
    clear, with the target link-layer address option when the device has one. The
    checksum is left 0: the kernel computes it for a raw ICMPv6 socket (RFC 3542 §3.1)."""
    message = struct.pack("!BBHI", _ND_NEIGHBOR_ADVERT, 0, 0, _NA_OVERRIDE) + target.packed
    if mac:
        option = struct.pack("!BB", _OPT_TARGET_LLADDR, (2 + len(mac) + 7) // 8) + mac
        message += option + bytes(-len(option) % 8)
    return message


class VirtualAddresses:
    """`addresses`, put on the interface whose subnet holds each (else `interface`)."""

    def __init__(self, addresses: Iterable[IPAddress], interface: str | None = None) -> None:
        self.addresses = tuple(addresses)
        self.interface = interface
        self.placed: list[Placed] = []

    def __repr__(self) -> str:
        return f"<VirtualAddresses {', '.join(map(str, self.addresses))}>"

    def take(self) -> list[Placed]:
        """Put every address on its interface (one there already is taken as ours); a
        `NetError` names the address and what failed. What was put on stays recorded, so
        `drop` takes it away."""
        with IPRoute() as ipr:
            for address in self.addresses:
                if any(p.address == address for p in self.placed):
                    continue
                index, device = self._device(ipr, address)
                try:
                    ipr.addr("add", index=index, address=str(address),
                             prefixlen=address.max_prefixlen,
                             flags=IFA_F_NODAD if address.version == 6 else 0)  # fmt: skip
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise NetError(f"virtual address {address} on {device}: "
                                       f"{os.strerror(e.code)}") from e  # fmt: skip
                self.placed.append(Placed(address, device, index))
        return list(self.placed)

    def _device(self, ipr: IPRoute, address: IPAddress) -> tuple[int, str]:
        """The interface whose connected subnet holds `address`, else `interface`."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        for entry in ipr.get_addr(family=family):
            local = entry.get_attr("IFA_LOCAL") or entry.get_attr("IFA_ADDRESS")
            prefix = int(entry["prefixlen"])
            if local is None or prefix >= address.max_prefixlen:
                continue
            if address in ipaddress.ip_network(f"{local}/{prefix}", strict=False):
                index = int(entry["index"])
                return index, _name(ipr, index)
        if self.interface is None:
            raise NetError(f"virtual address {address}: no interface's subnet holds it, and "
                           "no ha.interface is given")  # fmt: skip
        found = ipr.link_lookup(ifname=self.interface)
        if not found:
            raise NetError(f"virtual address {address}: ha.interface {self.interface} is not "
                           "in this namespace")  # fmt: skip
        return int(found[0]), self.interface

    def announce(self) -> list[str]:
        """Tell each link where its virtual addresses are now; the problems, one a line
        (an announcement that fails leaves the address working, neighbours learn late)."""
        problems = []
        for placed in self.placed:
            try:
                if placed.address.version == 4:
                    _gratuitous_arp(placed)
                else:
                    _unsolicited_na(placed)
            except NetError as e:
                problems.append(str(e))
        return problems

    def found(self) -> list[Placed]:
        """Those of the addresses that are on an interface here as host addresses now
        (at start: left by a run of this node that did not stop cleanly, or another
        node's on this host)."""
        here: list[Placed] = []
        if not self.addresses:
            return here
        with IPRoute() as ipr:
            for entry in ipr.get_addr():
                local = entry.get_attr("IFA_LOCAL") or entry.get_attr("IFA_ADDRESS")
                if local is None:
                    continue
                address = ipaddress.ip_address(local)
                if address in self.addresses and int(entry["prefixlen"]) == address.max_prefixlen:
                    index = int(entry["index"])
                    here.append(Placed(address, _name(ipr, index), index))
        return here

    def drop(self) -> None:
        """Take away every address `take` put on; one already gone is no error. A
        `NetError` names what could not be taken away (it stays recorded)."""
        if not self.placed:
            return
        with IPRoute() as ipr:
            for placed in list(self.placed):
                try:
                    ipr.addr("del", index=placed.index, address=str(placed.address),
                             prefixlen=placed.address.max_prefixlen)  # fmt: skip
                except NetlinkError as e:
                    if e.code not in _GONE:
                        raise NetError(f"virtual address {placed.address} on {placed.device}: "
                                       f"{os.strerror(e.code)}") from e  # fmt: skip
                self.placed.remove(placed)


def _name(ipr: IPRoute, index: int) -> str:
    links = ipr.get_links(index)
    return str(links[0].get_attr("IFLA_IFNAME")) if links else str(index)


def _mac(index: int) -> bytes | None:
    with IPRoute() as ipr:
        links = ipr.get_links(index)
    text = links[0].get_attr("IFLA_ADDRESS") if links else None
    if not text:
        return None
    mac = bytes.fromhex(str(text).replace(":", ""))
    return mac if any(mac) else None


def _gratuitous_arp(placed: Placed) -> None:
    arping = shutil.which("arping")
    if arping is None:
        raise NetError(f"virtual address {placed.address}: no arping (iputils-arping) to "
                       "announce it with")  # fmt: skip
    address = str(placed.address)
    try:
        done = subprocess.run([arping, "-U", "-c1", "-I", placed.device, "-s", address, address],
                              capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetError(f"virtual address {address}: arping: {e}") from e
    if done.returncode not in (0, 1):  # 1: no reply, as an announcement expects
        why = (done.stderr or done.stdout).strip().splitlines()
        raise NetError(f"virtual address {address}: arping on {placed.device}: "
                       f"{why[-1] if why else f'status {done.returncode}'}")  # fmt: skip


def _unsolicited_na(placed: Placed) -> None:
    assert isinstance(placed.address, ipaddress.IPv6Address)
    message = neighbor_advertisement(placed.address, _mac(placed.index))
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except OSError as e:
        raise NetError(f"virtual address {placed.address}: raw ICMPv6 socket: {e.strerror}") from e
    with contextlib.closing(sock):
        try:
            # RFC 4861 §7.1.2: a receiver drops an NA whose hop limit is not 255.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, placed.index)
            sock.bind((str(placed.address), 0, 0, placed.index))
            sock.sendto(message, (_ALL_NODES, 0, 0, placed.index))
        except OSError as e:
            raise NetError(f"virtual address {placed.address}: neighbor advertisement on "
                           f"{placed.device}: {e.strerror}") from e  # fmt: skip
