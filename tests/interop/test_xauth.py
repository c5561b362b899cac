"""charon as an IKEv1 XAuth road warrior (``version = 1``, ``local { auth = psk }``,
``local-xauth { auth = xauth; xauth_id = carol }``, ``vips = 0.0.0.0``) against larval as
the gateway (``remote = [{ auth = "psk" }, { auth = "xauth", xauth_id = "%any" }]`` and a
pool): after Main Mode larval pushes XAuth, charon pulls its address by Mode Config (or
larval pushes it, ``pull = false``), Quick Mode's ID is the virtual address, and a ping
from it reaches the gateway's network. A wrong password is refused: X_STATUS 0, the
ISAKMP SA deleted on both ends, no lease.

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
from larval.bench.charon import CharonError
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import (
    INNER,
    NET,
    OUTER,
    PSK,
    Charon,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)

XAUTH_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-xauth-generic.so")
needs_xauth = pytest.mark.skipif(
    not XAUTH_PLUGIN.exists(), reason="needs charon's xauth-generic (libcharon-extauth-plugins)"
)
pytestmark = [needs_netns, needs_charon, needs_xauth]

IKE = "aes128-sha256-modp2048"
ESP = "aes128-sha256"
POOL = "10.3.0.0/24"
VIP = "10.3.0.1"
PASSWORD = "carol-XAuth-Password-1"
WRONG = "not-Carols-Password-9"


def _road_warrior(secret: str, *, pull: bool, aggressive: bool = False) -> str:
    return f"""connections {{
    rw {{
        version = 1
        aggressive = {"yes" if aggressive else "no"}
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        vips = 0.0.0.0
        pull = {"yes" if pull else "no"}
        proposals = {IKE}
        local {{
            auth = psk
            id = {OUTER["a"]}
        }}
        local-xauth {{
            auth = xauth
            xauth_id = carol
        }}
        remote {{
            auth = psk
            id = {OUTER["b"]}
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
        id-local = {OUTER["a"]}
        id-remote = {OUTER["b"]}
        secret = "{PSK}"
    }}
    xauth-carol {{
        id = carol
        secret = "{secret}"
    }}
}}
"""


def _start(topo: Topology, monkeypatch: pytest.MonkeyPatch, secret: str, *, pull: bool = True,
           aggressive: bool = False) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    config = larval_config(
        topo.b, proposals=[IKE], esp=[ESP], start_action="none", version=1,
        remote=f'[{{ auth = "psk", id = "{OUTER["a"]}" }}, '
               '{ auth = "xauth", xauth_id = "%any" }]',
    )  # fmt: skip
    extra = 'pools = ["rw"]' + ("" if pull else "\npull = false")
    config = config.replace('dpd_delay = "0s"', f'dpd_delay = "0s"\n{extra}')
    config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{POOL}"]')
    config += f'\n[pools.rw]\naddrs = "{POOL}"\ndns = ["10.3.0.53"]\n'
    config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " xauth-generic")
    swanctl = _road_warrior(secret, pull=pull, aggressive=aggressive)
    charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1, aggressive=aggressive,
                         swanctl=swanctl)  # fmt: skip
    # charon does not install the address itself (install_virtual_ip = no), and its
    # route to the gateway's network needs it: the pool's first address is there.
    topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
    return charon, larval


def _larval(topo: Topology, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "larval", *args, "--json", "--control-socket",
         str(topo.b.dir / "control")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize(
    ("pull", "aggressive"),
    [(True, False), (False, False), (True, True)],
    ids=["pull", "push", "aggressive-group-psk"],
)
def test_charon_xauth_road_warrior_gets_an_address_and_pings_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pull: bool, aggressive: bool
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, monkeypatch, PASSWORD, pull=pull, aggressive=aggressive)
        charon.initiate("net")
        if aggressive:
            log = (charon.dir / "charon.log").read_text(errors="replace")
            assert "AGGRESSIVE request 0" in log, log[-3000:]
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "XAuth authentication of 'carol' (myself) successful" in log, log[-4000:]
        assert f"installing new virtual IP {VIP}" in log, log[-4000:]
        listing = charon.list_sas()
        assert "ESTABLISHED, IKEv1" in listing and f"local  {VIP}/32\n" in listing, listing
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [VIP], ike  # type: ignore[index]
        assert ike["auth_remote"]["method"] == "xauth", ike  # type: ignore[index]
        assert ike["auth_remote"]["identity"] == "carol", ike  # type: ignore[index]
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["remote_ts"] == [f"{VIP}/32"]  # type: ignore[index]
        result = subprocess.run(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             "-I", VIP, INNER["b"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        pools = _larval(topo, "pools")
        assert {"identity": "carol", "address": VIP} in pools["pools"][0]["online"], pools
        assert PASSWORD not in larval.log.read_text()
        # The lease goes offline when charon deletes the ISAKMP SA.
        charon.swanctl("--terminate", "--ike", "rw")
        larval.wait_for("none")
        pools = _larval(topo, "pools")
        assert {"identity": "carol", "address": VIP} in pools["pools"][0]["offline"], pools


def test_a_wrong_xauth_password_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, monkeypatch, WRONG)
        with pytest.raises(CharonError):
            charon.initiate("net", timeout=15)
        larval.wait_for("none")
        log = larval.log.read_text()
        assert "XAuth authentication of 'carol' failed: wrong password" in log, log[-3000:]
        assert WRONG not in log and PASSWORD not in log
        charon_log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "XAuth authentication of 'carol' (myself) failed" in charon_log
        assert "ESTABLISHED" not in charon.list_sas()
        pools = _larval(topo, "pools")
        assert pools["pools"][0]["online"] == [] and pools["pools"][0]["offline"] == [], pools


def _hybrid_road_warrior() -> str:
    return f"""connections {{
    rw {{
        version = 1
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        vips = 0.0.0.0
        proposals = {IKE}
        local-xauth {{
            auth = xauth
            id = {OUTER["a"]}
            xauth_id = carol
        }}
        remote-rsa {{
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


def test_hybrid_charon_trusts_larvals_certificate_and_proves_carol_by_xauth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """strongSwan's xauth-id-rsa-hybrid: HybridInitRSA, the gateway's RSA certificate."""
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("rsa", 2048), tmp_path / "pki")
        config = larval_config(
            topo.b, proposals=[IKE], esp=[ESP], start_action="none", version=1,
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{IDS["b"]}" }}',
            remote=f'{{ auth = "xauth", id = "{OUTER["a"]}", xauth_id = "%any" }}',
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
        trust = certs.credentials(tmp_path / "moon-credentials", None)  # the root alone
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1,
                             swanctl=_hybrid_road_warrior(), credentials=trust)  # fmt: skip
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert f"authentication of '{IDS['b']}' with RSA_EMSA_PKCS1_NULL successful" in log, log
        assert "XAuth authentication of 'carol' (myself) successful" in log, log[-4000:]
        result = subprocess.run(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             "-I", VIP, INNER["b"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["auth_local"]["method"] == "pubkey", ike  # type: ignore[index]
        assert ike["auth_remote"]["identity"] == "carol", ike  # type: ignore[index]


def test_a_unity_client_is_told_the_split_networks_as_unity_split_include(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charon with its unity plugin (cisco_unity = yes) announces Cisco Unity and asks for
    U_SPLITINC; larval answers the Unity vendor ID and its CFG_REPLY carries the pool's
    split_include as UNITY_SPLIT_INCLUDE, which charon takes (it fails on the
    INTERNAL_IP4_SUBNET a client without Unity gets)."""
    with Topology(tmp_path) as topo:
        config = larval_config(
            topo.b, proposals=[IKE], esp=[ESP], start_action="none", version=1,
            remote=f'[{{ auth = "psk", id = "{OUTER["a"]}" }}, '
                   '{ auth = "xauth", xauth_id = "%any" }]',
        )  # fmt: skip
        config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
        config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{POOL}"]')
        config += f'\n[pools.rw]\naddrs = "{POOL}"\nsplit_include = ["{NET["b"]}"]\n'
        config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        monkeypatch.setattr(charon_module, "PLUGINS",
                            charon_module.PLUGINS + " xauth-generic unity")  # fmt: skip
        conf = charon_module.Charon._strongswan_conf

        def cisco_unity(self: Charon, settings: str, *, ike_name: bool) -> str:
            # strongswan.conf's charon.cisco_unity: announce Unity, ask its attributes.
            return conf(self, settings + "    cisco_unity = yes\n", ike_name=ike_name)

        monkeypatch.setattr(charon_module.Charon, "_strongswan_conf", cisco_unity)
        swanctl = _road_warrior(PASSWORD, pull=True)
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1, swanctl=swanctl)
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "received Cisco Unity vendor ID" in log, log[-4000:]
        assert "CPRP(ADDR U_SPLITINC)" in log, log[-4000:]
        assert "handling UNITY_SPLIT_INCLUDE attribute failed" not in log, log[-4000:]
        listing = charon.list_sas()
        assert f"remote {NET['b']}\n" in listing, listing
        result = subprocess.run(
            ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
             "-I", VIP, INNER["b"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])


def _charon_gateway() -> str:
    return f"""connections {{
    gw {{
        version = 1
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        proposals = {IKE}
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
                remote_ts = {NET["b"]}
                esp_proposals = {ESP}
            }}
        }}
    }}
}}
secrets {{
    ike-gw {{
        id-local = {OUTER["a"]}
        id-remote = {OUTER["b"]}
        secret = "{PSK}"
    }}
    xauth-carol {{
        id = carol
        secret = "{PASSWORD}"
    }}
}}
"""


@pytest.mark.parametrize("secret", [PASSWORD, WRONG], ids=["right", "wrong"])
def test_larval_as_an_xauth_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """larval (local = [psk, xauth carol]) starts Main Mode through its trap policy,
    answers charon's XAuth and, with the right password, its first packet goes through."""
    with Topology(tmp_path) as topo:
        monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " xauth-generic")
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1,
                             swanctl=_charon_gateway())  # fmt: skip
        config = larval_config(
            topo.b, proposals=[IKE], esp=[ESP], start_action="trap", version=1,
            local=f'[{{ auth = "psk", id = "{OUTER["b"]}" }}, '
                  '{ auth = "xauth", xauth_id = "carol" }]',
        )  # fmt: skip
        config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{secret}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        result = topo.b.ping(count=5)
        log = (charon.dir / "charon.log").read_text(errors="replace")
        if secret == PASSWORD:
            assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:])
            assert "XAuth authentication of 'carol' successful" in log, log[-4000:]
            assert "(myself) successful" in larval.log.read_text()
        else:
            assert "XAuth authentication of 'carol' failed" in log, log[-4000:]
            assert " 0% packet loss" not in result.stdout
        assert secret not in larval.log.read_text()


def _charon_hybrid_gateway() -> str:
    return f"""connections {{
    gw {{
        version = 1
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        proposals = {IKE}
        local {{
            auth = pubkey
            certs = moon.pem
            id = {IDS["a"]}
        }}
        remote-xauth {{
            auth = xauth
            id = {OUTER["b"]}
            xauth_id = carol
        }}
        children {{
            net {{
                local_ts = {NET["a"]}
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


def test_larval_as_a_hybrid_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """larval (local = { auth = "xauth" }, remote = { auth = "pubkey" }) checks charon's
    RSA certificate, proves only its keys, then carol by XAuth; the first packets go
    through."""
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("rsa", 2048), tmp_path / "pki")
        monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " xauth-generic")
        charon = topo.charon(topo.a, proposals=IKE, esp=ESP, version=1,
                             swanctl=_charon_hybrid_gateway(),
                             credentials=certs.credentials(tmp_path / "moon", "moon"))  # fmt: skip
        config = larval_config(
            topo.b, proposals=[IKE], esp=[ESP], start_action="trap", version=1,
            local=f'{{ auth = "xauth", id = "{OUTER["b"]}", xauth_id = "carol" }}',
            remote=f'{{ auth = "pubkey", id = "{IDS["a"]}" }}',
            credentials=str(certs.credentials(tmp_path / "sun", None)),
        )  # fmt: skip
        config += f'\n[secrets.xauth-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        result = topo.b.ping(count=5)
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:],
                                                    larval.log.read_text()[-3000:])  # fmt: skip
        assert "XAuth authentication of 'carol' successful" in log, log[-4000:]
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["auth_remote"]["method"] == "pubkey", ike  # type: ignore[index]
