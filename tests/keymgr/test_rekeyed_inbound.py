"""A renewed CHILD_SA's DELETE takes its outbound SA at once and its inbound SA
`REKEYED_INBOUND_DELAY` later (RFC 7296 §2.8, as charon's delete_rekeyed_delay): the
peer switched to the new CHILD_SA before the DELETE, and ESP it sent on the old one just
before may still be on its way. Two key managers joined to their stacks by PF_KEY bytes,
IKE carried in memory, time driven by the test; each end is checked as the rekey's
initiator (A) and as its responder (B), and IKEv1's renewal by a newer Quick Mode."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from larval.commands.daemon import print_status
from larval.daemon.ike_daemon import IkeDaemon
from larval.keymgr.manager import REKEYED_INBOUND_DELAY
from tests.keymgr.test_manager import Host, advance, carry, udp_packet

A_NET, B_NET = "198.51.100.7", "203.0.113.9"


def spis(host: Host) -> set[int]:
    """The SPIs of every SA in the host's stack."""
    return {sa.spi for sa in host.stack.sadb.all_sas()}


def sends(host: Host, src: str, dst: str, now: float) -> bytes:
    """The ESP packet the host's stack makes of one packet from `src` to `dst`."""
    host.path.outbound(udp_packet(src, dst), now)
    return host.esp[-1].payload


def arrives(host: Host, esp: bytes, now: float) -> bool:
    """Is the ESP packet opened and delivered by the host's stack?"""
    delivered = len(host.delivered)
    host.path.inbound(esp, host.addr.packed, now)
    return len(host.delivered) == delivered + 1


def up(version: int = 2) -> tuple[Host, Host, dict[str, str]]:
    """A and B with one CHILD_SA (A's trap); A's CHILD_SA as its status shows it."""
    a = Host("a", "b", "trap", version=version, child_rekey="100s")
    b = Host("b", "a", "none", version=version)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet(A_NET, B_NET), 0.0)
    carry(a, b, 0.0)
    (child,) = a.keymgr.status()["child_sas"]
    return a, b, child


def rekey(a: Host, b: Host, now: float) -> None:
    """A's soft lifetime runs out: CREATE_CHILD_SA { N(REKEY_SA), ... } -->  <-- { ... },
    then INFORMATIONAL { D(old) } -->  <-- { D(old) } (IKEv1: a new Quick Mode)."""
    a.stack.age(now)
    carry(a, b, now)


def test_both_ends_keep_the_old_inbound_sa_after_the_delete_of_a_rekeyed_child_sa() -> None:
    a, b, old = up()
    a_old_in, b_old_in = int(old["spi_in"], 16), int(old["spi_out"], 16)
    now = 101.0  # past A's soft lifetime (rekey_time less its jitter)
    # Sent on the old CHILD_SA just before each end switched to the new one: in flight.
    from_a = sends(a, A_NET, B_NET, now)
    from_b = sends(b, B_NET, A_NET, now)
    assert from_a[:4] == b_old_in.to_bytes(4, "big")
    rekey(a, b, now)
    (new,) = a.keymgr.status()["child_sas"]
    assert new["spi_in"] != old["spi_in"] and len(b.keymgr.status()["child_sas"]) == 1
    # The old outbound SAs are gone, the old inbound ones still there.
    assert a_old_in in spis(a) and b_old_in not in spis(a)
    assert b_old_in in spis(b) and a_old_in not in spis(b)
    assert arrives(b, from_a, now) and arrives(a, from_b, now)
    assert sends(a, A_NET, B_NET, now)[:4] == int(new["spi_out"], 16).to_bytes(4, "big")
    # Each status shows its kept inbound SA and when it goes.
    for host, spi in ((a, a_old_in), (b, b_old_in)):
        (kept,) = host.keymgr.status()["rekeyed_inbound"]
        assert kept["spi_in"] == f"{spi:08x}" and kept["name"] == old["name"]
        assert kept["local"] == str(host.addr) and kept["delete_at"] == now + REKEYED_INBOUND_DELAY
        # The daemon's answer adds what the SA carried (the packet in flight, 1 each).
        daemon = SimpleNamespace(keymgr=host.keymgr, stack=host.stack, _status=lambda _: {})
        (shown,) = IkeDaemon._ike_status(daemon, {})["rekeyed_inbound"]  # type: ignore[arg-type]
        assert shown["packets_in"] == 1 and shown["bytes_in"] > 0 and "delete_at" not in shown
    # Kept for REKEYED_INBOUND_DELAY, then deleted by the key managers' timers.
    advance(a, b, now, now + REKEYED_INBOUND_DELAY - 0.5)
    assert a_old_in in spis(a) and b_old_in in spis(b)
    advance(a, b, now, now + REKEYED_INBOUND_DELAY)
    assert a_old_in not in spis(a) and b_old_in not in spis(b)
    assert a.keymgr.status()["rekeyed_inbound"] == b.keymgr.status()["rekeyed_inbound"] == []
    assert not arrives(b, from_a, now + REKEYED_INBOUND_DELAY)
    assert b.path.drops["unknown_spi"] == 1
    # Only the new CHILD_SA's two SAs are left in each stack.
    assert spis(a) == spis(b) == {int(new["spi_in"], 16), int(new["spi_out"], 16)}


def test_the_kept_inbound_sas_go_with_the_ike_sa() -> None:
    """The IKE SA is deleted within the delay: nothing carries on with the peer, and the
    kept inbound SAs go with it at once (as charon destroys them with the IKE SA)."""
    a, b, _ = up()
    rekey(a, b, 101.0)
    assert len(a.stack.sadb) == len(b.stack.sadb) == 3  # the new pair, the old inbound
    a.keymgr.down("s2s", 102.0)
    carry(a, b, 102.0)  # INFORMATIONAL { D(IKE) } -->  <-- { }
    for host in (a, b):
        assert host.keymgr.sessions == {} and len(host.stack.sadb) == 0


def test_shutdown_deletes_the_kept_inbound_sas() -> None:
    a, b, _ = up()
    rekey(a, b, 101.0)
    a.keymgr.shutdown(102.0)
    assert len(a.stack.sadb) == 2  # the new CHILD_SA's: its D(IKE) is not answered yet
    carry(a, b, 102.0)
    assert len(a.stack.sadb) == 0 and len(b.stack.sadb) == 0


def test_ikev1_a_renewed_child_sa_keeps_its_inbound_sa_after_its_delete() -> None:
    """IKEv1: a newer Quick Mode renewed the CHILD_SA; the old SAs run on to their hard
    lifetime, where A's stack ends them and A sends D(ESP): B deletes its old outbound SA
    at once and its old inbound one after the delay."""
    a, b, old = up(version=1)
    a_old_in, b_old_in = int(old["spi_in"], 16), int(old["spi_out"], 16)
    sa = a.stack.sadb.lookup_esp(a_old_in, a.addr.packed)
    assert sa is not None and sa.soft is not None and sa.hard is not None
    renewed = float(sa.soft.addtime + 1)
    rekey(a, b, renewed)  # a new Quick Mode; the old SAs live on
    now = float(sa.hard.addtime + 1)
    advance(a, b, renewed, now - 2)  # the new outbound SAs are added a round trip later
    from_a = sends(a, A_NET, B_NET, now - 2)
    assert from_a[:4] != b_old_in.to_bytes(4, "big")  # A sends on the new SAs
    rekey(a, b, now)  # A's hard EXPIRE:  INFORMATIONAL { D(ESP, old) } -->
    assert len(a.keymgr.status()["child_sas"]) == len(b.keymgr.status()["child_sas"]) == 1
    assert a_old_in not in spis(a) and b_old_in not in spis(a)  # A's stack ended them
    assert b_old_in in spis(b) and a_old_in not in spis(b)
    advance(a, b, now, now + REKEYED_INBOUND_DELAY)
    assert b_old_in not in spis(b)
    assert len(a.stack.sadb) == len(b.stack.sadb) == 2


def test_status_prints_the_kept_inbound_sa(capsys: pytest.CaptureFixture[str]) -> None:
    """`larval status` names a kept inbound SA, when it goes and what it carried."""
    kept = {
        "connection": "s2s",
        "name": "net",
        "spi_in": "c0ffee01",
        "local": "192.0.2.1",
        "remote": "192.0.2.2",
        "deleted_in_s": 4,
        "bytes_in": 1300,
        "packets_in": 1,
    }
    print_status({"ike_sas": [], "child_sas": [], "rekeyed_inbound": [kept]})
    out = capsys.readouterr().out
    assert "s2s/net: inbound SA c0ffee01 of a rekeyed CHILD_SA" in out
    assert "deleted in 4 s, 1300 bytes / 1 packets in" in out
