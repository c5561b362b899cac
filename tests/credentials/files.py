"""Keys, certificates and CRLs written the ways a credentials directory may hold them."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from larval.credentials import PrivateKey

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL  # RSA: PKCS#1; EC: SEC1
PKCS8 = serialization.PrivateFormat.PKCS8
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
PASSPHRASE = b"correct horse battery staple"

# One RSA-2048 key for the whole module: generating them is the slow part.
RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()
CA_KEY = ec.generate_private_key(ec.SECP256R1())


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(cn: str, key: PrivateKey, ca: bool = False) -> x509.Certificate:
    """A certificate for ``key``'s public key, issued by CA_KEY (itself when ``ca``)."""
    return (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name("Test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(CA_KEY, hashes.SHA256())
    )


def crl() -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name("Test CA"))
        .last_update(NOW)
        .next_update(NOW + datetime.timedelta(days=7))
        .sign(CA_KEY, hashes.SHA256())
    )


def key_bytes(
    key: PrivateKey,
    encoding: serialization.Encoding = PEM,
    form: serialization.PrivateFormat = PKCS8,
    passphrase: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(encoding, form, encryption)


def write(root: Path, relative: str, data: bytes, mode: int = 0o600) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def write_key(
    root: Path,
    relative: str,
    key: PrivateKey,
    encoding: serialization.Encoding = PEM,
    form: serialization.PrivateFormat = PKCS8,
    passphrase: bytes | None = None,
) -> None:
    write(root, relative, key_bytes(key, encoding, form, passphrase))


def write_cert(
    root: Path, relative: str, cert: x509.Certificate, encoding: serialization.Encoding = PEM
) -> None:
    write(root, relative, cert.public_bytes(encoding), mode=0o644)
