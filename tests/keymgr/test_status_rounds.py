"""Authentication rounds from the configuration file to status (RFC 4739): two key
managers in memory, carol with ``local = [{ auth = "pubkey", certs = ["carol.pem"] },
{ auth = "eap-mschapv2", eap_id = "carol" }]`` and a gateway with the same two rounds as
its ``remote``; status shows both rounds on both ends, and a wrong password in the
second installs nothing."""

from __future__ import annotations

import dataclasses
import ipaddress
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
from tests.daemon.gateway import CAROL, GW, gateway_credentials
from tests.keymgr.test_manager import Host, carry

OUTER = {"gw": "192.0.2.1", "carol": "192.0.2.2"}
PASSWORD = "carol-Password-1"
SIDES: dict[str, dict[str, Any]] = {
    "gw": {
        "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
        "remote": [
            {"auth": "pubkey", "id": "*@example.org"},
            {"auth": "eap-mschapv2", "eap_id": "%any"},
        ],
    },
    "carol": {
        "local": [
            {"auth": "pubkey", "certs": ["carol.pem"], "id": "carol@example.org"},
            {"auth": "eap-mschapv2", "eap_id": "carol"},
        ],
        "remote": {"auth": "pubkey", "id": "vpn.example.org"},
    },
}


class RoundsHost(Host):
    """A key manager and its stack for `me`, from a configuration file's words; `extra`
    adds to its connection, `top` to the file, `vips` are asked for in IKE_AUTH."""

    def __init__(self, me: str, peer: str, creds: Path, password: str = PASSWORD, *,
                 extra: dict[str, Any] | None = None, top: dict[str, Any] | None = None,
                 vips: tuple[str, ...] = ()) -> None:  # fmt: skip
        connection = {
            "local_addrs": [OUTER[me]],
            "remote_addrs": [OUTER[peer]],
            "proposals": ["aes128gcm16-prfsha256-x25519"],
            **SIDES[me],
            "children": {"net": {"esp_proposals": ["aes128gcm16"]}},
            **(extra or {}),
        }
        data = {
            "daemon": {"credentials": str(creds)},
            "connections": {"home": connection},
            "secrets": {"eap-carol": {"id": "carol", "secret": password}},
            **(top or {}),
        }
        config = parse_config(data, f"{me}.toml")
        config = resolve(config, load_credentials(creds), f"{me}.toml")
        asked = tuple(ipaddress.ip_address(v) for v in vips)
        conns = [dataclasses.replace(c, ike=dataclasses.replace(c.ike, vips=asked))
                 for c in config.connections]  # fmt: skip
        self.addr = conns[0].ike.local_addr
        self.node = Node(conns, pools=config.pools)
        self.stack = self.node.stack
        for policy in config.policies:
            self.stack.spd.add(policy)


def _hosts(tmp_path: Path, password: str = PASSWORD) -> tuple[RoundsHost, RoundsHost]:
    gateway_credentials(tmp_path, carol=True)
    gw = RoundsHost("gw", "carol", tmp_path)
    carol = RoundsHost("carol", "gw", tmp_path, password)
    for host in (gw, carol):
        host.keymgr.start(0.0)
    return gw, carol


def test_status_shows_the_certificate_round_then_the_eap_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw, carol = _hosts(tmp_path)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    remote = gw_sa["auth_remote"]
    assert (remote["method"], remote["subject"]) == ("pubkey", describe_subject(CAROL))
    assert remote["rounds"] == [{"method": "eap-mschapv2", "scheme": "", "subject": "",
                                 "issuer": "", "identity": "carol"}]  # fmt: skip
    assert carol_sa["auth_local"] == remote
    assert "rounds" not in carol_sa["auth_remote"]  # the gateway's one round
    assert carol_sa["auth_remote"]["subject"] == describe_subject(GW)
    assert len(gw.keymgr.status()["child_sas"]) == len(carol.keymgr.status()["child_sas"]) == 1
    print_status({"ike_sas": [gw_sa], "child_sas": []})
    out = capsys.readouterr().out
    assert f"{describe_subject(CAROL)}, issued by " in out
    assert "; then eap-mschapv2 carol\n" in out
    assert PASSWORD not in repr(gw.keymgr.status()) + repr(carol.keymgr.status())


def test_a_wrong_password_in_the_second_round_installs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gw, carol = _hosts(tmp_path, password="not-Her-Password")
    with caplog.at_level(logging.DEBUG):
        carol.keymgr.initiate("home", "net", 0.0)
        carry(carol, gw, 0.0)
    for host in (gw, carol):
        status = host.keymgr.status()
        assert not [s for s in status["ike_sas"] if s["state"] == "established"]
        assert status["child_sas"] == []
    assert len(gw.stack.sadb) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "wrong password for user 'carol'" in w]
    assert PASSWORD not in caplog.text and "not-Her-Password" not in caplog.text


def test_the_lease_is_the_eap_identitys_of_the_last_round(tmp_path: Path) -> None:
    """carol proves carol@example.org by certificate, then "carol" by EAP; the address
    reserved for "carol" is hers, and her CHILD_SA's TSi is narrowed to it."""
    gateway_credentials(tmp_path, carol=True)
    net = {"esp_proposals": ["aes128gcm16"]}
    pools = {"rw": {"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.9"}}}
    gw = RoundsHost("gw", "carol", tmp_path, top={"pools": pools}, extra={
        "pools": ["rw"],
        "children": {"net": {**net, "local_ts": ["203.0.113.0/24"],
                             "remote_ts": ["10.3.0.0/16"]}}})  # fmt: skip
    carol = RoundsHost("carol", "gw", tmp_path, vips=("0.0.0.0",), extra={
        "children": {"net": {**net, "local_ts": ["0.0.0.0/0"],
                             "remote_ts": ["203.0.113.0/24"]}}})  # fmt: skip
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    assert carol_sa["virtual_ips"] == gw_sa["virtual_ips"] == ["10.3.0.9"]
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert [lease["identity"] for lease in pool["online"]] == ["carol"]
    (child,) = gw.keymgr.status()["child_sas"]
    assert child["remote_ts"] == ["10.3.0.9/32"]
