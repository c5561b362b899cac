"""EAP from the configuration file to status: two key managers in memory, a gateway with
a `larval.pki` certificate and ``remote = { auth = "eap-mschapv2", eap_id = "%any" }``,
and carol with ``local = { auth = "eap-mschapv2", eap_id = "carol" }`` and her
``[secrets.eap-carol]``; status names the method and the EAP identity. A wrong password
installs nothing on either side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from larval.commands.daemon import print_status
from larval.credentials import load_credentials
from larval.daemon.auth import resolve
from larval.daemon.config import parse_config
from larval.ike.identity import describe_subject
from larval.node import Node
from tests.daemon.gateway import GW, gateway_credentials
from tests.keymgr.test_manager import Host, carry

OUTER = {"gw": "192.0.2.1", "carol": "192.0.2.2"}
PASSWORD = "carol-Password-1"
SIDES: dict[str, dict[str, Any]] = {
    "gw": {
        "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
        "remote": {"auth": "eap-mschapv2", "eap_id": "%any"},
    },
    "carol": {
        "local": {"auth": "eap-mschapv2", "eap_id": "carol"},
        "remote": {"auth": "pubkey", "id": "vpn.example.org"},
    },
}


class EapHost(Host):
    """A key manager and its stack for `me`, from a configuration file's words."""

    def __init__(self, me: str, peer: str, creds: Path, password: str = PASSWORD) -> None:
        data = {
            "daemon": {"credentials": str(creds)},
            "connections": {
                "home": {
                    "local_addrs": [OUTER[me]],
                    "remote_addrs": [OUTER[peer]],
                    "proposals": ["aes128gcm16-prfsha256-x25519"],
                    **SIDES[me],
                    "children": {"net": {"esp_proposals": ["aes128gcm16"]}},
                }
            },
            "secrets": {"eap-carol": {"id": "carol", "secret": password}},
        }
        config = parse_config(data, f"{me}.toml")
        config = resolve(config, load_credentials(creds), f"{me}.toml")
        self.addr = config.connections[0].ike.local_addr
        self.node = Node(config.connections)
        self.stack = self.node.stack
        for policy in config.policies:
            self.stack.spd.add(policy)


def test_status_of_an_eap_client_names_the_method_and_its_eap_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_credentials(tmp_path)
    gw, carol = EapHost("gw", "carol", tmp_path), EapHost("carol", "gw", tmp_path)
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    assert gw_sa["auth_remote"]["method"] == "eap-mschapv2"
    assert gw_sa["auth_remote"]["identity"] == "carol"
    assert carol_sa["auth_local"]["identity"] == "carol"
    assert carol_sa["auth_remote"]["subject"] == describe_subject(GW)
    assert len(gw.keymgr.status()["child_sas"]) == len(carol.keymgr.status()["child_sas"]) == 1
    print_status({"ike_sas": [gw_sa], "child_sas": []})
    assert "  remote authentication: eap-mschapv2 carol\n" in capsys.readouterr().out
    assert PASSWORD not in repr(gw.keymgr.status()) + repr(carol.keymgr.status())


def test_a_wrong_password_installs_nothing_and_never_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway_credentials(tmp_path)
    gw = EapHost("gw", "carol", tmp_path)
    carol = EapHost("carol", "gw", tmp_path, password="not-Her-Password")
    for host in (gw, carol):
        host.keymgr.start(0.0)
    with caplog.at_level(logging.DEBUG):
        carol.keymgr.initiate("home", "net", 0.0)
        carry(carol, gw, 0.0)
    for host in (gw, carol):
        status = host.keymgr.status()
        assert not [s for s in status["ike_sas"] if s["state"] == "established"]
        assert status["child_sas"] == []
    assert len(gw.stack.sadb) == 0  # the gateway reserved no SPI: the CHILD_SA comes last
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "wrong password for user 'carol'" in w]
    assert PASSWORD not in caplog.text and "not-Her-Password" not in caplog.text
