"""How Phase 1 proves who each end is (RFC 2409 §5): a pluggable `Phase1Authenticator`.

Main and Aggressive Mode hand the authenticator what the method keys and signs: SKEYID
is made from the nonces (and, for signatures, g^xy), and HASH_I/HASH_R (or SIG_I/SIG_R)
cover `Phase1Material`: both KE values, both cookies, the initiator's SA offer — and the
sender's ID payload body. The exchange knows nothing else of the method: the
authenticator names the AUTHENTICATION_METHOD this end offers and the ones it takes,
gives the CR payloads to send, builds this end's proof ([CERT...,] HASH or SIG) and
checks the peer's, saying why not with `AuthenticationError`. IKEv1 has one method for
both ends (RFC 2409 §5), so a connection is either `PskAuthenticator` (§5.4) or
`SignatureAuthenticator` (§5.1): `phase1_authenticator` picks it from the configuration.

Signatures, as strongSwan makes them (``pubkey_v1_authenticator.c``, ``keymat_v1.c``):
SKEYID = prf(Ni_b | Nr_b, g^xy) with the negotiated prf; SIG_I/SIG_R sign HASH_I/HASH_R
as they are, with no hash of their own. RSA (method 3) is PKCS#1 v1.5 without a
DigestInfo over HASH made with the negotiated prf. ECDSA (RFC 4754, methods 9, 10, 11)
is raw r | s (§7), each the size of the curve, over HASH made with HMAC-SHA-256, -384 or -512
by the method, whatever hash Phase 1 negotiated. This end offers the method of its own
key (RSA: 3; P-256, P-384, P-521: 9, 10, 11); a responder takes RSA with an RSA key and
any of 9-11 with an ECDSA key (charon takes them so, and signs with the curve it has).

What the peer may sign with (`RemoteAuth.schemes`, swanctl's words): RSA (method 3) where
any PKCS#1 v1.5 scheme (``rsa-...``) is allowed — IKEv1's RSA signature carries no hash
of its own choice, it signs the negotiated prf's output; ECDSA where ``ecdsa-`` with the
method's hash is (method 9 needs ``ecdsa-sha256``). No schemes configured: any.
`AuthInfo` names RSA as ``rsa-`` and the negotiated hash, ECDSA by its method's hash.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from larval.credentials import PrivateKey, describe_key
from larval.crypto.ikev1_keys import Ikev1Prf, hash_i, hash_r, skeyid_psk, skeyid_sig
from larval.ike.auth_config import AuthInfo, LocalAuth, RemoteAuth, TrustedPeer, TrustError
from larval.ike.config import IkeConfig
from larval.ike.errors import IkeError
from larval.ike.identity import (
    CERT_PARSE_ERRORS,
    describe_identity,
    describe_issuer,
    describe_subject,
)
from larval.ike.identity import IdType as PeerIdType

from .constants import CertEncoding, IkeAuthMethod
from .errors import IkeV1ConfigError
from .message import IkeV1Message
from .payloads import CertPayload, CrPayload, HashPayload, IdPayload, Payload, SigPayload

__all__ = [
    "AuthenticationError",
    "HybridAuthenticator",
    "Phase1Authenticator",
    "Phase1Material",
    "PskAuthenticator",
    "SignatureAuthenticator",
    "WallClock",
    "XauthPskAuthenticator",
    "XauthSignatureAuthenticator",
    "phase1_authenticator",
    "utc_now",
]

WallClock = Callable[[], datetime.datetime]
PSK_INFO = AuthInfo("psk")
_RSA = IkeAuthMethod.RSA_SIGNATURES
#: The hash of each ECDSA method (RFC 4754 §4), with whose HMAC strongSwan makes the
#: HASH_I and HASH_R that SIG_I and SIG_R sign.
_ECDSA_HASHES: dict[int, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    IkeAuthMethod.ECDSA_SHA256_P256: hashes.SHA256,
    IkeAuthMethod.ECDSA_SHA384_P384: hashes.SHA384,
    IkeAuthMethod.ECDSA_SHA512_P521: hashes.SHA512,
}
_CURVE_METHODS = {
    "secp256r1": IkeAuthMethod.ECDSA_SHA256_P256,
    "secp384r1": IkeAuthMethod.ECDSA_SHA384_P384,
    "secp521r1": IkeAuthMethod.ECDSA_SHA512_P521,
}


def utc_now() -> datetime.datetime:
    """The wall clock certificates are checked against."""
    return datetime.datetime.now(datetime.UTC)


class AuthenticationError(IkeError):
    """The peer's proof does not hold: `reason` says why, `subject` is its certificate's
    subject where there is one (as strongSwan writes a DN)."""

    def __init__(self, reason: str, subject: str = "") -> None:
        super().__init__(reason)
        self.reason, self.subject = reason, subject

    def __str__(self) -> str:
        return f"{self.reason} (certificate {self.subject})" if self.subject else self.reason


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Material:
    """The prf and SKEYID a proof is made with, the method chosen, and what the proof
    covers besides the sender's ID body (RFC 2409 §5)."""

    prf: Ikev1Prf
    skeyid: bytes
    g_xi: bytes
    g_xr: bytes
    cky_i: bytes
    cky_r: bytes
    sai_b: bytes  # the initiator's SA payload body, as offered
    method: int = IkeAuthMethod.PRE_SHARED_KEY

    def __repr__(self) -> str:
        return "<Phase1Material>"  # never SKEYID

    def hash(self, id_b: bytes, initiator: bool, prf: Ikev1Prf | None = None) -> bytes:
        """HASH_I (of the initiator's ID body) or HASH_R (of the responder's), with the
        negotiated prf unless another is given."""
        make = hash_i if initiator else hash_r
        return make(prf or self.prf, self.skeyid, self.g_xi, self.g_xr, self.cky_i,
                    self.cky_r, self.sai_b, id_b)  # fmt: skip


class Phase1Authenticator(Protocol):
    """One way for the ends of an ISAKMP SA to prove themselves in Phase 1."""

    #: The AUTHENTICATION_METHOD this end offers as initiator.
    @property
    def method(self) -> IkeAuthMethod: ...

    def accepts(self, method: int) -> bool:
        """Does this end take an offer of `method` as responder?"""
        ...

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        """SKEYID, from which every Phase 1 key comes (§5)."""
        ...

    def requests(self) -> tuple[Payload, ...]:
        """The CR payloads this end sends (Main Mode 3 and 4, Aggressive Mode 1 and 2)."""
        ...

    def build(
        self, material: Phase1Material, id_b: bytes, initiator: bool, asked: bool
    ) -> tuple[Payload, ...]:
        """This end's proof over its ID body, as initiator or responder: [CERT...,] HASH
        or SIG; `asked`: the peer sent a CR."""
        ...

    def verify(
        self,
        material: Phase1Material,
        peer_id: IdPayload,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> AuthInfo:
        """How `message` proves its sender, who claims `peer_id` (`id_b` its body as
        received; `initiator`: the sender is the initiator); raises
        `AuthenticationError` if it does not."""
        ...

    def local_info(self, material: Phase1Material) -> AuthInfo:
        """How this end proved itself, for status."""
        ...


@dataclass(frozen=True, slots=True, repr=False)
class PskAuthenticator:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b); HASH_I/HASH_R as the proof (§5.4)."""

    psk: bytes
    method: IkeAuthMethod = IkeAuthMethod.PRE_SHARED_KEY

    def __repr__(self) -> str:
        return "<PskAuthenticator>"  # never the key

    def accepts(self, method: int) -> bool:
        return method == self.method

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return skeyid_psk(prf, self.psk, nonce_i, nonce_r)

    def requests(self) -> tuple[Payload, ...]:
        return ()

    def build(
        self, material: Phase1Material, id_b: bytes, initiator: bool, asked: bool = False
    ) -> tuple[Payload, ...]:
        return (HashPayload(material.hash(id_b, initiator)),)

    def verify(
        self,
        material: Phase1Material,
        peer_id: IdPayload,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> AuthInfo:
        proof = message.first(HashPayload)
        expected = material.hash(id_b, initiator)
        if proof is None or not secrets.compare_digest(proof.data, expected):
            raise AuthenticationError(f"HASH_{'I' if initiator else 'R'} does not verify")
        return PSK_INFO

    def local_info(self, material: Phase1Material) -> AuthInfo:
        return PSK_INFO


@dataclass(frozen=True, slots=True, repr=False)
class XauthPskAuthenticator(PskAuthenticator):
    """The pre-shared key of a connection whose initiator XAuth authenticates next:
    the same SKEYID and HASHes, offered and taken as XAuthInitPreShared (65001,
    draft-beaulieu-ike-xauth §7.2), as charon's and macOS's road warriors offer it."""

    method: IkeAuthMethod = IkeAuthMethod.XAUTH_INIT_PSK

    def __repr__(self) -> str:
        return "<XauthPskAuthenticator>"  # never the key


#: The methods whose signature is RSA's (method 3): XAuth's and hybrid's numbers say
#: only who XAuth authenticates next.
_RSA_METHODS = frozenset({
    _RSA, IkeAuthMethod.XAUTH_INIT_RSA, IkeAuthMethod.XAUTH_RESP_RSA,
    IkeAuthMethod.HYBRID_INIT_RSA, IkeAuthMethod.HYBRID_RESP_RSA,
})  # fmt: skip


def signature_method(key: PrivateKey) -> IkeAuthMethod:
    """The method a key signs Phase 1 with (as charon's ``get_pubkey_method``)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVE_METHODS:
        return _CURVE_METHODS[key.curve.name]
    raise IkeV1ConfigError(
        f"an {describe_key(key)} key has no IKEv1 signature method "
        "(RSA, or ECDSA on P-256, P-384 or P-521)"
    )


class SignatureAuthenticator:
    """SKEYID = prf(Ni_b | Nr_b, g^xy); [CERT...,] SIG_I/SIG_R as the proof (§5.1), the
    peer's certificate checked by `RemoteAuth.trust` (module docstring)."""

    __slots__ = ("_clock", "local", "method", "remote")

    def __init__(self, local: LocalAuth, remote: RemoteAuth, wall_clock: WallClock = utc_now):
        self.local, self.remote, self._clock = local, remote, wall_clock
        self.method = signature_method(local.cert.key.key)
        if not permits(local.schemes, self.method):
            raise IkeV1ConfigError(
                f"{', '.join(local.schemes)}: not what IKEv1 signs with an "
                f"{describe_key(local.cert.key.key)} key ({_method_scheme(self.method)})"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method.name}>"  # never the key

    def accepts(self, method: int) -> bool:
        if self.method == _RSA:
            return method == _RSA
        return method in _ECDSA_HASHES

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return skeyid_sig(prf, nonce_i, nonce_r, g_xy)

    def requests(self) -> tuple[Payload, ...]:
        """One CR per trusted CA, naming its subject DN (as charon does in IKEv1)."""
        if not self.remote.send_certreq:
            return ()
        names = self.remote.trust.certreq_names()
        return tuple(CrPayload(CertEncoding.X509_SIGNATURE, name) for name in names)

    def build(
        self, material: Phase1Material, id_b: bytes, initiator: bool, asked: bool
    ) -> tuple[Payload, ...]:
        digest = _signed_hash(material, id_b, initiator)
        return signed_proof(self.local, asked, material.method, digest)

    def verify(
        self,
        material: Phase1Material,
        peer_id: IdPayload,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> AuthInfo:
        leaf, trusted, subject = trusted_signer(self.remote, message, peer_id, self._clock())
        scheme = scheme_of(material)
        if not permits(self.remote.schemes, material.method):
            allowed = ", ".join(self.remote.schemes)
            raise AuthenticationError(f"signature scheme {scheme} not allowed ({allowed})", subject)
        digest = _signed_hash(material, id_b, initiator)
        check_sig_payload(message, leaf, material.method, digest, subject)
        return AuthInfo("pubkey", scheme, trusted.subject, trusted.issuer)

    def local_info(self, material: Phase1Material) -> AuthInfo:
        return signer_info(self.local, material)


class XauthSignatureAuthenticator(SignatureAuthenticator):
    """Certificates on both ends, then XAuth of the initiator: XAuthInitRSA (65005,
    draft-beaulieu-ike-xauth §7.2), RSA signatures as with method 3 under XAuth's
    number, as charon's ``pubkey`` + ``xauth`` road warriors and macOS's Cisco IPsec
    client with a certificate offer it."""

    __slots__ = ()

    def __init__(
        self, local: LocalAuth, remote: RemoteAuth, wall_clock: WallClock = utc_now
    ) -> None:
        super().__init__(local, remote, wall_clock)
        if self.method != _RSA:
            raise IkeV1ConfigError(
                f"certificates with XAuth are RSA's (XAuthInitRSA), not an "
                f"{describe_key(local.cert.key.key)} key's"
            )
        self.method = IkeAuthMethod.XAUTH_INIT_RSA

    def accepts(self, method: int) -> bool:
        return method == self.method


class HybridAuthenticator:
    """Hybrid authentication (draft-ietf-ipsra-hybrid-auth-05 §3.2; HybridInitRSA,
    64221): the gateway, the responder, proves itself with its RSA certificate (SIG_R, as
    with RSA signatures); the road warrior proves only that it holds the Phase 1 keys,
    HASH_I over SKEYID = prf(Ni_b | Nr_b, g^xy) with no shared secret, and XAuth then
    authenticates its user. `local` is the gateway's certificate, `remote` the client's
    trust in it; each end has only its own."""

    __slots__ = ("_clock", "local", "remote")
    method = IkeAuthMethod.HYBRID_INIT_RSA

    def __init__(self, local: LocalAuth | None, remote: RemoteAuth | None,
                 wall_clock: WallClock = utc_now) -> None:  # fmt: skip
        self.local, self.remote, self._clock = local, remote, wall_clock
        if local is not None and signature_method(local.cert.key.key) != _RSA:
            raise IkeV1ConfigError(
                f"hybrid authentication is RSA's (HybridInitRSA), not an "
                f"{describe_key(local.cert.key.key)} key's"
            )

    def __repr__(self) -> str:
        return f"<HybridAuthenticator {'gateway' if self.local else 'client'}>"

    def accepts(self, method: int) -> bool:
        return method == self.method

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return skeyid_sig(prf, nonce_i, nonce_r, g_xy)

    def requests(self) -> tuple[Payload, ...]:
        """The client asks for the gateway's certificate, one CR per trusted CA."""
        if self.remote is None or not self.remote.send_certreq:
            return ()
        names = self.remote.trust.certreq_names()
        return tuple(CrPayload(CertEncoding.X509_SIGNATURE, name) for name in names)

    def build(
        self, material: Phase1Material, id_b: bytes, initiator: bool, asked: bool = False
    ) -> tuple[Payload, ...]:
        if self.local is None:
            return (HashPayload(material.hash(id_b, initiator)),)  # the client: HASH_I
        return signed_proof(self.local, asked, _RSA, material.hash(id_b, initiator))

    def verify(
        self,
        material: Phase1Material,
        peer_id: IdPayload,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> AuthInfo:
        if self.remote is None:
            # The gateway: the client's HASH shows it holds the keys; XAuth says who.
            proof = message.first(HashPayload)
            expected = material.hash(id_b, initiator)
            if proof is None or not secrets.compare_digest(proof.data, expected):
                raise AuthenticationError(f"HASH_{'I' if initiator else 'R'} does not verify")
            return AuthInfo("hybrid")
        leaf, trusted, subject = trusted_signer(self.remote, message, peer_id, self._clock())
        check_sig_payload(message, leaf, _RSA, material.hash(id_b, initiator), subject)
        return AuthInfo("pubkey", scheme_of(material), trusted.subject, trusted.issuer)

    def local_info(self, material: Phase1Material) -> AuthInfo:
        if self.local is None:
            return AuthInfo("hybrid")
        return signer_info(self.local, material)


def signed_proof(local: LocalAuth, asked: bool, method: int, digest: bytes) -> tuple[Payload, ...]:
    """[CERT...,] SIG: this end's certificate and intermediates where ``send_cert`` says
    so (``always``, or ``ifasked`` and the peer sent a CR), and its signature of `method`
    over `digest` (SIG_I or SIG_R: RFC 2409 §5.1)."""
    send = local.send_cert
    certs: Sequence[x509.Certificate] = ()
    if send == "always" or (send == "ifasked" and asked):
        certs = (local.cert.cert, *local.intermediates)
    der = serialization.Encoding.DER
    return (
        *(CertPayload(CertEncoding.X509_SIGNATURE, c.public_bytes(der)) for c in certs),
        SigPayload(sign(local.cert.key.key, method, digest)),
    )


def trusted_signer(
    remote: RemoteAuth, message: IkeV1Message, peer_id: IdPayload, now: datetime.datetime
) -> tuple[x509.Certificate, TrustedPeer, str]:
    """The peer's certificate from `message`, checked by `remote`'s trust for the
    identity it claims (`peer_id`) at `now`: the leaf, what the trust made of it, and
    its subject as the log names it; `AuthenticationError` if it does not hold."""
    leaf, untrusted = peer_certificates(message)
    subject = describe_identity(PeerIdType.ID_DER_ASN1_DN, leaf.subject.public_bytes())
    claimed = (PeerIdType(int(peer_id.id_type)), peer_id.data)
    try:
        return leaf, remote.trust.verify(leaf, untrusted, claimed, now), subject
    except TrustError as exc:
        raise AuthenticationError(str(exc), subject) from None


def check_sig_payload(
    message: IkeV1Message, leaf: x509.Certificate, method: int, digest: bytes, subject: str
) -> None:
    """`message`'s SIG is `leaf`'s signature of `method` over `digest`, or
    `AuthenticationError` naming the certificate's `subject`."""
    proof = message.first(SigPayload)
    if proof is None:
        raise AuthenticationError("no SIG payload", subject)
    problem = check_signature(leaf.public_key(), method, digest, proof.data)
    if problem:
        raise AuthenticationError(problem, subject)


def signer_info(local: LocalAuth, material: Phase1Material) -> AuthInfo:
    """How this end proved itself with its certificate, for status."""
    cert = local.cert.cert
    return AuthInfo("pubkey", scheme_of(material), describe_subject(cert), describe_issuer(cert))


def permits(schemes: Sequence[str], method: int) -> bool:
    """Do swanctl's `schemes` allow the signature of `method` (module docstring)? None
    configured allow any."""
    if not schemes:
        return True
    if method in _RSA_METHODS:
        return any(s.startswith("rsa-") for s in schemes)
    return _method_scheme(method) in schemes


def _method_scheme(method: int) -> str:
    """The scheme an ECDSA method signs with; RSA's family."""
    ecdsa = _ECDSA_HASHES.get(method)
    return f"ecdsa-{ecdsa.name}" if ecdsa is not None else "rsa-..., PKCS#1 v1.5"


def phase1_authenticator(config: IkeConfig, wall_clock: WallClock = utc_now) -> Phase1Authenticator:
    """The authenticator of the connection: the pre-shared key when neither side has a
    certificate configured, signatures when both do, each under XAuth's method where one
    side is XAuth's, and hybrid for a certificate against XAuth alone. IKEv1 proves both
    ends with one method, so one side of each raises `IkeV1ConfigError`.

    XAuth's methods are the Init ones (an odd number: the initiator is the road warrior
    XAuth authenticates), the only ones road warriors offer; a gateway answers them."""
    local, remote = config.local_auth, config.remote_auth
    xauth = config.local_xauth is not None or config.remote_xauth is not None
    if local is None and remote is None:
        return XauthPskAuthenticator(config.psk) if xauth else PskAuthenticator(config.psk)
    if local is not None and remote is None and config.remote_xauth is not None:
        return HybridAuthenticator(local, None, wall_clock)  # a hybrid gateway
    if local is None and remote is not None and config.local_xauth is not None:
        return HybridAuthenticator(None, remote, wall_clock)  # its road warrior
    if local is not None and remote is not None and xauth:
        return XauthSignatureAuthenticator(local, remote, wall_clock)
    if local is None or remote is None:
        this, peer = ("psk", "pubkey") if local is None else ("pubkey", "psk")
        raise IkeV1ConfigError(
            f"connection {config.name!r}: IKEv1 proves both ends with one method, but this "
            f"end authenticates with {this} and the peer with {peer}"
        )
    return SignatureAuthenticator(local, remote, wall_clock)


def peer_certificates(message: IkeV1Message) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The leaf (the first X.509 CERT) and the rest, as untrusted intermediates; CERTs of
    other encodings are passed over (as charon does)."""
    certs: list[x509.Certificate] = []
    for payload in message.get(CertPayload):
        if payload.encoding != CertEncoding.X509_SIGNATURE:
            continue
        try:
            certs.append(x509.load_der_x509_certificate(payload.data))
        except CERT_PARSE_ERRORS:
            number = len(certs) + 1
            raise AuthenticationError(f"CERT payload {number} is no X.509 certificate") from None
    if not certs:
        raise AuthenticationError("no certificate")
    return certs[0], certs[1:]


def scheme_of(material: Phase1Material) -> str:
    """How `AuthInfo` names the signature of the method chosen (module docstring)."""
    ecdsa = _ECDSA_HASHES.get(material.method)
    if ecdsa is not None:
        return f"ecdsa-{ecdsa.name}"
    return f"rsa-{material.prf.hash_name}"


def _signed_hash(material: Phase1Material, id_b: bytes, initiator: bool) -> bytes:
    """HASH_I or HASH_R as SIG_I or SIG_R signs it: ECDSA's with its method's hash."""
    ecdsa = _ECDSA_HASHES.get(material.method)
    prf = Ikev1Prf(ecdsa.name) if ecdsa is not None else None
    return material.hash(id_b, initiator, prf)


def sign(key: PrivateKey, method: int, digest: bytes) -> bytes:
    """SIG data over `digest`: PKCS#1 v1.5 without DigestInfo (RSA), raw r | s (ECDSA)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), NoDigestInfo())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(_ECDSA_HASHES[method]()))))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def check_signature(public: object, method: int, digest: bytes, signature: bytes) -> str:
    """Why `signature` is not `public`'s over `digest` for `method`; "" when it is."""
    try:
        if method in _RSA_METHODS:
            if not isinstance(public, rsa.RSAPublicKey):
                return f"a {_key_name(public)} key cannot sign for RSA_SIGNATURES"
            # cryptography's stub for verify omits NoDigestInfo, which it takes as sign does.
            no_digest_info: hashes.HashAlgorithm = NoDigestInfo()  # type: ignore[assignment]
            public.verify(signature, digest, padding.PKCS1v15(), no_digest_info)
            return ""
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return f"a {_key_name(public)} key cannot sign for {IkeAuthMethod(method).name}"
        size = (public.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            return f"an ECDSA signature of {len(signature)} bytes, not {2 * size}"
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        algorithm = ec.ECDSA(Prehashed(_ECDSA_HASHES[method]()))
        public.verify(encode_dss_signature(r, s), digest, algorithm)
    except InvalidSignature:
        return "the signature does not verify"
    return ""


def _key_name(public: object) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ECDSA"
    return type(public).__name__.removeprefix("_").removesuffix("PublicKey")
