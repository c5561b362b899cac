"""A credentials directory in swanctl's layout: everything loads and pairs, every problem is
one line naming its file, and all of them are reported at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.credentials import (
    CertificateWithKey,
    Credentials,
    CredentialsError,
    PrivateKey,
    load_credentials,
)
from larval.errors import LarvalError
from tests.credentials.files import (
    CA_KEY,
    DER,
    ED25519,
    P256,
    P384,
    PASSPHRASE,
    PEM,
    PKCS1,
    PKCS8,
    RSA_2048,
    certificate,
    crl,
    key_bytes,
    write,
    write_cert,
    write_key,
)


@pytest.fixture
def full(tmp_path: Path) -> Path:
    """A directory using every key form, both encodings and swanctl's subdirectories."""
    write_key(tmp_path, "rsa/gw.pem", RSA_2048, form=PKCS1)  # PKCS#1 PEM
    write_key(tmp_path, "ecdsa/carol.der", P256, encoding=DER, form=PKCS1)  # SEC1 DER
    write_key(tmp_path, "pkcs8/dave.key", P384, passphrase=PASSPHRASE)  # encrypted PKCS#8
    write_key(tmp_path, "private/moon", ED25519, encoding=DER)  # PKCS#8 DER, no suffix
    write_cert(tmp_path, "x509/gw.pem", certificate("gw", RSA_2048))
    write_cert(tmp_path, "x509/carol.der", certificate("carol", P256), DER)
    write_cert(tmp_path, "x509/dave.crt", certificate("dave", P384))
    write_cert(tmp_path, "x509/moon", certificate("moon", ED25519), DER)
    write_cert(tmp_path, "x509ca/ca.pem", certificate("Test CA", CA_KEY, ca=True))
    write(tmp_path, "x509crl/ca.crl", crl().public_bytes(DER))
    write(tmp_path, "x509/.hidden.pem", b"not a certificate, and skipped")
    return tmp_path


def load(root: Path) -> Credentials:
    return load_credentials(root, {"dave": PASSPHRASE})


def problems(root: Path, passphrases: dict[str, bytes] | None = None) -> tuple[str, ...]:
    with pytest.raises(CredentialsError) as caught:
        load_credentials(root, passphrases or {"dave": PASSPHRASE})
    assert issubclass(type(caught.value), LarvalError)
    for problem in caught.value.problems:
        assert problem in str(caught.value)
    return caught.value.problems


def subject(pair: CertificateWithKey) -> str:
    return pair.cert.subject.rfc4514_string()


def test_everything_loads_and_each_certificate_pairs_with_its_key(full: Path) -> None:
    creds = load(full)
    pairs = {subject(pair): pair for pair in creds.certs}
    assert sorted(pairs) == ["CN=carol", "CN=dave", "CN=gw", "CN=moon"]
    expected: dict[str, PrivateKey] = {
        "CN=gw": RSA_2048,
        "CN=carol": P256,
        "CN=dave": P384,
        "CN=moon": ED25519,
    }
    for cn, key in expected.items():
        assert pairs[cn].key.key.private_bytes(DER, PKCS8, serialization.NoEncryption()) == (
            key.private_bytes(DER, PKCS8, serialization.NoEncryption())
        )
    assert pairs["CN=carol"].path == "x509/carol.der"
    assert pairs["CN=carol"].key.path == "ecdsa/carol.der"
    assert [ca.subject.rfc4514_string() for ca in creds.cacerts] == ["CN=Test CA"]
    assert len(creds.crls) == 1
    assert sorted(k.path for k in creds.keys) == [
        "ecdsa/carol.der",
        "pkcs8/dave.key",
        "private/moon",
        "rsa/gw.pem",
    ]


def test_missing_subdirectories_are_empty(tmp_path: Path) -> None:
    assert load_credentials(tmp_path) == Credentials()
    write_key(tmp_path, "private/gw.pem", P256)
    creds = load_credentials(tmp_path)
    assert (creds.certs, creds.cacerts, creds.crls, len(creds.keys)) == ((), (), (), 1)


def test_a_directory_that_is_not_there_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path / "nowhere") == (f"{tmp_path / 'nowhere'}: not a directory",)


def test_a_pem_bundle_in_x509ca_gives_every_certificate(tmp_path: Path) -> None:
    bundle = b"".join(
        certificate(cn, CA_KEY, ca=True).public_bytes(PEM) for cn in ("root", "intermediate")
    )
    write(tmp_path, "x509ca/bundle.pem", bundle)
    assert [c.subject.rfc4514_string() for c in load_credentials(tmp_path).cacerts] == [
        "CN=root",
        "CN=intermediate",
    ]


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_a_key_only_its_owner_reads_is_accepted(tmp_path: Path, mode: int) -> None:
    write(tmp_path, "private/gw.pem", key_bytes(P256), mode=mode)
    assert len(load_credentials(tmp_path).keys) == 1


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660], ids=oct)
def test_a_key_group_or_others_read_is_refused_naming_file_and_mode(
    tmp_path: Path, mode: int
) -> None:
    write(tmp_path, "private/gw.pem", key_bytes(P256), mode=mode)
    assert problems(tmp_path) == (
        f"private/gw.pem: mode {mode:04o}, readable by group or others; chmod 600 it",
    )


def test_a_1024_bit_rsa_key_is_refused_with_its_size(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_key(tmp_path, "rsa/old.pem", small, form=PKCS1)
    assert problems(tmp_path) == ("rsa/old.pem: RSA key of 1024 bits; 2048 to 8192 accepted",)


def test_a_curve_other_than_the_nist_three_is_refused(tmp_path: Path) -> None:
    write_key(tmp_path, "ecdsa/k1.pem", ec.generate_private_key(ec.SECP256K1()))
    assert problems(tmp_path) == (
        "ecdsa/k1.pem: ECDSA curve secp256k1 not accepted; P-256, P-384 or P-521",
    )


def test_an_encrypted_key_without_its_passphrase_is_named(tmp_path: Path) -> None:
    write_key(tmp_path, "pkcs8/dave.pem", P384, passphrase=PASSPHRASE)
    assert problems(tmp_path, {"other": PASSPHRASE}) == (
        "pkcs8/dave.pem: encrypted and no passphrase given ([secrets.private-dave])",
    )


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_a_wrong_passphrase_is_named_and_not_shown(
    tmp_path: Path, encoding: serialization.Encoding
) -> None:
    write_key(tmp_path, "pkcs8/dave.key", P384, encoding=encoding, passphrase=PASSPHRASE)
    found = problems(tmp_path, {"dave": b"hunter2-not-it"})
    assert found == ("pkcs8/dave.key: wrong passphrase ([secrets.private-dave])",)


def test_an_ed448_key_is_accepted(tmp_path: Path) -> None:
    write_key(tmp_path, "private/ed448.pem", ed448.Ed448PrivateKey.generate())
    assert repr(load_credentials(tmp_path).keys) == "(PrivateKeyFile('private/ed448.pem', Ed448),)"


def test_a_passphrase_for_a_key_that_is_not_encrypted_does_no_harm(tmp_path: Path) -> None:
    write_key(tmp_path, "private/dave.pem", P384)
    assert len(load_credentials(tmp_path, {"dave": PASSPHRASE}).keys) == 1


def test_files_that_do_not_parse_are_named(tmp_path: Path) -> None:
    write(tmp_path, "private/junk.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END")
    write(tmp_path, "x509/junk.der", b"\x30\x03\x02\x01\x00")
    write(tmp_path, "x509ca/junk.pem", P256.public_key().public_bytes(PEM, _spki()))
    write(tmp_path, "x509crl/junk.crl", certificate("gw", P256).public_bytes(DER))
    assert sorted(problems(tmp_path)) == [
        "private/junk.pem: not a private key (PKCS#1, SEC1 or PKCS#8; PEM or DER)",
        "x509/junk.der: not an X.509 certificate (PEM or DER)",
        "x509ca/junk.pem: not an X.509 certificate (PEM or DER)",
        "x509crl/junk.crl: not an X.509 CRL (PEM or DER)",
    ]


def _spki() -> serialization.PublicFormat:
    return serialization.PublicFormat.SubjectPublicKeyInfo


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "x509").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "x509" / "gone.pem").symlink_to(tmp_path / "nowhere.pem")
    (tmp_path / "private" / "gone.pem").symlink_to(tmp_path / "nowhere.pem")
    assert sorted(problems(tmp_path)) == [
        "private/gone.pem: cannot be read: No such file or directory",
        "x509/gone.pem: cannot be read: No such file or directory",
    ]


def test_a_file_without_read_permission_is_named(tmp_path: Path) -> None:
    write_cert(tmp_path, "x509ca/ca.pem", certificate("Test CA", CA_KEY, ca=True))
    os.chmod(tmp_path / "x509ca" / "ca.pem", 0)
    if os.geteuid() != 0:
        assert problems(tmp_path) == ("x509ca/ca.pem: cannot be read: Permission denied",)
        return
    # Root reads a file of mode 0000 through CAP_DAC_OVERRIDE: load in a child whose
    # capability bounding set lacks it (and CAP_DAC_READ_SEARCH), as a user would.
    script = (
        "import sys\n"
        "from larval.credentials import CredentialsError, load_credentials\n"
        "try:\n"
        "    load_credentials(sys.argv[1])\n"
        "except CredentialsError as e:\n"
        "    print('\\n'.join(e.problems))\n"
    )
    child = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c",
         script, str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert child.stdout.splitlines() == ["x509ca/ca.pem: cannot be read: Permission denied"]


def test_a_certificate_whose_key_is_not_loaded_is_named(tmp_path: Path) -> None:
    write_key(tmp_path, "private/carol.pem", P256)
    write_cert(tmp_path, "x509/carol.pem", certificate("carol", P256))
    write_cert(tmp_path, "x509/gw.pem", certificate("gw", P384))
    assert problems(tmp_path) == (
        "x509/gw.pem: no private key loaded for this certificate (CN=gw)",
    )


def test_every_problem_is_reported_at_once(full: Path) -> None:
    os.chmod(full / "rsa" / "gw.pem", 0o644)
    write(full, "x509ca/junk.pem", b"junk")
    write_key(full, "private/small.pem", rsa.generate_private_key(65537, 1024))
    found = problems(full, {"dave": b"wrong"})
    assert sorted(found) == [
        "pkcs8/dave.key: wrong passphrase ([secrets.private-dave])",
        "private/small.pem: RSA key of 1024 bits; 2048 to 8192 accepted",
        "rsa/gw.pem: mode 0644, readable by group or others; chmod 600 it",
        # Neither key loaded, so neither certificate pairs.
        "x509/dave.crt: no private key loaded for this certificate (CN=dave)",
        "x509/gw.pem: no private key loaded for this certificate (CN=gw)",
        "x509ca/junk.pem: not an X.509 certificate (PEM or DER)",
    ]


def test_no_key_bytes_appear_in_any_repr_or_error(full: Path) -> None:
    creds = load(full)
    shown = repr(creds) + "".join(repr(pair) for pair in creds.certs)
    for pair in creds.certs:
        key = pair.key.key
        secret = key.private_bytes(DER, PKCS8, serialization.NoEncryption())
        for form in (secret, key_bytes(key)):
            assert form.hex() not in shown
            assert repr(form) not in shown
        if isinstance(key, rsa.RSAPrivateKey):
            numbers = key.private_numbers()
            for number in (numbers.d, numbers.p, numbers.q):
                assert str(number) not in shown
                assert f"{number:x}" not in shown
    assert "PrivateKeyFile('rsa/gw.pem', RSA-2048)" in shown
    assert "PrivateKeyFile('ecdsa/carol.der', ECDSA-P-256)" in shown
    assert "PrivateKeyFile('pkcs8/dave.key', ECDSA-P-384)" in shown
    assert "PrivateKeyFile('private/moon', Ed25519)" in shown
    with pytest.raises(CredentialsError) as caught:
        load_credentials(full, {"dave": b"wrong"})
    assert "wrong" not in str(caught.value).replace("wrong passphrase", "")
    assert PASSPHRASE.decode() not in str(caught.value)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subdir=st.sampled_from(["x509", "x509ca", "x509crl", "private", "rsa", "ecdsa", "pkcs8"]),
    data=st.binary(max_size=400) | st.binary(max_size=200).map(lambda b: b"-----BEGIN " + b),
)
def test_any_bytes_in_any_subdirectory_are_one_line_naming_the_file(
    tmp_path: Path, subdir: str, data: bytes
) -> None:
    root = tmp_path / f"{subdir}-{len(data)}-{hash(data)}"
    write(root, f"{subdir}/f.pem", data)
    with pytest.raises(CredentialsError) as caught:
        load_credentials(root)
    (line,) = caught.value.problems
    assert line.startswith(f"{subdir}/f.pem: not ")
