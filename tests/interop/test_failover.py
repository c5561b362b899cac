"""Failover between two larval gateways on etcd, with charon as the client of their virtual
address (`tests.interop.failover_rig`): the owner is killed, stopped past its lease, cut
off by its link or from etcd alone; the etcd leader is killed; a CHILD_SA is rekeyed across
a failover. Each case passes the same checks (`_evidence`), from charon and from a capture
of every frame on the bridge: the same IKE SA at charon (and the same CHILD_SA unless
rekeyed), no IKE_SA_INIT but the first, no (SPI, ESP sequence number) twice and the new
owner's sequence numbers above every one the old sent, nothing from the old owner once the
new one sends, IKE answered by the new owner, and the numbered echoes lost for no longer
than the lease TTL and a second."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from larval.bench.charon import Charon
from larval.net.control import ControlError, control_request
from tests.ha.members import needs_etcd
from tests.interop.failover_evidence import (
    EspPacket,
    IkePacket,
    LossWindow,
    duplicate_sequences,
    ike_sa_inits,
    loss_window,
    read_capture,
    sent_after,
)
from tests.interop.failover_rig import FailoverRig, Gateway, Traffic
from tests.interop.harness import needs_charon, needs_netns, spis

pytestmark = [needs_netns, needs_charon, needs_etcd]

CREATE_CHILD_SA = 36  # RFC 7296 §3.1
INFORMATIONAL = 37
#: charon's dpd_delay, in seconds (`FailoverRig.client`'s default).
DPD_DELAY = 2


@dataclass
class Running:
    charon: Charon
    traffic: Traffic
    before: str  # charon's --list-sas with the tunnel up
    epoch: int  # gw1's


def _ha(gw: Gateway) -> dict[str, Any]:
    return control_request(str(gw.dir / "control"), {"op": "ha.status"}, timeout=2)


def _wait_role(gw: Gateway, role: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = _ha(gw)
        except ControlError:
            status = {}
        if status.get("role") == role:
            return status
        time.sleep(0.1)
    assert gw.daemon is not None
    pytest.fail(f"{gw.name} not {role} within {timeout} s ({status}):\n"
                f"{gw.daemon.log.read_text(errors='replace')[-4000:]}")  # fmt: skip


#: An IKE SA in charon's --list-sas: its initiator and responder SPIs.
IKE_SA_LISTED = re.compile(r"IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r")


def _ike_spis(listing: str) -> str:
    m = IKE_SA_LISTED.search(listing)
    return m.group(0) if m else ""


def _ike_sa(listing: str) -> tuple[str, str]:
    """The IKE SA's initiator and responder SPIs in charon's `listing`, as 16 hex digits."""
    m = IKE_SA_LISTED.search(listing)
    assert m, listing
    return m.group(1), m.group(2)


def _answers_liveness(run: Running, new: Gateway) -> None:
    """`new` holds charon's IKE SA (`larval status`) and answers the liveness check charon
    is made to send. charon sends one only after `DPD_DELAY` with nothing coming in, IKE or
    ESP: while the echoes flow, a takeover that leaves the tunnel quiet for less than that
    (the owner cut off from etcd lets the address go a margin before its lease lapses, not
    a lease after) gets none. With the traffic stopped the tunnel is quiet, and charon's
    DPD request must come, and its answer, within a few delays."""
    spi_i, spi_r = _ike_sa(run.before)
    ike_sas = control_request(str(new.dir / "control"), {"op": "ike.status"}, timeout=2)
    held = [(sa["spi_i"], sa["spi_r"], sa["state"]) for sa in ike_sas["ike_sas"]]
    assert (spi_i, spi_r, "established") in held, (new.name, held)
    log = run.charon.dir / "charon.log"
    answers = log.read_text(errors="replace").count("parsed INFORMATIONAL response")
    deadline = time.monotonic() + 3 * DPD_DELAY + 2
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("parsed INFORMATIONAL response") > answers:
            return
        time.sleep(0.2)
    assert new.daemon is not None
    pytest.fail(f"charon's liveness check not answered by {new.name}:\n"
                f"{log.read_text(errors='replace')[-3000:]}\n--- {new.name}:\n"
                f"{new.daemon.log.read_text(errors='replace')[-3000:]}")  # fmt: skip


def _up(rig: FailoverRig, *, rekey: str = "1h") -> Running:
    """gw1 the owner, gw2 its standby, charon's tunnel to the virtual address up, and the
    numbered echoes going for two seconds."""
    gw1, gw2 = rig.gateways
    gw1.start(rig.gateway_config(gw1))
    epoch = int(_wait_role(gw1, "owner", 20)["epoch"])
    gw2.start(rig.gateway_config(gw2))
    _wait_role(gw2, "standby", 20)
    assert gw1.has_vip() and not gw2.has_vip()
    charon = rig.client(rekey=rekey)
    charon.initiate()
    assert gw1.daemon is not None
    gw1.daemon.wait_for("child")
    before = charon.list_sas()
    assert _ike_spis(before) and spis(before), before
    traffic = rig.start_traffic()
    time.sleep(2)
    return Running(charon, traffic, before, epoch)


def _evidence(
    rig: FailoverRig, run: Running, old: Gateway, new: Gateway | None, *, rekeyed: bool = False
) -> tuple[list[EspPacket], list[IkePacket], LossWindow]:
    """The checks every case passes; `new` None: no failover happened. What was captured,
    and the echoes' loss window."""
    result = run.traffic.stop()
    after = run.charon.list_sas()
    assert _ike_spis(after) == _ike_spis(run.before), (run.before, after)
    assert "ESTABLISHED" in after and "INSTALLED" in after, after
    if not rekeyed:
        assert spis(after) == spis(run.before), (run.before, after)
    window = loss_window(result.sent, result.echoed, result.interval)
    assert window.seconds <= rig.lease_ttl + 1, window
    # The tunnel carries the echoes again at the end.
    last = max(result.sent)
    assert all(n in result.echoed for n in range(last - 100, last + 1)), window
    if new is not None:
        _answers_liveness(run, new)
    log = (run.charon.dir / "charon.log").read_text(errors="replace")
    assert "INVALID_MESSAGE_ID" not in log, log[-3000:]

    esp, ike = read_capture(rig.capture.stop())
    assert duplicate_sequences(esp) == {}
    assert len(ike_sa_inits(ike)) == 1, [p for p in ike if p.exchange == 34]
    if new is None:
        return esp, ike, window
    from_new = [p for p in esp if p.mac == new.mac]
    ike_from_new = [p for p in ike if p.mac == new.mac]
    assert from_new, "the new owner sent no ESP"
    # Its IKE answers charon's liveness check in the IKE SA the old owner made: it goes on there.
    ike_sa = _ike_sa(run.before)
    assert any(p.exchange == INFORMATIONAL and p.response and (p.spi_i, p.spi_r) == ike_sa
               for p in ike_from_new), ike_from_new  # fmt: skip
    began = min(p.time for p in [*from_new, *ike_from_new])
    late = sent_after(esp, ike, old.mac, began)
    assert late == [], f"{old.name} sent after {new.name} took over: {late[:5]}"
    # Under each SPI both sent on, the new owner's numbers are above the old one's.
    for spi in {p.spi for p in from_new}:
        old_seqs = [p.seq for p in esp if p.spi == spi and p.mac == old.mac]
        new_seqs = [p.seq for p in from_new if p.spi == spi]
        if old_seqs:
            assert min(new_seqs) > max(old_seqs), (hex(spi), max(old_seqs), min(new_seqs))
    return esp, ike, window


def _ha_lines(gw: Gateway) -> str:
    """What `gw`'s larval said of its group: elections, takeovers, fences."""
    assert gw.daemon is not None
    text = gw.daemon.log.read_text(errors="replace")
    return "\n".join(line for line in text.splitlines() if "larval.ha" in line or "fenced" in line)


def _takes_over(rig: FailoverRig, gw: Gateway) -> dict[str, Any]:
    status = _wait_role(gw, "owner", rig.lease_ttl + 10)
    assert gw.has_vip()
    return status


def test_kill_9_of_the_owner(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        run = _up(rig)
        gw1.kill()
        status = _takes_over(rig, gw2)
        assert int(status["epoch"]) > run.epoch
        time.sleep(3)
        _evidence(rig, run, gw1, gw2)


def test_sigstop_of_the_owner_past_its_lease_then_sigcont(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        run = _up(rig)
        gw1.pause()
        _takes_over(rig, gw2)
        time.sleep(1)
        gw1.resume()
        time.sleep(3)
        # Resumed, it finds its deadline passed: fenced before it sends, address dropped.
        status = _wait_role(gw1, "standby", 10)
        assert status["ike_sent_since_fenced"] == 0, status
        assert not gw1.has_vip()
        esp, ike, _ = _evidence(rig, run, gw1, gw2)
        stopped = gw1.events["paused"] + 0.05
        assert sent_after(esp, ike, gw1.mac, stopped) == []


def test_the_owner_link_down(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        run = _up(rig)
        gw1.link(False)
        _takes_over(rig, gw2)
        time.sleep(1)
        # Fenced before its lease could lapse, it let the address go: back on the
        # bridge, it does not answer for it, and stays silent.
        assert not gw1.has_vip(), f"{_ha_lines(gw1)}\n--- gw2:\n{_ha_lines(gw2)}"
        gw1.link(True)
        time.sleep(2)
        _wait_role(gw1, "standby", 10)
        _evidence(rig, run, gw1, gw2)


def test_the_owner_cut_off_from_etcd_only(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        run = _up(rig)
        gw1.cut_from_etcd()
        _takes_over(rig, gw2)
        # The client still reaches gw1, which must have let the address go before its
        # lease could lapse: before gw2 could win the group.
        assert not gw1.has_vip(), f"{_ha_lines(gw1)}\n--- gw2:\n{_ha_lines(gw2)}"
        time.sleep(3)
        _evidence(rig, run, gw1, gw2)


def test_the_etcd_leader_killed_changes_no_owner(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        run = _up(rig)
        owner = rig.etcd.owner()
        assert owner == ("gw1", run.epoch), owner
        killed = rig.etcd.kill_leader()
        assert rig.etcd.wait_for_leader(5) not in (None, killed)
        time.sleep(rig.lease_ttl + 1)  # more than a lease: any false failover would be done
        assert rig.etcd.owner() == owner
        status = _ha(gw1)
        assert (status["role"], int(status["epoch"])) == ("owner", run.epoch), status
        assert _ha(gw2)["role"] == "standby"
        esp, ike, window = _evidence(rig, run, gw1, None)
        assert sent_after(esp, ike, gw2.mac, 0) == []
        assert window.lost == 0, window  # the tunnel never waited on etcd


def test_a_child_sa_rekey_across_the_failover(tmp_path: Path) -> None:
    with FailoverRig(tmp_path) as rig:
        gw1, gw2 = rig.gateways
        # charon rekeys the CHILD_SA some 14 s after it is made: after the takeover.
        run = _up(rig, rekey="15s")
        gw1.kill()
        _takes_over(rig, gw2)
        deadline = time.monotonic() + 20
        while spis(run.charon.list_sas()) & spis(run.before) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        esp, ike, _ = _evidence(rig, run, gw1, gw2, rekeyed=True)
        after = run.charon.list_sas()
        assert not spis(after) & spis(run.before), (run.before, after)
        # The rekey was answered by gw2, in the IKE SA gw1 made.
        assert any(p.exchange == CREATE_CHILD_SA and p.response and p.mac == gw2.mac
                   for p in ike), ike  # fmt: skip
        # ESP goes on under the new CHILD_SA's SPIs, sent by gw2.
        new_spis = {int(s, 16) for s in spis(after)}
        assert any(p.spi in new_spis and p.mac == gw2.mac for p in esp)
