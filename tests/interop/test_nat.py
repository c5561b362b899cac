"""Through a real NAT: a router namespace masquerades one site and translates every UDP
source port (into 20000-30000, as a NAT shared by many hosts does), so IKE's 500 and 4500
reach the peer as other ports. Nobody sets `encap`: NAT detection (RFC 7296 §2.23, RFC
3947) must find the NAT, both ends move to UDP 4500, ESP goes in UDP to the translated
port, and the side behind the NAT keeps the mapping alive."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.interop.harness import Topology, needs_charon, needs_netns

needs_nft = pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("conntrack") is None,
    reason="needs nftables (nft) and conntrack for the NAT router",
)
pytestmark = [needs_netns, needs_charon, needs_nft]

SUITES = {
    1: ("aes128-sha256-modp2048", "aes128-sha256"),
    2: ("aes128-sha256-x25519", "aes128gcm16"),
}


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("behind", ["charon", "larval"])
def test_through_a_port_translating_nat(tmp_path: Path, version: int, behind: str) -> None:
    """The site behind the NAT initiates (trap on larval's side, `initiate` on charon's);
    ping both ways through the tunnel."""
    ike, esp = SUITES[version]
    with Topology(tmp_path, nat="b" if behind == "larval" else "a") as topo:
        start = "trap" if behind == "larval" else "none"
        larval = topo.larval(topo.b, proposals=[ike], esp=[esp], start_action=start,
                             encap=False, version=version)  # fmt: skip
        charon = topo.charon(topo.a, proposals=ike, esp=esp, version=version)
        if behind == "larval":
            topo.b.ping(count=1)
            larval.wait_for("child")
        else:
            charon.initiate()
        log = larval.log.read_text
        result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, log()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        result = topo.b.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, log()[-4000:])
        (ike_sa,) = larval.status()["ike_sas"]  # type: ignore[misc]
        assert ike_sa["encapsulated"], ike_sa  # type: ignore[index]
        if behind == "charon":  # charon's 4500, as the NAT translated it
            assert 20000 <= ike_sa["remote_port"] <= 30000, ike_sa  # type: ignore[index]
        else:
            assert ike_sa["remote_port"] == 4500, ike_sa  # type: ignore[index]
        listing = charon.list_sas()
        assert f"ESTABLISHED, IKEv{version}" in listing and "INSTALLED" in listing, listing


@pytest.mark.parametrize("version", [2, 1])
def test_the_nat_forgets_its_mappings_and_larval_follows(tmp_path: Path, version: int) -> None:
    """charon is behind the NAT, which then drops every mapping: charon's next packets
    come from new ports. Its next DPD message proves itself from there, larval answers
    there and moves its SAs' ESP in UDP to the new port (RFC 7296 §2.23), and traffic
    flows both ways again."""
    ike, esp = SUITES[version]
    with Topology(tmp_path, nat="a") as topo:
        larval = topo.larval(topo.b, proposals=[ike], esp=[esp], start_action="none",
                             encap=False, version=version)  # fmt: skip
        charon = topo.charon(topo.a, proposals=ike, esp=esp, version=version, dpd="2s")
        charon.initiate()
        assert " 0% packet loss" in topo.b.ping(count=3).stdout
        (before,) = larval.status()["ike_sas"]  # type: ignore[misc]
        topo.nat_forgets()
        topo.a.ping(count=15)  # ESP from charon opens a new mapping; DPD follows
        (after,) = larval.status()["ike_sas"]  # type: ignore[misc]
        log = larval.log.read_text()
        assert after["remote_port"] != before["remote_port"], (before, after, log[-3000:])  # type: ignore[index]
        assert 20000 <= after["remote_port"] <= 30000  # type: ignore[index, operator]
        assert "the peer's NAT mapping changed" in log, log[-3000:]
        for site in (topo.b, topo.a):
            result = site.ping(count=5)
            assert " 0% packet loss" in result.stdout, (result.stdout, log[-3000:])
