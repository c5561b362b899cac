"""Profiles for native remote-access clients: what a gateway's connection tells a client
(the server's address and identity, its CA, proposals it accepts), written as an Apple
``.mobileconfig``, a strongSwan-app ``.sswan`` or a Windows PowerShell script.

`remote_access` reads the facts from a daemon configuration whose certificates are
resolved (`larval.daemon.auth`) and refuses, naming the connection and the key, what no
native client could use: a connection without pools, clients that prove themselves with
a PSK, a gateway without a certificate, a user the connection does not take. The writers
are pure functions of those facts. No profile ever holds a password: the user types it
when the client first connects.

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
import ipaddress
import json
import plistlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from larval.credentials import Credentials
from larval.crypto.ike_proposals import format_esp_proposal, format_ike_proposal
from larval.crypto.ike_transforms import DhId, EncrId, IntegId, PrfId, Transform, TransformType
from larval.daemon.config import DaemonConfig
from larval.errors import LarvalError
from larval.ike.identity import IdentityMatch, describe_identity, identity
from larval.keymgr.manager import Connection
from larval.trust import chain_for

__all__ = [
    "CLIENTS",
    "ProfileError",
    "RemoteAccess",
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
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def eap(self) -> bool:
        return self.client_auth != "pubkey"

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
    server: str | None = None, source: str = "",
) -> RemoteAccess:  # fmt: skip
    """The facts of connection `name` for `user`; `config` resolved with `credentials`."""
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
    _check_user(key, conn, user, client_auth)
    if not conn.children:
        raise ProfileError(f"{key}.children: none; the client needs a CHILD_SA's proposals")
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
    )


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
    """Refuse a user this connection does not take: by EAP, one with a secret (and the
    one ``eap_id`` names, if it names one); by certificate, an identity ``remote.id``
    takes."""
    ike = conn.ike
    if not user:
        raise ProfileError(f"{key}: --user is empty; name the user, such as carol")
    if ike.remote_eap is not None:
        eap_id = ike.remote_eap.eap_id
        if eap_id not in (None, "%any") and user != eap_id:
            raise ProfileError(f"{key}.remote.eap_id: only {eap_id!r} may connect, "
                               f"not {user!r}")  # fmt: skip
        if user not in ike.remote_eap.passwords:
            raise ProfileError(f"{key}: unknown user {user!r}: no [secrets.eap-NAME] has "
                               f"id = {user!r}")  # fmt: skip
        if eap_id is not None:
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


def apple_profile(ra: RemoteAccess) -> bytes:
    """A ``.mobileconfig``: the CA as a root payload, the VPN as ``com.apple.vpn.managed``."""
    if not ra.eap:
        raise ProfileError(f"connections.{ra.connection}: an Apple profile for a certificate "
                           "client must carry the client's key (a PKCS#12), which larval does "
                           "not write; use EAP, or --for android|windows")  # fmt: skip
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
        "AuthenticationMethod": "None",  # the client by EAP only (the gateway by certificate)
        "ExtendedAuthEnabled": 1,
        "AuthName": ra.user,  # no AuthPassword: the user types it
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
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": prefix,
        "PayloadUUID": ra.stable_uuid("profile"),
        "PayloadDisplayName": f"VPN {ra.display_name} for {ra.user}",
        "PayloadDescription": "The VPN of larval's gateway; the password is asked on connecting.",
        "PayloadContent": [ca_payload, vpn_payload],
    }
    return plistlib.dumps(profile)


def sswan_profile(ra: RemoteAccess) -> bytes:
    """A strongSwan app profile (JSON)."""
    if ra.client_auth == "pubkey":
        kind, local = "ikev2-cert", {"id": ra.user}
    elif ra.client_auth in _PASSWORD_EAP:
        kind, local = "ikev2-eap", {"eap_id": ra.user}
    else:  # a certificate inside EAP (EAP-TLS)
        kind, local = "ikev2-eap-tls", {"id": ra.user}
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


def windows_script(ra: RemoteAccess) -> bytes:
    """A PowerShell script: trust the CA, add the VPN connection, set its proposals."""
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
    _all_traffic(ra, "Windows")
    method = "Eap" if ra.eap else "MachineCertificate"
    auth_transform = esp[1] if esp[1].startswith("GCM") else esp[2]
    pem = ra.ca.public_bytes(serialization.Encoding.PEM).decode().strip()
    name = _ps_string(ra.display_name)
    who = (f"sign in as {ra.user}; Windows asks for the password on connecting"
           if ra.eap else f"uses the machine certificate of {ra.user}")  # fmt: skip
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
        f"Add-VpnConnection -Name $Name -ServerAddress {_ps_string(ra.server)} "
        f"-TunnelType Ikev2 -AuthenticationMethod {method} -EncryptionLevel Required "
        "-Force",
        "Set-VpnConnectionIPsecConfiguration -ConnectionName $Name "
        f"-AuthenticationTransformConstants {auth_transform} "
        f"-CipherTransformConstants {esp[1]} -EncryptionMethod {ike[1]} "
        f"-IntegrityCheckMethod {ike[2]} -DHGroup {ike[3]} -PfsGroup {esp[3] or 'None'} -Force",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


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


WRITERS: dict[Client, Callable[[RemoteAccess], bytes]] = {
    "apple": apple_profile,
    "android": sswan_profile,
    "windows": windows_script,
}


def write_profile(ra: RemoteAccess, client: Client) -> bytes:
    return WRITERS[client](ra)
