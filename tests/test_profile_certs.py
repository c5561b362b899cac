"""`larval profile` for certificate clients (``remote.auth = "pubkey"`` or ``"eap-tls"``):
the user's certificate and key travel in the profile as a PKCS#12, loaded back here with
`cryptography` and the passphrase; the profile file is mode 600; the passphrase is in no
file and shown once only when larval made it; and every refusal (a certificate of another
CA, a key that is not the certificate's, a password connection) names the file and key."""

from __future__ import annotations

import base64
import json
import plistlib
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from larval import pki
from larval.cli import main
from larval.credentials import public_key_der
from larval.profiles import UserCertificate
from tests.credentials.files import PEM, key_bytes, write
from tests.daemon.gateway import CA, CA_KEY, CAROL, CAROL_KEY, NOW, OTHER_CA, OTHER_CA_KEY
from tests.test_profile import gateway

PASSPHRASE = b"carol-P12-passphrase-1"
CAROL_ID = "carol@example.org"
PUBKEY = {"remote": {"auth": "pubkey", "id": "*@example.org"}}
EAP_TLS = {"remote": {"auth": "eap-tls", "eap_id": "%any"}}


def carol_files(tmp: Path) -> tuple[Path, Path]:
    """carol's certificate and key as files of her own (mode 600)."""
    return (write(tmp / "carol", "carol.pem", CAROL.public_bytes(PEM), mode=0o644),
            write(tmp / "carol", "carol.key", key_bytes(CAROL_KEY)))  # fmt: skip


def password_file(tmp: Path, text: bytes = PASSPHRASE + b"\n") -> Path:
    return write(tmp, "p12-password", text)


def run(
    tmp: Path, client: str, *extra: str, user: str = CAROL_ID, carol_cert: bool = False,
    changes: dict[str, Any] | None = None,
) -> tuple[bytes, subprocess.CompletedProcess[str]]:  # fmt: skip
    """`larval profile rw` in a process of its own: the profile written and the process."""
    config = gateway(tmp, carol_cert=carol_cert, **(changes if changes is not None else PUBKEY))
    out = tmp / f"profile.{client}"
    command = [sys.executable, "-m", "larval", "profile", "rw", "--user", user, "--for", client,
               "-c", str(config), "-o", str(out), *extra]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    return data, proc


def given(tmp: Path) -> list[str]:
    cert, key = carol_files(tmp)
    return ["--cert", str(cert), "--key", str(key), "--p12-password-file", str(password_file(tmp))]


def check_pkcs12(data: bytes, passphrase: bytes = PASSPHRASE) -> None:
    """`data` is carol's key and certificate, opened with `passphrase` only."""
    key, cert, cas = pkcs12.load_key_and_certificates(data, passphrase)
    assert cert == CAROL and cas == []
    assert key is not None and public_key_der(key) == public_key_der(CAROL)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, b"not the passphrase")


def test_apple_certificate_client_has_its_pkcs12_and_authenticates_with_it(
    tmp_path: Path,
) -> None:
    data, proc = run(tmp_path, "apple", *given(tmp_path))
    assert PASSPHRASE not in data and PASSPHRASE.decode() not in proc.stderr + proc.stdout
    plist = plistlib.loads(data)
    root, identity, vpn = plist["PayloadContent"]
    assert root["PayloadType"] == "com.apple.security.root" and root["PayloadContent"] == \
        CA.public_bytes(serialization.Encoding.DER)  # fmt: skip
    assert identity["PayloadType"] == "com.apple.security.pkcs12"
    assert "Password" not in identity  # the user types it when installing
    check_pkcs12(identity["PayloadContent"])
    ikev2 = vpn["IKEv2"]
    assert ikev2["AuthenticationMethod"] == "Certificate"
    assert ikev2["PayloadCertificateUUID"] == identity["PayloadUUID"]
    assert ikev2["ExtendedAuthEnabled"] == 0 and "AuthName" not in ikev2
    assert ikev2["CertificateType"] == "ECDSA256"  # carol's key is P-256
    assert ikev2["LocalIdentifier"] == CAROL_ID
    assert len({plist["PayloadUUID"], root["PayloadUUID"], identity["PayloadUUID"],
                vpn["PayloadUUID"]}) == 4  # fmt: skip


def test_a_made_passphrase_is_shown_once_on_stderr_and_opens_the_pkcs12(tmp_path: Path) -> None:
    cert, key = carol_files(tmp_path)
    data, proc = run(tmp_path, "android", "--cert", str(cert), "--key", str(key))
    found = re.findall(r"PKCS#12 in the profile \(shown only now\): (\S+)\n", proc.stderr)
    assert len(found) == 1 and len(found[0]) >= 20, proc.stderr
    assert found[0] not in proc.stdout and found[0].encode() not in data
    sswan = json.loads(data)
    check_pkcs12(base64.b64decode(sswan["local"]["p12"]), found[0].encode())
    # Another run, another passphrase.
    _, again = run(tmp_path, "android", "--cert", str(cert), "--key", str(key))
    assert found[0] not in again.stderr


def test_sswan_certificate_client_found_in_the_credentials_by_its_identity(
    tmp_path: Path,
) -> None:
    # No --cert: carol's certificate and key are in the gateway's credentials (x509/,
    # private/), and her identity is in the certificate.
    data, _ = run(tmp_path, "android", "--p12-password-file", str(password_file(tmp_path)),
                  carol_cert=True)  # fmt: skip
    sswan = json.loads(data)
    assert sswan["type"] == "ikev2-cert"
    assert sswan["local"]["id"] == CAROL_ID
    check_pkcs12(base64.b64decode(sswan["local"]["p12"]))
    assert sswan["remote"]["cert"] == base64.b64encode(
        CA.public_bytes(serialization.Encoding.DER)).decode()  # fmt: skip


def test_eap_tls_client_in_each_profile(tmp_path: Path) -> None:
    extra = given(tmp_path)
    sswan = json.loads(run(tmp_path, "android", *extra, changes=EAP_TLS)[0])
    assert sswan["type"] == "ikev2-eap-tls" and sswan["local"]["id"] == CAROL_ID
    check_pkcs12(base64.b64decode(sswan["local"]["p12"]))

    _, identity, vpn = plistlib.loads(run(tmp_path, "apple", *extra, changes=EAP_TLS)[0])[
        "PayloadContent"
    ]
    check_pkcs12(identity["PayloadContent"])
    ikev2 = vpn["IKEv2"]
    assert ikev2["AuthenticationMethod"] == "None" and ikev2["ExtendedAuthEnabled"] == 1
    assert ikev2["PayloadCertificateUUID"] == identity["PayloadUUID"]
    assert "AuthName" not in ikev2

    script = run(tmp_path, "windows", *extra, changes=EAP_TLS)[0].decode()
    lines = script.splitlines()
    assert "$Eap = New-EapConfiguration -Tls -UserCertificate" in lines
    add = next(line for line in lines if line.startswith("Add-VpnConnection"))
    assert "-AuthenticationMethod Eap" in add
    assert "-EapConfigXmlStream $Eap.EapConfigXmlStream" in add
    assert any("Import-PfxCertificate" in line and "Cert:\\CurrentUser\\My" in line
               for line in lines)  # fmt: skip


def test_windows_imports_the_pkcs12_as_machine_certificate(tmp_path: Path) -> None:
    script = run(tmp_path, "windows", *given(tmp_path))[0].decode()
    assert PASSPHRASE.decode() not in script
    lines = script.splitlines()
    start = lines.index("$Pfx = @'")
    end = lines.index("'@", start)
    check_pkcs12(base64.b64decode("".join(lines[start + 1 : end])))
    after = lines[end + 1 :]
    assert "Read-Host -AsSecureString" in after[2]  # the passphrase asked, not written
    assert after[3].startswith("Import-PfxCertificate -FilePath $PfxFile -CertStoreLocation "
                               "Cert:\\LocalMachine\\My -Password $PfxPassword")  # fmt: skip
    assert after[4] == "Remove-Item $PfxFile"
    add = next(line for line in after if line.startswith("Add-VpnConnection"))
    assert "-AuthenticationMethod MachineCertificate" in add
    # The PKCS#12 is imported before the connection that uses it is added.
    assert lines.index(add) > end


@pytest.mark.parametrize(("usages", "warned"), [
    ([ExtendedKeyUsageOID.SERVER_AUTH], True),
    ([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], False),
])  # fmt: skip
def test_windows_warns_of_a_certificate_without_client_auth(
    tmp_path: Path, usages: list[x509.ObjectIdentifier], warned: bool
) -> None:
    request = pki.CertRequest(pki.parse_dn("C=CH, O=Example, CN=carol"),
                              sans=[pki.parse_san(CAROL_ID)])  # fmt: skip
    plain = pki.make_certificate(request, CAROL_KEY.public_key(), CA_KEY, CA, now=NOW)
    builder = x509.CertificateBuilder(
        issuer_name=plain.issuer, subject_name=plain.subject, public_key=plain.public_key(),
        serial_number=plain.serial_number, not_valid_before=plain.not_valid_before_utc,
        not_valid_after=plain.not_valid_after_utc,
        extensions=[*plain.extensions],
    ).add_extension(x509.ExtendedKeyUsage(usages), critical=False)  # fmt: skip
    cert, key = carol_files(tmp_path)
    write(tmp_path / "carol", "carol.pem", builder.sign(CA_KEY, hashes.SHA256()).public_bytes(PEM))
    args = ["--cert", str(cert), "--key", str(key), "--p12-password-file",
            str(password_file(tmp_path))]  # fmt: skip
    _, proc = run(tmp_path, "windows", *args)
    assert ("extended key usages lack clientAuth" in proc.stderr) is warned, proc.stderr


def test_the_pkcs12_carries_the_intermediate_ca_given_with_the_certificate(
    tmp_path: Path,
) -> None:
    # carol's certificate by an intermediate CA under the root the gateway trusts; the
    # intermediate comes in carol's PEM file only, and goes into her PKCS#12 (the root
    # does not: the client trusts it by the profile's CA).
    sub_key = pki.generate_key("ecdsa")
    sub = pki.make_certificate(
        pki.CertRequest(pki.parse_dn("C=CH, O=Example, CN=Users CA"), ca=True),
        sub_key.public_key(), CA_KEY, CA, now=NOW,
    )  # fmt: skip
    leaf = _carol_by(sub, sub_key)
    cert, key = carol_files(tmp_path)
    write(tmp_path / "carol", "carol.pem", leaf.public_bytes(PEM) + sub.public_bytes(PEM))
    args = ["--cert", str(cert), "--key", str(key), "--p12-password-file",
            str(password_file(tmp_path))]  # fmt: skip
    sswan = json.loads(run(tmp_path, "android", *args)[0])
    _, p12_cert, cas = pkcs12.load_key_and_certificates(
        base64.b64decode(sswan["local"]["p12"]), PASSPHRASE
    )
    assert p12_cert == leaf and cas == [sub]


def test_apple_refuses_a_key_it_cannot_sign_with(tmp_path: Path) -> None:
    key = ed448.Ed448PrivateKey.generate()
    request = pki.CertRequest(pki.parse_dn("C=CH, O=Example, CN=carol"),
                              sans=[pki.parse_san(CAROL_ID)])  # fmt: skip
    cert_path = write(tmp_path / "carol", "carol.pem", pki.make_certificate(
        request, key.public_key(), CA_KEY, CA, now=NOW).public_bytes(PEM), mode=0o644)  # fmt: skip
    key_path = write(tmp_path / "carol", "carol.key", key_bytes(key))
    config = gateway(tmp_path, carol_cert=False, **PUBKEY)
    command = [sys.executable, "-m", "larval", "profile", "rw", "--user", CAROL_ID, "--for",
               "apple", "-c", str(config), "-o", str(tmp_path / "out"), "--cert",
               str(cert_path), "--key", str(key_path), "--p12-password-file",
               str(password_file(tmp_path))]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"larval: {key_path}: the key is Ed448; Apple clients sign with RSA, "
                           "ECDSA or Ed25519 only\n")  # fmt: skip


@pytest.mark.parametrize(("remote_id", "warned"), [
    ("*@example.org", True), ("C=CH, O=Example, CN=carol", False), ("%any", False),
])  # fmt: skip
def test_windows_warns_of_a_gateway_refusing_the_machine_certificates_subject(
    tmp_path: Path, remote_id: str, warned: bool
) -> None:
    changes = {"remote": {"auth": "pubkey", "id": remote_id}}
    user = CAROL_ID if warned else "C=CH, O=Example, CN=carol"
    _, proc = run(tmp_path, "windows", *given(tmp_path), user=user, changes=changes)
    warning = ("connections.rw.remote.id: Windows sends the certificate's subject (C=CH, "
               "O=Example, CN=carol) as its IKE identity")  # fmt: skip
    assert (warning in proc.stderr) is warned, proc.stderr


def test_an_existing_output_file_becomes_mode_600(tmp_path: Path) -> None:
    out = write(tmp_path, "carol.sswan", b"old", mode=0o644)
    config = gateway(tmp_path, carol_cert=False, **PUBKEY)
    assert main(["profile", "rw", "--user", CAROL_ID, "--for", "android", "-c", str(config),
                 "-o", str(out), *given(tmp_path)]) == 0  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "p12" in json.loads(out.read_text())["local"]


def test_user_certificate_repr_shows_no_key() -> None:
    user = UserCertificate(CAROL, CAROL_KEY, "carol.pem", "carol.key")
    text = repr(user)
    assert text == "UserCertificate('carol.pem', 'C=CH, O=Example, CN=carol', ECDSA-P-256)"
    secret = CAROL_KEY.private_numbers().private_value  # type: ignore[union-attr]
    assert str(secret) not in text and hex(secret)[2:] not in text


def _carol_by(ca: x509.Certificate, ca_key: pki.PrivateKey) -> x509.Certificate:
    """carol's identity and key in a certificate of another CA."""
    request = pki.CertRequest(pki.parse_dn("C=CH, O=Other, CN=carol"),
                              sans=[pki.parse_san(CAROL_ID)])  # fmt: skip
    return pki.make_certificate(request, CAROL_KEY.public_key(), ca_key, ca, now=NOW)


def _unknown_ca_cert() -> x509.Certificate:
    key = pki.generate_key("ecdsa")
    request = pki.CertRequest(pki.parse_dn("C=CH, O=Unknown, CN=Unknown CA"), ca=True)
    return _carol_by(pki.make_certificate(request, key.public_key(), key, now=NOW), key)


@pytest.mark.parametrize(
    ("case", "changes", "expected"),
    [
        ("unknown-ca", PUBKEY,
         "{cert}: not a certificate connections.rw's clients may use: it must be signed by a "
         "CA of connections.rw.remote.cacerts (else of the credentials' x509ca/): untrusted: no "
         "chain to a trusted CA (issuer C=CH, O=Unknown, CN=Unknown CA)"),
        # other.pem is a CA of the credentials, but not one the connection names.
        ("other-ca", {"remote": {"auth": "pubkey", "id": "*@example.org",
                                 "cacerts": ["ca.pem"]}},
         "{cert}: not a certificate connections.rw's clients may use: it must be signed by a "
         "CA of connections.rw.remote.cacerts"),
        ("wrong-key", PUBKEY, "{key}: not the private key of {cert} (C=CH, O=Example, CN=carol)"),
        ("password-connection", {"remote": {"auth": "eap-mschapv2", "eap_id": "%any"}},
         "connections.rw.remote.auth: {cert}: the connection's clients prove themselves with "
         "eap-mschapv2 (a password), not a certificate"),
        ("other-user", {"remote": {"auth": "pubkey", "id": "%any"}},
         "{cert}: the certificate (C=CH, O=Example, CN=carol) does not carry the user's "
         "identity 'dave@example.org'"),
        ("no-key", PUBKEY, "--cert needs --key"),
        ("open-key", PUBKEY, "{key}: mode 0644, readable by group or others; chmod 600 it"),
        ("not-a-cert", PUBKEY, "{cert}: not an X.509 certificate (PEM or DER)"),
        ("empty-password", PUBKEY, "its first line is empty"),
        ("open-password", PUBKEY, "readable by group or others; chmod 600 it"),
        ("no-pkcs12", {"remote": {"auth": "eap-mschapv2", "eap_id": "%any"}},
         "this profile carries no PKCS#12"),
    ],
)  # fmt: skip
def test_refusals_name_the_file_and_key(
    tmp_path: Path, case: str, changes: dict[str, Any], expected: str
) -> None:
    cert, key = carol_files(tmp_path)
    user, password = CAROL_ID, password_file(tmp_path)
    if case == "unknown-ca":
        write(tmp_path / "carol", "carol.pem", _unknown_ca_cert().public_bytes(PEM))
    elif case == "other-ca":
        write(tmp_path / "carol", "carol.pem", _carol_by(OTHER_CA, OTHER_CA_KEY).public_bytes(PEM))
    elif case == "password-connection":
        user = "carol"
    elif case == "wrong-key":
        key = write(tmp_path / "carol", "other.key", key_bytes(pki.generate_key("ecdsa")))
    elif case == "other-user":
        user = "dave@example.org"
    elif case == "open-key":
        key.chmod(0o644)
    elif case == "not-a-cert":
        write(tmp_path / "carol", "carol.pem", b"no certificate")
    elif case == "empty-password":
        password = password_file(tmp_path, b"\n")
    elif case == "open-password":
        password.chmod(0o640)
    args = ["--cert", str(cert), "--key", str(key), "--p12-password-file", str(password)]
    if case == "no-key":
        args = args[:2]
    if case == "no-pkcs12":
        args = ["--p12-password-file", str(password)]
        user = "carol"
    config = gateway(tmp_path, carol_cert=False, **changes)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "larval", "profile", "rw", "--user", user, "--for",
               "android", "-c", str(config), "-o", str(out), *args]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("larval: ")
    assert expected.format(cert=cert, key=key) in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert PASSPHRASE.decode() not in proc.stderr
    assert not out.exists()
