"""The daemon's configuration file: TOML with swanctl.conf's names (DESIGN.md).

::

    [daemon]
    addresses = ["192.0.2.2"]            # IKE on UDP 500 and 4500 of these
    fragment_size = 1280                 # optional: the IP datagram of IKE sent whole
    tun = "larval0"                      # TUN device for the dataplane
    tun_addresses = ["203.0.113.1/32"]   # optional: addresses on the TUN
    control_socket = "/run/larval/control"
    pfkey_socket = "/run/larval/pfkey"   # optional

    [connections.s2s]
    version = 2
    local_addrs = ["192.0.2.2"]
    remote_addrs = ["192.0.2.1"]
    proposals = ["aes128-sha256-x25519"]
    encap = true
    dpd_delay = "30s"
    fragmentation = "yes"                # IKE fragments (RFC 7383; IKEv1's vendor ID): yes | no
    local = { auth = "psk", id = "192.0.2.2" }
    remote = { auth = "psk", id = "192.0.2.1" }

    [connections.s2s.children.net]
    local_ts = ["203.0.113.0/24"]
    remote_ts = ["198.51.100.0/24"]
    esp_proposals = ["aes128gcm16", "aes128-sha256"]
    mode = "tunnel"
    start_action = "trap"                # none | trap | start
    rekey_time = "1h"

    [secrets.ike-s2s]
    ids = ["192.0.2.1", "192.0.2.2"]
    secret = "interop-test-psk-0123456789"

``daemon.credentials`` names a directory in swanctl's layout (`larval.credentials`), and
``[secrets.private-NAME] secret = "..."`` the passphrase of its encrypted key file NAME;
such a secret is never a PSK.

Certificates, in swanctl.conf's words::

    [connections.home]
    send_cert = "ifasked"                # ifasked | always | never
    send_certreq = true
    local = { auth = "pubkey", certs = ["gw.pem"], id = "vpn.example.org" }
    remote = { auth = "pubkey", id = "carol@example.org", cacerts = ["ca.pem"] }

Remote access: ``[pools.NAME]`` tables (`larval.pools` describes their keys) and a
connection that names them hands each client that asks in IKE_AUTH a virtual address::

    [pools.rw]
    addrs = "10.3.0.0/24"
    dns = ["10.3.0.1"]

    [connections.rw]
    pools = ["rw", "rw6"]                # tried in this order for each family asked

A pool's error names the file and its key; a connection's pool name that is no pool
names ``connections.NAME.pools[i]``.

A road warrior asks for them (IKEv2, swanctl's ``vips``): ``0.0.0.0`` or ``::`` for any
address of that family, or the address it would like, one per family. A child without
``local_ts`` (or with ``dynamic``) is then the address given (`_vips_entry`); the DNS
servers received go to ``daemon.resolv_file`` if there is one::

    [daemon]
    resolv_file = "/run/larval/resolv.conf"

    [connections.home]
    vips = ["0.0.0.0", "::"]

``auth`` is ``psk`` or any public-key word `larval.ike.auth_config.parse_auth` takes.
``certs`` (local) names files of the credentials' ``x509/``, ``cacerts`` (remote) files of
its ``x509ca/``; without ``cacerts`` every CA certificate loaded is trusted. A local
public-key side without ``id`` is its certificate's subject DN; a remote side without one
is ``%any`` (whatever ID the peer sends, its certificate must carry it). The file is read
without the credentials: the names are resolved when the daemon starts and on SIGHUP
(`larval.daemon.auth`), and until then a connection's certificate sides are only in
`DaemonConfig.cert_auth`.

EAP (IKEv2, RFC 7296 §2.16): a road warrior proves itself by EAP and the gateway with its
certificate (or, with a warning, the PSK)::

    [connections.rw]                     # the gateway's
    local = { auth = "pubkey", certs = ["gw.pem"], id = "vpn.example.org" }
    remote = { auth = "eap-mschapv2", eap_id = "%any" }

    [connections.home]                   # the road warrior's
    local = { auth = "eap-mschapv2", eap_id = "carol" }
    remote = { auth = "pubkey", id = "vpn.example.org" }

    [secrets.eap-carol]
    id = "carol"
    secret = "..."

``auth`` is ``eap-mschapv2``, ``eap-md5`` or ``eap`` (the gateway picks: MSCHAPv2 first).
``eap_id`` is the EAP identity: the client's own name (default its IKE identity), or on
the gateway the name the client must authenticate as, ``%any`` to ask it (EAP-Identity),
by default the client's IKE identity. Each ``[secrets.eap-NAME]`` holds one ``id`` and its
``secret``; two for the same id are refused, as a gateway that tried both would let
either password in.

Every child also becomes a PROTECT policy of the stack (both directions), built by the
policy file's own reader, so the two files use the same words the same way. Every
error names the file, the key and what is allowed; types are exact (``true`` is not
a number, ``2.0`` not an integer), and numbers are checked against the field they end
up in (64-bit PF_KEY lifetimes, the 8-bit replay window, 16-bit sizes).

Secrets. A file that holds ``[secrets]`` must not be readable by group or others
(``chmod 600``); `load_config` refuses it otherwise. A PSK is needed only by a connection
with a side of ``auth = "psk"``. One shorter than 16 bytes (`MIN_PSK_LENGTH`) is refused
unless the connection that uses it says so with ``short_psk = true``: RFC 7296 §2.15
asks a PSK for as much unpredictability as the keys it protects, and one captured
exchange lets an attacker try short ones offline.
strongSwan only warns. A configuration with no ``[connections]`` at all still starts
(as strongSwan does), with a warning that nothing will be negotiated.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from larval.crypto.ike_errors import IkeProposalError
from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.crypto.proposals import ProposalError
from larval.errors import LarvalError
from larval.esp.ip import MAX_MTU, MIN_MTU
from larval.ike.auth_config import EAP_METHODS, EapAuth, SendCert, parse_auth
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.identity import IdentityMatch, IdType
from larval.keymgr.manager import Connection
from larval.pfkey.constants import U64_MAX
from larval.pools import PoolError, Pools
from larval.spd import Policy
from larval.spd.config import ConfigReader, policies_from_entry, read_config_text
from larval.spd.errors import PolicyFileError
from larval.spd.selector import IPAddress

log = logging.getLogger("larval.daemon")
_T = TypeVar("_T")

DAEMON_KEYS = ("addresses", "tun", "tun_addresses", "control_socket", "pfkey_socket", "mtu",
               "plain_esp", "retransmit_timeout", "retransmit_tries", "fragment_size",
               "credentials", "resolv_file")  # fmt: skip
CONNECTION_KEYS = ("version", "local_addrs", "remote_addrs", "proposals", "encap", "dpd_delay",
                   "local", "remote", "children", "rekey_time", "mobike", "aggressive",
                   "fragmentation", "short_psk", "send_cert", "send_certreq",
                   "pools", "vips")  # fmt: skip
CHILD_KEYS = ("local_ts", "remote_ts", "esp_proposals", "mode", "start_action", "rekey_time",
              "life_time", "rekey_bytes", "life_bytes", "replay_window", "inactivity")  # fmt: skip
AUTH_KEYS = ("auth", "id", "certs", "cacerts")
SEND_CERT = ("ifasked", "always", "never")
SECRET_KEYS = ("ids", "secret")
KEY_SECRET_PREFIX = "private-"
#: ``[secrets.eap-NAME]``: one EAP identity and its password.
EAP_SECRET_PREFIX = "eap-"
EAP_SECRET_KEYS = ("id", "secret")
#: What a side of ``auth = "eap-..."`` may say beyond `AUTH_KEYS`.
EAP_KEYS = ("eap_id",)
#: Bytes: 128 bits, the strength of the weakest cipher offered (RFC 7296 §2.15).
MIN_PSK_LENGTH = 16
#: Seconds; a day between two retransmissions is already a peer long gone.
RETRANSMIT_TIMEOUT_MAX = 86400.0


class ConfigError(LarvalError):
    """The daemon's configuration is wrong; the message names file and key."""


@dataclass(frozen=True)
class Secret:
    """One ``[secrets.NAME]`` entry: the IDs it is for (none: any) and the PSK."""

    name: str
    ids: tuple[str, ...]
    psk: bytes = field(repr=False)


@dataclass(frozen=True)
class AuthSide:
    """A ``local`` or ``remote`` table as written."""

    key: str  # where: ``connections.NAME.local``
    method: Literal["psk", "pubkey", "eap-mschapv2", "eap-md5", "eap"]
    schemes: tuple[str, ...]  # `parse_auth`'s
    id: str | None  # None: the default
    #: ``certs`` (local) or ``cacerts`` (remote), as written.
    files: tuple[str, ...] = ()
    #: ``eap_id`` of an EAP side, as written (None: the default).
    eap_id: str | None = None


@dataclass(frozen=True)
class CertAuth:
    """A connection's certificate sides as written, for `larval.daemon.auth` to resolve
    against the credentials; None on a side: the PSK."""

    local: AuthSide | None
    remote: AuthSide | None
    send_cert: SendCert = "ifasked"
    send_certreq: bool = True


@dataclass
class DaemonConfig:
    addresses: list[str]
    tun: str | None
    tun_addresses: list[str]
    control_socket: str
    pfkey_socket: str | None
    mtu: int
    plain_esp: bool
    connections: list[Connection] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    #: swanctl's credentials directory (`larval.credentials`), loaded by `larval run`.
    credentials: str | None = None
    #: ``[secrets.private-NAME]``: the passphrase of the encrypted key file NAME.
    key_passphrases: dict[str, bytes] = field(default_factory=dict, repr=False)
    #: The connections with a side that authenticates with a certificate, by name.
    cert_auth: dict[str, CertAuth] = field(default_factory=dict)
    #: ``[pools]``: the virtual address pools, for the key manager to own.
    pools: Pools = field(default_factory=Pools, compare=False)
    #: ``daemon.resolv_file``: where a road warrior writes the DNS servers it is given.
    resolv_file: str | None = None


def load_config(path: str) -> DaemonConfig:
    """Read and check the daemon's configuration file; raises `ConfigError` naming it."""
    try:
        file = read_config_text(path)
    except PolicyFileError as e:
        raise ConfigError(str(e)) from None
    try:
        data = tomllib.loads(file.text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not TOML: {e}") from None
    # As OpenSSH with a private key: a secret others can read is no longer one.
    secrets = data.get("secrets")
    if isinstance(secrets, dict) and secrets and file.mode & 0o044:
        raise ConfigError(
            f"{path}: holds [secrets] but is readable by group or others "
            f"(mode {file.mode:04o}); chmod 600 it"
        )
    config = parse_config(data, path)
    if not config.connections:
        log.warning("%s: no [connections]: the stack runs but nothing will be negotiated", path)
    return config


def parse_config(data: dict[str, Any], source: str) -> DaemonConfig:
    """Check a parsed configuration; raises `ConfigError` naming `source` and the key."""
    try:
        return _parse(ConfigReader(source), data)
    except PolicyFileError as e:
        raise ConfigError(str(e)) from None


def _parse(r: ConfigReader, data: dict[str, Any]) -> DaemonConfig:
    top = r.table("", data, ("daemon", "connections", "secrets", "pools"))
    daemon = r.table("daemon", top.get("daemon", {}), DAEMON_KEYS)
    addresses = [str(r.address(k, v)) for k, v in r.strings("daemon.addresses",
                                                             daemon.get("addresses", []))] \
        if "addresses" in daemon else []  # fmt: skip
    tun = daemon.get("tun")
    if tun is not None and (not isinstance(tun, str) or not tun):
        raise r.error("daemon.tun", f"{r.show(tun)} is not a device name")
    tun_addresses = [v for _, v in r.strings("daemon.tun_addresses", daemon["tun_addresses"])] \
        if "tun_addresses" in daemon else []  # fmt: skip
    for i, text in enumerate(tun_addresses):
        try:
            ipaddress.ip_interface(text)
        except ValueError:
            raise r.error(f"daemon.tun_addresses[{i}]", f"{text!r} is not address/prefix") from None
    config = DaemonConfig(
        addresses=addresses,
        tun=tun,
        tun_addresses=tun_addresses,
        control_socket=_string(r, "daemon.control_socket",
                               daemon.get("control_socket", "/run/larval/control")),
        pfkey_socket=_string(r, "daemon.pfkey_socket", daemon["pfkey_socket"])
        if "pfkey_socket" in daemon else None,
        mtu=r.integer("daemon.mtu", daemon.get("mtu", 1400), MAX_MTU, MIN_MTU),
        plain_esp=_bool(r, "daemon.plain_esp", daemon.get("plain_esp", False)),
        credentials=_string(r, "daemon.credentials", daemon["credentials"])
        if "credentials" in daemon else None,
        resolv_file=_string(r, "daemon.resolv_file", daemon["resolv_file"])
        if "resolv_file" in daemon else None,
    )  # fmt: skip
    every_secret = top.get("secrets", {})
    eap_passwords = _eap_secrets(r, every_secret)
    if isinstance(every_secret, dict):
        every_secret = {k: v for k, v in every_secret.items()
                        if not k.startswith(EAP_SECRET_PREFIX)}  # fmt: skip
    secrets = _secrets(r, every_secret)
    # swanctl's word: a private-NAME secret decrypts a key file, it is never a PSK.
    config.key_passphrases = {s.name.removeprefix(KEY_SECRET_PREFIX): s.psk for s in secrets
                              if s.name.startswith(KEY_SECRET_PREFIX)}  # fmt: skip
    secrets = [s for s in secrets if not s.name.startswith(KEY_SECRET_PREFIX)]
    # strongswan.conf's charon.retransmit_timeout and retransmit_tries, daemon-wide.
    timeout = _retransmit_timeout(r, daemon.get("retransmit_timeout", 4.0))
    tries = r.integer("daemon.retransmit_tries", daemon.get("retransmit_tries", 5), 100)
    # strongswan.conf's charon.fragment_size: the IP datagram of IKE sent whole, at most.
    fragment_size = r.integer("daemon.fragment_size", daemon.get("fragment_size", 1280), MAX_MTU)
    if fragment_size < 128:
        raise r.error("daemon.fragment_size", f"{fragment_size} bytes leave no room for IKE")
    config.pools = _pools(r, top.get("pools", {}))
    for name, entry in r.tables("connections", top.get("connections", {})):
        entry = _vips_entry(r, name, entry)
        conn, policies, cert_auth = _connection(r, name, entry, secrets)
        conn = _with_vips(r, name, entry, conn)
        conn = _with_eap(r, name, entry, conn, eap_passwords)
        conn = _with_pools(r, name, entry, conn, config.pools)
        if cert_auth is not None:
            config.cert_auth[name] = cert_auth
        ike = dataclasses.replace(conn.ike, retransmit_timeout=timeout,
                                  retransmit_tries=tries, fragment_size=fragment_size)  # fmt: skip
        conn = dataclasses.replace(conn, ike=ike)
        config.connections.append(conn)
        config.policies.extend(policies)
    if config.connections and not config.addresses:
        config.addresses = sorted({str(c.ike.local_addr) for c in config.connections})
    if config.tun and not config.addresses:
        # The dataplane receives ESP on an address of ours: there must be one.
        raise r.error("daemon.tun", "the dataplane needs daemon.addresses or a connection")
    return config


def _pools(r: ConfigReader, value: object) -> Pools:
    """``[pools]``, checked by `larval.pools`; its error named with the file."""
    try:
        return Pools.from_dict(value)
    except PoolError as e:
        raise ConfigError(f"{r.source}: {e}") from None


def _with_pools(
    r: ConfigReader, name: str, value: object, conn: Connection, pools: Pools
) -> Connection:
    """``connections.NAME.pools``: names of ``[pools]``, in the order they are tried."""
    entry = cast(Mapping[str, Any], value)  # a table: `_connection` checked it
    if "pools" not in entry:
        return conn
    key = f"connections.{name}.pools"
    names = tuple(text for _, text in r.strings(key, entry["pools"]))
    try:
        pools.check_names(key, names)
    except PoolError as e:
        raise ConfigError(f"{r.source}: {e}") from None
    if conn.version == 1:
        raise r.error(key, "IKEv1 hands out no addresses yet (Mode Config): set version = 2")
    return dataclasses.replace(conn, pools=names)


def _vips(r: ConfigReader, name: str, entry: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    """``connections.NAME.vips``: the virtual addresses to ask for, one per family
    (``0.0.0.0`` or ``::`` for any, as swanctl); () without the key."""
    if "vips" not in entry:
        return ()
    key = f"connections.{name}.vips"
    vips: dict[int, IPAddress] = {}
    for k, text in r.strings(key, entry["vips"]):
        address = r.address(k, text)
        if address.version in vips:
            # A CFG_REQUEST asks one address of each family (RFC 7296 §3.15.1).
            raise r.error(k, f"{text!r}: {vips[address.version]} already asks for an "
                          f"IPv{address.version} address; one per family")  # fmt: skip
        vips[address.version] = address
    version = entry.get("version", 2)
    if version != 2:
        raise r.error(key, "virtual IPs are asked for in IKEv2's IKE_AUTH: set version = 2")
    return tuple(vips.values())


def _vips_entry(r: ConfigReader, name: str, value: object) -> object:
    """A connection with ``vips``, its children's selectors as the client means them: a
    child's ``local_ts`` left out (or ``dynamic``) is this end's virtual address, unknown
    until IKE_AUTH. It is proposed, and its policy written, as any address of each family
    asked for (``0.0.0.0/0``, ``::/0``), which the gateway narrows to the address it gives
    (RFC 7296 §2.9, as strongSwan proposes it); the CHILD_SA's own selectors are then that
    address. ``start_action = "trap"`` is refused: before IKE_AUTH there is no address to
    send the first packet from."""
    entry = r.table(f"connections.{name}", value, CONNECTION_KEYS)
    vips = _vips(r, name, entry)
    if not vips:
        return value
    any_ts = ["0.0.0.0/0" if v.version == 4 else "::/0" for v in vips]
    children = dict(r.tables(f"connections.{name}.children", entry.get("children", {})))
    fixed: dict[str, object] = {}
    for child_name, child_value in children.items():
        ckey = f"connections.{name}.children.{child_name}"
        child = dict(r.table(ckey, child_value, CHILD_KEYS))
        if child.get("start_action") == "trap":
            raise r.error(f"{ckey}.start_action", '"trap" needs an address to send from '
                          'before IKE_AUTH; with vips use "start" or "none"')  # fmt: skip
        if child.get("local_ts", ["dynamic"]) in (["dynamic"], "dynamic"):
            child["local_ts"] = any_ts
        fixed[child_name] = child
    return {**entry, "children": fixed} if "children" in entry else entry


def _with_vips(r: ConfigReader, name: str, value: object, conn: Connection) -> Connection:
    """`conn` asking for the virtual addresses of ``connections.NAME.vips``."""
    vips = _vips(r, name, cast(Mapping[str, Any], value))
    if not vips:
        return conn
    return dataclasses.replace(conn, ike=dataclasses.replace(conn.ike, vips=vips))


def _secrets(r: ConfigReader, value: object) -> list[Secret]:
    secrets = []
    for name, entry in r.tables("secrets", value):
        e = r.table(f"secrets.{name}", entry, SECRET_KEYS)
        ids = [v for _, v in r.strings(f"secrets.{name}.ids", e["ids"])] if "ids" in e else []
        secret = e.get("secret")
        if not isinstance(secret, str) or not secret:
            # Never the value: it may be the secret, with a typo.
            raise r.error(f"secrets.{name}.secret", "a non-empty string is needed")
        secrets.append(Secret(name, tuple(ids), secret.encode()))
    return secrets


def _eap_secrets(r: ConfigReader, value: object) -> dict[str, str]:
    """``[secrets.eap-NAME] id = "carol"  secret = "..."``: each EAP identity's password;
    a second secret for the same identity is refused."""
    passwords: dict[str, str] = {}
    where: dict[str, str] = {}
    if not isinstance(value, dict):
        return passwords  # `_secrets` names what is wrong
    for name, entry in r.tables("secrets", value):
        if not name.startswith(EAP_SECRET_PREFIX):
            continue
        key = f"secrets.{name}"
        e = r.table(key, entry, EAP_SECRET_KEYS)
        ident = e.get("id")
        if not isinstance(ident, str) or not ident:
            raise r.error(f"{key}.id", f"{r.show(ident)} is not an EAP identity, such as carol")
        secret = e.get("secret")
        if not isinstance(secret, str) or not secret:
            # Never the value: it may be the secret, with a typo.
            raise r.error(f"{key}.secret", "a non-empty string is needed")
        if ident in passwords:
            raise r.error(f"{key}.id", f"{ident!r} has a secret already, in "
                          f"secrets.{where[ident]}; one secret per EAP identity")  # fmt: skip
        passwords[ident], where[ident] = secret, name
    return passwords


def _with_eap(r: ConfigReader, name: str, value: object, conn: Connection,
              passwords: Mapping[str, str]) -> Connection:  # fmt: skip
    """`conn` with its EAP side, if it has one (RFC 7296 §2.16): the client's name and
    password, or the gateway's users. EAP is IKEv2's; the gateway proves itself with a
    public key, or with a PSK, which is allowed with a warning (as strongSwan)."""
    base = f"connections.{name}"
    c = r.table(base, value, CONNECTION_KEYS)
    local = _side(r, f"{base}.local", c.get("local", {}))
    remote = _side(r, f"{base}.remote", c.get("remote", {}))
    eap_local, eap_remote = local.method in EAP_METHODS, remote.method in EAP_METHODS
    if not eap_local and not eap_remote:
        return conn
    if conn.version != 2:
        raise r.error(f"{base}.version", "EAP authenticates in IKEv2 only: set version = 2")
    if eap_local and eap_remote:
        raise r.error(f"{base}.remote.auth", "both ends by EAP: the gateway's side proves "
                      'itself with auth = "pubkey" (or "psk")')  # fmt: skip
    ike = conn.ike
    if eap_local:
        eap_id = local.eap_id or local.id or str(ike.local_addr)
        if eap_id == "%any":
            raise r.error(f"{local.key}.eap_id", "%any is the gateway's; a client names itself")
        if eap_id not in passwords:
            raise r.error(f"{local.key}.eap_id", f"no [secrets.eap-NAME] has id = {eap_id!r}")
        auth = EapAuth(cast(Any, local.method), eap_id, {eap_id: passwords[eap_id]})
        ike = dataclasses.replace(ike, local_eap=auth)
    else:
        if local.method == "psk":
            log.warning("%s: connections.%s: the gateway proves itself to EAP clients with a "
                        "PSK; RFC 7296 §2.16 wants a public key (a certificate)",
                        r.source, name)  # fmt: skip
        auth = EapAuth(cast(Any, remote.method), remote.eap_id, dict(passwords))
        ike = dataclasses.replace(ike, remote_eap=auth)
    return dataclasses.replace(conn, ike=ike)


def _retransmit_timeout(r: ConfigReader, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= RETRANSMIT_TIMEOUT_MAX
        or not math.isfinite(value)
    ):
        raise r.error(
            "daemon.retransmit_timeout",
            f"{r.show(value)} is not seconds above 0 and at most {RETRANSMIT_TIMEOUT_MAX:g}",
        )
    return float(value)


def _connection(
    r: ConfigReader, name: str, value: object, secrets: list[Secret]
) -> tuple[Connection, list[Policy], CertAuth | None]:
    base = f"connections.{name}"
    c = r.table(base, value, CONNECTION_KEYS)
    version = c.get("version", 2)
    # Exactly an integer: `true` == 1 and `2.0` == 2 in Python, never in the file.
    if isinstance(version, bool) or not isinstance(version, int) or version not in (0, 1, 2):
        raise r.error(f"{base}.version", f"{r.show(version)} is not one of 0, 1, 2")
    local_addrs = _addresses(r, base, c, "local_addrs")
    remote_addrs = _addresses(r, base, c, "remote_addrs")
    proposals = _proposals(
        r, f"{base}.proposals", c.get("proposals", ["aes128-sha256-x25519"]), parse_ike_proposal
    )
    local = _side(r, f"{base}.local", c.get("local", {}))
    remote = _side(r, f"{base}.remote", c.get("remote", {}))
    if version != 2 and local.method != remote.method:
        # RFC 2409 §5: one authentication method, negotiated in the SA, for both ends.
        answers = "IKEv1" if version == 1 else "IKEv1 (which version = 0 answers)"
        raise r.error(f"{base}.remote.auth", f"{answers} authenticates both ends alike: "
                      f"local is {local.method}, remote {remote.method}")  # fmt: skip
    # strongSwan's defaults: a PSK side is its address; a local certificate side its
    # certificate's subject DN (set once the certificate is known); a remote certificate
    # side anyone whose certificate carries the ID it sends.
    local_text = local.id or str(local_addrs[0])
    local_id = _local_identity(r, f"{base}.local.id", local_text)
    remote_text = remote.id or (str(remote_addrs[0]) if remote.method == "psk" else "%any")
    remote_match = _remote_identity(r, f"{base}.remote.id", remote_text)
    # Per connection, not per secret: the risk is the connection's (its AUTH exchange is
    # what an attacker tries short PSKs against), and a secret later shared with another
    # connection must not carry the acceptance over to it.
    short_psk = _bool(r, f"{base}.short_psk", c.get("short_psk", False))
    psk = b""
    if "psk" in (local.method, remote.method):
        # Only this end proves itself with a PSK (the peer with a certificate): the PSK
        # is its own, found by its identity.
        owner = "local" if remote.method != "psk" else "remote"
        psk = _psk(r, base, secrets, local_text, remote_text, short_psk, owner)
    send_cert = r.choice(f"{base}.send_cert", c.get("send_cert", "ifasked"), SEND_CERT)
    send_certreq = _bool(r, f"{base}.send_certreq", c.get("send_certreq", True))
    cert_auth = None
    if "pubkey" in (local.method, remote.method):
        cert_auth = CertAuth(
            local if local.method == "pubkey" else None,
            remote if remote.method == "pubkey" else None,
            cast(SendCert, send_cert),
            send_certreq,
        )
    fragmentation = r.choice(f"{base}.fragmentation", c.get("fragmentation", "yes"), ("yes", "no"))
    if "mobike" in c:
        _bool(r, f"{base}.mobike", c["mobike"])  # swanctl's key, accepted; no MOBIKE yet
    ike = IkeConfig(
        name=name,
        local_addr=local_addrs[0],
        remote_addr=remote_addrs[0],
        local_id=local_id,
        remote_id=remote_match.exact,
        psk=psk,
        proposals=tuple(proposals),
        encap=_bool(r, f"{base}.encap", c.get("encap", False)),
        dpd_delay=float(r.duration(f"{base}.dpd_delay", c.get("dpd_delay", 0))),
        rekey_time=float(r.duration(f"{base}.rekey_time", c.get("rekey_time", "4h"))),
        fragmentation=fragmentation == "yes",
        # Always: an exact identity too is matched as strongSwan matches it, a DN as a name
        # (its attributes in order, whatever string types encode them), names in any case.
        remote_id_match=remote_match,
    )
    children: list[ChildConfig] = []
    start_action: dict[str, str] = {}
    policies: list[Policy] = []
    for child_name, child_value in r.tables(f"{base}.children", c.get("children", {})):
        ckey = f"{base}.children.{child_name}"
        child, start_action[child_name] = _child(r, ckey, child_name, child_value,
                                                 local_addrs[0], remote_addrs[0])  # fmt: skip
        children.append(child)
        policy = {k: v for k, v in r.table(ckey, child_value, CHILD_KEYS).items()
                  if k in ("local_ts", "remote_ts", "esp_proposals", "rekey_time", "life_time",
                           "rekey_bytes", "life_bytes", "replay_window")}  # fmt: skip
        policy.update(mode=child.mode, local_addrs=[str(local_addrs[0])],
                      remote_addrs=[str(remote_addrs[0])])  # fmt: skip
        policies.extend(policies_from_entry(r, ckey, f"{name}/{child_name}", policy))
    aggressive = _bool(r, f"{base}.aggressive", c.get("aggressive", False))
    if aggressive and version != 1:
        raise r.error(f"{base}.aggressive", "Aggressive Mode is IKEv1's: set version = 1")
    conn = Connection(ike, tuple(children), start_action, version, aggressive)
    return conn, policies, cert_auth


def _psk(
    r: ConfigReader, base: str, secrets: list[Secret], local_id: str, remote_id: str,
    short_psk: bool, owner: str = "remote",
) -> bytes:  # fmt: skip
    """The PSK of a connection with a PSK side: the first secret for its identities,
    or for the identity of `owner`'s side."""
    wanted = remote_id if owner == "remote" else local_id
    secret = next((s for s in secrets if not s.ids or {local_id, remote_id} <= set(s.ids)
                   or wanted in s.ids), None)  # fmt: skip
    if secret is None:
        raise r.error(f"{base}.{owner}.id", f"no [secrets] entry holds a PSK for {wanted}")
    if len(secret.psk) < MIN_PSK_LENGTH and not short_psk:
        size = f"{len(secret.psk)} byte" + ("" if len(secret.psk) == 1 else "s")
        raise r.error(
            f"secrets.{secret.name}.secret",
            f"{size}, shorter than {MIN_PSK_LENGTH}; use a longer random secret, "
            f"or set {base}.short_psk = true",
        )
    return secret.psk


def _addresses(r: ConfigReader, base: str, c: Mapping[str, Any], key: str) -> list[IPAddress]:
    if key not in c:
        raise r.error(f"{base}.{key}", "missing; the connection needs this IKE address")
    return [r.address(k, v) for k, v in r.strings(f"{base}.{key}", c[key])]


def _proposals(r: ConfigReader, key: str, value: object, parse: Callable[[str], _T]) -> list[_T]:
    """Each string of a proposals list parsed by `parse`; a bad one is named by its index."""
    out = []
    for k, text in r.strings(key, value):
        try:
            out.append(parse(text))
        except (IkeProposalError, ProposalError) as e:
            raise r.error(k, str(e)) from None
    return out


def _side(r: ConfigReader, key: str, value: object) -> AuthSide:
    """A ``local`` or ``remote`` table: how that end authenticates, and with what."""
    table = r.table(key, value, AUTH_KEYS + EAP_KEYS)
    word = table.get("auth", "psk")
    if not isinstance(word, str):
        raise r.error(f"{key}.auth", f"{r.show(word)} is not an auth method such as psk, pubkey")
    method: Literal["psk", "pubkey", "eap-mschapv2", "eap-md5", "eap"]
    schemes: tuple[str, ...]
    if word in EAP_METHODS:
        method, schemes = cast(Literal["eap-mschapv2", "eap-md5", "eap"], word), ()
    else:
        try:
            method, schemes = parse_auth(word)
        except ValueError as e:
            raise r.error(f"{key}.auth", f"{e}; or for EAP {', '.join(EAP_METHODS)}") from None
        if "eap_id" in table:
            raise r.error(f"{key}.eap_id", f'eap_id is for auth = "eap-...", not "{word}"')
    ident = table.get("id")
    if ident is not None and (not isinstance(ident, str) or not ident):
        raise r.error(f"{key}.id", f"{r.show(ident)} is not an identity: an address or a name")
    mine, other = ("certs", "cacerts") if key.endswith(".local") else ("cacerts", "certs")
    if other in table:
        side = "local" if other == "certs" else "remote"
        raise r.error(f"{key}.{other}", f"only the {side} side has {other}; this side has {mine}")
    files = tuple(text for _, text in r.strings(f"{key}.{mine}", table[mine])) \
        if mine in table else ()  # fmt: skip
    if files and method != "pubkey":
        raise r.error(f"{key}.{mine}", f'{mine} are for auth = "pubkey", not "{method}"')
    eap_id = table.get("eap_id")
    if eap_id is not None and (not isinstance(eap_id, str) or not eap_id):
        raise r.error(f"{key}.eap_id", f"{r.show(eap_id)} is not an EAP identity, or %any")
    return AuthSide(key, method, schemes, ident, files, eap_id)


def _local_identity(r: ConfigReader, key: str, text: str) -> tuple[IdType, bytes]:
    """This end's identity: one exact ID, never a pattern."""
    try:
        exact = IdentityMatch.parse(text).exact
        if exact is None:
            raise ValueError(f"{text!r} is a pattern; this end's own identity is one exact ID")
        return exact
    except ValueError as e:
        raise r.error(key, str(e)) from None


def _remote_identity(r: ConfigReader, key: str, text: str) -> IdentityMatch:
    """The peer's identity: an exact ID, or a pattern (``%any``, ``*.example.org``)."""
    try:
        return IdentityMatch.parse(text)
    except ValueError as e:
        raise r.error(key, str(e)) from None


def _child(
    r: ConfigReader, ckey: str, name: str, value: object, local: IPAddress, remote: IPAddress
) -> tuple[ChildConfig, str]:
    """One child and its start_action."""
    ch = r.table(ckey, value, CHILD_KEYS)
    suites = _proposals(
        r,
        f"{ckey}.esp_proposals",
        ch.get("esp_proposals", ["aes128gcm16"]),
        esp_proposal_transforms,
    )
    mode = r.choice(f"{ckey}.mode", ch.get("mode", "tunnel"), ("tunnel", "transport"))
    start_action = r.choice(f"{ckey}.start_action", ch.get("start_action", "none"),
                            ("none", "trap", "start"))  # fmt: skip
    local_ts = _networks(r, f"{ckey}.local_ts", ch.get("local_ts", [str(local)]))
    remote_ts = _networks(r, f"{ckey}.remote_ts", ch.get("remote_ts", [str(remote)]))
    rekey = r.duration(f"{ckey}.rekey_time", ch.get("rekey_time", "1h"))
    # swanctl: life_time defaults to rekey_time + 10 %, kept within PF_KEY's 64 bits.
    life = r.duration(f"{ckey}.life_time", ch.get("life_time", min(rekey + rekey // 10, U64_MAX)))
    inactivity = r.duration(f"{ckey}.inactivity", ch.get("inactivity", 0))
    child = ChildConfig(name, tuple(suites), local_ts, remote_ts, mode, rekey, life,
                        inactivity=inactivity)  # fmt: skip
    return child, start_action


def _networks(r: ConfigReader, key: str, value: object) -> tuple[Any, ...]:
    out = []
    for k, text in r.strings(key, value):
        try:
            out.append(ipaddress.ip_network(text.split("[")[0], strict=False))
        except ValueError:
            raise r.error(k, f"{text!r} is not a prefix") from None
    return tuple(out)


def _bool(r: ConfigReader, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise r.error(key, f"{r.show(value)} is not true or false")
    return value


def _string(r: ConfigReader, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise r.error(key, f"{r.show(value)} is not a path")
    return value
