"""Certificates for the interop tests: a CA and both ends' credentials, made by larval's
own `larval.pki` or by strongSwan's `pki`, and laid out as swanctl's credentials
directory, which `larval run` and charon read alike.

charon plays moon (namespace a) and larval plays sun (namespace b). Each end's
certificate carries its FQDN as a dNSName and as the subject's CN. Beside them, in a set
that asks for them: a revoked certificate of each end (same key, new serial, listed in
the CA's CRL) and a certificate of moon's key that names another host, so it does not
carry moon's ID.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from larval import pki

#: The IKE ID (and dNSName) of charon in a and of larval in b.
IDS = {"a": "moon.example.org", "b": "sun.example.org"}
OTHER = "venus.example.org"
#: The end entities a set holds beside moon and sun when asked for its extras.
REVOKED = {"a": "moon-revoked", "b": "sun-revoked"}
WRONG_SAN = "moon-other"


@dataclass(frozen=True)
class Spec:
    """What a set of certificates is made of: its key type and size, every key the same
    kind; intermediates: each end's certificate issued by a CA of its own, under the
    root; extras: the revoked and the wrongly named certificates, and a CRL."""

    key_type: str  # "rsa" | "ecdsa" | "ed25519"
    size: int | None = None
    maker: str = "larval"  # "larval" (larval.pki) | "strongswan" (pki)
    intermediates: bool = False
    extras: bool = False


@dataclass(frozen=True)
class EndEntity:
    cert: x509.Certificate
    key_pem: bytes = field(repr=False)
    #: The CA certificates between this one and the root, nearest first.
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject

    @property
    def issuer(self) -> x509.Name:
        return self.cert.issuer


@dataclass(frozen=True)
class CertSet:
    root: x509.Certificate
    ends: dict[str, EndEntity]
    crl: x509.CertificateRevocationList | None = None

    def credentials(self, directory: Path, end: str | None, *, crl: bool = False) -> Path:
        """A credentials directory in swanctl's layout for `end` (None: an end with no
        certificate): its certificate and key, the root and the end's own intermediates
        as CAs, the CRL if asked for."""
        entity = self.ends[end] if end is not None else None
        for sub, files in (
            ("x509", {f"{end}.pem": _pem(entity.cert)} if entity else {}),
            ("x509ca", {"root.pem": _pem(self.root)}
             | {f"ca{i}.pem": _pem(c) for i, c in enumerate(entity.chain if entity else ())}),
            ("x509crl", {"root.crl": self.crl.public_bytes(serialization.Encoding.PEM)}
             if crl and self.crl is not None else {}),
            ("private", {f"{end}.key": entity.key_pem} if entity else {}),
        ):  # fmt: skip
            (directory / sub).mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                path = directory / sub / name
                path.write_bytes(data)
                path.chmod(0o600)  # larval refuses a private key others may read
        return directory


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _dn(cn: str) -> str:
    return f"C=CH, O=larval interop, CN={cn}"


def make_set(spec: Spec, directory: Path) -> CertSet:
    directory.mkdir(parents=True, exist_ok=True)
    if spec.maker == "strongswan":
        return _strongswan_set(spec, directory)
    return _larval_set(spec)


# --- made by larval.pki -------------------------------------------------------------------


def _larval_set(spec: Spec) -> CertSet:
    root_key = pki.generate_key(spec.key_type, spec.size)
    root = pki.make_certificate(
        pki.CertRequest(pki.parse_dn(_dn(f"{spec.key_type} root")), ca=True),
        root_key.public_key(), root_key,
    )  # fmt: skip
    ends: dict[str, EndEntity] = {}
    keys = {}
    for site, fqdn in IDS.items():
        name = fqdn.split(".")[0]
        issuer, issuer_key, chain = root, root_key, ()
        if spec.intermediates:
            issuer_key = pki.generate_key(spec.key_type, spec.size)
            issuer = pki.make_certificate(
                pki.CertRequest(pki.parse_dn(_dn(f"{name} CA")), ca=True),
                issuer_key.public_key(), root_key, root,
            )  # fmt: skip
            chain = (issuer,)
        key = keys[site] = pki.generate_key(spec.key_type, spec.size)
        ends[name] = _issue(fqdn, key, issuer, issuer_key, chain)
        if spec.extras:
            ends[REVOKED[site]] = _issue(fqdn, key, issuer, issuer_key, chain)
    crl = None
    if spec.extras:
        ends[WRONG_SAN] = _issue(OTHER, keys["a"], root, root_key, ())
        revoked = [ends[name].cert for name in REVOKED.values()]
        crl = pki.make_crl(root, root_key, revoked, reason="key-compromise")
    return CertSet(root, ends, crl)


def _issue(
    fqdn: str,
    key: pki.PrivateKey,
    issuer: x509.Certificate,
    issuer_key: pki.PrivateKey,
    chain: tuple[x509.Certificate, ...],
) -> EndEntity:
    request = pki.CertRequest(pki.parse_dn(_dn(fqdn)), sans=[pki.parse_san(fqdn)])
    cert = pki.make_certificate(request, key.public_key(), issuer_key, issuer)
    return EndEntity(cert, pki.private_key_bytes(key), chain)


# --- made by strongSwan's pki -------------------------------------------------------------


def _strongswan_set(spec: Spec, directory: Path) -> CertSet:
    if spec.intermediates or spec.extras:
        raise ValueError("strongSwan's pki makes only a root and the two ends here")
    size = ["--size", str(spec.size)] if spec.size else []

    def run(*args: str) -> bytes:
        return subprocess.run(["pki", *args], capture_output=True, check=True).stdout

    def gen(name: str) -> Path:
        path = directory / f"{name}.key"
        path.write_bytes(run("--gen", "--type", spec.key_type, *size, "--outform", "pem"))
        os.chmod(path, 0o600)
        return path

    root_key = gen("root")
    root_pem = run("--self", "--ca", "--in", str(root_key), "--type", spec.key_type,
                   "--dn", _dn(f"{spec.key_type} root"), "--outform", "pem")  # fmt: skip
    root_path = directory / "root.pem"
    root_path.write_bytes(root_pem)
    ends = {}
    for fqdn in IDS.values():
        name = fqdn.split(".")[0]
        key = gen(name)
        cert = run("--issue", "--in", str(key), "--type", "priv", "--cacert", str(root_path),
                   "--cakey", str(root_key), "--dn", _dn(fqdn), "--san", fqdn,
                   "--outform", "pem")  # fmt: skip
        ends[name] = EndEntity(x509.load_pem_x509_certificate(cert), key.read_bytes())
    return CertSet(x509.load_pem_x509_certificate(root_pem), ends)
