"""How IKE_AUTH proves who each end is (RFC 7296 §2.15): a `Prover` for this end and a
`Verifier` for the peer, each of its own method.

Each end's method is its own: this end may prove itself with a certificate and check a
peer that uses the shared key, or the other way round (strongSwan's rw-psk-rsa-split).
So the session holds two steps, made from the configuration by `prover_for` and
`verifier_for`:

* the `Prover` makes this end's CERT payloads (if it sends any) and its AUTH over its
  signed octets, and says how this end authenticated (`AuthInfo`);
* the `Verifier` says what to ask of the peer (CERTREQ) and checks what the peer's
  IKE_AUTH claims (`PeerClaim`: its ID, AUTH and CERTs) over the peer's octets,
  returning how the peer authenticated or raising
  `AuthenticationFailed` with the reason (and the certificate's subject, when there is
  one).

The exchange hands them the octets each end signs (`signed_octets`: its own IKE_SA_INIT
message, the peer's nonce and the MAC of its ID) and what the peer announced in
IKE_SA_INIT (`PeerOffer`: its hashes of RFC 7427 §4, whether it asked for a certificate);
it knows nothing else of the method, so that EAP rounds and configuration payloads come
as provers and verifiers of their own. `PskAuthenticator` is the shared key's (method 2,
Shared Key Message Integrity Code), both steps at once, as before: its AUTH payloads are
the same bytes. `PubkeyProver` and `PubkeyVerifier` are the certificates' (methods 1,
9-11 and 14: `larval.crypto.signatures`).

EAP (§2.16) is a method of more than one round trip: `EapProver` (a client) and
`EapVerifier` (a gateway) make the conversation each end runs
(`larval.ikev2.eap_conversation`), and the AUTH that closes it, keyed with the MSK or,
for a method that derives none, with SK_pi and SK_pr (`eap_auth`); the IKE_AUTH tasks of
`larval.ikev2.exchanges.eap_auth` carry it. The gateway still proves itself with its own
prover (a certificate, or the PSK).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from larval.crypto.ike_auth import psk_auth, verify_psk_auth
from larval.crypto.prf import Prf
from larval.crypto.randomness import RandomBytes, system_random
from larval.crypto.signatures import (
    DIGITAL_SIGNATURE,
    ECDSA_METHODS,
    RSA_DIGITAL_SIGNATURE,
    HashAlgorithm,
    PublicKey,
    SignatureError,
    auth_data,
    choose_signature,
    parse_auth_data,
    scheme,
    verify_auth_data,
)
from larval.errors import LarvalError
from larval.ike.auth_config import (
    AuthInfo,
    EapAuth,
    LocalAuth,
    RemoteAuth,
    TrustError,
    parse_auth,
)
from larval.ike.config import IkeConfig
from larval.ike.identity import CERT_PARSE_ERRORS, IdType, describe_issuer, describe_subject

from .constants import AuthMethod, CertEncoding
from .eap_conversation import EapPeerConversation, EapServerConversation, WallClock
from .payloads import AuthPayload, CertPayload, CertReqPayload

__all__ = [
    "AuthenticationFailed",
    "EapProver",
    "EapVerifier",
    "PeerClaim",
    "PeerOffer",
    "Proof",
    "Prover",
    "PskAuthenticator",
    "PubkeyProver",
    "PubkeyVerifier",
    "Verifier",
    "announced_hashes",
    "eap_auth",
    "prover_for",
    "verifier_for",
    "verify_eap_auth",
]

_SIGNATURE_METHODS = (RSA_DIGITAL_SIGNATURE, *ECDSA_METHODS.values(), DIGITAL_SIGNATURE)
#: What a peer may sign with when `auth` named no scheme ("pubkey": all but SHA-1).
_ANY_PUBKEY = parse_auth("pubkey")[1]


class AuthenticationFailed(LarvalError):
    """The peer did not prove itself; the message is the reason, `subject` the subject
    of the certificate it sent, if any, `kind` the reason as counted (one of
    `larval.ike.counters.AUTH_FAILURES`)."""

    def __init__(self, reason: str, subject: str = "", kind: str = "auth_data") -> None:
        super().__init__(reason)
        self.subject = subject
        self.kind = kind


@dataclass(frozen=True)
class PeerOffer:
    """What the peer announced that bears on how this end proves itself: the hashes of
    its N(SIGNATURE_HASH_ALGORITHMS) (None: it sent none, RFC 7427 §4), and whether it
    sent a CERTREQ (RFC 7296 §3.7)."""

    hashes: tuple[int, ...] | None = None
    certreq: bool = False
    #: N(MULTIPLE_AUTH_SUPPORTED) in the responder's IKE_SA_INIT (RFC 4739 §3).
    multiple_auth: bool = False


@dataclass(frozen=True)
class PeerClaim:
    """What the peer's IKE_AUTH message says of it: the identity it claims (IDi or IDr),
    its AUTH and its CERT payloads."""

    peer_id: tuple[IdType, bytes]
    auth: AuthPayload
    certs: tuple[CertPayload, ...] = ()


@dataclass(frozen=True)
class Proof:
    """This end's CERT payloads, its AUTH and how it authenticated."""

    certs: tuple[CertPayload, ...]
    auth: AuthPayload
    info: AuthInfo


class Prover(Protocol):
    """How this end proves itself in IKE_AUTH."""

    def check(self, peer: PeerOffer) -> None:
        """`AuthenticationFailed` if this end cannot prove itself to that peer (the
        initiator asks before it sends IKE_AUTH)."""
        ...

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        """This end's CERTs and AUTH over its signed octets; `AuthenticationFailed` when it
        cannot make one the peer takes (no scheme with a hash the peer announced)."""
        ...


class Verifier(Protocol):
    """How this end checks the peer in IKE_AUTH."""

    #: Does it check the peer by certificate (and so want RFC 7427's hashes announced)?
    pubkey: bool

    def certreq(self) -> CertReqPayload | None:
        """The CERTREQ that asks the peer for a certificate, or None."""
        ...

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        """How the peer authenticated, if its claim proves it over its signed octets;
        `AuthenticationFailed` says why not. `now` is the wall clock."""
        ...


class PskAuthenticator:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15)."""

    method = AuthMethod.SHARED_KEY_MIC
    pubkey = False

    def __init__(self, psk: bytes) -> None:
        self._psk = psk

    def __repr__(self) -> str:
        return "<PskAuthenticator>"  # never the key

    def check(self, peer: PeerOffer) -> None:
        return

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        auth = AuthPayload(self.method, psk_auth(prf, self._psk, octets))
        return Proof((), auth, AuthInfo("psk"))

    def certreq(self) -> CertReqPayload | None:
        return None

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        auth = claim.auth
        if auth.method != self.method:
            raise AuthenticationFailed(
                f"AUTH is of method {AuthMethod(auth.method).name}, not SHARED_KEY_MIC",
                kind="method",
            )
        if not verify_psk_auth(prf, self._psk, octets, auth.data):
            raise AuthenticationFailed("AUTH does not verify (wrong PSK?)")
        return AuthInfo("psk")


class PubkeyProver:
    """This end's certificate: CERT payloads as `send_cert` says (§3.6), and an AUTH
    signed with the scheme `choose_signature` picks."""

    def __init__(self, local: LocalAuth) -> None:
        self._local = local

    def __repr__(self) -> str:
        return f"<PubkeyProver {describe_subject(self._local.cert.cert)}>"

    def check(self, peer: PeerOffer) -> None:
        local = self._local
        try:
            choose_signature(local.cert.key.key, local.schemes, peer.hashes)
        except SignatureError as error:
            raise AuthenticationFailed(str(error), describe_subject(local.cert.cert),
                                       "own_credentials") from None  # fmt: skip

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        local = self._local
        key, cert = local.cert.key.key, local.cert.cert
        try:
            method, name = choose_signature(key, local.schemes, peer.hashes)
            data = auth_data(key, method, name, octets)
        except SignatureError as error:
            raise AuthenticationFailed(str(error), describe_subject(cert),
                                       "own_credentials") from None  # fmt: skip
        send = local.send_cert == "always" or (local.send_cert == "ifasked" and peer.certreq)
        certs = (cert, *local.intermediates) if send else ()
        payloads = tuple(CertPayload(CertEncoding.X509_SIGNATURE, _der(c)) for c in certs)
        info = AuthInfo("pubkey", name, describe_subject(cert), describe_issuer(cert))
        return Proof(payloads, AuthPayload(AuthMethod(method), data), info)


class PubkeyVerifier:
    """The peer's certificate: the first X509_SIGNATURE CERT is its leaf, the others
    intermediates it offers (§3.6); the chain, validity, revocation and identity by the
    `PeerTrust`; the scheme among those allowed; then the signature with the leaf's key."""

    pubkey = True

    def __init__(self, remote: RemoteAuth) -> None:
        self._remote = remote
        self._schemes = remote.schemes or _ANY_PUBKEY

    def __repr__(self) -> str:
        return f"<PubkeyVerifier {', '.join(self._schemes)}>"

    @property
    def schemes(self) -> tuple[str, ...]:
        """What the peer may sign with."""
        return self._schemes

    def certreq(self) -> CertReqPayload | None:
        """CERTREQ with the SHA-1 of each trusted CA's public key (§3.7)."""
        if not self._remote.send_certreq:
            return None
        keyids = self._remote.trust.certreq_keyids()
        return CertReqPayload(CertEncoding.X509_SIGNATURE, b"".join(keyids)) if keyids else None

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        auth = claim.auth
        if auth.method not in _SIGNATURE_METHODS:
            raise AuthenticationFailed(
                f"AUTH is of method {AuthMethod(auth.method).name}, not a signature",
                kind="method",
            )
        x509_certs = [c.data for c in claim.certs if c.encoding == CertEncoding.X509_SIGNATURE]
        if not x509_certs:
            raise AuthenticationFailed("no certificate", kind="certificate")
        leaf, *untrusted = (_load(der, n) for n, der in enumerate(x509_certs))
        subject = describe_subject(leaf)
        try:
            trusted = self._remote.trust.verify(leaf, untrusted, claim.peer_id, now)
        except TrustError as error:
            raise AuthenticationFailed(str(error), subject, "certificate") from None
        try:
            name = parse_auth_data(auth.method, auth.data)[0].name
            if name not in self._schemes:
                raise SignatureError(f"signature scheme {name} not allowed")
            key = leaf.public_key()
            if not isinstance(key, PublicKey):
                raise SignatureError(f"a {type(key).__name__} in the certificate")
            verify_auth_data(key, auth.method, auth.data, octets)
        except SignatureError as error:
            raise AuthenticationFailed(str(error), subject) from None
        return AuthInfo("pubkey", name, trusted.subject, trusted.issuer)


class EapProver:
    """A client that proves itself by EAP (§2.16): it sends no AUTH until its
    conversation (`conversation`) ended with the server's Success; then `eap_auth`."""

    def __init__(self, local: EapAuth) -> None:
        self._local = local

    def __repr__(self) -> str:
        return f"<EapProver {self._local.method} {self._local.eap_id!r}>"

    def check(self, peer: PeerOffer) -> None:
        return

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        # Only an initiator asks for EAP (§2.16); a responder cannot prove itself by it.
        raise AuthenticationFailed("EAP authenticates an initiator only, not this responder",
                                   kind="method")  # fmt: skip

    def conversation(self, random: RandomBytes = system_random,
                     wall_clock: WallClock | None = None) -> EapPeerConversation:  # fmt: skip
        """`wall_clock`: the time the gateway's EAP-TLS certificate is checked at."""
        if wall_clock is None:
            return EapPeerConversation(self._local, random)
        return EapPeerConversation(self._local, random, wall_clock)


class EapVerifier:
    """A gateway that checks its peer by EAP (§2.16): the peer's first IKE_AUTH carries
    no AUTH, and `conversation` runs the EAP methods configured; an AUTH in place of that
    is refused (`verify`)."""

    pubkey = False

    def __init__(self, remote: EapAuth) -> None:
        self._remote = remote

    def __repr__(self) -> str:
        return f"<EapVerifier {self._remote.method} {self._remote.eap_id or 'IKE identity'}>"

    def certreq(self) -> CertReqPayload | None:
        return None

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        raise AuthenticationFailed(
            f"AUTH of method {AuthMethod(claim.auth.method).name} where this end "
            f"authenticates the initiator by EAP ({self._remote.method})",
            kind="method",
        )

    def conversation(self, peer_identity: str, random: RandomBytes = system_random,
                     wall_clock: WallClock | None = None) -> EapServerConversation:  # fmt: skip
        """A conversation with the peer whose IKE identity reads `peer_identity`;
        `wall_clock`: the time a client's EAP-TLS certificate is checked at."""
        if wall_clock is None:
            return EapServerConversation(self._remote, peer_identity, random)
        return EapServerConversation(self._remote, peer_identity, random, wall_clock)


def eap_auth(prf: Prf, msk: bytes | None, sk_p: bytes, octets: bytes) -> AuthPayload:
    """The AUTH that ends EAP: the shared-key MIC over one end's signed octets, keyed
    with the MSK, or with that end's SK_pi or SK_pr when the method derived none (§2.16)."""
    return AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth(prf, msk or sk_p, octets))


def verify_eap_auth(prf: Prf, msk: bytes | None, sk_p: bytes, octets: bytes,
                    auth: AuthPayload) -> None:  # fmt: skip
    """`AuthenticationFailed` unless `auth` is `eap_auth`'s for the peer's octets."""
    if auth.method != AuthMethod.SHARED_KEY_MIC:
        raise AuthenticationFailed(
            f"AUTH after EAP is of method {AuthMethod(auth.method).name}, not SHARED_KEY_MIC",
            kind="eap",
        )
    if not verify_psk_auth(prf, msk or sk_p, octets, auth.data):
        key = "the MSK" if msk else "SK_p (the method derives no MSK)"
        raise AuthenticationFailed(f"AUTH after EAP does not verify with {key}", kind="eap")


def prover_for(config: IkeConfig) -> Prover:
    """This end's certificate when configured, EAP for a client, else the shared key."""
    if config.local_eap is not None:
        return EapProver(config.local_eap)
    if config.local_auth is not None:
        return PubkeyProver(config.local_auth)
    return PskAuthenticator(config.psk)


def verifier_for(config: IkeConfig) -> Verifier:
    """The peer's certificate when configured, EAP for a gateway, else the shared key."""
    if config.remote_eap is not None:
        return EapVerifier(config.remote_eap)
    if config.remote_auth is not None:
        return PubkeyVerifier(config.remote_auth)
    return PskAuthenticator(config.psk)


def announced_hashes(verifier: Verifier) -> tuple[HashAlgorithm, ...]:
    """What this end announces in N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4), as
    strongSwan does: the hashes of the schemes the peer may sign with, SHA-1 never (no
    hash for IKEv2 signatures there); with no certificate to check, SHA-2 and IDENTITY
    (RFC 8420), which are those of "pubkey"."""
    schemes = verifier.schemes if isinstance(verifier, PubkeyVerifier) else _ANY_PUBKEY
    return tuple(sorted({scheme(n).hash_id for n in schemes} - {HashAlgorithm.SHA1}))


def _load(der: bytes, index: int) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except CERT_PARSE_ERRORS:
        which = "the first" if index == 0 else f"CERT {index + 1}"
        raise AuthenticationFailed(f"{which} X.509 CERT does not decode",
                                   kind="certificate") from None  # fmt: skip


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)
