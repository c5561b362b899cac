"""IPv6 end to end with charon: IKE and ESP in UDP over IPv6 outer addresses
(2001:db8:1::/64), IPv6 protected networks (2001:db8:a::/64 === 2001:db8:b::/64), IKEv2
and IKEv1 site to site with a PSK, larval as initiator (its trap policy) and as
responder, ping6 through the tunnel; and remote access over IPv6: charon as road warrior
(`vips = ::`) gets an address of larval's IPv6 pool and pings the home server behind
larval from it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import needs_charon, needs_netns, spis
from tests.interop.ra_setup import (
    CLIENT,
    INNER6,
    NET6,
    Pool,
    RaTopology,
    Topology6,
    gateway_config,
    road_warrior,
)

pytestmark = [needs_netns, needs_charon]

MSCHAPV2_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so")
PASSWORD = "carol-Interop-Password-1"
POOL6, VIP6, DNS6 = "2001:db8:f::/112", "2001:db8:f::1", "2001:db8:f::53"

SUITES = {
    2: ("aes128-sha256-x25519", "aes128gcm16"),
    1: ("aes128-sha256-modp2048", "aes128-sha256"),
}


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_site_to_site_over_ipv6(tmp_path: Path, role: str, version: int) -> None:
    ike, esp = SUITES[version]
    with Topology6(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
            larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="trap",
                                  version=version)  # fmt: skip
            result = topo.ping6(topo.b)
        else:
            larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="none",
                                  version=version)  # fmt: skip
            charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
            charon.initiate()
            result = topo.ping6(topo.a)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        listing = charon.list_sas()
        assert f"ESTABLISHED, IKEv{version}" in listing, listing
        assert "2001:db8:1::1[4500]" in listing and "2001:db8:1::2[4500]" in listing, listing
        assert "local  2001:db8:a::/64\n" in listing, listing
        assert "remote 2001:db8:b::/64\n" in listing, listing


def test_remote_access_over_ipv6(tmp_path: Path) -> None:
    """charon asks for `vips = ::` over IPv6 and gets the IPv6 pool's first address and
    DNS server; its CHILD_SA is that address's /128 === the home network; a ping6 from it
    reaches the home server behind larval and comes back."""
    with RaTopology(tmp_path, family=6) as topo:
        larval = topo.gateway(gateway_config(topo, [Pool("rw6", POOL6, dns=[DNS6])]))
        charon = topo.client("c1", road_warrior(topo, "c1", vips="::", remote_ts=NET6["b"]))
        charon.initiate()
        listing = charon.list_sas()
        assert f"local  {VIP6}/128\n" in listing and f"remote {NET6['b']}\n" in listing, listing
        assert f"@ {CLIENT['c1'][1]}[4500]" in listing, listing
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [VIP6]  # type: ignore[index]
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["remote_ts"] == [f"{VIP6}/128"]  # type: ignore[index]
        result = topo.ping_server("c1", VIP6)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        # charon put the address on its TUN and the pool's DNS server in its resolv file.
        assert f"installing new virtual IP {VIP6}" in (charon.dir / "charon.log").read_text()
        assert f"nameserver {DNS6}" in topo.clients["c1"].resolv.read_text()


@pytest.mark.parametrize("version", [2, 1])
def test_nat_detection_over_ipv6_finds_no_nat_on_larvals_side(tmp_path: Path, version: int) -> None:
    """larval without `encap`: its NAT detection hashes over IPv6 addresses are the ones
    charon computes (charon finds no NAT on larval's side), and charon's own, faked to
    force UDP encapsulation (kernel-libipsec), move both ends to UDP 4500."""
    ike, esp = SUITES[version]
    with Topology6(tmp_path) as topo:
        larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="trap",
                              version=version, encap=False)  # fmt: skip
        charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
        result = topo.ping6(topo.b)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "remote host is behind NAT" not in log, log[-4000:]
        (sa,) = larval.status()["ike_sas"]  # type: ignore[misc]
        assert sa["encapsulated"] and sa["remote_port"] == 4500, sa  # type: ignore[index]


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables (nft) for the NAT66 router")
@pytest.mark.parametrize("version", [2, 1])
def test_larval_behind_a_port_translating_nat66(tmp_path: Path, version: int) -> None:
    """larval behind a router that masquerades it over IPv6 (NAT66, every UDP source port
    translated), without `encap`: its trap starts the exchange, NAT detection finds the
    NAT, both ends float to 4500, charon answers at the translated port; pings both ways."""
    ike, esp = SUITES[version]
    with Topology6(tmp_path, nat="b") as topo:
        larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="trap",
                              version=version, encap=False)  # fmt: skip
        charon = topo.charon6(topo.a, proposals=ike, esp=esp, version=version)
        topo.ping6(topo.b, count=1)
        larval.wait_for("child")
        for site in (topo.b, topo.a):
            result = topo.ping6(site)
            assert " 0% packet loss" in result.stdout, (result.stdout,
                                                        larval.log.read_text()[-4000:],
                                                        charon.log_tail())  # fmt: skip
        (sa,) = larval.status()["ike_sas"]  # type: ignore[misc]
        assert sa["encapsulated"] and sa["remote_port"] == 4500, sa  # type: ignore[index]
        # charon sees larval at the router's address and a translated port.
        listing = charon.list_sas()
        found = re.search(r"remote '2001:db8:1::2' @ 2001:db8:1::2\[(\d+)\]", listing)
        assert found and 20000 <= int(found.group(1)) <= 30000, listing


@pytest.mark.parametrize("plain", [False, True], ids=["esp-in-udp", "plain-esp"])
def test_larval_to_larval_over_ipv6(tmp_path: Path, plain: bool) -> None:
    """Two larvals, IKEv2 over IPv6, ESP in UDP or (`plain_esp`, no `encap`, no NAT) ESP
    straight over IPv6 on a raw socket: the first packet through a's trap brings the
    tunnel up; the SPIs agree on both ends."""
    ike, esp = SUITES[2]
    keys = "plain_esp = true" if plain else ""
    with Topology6(tmp_path) as topo:
        a = topo.larval6(topo.a, proposals=[ike], esp=[esp], start_action="trap",
                         encap=not plain, daemon_keys=keys)  # fmt: skip
        b = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="none",
                         encap=not plain, daemon_keys=keys)  # fmt: skip
        result = topo.ping6(topo.a)
        assert " 0% packet loss" in result.stdout, (result.stdout, a.log.read_text()[-3000:])
        sa, sb = a.wait_for("child"), b.wait_for("child")
        ca, cb = sa["child_sas"][0], sb["child_sas"][0]  # type: ignore[index]
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        assert ca["local_ts"] == [NET6["a"]] and ca["remote_ts"] == [NET6["b"]], ca
        (ike_sa,) = sa["ike_sas"]  # type: ignore[index]
        assert ike_sa["encapsulated"] is not plain, ike_sa


@pytest.mark.skipif(not MSCHAPV2_PLUGIN.exists(),
                    reason="needs charon's eap-mschapv2 (libcharon-extauth-plugins)")  # fmt: skip
def test_eap_mschapv2_road_warrior_over_ipv6_with_fragments(tmp_path: Path) -> None:
    """EAP-MSCHAPv2 over IPv6 against a gateway with a 3072-bit RSA certificate: larval's
    IKE_AUTH response does not fit 1280 bytes of IPv6 datagram and goes in fragments
    (RFC 7383) sized for the IPv6 header, which charon puts back together; carol gets the
    IPv6 pool's address and pings the home server from it."""
    certs = make_set(Spec("rsa", 3072), tmp_path / "pki")
    with RaTopology(tmp_path, family=6) as topo:
        config = gateway_config(
            topo, [Pool("rw6", POOL6, dns=[DNS6])], eap={"carol": PASSWORD},
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{IDS["b"]}" }}',
            remote='{ auth = "eap-mschapv2", eap_id = "%any" }',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
        )  # fmt: skip
        larval = topo.gateway(config)
        swanctl = road_warrior(topo, "c1", vips="::", remote_ts=NET6["b"], auth="eap-mschapv2",
                               eap_id="carol", password=PASSWORD, gateway_id=IDS["b"])  # fmt: skip
        trusted = certs.credentials(tmp_path / "c1-credentials", None)  # the CA only
        charon = topo.client("c1", swanctl, plugins="eap-identity eap-mschapv2",
                             credentials=trusted)  # fmt: skip
        charon.initiate()
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "reassembled fragmented IKE message" in log, log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert re.search(
            r"sending IKE_AUTH response \d+ .* in \d+ fragments", larval.log.read_text()
        )
        result = topo.ping_server("c1", VIP6)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        assert PASSWORD not in larval.log.read_text()


def test_child_sa_rekey_over_ipv6_while_ping6_flows(tmp_path: Path) -> None:
    """larval rekeys the IPv6 CHILD_SA while ping6 runs: between the rekey and the old
    SA's deletion both SAs join the same two gateways, and every packet still finds one
    for its addresses; nothing is lost, the SPIs change."""
    ike, esp = SUITES[2]
    with Topology6(tmp_path) as topo:
        larval = topo.larval6(topo.b, proposals=[ike], esp=[esp], start_action="none",
                              rekey="6s", life="12s")  # fmt: skip
        charon = topo.charon6(topo.a, proposals=ike, esp=esp)
        charon.initiate()
        before = spis(charon.list_sas())
        ping = subprocess.Popen(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-6", "-c", "50", "-i", "0.2",
             "-W", "2", "-I", INNER6["a"], INNER6["b"]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        out, _ = ping.communicate(timeout=60)
        after = spis(charon.list_sas())
        assert " 0% packet loss" in out, (out, larval.log.read_text()[-3000:])
        assert after and after != before, (before, after)
