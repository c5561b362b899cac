"""IKEv1 against strongSwan's charon: Main Mode and Quick Mode with a PSK, with and without
PFS, larval as initiator (through a trap policy) and as responder; ping through the tunnel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.interop.harness import Charon, Topology, needs_charon, needs_netns

pytestmark = [needs_netns, needs_charon]

IKE = "aes128-sha256-modp2048"


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize("esp", ["aes128-sha256", "aes128-sha256-modp2048"], ids=["no-pfs", "pfs"])
def test_main_mode_and_quick_mode(tmp_path: Path, role: str, esp: str) -> None:
    with Topology(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1)
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp], start_action="trap",
                                 version=1)  # fmt: skip
            # The first packet triggers ACQUIRE -> Main Mode -> Quick Mode. larval installs
            # after QM2 and the held packet leaves at once, so it can reach charon before
            # QM3 does: charon's kernel-libipsec has no LARVAL hold and drops it (the seed's
            # window, seen from the other side). What follows must all arrive.
            topo.b.ping(count=1)
            result = topo.b.ping(count=5)
        else:
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp], start_action="none",
                                 version=1)  # fmt: skip
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1)
            charon.initiate()
            result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        listing = charon.list_sas()
        assert "ESTABLISHED, IKEv1" in listing and "INSTALLED, TUNNEL-in-UDP" in listing, listing
        if esp.endswith("modp2048"):
            assert "MODP_2048" in listing.split("net:")[1], listing


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_aggressive_mode(tmp_path: Path, role: str) -> None:
    with Topology(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1,
                                 aggressive=True)  # fmt: skip
            larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"],
                                 start_action="trap", version=1, aggressive=True)  # fmt: skip
            topo.b.ping(count=1)  # triggers Aggressive Mode, then Quick Mode
            # larval sends QM1 right behind AM3; charon's workers may take QM1 first and
            # ignore it ("phase 1 is incomplete"), and then the retransmission brings it.
            larval.wait_for("child")
            _wait_installed(charon)
            result = topo.b.ping(count=5)
        else:
            larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"],
                                 start_action="none", version=1, aggressive=True)  # fmt: skip
            charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1,
                                 aggressive=True)  # fmt: skip
            charon.initiate()
            result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        assert "ESTABLISHED, IKEv1" in charon.list_sas()


def _wait_installed(charon: Charon, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while "INSTALLED" not in (listing := charon.list_sas()):
        if time.monotonic() > deadline:
            pytest.fail(f"charon installed no CHILD_SA within {timeout}s:\n{listing}")
        time.sleep(0.2)
