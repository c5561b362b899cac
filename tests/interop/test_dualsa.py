"""One CHILD_SA for both address families, as native clients ask for it: charon as the
road warrior with ``vips = 0.0.0.0,::`` and ``remote_ts = 0.0.0.0/0,::/0`` in ONE child,
against a larval gateway with an IPv4 and an IPv6 pool (`ra_setup.RaTopology`).

    CP(CFG_REQUEST(INTERNAL_IP4_ADDRESS, INTERNAL_IP6_ADDRESS)), TSi(0.0.0.0/0, ::/0),
    TSr(0.0.0.0/0, ::/0)  -->
    <--  CP(CFG_REPLY(10.3.0.1, 2001:db8:f::1)), TSi(10.3.0.1/32, 2001:db8:f::1/128),
         TSr(the home's IPv4 and IPv6 networks)

``swanctl --list-sas`` shows one CHILD_SA holding both families' selectors; ping and
ping -6 from the two virtual addresses reach the home server through it. The gateway's
tunnel names the client's address, or any peer (``remote_addrs = ["%any"]``, where the
SA is found by inner destination under either family's pair)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.interop.harness import NET, needs_charon, needs_netns
from tests.interop.ra_setup import NET6, Pool, RaTopology, gateway_config, road_warrior

pytestmark = [needs_netns, needs_charon]

POOL4 = Pool("rw", "10.3.0.0/24", dns=["10.3.0.53"])
POOL6 = Pool("rw6", "2001:db8:f::/112", dns=["2001:db8:f::53"])
VIP4, VIP6 = "10.3.0.1", "2001:db8:f::1"


@pytest.mark.parametrize(
    ("outer", "peer"),
    [(4, "fixed"), (4, "any"), (6, "fixed")],
    ids=["over-ipv4", "over-ipv4-any-peer", "over-ipv6"],
)
def test_one_child_sa_carries_ipv4_and_ipv6(tmp_path: Path, outer: int, peer: str) -> None:
    with RaTopology(tmp_path, family=outer) as topo:
        config = gateway_config(topo, [POOL4, POOL6])
        if peer == "any":
            client_address = topo.clients["c1"].address
            config = config.replace(f'remote_addrs = ["{client_address}"]',
                                    'remote_addrs = ["%any"]')  # fmt: skip
            assert '"%any"' in config
        larval = topo.gateway(config)
        charon = topo.client(
            "c1", road_warrior(topo, "c1", vips="0.0.0.0,::", remote_ts="0.0.0.0/0,::/0")
        )
        charon.initiate("net")
        listing = charon.list_sas()
        # One CHILD_SA, both families' selectors in it.
        assert len(re.findall(r"INSTALLED", listing)) == 1, listing
        # The CHILD_SA's selectors (the IKE SA's `local '<id>' @ ...` line has a quote).
        local = re.search(r"\n\s+local  ([^'\n]+)\n\s+remote ([^'\n]+)\n", listing)
        assert local is not None, listing
        assert sorted(local.group(1).split()) == [f"{VIP4}/32", f"{VIP6}/128"], listing
        assert sorted(local.group(2).split()) == sorted([NET["b"], NET6["b"]]), listing
        status = larval.wait_for("child")
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["local_ts"] == [NET["b"], NET6["b"]], status  # type: ignore[index]
        assert child["remote_ts"] == [f"{VIP4}/32", f"{VIP6}/128"], status  # type: ignore[index]
        for vip in (VIP4, VIP6):
            result = topo.ping_server("c1", vip)
            assert " 0% packet loss" in result.stdout, (
                vip,
                result.stdout,
                larval.log.read_text()[-4000:],
                charon.log_tail(),
            )
        # Both families went through the one SA pair: its counters show both pings.
        listing = charon.list_sas()
        counts = re.findall(r"\b(in|out) +[0-9a-f]{8}[^,]*, +\d+ bytes, +(\d+) packets", listing)
        assert sorted(counts) == [("in", "6"), ("out", "6")], listing
