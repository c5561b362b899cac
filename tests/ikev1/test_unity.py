"""Cisco Unity with several split networks, in memory: a gateway tells a Unity client two
networks (UNITY_SPLIT_INCLUDE); a Cisco client opens one Quick Mode per network, each
with its virtual address as IDci and the network as IDcr, and the gateway takes each as
a CHILD_SA of its own, narrowed to that network; none takes another's place.

    TRANSACTION *{ HASH, CFG_REPLY(ADDR, U_SPLITINC(S1 S2)) }   <--
    QM1 *{ HASH(1), SA, Ni, IDci = VIP, IDcr = S1 } -->  <-- QM2  QM3 -->
    QM1 *{ HASH(1), SA, Ni, IDci = VIP, IDcr = S2 } -->  <-- QM2  QM3 -->
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from larval.ike.config import ChildConfig
from larval.ike.events import ChildSaUp
from larval.pools import Pool, PoolAttributes, Pools

from .test_remote_access import ANY, POOL, VIP, RoadWarrior, client_config, gateway_config
from .test_session import child, events

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

S1 = ipaddress.ip_network("203.0.113.0/25")
S2 = ipaddress.ip_network("203.0.113.128/25")
HOME = ipaddress.ip_network("203.0.113.0/24")
VIP_NET = ipaddress.ip_network(VIP)


def unity_road_warrior() -> RoadWarrior:
    """A gateway whose pool tells S1 and S2, its policy the whole home network (as the
    key manager's inverse ACQUIRE answers), and a client announcing Cisco Unity."""
    rw = RoadWarrior(client_config(), gateway_config())
    rw.pools = Pools([Pool("rw", str(POOL), PoolAttributes(split_include=(S1, S2)))])
    rw.g._remote_access.pool.pools = rw.pools  # type: ignore[union-attr]

    def policy(tsi: tuple[object, ...], tsr: tuple[ipaddress.IPv4Network, ...],
               mode: str = "tunnel") -> ChildConfig | None:  # fmt: skip
        if not tsr[0].subnet_of(HOME):
            return None
        return dataclasses.replace(child(HOME, POOL), name="home")

    rw.g.child_policy = policy  # type: ignore[assignment]
    rw.g.peer_unity = True  # as if MM1 carried the Cisco Unity vendor ID
    return rw


def test_one_quick_mode_per_split_network_each_its_own_child_sa() -> None:
    rw = unity_road_warrior()
    rw.c.initiate(child(ANY, S1), rw.now)
    rw.flush()
    assert rw.g.unity_split == (S1, S2)
    rw.c.create_child(child(ANY, S2), rw.now)
    rw.flush()
    ups = [e for e in events(rw.g) if isinstance(e, ChildSaUp)]
    assert [(u.local_ts, u.remote_ts) for u in ups] == [((S1,), (VIP_NET,)), ((S2,), (VIP_NET,))]
    # Two CHILD_SAs side by side, neither taken for the other's replacement: each one's
    # soft EXPIRE starts a Quick Mode of its own, for its own network.
    assert len(rw.g.children) == 2
    assert [c.renewed for c in rw.g.children.values()] == [False, False]
    assert sorted(c.config.local_ts for c in rw.g.children.values()) == [(S1,), (S2,)]
    # The client's policy takes the home network from its virtual address.
    rw.c.child_policy = lambda tsi, tsr, mode="tunnel": child(ANY, HOME)  # type: ignore[misc]
    first = next(iter(rw.g.children))
    assert rw.g.rekey_child(first, rw.now)
    rw.flush()
    again = [e for e in events(rw.g) if isinstance(e, ChildSaUp)]
    assert [(u.local_ts, u.remote_ts) for u in again] == [((S1,), (VIP_NET,))]


def test_the_wildcard_quick_mode_still_gets_the_first_split_network() -> None:
    """A Unity client that proposes 0.0.0.0/0 for the gateway's side (charon) gets the
    first split network, the IDs echoed."""
    rw = unity_road_warrior()
    rw.c.initiate(child(ANY, ANY), rw.now)
    rw.flush()
    (up,) = [e for e in events(rw.g) if isinstance(e, ChildSaUp)]
    assert up.local_ts == (S1,) and up.remote_ts == (VIP_NET,)


def test_a_network_outside_the_split_networks_and_the_policy_is_refused() -> None:
    rw = unity_road_warrior()
    rw.c.initiate(child(ANY, S1), rw.now)
    rw.flush()
    list(events(rw.g))
    rw.c.create_child(child(ANY, ipaddress.ip_network("198.51.100.0/24")), rw.now)
    rw.flush()
    assert not [e for e in events(rw.g) if isinstance(e, ChildSaUp)]
    assert len(rw.g.children) == 1


def test_the_gateway_status_lists_a_child_sa_per_split_network() -> None:
    """Two nodes: a larval client (vips, a child per split network) opens a Quick Mode
    for each from its address; the gateway's status lists both CHILD_SAs, each narrowed
    to its network within the one policy for the home network."""
    from larval.keymgr.road_warrior import host_state

    from .test_client_vips import CLIENT, GATEWAY, Host, client_data, gateway_data, run

    gw_data, cl_data = gateway_data(), client_data()
    gw_data["pools"]["rw"]["split_include"] = [str(S1), str(S2)]
    children = cl_data["connections"]["home"]["children"]
    children["s2"] = dict(children["home"], remote_ts=[str(S2)])
    children["home"]["remote_ts"] = [str(S1)]
    gateway, client = Host(gw_data, GATEWAY), Host(cl_data, CLIENT)
    client.keymgr.initiate("home", "home", 0.0)
    run(gateway, client)
    client.keymgr.initiate("home", "s2", 3.0)
    run(gateway, client, 5.0, start=3.0)
    listed = sorted((c["local_ts"], c["remote_ts"]) for c in gateway.keymgr.status()["child_sas"])
    assert listed == [([str(S1)], [f"{VIP}/32"]), ([str(S2)], [f"{VIP}/32"])]
    routes = {net for net, _ in host_state(client.keymgr).routes}
    assert routes == {S1, S2}
