"""IKEv1 XAuth and Mode Config in the daemon's configuration: a gateway's
``remote = [{ auth = "psk" }, { auth = "xauth", xauth_id = "%any" }]`` and ``pull``, a
client's XAuth round, ``[secrets.xauth-NAME]`` beside ``[secrets.eap-NAME]``, every
mistake named by file and key and never with a password; and two ISAKMP SAs made from
those words that run XAuth and Mode Config to the end."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config
from larval.ike.auth_config import XauthAuth
from larval.ike.events import ChildSaUp, IkeSaUp
from larval.ikev1.session import State
from tests.ikev1.test_remote_access import ANY, VIP, RoadWarrior
from tests.ikev1.test_session import NET_B, child, events

PASSWORD = "carol-XAuth-Password-1"
PSK = "group-psk-0123456789abc"

GATEWAY: dict[str, Any] = {
    "connections": {
        "rw": {
            "version": 1,
            "local_addrs": ["192.0.2.2"],
            "remote_addrs": ["198.51.100.7"],
            "proposals": ["aes128-sha256-ecp256"],
            "local": {"auth": "psk"},
            "remote": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": "%any"}],
            "pools": ["rw"],
            "pull": False,
            "children": {"net": {"local_ts": ["203.0.113.0/24"], "remote_ts": ["10.3.0.0/24"]}},
        }
    },
    "pools": {"rw": {"addrs": "10.3.0.0/24", "dns": ["10.3.0.53"]}},
    "secrets": {
        "ike-group": {"secret": PSK},
        "xauth-carol": {"id": "carol", "secret": PASSWORD},
        "eap-dave": {"id": "dave", "secret": "dave-Password-2"},
    },
}

CLIENT: dict[str, Any] = {
    "connections": {
        "home": {
            "version": 1,
            "local_addrs": ["198.51.100.7"],
            "remote_addrs": ["192.0.2.2"],
            "proposals": ["aes128-sha256-ecp256"],
            "local": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": "carol"}],
            "remote": {"auth": "psk"},
            "pull": False,
        }
    },
    "secrets": {
        "ike-group": {"secret": PSK},
        "xauth-carol": {"id": "carol", "secret": PASSWORD},
    },
}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.toml")
    assert PASSWORD not in str(e.value)
    return str(e.value)


def test_a_gateway_checks_every_users_xauth_password_and_pushes() -> None:
    (conn,) = parse_config(GATEWAY, "g.toml").connections
    xauth = conn.ike.remote_xauth
    assert xauth is not None and xauth.xauth_id == "%any"
    assert dict(xauth.passwords) == {"carol": PASSWORD, "dave": "dave-Password-2"}
    assert conn.ike.mode_config_push and conn.ike.local_xauth is None
    assert PASSWORD not in repr(conn)


def test_pull_is_the_default_and_a_client_gives_its_own_password() -> None:
    gateway = copy.deepcopy(GATEWAY)
    del gateway["connections"]["rw"]["pull"]
    (conn,) = parse_config(gateway, "g.toml").connections
    assert not conn.ike.mode_config_push
    (client,) = parse_config(CLIENT, "c.toml").connections
    assert client.ike.local_xauth == XauthAuth("carol", {"carol": PASSWORD})
    assert client.ike.remote_xauth is None


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["secrets"].pop("xauth-carol"),
            "c.toml: connections.home.local: the xauth round's user 'carol': no "
            "[secrets.xauth-NAME] or [secrets.eap-NAME] has id = 'carol'",
        ),
        (
            lambda d: d["connections"]["home"]["local"][1].update(xauth_id="%any"),
            "connections.home.local: the xauth round's xauth_id %any is the gateway's",
        ),
        (
            lambda d: d["connections"]["home"].update(pull="no"),
            'connections.home.pull: "no" is not',
        ),
        (
            lambda d: d["secrets"].update({"eap-carol": {"id": "carol", "secret": "x" * 20}}),
            "one secret per EAP identity",
        ),
    ],
)
def test_mistakes_are_named(edit: Any, expected: str) -> None:
    data = copy.deepcopy(CLIENT)
    edit(data)
    assert expected in _error(data)


def test_pull_is_ikev1s() -> None:
    data = copy.deepcopy(GATEWAY)
    rw = data["connections"]["rw"]
    rw.update(version=2, remote={"auth": "psk"})
    assert "connections.rw.pull: pull is IKEv1's Mode Config: set version = 1" in _error(data)


def test_two_isakmp_sas_from_these_words_run_xauth_and_mode_config_push() -> None:
    (gateway,) = parse_config(GATEWAY, "g.toml").connections
    (client,) = parse_config(CLIENT, "c.toml").connections
    vips = (ipaddress.ip_address("0.0.0.0"),)  # the road warrior asks for an address
    rw = RoadWarrior(dataclasses.replace(client.ike, vips=vips), gateway.ike)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.state is State.ESTABLISHED and rw.g.state is State.ESTABLISHED
    assert rw.c.virtual_ips == (VIP,)
    assert [type(e) for e in events(rw.c)] == [IkeSaUp, ChildSaUp]


def test_a_hybrid_gateway_is_its_certificate_then_xauth_alone() -> None:
    data = copy.deepcopy(GATEWAY)
    rw = data["connections"]["rw"]
    rw.update(local={"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
              remote={"auth": "xauth", "xauth_id": "%any"})  # fmt: skip
    config = parse_config(data, "g.toml")
    (conn,) = config.connections
    assert conn.ike.remote_xauth is not None and conn.ike.remote_xauth.xauth_id == "%any"
    assert config.cert_auth["rw"].local is not None  # resolved when the daemon starts
