"""Keys, certificates and CRLs for IKE, made with `cryptography` (what `larval pki` does).

The words are strongSwan's `pki`: a DN is written "C=CH, O=strongSwan, CN=moon" (most
significant part first), a SAN is typed by its look (an address is an iPAddress, a string
with '@' an rfc822Name, anything else a dNSName), and the two key IDs are the SHA-1 of the
DER SubjectPublicKeyInfo (what a CERTREQ carries, RFC 7296 §3.7) and the SHA-1 of the raw
public key (RFC 5280 §4.2.1.2, method 1: the subjectKeyIdentifier written here).
Every function returns `cryptography` objects or bytes; nothing here reads arguments.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from larval.errors import LarvalError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

RSA_SIZES = range(2048, 8193)
RSA_DEFAULT = 3072
ECDSA_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
# RFC 4945 §5.1.3.12 / RFC 4809: the EKU strongSwan's `--flag ikeIntermediate` sets.
IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
FLAGS: dict[str, ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "ikeIntermediate": IKE_INTERMEDIATE,
}
# strongSwan's `pki --signcrl --reason` words (RFC 5280 §5.3.1).
REASONS: dict[str, x509.ReasonFlags] = {
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "certificate-hold": x509.ReasonFlags.certificate_hold,
}
# The DN attribute names strongSwan reads and writes (libstrongswan's asn1/oid table).
DN_NAMES: dict[str, ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "SN": NameOID.SURNAME,
    "G": NameOID.GIVEN_NAME,
    "T": NameOID.TITLE,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
_DN_ALIASES = {"emailAddress": "E", "Email": "E", "S": "ST"}
_DN_SHORT = {oid: name for name, oid in DN_NAMES.items()}


class PkiError(LarvalError):
    """A key, certificate, DN or SAN that cannot be used; the message names which."""


# --- keys -------------------------------------------------------------------------------


def generate_key(kind: str, size: int | None = None) -> PrivateKey:
    """A new private key: RSA 2048-8192 bits (3072 by default), ECDSA on P-256/384/521
    (256 by default) or Ed25519 (no size)."""
    if kind == "rsa":
        bits = RSA_DEFAULT if size is None else size
        if bits not in RSA_SIZES:
            raise PkiError(f"--size {bits}: an RSA key has 2048 to 8192 bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kind == "ecdsa":
        bits = 256 if size is None else size
        if bits not in ECDSA_CURVES:
            raise PkiError(f"--size {bits}: an ECDSA key has 256, 384 or 521 bits")
        return ec.generate_private_key(ECDSA_CURVES[bits])
    if kind == "ed25519":
        if size is not None and size != 256:
            raise PkiError(f"--size {size}: an Ed25519 key has no size to choose")
        return ed25519.Ed25519PrivateKey.generate()
    raise PkiError(f"--type {kind}: not rsa, ecdsa or ed25519")


def private_key_bytes(key: PrivateKey, outform: str = "pem") -> bytes:
    """The key as unencrypted PKCS#8, PEM or DER."""
    return key.private_bytes(
        encoding(outform), serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encoding(outform: str) -> serialization.Encoding:
    """`--outform`'s word as an encoding."""
    if outform == "pem":
        return serialization.Encoding.PEM
    if outform == "der":
        return serialization.Encoding.DER
    raise PkiError(f"--outform {outform}: not pem or der")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PkiError(f"{path}: {e.strerror or e}") from None


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN" in data


def load_private_key(path: str) -> PrivateKey:
    """An unencrypted private key from a PEM or DER file (PKCS#8, PKCS#1 or SEC1)."""
    key = _parse_private(_read(path), path)
    if key is None:
        raise PkiError(f"{path}: not a private key (PEM or DER)")
    return _supported_private(key, path)


def _parse_private(data: bytes, path: str) -> object | None:
    """The private key in `data`, of any type, or None if it holds none."""
    load = (
        serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    )
    try:
        return load(data, password=None)
    except TypeError:
        raise PkiError(f"{path}: the private key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        return None


def _parse_spki(data: bytes) -> object | None:
    """The public key (SubjectPublicKeyInfo) in `data`, of any type, or None."""
    load = serialization.load_pem_public_key if _is_pem(data) else serialization.load_der_public_key
    try:
        return load(data)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _supported_private(key: object, path: str) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        usable_public_key(key.public_key(), path)
        return key
    raise PkiError(f"{path}: a {type(key).__name__} key; larval signs with RSA, ECDSA, Ed25519")


def usable_public_key(key: object, path: str) -> PublicKey:
    """`key` if larval takes it (RSA of 2048 bits or more, P-256/384/521, Ed25519)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise PkiError(f"{path}: an RSA key of {key.key_size} bits (2048 at least)")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size not in ECDSA_CURVES:
            raise PkiError(f"{path}: an ECDSA key on {key.curve.name} (P-256, P-384, P-521 only)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise PkiError(f"{path}: a {type(key).__name__} key; larval takes RSA, ECDSA, Ed25519")


def load_public_key(path: str) -> PublicKey:
    """The public key of a file holding a public key (SPKI), a certificate or a private
    key, PEM or DER."""
    data = _read(path)
    key = _parse_spki(data)
    if key is None:
        load = x509.load_pem_x509_certificate if _is_pem(data) else x509.load_der_x509_certificate
        try:
            key = load(data).public_key()
        except ValueError:
            private = _parse_private(data, path)
            if private is None:
                raise PkiError(f"{path}: not a key or certificate (PEM or DER)") from None
            key = _supported_private(private, path).public_key()
    return usable_public_key(key, path)


def load_request(path: str) -> x509.CertificateSigningRequest:
    """A PKCS#10 request whose signature verifies (the requester holds the key)."""
    data = _read(path)
    load = x509.load_pem_x509_csr if _is_pem(data) else x509.load_der_x509_csr
    try:
        req = load(data)
    except ValueError:
        raise PkiError(f"{path}: not a PKCS#10 certificate request") from None
    if not req.is_signature_valid:
        raise PkiError(f"{path}: the request's signature does not verify")
    usable_public_key(req.public_key(), path)
    return req


def load_certificate(path: str) -> x509.Certificate:
    data = _read(path)
    load = x509.load_pem_x509_certificate if _is_pem(data) else x509.load_der_x509_certificate
    try:
        return load(data)
    except ValueError:
        raise PkiError(f"{path}: not an X.509 certificate (PEM or DER)") from None


def key_ids(key: PublicKey) -> tuple[bytes, bytes]:
    """(SHA-1 of the DER SubjectPublicKeyInfo, SHA-1 of the raw public key).

    The first is what an IKE CERTREQ names a CA by (RFC 7296 §3.7); the second is the
    subjectKeyIdentifier of RFC 5280 §4.2.1.2 method 1, strongSwan's "subjkey"."""
    raw = x509.SubjectKeyIdentifier.from_public_key(key).digest
    return hashlib.sha1(_spki(key)).digest(), raw


def describe_key(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.key_size} bits"
    return "ED25519 256 bits"


# --- names ------------------------------------------------------------------------------


def parse_dn(text: str) -> x509.Name:
    """strongSwan's "C=CH, O=strongSwan, CN=moon" as an x509.Name, in the order written.
    A comma inside a value is written "\\,"."""
    parts = _split_dn(text)
    if not parts:
        raise PkiError(f"--dn {text!r}: empty")
    attributes = []
    for part in parts:
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        name = _DN_ALIASES.get(name, name)
        if not sep or not value:
            raise PkiError(f"--dn: {part.strip()!r} is not NAME=value")
        oid = DN_NAMES.get(name) or _dotted_oid(name)
        if oid is None:
            known = ", ".join(DN_NAMES)
            raise PkiError(f"--dn: {part.strip()!r}: unknown attribute {name!r} ({known})")
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError as e:
            raise PkiError(f"--dn: {part.strip()!r}: {e}") from None
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])


def _split_dn(text: str) -> list[str]:
    """The parts between unescaped commas; "\\," stays in its value as ","."""
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [] if len(parts) == 1 and not parts[0].strip() else parts


def _dotted_oid(name: str) -> ObjectIdentifier | None:
    if all(p.isdigit() for p in name.split(".")) and name.count(".") >= 1:
        try:
            return ObjectIdentifier(name)
        except ValueError:
            return None
    return None


def format_dn(name: x509.Name) -> str:
    """An x509.Name as strongSwan prints it: "C=CH, O=strongSwan, CN=moon"."""
    out = []
    for rdn in name.rdns:
        for a in rdn:
            label = _DN_SHORT.get(a.oid, a.oid.dotted_string)
            value = a.value if isinstance(a.value, str) else a.value.hex()
            out.append(f"{label}={value.replace(',', chr(92) + ',')}")
    return ", ".join(out)


def parse_san(text: str) -> x509.GeneralName:
    """A SAN typed as strongSwan types it: an IP address, an email (has '@'), a DNS name."""
    value = text.strip()
    if not value:
        raise PkiError("--san: empty")
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if "@" in value:
        return x509.RFC822Name(value)
    return x509.DNSName(value)


def _general_name_text(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DirectoryName):
        return format_dn(name.value)
    return str(name.value)


# --- certificates -----------------------------------------------------------------------


@dataclass(frozen=True)
class CertRequest:
    """What a new certificate says: subject, SANs, lifetime, CA or end entity, EKUs."""

    subject: x509.Name
    sans: Sequence[x509.GeneralName] = ()
    lifetime_days: int = 1095
    ca: bool = False
    flags: Sequence[str] = ()


def random_serial() -> int:
    """A positive serial with 63 random bits below a set 64th, so that every serial is
    as long as the next: a 9-octet DER INTEGER (RFC 5280 §4.1.2.2 allows 20)."""
    return secrets.randbits(63) | (1 << 63)


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash a CA key signs with: SHA-256 for RSA, the curve's size for ECDSA (RFC
    5758 §3.2), none for Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return (
            hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()
        )
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def make_certificate(
    request: CertRequest,
    public_key: PublicKey,
    signer_key: PrivateKey,
    issuer: x509.Certificate | None = None,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """A certificate for `public_key`, signed by `signer_key`: self-signed when `issuer`
    is None, else issued under that CA certificate (whose key `signer_key` must be)."""
    if issuer is not None:
        check_key_pair(issuer, signer_key)
    for flag in request.flags:
        if flag not in FLAGS:
            raise PkiError(f"--flag {flag}: not one of {', '.join(FLAGS)}")
    start = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier(ski.digest, None, None)
        issuer_name = request.subject
    else:
        aki = authority_key_id(issuer)
        issuer_name = issuer.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=request.lifetime_days))
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.BasicConstraints(ca=request.ca, path_length=None), critical=True)
        .add_extension(_key_usage(request.ca), critical=True)
    )
    if request.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(request.sans)), critical=False
        )
    if request.flags:
        ekus = [FLAGS[f] for f in dict.fromkeys(request.flags)]
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    return builder.sign(signer_key, signature_hash(signer_key))


def authority_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CA's own subjectKeyIdentifier, as RFC 5280 §4.2.1.1 wants, else computed."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier(key_ids(usable_public_key(ca.public_key(), "--cacert"))[1])
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _spki(key: object) -> bytes:
    if not _supported(key):
        raise PkiError(f"--cacert: a {type(key).__name__} key; larval takes RSA, ECDSA, Ed25519")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_pair(
    cert: x509.Certificate, key: PrivateKey, cert_path: str = "--cacert", key_path: str = "--cakey"
) -> None:
    """Refuse a private key that is not the key of the certificate."""
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise PkiError(f"{key_path}: not the private key of {cert_path}")


def check_ca(cert: x509.Certificate, path: str) -> None:
    """Refuse to issue under a certificate that is not a CA (RFC 5280 §4.2.1.9)."""
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if not ca:
        raise PkiError(f"{path}: not a CA certificate (no basicConstraints CA:TRUE)")


def verify_signed_by(
    cert: x509.Certificate | x509.CertificateRevocationList, ca: x509.Certificate
) -> bool:
    """Whether `ca`'s key signed `cert` (a certificate or a CRL)."""
    key = ca.public_key()
    if isinstance(cert, x509.CertificateRevocationList):
        return cert.is_signature_valid(key)  # type: ignore[arg-type]
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --- CRLs -------------------------------------------------------------------------------


def make_crl(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    revoked: Iterable[x509.Certificate],
    reason: str | None = None,
    lifetime_days: int = 15,
    now: datetime.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from `ca` listing the serials of `revoked` (RFC 5280 §5)."""
    check_key_pair(ca, ca_key)
    if reason is not None and reason not in REASONS:
        raise PkiError(f"--reason {reason}: not one of {', '.join(REASONS)}")
    start = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(start)
        .next_update(start + datetime.timedelta(days=lifetime_days))
        .add_extension(authority_key_id(ca), critical=False)
        .add_extension(x509.CRLNumber(int(start.timestamp())), critical=False)
    )
    for cert in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        entry = entry.revocation_date(start)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, signature_hash(ca_key))


def load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    load = x509.load_pem_x509_crl if _is_pem(data) else x509.load_der_x509_crl
    try:
        return load(data)
    except ValueError:
        return None


# --- printing ---------------------------------------------------------------------------


def hex_colons(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _serial_hex(serial: int) -> str:
    return hex_colons(serial.to_bytes((serial.bit_length() + 8) // 8, "big").lstrip(b"\0") or b"\0")


def _time(t: datetime.datetime) -> str:
    return t.strftime("%b %d %H:%M:%S %Y UTC")


def describe_key_ids(key: PublicKey) -> list[str]:
    spki_id, raw_id = key_ids(key)
    return [f"  keyid:     {hex_colons(spki_id)}", f"  subjkey:   {hex_colons(raw_id)}"]


def describe_certificate(cert: x509.Certificate) -> list[str]:
    """What `larval pki print` shows of a certificate, strongSwan's `pki --print` layout."""
    ext = cert.extensions
    lines = [
        "  cert:      X509",
        f'  subject:  "{format_dn(cert.subject)}"',
        f'  issuer:   "{format_dn(cert.issuer)}"',
    ]
    try:
        sans = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        lines.append("  altNames:  " + ", ".join(_general_name_text(n) for n in sans))
    except x509.ExtensionNotFound:
        pass
    lines += [
        f"  validity:  not before {_time(cert.not_valid_before_utc)}",
        f"             not after  {_time(cert.not_valid_after_utc)}",
        f"  serial:    {_serial_hex(cert.serial_number)}",
        f"  flags:     {' '.join(certificate_flags(cert))}".rstrip(),
    ]
    try:
        aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        if aki:
            lines.append(f"  authkeyId: {hex_colons(aki)}")
    except x509.ExtensionNotFound:
        pass
    try:
        ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        lines.append(f"  subjkeyId: {hex_colons(ski)}")
    except x509.ExtensionNotFound:
        pass
    key = cert.public_key()
    if _supported(key):
        lines += [f"  pubkey:    {describe_key(key)}", *describe_key_ids(key)]
    else:
        lines.append(f"  pubkey:    {type(key).__name__}")
    return lines


def _supported(key: object) -> TypeGuard[PublicKey]:
    return isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)


def certificate_flags(cert: x509.Certificate) -> list[str]:
    """strongSwan's flag words for a certificate: CA, CRLSign, self-signed, the EKUs."""
    flags = []
    ext = cert.extensions
    try:
        if ext.get_extension_for_class(x509.BasicConstraints).value.ca:
            flags.append("CA")
    except x509.ExtensionNotFound:
        pass
    try:
        if ext.get_extension_for_class(x509.KeyUsage).value.crl_sign:
            flags.append("CRLSign")
    except x509.ExtensionNotFound:
        pass
    if cert.issuer == cert.subject and verify_signed_by(cert, cert):
        flags.append("self-signed")
    try:
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = {oid: name for name, oid in FLAGS.items()}
        flags += [names.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        pass
    return flags


def describe_crl(crl: x509.CertificateRevocationList) -> list[str]:
    lines = [
        "  crl:       X509 CRL",
        f'  issuer:   "{format_dn(crl.issuer)}"',
        f"  update:    this on {_time(crl.last_update_utc)}",
    ]
    if crl.next_update_utc is not None:
        lines.append(f"             next on {_time(crl.next_update_utc)}")
    lines.append(f"  revoked:   {len(crl)} certificate(s)")
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        when = _time(entry.revocation_date_utc)
        lines.append(f"    {_serial_hex(entry.serial_number)}: {when}, {reason}")
    return lines


def describe_file(path: str) -> list[str]:
    """What `larval pki print` shows of a certificate, CRL, private or public key file."""
    data = _read(path)
    for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
        try:
            return describe_certificate(load(data))
        except ValueError:
            continue
    crl = load_crl(data)
    if crl is not None:
        return describe_crl(crl)
    private = _parse_private(data, path)
    public = (
        _parse_spki(data) if private is None else _supported_private(private, path).public_key()
    )
    if public is not None:
        kind = "pubkey" if private is None else "privkey"
        key = usable_public_key(public, path)
        return [f"  {kind}:   {describe_key(key)}", *describe_key_ids(key)]
    raise PkiError(f"{path}: not a certificate, CRL or key (PEM or DER)")


__all__ = [
    "CertRequest",
    "PkiError",
    "check_ca",
    "describe_file",
    "format_dn",
    "generate_key",
    "key_ids",
    "load_certificate",
    "load_private_key",
    "load_public_key",
    "load_request",
    "make_certificate",
    "make_crl",
    "parse_dn",
    "parse_san",
    "private_key_bytes",
    "verify_signed_by",
]
