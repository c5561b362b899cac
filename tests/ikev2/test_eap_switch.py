"""A gateway switches an IKE SA's connection by the peer's EAP identity (strongSwan's
``find_alternative_eap_cfg``): two connections take the same IKE identities and check
by EAP-MSCHAPv2, one with ``eap_id = "carol"``, one with ``eap_id = "%any"``, each with
its own pool and children. The gateway asks the name (EAP-Identity) and moves the IKE
SA to the connection that takes it best before the method runs; carol lands on hers,
dave on the other, each leased from that connection's pool and given its children's
selectors. Each host is a node (key manager and stack), IKE carried in memory.

    HDR, SK {IDi, CP(CFG_REQUEST), SAi2, TSi, TSr}  -->           (no AUTH: EAP)
          <--  HDR, SK {IDr, AUTH, EAP(Request/Identity)}
    HDR, SK {EAP(Response/Identity "carol")}  -->                  the switch
          <--  HDR, SK {EAP(Request/MSCHAPv2 Challenge)}          (the chosen one's)
    ...
          <--  HDR, SK {AUTH, CP(CFG_REPLY), SAr2, TSi, TSr}      (its pool, its TS)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.gateway import gateway_credentials
from tests.keymgr.test_select import (
    ESP,
    GATEWAY,
    PSK,
    Host,
    Network,
    client,
    gateway,
    ike_sas,
    names_by_remote,
)

PASSWORDS = {"carol": "carols-password", "dave": "daves-password", "erin": "erins-password"}
EAP_SECRETS = {f"eap-{who}": {"id": who, "secret": pw} for who, pw in PASSWORDS.items()}
POOLS = {"carol_pool": {"addrs": "10.3.1.0/24"}, "rw_pool": {"addrs": "10.3.2.0/24"}}
#: Each connection's protected network: its CHILD_SA's local_ts (its remote_ts: its pool).
NETS = {"carol": "203.0.113.0/25", "anyone": "203.0.113.128/25", "dave": "203.0.113.128/25"}


def eap_connection(name: str, eap_id: str, pool: str, remote: Any = None) -> dict[str, Any]:
    return {
        "remote_addrs": ["%any"],
        "local": {"auth": "psk", "id": GATEWAY},
        "remote": remote or {"auth": "eap-mschapv2", "eap_id": eap_id},
        "pools": [pool],
        "children": {
            "net": {
                "local_ts": [NETS[name]],
                "remote_ts": [POOLS[pool]["addrs"]],
                "esp_proposals": ESP,
            }
        },
    }


def eap_gateway(order: tuple[str, ...] = ("carol", "anyone"), **ids: str) -> Host:
    """The gateway: connection "carol" (``eap_id = "carol"``, pool 10.3.1.0/24, network
    203.0.113.0/25) and "anyone" (``eap_id = "%any"``, 10.3.2.0/24, 203.0.113.128/25), in
    `order`; `ids` replaces a connection's ``eap_id``."""
    specs = {"carol": ("carol", "carol_pool"), "anyone": ("%any", "rw_pool"),
             "dave": ("dave", "rw_pool")}  # fmt: skip
    conns = {name: eap_connection(name, ids.get(name, specs[name][0]), specs[name][1])
             for name in order}  # fmt: skip
    data = gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}, **EAP_SECRETS}, pools=POOLS)
    return Host(data)


def home(who: str) -> dict[str, Any]:
    """The client's CHILD_SA: to the network of the connection meant for it."""
    net = NETS["carol" if who == "carol" else "anyone"]
    return {"home": {"local_ts": ["0.0.0.0/0"], "remote_ts": [net], "esp_proposals": ESP}}


def eap_client(addr: str, who: str, ike_id: str = "roadwarrior@example.org") -> Host:
    """A road warrior at `addr` whose IKE identity is `ike_id` (the same for everyone:
    only the EAP identity tells them apart) and whose EAP identity is `who`."""
    data = client(addr, "carol", secret=PSK["gw"], children=home(who),
                  local={"auth": "eap-mschapv2", "eap_id": who, "id": ike_id})  # fmt: skip
    data["secrets"][f"eap-{who}"] = {"id": who, "secret": PASSWORDS[who]}
    return Host(data, vips=("0.0.0.0",))


def gateway_children(gw: Host) -> dict[str, tuple[str, list[str], list[str]]]:
    """Each CHILD_SA of the gateway by its peer's virtual address: its connection, its
    local and remote selectors."""
    return {c["remote_ts"][0]: (c["connection"], c["local_ts"], c["remote_ts"])
            for c in gw.keymgr.status()["child_sas"]}  # fmt: skip


def leases(gw: Host) -> dict[str, tuple[str, str]]:
    """The online leases: EAP identity -> (pool, address)."""
    return {e["identity"]: (p.name, e["address"]) for p in gw.keymgr.pools.status()
            for e in p.to_dict()["online"]}  # fmt: skip


@pytest.mark.parametrize("order", [("carol", "anyone"), ("anyone", "carol")])
def test_carol_and_dave_each_land_on_their_own_connection_pool_and_selectors(
    order: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the order configured, the connection that names carol's EAP identity
    takes her before the one of ``%any``; dave, whom only ``%any`` takes, lands there."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = eap_gateway(order)
    carol = eap_client("192.0.2.1", "carol")
    dave = eap_client("192.0.2.3", "dave")
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "anyone"}
    sas = {s["remote"]: s for s in ike_sas(gw)}
    for remote, who in (("192.0.2.1", "carol"), ("192.0.2.3", "dave")):
        auth = sas[remote]["auth_remote"]
        assert (auth["method"], auth["identity"]) == ("eap-mschapv2", who)
    # Each leased from its connection's pool, keyed by its EAP identity.
    assert leases(gw) == {"carol": ("carol_pool", "10.3.1.1"), "dave": ("rw_pool", "10.3.2.1")}
    assert ike_sas(carol)[0]["virtual_ips"] == ["10.3.1.1"]
    assert ike_sas(dave)[0]["virtual_ips"] == ["10.3.2.1"]
    # Each CHILD_SA is its connection's, with its network.
    assert gateway_children(gw) == {
        "10.3.1.1/32": ("carol", ["203.0.113.0/25"], ["10.3.1.1/32"]),
        "10.3.2.1/32": ("anyone", ["203.0.113.128/25"], ["10.3.2.1/32"]),
    }
    (carol_child,) = carol.keymgr.status()["child_sas"]
    assert carol_child["remote_ts"] == ["203.0.113.0/25"]
    (dave_child,) = dave.keymgr.status()["child_sas"]
    assert dave_child["remote_ts"] == ["203.0.113.128/25"]
    switches = [r.getMessage() for r in caplog.records if "switching to connection" in
                r.getMessage()]  # fmt: skip
    first = order[0]
    wanted = {
        "carol": "switching to connection anyone for EAP identity 'dave'",
        "anyone": "switching to connection carol for EAP identity 'carol'",
    }[first]
    assert [s.split(": ", 1)[1] for s in switches] == [wanted]


def test_an_eap_identity_no_connection_takes_is_authentication_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connections for carol and for dave only: erin, with a password the gateway knows,
    is refused after EAP-Identity with EAP Failure and AUTHENTICATION_FAILED; the
    gateway's one WARNING names her and what each connection wanted; no lease is taken
    and nothing is installed."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = eap_gateway(("carol", "dave"))
    erin = eap_client("192.0.2.5", "erin")
    Network([gw, erin]).connect(erin)
    assert ike_sas(gw) == [] and ike_sas(erin) == []
    assert gw.keymgr.status()["child_sas"] == [] and erin.keymgr.status()["child_sas"] == []
    assert leases(gw) == {}
    warnings_ = [r.getMessage() for r in caplog.records
                 if r.levelno == logging.WARNING and r.name == "larval.ike"]  # fmt: skip
    gateway_warnings = [w for w in warnings_ if "initiator" in w]
    assert len(gateway_warnings) == 1
    assert gateway_warnings[0].endswith(
        "authentication of the initiator failed: no connection takes EAP identity 'erin': "
        "carol: EAP identity 'carol' required; dave: EAP identity 'dave' required"
    )
    assert "IKE_AUTH refused: AUTHENTICATION_FAILED" in caplog.text
    assert PASSWORDS["erin"] not in caplog.text


def test_the_connection_of_the_name_takes_it_when_it_is_the_only_one() -> None:
    """Connections for carol and for dave, no ``%any``: each lands on the one that
    names it, even where the other was the first by IKE_SA_INIT."""
    gw = eap_gateway(("dave", "carol"))
    carol = eap_client("192.0.2.1", "carol")
    dave = eap_client("192.0.2.3", "dave")
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "dave"}
    assert leases(gw) == {"carol": ("carol_pool", "10.3.1.1"), "dave": ("rw_pool", "10.3.2.1")}


def test_a_wrong_password_after_the_switch_fails_on_the_chosen_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The switch chooses by the name only; the method then checks the password."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = eap_gateway(("anyone", "carol"))
    data = client("192.0.2.1", "carol", secret=PSK["gw"],
                  local={"auth": "eap-mschapv2", "eap_id": "carol"})  # fmt: skip
    data["secrets"]["eap-carol"] = {"id": "carol", "secret": "not-carols-password"}
    carol = Host(data, vips=("0.0.0.0",))
    Network([gw, carol]).connect(carol)
    assert ike_sas(gw) == [] and leases(gw) == {}
    assert "switching to connection carol for EAP identity 'carol'" in caplog.text
    assert "not-carols-password" not in caplog.text


# -- RFC 4739: a certificate, then EAP ---------------------------------------------------


def rounds_gateway(tmp_path: Path, order: tuple[str, ...], cacerts: dict[str, str] | None = None,
                   ) -> Host:  # fmt: skip
    """Connections of two rounds each (the client's certificate, then EAP): "carol" with
    ``eap_id = "carol"`` in round 2, "anyone" with ``%any``, "dave" with "dave";
    `cacerts`: the one CA a connection's round 1 trusts."""
    gateway_credentials(tmp_path, carol=True)
    conns = {}
    for name in order:
        eap_id, pool = {"carol": ("carol", "carol_pool"), "anyone": ("%any", "rw_pool"),
                        "dave": ("dave", "rw_pool")}[name]  # fmt: skip
        first: dict[str, Any] = {"auth": "pubkey", "id": "*@example.org"}
        if cacerts and name in cacerts:
            first["cacerts"] = [cacerts[name]]
        conn = eap_connection(name, eap_id, pool, remote=[
            first, {"auth": "eap-mschapv2", "eap_id": eap_id}])  # fmt: skip
        conn["local"] = {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"}
        conns[name] = conn
    data = gateway(conns, secrets=EAP_SECRETS, pools=POOLS)
    data["daemon"]["credentials"] = str(tmp_path)
    return Host(data, creds=tmp_path)


def rounds_client(tmp_path: Path, addr: str, who: str) -> Host:
    """A road warrior whose machine certificate is carol@example.org's (round 1) and
    whose user is `who` (EAP-MSCHAPv2, round 2)."""
    data = client(addr, "carol", children=home(who),
                  local=[{"auth": "pubkey", "certs": ["carol.pem"], "id": "carol@example.org"},
                         {"auth": "eap-mschapv2", "eap_id": who}],
                  remote={"auth": "pubkey", "id": "vpn.example.org"})  # fmt: skip
    data["daemon"]["credentials"] = str(tmp_path)
    data["secrets"][f"eap-{who}"] = {"id": who, "secret": PASSWORDS[who]}
    return Host(data, vips=("0.0.0.0",), creds=tmp_path)


@pytest.mark.parametrize("order", [("carol", "anyone"), ("anyone", "carol")])
def test_the_eap_round_of_rfc_4739_switches_by_its_identity(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    gw = rounds_gateway(tmp_path, order)
    carol = rounds_client(tmp_path, "192.0.2.1", "carol")
    dave = rounds_client(tmp_path, "192.0.2.3", "dave")
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "anyone"}
    sas = {s["remote"]: s for s in ike_sas(gw)}
    for remote, who in (("192.0.2.1", "carol"), ("192.0.2.3", "dave")):
        assert sas[remote]["auth_remote"]["method"] == "pubkey"
        assert [r["identity"] for r in sas[remote]["auth_remote"]["rounds"]] == [who]
    assert leases(gw) == {"carol": ("carol_pool", "10.3.1.1"), "dave": ("rw_pool", "10.3.2.1")}
    assert gateway_children(gw) == {
        "10.3.1.1/32": ("carol", ["203.0.113.0/25"], ["10.3.1.1/32"]),
        "10.3.2.1/32": ("anyone", ["203.0.113.128/25"], ["10.3.2.1/32"]),
    }


def test_an_eap_round_no_connection_takes_fails_naming_the_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    gw = rounds_gateway(tmp_path, ("carol", "dave"))
    erin = rounds_client(tmp_path, "192.0.2.5", "erin")
    Network([gw, erin]).connect(erin)
    assert ike_sas(gw) == [] and ike_sas(erin) == [] and leases(gw) == {}
    assert gw.keymgr.status()["child_sas"] == []
    failed = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and "initiator failed" in r.getMessage()]  # fmt: skip
    assert len(failed) == 1
    assert failed[0].endswith(
        "authentication of the initiator failed: no connection takes EAP identity 'erin': "
        "carol: EAP identity 'carol' required; dave: EAP identity 'dave' required"
    )
    assert "IKE_AUTH refused: AUTHENTICATION_FAILED" in caplog.text


def test_an_alternative_whose_round_1_would_refuse_the_certificate_is_not_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection "carol" names her EAP identity but trusts another CA in round 1:
    her certificate is verified again with that connection's verifier before a switch,
    fails, and the IKE SA stays on "anyone", which took round 1."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = rounds_gateway(tmp_path, ("anyone", "carol"), cacerts={"carol": "other.pem"})
    carol = rounds_client(tmp_path, "192.0.2.1", "carol")
    Network([gw, carol]).connect(carol)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "anyone"}
    assert leases(gw) == {"carol": ("rw_pool", "10.3.2.1")}
    assert "switching to connection carol" not in caplog.text


def test_a_connection_without_eap_id_takes_the_ike_identity_as_the_name() -> None:
    """``eap_id`` left out wants the peer's IKE identity as its EAP identity (as
    strongSwan): carol, whose EAP identity is her IKE identity, lands there before
    ``%any``; dave, whose is not, on ``%any``."""
    conns = {
        "anyone": eap_connection("anyone", "%any", "rw_pool"),
        "carol": eap_connection("carol", "", "carol_pool"),
    }
    del conns["carol"]["remote"]["eap_id"]
    secrets = {**EAP_SECRETS, "eap-carol-ike": {"id": "carol@example.org",
                                                "secret": PASSWORDS["carol"]}}  # fmt: skip
    gw = Host(gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}, **secrets}, pools=POOLS))
    data = client("192.0.2.1", "carol", secret=PSK["gw"], children=home("carol"),
                  local={"auth": "eap-mschapv2", "eap_id": "carol@example.org",
                         "id": "carol@example.org"})  # fmt: skip
    data["secrets"]["eap-carol"] = {"id": "carol@example.org", "secret": PASSWORDS["carol"]}
    carol = Host(data, vips=("0.0.0.0",))
    dave = eap_client("192.0.2.3", "dave", ike_id="dave@example.org")
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert names_by_remote(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "anyone"}
    assert leases(gw) == {"carol@example.org": ("carol_pool", "10.3.1.1"),
                          "dave": ("rw_pool", "10.3.2.1")}  # fmt: skip


def test_a_connection_of_another_own_identity_is_no_alternative(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's IDr and AUTH went out before the EAP identity is known: a connection
    whose own identity is another cannot take the IKE SA then, whatever its eap_id."""
    caplog.set_level(logging.INFO, "larval.ike")
    conns = {
        "dave": eap_connection("dave", "dave", "rw_pool"),
        "carol": eap_connection("carol", "carol", "carol_pool"),
    }
    conns["carol"]["local"] = {"auth": "psk", "id": "other.example.org"}
    data = gateway(conns, secrets={"ike-any": {"secret": PSK["gw"]}, **EAP_SECRETS}, pools=POOLS)
    data["secrets"]["ike-other"] = {"ids": ["other.example.org"], "secret": PSK["gw"]}
    gw = Host(data)
    carol = eap_client("192.0.2.1", "carol")
    Network([gw, carol]).connect(carol)
    assert ike_sas(gw) == [] and leases(gw) == {}
    assert ("no connection takes EAP identity 'carol': dave: EAP identity 'dave' required; "
            "carol: another local id") in caplog.text  # fmt: skip
