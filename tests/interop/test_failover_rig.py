"""The failover rig itself, before any failover: a tunnel from charon to the gateway on the
virtual address carries the numbered echoes without loss, the capture on the bridge sees
it all (one IKE_SA_INIT, no (SPI, sequence number) twice), and each fault the failover
tests use does what it says: a gateway cut off from etcd alone, the etcd leader killed
and another elected, the virtual address moved with the client following the gratuitous
ARP, a gateway's link down."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.ha.members import needs_etcd
from tests.interop.failover_evidence import (
    duplicate_sequences,
    ike_sa_inits,
    loss_window,
    read_capture,
    sent_after,
)
from tests.interop.failover_rig import HOSTS, MACS, RATE, VIP, FailoverRig
from tests.interop.harness import needs_charon, needs_netns, spis

pytestmark = [needs_netns, needs_charon, needs_etcd]


def test_the_rig_carries_the_tunnel_and_each_fault_does_what_it_says(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        # No [ha] here: gw1 holds the virtual address by hand.
        gw1.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "eth0"])
        larval = gw1.start(rig.gateway_config(gw1, ha=False))
        charon = rig.client()
        charon.initiate()
        larval.wait_for("child")
        traffic = rig.start_traffic()
        time.sleep(1)

        # etcd: both gateways reach it; one is cut off alone, then let back.
        assert gw1.reaches_etcd() and gw2.reaches_etcd()
        gw2.cut_from_etcd()
        assert not gw2.reaches_etcd() and gw1.reaches_etcd()
        assert rig.cli.run(["ping", "-c", "1", "-W", "2", HOSTS["gw2"]])  # the rest still passes
        gw2.rejoin_etcd()
        assert gw2.reaches_etcd()
        # The leader killed: another is elected among the two left.
        killed = rig.etcd.kill_leader()
        assert rig.etcd.wait_for_leader(5) not in (None, killed)
        time.sleep(1)
        result = traffic.stop()
        window = loss_window(result.sent, result.echoed, result.interval)
        assert len(result.sent) >= RATE, len(result.sent)
        assert window.lost == 0, window
        listing = charon.list_sas()
        charon_in = {int(s, 16) for s in spis(listing)}
        assert charon_in, listing

        # The address moves: the client follows the gratuitous ARP.
        assert rig.client_sees_vip_at() == MACS["gw1"]
        rig.move_vip(gw1, gw2)
        deadline = time.monotonic() + 3
        while rig.client_sees_vip_at() != MACS["gw2"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rig.client_sees_vip_at() == MACS["gw2"]
        # A link down: gw1 is gone from the bridge, and back.
        gw1.link(False)
        out = rig.cli.run(["ping", "-c", "1", "-W", "1", HOSTS["gw1"]], check=False)
        assert not re.search(r"\b1 received", out), out
        gw1.link(True)

        esp, ike = read_capture(rig.capture.stop())
        assert duplicate_sequences(esp) == {}
        assert len(ike_sa_inits(ike)) == 1, ike
        # Every echo came back in ESP from gw1 to charon's inbound SPI, each once.
        to_charon = [p for p in esp if p.spi in charon_in]
        assert {p.mac for p in to_charon} == {MACS["gw1"]}
        assert len(to_charon) >= len(result.echoed), (len(to_charon), len(result.echoed))
        # One ESP packet a frame (UDP GSO segmented before the bridge): none hidden.
        sequences = sorted(p.seq for p in to_charon)
        assert sequences == list(range(1, len(sequences) + 1)), sequences[:50]
        assert sent_after(esp, ike, MACS["gw2"], 0) == []
