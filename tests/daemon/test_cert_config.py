"""Certificates in the daemon's configuration: swanctl's ``auth``, ``id``, ``certs``,
``cacerts``, ``send_cert`` and ``send_certreq`` read, every mistake named by file and key,
and the names resolved against a credentials directory made with `larval.pki`."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from larval.credentials import load_credentials
from larval.daemon.auth import AuthConfigError, load_and_resolve, resolve
from larval.daemon.config import ConfigError, DaemonConfig, parse_config
from larval.ike.identity import IdType, cert_matches_identity
from larval.pki import key_ids
from larval.trust import TrustStore
from tests.badinput import write_private
from tests.daemon.gateway import CA, CAROL, GW, OTHER_CA, gateway_credentials, toml_text

HOME: dict[str, Any] = {
    "version": 2,
    "local_addrs": ["192.0.2.1"],
    "remote_addrs": ["192.0.2.2"],
    "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
    "remote": {"auth": "pubkey", "id": "carol@example.org", "cacerts": ["ca.pem"]},
}


def data(creds: Path | None = Path("/creds"), **home: Any) -> dict[str, Any]:
    """A configuration with the one connection `home`, its keys replaced by `home`'s
    (None: removed)."""
    conn = copy.deepcopy(HOME)
    for key, value in home.items():
        if value is None:
            conn.pop(key, None)
        else:
            conn[key] = value
    daemon = {"credentials": str(creds)} if creds is not None else {}
    return {"daemon": daemon, "connections": {"home": conn}}


def side(which: str, **keys: Any) -> dict[str, Any]:
    """HOME's `which` side with `keys` replaced (None: removed)."""
    table = dict(HOME[which])
    for key, value in keys.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(config, "gw.toml")
    return str(info.value)


# -- reading the file -------------------------------------------------------------------


def test_the_example_reads_without_a_psk_and_without_reading_a_file() -> None:
    config = parse_config(data(creds=Path("/nowhere")), "gw.toml")
    (conn,) = config.connections
    assert conn.ike.psk == b"" and conn.ike.remote_id == (IdType.ID_RFC822_ADDR,
                                                          b"carol@example.org")  # fmt: skip
    assert conn.ike.local_id == (IdType.ID_FQDN, b"vpn.example.org")
    cert_auth = config.cert_auth["home"]
    assert cert_auth.local is not None and cert_auth.local.files == ("gw.pem",)
    assert cert_auth.remote is not None and cert_auth.remote.files == ("ca.pem",)
    assert (cert_auth.send_cert, cert_auth.send_certreq) == ("ifasked", True)  # strongSwan's


def test_send_cert_and_send_certreq() -> None:
    config = parse_config(data(send_cert="always", send_certreq=False), "gw.toml")
    assert (config.cert_auth["home"].send_cert, config.cert_auth["home"].send_certreq) == (
        "always",
        False,
    )


def test_auth_words_become_schemes() -> None:
    config = parse_config(
        data(local=side("local", auth="ecdsa-sha384"), remote=side("remote", auth="rsa/pss")),
        "gw.toml",
    )
    cert_auth = config.cert_auth["home"]
    assert cert_auth.local is not None and cert_auth.local.schemes == ("ecdsa-sha384",)
    assert cert_auth.remote is not None
    assert cert_auth.remote.schemes == ("rsa/pss-sha256", "rsa/pss-sha384", "rsa/pss-sha512")


def test_a_remote_side_without_id_is_anyone() -> None:
    (conn,) = parse_config(data(remote=side("remote", id=None)), "gw.toml").connections
    match = conn.ike.remote_id_match
    assert conn.ike.remote_id is None and match is not None
    assert match(IdType.ID_FQDN, b"anyone.example.net")
    assert match(IdType.ID_RFC822_ADDR, b"carol@example.org")


def test_a_wildcard_remote_id_is_a_match_not_an_id() -> None:
    (conn,) = parse_config(data(remote=side("remote", id="*.example.org")),
                           "gw.toml").connections  # fmt: skip
    match = conn.ike.remote_id_match
    assert conn.ike.remote_id is None and match is not None
    assert match(IdType.ID_FQDN, b"carol.example.org")
    assert not match(IdType.ID_FQDN, b"carol.example.net")


def test_a_dn_identity_reads_as_a_dn() -> None:
    (conn,) = parse_config(
        data(remote=side("remote", id="C=CH, O=Example, CN=carol")), "gw.toml"
    ).connections
    assert conn.ike.remote_id is not None and conn.ike.remote_id[0] == IdType.ID_DER_ASN1_DN
    assert cert_matches_identity(CAROL, *conn.ike.remote_id)
    assert not cert_matches_identity(GW, *conn.ike.remote_id)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"local": side("local", auth="pubkey-md5")}, "connections.home.local.auth",
         "is not an auth method: psk, or one of pubkey"),
        ({"remote": side("remote", auth=7)}, "connections.home.remote.auth", "not an auth"),
        ({"remote": side("remote", certs=["gw.pem"])}, "connections.home.remote.certs",
         "only the local side has certs"),
        ({"local": side("local", cacerts=["ca.pem"])}, "connections.home.local.cacerts",
         "only the remote side has cacerts"),
        ({"local": side("local", auth="psk")}, "connections.home.local.certs",
         'certs are for auth = "pubkey", not "psk"'),
        ({"remote": side("remote", auth="psk")}, "connections.home.remote.cacerts",
         'cacerts are for auth = "pubkey", not "psk"'),
        ({"local": side("local", certs=[3])}, "connections.home.local.certs[0]", "not a string"),
        ({"remote": side("remote", cacerts=[])}, "connections.home.remote.cacerts",
         "non-empty list"),
        ({"send_cert": "sometimes"}, "connections.home.send_cert",
         "not one of ifasked, always, never"),
        ({"send_certreq": "yes"}, "connections.home.send_certreq", "not true or false"),
        ({"local": side("local", id="%any")}, "connections.home.local.id", "one exact ID"),
        ({"local": side("local", id="*.example.org")}, "connections.home.local.id",
         "one exact ID"),
        ({"local": side("local", colour="blue")}, "connections.home.local.colour",
         "unknown key; allowed: auth, id, certs, cacerts"),
    ],
)  # fmt: skip
def test_mistakes_name_file_and_key(change: dict[str, Any], key: str, words: str) -> None:
    message = refused(data(**change))
    assert message.startswith(f"gw.toml: {key}: ") and words in message


@pytest.mark.parametrize("version", [1, 0])
def test_ikev1_refuses_a_psk_side_with_a_pubkey_side(version: int) -> None:
    config = data(version=version, local={"auth": "psk"})
    config["secrets"] = {"ike": {"secret": "0123456789abcdef0123"}}
    message = refused(config)
    assert message.startswith("gw.toml: connections.home.remote.auth: IKEv1")
    assert "local is psk, remote pubkey" in message
    # One method for both: IKEv1 with certificates both ways reads.
    assert parse_config(data(version=1), "gw.toml").connections[0].version == 1


def test_a_psk_side_still_needs_its_secret() -> None:
    """strongSwan's rw-psk-rsa-split: this end proves itself with a PSK, the peer with
    a certificate; the PSK is this end's, found by its identity, and the PSK rules are
    today's, short_psk and all."""
    config = data(local={"auth": "psk", "id": "192.0.2.1"})
    assert refused(config) == (
        "gw.toml: connections.home.local.id: no [secrets] entry holds a PSK for 192.0.2.1"
    )
    config["secrets"] = {"peer": {"ids": ["carol@example.org"], "secret": "0123456789abcdef"},
                         "ike": {"ids": ["192.0.2.1"], "secret": "short"}}  # fmt: skip
    assert "secrets.ike.secret: 5 bytes" in refused(config)
    config["connections"]["home"]["short_psk"] = True
    (conn,) = parse_config(config, "gw.toml").connections
    assert conn.ike.psk == b"short"
    assert parse_config(config, "gw.toml").cert_auth["home"].local is None


def test_psk_connections_are_as_before() -> None:
    config = {
        "connections": {"s2s": {"local_addrs": ["192.0.2.1"], "remote_addrs": ["192.0.2.2"]}},
        "secrets": {"ike": {"secret": "0123456789abcdef0123"}},
    }
    parsed = parse_config(config, "gw.toml")
    (conn,) = parsed.connections
    assert parsed.cert_auth == {} and conn.ike.local_auth is None and conn.ike.remote_auth is None
    assert conn.ike.remote_id == (IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 2]))
    match = conn.ike.remote_id_match
    assert match is not None and match(IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 2]))
    assert not match(IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 3]))


def test_a_dn_remote_id_matches_the_same_name_in_other_string_types() -> None:
    # identity() writes O and CN as PrintableString where it can; cryptography, and so
    # larval pki, writes UTF8String: the same name, other octets.
    config = {
        "connections": {"s2s": {"local_addrs": ["192.0.2.1"], "remote_addrs": ["192.0.2.2"],
                                "remote": {"id": "C=CH, O=Example, CN=moon"}}},
        "secrets": {"ike": {"secret": "0123456789abcdef0123"}},
    }  # fmt: skip
    (conn,) = parse_config(config, "gw.toml").connections
    utf8 = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "moon")]).public_bytes()  # fmt: skip
    assert conn.ike.remote_id is not None and conn.ike.remote_id[1] != utf8
    match = conn.ike.remote_id_match
    assert match is not None and match(IdType.ID_DER_ASN1_DN, utf8)
    other = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                       x509.NameAttribute(NameOID.COMMON_NAME, "sun")]).public_bytes()  # fmt: skip
    assert not match(IdType.ID_DER_ASN1_DN, other)


# -- resolving against the credentials ----------------------------------------------------


def resolved(config: dict[str, Any], creds: Path) -> DaemonConfig:
    return resolve(parse_config(config, "gw.toml"), load_credentials(creds), "gw.toml")


def test_the_names_resolve_to_the_certificate_and_the_trusted_ca(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    (conn,) = resolved(data(tmp_path), tmp_path).connections
    local, remote = conn.ike.local_auth, conn.ike.remote_auth
    assert local is not None and local.cert.cert == GW and local.cert.path == "x509/gw.pem"
    assert local.send_cert == "ifasked" and local.schemes == ()  # "pubkey": the key's own
    assert conn.ike.local_id == (IdType.ID_FQDN, b"vpn.example.org")
    assert remote is not None and isinstance(remote.trust, TrustStore)
    assert remote.send_certreq and "rsa-sha1" not in remote.schemes
    # cacerts = ["ca.pem"]: only that CA is asked for and trusted, not the other one.
    assert remote.trust.certreq_keyids() == (_keyid(CA),)


def _keyid(cert: x509.Certificate) -> bytes:
    return key_ids(cert.public_key())[0]


def test_without_cacerts_every_loaded_ca_is_trusted(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    (conn,) = resolved(data(tmp_path, remote=side("remote", cacerts=None)), tmp_path).connections
    assert conn.ike.remote_auth is not None
    assert set(conn.ike.remote_auth.trust.certreq_keyids()) == {_keyid(CA), _keyid(OTHER_CA)}


def test_a_local_side_without_id_is_its_certificates_subject_dn(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    config = data(tmp_path, local=side("local", id=None))
    assert parse_config(config, "gw.toml").connections[0].ike.local_auth is None  # not yet
    (conn,) = resolved(config, tmp_path).connections
    assert conn.ike.local_id == (IdType.ID_DER_ASN1_DN, GW.subject.public_bytes())


def test_an_absolute_path_names_a_loaded_file(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    config = data(
        tmp_path,
        local=side("local", certs=[str(tmp_path / "x509" / "gw.pem")]),
        remote=side("remote", cacerts=[str(tmp_path / "x509ca" / "other.pem")]),
    )
    (conn,) = resolved(config, tmp_path).connections
    assert conn.ike.local_auth is not None and conn.ike.local_auth.cert.cert == GW
    assert conn.ike.remote_auth is not None
    assert conn.ike.remote_auth.trust.certreq_keyids() == (_keyid(OTHER_CA),)


def test_every_problem_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    config = data(tmp_path, local=side("local", certs=["gw.pem", "moon.pem"]),
                  remote=side("remote", cacerts=["ca.pem", "root.pem"]))  # fmt: skip
    config["connections"]["road"] = dict(HOME, local=side("local", id="sun.example.org"))
    with pytest.raises(AuthConfigError) as info:
        resolved(config, tmp_path)
    assert info.value.problems == (
        "gw.toml: connections.home.local.certs[1]: 'moon.pem' is not a loaded certificate "
        "(loaded: x509/gw.pem)",
        "gw.toml: connections.home.remote.cacerts[1]: 'root.pem' is not a loaded CA "
        "certificate (loaded: x509ca/ca.pem, x509ca/other.pem)",
        "gw.toml: connections.road.local.id: sun.example.org is in no certificate of certs "
        "(C=CH, O=Example, CN=vpn.example.org); a peer would refuse it",
    )
    assert str(info.value).startswith("gw.toml: 3 problems with the certificates")


def test_a_local_pubkey_side_names_its_certificate(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    with pytest.raises(AuthConfigError) as info:
        resolved(data(tmp_path, local=side("local", certs=None)), tmp_path)
    assert info.value.problems == (
        "gw.toml: connections.home.local.certs: missing; name this end's certificate "
        "(loaded: x509/gw.pem)",
    )


def test_certificates_without_a_credentials_directory(tmp_path: Path) -> None:
    config = parse_config(data(creds=None), "gw.toml")
    with pytest.raises(AuthConfigError) as info:
        load_and_resolve(config, "gw.toml")
    assert info.value.problems == tuple(
        f"gw.toml: connections.home.{end}.auth: a certificate needs [daemon] credentials = DIR, "
        "and none is configured"
        for end in ("local", "remote")
    )


def test_no_ca_loaded_for_a_remote_pubkey_side(tmp_path: Path) -> None:
    gateway_credentials(tmp_path)
    for name in ("ca.pem", "other.pem"):
        (tmp_path / "x509ca" / name).unlink()
    with pytest.raises(AuthConfigError) as info:
        resolved(data(tmp_path, remote=side("remote", cacerts=None)), tmp_path)
    assert info.value.problems == (
        "gw.toml: connections.home.remote.auth: no CA certificate is loaded (x509ca/ is empty): "
        "no peer certificate could be trusted",
    )


def test_larval_run_refuses_to_start_with_every_problem_and_exits_2(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    gateway_credentials(creds)
    config = data(creds, local=side("local", certs=["moon.pem"]),
                  remote=side("remote", cacerts=["root.pem"]))  # fmt: skip
    path = write_private(tmp_path / "gw.toml", toml_text(config, tmp_path))
    assert tomllib.loads(path.read_text())["connections"]["home"]["local"]["certs"] == ["moon.pem"]
    result = subprocess.run(
        [sys.executable, "-m", "larval", "run", "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        f"larval: {path}: 2 problems with the certificates of its connections",
        f"  {path}: connections.home.local.certs[0]: 'moon.pem' is not a loaded certificate "
        "(loaded: x509/gw.pem)",
        f"  {path}: connections.home.remote.cacerts[0]: 'root.pem' is not a loaded CA "
        "certificate (loaded: x509ca/ca.pem, x509ca/other.pem)",
    ]
    assert not (tmp_path / "control").exists()  # nothing was opened


def test_of_several_certs_the_one_carrying_the_id_is_used(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    config = data(tmp_path, local=side("local", certs=["carol.pem", "gw.pem"]))
    (conn,) = resolved(config, tmp_path).connections
    assert conn.ike.local_auth is not None and conn.ike.local_auth.cert.cert == GW
    # Without an id, the first named, and its subject DN is this end's identity.
    (conn,) = resolved(data(tmp_path, local=side("local", certs=["carol.pem", "gw.pem"],
                                                 id=None)), tmp_path).connections  # fmt: skip
    assert conn.ike.local_auth is not None and conn.ike.local_auth.cert.cert == CAROL
    assert conn.ike.local_id == (IdType.ID_DER_ASN1_DN, CAROL.subject.public_bytes())
