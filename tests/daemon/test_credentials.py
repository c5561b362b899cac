"""`[daemon] credentials = DIR`: read from the file, loaded by `larval run` before anything
opens, and a problem stops the start with every line shown."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from larval.credentials import load_credentials
from larval.daemon.config import ConfigError, parse_config
from larval.daemon.ike_daemon import IkeDaemon
from tests.badinput import write_private
from tests.credentials.files import (
    DER,
    P256,
    P384,
    PASSPHRASE,
    PEM,
    certificate,
    write,
    write_cert,
    write_key,
)

CONNECTION = """
[connections.s2s]
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.2"]
"""


def config_text(tmp: Path, credentials: Path, extra: str = "") -> str:
    return (
        f'[daemon]\naddresses = ["127.0.0.1"]\ncontrol_socket = "{tmp / "control"}"\n'
        f'credentials = "{credentials}"\n'
        f'\n[secrets.private-dave]\nsecret = "{PASSPHRASE.decode()}"\n' + extra
    )


def test_the_directory_and_the_key_passphrases_are_read(tmp_path: Path) -> None:
    config = parse_config(tomllib.loads(config_text(tmp_path, tmp_path / "creds")), "l.toml")
    assert config.credentials == str(tmp_path / "creds")
    assert config.key_passphrases == {"dave": PASSPHRASE}
    assert PASSPHRASE.decode() not in repr(config)


def test_a_key_passphrase_is_never_a_psk(tmp_path: Path) -> None:
    text = config_text(tmp_path, tmp_path / "creds", CONNECTION)
    with pytest.raises(ConfigError) as refused:
        parse_config(tomllib.loads(text), "l.toml")
    assert "no [secrets] entry holds a PSK for 127.0.0.2" in str(refused.value)


def test_larval_run_loads_the_directory_with_the_passphrases(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    write_key(creds, "pkcs8/dave.pem", P384, passphrase=PASSPHRASE)
    write_cert(creds, "x509/dave.pem", certificate("dave", P384))
    path = write_private(tmp_path / "larval.toml", config_text(tmp_path, creds))
    daemon = IkeDaemon(str(path))
    (pair,) = daemon.credentials.certs
    assert (pair.path, pair.key.path) == ("x509/dave.pem", "pkcs8/dave.pem")


def test_larval_run_with_credential_problems_prints_every_line_and_exits_2(
    tmp_path: Path,
) -> None:
    creds = tmp_path / "creds"
    write_key(creds, "private/gw.pem", P256)
    (creds / "private" / "gw.pem").chmod(0o644)
    write(creds, "x509ca/ca.pem", b"junk")
    write_key(creds, "pkcs8/dave.pem", P384, passphrase=b"another passphrase")
    path = write_private(tmp_path / "larval.toml", config_text(tmp_path, creds))
    result = subprocess.run(
        [sys.executable, "-m", "larval", "run", "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"larval: credentials in {creds}: 3 problems" in result.stderr
    for line in (
        "  pkcs8/dave.pem: wrong passphrase ([secrets.private-dave])",
        "  private/gw.pem: mode 0644, readable by group or others; chmod 600 it",
        "  x509ca/ca.pem: not an X.509 certificate (PEM or DER)",
    ):
        assert line in result.stderr.splitlines()
    assert PASSPHRASE.decode() not in result.stderr
    assert not (tmp_path / "control").exists()  # nothing was opened


def test_each_ca_certificate_is_named_by_its_file(tmp_path: Path) -> None:
    """What a connection's ``cacerts`` is resolved with: a PEM bundle names each of its
    certificates, in the order they were loaded."""
    ca, other = certificate("CA", P256, ca=True), certificate("Other", P384, ca=True)
    write(tmp_path, "x509ca/bundle.pem", ca.public_bytes(PEM) + other.public_bytes(PEM))
    write_cert(tmp_path, "x509ca/a.der", ca, DER)
    loaded = load_credentials(tmp_path)
    assert loaded.cacert_paths == ("x509ca/a.der", "x509ca/bundle.pem", "x509ca/bundle.pem")
    assert loaded.cacerts == (ca, ca, other)
