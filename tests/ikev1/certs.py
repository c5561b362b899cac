"""Keys and certificates for the Phase 1 signature tests, made with `larval.pki`, and the
connections that use them: each end an FQDN in its certificate's dNSName."""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from larval import pki
from larval.credentials import CertificateWithKey, PrivateKey, PrivateKeyFile
from larval.crypto.ike_proposals import parse_ike_proposal
from larval.ike.auth_config import (
    LocalAuth,
    PeerTrust,
    RemoteAuth,
    SendCert,
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
