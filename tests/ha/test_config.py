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


def test_ha_reads() -> None:
    config = parse_config({"ha": HA}, "larval.toml")
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
    ha = parse_config({"ha": minimal}, "larval.toml").ha
    assert ha is not None
    assert (ha.backend, ha.endpoints, ha.virtual_addresses, ha.lease_ttl) == (
        "etcd", ("127.0.0.1:2379",), (), 5,
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
    ],
)
def test_ha_mistakes_are_named(key: str, value: object, named: str) -> None:
    with pytest.raises(ConfigError, match="^larval.toml: " + named.replace("[", r"\[")):
        parse_config({"ha": {**HA, key: value}}, "larval.toml")


@pytest.mark.parametrize("missing", ["endpoints", "group", "node"])
def test_ha_required_keys(missing: str) -> None:
    ha = {k: v for k, v in HA.items() if k != missing}
    with pytest.raises(ConfigError, match=f"larval.toml: ha.{missing}: missing"):
        parse_config({"ha": ha}, "larval.toml")


def test_ha_is_a_table() -> None:
    with pytest.raises(ConfigError, match=r'larval\.toml: ha: "x" is not a table'):
        parse_config({"ha": "x"}, "larval.toml")
