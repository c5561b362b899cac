"""The policy file: SPD entries in TOML, with swanctl.conf's key names and meanings.

::

    [policies.s2s]
    local_ts = ["203.0.113.0/24"]          # swanctl traffic selectors: prefix[proto/port]
    remote_ts = ["198.51.100.0/24[tcp/80]"]
    action = "protect"                     # protect | bypass | discard
    mode = "tunnel"                        # tunnel | transport
    local_addrs = ["192.0.2.2"]            # tunnel endpoints (the first of each)
    remote_addrs = ["192.0.2.1"]           # or "%any" ("%any4", "%any6"): any peer
    esp_proposals = ["aes128gcm16", "aes128-sha256"]
    priority = 100                         # lower wins; default from specificity
    rekey_time = "1h"                      # soft lifetime: s, m, h, d
    life_time = "66m"                      # hard lifetime; default rekey_time + 10 %
    rekey_bytes = 0                        # soft byte limit, 0 = none
    life_bytes = 0                         # hard; default rekey_bytes + 10 %
    replay_window = 32

Each entry becomes one outbound and one inbound `Policy` per pair of local and remote
traffic selectors of the same address family (the inbound one is the mirror image: the
same local/remote selector, for packets coming in). ``local_ts`` and ``remote_ts``
default to ``dynamic``: the host addresses in ``local_addrs`` and ``remote_addrs``, as
in swanctl. ``action`` is the one word swanctl lacks (it writes shunts as ``mode = pass
| drop``); defaults are swanctl's: tunnel mode, rekey after 1 h, life 10 % longer.

``remote_addrs = ["%any"]`` (or ``%any4``, ``%any6``, ``0.0.0.0``, ``::``, as strongSwan
reads them) makes a tunnel to any peer, a remote-access gateway's: the stack keeps one SA
per peer and sends each packet with the SA whose inner destination covers it, and it
cannot ACQUIRE for such a policy. ``local_addrs`` stays one address of this host. A
``dynamic`` remote_ts then means every address of the family.

Numbers are checked against what they end up in: times and byte counts are the
64-bit addtime and bytes of a PF_KEY lifetime (RFC 2367 §2.3.3), ``replay_window`` the
8-bit ``sadb_sa_replay`` (§2.3.1), ``priority`` 32 bits as strongSwan's. Files are
UTF-8 (TOML 1.0) and at most `MAX_FILE_SIZE` bytes.

Every error names the file, the key and what is allowed, e.g.
``larval.toml: policies.s2s.mode: "tunel" is not one of tunnel, transport``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

from larval.crypto.proposals import EspProposal, ProposalError, parse_esp_proposal
from larval.pfkey.constants import U8_MAX, U32_MAX, U64_MAX
from larval.spd.errors import PolicyFileError, SpdError
from larval.spd.policy import (
    ANY_PEER_WORDS,
    AUTO_PRIORITY,
    DEFAULT_REKEY_TIME,
    DEFAULT_REPLAY_WINDOW,
    Action,
    Direction,
    Lifetimes,
    Mode,
    Policy,
    Tunnel,
)
from larval.spd.selector import IPAddress, Selector, TsSpec, parse_ts

__all__ = [
    "MAX_FILE_SIZE",
    "POLICY_KEYS",
    "ConfigReader",
    "ConfigText",
    "load_policy_file",
    "load_policy_text",
    "policies_from_dict",
    "policies_from_entry",
    "policy_to_dict",
    "read_config_text",
]

#: The keys of one ``[policies.<name>]`` table.
POLICY_KEYS = (
    "local_ts",
    "remote_ts",
    "action",
    "mode",
    "local_addrs",
    "remote_addrs",
    "esp_proposals",
    "priority",
    "rekey_time",
    "life_time",
    "rekey_bytes",
    "life_bytes",
    "replay_window",
)
_TOP_KEYS = ("policies",)
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

#: A configuration or policy file is read up to this size and refused beyond it: far
#: more than thousands of connections take, and a bound on `-c /dev/zero`.
MAX_FILE_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ConfigText:
    """A configuration or policy file read whole: its text and its permission bits."""

    source: str
    text: str
    mode: int


def read_config_text(path: str | PathLike[str]) -> ConfigText:
    """Read a TOML file for `tomllib.loads`: at most `MAX_FILE_SIZE` bytes of UTF-8.

    Raises `PolicyFileError` naming the file and, for bad UTF-8, the byte offset of the
    first bad byte, never the byte itself: the file may hold secrets.
    """
    source = str(path)
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise PolicyFileError(f"{source}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise PolicyFileError(
            f"{source}: larger than {MAX_FILE_SIZE >> 20} MiB, too large for a policy or config"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{source}: not UTF-8 at byte {exc.start}") from None
    return ConfigText(source, text, mode)


def _show(value: object) -> str:
    """A value as the file would write it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class _Reader:
    """Reads one file's values; every complaint names the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    show = staticmethod(_show)

    def error(self, key: str, problem: str) -> PolicyFileError:
        return PolicyFileError(f"{self.source}: {key}: {problem}", key=key, problem=problem)

    def table(self, key: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"{_show(value)} is not a table")
        for name in value:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                self.unknown_key(self.error(where, "unknown key; allowed: " + ", ".join(allowed)))
        return value

    def unknown_key(self, error: PolicyFileError) -> None:
        """An unknown key in a table: an error at once; a reader that collects problems
        notes it and reads on (`larval.daemon.config`)."""
        raise error

    def choice(self, key: str, value: object, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(key, f"{_show(value)} is not one of " + ", ".join(allowed))
        return value

    def strings(self, key: str, value: object) -> list[tuple[str, str]]:
        """A string or list of strings, as (key with index, string) pairs."""
        if isinstance(value, str):
            return [(key, value)]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"{_show(value)} is not a string or a non-empty list of them")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"{_show(item)} is not a string")
            out.append((f"{key}[{i}]", item))
        return out

    def tables(self, key: str, value: object) -> Iterator[tuple[str, object]]:
        """The named entries of a table of tables (``connections``, ``secrets``)."""
        if not isinstance(value, dict):
            raise self.error(key, f"{_show(value)} is not a table")
        return iter(value.items())

    def integer(self, key: str, value: object, maximum: int = U64_MAX, minimum: int = 0) -> int:
        """An integer in [minimum, maximum]; bool and float are not integers here."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"{_show(value)} is not an integer >= 0")
        if value < minimum:
            raise self.error(key, f"{value} is below the minimum {minimum}")
        if value > maximum:
            raise self.error(key, f"{value} is above the maximum {maximum}")
        return value

    def duration(self, key: str, value: object, maximum: int = U64_MAX) -> int:
        """Seconds, or a number with s, m, h or d; at most `maximum` seconds (PF_KEY
        lifetimes are 64-bit seconds)."""
        seconds: int | None = None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            seconds = value
        elif isinstance(value, str):
            m = _DURATION.fullmatch(value.strip())
            if m:
                seconds = int(m.group(1)) * _UNIT[m.group(2)]
        if seconds is None:
            raise self.error(
                key, f"{_show(value)} is not a duration: seconds, or a number with s, m, h or d"
            )
        if seconds > maximum:
            raise self.error(key, f"{_show(value)} is above the maximum {maximum} s")
        return seconds

    def address(self, key: str, value: str) -> IPAddress:
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise self.error(key, f"{_show(value)} is not an IPv4 or IPv6 address") from None


#: The reader other config files (the daemon's) use, so their errors read the same.
ConfigReader = _Reader


def load_policy_file(path: str | PathLike[str]) -> list[Policy]:
    """Read a policy file; raises `PolicyFileError` naming `path`."""
    file = read_config_text(path)
    return load_policy_text(file.text, file.source)


def load_policy_text(text: str, source: str = "<string>") -> list[Policy]:
    """Read policies from TOML text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: {exc}") from None
    reader = _Reader(source)
    top = reader.table("", data, _TOP_KEYS)
    return policies_from_dict(top.get("policies", {}), source)


def policies_from_dict(policies: object, source: str = "<string>") -> list[Policy]:
    """The policies of a parsed ``policies`` table (for configs that embed one)."""
    reader = _Reader(source)
    out: list[Policy] = []
    for name, entry in reader.tables("policies", policies):
        out.extend(policies_from_entry(reader, f"policies.{name}", name, entry))
    return out


def policies_from_entry(reader: _Reader, base: str, name: str, value: object) -> list[Policy]:
    """The policies of one entry, found at `base` of the file (for configs that embed
    policy keys elsewhere, so that errors name the key where the user wrote it)."""
    entry = reader.table(base, value, POLICY_KEYS)

    def key(k: str) -> str:
        return f"{base}.{k}"

    action = Action(
        reader.choice(key("action"), entry.get("action", "protect"), tuple(a.value for a in Action))
    )
    mode = Mode(
        reader.choice(key("mode"), entry.get("mode", "tunnel"), tuple(m.value for m in Mode))
    )
    local_addrs = (
        [reader.address(k, v) for k, v in reader.strings(key("local_addrs"), entry["local_addrs"])]
        if "local_addrs" in entry
        else []
    )
    remote_addrs = (
        _remote_addrs(reader, key("remote_addrs"), entry["remote_addrs"], local_addrs)
        if "remote_addrs" in entry
        else []
    )

    proposals: tuple[EspProposal, ...] = ()
    if action is Action.PROTECT:
        raw = entry.get("esp_proposals", ["aes128gcm16", "aes128-sha256"])
        parsed = []
        for k, text in reader.strings(key("esp_proposals"), raw):
            try:
                parsed.append(parse_esp_proposal(text))
            except ProposalError as exc:
                raise reader.error(k, str(exc)) from None
        proposals = tuple(parsed)
    elif "esp_proposals" in entry:
        raise reader.error(key("esp_proposals"), f"only for action protect, not {action.value}")

    tunnel: Tunnel | None = None
    if action is Action.PROTECT and mode is Mode.TUNNEL:
        for k, addrs in (("local_addrs", local_addrs), ("remote_addrs", remote_addrs)):
            if not addrs:
                raise reader.error(key(k), "tunnel mode needs a tunnel endpoint address here")
        if local_addrs[0].is_unspecified:
            raise reader.error(
                key("local_addrs"),
                f"{local_addrs[0]} is no tunnel endpoint: the local end is an address of "
                "this host (only remote_addrs may be %any)",
            )
        try:
            tunnel = Tunnel(local_addrs[0], remote_addrs[0])
        except SpdError:
            raise reader.error(
                key("remote_addrs"),
                f"{_peer_text(remote_addrs[0])} is not of the family of local_addrs "
                f"{local_addrs[0]}",
            ) from None
    elif action is not Action.PROTECT:
        mode = Mode.TRANSPORT  # a bypass or discard entry has no SA, hence no mode

    lifetimes = _lifetimes(reader, key, entry)
    priority = AUTO_PRIORITY
    if "priority" in entry:
        # 32 bits, as strongSwan's priority and the kernel's (XFRM) policy priority.
        priority = reader.integer(key("priority"), entry["priority"], U32_MAX)
    replay = DEFAULT_REPLAY_WINDOW
    if "replay_window" in entry:
        replay = reader.integer(key("replay_window"), entry["replay_window"], U8_MAX)

    local_ts = _ts_list(reader, key("local_ts"), entry.get("local_ts", "dynamic"), local_addrs)
    remote_ts = _ts_list(reader, key("remote_ts"), entry.get("remote_ts", "dynamic"), remote_addrs)
    selectors = []
    for _, lspec in local_ts:
        for rkey, rspec in remote_ts:
            assert lspec.network is not None and rspec.network is not None
            if lspec.network.version != rspec.network.version:
                continue  # swanctl narrows mixed-family pairs away
            selectors.append(_selector(reader, rkey, lspec, rspec))
    if not selectors:
        raise reader.error(key("remote_ts"), "no selector of the same address family as a local_ts")

    out: list[Policy] = []
    for selector in selectors:
        try:
            policy = Policy(
                name=name,
                direction=Direction.OUT,
                selector=selector,
                action=action,
                proposals=proposals,
                mode=mode,
                tunnel=tunnel,
                lifetimes=lifetimes,
                priority=priority,
                replay_window=replay,
            )
        except SpdError as exc:
            raise reader.error(base, str(exc)) from None
        out.extend((policy, policy.mirrored()))
    return out


def _lifetimes(reader: _Reader, key: Callable[[str], str], entry: Mapping[str, Any]) -> Lifetimes:
    rekey_time, life_time = _rekey_and_life(
        reader,
        key,
        entry,
        "time",
        reader.duration,
        DEFAULT_REKEY_TIME,
        "{life} s is shorter than rekey_time {rekey} s; the hard lifetime must be the longer",
    )
    rekey_bytes, life_bytes = _rekey_and_life(
        reader,
        key,
        entry,
        "bytes",
        reader.integer,
        0,
        "{life} is below rekey_bytes {rekey}; the hard limit must be the larger",
    )
    return Lifetimes(rekey_time, life_time, rekey_bytes, life_bytes)


def _rekey_and_life(
    reader: _Reader,
    key: Callable[[str], str],
    entry: Mapping[str, Any],
    what: str,
    read: Callable[[str, Any], int],
    default: int,
    too_short: str,
) -> tuple[int, int]:
    """``rekey_<what>`` and ``life_<what>``, the soft limit and the hard one."""
    rekey = default
    if f"rekey_{what}" in entry:
        rekey = read(key(f"rekey_{what}"), entry[f"rekey_{what}"])
    # swanctl: life_<what> defaults to rekey_<what> + 10 %. A default stays within the
    # field it goes to, whatever the rekey value.
    life = min(rekey + rekey // 10, U64_MAX)
    if f"life_{what}" in entry:
        life = read(key(f"life_{what}"), entry[f"life_{what}"])
        if rekey and life and life < rekey:
            raise reader.error(key(f"life_{what}"), too_short.format(life=life, rekey=rekey))
    return rekey, life


_ANY_OF_FAMILY: dict[int, IPAddress] = {4: ipaddress.IPv4Address(0), 6: ipaddress.IPv6Address(0)}


def _remote_addrs(
    reader: _Reader, key: str, value: object, local_addrs: list[IPAddress]
) -> list[IPAddress]:
    """``remote_addrs``: addresses, or a word of `ANY_PEER_WORDS` for any peer.

    Any peer is kept as the unspecified address of its family (what `Tunnel.any_remote`
    tests): the family the word names, else that of the first local address. ``%any``
    with no local address to take a family from stands for both families.
    """
    out: list[IPAddress] = []
    for k, text in reader.strings(key, value):
        word = text.strip()
        if word not in ANY_PEER_WORDS:
            out.append(reader.address(k, text))
            continue
        family = ANY_PEER_WORDS[word]
        if family is None and local_addrs:
            family = local_addrs[0].version
        for version in (family,) if family is not None else (4, 6):
            if local_addrs and local_addrs[0].version != version:
                raise reader.error(
                    k,
                    f"{_show(text)} is any IPv{version} peer, and local_addrs "
                    f"{local_addrs[0]} is not IPv{version}",
                )
            out.append(_ANY_OF_FAMILY[version])
    return out


def _peer_text(addr: IPAddress) -> str:
    return "%any" if addr.is_unspecified else str(addr)


def _ts_list(
    reader: _Reader, key: str, value: object, addrs: list[IPAddress]
) -> list[tuple[str, TsSpec]]:
    out = []
    for k, text in reader.strings(key, value):
        try:
            spec = parse_ts(text)
        except SpdError as exc:
            raise reader.error(k, f"{_show(text)}: {exc}") from None
        if spec.network is not None:
            out.append((k, spec))
            continue
        # "dynamic" or a bare [proto/port]: the host addresses of local/remote_addrs.
        if not addrs:
            side = "local_addrs" if key.endswith("local_ts") else "remote_addrs"
            raise reader.error(k, f"{_show(text)} takes its address from {side}, which is empty")
        for addr in addrs:
            # Any peer (%any): every address of its family; each SA's inner selectors
            # say which one address is that peer's (its virtual address, say).
            host = ipaddress.ip_network((addr, 0 if addr.is_unspecified else addr.max_prefixlen))
            out.append((k, TsSpec(host, spec.proto, spec.ports, spec.icmp_type)))
    return out


def _selector(reader: _Reader, key: str, local: TsSpec, remote: TsSpec) -> Selector:
    if local.proto and remote.proto and local.proto != remote.proto:
        raise reader.error(
            key, f"protocol {remote.proto} differs from the local_ts protocol {local.proto}"
        )
    if (
        local.icmp_type is not None
        and remote.icmp_type is not None
        and local.icmp_type != remote.icmp_type
    ):
        raise reader.error(
            key, f"ICMP type {remote.icmp_type} differs from the local_ts type {local.icmp_type}"
        )
    assert local.network is not None and remote.network is not None
    try:
        return Selector(
            local.network,
            remote.network,
            local.proto or remote.proto,
            local.ports,
            remote.ports,
            local.icmp_type if local.icmp_type is not None else remote.icmp_type,
        )
    except SpdError as exc:
        raise reader.error(key, str(exc)) from None


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """A JSON-ready description of a policy, in the policy file's words."""
    sel = policy.selector
    life = policy.lifetimes
    out: dict[str, Any] = {
        "name": policy.name,
        "direction": policy.direction.value,
        "action": policy.action.value,
        "priority": policy.priority,
        "reqid": policy.reqid,
        "local_ts": sel.local_ts(),
        "remote_ts": sel.remote_ts(),
    }
    if policy.action is Action.PROTECT:
        out["mode"] = policy.mode.value
        if policy.tunnel is not None:
            out["local_addrs"] = [str(policy.tunnel.local)]
            out["remote_addrs"] = [policy.tunnel.remote_text]
        out["esp_proposals"] = [p.keywords for p in policy.proposals]
        out["rekey_time"] = life.rekey_time
        out["life_time"] = life.life_time
        out["rekey_bytes"] = life.rekey_bytes
        out["life_bytes"] = life.life_bytes
        out["replay_window"] = policy.replay_window
    return out
