"""Identities configured once go on the wire of either version as the same number."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from larval.ike.identity import (
    CERT_PARSE_ERRORS,
    IdentityMatch,
    IdType,
    cert_matches_identity,
    certificate_key_ids,
    describe_identity,
    describe_subject,
    dn_attributes,
    identity,
)
from larval.ikev1.constants import IdType as Ikev1IdType


@pytest.mark.parametrize(
    ("text", "kind", "data"),
    [
        ("192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01")),
        ("vpn.example", IdType.ID_FQDN, b"vpn.example"),
        ("me@vpn.example", IdType.ID_RFC822_ADDR, b"me@vpn.example"),
    ],
)
def test_identity(text: str, kind: IdType, data: bytes) -> None:
    assert identity(text) == (kind, data)


def test_ikev1_numbers_the_shared_types_alike() -> None:
    """RFC 2407 §4.6.2.1 and RFC 7296 §3.5 share these numbers; IKEv1 sends them as is."""
    shared = {
        IdType.ID_IPV4_ADDR: Ikev1IdType.ID_IPV4_ADDR,
        IdType.ID_FQDN: Ikev1IdType.ID_FQDN,
        IdType.ID_RFC822_ADDR: Ikev1IdType.ID_USER_FQDN,
        IdType.ID_IPV6_ADDR: Ikev1IdType.ID_IPV6_ADDR,
        IdType.ID_DER_ASN1_DN: Ikev1IdType.ID_DER_ASN1_DN,
        IdType.ID_DER_ASN1_GN: Ikev1IdType.ID_DER_ASN1_GN,
        IdType.ID_KEY_ID: Ikev1IdType.ID_KEY_ID,
    }
    assert all(Ikev1IdType(int(v2)) is v1 for v2, v1 in shared.items())
    # Where the registries part: IKEv1's subnets and ranges, IKEv2's ID_NULL.
    assert IdType(4).name == "UNKNOWN_4" and Ikev1IdType(13).name == "UNKNOWN_13"


# --- every form strongSwan's identification parser takes -------------------------------

DN_CAROL = (
    # SEQUENCE { SET { SEQUENCE { countryName, PrintableString "US" } }
    "302f310b3009060355040613025553"
    # SET { SEQUENCE { organizationName, PrintableString "Example" } }
    "3110300e060355040a13074578616d706c65"
    # SET { SEQUENCE { commonName, PrintableString "carol" } }
    "310e300c06035504031305636172 6f6c"
).replace(" ", "")


@pytest.mark.parametrize(
    ("text", "kind", "data"),
    [
        ("C=US, O=Example, CN=carol", IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL)),
        ("/C=US/O=Example/CN=carol", IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL)),
        ("c=US,o=Example,  cn=carol  ", IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL)),
        ("asn1dn:C=US, O=Example, CN=carol", IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL)),
        ("asn1dn:#" + DN_CAROL, IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL)),
        ("@vpn.example", IdType.ID_FQDN, b"vpn.example"),
        ("@@me", IdType.ID_RFC822_ADDR, b"me"),
        ("@#0a0B", IdType.ID_KEY_ID, b"\x0a\x0b"),
        ("@#0x0a:0b:0c", IdType.ID_KEY_ID, b"\x0a\x0b\x0c"),  # 0x and ':' between octets
        ("@#abc", IdType.ID_KEY_ID, b"\x0a\xbc"),  # an odd digit count: a 0 in front
        ("keyid:#abcd", IdType.ID_KEY_ID, b"\xab\xcd"),
        ("keyid:text", IdType.ID_KEY_ID, b"text"),
        ("KeyId:text", IdType.ID_KEY_ID, b"text"),  # prefixes in any case
        ("fqdn:192.0.2.1", IdType.ID_FQDN, b"192.0.2.1"),
        ("dns:vpn.example", IdType.ID_FQDN, b"vpn.example"),
        ("email:vpn.example", IdType.ID_RFC822_ADDR, b"vpn.example"),
        ("rfc822:me@vpn.example", IdType.ID_RFC822_ADDR, b"me@vpn.example"),
        ("userfqdn:me@vpn.example", IdType.ID_RFC822_ADDR, b"me@vpn.example"),
        ("ipv4:192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("ipv4:#c0000201", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("ipv6:2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01")),
        ("asn1gn:#3000", IdType.ID_DER_ASN1_GN, b"\x30\x00"),
        ("{13}:#", IdType.ID_NULL, b""),
        ("{200}:raw", IdType(200), b"raw"),
        ("host:1", IdType.ID_KEY_ID, b"host:1"),  # ':' and no IPv6 address: strongSwan's KEY_ID
        ("0.0.0.0", IdType.ID_IPV4_ADDR, bytes(4)),
        ("vpn", IdType.ID_FQDN, b"vpn"),
        ("*.example.org", IdType.ID_FQDN, b"*.example.org"),
    ],
)
def test_strongswan_forms(text: str, kind: IdType, data: bytes) -> None:
    assert identity(text) == (kind, data)


def test_a_dn_keeps_the_order_written_and_strongswans_string_types() -> None:
    kind, data = identity("CN=Ünï, E=me@example.org, DC=org, O=A\\, B, 2.5.4.11=Unit")
    assert kind is IdType.ID_DER_ASN1_DN
    assert dn_attributes(data) == (
        ("2.5.4.3", 0x0C, "Ünï".encode()),  # no PrintableString: UTF8String
        ("1.2.840.113549.1.9.1", 0x16, b"me@example.org"),  # IA5String
        ("0.9.2342.19200300.100.1.25", 0x13, b"org"),
        ("2.5.4.10", 0x13, b"A, B"),  # "\\," is a comma in the value
        ("2.5.4.11", 0x13, b"Unit"),  # a dotted OID for a word strongSwan does not know
    )
    # The DER of that x509.Name, in the order written
    t = _ASN1Type
    written = [(NameOID.COMMON_NAME, "Ünï", t.UTF8String),
               (NameOID.EMAIL_ADDRESS, "me@example.org", t.IA5String),
               (NameOID.DOMAIN_COMPONENT, "org", t.PrintableString),
               (NameOID.ORGANIZATION_NAME, "A, B", t.PrintableString),
               (NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit", t.PrintableString)]  # fmt: skip
    name = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(*a)]) for a in written])
    assert data == name.public_bytes()


# Subjects strongSwan 5.9.8 wrote: `pki --self --in key.pem --dn TEXT --outform der`, the
# subject's DER read back with cryptography. strongSwan encodes and prints them so.
STRONGSWAN_DNS = [
    (
        "C=CH, O=strong Swan, OU=a+b, CN=Ünï, E=x@y.org",
        "3059310b300906035504061302434831143012060355040a130b7374726f6e67205377616e310c300a"
        "060355040b1303612b62310e300c06035504030c05c39c6ec3af3116301406092a864886f70d010901"
        "16077840792e6f7267",
    ),
    (
        "DC=org, UID=carol, serialNumber=123, SN=Smith, G=Carol, T=Dr, STREET=Main 1, "
        "employeeNumber=7, unstructuredName=un, unstructuredAddress=ua, ND=nd",
        "3081c231133011060a0992268993f22c64011913036f726731153013060a0992268993f22c6401011305"
        "6361726f6c310c300a06035504051303313233310e300c06035504041305536d697468310e300c0603"
        "55042a13054361726f6c310b3009060355040c13024472310f300d060355040913064d61696e203131"
        "11300f060a6086480186f8420301031301373111300f06092a864886f70d0109021602756e3111300f"
        "06092a864886f70d01090813027561310f300d0607028206010a071413026e64",
    ),
]


@pytest.mark.parametrize(("text", "der"), STRONGSWAN_DNS)
def test_dns_as_strongswan_writes_and_prints_them(text: str, der: str) -> None:
    assert identity(text) == (IdType.ID_DER_ASN1_DN, bytes.fromhex(der))
    assert describe_identity(IdType.ID_DER_ASN1_DN, bytes.fromhex(der)) == text
    # its other words for the same attributes
    short = text.replace("employeeNumber=", "EN=").replace("unstructuredName=", "UN=")
    assert identity(short.replace("unstructuredAddress=", "UA=")) == identity(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("C=US, XX=carol", "DN 'C=US, XX=carol': unknown attribute 'XX' (one of ND, UID, "),
        ("C=US, carol", "DN 'C=US, carol': 'carol' is not attribute=value"),
        ("E=mé@example.org", "is not ASCII"),
        ("C=USA, CN=x", "DN 'C=USA, CN=x': C='USA': Attribute's length must be >= 2 and <= 2"),
        ("C=US, CN=", "DN 'C=US, CN=': CN='': Attribute's length must be >= 1"),
        ("@#xyz", "@#xyz: 'xyz' is not hex"),
        ("keyid:#1g", "'1g' is not hex"),
        ("@#0a 0b", "'0a 0b' is not hex"),
        ("{256}:#00", "'{256}:#00': an ID Type is a number up to 255"),
        ("ipv4:#0102", "'ipv4:#0102': 2 octets, an address here has 4"),
        ("ipv4:2001:db8::1", "is not an IPV4 address"),
        ("ipv6:vpn", "'ipv6:vpn': 'vpn' is not an address"),
        ("asn1dn:#300a", "'asn1dn:#300a': not the DER of a DN"),
        ("asn1gn:text", "asn1gn:#hex"),
        ("fqdn:", "empty"),
        ("%any", "'%any' is no identity"),
        ("", "'' is no identity"),
        ("10.0.0.0/8", "a subnet or range is no IKE identity"),
        ("10.0.0.1-10.0.0.9", "a subnet or range is no IKE identity"),
    ],
)
def test_bad_identities_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        identity(text)


# --- how identities are shown -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "shown"),
    [
        (IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1]), "192.0.2.1"),
        (IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01"), "2001:db8::1"),
        (IdType.ID_FQDN, b"vpn.example.org", "vpn.example.org"),
        (IdType.ID_RFC822_ADDR, b"carol@example.org", "carol@example.org"),
        (IdType.ID_DER_ASN1_DN, bytes.fromhex(DN_CAROL), "C=US, O=Example, CN=carol"),
        (IdType.ID_KEY_ID, b"\x0a\x0b", "@#0a0b"),
        # the plain text would read as another type: a prefix keeps it
        (IdType.ID_FQDN, b"192.0.2.1", "fqdn:192.0.2.1"),
        (IdType.ID_FQDN, b"a@b", "fqdn:a@b"),
        (IdType.ID_RFC822_ADDR, b"postmaster", "email:postmaster"),
        # junk from the wire: hex, never an exception
        (IdType.ID_IPV4_ADDR, b"\x01\x02", "{1}:#0102"),
        (IdType.ID_FQDN, b"\xff\x00", "fqdn:#ff00"),
        (IdType.ID_FQDN, b"tab\there", "fqdn:#7461620968657265"),
        (IdType.ID_DER_ASN1_DN, b"\x30\x05", "{9}:#3005"),
        (IdType.ID_DER_ASN1_GN, b"\x30\x00", "asn1gn:#3000"),
        (IdType.ID_NULL, b"", "{13}:#"),
        (IdType(77), b"\x01", "{77}:#01"),
    ],
)
def test_describe_identity(kind: IdType, data: bytes, shown: str) -> None:
    assert describe_identity(kind, data) == shown


def test_a_dn_from_a_certificate_shows_in_strongswans_order_and_words() -> None:
    email = "1.2.840.113549.1.9.1"  # emailAddress, which RFC 4514 has no word for
    name = x509.Name.from_rfc4514_string(f"CN=carol,{email}=c@example.org,O=Example\\, Inc.,C=US")
    shown = describe_identity(IdType.ID_DER_ASN1_DN, name.public_bytes())
    assert shown == "C=US, O=Example\\, Inc., E=c@example.org, CN=carol"
    assert IdentityMatch.parse(shown)(IdType.ID_DER_ASN1_DN, name.public_bytes())


_TYPES = st.sampled_from([1, 2, 3, 5, 9, 10, 11, 13]) | st.integers(0, 255)


_UTF8_CN = x509.Name.from_rfc4514_string("CN=carol").public_bytes()  # UTF8String


@settings(max_examples=300, deadline=None)
@given(kind=_TYPES, data=st.binary(max_size=40))
@example(kind=9, data=_UTF8_CN)
@example(kind=9, data=bytes.fromhex(DN_CAROL))
def test_whatever_the_wire_holds_is_shown_and_reads_back(kind: int, data: bytes) -> None:
    """Octet for octet, but a DN shown as text, which reads back as the same name (its
    values' string types are the ones strongSwan writes)."""
    shown = describe_identity(kind, data)
    read_kind, read = identity(shown)
    assert read_kind == IdType(kind)
    if kind == IdType.ID_DER_ASN1_DN and read != data:
        assert IdentityMatch(read_kind, read)(kind, data)
    else:
        assert read == data


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.sampled_from([IdType.ID_FQDN, IdType.ID_RFC822_ADDR]), st.text(min_size=1))
    | st.tuples(st.just(IdType.ID_IPV4_ADDR), st.binary(min_size=4, max_size=4))
    | st.tuples(st.just(IdType.ID_IPV6_ADDR), st.binary(min_size=16, max_size=16))
)
@example((IdType.ID_RFC822_ADDR, "#0"))
def test_names_and_addresses_read_back(case: tuple[IdType, str | bytes]) -> None:
    kind, value = case
    data = value.encode() if isinstance(value, str) else value
    shown = describe_identity(kind, data)
    assert identity(shown) == (kind, data)
    if isinstance(value, str) and value.isprintable() and not value.startswith("#"):
        # A printable name shows as itself (perhaps after a prefix); one that begins
        # with "#" would read back as hex, and shows as hex itself ("email:#2330").
        assert value in shown


_WORDS = st.sampled_from(["C", "ST", "L", "O", "OU", "CN", "DC", "SN", "serialNumber", "UID"])
_VALUES = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)


@pytest.mark.filterwarnings("ignore:Attribute's length")  # C= longer than 2, as peers send
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_WORDS, _VALUES), min_size=1, max_size=6))
def test_a_dn_shown_reads_back_as_the_same_name(parts: list[tuple[str, str]]) -> None:
    oids = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
            "L": NameOID.LOCALITY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
            "DC": NameOID.DOMAIN_COMPONENT, "SN": NameOID.SURNAME,
            "serialNumber": NameOID.SERIAL_NUMBER, "UID": NameOID.USER_ID}  # fmt: skip
    attributes = [x509.NameAttribute(oids[w], v, _validate=False) for w, v in parts]
    der = x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes]).public_bytes()
    shown = describe_identity(IdType.ID_DER_ASN1_DN, der)
    kind, data = identity(shown)
    assert kind is IdType.ID_DER_ASN1_DN
    assert IdentityMatch(kind, data)(IdType.ID_DER_ASN1_DN, der)


# --- configured peer identities with wildcards ------------------------------------------


@pytest.mark.parametrize("text", ["%any", "%any6", "*", "0.0.0.0", "::"])
def test_any(text: str) -> None:
    match = IdentityMatch.parse(text)
    assert match.exact is None and str(match) == "%any"
    assert match(IdType.ID_FQDN, b"x") and match(IdType.ID_KEY_ID, b"") and match(99, b"?")


@pytest.mark.parametrize(
    ("pattern", "kind", "data", "matches"),
    [
        ("*.example.org", IdType.ID_FQDN, b"vpn.example.org", True),
        ("*.example.org", IdType.ID_FQDN, b"A.B.EXAMPLE.ORG", True),  # any depth, any case
        ("*.example.org", IdType.ID_FQDN, b"example.org", False),
        ("*.example.org", IdType.ID_FQDN, b".example.org", False),  # '*' takes a character
        ("*.example.org", IdType.ID_FQDN, b"badexample.org", False),
        ("*.example.org", IdType.ID_RFC822_ADDR, b"vpn.example.org", False),  # type agrees
        ("*@example.org", IdType.ID_RFC822_ADDR, b"carol@Example.org", True),
        ("*@example.org", IdType.ID_RFC822_ADDR, b"carol@example.net", False),
        ("*@example.org", IdType.ID_FQDN, b"carol@example.org", False),
        ("C=US, O=Example, CN=*", IdType.ID_DER_ASN1_DN, "C=US, O=example, CN=Dave", True),
        ("C=US, O=Example, CN=*", IdType.ID_DER_ASN1_DN, "C=US, O=Other, CN=Dave", False),
        ("C=US, O=Example, CN=*", IdType.ID_DER_ASN1_DN, "C=US, O=Example", False),
        ("C=US, O=Example, CN=*", IdType.ID_DER_ASN1_DN, "C=US, O=Example, OU=X, CN=y", False),
        ("C=US, O=Example, CN=*", IdType.ID_DER_ASN1_DN, "C=US, CN=y, O=Example", False),
        ("C=US, O=*, CN=*", IdType.ID_DER_ASN1_DN, "C=US, O=Any, CN=one", True),
    ],
)
def test_wildcards(pattern: str, kind: IdType, data: bytes | str, matches: bool) -> None:
    match = IdentityMatch.parse(pattern)
    assert match.exact is None and str(match) == pattern
    raw = identity(data)[1] if isinstance(data, str) else data
    assert match(kind, raw) is matches


@pytest.mark.parametrize(
    ("text", "kind", "same", "other"),
    [
        ("Vpn.Example.org", IdType.ID_FQDN, b"vpn.example.ORG", b"vpn.example.net"),
        ("Carol@Example.org", IdType.ID_RFC822_ADDR, b"carol@example.org", b"dave@example.org"),
        ("192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])),
        ("@#0a0b", IdType.ID_KEY_ID, b"\x0a\x0b", b"\x0a\x0c"),
        # a DN as a name: other string types and case are the same name
        ("C=US, O=Example, CN=carol", IdType.ID_DER_ASN1_DN,
         x509.Name.from_rfc4514_string("CN=CAROL,O=Example,C=US").public_bytes(),
         identity("C=US, O=Example, CN=carl")[1]),
    ],
)  # fmt: skip
def test_exact(text: str, kind: IdType, same: bytes, other: bytes) -> None:
    match = IdentityMatch.parse(text)
    assert match.exact == identity(text)
    assert match(kind, same) and not match(kind, other)
    assert not match(IdType.ID_KEY_ID if kind != IdType.ID_KEY_ID else IdType.ID_FQDN, same)


def test_a_match_is_a_value() -> None:
    a, b = IdentityMatch.parse("*.example.org"), IdentityMatch.parse("*.example.org")
    assert a == b and hash(a) == hash(b) and a != IdentityMatch.parse("%any")
    assert IdentityMatch.parse("%any") == IdentityMatch.parse("%any6")  # both: any identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.data = b"x"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["vpn.*.org", "a*.example.org", "*.*.org", "carol@*.org"])
def test_a_star_only_starts_a_name(text: str) -> None:
    with pytest.raises(ValueError, match="'\\*' stands only for the start of a name"):
        IdentityMatch.parse(text)


# --- identities a certificate carries ---------------------------------------------------


@pytest.fixture(scope="module")
def cert() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string("CN=gw,O=Example,C=US")  # UTF8String CN and O
    sans = [
        x509.DNSName("vpn.example.org"),
        x509.RFC822Name("gw@example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.DirectoryName(x509.Name.from_rfc4514_string("CN=alias,O=Example")),
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(0x80)
        .not_valid_before(datetime.datetime(2026, 1, 1))
        .not_valid_after(datetime.datetime(2027, 1, 1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(b"\x42" * 20), critical=False)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("text", "carried"),
    [
        ("C=US, O=Example, CN=gw", True),  # the subject, PrintableString against UTF8String
        ("c=us, o=EXAMPLE, cn=GW", True),
        ("O=Example, CN=alias", True),  # a directoryName SAN
        ("C=US, O=Example, CN=other", False),
        ("O=Example, CN=gw", False),  # every attribute, in order
        ("vpn.example.org", True),
        ("VPN.Example.ORG", True),
        ("gw", False),  # a name is never the CN
        ("gw@example.org", True),
        ("email:vpn.example.org", False),  # the dNSName's text as another type
        ("fqdn:gw@example.org", False),
        ("192.0.2.1", True),
        ("2001:db8::1", True),
        ("192.0.2.2", False),
        ("@#" + "42" * 20, True),  # subjectKeyIdentifier
        ("@#80", False),  # serial numbers are DER INTEGER octets: 00 80
        ("@#0080", True),
        ("@#" + "43" * 20, False),
    ],
)
def test_cert_matches_identity(cert: x509.Certificate, text: str, carried: bool) -> None:
    assert cert_matches_identity(cert, *identity(text)) is carried


def test_key_ids_of_the_public_key(cert: x509.Certificate) -> None:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bits = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]
    whole = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()
    for key_id in (hashlib.sha1(spki).digest(), bits, whole):
        assert cert_matches_identity(cert, IdType.ID_KEY_ID, key_id)
    assert set(certificate_key_ids(cert)) >= {hashlib.sha1(spki).digest(), bits, b"\x42" * 20}


_CONFIG_TEXT = st.text(max_size=40) | st.builds(
    "".join, st.lists(st.sampled_from(["C=", "CN=", ",", "/", "@", "#", "*", ":", "{9}:",
                                       "fqdn:", "asn1dn:", "\\", "=", " ", "0a", "zz", "."]),
                      max_size=10),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(text=_CONFIG_TEXT, kind=_TYPES, data=st.binary(max_size=30))
def test_any_text_is_an_identity_or_a_value_error(text: str, kind: int, data: bytes) -> None:
    """What a configuration holds is taken or refused with ValueError; a match built from
    it takes any identity from the wire without raising."""
    try:
        identity(text)
    except ValueError as e:
        assert str(e)
    try:
        match = IdentityMatch.parse(text)
    except ValueError:
        return
    assert isinstance(match(kind, data), bool) and str(match)


def test_describe_subject_never_raises(cert: x509.Certificate) -> None:
    assert describe_subject(cert) == "C=US, O=Example, CN=gw"
    der = cert.public_bytes(serialization.Encoding.DER)
    # the subject's CN "gw" (after the issuer's) as a BIT STRING: loads, does not parse
    at = der.rindex(b"\x0c\x02gw")
    broken = x509.load_der_x509_certificate(der[:at] + b"\x03" + der[at + 1 :])
    with pytest.raises(CERT_PARSE_ERRORS):
        broken.subject  # noqa: B018
    assert describe_subject(broken) == "(a subject that does not parse)"
