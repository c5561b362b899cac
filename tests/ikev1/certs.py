"""Keys and certificates for the Phase 1 signature tests, made with `larval.pki`, and the
connections that use them: each end an FQDN in its certificate's dNSName."""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from larval import pki
from larval.credentials import CertificateWithKey, PrivateKey, PrivateKeyFile
from larval.crypto.ike_proposals import parse_ike_proposal
from larval.ike.auth_config import (
    LocalAuth,
    PeerTrust,
    RemoteAuth,
    SendCert,
    TrustedPeer,
    TrustError,
    parse_auth,
)
from larval.ike.config import IkeConfig
from larval.ike.identity import IdType

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
KINDS = ("rsa", "p256", "p384", "p521")


@functools.cache
def key(kind: str, number: int = 0) -> PrivateKey:
    """A key of `kind`, the same one for the same `number` in one run."""
    if kind == "rsa":
        return pki.generate_key("rsa", 2048)
    return pki.generate_key("ecdsa", int(kind[1:]))


def name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "larval"),
         x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )  # fmt: skip


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: PrivateKey

    def issue(
        self,
        cn: str,
        subject_key: PrivateKey,
        sans: Sequence[x509.GeneralName] = (),
        *,
        ca: bool = False,
        now: datetime.datetime = NOW,
        days: int = 30,
    ) -> x509.Certificate:
        request = pki.CertRequest(name(cn), sans, days, ca)
        return pki.make_certificate(request, subject_key.public_key(), self.key, self.cert, now)

    def crl(self, revoked: Sequence[x509.Certificate]) -> x509.CertificateRevocationList:
        return pki.make_crl(self.cert, self.key, revoked, "key-compromise", now=NOW)


@functools.cache
def root(cn: str = "larval root", kind: str = "p256") -> Ca:
    ca_key = key(kind, 100 + len(cn))
    request = pki.CertRequest(name(cn), (), 365, True)
    return Ca(pki.make_certificate(request, ca_key.public_key(), ca_key, None, NOW), ca_key)


class DirectTrust:
    """A `PeerTrust` for these tests: a leaf issued by a trusted CA, or by an intermediate
    among the untrusted that one issued; validity, CRLs, and the FQDN, address or DN
    claimed in the certificate."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> None:
        self.anchors, self.crls = tuple(anchors), tuple(crls)

    def certreq_keyids(self) -> tuple[bytes, ...]:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        return tuple(hashlib.sha1(a.public_key().public_bytes(der, spki)).digest()
                     for a in self.anchors)  # fmt: skip

    def certreq_names(self) -> tuple[bytes, ...]:
        return tuple(a.subject.public_bytes() for a in self.anchors)

    def verify(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate],
        peer_id: tuple[IdType, bytes],
        now: datetime.datetime,
    ) -> TrustedPeer:
        chain = [leaf]
        while not any(pki.verify_signed_by(chain[-1], a) for a in self.anchors):
            issuer = next((c for c in untrusted if pki.verify_signed_by(chain[-1], c)), None)
            if issuer is None or len(chain) > 4:
                raise TrustError("untrusted: no chain to a trusted CA")
            chain.append(issuer)
        anchor = next(a for a in self.anchors if pki.verify_signed_by(chain[-1], a))
        for cert in chain:
            if now < cert.not_valid_before_utc:
                raise TrustError(f"not yet valid until {cert.not_valid_before_utc:%Y-%m-%d}")
            if now > cert.not_valid_after_utc:
                raise TrustError(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
            for crl in self.crls:
                if crl.issuer == cert.issuer and crl.get_revoked_certificate_by_serial_number(
                    cert.serial_number
                ):
                    raise TrustError("revoked (keyCompromise)")
        if not carries(leaf, *peer_id):
            raise TrustError("the certificate does not carry the identity claimed")
        return TrustedPeer(leaf, (*chain, anchor))


def carries(cert: x509.Certificate, id_type: IdType, data: bytes) -> bool:
    if id_type == IdType.ID_DER_ASN1_DN:
        return cert.subject.public_bytes() == data
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if id_type == IdType.ID_FQDN:
        return data.decode(errors="replace") in sans.get_values_for_type(x509.DNSName)
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        return ipaddress.ip_address(data) in sans.get_values_for_type(x509.IPAddress)
    return False


@dataclass(frozen=True)
class End:
    """One end: its address, FQDN, certificate and key, the intermediates it sends."""

    addr: ipaddress.IPv4Address
    fqdn: str
    cert: x509.Certificate
    key: PrivateKey
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def id(self) -> tuple[IdType, bytes]:
        return IdType.ID_FQDN, self.fqdn.encode()


def end(
    addr: str, fqdn: str, kind: str, ca: Ca | None = None, number: int = 0, **issue: object
) -> End:
    subject_key = key(kind, number)
    cert = (ca or root()).issue(fqdn, subject_key, [x509.DNSName(fqdn)], **issue)  # type: ignore[arg-type]
    return End(ipaddress.IPv4Address(addr), fqdn, cert, subject_key)


def signing_config(
    me: End,
    peer: End,
    trust: PeerTrust,
    *,
    send_cert: SendCert = "ifasked",
    send_certreq: bool = True,
    remote_auth: str = "pubkey",
    remote_id: tuple[IdType, bytes] | None = None,
    proposals: tuple[str, ...] = ("aes128-sha256-ecp256",),
) -> IkeConfig:
    """A connection from `me` to `peer`, both proving themselves with certificates."""
    cert = CertificateWithKey("x509/me.pem", me.cert, PrivateKeyFile("private/me.pem", me.key))
    return IkeConfig(
        name="s2s",
        local_addr=me.addr,
        remote_addr=peer.addr,
        local_id=me.id,
        remote_id=remote_id or peer.id,
        psk=b"",
        proposals=tuple(parse_ike_proposal(p) for p in proposals),
        local_auth=LocalAuth(cert, me.intermediates, send_cert=send_cert),
        remote_auth=RemoteAuth(trust, parse_auth(remote_auth)[1], send_certreq),
    )
