"""Certificates for the connections: the names a configuration writes resolved against
the credentials directory, when the daemon starts and on each SIGHUP.

A connection's certificate sides (`larval.daemon.config.CertAuth`) name files:
``certs`` those of ``x509/``, ``cacerts`` those of ``x509ca/`` (either as written there,
or as an absolute path to one of them). They become `IkeConfig.local_auth` (the
certificate with its key, and the CA certificates between it and its root, sent after
it) and `IkeConfig.remote_auth` (a `larval.trust.TrustStore` of the CAs to trust, the
other CA certificates as intermediates, and every CRL loaded). A local side without
``id`` takes its certificate's subject DN, as strongSwan does.

EAP-TLS's sides become the `EapTlsAuth` of the connection's EAP side: a client's the
certificate of its ``certs`` that carries its EAP identity, and the trust of its
``remote`` public-key side with the gateway's identity; a gateway's its own IKE
certificate, and the CAs its ``remote`` side names (or every one loaded).

Every problem is one line naming the configuration file and the key, and all of them
are raised together as one `AuthConfigError`, as `larval.credentials` does for files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography import x509

from larval.credentials import (
    CA_DIR,
    END_ENTITY_DIR,
    CertificateWithKey,
    Credentials,
    load_credentials,
)
from larval.daemon.config import AuthSide, CertAuth, ConfigError, DaemonConfig
from larval.ike.auth_config import EapTlsAuth, LocalAuth, RemoteAuth, parse_auth
from larval.ike.config import IkeConfig
from larval.ike.identity import (
    IdType,
    cert_matches_identity,
    describe_identity,
    describe_subject,
    identity,
)
from larval.trust import TrustStore, chain_for

__all__ = ["AuthConfigError", "load_and_resolve", "resolve"]


class AuthConfigError(ConfigError):
    """The connections' certificates cannot be resolved; `problems` holds one line each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        lines = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"{source}: {count} with the certificates of its connections{lines}")
        self.problems = tuple(problems)


def load_and_resolve(config: DaemonConfig, source: str) -> tuple[DaemonConfig, Credentials]:
    """Load the credentials directory `config` names (if any) and resolve its connections;
    raises `larval.credentials.CredentialsError` or `AuthConfigError`, every line in it."""
    credentials = (
        load_credentials(config.credentials, config.key_passphrases)
        if config.credentials is not None
        else None
    )
    return resolve(config, credentials, source), credentials or Credentials()


def resolve(config: DaemonConfig, credentials: Credentials | None, source: str) -> DaemonConfig:
    """`config` with the certificate sides of its connections filled in from
    `credentials` (None: no credentials directory configured)."""
    problems: list[str] = []
    connections = []
    for conn in config.connections:
        cert_auth = config.cert_auth.get(conn.ike.name)
        if cert_auth is not None:
            resolver = _Resolver(source, credentials, config.credentials, problems)
            conn = dataclasses.replace(conn, ike=resolver.connection(conn.ike, cert_auth))
        connections.append(conn)
    if problems:
        raise AuthConfigError(source, problems)
    return dataclasses.replace(config, connections=connections)


class _Resolver:
    """One connection's certificate sides; what cannot be resolved goes to `problems`."""

    def __init__(
        self, source: str, credentials: Credentials | None, directory: str | None,
        problems: list[str],
    ) -> None:  # fmt: skip
        self.source = source
        self.credentials = credentials or Credentials()
        self.directory = directory
        self.problems = problems

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.source}: {key}: {text}")

    def connection(self, ike: IkeConfig, cert_auth: CertAuth) -> IkeConfig:
        if self.directory is None:
            for side in (cert_auth.local, cert_auth.remote):
                if side is not None:
                    self.problem(f"{side.key}.auth", "a certificate needs [daemon] "
                                 "credentials = DIR, and none is configured")  # fmt: skip
            return ike
        if cert_auth.local is not None and cert_auth.local.method == "pubkey":
            local = self.local(ike, cert_auth.local, cert_auth)
            if local is not None:
                ike = dataclasses.replace(ike, local_auth=local[0], local_id=local[1])
        if cert_auth.remote is not None and cert_auth.remote.method == "pubkey":
            remote = self.remote(cert_auth.remote, cert_auth)
            if remote is not None:
                ike = dataclasses.replace(ike, remote_auth=remote)
        return self.eap_tls(ike, cert_auth)

    def eap_tls(self, ike: IkeConfig, cert_auth: CertAuth) -> IkeConfig:
        """The EAP side's `EapTlsAuth`, if its side names EAP-TLS's certificates."""
        local, remote = cert_auth.local, cert_auth.remote
        if ike.local_eap is not None and ike.remote_eap is not None:
            return self.eap_only(ike, cert_auth)
        if local is not None and local.method != "pubkey" and ike.local_eap is not None:
            cert = self.eap_tls_cert(local, ike.local_eap.eap_id or "")
            if cert is None or ike.remote_auth is None:
                return ike  # the problem is named already
            intermediates = chain_for(cert.cert, self.credentials.cacerts)
            tls = _tls_client(cert, intermediates, ike.remote_auth, ike.remote_id)
            return dataclasses.replace(ike, local_eap=dataclasses.replace(ike.local_eap, tls=tls))
        if remote is not None and remote.method != "pubkey" and ike.remote_eap is not None:
            trust = self.remote(remote, cert_auth)
            if trust is None or ike.local_auth is None:
                return ike
            tls = _tls_server(ike.local_auth.cert, ike.local_auth.intermediates, trust)
            return dataclasses.replace(ike, remote_eap=dataclasses.replace(ike.remote_eap, tls=tls))
        return ike

    def eap_only(self, ike: IkeConfig, cert_auth: CertAuth) -> IkeConfig:
        """EAP-only authentication (RFC 5998) by EAP-TLS: this end's ``certs`` (the one
        carrying its ``id``) is its TLS certificate both as client and as gateway, and the
        peer's must chain to the ``remote`` side's CAs and, as a gateway's, carry the
        configured remote ``id``. The EAP identity a client gives is, by default, its
        IKE identity (its certificate's subject when ``id`` is not written)."""
        local, remote = cert_auth.local, cert_auth.remote
        assert local is not None and remote is not None
        assert ike.local_eap is not None and ike.remote_eap is not None
        own = self.local(ike, local, cert_auth)
        trust = self.remote(remote, cert_auth)
        if own is None or trust is None:
            return ike  # the problem is named already
        auth, local_id = own
        client = _tls_client(auth.cert, auth.intermediates, trust, ike.remote_id)
        server = _tls_server(auth.cert, auth.intermediates, trust)
        eap_id = ike.local_eap.eap_id or describe_identity(*local_id)
        return dataclasses.replace(
            ike,
            local_id=local_id,
            local_eap=dataclasses.replace(ike.local_eap, eap_id=eap_id, tls=client),
            remote_eap=dataclasses.replace(ike.remote_eap, tls=server),
        )

    def eap_tls_cert(self, side: AuthSide, eap_id: str) -> CertificateWithKey | None:
        """A client's EAP-TLS certificate: the first of its ``certs`` that carries its
        EAP identity, which the gateway checks it against."""
        found = self.named_certs(side)
        if found is None:
            return None
        try:
            wanted_id = identity(eap_id)
        except ValueError as e:
            self.problem(f"{side.key}.eap_id", f"EAP-TLS: {e}")
            return None
        return self.carrying(found, wanted_id, f"{side.key}.certs", f"EAP identity {eap_id}",
                             "the gateway would refuse it")  # fmt: skip

    def local(
        self, ike: IkeConfig, side: AuthSide, cert_auth: CertAuth
    ) -> tuple[LocalAuth, tuple[IdType, bytes]] | None:
        """This end's certificate: the first named that carries its configured ``id``."""
        loaded = self.credentials.certs
        if not side.files:
            listing = _listing(END_ENTITY_DIR, [c.path for c in loaded])
            self.problem(f"{side.key}.certs", f"missing; name this end's certificate ({listing})")
            return None
        found = self.named_certs(side)
        if found is None:
            return None
        if side.id is None:
            chosen: CertificateWithKey | None = found[0]
            local_id = (IdType.ID_DER_ASN1_DN, found[0].cert.subject.public_bytes())
        else:
            local_id = ike.local_id
            chosen = self.carrying(found, local_id, f"{side.key}.id", describe_identity(*local_id),
                                   "a peer would refuse it")  # fmt: skip
        if chosen is None:
            return None
        auth = LocalAuth(
            chosen,
            intermediates=chain_for(chosen.cert, self.credentials.cacerts),
            schemes=() if side.schemes == _PUBKEY else side.schemes,
            send_cert=cert_auth.send_cert,
        )
        return auth, local_id

    def named_certs(self, side: AuthSide) -> list[CertificateWithKey] | None:
        """The loaded certificates a side's ``certs`` names, in order; None (every name
        not loaded named as a problem) if one is not."""
        loaded = self.credentials.certs
        found: list[CertificateWithKey] = []
        complete = True
        for i, name in enumerate(side.files):
            wanted = self.configured(END_ENTITY_DIR, name)
            matches = [c for c in loaded if self.loaded(c.path) == wanted]
            if not matches:
                self.problem(f"{side.key}.certs[{i}]", f"{name!r} is not a loaded certificate "
                             f"({_listing(END_ENTITY_DIR, [c.path for c in loaded])})")  # fmt: skip
                complete = False
            found.extend(matches)
        return found if complete else None

    def carrying(
        self, found: Sequence[CertificateWithKey], wanted: tuple[IdType, bytes], key: str,
        what: str, refusal: str,
    ) -> CertificateWithKey | None:  # fmt: skip
        """The first of `found` that carries the identity `wanted` (`what`); else a problem
        at `key` listing their subjects, and who would refuse it (`refusal`)."""
        for cert in found:
            if cert_matches_identity(cert.cert, *wanted):
                return cert
        subjects = "; ".join(describe_subject(c.cert) for c in found)
        self.problem(key, f"{what} is in no certificate of certs ({subjects}); {refusal}")
        return None

    def remote(self, side: AuthSide, cert_auth: CertAuth) -> RemoteAuth | None:
        """What the peer must prove: a chain to the CAs ``cacerts`` names, else to any
        CA certificate loaded (strongSwan)."""
        cacerts, paths = self.credentials.cacerts, self.credentials.cacert_paths
        if not cacerts:
            self.problem(f"{side.key}.auth", f"no CA certificate is loaded ({CA_DIR}/ is empty): "
                         "no peer certificate could be trusted")  # fmt: skip
            return None
        if side.files:
            chosen: list[int] = []
            complete = True
            for i, name in enumerate(side.files):
                wanted = self.configured(CA_DIR, name)
                matches = [n for n, path in enumerate(paths) if self.loaded(path) == wanted]
                if not matches:
                    self.problem(f"{side.key}.cacerts[{i}]", f"{name!r} is not a loaded CA "
                                 f"certificate ({_listing(CA_DIR, paths)})")  # fmt: skip
                    complete = False
                chosen.extend(n for n in matches if n not in chosen)
            if not complete:
                return None
            anchors = tuple(cacerts[n] for n in chosen)
            others = tuple(cert for n, cert in enumerate(cacerts) if n not in chosen)
        else:
            anchors, others = cacerts, ()
        trust = TrustStore(anchors, others, self.credentials.crls)
        return RemoteAuth(trust, side.schemes, cert_auth.send_certreq)

    def configured(self, subdir: str, name: str) -> str:
        """The file a name in the configuration means: relative to `subdir` of the
        credentials directory, or absolute."""
        assert self.directory is not None
        return os.path.abspath(os.path.join(self.directory, subdir, name))

    def loaded(self, path: str) -> str:
        """The file a loaded credential came from (``x509/NAME``)."""
        assert self.directory is not None
        return os.path.abspath(os.path.join(self.directory, path))


def _tls_client(
    cert: CertificateWithKey, intermediates: tuple[x509.Certificate, ...], trust: RemoteAuth,
    server_id: tuple[IdType, bytes] | None,
) -> EapTlsAuth:  # fmt: skip
    """A TLS client's side: its certificate, and the gateway's that must chain to `trust`
    and carry `server_id`."""
    return EapTlsAuth(cert, intermediates, trust.trust, server_id=server_id)


def _tls_server(
    cert: CertificateWithKey, intermediates: tuple[x509.Certificate, ...], trust: RemoteAuth
) -> EapTlsAuth:
    """A TLS server's side: its certificate, and the CAs of `trust` it names in its
    CertificateRequest (RFC 5246 §7.4.4) and checks clients' certificates against."""
    return EapTlsAuth(cert, intermediates, trust.trust, getattr(trust.trust, "anchors", ()))


def _listing(subdir: str, paths: Sequence[str]) -> str:
    return "loaded: " + ", ".join(sorted(set(paths))) if paths else f"{subdir}/ is empty"


#: `parse_auth("pubkey")`: any scheme; as this end's, the key's own (`LocalAuth.schemes`).
_PUBKEY = parse_auth("pubkey")[1]
