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
    needs_charon,
    needs_netns,
)
from tests.interop.ra_setup import (
    charon_log,
    charon_peer,
    larval_json,
    larval_peer,
    needs_xauth,
    ping,
    swanctl_conf,
    swanctl_secret,
    with_plugins,
    with_pool,
)

pytestmark = [needs_netns, needs_charon, needs_xauth]

IKE = "aes128-sha256-modp2048"
ESP = "aes128-sha256"
POOL = "10.3.0.0/24"
VIP = "10.3.0.1"
PASSWORD = "carol-XAuth-Password-1"
WRONG = "not-Carols-Password-9"
#: swanctl.conf's XAuth round of carol, and the PSK sides with the outer addresses as IDs.
CAROL_XAUTH = {"auth": "xauth", "xauth_id": "carol"}
PSK_A, PSK_B = ({"auth": "psk", "id": OUTER[site]} for site in "ab")


def _psk_secret(name: str) -> dict[str, dict[str, str]]:
    return {name: {"id-local": OUTER["a"], "id-remote": OUTER["b"], "secret": PSK}}


def _road_warrior(secret: str, *, pull: bool, aggressive: bool = False) -> str:
    """charon as carol's XAuth road warrior (PSK, then XAuth), asking for an address."""
    return swanctl_conf(
        "rw", {"local": PSK_A, "local-xauth": CAROL_XAUTH, "remote": PSK_B},
        version=1, proposals=IKE, esp=ESP, local_ts=None,
        options={"aggressive": "yes" if aggressive else "no", "vips": "0.0.0.0",
                 "pull": "yes" if pull else "no"},
        secrets=_psk_secret("ike-rw") | swanctl_secret("carol", secret, "xauth"),
    )  # fmt: skip


def _gateway(topo: Topology, start_action: str = "none", **kw: Any) -> LarvalDaemon:
    """larval in b of IKEv1 with carol's XAuth password; `kw` as `larval_peer`'s."""
    return larval_peer(topo, start_action=start_action, proposals=IKE, esp=ESP, version=1,
                       secrets={"carol": PASSWORD}, kind="xauth", **kw)  # fmt: skip


def _charon(topo: Topology, swanctl: str, **kw: Any) -> Charon:
    """charon of IKEv1 in a with `swanctl` (`kw` as `charon_peer`'s)."""
    return charon_peer(topo, swanctl, proposals=IKE, esp=ESP, version=1, **kw)


def _start(topo: Topology, monkeypatch: pytest.MonkeyPatch, secret: str, *, pull: bool = True,
           aggressive: bool = False) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    larval = _gateway(
        topo,
        remote=f'[{{ auth = "psk", id = "{OUTER["a"]}" }}, '
               '{ auth = "xauth", xauth_id = "%any" }]',
        edit=lambda config: with_pool(config, POOL, 'dns = ["10.3.0.53"]\n', pull=pull),
    )  # fmt: skip
    with_plugins(monkeypatch, "xauth-generic")
    swanctl = _road_warrior(secret, pull=pull, aggressive=aggressive)
    charon = _charon(topo, swanctl, aggressive=aggressive)
    # charon does not install the address itself (install_virtual_ip = no), and its
    # route to the gateway's network needs it: the pool's first address is there.
    topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
    return charon, larval


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
            log = charon_log(charon)
            assert "AGGRESSIVE request 0" in log, log[-3000:]
        log = charon_log(charon)
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
        result = ping(topo.a.ns, VIP, INNER["b"])
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        pools = larval_json(topo, "pools")
        assert {"identity": "carol", "address": VIP} in pools["pools"][0]["online"], pools
        assert PASSWORD not in larval.log.read_text()
        # The lease goes offline when charon deletes the ISAKMP SA.
        charon.swanctl("--terminate", "--ike", "rw")
        larval.wait_for("none")
        pools = larval_json(topo, "pools")
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
        assert "XAuth authentication of 'carol' (myself) failed" in charon_log(charon)
        assert "ESTABLISHED" not in charon.list_sas()
        pools = larval_json(topo, "pools")
        assert pools["pools"][0]["online"] == [] and pools["pools"][0]["offline"] == [], pools


def _hybrid_road_warrior() -> str:
    return swanctl_conf(
        "rw", {"local-xauth": {"auth": "xauth", "id": OUTER["a"], "xauth_id": "carol"},
               "remote-rsa": {"auth": "pubkey", "id": IDS["b"]}},
        version=1, proposals=IKE, esp=ESP, local_ts=None, options={"vips": "0.0.0.0"},
        secrets=swanctl_secret("carol", PASSWORD, "xauth"),
    )  # fmt: skip


def test_hybrid_charon_trusts_larvals_certificate_and_proves_carol_by_xauth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """strongSwan's xauth-id-rsa-hybrid: HybridInitRSA, the gateway's RSA certificate."""
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("rsa", 2048), tmp_path / "pki")
        larval = _gateway(
            topo,
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{IDS["b"]}" }}',
            remote=f'{{ auth = "xauth", id = "{OUTER["a"]}", xauth_id = "%any" }}',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
            edit=lambda config: with_pool(config, POOL),
        )  # fmt: skip
        with_plugins(monkeypatch, "xauth-generic")
        trust = certs.credentials(tmp_path / "moon-credentials", None)  # the root alone
        charon = _charon(topo, _hybrid_road_warrior(), credentials=trust)
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = charon_log(charon)
        assert f"authentication of '{IDS['b']}' with RSA_EMSA_PKCS1_NULL successful" in log, log
        assert "XAuth authentication of 'carol' (myself) successful" in log, log[-4000:]
        result = ping(topo.a.ns, VIP, INNER["b"])
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
        larval = _gateway(
            topo,
            remote=f'[{{ auth = "psk", id = "{OUTER["a"]}" }}, '
                   '{ auth = "xauth", xauth_id = "%any" }]',
            edit=lambda config: with_pool(config, POOL, f'split_include = ["{NET["b"]}"]\n'),
        )  # fmt: skip
        with_plugins(monkeypatch, "xauth-generic unity")
        conf = charon_module.Charon._strongswan_conf

        def cisco_unity(self: Charon, settings: str, *, ike_name: bool) -> str:
            # strongswan.conf's charon.cisco_unity: announce Unity, ask its attributes.
            return conf(self, settings + "    cisco_unity = yes\n", ike_name=ike_name)

        monkeypatch.setattr(charon_module.Charon, "_strongswan_conf", cisco_unity)
        swanctl = _road_warrior(PASSWORD, pull=True)
        charon = _charon(topo, swanctl)
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = charon_log(charon)
        assert "received Cisco Unity vendor ID" in log, log[-4000:]
        assert "CPRP(ADDR U_SPLITINC)" in log, log[-4000:]
        assert "handling UNITY_SPLIT_INCLUDE attribute failed" not in log, log[-4000:]
        listing = charon.list_sas()
        assert f"remote {NET['b']}\n" in listing, listing
        result = ping(topo.a.ns, VIP, INNER["b"])
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])


def _charon_gateway() -> str:
    """charon the gateway: PSK, then carol's XAuth."""
    return swanctl_conf(
        "gw", {"local": PSK_A, "remote": PSK_B, "remote-xauth": CAROL_XAUTH},
        version=1, proposals=IKE, esp=ESP,
        secrets=_psk_secret("ike-gw") | swanctl_secret("carol", PASSWORD, "xauth"),
    )  # fmt: skip


@pytest.mark.parametrize("secret", [PASSWORD, WRONG], ids=["right", "wrong"])
def test_larval_as_an_xauth_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """larval (local = [psk, xauth carol]) starts Main Mode through its trap policy,
    answers charon's XAuth and, with the right password, its first packet goes through."""
    with Topology(tmp_path) as topo:
        with_plugins(monkeypatch, "xauth-generic")
        charon = _charon(topo, _charon_gateway())
        larval = larval_peer(
            topo, start_action="trap", proposals=IKE, esp=ESP, version=1,
            local=f'[{{ auth = "psk", id = "{OUTER["b"]}" }}, '
                  '{ auth = "xauth", xauth_id = "carol" }]',
            secrets={"carol": secret}, kind="xauth",
        )  # fmt: skip
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        if secret == PASSWORD:
            assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:])
            assert "XAuth authentication of 'carol' successful" in log, log[-4000:]
            assert "(myself) successful" in larval.log.read_text()
        else:
            assert "XAuth authentication of 'carol' failed" in log, log[-4000:]
            assert " 0% packet loss" not in result.stdout
        assert secret not in larval.log.read_text()


def _charon_hybrid_gateway() -> str:
    """charon the gateway proving itself by certificate, then asking carol's XAuth."""
    return swanctl_conf(
        "gw", {"local": {"auth": "pubkey", "certs": "moon.pem", "id": IDS["a"]},
               "remote-xauth": {"auth": "xauth", "id": OUTER["b"], "xauth_id": "carol"}},
        version=1, proposals=IKE, esp=ESP, secrets=swanctl_secret("carol", PASSWORD, "xauth"),
    )  # fmt: skip


def test_larval_as_a_hybrid_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """larval (local = { auth = "xauth" }, remote = { auth = "pubkey" }) checks charon's
    RSA certificate, proves only its keys, then carol by XAuth; the first packets go
    through."""
    with Topology(tmp_path) as topo:
        certs = make_set(Spec("rsa", 2048), tmp_path / "pki")
        with_plugins(monkeypatch, "xauth-generic")
        charon = _charon(topo, _charon_hybrid_gateway(),
                         credentials=certs.credentials(tmp_path / "moon", "moon"))  # fmt: skip
        larval = _gateway(
            topo, start_action="trap",
            local=f'{{ auth = "xauth", id = "{OUTER["b"]}", xauth_id = "carol" }}',
            remote=f'{{ auth = "pubkey", id = "{IDS["a"]}" }}',
            credentials=str(certs.credentials(tmp_path / "sun", None)),
        )  # fmt: skip
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:],
                                                    larval.log.read_text()[-3000:])  # fmt: skip
        assert "XAuth authentication of 'carol' successful" in log, log[-4000:]
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["auth_remote"]["method"] == "pubkey", ike  # type: ignore[index]
