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

Every child also becomes a PROTECT policy of the stack (both directions), built by the
policy file's own reader, so the two files use the same words the same way. Every
error names the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from typing import Any

from larval.crypto.ike_errors import IkeProposalError
from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.crypto.proposals import ProposalError
from larval.errors import LarvalError
from larval.ikev2.config import ChildConfig, IkeConfig, identity
from larval.keymgr.manager import Connection
from larval.spd import Policy, policies_from_dict
from larval.spd.config import ConfigReader
from larval.spd.errors import PolicyFileError

DAEMON_KEYS = ("addresses", "tun", "tun_addresses", "control_socket", "pfkey_socket", "mtu",
               "plain_esp", "retransmit_timeout", "retransmit_tries", "fragment_size")  # fmt: skip
CONNECTION_KEYS = ("version", "local_addrs", "remote_addrs", "proposals", "encap", "dpd_delay",
                   "local", "remote", "children", "rekey_time", "mobike", "aggressive",
                   "fragmentation")  # fmt: skip
CHILD_KEYS = ("local_ts", "remote_ts", "esp_proposals", "mode", "start_action", "rekey_time",
              "life_time", "rekey_bytes", "life_bytes", "replay_window", "inactivity")  # fmt: skip
AUTH_KEYS = ("auth", "id")
SECRET_KEYS = ("ids", "secret")


class ConfigError(LarvalError):
    """The daemon's configuration is wrong; the message names file and key."""


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


def load_config(path: str) -> DaemonConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not TOML: {e}") from None
    try:
        return parse_config(data, path)
    except PolicyFileError as e:
        raise ConfigError(str(e)) from None


def parse_config(data: dict[str, Any], source: str) -> DaemonConfig:
    r = ConfigReader(source)
    top = r.table("", data, ("daemon", "connections", "secrets"))
    daemon = r.table("daemon", top.get("daemon", {}), DAEMON_KEYS)
    addresses = [str(r.address(k, v)) for k, v in r.strings("daemon.addresses",
                                                             daemon.get("addresses", []))] \
        if "addresses" in daemon else []  # fmt: skip
    tun = daemon.get("tun")
    if tun is not None and not isinstance(tun, str):
        raise r.error("daemon.tun", "is not a device name")
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
        mtu=r.integer("daemon.mtu", daemon.get("mtu", 1400), 65535),
        plain_esp=_bool(r, "daemon.plain_esp", daemon.get("plain_esp", False)),
    )  # fmt: skip
    secrets_table = r.table("secrets", top.get("secrets", {}), tuple(top.get("secrets", {})))
    secrets = []
    for name, entry in secrets_table.items():
        e = r.table(f"secrets.{name}", entry, SECRET_KEYS)
        ids = (
            [v for _, v in r.strings(f"secrets.{name}.ids", e.get("ids", []))] if "ids" in e else []
        )
        secret = e.get("secret")
        if not isinstance(secret, str) or not secret:
            raise r.error(f"secrets.{name}.secret", "a non-empty string is needed")
        secrets.append((ids, secret.encode()))
    connections = r.table("connections", top.get("connections", {}),
                          tuple(top.get("connections", {})))  # fmt: skip
    # strongswan.conf's charon.retransmit_timeout and retransmit_tries, daemon-wide.
    timeout = daemon.get("retransmit_timeout", 4.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise r.error("daemon.retransmit_timeout", f"{timeout!r} is not a positive number")
    tries = r.integer("daemon.retransmit_tries", daemon.get("retransmit_tries", 5), 100)
    # strongswan.conf's charon.fragment_size: the IP datagram of IKE sent whole, at most.
    fragment_size = r.integer("daemon.fragment_size", daemon.get("fragment_size", 1280), 65535)
    if fragment_size < 128:
        raise r.error("daemon.fragment_size", f"{fragment_size} bytes leave no room for IKE")
    for name, entry in connections.items():
        conn, policy_entries = _connection(r, name, entry, secrets)
        ike = dataclasses.replace(conn.ike, retransmit_timeout=float(timeout),
                                  retransmit_tries=tries, fragment_size=fragment_size)  # fmt: skip
        conn = dataclasses.replace(conn, ike=ike)
        config.connections.append(conn)
        config.policies.extend(policies_from_dict(policy_entries, source))
    if config.connections and not config.addresses:
        config.addresses = sorted({str(c.ike.local_addr) for c in config.connections})
    return config


def _connection(
    r: ConfigReader, name: str, value: object, secrets: list[tuple[list[str], bytes]]
) -> tuple[Connection, dict[str, dict[str, Any]]]:
    base = f"connections.{name}"
    c = r.table(base, value, CONNECTION_KEYS)
    version = c.get("version", 2)
    if version not in (0, 1, 2):
        raise r.error(f"{base}.version", f"{version!r} is not one of 0, 1, 2")
    local_addrs = [
        r.address(k, v) for k, v in r.strings(f"{base}.local_addrs", c.get("local_addrs"))
    ]
    remote_addrs = [r.address(k, v) for k, v in r.strings(f"{base}.remote_addrs",
                                                          c.get("remote_addrs"))]  # fmt: skip
    proposals = []
    for k, text in r.strings(f"{base}.proposals", c.get("proposals", ["aes128-sha256-x25519"])):
        try:
            proposals.append(parse_ike_proposal(text))
        except (IkeProposalError, ProposalError) as e:
            raise r.error(k, str(e)) from None
    local = r.table(f"{base}.local", c.get("local", {}), AUTH_KEYS)
    remote = r.table(f"{base}.remote", c.get("remote", {}), AUTH_KEYS)
    for side, table in (("local", local), ("remote", remote)):
        r.choice(f"{base}.{side}.auth", table.get("auth", "psk"), ("psk",))
    local_id = str(local.get("id", local_addrs[0]))
    remote_id = str(remote.get("id", remote_addrs[0]))
    psk = next((s for ids, s in secrets if not ids or {local_id, remote_id} <= set(ids)
                or remote_id in ids), None)  # fmt: skip
    if psk is None:
        raise r.error(f"{base}.remote.id", f"no [secrets] entry holds a PSK for {remote_id}")
    fragmentation = r.choice(f"{base}.fragmentation", c.get("fragmentation", "yes"), ("yes", "no"))
    ike = IkeConfig(
        name=name,
        local_addr=local_addrs[0],
        remote_addr=remote_addrs[0],
        local_id=identity(local_id),
        remote_id=identity(remote_id),
        psk=psk,
        proposals=tuple(proposals),
        encap=_bool(r, f"{base}.encap", c.get("encap", False)),
        dpd_delay=float(r.duration(f"{base}.dpd_delay", c.get("dpd_delay", 0))),
        rekey_time=float(r.duration(f"{base}.rekey_time", c.get("rekey_time", "4h"))),
        fragmentation=fragmentation == "yes",
    )
    children: list[ChildConfig] = []
    start_action: dict[str, str] = {}
    policy_entries: dict[str, dict[str, Any]] = {}
    for child_name, child_value in r.table(f"{base}.children", c.get("children", {}),
                                           tuple(c.get("children", {}))).items():  # fmt: skip
        ckey = f"{base}.children.{child_name}"
        ch = r.table(ckey, child_value, CHILD_KEYS)
        suites = []
        for k, text in r.strings(f"{ckey}.esp_proposals", ch.get("esp_proposals", ["aes128gcm16"])):
            try:
                suites.append(esp_proposal_transforms(text))
            except (IkeProposalError, ProposalError) as e:
                raise r.error(k, str(e)) from None
        mode = r.choice(f"{ckey}.mode", ch.get("mode", "tunnel"), ("tunnel", "transport"))
        start_action[child_name] = r.choice(f"{ckey}.start_action", ch.get("start_action", "none"),
                                            ("none", "trap", "start"))  # fmt: skip
        local_ts = _networks(r, f"{ckey}.local_ts", ch.get("local_ts", [str(local_addrs[0])]))
        remote_ts = _networks(r, f"{ckey}.remote_ts", ch.get("remote_ts", [str(remote_addrs[0])]))
        rekey = r.duration(f"{ckey}.rekey_time", ch.get("rekey_time", "1h"))
        life = r.duration(f"{ckey}.life_time", ch.get("life_time", rekey + rekey // 10))
        inactivity = r.duration(f"{ckey}.inactivity", ch.get("inactivity", 0))
        children.append(
            ChildConfig(child_name, tuple(suites), local_ts, remote_ts, mode, rekey, life,
                        inactivity=inactivity)
        )  # fmt: skip
        policy = {k: ch[k] for k in ("local_ts", "remote_ts", "esp_proposals", "rekey_time",
                                     "life_time", "rekey_bytes", "life_bytes", "replay_window")
                  if k in ch}  # fmt: skip
        policy.update(mode=mode, local_addrs=[str(local_addrs[0])],
                      remote_addrs=[str(remote_addrs[0])])  # fmt: skip
        policy_entries[f"{name}/{child_name}"] = policy
    aggressive = _bool(r, f"{base}.aggressive", c.get("aggressive", False))
    if aggressive and version != 1:
        raise r.error(f"{base}.aggressive", "Aggressive Mode is IKEv1's: set version = 1")
    conn = Connection(ike, tuple(children), start_action, version, aggressive)
    return conn, policy_entries


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
        raise r.error(key, f"{value!r} is not true or false")
    return value


def _string(r: ConfigReader, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise r.error(key, "is not a path")
    return value
