"""Status says how each end of an IKE_SA authenticated: two key managers in memory, a
gateway and carol with `larval.pki` certificates from one credentials directory, and a
PSK pair beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from larval.commands.daemon import print_status
from larval.credentials import load_credentials
from larval.daemon.auth import resolve
from larval.daemon.config import parse_config
from larval.ike.identity import describe_subject
from larval.node import Node
from tests.daemon.gateway import CA, CAROL, GW, gateway_credentials
from tests.keymgr.test_manager import Host, carry

OUTER = {"gw": "192.0.2.1", "carol": "192.0.2.2"}
SIDES: dict[str, dict[str, Any]] = {
    "gw": {
        "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
        "remote": {"auth": "pubkey", "cacerts": ["ca.pem"]},  # %any
    },
    "carol": {
        "local": {"auth": "pubkey", "certs": ["carol.pem"], "id": "carol@example.org"},
        "remote": {"auth": "pubkey", "id": "vpn.example.org"},
    },
}


class CertHost(Host):
    """A key manager and its stack for `me`, its connection's certificates resolved."""

    def __init__(
        self, me: str, peer: str, creds: Path, version: int = 2,
        sides: dict[str, dict[str, Any]] = SIDES,
    ) -> None:  # fmt: skip
        ike, esp = ("aes128gcm16-prfsha256-x25519", "aes128gcm16") if version == 2 else (
            "aes128-sha256-modp2048", "aes128-sha256")  # fmt: skip
        data = {
            "daemon": {"credentials": str(creds)},
            "connections": {
                "home": {
                    "local_addrs": [OUTER[me]],
                    "remote_addrs": [OUTER[peer]],
                    "version": version,
                    "proposals": [ike],
                    **sides[me],
                    "children": {"net": {"esp_proposals": [esp]}},
                }
            },
        }
        if "psk" in (sides[me]["local"]["auth"], sides[me]["remote"]["auth"]):
            data["secrets"] = {"ike": {"ids": ["carol@example.org"],
                                       "secret": "a-test-psk-0123456789"}}  # fmt: skip
        config = parse_config(data, f"{me}.toml")
        config = resolve(config, load_credentials(creds), f"{me}.toml")
        self.addr = config.connections[0].ike.local_addr
        self.node = Node(config.connections)
        self.stack = self.node.stack
        for policy in config.policies:
            self.stack.spd.add(policy)


@pytest.mark.parametrize("version", [2, 1])
def test_status_names_method_scheme_subject_and_issuer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: int
) -> None:
    gateway_credentials(tmp_path, carol=True)
    gw = CertHost("gw", "carol", tmp_path, version)
    carol = CertHost("carol", "gw", tmp_path, version)
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    assert gw_sa["version"] == version
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    issuer = describe_subject(CA)
    gw_subject, carol_subject = describe_subject(GW), describe_subject(CAROL)
    for sa, mine, theirs in ((gw_sa, gw_subject, carol_subject),
                             (carol_sa, carol_subject, gw_subject)):  # fmt: skip
        local, remote = sa["auth_local"], sa["auth_remote"]
        assert (local["method"], local["subject"], local["issuer"]) == ("pubkey", mine, issuer)
        assert (remote["method"], remote["subject"], remote["issuer"]) == (
            "pubkey", theirs, issuer)  # fmt: skip
        assert local["scheme"].startswith("ecdsa") and remote["scheme"].startswith("ecdsa")
        json.dumps(sa)  # as `larval status --json` sends it
    print_status({"ike_sas": [gw_sa], "child_sas": []})
    lines = capsys.readouterr().out.splitlines()
    assert f"  local authentication: pubkey {gw_sa['auth_local']['scheme']}, {gw_subject}, " \
        f"issued by {issuer}" in lines  # fmt: skip
    assert f"  remote authentication: pubkey {gw_sa['auth_remote']['scheme']}, " \
        f"{carol_subject}, issued by {issuer}" in lines  # fmt: skip


def test_a_psk_ike_sa_shows_psk_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = Host("a", "b", "none"), Host("b", "a", "none")
    for host in (a, b):
        host.keymgr.start(0.0)
    a.keymgr.initiate("s2s", "net", 0.0)
    carry(a, b, 0.0)
    for host in (a, b):
        (sa,) = host.keymgr.status()["ike_sas"]
        assert sa["auth_local"]["method"] == sa["auth_remote"]["method"] == "psk"
        assert sa["auth_remote"]["subject"] == ""
    print_status({"ike_sas": [sa], "child_sas": []})
    out = capsys.readouterr().out
    assert "  local authentication: psk\n  remote authentication: psk\n" in out


def test_an_ike_sa_not_yet_established_has_no_authentication() -> None:
    a = Host("a", "b", "none")
    a.keymgr.start(0.0)
    a.keymgr.initiate("s2s", "net", 0.0)
    (sa,) = a.keymgr.status()["ike_sas"]
    assert sa["state"] != "established"
    assert sa["auth_local"] is None and sa["auth_remote"] is None


def test_psk_one_way_and_a_certificate_the_other(tmp_path: Path) -> None:
    """strongSwan's rw-psk-rsa-split: carol proves herself with a PSK, the gateway with
    its certificate; each end's status says which."""
    gateway_credentials(tmp_path, carol=True)
    split = {
        "gw": {
            "local": SIDES["gw"]["local"],
            "remote": {"auth": "psk", "id": "carol@example.org"},
        },
        "carol": {
            "local": {"auth": "psk", "id": "carol@example.org"},
            "remote": SIDES["carol"]["remote"],
        },
    }
    gw = CertHost("gw", "carol", tmp_path, sides=split)
    carol = CertHost("carol", "gw", tmp_path, sides=split)
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    assert gw_sa["auth_remote"]["method"] == carol_sa["auth_local"]["method"] == "psk"
    assert gw_sa["auth_local"]["method"] == carol_sa["auth_remote"]["method"] == "pubkey"
    assert carol_sa["auth_remote"]["subject"] == describe_subject(GW)


def test_auth_info_fields_in_order_rounds_nested_identity_only_for_eap() -> None:
    from larval.ike.auth_config import AuthInfo
    from larval.keymgr.manager import _auth_info

    second = AuthInfo("eap-mschapv2", identity="carol")
    first = AuthInfo("pubkey", "ecdsa-256", "CN=carol", "CN=ca", rounds=(second,))
    shown = _auth_info(first)
    assert shown == {
        "method": "pubkey",
        "scheme": "ecdsa-256",
        "subject": "CN=carol",
        "issuer": "CN=ca",
        "rounds": [
            {
                "method": "eap-mschapv2",
                "scheme": "",
                "subject": "",
                "issuer": "",
                "identity": "carol",
            }
        ],
    }
    assert list(shown) == ["method", "scheme", "subject", "issuer", "rounds"]  # type: ignore[arg-type]
    assert _auth_info(AuthInfo("psk")) == {
        "method": "psk",
        "scheme": "",
        "subject": "",
        "issuer": "",
    }
    assert _auth_info(None) is None
