"""larval as a road warrior (``vips = ["0.0.0.0"]``, a child without ``local_ts``): against
a charon gateway with a pool, proving itself by EAP-MSCHAPv2 and by its certificate, and
against a larval gateway with a pool and EAP-MSCHAPv2. Each time the virtual address is
on larval's TUN device, the gateway's network is routed into it from that address, a
ping with no source given goes through and back, the pool's DNS server is in larval's
``resolv_file`` ahead of what the file held, and all of it goes with the IKE SA.

charon's eap-mschapv2 plugin is Debian's ``libcharon-extauth-plugins``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from larval.bench import charon as charon_module
from larval.net.control import control_request
from tests.interop.certs import IDS, CertSet, Spec, make_set
from tests.interop.harness import (
    INNER,
    NET,
    OUTER,
    LarvalDaemon,
    Site,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)
from tests.interop.rw_setup import POOL, VIP, as_road_warrior, until, vip_on_tun, with_pool_a
from tests.interop.test_eap import needs_mschapv2

pytestmark = [needs_netns, needs_charon]

PASSWORD = "carol-Interop-Password-1"
MOON, SUN = IDS["a"], IDS["b"]  # the gateway (site a) and the road warrior (site b)
DNS = "10.3.0.53"
ORIGINAL_RESOLV = "nameserver 192.0.2.53\n"


def _charon_gateway(remote: str) -> str:
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        mobike = no
        proposals = aes128-sha256-x25519
        send_cert = always
        pools = rw_pool
        local {{
            auth = pubkey
            certs = moon.pem
            id = {MOON}
        }}
        remote {{
{remote}
        }}
        children {{
            net {{
                local_ts = {NET["a"]}
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
pools {{
    rw_pool {{
        addrs = {POOL}
        dns = {DNS}
    }}
}}
secrets {{
    eap-carol {{
        id = carol
        secret = "{PASSWORD}"
    }}
}}
"""


def _road_warrior(site: Site, local: str, credentials: Path, remote_ts: str = "",
                  routing_table: int | None = None) -> LarvalDaemon:  # fmt: skip
    """larval on `site` as the road warrior of the gateway on the other site: its child
    names only the gateway's network; the address and the DNS come from the gateway. Its
    routes go to table 220 unless `routing_table` says otherwise."""
    config = larval_config(
        site, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"], start_action="none",
        local=local, remote=f'{{ auth = "pubkey", id = "{MOON}" }}',
        credentials=str(credentials),
    )  # fmt: skip
    config = as_road_warrior(config, site)
    if remote_ts:
        config = config.replace(f'remote_ts = ["{NET[site.peer]}"]', f'remote_ts = ["{remote_ts}"]')
    resolv = site.dir / "resolv.conf"
    resolv.write_text(ORIGINAL_RESOLV)
    config = config.replace("[daemon]\n", f'[daemon]\nresolv_file = "{resolv}"\n')
    if routing_table is not None:
        config = config.replace("[daemon]\n", f"[daemon]\nrouting_table = {routing_table}\n")
    config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
    return LarvalDaemon(site, config)


#: The host's own routes in the main table, which table 220 leaves alone: a default
#: route, and a half of everything that covers the gateway's network (a VPN of its own).
HOST_ROUTES = (f"default via {OUTER['a']}", f"128.0.0.0/1 via {OUTER['a']}")


def _connects_and_pings(topo: Topology, larval: LarvalDaemon, gateway_log: Callable[[], str],
                        target: str, remote_ts: str = NET["a"],
                        table: int = 220) -> None:  # fmt: skip
    """larval comes up with the virtual address, pings `target` on the gateway's network
    from it, and takes it all down again with the IKE SA. With routes in `table` (220)
    the host's own routes in the main table (`HOST_ROUTES`) are the same all along, and
    the ping goes into the tunnel past them."""
    site = topo.b
    if table:
        for route in HOST_ROUTES:
            site.ns.run(["ip", "route", "add", *route.split()])
    topo.daemons.append(larval)
    larval.start()

    def main_table() -> str:
        return site.ns.run(["ip", "route", "show", "table", "main"])

    def in_table() -> str:
        return site.ns.run(["ip", "route", "show", "table", str(table or "main")])

    main = main_table()
    larval.up("s2s/net")
    status = larval.wait_for("child")
    (ike,) = status["ike_sas"]  # type: ignore[misc]
    assert ike["virtual_ips"] == [VIP], ike  # type: ignore[index]
    shown = site.ns.run([sys.executable, "-m", "larval", "status", "--control-socket",
                         str(site.dir / "control")])  # fmt: skip
    assert f"  virtual IP (this end's): {VIP}\n" in shown, shown
    (child,) = status["child_sas"]  # type: ignore[misc]
    assert child["local_ts"] == [f"{VIP}/32"], child  # type: ignore[index]
    assert child["remote_ts"] == [remote_ts], child  # type: ignore[index]

    until("the virtual address on larval0", lambda: vip_on_tun(site), larval)
    route = site.ns.run(["ip", "route", "get", target])
    assert "dev larval0" in route and f"src {VIP}" in route, route
    # No source given: the route's picks the virtual address.
    result = subprocess.run(
        ["ip", "netns", "exec", site.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", target],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert " 0% packet loss" in result.stdout, (result.stdout, larval.status()["stack"],
                                                larval.log.read_text()[-3000:],
                                                gateway_log()[-3000:])  # fmt: skip
    if remote_ts == "0.0.0.0/0" and not table:  # two halves; the default route, if any, stays
        routes = site.ns.run(["ip", "route", "show", "dev", "larval0"])
        assert f"0.0.0.0/1 proto static scope link src {VIP}" in routes, routes
        assert f"128.0.0.0/1 proto static scope link src {VIP}" in routes, routes
    if table:
        assert f"dev larval0 table {table} src {VIP}" in route, route
        assert main_table() == main
        assert f"{table}:\tfrom all lookup {table}" in site.ns.run(["ip", "rule", "show"])
        shown = "default" if remote_ts == "0.0.0.0/0" else remote_ts  # whole, in its table
        routes = in_table()
        assert f"{shown} dev larval0 proto static scope link src {VIP}" in routes, routes
    resolv = site.dir / "resolv.conf"
    text = resolv.read_text()
    assert f"nameserver {DNS}\n" in text and text.endswith(ORIGINAL_RESOLV), text
    log = larval.log.read_text()
    assert f"installing virtual IP {VIP} on larval0" in log
    assert PASSWORD not in log
    # The IKE SA goes: the address, the route and the DNS server go with it.
    control_request(str(site.dir / "control"), {"op": "down", "target": "s2s"})
    until("the virtual address gone", lambda: not vip_on_tun(site), larval)
    assert f"src {VIP}" not in site.ns.run(["ip", "route", "show", "dev", "larval0"])
    assert f"src {VIP}" not in in_table()
    assert main_table() == main
    assert resolv.read_text() == ORIGINAL_RESOLV
    assert "removing virtual IP 10.3.0.1" in larval.log.read_text()
    # Up again, and the daemon stops: it takes them away on its way out.
    larval.up("s2s/net")
    larval.wait_for("child")
    until("the virtual address on larval0 again", lambda: vip_on_tun(site), larval)
    assert f"nameserver {DNS}\n" in resolv.read_text()
    assert larval.stop() == 0
    assert resolv.read_text() == ORIGINAL_RESOLV
    # The rule went with the daemon; the host's own routes stayed.
    assert f"lookup {table}" not in site.ns.run(["ip", "rule", "show"])
    if table:
        shown = main_table()
        assert all(route in shown for route in HOST_ROUTES), shown


def _charon_gateway_and_certs(
    topo: Topology, tmp: Path, remote: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[CertSet, Callable[[], str]]:
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " attr eap-identity eap-mschapv2")  # fmt: skip
    charon = topo.charon(
        topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
        swanctl=_charon_gateway(remote),
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    return certs, lambda: (charon.dir / "charon.log").read_text(errors="replace")


@needs_mschapv2
def test_an_eap_mschapv2_road_warrior_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        remote = "            auth = eap-mschapv2\n            eap_id = %any"
        certs, charon_log = _charon_gateway_and_certs(topo, tmp_path, remote, monkeypatch)
        larval = _road_warrior(topo.b, '{ auth = "eap-mschapv2", eap_id = "carol" }',
                               certs.credentials(tmp_path / "sun-credentials", None))  # fmt: skip
        _connects_and_pings(topo, larval, charon_log, INNER["a"])
        log = charon_log()
        assert f"assigning virtual IP {VIP} to peer 'carol'" in log, log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert "CPRQ(ADDR DNS)" in log, log[-4000:]


def test_a_certificate_road_warrior_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        remote = f"            auth = pubkey\n            id = {SUN}"
        certs, charon_log = _charon_gateway_and_certs(topo, tmp_path, remote, monkeypatch)
        larval = _road_warrior(
            topo.b, f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
            certs.credentials(tmp_path / "sun-credentials", "sun"),
        )  # fmt: skip
        _connects_and_pings(topo, larval, charon_log, INNER["a"])
        log = charon_log()
        assert f"assigning virtual IP {VIP} to peer '{SUN}'" in log, log[-4000:]
        assert f"authentication of '{SUN}' with ECDSA" in log, log[-4000:]


def test_a_child_sa_charon_deleted_comes_back_for_the_virtual_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charon (the gateway) deletes the CHILD_SA and keeps the IKE SA; the next packet
    from the virtual address is ACQUIREd by larval's policy (any source), and the new
    CHILD_SA proposes the virtual address as TSi, as the first one was narrowed to: both
    ends show it as 10.3.0.1/32, and the ping goes through it."""
    with Topology(tmp_path) as topo:
        remote = f"            auth = pubkey\n            id = {SUN}"
        certs, charon_log = _charon_gateway_and_certs(topo, tmp_path, remote, monkeypatch)
        charon = topo.charons[-1]
        larval = _road_warrior(
            topo.b, f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
            certs.credentials(tmp_path / "sun-credentials", "sun"),
        )  # fmt: skip
        topo.daemons.append(larval)
        larval.start()
        larval.up("s2s/net")
        (first,) = larval.wait_for("child")["child_sas"]  # type: ignore[misc]
        charon.swanctl("--terminate", "--child", "net")
        until("the CHILD_SA gone", lambda: not larval.status()["child_sas"], larval)
        site = topo.b
        result = subprocess.run(
            ["ip", "netns", "exec", site.ns.name, "ping", "-c", "5", "-i", "0.3", "-W", "2",
             INNER["a"]], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        (child,) = larval.status()["child_sas"]  # type: ignore[misc]
        assert child["spi_in"] != first["spi_in"]  # type: ignore[index]
        assert child["local_ts"] == [f"{VIP}/32"], child  # type: ignore[index]
        assert " 0 received" not in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        listing = charon.list_sas()
        assert f"remote {VIP}/32" in listing, listing
        log = charon_log()
        assert "parsed CREATE_CHILD_SA request" in log, log[-3000:]
        assert "refused" not in larval.log.read_text()


@pytest.mark.parametrize(
    ("remote_ts", "table"),
    [(NET["a"], 220), ("0.0.0.0/0", 220), ("0.0.0.0/0", 0)],
    ids=["net", "everything", "everything-main-table"],
)
def test_a_road_warrior_of_a_larval_gateway(tmp_path: Path, remote_ts: str, table: int) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with Topology(tmp_path) as topo:
        config = larval_config(
            topo.a, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
            start_action="none",
            local=f'{{ auth = "pubkey", certs = ["moon.pem"], id = "{MOON}" }}',
            remote='{ auth = "eap-mschapv2", eap_id = "%any" }',
            credentials=str(certs.credentials(tmp_path / "moon-credentials", "moon")),
        )  # fmt: skip
        config = with_pool_a(config, f'dns = ["{DNS}"]\n')
        config = config.replace(f'local_ts = ["{NET["a"]}"]', f'local_ts = ["{remote_ts}"]')
        config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        gateway = LarvalDaemon(topo.a, config)
        topo.daemons.append(gateway)
        gateway.start()
        larval = _road_warrior(topo.b, '{ auth = "eap-mschapv2", eap_id = "carol" }',
                               certs.credentials(tmp_path / "sun-credentials", None),
                               remote_ts, table)  # fmt: skip
        _connects_and_pings(topo, larval, gateway.log.read_text, INNER["a"], remote_ts, table)
        log = gateway.log.read_text()
        assert f"assigning virtual IP {VIP} to 'carol'" in log, log[-4000:]
        assert PASSWORD not in log


VIP6, NET6, INNER6 = "2001:db8:3::1", "2001:db8:1::/64", "2001:db8:1::1"


def test_both_families_from_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vips = ["0.0.0.0", "::"]: one address of each family, one CHILD_SA for both, each
    # address on the device with its route, ping and ping -6 through the one CHILD_SA
    # (its IPv6 pair in the SAs' X_LARVAL_INNER_PAIRS).
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
        monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " attr")
        swanctl = _charon_gateway(f"            auth = pubkey\n            id = {SUN}")
        swanctl = swanctl.replace("pools = rw_pool", "pools = rw_pool, rw_pool6")
        swanctl = swanctl.replace(f"local_ts = {NET['a']}", f"local_ts = {NET['a']}, {NET6}")
        swanctl = swanctl.replace("pools {\n", "pools {\n    rw_pool6 {\n"
                                  "        addrs = 2001:db8:3::/120\n    }\n")  # fmt: skip
        charon = topo.charon(topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
                             swanctl=swanctl,
                             credentials=certs.credentials(tmp_path / "moon-credentials",
                                                           "moon"))  # fmt: skip
        topo.a.ns.run(["ip", "address", "add", f"{INNER6}/128", "dev", "lo"])
        larval = _road_warrior(
            topo.b, f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
            certs.credentials(tmp_path / "sun-credentials", "sun"), f'{NET["a"]}", "{NET6}',
        )  # fmt: skip
        larval.config.write_text(larval.config.read_text().replace(
            'vips = ["0.0.0.0"]', 'vips = ["0.0.0.0", "::"]'))  # fmt: skip
        topo.daemons.append(larval)
        larval.start()
        larval.up("s2s/net")
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [VIP, VIP6], ike  # type: ignore[index]
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["local_ts"] == [f"{VIP}/32", f"{VIP6}/128"], child  # type: ignore[index]
        site = topo.b

        def both_on_tun() -> bool:
            shown = site.ns.run(["ip", "-o", "address", "show", "dev", "larval0"])
            return f"inet {VIP}/32" in shown and f"inet6 {VIP6}/128" in shown

        until("both virtual addresses on larval0", both_on_tun, larval)
        result = subprocess.run(
            ["ip", "netns", "exec", site.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             INNER["a"]], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        log = (charon.dir / "charon.log").read_text(errors="replace")[-3000:]
        assert " 0% packet loss" in result.stdout, (result.stdout, log)
        assert "CPRP(ADDR ADDR6 DNS)" in log or "CPRP(ADDR ADDR6 DNS)" in (
            charon.dir / "charon.log").read_text(errors="replace")  # fmt: skip
        assert f"src {VIP6}" in site.ns.run(["ip", "-6", "route", "get", INNER6])
        result = subprocess.run(
            ["ip", "netns", "exec", site.ns.name, "ping", "-6", "-c", "3", "-i", "0.2", "-W",
             "2", INNER6], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        (child,) = larval.status()["child_sas"]  # type: ignore[misc]
        assert child["remote_ts"] == [NET["a"], NET6], child  # type: ignore[index]
