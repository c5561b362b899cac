"""The signatures of IKE's public-key authentication, by strongSwan's scheme names.

Every scheme of `larval.ike.auth_config.SCHEMES` signs and verifies here (`sign`,
`verify`): RSA PKCS#1 v1.5 with SHA-1 and SHA-2, RSASSA-PSS with SHA-2 (MGF1 of the same
hash, a salt as long as the hash: RFC 8247 §3.2, as strongSwan signs), ECDSA with SHA-2,
Ed25519 and Ed448 (RFC 8420: over the whole message, no separate hash). ECDSA signatures
are DER here; `ecdsa_raw` and `ecdsa_der` convert to and from the fixed-size r | s of
RFC 4754.

IKEv2's AUTH payload (RFC 7296 §3.8) carries a signature in one of three ways:

* Auth Method 1, RSA Digital Signature: PKCS#1 v1.5 with SHA-1 (RFC 7296 §2.15);
* Auth Methods 9, 10, 11 (RFC 4754): ECDSA with the hash of the curve's size, P-256,
  P-384 or P-521, the signature as r | s;
* Auth Method 14, Digital Signature (RFC 7427 §3): the scheme named in the data itself::

        | ASN.1 Length  |  AlgorithmIdentifier ASN.1 object  ~  Signature Value ~

  with ECDSA signatures in DER. `auth_data` makes the data of each, `parse_auth_data`
  reads a peer's back to a scheme, strictly: an AlgorithmIdentifier this module does
  not write (an unknown OID, PSS parameters other than the scheme's) is refused with the
  reason, never guessed at.

RFC 7427 §4's N(SIGNATURE_HASH_ALGORITHMS) announces the hashes an end verifies with
(`encode_hashes`, `decode_hashes`); `choose_signature` picks what this end signs with
from its key, its configured schemes and what the peer announced, as strongSwan's
pubkey authenticator does. Nothing here logs, and no message shows key material.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from larval.crypto.oid import dotted
from larval.errors import LarvalError
from larval.wire import LenientIntEnum

__all__ = [
    "DIGITAL_SIGNATURE",
    "ECDSA_METHODS",
    "RSA_DIGITAL_SIGNATURE",
    "HashAlgorithm",
    "PrivateKey",
    "PublicKey",
    "Scheme",
    "SignatureError",
    "auth_data",
    "choose_signature",
    "decode_hashes",
    "ecdsa_der",
    "ecdsa_raw",
    "encode_hashes",
    "natural_schemes",
    "parse_algorithm_identifier",
    "parse_auth_data",
    "scheme",
    "sign",
    "verify",
    "verify_auth_data",
]

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

#: IKEv2 Auth Methods that carry signatures (RFC 7296 §3.8, RFC 4754 §7, RFC 7427 §3).
RSA_DIGITAL_SIGNATURE = 1
DIGITAL_SIGNATURE = 14
#: RFC 4754's method for each curve, by the curve's size in bits.
ECDSA_METHODS = {256: 9, 384: 10, 521: 11}


class SignatureError(LarvalError):
    """A signature that does not verify, AUTH data that does not parse, or no scheme both
    ends can use; the message says which (and never shows a key)."""


class HashAlgorithm(LenientIntEnum):
    """Hash Algorithm Identifiers of N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §7; IDENTITY:
    RFC 8420 §2, the hash of Ed25519 and Ed448, which sign the message itself)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


@dataclass(frozen=True)
class Scheme:
    """A signature scheme: its key family, its hash and its RFC 7427 AlgorithmIdentifier."""

    name: str
    family: str  # "rsa" (PKCS#1 v1.5), "rsa/pss", "ecdsa", "ed25519", "ed448"
    hash_id: HashAlgorithm
    algorithm_identifier: bytes  # DER, as RFC 7427 §3 carries it

    def hash(self) -> hashes.HashAlgorithm:
        return _HASHES[self.hash_id]()


_HASHES: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}
_BITS = {HashAlgorithm.SHA2_256: 256, HashAlgorithm.SHA2_384: 384, HashAlgorithm.SHA2_512: 512}

# -- DER, as little as AlgorithmIdentifier needs (X.690 §8, §10) -------------------------

_SEQUENCE, _OID, _NULL, _INTEGER = 0x30, 0x06, 0x05, 0x02


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _read(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """The TLVs `data` consists of, exactly; DER's definite, shortest lengths only."""
    items, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise SignatureError(f"{what}: truncated DER")
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            raw = data[pos : pos + count]
            if count == 0 or count > 2 or len(raw) != count or raw[0] == 0:
                raise SignatureError(f"{what}: not a DER length")
            length = int.from_bytes(raw, "big")
            if length < 0x80:
                raise SignatureError(f"{what}: not a DER length")
            pos += count
        if pos + length > len(data):
            raise SignatureError(f"{what}: truncated DER")
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def _algorithm(oid: bytes, *params: bytes) -> bytes:
    return _tlv(_SEQUENCE, _tlv(_OID, oid) + b"".join(params))


_DER_NULL = _tlv(_NULL, b"")
_RSA_PKCS1 = {  # sha*WithRSAEncryption, 1.2.840.113549.1.1.{5,11,12,13} (RFC 4055 §5)
    HashAlgorithm.SHA1: bytes.fromhex("2a864886f70d010105"),
    HashAlgorithm.SHA2_256: bytes.fromhex("2a864886f70d01010b"),
    HashAlgorithm.SHA2_384: bytes.fromhex("2a864886f70d01010c"),
    HashAlgorithm.SHA2_512: bytes.fromhex("2a864886f70d01010d"),
}
_RSA_PSS = bytes.fromhex("2a864886f70d01010a")  # id-RSASSA-PSS (RFC 4055 §3.1)
_MGF1 = bytes.fromhex("2a864886f70d010108")  # id-mgf1
_SHA2 = {  # id-sha256/384/512, 2.16.840.1.101.3.4.2.{1,2,3}
    HashAlgorithm.SHA2_256: bytes.fromhex("608648016503040201"),
    HashAlgorithm.SHA2_384: bytes.fromhex("608648016503040202"),
    HashAlgorithm.SHA2_512: bytes.fromhex("608648016503040203"),
}
_SHA1_OID = bytes.fromhex("2b0e03021a")
_ECDSA = {  # ecdsa-with-SHA256/384/512, 1.2.840.10045.4.3.{2,3,4} (RFC 5758 §3.2)
    HashAlgorithm.SHA2_256: bytes.fromhex("2a8648ce3d040302"),
    HashAlgorithm.SHA2_384: bytes.fromhex("2a8648ce3d040303"),
    HashAlgorithm.SHA2_512: bytes.fromhex("2a8648ce3d040304"),
}
_ED25519, _ED448 = bytes.fromhex("2b6570"), bytes.fromhex("2b6571")  # RFC 8410 §3


def _pss_identifier(hash_id: HashAlgorithm) -> bytes:
    """RSASSA-PSS-params (RFC 4055 §3.1) as strongSwan writes them: the hash and MGF1's
    hash with NULL parameters, the salt as long as the hash, the default trailer."""
    digest = _algorithm(_SHA2[hash_id], _DER_NULL)
    params = _tlv(
        _SEQUENCE,
        _tlv(0xA0, digest)
        + _tlv(0xA1, _algorithm(_MGF1, digest))
        + _tlv(0xA2, _tlv(_INTEGER, bytes([_BITS[hash_id] // 8]))),
    )
    return _algorithm(_RSA_PSS, params)


def _schemes() -> dict[str, Scheme]:
    table = [Scheme("rsa-sha1", "rsa", HashAlgorithm.SHA1,
                    _algorithm(_RSA_PKCS1[HashAlgorithm.SHA1], _DER_NULL))]  # fmt: skip
    for hash_id, bits in _BITS.items():
        table += [
            Scheme(f"rsa-sha{bits}", "rsa", hash_id, _algorithm(_RSA_PKCS1[hash_id], _DER_NULL)),
            Scheme(f"rsa/pss-sha{bits}", "rsa/pss", hash_id, _pss_identifier(hash_id)),
            Scheme(f"ecdsa-sha{bits}", "ecdsa", hash_id, _algorithm(_ECDSA[hash_id])),
        ]
    table += [
        Scheme("ed25519", "ed25519", HashAlgorithm.IDENTITY, _algorithm(_ED25519)),
        Scheme("ed448", "ed448", HashAlgorithm.IDENTITY, _algorithm(_ED448)),
    ]
    return {s.name: s for s in table}


#: Every scheme by name; the names are `larval.ike.auth_config.SCHEMES`.
SCHEMES: dict[str, Scheme] = _schemes()
_BY_IDENTIFIER = {s.algorithm_identifier: s for s in SCHEMES.values()}


def scheme(name: str) -> Scheme:
    """The scheme of that name; `SignatureError` if there is none."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise SignatureError(f"no signature scheme {name!r}") from None


def parse_algorithm_identifier(der: bytes) -> Scheme:
    """The scheme a peer's AlgorithmIdentifier names (RFC 7427 §3). RSA's NULL
    parameters may be absent (RFC 4055 §5 has readers accept both); PSS must name
    SHA-2, MGF1 of the same hash and a salt as long as it. Else `SignatureError`."""
    known = _BY_IDENTIFIER.get(der)
    if known is not None:
        return known
    items = _read(der, "AlgorithmIdentifier")
    if len(items) != 1 or items[0][0] != _SEQUENCE:
        raise SignatureError("AlgorithmIdentifier: not one DER SEQUENCE")
    inner = _read(items[0][1], "AlgorithmIdentifier")
    if not inner or inner[0][0] != _OID or len(inner) > 2:
        raise SignatureError("AlgorithmIdentifier: not an OID and parameters")
    oid, params = inner[0][1], inner[1:]
    for hash_id, rsa_oid in _RSA_PKCS1.items():
        if oid == rsa_oid and not params:
            return SCHEMES[f"rsa-sha{_BITS.get(hash_id, 1)}"]
    if oid == _RSA_PSS and len(params) == 1 and params[0][0] == _SEQUENCE:
        return SCHEMES[f"rsa/pss-sha{_BITS[_pss_hash(params[0][1])]}"]
    if oid == _RSA_PSS or oid in _RSA_PKCS1.values():
        raise SignatureError(f"AlgorithmIdentifier {_dotted(oid)}: parameters not as RFC 4055")
    if oid in _ECDSA.values() or oid in (_ED25519, _ED448):
        raise SignatureError(f"AlgorithmIdentifier {_dotted(oid)}: parameters must be absent")
    raise SignatureError(f"AlgorithmIdentifier {_dotted(oid)}: not a signature scheme larval has")


def _pss_hash(params: bytes) -> HashAlgorithm:
    """The hash of RSASSA-PSS-params, which must be what the scheme of that hash says."""
    items = _read(params, "RSASSA-PSS-params")
    fields = dict(items)
    if len(fields) != len(items) or not set(fields) <= {0xA0, 0xA1, 0xA2, 0xA3}:
        raise SignatureError("RSASSA-PSS-params: unknown or repeated fields")
    hash_id = _hash_of(fields.get(0xA0), "the hash")
    mgf = fields.get(0xA1)
    mgf_items = _read(mgf, "maskGenAlgorithm") if mgf is not None else []
    mgf_inner = _read(mgf_items[0][1], "maskGenAlgorithm") if len(mgf_items) == 1 else []
    if len(mgf_inner) != 2 or mgf_inner[0] != (_OID, _MGF1):
        raise SignatureError("RSASSA-PSS-params: the mask generation is not MGF1")
    if _hash_of(_tlv(*mgf_inner[1]), "MGF1's hash") != hash_id:
        raise SignatureError("RSASSA-PSS-params: MGF1's hash is not the signature's")
    salt = _read(fields.get(0xA2, b""), "saltLength")
    if len(salt) != 1 or salt[0][0] != _INTEGER or salt[0][1] != bytes([_BITS[hash_id] // 8]):
        raise SignatureError("RSASSA-PSS-params: the salt is not as long as the hash")
    trailer = fields.get(0xA3)
    if trailer is not None and _read(trailer, "trailerField") != [(_INTEGER, b"\x01")]:
        raise SignatureError("RSASSA-PSS-params: trailerField is not 1")
    return hash_id


def _hash_of(field: bytes | None, what: str) -> HashAlgorithm:
    """SHA-2 from a hash AlgorithmIdentifier (NULL parameters or none); SHA-1, the
    default when absent, is no scheme of larval's."""
    if field is None:
        raise SignatureError(f"RSASSA-PSS-params: {what} is SHA-1 by default")
    items = _read(field, what)
    inner = _read(items[0][1], what) if len(items) == 1 and items[0][0] == _SEQUENCE else []
    if inner and inner[0][0] == _OID and inner[1:] in ([], [(_NULL, b"")]):
        for hash_id, oid in _SHA2.items():
            if inner[0][1] == oid:
                return hash_id
        if inner[0][1] == _SHA1_OID:
            raise SignatureError(f"RSASSA-PSS-params: {what} is SHA-1")
    raise SignatureError(f"RSASSA-PSS-params: {what} is not SHA-256, SHA-384 or SHA-512")


def _dotted(oid: bytes) -> str:
    """An OID's dotted form for messages; ``(no OID)`` where it is none."""
    try:
        return dotted(oid)
    except ValueError:
        return "(no OID)"


# -- signing and verifying ---------------------------------------------------------------


def _family(key: PrivateKey | PublicKey) -> tuple[str, ...]:
    """The scheme families a key signs with."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return ("rsa", "rsa/pss")
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ("ecdsa",)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ("ed25519",)
    return ("ed448",)


def _describe(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.key_size}"
    return _family(key)[0].capitalize()


def _pss(s: Scheme) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(s.hash()), salt_length=s.hash().digest_size)


def sign(key: PrivateKey, name: str, data: bytes) -> bytes:
    """`data` signed by `key` with the scheme `name` (ECDSA: DER)."""
    s = scheme(name)
    if s.family not in _family(key):
        raise SignatureError(f"a {_describe(key)} key does not sign {name}")
    if isinstance(key, rsa.RSAPrivateKey):
        pad = _pss(s) if s.family == "rsa/pss" else padding.PKCS1v15()
        return key.sign(data, pad, s.hash())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(s.hash()))
    return key.sign(data)


def verify(key: PublicKey, name: str, data: bytes, signature: bytes) -> None:
    """Check `signature` (ECDSA: DER) over `data` with `key`; `SignatureError` says why
    not: a key of another type than the scheme's, or a signature that does not verify."""
    s = scheme(name)
    if s.family not in _family(key):
        raise SignatureError(f"{name} signature, but the key is {_describe(key)}")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = _pss(s) if s.family == "rsa/pss" else padding.PKCS1v15()
            key.verify(signature, data, pad, s.hash())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(s.hash()))
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        raise SignatureError(f"the {name} signature does not verify") from None


def _curve_bytes(key: PrivateKey | PublicKey) -> int:
    assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    return (key.curve.key_size + 7) // 8


def ecdsa_raw(der: bytes, size: int) -> bytes:
    """A DER ECDSA signature as r | s, each `size` octets (RFC 4754 §7)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_der(raw: bytes) -> bytes:
    """r | s (RFC 4754 §7) as a DER ECDSA signature."""
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


# -- IKEv2's AUTH data (RFC 7296 §3.8, RFC 4754, RFC 7427) --------------------------------


def auth_data(key: PrivateKey, method: int, name: str, octets: bytes) -> bytes:
    """The Authentication Data of an AUTH payload of `method` signing `octets` (§2.15)."""
    s = scheme(name)
    signature = sign(key, name, octets)
    if method == DIGITAL_SIGNATURE:
        return bytes([len(s.algorithm_identifier)]) + s.algorithm_identifier + signature
    if _classic_scheme(method, key) != name:
        raise SignatureError(f"Auth Method {method} does not carry {name}")
    return ecdsa_raw(signature, _curve_bytes(key)) if s.family == "ecdsa" else signature


def _classic_scheme(method: int, key: PublicKey | PrivateKey | None = None) -> str:
    """The scheme Auth Method 1, 9, 10 or 11 means (with the key's curve for RFC 4754)."""
    if method == RSA_DIGITAL_SIGNATURE:
        return "rsa-sha1"
    for bits, ecdsa_method in ECDSA_METHODS.items():
        if method == ecdsa_method:
            if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and (
                key.curve.key_size != bits
            ):
                raise SignatureError(f"Auth Method {method} is ECDSA P-{bits}, the key is "
                                     f"{_describe(key)}")  # fmt: skip
            return f"ecdsa-sha{min(bits, 512)}"
    raise SignatureError(f"Auth Method {method} is no signature")


def parse_auth_data(method: int, data: bytes) -> tuple[Scheme, bytes]:
    """The scheme and the signature of a peer's AUTH data; `SignatureError` says what is
    wrong with it. Method 14 names its scheme (RFC 7427 §3); 1, 9-11 are of their own."""
    if method != DIGITAL_SIGNATURE:
        s = scheme(_classic_scheme(method))
        if not data:
            raise SignatureError(f"Auth Method {method} without a signature")
        return s, data
    if not data or len(data) < 1 + data[0]:
        raise SignatureError("Digital Signature AUTH data shorter than its ASN.1 Length says")
    s = parse_algorithm_identifier(data[1 : 1 + data[0]])
    signature = data[1 + data[0] :]
    if not signature:
        raise SignatureError("Digital Signature AUTH data without a signature")
    return s, signature


def verify_auth_data(key: PublicKey, method: int, data: bytes, octets: bytes) -> Scheme:
    """The scheme of a peer's AUTH data that verifies over `octets` with `key`;
    `SignatureError` with the reason when it does not."""
    s, signature = parse_auth_data(method, data)
    if method != DIGITAL_SIGNATURE:
        _classic_scheme(method, key)  # the curve must be the method's
        if s.family == "ecdsa":
            assert isinstance(key, ec.EllipticCurvePublicKey)
            if len(signature) != 2 * _curve_bytes(key):
                raise SignatureError(f"Auth Method {method}: r | s of {len(signature)} octets")
            signature = ecdsa_der(signature)
    verify(key, s.name, octets, signature)
    return s


# -- what this end signs with (RFC 7427 §4) ----------------------------------------------


def encode_hashes(hash_ids: Sequence[int]) -> bytes:
    """N(SIGNATURE_HASH_ALGORITHMS)'s data: a 2-octet identifier each (RFC 7427 §4)."""
    return b"".join(struct.pack("!H", h) for h in hash_ids)


def decode_hashes(data: bytes) -> tuple[HashAlgorithm, ...]:
    """The hashes a peer announced; unknown identifiers are kept as pseudo-members."""
    if len(data) % 2:
        raise SignatureError(f"SIGNATURE_HASH_ALGORITHMS of {len(data)} octets, not 2 each")
    return tuple(HashAlgorithm(h) for (h,) in struct.iter_unpack("!H", data))


def natural_schemes(key: PrivateKey) -> tuple[str, ...]:
    """What a key signs with unless configured otherwise, best first, as strongSwan
    picks: PKCS#1 v1.5 RSA with the hash for the key's size (SHA-256 up to 3072 bits,
    SHA-384 up to 7680), ECDSA with the curve's hash and longer ones, EdDSA."""
    if isinstance(key, rsa.RSAPrivateKey):
        first = 256 if key.key_size <= 3072 else 384 if key.key_size <= 7680 else 512
        longer = [b for b in (256, 384, 512) if b > first]
        shorter = [b for b in (384, 256) if b < first]
        return tuple(f"rsa-sha{b}" for b in [first, *longer, *shorter])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return tuple(f"ecdsa-sha{b}" for b in (256, 384, 512) if b >= min(key.curve.key_size, 512))
    return (_family(key)[0],)


def choose_signature(
    key: PrivateKey, configured: Sequence[str], peer_hashes: Collection[int] | None
) -> tuple[int, str]:
    """(Auth Method, scheme) this end signs with. `peer_hashes` None: the peer announced
    no SIGNATURE_HASH_ALGORITHMS, so RSA and ECDSA sign by the classic methods (1 with
    SHA-1; 9-11 by the curve), EdDSA by method 14, which is its only one. Otherwise
    method 14 with the first of `configured` (or of the key's `natural_schemes`) that fits
    the key and whose hash the peer announced."""
    family = _family(key)
    if peer_hashes is None:
        if family[0] == "rsa":
            return RSA_DIGITAL_SIGNATURE, "rsa-sha1"
        if family[0] == "ecdsa":
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            bits = key.curve.key_size
            if bits not in ECDSA_METHODS:
                raise SignatureError(f"no Auth Method for {_describe(key)} but Digital Signature, "
                                     "and the peer announced no hashes")  # fmt: skip
            return ECDSA_METHODS[bits], f"ecdsa-sha{min(bits, 512)}"
        return DIGITAL_SIGNATURE, family[0]
    candidates = (
        [n for n in configured if SCHEMES[n].family in family]
        if configured
        else list(natural_schemes(key))
    )
    for name in candidates:
        if SCHEMES[name].hash_id in peer_hashes:
            return DIGITAL_SIGNATURE, name
    announced = ", ".join(HashAlgorithm(h).name for h in peer_hashes) or "none"
    raise SignatureError(f"no signature scheme for the {_describe(key)} key with a hash the "
                         f"peer announced ({announced})")  # fmt: skip
