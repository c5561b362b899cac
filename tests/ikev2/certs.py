"""Certificates for the IKEv2 tests: a CA, intermediates, leaves of every key type, and
the `larval.trust.TrustStore` that checks them (`trust`), with a CRL when asked."""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from larval.credentials import CertificateWithKey, PrivateKey, PrivateKeyFile
from larval.trust import TrustStore

#: When the test certificates are valid: a year from here.
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOW = START + datetime.timedelta(days=30)


@functools.cache
def key(kind: str) -> PrivateKey:
    """One key of each kind ("rsa2048", "rsa4096", "p256", "p384", "p521", "ed25519",
    "ed448") and a name after ":" for another of the same kind."""
    base = kind.split(":")[0]
    if base.startswith("rsa"):
        return rsa.generate_private_key(65537, int(base[3:]))
    if base in ("p256", "p384", "p521"):
        curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
        return ec.generate_private_key(curves[base])
    if base == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ed448.Ed448PrivateKey.generate()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "larval tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip


def issue(
    subject: str,
    subject_key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] = (),
    start: datetime.datetime = START,
    days: int = 365,
    serial: int = 1000,
) -> x509.Certificate:
    """A certificate for `subject_key`, self-signed when `issuer` is None."""
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signer = issuer[1] if issuer else subject_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    algorithm = (
        None
        if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else (hashes.SHA256())
    )
    return builder.sign(signer, algorithm)


@functools.cache
def root_ca(name: str = "Root CA") -> tuple[x509.Certificate, PrivateKey]:
    private = key(f"p256:{name}")
    return issue(name, private, ca=True, days=3650), private


def ip_san(address: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(address))


def leaf(
    kind: str,
    address: str,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    **options: object,
) -> CertificateWithKey:
    """An end-entity certificate for `address` with a key of `kind`, under the root CA
    unless `issuer` says otherwise."""
    private = key(kind)
    cert = issue(f"peer {address} {kind}", private, issuer or root_ca(), sans=[ip_san(address)],
                 **options)  # type: ignore[arg-type]  # fmt: skip
    return CertificateWithKey(f"{kind}.pem", cert, PrivateKeyFile(f"{kind}.key", private))


def keyid(cert: x509.Certificate) -> bytes:
    """SHA-1 of the DER SubjectPublicKeyInfo: what CERTREQ carries (RFC 7296 §3.7)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


def trust(*anchors: x509.Certificate, revoked: Sequence[int] = ()) -> TrustStore:
    """A trust store of `anchors` (the root CA by default), with a CRL of the root CA's
    that revokes the serials `revoked`."""
    anchors = anchors or (root_ca()[0],)
    crls = []
    if revoked:
        ca, ca_key = root_ca()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(START)
            .next_update(START + datetime.timedelta(days=90))
        )
        for serial in revoked:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(START + datetime.timedelta(days=1))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crls.append(builder.sign(ca_key, hashes.SHA256()))
    return TrustStore(anchors, crls=crls)
