"""The road warrior's words: ``connections.X.vips`` and ``daemon.resolv_file``, what they
make of the children's selectors and policies, and each mistake named by file and key."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config

GOOD: dict[str, Any] = {
    "daemon": {"addresses": ["192.0.2.1"], "resolv_file": "/run/larval/resolv.conf"},
    "connections": {
        "home": {
            "local_addrs": ["192.0.2.1"],
            "remote_addrs": ["192.0.2.2"],
            "vips": ["0.0.0.0", "::"],
            "children": {
                "net": {
                    "remote_ts": ["203.0.113.0/24", "2001:db8:1::/48"],
                    "start_action": "start",
                },
            },
        }
    },
    "secrets": {"ike": {"secret": "a-test-psk-01234567"}},
}


def _with(change: dict[str, Any], child: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["connections"]["home"].update(change)
    if child is not None:
        data["connections"]["home"]["children"]["net"].update(child)
    return data


def test_vips_ask_one_address_of_each_family_and_the_child_is_any_address_until_given() -> None:
    config = parse_config(GOOD, "rw.toml")
    (conn,) = config.connections
    assert conn.ike.vips == (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))
    (child,) = conn.children
    assert [str(n) for n in child.local_ts] == ["0.0.0.0/0", "::/0"]
    assert sorted(str(p.selector) for p in config.policies) == sorted(
        ["0.0.0.0/0 === 203.0.113.0/24"] * 2 + ["::/0 === 2001:db8:1::/48"] * 2
    )
    assert config.resolv_file == "/run/larval/resolv.conf"


def test_dynamic_is_the_virtual_address_too() -> None:
    (conn,) = parse_config(_with({}, {"local_ts": ["dynamic"]}), "rw.toml").connections
    assert [str(n) for n in conn.children[0].local_ts] == ["0.0.0.0/0", "::/0"]


def test_a_local_ts_written_out_is_kept() -> None:
    (conn,) = parse_config(_with({}, {"local_ts": ["10.3.0.0/24"]}), "rw.toml").connections
    assert [str(n) for n in conn.children[0].local_ts] == ["10.3.0.0/24"]


def test_a_specific_address_is_asked_for() -> None:
    (conn,) = parse_config(_with({"vips": "10.3.0.7"}), "rw.toml").connections
    assert conn.ike.vips == (ipaddress.ip_address("10.3.0.7"),)
    assert [str(n) for n in conn.children[0].local_ts] == ["0.0.0.0/0"]


def test_without_vips_nothing_changes() -> None:
    data = _with({})
    del data["connections"]["home"]["vips"]
    del data["daemon"]["resolv_file"]
    config = parse_config(data, "s2s.toml")
    (conn,) = config.connections
    assert conn.ike.vips == () and config.resolv_file is None
    assert [str(n) for n in conn.children[0].local_ts] == ["192.0.2.1/32"]


@pytest.mark.parametrize(
    ("change", "child", "message"),
    [
        ({"vips": ["0.0.0.0", "10.3.0.1"]}, None,
         "rw.toml: connections.home.vips[1]: '10.3.0.1': 0.0.0.0 already asks for an IPv4 "
         "address; one per family"),
        ({"vips": ["any"]}, None,
         'rw.toml: connections.home.vips[0]: "any" is not an IPv4 or IPv6 address'),
        ({"vips": []}, None, "rw.toml: connections.home.vips: "),
        ({}, {"start_action": "trap"},
         'rw.toml: connections.home.children.net.start_action: "trap" needs an address to '
         'send from before IKE_AUTH; with vips use "start" or "none"'),
    ],
)  # fmt: skip
def test_mistakes_are_named(change: dict[str, Any], child: dict[str, Any] | None,
                            message: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(_with(change, child), "rw.toml")
    assert str(info.value).startswith(message)


def test_a_resolv_file_that_is_no_path_is_named() -> None:
    data = _with({})
    data["daemon"]["resolv_file"] = ""
    with pytest.raises(ConfigError, match=r"rw.toml: daemon.resolv_file: "):
        parse_config(data, "rw.toml")


def _daemon(**words: object) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["daemon"].update(words)
    return data


def test_routes_go_to_table_220_by_default_as_strongswans() -> None:
    config = parse_config(copy.deepcopy(GOOD), "rw.toml")
    assert (config.routing_table, config.routing_table_prio) == (220, 220)
    config = parse_config(_daemon(routing_table=0), "rw.toml")  # the main table
    assert config.routing_table == 0
    config = parse_config(_daemon(routing_table=4000, routing_table_prio=100), "rw.toml")
    assert (config.routing_table, config.routing_table_prio) == (4000, 100)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ({"routing_table": 254}, "daemon.routing_table: 254 is the kernel's 'main' table"),
        ({"routing_table": 255}, "daemon.routing_table: 255 is the kernel's 'local' table"),
        ({"routing_table": -1}, "daemon.routing_table: -1 is not an integer >= 0"),
        ({"routing_table": 2**32}, "daemon.routing_table: 4294967296 is above the maximum"),
        ({"routing_table_prio": 0}, "daemon.routing_table_prio: 0 is below the minimum 1"),
        ({"routing_table_prio": 32766}, "daemon.routing_table_prio: 32766 is above the maximum"),
        ({"routing_table": "220"}, "daemon.routing_table: "),
    ],
)
def test_a_routing_table_mistake_is_named(words: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_daemon(**words), "rw.toml")
    assert str(info.value).startswith(f"rw.toml: {message}"), str(info.value)
