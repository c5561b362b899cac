"""Whom a peer's certificate proves: the chain to a trusted CA, validity, revocation, key
sizes and the identity the peer claimed (`TrustStore`, the `PeerTrust` IKE asks).

Chains go through `cryptography.x509.verification` under a policy fit for IKE rather than
TLS: the client verifier, any extension allowed in the end entity (no EKU is demanded, so
serverAuth, clientAuth and ikeIntermediate certificates, and certificates with no SAN, all
pass), and CAs that need basicConstraints but not keyUsage (if they have one, it must
allow keyCertSign). The library still checks signatures, CA flags, path lengths, validity
and critical extensions.

It refuses EdDSA outright (an Ed25519 or Ed448 key or signature anywhere in a chain), and
IKE takes those (RFC 8420). Such a chain is checked here instead, with the rules the
library applies otherwise: each signature by its issuer, basicConstraints CA and
pathLenConstraint, keyCertSign where a CA has keyUsage, and no critical extension this
does not understand. Which way a chain goes depends on its certificates only.

Either way, the reasons come from here where they can be precise: validity (with the
dates), RSA keys below 2048 bits (the floor this end's own keys have, for the leaf and
every CA), the CRLs on hand (no fetching), and last that the leaf carries the identity
the peer sent.
Each failure is a `TrustError` whose message starts with the reason.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import logging
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import SignatureAlgorithmOID

from larval.credentials import RSA_BITS_MIN
from larval.ike.auth_config import TrustedPeer, TrustError
from larval.ike.identity import (
    CERT_PARSE_ERRORS,
    IdType,
    cert_matches_identity,
    describe_identity,
    describe_subject,
)

__all__ = ["TrustStore", "chain_for"]

log = logging.getLogger("larval.trust")

E = TypeVar("E", bound=x509.ExtensionType)

_EDDSA_SIGNATURES = (SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448)
_CURVES = ("secp256r1", "secp384r1", "secp521r1")
# The extensions the EdDSA path checks or that carry no constraint; another critical one
# fails the chain, as RFC 5280 §4.2 wants of what a verifier does not process.
_UNDERSTOOD = (
    x509.BasicConstraints,
    x509.KeyUsage,
    x509.ExtendedKeyUsage,
    x509.SubjectAlternativeName,
    x509.SubjectKeyIdentifier,
    x509.AuthorityKeyIdentifier,
)


def _key_cert_sign(
    policy: verification.Policy, cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage of a CA without keyCertSign")


# RFC 5280 §4.2.1.9 and §4.2.1.3 for CAs; nothing demanded of an end entity (RFC 4945
# §5.1.3.12: IKE does not require an EKU).
_CA_POLICY = (
    verification.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _key_cert_sign)
)
_EE_POLICY = verification.ExtensionPolicy.permit_all()


class TrustStore:
    """The CAs a peer's certificate must chain to (`anchors`), CA certificates on hand to
    build chains with (`intermediates`, beside those the peer sends), and the CRLs to
    check them against. At most `max_depth` CA certificates between leaf and anchor."""

    def __init__(
        self,
        anchors: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
        *,
        max_depth: int = 8,
    ) -> None:
        self.anchors = _usable(anchors)
        self.intermediates = _usable(intermediates)
        self.crls = tuple(crls)
        self.max_depth = max_depth
        self._store = verification.Store(list(self.anchors)) if self.anchors else None

    def certreq_keyids(self) -> tuple[bytes, ...]:
        """The SHA-1 of each anchor's DER SubjectPublicKeyInfo (RFC 7296 §3.7), once each.

        Only the anchors: strongSwan asks for the CAs a connection names (``cacerts``),
        and a peer answers with its chain up to the one it shares; the intermediates on
        hand only help build that chain."""
        ids = [hashlib.sha1(_spki(cert)).digest() for cert in self.anchors]
        return tuple(dict.fromkeys(ids))

    def certreq_names(self) -> tuple[bytes, ...]:
        """The DER subject DN of each anchor, once each, for IKEv1's CR (RFC 2408 §3.10):
        the same CAs as `certreq_keyids`, named as charon names them in IKEv1."""
        return tuple(dict.fromkeys(cert.subject.public_bytes() for cert in self.anchors))

    def verify(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate],
        peer_id: tuple[IdType, bytes],
        now: datetime.datetime,
    ) -> TrustedPeer:
        """The chain from `leaf` to an anchor, valid at `now`, not revoked, with keys
        strong enough, and a leaf that carries `peer_id`; `TrustError` otherwise."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.UTC)
        problem = _malformed(leaf)
        if problem:
            raise TrustError(f"malformed certificate ({problem})")
        untrusted = [cert for cert in untrusted if not _malformed(cert)]
        _check_validity(leaf, now, "")
        chain = self._build(leaf, untrusted, now)
        for ca in chain[1:]:
            _check_validity(ca, now, _ca(ca))
        _check_keys(chain)
        if any(_eddsa(cert) for cert in chain):
            _check_ca_constraints(chain)
        else:
            found = chain
            chain = self._library(leaf, untrusted, now)
            if chain != found:
                _check_keys(chain)
        self._check_revocation(chain)
        if not cert_matches_identity(leaf, *peer_id):
            raise TrustError(f"identity {describe_identity(*peer_id)} not in the certificate")
        return TrustedPeer(leaf, tuple(chain))

    def _build(
        self, leaf: x509.Certificate, untrusted: Sequence[x509.Certificate], now: datetime.datetime
    ) -> list[x509.Certificate]:
        """The shortest chain, leaf first and anchor last, each certificate's signature
        verified by the next. Breadth first, each certificate taken once, so that what a
        peer sends costs at most one signature check per pair, however it is arranged;
        among issuers, those valid at `now` first."""
        if leaf in self.anchors:
            return [leaf]
        candidates = [(c, True) for c in self.anchors]
        candidates += [(c, False) for c in dict.fromkeys([*untrusted, *self.intermediates])]
        candidates.sort(key=lambda c: not _valid_at(c[0], now))
        below: dict[x509.Certificate, x509.Certificate] = {}  # a CA taken: what it issued
        level, depth, too_deep = [leaf], 0, False  # depth: the CAs between leaf and level
        while level:
            reached = []
            for cert in level:
                for issuer, anchor in candidates:
                    if (issuer in below or issuer == leaf) and not anchor:
                        continue
                    if not _issued_by(cert, issuer):
                        continue
                    if anchor:
                        chain = [cert, issuer]
                        while chain[0] in below:
                            chain.insert(0, below[chain[0]])
                        return chain
                    if depth == self.max_depth:
                        too_deep = True
                        continue
                    below[issuer] = cert
                    reached.append(issuer)
            level, depth = reached, depth + 1
        if too_deep:
            raise TrustError(
                f"untrusted: no chain to a trusted CA within {self.max_depth} intermediate CAs"
            )
        issuer_dn = describe_identity(IdType.ID_DER_ASN1_DN, leaf.issuer.public_bytes())
        raise TrustError(f"untrusted: no chain to a trusted CA (issuer {issuer_dn})")

    def _library(
        self, leaf: x509.Certificate, untrusted: Sequence[x509.Certificate], now: datetime.datetime
    ) -> list[x509.Certificate]:
        """The chain `cryptography`'s verifier finds, under the IKE policy."""
        assert self._store is not None  # `_build` found a chain to an anchor
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(self.max_depth)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            return list(verifier.verify(leaf, [*untrusted, *self.intermediates]).chain)
        except verification.VerificationError as e:
            raise TrustError(f"untrusted: {_library_reason(e)}") from None

    def _check_revocation(self, chain: Sequence[x509.Certificate]) -> None:
        """Each certificate below the anchor against the CRLs its issuer signed (RFC 5280
        §6.3, without fetching). A CRL that claims the issuer but whose signature its key
        does not verify is no CRL of it, and is ignored."""
        for i, (cert, issuer) in enumerate(itertools.pairwise(chain)):
            for crl in self.crls:
                if crl.issuer != issuer.subject:
                    continue
                if not _crl_signed_by(crl, issuer):
                    log.debug(
                        "CRL of %s ignored: not signed by that CA's key", describe_subject(issuer)
                    )
                    continue
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is None:
                    continue
                reason = _revocation_reason(entry)
                if reason == "removeFromCRL":
                    continue
                when = _when(entry.revocation_date_utc)
                raise TrustError(f"revoked ({reason}) on {when}{_ca(cert) if i else ''}")


def chain_for(
    leaf: x509.Certificate, cacerts: Iterable[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """The CA certificates from `cacerts` between `leaf` and a self-signed root (as far
    as `cacerts` reach), leaf's issuer first, the root left out: what this end sends
    after its own certificate."""
    pool = list(cacerts)
    chain: list[x509.Certificate] = []
    current = leaf
    while len(chain) < len(pool):
        issuer = next(
            (c for c in pool if c not in chain and c != current and _issued_by(current, c)),
            None,
        )
        if issuer is None or _issued_by(issuer, issuer):
            break
        chain.append(issuer)
        current = issuer
    return tuple(chain)


# --- the pieces -------------------------------------------------------------------------


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ca(cert: x509.Certificate) -> str:
    """What a reason about a CA (not the leaf) ends with."""
    return f" (CA {describe_subject(cert)})"


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _check_validity(cert: x509.Certificate, now: datetime.datetime, which: str) -> None:
    """RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both included."""
    if now > cert.not_valid_after_utc:
        since = _when(cert.not_valid_before_utc)
        raise TrustError(
            f"expired on {_when(cert.not_valid_after_utc)} (valid from {since}){which}"
        )
    if now < cert.not_valid_before_utc:
        until = _when(cert.not_valid_after_utc)
        raise TrustError(
            f"not yet valid until {_when(cert.not_valid_before_utc)} (then to {until}){which}"
        )


def _check_keys(chain: Sequence[x509.Certificate]) -> None:
    for i, cert in enumerate(chain):
        _check_key(cert, _ca(cert) if i else "")


def _check_key(cert: x509.Certificate, which: str) -> None:
    """Keys IKE signs with (RFC 7427, RFC 8420), RSA from 2048 bits."""
    try:
        key = cert.public_key()
    except CERT_PARSE_ERRORS:
        raise TrustError(f"unsupported public key{which}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_BITS_MIN:
            raise TrustError(f"RSA key of {key.key_size} bits, below {RSA_BITS_MIN}{which}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise TrustError(f"ECDSA key on {key.curve.name}, not P-256, P-384 or P-521{which}")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise TrustError(f"{type(key).__name__} key, not RSA, ECDSA or EdDSA{which}")


def _eddsa(cert: x509.Certificate) -> bool:
    """Whether the library would refuse `cert` for EdDSA: its key or its signature."""
    if cert.signature_algorithm_oid in _EDDSA_SIGNATURES:
        return True
    try:
        key = cert.public_key()
    except CERT_PARSE_ERRORS:
        return False
    return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` names and signed `cert`: its subject is `cert`'s issuer, its
    subjectKeyIdentifier (if both say) `cert`'s authorityKeyIdentifier, its key the
    signature's."""
    try:
        if cert.issuer != issuer.subject:
            return False
    except CERT_PARSE_ERRORS:
        return False
    aki, ski = (
        _extension(cert, x509.AuthorityKeyIdentifier),
        _extension(issuer, x509.SubjectKeyIdentifier),
    )
    if aki and ski and aki.key_identifier is not None and aki.key_identifier != ski.digest:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, *CERT_PARSE_ERRORS):
        return False
    return True


def _extension(cert: x509.Certificate, kind: type[E]) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, *CERT_PARSE_ERRORS):
        return None


def _malformed(cert: x509.Certificate) -> str | None:
    """What of `cert` does not parse, or None. `cryptography` parses names, validity and
    extensions only when they are asked for, so a certificate from the wire is asked for
    all of them once, before anything relies on them."""
    try:
        cert.subject.public_bytes()
        cert.issuer.public_bytes()
        _ = cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid
        len(cert.extensions)
    except CERT_PARSE_ERRORS as e:
        return str(e)
    return None


def _usable(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The CA certificates on hand that parse whole; each other one is named in the log."""
    out = []
    for cert in certs:
        problem = _malformed(cert)
        if problem:
            log.warning("a CA certificate is left out: it does not parse (%s)", problem)
        else:
            out.append(cert)
    return tuple(out)


def _check_ca_constraints(chain: Sequence[x509.Certificate]) -> None:
    """What the library checks of a chain, for the chains it will not take (EdDSA):
    RFC 5280 §4.2.1.9 (cA, pathLenConstraint), §4.2.1.3 (keyCertSign), §4.2 (critical
    extensions). The signatures were verified when the chain was built."""
    for i, cert in enumerate(chain):
        which = _ca(cert) if i else ""
        for ext in cert.extensions:
            if ext.critical and not isinstance(ext.value, _UNDERSTOOD):
                raise TrustError(
                    f"untrusted: critical extension {ext.oid.dotted_string} not understood{which}"
                )
        if not i:
            continue
        constraints = _extension(cert, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            raise TrustError(f"untrusted: no basicConstraints CA{which}")
        if constraints.path_length is not None and i - 1 > constraints.path_length:
            raise TrustError(
                f"untrusted: {i - 1} CAs below, pathLenConstraint {constraints.path_length}{which}"
            )
        usage = _extension(cert, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            raise TrustError(f"untrusted: keyUsage without keyCertSign{which}")


def _library_reason(error: verification.VerificationError) -> str:
    """The verifier's reason without its framing ("validation failed: candidates
    exhausted: ...", "(encountered processing <Certificate...>)", the frame around what
    `_key_cert_sign` raised)."""
    text = str(error).split(" (encountered processing", 1)[0]
    for frame in ("validation failed: ", "candidates exhausted: "):
        text = text.removeprefix(frame)
    return re.sub(r"Python extension validator failed: \w+: ", "", text)


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except CERT_PARSE_ERRORS:
        return False


def _revocation_reason(entry: x509.RevokedCertificate) -> str:
    """RFC 5280 §5.3.1's reasonCode by its ASN.1 name; unspecified when absent."""
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, *CERT_PARSE_ERRORS):
        return "unspecified"
    return reason.value
