"""EAP in the daemon's configuration: ``auth = "eap-mschapv2" | "eap-md5" | "eap"`` and
``eap_id`` on either side, ``[secrets.eap-NAME]`` with ``id`` and ``secret`` (one per
identity), and every mistake named by file and key, never with the password."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config
from larval.ike.auth_config import EapAuth

PASSWORD = "carol-Password-1"

GATEWAY: dict[str, Any] = {
    "connections": {
        "rw": {
            "local_addrs": ["192.0.2.1"],
            "remote_addrs": ["192.0.2.2"],
            "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
            "remote": {"auth": "eap-mschapv2", "eap_id": "%any"},
            "children": {"net": {"local_ts": ["10.1.0.0/16"]}},
        }
    },
    "secrets": {
        "eap-carol": {"id": "carol", "secret": PASSWORD},
        "eap-dave": {"id": "dave", "secret": "dave-Password-12"},
    },
}

CLIENT: dict[str, Any] = {
    "connections": {
        "home": {
            "local_addrs": ["192.0.2.2"],
            "remote_addrs": ["192.0.2.1"],
            "local": {"auth": "eap-mschapv2", "eap_id": "carol"},
            "remote": {"auth": "pubkey", "id": "vpn.example.org"},
        }
    },
    "secrets": {
        "eap-carol": {"id": "carol", "secret": PASSWORD},
        "eap-dave": {"id": "dave", "secret": "dave-Password-12"},
    },
}


def _with(base: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def test_a_gateway_knows_every_user_and_asks_the_eap_identity() -> None:
    config = parse_config(GATEWAY, "gw.toml")
    (conn,) = config.connections
    assert isinstance(conn.ike.remote_eap, EapAuth)
    assert (conn.ike.remote_eap.method, conn.ike.remote_eap.eap_id) == ("eap-mschapv2", "%any")
    assert dict(conn.ike.remote_eap.passwords) == {"carol": PASSWORD, "dave": "dave-Password-12"}
    assert conn.ike.local_eap is None and conn.ike.psk == b""
    assert "gw.pem" in config.cert_auth["rw"].local.files  # type: ignore[union-attr]
    assert PASSWORD not in repr(config) + repr(conn)


def test_a_client_takes_its_own_password_only() -> None:
    (conn,) = parse_config(CLIENT, "carol.toml").connections
    assert conn.ike.local_eap is not None
    assert conn.ike.local_eap.eap_id == "carol"
    assert dict(conn.ike.local_eap.passwords) == {"carol": PASSWORD}
    assert conn.ike.remote_eap is None


@pytest.mark.parametrize("method", ["eap-md5", "eap"])
def test_the_other_methods(method: str) -> None:
    data = _with(GATEWAY, "connections.rw.remote.auth", method)
    (conn,) = parse_config(data, "gw.toml").connections
    assert conn.ike.remote_eap is not None and conn.ike.remote_eap.method == method


def test_without_eap_id_the_gateway_expects_the_ike_identity_and_the_client_gives_it() -> None:
    data = _with(GATEWAY, "connections.rw.remote.eap_id", None)
    (conn,) = parse_config(data, "gw.toml").connections
    assert conn.ike.remote_eap is not None and conn.ike.remote_eap.eap_id is None
    data = _with(CLIENT, "connections.home.local.eap_id", None)
    data = _with(data, "connections.home.local.id", "carol")
    (conn,) = parse_config(data, "carol.toml").connections
    assert conn.ike.local_eap is not None and conn.ike.local_eap.eap_id == "carol"


def test_a_psk_gateway_is_allowed_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = _with(GATEWAY, "connections.rw.local", {"auth": "psk", "id": "vpn.example.org"})
    data = _with(data, "secrets.ike-gw", {"ids": ["vpn.example.org"],
                                          "secret": "a-gateway-psk-0123456789"})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="larval.daemon"):
        (conn,) = parse_config(data, "gw.toml").connections
    assert conn.ike.psk == b"a-gateway-psk-0123456789"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("gw.toml: connections.rw: the gateway proves itself to EAP "
                              "clients with a PSK")  # fmt: skip


@pytest.mark.parametrize(
    ("base", "path", "value", "named"),
    [
        (GATEWAY, "connections.rw.remote.auth", "eap-tls2",
         "connections.rw.remote.auth: 'eap-tls2' is not an auth method"),
        (GATEWAY, "connections.rw.remote.eap_id", 7,
         "connections.rw.remote.eap_id: 7 is not an EAP identity"),
        (GATEWAY, "connections.rw.remote.eap_id", "",
         'connections.rw.remote.eap_id: "" is not an EAP identity'),
        (GATEWAY, "connections.rw.local.eap_id", "carol",
         'connections.rw.local.eap_id: eap_id is for auth = "eap-...", not "pubkey"'),
        (GATEWAY, "connections.rw.version", 1,
         "connections.rw.remote.auth: IKEv1 authenticates both ends alike"),
        (GATEWAY, "connections.rw.local", {"auth": "eap-md5"},
         "connections.rw.remote.auth: both ends by EAP"),
        (CLIENT, "connections.home.local", {"auth": "eap-mschapv2", "eap_id": "erin"},
         "connections.home.local.eap_id: no [secrets.eap-NAME] has id = 'erin'"),
        (CLIENT, "connections.home.local", {"auth": "eap-mschapv2", "eap_id": "%any"},
         "connections.home.local.eap_id: %any is the gateway's"),
        (CLIENT, "connections.home.local.certs", ["carol.pem"],
         'connections.home.local.certs: certs are for auth = "pubkey", not "eap-mschapv2"'),
        (CLIENT, "secrets.eap-carol2", {"id": "carol", "secret": "another-Password-1"},
         "secrets.eap-carol2.id: 'carol' has a secret already, in secrets.eap-carol; "
         "one secret per EAP identity"),
        (CLIENT, "secrets.eap-carol", {"ids": ["carol"], "secret": PASSWORD},
         "secrets.eap-carol.ids: unknown key; allowed: id, secret"),
        (CLIENT, "secrets.eap-carol", {"secret": PASSWORD},
         "secrets.eap-carol.id: null is not an EAP identity"),
        (CLIENT, "secrets.eap-carol", {"id": "carol", "secret": ""},
         "secrets.eap-carol.secret: a non-empty string is needed"),
    ],
)  # fmt: skip
def test_mistakes_are_named(base: dict[str, Any], path: str, value: object, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(base, path, value), "x.toml")
    assert str(info.value).startswith(f"x.toml: {named}")
    assert PASSWORD not in str(info.value) and "another-Password-1" not in str(info.value)


def test_an_ikev1_connection_of_eap_on_both_sides_is_refused() -> None:
    data = _with(GATEWAY, "connections.rw.version", 1)
    data = _with(data, "connections.rw.local", {"auth": "eap-mschapv2"})
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.toml")
    assert "IKEv2 only" in str(info.value) or "both ends by EAP" in str(info.value)


def test_a_changed_password_is_a_changed_connection() -> None:
    """What SIGHUP compares (`larval.daemon.reload`): a new password renews it."""
    (before,) = parse_config(GATEWAY, "gw.toml").connections
    (same,) = parse_config(GATEWAY, "gw.toml").connections
    data = _with(GATEWAY, "secrets.eap-carol.secret", "carol-Password-2")
    (after,) = parse_config(data, "gw.toml").connections
    assert before == same and before != after
