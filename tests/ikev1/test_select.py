"""A gateway with several IKEv1 connections for the same addresses picks each ISAKMP SA's
by the peer's identity, as strongSwan's ``phase1.c`` ``select_config`` does: Aggressive
Mode by IDii in AM1, before the pre-shared key is needed, so each road warrior's group
PSK keys its own exchange; Main Mode only among connections keyed alike, at MM5. Each
host is a node (key manager and stack) and IKE goes between them in memory.

    AM1 { SA, KE, Ni, IDii, VID }  -->     the connection whose remote id takes IDii
        <-- AM2 { SA, KE, Nr, IDir, HASH_R, NAT-D, VID }   keyed with its PSK
    AM3 *{ HASH_I, NAT-D, N } -->
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest

from tests.keymgr.test_select import GATEWAY, HOME, PSK, Host, Network, client, gateway, ike_sas

warnings.filterwarnings("ignore", category=DeprecationWarning)

IKEV1 = {"version": 1, "proposals": ["aes128-sha256-modp2048"]}
ESP = ["aes128-sha256"]


def group(*names: str, aggressive: bool = True) -> dict[str, dict[str, Any]]:
    """A connection for any address for each name, whose peer is ``NAME@example.org``
    proving itself with that name's group PSK."""
    return {
        who: {
            "remote_addrs": ["%any"], **IKEV1, "aggressive": aggressive,
            "local": {"auth": "psk", "id": GATEWAY},
            "remote": {"auth": "psk", "id": f"{who}@example.org"},
            "children": {"home": {"local_ts": [HOME], "remote_ts": ["0.0.0.0/0"],
                                  "esp_proposals": ESP}},
        }
        for who in names
    }  # fmt: skip


def road_warrior(addr: str, who: str, *, aggressive: bool = True, **kw: Any) -> Host:
    data = client(addr, who, **IKEV1, aggressive=aggressive, **kw)
    data["connections"]["home"]["children"]["home"]["esp_proposals"] = ESP
    return Host(data)


def connect(net: Network, host: Host) -> None:
    """Aggressive Mode, then Quick Mode once AM3 has had time to land."""
    net.connect(host)
    for now in (0.5, 1.0):
        for each in net.hosts:
            each.keymgr.handle_timer(now)
        net.carry(now)


def established(host: Host) -> dict[tuple[str, int], str]:
    return {(s["remote"], s["remote_port"]): s["name"] for s in ike_sas(host)
            if s["state"] == "established"}  # fmt: skip


def test_aggressive_mode_each_group_psk_client_lands_on_its_own_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """carol's and dave's connections both take any address; AM1's IDii picks each
    one's, and that one's PSK makes AM2: both ISAKMP SAs and their CHILD_SAs come up."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(group("carol", "dave")))
    carol = road_warrior("192.0.2.1", "carol")
    dave = road_warrior("192.0.2.3", "dave")
    net = Network([gw, carol, dave])
    connect(net, carol)
    connect(net, dave)
    assert established(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "dave"}
    assert list(established(carol).values()) == ["home"]
    assert list(established(dave).values()) == ["home"]
    children = gw.keymgr.status()["child_sas"]
    assert sorted((c["connection"], c["remote"]) for c in children) == [
        ("carol", "192.0.2.1"), ("dave", "192.0.2.3")]  # fmt: skip
    assert "switching to connection dave for IDii dave@example.org" in caplog.text
    assert "switching to connection carol" not in caplog.text
    for secret in PSK.values():
        assert secret not in caplog.text


def test_aggressive_mode_an_identity_no_connection_takes_is_refused_naming_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(group("carol", "dave")))
    data = client("192.0.2.5", "carol", **IKEV1, aggressive=True)
    data["connections"]["home"]["local"]["id"] = "erin@example.org"
    data["connections"]["home"]["children"]["home"]["esp_proposals"] = ESP
    erin = Host(data)
    Network([gw, erin]).connect(erin)
    assert established(gw) == {} and established(erin) == {}
    warnings_ = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "no connection for IDii" in r.getMessage()
    ]
    assert len(warnings_) == 1, warnings_  # fmt: skip
    assert warnings_[0].endswith(
        "AGGRESSIVE refused in state IDLE: no connection for IDii erin@example.org: "
        "carol: another remote id; dave: another remote id (INVALID_ID_INFORMATION)"
    )
    assert "peer refused: INVALID_ID_INFORMATION" in caplog.text


def test_aggressive_mode_the_wrong_group_psk_for_the_identity_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dave claims dave's identity with carol's PSK: his connection's PSK makes AM2, and
    the HASH_R he checks does not verify; nothing comes up on either end."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(group("carol", "dave")))
    dave = road_warrior("192.0.2.3", "dave", secret=PSK["carol"])
    Network([gw, dave]).connect(dave)
    assert established(gw) == {} and established(dave) == {}
    assert "HASH_R does not verify" in caplog.text


def test_aggressive_mode_an_exact_identity_wins_over_any() -> None:
    """A connection for %any first, one for carol second: carol lands on hers, dave (who
    has the PSK of the %any connection, the gateway's own) on the %any one."""
    anyone = dict(group("dave")["dave"], remote={"auth": "psk", "id": "%any"})
    gw = Host(gateway({"anyone": anyone, **group("carol")}))
    carol = road_warrior("192.0.2.1", "carol")
    dave = road_warrior("192.0.2.3", "dave", secret=PSK["gw"])
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert established(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "anyone"}


def test_main_mode_switches_at_mm5_among_connections_of_one_psk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Main Mode names the peer in MM5 only, after the PSK keyed MM3/MM4: with one PSK
    for both connections, dave's MM5 decrypts and moves his ISAKMP SA to his connection."""
    caplog.set_level(logging.INFO, "larval.ike")
    shared = {"ike-group": {"ids": ["carol@example.org", "dave@example.org"],
                            "secret": PSK["gw"]}}  # fmt: skip
    data = gateway(group("carol", "dave", aggressive=False))
    data["secrets"] = {**shared, "ike-gw": {"ids": [GATEWAY], "secret": PSK["gw"]}}
    gw = Host(data)
    carol = road_warrior("192.0.2.1", "carol", aggressive=False, secret=PSK["gw"])
    dave = road_warrior("192.0.2.3", "dave", aggressive=False, secret=PSK["gw"])
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert established(gw) == {("192.0.2.1", 500): "carol", ("192.0.2.3", 500): "dave"}
    assert "switching to connection dave for IDii dave@example.org" in caplog.text


def test_main_mode_cannot_pick_another_connections_psk(caplog: pytest.LogCaptureFixture) -> None:
    """Each connection with its own PSK: Main Mode is keyed (MM3/MM4) with the PSK of
    the connection best by addresses, carol's, before dave names himself; his MM5 does
    not decrypt and he is refused, as with strongSwan."""
    caplog.set_level(logging.INFO, "larval.ike")
    gw = Host(gateway(group("carol", "dave", aggressive=False)))
    carol = road_warrior("192.0.2.1", "carol", aggressive=False)
    dave = road_warrior("192.0.2.3", "dave", aggressive=False)
    net = Network([gw, carol, dave])
    net.connect(carol)
    net.connect(dave)
    assert established(gw) == {("192.0.2.1", 500): "carol"}
    assert established(dave) == {}
    assert "MM5 does not decrypt (pre-shared keys differ?)" in caplog.text


def test_the_connection_taken_at_am1_sets_the_lifetime_taken() -> None:
    """dave's connection reauthenticates every hour: his ISAKMP SA lives for its rekey
    time and a tenth (3960 s), not for the first connection's."""
    conns = group("carol", "dave")
    conns["dave"]["rekey_time"] = "1h"
    gw = Host(gateway(conns))
    carol = road_warrior("192.0.2.1", "carol")
    dave = road_warrior("192.0.2.3", "dave")
    net = Network([gw, carol, dave])
    connect(net, carol)
    connect(net, dave)
    expires = {s["name"]: s["expires_at"] for s in ike_sas(gw)}
    assert expires["dave"] == 3960
    assert expires["carol"] > 3960
