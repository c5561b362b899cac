"""A gateway's credentials directory made with `larval.pki` (a CA, the gateway's and
carol's certificates with their keys, a CRL writer) and its configuration in TOML."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from larval import pki
from tests.credentials.files import PEM, write, write_cert, write_key

NOW = datetime.datetime.now(datetime.UTC)
# ECDSA P-256 throughout: quick to make, and a key every part of larval takes.
CA_KEY = pki.generate_key("ecdsa")
GW_KEY = pki.generate_key("ecdsa")
CAROL_KEY = pki.generate_key("ecdsa")
OTHER_CA_KEY = pki.generate_key("ecdsa")


def _ca(dn: str, key: pki.PrivateKey) -> x509.Certificate:
    request = pki.CertRequest(pki.parse_dn(dn), ca=True)
    return pki.make_certificate(request, key.public_key(), key, now=NOW)


def _issue(dn: str, sans: Sequence[str], key: pki.PrivateKey) -> x509.Certificate:
    request = pki.CertRequest(pki.parse_dn(dn), sans=[pki.parse_san(s) for s in sans])
    return pki.make_certificate(request, key.public_key(), CA_KEY, CA, now=NOW)


CA = _ca("C=CH, O=Example, CN=Example CA", CA_KEY)
OTHER_CA = _ca("C=CH, O=Other, CN=Other CA", OTHER_CA_KEY)
GW = _issue("C=CH, O=Example, CN=vpn.example.org", ["vpn.example.org"], GW_KEY)
CAROL = _issue("C=CH, O=Example, CN=carol", ["carol@example.org"], CAROL_KEY)


@dataclass(frozen=True)
class Pki:
    root: Path

    def crl(self, revoked: Sequence[x509.Certificate] = ()) -> None:
        """Write (or replace) the CA's CRL in ``x509crl/``."""
        crl = pki.make_crl(CA, CA_KEY, revoked, reason="key-compromise", now=NOW)
        write(self.root, "x509crl/ca.crl", crl.public_bytes(PEM), mode=0o644)


def gateway_credentials(root: Path, *, carol: bool = False) -> Pki:
    """The gateway's directory: its certificate and key, the CA and another CA; with
    `carol`, carol's certificate and key as well (for the other end)."""
    write_cert(root, "x509ca/ca.pem", CA)
    write_cert(root, "x509ca/other.pem", OTHER_CA)
    write_cert(root, "x509/gw.pem", GW)
    write_key(root, "private/gw.pem", GW_KEY)
    if carol:
        write_cert(root, "x509/carol.pem", CAROL)
        write_key(root, "private/carol.pem", CAROL_KEY)
    return Pki(root)


def one_connection(
    creds: Path, local: dict[str, Any], remote: dict[str, Any], *, gateway: bool
) -> dict[str, Any]:
    """The configuration of the gateway (192.0.2.1, connection ``rw``) or its client
    (192.0.2.2, ``home``) with `creds` as credentials; a side's None values are left
    out, so that a test can take a word away."""
    name, ours, theirs = ("rw", "192.0.2.1", "192.0.2.2") if gateway else \
        ("home", "192.0.2.2", "192.0.2.1")  # fmt: skip
    conn = {"local_addrs": [ours], "remote_addrs": [theirs],
            "local": {k: v for k, v in local.items() if v is not None},
            "remote": {k: v for k, v in remote.items() if v is not None}}  # fmt: skip
    return {"daemon": {"credentials": str(creds)}, "connections": {name: conn}}


def toml_text(config: dict[str, Any], tmp: Path) -> str:
    """`config` in TOML, with the daemon's sockets under `tmp`."""
    lines = ["[daemon]", f'control_socket = "{tmp / "control"}"',
             f'pfkey_socket = "{tmp / "pfkey"}"']  # fmt: skip
    creds = config.get("daemon", {}).get("credentials")
    if creds is not None:
        lines.append(f'credentials = "{creds}"')
    for name, conn in config["connections"].items():
        lines.append(f"[connections.{name}]")
        for key, value in conn.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'
