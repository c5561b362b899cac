"""The remote-access matrix with charon as the road warrior of a larval gateway
(`ra_setup.RaTopology`: clients c1 and c2 on the gateway's link, a home server behind
it): EAP-MSCHAPv2 and EAP-MD5 with the right and a wrong password; `vips = 0.0.0.0,::`
gets one address of each family from an IPv4 and an IPv6 pool, pings the home server from
both and finds both pools' DNS servers in its resolv file; a pool of one address serves
the first client and refuses the second (INTERNAL_ADDRESS_FAILURE, no CHILD_SA) while the
first keeps its tunnel; a client that disconnects and comes back gets its address again,
`larval pools --json` showing the lease offline, then online."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from larval.bench.charon import Charon, CharonError
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import NET, LarvalDaemon, needs_charon, needs_netns
from tests.interop.ra_setup import (
    CLIENT,
    NET6,
    Pool,
    RaTopology,
    gateway_config,
    road_warrior,
)

pytestmark = [needs_netns, needs_charon]

POOL4 = Pool("rw", "10.3.0.0/24", dns=["10.3.0.53"])
POOL6 = Pool("rw6", "2001:db8:f::/112", dns=["2001:db8:f::53"])
EAP_PLUGINS = "eap-identity eap-mschapv2 eap-md5"
PASSWORD = "carol-Interop-Password-1"
WRONG = "not-Carols-Password-9"
GATEWAY = IDS["b"]


def _pools(topo: RaTopology) -> dict[str, dict[str, Any]]:
    """`larval pools --json` of the gateway, by pool name."""
    out = subprocess.run(
        [sys.executable, "-m", "larval", "pools", "--json", "--control-socket",
         str(topo.b.dir / "control")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return {pool["name"]: pool for pool in json.loads(out)["pools"]}


def _virtual_ips(charon: Charon) -> list[str]:
    """The virtual IPs charon's IKE SA `rw` holds, as `--list-sas` shows them."""
    match = re.search(r"local  '[^']*' @ \S+ \[([^\]]+)\]", charon.list_sas())
    return match.group(1).split(" ") if match else []


def _leases(pool: dict[str, Any], state: str) -> list[tuple[str, str]]:
    return [(lease["identity"], lease["address"]) for lease in pool[state]]


@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
@pytest.mark.parametrize("method", ["eap-mschapv2", "eap-md5"])
def test_eap_passwords(tmp_path: Path, method: str, right: bool) -> None:
    """The gateway proves itself with its certificate and asks carol's EAP identity; the
    right password brings up the CHILD_SA with carol's lease and traffic from its address
    to the home server; a wrong one is AUTHENTICATION_FAILED, the reason and carol named in
    larval's log but no password, no lease taken, no SA left on either end."""
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with RaTopology(tmp_path) as topo:
        config = gateway_config(
            topo, [POOL4], eap={"carol": PASSWORD},
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{GATEWAY}" }}',
            remote=f'{{ auth = "{method}", eap_id = "%any" }}',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
        )  # fmt: skip
        larval = topo.gateway(config)
        secret = PASSWORD if right else WRONG
        swanctl = road_warrior(topo, "c1", auth=method, eap_id="carol", password=secret,
                               gateway_id=GATEWAY)  # fmt: skip
        trusted = certs.credentials(tmp_path / "c1-credentials", None)  # the CA only
        charon = topo.client("c1", swanctl, plugins=EAP_PLUGINS, credentials=trusted)
        name = {"eap-mschapv2": "EAP_MSCHAPV2", "eap-md5": "EAP_MD5"}[method]
        if right:
            charon.initiate()
            log = (charon.dir / "charon.log").read_text(errors="replace")
            assert f"EAP method {name} succeeded" in log, log[-4000:]
            assert _virtual_ips(charon) == ["10.3.0.1"]
            result = topo.ping_server("c1", "10.3.0.1")
            assert " 0% packet loss" in result.stdout, (
                result.stdout,
                larval.log.read_text()[-4000:],
            )
            (ike,) = larval.wait_for("child")["ike_sas"]  # type: ignore[misc]
            auth = ike["auth_remote"]  # type: ignore[index]
            assert (auth["method"], auth["identity"]) == (method, "carol"), ike
            assert _leases(_pools(topo)["rw"], "online") == [("carol", "10.3.0.1")]
        else:
            with pytest.raises(CharonError):
                charon.initiate(timeout=10)
            reason = {"eap-mschapv2": "EAP-MSCHAPv2", "eap-md5": "EAP-MD5"}[method]
            _refused(larval, charon, f"{reason}: wrong password for user 'carol'")
            pool = _pools(topo)["rw"]
            assert pool["online"] == [] and pool["offline"] == [], pool
        log = larval.log.read_text()
        assert PASSWORD not in log and WRONG not in log


def _refused(larval: LarvalDaemon, charon: Charon, reason: str, timeout: float = 10) -> None:
    """Wait until larval's log gives `reason` and neither end holds an SA."""
    deadline = time.monotonic() + timeout
    while True:
        log = larval.log.read_text()
        status = larval.status()
        listing = charon.list_sas()
        if (
            reason in log
            and not status["ike_sas"]
            and not status["child_sas"]
            and not re.search(r"^\S+: #", listing, re.M)
        ):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not refused ({reason}):\n{status}\n{listing}\n{log[-4000:]}")
        time.sleep(0.3)


@pytest.mark.parametrize("outer", [4, 6], ids=["over-ipv4", "over-ipv6"])
def test_both_families_from_two_pools(tmp_path: Path, outer: int) -> None:
    """`vips = 0.0.0.0,::`, IKE over IPv4 or IPv6 (so that each family's traffic goes in
    ESP over the other's once): one address from the IPv4 pool and one from the IPv6 pool; a
    CHILD_SA to each of the home's networks (larval's CHILD_SA joins one pair of networks:
    the IPv4 one in IKE_AUTH, the IPv6 one in CREATE_CHILD_SA, where charon's TSi holds
    both addresses), each narrowed to its family's address; pings from each address to
    the home server; both pools' DNS servers in the client's resolv file."""
    with RaTopology(tmp_path, family=outer) as topo:
        larval = topo.gateway(gateway_config(topo, [POOL4, POOL6]))
        swanctl = road_warrior(topo, "c1", vips="0.0.0.0,::",
                               children={"net": NET["b"], "net6": NET6["b"]})  # fmt: skip
        charon = topo.client("c1", swanctl)
        charon.initiate("net")
        charon.initiate("net6")
        listing = charon.list_sas()
        assert sorted(_virtual_ips(charon)) == ["10.3.0.1", "2001:db8:f::1"], listing
        assert f"local  10.3.0.1/32\n    remote {NET['b']}\n" in listing, listing
        assert f"local  2001:db8:f::1/128\n    remote {NET6['b']}\n" in listing, listing
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert sorted(ike["virtual_ips"]) == ["10.3.0.1", "2001:db8:f::1"]  # type: ignore[index]
        for vip in ("10.3.0.1", "2001:db8:f::1"):
            result = topo.ping_server("c1", vip)
            assert " 0% packet loss" in result.stdout, (
                result.stdout,
                larval.log.read_text()[-4000:],
            )
        resolv = topo.clients["c1"].resolv.read_text()
        assert "nameserver 10.3.0.53" in resolv and "nameserver 2001:db8:f::53" in resolv, resolv
        pools = _pools(topo)
        address = topo.clients["c1"].address
        assert _leases(pools["rw"], "online") == [(address, "10.3.0.1")]
        assert _leases(pools["rw6"], "online") == [(address, "2001:db8:f::1")]


def test_an_exhausted_pool_refuses_the_second_client(tmp_path: Path) -> None:
    """A pool of one address: c1 takes it; c2 gets INTERNAL_ADDRESS_FAILURE and no
    CHILD_SA, and keeps nothing; c1's tunnel carries traffic before and after."""
    with RaTopology(tmp_path, clients=2) as topo:
        larval = topo.gateway(gateway_config(topo, [Pool("one", "10.3.0.7/32")]))
        first = topo.client("c1", road_warrior(topo, "c1"))
        first.initiate()
        assert _virtual_ips(first) == ["10.3.0.7"]
        assert " 0% packet loss" in topo.ping_server("c1", "10.3.0.7").stdout
        second = topo.client("c2", road_warrior(topo, "c2"))
        with pytest.raises(CharonError):
            second.initiate(timeout=10)
        log = (second.dir / "charon.log").read_text(errors="replace")
        assert "N(INT_ADDR_FAIL)" in log, log[-4000:]
        assert not re.search(r"INSTALLED", second.list_sas()), second.list_sas()
        assert "no virtual IP for" in larval.log.read_text()
        status = larval.status()
        assert [c["remote_ts"] for c in status["child_sas"]] == [["10.3.0.7/32"]], status  # type: ignore[union-attr, index]
        result = topo.ping_server("c1", "10.3.0.7")
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        pool = _pools(topo)["one"]
        assert _leases(pool, "online") == [(CLIENT["c1"][0], "10.3.0.7")], pool
        assert pool["offline"] == [], pool


def test_a_returning_client_gets_its_address_back(tmp_path: Path) -> None:
    """c1 takes 10.3.0.1 and disconnects (its lease offline); c2 comes meanwhile and gets
    another address; c1 comes back and gets 10.3.0.1 again (online once more)."""
    with RaTopology(tmp_path, clients=2) as topo:
        larval = topo.gateway(gateway_config(topo, [POOL4]))
        c1, c2 = CLIENT["c1"][0], CLIENT["c2"][0]
        first = topo.client("c1", road_warrior(topo, "c1"))
        first.initiate()
        assert _virtual_ips(first) == ["10.3.0.1"]
        first.swanctl("--terminate", "--ike", "rw")
        larval.wait_for("none")
        pool = _pools(topo)["rw"]
        assert _leases(pool, "offline") == [(c1, "10.3.0.1")] and pool["online"] == [], pool
        second = topo.client("c2", road_warrior(topo, "c2"))
        second.initiate()
        assert _virtual_ips(second) == ["10.3.0.2"]
        first.initiate()
        assert _virtual_ips(first) == ["10.3.0.1"]
        pool = _pools(topo)["rw"]
        assert sorted(_leases(pool, "online")) == [(c1, "10.3.0.1"), (c2, "10.3.0.2")], pool
        assert pool["offline"] == [], pool
        result = topo.ping_server("c1", "10.3.0.1")
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_gateway_that_tunnels_everything(tmp_path: Path, family: int) -> None:
    """The gateway's local_ts 0.0.0.0/0 (::/0) and charon's remote_ts the same, IKE over
    the same family: the CHILD_SA is the virtual address === every address on both ends
    (not the host 0.0.0.0 or ::), and the client's pings reach the home server."""
    every, pool, vip, vips = {
        4: ("0.0.0.0/0", POOL4, "10.3.0.1", "0.0.0.0"),
        6: ("::/0", POOL6, "2001:db8:f::1", "::"),
    }[family]
    host = f"{vip}/{32 if family == 4 else 128}"
    with RaTopology(tmp_path, family=family) as topo:
        larval = topo.gateway(gateway_config(topo, [pool], local_ts=[every]))
        charon = topo.client("c1", road_warrior(topo, "c1", vips=vips, remote_ts=every))
        charon.initiate()
        listing = charon.list_sas()
        assert f"local  {host}\n    remote {every}\n" in listing, listing
        (child,) = larval.wait_for("child")["child_sas"]  # type: ignore[misc]
        assert (child["local_ts"], child["remote_ts"]) == ([every], [host])  # type: ignore[index]
        result = topo.ping_server("c1", vip)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
