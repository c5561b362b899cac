"""How each end authenticates, for either IKE version: swanctl's ``auth`` words, this
end's certificate, and what the peer must prove.

A side's ``auth`` is ``"psk"`` or a public-key word as strongSwan writes it: ``"pubkey"``
(any key, any hash but SHA-1), a key type (``"rsa"``, ``"rsa/pss"``, ``"ecdsa"``,
``"ed25519"``, ``"ed448"``) optionally followed by hashes (``"ecdsa-sha384"``,
``"rsa/pss-sha256"``, ``"pubkey-sha256-sha384"``). `parse_auth` turns one into the
signature schemes it allows, named as `SCHEMES` names them. Locally they are the schemes
this end may sign with, in that order; remotely the schemes the peer may sign with.
RSA PKCS#1 v1.5 with SHA-1 (IKEv2's method 1) is allowed only where a word names SHA-1.

`PeerTrust` is what a verifier of the peer's certificate must do (``larval.trust``
implements it): the chain up to a configured CA, validity, revocation, key sizes, and
that the leaf carries the identity the peer claimed. `TrustError` says why not.

A side may instead be EAP's (IKEv2 only, RFC 7296 §2.16): ``"eap-mschapv2"``,
``"eap-md5"``, or ``"eap"`` (the server picks, MSCHAPv2 first). `EapAuth` holds the
method, the EAP identity and the passwords; locally the client's own, remotely every
user the gateway knows.

A side may take more than one round (RFC 4739; swanctl's ``local-1``, ``local-2``):
`AuthRound` is one, `IkeConfig.local_rounds` and ``remote_rounds`` list them in order.
A round of ``"xauth"`` (a user name and password after the IKE SA's own authentication,
draft-beaulieu-ike-xauth) is IKEv1's.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from cryptography import x509

from larval.credentials import CertificateWithKey
from larval.errors import LarvalError
from larval.ike.identity import IdType, describe_issuer, describe_subject

__all__ = [
    "EAP_METHODS",
    "SCHEMES",
    "AuthInfo",
    "AuthRound",
    "EapAuth",
    "EapTlsAuth",
    "IdMatch",
    "LocalAuth",
    "PeerTrust",
    "RemoteAuth",
    "SendCert",
    "TrustError",
    "TrustedPeer",
    "parse_auth",
]

#: Every signature scheme larval signs and verifies with, by strongSwan's name.
SCHEMES = (
    "rsa-sha1",
    "rsa-sha256",
    "rsa-sha384",
    "rsa-sha512",
    "rsa/pss-sha256",
    "rsa/pss-sha384",
    "rsa/pss-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "ecdsa-sha512",
    "ed25519",
    "ed448",
)
_HASHES = ("sha1", "sha256", "sha384", "sha512")
_KEY_TYPES = ("pubkey", "rsa", "rsa/pss", "ecdsa", "ed25519", "ed448")

SendCert = Literal["ifasked", "always", "never"]
#: The ``auth`` words of EAP; ``"eap"`` lets the server pick.
EAP_METHODS = ("eap-mschapv2", "eap-md5", "eap-tls", "eap")
EapMethod = Literal["eap-mschapv2", "eap-md5", "eap-tls", "eap"]
#: Every ``auth`` class a round may have; ``"xauth"`` is IKEv1's.
RoundMethod = Literal["psk", "pubkey", "eap-mschapv2", "eap-md5", "eap-tls", "eap", "xauth"]
#: Does an identity the peer sent (ID Type, data) match the one configured?
IdMatch = Callable[[IdType, bytes], bool]


class TrustError(LarvalError):
    """The peer's certificate is not to be trusted; the message says why (one line,
    the reason first, e.g. "revoked (keyCompromise)", "expired on 2026-01-01")."""


def parse_auth(word: str) -> tuple[Literal["psk", "pubkey"], tuple[str, ...]]:
    """``("psk", ())`` or ``("pubkey", schemes)`` for an ``auth`` word; raises
    `ValueError` saying what is allowed."""
    if word == "psk":
        return "psk", ()
    key_type, *hashes = word.split("-")
    if key_type not in _KEY_TYPES or any(h not in _HASHES for h in hashes):
        raise ValueError(
            f"{word!r} is not an auth method: psk, or one of {', '.join(_KEY_TYPES)} "
            f"with optional hashes {', '.join('-' + h for h in _HASHES)} (as rsa/pss-sha256)"
        )
    if key_type in ("ed25519", "ed448"):
        if hashes:
            raise ValueError(f"{word!r}: {key_type} signs without a separate hash")
        return "pubkey", (key_type,)
    families = {"pubkey": ("rsa", "ecdsa"), "rsa": ("rsa", "rsa/pss"),
                "rsa/pss": ("rsa/pss",), "ecdsa": ("ecdsa",)}[key_type]  # fmt: skip
    wanted = hashes or [h for h in _HASHES if h != "sha1"]
    schemes = tuple(f"{f}-{h}" for h in wanted for f in families if f"{f}-{h}" in SCHEMES)
    if not schemes:
        raise ValueError(f"{word!r} names no signature scheme larval has")
    if key_type == "pubkey" and not hashes:
        schemes += ("rsa/pss-sha256", "rsa/pss-sha384", "rsa/pss-sha512", "ed25519", "ed448")
    return "pubkey", schemes


@dataclass(frozen=True)
class TrustedPeer:
    """A peer certificate that verified: the leaf, the chain up to the trusted CA."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, the trust anchor last

    @property
    def subject(self) -> str:
        return describe_subject(self.leaf)

    @property
    def issuer(self) -> str:
        return describe_issuer(self.leaf)


class PeerTrust(Protocol):
    """Who may prove itself with a certificate: the trusted CAs, their CRLs, the
    intermediates on hand (``larval.trust.TrustStore``)."""

    def certreq_keyids(self) -> tuple[bytes, ...]:
        """The SHA-1 of each trusted CA's DER SubjectPublicKeyInfo, for CERTREQ."""
        ...

    def certreq_names(self) -> tuple[bytes, ...]:
        """The DER subject DN of each trusted CA, for IKEv1's CR (RFC 2408 §3.10), which
        names a CA where IKEv2's CERTREQ hashes its key."""
        ...

    def verify(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate],
        peer_id: tuple[IdType, bytes],
        now: datetime.datetime,
    ) -> TrustedPeer:
        """The chain from `leaf` (with intermediates from `untrusted` or the store) to a
        trusted CA, valid at `now`, not revoked, with keys strong enough, and a leaf
        that carries `peer_id`; raises `TrustError` with the reason otherwise."""
        ...


@dataclass(frozen=True)
class LocalAuth:
    """How this end proves itself with a certificate (``local = { auth = "pubkey",
    certs = [...] }``)."""

    cert: CertificateWithKey
    #: CA certificates between the leaf and the root, sent after the leaf.
    intermediates: tuple[x509.Certificate, ...] = ()
    #: What this end signs with, best first; () : the key's natural schemes.
    schemes: tuple[str, ...] = ()
    send_cert: SendCert = "ifasked"


@dataclass(frozen=True)
class RemoteAuth:
    """What the peer must prove with a certificate (``remote = { auth = "pubkey",
    cacerts = [...] }``)."""

    trust: PeerTrust = field(compare=False)
    #: The schemes the peer may sign with (`parse_auth`).
    schemes: tuple[str, ...] = ()
    send_certreq: bool = True


@dataclass(frozen=True)
class EapTlsAuth:
    """EAP-TLS's certificates (RFC 5216): this end's, with its key and the CA
    certificates sent after it (a client's own; a gateway's, the one it proves itself
    with in IKE), and the trust the other end's must chain to: a gateway's CAs of its
    clients (`anchors`, also named in its CertificateRequest), a client's those of the
    gateway, whose TLS certificate must carry `server_id` (None: whoever it names)."""

    cert: CertificateWithKey
    intermediates: tuple[x509.Certificate, ...] = ()
    trust: PeerTrust | None = field(default=None, compare=False)
    anchors: tuple[x509.Certificate, ...] = ()
    server_id: tuple[IdType, bytes] | None = None


@dataclass(frozen=True)
class EapAuth:
    """A side that authenticates by EAP (``auth = "eap-mschapv2"``, ``eap_id``).

    Locally (a client): `eap_id` is the name this end gives, `passwords` holds its own.
    Remotely (a gateway): `eap_id` is the name the peer must authenticate as, ``"%any"``
    to ask it (EAP-Identity), or None for the peer's IKE identity (as strongSwan);
    `passwords` holds every user's, by EAP identity. Never shown.
    """

    method: EapMethod
    eap_id: str | None
    #: Compared (a changed password is a changed configuration on SIGHUP), never shown.
    passwords: Mapping[str, str] = field(repr=False, hash=False, default_factory=dict)
    #: A gateway's: how many wrong EAP-MSCHAPv2 passwords it answers with a retry (R=1).
    retries: int = 0
    #: EAP-TLS's certificates, where this side runs it (``eap-tls``, or ``eap`` with them).
    tls: EapTlsAuth | None = None


@dataclass(frozen=True)
class AuthRound:
    """One round of one end's authentication (RFC 4739 §3; ``local = [{...}, {...}]``).

    The first round's credentials are the connection's own (`IkeConfig.psk`,
    ``local_auth``/``remote_auth``, ``local_eap``/``remote_eap``); a round here says how it
    authenticates, and carries what a further round needs besides: its identity and its
    EAP or XAuth name.
    """

    method: RoundMethod
    #: Locally the identity this round proves (IKEv2's IDi of the round); None: the
    #: connection's ``local_id``.
    id: tuple[IdType, bytes] | None = None
    #: Remotely the identity the peer may claim in this round; None: any.
    id_match: IdMatch | None = field(default=None, compare=False)
    #: An EAP round's method, EAP identity and passwords.
    eap: EapAuth | None = None
    #: An XAuth round's user name (swanctl's ``xauth_id``); None: the round's identity.
    xauth_id: str | None = None


@dataclass(frozen=True)
class XauthAuth:
    """IKEv1 XAuth, the second round after a PSK or a gateway's certificate
    (draft-beaulieu-ike-xauth; swanctl's ``auth = xauth``, ``xauth_id``).

    Locally (a client): `xauth_id` is the user name this end gives, `passwords` holds its
    own. Remotely (a gateway): `xauth_id` is the user the peer must be, ``"%any"`` for
    any user with a password, or None for the peer's IKE identity; `passwords` holds
    every user's. Never shown.
    """

    xauth_id: str | None
    passwords: Mapping[str, str] = field(repr=False, hash=False, default_factory=dict)


@dataclass(frozen=True)
class AuthInfo:
    """How one end of an IKE SA authenticated, for status: "psk", "pubkey" with the
    scheme and the certificate's subject and issuer, or an EAP method ("eap-mschapv2",
    "eap-md5", "eap-tls") with the EAP identity the peer proved."""

    method: str
    scheme: str = ""
    subject: str = ""
    issuer: str = ""
    identity: str = ""
    #: How the rounds after this one went (RFC 4739), in order.
    rounds: tuple[AuthInfo, ...] = ()
