"""A gateway with several connections picks each IKE SA's as strongSwan does: IKE_SA_INIT
by the addresses (an exact address before a subnet before %any), then IKE_AUTH by the
peer's IDi, the IDr it asks for and how it authenticates (AUTH of a PSK, a signature, or
none: EAP), switching connection before any CHILD_SA exists. Several clients behind one
NAT each have their own IKE SA, answered at their own port. Each host is a node (key
manager and stack) and IKE goes between them in memory, through a NAT where there is one.

    HDR(SPIi, 0), SAi1, KEi, Ni  -->           the connection best by addresses answers
    HDR, SK {IDi, [IDr,] [AUTH,] SAi2, TSi, TSr}  -->   the one best by IDi, IDr, method
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest

from larval.credentials import load_credentials
from larval.crypto.ike_proposals import parse_ike_proposal
from larval.daemon.auth import resolve
from larval.daemon.config import ConfigError, parse_config
from larval.ike.config import AddressMatch, IkeConfig, Suite
from larval.ike.counters import IkeCounters
from larval.ike.identity import IdentityMatch, IdType, identity
from larval.ikev2.constants import AuthMethod, ExchangeType, NotifyType, PayloadType
from larval.ikev2.errors import IkeExchangeError
from larval.ikev2.exchanges.select import Candidate, select_connection
from larval.ikev2.message import IkeMessage
from larval.ikev2.payloads import AuthPayload, IdPayload
from larval.keymgr.manager import KeyManager
from larval.node import Node
from larval.stack.packet_path import Datagram, PacketPath
from tests.daemon.gateway import gateway_credentials
from tests.keymgr.test_manager import udp_packet

warnings.filterwarnings("ignore", category=DeprecationWarning)

GATEWAY = "192.0.2.2"
IKE = ["aes128gcm16-prfsha256-x25519"]
ESP = ["aes128gcm16"]
HOME = "203.0.113.0/24"
PSK = {
    "carol": "carol-secret-0123456789",
    "dave": "dave-secret-0123456789",
    "gw": "gw-psk-0123456789ab",
}


def gateway(connections: dict[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """The gateway's configuration: these connections, each with its PSK side's secret
    (by the remote id it names) unless it says otherwise."""
    conns = {
        name: {"local_addrs": [GATEWAY], "proposals": IKE, **conn}
        for name, conn in connections.items()
    }
    secrets = {f"ike-{who}": {"ids": [f"{who}@example.org"], "secret": PSK[who]}
               for who in ("carol", "dave")}  # fmt: skip
    secrets["ike-gw"] = {"ids": [GATEWAY], "secret": PSK["gw"]}
    return {"daemon": {"addresses": [GATEWAY]}, "connections": conns,
            "secrets": {**secrets, **top.pop("secrets", {})}, **top}  # fmt: skip


def client(addr: str, who: str, *, secret: str | None = None, **conn: Any) -> dict[str, Any]:
    """A road warrior at `addr` who is ``who@example.org``, proving itself with the PSK
    that is `who`'s (or `secret`)."""
    ident = f"{who}@example.org"
    return {
        "daemon": {"addresses": [addr]},
        "connections": {
            "home": {
                "local_addrs": [addr],
                "remote_addrs": [GATEWAY],
                "proposals": IKE,
                "local": {"auth": "psk", "id": ident},
                "remote": {"auth": "psk", "id": GATEWAY},
                "children": {
                    "home": {"local_ts": ["0.0.0.0/0"], "remote_ts": [HOME], "esp_proposals": ESP}
                },
                **conn,
            }
        },
        "secrets": {"ike-me": {"secret": secret or PSK[who]}},
    }


class Host:
    def __init__(
        self, data: dict[str, Any], vips: tuple[str, ...] = (), creds: Path | None = None
    ) -> None:
        cfg = parse_config(data, "host.toml")
        if creds is not None:
            cfg = resolve(cfg, load_credentials(creds), "host.toml")
        conns = [
            dataclasses.replace(c, ike=dataclasses.replace(
                c.ike, vips=tuple(ipaddress.ip_address(v) for v in vips)))
            for c in cfg.connections
        ]  # fmt: skip
        self.addr = ipaddress.ip_address(cfg.addresses[0])
        self.node = Node(conns, pools=cfg.pools)
        self.stack = self.node.stack
        for policy in cfg.policies:
            self.stack.spd.add(policy)
        self.esp: list[Datagram] = []
        self.delivered: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.esp.append, deliver=self.delivered.append)
        self.keymgr.start(0.0)

    @property
    def keymgr(self) -> KeyManager:
        return self.node.keymgr


class Network:
    """IKE between hosts in memory. Hosts listed in `nat` sit behind a NAT at that
    address: what they send leaves it from a port of its own for each of their (address,
    port), and what comes back to that port goes to them."""

    def __init__(self, hosts: list[Host], nat: str | None = None, behind: tuple[Host, ...] = ()):
        self.hosts = hosts
        self.nat = nat
        self.behind = behind
        self.mappings: dict[tuple[Host, int], int] = {}

    def _outside(self, host: Host, port: int) -> tuple[str, int]:
        if host not in self.behind:
            return str(host.addr), port
        assert self.nat is not None
        mapped = self.mappings.setdefault((host, port), 40000 + len(self.mappings))
        return self.nat, mapped

    def _inside(self, addr: str, port: int) -> tuple[Host, int]:
        if addr == self.nat:
            ((host, inner),) = [k for k, v in self.mappings.items() if v == port]
            return host, inner
        (host,) = [h for h in self.hosts if str(h.addr) == addr]
        return host, port

    def carry(self, now: float) -> None:
        for _ in range(100):
            out = [(h, d) for h in self.hosts for d in h.keymgr.datagrams_to_send()]
            if not out:
                return
            for src, (data, (addr, port)) in out:
                # Each end sends from the port it sends to (500 or 4500).
                dst, dst_port = self._inside(addr, port)
                source = self._outside(src, dst_port)
                dst.keymgr.receive_ike(data, source, dst.addr, now)
        raise AssertionError("IKE did not settle within 100 rounds")

    def connect(self, host: Host, now: float = 0.0) -> None:
        host.keymgr.initiate("home", "home", now)
        self.carry(now)


def ike_sas(host: Host) -> list[dict[str, Any]]:
    return host.keymgr.status()["ike_sas"]


def names_by_remote(gw: Host) -> dict[tuple[str, int], str]:
    return {(s["remote"], s["remote_port"]): s["name"] for s in ike_sas(gw)
            if s["state"] == "established"}  # fmt: skip


# -- IKE_SA_INIT: by addresses --------------------------------------------------------


def test_the_connection_that_names_the_peers_address_best_answers() -> None:
    """An exact address before a subnet before %any, whatever the order configured."""
    anyone = {"local": {"auth": "psk"}, "remote": {"auth": "psk", "id": "%any"}}
    data = gateway({
        "anyone": {"remote_addrs": ["%any"], **anyone},
        "lab": {"remote_addrs": ["198.51.100.0/28", "192.0.2.0/28"], **anyone},
        "carol": {"remote_addrs": ["192.0.2.1"], **anyone},
    }, secrets={"ike-any": {"secret": PSK["gw"]}})  # fmt: skip
    gw = Host(data)
    peers = {addr: Host(client(addr, "carol", secret=PSK["gw"]))
             for addr in ("192.0.2.1", "192.0.2.3", "192.0.2.77")}  # fmt: skip
    net = Network([gw, *peers.values()])
    for peer in peers.values():
        net.connect(peer)
    assert names_by_remote(gw) == {
        ("192.0.2.1", 500): "carol",
        ("192.0.2.3", 500): "lab",
        ("192.0.2.77", 500): "anyone",
    }


def test_a_connection_without_the_proposal_offered_leaves_it_to_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The best by addresses has none of the client's proposals: another connection for
    those addresses that has one answers IKE_SA_INIT (strongSwan's alternative ike_cfg),
    and the IKE SA is that connection's."""
    caplog.set_level(logging.INFO, "larval.ike")
    anyone = {"local": {"auth": "psk"}, "remote": {"auth": "psk", "id": "%any"}}
    data = gateway({
        "strong": {"remote_addrs": ["192.0.2.1"], "proposals": ["aes256gcm16-prfsha384-ecp384"],
                   **anyone},
        "usual": {"remote_addrs": ["%any"], **anyone},
    }, secrets={"ike-any": {"secret": PSK["gw"]}})  # fmt: skip
    gw = Host(data)
    carol = Host(client("192.0.2.1", "carol", secret=PSK["gw"]))
    Network([gw, carol]).connect(carol)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "usual"}
    assert "no proposal of its own chosen, trying connection usual" in caplog.text


def test_a_peer_no_connections_addresses_take_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "larval.keymgr")
    data = gateway({"lab": {"remote_addrs": ["192.0.2.0/30"], "local": {"auth": "psk"},
                            "remote": {"auth": "psk", "id": "%any"}}},
                   secrets={"ike-any": {"secret": PSK["gw"]}})  # fmt: skip
    gw = Host(data)
    far = Host(client("192.0.2.9", "carol", secret=PSK["gw"]))
    Network([gw, far]).connect(far)
    assert ike_sas(gw) == [] and ike_sas(far) == []
    assert "IKE_SA_INIT from 192.0.2.9: no IKEv2 connection for that peer" in caplog.text


def test_a_connection_for_many_peers_answers_only() -> None:
    data = gateway({"rw": {"remote_addrs": ["%any"], "local": {"auth": "psk"},
                           "remote": {"auth": "psk", "id": "%any"}}},
                   secrets={"ike-any": {"secret": PSK["gw"]}})  # fmt: skip
    gw = Host(data)
    with pytest.raises(KeyError, match="connection rw has no one peer address to initiate to"):
        gw.keymgr.initiate("rw", None, 0.0)


@pytest.mark.parametrize(
    ("text", "address", "quality"),
    [
        ("192.0.2.1", "192.0.2.1", 129),
        ("192.0.2.0/24", "192.0.2.1", 25),
        ("192.0.2.0-192.0.2.9", "192.0.2.9", 1),
        ("192.0.2.0-192.0.2.9", "192.0.2.10", 0),
        ("%any", "2001:db8::1", 1),
        ("%any4", "2001:db8::1", 0),
        ("0.0.0.0", "192.0.2.1", 1),
        ("::", "2001:db8::1", 1),
        ("2001:db8::/32", "192.0.2.1", 0),
    ],
)
def test_address_match_quality_as_strongswan_ranks_it(
    text: str, address: str, quality: int
) -> None:
    assert AddressMatch.parse(text).quality(ipaddress.ip_address(address)) == quality


@pytest.mark.parametrize(
    ("conn", "key", "problem"),
    [
        ({"remote_addrs": ["192.0.2.300"]}, "connections.rw.remote_addrs[0]",
         "'192.0.2.300' is not an address, a subnet"),
        ({"remote_addrs": ["192.0.2.9-192.0.2.1"]}, "connections.rw.remote_addrs[0]",
         "is not an address, a subnet"),
        ({"remote_addrs": ["%any"], "local_addrs": ["%any"]}, "connections.rw.local_addrs",
         "needs one address of this host"),
        ({"remote_addrs": ["%any"], "children": {"c": {"local_ts": [HOME]}}},
         "connections.rw.children.c.remote_ts", "missing; a connection with remote_addrs of many"),
        ({"remote_addrs": ["192.0.2.0/24"],
          "children": {"c": {"remote_ts": [HOME], "start_action": "trap"}}},
         "connections.rw.children.c.start_action", "'trap' needs one peer address"),
    ],
)  # fmt: skip
def test_bad_addresses_are_named(conn: dict[str, Any], key: str, problem: str) -> None:
    data = gateway({"rw": {"local": {"auth": "psk"}, "remote": {"auth": "psk", "id": "%any"},
                           **conn}}, secrets={"ike-any": {"secret": PSK["gw"]}})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gw.toml")
    assert str(info.value).startswith(f"gw.toml: {key}: ")
    assert problem in str(info.value)


# -- IKE_AUTH: by identity and method --------------------------------------------------


def by_id(*names: str, remote_addrs: str = "%any") -> dict[str, dict[str, Any]]:
    """A connection for each name, whose peer is ``NAME@example.org`` with its own PSK."""
    return {
        who: {
            "remote_addrs": [remote_addrs],
            "local": {"auth": "psk", "id": GATEWAY},
            "remote": {"auth": "psk", "id": f"{who}@example.org"},
        }
        for who in names
    }


def test_each_client_lands_on_the_connection_of_its_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """IKE_SA_INIT is answered by carol's connection, the first; dave's IKE_AUTH takes
    the IKE SA over to his, whose PSK (not carol's) checks his AUTH and makes ours."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(by_id("carol", "dave")))
    carol = Host(client("192.0.2.1", "carol"))
    dave = Host(client("192.0.2.3", "dave"))
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "dave"}
    assert [s["state"] for s in ike_sas(carol) + ike_sas(dave)] == ["established"] * 2
    assert "switching to connection dave for IDi dave@example.org" in caplog.text
    assert "switching to connection carol" not in caplog.text


def test_no_connection_for_the_identity_is_authentication_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(by_id("carol", "dave")))
    erin_data = client("192.0.2.5", "carol")
    erin_data["connections"]["home"]["local"]["id"] = "erin@example.org"
    erin = Host(erin_data)
    Network([gw, erin]).connect(erin)
    assert ike_sas(gw) == [] and ike_sas(erin) == []
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                 and r.name == "larval.ike" and "no connection for" in r.getMessage()]  # fmt: skip
    assert len(warnings_) == 1
    assert warnings_[0].endswith(
        "no connection for IDi erin@example.org authenticating by psk: "
        "carol: another remote id; dave: another remote id"
    )
    assert "IKE_AUTH refused: AUTHENTICATION_FAILED" in caplog.text


def test_the_method_offered_picks_between_psk_and_eap() -> None:
    """Two connections take any identity: one checks a PSK, one EAP-MSCHAPv2. A request
    without AUTH means EAP (RFC 7296 §2.16); one with a PSK's AUTH the other."""
    conns = {
        "eap": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                "remote": {"auth": "eap-mschapv2", "eap_id": "%any"}},
        "psk": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                "remote": {"auth": "psk", "id": "%any"}},
    }  # fmt: skip
    eap_secret = {"eap-carol": {"id": "carol", "secret": "carols-password"}}
    gw = Host(gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}, **eap_secret}))
    dave = Host(client("192.0.2.3", "dave", secret=PSK["gw"]))
    carol_data = client("192.0.2.1", "carol", secret=PSK["gw"],
                        local={"auth": "eap-mschapv2", "eap_id": "carol"})  # fmt: skip
    carol_data["secrets"].update(eap_secret)
    carol = Host(carol_data)
    net = Network([gw, carol, dave])
    net.connect(dave)
    net.connect(carol)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "eap", ("192.0.2.3", 500): "psk"}
    sas = {s["remote"]: s for s in ike_sas(gw)}
    assert sas["192.0.2.1"]["auth_remote"]["identity"] == "carol"
    assert sas["192.0.2.3"]["auth_remote"]["method"] == "psk"


def test_a_signature_lands_on_the_certificate_connection_asked_for_in_ike_sa_init(
    tmp_path: Path,
) -> None:
    """IKE_SA_INIT is answered by the PSK connection, the first; its CERTREQ still names
    the CAs of the certificate connection IKE_AUTH may choose (as strongSwan asks before
    it knows the peer), so carol, who sends her certificate only when asked, sends it,
    and her signature's AUTH moves the IKE SA to that connection."""
    gateway_credentials(tmp_path, carol=True)
    conns = {
        "psk": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                "remote": {"auth": "psk", "id": "%any"}},
        "certs": {"remote_addrs": ["%any"],
                  "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
                  "remote": {"auth": "pubkey", "id": "%any"}},
    }  # fmt: skip
    data = gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}})
    data["daemon"]["credentials"] = str(tmp_path)
    gw = Host(data, creds=tmp_path)
    carol_data = client("192.0.2.1", "carol", local={"auth": "pubkey", "certs": ["carol.pem"],
                        "id": "carol@example.org"},
                        remote={"auth": "pubkey", "id": "vpn.example.org"})  # fmt: skip
    carol_data["daemon"]["credentials"] = str(tmp_path)
    carol = Host(carol_data, creds=tmp_path)
    dave = Host(client("192.0.2.3", "dave", secret=PSK["gw"]))
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "certs", ("192.0.2.3", 500): "psk"}
    sas = {s["remote"]: s for s in ike_sas(gw)}
    assert sas["192.0.2.1"]["auth_remote"]["method"] == "pubkey"
    assert sas["192.0.2.1"]["auth_local"]["method"] == "pubkey"
    assert sas["192.0.2.3"]["auth_remote"]["method"] == "psk"


def test_a_connection_of_two_rounds_behind_a_psk_one_is_announced_in_ike_sa_init(
    tmp_path: Path,
) -> None:
    """IKE_SA_INIT is answered by the PSK connection, which has one round; IKE_AUTH may
    move the IKE SA to the connection of a certificate and then EAP, so the response
    announces MULTIPLE_AUTH_SUPPORTED (RFC 4739) for it, or carol, of two rounds, would
    stop there."""
    gateway_credentials(tmp_path, carol=True)
    conns = {
        "psk": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                "remote": {"auth": "psk", "id": "%any"}},
        "rounds": {"remote_addrs": ["%any"],
                   "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
                   "remote": [{"auth": "pubkey", "id": "*@example.org"},
                              {"auth": "eap-mschapv2", "eap_id": "%any"}]},
    }  # fmt: skip
    eap_secret = {"eap-carol": {"id": "carol", "secret": "carols-password"}}
    data = gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}, **eap_secret})
    data["daemon"]["credentials"] = str(tmp_path)
    gw = Host(data, creds=tmp_path)
    carol_data = client("192.0.2.1", "carol",
                        local=[{"auth": "pubkey", "certs": ["carol.pem"],
                                "id": "carol@example.org"},
                               {"auth": "eap-mschapv2", "eap_id": "carol"}],
                        remote={"auth": "pubkey", "id": "vpn.example.org"})  # fmt: skip
    carol_data["daemon"]["credentials"] = str(tmp_path)
    carol_data["secrets"].update(eap_secret)
    carol = Host(carol_data, creds=tmp_path)
    Network([gw, carol]).connect(carol)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "rounds"}
    (sa,) = ike_sas(gw)
    assert sa["auth_remote"]["method"] == "pubkey"
    assert [r["method"] for r in sa["auth_remote"]["rounds"]] == ["eap-mschapv2"]


def test_an_exact_identity_is_preferred_to_a_wildcard_and_to_any() -> None:
    conns = {
        "anyone": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                   "remote": {"auth": "psk", "id": "%any"}},
        "domain": {"remote_addrs": ["%any"], "local": {"auth": "psk", "id": GATEWAY},
                   "remote": {"auth": "psk", "id": "*@example.org"}},
        **by_id("dave"),
    }  # fmt: skip
    gw = Host(gateway(conns, secrets={"ike-dom": {"ids": ["*@example.org"], "secret": PSK["gw"]}}))
    # "anyone" and "domain" have the gateway's PSK; dave's connection has his.
    carol = Host(client("192.0.2.1", "carol", secret=PSK["gw"]))
    dave = Host(client("192.0.2.3", "dave"))
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "domain", ("192.0.2.3", 500): "dave"}


# -- many clients behind one NAT --------------------------------------------------------

NAT = "198.51.100.1"


def nat_gateway(remote: str) -> Host:
    """A gateway with one connection for any identity behind the NAT, and a pool."""
    conn = {
        "remote_addrs": [remote],
        "local": {"auth": "psk", "id": GATEWAY},
        "remote": {"auth": "psk", "id": "%any"},
        "pools": ["rw"],
        "children": {"home": {"local_ts": [HOME], "remote_ts": ["10.3.0.0/24"],
                              "esp_proposals": ESP}},
    }  # fmt: skip
    data = gateway({"rw": conn}, secrets={"ike-any": {"secret": PSK["gw"]}},
                   pools={"rw": {"addrs": "10.3.0.0/24"}})  # fmt: skip
    return Host(data)


def test_two_clients_behind_one_nat_each_have_their_own_ike_sa_address_and_child_sa() -> None:
    """Both come from the NAT's address, from ports of its own for each: each IKE SA is
    its own (by SPI), answered at its own port, floated to its own 4500 mapping; each
    client has its own lease and its own CHILD_SA, whose ESP in UDP goes to its port: the
    gateway's stack sends each packet with the SA of its inner destination."""
    gw = nat_gateway("%any")
    carol = Host(client("192.0.2.1", "carol", secret=PSK["gw"]), vips=("0.0.0.0",))
    dave = Host(client("192.0.2.3", "dave", secret=PSK["gw"]), vips=("0.0.0.0",))
    net = Network([gw, carol, dave], nat=NAT, behind=(carol, dave))
    net.connect(carol)
    net.connect(dave)
    sas = ike_sas(gw)
    assert [(s["state"], s["remote"], s["encapsulated"]) for s in sas] == [
        ("established", NAT, True)
    ] * 2
    ports = {s["remote_port"] for s in sas}
    assert ports == {net.mappings[(carol, 4500)], net.mappings[(dave, 4500)]}
    assert ike_sas(carol)[0]["virtual_ips"] == ["10.3.0.1"]
    assert ike_sas(dave)[0]["virtual_ips"] == ["10.3.0.2"]
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert sorted((e["identity"], e["address"]) for e in pool["online"]) == [
        ("carol@example.org", "10.3.0.1"), ("dave@example.org", "10.3.0.2")]  # fmt: skip
    # Each CHILD_SA's outbound SA sends ESP in UDP to its own client's port.
    records = {r.remote_ts[0].network_address.exploded: r for r in gw.keymgr.children.values()}
    assert set(records) == {"10.3.0.1", "10.3.0.2"}
    assert records["10.3.0.1"].natt_port == net.mappings[(carol, 4500)]
    assert records["10.3.0.2"].natt_port == net.mappings[(dave, 4500)]
    for record in records.values():
        sa = gw.stack.sadb.lookup_esp(record.spi_out, ipaddress.ip_address(NAT).packed)
        assert sa is not None and sa.natt_rem is not None
        assert sa.natt_rem.port == record.natt_port
    # The home network answers each client at its virtual address: to its own port.
    for vip, who in (("10.3.0.1", carol), ("10.3.0.2", dave)):
        gw.path.outbound(udp_packet("203.0.113.9", vip), 0.0)
        sent = gw.esp[-1]
        assert (sent.dst, sent.port) == (ipaddress.ip_address(NAT).packed,
                                         net.mappings[(who, 4500)])  # fmt: skip
        who.path.inbound(sent.payload, who.addr.packed, 0.0)
        assert who.delivered[-1] == udp_packet("203.0.113.9", vip)
    # Each client's traffic from its address is taken; dave's with carol's address is not
    # (his CHILD_SA's inner selectors on the gateway are his address only).
    gw_addr = ipaddress.ip_address(GATEWAY).packed
    carol.path.outbound(udp_packet("10.3.0.1", "203.0.113.9"), 0.0)
    gw.path.inbound(carol.esp[-1].payload, gw_addr, 0.0)
    assert gw.delivered == [udp_packet("10.3.0.1", "203.0.113.9")]
    dave.path.outbound(udp_packet("10.3.0.1", "203.0.113.9"), 0.0)
    gw.path.inbound(dave.esp[-1].payload, gw_addr, 0.0)
    assert len(gw.delivered) == 1 and gw.path.drops.get("inner_outside_sa") == 1
    # One leaves (INFORMATIONAL { D }); the other's IKE SA, lease and CHILD_SA stay.
    assert carol.keymgr.down("home", 1.0) == 1
    net.carry(1.0)
    (left,) = ike_sas(gw)
    assert left["remote_port"] == net.mappings[(dave, 4500)] and left["virtual_ips"] == ["10.3.0.2"]
    assert [r.remote_ts[0].network_address.exploded for r in gw.keymgr.children.values()] == [
        "10.3.0.2"
    ]


# -- the choice itself -----------------------------------------------------------------


class _Sa:
    """What `select_connection` sees of an IKE SA: its connection, its agreed suite."""

    def __init__(self, config: IkeConfig, suite: Suite) -> None:
        self.config, self.suite = config, suite
        self.switched: list[str] = []
        self.counters = IkeCounters()

    def _name(self) -> str:
        return f"{self.config.name}[0/0]"

    def _switch_connection(self, candidate: Candidate) -> None:
        self.config = candidate.config
        self.switched.append(candidate.config.name)


def _config(name: str, local_id: str, remote_id: str, proposal: str = IKE[0]) -> IkeConfig:
    return IkeConfig(
        name, ipaddress.ip_address(GATEWAY), ipaddress.ip_address("0.0.0.0"),
        identity(local_id), None, b"k" * 16, (parse_ike_proposal(proposal),),
        remote_id_match=IdentityMatch.parse(remote_id),
    )  # fmt: skip


def _candidates(*configs: IkeConfig) -> list[Candidate]:
    return [Candidate(c, None, None, 16, lambda: None) for c in configs]


def _auth_request(*payloads: Any) -> IkeMessage:
    return IkeMessage(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, True, False, 1, payloads)


IDI = IdPayload(PayloadType.IDi, IdType.ID_RFC822_ADDR, b"carol@example.org")
PSK_AUTH = AuthPayload(AuthMethod.SHARED_KEY_MIC, b"\x00" * 32)


def test_the_idr_asked_for_picks_the_connection_with_that_local_id() -> None:
    """HDR, SK {IDi, IDr = vpn2.example.org, AUTH, ...} -->  the connection that is vpn2."""
    one = _config("one", "vpn1.example.org", "%any")
    two = _config("two", "vpn2.example.org", "%any")
    sa = _Sa(one, parse_ike_proposal(IKE[0]))
    idr = IdPayload(PayloadType.IDr, IdType.ID_FQDN, b"vpn2.example.org")
    select_connection(sa, _candidates(one, two), _auth_request(IDI, idr, PSK_AUTH))
    assert sa.switched == ["two"]
    # Without IDr, the first that fits stays.
    sa = _Sa(one, parse_ike_proposal(IKE[0]))
    select_connection(sa, _candidates(one, two), _auth_request(IDI, PSK_AUTH))
    assert sa.switched == []


def test_a_connection_without_the_agreed_ike_proposal_is_passed_over() -> None:
    one = _config("one", GATEWAY, "carol@example.org", "aes256-sha384-ecp384")
    two = _config("two", GATEWAY, "%any")
    sa = _Sa(two, parse_ike_proposal(IKE[0]))
    select_connection(sa, _candidates(one, two), _auth_request(IDI, PSK_AUTH))
    assert sa.switched == []  # "one" names carol exactly, but not the proposal agreed
    with pytest.raises(IkeExchangeError) as info:
        select_connection(sa, _candidates(one, _config("three", GATEWAY, "dave@example.org")),
                          _auth_request(IDI, PSK_AUTH))  # fmt: skip
    assert info.value.notify == NotifyType.AUTHENTICATION_FAILED
    assert str(info.value).startswith(
        "no connection for IDi carol@example.org authenticating by psk: "
        "one: not the IKE proposal agreed; three: another remote id"
    )
    assert sa.counters.auth_failures == {"identity": 1}  # for the metrics


def test_a_gateway_for_any_peer_serves_two_clients_at_once() -> None:
    """remote_addrs = ["%any"]: two clients from two addresses, each its own address and
    CHILD_SA, each answered by the gateway's stack through its own SA."""
    gw = nat_gateway("%any")
    carol = Host(client("192.0.2.1", "carol", secret=PSK["gw"]), vips=("0.0.0.0",))
    dave = Host(client("192.0.2.3", "dave", secret=PSK["gw"]), vips=("0.0.0.0",))
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "rw", ("192.0.2.3", 500): "rw"}
    for vip, who in (("10.3.0.1", carol), ("10.3.0.2", dave)):
        assert ike_sas(who)[0]["virtual_ips"] == [vip]
        gw.path.outbound(udp_packet("203.0.113.9", vip), 0.0)
        assert gw.esp[-1].dst == who.addr.packed
        who.path.inbound(gw.esp[-1].payload, who.addr.packed, 0.0)
        assert who.delivered == [udp_packet("203.0.113.9", vip)]
    # An address no client holds has no SA: dropped, counted, no ACQUIRE.
    gw.path.outbound(udp_packet("203.0.113.9", "10.3.0.77"), 0.0)
    assert gw.path.drops.get("no_peer_sa") == 1


def test_ikev1_a_second_client_behind_the_nat_leaves_the_first_ones_sas() -> None:
    """Both clients make initial contact (RFC 2407 §4.6.3.3) from behind one NAT: the
    second one's INITIAL-CONTACT clears what the gateway had with its own NAT mapping
    only, not the first client's ISAKMP SA and CHILD_SA."""
    ikev1 = {"version": 1, "proposals": ["aes128-sha256-modp2048"]}
    conn = {
        "remote_addrs": ["%any"], **ikev1,
        "local": {"auth": "psk", "id": GATEWAY}, "remote": {"auth": "psk", "id": "%any"},
        "children": {"home": {"local_ts": [HOME], "remote_ts": ["198.51.100.0/24"],
                              "esp_proposals": ["aes128-sha256"]}},
    }  # fmt: skip
    gw = Host(gateway({"rw": conn}, secrets={"ike-any": {"secret": PSK["gw"]}}))
    clients = []
    for addr, who, net in (("192.0.2.1", "carol", "198.51.100.0/25"),
                           ("192.0.2.3", "dave", "198.51.100.128/25")):  # fmt: skip
        data = client(addr, who, secret=PSK["gw"], **ikev1)
        data["connections"]["home"]["children"]["home"].update(
            local_ts=[net], esp_proposals=["aes128-sha256"]
        )
        clients.append(Host(data))
    net = Network([gw, *clients], nat=NAT, behind=tuple(clients))
    for host in clients:
        net.connect(host)
    sas = [s for s in ike_sas(gw) if s["state"] == "established"]
    assert len(sas) == 2 and {s["remote"] for s in sas} == {NAT}
    assert len({s["remote_port"] for s in sas}) == 2
    assert sorted(c["remote_ts"][0] for c in gw.keymgr.status()["child_sas"]) == [
        "198.51.100.0/25", "198.51.100.128/25"]  # fmt: skip


def test_an_ipv6_gateway_for_any_peer_serves_two_ipv6_clients() -> None:
    """remote_addrs = ["%any"] beside an IPv6 local address: the policy is to any IPv6
    peer, and each client gets its own IPv6 address and SA."""
    gw6, home6, pool6 = "2001:db8:1::2", "2001:db8:2::/64", "2001:db8:3::/64"
    conn = {
        "local_addrs": [gw6], "remote_addrs": ["%any"],
        "local": {"auth": "psk", "id": "vpn.example.org"},
        "remote": {"auth": "psk", "id": "%any"}, "pools": ["rw6"],
        "children": {"home": {"local_ts": [home6], "remote_ts": [pool6], "esp_proposals": ESP}},
    }  # fmt: skip
    data = gateway({"rw": conn}, secrets={"ike-any": {"secret": PSK["gw"]}},
                   pools={"rw6": {"addrs": pool6}})  # fmt: skip
    data["daemon"]["addresses"] = [gw6]
    gw = Host(data)
    clients = []
    for addr, who in (("2001:db8:1::10", "carol"), ("2001:db8:1::11", "dave")):
        c = client(addr, who, secret=PSK["gw"])
        home = c["connections"]["home"]
        home.update(remote_addrs=[gw6], remote={"auth": "psk", "id": "vpn.example.org"})
        home["children"]["home"].update(local_ts=["::/0"], remote_ts=[home6])
        clients.append(Host(c, vips=("::",)))
    net = Network([gw, *clients])
    for host in clients:
        net.connect(host)
    vips = [ike_sas(c)[0]["virtual_ips"] for c in clients]
    assert vips == [["2001:db8:3::1"], ["2001:db8:3::2"]]
    tunnels = [p.tunnel for p in gw.stack.spd.policies() if p.tunnel is not None]
    assert tunnels and all(t.any_remote and t.remote.version == 6 for t in tunnels)
    for vip, host in zip(("2001:db8:3::1", "2001:db8:3::2"), clients, strict=True):
        gw.path.outbound(udp6_packet("2001:db8:2::9", vip), 0.0)
        assert gw.esp[-1].dst == host.addr.packed
        host.path.inbound(gw.esp[-1].payload, host.addr.packed, 0.0)
        assert host.delivered == [udp6_packet("2001:db8:2::9", vip)]


def udp6_packet(src: str, dst: str) -> bytes:
    payload = b"data"
    udp = struct.pack("!HHHH", 4000, 53, 8 + len(payload), 0) + payload
    ends = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    header = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, *ends)
    return header + udp


def test_one_identity_twice_behind_one_nat_gets_two_addresses() -> None:
    """Two devices of carol's behind one NAT: the same IKE identity from one address, but
    from two ports, is two peers: two IKE SAs, two addresses, both leases online."""
    gw = nat_gateway("%any")
    phone = Host(client("192.0.2.1", "carol", secret=PSK["gw"]), vips=("0.0.0.0",))
    laptop = Host(client("192.0.2.3", "carol", secret=PSK["gw"]), vips=("0.0.0.0",))
    net = Network([gw, phone, laptop], nat=NAT, behind=(phone, laptop))
    net.connect(phone)
    net.connect(laptop)
    assert [ike_sas(h)[0]["virtual_ips"] for h in (phone, laptop)] == [["10.3.0.1"], ["10.3.0.2"]]
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert sorted((e["identity"], e["address"]) for e in pool["online"]) == [
        ("carol@example.org", "10.3.0.1"), ("carol@example.org", "10.3.0.2")]  # fmt: skip


def test_the_gateway_rekeys_a_child_sa_of_a_client_behind_the_nat() -> None:
    """CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi, TSr} from the gateway for carol's
    CHILD_SA: the new SAs carry her address as their inner selectors and her NAT mapping
    as their port, and the stack sends her packets with them; dave's SA is untouched."""
    gw = nat_gateway("%any")
    carol = Host(client("192.0.2.1", "carol", secret=PSK["gw"]), vips=("0.0.0.0",))
    dave = Host(client("192.0.2.3", "dave", secret=PSK["gw"]), vips=("0.0.0.0",))
    net = Network([gw, carol, dave], nat=NAT, behind=(carol, dave))
    net.connect(carol)
    net.connect(dave)
    before = {
        r.remote_ts[0].network_address.exploded: r.spi_in for r in gw.keymgr.children.values()
    }
    session = next(
        s for s in gw.keymgr.sessions.values() if s.virtual_ips[0].exploded == "10.3.0.1"
    )
    assert session.rekey_child(before["10.3.0.1"], 10.0)
    gw.keymgr._drain(session, 10.0)
    net.carry(10.0)
    after = {r.remote_ts[0].network_address.exploded: r for r in gw.keymgr.children.values()}
    assert set(after) == {"10.3.0.1", "10.3.0.2"}
    assert after["10.3.0.1"].spi_in != before["10.3.0.1"]
    assert after["10.3.0.2"].spi_in == before["10.3.0.2"]
    assert after["10.3.0.1"].natt_port == net.mappings[(carol, 4500)]
    gw.path.outbound(udp_packet("203.0.113.9", "10.3.0.1"), 10.0)
    sent = gw.esp[-1]
    assert int.from_bytes(sent.payload[:4], "big") == after["10.3.0.1"].spi_out
    assert sent.port == net.mappings[(carol, 4500)]
    carol.path.inbound(sent.payload, carol.addr.packed, 10.0)
    assert carol.delivered == [udp_packet("203.0.113.9", "10.3.0.1")]


def test_a_transport_trap_to_any_peer_initiates_to_the_packets_peer() -> None:
    """A transport-mode trap of a connection for any peer: the stack ACQUIREs for the
    packet's own peer, and the key manager opens the IKE SA to that address, with a
    transport-mode CHILD_SA between the two hosts' addresses."""
    mine, peer = "192.0.2.1", "192.0.2.2"
    transport = {"mode": "transport", "esp_proposals": ESP}
    a_conn = {"local_addrs": [mine], "remote_addrs": ["%any"], "proposals": IKE,
              "local": {"auth": "psk", "id": mine}, "remote": {"auth": "psk", "id": "%any"},
              "children": {"host": {**transport, "remote_ts": ["192.0.2.0/24"],
                                    "start_action": "trap"}}}  # fmt: skip
    b_conn = {"local_addrs": [peer], "remote_addrs": [mine], "proposals": IKE,
              "local": {"auth": "psk", "id": peer}, "remote": {"auth": "psk", "id": mine},
              "children": {"host": transport}}  # fmt: skip
    secret = {"ike-any": {"secret": PSK["gw"]}}
    a = Host({"daemon": {"addresses": [mine]}, "connections": {"opp": a_conn}, "secrets": secret})
    b = Host({"daemon": {"addresses": [peer]}, "connections": {"host": b_conn}, "secrets": secret})
    a.path.outbound(udp_packet(mine, peer), 0.0)
    while a.node.deliver(0.0):
        pass  # the ACQUIRE, to the key manager
    Network([a, b]).carry(0.0)
    (sa,) = ike_sas(a)
    assert (sa["name"], sa["remote"], sa["state"]) == ("opp", peer, "established")
    (sa,) = ike_sas(b)
    assert (sa["name"], sa["remote"], sa["state"]) == ("host", mine, "established")
    for h, local, remote in ((a, mine, peer), (b, peer, mine)):
        (record,) = h.keymgr.children.values()
        assert (record.local_ts, record.remote_ts) == (
            (ipaddress.ip_network(local),), (ipaddress.ip_network(remote),))  # fmt: skip
