"""charon as a road warrior (``vips = 0.0.0.0``) against larval as the gateway with an
address pool: charon's IKE_AUTH carries CP(CFG_REQUEST), larval's answer the address and
the pool's DNS, the CHILD_SA's selectors are the virtual address; a ping from it to the
gateway's protected network goes through and back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.interop.harness import (
    INNER,
    NET,
    OUTER,
    PSK,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)

pytestmark = [needs_netns, needs_charon]

POOL = "10.3.0.0/24"
VIP = "10.3.0.1"


def _road_warrior() -> str:
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        mobike = no
        vips = 0.0.0.0
        proposals = aes128-sha256-x25519
        local {{
            auth = psk
            id = {OUTER["a"]}
        }}
        remote {{
            auth = psk
            id = {OUTER["b"]}
        }}
        children {{
            net {{
                remote_ts = {NET["b"]}
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-rw {{
        id-local = {OUTER["a"]}
        id-remote = {OUTER["b"]}
        secret = "{PSK}"
    }}
}}
"""


def test_charon_road_warrior_gets_an_address_and_pings_through(tmp_path: Path) -> None:
    with Topology(tmp_path) as topo:
        config = larval_config(topo.b, proposals=["aes128-sha256-x25519"],
                               esp=["aes128gcm16"], start_action="none")  # fmt: skip
        config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
        config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{POOL}"]')
        config += f'\n[pools.rw]\naddrs = "{POOL}"\ndns = ["10.3.0.53"]\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        charon = topo.charon(topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
                             swanctl=_road_warrior())  # fmt: skip
        # charon is told not to install the address itself (install_virtual_ip = no), and
        # its route to the gateway's network needs it: the pool's first address is there.
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
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
        result = subprocess.run(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             "-I", VIP, INNER["b"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
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
