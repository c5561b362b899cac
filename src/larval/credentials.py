"""A credentials directory in swanctl's layout, loaded whole, every problem named at once.

The layout is swanctl's (``swanctl --load-creds``): ``x509/`` holds end-entity
certificates, ``x509ca/`` CA certificates, ``x509crl/`` CRLs, and ``private/``, ``rsa/``,
``ecdsa/`` and ``pkcs8/`` private keys. A missing subdirectory is simply empty. Files are
PEM or DER, told apart by their content; a file's suffix is never required and hidden
files are skipped.

A private key file readable by group or others is refused unread. Every problem (a file
that cannot be read, a certificate, CRL or key that does not parse, a key that needs a
passphrase, a certificate whose private key is not loaded) becomes one line naming the
file, and all of them are raised together as one `CredentialsError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from larval.errors import LarvalError

__all__ = [
    "CertificateWithKey",
    "Credentials",
    "CredentialsError",
    "PrivateKey",
    "PrivateKeyFile",
    "load_credentials",
]

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

END_ENTITY_DIR = "x509"
CA_DIR = "x509ca"
CRL_DIR = "x509crl"
KEY_DIRS = ("private", "rsa", "ecdsa", "pkcs8")
#: Bits; below 2048 RSA is refused as IKE deployments refuse it, above 8192 is no key
#: anyone issues and only costs time.
RSA_BITS_MIN = 2048
RSA_BITS_MAX = 8192
EC_CURVES: Mapping[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
PEM_MARK = b"-----BEGIN "

T = TypeVar("T")


class CredentialsError(LarvalError):
    """The credentials directory has problems; `problems` holds one line for each."""

    def __init__(self, directory: Path, problems: tuple[str, ...]) -> None:
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        lines = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"credentials in {directory}: {count}{lines}")
        self.directory = directory
        self.problems = problems


def describe_key(key: PrivateKey) -> str:
    """The key's type and size, the only things about a key larval ever shows."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA-{EC_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return "Ed448"


def public_key_der(key: PrivateKey | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key or a certificate: how the two pair."""
    public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class PrivateKeyFile:
    """A private key and the file it came from; its `repr` shows type and size only."""

    path: str
    key: PrivateKey = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"PrivateKeyFile({self.path!r}, {describe_key(self.key)})"


@dataclass(frozen=True)
class CertificateWithKey:
    """An end-entity certificate from ``x509/`` and the private key whose public key it holds."""

    path: str
    cert: x509.Certificate
    key: PrivateKeyFile

    def __repr__(self) -> str:
        return (
            f"CertificateWithKey({self.path!r}, {self.cert.subject.rfc4514_string()!r}, "
            f"{self.key!r})"
        )


@dataclass(frozen=True)
class Credentials:
    """What a credentials directory holds, every end-entity certificate paired with its key."""

    certs: tuple[CertificateWithKey, ...] = ()
    cacerts: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    keys: tuple[PrivateKeyFile, ...] = ()
    #: The file each of `cacerts` came from (``x509ca/NAME``), in the same order: what a
    #: connection's ``cacerts`` names.
    cacert_paths: tuple[str, ...] = ()


class FileProblem(Exception):
    """One file's problem, its line; collected by `load_credentials`, never raised out of it."""


def load_credentials(
    directory: str | os.PathLike[str], passphrases: Mapping[str, bytes] = {}
) -> Credentials:
    """Load ``directory``; raise one `CredentialsError` listing every problem found.

    ``passphrases[NAME]`` decrypts an encrypted key file named NAME (its file name without
    the suffix), as ``[secrets.private-NAME]`` names it in the daemon's configuration.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CredentialsError(root, (f"{root}: not a directory",))
    problems: list[str] = []

    def read_key_file(name: str, path: Path) -> list[PrivateKeyFile]:
        return [PrivateKeyFile(name, read_key(name, path, passphrases))]

    keys = [key for subdir in KEY_DIRS for key in collect(root, subdir, read_key_file, problems)]
    by_public_key = {public_key_der(loaded.key): loaded for loaded in keys}

    def pair(name: str, path: Path) -> list[CertificateWithKey]:
        pairs = []
        for cert in read_certificates(name, path):
            key = by_public_key.get(public_key_der(cert))
            if key is None:
                raise FileProblem(
                    f"{name}: no private key loaded for this certificate "
                    f"({cert.subject.rfc4514_string() or 'empty subject'})"
                )
            pairs.append(CertificateWithKey(name, cert, key))
        return pairs

    def read_named(name: str, path: Path) -> list[tuple[str, x509.Certificate]]:
        return [(name, cert) for cert in read_certificates(name, path)]

    cacerts = collect(root, CA_DIR, read_named, problems)
    crls = collect(root, CRL_DIR, read_crl, problems)
    certs = collect(root, END_ENTITY_DIR, pair, problems)
    if problems:
        raise CredentialsError(root, tuple(problems))
    return Credentials(
        tuple(certs),
        tuple(cert for _, cert in cacerts),
        tuple(crls),
        tuple(keys),
        tuple(name for name, _ in cacerts),
    )


def collect(
    root: Path,
    subdir: str,
    read: Callable[[str, Path], list[T]],
    problems: list[str],
) -> list[T]:
    """What ``read`` finds in each file of one subdirectory; each file's problem noted."""
    found: list[T] = []
    for path in list_files(root, subdir, problems):
        name = f"{subdir}/{path.name}"
        try:
            found.extend(read(name, path))
        except FileProblem as problem:
            problems.append(str(problem))
    return found


def list_files(root: Path, subdir: str, problems: list[str]) -> list[Path]:
    """The files of one subdirectory in name order; hidden files and directories skipped."""
    folder = root / subdir
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as error:
        problems.append(f"{subdir}/: cannot be listed: {error.strerror}")
        return []
    files = []
    for path in entries:
        if path.name.startswith("."):
            continue
        try:
            if path.is_dir():
                continue
        except OSError:
            pass
        files.append(path)
    return files


def read_bytes(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise FileProblem(f"{name}: cannot be read: {error.strerror}") from None


def read_certificates(name: str, path: Path) -> list[x509.Certificate]:
    """One DER certificate, or every certificate of a PEM file."""
    data = read_bytes(name, path)
    try:
        if PEM_MARK in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise FileProblem(f"{name}: not an X.509 certificate (PEM or DER)") from None


def read_crl(name: str, path: Path) -> list[x509.CertificateRevocationList]:
    data = read_bytes(name, path)
    try:
        if PEM_MARK in data:
            return [x509.load_pem_x509_crl(data)]
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise FileProblem(f"{name}: not an X.509 CRL (PEM or DER)") from None


def read_key(name: str, path: Path, passphrases: Mapping[str, bytes]) -> PrivateKey:
    """A private key file's key: PKCS#1, SEC1 or PKCS#8, PEM or DER, maybe encrypted."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as error:
        raise FileProblem(f"{name}: cannot be read: {error.strerror}") from None
    if mode & 0o077:
        raise FileProblem(f"{name}: mode {mode:04o}, readable by group or others; chmod 600 it")
    data = read_bytes(name, path)
    load = (
        serialization.load_pem_private_key
        if PEM_MARK in data
        else serialization.load_der_private_key
    )
    stem = path.stem
    try:
        key = load(data, None)
    except TypeError:
        # Encrypted: `cryptography` says so only by refusing a missing password.
        passphrase = passphrases.get(stem)
        if passphrase is None:
            raise FileProblem(
                f"{name}: encrypted and no passphrase given ([secrets.private-{stem}])"
            ) from None
        try:
            key = load(data, passphrase)
        except (TypeError, ValueError):
            raise FileProblem(f"{name}: wrong passphrase ([secrets.private-{stem}])") from None
    except (ValueError, UnsupportedAlgorithm):
        raise FileProblem(
            f"{name}: not a private key (PKCS#1, SEC1 or PKCS#8; PEM or DER)"
        ) from None
    return accepted_key(name, key)


def accepted_key(name: str, key: object) -> PrivateKey:
    """The key if larval signs with its type and size, else the problem naming both."""
    if isinstance(key, rsa.RSAPrivateKey):
        if not RSA_BITS_MIN <= key.key_size <= RSA_BITS_MAX:
            raise FileProblem(
                f"{name}: RSA key of {key.key_size} bits; {RSA_BITS_MIN} to {RSA_BITS_MAX} accepted"
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise FileProblem(
                f"{name}: ECDSA curve {key.curve.name} not accepted; P-256, P-384 or P-521"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key
    raise FileProblem(f"{name}: a {type(key).__name__} key; RSA, ECDSA, Ed25519 or Ed448 accepted")
