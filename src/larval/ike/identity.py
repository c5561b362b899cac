"""Identities: the ID types both IKE versions number alike, an identity as configured,
how one is shown, and which identities a certificate carries.

IKEv2's ID Type (RFC 7296 §3.5) took the numbers of the IPsec DOI's Identification Type
(RFC 2407 §4.6.2.1, IKEv1) for the identities a peer authenticates as: ID_IPV4_ADDR 1,
ID_FQDN 2, ID_RFC822_ADDR 3 (IKEv1's ID_USER_FQDN), ID_IPV6_ADDR 5, ID_DER_ASN1_DN 9,
ID_DER_ASN1_GN 10 and ID_KEY_ID 11. An identity configured once (`identity()`) so goes
on the wire of either version as the same number.

The registries differ beyond those: IKEv1's 4 and 6-8 are subnets and ranges (Quick Mode
client IDs), reserved in IKEv2, and IKEv2's ID_NULL 13 (RFC 7619) is not IKEv1's. So
`larval.ikev1.constants.IdType` stays IKEv1's own registry, and this is IKEv2's.

The text forms are strongSwan's (libstrongswan's ``identification.c``), read in its
order: a typed prefix (``fqdn:``, ``email:``, ``asn1dn:``, ``keyid:``, ``ipv4:``, ...,
each also taking ``#hex``), a numeric type ``{9}:#hex``, a DN if there is a '=' (``"C=US,
O=Example, CN=carol"``, or '/' separated when it starts with '/'), then without '@' an
address or else an FQDN (a name with ':' that is no IPv6 address is a KEY_ID, as there),
and with '@' ``@#hex`` (KEY_ID), ``@@user`` (RFC822), ``@name`` (FQDN) or ``user@host``.
A DN is encoded as strongSwan encodes it, in the order written, each value a
PrintableString where it can be, else a UTF8String, an email an IA5String; a ',' inside a
value is written "\\," as ``larval pki`` writes it.

Names compare as strongSwan compares them: FQDNs and emails without regard to case, DNs
attribute by attribute (type and value, values without regard to case), everything else
octet for octet. `IdentityMatch` adds the wildcards a configured peer identity may have.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ObjectIdentifier

from larval.crypto.oid import dotted
from larval.wire import LenientIntEnum

__all__ = [
    "CERT_PARSE_ERRORS",
    "IdType",
    "IdentityMatch",
    "cert_matches_identity",
    "certificate_key_ids",
    "describe_identity",
    "describe_subject",
    "dn_attributes",
    "identity",
]


class IdType(LenientIntEnum):
    """ID Type of IDi and IDr (RFC 7296 §3.5; ID_NULL from RFC 7619)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_NULL = 13


# --- DN attributes ----------------------------------------------------------------------

# strongSwan's x501rdns table: the words a DN may use (any case), their OIDs, and whether
# the value is an IA5String (emails, unstructuredName) rather than a PrintableString.
_ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "ND": ("0.2.262.1.10.7.20", False),
    "UID": ("0.9.2342.19200300.100.1.1", False),
    "DC": ("0.9.2342.19200300.100.1.25", False),
    "CN": ("2.5.4.3", False),
    "SN": ("2.5.4.4", False),
    "serialNumber": ("2.5.4.5", False),
    "C": ("2.5.4.6", False),
    "L": ("2.5.4.7", False),
    "ST": ("2.5.4.8", False),
    "STREET": ("2.5.4.9", False),
    "O": ("2.5.4.10", False),
    "OU": ("2.5.4.11", False),
    "organizationIdentifier": ("2.5.4.97", False),
    "T": ("2.5.4.12", False),
    "D": ("2.5.4.13", False),
    "postalAddress": ("2.5.4.16", False),
    "postalCode": ("2.5.4.17", False),
    "N": ("2.5.4.41", False),
    "G": ("2.5.4.42", False),
    "I": ("2.5.4.43", False),
    "dnQualifier": ("2.5.4.46", False),
    "dmdName": ("2.5.4.54", False),
    "pseudonym": ("2.5.4.65", False),
    "ID": ("2.5.4.45", False),
    "employeeNumber": ("2.16.840.1.113730.3.1.3", False),
    "EN": ("2.16.840.1.113730.3.1.3", False),
    "E": ("1.2.840.113549.1.9.1", True),
    "Email": ("1.2.840.113549.1.9.1", True),
    "emailAddress": ("1.2.840.113549.1.9.1", True),
    "unstructuredName": ("1.2.840.113549.1.9.2", True),
    "UN": ("1.2.840.113549.1.9.2", True),
    "unstructuredAddress": ("1.2.840.113549.1.9.8", False),
    "UA": ("1.2.840.113549.1.9.8", False),
}
_BY_WORD = {word.lower(): value for word, value in _ATTRIBUTES.items()}
# How strongSwan prints each OID: the first of its words above.
_LABELS: dict[str, str] = {}
for _word, (_oid, _) in _ATTRIBUTES.items():
    _LABELS.setdefault(_oid, _word)

# X.680 PrintableString's characters; strongSwan writes a value as one when it can.
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
# Universal tags of the string types a DN value comes in, and how each decodes.
_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString, as everyone reads it
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}

Ava = tuple[str, int, bytes]  # one attribute of a DN: dotted OID, string tag, value octets


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, next position) of the DER element at `pos`; ValueError if none."""
    if pos + 2 > len(data) or data[pos] & 0x1F == 0x1F:
        raise ValueError("truncated or multi-octet tag")
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or pos + size > len(data):
            raise ValueError("bad length")
        length, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, data[pos : pos + length], pos + length


def dn_attributes(der: bytes) -> tuple[Ava, ...] | None:
    """The attributes of a DER DN (RFC 5280 §4.1.2.4) in order, a multi-valued RDN's one
    after the other as strongSwan reads them; None if `der` is no DN."""
    try:
        tag, body, end = _tlv(der, 0)
        if tag != 0x30 or end != len(der):
            return None
        avas: list[Ava] = []
        pos = 0
        while pos < len(body):
            tag, rdn, pos = _tlv(body, pos)
            if tag != 0x31 or not rdn:
                return None
            at = 0
            while at < len(rdn):
                tag, ava, at = _tlv(rdn, at)
                if tag != 0x30:
                    return None
                oid_tag, oid, value_at = _tlv(ava, 0)
                value_tag, value, ava_end = _tlv(ava, value_at)
                if oid_tag != 0x06 or ava_end != len(ava):
                    return None
                avas.append((dotted(oid), value_tag, value))
        return tuple(avas)
    except ValueError:
        return None


def _value_text(tag: int, value: bytes) -> str | None:
    codec = _STRINGS.get(tag)
    if codec is None:
        return None
    try:
        return value.decode(codec)
    except UnicodeDecodeError:
        return None


def _same_value(a: Ava, b: Ava) -> bool:
    text_a, text_b = _value_text(a[1], a[2]), _value_text(b[1], b[2])
    if text_a is None or text_b is None:
        return a[2] == b[2]
    return text_a.casefold() == text_b.casefold()


def _same_dn(a: bytes, b: bytes, wildcards: bool = False) -> bool:
    """Whether two DER DNs name the same: the same attributes in the same order, values
    equal without regard to case or string type (strongSwan's compare_dn). With
    `wildcards`, a value "*" in `b` stands for any value of that attribute."""
    if a == b:
        return True
    avas_a, avas_b = dn_attributes(a), dn_attributes(b)
    if avas_a is None or avas_b is None or len(avas_a) != len(avas_b):
        return False
    return all(
        x[0] == y[0] and ((wildcards and y[2] == b"*") or _same_value(x, y))
        for x, y in zip(avas_a, avas_b, strict=True)
    )


def _parse_dn(text: str) -> bytes:
    """strongSwan's "C=US, O=Example, CN=carol" (or "/C=US/O=Example/CN=carol") as DER."""
    sep = "/" if text.startswith("/") else ","
    parts, current, escaped = [], "", False
    for ch in text[1:] if sep == "/" else text:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current + ("\\" if escaped else ""))
    attributes = []
    for part in (p for p in parts if p.strip()):
        word, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"DN {text!r}: {part.strip()!r} is not attribute=value")
        word, value = word.strip(), value.strip()
        attributes.append(_attribute(text, word, value))
    if not attributes:
        raise ValueError(f"DN {text!r}: no attribute")
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes]).public_bytes()


def _attribute(text: str, word: str, value: str) -> x509.NameAttribute[str]:
    known = _BY_WORD.get(word.lower())
    if known is None and re.fullmatch(r"[0-2](\.\d+)+", word):
        known = (word, False)
    if known is None:
        words = ", ".join(_LABELS.values())
        raise ValueError(f"DN {text!r}: unknown attribute {word!r} (one of {words})")
    oid, ia5 = known
    if ia5 and not value.isascii():
        raise ValueError(f"DN {text!r}: {word}={value!r} is not ASCII")
    if ia5:
        kind = _ASN1Type.IA5String
    elif set(value) <= _PRINTABLE:
        kind = _ASN1Type.PrintableString
    else:
        kind = _ASN1Type.UTF8String
    try:
        return x509.NameAttribute(ObjectIdentifier(oid), value, kind)
    except ValueError as e:
        raise ValueError(f"DN {text!r}: {word}={value!r}: {e}") from None


def _dn_text(der: bytes) -> str | None:
    """A DN as strongSwan prints it ("C=US, O=Example, CN=carol"), if each value is
    printable text and the text reads back as the same name; else None."""
    avas = dn_attributes(der)
    if not avas:
        return None
    out = []
    for oid, tag, value in avas:
        text = _value_text(tag, value)
        if text is None or not text.isprintable():
            return None
        escaped = text.replace("\\", "\\\\").replace(",", "\\,")
        out.append(f"{_LABELS.get(oid, oid)}={escaped}")
    shown = ", ".join(out)
    try:
        return shown if _same_dn(_parse_dn(shown), der) else None
    except ValueError:
        return None


# --- the text forms ---------------------------------------------------------------------

# strongSwan's typed prefixes that name an ID Type IKE sends (identification.c).
_PREFIXES: dict[str, IdType] = {
    "ipv4:": IdType.ID_IPV4_ADDR,
    "ipv6:": IdType.ID_IPV6_ADDR,
    "rfc822:": IdType.ID_RFC822_ADDR,
    "email:": IdType.ID_RFC822_ADDR,
    "userfqdn:": IdType.ID_RFC822_ADDR,
    "fqdn:": IdType.ID_FQDN,
    "dns:": IdType.ID_FQDN,
    "asn1dn:": IdType.ID_DER_ASN1_DN,
    "asn1gn:": IdType.ID_DER_ASN1_GN,
    "keyid:": IdType.ID_KEY_ID,
}
# The words strongSwan reads as "any identity" (`IdentityMatch`, not `identity`).
_ANY = ("%any", "%any6", "*", "0.0.0.0", "::", "0::0")
_ADDRESS_SIZES = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}


def _hex(text: str, what: str) -> bytes:
    """strongSwan's hex: an optional 0x, ':' between octets, an odd digit count."""
    digits = text[2:] if text[:2].lower() == "0x" else text
    digits = digits.replace(":", "")
    if not re.fullmatch(r"[0-9A-Fa-f]*", digits):
        raise ValueError(f"{what}: {text!r} is not hex")
    return bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0"))


def identity(text: str) -> tuple[IdType, bytes]:
    """An identity as strongSwan writes it (see the module); `ValueError` says what is
    wrong with one it cannot take."""
    lower = text.lower()
    for prefix, kind in _PREFIXES.items():
        if lower.startswith(prefix):
            return _typed(kind, text[len(prefix) :], text)
    numbered = re.fullmatch(r"\{(\d+)\}:(.*)", text, re.DOTALL)
    if numbered:
        if int(numbered[1]) > 255:
            raise ValueError(f"{text!r}: an ID Type is a number up to 255")
        kind = IdType(int(numbered[1]))
        value = numbered[2]
        return kind, _hex(value[1:], text) if value.startswith("#") else value.encode()
    if "=" in text:
        return IdType.ID_DER_ASN1_DN, _parse_dn(text)
    if "@" not in text:
        if text in ("", "%any", "%any6", "*"):
            raise ValueError(f"{text!r} is no identity (a peer's may be %any: any identity)")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            if ":" in text:
                return IdType.ID_KEY_ID, text.encode()
            if re.fullmatch(r"[\d.]+(/\d+|-[\d.]+)", text):
                raise ValueError(f"{text!r}: a subnet or range is no IKE identity") from None
            return IdType.ID_FQDN, text.encode()
        kind = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return kind, address.packed
    if text.startswith("@#"):
        return IdType.ID_KEY_ID, _hex(text[2:], text)
    if text.startswith("@@"):
        return IdType.ID_RFC822_ADDR, text[2:].encode()
    if text.startswith("@"):
        return IdType.ID_FQDN, text[1:].encode()
    return IdType.ID_RFC822_ADDR, text.encode()


def _typed(kind: IdType, value: str, text: str) -> tuple[IdType, bytes]:
    """The identity after a typed prefix: ``#hex``, or the value in that type's words."""
    if value.startswith("#"):
        data = _hex(value[1:], text)
        size = _ADDRESS_SIZES.get(kind)
        if size is not None and len(data) != size:
            raise ValueError(f"{text!r}: {len(data)} octets, an address here has {size}")
        if kind is IdType.ID_DER_ASN1_DN and dn_attributes(data) is None:
            raise ValueError(f"{text!r}: not the DER of a DN")
        return kind, data
    if kind in _ADDRESS_SIZES:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{text!r}: {value!r} is not an address") from None
        if len(address.packed) != _ADDRESS_SIZES[kind]:
            raise ValueError(f"{text!r}: {value!r} is not an {kind.name[3:7]} address")
        return kind, address.packed
    if kind is IdType.ID_DER_ASN1_DN:
        return kind, _parse_dn(value)
    if kind is IdType.ID_DER_ASN1_GN:
        raise ValueError(f"{text!r}: an ASN.1 GeneralName is written asn1gn:#hex")
    if not value:
        raise ValueError(f"{text!r}: empty")
    return kind, value.encode()


def describe_identity(id_type: int, data: bytes) -> str:
    """An identity as logs and status show it, in `identity`'s words so that it reads
    back as the same (a DN as the same name, its values in the string types strongSwan
    writes): an address, a name, a DN ("C=US, O=Example, CN=carol"), a KEY_ID as
    ``@#hex``; a typed prefix where the plain text would read as another type, hex where
    the octets are no text. Never raises, whatever a peer sent."""
    kind = IdType(id_type)
    hexed = data.hex()
    if kind in _ADDRESS_SIZES and len(data) == _ADDRESS_SIZES[kind]:
        return str(ipaddress.ip_address(data))
    if kind is IdType.ID_KEY_ID:
        return f"@#{hexed}"
    if kind is IdType.ID_DER_ASN1_DN:
        return _describe_dn(data)
    if kind in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        prefix = "fqdn:" if kind is IdType.ID_FQDN else "email:"
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return f"{prefix}#{hexed}"
        if not text or not text.isprintable():
            return f"{prefix}#{hexed}"
        for shown in (text, prefix + text):
            if _reads_back(shown, kind, data):
                return shown
        return f"{prefix}#{hexed}"
    if kind is IdType.ID_DER_ASN1_GN:
        return f"asn1gn:#{hexed}"
    return f"{{{int(kind)}}}:#{hexed}"


@functools.lru_cache(maxsize=1024)
def _describe_dn(data: bytes) -> str:
    """`describe_identity` of a DN. Remembered: checking that the text reads back as the
    same name costs a parse, and the same few names (a peer's, its CAs') come again with
    every IKE SA; a peer that sends new ones only pushes old ones out."""
    if dn_attributes(data) is None:
        return f"{{{int(IdType.ID_DER_ASN1_DN)}}}:#{data.hex()}"
    return _dn_text(data) or f"asn1dn:#{data.hex()}"


def _reads_back(text: str, kind: IdType, data: bytes) -> bool:
    try:
        return identity(text) == (kind, data)
    except ValueError:
        return False


def _same(id_type: IdType, a: bytes, b: bytes) -> bool:
    """Whether two identities of one type are the same, as strongSwan's equals."""
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        return a.lower() == b.lower()
    if id_type is IdType.ID_DER_ASN1_DN:
        return _same_dn(a, b)
    return a == b


# --- configured peer identities ---------------------------------------------------------


@dataclass(frozen=True)
class IdentityMatch:
    """A peer identity as configured, wildcards allowed (strongSwan's ``matches``):
    ``%any`` takes every identity; an FQDN or email starting with '*' (``*.example.org``,
    ``*@example.org``) every one of that type ending in the rest, with at least one
    character for the '*'; a DN with "*" as a value (``C=US, O=Example, CN=*``) every DN
    with the same attributes in the same order and the other values equal. Anything else
    is one identity, `exact`, compared as `identity` names compare. Called with an
    identity a peer sent, it says whether that one is allowed."""

    id_type: IdType | None  # None: %any
    data: bytes = b""
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> IdentityMatch:
        if text in _ANY:
            return cls(None)
        kind, data = identity(text)
        if kind in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR) and b"*" in data:
            if data.count(b"*") > 1 or not data.startswith(b"*"):
                raise ValueError(f"{text!r}: '*' stands only for the start of a name")
            return cls(kind, data, wildcard=True)
        if kind is IdType.ID_DER_ASN1_DN:
            avas = dn_attributes(data) or ()
            return cls(kind, data, wildcard=any(value == b"*" for _, _, value in avas))
        return cls(kind, data)

    @property
    def exact(self) -> tuple[IdType, bytes] | None:
        """The one identity this takes, or None if it takes more."""
        if self.id_type is None or self.wildcard:
            return None
        return self.id_type, self.data

    def __call__(self, id_type: int, data: bytes) -> bool:
        if self.id_type is None:
            return True
        if id_type != self.id_type:
            return False
        if not self.wildcard:
            return _same(self.id_type, self.data, data)
        if self.id_type is IdType.ID_DER_ASN1_DN:
            return _same_dn(data, self.data, wildcards=True)
        suffix = self.data[1:].lower()
        return len(data) > len(suffix) and data.lower().endswith(suffix)

    def __str__(self) -> str:
        if self.id_type is None:
            return "%any"
        return describe_identity(self.id_type, self.data)


# --- certificates -----------------------------------------------------------------------

#: What `cryptography` raises on first asking a certificate for a part that does not parse
#: (names, extensions, the key): it parses those lazily, after loading.
CERT_PARSE_ERRORS = (
    ValueError,
    x509.InvalidVersion,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def _subject_alt_names(cert: x509.Certificate) -> list[tuple[IdType, bytes]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, *CERT_PARSE_ERRORS):
        return []
    out: list[tuple[IdType, bytes]] = []
    for name in ext.value:
        if isinstance(name, x509.DNSName):
            out.append((IdType.ID_FQDN, name.value.encode()))
        elif isinstance(name, x509.RFC822Name):
            out.append((IdType.ID_RFC822_ADDR, name.value.encode()))
        elif isinstance(name, x509.IPAddress):
            address = name.value
            if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
                kind = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
                out.append((kind, address.packed))
        elif isinstance(name, x509.DirectoryName):
            out.append((IdType.ID_DER_ASN1_DN, name.value.public_bytes()))
    return out


def certificate_key_ids(cert: x509.Certificate) -> list[bytes]:
    """The KEY_IDs a certificate answers to, as strongSwan's has_subject takes them: its
    subjectKeyIdentifier, the SHA-1 of its DER SubjectPublicKeyInfo and of the
    subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), the SHA-1 of the certificate, and
    its serial number's octets."""
    ids = [hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()]
    serial = cert.serial_number
    ids.append(serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True))
    with contextlib.suppress(x509.ExtensionNotFound, *CERT_PARSE_ERRORS):
        ids.append(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    try:
        key = cert.public_key()
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ids.append(hashlib.sha1(spki).digest())
        ids.append(x509.SubjectKeyIdentifier.from_public_key(key).digest)
    except CERT_PARSE_ERRORS:
        pass
    return ids


def describe_subject(cert: x509.Certificate) -> str:
    """A certificate's subject as `describe_identity` shows a DN, for the log line of a
    refusal and for status; never raises, even for a certificate whose subject does not
    parse."""
    try:
        return describe_identity(IdType.ID_DER_ASN1_DN, cert.subject.public_bytes())
    except CERT_PARSE_ERRORS:
        return "(a subject that does not parse)"


def describe_issuer(cert: x509.Certificate) -> str:
    """A certificate's issuer as `describe_subject` shows its subject."""
    try:
        return describe_identity(IdType.ID_DER_ASN1_DN, cert.issuer.public_bytes())
    except CERT_PARSE_ERRORS:
        return "(an issuer that does not parse)"


def cert_matches_identity(cert: x509.Certificate, id_type: int, data: bytes) -> bool:
    """Whether `cert` carries the identity (strongSwan's has_subject): a DN its subject
    or a directoryName SAN, an FQDN a dNSName, an email an rfc822Name, an address an
    iPAddress, a KEY_ID one of `certificate_key_ids`. Never the subject's CN for a name."""
    kind = IdType(id_type)
    if kind is IdType.ID_KEY_ID and data in certificate_key_ids(cert):
        return True
    if kind is IdType.ID_DER_ASN1_DN:
        try:
            subject = cert.subject.public_bytes()
        except CERT_PARSE_ERRORS:
            subject = b""
        if _same_dn(subject, data):
            return True
    return any(k is kind and _same(kind, d, data) for k, d in _subject_alt_names(cert))
