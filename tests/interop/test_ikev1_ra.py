"""IKEv1 remote access against charon, beyond `test_xauth`: two charon road warriors in
Aggressive Mode, each with its own identity and group PSK, land on their own larval
connection (both take any address); larval as an IKEv1 XAuth + Mode Config client of a
charon gateway installs its address on its TUN.

charon's xauth-generic plugin is Debian's ``libcharon-extauth-plugins``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import larval.bench.charon as charon_module
import tests.interop.test_road_warrior as rw_module
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import (
    INNER,
    NET,
    OUTER,
    PSK,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)
from tests.interop.ra_setup import RaTopology

XAUTH_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-xauth-generic.so")
needs_xauth = pytest.mark.skipif(
    not XAUTH_PLUGIN.exists(), reason="needs charon's xauth-generic (libcharon-extauth-plugins)"
)
pytestmark = [needs_netns, needs_charon, needs_xauth]

IKE = "aes128-sha256-modp2048"
ESP = "aes128-sha256"
POOL = "10.3.0.0/24"
PASSWORD = "carol-XAuth-Password-1"
#: Each group: its identity, its group PSK, its XAuth user and password.
GROUPS = {
    "sales": ("sales@example.org", "sales-group-psk-0123456789", "carol", "carol-XAuth-Pass-1"),
    "lab": ("lab@example.org", "lab-group-psk-9876543210ab", "dave", "dave-XAuth-Pass-22"),
}


def _gateway(topo: RaTopology) -> str:
    """larval with one Aggressive Mode connection per group, both for any address."""
    gw = topo.b.address
    text = f"""
[daemon]
addresses = ["{gw}"]
tun = "larval0"
tun_addresses = ["203.0.113.1/32"]
control_socket = "{topo.b.dir / "control"}"
pfkey_socket = "{topo.b.dir / "pfkey"}"

[pools.rw]
addrs = "{POOL}"
dns = ["10.3.0.53"]
"""
    for name, (ident, psk, user, password) in GROUPS.items():
        text += f"""
[connections.{name}]
version = 1
aggressive = true
local_addrs = ["{gw}"]
remote_addrs = ["%any"]
proposals = ["{IKE}"]
encap = true
pools = ["rw"]
local = {{ auth = "psk", id = "{gw}" }}
remote = [{{ auth = "psk", id = "{ident}" }}, {{ auth = "xauth", xauth_id = "%any" }}]

[connections.{name}.children.net]
local_ts = ["{NET["b"]}"]
remote_ts = ["{POOL}"]
esp_proposals = ["{ESP}"]
start_action = "none"

[secrets.ike-{name}]
ids = ["{ident}"]
secret = "{psk}"

[secrets.xauth-{user}]
id = "{user}"
secret = "{password}"
"""
    return text


def _road_warrior(topo: RaTopology, client: str, group: str) -> str:
    ident, psk, user, password = GROUPS[group]
    address = topo.clients[client].address
    return f"""connections {{
    rw {{
        version = 1
        aggressive = yes
        local_addrs = {address}
        remote_addrs = {topo.b.address}
        encap = yes
        vips = 0.0.0.0
        proposals = {IKE}
        local {{
            auth = psk
            id = {ident}
        }}
        local-xauth {{
            auth = xauth
            xauth_id = {user}
        }}
        remote {{
            auth = psk
            id = {topo.b.address}
        }}
        children {{
            net {{
                remote_ts = {NET["b"]}
                esp_proposals = {ESP}
            }}
        }}
    }}
}}
secrets {{
    ike-rw {{
        id-local = {ident}
        id-remote = {topo.b.address}
        secret = "{psk}"
    }}
    xauth-{user} {{
        id = {user}
        secret = "{password}"
    }}
}}
"""


def _larval(topo: RaTopology, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "larval", *args, "--json", "--control-socket",
         str(topo.b.dir / "control")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return json.loads(out)


def test_two_aggressive_mode_groups_each_land_on_their_own_connection(tmp_path: Path) -> None:
    """c1 is in group sales, c2 in group lab; both connections take any address. AM1's
    IDii picks each one's connection, whose group PSK makes AM2; XAuth, Mode Config and
    Quick Mode follow, and each pings the home server from its own address."""
    with RaTopology(tmp_path, clients=2) as topo:
        larval = topo.gateway(_gateway(topo))
        for client, group in (("c1", "sales"), ("c2", "lab")):
            charon = topo.client(client, _road_warrior(topo, client, group),
                                 plugins="xauth-generic")  # fmt: skip
            charon.initiate("net")
            log = (charon.dir / "charon.log").read_text(errors="replace")
            assert "AGGRESSIVE request 0" in log, log[-3000:]
            assert "(myself) successful" in log, log[-3000:]
        status = _larval(topo, "status")
        by_conn = {s["name"]: s for s in status["ike_sas"] if s["state"] == "established"}
        assert sorted(by_conn) == ["lab", "sales"], status
        assert by_conn["sales"]["remote"] == topo.clients["c1"].address
        assert by_conn["lab"]["remote"] == topo.clients["c2"].address
        assert by_conn["sales"]["auth_remote"]["identity"] == "carol"
        assert by_conn["lab"]["auth_remote"]["identity"] == "dave"
        assert sorted(c["connection"] for c in status["child_sas"]) == ["lab", "sales"]
        text = larval.log.read_text()
        assert "switching to connection lab for IDii lab@example.org" in text, text[-4000:]
        for client, conn in (("c1", "sales"), ("c2", "lab")):
            (vip,) = by_conn[conn]["virtual_ips"]
            result = topo.ping_server(client, vip)
            assert " 0% packet loss" in result.stdout, (result.stdout, text[-3000:])
        for _, psk, _, password in GROUPS.values():
            assert psk not in larval.log.read_text() and password not in larval.log.read_text()


def _xauth_rsa_road_warrior() -> str:
    """charon with its certificate, then XAuth: it offers XAuthInitRSA (65005)."""
    return f"""connections {{
    rw {{
        version = 1
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        vips = 0.0.0.0
        proposals = {IKE}
        local {{
            auth = pubkey
            certs = moon.pem
            id = {IDS["a"]}
        }}
        local-xauth {{
            auth = xauth
            xauth_id = carol
        }}
        remote {{
            auth = pubkey
            id = {IDS["b"]}
        }}
        children {{
            net {{
                remote_ts = {NET["b"]}
                esp_proposals = {ESP}
            }}
        }}
    }}
}}
secrets {{
    xauth-carol {{
        id = carol
        secret = "{PASSWORD}"
    }}
}}
"""


def test_charon_with_a_certificate_then_xauth_offers_xauth_init_rsa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """strongSwan's xauth-rsa: both ends sign with RSA under method 65005, then larval
    asks carol's password; a ping from her address reaches the gateway's network."""
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("rsa", 2048), tmp_path / "pki")
        config = larval_config(
            topo.b, proposals=[IKE], esp=[ESP], start_action="none", version=1,
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{IDS["b"]}" }}',
            remote=f'[{{ auth = "pubkey", id = "{IDS["a"]}" }}, '
                   '{ auth = "xauth", xauth_id = "%any" }]',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
        )  # fmt: skip
        config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
        config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{POOL}"]')
        config += f'\n[pools.rw]\naddrs = "{POOL}"\n'
        config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " xauth-generic")
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1,
                             swanctl=_xauth_rsa_road_warrior(),
                             credentials=certs.credentials(tmp_path / "moon", "moon"))  # fmt: skip
        topo.a.ns.run(["ip", "address", "add", "10.3.0.1/32", "dev", "lo"])
        charon.initiate("net")
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "XAuth authentication of 'carol' (myself) successful" in log, log[-4000:]
        # Before 65005 was taken, larval answered charon's offer with NO_PROPOSAL_CHOSEN.
        assert f"authentication of '{IDS['b']}' with RSA_EMSA_PKCS1_NULL successful" in log, log
        result = subprocess.run(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             "-I", "10.3.0.1", INNER["b"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["auth_local"]["method"] == "pubkey", ike  # type: ignore[index]
        assert ike["auth_remote"]["identity"] == "carol", ike  # type: ignore[index]


def _charon_xauth_gateway() -> str:
    """charon as an IKEv1 gateway: the group PSK, then XAuth, then an address from its
    pool by Mode Config (the client pulls)."""
    return f"""connections {{
    rw {{
        version = 1
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        proposals = {IKE}
        pools = rw_pool
        local {{
            auth = psk
            id = {OUTER["a"]}
        }}
        remote {{
            auth = psk
            id = {OUTER["b"]}
        }}
        remote-xauth {{
            auth = xauth
            xauth_id = carol
        }}
        children {{
            net {{
                local_ts = {NET["a"]}
                esp_proposals = {ESP}
            }}
        }}
    }}
}}
pools {{
    rw_pool {{
        addrs = {POOL}
        dns = {rw_module.DNS}
    }}
}}
secrets {{
    ike-rw {{
        id-local = {OUTER["a"]}
        id-remote = {OUTER["b"]}
        secret = "{PSK}"
    }}
    xauth-carol {{
        id = carol
        secret = "{rw_module.PASSWORD}"
    }}
}}
"""


def test_larval_as_an_ikev1_xauth_client_gets_its_address_by_mode_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """larval (version = 1, a PSK then XAuth as carol, vips = ["0.0.0.0"]) against a charon
    gateway with a pool: Main Mode, XAuth, Mode Config pull; the address on larval's TUN,
    the gateway's network routed from it, a ping with no source through and back, the
    pool's DNS server in its resolv_file; all of it gone with the ISAKMP SA."""
    with Topology(tmp_path) as topo:
        monkeypatch.setattr(charon_module, "PLUGINS",
                            charon_module.PLUGINS + " attr xauth-generic")  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1,
                             swanctl=_charon_xauth_gateway())  # fmt: skip
        site = topo.b
        config = larval_config(
            site, proposals=[IKE], esp=[ESP], start_action="none", version=1,
            local=f'[{{ auth = "psk", id = "{OUTER["b"]}" }}, '
                  '{ auth = "xauth", xauth_id = "carol" }]',
            remote=f'{{ auth = "psk", id = "{OUTER["a"]}" }}',
        )  # fmt: skip
        config = config.replace(f'local_ts = ["{NET["b"]}"]\n', "")
        config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\nvips = ["0.0.0.0"]')
        resolv = site.dir / "resolv.conf"
        resolv.write_text(rw_module.ORIGINAL_RESOLV)
        config = config.replace("[daemon]\n", f'[daemon]\nresolv_file = "{resolv}"\n')
        config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{rw_module.PASSWORD}"\n'
        larval = LarvalDaemon(site, config)

        def charon_log() -> str:
            return (charon.dir / "charon.log").read_text(errors="replace")

        rw_module._connects_and_pings(topo, larval, charon_log, INNER["a"])
        log = charon_log()
        assert "XAuth authentication of 'carol' successful" in log, log[-4000:]
        assert f"assigning virtual IP {rw_module.VIP} to peer 'carol'" in log, log[-4000:]
