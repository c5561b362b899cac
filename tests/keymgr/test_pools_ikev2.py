"""Virtual addresses in IKEv2 (RFC 7296 §2.19, §3.15): a gateway with an address pool and
clients whose IKE_AUTH carries CP(CFG_REQUEST), each a node (key manager and stack)
with IKE carried in memory between the three.

    HDR, SK {IDi, AUTH, CP(CFG_REQUEST(INTERNAL_IP4_ADDRESS)), SAi2, TSi, TSr}  -->
          <--  HDR, SK {IDr, AUTH, CP(CFG_REPLY(INTERNAL_IP4_ADDRESS, DNS...)), SAr2, TSi, TSr}
"""

from __future__ import annotations

import dataclasses
import ipaddress
import warnings
from typing import Any

import pytest

from larval.daemon.config import ConfigError, parse_config
from larval.ikev2.constants import CfgAttr, CfgType, ExchangeType, NotifyType
from larval.ikev2.exchanges.config_payload import (
    attributes_of,
    cfg_request,
    read_reply,
    requested_addresses,
)
from larval.ikev2.message import IkeMessage
from larval.ikev2.payloads import CfgAttribute, CpPayload, NotifyPayload
from larval.keymgr.manager import KeyManager
from larval.node import Node
from larval.pools import PoolAttributes

warnings.filterwarnings("ignore", category=DeprecationWarning)

GATEWAY = "192.0.2.2"
CLIENTS = {"carol": "192.0.2.1", "dave": "192.0.2.3"}
HOME = "203.0.113.0/24"
PSK = "a-test-psk-01234567"


def gateway_config(addrs: str = "10.3.0.0/24", **pool: Any) -> dict[str, Any]:
    connections = {
        name: {
            "local_addrs": [GATEWAY],
            "remote_addrs": [addr],
            "proposals": ["aes128gcm16-prfsha256-x25519"],
            "pools": ["rw"],
            "children": {
                "home": {
                    "local_ts": [HOME],
                    "remote_ts": ["10.3.0.0/16"],
                    "esp_proposals": ["aes128gcm16"],
                }
            },
        }
        for name, addr in CLIENTS.items()
    }
    return {
        "daemon": {"addresses": [GATEWAY]},
        "pools": {"rw": {"addrs": addrs, "dns": ["10.3.0.1"], **pool}},
        "connections": connections,
        "secrets": {"ike-rw": {"secret": PSK}},
    }


def client_config(name: str) -> dict[str, Any]:
    return {
        "daemon": {"addresses": [CLIENTS[name]]},
        "connections": {
            "home": {
                "local_addrs": [CLIENTS[name]],
                "remote_addrs": [GATEWAY],
                "proposals": ["aes128gcm16-prfsha256-x25519"],
                "children": {
                    "home": {
                        "local_ts": ["0.0.0.0/0"],
                        "remote_ts": [HOME],
                        "esp_proposals": ["aes128gcm16"],
                    }
                },
            }
        },
        "secrets": {"ike-rw": {"secret": PSK}},
    }


class Host:
    def __init__(self, data: dict[str, Any], addr: str, vips: tuple[str, ...] = ()) -> None:
        cfg = parse_config(data, f"{addr}.toml")
        conns = [
            dataclasses.replace(
                c,
                ike=dataclasses.replace(c.ike, vips=tuple(ipaddress.ip_address(v) for v in vips)),
            )
            for c in cfg.connections
        ]
        self.addr = ipaddress.ip_address(addr)
        self.node = Node(conns, pools=cfg.pools)
        for policy in cfg.policies:
            self.node.stack.spd.add(policy)
        self.keymgr.start(0.0)

    @property
    def keymgr(self) -> KeyManager:
        return self.node.keymgr


def carry(hosts: list[Host], now: float) -> None:
    """IKE datagrams between the hosts, each to the one its address names, until quiet."""
    by_addr = {str(h.addr): h for h in hosts}
    for _ in range(100):
        out = [(h, d) for h in hosts for d in h.keymgr.datagrams_to_send()]
        if not out:
            return
        for src, (data, (dst, _)) in out:
            by_addr[dst].keymgr.receive_ike(data, (str(src.addr), 4500), by_addr[dst].addr, now)
    raise AssertionError("IKE did not settle within 100 rounds")


def connect(gateway: Host, client: Host, now: float = 0.0) -> None:
    client.keymgr.initiate("home", "home", now)
    carry([gateway, client], now)


def ike(host: Host, remote: str | None = None) -> dict[str, Any]:
    (sa,) = [s for s in host.keymgr.status()["ike_sas"] if remote in (None, s["remote"])]
    return sa


def pool_status(gateway: Host) -> dict[str, Any]:
    (pool,) = (p.to_dict() for p in gateway.keymgr.pools.status())
    return pool


@pytest.fixture
def hosts() -> tuple[Host, Host, Host]:
    gateway = Host(gateway_config(), GATEWAY)
    carol = Host(client_config("carol"), CLIENTS["carol"], vips=("0.0.0.0",))
    dave = Host(client_config("dave"), CLIENTS["dave"], vips=("0.0.0.0",))
    return gateway, carol, dave


def test_two_clients_get_distinct_addresses_and_narrowed_selectors(
    hosts: tuple[Host, Host, Host],
) -> None:
    gateway, carol, dave = hosts
    connect(gateway, carol)
    connect(gateway, dave)
    # mem_pool.c's order: the network address is never handed out.
    assert ike(carol)["virtual_ips"] == ["10.3.0.1"]
    assert ike(dave)["virtual_ips"] == ["10.3.0.2"]
    assert ike(gateway, CLIENTS["carol"])["virtual_ips"] == ["10.3.0.1"]
    assert ike(gateway, CLIENTS["dave"])["virtual_ips"] == ["10.3.0.2"]
    # The CHILD_SA's TSi is the virtual address, not the 0.0.0.0/0 the client proposed
    # nor the 10.3.0.0/16 the gateway allows.
    (child,) = carol.keymgr.status()["child_sas"]
    assert child["local_ts"] == ["10.3.0.1/32"] and child["remote_ts"] == [HOME]
    remote_ts = sorted(c["remote_ts"][0] for c in gateway.keymgr.status()["child_sas"])
    assert remote_ts == ["10.3.0.1/32", "10.3.0.2/32"]
    online = [(e["identity"], e["address"]) for e in pool_status(gateway)["online"]]
    assert sorted(online) == [(CLIENTS["carol"], "10.3.0.1"), (CLIENTS["dave"], "10.3.0.2")]


def test_a_client_that_asks_for_no_address_is_failed_cp_required(
    hosts: tuple[Host, Host, Host], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, _, _ = hosts
    plain = Host(client_config("carol"), CLIENTS["carol"])
    connect(gateway, plain)
    # <-- HDR, SK {IDr, AUTH, N(FAILED_CP_REQUIRED)}: the IKE SA stays, no CHILD_SA.
    assert ike(plain)["state"] == ike(gateway)["state"] == "established"
    assert ike(plain)["virtual_ips"] == [] and ike(gateway)["virtual_ips"] == []
    assert gateway.keymgr.status()["child_sas"] == plain.keymgr.status()["child_sas"] == []
    assert "CHILD_SA refused: FAILED_CP_REQUIRED" in caplog.text
    assert pool_status(gateway)["online"] == []


def test_the_lease_goes_offline_with_the_ike_sa_and_comes_back(
    hosts: tuple[Host, Host, Host],
) -> None:
    gateway, carol, dave = hosts
    connect(gateway, carol)
    # INFORMATIONAL { D } -->  <-- INFORMATIONAL
    assert carol.keymgr.down("home", 1.0) == 1
    carry([gateway, carol], 1.0)
    assert gateway.keymgr.status()["ike_sas"] == []
    status = pool_status(gateway)
    assert status["online"] == []
    assert status["offline"] == [{"identity": CLIENTS["carol"], "address": "10.3.0.1"}]
    # Another client gets a fresh address, not carol's offline one.
    connect(gateway, dave, 2.0)
    assert ike(dave)["virtual_ips"] == ["10.3.0.2"]
    # Carol comes back (a new IKE SA) and has her address again.
    connect(gateway, carol, 3.0)
    assert ike(carol)["virtual_ips"] == ["10.3.0.1"]
    assert pool_status(gateway)["offline"] == []


def test_an_exhausted_pool_is_internal_address_failure_and_no_child_sa(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Host(gateway_config("10.3.0.5/32"), GATEWAY)  # one address
    carol = Host(client_config("carol"), CLIENTS["carol"], vips=("0.0.0.0",))
    dave = Host(client_config("dave"), CLIENTS["dave"], vips=("0.0.0.0",))
    connect(gateway, carol)
    assert ike(carol)["virtual_ips"] == ["10.3.0.5"]
    connect(gateway, dave)
    # <-- HDR, SK {IDr, AUTH, N(INTERNAL_ADDRESS_FAILURE)}: the IKE SA stays, no CHILD_SA.
    assert ike(dave)["state"] == "established" and ike(dave)["virtual_ips"] == []
    assert ike(gateway, CLIENTS["dave"])["state"] == "established"
    assert dave.keymgr.status()["child_sas"] == []
    assert [c["remote_ts"] for c in gateway.keymgr.status()["child_sas"]] == [["10.3.0.5/32"]]
    assert "CHILD_SA home failed: CHILD_SA refused: INTERNAL_ADDRESS_FAILURE" in caplog.text
    assert f"no virtual IP for '{CLIENTS['dave']}', sending INTERNAL_ADDRESS_FAILURE" in (
        caplog.text
    )


def test_a_family_no_pool_serves_is_internal_address_failure(
    hosts: tuple[Host, Host, Host],
) -> None:
    gateway, _, _ = hosts
    carol6 = Host(client_config("carol"), CLIENTS["carol"], vips=("::",))
    connect(gateway, carol6)
    assert ike(carol6)["virtual_ips"] == [] and carol6.keymgr.status()["child_sas"] == []
    assert pool_status(gateway)["online"] == []


def test_a_rekeyed_ike_sa_keeps_the_lease_until_it_goes(hosts: tuple[Host, Host, Host]) -> None:
    gateway, carol, _ = hosts
    connect(gateway, carol)
    old_spi = ike(gateway)["spi_i"]
    (session,) = carol.keymgr.sessions.values()
    # CREATE_CHILD_SA {SA, Ni, KEi} -->  <-- {SA, Nr, KEr};  INFORMATIONAL { D } of the old
    assert session.rekey_ike(10.0)  # type: ignore[attr-defined]
    carol.keymgr._drain(session, 10.0)
    carry([gateway, carol], 10.0)
    sa = ike(gateway)
    assert sa["spi_i"] != old_spi and sa["virtual_ips"] == ["10.3.0.1"]
    assert pool_status(gateway)["online"] == [{"identity": CLIENTS["carol"], "address": "10.3.0.1"}]
    assert carol.keymgr.down("home", 11.0) == 1
    carry([gateway, carol], 11.0)
    assert pool_status(gateway)["offline"] == [
        {"identity": CLIENTS["carol"], "address": "10.3.0.1"}
    ]


def test_cfg_reply_carries_the_address_and_every_attribute_of_its_pool() -> None:
    attributes = PoolAttributes(
        dns=(ipaddress.ip_address("10.3.0.1"), ipaddress.ip_address("2001:db8::1")),
        nbns=(ipaddress.ip_address("10.3.0.2"),),
        split_include=(ipaddress.ip_network("10.3.0.0/16"), ipaddress.ip_network("2001:db8::/48")),
        dns_domain=("home.example",),
        raw=((28675, b"home.example"),),
    )
    assert attributes_of(attributes) == [
        CfgAttribute(CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 1])),
        CfgAttribute(CfgAttr.INTERNAL_IP6_DNS, ipaddress.ip_address("2001:db8::1").packed),
        CfgAttribute(CfgAttr.INTERNAL_IP4_NBNS, bytes([10, 3, 0, 2])),
        CfgAttribute(CfgAttr.INTERNAL_IP4_SUBNET, bytes([10, 3, 0, 0, 255, 255, 0, 0])),
        CfgAttribute(
            CfgAttr.INTERNAL_IP6_SUBNET, ipaddress.ip_address("2001:db8::").packed + bytes([48])
        ),
        CfgAttribute(CfgAttr(25), b"home.example"),
        CfgAttribute(CfgAttr(28675), b"home.example"),
    ]


def test_request_and_reply_codec() -> None:
    any4, any6 = ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")
    want6 = ipaddress.ip_address("2001:db8::5")
    request = cfg_request([any4, want6])
    assert request == CpPayload(
        CfgType.CFG_REQUEST,
        (
            CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b""),
            CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, want6.packed + bytes([64])),
        ),
    )
    assert requested_addresses(_message(request)) == [any4, want6]
    # A second request of a family, and an address of the wrong length (asks for any).
    odd = CpPayload(
        CfgType.CFG_REQUEST,
        (
            CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, b"\x01\x02"),
            CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, want6.packed + bytes([64])),
        ),
    )
    assert requested_addresses(_message(odd)) == [any6]
    reply = CpPayload(
        CfgType.CFG_REPLY,
        (
            CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 7])),
            CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x01"),  # malformed: passed over
            CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, want6.packed + bytes([64])),
        ),
    )
    assert read_reply(_message(reply)) == (ipaddress.ip_address("10.3.0.7"), want6)
    assert read_reply(_message(NotifyPayload(0, NotifyType.INTERNAL_ADDRESS_FAILURE))) == ()


def _message(*payloads: Any) -> IkeMessage:
    return IkeMessage(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, True, False, 1, payloads)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"pools": {"rw": {"addrs": "10.3.0.0/33"}}}, "gw.toml: pools.rw.addrs: "),
        ({"pools": {"rw": {"addrs": "10.3.0.0/24", "colour": "red"}}}, "gw.toml: pools.rw"),
        ({"pools": "rw"}, "gw.toml: pools: "),
    ],
)
def test_a_bad_pool_is_named_with_the_file(change: dict[str, Any], named: str) -> None:
    data = {**gateway_config(), **change}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gw.toml")
    assert named in str(info.value)


def test_a_connections_pool_that_is_no_pool_is_named() -> None:
    data = gateway_config()
    data["connections"]["carol"]["pools"] = ["rw", "rw6"]
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gw.toml")
    assert str(info.value) == (
        'gw.toml: connections.carol.pools[1]: "rw6" is not a pool; pools: rw'
    )


def test_an_ikev1_connection_with_pools_hands_them_out_by_mode_config() -> None:
    """IKEv1 leases from the same pools by Mode Config (`larval.ikev1.remote_access`);
    a pool that is no pool is still named."""
    data = gateway_config()
    data["connections"]["carol"]["version"] = 1
    conns = {c.ike.name: c for c in parse_config(data, "gw.toml").connections}
    assert conns["carol"].pools == tuple(data["connections"]["carol"]["pools"])
    data["connections"]["carol"]["pools"] = ["nowhere"]
    with pytest.raises(ConfigError, match=r"gw\.toml: .*pools"):
        parse_config(data, "gw.toml")


@pytest.mark.parametrize(
    ("local_ts", "installed"),
    [("0.0.0.0/0", ["10.3.0.1/32"] * 2), ("10.3.0.2/32", ["10.3.0.1/32"])],
)
def test_a_later_child_sa_is_narrowed_to_the_virtual_address_too(
    hosts: tuple[Host, Host, Host], local_ts: str, installed: list[str]
) -> None:
    gateway, carol, _ = hosts
    connect(gateway, carol)
    (conn,) = carol.keymgr.connections.values()
    child = dataclasses.replace(conn.children[0], local_ts=(ipaddress.ip_network(local_ts),))
    (session,) = carol.keymgr.sessions.values()
    # CREATE_CHILD_SA {SA, Ni, TSi, TSr} -->  <-- {SA, Nr, TSi = 10.3.0.1/32, TSr}, or
    # N(TS_UNACCEPTABLE) for a TSi of another client's address.
    session.create_child(child, 5.0)
    carol.keymgr._drain(session, 5.0)
    carry([gateway, carol], 5.0)
    assert [c["remote_ts"][0] for c in gateway.keymgr.status()["child_sas"]] == installed


def test_a_reserved_address_goes_to_its_ike_identity() -> None:
    gateway = Host(gateway_config(reserved={CLIENTS["dave"]: "10.3.0.9"}), GATEWAY)
    carol = Host(client_config("carol"), CLIENTS["carol"], vips=("0.0.0.0",))
    dave = Host(client_config("dave"), CLIENTS["dave"], vips=("0.0.0.0",))
    connect(gateway, carol)
    connect(gateway, dave)
    assert ike(carol)["virtual_ips"] == ["10.3.0.1"]
    assert ike(dave)["virtual_ips"] == ["10.3.0.9"]


def test_a_requested_address_is_given_when_free() -> None:
    gateway = Host(gateway_config(), GATEWAY)
    carol = Host(client_config("carol"), CLIENTS["carol"], vips=("10.3.0.42",))
    connect(gateway, carol)
    assert ike(carol)["virtual_ips"] == ["10.3.0.42"]


def test_one_address_of_each_family_from_the_connections_pools() -> None:
    data = gateway_config()
    data["pools"]["rw6"] = {"addrs": "2001:db8:3::/64"}
    data["connections"]["carol"]["pools"] = ["rw", "rw6"]
    gateway = Host(data, GATEWAY)
    carol = Host(client_config("carol"), CLIENTS["carol"], vips=("0.0.0.0", "::"))
    connect(gateway, carol)
    assert ike(carol)["virtual_ips"] == ["10.3.0.1", "2001:db8:3::1"]
    assert ike(gateway)["virtual_ips"] == ["10.3.0.1", "2001:db8:3::1"]
    # The IPv4 CHILD_SA carries the IPv4 address only.
    (child,) = gateway.keymgr.status()["child_sas"]
    assert child["remote_ts"] == ["10.3.0.1/32"]


def test_the_gateways_own_delete_and_shutdown_release_the_leases(
    hosts: tuple[Host, Host, Host],
) -> None:
    gateway, carol, dave = hosts
    connect(gateway, carol)
    connect(gateway, dave)
    # <-- INFORMATIONAL { D } from the gateway
    assert gateway.keymgr.down("carol", 1.0) == 1
    carry([gateway, carol, dave], 1.0)
    offline = pool_status(gateway)["offline"]
    assert offline == [{"identity": CLIENTS["carol"], "address": "10.3.0.1"}]
    gateway.keymgr.shutdown(2.0)
    carry([gateway, carol, dave], 2.0)
    status = pool_status(gateway)
    assert status["online"] == [] and len(status["offline"]) == 2


def test_an_ipv6_child_sa_of_a_client_with_both_families() -> None:
    """A client holding an address of each family asks, after IKE_AUTH, for a CHILD_SA
    to the home's IPv6 network: its TSi (narrowed to both virtual addresses) is matched
    against the gateway's policy family by family, and the CHILD_SA is the IPv6 address
    === the IPv6 network.

        HDR, SK {SA, Ni, TSi(10.3.0.1/32, 2001:db8:3::1/128), TSr(2001:db8:b::/64)}  -->
              <--  HDR, SK {SA, Nr, TSi(2001:db8:3::1/128), TSr(2001:db8:b::/64)}
    """
    home6 = "2001:db8:b::/64"
    data = gateway_config()
    data["pools"]["rw6"] = {"addrs": "2001:db8:3::/64"}
    data["connections"]["carol"]["pools"] = ["rw", "rw6"]
    child = data["connections"]["carol"]["children"]["home"]
    child["local_ts"] = [HOME, home6]
    child["remote_ts"] = ["10.3.0.0/16", "2001:db8:3::/64"]
    gateway = Host(data, GATEWAY)
    client = client_config("carol")
    client["connections"]["home"]["children"]["home6"] = {
        "local_ts": ["0.0.0.0/0", "::/0"],  # as charon's dynamic TSi: both addresses
        "remote_ts": [home6],
        "esp_proposals": ["aes128gcm16"],
    }
    carol = Host(client, CLIENTS["carol"], vips=("0.0.0.0", "::"))
    connect(gateway, carol)
    carol.keymgr.initiate("home", "home6", 1.0)
    carry([gateway, carol], 1.0)
    # The gateway's CHILD_SAs are both of its child "home".
    children = sorted((c["local_ts"], c["remote_ts"]) for c in gateway.keymgr.status()["child_sas"])
    assert children == [([home6], ["2001:db8:3::1/128"]), ([HOME], ["10.3.0.1/32"])]
    (theirs,) = [c for c in carol.keymgr.status()["child_sas"] if c["name"] == "home6"]
    assert (theirs["local_ts"], theirs["remote_ts"]) == (["2001:db8:3::1/128"], [home6])


def test_a_gateway_that_tunnels_everything() -> None:
    """local_ts = 0.0.0.0/0 on the gateway, remote_ts = 0.0.0.0/0 on the client: the
    CHILD_SA is 10.3.0.1/32 === 0.0.0.0/0 on both ends, every address (the policy's
    selector comes back from the stack's inverse ACQUIRE with prefix 0, which is every
    address, not the host 0.0.0.0)."""
    data = gateway_config()
    data["connections"]["carol"]["children"]["home"]["local_ts"] = ["0.0.0.0/0"]
    gateway = Host(data, GATEWAY)
    client = client_config("carol")
    client["connections"]["home"]["children"]["home"]["remote_ts"] = ["0.0.0.0/0"]
    carol = Host(client, CLIENTS["carol"], vips=("0.0.0.0",))
    connect(gateway, carol)
    ((gw_child,), (carol_child,)) = (h.keymgr.status()["child_sas"] for h in (gateway, carol))
    assert (gw_child["local_ts"], gw_child["remote_ts"]) == (["0.0.0.0/0"], ["10.3.0.1/32"])
    assert (carol_child["local_ts"], carol_child["remote_ts"]) == (["10.3.0.1/32"], ["0.0.0.0/0"])
