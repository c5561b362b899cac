"""`larval pki`: a CA made with `pki self --ca`, an end entity issued under it with `pki
issue`, a CRL from `pki signcrl`, each read back with `cryptography` and checked for what
was asked, and every error path: one line on stderr, exit status 2."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from larval import pki
from larval.cli import main

CA_DN = "C=CH, O=strongSwan, CN=strongSwan Root CA"
GW_DN = "C=CH, O=strongSwan, CN=vpn.example.org"
IKE_INTERMEDIATE = x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")


def larval(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["pki", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    assert larval(capsys, "gen", "--type", "ecdsa", "--size", "384", "--out", str(key))[0] == 0
    status, _, err = larval(
        capsys, "self", "--in", str(key), "--ca", "--dn", CA_DN, "--lifetime", "3650",
        "--out", str(cert),
    )  # fmt: skip
    assert (status, err) == (0, "")
    return cert, key


@pytest.fixture
def gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: tuple[Path, Path]
) -> tuple[Path, Path]:
    key, cert = tmp_path / "gw.key", tmp_path / "gw.pem"
    assert larval(capsys, "gen", "--type", "rsa", "--size", "2048", "--out", str(key))[0] == 0
    status, _, err = larval(
        capsys, "issue", "--in", str(key), "--cacert", str(ca[0]), "--cakey", str(ca[1]),
        "--dn", GW_DN, "--san", "vpn.example.org", "--san", "192.0.2.1",
        "--san", "carol@example.org", "--flag", "serverAuth", "--flag", "ikeIntermediate",
        "--lifetime", "30", "--out", str(cert),
    )  # fmt: skip
    assert (status, err) == (0, "")
    return cert, key


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_is_self_signed_with_ca_extensions(ca: tuple[Path, Path]) -> None:
    cert = _cert(ca[0])
    key = serialization.load_pem_private_key(ca[1].read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CH"
    assert [a.oid for a in cert.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    cert.verify_directly_issued_by(cert)
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert aki.key_identifier == ski.digest
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)  # P-384 signs with SHA-384
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == datetime.timedelta(days=3650)


def test_the_end_entity_builds_a_chain_to_the_ca(
    ca: tuple[Path, Path], gateway: tuple[Path, Path]
) -> None:
    root, leaf = _cert(ca[0]), _cert(gateway[0])
    # A policy fit for IKE: any EKU accepted on the leaf (an ikeIntermediate-only
    # certificate must pass); the CA under the usual rules.
    ee_policy = ExtensionPolicy.permit_all().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(leaf.not_valid_before_utc + datetime.timedelta(hours=1))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    chain = verifier.verify(leaf, []).chain
    assert chain == [leaf, root]
    # A DN-only certificate with ikeIntermediate alone, made by the library, passes too.
    ca_key = pki.load_private_key(str(ca[1]))
    only_ike = pki.make_certificate(
        pki.CertRequest(pki.parse_dn("C=CH, CN=moon"), flags=("ikeIntermediate",)),
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ca_key,
        issuer=root,
        now=leaf.not_valid_before_utc,
    )
    assert verifier.verify(only_ike, []).chain == [only_ike, root]
    # Outside the lifetime asked for (30 days), the same chain fails.
    late = (
        PolicyBuilder()
        .store(Store([root]))
        .time(leaf.not_valid_before_utc + datetime.timedelta(days=31))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    with pytest.raises(x509.verification.VerificationError):
        late.verify(leaf, [])


def test_the_end_entity_carries_what_was_asked(
    ca: tuple[Path, Path], gateway: tuple[Path, Path]
) -> None:
    root, leaf = _cert(ca[0]), _cert(gateway[0])
    key = serialization.load_pem_private_key(gateway[1].read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert leaf.public_key() == key.public_key()
    assert leaf.issuer == root.subject
    ext = leaf.extensions
    sans = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["vpn.example.org"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.1")]
    assert sans.get_values_for_type(x509.RFC822Name) == ["carol@example.org"]
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        IKE_INTERMEDIATE,
    ]
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.serial_number != root.serial_number
    assert 2**63 <= leaf.serial_number < 2**64  # positive: 63 random bits under a set 64th


def test_print_shows_what_was_set(
    capsys: pytest.CaptureFixture[str], ca: tuple[Path, Path], gateway: tuple[Path, Path]
) -> None:
    leaf = _cert(gateway[0])
    status, out, err = larval(capsys, "print", "--in", str(gateway[0]))
    assert (status, err) == (0, "")
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    h = hashes.Hash(hashes.SHA1())
    h.update(spki)
    spki_sha1 = ":".join(f"{b:02x}" for b in h.finalize())
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    serial = leaf.serial_number.to_bytes(8, "big")
    for expected in (
        f'subject:  "{GW_DN}"',
        f'issuer:   "{CA_DN}"',
        "altNames:  vpn.example.org, 192.0.2.1, carol@example.org",
        "flags:     serverAuth ikeIntermediate",
        "pubkey:    RSA 2048 bits",
        f"keyid:     {spki_sha1}",
        f"subjkey:   {':'.join(f'{b:02x}' for b in ski)}",
        f"serial:    {':'.join(f'{b:02x}' for b in serial)}",
        f"not after  {leaf.not_valid_after_utc.strftime('%b %d %H:%M:%S %Y')}",
    ):
        assert expected in out, expected
    status, out, _ = larval(capsys, "print", str(ca[0]))  # FILE as an argument, too
    assert "flags:     CA CRLSign self-signed" in out
    status, out, _ = larval(capsys, "keyid", "--in", str(gateway[1]))
    assert out.split() == [
        "subjkey", "(SHA-1", "of", "subjectPublicKey):", ":".join(f"{b:02x}" for b in ski),
        "keyid", "(SHA-1", "of", "subjectPublicKeyInfo):", spki_sha1,
    ]  # fmt: skip


def test_private_keys_are_0600_and_pkcs8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind, size, check in (
        ("rsa", None, lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 3072),
        ("ecdsa", "521", lambda k: isinstance(k, ec.EllipticCurvePrivateKey)),
        ("ed25519", None, lambda k: isinstance(k, ed25519.Ed25519PrivateKey)),
    ):
        path = tmp_path / f"{kind}.der"
        path.write_bytes(b"old")
        path.chmod(0o644)  # an existing file is replaced, not reused with its mode
        size_args = ["--size", size] if size else []
        argv = ["gen", "--type", kind, *size_args, "--outform", "der", "--out", str(path)]
        assert larval(capsys, *argv)[0] == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = path.read_bytes()
        assert check(serialization.load_der_private_key(data, None))
        # PKCS#8: a PrivateKeyInfo SEQUENCE starting with version 0 (RFC 5208 §5).
        assert data[0] == 0x30 and b"\x02\x01\x00\x30" in data[:8]


def test_der_to_stdout_is_byte_exact(tmp_path: Path) -> None:
    """Run as a process, `python -m larval`: DER on standard output is not mangled."""
    env = {**os.environ, "PYTHONPATH": str(Path(pki.__file__).parents[1])}
    run = subprocess.run(
        [sys.executable, "-m", "larval", "pki", "gen", "--type", "ecdsa", "--outform", "der"],
        capture_output=True,
        env=env,
        check=True,
    )
    key = serialization.load_der_private_key(run.stdout, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    # An error from a process: one line, status 2, no traceback.
    bad = subprocess.run(
        [sys.executable, "-m", "larval", "pki", "print", "--in", str(tmp_path / "nope.pem")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr == f"larval: {tmp_path / 'nope.pem'}: No such file or directory\n"


def test_issue_for_a_public_key_and_for_a_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: tuple[Path, Path]
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = tmp_path / "carol.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = tmp_path / "carol.der"
    argv = ["--cacert", str(ca[0]), "--cakey", str(ca[1]), "--outform", "der", "--out", str(out)]
    assert larval(capsys, "issue", "--in", str(pub), "--dn", "CN=carol", *argv)[0] == 0
    cert = x509.load_der_x509_certificate(out.read_bytes())
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(_cert(ca[0]))
    req = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dave")]))
        .sign(key, None)
    )
    req_path = tmp_path / "dave.csr"
    req_path.write_bytes(req.public_bytes(serialization.Encoding.PEM))
    assert (
        larval(capsys, "issue", "--req", str(req_path), "--san", "dave@example.org", *argv)[0] == 0
    )
    cert = x509.load_der_x509_certificate(out.read_bytes())
    assert cert.subject == req.subject and cert.public_key() == key.public_key()


def test_signcrl_revokes_and_verifies_with_the_ca_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ca: tuple[Path, Path],
    gateway: tuple[Path, Path],
) -> None:
    out = tmp_path / "crl.pem"
    status, _, err = larval(
        capsys, "signcrl", "--cacert", str(ca[0]), "--cakey", str(ca[1]),
        "--reason", "key-compromise", "--cert", str(gateway[0]), "--out", str(out),
    )  # fmt: skip
    assert (status, err) == (0, "")
    crl = x509.load_pem_x509_crl(out.read_bytes())
    root, leaf = _cert(ca[0]), _cert(gateway[0])
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    assert crl.issuer == root.subject
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None and len(crl) == 1
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert not crl.is_signature_valid(other)
    status, shown, _ = larval(capsys, "print", "--in", str(out))
    serial = ":".join(f"{b:02x}" for b in leaf.serial_number.to_bytes(8, "big"))
    assert f"    {serial}: " in shown and shown.rstrip().endswith("keyCompromise")


def test_strongswan_pki_reads_larval_certificates(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ca: tuple[Path, Path],
    gateway: tuple[Path, Path],
) -> None:
    binary = shutil.which("pki")
    if binary is None:
        pytest.skip("strongSwan's pki is not installed (Debian strongswan-pki)")
    shown = subprocess.run(
        [binary, "--print", "--in", str(gateway[0])], capture_output=True, text=True, check=True
    ).stdout
    assert f'subject:  "{GW_DN}"' in shown
    assert "altNames:  vpn.example.org, 192.0.2.1, carol@example.org" in shown
    assert "serverAuth ikeIntermediate" in shown
    # The lines both print alike: serial, key IDs, key.
    ours = larval(capsys, "print", "--in", str(gateway[0]))[1].splitlines()
    for label in ("serial:", "authkeyId:", "subjkeyId:", "pubkey:", "keyid:", "subjkey:"):
        mine = [line for line in ours if line.strip().startswith(label)]
        assert mine and mine[0] in shown.splitlines(), label
    crl = tmp_path / "crl.der"
    larval(
        capsys, "signcrl", "--cacert", str(ca[0]), "--cakey", str(ca[1]),
        "--cert", str(gateway[0]), "--outform", "der", "--out", str(crl),
    )  # fmt: skip
    shown = subprocess.run(
        [binary, "--print", "--type", "crl", "--in", str(crl)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    serial = ":".join(f"{b:02x}" for b in _cert(gateway[0]).serial_number.to_bytes(8, "big"))
    assert "1 revoked certificate:" in shown and f"    {serial}: " in shown
    verified = subprocess.run(
        [binary, "--verify", "--in", str(gateway[0]), "--cacert", str(ca[0])],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "certificate trusted" in verified.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["print", "--in", "{tmp}/nope"], "{tmp}/nope: No such file or directory"),
        (["print", "--in", "{tmp}/junk"], "{tmp}/junk: not a certificate, CRL or key (PEM or DER)"),
        (["self", "--in", "{tmp}/junk", "--dn", "CN=x"], "{tmp}/junk: not a private key"),
        (["self", "--in", "{ca}", "--dn", "CN=x"], "{ca}: not a private key (PEM or DER)"),
        (["self", "--in", "{cakey}", "--dn", "C=CHE, CN=x"], "--dn: 'C=CHE': "),
        (["self", "--in", "{cakey}", "--dn", "C=CH, XX=1"], "--dn: 'XX=1': unknown attribute 'XX'"),
        (["self", "--in", "{cakey}", "--dn", "C=CH, CN"], "--dn: 'CN' is not NAME=value"),
        (["self", "--in", "{cakey}", "--dn", " "], "--dn ' ': empty"),
        (["self", "--in", "{cakey}", "--dn", "CN=x", "--san", ""], "--san: empty"),
        (["self", "--in", "{weak}", "--dn", "CN=x"], "{weak}: an RSA key of 1024 bits"),
        (["gen", "--type", "rsa", "--size", "1024"], "--size 1024: an RSA key has 2048"),
        (["gen", "--type", "ecdsa", "--size", "255"], "--size 255: an ECDSA key has 256,"),
        (["gen", "--type", "ed25519", "--size", "448"], "--size 448: an Ed25519 key has no"),
        (["gen", "--out", "{tmp}/no/dir/key"], "--out {tmp}/no/dir/key: No such file or directory"),
        (["issue", "--in", "{gwkey}", "--cacert", "{gw}", "--cakey", "{gwkey}", "--dn", "CN=x"],
         "{gw}: not a CA certificate (no basicConstraints CA:TRUE)"),
        (["issue", "--in", "{gwkey}", "--cacert", "{ca}", "--cakey", "{gwkey}", "--dn", "CN=x"],
         "{gwkey}: not the private key of {ca}"),
        (["issue", "--in", "{gwkey}", "--cacert", "{ca}", "--cakey", "{cakey}"],
         "--dn: needed with --in (a key carries no subject)"),
        (["issue", "--req", "{gwkey}", "--cacert", "{ca}", "--cakey", "{cakey}"],
         "{gwkey}: not a PKCS#10 certificate request"),
        (["issue", "--in", "{junk}", "--cacert", "{ca}", "--cakey", "{cakey}", "--dn", "CN=x"],
         "{junk}: not a key or certificate (PEM or DER)"),
        (["signcrl", "--cacert", "{junk}", "--cakey", "{cakey}"],
         "{junk}: not an X.509 certificate (PEM or DER)"),
        (["signcrl", "--cacert", "{ca}", "--cakey", "{cakey}", "--cert", "{gwkey}"],
         "{gwkey}: not an X.509 certificate (PEM or DER)"),
        (["keyid", "--in", "{junk}"], "{junk}: not a key or certificate (PEM or DER)"),
        (["keyid", "--in", "{weak}"], "{weak}: an RSA key of 1024 bits"),
        (["print", "--in", "{weak}"], "{weak}: an RSA key of 1024 bits"),
        (["print", "--in", "{locked}"], "{locked}: the private key is encrypted"),
        (["issue", "--in", "{locked}", "--cacert", "{ca}", "--cakey", "{cakey}", "--dn", "CN=x"],
         "{locked}: the private key is encrypted"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ca: tuple[Path, Path],
    gateway: tuple[Path, Path],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "junk").write_text("not a key\n")
    weak = tmp_path / "weak.key"
    weak.write_bytes(
        pki.private_key_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    )
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    names = {
        "tmp": str(tmp_path), "junk": str(tmp_path / "junk"), "weak": str(weak),
        "locked": str(locked),
        "ca": str(ca[0]), "cakey": str(ca[1]), "gw": str(gateway[0]), "gwkey": str(gateway[1]),
    }  # fmt: skip
    status, out, err = larval(capsys, *(a.format(**names) for a in argv))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("larval: " + message.format(**names)), err
    assert "Traceback" not in err
