"""An EAP client asks for a virtual address, and the gateway leases it to the EAP identity
the client proved, not to its IKE identity (its address here): the reserved address of
``carol`` is hers, and the pool names her by it."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from larval.credentials import load_credentials
from larval.daemon.auth import resolve
from larval.daemon.config import parse_config
from larval.node import Node
from tests.daemon.gateway import gateway_credentials
from tests.keymgr.test_manager import Host, carry
from tests.keymgr.test_status_eap import OUTER, PASSWORD, SIDES

# carol asks for any inner address; the gateway gives her one of its pool's.
TS = {
    "carol": {"local_ts": ["0.0.0.0/0"], "remote_ts": ["203.0.113.0/24"]},
    "gw": {"local_ts": ["203.0.113.0/24"], "remote_ts": ["10.3.0.0/16"]},
}


class PoolHost(Host):
    def __init__(self, me: str, peer: str, creds: Path, extra: dict[str, Any]) -> None:
        connection = {
            "local_addrs": [OUTER[me]],
            "remote_addrs": [OUTER[peer]],
            "proposals": ["aes128gcm16-prfsha256-x25519"],
            **SIDES[me],
            "children": {"net": {"esp_proposals": ["aes128gcm16"], **TS[me]}},
            **extra.get("connection", {}),
        }
        data = {
            "daemon": {"credentials": str(creds)},
            "connections": {"home": connection},
            "secrets": {"eap-carol": {"id": "carol", "secret": PASSWORD}},
            **extra.get("top", {}),
        }
        config = resolve(parse_config(data, f"{me}.toml"), load_credentials(creds), f"{me}.toml")
        vips = tuple(ipaddress.ip_address(v) for v in extra.get("vips", ()))
        conns = [dataclasses.replace(c, ike=dataclasses.replace(c.ike, vips=vips))
                 for c in config.connections]  # fmt: skip
        self.addr = conns[0].ike.local_addr
        self.node = Node(conns, pools=config.pools)
        self.stack = self.node.stack
        for policy in config.policies:
            self.stack.spd.add(policy)


def test_an_eap_client_gets_the_address_reserved_for_its_eap_identity(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    pools = {"rw": {"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.9"}}}
    gw = PoolHost("gw", "carol", tmp_path,
                  {"top": {"pools": pools}, "connection": {"pools": ["rw"]}})  # fmt: skip
    carol = PoolHost("carol", "gw", tmp_path, {"vips": ["0.0.0.0"]})
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    assert gw_sa["auth_remote"]["identity"] == "carol"
    assert carol_sa["virtual_ips"] == gw_sa["virtual_ips"] == ["10.3.0.9"]
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert [lease["identity"] for lease in pool["online"]] == ["carol"]
    (child,) = gw.keymgr.status()["child_sas"]
    assert child["remote_ts"] == ["10.3.0.9/32"]
