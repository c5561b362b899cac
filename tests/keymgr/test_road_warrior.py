"""larval as a road warrior, in memory: a client configured with ``vips = ["0.0.0.0"]``
and a child without ``local_ts`` against a gateway with a pool, each a node (key manager
and stack) with its packet path, IKE and ESP carried between them.

    HDR, SK {IDi, AUTH, CP(CFG_REQUEST(INTERNAL_IP4_ADDRESS)), SAi2, TSi(0.0.0.0/0), TSr}  -->
          <--  HDR, SK {IDr, AUTH, CP(CFG_REPLY(ADDRESS, DNS, DNS_DOMAIN)), SAr2,
                        TSi(10.3.0.1/32), TSr}

The client's CHILD_SA is the virtual address's, the host state (`host_state`) names the
address, the route from it and the DNS received; traffic from the address goes through
the gateway and back.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import warnings
from types import SimpleNamespace
from typing import Any

import pytest

from larval.daemon.config import parse_config
from larval.ikev2.constants import CfgAttr, CfgType, PayloadType
from larval.ikev2.exchanges.config_payload import ReceivedConfig, client_request, read_config
from larval.ikev2.exchanges.ike_auth import _own_ts
from larval.ikev2.message import IkeMessage
from larval.ikev2.negotiate import selectors_for
from larval.ikev2.payloads import CfgAttribute, CpPayload
from larval.ikev2.ts_payload import TsPayload
from larval.keymgr.manager import KeyManager
from larval.keymgr.pfkey_side import Endpoint
from larval.keymgr.road_warrior import HostState, host_state
from larval.node import Node
from larval.pfkey import ExtType, SadbAddress
from larval.stack.packet_path import Datagram, PacketPath

warnings.filterwarnings("ignore", category=DeprecationWarning)

GATEWAY, CLIENT = "192.0.2.2", "192.0.2.1"
HOME = "203.0.113.0/24"
PSK = "a-test-psk-01234567"
DNS = ["10.3.0.53", "2001:db8::53"]
VIP = ipaddress.ip_address("10.3.0.1")
HOME6 = "2001:db8:1::/48"
VIP6 = ipaddress.ip_address("2001:db8:3::1")


def gateway_config(addrs: str = "10.3.0.0/24") -> dict[str, Any]:
    return {
        "daemon": {"addresses": [GATEWAY]},
        "pools": {"rw": {"addrs": addrs, "dns": DNS, "dns_domain": ["home.example"]}},
        "connections": {
            "rw": {
                "local_addrs": [GATEWAY],
                "remote_addrs": [CLIENT],
                "proposals": ["aes128gcm16-prfsha256-x25519"],
                "encap": True,
                "pools": ["rw"],
                "children": {
                    "home": {
                        "local_ts": [HOME],
                        "remote_ts": ["10.3.0.0/24"],
                        "esp_proposals": ["aes128gcm16"],
                    }
                },
            }
        },
        "secrets": {"ike-rw": {"secret": PSK}},
    }


def client_config(vips: list[str] | None = None, **child: Any) -> dict[str, Any]:
    return {
        "daemon": {"addresses": [CLIENT]},
        "connections": {
            "home": {
                "local_addrs": [CLIENT],
                "remote_addrs": [GATEWAY],
                "proposals": ["aes128gcm16-prfsha256-x25519"],
                "encap": True,
                "vips": vips or ["0.0.0.0"],
                "children": {
                    "home": {"remote_ts": [HOME], "esp_proposals": ["aes128gcm16"], **child}
                },
            }
        },
        "secrets": {"ike-rw": {"secret": PSK}},
    }


class Host:
    def __init__(self, data: dict[str, Any], addr: str) -> None:
        cfg = parse_config(data, f"{addr}.toml")
        self.addr = ipaddress.ip_address(addr)
        self.node = Node(cfg.connections, pools=cfg.pools)
        for policy in cfg.policies:
            self.node.stack.spd.add(policy)
        self.esp: list[Datagram] = []
        self.delivered: list[bytes] = []
        self.path = PacketPath(self.node.stack, send=self.esp.append,
                               deliver=self.delivered.append)  # fmt: skip
        self.keymgr.start(0.0)

    @property
    def keymgr(self) -> KeyManager:
        return self.node.keymgr


def carry(a: Host, b: Host, now: float = 0.0) -> None:
    for _ in range(100):
        out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
        out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
        if not out:
            return
        for src, dst, (data, _) in out:
            dst.keymgr.receive_ike(data, (str(src.addr), 4500), dst.addr, now)
    raise AssertionError("IKE did not settle within 100 rounds")


def icmp_echo(src: str, dst: str) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + body  # fmt: skip


def connected(gateway_data: dict[str, Any] | None = None,
              client_data: dict[str, Any] | None = None) -> tuple[Host, Host]:  # fmt: skip
    gateway = Host(gateway_data or gateway_config(), GATEWAY)
    client = Host(client_data or client_config(), CLIENT)
    client.keymgr.initiate("home", "home", 0.0)
    carry(gateway, client)
    return gateway, client


def test_the_client_asks_gets_its_address_and_its_child_sa_is_the_address() -> None:
    gateway, client = connected()
    (ike,) = client.keymgr.status()["ike_sas"]
    assert ike["state"] == "established" and ike["virtual_ips"] == [str(VIP)]
    (child,) = client.keymgr.status()["child_sas"]
    assert child["local_ts"] == [f"{VIP}/32"] and child["remote_ts"] == [HOME]
    (gw_child,) = gateway.keymgr.status()["child_sas"]
    assert gw_child["remote_ts"] == [f"{VIP}/32"]
    assert host_state(client.keymgr) == HostState(
        addresses=(VIP,),
        routes=((ipaddress.ip_network(HOME), VIP),),
        dns=(ipaddress.ip_address("10.3.0.53"), ipaddress.ip_address("2001:db8::53")),
        domains=("home.example",),
        connections=("home",),
        peers=(ipaddress.ip_address(GATEWAY),),
    )
    # The gateway hands addresses out; it installs none of its own.
    assert host_state(gateway.keymgr) == HostState()


@pytest.mark.parametrize("home", [HOME, "0.0.0.0/0"], ids=["net", "everything"])
def test_traffic_from_the_virtual_address_goes_through_and_back(home: str) -> None:
    # "everything": a full tunnel, whose selectors reach PF_KEY as prefix length 0.
    gateway_data, client_data = gateway_config(), client_config()
    gateway_data["connections"]["rw"]["children"]["home"]["local_ts"] = [home]
    client_data["connections"]["home"]["children"]["home"]["remote_ts"] = [home]
    gateway, client = connected(gateway_data, client_data)
    (child,) = client.keymgr.status()["child_sas"]
    assert child["remote_ts"] == [home]
    request = icmp_echo(str(VIP), "203.0.113.9")
    client.path.outbound(request, 1.0)
    assert len(client.esp) == 1 and request not in client.esp[0].payload
    gateway.path.inbound(client.esp[0].payload, gateway.addr.packed, 1.0)
    assert gateway.delivered == [request]
    reply = icmp_echo("203.0.113.9", str(VIP))
    gateway.path.outbound(reply, 1.0)
    assert len(gateway.esp) == 1
    client.path.inbound(gateway.esp[0].payload, client.addr.packed, 1.0)
    assert client.delivered == [reply]


def test_a_packet_from_the_clients_own_address_is_not_taken_by_the_gateway() -> None:
    # The client's policy covers any source (its address was unknown when it was
    # written); the CHILD_SA is the virtual address's, and the gateway checks it.
    gateway, client = connected()
    stray = icmp_echo(CLIENT, "203.0.113.9")
    client.path.outbound(stray, 1.0)
    (esp,) = client.esp
    gateway.path.inbound(esp.payload, gateway.addr.packed, 1.0)
    assert gateway.delivered == []
    assert gateway.path.counters()["inbound_policy"] == 1


def test_the_host_state_goes_with_the_ike_sa() -> None:
    gateway, client = connected()
    client.keymgr.down("home", 1.0)
    carry(gateway, client, 1.0)
    assert client.keymgr.status()["ike_sas"] == []
    assert host_state(client.keymgr) == HostState()


def test_an_exhausted_pool_fails_the_child_sa_and_installs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Host(gateway_config(addrs="10.3.0.1-10.3.0.1"), GATEWAY)
    gateway.keymgr.pools.acquire(["rw"], "someone-else", ipaddress.ip_address("0.0.0.0"),
                                 ("198.51.100.1", 4500))  # fmt: skip
    client = Host(client_config(), CLIENT)
    with caplog.at_level(logging.WARNING, logger="larval.ike"):
        client.keymgr.initiate("home", "home", 0.0)
        carry(gateway, client)
    assert "CHILD_SA home failed: CHILD_SA refused: INTERNAL_ADDRESS_FAILURE" in caplog.text
    assert client.keymgr.status()["child_sas"] == []
    assert host_state(client.keymgr) == HostState()


def _sa(vips: tuple[str, ...], given: tuple[str, ...]) -> Any:
    return SimpleNamespace(
        initiator=True,
        config=SimpleNamespace(vips=tuple(ipaddress.ip_address(v) for v in vips)),
        virtual_ips=tuple(ipaddress.ip_address(v) for v in given),
    )


def _tsi(*nets: str) -> TsPayload:
    return TsPayload(PayloadType.TSi, selectors_for([ipaddress.ip_network(n) for n in nets]))


def test_a_reply_without_an_address_fails_the_child_sa() -> None:
    # strongSwan's child_create.c: the CHILD_SA's own selectors are the virtual IPs.
    reason = _own_ts(_sa(("0.0.0.0",), ()), _tsi("10.3.0.1/32"))
    assert reason == "asked for a virtual IP (0.0.0.0), the CFG_REPLY gave none"


def test_a_tsi_outside_the_address_fails_the_child_sa() -> None:
    reason = _own_ts(_sa(("0.0.0.0",), ("10.3.0.1",)), _tsi("10.9.0.0/24"))
    assert reason == "the responder's TSi (10.9.0.0/24) is outside the virtual IP 10.3.0.1"


def test_a_wide_tsi_is_narrowed_to_the_address() -> None:
    own = _own_ts(_sa(("0.0.0.0",), ("10.3.0.1",)), _tsi("0.0.0.0/0"))
    assert isinstance(own, TsPayload)
    assert [str(n) for s in own.selectors for n in s.networks()] == ["10.3.0.1/32"]  # type: ignore[attr-defined]


def test_without_vips_the_tsi_is_taken_as_it_came() -> None:
    tsi = _tsi("198.51.100.0/24")
    assert _own_ts(_sa((), ()), tsi) is tsi


def _reply(*attrs: tuple[int, bytes]) -> IkeMessage:
    cp = CpPayload(CfgType.CFG_REPLY, tuple(CfgAttribute(CfgAttr(t), v) for t, v in attrs))
    return SimpleNamespace(get=lambda kind: [cp] if kind is CpPayload else [])  # type: ignore[return-value]


def test_read_config_takes_addresses_dns_and_domains_and_passes_over_garbage() -> None:
    v6 = ipaddress.ip_address("2001:db8::5")
    received = read_config(_reply(
        (CfgAttr.INTERNAL_IP4_ADDRESS, VIP.packed),
        (CfgAttr.INTERNAL_IP6_ADDRESS, v6.packed + b"\x40"),
        (CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53])),
        (CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53])),  # once is enough
        (CfgAttr.INTERNAL_IP6_DNS, ipaddress.ip_address("2001:db8::53").packed),
        (CfgAttr.INTERNAL_IP4_DNS, b"\x0a\x03"),  # too short
        (25, b"home.example."),
        (25, b"evil\nnameserver 6.6.6.6"),  # not a name: never into resolv.conf
        (25, b""),
    ))  # fmt: skip
    assert received == ReceivedConfig(
        addresses=(VIP, v6),
        dns=(ipaddress.ip_address("10.3.0.53"), ipaddress.ip_address("2001:db8::53")),
        domains=("home.example",),
    )


def test_the_address_asked_for_is_the_one_requested() -> None:
    _, client = connected(client_data=client_config(vips=["10.3.0.7"]))
    (ike,) = client.keymgr.status()["ike_sas"]
    assert ike["virtual_ips"] == ["10.3.0.7"]
    assert host_state(client.keymgr).addresses == (ipaddress.ip_address("10.3.0.7"),)


def test_the_request_asks_the_addresses_and_a_dns_server_of_each_family() -> None:
    # As strongSwan's road warrior: CPRQ(ADDR DNS), and for two families ADDR6 DNS6 too.
    request = client_request([ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")])
    assert [(a.attr_type, a.value) for a in request.attributes] == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP6_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP4_DNS, b""),
        (CfgAttr.INTERNAL_IP6_DNS, b""),
    ]
    assert request.cfg_type == CfgType.CFG_REQUEST


def dual_stack(remote: str = CLIENT, asks: list[str] | None = None) -> tuple[Host, Host]:
    """A client with ``vips = 0.0.0.0, ::`` and one child for both families' networks
    (or for `asks`), against a gateway with a pool of each family and one child for both."""
    gateway_data = gateway_config()
    gateway_data["pools"]["rw6"] = {"addrs": "2001:db8:3::/120"}
    conn = gateway_data["connections"]["rw"]
    conn["pools"] = ["rw", "rw6"]
    conn["remote_addrs"] = [remote]
    conn["children"]["home"]["local_ts"] = [HOME, HOME6]
    conn["children"]["home"]["remote_ts"] = ["10.3.0.0/24", "2001:db8:3::/120"]
    client_data = client_config(vips=["0.0.0.0", "::"])
    client_data["connections"]["home"]["children"]["home"]["remote_ts"] = asks or [HOME, HOME6]
    return connected(gateway_data, client_data)


@pytest.mark.parametrize("asks", [[HOME, HOME6], ["0.0.0.0/0", "::/0"]], ids=["nets", "everything"])
def test_both_families_are_asked_and_given_in_one_child_sa(asks: list[str]) -> None:
    #   CP(CFG_REQUEST(INTERNAL_IP4_ADDRESS, INTERNAL_IP6_ADDRESS)), TSi(0.0.0.0/0, ::/0),
    #   TSr(asks)  -->
    #   <--  CP(CFG_REPLY(10.3.0.1, 2001:db8:3::1)), TSi(10.3.0.1/32, 2001:db8:3::1/128),
    #        TSr(203.0.113.0/24, 2001:db8:1::/48)
    # "everything": a native client's TSr, which the gateway narrows to its networks.
    gateway, client = dual_stack(asks=asks)
    (ike,) = client.keymgr.status()["ike_sas"]
    assert ike["virtual_ips"] == [str(VIP), str(VIP6)]
    # One CHILD_SA for both families (RFC 7296 §2.9), on each side.
    (child,) = client.keymgr.status()["child_sas"]
    assert child["local_ts"] == [f"{VIP}/32", f"{VIP6}/128"]
    assert child["remote_ts"] == [HOME, HOME6]
    (gw_child,) = gateway.keymgr.status()["child_sas"]
    assert gw_child["local_ts"] == [HOME, HOME6]
    assert gw_child["remote_ts"] == [f"{VIP}/32", f"{VIP6}/128"]
    state = host_state(client.keymgr)
    assert state.addresses == (VIP, VIP6)
    assert state.routes == ((ipaddress.ip_network(HOME), VIP), (ipaddress.ip_network(HOME6), VIP6))
    # One SA per direction, carrying both pairs: the IPv6 one in X_LARVAL_INNER_PAIRS.
    for host in (gateway, client):
        sas = [sa for sa in host.node.stack.sadb._tables[3] if sa.state == 1]
        assert len(sas) == 2
        for sa in sas:
            assert sa.inner_src is not None and sa.inner_src.addr.version == 4
            (more,) = sa.inner_more
            assert more[0].addr.version == 6 and more[1].addr.version == 6


def icmp6_echo(src: str, dst: str) -> bytes:
    body = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"ping"
    return struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), 58, 64,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    ) + body  # fmt: skip


@pytest.mark.parametrize("remote", [CLIENT, "%any"], ids=["fixed", "any"])
def test_one_child_sa_carries_both_families_both_ways(remote: str) -> None:
    # "any": the gateway's tunnel is to any peer; its outbound SA is found by inner
    # destination, under either family's pair.
    gateway, client = dual_stack(remote)
    for request, reply in (
        (icmp_echo(str(VIP), "203.0.113.9"), icmp_echo("203.0.113.9", str(VIP))),
        (icmp6_echo(str(VIP6), "2001:db8:1::9"), icmp6_echo("2001:db8:1::9", str(VIP6))),
    ):
        client.esp.clear()
        gateway.esp.clear()
        client.path.outbound(request, 1.0)
        (esp,) = client.esp
        gateway.path.inbound(esp.payload, gateway.addr.packed, 1.0)
        assert gateway.delivered[-1] == request
        gateway.path.outbound(reply, 1.0)
        (back,) = gateway.esp
        client.path.inbound(back.payload, client.addr.packed, 1.0)
        assert client.delivered[-1] == reply
    # The same SPIs carried both families: one SA per direction.
    spis = {sa.spi for sa in client.node.stack.sadb._tables[3] if sa.packets}
    assert len(spis) == 2


def test_an_ipv6_packet_from_another_address_is_refused_by_the_dual_stack_gateway() -> None:
    gateway, client = dual_stack("%any")
    spoofed = icmp6_echo("2001:db8:3::99", "2001:db8:1::9")  # another client's address
    client.path.outbound(spoofed, 1.0)
    (esp,) = client.esp
    gateway.path.inbound(esp.payload, gateway.addr.packed, 1.0)
    assert gateway.delivered == []
    assert gateway.path.counters()["inner_outside_sa"] == 1


@pytest.mark.parametrize(
    ("address", "prefixlen", "network"),
    [("0.0.0.0", 0, "0.0.0.0/0"), ("::", 0, "::/0"), ("192.0.2.1", 0, "192.0.2.1/32"),
     ("10.3.0.0", 24, "10.3.0.0/24"), ("0.0.0.0", 32, "0.0.0.0/32")],
)  # fmt: skip
def test_a_pfkey_address_of_everything_is_everything(
    address: str, prefixlen: int, network: str
) -> None:
    # A full tunnel's selector (0.0.0.0/0) reaches the key manager as prefix length 0.
    ext = SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ipaddress.ip_address(address),
                      prefixlen=prefixlen)  # fmt: skip
    assert str(Endpoint.of(ext).network) == network


def test_an_ike_rekey_keeps_the_address_and_its_dns() -> None:
    # RFC 7296 §2.18: the new IKE SA carries the virtual address on, and the CFG_REPLY's DNS.
    gateway, client = connected()
    before = host_state(client.keymgr)
    (session,) = client.keymgr.sessions.values()
    assert session.rekey_ike(1.0)  # type: ignore[attr-defined]
    client.keymgr._drain(session, 1.0)
    carry(gateway, client, 1.0)
    (ike,) = [s for s in client.keymgr.status()["ike_sas"] if s["state"] == "established"]
    assert ike["spi_i"] != session.spi_i.hex() and ike["virtual_ips"] == [str(VIP)]
    assert host_state(client.keymgr) == before


def test_a_rekeyed_dual_stack_child_sa_keeps_both_families() -> None:
    # CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi(v4, v6), TSr(v4, v6)} from the client: the
    # new SAs carry both pairs again, and an IPv6 packet goes with the new SPI.
    gateway, client = dual_stack("%any")
    (session,) = client.keymgr.sessions.values()
    (old,) = client.keymgr.children.values()
    assert session.rekey_child(old.spi_in, 10.0)  # type: ignore[attr-defined]
    client.keymgr._drain(session, 10.0)
    carry(gateway, client, 10.0)
    (new,) = client.keymgr.children.values()
    assert new.spi_in != old.spi_in
    assert new.local_ts == old.local_ts and new.remote_ts == old.remote_ts
    request = icmp6_echo(str(VIP6), "2001:db8:1::9")
    client.path.outbound(request, 11.0)
    sent = client.esp[-1]
    assert int.from_bytes(sent.payload[:4], "big") == new.spi_out
    gateway.path.inbound(sent.payload, gateway.addr.packed, 11.0)
    assert gateway.delivered[-1] == request
    reply = icmp6_echo("2001:db8:1::9", str(VIP6))
    gateway.path.outbound(reply, 11.0)
    assert int.from_bytes(gateway.esp[-1].payload[:4], "big") == new.spi_in


def _gateway_deletes_the_child_sa(gateway: Host, client: Host, now: float) -> None:
    (session,) = gateway.keymgr.sessions.values()
    (spi_in,) = session.children
    session.delete_child(spi_in, now)  # type: ignore[attr-defined]
    gateway.keymgr._drain(session, now)
    carry(gateway, client, now)
    assert client.keymgr.status()["child_sas"] == []


def test_a_child_sa_acquired_again_proposes_the_virtual_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway deletes the CHILD_SA; the next packet from the virtual address is
    ACQUIREd by the client's policy (any source, written before the address was known),
    and the new CHILD_SA proposes and is the virtual address, as the first one was.

        HDR, SK {SA, Ni, KEi, TSi(10.3.0.1/32), TSr(203.0.113.0/24)}  -->
              <--  HDR, SK {SA, Nr, KEr, TSi(10.3.0.1/32), TSr(203.0.113.0/24)}
    """
    from larval.ikev2.exchanges import create_child_sa

    proposed: list[tuple[str, ...]] = []
    build = create_child_sa.ChildCreate.build

    def recording(self: Any, now: float) -> Any:
        payloads = build(self, now)
        (tsi,) = [p for p in payloads if getattr(p, "payload_type", None) == PayloadType.TSi]
        proposed.append(tuple(str(n) for s in tsi.selectors for n in s.networks()))
        return payloads

    monkeypatch.setattr(create_child_sa.ChildCreate, "build", recording)
    gateway, client = connected()
    _gateway_deletes_the_child_sa(gateway, client, 1.0)
    # The network stays routed from the address: what the host sends there meets the
    # policy, and is not sent in the clear (nor dropped for want of a route).
    assert host_state(client.keymgr).routes == ((ipaddress.ip_network(HOME), VIP),)
    request = icmp_echo(str(VIP), "203.0.113.9")
    client.path.outbound(request, 2.0)  # held; ACQUIRE
    while client.node.deliver(2.0):
        pass
    carry(gateway, client, 2.0)
    assert proposed == [(f"{VIP}/32",)]
    (child,) = client.keymgr.status()["child_sas"]
    assert child["local_ts"] == [f"{VIP}/32"] and child["remote_ts"] == [HOME]
    (gw_child,) = gateway.keymgr.status()["child_sas"]
    assert gw_child["remote_ts"] == [f"{VIP}/32"]
    # The held packet went through the new CHILD_SA, and is taken by the gateway.
    (esp,) = client.esp
    gateway.path.inbound(esp.payload, gateway.addr.packed, 2.0)
    assert gateway.delivered == [request]
    assert host_state(client.keymgr).routes == ((ipaddress.ip_network(HOME), VIP),)


def test_a_child_sa_whose_answer_is_outside_the_virtual_address_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A responder that answers a TSi apart from the virtual address (not what was proposed)
    gives this end nothing it may send from: the CHILD_SA fails, nothing stays installed."""
    from larval.ikev2.exchanges import create_child_sa

    gateway, client = connected()
    _gateway_deletes_the_child_sa(gateway, client, 1.0)
    process = create_child_sa.ChildCreateResponder.process

    def widening(self: Any, message: Any, now: float) -> None:
        process(self, message, now)
        self._answer = tuple(_tsi("10.3.0.128/25") if getattr(p, "payload_type", None)
                             == PayloadType.TSi else p for p in self._answer)  # fmt: skip

    monkeypatch.setattr(create_child_sa.ChildCreateResponder, "process", widening)
    caplog.set_level(logging.INFO, "larval")
    client.path.outbound(icmp_echo(str(VIP), "203.0.113.9"), 2.0)
    while client.node.deliver(2.0):
        pass
    carry(gateway, client, 2.0)
    # ... and the gateway's half is deleted (RFC 7296 §1.4.1).
    assert client.keymgr.status()["child_sas"] == [] == gateway.keymgr.status()["child_sas"]
    assert ("CHILD_SA home refused: the responder's TSi (10.3.0.128/25) is outside the "
            "virtual IP 10.3.0.1") in caplog.text  # fmt: skip


def test_an_ike_rekey_by_the_gateway_keeps_the_address_and_a_new_child_sa_uses_it() -> None:
    """The gateway renews the IKE SA: the client is the responder of the new one (RFC
    7296 §2.18), and still the end the address was given to. Its host keeps the address,
    and a CHILD_SA ACQUIREd afterwards is the address's."""
    gateway, client = connected()
    before = host_state(client.keymgr)
    (session,) = gateway.keymgr.sessions.values()
    assert session.rekey_ike(1.0)  # type: ignore[attr-defined]
    gateway.keymgr._drain(session, 1.0)
    carry(gateway, client, 1.0)
    (ike,) = [s for s in client.keymgr.status()["ike_sas"] if s["state"] == "established"]
    assert ike["virtual_ips"] == [str(VIP)]
    assert host_state(client.keymgr) == before
    _gateway_deletes_the_child_sa(gateway, client, 2.0)
    client.path.outbound(icmp_echo(str(VIP), "203.0.113.9"), 3.0)
    while client.node.deliver(3.0):
        pass
    carry(gateway, client, 3.0)
    (child,) = client.keymgr.status()["child_sas"]
    assert child["local_ts"] == [f"{VIP}/32"]
    assert host_state(client.keymgr) == before
