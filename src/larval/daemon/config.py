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

A road warrior asks for them (swanctl's ``vips``; IKEv1: Mode Config): ``0.0.0.0`` or ``::`` for any
address of that family, or the address it would like, one per family. A child without
``local_ts`` (or with ``dynamic``) is then the address given (`_vips_entry`); the DNS
servers received go to ``daemon.resolv_file`` if there is one::

    [daemon]
    resolv_file = "/run/larval/resolv.conf"

    [connections.home]
    vips = ["0.0.0.0", "::"]

Its routes go into ``daemon.routing_table`` (220, as strongSwan's; 0: the main table),
looked up by a rule of priority ``daemon.routing_table_prio`` (220), so that the host's
own routes stay as they are (`larval.net.virtual_ip`).

A gateway's connection may be for many peers: ``remote_addrs`` takes addresses, subnets
(``192.0.2.0/24``), ranges (``192.0.2.10-192.0.2.20``) and ``%any`` (``%any4``,
``%any6``), as swanctl.conf does; ``local_addrs`` too, after one address of this host.
An IKE_SA_INIT is answered by the connection that names the peer best (an address before
a subnet before %any), and IKE_AUTH may move the IKE SA to another of those that match
by the peer's identity and method (`larval.ikev2.exchanges.select`). A connection with no
one remote address answers only, and its children name their ``remote_ts``::

    [connections.rw]
    local_addrs = ["192.0.2.2"]
    remote_addrs = ["%any"]

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

``auth`` is ``eap-mschapv2``, ``eap-md5``, ``eap-tls`` or ``eap`` (the gateway picks:
EAP-TLS first where its side names ``cacerts``, then MSCHAPv2).
``eap_id`` is the EAP identity: the client's own name (default its IKE identity), or on
the gateway the name the client must authenticate as, ``%any`` to ask it (EAP-Identity),
by default the client's IKE identity. Each ``[secrets.eap-NAME]`` holds one ``id`` and its
``secret``; two for the same id are refused, as a gateway that tried both would let
either password in.
On the gateway, ``eap_retries = N`` (0 to 5; default 0, strongSwan's server allows 2) lets
an EAP-MSCHAPv2 client retry N wrong passwords (RFC 2759's R=1) before it is refused.

Authentication rounds (RFC 4739 in IKEv2; XAuth in IKEv1): a side that authenticates
more than once lists a table for each round, in order, or writes swanctl's ``local-1``,
``local-2`` (any suffix) tables::

    local = [{ auth = "pubkey", certs = ["carol.pem"] }, { auth = "eap-mschapv2" }]
    local = [{ auth = "psk" }, { auth = "xauth", xauth_id = "carol" }]     # IKEv1

One table is one round, as before. In IKEv2 a further round is EAP; ``xauth`` (with
``xauth_id``) is IKEv1's, as the second round or, against a certificate, the only one.

IKEv1 XAuth and Mode Config (the gateway of legacy "Cisco IPsec" clients)::

    [connections.rw]                     # the gateway's
    version = 1
    remote = [{ auth = "psk" }, { auth = "xauth", xauth_id = "%any" }]
    pools = ["rw"]
    pull = false                         # push Mode Config (CFG_SET); default: the client asks

    [secrets.xauth-carol]                # or [secrets.eap-carol]: one password per user
    id = "carol"
    secret = "..."

The gateway's ``xauth_id`` is the user the client must be, ``%any`` for any user with a
secret, by default the client's IKE identity; a client's is its own user name (default
its IKE identity). A user's address is leased to the XAuth user.

EAP-TLS (RFC 5216) takes certificates in place of passwords: the client's ``local`` names
its ``certs`` (one must carry its EAP identity) and checks the gateway's TLS certificate
as its ``remote = { auth = "pubkey" }`` side says; the gateway is the TLS server with its
own ``local`` certificate, and its ``remote`` side names the ``cacerts`` of its clients::

    remote = { auth = "eap-tls", eap_id = "%any", cacerts = ["users-ca.pem"] }   # gateway
    local = { auth = "eap-tls", certs = ["dave.pem"], id = "dave@example.org" }  # client

EAP-only authentication (RFC 5998), as strongSwan writes it: ``auth = "eap-tls"`` on both
sides of both ends; each end's ``certs`` is its TLS certificate, the ``remote`` side's
``cacerts`` (and a client's remote ``id``) what the peer's must be. The gateway sends no
AUTH of its own. Any method but EAP-TLS on a side of such a connection is refused.

Every child also becomes a PROTECT policy of the stack (both directions), built by the
policy file's own reader, so the two files use the same words the same way. Every
error names the file, the key and what is allowed; types are exact (``true`` is not
a number, ``2.0`` not an integer), and numbers are checked against the field they end
up in (64-bit PF_KEY lifetimes, the 8-bit replay window, 16-bit sizes).

The reader goes on past a problem (with the next option, secret, pool, connection, child
or proposal), so that one reading names every problem with its key and, where the file
tells it, its line (`read_config`, `ConfigProblem`); `load_config` raises them all at once
(`ConfigProblems`), and `larval check` lists them (`larval.daemon.loading`). What only
follows from a problem already named (a PSK looked for in a secret that did not read) is
not named again.

Secrets. A file that holds ``[secrets]`` must not be readable by group or others
(``chmod 600``); `load_config` refuses it otherwise. A PSK is needed only by a connection
with a side of ``auth = "psk"``. One shorter than 16 bytes (`MIN_PSK_LENGTH`) is refused
unless the connection that uses it says so with ``short_psk = true``: RFC 7296 §2.15
asks a PSK for as much unpredictability as the keys it protects, and one captured
exchange lets an attacker try short ones offline.
strongSwan only warns. A configuration with no ``[connections]`` at all still starts
(as strongSwan does), with a warning that nothing will be negotiated.

Least privilege (`larval.daemon.privileges`): ``[daemon] user = "larval"`` makes `larval
run`, started as root, open its sockets, TUN device and state store, then go on as that
user with only ``CAP_NET_ADMIN``; ``larval run --user NAME`` wins over it.

State that survives a restart (`larval.store.sqlite`)::

    [daemon]
    state = "/var/lib/larval/state.db"       # absent: nothing is kept
    state_key = "/etc/larval/state.key"      # optional: default state.key beside it

Both are absolute paths; ``state_key`` without ``state`` is an error (`_state`).
With ``[ha]`` the state is in etcd instead: ``state_key`` is required (the same file on
every node of the group) and ``state`` is an error (`_ha_state`).

Log levels (`larval.logs`; ``larval run --log-level`` wins over them, key by key), applied
again at each reload::

    [daemon.log]
    level = "info"                           # every subsystem's, unless given its own
    ike = "debug"                            # daemon ike keymgr stack dataplane pfkey ...
    pfkey = "warning"
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from larval import logs
from larval.crypto.ike_errors import IkeProposalError
from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.crypto.proposals import ProposalError
from larval.daemon.listen_address import parse_listen
from larval.daemon.weak import refused_why
from larval.errors import LarvalError
from larval.esp.ip import MAX_MTU, MIN_MTU
from larval.ha.election import MIN_LEASE_TTL
from larval.ike.auth_config import (
    EAP_METHODS,
    AuthRound,
    EapAuth,
    SendCert,
    XauthAuth,
    parse_auth,
)
from larval.ike.config import AddressMatch, ChildConfig, IkeConfig
from larval.ike.identity import IdentityMatch, IdType
from larval.keymgr.manager import Connection
from larval.pfkey.constants import U32_MAX, U64_MAX
from larval.pools import Pool, PoolError, Pools
from larval.spd import Policy
from larval.spd.config import ConfigReader, policies_from_entry, read_config_text
from larval.spd.errors import PolicyFileError
from larval.spd.selector import IPAddress
from larval.store import StoreError
from larval.store.etcd import EtcdClient
from larval.store.sqlite import default_key_path

log = logging.getLogger("larval.daemon")
_T = TypeVar("_T")

DAEMON_KEYS = ("addresses", "tun", "tun_addresses", "control_socket", "pfkey_socket", "mtu",
               "plain_esp", "retransmit_timeout", "retransmit_tries", "fragment_size",
               "credentials", "resolv_file", "routing_table", "routing_table_prio",
               "state", "state_key", "save_keys", "log", "metrics", "user")  # fmt: skip
CONNECTION_KEYS = ("version", "local_addrs", "remote_addrs", "proposals", "encap", "dpd_delay",
                   "local", "remote", "children", "rekey_time", "mobike", "aggressive",
                   "fragmentation", "short_psk", "send_cert", "send_certreq",
                   "pools", "pull", "vips")  # fmt: skip
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
EAP_KEYS = ("eap_id", "eap_retries")
#: The most ``eap_retries`` a gateway allows: each retry is another guess (strongSwan's 2).
MAX_EAP_RETRIES = 5
#: ``[secrets.xauth-NAME]``: one XAuth user and its password, as an EAP secret is.
XAUTH_SECRET_PREFIX = "xauth-"
USER_SECRET_PREFIXES = (EAP_SECRET_PREFIX, XAUTH_SECRET_PREFIX)
#: What a side of ``auth = "xauth"`` (IKEv1) may say beyond `AUTH_KEYS`.
XAUTH_KEYS = ("xauth_id",)
#: swanctl's further rounds: ``local-2``, ``remote-eap`` (any suffix), in the order written.
_ROUND_KEY = re.compile(r"(local|remote)-[A-Za-z0-9_-]+")
#: Bytes: 128 bits, the strength of the weakest cipher offered (RFC 7296 §2.15).
MIN_PSK_LENGTH = 16
#: strongSwan's ``charon.routing_table`` and ``routing_table_prio`` defaults.
DEFAULT_ROUTING_TABLE = 220
#: rt_tables(5): tables a road warrior's routes must not be mixed into.
RESERVED_ROUTING_TABLES = {253: "default", 254: "main", 255: "local"}
#: The kernel's rule for the main table: a rule after it would never be reached.
MAIN_RULE_PRIORITY = 32766
#: Seconds; a day between two retransmissions is already a peer long gone.
RETRANSMIT_TIMEOUT_MAX = 86400.0


class ConfigError(LarvalError):
    """The daemon's configuration is wrong; the message names file and key."""


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of a configuration: where (the file, the key as written, the line where
    the file tells it) and what is wrong or allowed. Never a secret's value."""

    file: str
    key: str | None  # ``connections.s2s.children.net.esp_proposals[1]``; None: the file
    message: str
    line: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.file}: {where}{self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "key": self.key, "line": self.line,
                "message": self.message, "severity": self.severity}  # fmt: skip


class ConfigProblems(ConfigError):
    """Every error of a configuration at once; one alone reads as it always did."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(p for p in problems if p.severity == "error")
        # One a line, the first first: a reader of the first line learns what it always did.
        super().__init__("\n".join(str(p) for p in self.problems))


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
    method: Literal["psk", "pubkey", "eap-mschapv2", "eap-md5", "eap-tls", "eap", "xauth"]
    schemes: tuple[str, ...]  # `parse_auth`'s
    id: str | None  # None: the default
    #: ``certs`` (local) or ``cacerts`` (remote), as written.
    files: tuple[str, ...] = ()
    #: ``eap_id`` of an EAP side, as written (None: the default).
    eap_id: str | None = None
    #: ``eap_retries`` of a gateway's EAP side (RFC 2759's retry of MSCHAPv2).
    eap_retries: int = 0
    #: ``xauth_id`` of an XAuth side, as written (None: the default).
    xauth_id: str | None = None


@dataclass(frozen=True)
class CertAuth:
    """A connection's certificate sides as written, for `larval.daemon.auth` to resolve
    against the credentials; None on a side: the PSK, or EAP without certificates. A
    side's ``method`` says whose they are: IKE's (``pubkey``) or EAP-TLS's."""

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
    #: ``daemon.routing_table`` and ``routing_table_prio``: where a road warrior's routes
    #: go and the priority of the rule that looks them up (0: the main table, no rule).
    routing_table: int = DEFAULT_ROUTING_TABLE
    routing_table_prio: int = DEFAULT_ROUTING_TABLE
    #: ``daemon.state``: the state store's file (None: a `MemoryStore`, nothing kept).
    state: str | None = None
    #: ``daemon.state_key``: the state key's file; beside the store unless given.
    state_key: str | None = None
    #: ``[ha]``: the group of gateways that share state in etcd (`_ha`; `larval.ha.node`).
    ha: HaConfig | None = None
    #: ``daemon.save_keys``: the directory Wireshark's decryption tables of every SA
    #: set up are appended to (`larval.daemon.wireshark_keys`); None: off.
    save_keys: str | None = None
    #: ``daemon.metrics``: where the Prometheus endpoint listens, (address, port)
    #: (`larval.daemon.metrics`); None: off.
    metrics: tuple[str, int] | None = None
    #: Each connection's ``local`` and ``remote`` rounds as written, by name (none
    #: written: a PSK side), for `larval check`'s summary.
    auth_sides: dict[str, tuple[tuple[AuthSide, ...], tuple[AuthSide, ...]]] = field(
        default_factory=dict, compare=False
    )
    #: ``[daemon.log]``: the log levels, the default and by subsystem (`larval.logs`).
    log_levels: dict[str, int] = field(default_factory=dict)
    #: ``daemon.user``: whom `larval run` becomes once it has opened what needs root
    #: (`larval.daemon.privileges`); ``--user`` wins over it. None: it stays root.
    user: str | None = None


HA_KEYS = ("backend", "endpoints", "group", "node", "virtual_addresses", "lease_ttl",
           "interface")  # fmt: skip
#: A group or node name: it is part of etcd keys (``/larval/GROUP/...``).
_HA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class HaConfig:
    """``[ha]``: this gateway's place in a group that shares its state in etcd."""

    backend: str
    endpoints: tuple[str, ...]
    group: str
    node: str
    virtual_addresses: tuple[IPAddress, ...]
    lease_ttl: int
    #: ``ha.interface``: where a virtual address goes when no interface's connected
    #: subnet holds it (None: such an address is an error at takeover).
    interface: str | None = None


def load_config(path: str) -> DaemonConfig:
    """Read and check the daemon's configuration file; raises `ConfigError` naming it,
    with every problem found (`ConfigProblems`). Warnings are logged."""
    config, problems = read_config(path)
    if config is None or any(p.severity == "error" for p in problems):
        raise ConfigProblems(problems)
    for problem in problems:
        log.warning("%s", problem)
    return config


def read_config(path: str) -> tuple[DaemonConfig | None, list[ConfigProblem]]:
    """Read and check the daemon's configuration file, reading on past each problem:
    the configuration as far as it reads (None: not even the file), and every problem
    found, errors and warnings. `load_config` and `larval check` both read through here."""
    try:
        file = read_config_text(path)
    except PolicyFileError as e:
        return None, [ConfigProblem(path, None, str(e).removeprefix(f"{path}: "))]
    try:
        data = tomllib.loads(file.text)
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", None) or _toml_line(str(e))
        return None, [ConfigProblem(path, None, f"not TOML: {e}", line)]
    r = _Collector(path, file.text)
    # As OpenSSH with a private key: a secret others can read is no longer one.
    secrets = data.get("secrets")
    if isinstance(secrets, dict) and secrets and file.mode & 0o044:
        r.add(ConfigProblem(path, None, "holds [secrets] but is readable by group or others "
                            f"(mode {file.mode:04o}); chmod 600 it"))  # fmt: skip
    config = _parse(r, data)
    if not config.connections and not r.errors():
        r.add(ConfigProblem(path, None, "no [connections]: the stack runs but nothing will "
                            "be negotiated", severity="warning"))  # fmt: skip
    return config, r.problems


def parse_config(data: dict[str, Any], source: str) -> DaemonConfig:
    """Check a parsed configuration; raises `ConfigError` naming `source` and the key
    (`ConfigProblems`, with every problem found)."""
    r = _Collector(source)
    config = _parse(r, data)
    if r.errors():
        raise ConfigProblems(r.problems)
    for problem in r.problems:
        log.warning("%s", problem)
    return config


class _Cascade(Exception):
    """A problem that only follows from one already named (a PSK looked for in a
    ``[secrets]`` table that did not read): not named again."""


def _unless_cascade(r: ConfigReader, key: str, problem: str) -> Exception:
    """The error of a secret not found, or, where a ``[secrets]`` entry did not read (and
    may be the one looked for), a `_Cascade`: its own problem is named already."""
    if isinstance(r, _Collector) and "secrets" in r.broken:
        return _Cascade()
    return r.error(key, problem)


class _Collector(ConfigReader):
    """The configuration's reader: each problem is noted with its key and line, and the
    reading goes on with the next connection, child, secret, pool or option, so that one
    pass names them all. Unknown keys are noted and left out."""

    def __init__(self, source: str, text: str = "") -> None:
        super().__init__(source)
        self.text = text
        self.problems: list[ConfigProblem] = []
        #: Top-level tables that did not read whole (``secrets``, ``pools``).
        self.broken: set[str] = set()

    def unknown_key(self, error: PolicyFileError) -> None:
        self.note(error)

    def errors(self) -> list[ConfigProblem]:
        return [p for p in self.problems if p.severity == "error"]

    def add(self, problem: ConfigProblem) -> None:
        if problem not in self.problems:  # a table read twice names its keys once
            self.problems.append(problem)

    def note(self, error: Exception) -> None:
        key: str | None = getattr(error, "key", None)
        problem: str | None = getattr(error, "problem", None)
        text = str(error)
        if problem is None:
            text = text.removeprefix(f"{self.source}: ")
            if key is not None:
                problem = text.removeprefix(f"{key}: ")
            else:
                key, _, problem = text.partition(": ") if ": " in text else ("", "", text)
                key = key or None
        self.add(ConfigProblem(self.source, key, problem, line_of(self.text, key)))

    def warn(self, key: str | None, message: str) -> None:
        self.add(ConfigProblem(self.source, key, message, line_of(self.text, key), "warning"))

    @contextmanager
    def attempt(self, section: str | None = None) -> Iterator[None]:
        """Read on past a problem in the block, noting it; `section` is marked broken."""
        try:
            yield
        except (PolicyFileError, ConfigError, PoolError) as e:
            self.note(e)
            if section is not None:
                self.broken.add(section)
        except _Cascade:
            pass

    def get(self, read: Callable[[], _T], default: _T) -> _T:
        """`read()`, or `default` with the problem noted."""
        with self.attempt():
            return read()
        return default


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$")
_NAME = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_ASSIGN = re.compile(rf"\s*({_NAME}(?:\s*\.\s*{_NAME})*)\s*=")
_KEY_PART = re.compile(r"\"[^\"]*\"|'[^']*'|[^.\[\]]+")


def _toml_line(message: str) -> int | None:
    m = _TOML_LINE.search(message)
    return int(m.group(1)) if m else None


def _key_parts(key: str) -> list[str]:
    """``connections."a b".children.net.local_ts[1]`` -> its names, quotes and indexes off."""
    return [p.strip().strip("\"'") for p in _KEY_PART.findall(key) if p.strip()
            and not p.strip().isdigit()]  # fmt: skip


def line_of(text: str, key: str | None) -> int | None:
    """The line of `text` (1-based) where `key` is written, as near as the file tells:
    its own ``name = ...`` line, else the header of the table that holds it."""
    if not text or not key:
        return None
    parts = _key_parts(key)
    lines = text.splitlines()
    headers = [(i, _key_parts(m.group(1))) for i, m in
               ((i, _HEADER.match(line)) for i, line in enumerate(lines)) if m]  # fmt: skip
    start, depth = -1, 0
    for i, names in headers:
        if len(names) >= depth and names == parts[: len(names)] and names:
            start, depth = i, len(names)
    rest = parts[depth:]
    if rest:
        end = next((i for i, _ in headers if i > start), len(lines))
        for j in range(start + 1, end):
            m = _ASSIGN.match(lines[j])
            if m and (names := _key_parts(m.group(1))) and names == rest[: len(names)]:
                return j + 1
    return start + 1 if start >= 0 else None


def _parse(r: _Collector, data: dict[str, Any]) -> DaemonConfig:
    """The configuration as far as it reads; each problem noted in `r`, none raised."""
    sections = ("daemon", "connections", "secrets", "pools", "ha")
    top: Mapping[str, Any] = r.get(lambda: r.table("", data, sections), {})
    daemon: Mapping[str, Any] = r.get(lambda: r.table("daemon", top.get("daemon", {}),
                                                      DAEMON_KEYS), {})  # fmt: skip
    config = DaemonConfig(addresses=[], tun=None, tun_addresses=[],
                          control_socket="/run/larval/control", pfkey_socket=None, mtu=1400,
                          plain_esp=False)  # fmt: skip
    if "addresses" in daemon:
        config.addresses = r.get(lambda: [str(r.address(k, v)) for k, v in r.strings(
            "daemon.addresses", daemon["addresses"])], [])  # fmt: skip
    config.tun = r.get(lambda: _tun(r, daemon.get("tun")), None)
    config.tun_addresses = r.get(lambda: _tun_addresses(r, daemon), [])
    config.control_socket = r.get(lambda: _string(r, "daemon.control_socket", daemon.get(
        "control_socket", "/run/larval/control")), "/run/larval/control")  # fmt: skip
    if "pfkey_socket" in daemon:
        config.pfkey_socket = r.get(lambda: _string(r, "daemon.pfkey_socket",
                                                    daemon["pfkey_socket"]), None)  # fmt: skip
    config.mtu = r.get(lambda: r.integer("daemon.mtu", daemon.get("mtu", 1400), MAX_MTU,
                                         MIN_MTU), 1400)  # fmt: skip
    config.plain_esp = r.get(lambda: _bool(r, "daemon.plain_esp",
                                           daemon.get("plain_esp", False)), False)  # fmt: skip
    if "credentials" in daemon:
        config.credentials = r.get(lambda: _string(r, "daemon.credentials",
                                                   daemon["credentials"]), None)  # fmt: skip
    if "resolv_file" in daemon:
        config.resolv_file = r.get(lambda: _string(r, "daemon.resolv_file",
                                                   daemon["resolv_file"]), None)  # fmt: skip
    with r.attempt():
        config.routing_table, config.routing_table_prio = _routing_table(r, daemon)
    with r.attempt():
        config.state, config.state_key = _state(r, daemon, ha="ha" in top)
    if "save_keys" in daemon:
        config.save_keys = r.get(lambda: _string(r, "daemon.save_keys", daemon["save_keys"]),
                                 None)  # fmt: skip
    if "log" in daemon:
        config.log_levels = r.get(lambda: _log_levels(r, daemon["log"]), {})
    if "metrics" in daemon:
        config.metrics = r.get(lambda: _metrics(r, daemon["metrics"]), None)
    if "user" in daemon:
        config.user = r.get(lambda: _user(r, daemon["user"]), None)
    every_secret = top.get("secrets", {})
    eap_passwords: dict[str, str] = {}
    with r.attempt("secrets"):
        eap_passwords = _eap_secrets(r, every_secret)
    if isinstance(every_secret, dict):
        every_secret = {k: v for k, v in every_secret.items()
                        if not k.startswith(USER_SECRET_PREFIXES)}  # fmt: skip
    secrets = _secrets(r, every_secret)
    # swanctl's word: a private-NAME secret decrypts a key file, it is never a PSK.
    config.key_passphrases = {s.name.removeprefix(KEY_SECRET_PREFIX): s.psk for s in secrets
                              if s.name.startswith(KEY_SECRET_PREFIX)}  # fmt: skip
    secrets = [s for s in secrets if not s.name.startswith(KEY_SECRET_PREFIX)]
    # strongswan.conf's charon.retransmit_timeout and retransmit_tries, daemon-wide.
    timeout = r.get(lambda: _retransmit_timeout(r, daemon.get("retransmit_timeout", 4.0)), 4.0)
    tries = r.get(lambda: r.integer("daemon.retransmit_tries",
                                    daemon.get("retransmit_tries", 5), 100), 5)  # fmt: skip
    # strongswan.conf's charon.fragment_size: the IP datagram of IKE sent whole, at most.
    fragment_size = r.get(lambda: _fragment_size(r, daemon), 1280)
    config.pools = _pools(r, top.get("pools", {}))
    if "ha" in top:
        config.ha = r.get(lambda: _ha(r, top["ha"]), None)
    connections: object = top.get("connections", {})
    no_connections: list[tuple[str, object]] = []
    every_connection = r.get(lambda: list(r.tables("connections", connections)), no_connections)
    for name, written in every_connection:
        with r.attempt():
            conn, policies = _connection_whole(r, config, name, written, secrets,
                                               eap_passwords)  # fmt: skip
            ike = dataclasses.replace(conn.ike, retransmit_timeout=timeout, retransmit_tries=tries,
                                      fragment_size=fragment_size)  # fmt: skip
            config.connections.append(dataclasses.replace(conn, ike=ike))
            config.policies.extend(policies)
    if config.connections and not config.addresses:
        config.addresses = sorted({str(c.ike.local_addr) for c in config.connections})
    if config.tun and not config.addresses and "addresses" not in daemon \
            and len(config.connections) == len(every_connection):  # fmt: skip
        # The dataplane receives ESP on an address of ours: there must be one.
        r.note(r.error("daemon.tun", "the dataplane needs daemon.addresses or a connection"))
    return config


def _connection_whole(
    r: _Collector, config: DaemonConfig, name: str, written: object, secrets: list[Secret],
    eap_passwords: Mapping[str, str],
) -> tuple[Connection, list[Policy]]:  # fmt: skip
    """One ``[connections.NAME]`` with all it says: rounds, virtual IPs, EAP, XAuth, pools;
    its certificate sides go to ``config.cert_auth``."""
    entry, rounds = _rounds_written(r, name, written)
    entry = _vips_entry(r, name, entry)
    conn, policies, cert_auth = _connection(r, name, entry, secrets)
    conn = _with_vips(r, name, entry, conn)
    conn = _with_eap(r, name, entry, conn, eap_passwords)
    conn = _with_rounds(r, name, conn, rounds, eap_passwords)
    conn = _with_xauth(r, name, entry, conn, eap_passwords)
    conn = _with_pools(r, name, entry, conn, config.pools)
    if cert_auth is not None:
        config.cert_auth[name] = cert_auth
    config.auth_sides[name] = (tuple(_side(r, k, t) for k, t in rounds["local"]),
                               tuple(_side(r, k, t) for k, t in rounds["remote"]))  # fmt: skip
    return conn, policies


def _metrics(r: ConfigReader, value: object) -> tuple[str, int]:
    """``daemon.metrics``: ``"ADDRESS:PORT"``, an IPv6 address in brackets."""
    if not isinstance(value, str):
        raise r.error("daemon.metrics", f'{r.show(value)} is not "ADDRESS:PORT"')
    try:
        return parse_listen(value)
    except ValueError as e:
        raise r.error("daemon.metrics", str(e)) from None


def _tun(r: ConfigReader, tun: object) -> str | None:
    if tun is not None and (not isinstance(tun, str) or not tun):
        raise r.error("daemon.tun", f"{r.show(tun)} is not a device name")
    return tun


def _tun_addresses(r: ConfigReader, daemon: Mapping[str, Any]) -> list[str]:
    if "tun_addresses" not in daemon:
        return []
    tun_addresses = [v for _, v in r.strings("daemon.tun_addresses", daemon["tun_addresses"])]
    for i, text in enumerate(tun_addresses):
        try:
            ipaddress.ip_interface(text)
        except ValueError:
            raise r.error(f"daemon.tun_addresses[{i}]", f"{text!r} is not address/prefix") from None
    return tun_addresses


def _log_levels(r: _Collector, value: object) -> dict[str, int]:
    """``[daemon.log]``: ``level`` for every subsystem, and a subsystem's own
    (``ike = "debug"``); each a level `larval.logs.LEVELS` names. Each bad one is noted."""
    allowed = (logs.DEFAULT, *logs.SUBSYSTEMS)
    levels: dict[str, int] = {}
    for name, level in r.table("daemon.log", value, allowed).items():
        if name in allowed:
            with r.attempt():
                levels[name] = logs.LEVELS[r.choice(f"daemon.log.{name}", level, _LEVEL_NAMES)]
    return levels


_LEVEL_NAMES = ("debug", "info", "warning", "error")


def _fragment_size(r: ConfigReader, daemon: Mapping[str, Any]) -> int:
    fragment_size = r.integer("daemon.fragment_size", daemon.get("fragment_size", 1280), MAX_MTU)
    if fragment_size < 128:
        raise r.error("daemon.fragment_size", f"{fragment_size} bytes leave no room for IKE")
    return fragment_size


def _ha(r: ConfigReader, value: object) -> HaConfig:
    """``[ha]``: every key named in its error; the lease must outlive an etcd election."""
    ha = r.table("ha", value, HA_KEYS)
    for required in ("endpoints", "group", "node"):
        if required not in ha:
            raise r.error(f"ha.{required}", "missing")
    backend = r.choice("ha.backend", ha.get("backend", "etcd"), ("etcd",))
    endpoints = r.strings("ha.endpoints", ha["endpoints"])
    for key, text in endpoints:
        try:
            EtcdClient([text])
        except StoreError:
            raise r.error(key, f"{r.show(text)} is not http://HOST:PORT") from None
    names = {}
    for name in ("group", "node"):
        text = ha[name]
        if not isinstance(text, str) or not _HA_NAME.fullmatch(text):
            raise r.error(f"ha.{name}", f"{r.show(text)} is not a name of letters, digits, "
                          f"'.', '_' and '-' (it is part of etcd keys)")  # fmt: skip
        names[name] = text
    vips = tuple(r.address(k, v) for k, v in r.strings("ha.virtual_addresses",
                                                       ha["virtual_addresses"])) \
        if "virtual_addresses" in ha else ()  # fmt: skip
    ttl = r.duration("ha.lease_ttl", ha.get("lease_ttl", "5s"))
    if ttl < MIN_LEASE_TTL:
        raise r.error("ha.lease_ttl", f"{ttl} s: etcd grants no lease under "
                      f"{MIN_LEASE_TTL:g} s (5 s rides out an etcd election)")  # fmt: skip
    interface = ha.get("interface")
    if interface is not None and (not isinstance(interface, str) or not interface
                                  or len(interface) > 15 or "/" in interface):  # fmt: skip
        raise r.error("ha.interface", f"{r.show(interface)} is not a device name")
    return HaConfig(backend=backend, endpoints=tuple(t for _, t in endpoints),
                    group=names["group"], node=names["node"], virtual_addresses=vips,
                    lease_ttl=ttl, interface=interface)  # fmt: skip


def _routing_table(r: ConfigReader, daemon: Mapping[str, Any]) -> tuple[int, int]:
    """``daemon.routing_table`` (0 for the main table) and ``routing_table_prio``, as
    strongSwan's ``charon.routing_table`` and ``routing_table_prio``."""
    table = r.integer("daemon.routing_table",
                      daemon.get("routing_table", DEFAULT_ROUTING_TABLE), U32_MAX)  # fmt: skip
    if table in RESERVED_ROUTING_TABLES:
        name = RESERVED_ROUTING_TABLES[table]
        raise r.error("daemon.routing_table", f"{table} is the kernel's {name!r} table; "
                      "give a table of larval's own (220), or 0 for routes in main")  # fmt: skip
    prio = r.integer("daemon.routing_table_prio",
                     daemon.get("routing_table_prio", DEFAULT_ROUTING_TABLE),
                     MAIN_RULE_PRIORITY - 1, 1)  # fmt: skip
    return table, prio


def _state(
    r: ConfigReader, daemon: Mapping[str, Any], *, ha: bool = False
) -> tuple[str | None, str | None]:
    """``daemon.state`` and ``daemon.state_key``: absolute paths of files, the key's
    defaulting to ``state.key`` beside the store. With `ha` the store is etcd's
    (`_ha_state`)."""
    paths: dict[str, str] = {}
    for name in ("state", "state_key"):
        if name not in daemon:
            continue
        key = f"daemon.{name}"
        path = _string(r, key, daemon[name])
        if "\0" in path:
            raise r.error(key, "a path holds no NUL character")
        if not os.path.isabs(path):
            raise r.error(key, f"{r.show(path)} is not an absolute path")
        if os.path.basename(path) in ("", ".", ".."):
            raise r.error(key, f"{r.show(path)} names a directory, not a file")
        paths[name] = os.path.normpath(path)
    if ha:
        return _ha_state(r, paths)
    if "state" not in paths:
        if "state_key" in paths:
            raise r.error("daemon.state_key", "given without daemon.state, the store it opens")
        return None, None
    state = paths["state"]
    key = paths.get("state_key", default_key_path(state))
    if key == state:
        raise r.error("daemon.state_key", f"{r.show(key)} is the store itself")
    return state, key


def _ha_state(r: ConfigReader, paths: Mapping[str, str]) -> tuple[None, str]:
    """With ``[ha]`` the state lives in etcd, sealed with ``daemon.state_key`` (the same
    key file on every node of the group); one store per gateway, so no ``daemon.state``."""
    if "state" in paths:
        raise r.error("daemon.state", "and [ha] both name a state store; a gateway has one "
                      "(remove daemon.state: with [ha] the state is in etcd)")  # fmt: skip
    if "state_key" not in paths:
        raise r.error("daemon.state_key", "missing: [ha] seals the state in etcd with it "
                      "(the same key file on every node of the group)")  # fmt: skip
    return None, paths["state_key"]


def _pools(r: _Collector, value: object) -> Pools:
    """``[pools]``, checked by `larval.pools` one pool at a time, then together (two
    pools may not overlap); each error named with the file."""
    if not isinstance(value, dict):
        r.note(PoolError("pools", f"{r.show(value)} is not a table of pools"))
        r.broken.add("pools")
        return Pools()
    good = []
    for name, table in value.items():
        with r.attempt("pools"):
            good.append(Pool.from_dict(name, table))
    with r.attempt("pools"):
        return Pools(good)
    return Pools()


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
        if isinstance(r, _Collector) and "pools" in r.broken:
            raise _Cascade from None  # the pool's own problem is named already
        raise r.error(e.key, str(e).removeprefix(f"{e.key}: ")) from None
    return dataclasses.replace(conn, pools=names)  # IKEv2's CP, IKEv1's Mode Config


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
    # IKEv2 asks in IKE_AUTH (CFG_REQUEST), IKEv1 by Mode Config after XAuth.
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


def _secrets(r: _Collector, value: object) -> list[Secret]:
    secrets: list[Secret] = []
    entries = r.get(lambda: list(r.tables("secrets", value)), None)
    if entries is None:
        r.broken.add("secrets")
        return secrets
    for name, entry in entries:
        with r.attempt("secrets"):
            secrets.append(_secret(r, name, entry))
    return secrets


def _secret(r: ConfigReader, name: str, entry: object) -> Secret:
    e = r.table(f"secrets.{name}", entry, SECRET_KEYS)
    ids = [v for _, v in r.strings(f"secrets.{name}.ids", e["ids"])] if "ids" in e else []
    secret = e.get("secret")
    if not isinstance(secret, str) or not secret:
        # Never the value: it may be the secret, with a typo.
        raise r.error(f"secrets.{name}.secret", "a non-empty string is needed")
    return Secret(name, tuple(ids), secret.encode())


def _eap_secrets(r: ConfigReader, value: object) -> dict[str, str]:
    """``[secrets.eap-NAME] id = "carol"  secret = "..."``: each EAP identity's password;
    a second secret for the same identity is refused."""
    passwords: dict[str, str] = {}
    where: dict[str, str] = {}
    if not isinstance(value, dict):
        return passwords  # `_secrets` names what is wrong
    for name, entry in r.tables("secrets", value):
        if not name.startswith(USER_SECRET_PREFIXES):
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


def _with_eap(r: _Collector, name: str, value: object, conn: Connection,
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
        return _with_eap_only(r, name, conn, local, remote)
    ike = conn.ike
    if eap_local:
        eap_id = local.eap_id or local.id or str(ike.local_addr)
        if eap_id == "%any":
            raise r.error(f"{local.key}.eap_id", "%any is the gateway's; a client names itself")
        _check_eap_tls(r, local, remote)
        if eap_id not in passwords and not _eap_tls(local):
            raise _unless_cascade(r, f"{local.key}.eap_id",
                                  f"no [secrets.eap-NAME] has id = {eap_id!r}")  # fmt: skip
        own = {eap_id: passwords[eap_id]} if eap_id in passwords else {}
        auth = EapAuth(cast(Any, local.method), eap_id, own)
        ike = dataclasses.replace(ike, local_eap=auth)
    else:
        if local.method == "psk":
            r.warn(f"connections.{name}", "the gateway proves itself to EAP clients with a "
                   "PSK; RFC 7296 §2.16 wants a public key (a certificate)")  # fmt: skip
        _check_eap_tls(r, remote, local)
        auth = EapAuth(cast(Any, remote.method), remote.eap_id, dict(passwords),
                       retries=remote.eap_retries)  # fmt: skip
        ike = dataclasses.replace(ike, remote_eap=auth)
    return dataclasses.replace(conn, ike=ike)


def _with_eap_only(r: ConfigReader, name: str, conn: Connection, local: AuthSide,
                   remote: AuthSide) -> Connection:  # fmt: skip
    """Both ends by EAP: EAP-only authentication (RFC 5998), as strongSwan's
    ``local = { auth = "eap-tls", certs = [...] }`` with ``remote = { auth = "eap-tls" }``.
    It needs a mutual method that derives an MSK (§4): EAP-TLS, not EAP-MSCHAPv2 nor
    EAP-MD5. The end's ``certs`` is its TLS certificate, as client or as gateway; the
    ``remote`` side's ``cacerts`` those the peer's must chain to. Either end may be the
    client (the initiator) or the gateway."""
    for side in (remote, local):
        if side.method != "eap-tls":
            raise r.error(f"{side.key}.auth", "both ends by EAP: EAP-only authentication "
                          '(RFC 5998) needs a mutual method, auth = "eap-tls" on both sides '
                          f'(EAP-MSCHAPv2 and EAP-MD5 are not), not "{side.method}"; or '
                          'let the gateway prove itself with auth = "pubkey"')  # fmt: skip
    if not local.files:
        raise r.error(f"{local.key}.certs", "missing: EAP-TLS needs this end's certificate")
    eap_id = local.eap_id or local.id
    if eap_id == "%any":
        raise r.error(f"{local.key}.eap_id", "%any is the gateway's; a client names itself")
    ike = dataclasses.replace(
        conn.ike,
        local_eap=EapAuth("eap-tls", eap_id),
        remote_eap=EapAuth("eap-tls", remote.eap_id),
    )
    return dataclasses.replace(conn, ike=ike)


_Written = dict[str, list[tuple[str, object]]]


def _rounds_written(r: ConfigReader, name: str, value: object) -> tuple[object, _Written]:
    """A connection's authentication rounds as written (RFC 4739: ``local = [{...}, {...}]``
    or swanctl's ``local-1 = {...}``, ``local-2 = {...}``), each side's as (key, table) in
    order, and the connection's entry with the first round of each side as its ``local`` and
    ``remote``, as the other readers take it. Every side is checked here, so that a mistake
    is named by the key written."""
    base = f"connections.{name}"
    rounds: _Written = {"local": [], "remote": []}
    if not isinstance(value, dict):
        return value, rounds  # `_connection` names what is wrong
    entry = {k: v for k, v in value.items() if not _ROUND_KEY.fullmatch(k)}
    for side in rounds:
        written = rounds[side]
        listed = value.get(side)
        if isinstance(listed, list):
            if not listed:
                raise r.error(f"{base}.{side}", "an empty list; write a table for each round")
            written.extend((f"{base}.{side}[{i}]", t) for i, t in enumerate(listed))
        elif side in value:
            written.append((f"{base}.{side}", listed))
        suffixed = [(f"{base}.{k}", v) for k, v in value.items()
                    if k.startswith(f"{side}-") and _ROUND_KEY.fullmatch(k)]  # fmt: skip
        if suffixed and isinstance(listed, list):
            raise r.error(suffixed[0][0], f"{base}.{side} lists the rounds already; write them "
                          f"one way: a list, or {side}-1, {side}-2 tables")  # fmt: skip
        written.extend(suffixed)
        for key, table in written:
            _side(r, key, table)
        if written:
            entry[side] = written[0][1]
    return entry, rounds


def _with_rounds(r: ConfigReader, name: str, conn: Connection, written: _Written,
                 passwords: Mapping[str, str]) -> Connection:  # fmt: skip
    """`conn` with its authentication rounds, where it has more than one on a side or an
    XAuth round. IKEv2 (RFC 4739): the further rounds are EAP, as a certificate and then
    EAP-MSCHAPv2. IKEv1: a round of its own, then XAuth (or XAuth alone against a
    certificate: hybrid)."""
    base = f"connections.{name}"
    sides = {s: [_side(r, k, t) for k, t in written[s]] for s in written}
    every = [side for listed in sides.values() for side in listed]
    for side in every:
        if side.method == "xauth" and conn.version != 1:
            raise r.error(f"{side.key}.auth", 'xauth is IKEv1\'s: set version = 1; IKEv2 '
                          'authenticates a user by EAP, as auth = "eap-mschapv2"')  # fmt: skip
    if all(len(listed) < 2 for listed in sides.values()) and \
            all(side.method != "xauth" for side in every):  # fmt: skip
        return conn
    ike = conn.ike
    rounds: dict[str, tuple[AuthRound, ...]] = {}
    for s, listed in sides.items():
        if not listed:
            continue
        for i, side in enumerate(listed[1:], start=2):
            if conn.version == 0:
                raise r.error(f"{side.key}", "more than one round needs one IKE version: "
                              "set version = 2 (RFC 4739) or 1 (XAuth)")  # fmt: skip
            if conn.version == 1 and (i > 2 or side.method != "xauth"):
                raise r.error(f"{side.key}.auth", "IKEv1 has one round of its own, then "
                              'XAuth: a second round is "xauth", and no third')  # fmt: skip
            if conn.version == 2 and listed[0].method in EAP_METHODS:
                raise r.error(f"{listed[0].key}.auth", "the first of several rounds is a "
                              'certificate or the PSK (as auth = "pubkey"), then EAP')  # fmt: skip
            if conn.version == 2 and side.method not in EAP_METHODS:
                raise r.error(f"{side.key}.auth", f'"{side.method}" in round {i}: a further '
                              "round is EAP (a certificate, then EAP-MSCHAPv2); larval takes "
                              "no second certificate or PSK round")  # fmt: skip
        first = listed[0]
        out = [AuthRound(first.method, eap=ike.local_eap if s == "local" else ike.remote_eap,
                         xauth_id=first.xauth_id)]  # fmt: skip
        for side in listed[1:]:
            out.append(_further_round(r, s, side, listed[0], passwords))
        rounds[s] = tuple(out)
    ike = dataclasses.replace(ike, local_rounds=rounds.get("local", ()),
                              remote_rounds=rounds.get("remote", ()))  # fmt: skip
    log.debug("%s: %s: %d local and %d remote authentication rounds", r.source, base,
              len(ike.local_rounds), len(ike.remote_rounds))  # fmt: skip
    return dataclasses.replace(conn, ike=ike)


def _further_round(r: ConfigReader, s: str, side: AuthSide, first: AuthSide,
                   passwords: Mapping[str, str]) -> AuthRound:  # fmt: skip
    """A round after the first: its identity, its EAP's or XAuth's name."""
    method = side.method
    if s == "local":
        ident = _local_identity(r, f"{side.key}.id", side.id) if side.id else None
        if method == "xauth":
            return AuthRound(method, ident, xauth_id=side.xauth_id)
        eap_id = side.eap_id or side.id or first.id
        if eap_id is None:
            raise r.error(f"{side.key}.eap_id", "missing: the EAP identity this end gives")
        if eap_id == "%any":
            raise r.error(f"{side.key}.eap_id", "%any is the gateway's; a client names itself")
        if eap_id not in passwords:
            raise _unless_cascade(r, f"{side.key}.eap_id",
                                  f"no [secrets.eap-NAME] has id = {eap_id!r}")  # fmt: skip
        eap = EapAuth(cast(Any, method), eap_id, {eap_id: passwords[eap_id]})
        return AuthRound(method, ident, eap=eap)
    match = _remote_identity(r, f"{side.key}.id", side.id) if side.id else None
    if method == "xauth":
        return AuthRound(method, id_match=match, xauth_id=side.xauth_id)
    eap = EapAuth(cast(Any, method), side.eap_id, dict(passwords), retries=side.eap_retries)
    return AuthRound(method, id_match=match, eap=eap)


def _with_xauth(r: ConfigReader, name: str, value: object, conn: Connection,
                passwords: Mapping[str, str]) -> Connection:  # fmt: skip
    """`conn` with IKEv1 XAuth where a round is ``auth = "xauth"``: a gateway checks every
    user's password of ``[secrets.xauth-NAME]`` and ``[secrets.eap-NAME]``, a client gives
    its own; and ``pull = false``: the gateway pushes Mode Config (CFG_SET)."""
    base = f"connections.{name}"
    c = value if isinstance(value, dict) else {}
    ike = conn.ike
    if "pull" in c:
        pull = _bool(r, f"{base}.pull", c["pull"])
        if conn.version != 1:
            raise r.error(f"{base}.pull", "pull is IKEv1's Mode Config: set version = 1")
        ike = dataclasses.replace(ike, mode_config_push=not pull)
    remote = next((x for x in ike.remote_rounds if x.method == "xauth"), None)
    if remote is not None:
        ike = dataclasses.replace(ike, remote_xauth=XauthAuth(remote.xauth_id, dict(passwords)))
    local = next((x for x in ike.local_rounds if x.method == "xauth"), None)
    if local is not None:
        first = c.get("local")
        first_id = first[0].get("id") if isinstance(first, list) and first else None
        user = local.xauth_id or (first_id if isinstance(first_id, str) else None)
        user = user or str(ike.local_addr)
        where = f"{base}.local"
        if user == "%any":
            raise r.error(where, "the xauth round's xauth_id %any is the gateway's; a client "
                          "names itself")  # fmt: skip
        if user not in passwords:
            raise _unless_cascade(r, where, f"the xauth round's user {user!r}: no "
                                  "[secrets.xauth-NAME] "
                                  f"or [secrets.eap-NAME] has id = {user!r}")  # fmt: skip
        ike = dataclasses.replace(ike, local_xauth=XauthAuth(user, {user: passwords[user]}))
    return dataclasses.replace(conn, ike=ike)


def _eap_tls(side: AuthSide) -> bool:
    """Does this EAP side run EAP-TLS: ``eap-tls``, or ``eap`` with certificates?"""
    return side.method == "eap-tls" or (side.method == "eap" and bool(side.files))


def _check_eap_tls(r: ConfigReader, eap: AuthSide, other: AuthSide) -> None:
    """EAP-TLS needs the other side's certificate: the gateway is the TLS server with
    its IKE certificate, and the client checks that certificate as it checks IKE's."""
    if not _eap_tls(eap) or other.method == "pubkey":
        return
    if eap.key.endswith(".remote"):
        why = "the gateway is the TLS server with its own certificate"
    else:
        why = "the client checks the gateway's TLS certificate by its CAs"
    raise r.error(f"{other.key}.auth", f'EAP-TLS: {why}; set auth = "pubkey" here')


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
    local_matches, local_addr = _address_matches(r, base, c, "local_addrs")
    remote_matches, remote_addr = _address_matches(r, base, c, "remote_addrs")
    if local_addr is None:
        raise r.error(f"{base}.local_addrs", "needs one address of this host (the tunnels' "
                      "endpoint); subnets, ranges and %any may follow it")  # fmt: skip
    # A connection for many peers (%any, a subnet, a range) answers only; its IKE SAs
    # take the address each peer comes from.
    remote_addr = remote_addr or ipaddress.ip_address("::" if local_addr.version == 6
                                                      else "0.0.0.0")  # fmt: skip
    local_addrs, remote_addrs = [local_addr], [remote_addr]
    proposals = _proposals(
        r, f"{base}.proposals", c.get("proposals", ["aes128-sha256-x25519"]), parse_ike_proposal
    )
    local = _side(r, f"{base}.local", c.get("local", {}))
    remote = _side(r, f"{base}.remote", c.get("remote", {}))
    hybrid = "xauth" in (local.method, remote.method)  # a certificate against XAuth
    if version != 2 and local.method != remote.method and not hybrid:
        # RFC 2409 §5: one authentication method, negotiated in the SA, for both ends.
        answers = "IKEv1" if version == 1 else "IKEv1 (which version = 0 answers)"
        raise r.error(f"{base}.remote.auth", f"{answers} authenticates both ends alike: "
                      f"local is {local.method}, remote {remote.method}")  # fmt: skip
    # strongSwan's defaults: a PSK side is its address; a local certificate side its
    # certificate's subject DN (set once the certificate is known); a remote certificate
    # side anyone whose certificate carries the ID it sends.
    local_text = local.id or str(local_addrs[0])
    local_id = _local_identity(r, f"{base}.local.id", local_text)
    remote_text = remote.id or (
        str(remote_addrs[0])
        if remote.method == "psk" and not remote_addr.is_unspecified else "%any"
    )  # fmt: skip
    remote_match = _remote_identity(r, f"{base}.remote.id", remote_text)
    # Per connection, not per secret: the risk is the connection's (its AUTH exchange is
    # what an attacker tries short PSKs against), and a secret later shared with another
    # connection must not carry the acceptance over to it.
    short_psk = _read(r, lambda: _bool(r, f"{base}.short_psk", c.get("short_psk", False)), True)
    psk = b""
    if "psk" in (local.method, remote.method):
        # Only this end proves itself with a PSK (the peer with a certificate): the PSK
        # is its own, found by its identity.
        owner = "local" if remote.method != "psk" or remote_text == "%any" else "remote"
        with r.attempt() if isinstance(r, _Collector) else nullcontext():
            psk = _psk(r, base, secrets, local_text, remote_text, short_psk, owner)
    send_cert = _read(r, lambda: r.choice(f"{base}.send_cert", c.get("send_cert", "ifasked"),
                                          SEND_CERT), "ifasked")  # fmt: skip
    send_certreq = _read(r, lambda: _bool(r, f"{base}.send_certreq",
                                          c.get("send_certreq", True)), True)  # fmt: skip
    cert_auth = None
    if "pubkey" in (local.method, remote.method) or _eap_tls(local) or _eap_tls(remote):
        cert_auth = CertAuth(
            local if local.method == "pubkey" or _eap_tls(local) else None,
            remote if remote.method == "pubkey" or _eap_tls(remote) else None,
            cast(SendCert, send_cert),
            send_certreq,
        )
    fragmentation = _read(r, lambda: r.choice(f"{base}.fragmentation", c.get("fragmentation",
                                              "yes"), ("yes", "no")), "yes")  # fmt: skip
    if "mobike" in c:
        _read(r, lambda: _bool(r, f"{base}.mobike", c["mobike"]), False)  # accepted; no MOBIKE yet
    encap = _read(r, lambda: _bool(r, f"{base}.encap", c.get("encap", False)), False)
    dpd_delay = _read(r, lambda: r.duration(f"{base}.dpd_delay", c.get("dpd_delay", 0)), 0)
    rekey_time = _read(r, lambda: r.duration(f"{base}.rekey_time", c.get("rekey_time", "4h")), 0)
    ike = IkeConfig(
        name=name,
        local_addr=local_addrs[0],
        remote_addr=remote_addrs[0],
        local_id=local_id,
        remote_id=remote_match.exact,
        psk=psk,
        proposals=tuple(proposals),
        encap=encap,
        dpd_delay=float(dpd_delay),
        rekey_time=float(rekey_time),
        fragmentation=fragmentation == "yes",
        # Always: an exact identity too is matched as strongSwan matches it, a DN as a name
        # (its attributes in order, whatever string types encode them), names in any case.
        remote_id_match=remote_match,
        local_addrs=local_matches,
        remote_addrs=remote_matches,
    )
    children: list[ChildConfig] = []
    start_action: dict[str, str] = {}
    policies: list[Policy] = []
    for child_name, child_value in r.tables(f"{base}.children", c.get("children", {})):
        with r.attempt() if isinstance(r, _Collector) else nullcontext():
            child, start_action[child_name], written = _child_and_policies(
                r, name, child_name, child_value, local_addrs[0], remote_addrs[0])  # fmt: skip
            children.append(child)
            policies.extend(written)
    aggressive = _read(r, lambda: _bool(r, f"{base}.aggressive", c.get("aggressive", False)), False)
    if aggressive and version != 1:
        raise r.error(f"{base}.aggressive", "Aggressive Mode is IKEv1's: set version = 1")
    conn = Connection(ike, tuple(children), start_action, version, aggressive)
    return conn, policies, cert_auth


def _child_and_policies(
    r: ConfigReader, name: str, child_name: str, child_value: object, local: IPAddress,
    remote: IPAddress,
) -> tuple[ChildConfig, str, list[Policy]]:  # fmt: skip
    """One child, its start_action, and the policies the stack gets for it."""
    ckey = f"connections.{name}.children.{child_name}"
    child, action = _child(r, ckey, child_name, child_value, local, remote)
    if isinstance(r, _Collector) and any(b.startswith(f"{ckey}.") for b in r.broken):
        raise _Cascade  # a proposal is named already; the policy's reader would again
    if remote.is_unspecified and (
        action == "start" or (action == "trap" and child.mode == "tunnel")
    ):
        # No one peer to open an IKE SA to, nor, in tunnel mode, to ACQUIRE an SA with
        # (the stack drops what a tunnel to any peer has no SA for); a transport-mode
        # trap ACQUIREs for each packet's own peer.
        raise r.error(f"{ckey}.start_action", f"{action!r} needs one peer address in "
                      "remote_addrs (or, for trap, mode = \"transport\"); a connection "
                      'for many peers answers: start_action = "none"')  # fmt: skip
    policy = {k: v for k, v in r.table(ckey, child_value, CHILD_KEYS).items()
              if k in ("local_ts", "remote_ts", "esp_proposals", "rekey_time", "life_time",
                       "rekey_bytes", "life_bytes", "replay_window")}  # fmt: skip
    policy.update(mode=child.mode, local_addrs=[str(local)], remote_addrs=[_tunnel_remote(remote)])
    written = policies_from_entry(r, ckey, f"{name}/{child_name}", policy)
    return _child_as_written(child, written), action, written


def _read(r: ConfigReader, read: Callable[[], _T], default: _T) -> _T:
    """`read()`; a reader that collects notes its problem and goes on with `default`."""
    return r.get(read, default) if isinstance(r, _Collector) else read()


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
        raise _unless_cascade(r, f"{base}.{owner}.id",
                              f"no [secrets] entry holds a PSK for {wanted}")  # fmt: skip
    if len(secret.psk) < MIN_PSK_LENGTH and not short_psk:
        size = f"{len(secret.psk)} byte" + ("" if len(secret.psk) == 1 else "s")
        raise r.error(
            f"secrets.{secret.name}.secret",
            f"{size}, shorter than {MIN_PSK_LENGTH}; use a longer random secret, "
            f"or set {base}.short_psk = true",
        )
    return secret.psk


def _address_matches(
    r: ConfigReader, base: str, c: Mapping[str, Any], key: str
) -> tuple[tuple[AddressMatch, ...], IPAddress | None]:
    """``local_addrs`` or ``remote_addrs``: addresses, subnets, ranges or ``%any``, as
    swanctl.conf takes them, and the first address among them (None: there is none)."""
    if key not in c:
        raise r.error(f"{base}.{key}", "missing; the connection needs this IKE address")
    matches = []
    for k, text in r.strings(f"{base}.{key}", c[key]):
        try:
            matches.append(AddressMatch.parse(text))
        except ValueError as e:
            raise r.error(k, str(e)) from None
    first = next((m.exact for m in matches if m.exact is not None), None)
    return tuple(matches), first


def _tunnel_remote(remote: IPAddress) -> str:
    """The remote tunnel endpoint of a child's policy: the peer, or ``%any`` where the
    connection is for many (the stack finds each peer's SA by its inner selectors)."""
    if not remote.is_unspecified:
        return str(remote)
    return "%any6" if remote.version == 6 else "%any"


def _proposals(r: ConfigReader, key: str, value: object, parse: Callable[[str], _T]) -> list[_T]:
    """Each string of a proposals list parsed by `parse`; a bad one is named by its index
    (every bad one, by a reader that collects), and a weak algorithm larval does not offer
    is named with why."""
    out = []
    for k, text in r.strings(key, value):
        try:
            out.append(parse(text))
        except (IkeProposalError, ProposalError) as e:
            error = r.error(k, f"{refused_why(text)}{e}")
            if not isinstance(r, _Collector):
                raise error from None
            r.note(error)
            r.broken.add(k)
    if isinstance(r, _Collector) and not out and any(b.startswith(key) for b in r.broken):
        raise _Cascade  # every proposal is named already
    return out


def _side(r: ConfigReader, key: str, value: object) -> AuthSide:
    """A ``local`` or ``remote`` table: how that end authenticates, and with what."""
    table = r.table(key, value, AUTH_KEYS + EAP_KEYS + XAUTH_KEYS)
    word = table.get("auth", "psk")
    if not isinstance(word, str):
        raise r.error(f"{key}.auth", f"{r.show(word)} is not an auth method such as psk, pubkey")
    method: Literal["psk", "pubkey", "eap-mschapv2", "eap-md5", "eap-tls", "eap", "xauth"]
    schemes: tuple[str, ...]
    if word in EAP_METHODS or word == "xauth":
        method, schemes = cast(Literal["eap-mschapv2", "eap-md5", "eap-tls", "eap", "xauth"],
                               word), ()  # fmt: skip
    else:
        try:
            method, schemes = parse_auth(word)
        except ValueError as e:
            raise r.error(f"{key}.auth", f"{e}; or for EAP {', '.join(EAP_METHODS)}; "
                          "or xauth (IKEv1)") from None  # fmt: skip
    is_local = key.rsplit(".", 1)[-1].startswith("local")
    for eap_key in EAP_KEYS:
        if eap_key in table and method not in EAP_METHODS:
            raise r.error(f"{key}.{eap_key}", f'{eap_key} is for auth = "eap-...", not "{word}"')
    retries = r.integer(f"{key}.eap_retries", table.get("eap_retries", 0), MAX_EAP_RETRIES)
    if retries and is_local:
        raise r.error(f"{key}.eap_retries", "the gateway's (remote side): how many wrong "
                      "passwords it lets a client retry")  # fmt: skip
    if retries and method == "eap-md5":
        raise r.error(f"{key}.eap_retries", "EAP-MD5 has no retry; EAP-MSCHAPv2 has")
    if "xauth_id" in table and method != "xauth":
        raise r.error(f"{key}.xauth_id", f'xauth_id is for auth = "xauth", not "{word}"')
    ident = table.get("id")
    if ident is not None and (not isinstance(ident, str) or not ident):
        raise r.error(f"{key}.id", f"{r.show(ident)} is not an identity: an address or a name")
    mine, other = ("certs", "cacerts") if is_local else ("cacerts", "certs")
    if other in table:
        side = "local" if other == "certs" else "remote"
        raise r.error(f"{key}.{other}", f"only the {side} side has {other}; this side has {mine}")
    files = tuple(text for _, text in r.strings(f"{key}.{mine}", table[mine])) \
        if mine in table else ()  # fmt: skip
    if files and method not in ("pubkey", "eap-tls", "eap"):
        raise r.error(f"{key}.{mine}", f'{mine} are for auth = "pubkey", not "{method}"; '
                      'and for EAP-TLS, auth = "eap-tls"')  # fmt: skip
    if method == "eap-tls" and mine == "certs" and not files:
        raise r.error(f"{key}.certs", 'missing; auth = "eap-tls" needs this end\'s certificate')
    eap_id = table.get("eap_id")
    if eap_id is not None and (not isinstance(eap_id, str) or not eap_id):
        raise r.error(f"{key}.eap_id", f"{r.show(eap_id)} is not an EAP identity, or %any")
    xauth_id = table.get("xauth_id")
    if xauth_id is not None and (not isinstance(xauth_id, str) or not xauth_id):
        raise r.error(f"{key}.xauth_id", f"{r.show(xauth_id)} is not an XAuth user name")
    return AuthSide(key, method, schemes, ident, files, eap_id=eap_id, eap_retries=retries,
                    xauth_id=xauth_id)  # fmt: skip


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
    if remote.is_unspecified and "remote_ts" not in ch:
        # The peer's address is the default, and the connection does not know it.
        raise r.error(f"{ckey}.remote_ts", "missing; a connection with remote_addrs of many "
                      "peers (%any, a subnet, a range) names the networks it lets them use, "
                      "such as its pool's")  # fmt: skip
    remote_ts = _networks(r, f"{ckey}.remote_ts", ch.get("remote_ts", [str(remote)]))
    rekey = r.duration(f"{ckey}.rekey_time", ch.get("rekey_time", "1h"))
    # swanctl: life_time defaults to rekey_time + 10 %, kept within PF_KEY's 64 bits.
    life = r.duration(f"{ckey}.life_time", ch.get("life_time", min(rekey + rekey // 10, U64_MAX)))
    inactivity = r.duration(f"{ckey}.inactivity", ch.get("inactivity", 0))
    child = ChildConfig(name, tuple(suites), local_ts, remote_ts, mode, rekey, life,
                        inactivity=inactivity)  # fmt: skip
    return child, start_action


def _child_as_written(child: ChildConfig, policies: list[Policy]) -> ChildConfig:
    """`child` with the replay window and byte limits its policies were written with
    (checked there), so that a CHILD_SA no ACQUIRE asked for (``start_action = "start"``,
    a responder's) is installed with them too, not with the defaults."""
    if not policies:
        return child
    first = policies[0]
    return dataclasses.replace(
        child,
        replay_window=first.replay_window,
        rekey_bytes=first.lifetimes.rekey_bytes,
        life_bytes=first.lifetimes.life_bytes,
    )


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


def _user(r: ConfigReader, value: object) -> str:
    """``daemon.user``: a user's name (whether it exists is `larval run`'s to say)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*\$?", value):
        raise r.error("daemon.user", f"{r.show(value)} is not a user name")
    return value


def _string(r: ConfigReader, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise r.error(key, f"{r.show(value)} is not a path")
    return value
