"""Authentication rounds in the daemon's configuration (RFC 4739; IKEv1's XAuth):
``local``/``remote`` as a list of side tables or as swanctl's ``local-N`` tables, one table
staying one round, and every mistake named by file and key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config
from larval.ike.identity import IdType

PASSWORD = "carol-Password-1"
SECRETS = {"eap-carol": {"id": "carol", "secret": PASSWORD}}

#: A road warrior proving itself with its certificate, then by EAP-MSCHAPv2.
CLIENT: dict[str, Any] = {
    "connections": {
        "home": {
            "local_addrs": ["192.0.2.2"],
            "remote_addrs": ["192.0.2.1"],
            "local": [
                {"auth": "pubkey", "certs": ["carol.pem"], "id": "carol@example.org"},
                {"auth": "eap-mschapv2", "eap_id": "carol"},
            ],
            "remote": {"auth": "pubkey", "id": "vpn.example.org"},
        }
    },
    "secrets": SECRETS,
}

#: Its gateway: the client's certificate, then EAP-MSCHAPv2 for whoever it says it is.
GATEWAY: dict[str, Any] = {
    "connections": {
        "rw": {
            "local_addrs": ["192.0.2.1"],
            "remote_addrs": ["192.0.2.2"],
            "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
            "remote": [
                {"auth": "pubkey", "id": "*@example.org"},
                {"auth": "eap-mschapv2", "eap_id": "%any"},
            ],
        }
    },
    "secrets": SECRETS,
}

#: An IKEv1 client: the group PSK, then XAuth as carol.
XAUTH_CLIENT: dict[str, Any] = {
    "connections": {
        "home": {
            "version": 1,
            "local_addrs": ["192.0.2.2"],
            "remote_addrs": ["192.0.2.1"],
            "local": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": "carol"}],
            "remote": {"auth": "psk"},
        }
    },
    "secrets": {
        "ike-group": {"secret": "group-psk-0123456789"},
        "xauth-carol": {"id": "carol", "secret": PASSWORD},
    },
}


def _conn(data: dict[str, Any]) -> Any:
    (conn,) = parse_config(data, "c.toml").connections
    return conn


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.toml")
    return str(e.value)


def _edit(base: dict[str, Any], conn: str, **changes: object) -> dict[str, Any]:
    data = copy.deepcopy(base)
    entry = data["connections"][conn]
    for key, value in changes.items():
        key = key.replace("_N_", "-")
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return data


def test_one_table_is_one_round_and_the_configuration_is_as_before() -> None:
    one = _edit(CLIENT, "home", local=CLIENT["connections"]["home"]["local"][1])
    conn = _conn(one)
    assert conn.ike.local_rounds == () and conn.ike.remote_rounds == ()
    assert conn.ike.local_eap is not None and conn.ike.local_eap.eap_id == "carol"
    listed = _conn(_edit(one, "home", local=[one["connections"]["home"]["local"]]))
    assert listed == conn


def test_a_client_of_a_certificate_then_eap() -> None:
    config = parse_config(CLIENT, "c.toml")
    (conn,) = config.connections
    first, second = conn.ike.local_rounds
    assert (first.method, second.method) == ("pubkey", "eap-mschapv2")
    # The first round is the connection's own: its certificate, resolved later.
    assert config.cert_auth["home"].local is not None
    assert config.cert_auth["home"].local.files == ("carol.pem",)
    assert conn.ike.local_eap is None and first.eap is None
    assert second.eap is not None and second.eap.eap_id == "carol"
    assert dict(second.eap.passwords) == {"carol": PASSWORD}
    assert second.id is None  # the connection's identity
    (gateway,) = conn.ike.remote_rounds  # one table: the gateway has one round
    assert gateway.method == "pubkey"
    assert PASSWORD not in repr(conn)


def test_a_gateway_asks_a_certificate_then_eap() -> None:
    (conn,) = parse_config(GATEWAY, "g.toml").connections
    first, second = conn.ike.remote_rounds
    assert (first.method, second.method) == ("pubkey", "eap-mschapv2")
    assert second.eap is not None and second.eap.eap_id == "%any"
    assert dict(second.eap.passwords) == {"carol": PASSWORD}
    assert conn.ike.remote_eap is None
    assert [r.method for r in conn.ike.local_rounds] == ["pubkey"]


def test_swanctl_suffixed_tables_are_rounds_in_the_order_written() -> None:
    entry = dict(CLIENT["connections"]["home"])
    del entry["local"]
    entry["local-1"], entry["local-eap"] = CLIENT["connections"]["home"]["local"]
    data = {"connections": {"home": entry}, "secrets": SECRETS}
    assert _conn(data) == _conn(CLIENT)
    # A further round's own identity.
    entry["local-eap"] = {"auth": "eap-mschapv2", "id": "carol", "eap_id": "carol"}
    second = _conn(data).ike.local_rounds[1]
    assert second.id == (IdType.ID_FQDN, b"carol")


def test_an_eap_round_without_a_name_takes_its_identity() -> None:
    local = [{"auth": "pubkey", "certs": ["c.pem"], "id": "carol"}, {"auth": "eap-md5"}]
    second = _conn(_edit(CLIENT, "home", local=local)).ike.local_rounds[1]
    assert second.eap is not None and second.eap.eap_id == "carol"


def test_xauth_after_a_psk_is_ikev1s() -> None:
    conn = _conn(XAUTH_CLIENT)
    first, second = conn.ike.local_rounds
    assert (first.method, second.method, second.xauth_id) == ("psk", "xauth", "carol")
    assert conn.ike.psk == b"group-psk-0123456789"
    gateway = _edit(XAUTH_CLIENT, "home", local={"auth": "psk"},
                    remote=[{"auth": "psk"}, {"auth": "xauth"}])  # fmt: skip
    second = _conn(gateway).ike.remote_rounds[1]
    assert (second.method, second.xauth_id) == ("xauth", None)


def test_hybrid_xauth_against_a_certificate_is_one_round_each() -> None:
    hybrid = _edit(XAUTH_CLIENT, "home", local={"auth": "xauth", "xauth_id": "carol"},
                   remote={"auth": "pubkey", "id": "vpn.example.org"})  # fmt: skip
    conn = _conn(hybrid)
    (only,) = conn.ike.local_rounds
    assert (only.method, only.xauth_id) == ("xauth", "carol")
    assert conn.ike.psk == b""


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # XAuth is IKEv1's.
        ({"version": 2},
         "c.toml: connections.home.local[1].auth: xauth is IKEv1's: set version = 1"),
        ({"version": 0}, "connections.home.local[1].auth: xauth is IKEv1's"),
        # IKEv1: one round of its own, then XAuth only.
        ({"local": [{"auth": "psk"}, {"auth": "psk"}]},
         "connections.home.local[1].auth: IKEv1 has one round of its own, then XAuth"),
        ({"local": [{"auth": "psk"}, {"auth": "xauth"}, {"auth": "xauth"}]},
         "connections.home.local[2].auth: IKEv1 has one round of its own, then XAuth"),
        ({"local": []}, "connections.home.local: an empty list"),
        ({"local": [{"auth": "psk"}, "xauth"]},
         'connections.home.local[1]: "xauth" is not a table'),
        ({"local": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": ""}]},
         'connections.home.local[1].xauth_id: "" is not an XAuth user name'),
        ({"local": [{"auth": "psk", "xauth_id": "carol"}]},
         'connections.home.local[0].xauth_id: xauth_id is for auth = "xauth", not "psk"'),
        ({"local": [{"auth": "psk"}], "local_N_2": {"auth": "xauth"}},
         "connections.home.local-2: connections.home.local lists the rounds already"),
        ({"local": {"auth": "psk"}, "local_N_2": {"auth": "xauth", "eap_id": "x"}},
         'connections.home.local-2.eap_id: eap_id is for auth = "eap-...", not "xauth"'),
    ],
)  # fmt: skip
def test_ikev1_round_mistakes_are_named(changes: dict[str, object], expected: str) -> None:
    assert expected in _error(_edit(XAUTH_CLIENT, "home", **changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]}, {"auth": "psk"}]},
         'connections.home.local[1].auth: "psk" in round 2: a further round is EAP'),
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]}, {"auth": "xauth"}]},
         "connections.home.local[1].auth: xauth is IKEv1's"),
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]}, {"auth": "eap-mschapv2"}]},
         "connections.home.local[1].eap_id: missing: the EAP identity this end gives"),
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]},
                    {"auth": "eap-mschapv2", "eap_id": "dave"}]},
         "connections.home.local[1].eap_id: no [secrets.eap-NAME] has id = 'dave'"),
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]},
                    {"auth": "eap-mschapv2", "eap_id": "%any"}]},
         "connections.home.local[1].eap_id: %any is the gateway's"),
        ({"local": [{"auth": "pubkey", "cacerts": ["c.pem"]}, {"auth": "eap-md5"}]},
         "connections.home.local[0].cacerts: only the remote side has cacerts"),
        ({"local": [{"auth": "pubkey", "certs": ["c.pem"]}, {"auth": "eap-md5", "id": "%any"}]},
         "connections.home.local[1].id: "),
        ({"local": None, "local_N_1": {"auth": "pubkey", "certs": ["c.pem"]},
          "local_N_x": {"auth": "eap-md5", "certs": ["c.pem"]}},
         'connections.home.local-x.certs: certs are for auth = "pubkey"'),
        ({"version": 0},
         "connections.home.local[1]: more than one round needs one IKE version"),
        ({"local": [{"auth": "eap-md5", "eap_id": "carol"}, {"auth": "eap-mschapv2"}]},
         "connections.home.local[0].auth: the first of several rounds is a certificate"),
    ],
)  # fmt: skip
def test_ikev2_round_mistakes_are_named(changes: dict[str, object], expected: str) -> None:
    text = _error(_edit(CLIENT, "home", **changes))
    assert expected in text
    assert PASSWORD not in text


# -- EAP-MSCHAPv2 retries (RFC 2759 §6) ------------------------------------------------------


def test_a_gateway_lets_mschapv2_clients_retry_as_configured() -> None:
    one = _edit(GATEWAY, "rw", remote={"auth": "eap-mschapv2", "eap_id": "%any",
                                       "eap_retries": 2})  # fmt: skip
    assert _conn(one).ike.remote_eap.retries == 2
    rounds = _edit(GATEWAY, "rw", remote=[{"auth": "pubkey"},
                                          {"auth": "eap-mschapv2", "eap_retries": 1}])  # fmt: skip
    assert _conn(rounds).ike.remote_rounds[1].eap.retries == 1
    assert _conn(GATEWAY).ike.remote_rounds[1].eap.retries == 0  # none unless configured


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ({"auth": "eap-mschapv2", "eap_retries": 6},
         "connections.rw.remote.eap_retries: 6 is above the maximum 5"),
        ({"auth": "eap-mschapv2", "eap_retries": True},
         "connections.rw.remote.eap_retries: true is not "),
        ({"auth": "eap-md5", "eap_retries": 1},
         "connections.rw.remote.eap_retries: EAP-MD5 has no retry"),
        ({"auth": "pubkey", "eap_retries": 1},
         'connections.rw.remote.eap_retries: eap_retries is for auth = "eap-...", not "pubkey"'),
    ],
)  # fmt: skip
def test_eap_retries_mistakes_are_named(remote: dict[str, object], expected: str) -> None:
    assert expected in _error(_edit(GATEWAY, "rw", remote=remote))


def test_eap_retries_are_the_gateways() -> None:
    local = {"auth": "eap-mschapv2", "eap_id": "carol", "eap_retries": 1}
    text = _error(_edit(CLIENT, "home", local=local))
    assert "connections.home.local.eap_retries: the gateway's (remote side)" in text
