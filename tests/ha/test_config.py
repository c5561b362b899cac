"""``[ha]`` in the daemon's configuration: read, and every mistake named."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from larval.daemon.config import ConfigError, HaConfig, parse_config

HA: dict[str, Any] = {
    "backend": "etcd",
    "endpoints": ["http://192.0.2.10:2379", "192.0.2.11:2379"],
    "group": "edge",
    "node": "gw1",
    "virtual_addresses": ["192.0.2.100", "2001:db8::100"],
    "lease_ttl": "5s",
}
#: [ha] seals the state with the key file every node shares.
DAEMON: dict[str, Any] = {"state_key": "/etc/larval/state.key"}


def _parse(ha: object, daemon: dict[str, Any] | None = None) -> Any:
    return parse_config({"daemon": DAEMON if daemon is None else daemon, "ha": ha}, "larval.toml")


def test_ha_reads() -> None:
    config = _parse(HA)
    assert config.state is None and config.state_key == "/etc/larval/state.key"
    assert config.ha == HaConfig(
        backend="etcd",
        endpoints=("http://192.0.2.10:2379", "192.0.2.11:2379"),
        group="edge",
        node="gw1",
        virtual_addresses=(
            ipaddress.ip_address("192.0.2.100"),
            ipaddress.ip_address("2001:db8::100"),
        ),
        lease_ttl=5,
    )


def test_ha_defaults_and_absence() -> None:
    assert parse_config({}, "larval.toml").ha is None
    minimal = {"endpoints": "127.0.0.1:2379", "group": "g", "node": "n"}
    ha = _parse(minimal).ha
    assert ha is not None
    assert (ha.backend, ha.endpoints, ha.virtual_addresses, ha.lease_ttl, ha.interface) == (
        "etcd", ("127.0.0.1:2379",), (), 5, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("backend", "redis", 'ha.backend: "redis" is not one of etcd'),
        ("endpoints", [], "ha.endpoints: [] is not a string or a non-empty list"),
        ("endpoints", ["https://x:1"], 'ha.endpoints[0]: "https://x:1" is not http://HOST:PORT'),
        ("endpoints", ["127.0.0.1:99999"], 'ha.endpoints[0]: "127.0.0.1:99999" is not http'),
        ("group", "a/b", 'ha.group: "a/b" is not a name of letters'),
        ("node", "", 'ha.node: "" is not a name'),
        ("node", 3, "ha.node: 3 is not a name"),
        ("virtual_addresses", ["vip"], 'ha.virtual_addresses[0]: "vip" is not an IPv4'),
        ("lease_ttl", "1s", "ha.lease_ttl: 1 s: etcd grants no lease under 2 s"),
        ("lease_ttl", "soon", 'ha.lease_ttl: "soon" is not a duration'),
        ("owner", "gw1", "ha.owner: unknown key; allowed: backend, endpoints"),
        ("interface", "", 'ha.interface: "" is not a device name'),
        ("interface", "a/b", 'ha.interface: "a/b" is not a device name'),
        ("interface", 7, "ha.interface: 7 is not a device name"),
    ],
)
def test_ha_mistakes_are_named(key: str, value: object, named: str) -> None:
    with pytest.raises(ConfigError, match="^larval.toml: " + named.replace("[", r"\[")):
        _parse({**HA, key: value})


@pytest.mark.parametrize("missing", ["endpoints", "group", "node"])
def test_ha_required_keys(missing: str) -> None:
    ha = {k: v for k, v in HA.items() if k != missing}
    with pytest.raises(ConfigError, match=f"larval.toml: ha.{missing}: missing"):
        _parse(ha)


def test_ha_is_a_table() -> None:
    with pytest.raises(ConfigError, match=r'larval\.toml: ha: "x" is not a table'):
        _parse("x")


def test_ha_interface() -> None:
    ha = _parse({**HA, "interface": "eth0"}).ha
    assert ha is not None and ha.interface == "eth0"


def test_ha_needs_the_state_key() -> None:
    with pytest.raises(ConfigError, match=r"^larval\.toml: daemon\.state_key: missing: \[ha\] "
                       r"seals the state in etcd with it"):  # fmt: skip
        _parse(HA, {})


def test_ha_and_a_state_file_are_two_stores() -> None:
    daemon = {"state": "/var/lib/larval/state.db", "state_key": "/etc/larval/state.key"}
    with pytest.raises(ConfigError, match=r"^larval\.toml: daemon\.state: and \[ha\] both name "
                       r"a state store"):  # fmt: skip
        _parse(HA, daemon)
    with pytest.raises(ConfigError, match=r"^larval\.toml: daemon\.state: and \[ha\]"):
        _parse(HA, {"state": "/var/lib/larval/state.db"})


def test_ha_state_key_is_checked_as_without_ha() -> None:
    with pytest.raises(ConfigError, match=r"daemon\.state_key: \"state\.key\" is not an "
                       r"absolute path"):  # fmt: skip
        _parse(HA, {"state_key": "state.key"})
