"""SIGHUP with certificates: the credentials directory is loaded again and the
connections resolved against it, so that a new CRL or CA applies to the IKE SAs set up
from then on; credentials that do not load keep the running ones, every line logged."""

from __future__ import annotations

import copy
import datetime
import logging
from pathlib import Path
from typing import Any

import pytest

from larval.daemon.ike_daemon import IkeDaemon
from larval.ike.auth_config import TrustError
from larval.ike.identity import IdType
from tests.badinput import write_private
from tests.credentials.files import write
from tests.daemon.gateway import CAROL, gateway_credentials, toml_text

CAROL_ID = (IdType.ID_RFC822_ADDR, b"carol@example.org")
CONFIG: dict[str, Any] = {
    "connections": {
        "home": {
            "local_addrs": ["127.0.0.1"],
            "remote_addrs": ["127.0.0.2"],
            "local": {"auth": "pubkey", "certs": ["gw.pem"]},
            "remote": {"auth": "pubkey", "cacerts": ["ca.pem"]},
        }
    }
}


def gateway(tmp_path: Path) -> tuple[IkeDaemon, Path]:
    creds = tmp_path / "creds"
    gateway_credentials(creds)
    config = {"daemon": {"credentials": str(creds)}, **CONFIG}
    path = write_private(tmp_path / "gw.toml", toml_text(config, tmp_path))
    return IkeDaemon(str(path)), creds


def trusts_carol(daemon: IkeDaemon) -> bool:
    remote = daemon.keymgr.connections["home"].ike.remote_auth
    assert remote is not None
    try:
        remote.trust.verify(CAROL, (), CAROL_ID, datetime.datetime.now(datetime.UTC))
    except TrustError:
        return False
    return True


def test_a_new_crl_applies_after_sighup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon, creds = gateway(tmp_path)
    assert trusts_carol(daemon)
    before = daemon.keymgr.connections["home"]
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert daemon.keymgr.connections["home"] is before  # nothing new: the same connection
    assert "nothing changed" in caplog.text
    gateway_credentials(creds).crl([CAROL])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert "connections changed home" in caplog.text
    assert daemon.keymgr.connections["home"] is not before
    assert not trusts_carol(daemon)
    assert len(daemon.credentials.crls) == 1


def test_credentials_that_do_not_load_keep_the_running_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, creds = gateway(tmp_path)
    before, credentials = daemon.keymgr.connections["home"], daemon.credentials
    write(creds, "x509crl/ca.crl", b"junk")
    (creds / "private" / "gw.pem").chmod(0o640)
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"reload refused: credentials in {creds}: 3 problems",
        "reload refused: private/gw.pem: mode 0640, readable by group or others; chmod 600 it",
        "reload refused: x509crl/ca.crl: not an X.509 CRL (PEM or DER)",
        "reload refused: x509/gw.pem: no private key loaded for this certificate "
        "(CN=vpn.example.org,O=Example,C=CH)",
    ]
    assert "configuration reloaded" not in caplog.text
    assert daemon.keymgr.connections["home"] is before and daemon.credentials is credentials
    assert trusts_carol(daemon)


def test_a_certificate_gone_from_the_directory_keeps_the_running_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, creds = gateway(tmp_path)
    before = daemon.keymgr.connections["home"]
    (creds / "x509ca" / "ca.pem").unlink()
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    path = tmp_path / "gw.toml"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"reload refused: {path}: 1 problem with the certificates of its connections",
        f"reload refused: {path}: connections.home.remote.cacerts[0]: 'ca.pem' is not a "
        "loaded CA certificate (loaded: x509ca/other.pem)",
    ]
    assert daemon.keymgr.connections["home"] is before


def test_other_cacerts_with_the_same_credentials_apply_after_sighup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, creds = gateway(tmp_path)
    before = daemon.keymgr.connections["home"]
    config = {"daemon": {"credentials": str(creds)}, **copy.deepcopy(CONFIG)}
    config["connections"]["home"]["remote"] = {"auth": "pubkey", "cacerts": ["other.pem"]}
    write_private(tmp_path / "gw.toml", toml_text(config, tmp_path))
    with caplog.at_level(logging.INFO, logger="larval"):
        daemon.reload()
    assert "connections changed home" in caplog.text
    assert daemon.keymgr.connections["home"] is not before
    assert not trusts_carol(daemon)  # carol's CA is no longer the one trusted
