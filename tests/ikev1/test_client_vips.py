"""larval as an IKEv1 road warrior with ``vips``, in memory: a client configured with
``version = 1``, a PSK and XAuth, ``vips = ["0.0.0.0"]`` and a child without
``local_ts`` against a larval gateway with a pool, each a node (key manager and stack)
with its packet path.

    MM1..MM6, then  <-- CFG_REQUEST(X_USER X_PWD)  ... CFG_ACK(X_STATUS) -->
    CFG_REQUEST(ADDR DNS) -->   <-- CFG_REPLY(ADDR DNS DOMAIN ...)
    QM1 *{ HASH(1), SA, Ni, IDci = 10.3.0.1/32, IDcr = HOME } -->  <-- QM2  QM3 -->

The client's CHILD_SA is the virtual address's, and the host state (`host_state`) names
the address, the route from it and the DNS servers and domain of the Mode Config reply,
as for IKEv2; traffic from the address goes through the gateway and back.
"""

from __future__ import annotations

import ipaddress
import warnings
from typing import Any

from larval.daemon.config import parse_config
from larval.keymgr.road_warrior import HostState, host_state
from tests.keymgr.test_road_warrior import (
    CLIENT,
    GATEWAY,
    HOME,
    PSK,
    VIP,
    Host,
    carry,
    icmp_echo,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)

IKEV1 = {"version": 1, "proposals": ["aes128-sha256-modp2048"], "encap": True}
ESP = ["aes128-sha256"]
PASSWORD = "carols-xauth-password-1"


def gateway_data() -> dict[str, Any]:
    return {
        "daemon": {"addresses": [GATEWAY]},
        "pools": {"rw": {"addrs": "10.3.0.0/24", "dns": ["10.3.0.53"],
                         "dns_domain": ["home.example"]}},
        "connections": {"rw": {
            "local_addrs": [GATEWAY], "remote_addrs": [CLIENT], **IKEV1, "pools": ["rw"],
            "remote": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": "%any"}],
            "children": {"home": {"local_ts": [HOME], "remote_ts": ["10.3.0.0/24"],
                                  "esp_proposals": ESP}},
        }},
        "secrets": {"ike-rw": {"secret": PSK}, "xauth-carol": {"id": "carol", "secret": PASSWORD}},
    }  # fmt: skip


def client_data(vips: list[str] | None = None) -> dict[str, Any]:
    return {
        "daemon": {"addresses": [CLIENT]},
        "connections": {"home": {
            "local_addrs": [CLIENT], "remote_addrs": [GATEWAY], **IKEV1,
            "vips": vips or ["0.0.0.0"],
            "local": [{"auth": "psk"}, {"auth": "xauth", "xauth_id": "carol"}],
            "children": {"home": {"remote_ts": [HOME], "esp_proposals": ESP}},
        }},
        "secrets": {"ike-rw": {"secret": PSK}, "xauth-carol": {"id": "carol", "secret": PASSWORD}},
    }  # fmt: skip


def run(a: Host, b: Host, until: float = 2.0, start: float = 0.0) -> None:
    """Carry IKE between the two and run their timers (XAuth's ACK, AM3 and QM3 are let
    land before what follows them) from `start` until `until`."""
    now = start
    while now <= until:
        carry(a, b, now)
        now += 0.05
        for host in (a, b):
            host.keymgr.handle_timer(now)


def connected(vips: list[str] | None = None) -> tuple[Host, Host]:
    gateway = Host(gateway_data(), GATEWAY)
    client = Host(client_data(vips), CLIENT)
    client.keymgr.initiate("home", "home", 0.0)
    run(gateway, client)
    return gateway, client


def test_the_configuration_takes_vips_for_ikev1() -> None:
    (conn,) = parse_config(client_data(["0.0.0.0", "::"]), "rw.toml").connections
    assert conn.version == 1
    assert conn.ike.vips == (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))
    assert [str(n) for n in conn.children[0].local_ts] == ["0.0.0.0/0", "::/0"]


def test_mode_config_gives_the_address_routes_and_dns_of_the_host_state() -> None:
    gateway, client = connected()
    (ike,) = client.keymgr.status()["ike_sas"]
    assert ike["state"] == "established" and ike["version"] == 1
    assert ike["virtual_ips"] == [str(VIP)]
    (child,) = client.keymgr.status()["child_sas"]
    assert child["local_ts"] == [f"{VIP}/32"] and child["remote_ts"] == [HOME]
    (gw_child,) = gateway.keymgr.status()["child_sas"]
    assert gw_child["remote_ts"] == [f"{VIP}/32"]
    assert host_state(client.keymgr) == HostState(
        addresses=(VIP,),
        routes=((ipaddress.ip_network(HOME), VIP),),
        dns=(ipaddress.ip_address("10.3.0.53"),),
        domains=("home.example",),
        connections=("home",),
        peers=(ipaddress.ip_address(GATEWAY),),
    )
    assert host_state(gateway.keymgr) == HostState()


def test_traffic_from_the_virtual_address_goes_through_and_back() -> None:
    gateway, client = connected()
    request = icmp_echo(str(VIP), "203.0.113.9")
    client.path.outbound(request, 3.0)
    assert len(client.esp) == 1 and request not in client.esp[0].payload
    gateway.path.inbound(client.esp[0].payload, gateway.addr.packed, 3.0)
    assert gateway.delivered == [request]
    reply = icmp_echo("203.0.113.9", str(VIP))
    gateway.path.outbound(reply, 3.0)
    client.path.inbound(gateway.esp[0].payload, client.addr.packed, 3.0)
    assert client.delivered == [reply]


def test_the_host_state_goes_with_the_isakmp_sa() -> None:
    gateway, client = connected()
    client.keymgr.down("home", 3.0)
    run(gateway, client, 4.0, start=3.0)
    assert host_state(client.keymgr) == HostState()


def test_a_wrong_password_leaves_no_address() -> None:
    data = client_data()
    data["secrets"]["xauth-carol"]["secret"] = "not-carols-password"
    gateway = Host(gateway_data(), GATEWAY)
    client = Host(data, CLIENT)
    client.keymgr.initiate("home", "home", 0.0)
    run(gateway, client)
    assert host_state(client.keymgr) == HostState()
    assert client.keymgr.status()["child_sas"] == []
