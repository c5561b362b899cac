"""As root, in network namespaces: a group's virtual addresses go on the interface whose
subnet holds them (else ``ha.interface``), are announced so that a neighbour's cache
moves to the new owner's MAC (gratuitous ARP, unsolicited NA with Override), and go."""

from __future__ import annotations

import ipaddress
import os
import shutil
import uuid

import pytest

from larval.ha.vip import VirtualAddresses, neighbor_advertisement
from larval.net.errors import NetError
from larval.net.netns import Netns, veth_pair

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("arping") is None,
    reason="needs root, iproute2 and arping (iputils-arping)",
)

VIP4, VIP6 = ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")
OLD_MAC = "02:00:00:00:00:99"


def test_the_advertisement_is_rfc_4861s() -> None:
    mac = bytes.fromhex("020000000001")
    message = neighbor_advertisement(ipaddress.IPv6Address("2001:db8::10"), mac)
    # type 136, code 0, checksum left to the kernel, flags R=0 S=0 O=1; the target; then
    # option 2 (target link-layer address), length 1 (8 octets).
    assert message.hex() == (
        "88000000" "20000000" "20010db8000000000000000000000010" "0201" "020000000001"
    )  # fmt: skip
    assert len(neighbor_advertisement(ipaddress.IPv6Address("::1"), None)) == 24


def _mac(ns: Netns, dev: str) -> str:
    line = ns.run(["ip", "-o", "link", "show", dev])
    return line.split("link/ether ")[1].split()[0]


def _neigh(ns: Netns, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return ns.run(["ip", "neigh", "show", str(address)])


@needs_netns
def test_taken_announced_and_dropped() -> None:
    tag = uuid.uuid4().hex[:6]
    with Netns(f"hagw{tag}") as gw, Netns(f"hapeer{tag}") as peer:
        veth_pair(gw, peer, "192.0.2.1/24", "192.0.2.2/24", name_a="eth0", name_b="eth0")
        gw.run(["ip", "address", "add", "2001:db8::1/64", "dev", "eth0", "nodad"])
        peer.run(["ip", "address", "add", "2001:db8::2/64", "dev", "eth0", "nodad"])
        gw.run(["ip", "link", "add", "dummy9", "type", "veth", "peer", "name", "dummy8"])
        # The peer's caches still point at the old owner.
        for vip in (VIP4, VIP6):
            peer.run(["ip", "neigh", "add", str(vip), "lladdr", OLD_MAC, "dev", "eth0",
                      "nud", "stale"])  # fmt: skip
        vips = VirtualAddresses((VIP4, VIP6))
        placed = gw.call(vips.take)
        assert [(p.address, p.device) for p in placed] == [(VIP4, "eth0"), (VIP6, "eth0")]
        shown = gw.run(["ip", "-o", "address", "show", "dev", "eth0"])
        assert "inet 192.0.2.10/32" in shown and "inet6 2001:db8::10/128" in shown, shown
        line = gw.run(["ip", "-o", "-6", "address", "show", "to", str(VIP6)])
        assert "tentative" not in line, line  # usable at once: no DAD
        assert gw.call(vips.announce) == []
        mac = _mac(gw, "eth0")
        for vip in (VIP4, VIP6):
            assert mac in _neigh(peer, vip), (vip, _neigh(peer, vip))
        # The peer reaches the virtual address now.
        peer.run(["ping", "-c1", "-W2", str(VIP4)])
        gw.call(vips.drop)
        shown = gw.run(["ip", "-o", "address", "show", "dev", "eth0"])
        assert "192.0.2.10" not in shown and "2001:db8::10" not in shown, shown
        assert vips.placed == []
        gw.call(vips.drop)  # nothing left: no error
        # No subnet holds it: ha.interface says where it goes, and without one it is named.
        outside = ipaddress.ip_address("198.51.100.7")
        with pytest.raises(NetError, match=r"198\.51\.100\.7: no interface's subnet holds "
                           r"it, and no ha\.interface is given"):  # fmt: skip
            gw.call(VirtualAddresses((outside,)).take)
        with pytest.raises(NetError, match=r"ha\.interface nothere0 is not in this namespace"):
            gw.call(VirtualAddresses((outside,), "nothere0").take)
        placed = gw.call(VirtualAddresses((outside,), "dummy9").take)
        assert placed[0].device == "dummy9"
        assert "198.51.100.7/32" in gw.run(["ip", "-o", "address", "show", "dev", "dummy9"])
