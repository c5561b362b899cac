"""Certificates for the trust tests, made with `larval.pki` where it makes them and with
`cryptography` for what ``larval pki`` refuses to make (expired, weak, odd CAs)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from larval import pki

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)

# Keys are slow to make (RSA): one of each kind for the whole module, reused.
_KEYS: dict[str, list[pki.PrivateKey]] = {}


def key(kind: str = "ecdsa", size: int | None = None, index: int = 0) -> pki.PrivateKey:
    name = f"{kind}{size or ''}"
    keys = _KEYS.setdefault(name, [])
    while len(keys) <= index:
        if kind == "rsa" and size is not None and size < 2048:
            keys.append(rsa.generate_private_key(65537, size))
        else:
            keys.append(pki.generate_key(kind, size))
    return keys[index]


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: pki.PrivateKey


def make(
    dn: str,
    issuer: Issued | None = None,
    *,
    signing_key: pki.PrivateKey | None = None,
    ca: bool = False,
    sans: Sequence[str] = (),
    flags: Sequence[str] = (),
    not_before: datetime.datetime = NOW - 30 * DAY,
    not_after: datetime.datetime = NOW + 365 * DAY,
    key_usage: bool = True,
    path_length: int | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """A certificate for `signing_key` (a fresh ECDSA key by default), issued by `issuer`
    or self-signed, with the lifetime, CA flags and extensions given."""
    own = signing_key or ec.generate_private_key(ec.SECP256R1())
    public = own.public_key()
    subject = pki.parse_dn(dn)
    signer = issuer.key if issuer else own
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public)
        .serial_number(pki.random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if issuer:
        builder = builder.add_extension(pki.authority_key_id(issuer.cert), critical=False)
    if key_usage:
        builder = builder.add_extension(key_usage_for(ca), critical=True)
    if sans:
        names = [pki.parse_san(s) for s in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if flags:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([pki.FLAGS[f] for f in flags]), critical=False
        )
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return Issued(builder.sign(signer, pki.signature_hash(signer)), own)


def key_usage_for(ca: bool, *, key_cert_sign: bool | None = None) -> x509.KeyUsage:
    sign = ca if key_cert_sign is None else key_cert_sign
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def root(dn: str = "C=US, O=Example, CN=Example Root CA", **kw: object) -> Issued:
    return make(dn, ca=True, **kw)  # type: ignore[arg-type]


def crl(
    issuer: Issued,
    revoked: Sequence[x509.Certificate],
    reason: str | None = None,
    signer: pki.PrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL naming `issuer`, signed by its key (or by `signer`, to forge one)."""
    if signer is None:
        return pki.make_crl(issuer.cert, issuer.key, revoked, reason, now=NOW - DAY)
    good = pki.make_crl(issuer.cert, issuer.key, revoked, reason, now=NOW - DAY)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(good.issuer)
        .last_update(good.last_update_utc)
        .next_update(good.next_update_utc or NOW + DAY)
    )
    for entry in good:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(signer, pki.signature_hash(signer))


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    k = key("ed25519")
    assert isinstance(k, ed25519.Ed25519PrivateKey)
    return k
