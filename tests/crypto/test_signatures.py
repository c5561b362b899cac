"""Signatures of IKE's public-key authentication: every scheme both ways, AUTH data of each
method, RFC 7427's AlgorithmIdentifiers and hashes, and the choice of what to sign with."""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.crypto.ike_auth import signed_octets
from larval.crypto.prf import Prf
from larval.crypto.signatures import (
    SCHEMES,
    HashAlgorithm,
    PrivateKey,
    SignatureError,
    auth_data,
    choose_signature,
    decode_hashes,
    ecdsa_der,
    ecdsa_raw,
    encode_hashes,
    natural_schemes,
    parse_algorithm_identifier,
    parse_auth_data,
    sign,
    verify,
    verify_auth_data,
)
from larval.ike import auth_config

OCTETS = b"RealMessage1" + bytes(range(32)) + b"MACedIDForI"


@functools.cache
def key(kind: str) -> PrivateKey:
    """One key of each kind for the whole module (RSA takes its time)."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind.startswith("p"):
        curve = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[kind]
        return ec.generate_private_key(curve)
    return (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else ed448.Ed448PrivateKey.generate()
    )


KEY_FOR = {"rsa": "rsa2048", "rsa/pss": "rsa2048", "ecdsa": "p256", "ed25519": "ed25519",
           "ed448": "ed448"}  # fmt: skip


def test_the_schemes_are_those_the_configuration_names() -> None:
    assert set(SCHEMES) == set(auth_config.SCHEMES)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_scheme_signs_and_verifies_and_refuses_other_data(name: str) -> None:
    private = key(KEY_FOR[SCHEMES[name].family])
    signature = sign(private, name, OCTETS)
    verify(private.public_key(), name, OCTETS, signature)
    with pytest.raises(SignatureError, match=f"the {name} signature does not verify"):
        verify(private.public_key(), name, OCTETS + b"!", signature)


def test_pss_signs_with_a_salt_as_long_as_the_hash_and_mgf1_of_it() -> None:
    private = key("rsa2048")
    signature = sign(private, "rsa/pss-sha384", OCTETS)
    # cryptography checks the salt length it is told: 48 passes, 32 does not.
    pss48 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    private.public_key().verify(signature, OCTETS, pss48, hashes.SHA384())
    pss32 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=32)
    with pytest.raises(InvalidSignature):
        private.public_key().verify(signature, OCTETS, pss32, hashes.SHA384())


def test_a_key_of_another_type_is_named_not_tried() -> None:
    with pytest.raises(SignatureError, match="a ECDSA-256 key does not sign rsa-sha256"):
        sign(key("p256"), "rsa-sha256", OCTETS)
    with pytest.raises(SignatureError, match="ed25519 signature, but the key is RSA-2048"):
        verify(key("rsa2048").public_key(), "ed25519", OCTETS, bytes(64))
    with pytest.raises(SignatureError, match="no signature scheme 'dsa-sha1'"):
        sign(key("p256"), "dsa-sha1", OCTETS)


# -- byte-exact AUTH data over the octets of RFC 7296 §2.15 -------------------------------

REAL_MESSAGE_1 = bytes.fromhex("0123456789abcdef") + bytes(20) + b"IKE_SA_INIT request"
NONCE_R = bytes(range(100, 132))
SK_PI = bytes(range(32))
IDI_BODY = bytes([2, 0, 0, 0]) + b"moon.example.org"  # ID_FQDN, RESERVED, the name
#: DigestInfo for SHA-256 before the hash (RFC 8017 §9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _octets() -> bytes:
    """InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    (RFC 7296 §2.15), the PRF HMAC-SHA-256, computed here by hand."""
    maced = hmac.new(SK_PI, IDI_BODY, hashlib.sha256).digest()
    return REAL_MESSAGE_1 + NONCE_R + maced


def test_the_signed_octets_are_those_of_section_2_15() -> None:
    prf = Prf(5)  # PRF_HMAC_SHA2_256
    assert signed_octets(REAL_MESSAGE_1, NONCE_R, prf, SK_PI, IDI_BODY) == _octets()


def test_rsa_pkcs1_sha256_auth_data_byte_exact() -> None:
    private = key("rsa2048")
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers, size = private.private_numbers(), private.key_size // 8
    # EMSA-PKCS1-v1_5 (RFC 8017 §9.2) and RSASP1 (§5.2.1), with Python's integers.
    t = SHA256_DIGEST_INFO + hashlib.sha256(_octets()).digest()
    em = b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t
    s = pow(int.from_bytes(em, "big"), numbers.d, numbers.public_numbers.n).to_bytes(size, "big")
    identifier = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption
    expected = bytes([len(identifier)]) + identifier + s
    assert auth_data(private, 14, "rsa-sha256", _octets()) == expected
    assert verify_auth_data(private.public_key(), 14, expected, _octets()).name == "rsa-sha256"


def test_rsa_method_1_is_pkcs1_sha1_without_an_identifier() -> None:
    private = key("rsa2048")
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers, size = private.private_numbers(), private.key_size // 8
    t = bytes.fromhex("3021300906052b0e03021a05000414") + hashlib.sha1(_octets()).digest()
    em = b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t
    s = pow(int.from_bytes(em, "big"), numbers.d, numbers.public_numbers.n).to_bytes(size, "big")
    assert auth_data(private, 1, "rsa-sha1", _octets()) == s
    assert verify_auth_data(private.public_key(), 1, s, _octets()).name == "rsa-sha1"


def test_ed25519_auth_data_byte_exact_with_the_rfc_8032_key() -> None:
    # RFC 8032 §7.1 TEST 1's secret key; Ed25519 signs the octets whole (RFC 8420 §1).
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    private = ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    assert private.public_key().public_bytes_raw().hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    expected = bytes.fromhex("07300506032b6570") + private.sign(_octets())
    assert auth_data(private, 14, "ed25519", _octets()) == expected
    # RFC 8032 TEST 1 itself: the empty message.
    assert private.sign(b"").hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d")


@pytest.mark.parametrize(("kind", "method", "size"), [("p256", 9, 32), ("p384", 10, 48),
                                                      ("p521", 11, 66)])  # fmt: skip
def test_rfc_4754_methods_carry_r_and_s_of_the_curves_size(
    kind: str, method: int, size: int
) -> None:
    private = key(kind)
    name = {9: "ecdsa-sha256", 10: "ecdsa-sha384", 11: "ecdsa-sha512"}[method]
    data = auth_data(private, method, name, OCTETS)
    assert len(data) == 2 * size
    assert verify_auth_data(private.public_key(), method, data, OCTETS).name == name
    with pytest.raises(SignatureError, match="does not verify"):
        verify_auth_data(private.public_key(), method, data, OCTETS + b"!")
    with pytest.raises(SignatureError, match=f"r | s of {2 * size - 1} octets"):
        verify_auth_data(private.public_key(), method, data[1:], OCTETS)


def test_a_classic_ecdsa_method_must_match_the_curve() -> None:
    data = auth_data(key("p384"), 10, "ecdsa-sha384", OCTETS)
    with pytest.raises(SignatureError, match="Auth Method 9 is ECDSA P-256, the key is ECDSA-384"):
        verify_auth_data(key("p384").public_key(), 9, data, OCTETS)
    with pytest.raises(SignatureError, match="Auth Method 9 does not carry ecdsa-sha384"):
        auth_data(key("p256"), 9, "ecdsa-sha384", OCTETS)


def test_method_14_ecdsa_signatures_are_der() -> None:
    data = auth_data(key("p256"), 14, "ecdsa-sha256", OCTETS)
    assert data[:13] == bytes.fromhex("0c300a06082a8648ce3d040302")
    assert data[13] == 0x30  # a DER SEQUENCE of r and s
    raw = ecdsa_raw(data[13:], 32)
    assert ecdsa_der(raw) == data[13:]


# -- RFC 7427 AlgorithmIdentifiers ---------------------------------------------------------

#: As `cryptography` writes them in certificates (the remote-access notes).
KNOWN = {
    "rsa-sha256": "300d06092a864886f70d01010b0500",
    "ecdsa-sha256": "300a06082a8648ce3d040302",
    "ed25519": "300506032b6570",
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_identifiers_are_those_cryptography_writes(name: str) -> None:
    assert SCHEMES[name].algorithm_identifier.hex() == KNOWN[name]


def _certificate_signature_algorithm(private: PrivateKey, **sign_options: object) -> bytes:
    """The DER signatureAlgorithm of a certificate `cryptography` signs (RFC 5280 §4.1.1.2):
    what follows TBSCertificate in the Certificate SEQUENCE."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    )  # fmt: skip
    cert = builder.sign(private, **sign_options)  # type: ignore[arg-type]
    der, tbs = cert.public_bytes(Encoding.DER), cert.tbs_certificate_bytes
    rest = der[der.index(tbs) + len(tbs) :]
    return rest[: 2 + rest[1]]


@pytest.mark.parametrize("bits", [256, 384, 512])
def test_pss_identifiers_are_those_cryptography_writes(bits: int) -> None:
    h = {256: hashes.SHA256(), 384: hashes.SHA384(), 512: hashes.SHA512()}[bits]
    pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
    written = _certificate_signature_algorithm(key("rsa2048"), algorithm=h, rsa_padding=pss)
    assert SCHEMES[f"rsa/pss-sha{bits}"].algorithm_identifier == written
    assert written.hex().startswith("304106092a864886f70d01010a3034a00f")


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_identifier_parses_back_to_its_scheme(name: str) -> None:
    assert parse_algorithm_identifier(SCHEMES[name].algorithm_identifier).name == name


def _pss(hash_oid: str, mgf_hash_oid: str, salt: int, *, null: bool = True,
         trailer: bytes = b"") -> bytes:  # fmt: skip
    """An RSASSA-PSS AlgorithmIdentifier put together by hand (RFC 4055 §3.1)."""

    def tlv(tag: int, content: bytes) -> bytes:
        return bytes([tag, len(content)]) + content

    def alg(oid: str) -> bytes:
        return tlv(0x30, tlv(0x06, bytes.fromhex(oid)) + (b"\x05\x00" if null else b""))

    mgf = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010108")) + alg(mgf_hash_oid))
    params = tlv(0xA0, alg(hash_oid)) + tlv(0xA1, mgf) + tlv(0xA2, tlv(0x02, bytes([salt])))
    return tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d01010a")) + tlv(0x30, params + trailer))


SHA256, SHA384, SHA1 = "608648016503040201", "608648016503040202", "2b0e03021a"


def test_pss_parameters_equal_in_meaning_are_taken() -> None:
    assert parse_algorithm_identifier(_pss(SHA256, SHA256, 32)).name == "rsa/pss-sha256"
    # Hash identifiers without NULL parameters, and the default trailer written out.
    assert parse_algorithm_identifier(_pss(SHA384, SHA384, 48, null=False)).name == (
        "rsa/pss-sha384"
    )
    trailer = bytes.fromhex("a303020101")
    assert parse_algorithm_identifier(_pss(SHA256, SHA256, 32, trailer=trailer)).name == (
        "rsa/pss-sha256"
    )
    # sha256WithRSAEncryption without its NULL (RFC 4055 §5: readers take both).
    assert parse_algorithm_identifier(bytes.fromhex("300b06092a864886f70d01010b")).name == (
        "rsa-sha256"
    )


@pytest.mark.parametrize(
    ("der", "reason"),
    [
        (_pss(SHA256, SHA256, 20), "the salt is not as long as the hash"),
        (_pss(SHA256, SHA384, 32), "MGF1's hash is not the signature's"),
        (_pss(SHA1, SHA1, 20), "the hash is SHA-1"),
        (_pss(SHA256, SHA256, 32, trailer=bytes.fromhex("a303020102")), "trailerField is not 1"),
        (bytes.fromhex("300f06092a864886f70d01010a3002a500"), "unknown or repeated fields"),
        (bytes.fromhex("300d06092a864886f70d01010a3000"), "the hash is SHA-1 by default"),
        (bytes.fromhex("300d06092a864886f70d0101040500"), "1.2.840.113549.1.1.4: not a signature"),
        (bytes.fromhex("300c06082a8648ce3d0403020500"), "parameters must be absent"),
        (bytes.fromhex("300e06092a864886f70d01010b020100"), "parameters not as RFC 4055"),
        (bytes.fromhex("300d06092a864886f70d01010b05"), "truncated DER"),
        (bytes.fromhex("30820005" + "06032b6570"), "not a DER length"),
        (bytes.fromhex("300506032b65700000"), "not one DER SEQUENCE"),
        (bytes.fromhex("3000"), "not an OID and parameters"),
        (b"", "not one DER SEQUENCE"),
    ],
)
def test_identifiers_larval_does_not_write_are_refused_with_the_reason(
    der: bytes, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason.replace("(", r"\(").replace("|", r"\|")):
        parse_algorithm_identifier(der)


@pytest.mark.parametrize(
    ("method", "data", "reason"),
    [
        (14, b"", "shorter than its ASN.1 Length says"),
        (14, bytes([20]) + bytes(10), "shorter than its ASN.1 Length says"),
        (14, bytes.fromhex("07300506032b6570"), "without a signature"),
        (2, b"mic", "Auth Method 2 is no signature"),
        (9, b"", "Auth Method 9 without a signature"),
    ],
)
def test_auth_data_that_does_not_parse_says_why(method: int, data: bytes, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        parse_auth_data(method, data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 9, 10, 11, 14, 200]), st.binary(max_size=120))
def test_the_auth_data_parser_raises_nothing_but_signature_error(method: int, data: bytes) -> None:
    with contextlib.suppress(SignatureError):
        parse_auth_data(method, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.binary(max_size=80))
def test_a_method_14_signature_with_any_identifier_fails_cleanly(ident: bytes, sig: bytes) -> None:
    data = bytes([len(ident)]) + ident + sig
    with pytest.raises(SignatureError):
        verify_auth_data(key("p256").public_key(), 14, data, OCTETS)


# -- SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) and the choice of a scheme ---------------------


def test_hash_algorithms_notify_data_both_ways() -> None:
    data = encode_hashes([HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY])
    assert data == bytes.fromhex("000200040005")
    assert decode_hashes(data) == (2, 4, 5)
    (unknown,) = decode_hashes(bytes.fromhex("0009"))
    assert unknown.name == "UNKNOWN_9" and encode_hashes([unknown]) == bytes.fromhex("0009")
    assert decode_hashes(b"") == ()
    with pytest.raises(SignatureError, match="of 3 octets, not 2 each"):
        decode_hashes(bytes(3))


ALL = (1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("kind", "configured", "peer", "expected"),
    [
        # No SIGNATURE_HASH_ALGORITHMS from the peer: the classic methods, EdDSA by 14.
        ("rsa2048", (), None, (1, "rsa-sha1")),
        ("rsa2048", ("rsa/pss-sha256",), None, (1, "rsa-sha1")),
        ("p256", (), None, (9, "ecdsa-sha256")),
        ("p384", (), None, (10, "ecdsa-sha384")),
        ("p521", (), None, (11, "ecdsa-sha512")),
        ("ed25519", (), None, (14, "ed25519")),
        ("ed448", (), None, (14, "ed448")),
        # With them: the key's natural scheme, as charon signs (PKCS#1 v1.5 for RSA).
        ("rsa2048", (), ALL, (14, "rsa-sha256")),
        ("rsa4096", (), ALL, (14, "rsa-sha384")),
        ("p384", (), ALL, (14, "ecdsa-sha384")),
        ("ed25519", (), ALL, (14, "ed25519")),
        ("rsa2048", (), (4,), (14, "rsa-sha512")),
        ("p384", (), (2,), None),
        ("ed25519", (), (2, 3, 4), None),
        # Configured: the first that fits the key and the peer's hashes.
        ("rsa2048", ("rsa/pss-sha384", "rsa-sha256"), ALL, (14, "rsa/pss-sha384")),
        ("rsa2048", ("ecdsa-sha256", "rsa/pss-sha512"), (2, 4), (14, "rsa/pss-sha512")),
        ("rsa2048", ("rsa/pss-sha384",), (2,), None),
        ("p256", ("ed25519",), ALL, None),
    ],
)
def test_what_this_end_signs_with(
    kind: str,
    configured: tuple[str, ...],
    peer: tuple[int, ...] | None,
    expected: tuple[int, str] | None,
) -> None:
    if expected is None:
        with pytest.raises(SignatureError, match="with a hash the peer announced"):
            choose_signature(key(kind), configured, peer)
    else:
        assert choose_signature(key(kind), configured, peer) == expected


def test_natural_schemes_follow_strongswan_by_key_size() -> None:
    assert natural_schemes(key("rsa2048")) == ("rsa-sha256", "rsa-sha384", "rsa-sha512")
    assert natural_schemes(key("rsa4096")) == ("rsa-sha384", "rsa-sha512", "rsa-sha256")
    assert natural_schemes(key("p256")) == ("ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512")
    assert natural_schemes(key("p521")) == ("ecdsa-sha512",)


@pytest.mark.parametrize(
    ("kind", "configured", "peer"),
    [("rsa2048", (), ALL), ("rsa2048", ("rsa/pss-sha256",), ALL), ("rsa2048", (), None),
     ("p256", (), ALL), ("p521", (), None), ("ed448", (), ALL)],
)  # fmt: skip
def test_what_is_chosen_signs_auth_data_that_verifies(
    kind: str, configured: tuple[str, ...], peer: tuple[int, ...] | None
) -> None:
    method, name = choose_signature(key(kind), configured, peer)
    data = auth_data(key(kind), method, name, OCTETS)
    assert verify_auth_data(key(kind).public_key(), method, data, OCTETS).name == name
