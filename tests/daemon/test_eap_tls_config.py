"""EAP-TLS in the daemon's configuration: ``auth = "eap-tls"`` on a gateway's remote side
(with ``cacerts``) and on a client's local side (with ``certs``), ``auth = "eap"`` with
``cacerts`` on a gateway; the names resolved against a credentials directory made with
`larval.pki`, and every mistake named by file and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from larval.credentials import load_credentials
from larval.daemon.auth import AuthConfigError, resolve
from larval.daemon.config import ConfigError, DaemonConfig, parse_config
from larval.ike.identity import IdType
from larval.trust import TrustStore
from tests.daemon.gateway import CA, CAROL, GW, gateway_credentials, one_connection


def gateway(creds: Path, **remote: Any) -> dict[str, Any]:
    side = {"auth": "eap-tls", "eap_id": "%any", "cacerts": ["ca.pem"], **remote}
    local = {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"}
    return one_connection(creds, local, side, gateway=True)


def client(creds: Path, **local: Any) -> dict[str, Any]:
    side = {"auth": "eap-tls", "certs": ["carol.pem"], "id": "carol@example.org", **local}
    remote = {"auth": "pubkey", "id": "vpn.example.org"}
    return one_connection(creds, side, remote, gateway=False)


def resolved(config: dict[str, Any], creds: Path) -> DaemonConfig:
    return resolve(parse_config(config, "x.toml"), load_credentials(creds), "x.toml")


def test_a_gateway_serves_tls_with_its_certificate_and_trusts_the_cacerts(
    tmp_path: Path,
) -> None:
    gateway_credentials(tmp_path)
    (conn,) = resolved(gateway(tmp_path), tmp_path).connections
    eap = conn.ike.remote_eap
    assert eap is not None and (eap.method, eap.eap_id) == ("eap-tls", "%any")
    assert dict(eap.passwords) == {}  # no [secrets.eap-*] needed
    assert eap.tls is not None and eap.tls.cert.cert == GW and eap.tls.anchors == (CA,)
    assert isinstance(eap.tls.trust, TrustStore) and eap.tls.trust.anchors == (CA,)
    assert conn.ike.local_auth is not None and conn.ike.local_auth.cert.cert == GW


def test_a_client_takes_the_certificate_with_its_eap_identity_and_the_gateway_id(
    tmp_path: Path,
) -> None:
    gateway_credentials(tmp_path, carol=True)
    (conn,) = resolved(client(tmp_path), tmp_path).connections
    eap = conn.ike.local_eap
    assert eap is not None and (eap.method, eap.eap_id) == ("eap-tls", "carol@example.org")
    assert dict(eap.passwords) == {}
    assert eap.tls is not None and eap.tls.cert.cert == CAROL
    assert eap.tls.server_id == (IdType.ID_FQDN, b"vpn.example.org")
    assert eap.tls.trust is not None and conn.ike.remote_auth is not None
    assert eap.tls.trust is conn.ike.remote_auth.trust
    assert conn.ike.local_auth is None  # IKE itself: no certificate AUTH from the client


def test_auth_eap_on_a_gateway_with_cacerts_has_tls_and_the_passwords(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    config = gateway(tmp_path, auth="eap")
    config["secrets"] = {"eap-carol": {"id": "carol", "secret": "carol-Password-1"}}
    (conn,) = resolved(config, tmp_path).connections
    eap = conn.ike.remote_eap
    assert eap is not None and eap.method == "eap" and eap.tls is not None
    assert dict(eap.passwords) == {"carol": "carol-Password-1"}
    config = gateway(tmp_path, auth="eap", cacerts=None)
    (conn,) = resolved(config, tmp_path).connections
    assert conn.ike.remote_eap is not None and conn.ike.remote_eap.tls is None


def test_an_eap_tls_gateway_without_cacerts_trusts_every_ca_loaded(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    (conn,) = resolved(gateway(tmp_path, cacerts=None), tmp_path).connections
    eap = conn.ike.remote_eap
    assert eap is not None and eap.tls is not None and isinstance(eap.tls.trust, TrustStore)
    assert len(eap.tls.trust.anchors) == 2


@pytest.mark.parametrize(
    ("which", "change", "named"),
    [
        ("client", {"certs": None},
         'connections.home.local.certs: missing; auth = "eap-tls" needs this end\'s certificate'),
        ("client", {"auth": "eap-md5"},
         'connections.home.local.certs: certs are for auth = "pubkey", not "eap-md5"'),
        ("gateway", {"auth": "eap-mschapv2"},
         'connections.rw.remote.cacerts: cacerts are for auth = "pubkey", not "eap-mschapv2"'),
        ("gateway", {"certs": ["x.pem"]},
         "connections.rw.remote.certs: only the local side has certs"),
    ],
)  # fmt: skip
def test_mistakes_in_the_sides_are_named(
    tmp_path: Path, which: str, change: dict[str, Any], named: str
) -> None:
    config = (client if which == "client" else gateway)(tmp_path, **change)
    with pytest.raises(ConfigError) as info:
        parse_config(config, "x.toml")
    assert str(info.value).startswith(f"x.toml: {named}")


def test_eap_tls_needs_a_certificate_side_opposite(tmp_path: Path) -> None:
    config = client(tmp_path)
    config["connections"]["home"]["remote"] = {"auth": "psk", "id": "vpn.example.org"}
    config["secrets"] = {"ike-1": {"ids": ["vpn.example.org"], "secret": "x" * 20}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, "x.toml")
    assert str(info.value).startswith(
        "x.toml: connections.home.remote.auth: EAP-TLS: the client checks the gateway's "
        'TLS certificate by its CAs; set auth = "pubkey" here'
    )
    config = gateway(tmp_path)
    config["connections"]["rw"]["local"] = {"auth": "psk", "id": "vpn.example.org"}
    config["secrets"] = {"ike-1": {"ids": ["vpn.example.org"], "secret": "x" * 20}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, "x.toml")
    assert "connections.rw.local.auth: EAP-TLS: the gateway is the TLS server" in str(info.value)


def test_a_client_certificate_without_the_eap_identity_is_named(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    config = client(tmp_path, eap_id="dave@example.org")
    with pytest.raises(AuthConfigError) as info:
        resolved(config, tmp_path)
    (problem,) = info.value.problems
    assert problem.startswith(
        "x.toml: connections.home.local.certs: EAP identity dave@example.org is in no "
        "certificate of certs (C=CH, O=Example, CN=carol)"
    )


def test_unknown_files_are_named(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    with pytest.raises(AuthConfigError) as info:
        resolved(client(tmp_path, certs=["nobody.pem"]), tmp_path)
    assert "connections.home.local.certs[0]: 'nobody.pem' is not a loaded certificate" in str(
        info.value
    )
    with pytest.raises(AuthConfigError) as info:
        resolved(gateway(tmp_path, cacerts=["nobody.pem"]), tmp_path)
    assert "connections.rw.remote.cacerts[0]: 'nobody.pem' is not a loaded CA" in str(info.value)


def test_the_same_configuration_resolves_equal_so_a_sighup_keeps_the_connection(
    tmp_path: Path,
) -> None:
    gateway_credentials(tmp_path, carol=True)
    one = resolved(client(tmp_path), tmp_path).connections[0]
    two = resolved(copy.deepcopy(client(tmp_path)), tmp_path).connections[0]
    assert one.ike.local_eap == two.ike.local_eap


def test_every_unknown_certificate_of_a_client_is_named(tmp_path: Path) -> None:
    """An EAP-TLS client's certs are looked up as a public-key side's are: each name that
    is not loaded is a problem of its own."""
    gateway_credentials(tmp_path, carol=True)
    with pytest.raises(AuthConfigError) as info:
        resolved(client(tmp_path, certs=["nobody.pem", "carol.pem", "none.pem"]), tmp_path)
    problems = info.value.problems
    assert [p.split(": ")[1] for p in problems] == [
        "connections.home.local.certs[0]", "connections.home.local.certs[2]"
    ]  # fmt: skip
