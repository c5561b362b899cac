"""Profiles for native remote-access clients: what a gateway's connection tells a client
(the server's address and identity, its CA, proposals it accepts), written as an Apple
``.mobileconfig``, a strongSwan-app ``.sswan`` or a Windows PowerShell script.

`remote_access` reads the facts from a daemon configuration whose certificates are
resolved (`larval.daemon.auth`) and refuses, naming the connection and the key, what no
native client could use: a connection without pools, clients that prove themselves with
a PSK, a gateway without a certificate, a user the connection does not take. The writers
are pure functions of those facts. No profile ever holds a password: the user types it
when the client first connects.

A certificate client (``remote.auth = "pubkey"`` or ``"eap-tls"``) gets its certificate
and key in the profile as a PKCS#12 (`UserCertificate`), encrypted with a passphrase that
is not in the profile either: the user types it when importing. The certificate must
chain to the CAs the connection trusts for its clients and carry the user's identity, and
the key must be the certificate's, or no profile is written.

What each client needs (strongSwan's documentation of the native clients):

* Apple: the server certificate's SAN is the remote identifier the profile names; one
  IKE and one CHILD_SA proposal, each from Apple's own algorithm names; password EAP is
  EAP-MSCHAPv2; the CA goes in a ``com.apple.security.root`` payload, and naming its
  common name as the server certificate's issuer makes the client send a CERTREQ.
  Apple offers PFS with the CHILD_SA's group when it rekeys, so that group is the ESP
  proposal's, or the IKE one's where the ESP proposal names none.
* strongSwan app: proposals in strongSwan's words, the CA as base64 DER.
* Windows: ``Add-VpnConnection`` then ``Set-VpnConnectionIPsecConfiguration`` with the
  constants Windows knows (its defaults, 3DES/SHA-1/MODP-1024, are nothing larval
  accepts); its IKE identity is its address and its EAP identity the name typed, so
  the gateway's ``remote.id`` and ``eap_id`` should take any (``%any``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import json
import plistlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from larval.credentials import Credentials, PrivateKey, describe_key, public_key_der
from larval.crypto.ike_proposals import format_esp_proposal, format_ike_proposal
from larval.crypto.ike_transforms import DhId, EncrId, IntegId, PrfId, Transform, TransformType
from larval.daemon.config import DaemonConfig
from larval.errors import LarvalError
from larval.ike.auth_config import IdMatch, PeerTrust, TrustError
from larval.ike.identity import (
    IdentityMatch,
    IdType,
    cert_matches_identity,
    describe_identity,
    describe_subject,
    identity,
)
from larval.keymgr.manager import Connection
from larval.trust import chain_for

__all__ = [
    "CLIENTS",
    "ProfileError",
    "RemoteAccess",
    "UserCertificate",
    "apple_profile",
    "remote_access",
    "sswan_profile",
    "windows_script",
    "write_profile",
]

Client = Literal["apple", "android", "windows"]
CLIENTS: tuple[Client, ...] = ("apple", "android", "windows")
#: The file name's suffix for each client.
SUFFIX: dict[Client, str] = {"apple": ".mobileconfig", "android": ".sswan", "windows": ".ps1"}

Suite = tuple[Transform, ...]
#: EAP methods a password client runs, as ``remote.auth`` names them.
_PASSWORD_EAP = ("eap-mschapv2", "eap-md5", "eap")


class ProfileError(LarvalError):
    """No profile can be written; the message names the connection, key or client."""


@dataclass(frozen=True)
class UserCertificate:
    """A certificate client's certificate and private key, to travel in its profile as a
    PKCS#12; where each came from (``--cert``/``--key`` files, or ``x509/NAME`` of the
    credentials) for the messages. Its `repr` never shows the key."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False, compare=False)
    cert_name: str = ""
    key_name: str = ""
    #: CA certificates that came with the leaf (a PEM file's further certificates); after
    #: `remote_access`, those between the leaf and its root, nearest first.
    chain: tuple[x509.Certificate, ...] = ()

    def __repr__(self) -> str:
        return (f"UserCertificate({self.cert_name!r}, {describe_subject(self.cert)!r}, "
                f"{describe_key(self.key)})")  # fmt: skip

    def pkcs12(self, name: str, passphrase: bytes) -> bytes:
        """The key, certificate and its CAs as a PKCS#12 encrypted with `passphrase`."""
        # PBES1 with 3DES and an HMAC-SHA1 MAC: the one PKCS#12 encryption every native
        # client imports; the keychains of older Apple and Android systems and Windows's
        # certificate import before Windows 10 refuse PBES2 with AES.
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50000)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
            .build(passphrase)
        )
        return pkcs12.serialize_key_and_certificates(
            name.encode(), self.key, self.cert, list(self.chain) or None, encryption
        )


@dataclass(frozen=True)
class RemoteAccess:
    """What a native client needs to know of one gateway connection, for one user."""

    connection: str
    server: str  # the address (or name) the client dials
    server_id: str  # the gateway's IKE identity, as the client must expect it
    server_cert: x509.Certificate
    ca: x509.Certificate
    user: str
    #: How the client proves itself: a ``remote.auth`` word (eap-mschapv2, eap-md5, eap,
    #: pubkey, or another EAP method's word).
    client_auth: str
    ike_proposals: tuple[Suite, ...]
    esp_proposals: tuple[Suite, ...]
    ike_rekey_s: float
    child_rekey_s: float
    #: The networks the gateway offers through the tunnel (its first child's local_ts).
    subnets: tuple[str, ...] = ()
    #: Whether the gateway takes any IKE identity and asks the EAP identity (Windows).
    any_identity: bool = True
    #: A certificate client's certificate and key, checked against the connection.
    user_cert: UserCertificate | None = None
    #: The IKE identities the gateway takes (its ``remote.id``; None: any).
    remote_id_match: IdMatch | None = field(default=None, compare=False, repr=False)
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def eap(self) -> bool:
        return self.client_auth != "pubkey"

    @property
    def certificate_client(self) -> bool:
        """Whether the client proves itself with a certificate, in IKE or by EAP-TLS."""
        return self.client_auth in ("pubkey", "eap-tls")

    @property
    def display_name(self) -> str:
        return f"{self.server_id} ({self.connection})"

    def stable_uuid(self, part: str) -> str:
        """The same UUID for the same profile each time, so that installing a new one
        replaces the old one rather than adding a second."""
        name = f"larval:{self.server_id}:{self.connection}:{self.user}:{part}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name)).upper()


# -- the facts ---------------------------------------------------------------------------


def remote_access(
    config: DaemonConfig, credentials: Credentials, name: str, user: str,
    server: str | None = None, source: str = "", user_cert: UserCertificate | None = None,
    now: datetime.datetime | None = None,
) -> RemoteAccess:  # fmt: skip
    """The facts of connection `name` for `user`; `config` resolved with `credentials`.

    A certificate client's `user_cert` is checked against the connection at `now`; without
    one, the credentials' certificate (with its key) that carries the user's identity and
    chains to the connection's CAs is the user's, if there is one."""
    where = f"{source}: " if source else ""
    conn = next((c for c in config.connections if c.ike.name == name), None)
    if conn is None:
        known = ", ".join(c.ike.name for c in config.connections) or "none"
        raise ProfileError(f"{where}no connection {name!r} (connections: {known})")
    key = f"{where}connections.{name}"
    if not conn.pools:
        raise ProfileError(f"{key} is not remote access: it names no pools "
                           f"(connections.{name}.pools), so no client gets an address")  # fmt: skip
    ike = conn.ike
    cert_auth = config.cert_auth.get(name)
    if ike.remote_eap is not None:
        client_auth: str = ike.remote_eap.method
    elif cert_auth is not None and cert_auth.remote is not None:
        client_auth = "pubkey"
    else:
        raise ProfileError(f"{key} is not remote access: its clients prove themselves with a "
                           f"PSK (connections.{name}.remote.auth); a profile is for EAP or "
                           "certificate clients")  # fmt: skip
    if ike.local_auth is None and ike.local_eap is not None:
        raise ProfileError(f"{key}.local.auth: the gateway proves itself by EAP only (RFC "
                           "5998); native clients check a certificate in IKE "
                           '(auth = "pubkey")')  # fmt: skip
    if ike.local_auth is None:
        raise ProfileError(f"{key}.local.auth: the gateway proves itself with a PSK; "
                           'native clients check a certificate (auth = "pubkey")')  # fmt: skip
    server_cert = ike.local_auth.cert.cert
    ca = _root(server_cert, credentials.cacerts)
    if ca is None:
        raise ProfileError(f"{key}.local.certs: no CA certificate in the credentials' x509ca/ "
                           "issued the gateway's certificate; the client needs it to trust "
                           "the gateway")  # fmt: skip
    if (user_cert is not None and client_auth == "eap" and ike.remote_eap is not None
            and ike.remote_eap.tls is not None):  # fmt: skip
        client_auth = "eap-tls"  # "eap" lets the client pick; with a certificate, EAP-TLS
    _check_user(key, conn, user, client_auth)
    if not conn.children:
        raise ProfileError(f"{key}.children: none; the client needs a CHILD_SA's proposals")
    if client_auth in ("pubkey", "eap-tls"):
        when = now or datetime.datetime.now(datetime.UTC)
        trust = _client_trust(key, conn, client_auth)
        if user_cert is None:
            user_cert = _find_user_cert(credentials, server_cert, trust, user, when)
        else:
            conn_key = f"connections.{name}"
            user_cert = _check_user_cert(conn_key, trust, credentials, user_cert, user, when)
    elif user_cert is not None:
        raise ProfileError(f"{key}.remote.auth: {user_cert.cert_name}: the connection's "
                           f"clients prove themselves with {client_auth} (a password), not a "
                           'certificate; --cert is for a "pubkey" or "eap-tls" '
                           "connection")  # fmt: skip
    match = ike.remote_id_match
    any_identity = match is None or (isinstance(match, IdentityMatch) and match.id_type is None)
    eap_any = ike.remote_eap is not None and ike.remote_eap.eap_id == "%any"
    return RemoteAccess(
        connection=name,
        server=server or str(ike.local_addr),
        server_id=describe_identity(*ike.local_id),
        server_cert=server_cert,
        ca=ca,
        user=user,
        client_auth=client_auth,
        ike_proposals=tuple(ike.proposals),
        esp_proposals=tuple(conn.children[0].proposals),
        ike_rekey_s=ike.rekey_time,
        child_rekey_s=conn.children[0].rekey_time,
        subnets=tuple(str(net) for net in conn.children[0].local_ts),
        any_identity=any_identity and (ike.remote_eap is None or eap_any),
        user_cert=user_cert,
        remote_id_match=match,
    )


def _client_trust(key: str, conn: Connection, client_auth: str) -> PeerTrust:
    """The trust a certificate client's certificate must chain to."""
    ike = conn.ike
    if client_auth == "pubkey" and ike.remote_auth is not None:
        return ike.remote_auth.trust
    if ike.remote_eap is not None and ike.remote_eap.tls is not None:
        trust = ike.remote_eap.tls.trust
        if trust is not None:
            return trust
    raise ProfileError(f"{key}.remote.cacerts: the connection trusts no CA for its clients' "
                       "certificates")  # fmt: skip


def _check_user_cert(
    key: str, trust: PeerTrust, credentials: Credentials, given: UserCertificate, user: str,
    now: datetime.datetime,
) -> UserCertificate:  # fmt: skip
    """`given` if its key is its certificate's, it carries `user`'s identity and chains to
    `trust`; with its chain up to the root (the root left out). `key`: the connection's."""
    cert_name, key_name = given.cert_name, given.key_name
    if public_key_der(given.key) != public_key_der(given.cert):
        raise ProfileError(f"{key_name}: not the private key of {cert_name} "
                           f"({describe_subject(given.cert)}); give the key whose public key "
                           "the certificate holds")  # fmt: skip
    user_id = identity(user)  # `_check_user` took it
    if not cert_matches_identity(given.cert, *user_id):
        raise ProfileError(f"{cert_name}: the certificate ({describe_subject(given.cert)}) does "
                           f"not carry the user's identity {user!r} in its subject or its "
                           "subjectAltNames; the gateway would refuse it")  # fmt: skip
    try:
        verified = trust.verify(given.cert, [*given.chain, *credentials.cacerts], user_id, now)
    except TrustError as e:
        raise ProfileError(f"{cert_name}: not a certificate {key}'s clients may use: it must "
                           f"be signed by a CA of {key}.remote.cacerts (else of the "
                           f"credentials' x509ca/): {e}") from None  # fmt: skip
    chain = tuple(ca for ca in verified.chain[1:] if ca.issuer != ca.subject)
    return dataclasses.replace(given, chain=chain)


def _find_user_cert(
    credentials: Credentials, server_cert: x509.Certificate, trust: PeerTrust, user: str,
    now: datetime.datetime,
) -> UserCertificate | None:  # fmt: skip
    """The credentials' certificate with its key that is `user`'s: it carries the user's
    identity and chains to `trust` (the gateway's own is never one)."""
    try:
        user_id = identity(user)
    except ValueError:
        return None
    for loaded in credentials.certs:
        if loaded.cert == server_cert or not cert_matches_identity(loaded.cert, *user_id):
            continue
        try:
            verified = trust.verify(loaded.cert, credentials.cacerts, user_id, now)
        except TrustError:
            continue
        chain = tuple(ca for ca in verified.chain[1:] if ca.issuer != ca.subject)
        return UserCertificate(loaded.cert, loaded.key.key, loaded.path, loaded.key.path, chain)
    return None


def _root(leaf: x509.Certificate, cacerts: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The self-signed CA at the top of `leaf`'s chain among `cacerts`."""
    chain = chain_for(leaf, cacerts)
    top = chain[-1] if chain else leaf
    for ca in cacerts:
        if ca.subject != top.issuer or ca.issuer != ca.subject:
            continue
        try:
            top.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _check_user(key: str, conn: Connection, user: str, client_auth: str) -> None:
    """Refuse a user this connection does not take: by password EAP, one with a secret
    (and the one ``eap_id`` names, if it names one); by certificate (EAP-TLS too), an
    identity ``remote.id`` takes."""
    ike = conn.ike
    if not user:
        raise ProfileError(f"{key}: --user is empty; name the user, such as carol")
    if ike.remote_eap is not None:
        eap_id = ike.remote_eap.eap_id
        if eap_id not in (None, "%any") and user != eap_id:
            raise ProfileError(f"{key}.remote.eap_id: only {eap_id!r} may connect, "
                               f"not {user!r}")  # fmt: skip
        # By EAP-TLS no password: the certificate carries the identity (checked with it).
        if client_auth != "eap-tls" and user not in ike.remote_eap.passwords:
            raise ProfileError(f"{key}: unknown user {user!r}: no [secrets.eap-NAME] has "
                               f"id = {user!r}")  # fmt: skip
        if eap_id is not None and client_auth != "eap-tls":
            return  # the IKE identity is anything the remote.id takes
    try:
        id_type, data = identity(user)
    except ValueError as e:
        raise ProfileError(f"{key}: user {user!r} is no IKE identity: {e}") from None
    match = ike.remote_id_match
    if match is not None and not match(id_type, data):
        raise ProfileError(f"{key}.remote.id: unknown user {user!r}: the connection takes "
                           f"{match} only")  # fmt: skip


# -- proposals in each client's words ----------------------------------------------------


def _of(suite: Suite, ttype: TransformType) -> list[Transform]:
    return [t for t in suite if t.type == ttype]


def _pick(
    suites: Sequence[Suite], encr: Callable[[Transform], str | None],
    integ: Callable[[int], str | None], dh: Callable[[int], str | None], ike: bool,
) -> tuple[Suite, str, str | None, str | None] | None:  # fmt: skip
    """The first combination of one suite that a client names: (the suite narrowed to
    it, the cipher's name, the integrity's (for an AEAD in IKE the PRF's; None in ESP),
    the group's (None: no group in an ESP suite)). The gateway accepts it because it is
    one of its own proposals, one algorithm of each type."""
    for suite in suites:
        for e in _of(suite, TransformType.ENCR):
            cipher = encr(e)
            if cipher is None:
                continue
            aead = e.id in (EncrId.AES_GCM_16, EncrId.AES_GCM_12, EncrId.AES_GCM_8,
                            EncrId.CHACHA20_POLY1305)  # fmt: skip
            hashes: list[tuple[Transform | None, Transform | None, str]] = []
            prfs = _of(suite, TransformType.PRF)
            if aead and ike:
                hashes = [
                    (None, p, n) for p in prfs if (n := integ(_PRF_HASH.get(p.id, 0))) is not None
                ]
            elif aead:
                hashes = [(None, None, "")]
            else:
                for i in _of(suite, TransformType.INTEG):
                    name = integ(_INTEG_HASH.get(i.id, 0))
                    # One hash for both in the clients' settings: the PRF must be the
                    # integrity algorithm's.
                    same = [p for p in prfs if _PRF_HASH.get(p.id) == _INTEG_HASH.get(i.id)]
                    if name is not None and (same or not ike):
                        hashes.append((i, same[0] if same else None, name))
            if not hashes:
                continue
            groups = [g for g in _of(suite, TransformType.DH) if g.id != DhId.NONE]
            if ike and not groups:
                continue
            chosen_dh: tuple[Transform | None, str | None] = (None, None)
            if groups:
                named = [(g, n) for g in groups if (n := dh(g.id)) is not None]
                if not named:
                    continue
                chosen_dh = named[0]
            integ_t, prf_t, hash_name = hashes[0]
            rest = [t for t in suite if t.type == TransformType.ESN][:1]
            picked = (e, prf_t, integ_t, chosen_dh[0], *rest)
            narrowed = tuple(t for t in picked if t is not None)
            return narrowed, cipher, hash_name or None, chosen_dh[1]
    return None


_PRF_HASH: dict[int, int] = {
    PrfId.HMAC_SHA2_256: 256,
    PrfId.HMAC_SHA2_384: 384,
    PrfId.HMAC_SHA2_512: 512,
}
_INTEG_HASH: dict[int, int] = {IntegId.HMAC_SHA2_256_128: 256, IntegId.HMAC_SHA2_384_192: 384,
               IntegId.HMAC_SHA2_512_256: 512}  # fmt: skip


def _refuse(ra: RemoteAccess, client: str, what: str, suites: Sequence[Suite], knows: str) -> None:
    words = ", ".join(
        (format_ike_proposal if what == "proposals" else format_esp_proposal)(s) for s in suites
    )
    key = f"connections.{ra.connection}.{what}" if what == "proposals" else \
        f"connections.{ra.connection}.children.*.esp_proposals"  # fmt: skip
    raise ProfileError(f"{key}: {client} can use none of {words}; it knows {knows}")


# Apple's names (Configuration Profile Reference, VPN.IKEv2.*SecurityAssociationParameters).
def _apple_encr(t: Transform) -> str | None:
    if t.id == EncrId.AES_CBC and t.key_bits in (128, 256):
        return f"AES-{t.key_bits}"
    if t.id == EncrId.AES_GCM_16 and t.key_bits in (128, 256):
        return f"AES-{t.key_bits}-GCM"
    if t.id == EncrId.CHACHA20_POLY1305:
        return "ChaCha20Poly1305"
    return None


def _apple_hash(bits: int) -> str | None:
    return f"SHA2-{bits}" if bits in (256, 384, 512) else None


_APPLE_GROUPS = {DhId.MODP_2048, DhId.MODP_3072, DhId.ECP_256, DhId.ECP_384, DhId.ECP_521,
                 DhId.CURVE25519}  # fmt: skip
_APPLE_KNOWS = ("AES-128, AES-256 (CBC and GCM-16), ChaCha20Poly1305; SHA2-256/384/512; "
                "groups 14, 15, 19, 20, 21, 31")  # fmt: skip


def _apple_dh(group: int) -> str | None:
    return str(int(group)) if group in _APPLE_GROUPS else None


# Windows's names (Set-VpnConnectionIPsecConfiguration).
def _win_ike_encr(t: Transform) -> str | None:
    if t.id == EncrId.AES_CBC and t.key_bits in (128, 192, 256):
        return f"AES{t.key_bits}"
    if t.id == EncrId.AES_GCM_16 and t.key_bits in (128, 256):
        return f"GCMAES{t.key_bits}"
    return None


def _win_esp_encr(t: Transform) -> str | None:
    if t.id == EncrId.AES_CBC and t.key_bits in (128, 192, 256):
        return f"AES{t.key_bits}"
    if t.id == EncrId.AES_GCM_16 and t.key_bits in (128, 192, 256):
        return f"GCMAES{t.key_bits}"
    return None


def _win_ike_hash(bits: int) -> str | None:
    return f"SHA{bits}" if bits in (256, 384) else None


def _win_esp_hash(bits: int) -> str | None:
    return "SHA256128" if bits == 256 else None


_WIN_DH: dict[int, str] = {
    DhId.MODP_2048: "Group14",
    DhId.ECP_256: "ECP256",
    DhId.ECP_384: "ECP384",
}
_WIN_PFS: dict[int, str] = {
    DhId.MODP_2048: "PFS2048",
    DhId.ECP_256: "ECP256",
    DhId.ECP_384: "ECP384",
}
_WIN_KNOWS_IKE = "AES128/192/256, GCMAES128/256; SHA256, SHA384; Group14, ECP256, ECP384"
_WIN_KNOWS_ESP = "AES128/192/256 with SHA256128, GCMAES128/192/256; PFS2048, ECP256, ECP384"


# -- the writers -------------------------------------------------------------------------


def apple_profile(ra: RemoteAccess, passphrase: bytes | None = None) -> bytes:
    """A ``.mobileconfig``: the CA as a root payload, a certificate client's PKCS#12 as a
    ``com.apple.security.pkcs12`` one (without its passphrase: the user types it when
    installing), the VPN as ``com.apple.vpn.managed``."""
    if ra.certificate_client and ra.user_cert is None:
        raise ProfileError(f"connections.{ra.connection}: an Apple profile for a certificate "
                           "client must carry the client's key (a PKCS#12): give --cert FILE "
                           "--key FILE, or put the user's certificate in the credentials' "
                           "x509/ and its key in private/")  # fmt: skip
    if ra.client_auth == "eap-md5":
        raise ProfileError(f"connections.{ra.connection}.remote.auth: Apple's password EAP is "
                           'EAP-MSCHAPv2; the gateway asks "eap-md5" (set "eap-mschapv2" or '
                           '"eap")')  # fmt: skip
    ike = _pick(ra.ike_proposals, _apple_encr, _apple_hash, _apple_dh, ike=True)
    if ike is None:
        _refuse(ra, "Apple", "proposals", ra.ike_proposals, _APPLE_KNOWS)
    esp = _pick(ra.esp_proposals, _apple_encr, _apple_hash, _apple_dh, ike=False)
    if esp is None:
        _refuse(ra, "Apple", "esp_proposals", ra.esp_proposals, _APPLE_KNOWS)
    assert ike is not None and esp is not None
    ike_params = {"EncryptionAlgorithm": ike[1], "IntegrityAlgorithm": ike[2],
                  "DiffieHellmanGroup": int(ike[3] or 0),
                  "LifeTimeInMinutes": _minutes(ra.ike_rekey_s, 1440)}  # fmt: skip
    child_params: dict[str, Any] = {
        "EncryptionAlgorithm": esp[1],
        "DiffieHellmanGroup": int(esp[3] or ike[3] or 0),
        "LifeTimeInMinutes": _minutes(ra.child_rekey_s, 1440),
    }
    if esp[2] is not None:
        child_params["IntegrityAlgorithm"] = esp[2]
    _all_traffic(ra, "Apple")
    ca_uuid = ra.stable_uuid("ca")
    ikev2: dict[str, Any] = {
        "RemoteAddress": ra.server,
        "RemoteIdentifier": ra.server_id,
        "LocalIdentifier": ra.user,
        **_apple_client_auth(ra),
        "ServerCertificateIssuerCommonName": _common_name(ra.ca),
        "IKESecurityAssociationParameters": ike_params,
        "ChildSecurityAssociationParameters": child_params,
        "EnablePFS": 1 if esp[3] is not None else 0,
        "DeadPeerDetectionRate": "Medium",
    }
    prefix = f"org.larval.profile.{ra.server_id}.{ra.connection}.{ra.user}"
    ca_payload = {
        "PayloadType": "com.apple.security.root",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{prefix}.ca",
        "PayloadUUID": ca_uuid,
        "PayloadDisplayName": _common_name(ra.ca),
        "PayloadCertificateFileName": "ca.cer",
        "PayloadContent": ra.ca.public_bytes(serialization.Encoding.DER),
    }
    vpn_payload = {
        "PayloadType": "com.apple.vpn.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{prefix}.vpn",
        "PayloadUUID": ra.stable_uuid("vpn"),
        "PayloadDisplayName": ra.display_name,
        "UserDefinedName": ra.display_name,
        "VPNType": "IKEv2",
        "IKEv2": ikev2,
    }
    payloads = [ca_payload, vpn_payload]
    description = "The VPN of larval's gateway; the password is asked on connecting."
    if ra.user_cert is not None:
        payloads.insert(1, {
            "PayloadType": "com.apple.security.pkcs12",
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{prefix}.identity",
            "PayloadUUID": ra.stable_uuid("identity"),
            "PayloadDisplayName": _common_name(ra.user_cert.cert),
            "PayloadCertificateFileName": f"{ra.user}.p12",
            "PayloadContent": ra.user_cert.pkcs12(ra.user, _passphrase(ra, passphrase)),
        })  # fmt: skip
        description = ("The VPN of larval's gateway; the passphrase of the certificate is "
                       "asked on installing.")  # fmt: skip
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": prefix,
        "PayloadUUID": ra.stable_uuid("profile"),
        "PayloadDisplayName": f"VPN {ra.display_name} for {ra.user}",
        "PayloadDescription": description,
        "PayloadContent": payloads,
    }
    return plistlib.dumps(profile)


def _apple_client_auth(ra: RemoteAccess) -> dict[str, Any]:
    """How the Apple client proves itself: EAP with a password, EAP-TLS or a certificate
    in IKE, the two with the PKCS#12 payload's identity."""
    if not ra.certificate_client:
        # The client by EAP only (the gateway by certificate); no AuthPassword: the user
        # types it.
        return {"AuthenticationMethod": "None", "ExtendedAuthEnabled": 1, "AuthName": ra.user}
    assert ra.user_cert is not None
    identity_uuid = ra.stable_uuid("identity")
    if ra.client_auth == "eap-tls":
        # EAP with a certificate and no AuthName: Apple runs EAP-TLS with that identity.
        return {"AuthenticationMethod": "None", "ExtendedAuthEnabled": 1,
                "PayloadCertificateUUID": identity_uuid}  # fmt: skip
    return {"AuthenticationMethod": "Certificate", "ExtendedAuthEnabled": 0,
            "PayloadCertificateUUID": identity_uuid,
            "CertificateType": _apple_certificate_type(ra.user_cert)}  # fmt: skip


def _apple_certificate_type(user_cert: UserCertificate) -> str:
    """Apple's name of the key's signature in IKE_AUTH (its default is RSA)."""
    key = user_cert.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA{key.curve.key_size}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    raise ProfileError(f"{user_cert.key_name}: the key is {describe_key(key)}; Apple clients sign "
                       "with RSA, ECDSA or Ed25519 only")  # fmt: skip


def _passphrase(ra: RemoteAccess, passphrase: bytes | None) -> bytes:
    if not passphrase:
        raise ProfileError(f"connections.{ra.connection}: a PKCS#12 needs a passphrase "
                           "(--p12-password-file)")  # fmt: skip
    return passphrase


def sswan_profile(ra: RemoteAccess, passphrase: bytes | None = None) -> bytes:
    """A strongSwan app profile (JSON); a certificate client's PKCS#12 as ``local.p12``
    (base64), whose passphrase the app asks when importing it. Without one the user picks
    a certificate installed on the device."""
    if ra.client_auth == "pubkey":
        kind, local = "ikev2-cert", {"id": ra.user}
    elif ra.client_auth in _PASSWORD_EAP:
        kind, local = "ikev2-eap", {"eap_id": ra.user}
    else:  # a certificate inside EAP (EAP-TLS)
        kind, local = "ikev2-eap-tls", {"id": ra.user}
    if ra.user_cert is not None:
        p12 = ra.user_cert.pkcs12(ra.user, _passphrase(ra, passphrase))
        local["p12"] = base64.b64encode(p12).decode()
    profile: dict[str, Any] = {
        "uuid": ra.stable_uuid("sswan").lower(),
        "name": ra.display_name,
        "type": kind,
        "remote": {
            "addr": ra.server,
            "id": ra.server_id,
            "cert": base64.b64encode(ra.ca.public_bytes(serialization.Encoding.DER)).decode(),
        },
        "local": local,
    }
    # The app asks for these networks only (its TSr), not for everything.
    if ra.subnets and not _everything(ra):
        profile["split-tunneling"] = {"subnets": list(ra.subnets)}
    # The gateway's first proposals whole: the app takes strongSwan's words, alternatives too.
    if ra.ike_proposals:
        profile["ike-proposal"] = format_ike_proposal(ra.ike_proposals[0])
    if ra.esp_proposals:
        profile["esp-proposal"] = format_esp_proposal(ra.esp_proposals[0])
    return (json.dumps(profile, indent=2) + "\n").encode()


def windows_script(ra: RemoteAccess, passphrase: bytes | None = None) -> bytes:
    """A PowerShell script: trust the CA, import a certificate client's PKCS#12 (asking its
    passphrase), add the VPN connection, set its proposals."""
    if ra.client_auth == "eap-md5":
        raise ProfileError(f"connections.{ra.connection}.remote.auth: Windows's password EAP is "
                           'EAP-MSCHAPv2; the gateway asks "eap-md5" (set "eap-mschapv2" or '
                           '"eap")')  # fmt: skip
    ike = _pick(ra.ike_proposals, _win_ike_encr, _win_ike_hash, _WIN_DH.get, ike=True)
    if ike is None:
        _refuse(ra, "Windows", "proposals", ra.ike_proposals, _WIN_KNOWS_IKE)
    esp = _pick(ra.esp_proposals, _win_esp_encr, _win_esp_hash, _WIN_PFS.get, ike=False)
    if esp is None:
        _refuse(ra, "Windows", "esp_proposals", ra.esp_proposals, _WIN_KNOWS_ESP)
    assert ike is not None and esp is not None
    if not ra.any_identity:
        ra.warnings.append(
            f"connections.{ra.connection}: Windows sends its address as its IKE identity and "
            'the name typed as its EAP identity; set remote.id = "%any" and '
            'remote.eap_id = "%any", or the gateway will refuse it'
        )
    _windows_server_name(ra)
    _windows_client_auth_eku(ra)
    _windows_machine_identity(ra)
    _all_traffic(ra, "Windows")
    method = "MachineCertificate" if ra.client_auth == "pubkey" else "Eap"
    # Windows's EAP is EAP-MSCHAPv2 unless an EAP configuration says otherwise.
    eap_tls, eap_option = [], ""
    if ra.client_auth == "eap-tls":
        eap_tls = ["$Eap = New-EapConfiguration -Tls -UserCertificate"]
        eap_option = "-EapConfigXmlStream $Eap.EapConfigXmlStream "
    auth_transform = esp[1] if esp[1].startswith("GCM") else esp[2]
    pem = ra.ca.public_bytes(serialization.Encoding.PEM).decode().strip()
    name = _ps_string(ra.display_name)
    if ra.client_auth == "pubkey":
        who = f"uses the machine certificate of {ra.user}"
    elif ra.client_auth == "eap-tls":
        who = f"uses the user certificate of {ra.user} by EAP-TLS"
    else:
        who = f"sign in as {ra.user}; Windows asks for the password on connecting"
    lines = [
        f"# larval profile: VPN {ra.display_name} for {ra.user} (IKEv2, {ra.client_auth})",
        f"# Run as Administrator. No password is in this file: {who}.",
        '$ErrorActionPreference = "Stop"',
        f"$Name = {name}",
        "$Ca = @'",
        *pem.splitlines(),
        "'@",
        '$CaFile = Join-Path $env:TEMP "larval-vpn-ca.cer"',
        "Set-Content -Path $CaFile -Value $Ca",
        "Import-Certificate -FilePath $CaFile -CertStoreLocation Cert:\\LocalMachine\\Root "
        "| Out-Null",
        "Remove-Item $CaFile",
        *_windows_import_pkcs12(ra, passphrase),
        *eap_tls,
        f"Add-VpnConnection -Name $Name -ServerAddress {_ps_string(ra.server)} "
        f"-TunnelType Ikev2 -AuthenticationMethod {method} -EncryptionLevel Required "
        f"{eap_option}-Force",
        "Set-VpnConnectionIPsecConfiguration -ConnectionName $Name "
        f"-AuthenticationTransformConstants {auth_transform} "
        f"-CipherTransformConstants {esp[1]} -EncryptionMethod {ike[1]} "
        f"-IntegrityCheckMethod {ike[2]} -DHGroup {ike[3]} -PfsGroup {esp[3] or 'None'} -Force",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _windows_import_pkcs12(ra: RemoteAccess, passphrase: bytes | None) -> list[str]:
    """Import the PKCS#12, asking its passphrase (it is not in the script): for IKE
    (MachineCertificate) into the computer's personal store, where Windows looks for a
    machine certificate; for EAP-TLS into the user's."""
    if ra.user_cert is None:
        return []
    p12 = base64.b64encode(ra.user_cert.pkcs12(ra.user, _passphrase(ra, passphrase))).decode()
    store = "LocalMachine" if ra.client_auth == "pubkey" else "CurrentUser"
    return [
        "$Pfx = @'",
        *(p12[i : i + 76] for i in range(0, len(p12), 76)),
        "'@",
        '$PfxFile = Join-Path $env:TEMP "larval-vpn-user.p12"',
        "[IO.File]::WriteAllBytes($PfxFile, [Convert]::FromBase64String(($Pfx -replace "
        "'\\s', '')))",
        "$PfxPassword = Read-Host -AsSecureString 'Passphrase of the VPN certificate'",
        f"Import-PfxCertificate -FilePath $PfxFile -CertStoreLocation Cert:\\{store}\\My "
        "-Password $PfxPassword | Out-Null",
        "Remove-Item $PfxFile",
    ]


def _windows_client_auth_eku(ra: RemoteAccess) -> None:
    """Windows takes a client certificate that names extended key usages only if
    clientAuth is among them."""
    if ra.user_cert is None:
        return
    try:
        usages = ra.user_cert.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages.value:
        ra.warnings.append(
            f"{ra.user_cert.cert_name}: the certificate's extended key usages lack clientAuth; "
            "Windows will not use it to connect (issue it with clientAuth, or with no "
            "extended key usage)"
        )


def _windows_machine_identity(ra: RemoteAccess) -> None:
    """With a machine certificate Windows's IKE identity is the certificate's subject
    (a DN), not a name of its subjectAltNames."""
    if ra.client_auth != "pubkey" or ra.user_cert is None or ra.remote_id_match is None:
        return
    subject = ra.user_cert.cert.subject
    if not ra.remote_id_match(IdType.ID_DER_ASN1_DN, subject.public_bytes()):
        ra.warnings.append(
            f"connections.{ra.connection}.remote.id: Windows sends the certificate's subject "
            f"({describe_subject(ra.user_cert.cert)}) as its IKE identity, which "
            f"{ra.remote_id_match} does not take; the gateway will refuse it (set remote.id "
            'to that DN, or "%any")'
        )


def _windows_server_name(ra: RemoteAccess) -> None:
    """Windows checks the server address against the certificate's dNSNames only (an
    address in an iPAddress SAN gives error 13801)."""
    try:
        sans = ra.server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in sans.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if ra.server.lower() not in names:
        what = "address" if _is_address(ra.server) else "name"
        ra.warnings.append(
            f"Windows checks the server {what} {ra.server} against the gateway certificate's "
            f"DNS names ({', '.join(names) or 'none'}); it will refuse the connection "
            "(error 13801) unless one of them is that, or --server names one"
        )


def _everything(ra: RemoteAccess) -> bool:
    """Whether the gateway offers every destination (local_ts 0.0.0.0/0 or ::/0)."""
    return any(ipaddress.ip_network(net).prefixlen == 0 for net in ra.subnets)


def _all_traffic(ra: RemoteAccess, client: str) -> None:
    """Apple's and Windows's clients ask for every destination (TSr 0.0.0.0/0); the
    gateway's policy must take that, not only the networks behind it."""
    if ra.subnets and not _everything(ra):
        ra.warnings.append(
            f"{client}'s client asks for all traffic (0.0.0.0/0) through the tunnel, and "
            f"connections.{ra.connection}'s first child offers {', '.join(ra.subnets)} only "
            "(its local_ts): the gateway refuses that CHILD_SA (TS_UNACCEPTABLE) unless "
            'local_ts takes it, such as local_ts = ["0.0.0.0/0"]'
        )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ps_string(text: str) -> str:
    """A PowerShell single-quoted string: nothing inside is expanded."""
    return "'" + text.replace("'", "''") + "'"


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode(errors="replace")


def _minutes(seconds: float, most: int) -> int:
    """A lifetime in Apple's minutes (10 to `most`); 0 s (never) is the most."""
    if seconds <= 0:
        return most
    return max(10, min(most, round(seconds / 60)))


WRITERS: dict[Client, Callable[[RemoteAccess, bytes | None], bytes]] = {
    "apple": apple_profile,
    "android": sswan_profile,
    "windows": windows_script,
}


def write_profile(ra: RemoteAccess, client: Client, passphrase: bytes | None = None) -> bytes:
    """The profile; `passphrase` encrypts the PKCS#12 of a certificate client's
    (`RemoteAccess.user_cert`)."""
    return WRITERS[client](ra, passphrase)
