"""Two charon road warriors, carol and dave (EAP-MSCHAPv2, ``vips = 0.0.0.0``), against
a larval gateway (`ra_setup.RaTopology`) with two connections that take the same
clients by their IKE identity and tell them apart by the EAP identity only: "carol"
(``eap_id = "carol"``, pool 10.3.1.0/24) and "anyone" (``eap_id = "%any"``, pool
10.3.2.0/24). The gateway asks each client's EAP identity and switches connection by
it: carol lands on "carol", dave on "anyone", each leased an address from that
connection's pool, each pings the home server from it, and `larval status` names each
IKE SA's connection. A client whose EAP identity no connection takes (with connections
for carol and dave only) is AUTHENTICATION_FAILED, larval's log naming it. The same with
two rounds (RFC 4739): a machine certificate, then the user's EAP-MSCHAPv2.

charon's eap-mschapv2 plugin is Debian's ``libcharon-extauth-plugins``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from larval.bench.charon import Charon, CharonError
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import INNER, NET, LarvalDaemon, needs_charon, needs_netns
from tests.interop.ra_setup import INNER6, RaTopology, road_warrior

MSCHAPV2_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so")
needs_mschapv2 = pytest.mark.skipif(
    not MSCHAPV2_PLUGIN.exists(), reason="needs charon's eap-mschapv2 (libcharon-extauth-plugins)"
)
pytestmark = [needs_netns, needs_charon, needs_mschapv2]

EAP_PLUGINS = "eap-identity eap-mschapv2"
GATEWAY, MOON = IDS["b"], IDS["a"]
PASSWORDS = {
    "carol": "carol-Interop-Password-1",
    "dave": "dave-Interop-Password-2",
    "erin": "erin-Interop-Password-3",
}
#: Connection name -> (eap_id, pool name, pool).
CONNECTIONS = {
    "carol": ("carol", "carol_pool", "10.3.1.0/24"),
    "anyone": ("%any", "rw_pool", "10.3.2.0/24"),
    "dave": ("dave", "rw_pool", "10.3.2.0/24"),
}


def _gateway_config(topo: RaTopology, names: tuple[str, ...], credentials: Path,
                    rounds: bool = False) -> str:  # fmt: skip
    """The gateway: connections `names` (of `CONNECTIONS`) for every client on the link,
    proving itself with its certificate, each checking EAP-MSCHAPv2 with its eap_id
    (with `rounds`, after the client's certificate as moon, RFC 4739) and leasing from
    its pool; its child's remote_ts is that pool, its local_ts the home network."""
    gw = topo.b.address
    text = f"""
[daemon]
credentials = "{credentials}"
addresses = ["{gw}"]
tun = "larval0"
tun_addresses = ["{INNER["b"]}/32", "{INNER6["b"]}/128"]
control_socket = "{topo.b.dir / "control"}"
pfkey_socket = "{topo.b.dir / "pfkey"}"
"""
    pools = {}
    for name in names:
        eap_id, pool, addrs = CONNECTIONS[name]
        pools[pool] = addrs
        remote = f'{{ auth = "eap-mschapv2", eap_id = "{eap_id}" }}'
        if rounds:
            remote = f'[{{ auth = "pubkey", id = "{MOON}" }}, {remote}]'
        text += f"""
[connections.{name}]
version = 2
local_addrs = ["{gw}"]
remote_addrs = ["192.0.2.0/24"]
proposals = ["aes128-sha256-x25519"]
encap = true
pools = ["{pool}"]
local = {{ auth = "pubkey", certs = ["sun.pem"], id = "{GATEWAY}" }}
remote = {remote}

[connections.{name}.children.net]
local_ts = ["{NET["b"]}"]
remote_ts = ["{addrs}"]
esp_proposals = ["aes128gcm16"]
start_action = "none"
"""
    for pool, addrs in pools.items():
        text += f'\n[pools.{pool}]\naddrs = "{addrs}"\n'
    for user, secret in PASSWORDS.items():
        text += f'\n[secrets.eap-{user}]\nid = "{user}"\nsecret = "{secret}"\n'
    return text


def _virtual_ips(charon: Charon) -> list[str]:
    """The virtual IPs charon's IKE SA `rw` holds, as `--list-sas` shows them."""
    match = re.search(r"local  '[^']*' @ \S+ \[([^\]]+)\]", charon.list_sas())
    return match.group(1).split(" ") if match else []


def _client(topo: RaTopology, name: str, who: str, trusted: Path) -> Charon:
    swanctl = road_warrior(topo, name, auth="eap-mschapv2", eap_id=who,
                           password=PASSWORDS[who], gateway_id=GATEWAY)  # fmt: skip
    return topo.client(name, swanctl, plugins=EAP_PLUGINS, credentials=trusted)


def _both_up_and_pinging(topo: RaTopology, larval: LarvalDaemon, carol: Charon,
                         dave: Charon) -> dict[str, Any]:  # fmt: skip
    """carol (c1) and dave (c2) connect, get their own pools' first addresses, and ping
    the server through them; larval's status then."""
    carol.initiate()
    dave.initiate()
    assert _virtual_ips(carol) == ["10.3.1.1"], carol.list_sas()
    assert _virtual_ips(dave) == ["10.3.2.1"], dave.list_sas()
    for name, vip in (("c1", "10.3.1.1"), ("c2", "10.3.2.1")):
        result = topo.ping_server(name, vip)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text())
    status: dict[str, Any] = larval.status()
    return status


def test_carol_and_dave_each_get_their_connections_pool_and_ping_through(
    tmp_path: Path,
) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with RaTopology(tmp_path, clients=2) as topo:
        sun = certs.credentials(tmp_path / "sun-credentials", "sun")
        larval = topo.gateway(_gateway_config(topo, ("carol", "anyone"), sun))
        trusted = certs.credentials(tmp_path / "client-credentials", None)  # the CA only
        carol = _client(topo, "c1", "carol", trusted)
        dave = _client(topo, "c2", "dave", trusted)
        status = _both_up_and_pinging(topo, larval, carol, dave)
        by_remote = {s["remote"]: s for s in status["ike_sas"]}
        c1, c2 = topo.clients["c1"].address, topo.clients["c2"].address
        assert by_remote[c1]["name"] == "carol"
        assert by_remote[c1]["auth_remote"]["identity"] == "carol"
        assert by_remote[c2]["name"] == "anyone"
        assert by_remote[c2]["auth_remote"]["identity"] == "dave"
        children = {c["remote_ts"][0]: c["connection"] for c in status["child_sas"]}
        assert children == {"10.3.1.1/32": "carol", "10.3.2.1/32": "anyone"}
        log = larval.log.read_text()
        assert "switching to connection" in log
        assert not any(p in log for p in PASSWORDS.values())


def test_an_eap_identity_no_connection_takes_is_refused(tmp_path: Path) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with RaTopology(tmp_path) as topo:
        sun = certs.credentials(tmp_path / "sun-credentials", "sun")
        larval = topo.gateway(_gateway_config(topo, ("carol", "dave"), sun))
        trusted = certs.credentials(tmp_path / "client-credentials", None)
        erin = _client(topo, "c1", "erin", trusted)
        with pytest.raises(CharonError):
            erin.initiate(timeout=10)
        reason = "no connection takes EAP identity 'erin'"
        deadline = time.monotonic() + 10
        while reason not in larval.log.read_text() or larval.status()["ike_sas"]:
            if time.monotonic() > deadline:
                pytest.fail(f"not refused: {larval.status()}\n{larval.log.read_text()[-4000:]}")
            time.sleep(0.3)
        log = larval.log.read_text()
        warnings = [line for line in log.splitlines() if "WARNING" in line and reason in line]
        assert len(warnings) == 1, log
        assert warnings[0].endswith(
            "carol: EAP identity 'carol' required; dave: EAP identity 'dave' required"
        )
        assert PASSWORDS["erin"] not in log


def _rounds_client(topo: RaTopology, name: str, who: str, credentials: Path) -> Charon:
    """charon as road warrior `name` in two rounds: moon's certificate, then `who` by
    EAP-MSCHAPv2."""
    client = topo.clients[name]
    swanctl = f"""connections {{
    rw {{
        version = 2
        local_addrs = {client.address}
        remote_addrs = {topo.b.address}
        encap = yes
        mobike = no
        vips = 0.0.0.0
        proposals = aes128-sha256-x25519
        local-1 {{
            auth = pubkey
            certs = moon.pem
            id = {MOON}
        }}
        local-2 {{
            auth = eap-mschapv2
            eap_id = {who}
        }}
        remote {{
            auth = pubkey
            id = {GATEWAY}
        }}
        children {{
            net {{
                remote_ts = {NET["b"]}
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    eap-{who} {{
        id = {who}
        secret = "{PASSWORDS[who]}"
    }}
}}
"""
    return topo.client(name, swanctl, plugins=EAP_PLUGINS, credentials=credentials)


def test_the_eap_round_after_a_certificate_switches_too(tmp_path: Path) -> None:
    """RFC 4739: both clients prove moon's certificate in round 1, then carol and dave
    by EAP-MSCHAPv2 in round 2; the round's EAP identity moves each IKE SA to its own
    connection and pool."""
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with RaTopology(tmp_path, clients=2) as topo:
        sun = certs.credentials(tmp_path / "sun-credentials", "sun")
        larval = topo.gateway(_gateway_config(topo, ("carol", "anyone"), sun, rounds=True))
        moon = certs.credentials(tmp_path / "moon-credentials", "moon")
        carol = _rounds_client(topo, "c1", "carol", moon)
        dave = _rounds_client(topo, "c2", "dave", moon)
        status = _both_up_and_pinging(topo, larval, carol, dave)
        by_remote = {s["remote"]: s for s in status["ike_sas"]}
        for name, conn, who in (("c1", "carol", "carol"), ("c2", "anyone", "dave")):
            ike = by_remote[topo.clients[name].address]
            assert ike["name"] == conn, ike
            assert ike["auth_remote"]["method"] == "pubkey", ike
            assert [r["identity"] for r in ike["auth_remote"]["rounds"]] == [who], ike
