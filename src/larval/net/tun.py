"""The TUN device: the dataplane's side towards the local IP stack.

A layer-3 TUN device (`IFF_TUN | IFF_NO_PI`: no Ethernet header, no packet-information
prefix) moves one IP packet per read or write (Documentation/networking/tuntap.rst).
With `vnet_hdr`, every read and write also carries a 10-byte virtio_net_hdr and the
device takes checksum and TCP segmentation offload (`TUNSETOFFLOAD`), so reads bring TCP
super-packets of up to 64 KB; `larval.net.offload` splits and merges them.

Addresses, MTU, routes and link state are set over rtnetlink (pyroute2), in the network
namespace of the calling thread, which is where the device was created.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from larval.esp.transforms import BytesLike
from larval.net.errors import NetError
from larval.net.handles import Closeable
from larval.net.offload import VIRTIO_NET_HDR_LEN

__all__ = [
    "IFF_NO_PI",
    "IFF_TUN",
    "IFF_VNET_HDR",
    "TUN_F_CSUM",
    "TUN_F_TSO4",
    "TUN_F_TSO6",
    "TunDevice",
]

# include/uapi/linux/if_tun.h: _IOW('T', nr, int) and the flags.
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

# include/uapi/linux/sockios.h
SIOCSIFMTU = 0x8922
SIOCSIFTXQLEN = 0x8943

IFNAMSIZ = 16
# struct ifreq: the name, then a 24-byte union (flags as a short, or mtu/qlen as an int).
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")

IFA_F_NODAD = 0x02  # include/uapi/linux/if_addr.h

TXQUEUELEN = 1000  # the kernel's default of 500 drops bursts of a batched writer
_MAX_READ = 65535  # an IP datagram, or a TSO super-packet, is at most 64 KB


class TunDevice(Closeable):
    """An open TUN device. Create with `TunDevice.create`; close when done."""

    def __init__(self, fd: int, name: str, *, vnet_hdr: bool) -> None:
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr
        self._read_size = _MAX_READ + (VIRTIO_NET_HDR_LEN if vnet_hdr else 0)

    @classmethod
    def create(cls, name: str, *, vnet_hdr: bool = False, mtu: int = 1400) -> TunDevice:
        """Create (or attach to a free persistent) TUN device `name` in the calling
        thread's network namespace, with MTU `mtu` and txqueuelen 1000. The device is
        down and has no address until `configure`.

        With `vnet_hdr`, reads and writes carry a virtio_net_hdr and the kernel may hand
        over TCP super-packets (TSO4/TSO6) whose checksums are left partial.
        """
        raw = name.encode("ascii", "replace")
        if not 0 < len(raw) < IFNAMSIZ or b"/" in raw or any(c <= 0x20 for c in raw):
            raise NetError(
                f"TUN device name {name!r}: 1 to {IFNAMSIZ - 1} ASCII characters, no '/' or spaces"
            )
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise NetError(
                "/dev/net/tun does not exist: load the tun module (modprobe tun) or, in a "
                "container, pass the device in (--device /dev/net/tun)"
            ) from e
        except PermissionError as e:
            raise NetError("opening /dev/net/tun needs root (CAP_NET_ADMIN)") from e
        except OSError as e:
            raise NetError(f"cannot open /dev/net/tun: {e.strerror}") from e
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
            try:
                ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(raw, flags))
            except OSError as e:
                raise _setiff_error(name, e) from e
            actual = _IFREQ_FLAGS.unpack(ifr)[0].rstrip(b"\x00").decode("ascii")
            if vnet_hdr:
                try:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VIRTIO_NET_HDR_LEN))
                    # The argument is the flag word itself, not a pointer to it.
                    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
                except OSError as e:
                    raise NetError(
                        f"TUN device {actual}: the kernel refused checksum/TSO offload "
                        f"({e.strerror}); use vnet_hdr=False"
                    ) from e
            _set_link_int(actual, SIOCSIFMTU, mtu, "MTU")
            _set_link_int(actual, SIOCSIFTXQLEN, TXQUEUELEN, "txqueuelen")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, actual, vnet_hdr=vnet_hdr)

    def configure(
        self,
        addresses: Sequence[str],
        mtu: int,
        routes: Sequence[str] = (),
        up: bool = True,
    ) -> None:
        """Set MTU and txqueuelen, add `addresses` ("203.0.113.1/24", "2001:db8::1/64"),
        bring the link up (if `up`) and route each of `routes` ("198.51.100.0/24",
        "default") into the device. Addresses and routes already there are kept."""
        try:
            interfaces = [ipaddress.ip_interface(a) for a in addresses]
            networks = [_route_network(r) for r in routes]
        except ValueError as e:
            raise NetError(f"TUN device {self.name}: {e}") from e
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.name)
                if not found:
                    raise NetError(
                        f"TUN device {self.name} is not in this network namespace; "
                        "configure it from the thread that created it"
                    )
                index = found[0]
                ipr.link("set", index=index, mtu=mtu, txqlen=TXQUEUELEN)
                for iface in interfaces:
                    # IPv6: no duplicate address detection on a point-to-point device
                    # of our own; otherwise the address is "tentative" for a moment
                    # after the link comes up and bind() fails (RFC 4862 §5.4).
                    _ignore_exists(
                        ipr.addr,
                        "add",
                        index=index,
                        address=str(iface.ip),
                        prefixlen=iface.network.prefixlen,
                        flags=IFA_F_NODAD if iface.version == 6 else 0,
                    )
                if up:
                    ipr.link("set", index=index, state="up")
                for net in networks:
                    _ignore_exists(
                        ipr.route,
                        "add",
                        dst=str(net.network_address),
                        dst_len=net.prefixlen,
                        family=socket.AF_INET if net.version == 4 else socket.AF_INET6,
                        oif=index,
                    )
        except NetlinkError as e:
            raise NetError(
                f"configuring TUN device {self.name}: {os.strerror(e.code)} ({e})"
            ) from e
        except OSError as e:
            raise NetError(f"configuring TUN device {self.name}: {e.strerror}") from e

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes:
        """Block for one packet; with `vnet_hdr`, the virtio_net_hdr comes first."""
        try:
            return os.read(self.fd, self._read_size)
        except BlockingIOError:
            raise
        except OSError as e:
            raise NetError(f"reading TUN device {self.name}: {e.strerror}") from e

    def read_into(self, buffer: bytearray | memoryview) -> int:
        """Read one packet into `buffer` (at least 65545 bytes with `vnet_hdr`); its length."""
        try:
            return os.readv(self.fd, [buffer])
        except BlockingIOError:
            raise
        except OSError as e:
            raise NetError(f"reading TUN device {self.name}: {e.strerror}") from e

    def write(self, data: BytesLike) -> None:
        """Write one packet; with `vnet_hdr` it must start with a virtio_net_hdr."""
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            raise
        except OSError as e:
            raise NetError(
                f"writing {len(data)} bytes to TUN device {self.name}: {e.strerror}"
                + (" (the device is down)" if e.errno == errno.EIO else "")
            ) from e

    def close(self) -> None:
        """Close the descriptor; a non-persistent device disappears with it."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __repr__(self) -> str:
        return f"TunDevice(name={self.name!r}, fd={self.fd}, vnet_hdr={self.vnet_hdr})"


def _setiff_error(name: str, e: OSError) -> NetError:
    if e.errno in (errno.EPERM, errno.EACCES):
        return NetError(f"creating TUN device {name} needs root (CAP_NET_ADMIN)")
    if e.errno == errno.EBUSY:
        return NetError(f"TUN device name {name} is taken: another process has it open")
    if e.errno in (errno.EINVAL, errno.EEXIST):
        return NetError(
            f"TUN device name {name} is taken by a device of another kind, or the name is not valid"
        )
    return NetError(f"creating TUN device {name}: {e.strerror}")


def _set_link_int(name: str, request: int, value: int, what: str) -> None:
    """Set an integer link property (ifreq ioctl) in the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s, request, _IFREQ_INT.pack(name.encode("ascii"), value))
        except OSError as e:
            raise NetError(f"setting {what} {value} on TUN device {name}: {e.strerror}") from e


def _route_network(route: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if route == "default":
        return ipaddress.IPv4Network("0.0.0.0/0")
    if route == "default6":
        return ipaddress.IPv6Network("::/0")
    return ipaddress.ip_network(route, strict=True)


def _ignore_exists(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run a netlink request; EEXIST (already configured) is not an error."""
    try:
        call(*args, **kwargs)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
