"""charon as a road warrior (``vips = 0.0.0.0``) against larval as the gateway with an
address pool: charon's IKE_AUTH carries CP(CFG_REQUEST), larval's answer the address and
the pool's DNS, the CHILD_SA's selectors are the virtual address; a ping from it to the
gateway's protected network goes through and back. The setups are `ra_setup`'s, which
`test_ra_matrix` shares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.interop.harness import INNER, NET, needs_charon, needs_netns
from tests.interop.ra_setup import Pool, RaTopology, gateway_config, ping, road_warrior

pytestmark = [needs_netns, needs_charon]

POOL = "10.3.0.0/24"
VIP = "10.3.0.1"


def test_charon_road_warrior_gets_an_address_and_pings_through(tmp_path: Path) -> None:
    with RaTopology(tmp_path) as topo:
        larval = topo.gateway(gateway_config(topo, [Pool("rw", POOL, dns=["10.3.0.53"])]))
        charon = topo.client("c1", road_warrior(topo, "c1"))
        charon.initiate("net")
        listing = charon.list_sas()
        assert f"[{VIP}]" in listing and f"local  {VIP}/32\n" in listing, listing
        assert f"remote {NET['b']}\n" in listing, listing
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [VIP]  # type: ignore[index]
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["remote_ts"] == [f"{VIP}/32"]  # type: ignore[index]
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert f"installing new virtual IP {VIP}" in log
        assert "CPRP(ADDR DNS)" in log  # the address and the pool's DNS server
        result = ping(topo.clients["c1"].ns, VIP, INNER["b"])
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        # The lease goes offline when charon deletes the IKE SA.
        charon.swanctl("--terminate", "--ike", "rw")
        larval.wait_for("none")
        control = str(topo.b.dir / "control")
        pools = subprocess.run(
            [sys.executable, "-m", "larval", "pools", "--json", "--control-socket", control],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert '"offline": [{"identity": "192.0.2.1", "address": "10.3.0.1"}]' in pools.stdout
