"""IKEv1 against strongSwan's charon: Main Mode and Quick Mode with a PSK, with and without
PFS, and Aggressive Mode, larval as initiator (through a trap policy) and as responder; ping
through the tunnel. ike-scan's probes against larval while it serves charon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.harness import OUTER, Charon, Topology, needs_charon, needs_netns, pinger, spis

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
            # The first packet triggers ACQUIRE -> Main Mode -> Quick Mode, and is held
            # meanwhile; it must arrive too, although charon's kernel-libipsec holds no
            # early ESP: larval lets it go only once QM3 has had time to reach charon.
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
@pytest.mark.parametrize("esp", ["aes128-sha256", "aes128-sha256-modp2048"], ids=["no-pfs", "pfs"])
def test_aggressive_mode(tmp_path: Path, role: str, esp: str) -> None:
    with Topology(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1,
                                 aggressive=True)  # fmt: skip
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp],
                                 start_action="trap", version=1, aggressive=True)  # fmt: skip
            # The first packet triggers Aggressive Mode, then Quick Mode: QM1 leaves a round
            # trip after AM3 (charon's workers could take one sent right behind AM3 first,
            # and drop it: "phase 1 is incomplete"), and the first packet a round trip
            # after QM3. It must arrive.
            result = topo.b.ping(count=5)
        else:
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp],
                                 start_action="none", version=1, aggressive=True)  # fmt: skip
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1,
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


#: ike-scan's custom transform for aes128-sha256-modp2048 with a PSK (RFC 2409 App. A
#: attribute classes: 1 encryption 7 AES, 14 key length, 2 hash 4 SHA2-256, 3 auth 1 PSK,
#: 4 group 14).
SCAN_TRANSFORM = "--trans=(1=7,14=128,2=4,3=1,4=14)"


@pytest.mark.skipif(shutil.which("ike-scan") is None, reason="needs ike-scan")
def test_ike_scan_probes_get_answers_while_the_tunnel_carries_traffic(tmp_path: Path) -> None:
    """Main and Aggressive Mode probes from a random source port: each gets a handshake or
    the right notify, and charon's tunnel through larval loses nothing meanwhile."""
    with Topology(tmp_path) as topo:
        larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"], start_action="none",
                             version=1)  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1)
        charon.initiate()
        pinging = pinger(topo.a, 25)

        def scan(*args: str) -> str:
            proc = subprocess.run(
                ["ip", "netns", "exec", topo.a.ns.name, "ike-scan", "--sport=0", "-r", "2",
                 *args, OUTER["b"]],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        try:
            # ike-scan's default offer (DES/3DES, MD5/SHA1, groups 1 and 2): nothing larval
            # accepts.
            assert "Notify message 14 (NO-PROPOSAL-CHOSEN)" in scan()
            handshake = scan(SCAN_TRANSFORM)
            assert "Main Mode Handshake returned" in handshake, handshake
            assert "Enc=AES KeyLength=128 Hash=SHA2-256 Auth=PSK Group=14:modp2048" in handshake
            assert "(Dead Peer Detection v1.0)" in handshake and "(RFC 3947 NAT-T)" in handshake
            # Aggressive Mode with an identity the connection does not expect: refused
            # before any HASH_R, so there is nothing to crack offline.
            refused = scan("-A", "--id=scanner@example.net", SCAN_TRANSFORM)
            assert "Notify message 18 (INVALID-ID-INFORMATION)" in refused, refused
            assert "Aggressive Mode Handshake returned" not in refused
            assert "Notify message 14 (NO-PROPOSAL-CHOSEN)" in scan("-A", "--id=scanner")
            # An IKEv2 probe: the connection is IKEv1 only, which NO_PROPOSAL_CHOSEN says.
            v2 = scan("--ikev2")
            assert "Notify message 14" in v2 and "PROPOSAL" in v2, v2
        finally:
            out, _ = pinging.communicate(timeout=30)
        assert " 0% packet loss" in out, (out, larval.log.read_text()[-4000:])
        listing = charon.list_sas()
        assert listing.count("ESTABLISHED, IKEv1") == 1, listing


@pytest.mark.parametrize(
    ("larval_role", "rekeyer"),
    [("initiator", "larval"), ("responder", "larval")],
)
def test_quick_mode_renewal_while_ping_flows(tmp_path: Path, larval_role: str,
                                             rekeyer: str) -> None:  # fmt: skip
    """larval renews the CHILD_SA with a new Quick Mode at its soft lifetime, as the Main
    Mode initiator and as its responder; no ping lost. (With a rekey_time of seconds,
    charon lets an IKEv1 CHILD_SA expire and deletes it instead of renewing it.)"""
    with Topology(tmp_path) as topo:
        rekey, life = ("6s", "12s") if rekeyer == "larval" else ("1h", "66m")
        start = "trap" if larval_role == "initiator" else "none"
        larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"], start_action=start,
                             version=1, rekey=rekey, life=life)  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1,
                             rekey="6s" if rekeyer == "charon" else "1h")  # fmt: skip
        if larval_role == "initiator":
            topo.b.ping(count=1)
            larval.wait_for("child")
            _wait_installed(charon)
        else:
            charon.initiate()
        before = spis(charon.list_sas())
        pinging = pinger(topo.a, 60)
        out, _ = pinging.communicate(timeout=60)
        listing = charon.list_sas()
        assert " 0% packet loss" in out, (out, larval.log.read_text()[-4000:], listing)
        after = spis(listing)
        assert after and after != before, (before, after, larval.log.read_text()[-4000:])
        assert "CHILD_SA net failed" not in larval.log.read_text()


def _isakmp_spis(listing: str) -> set[str]:
    """The initiator cookies of charon's established IKEv1 SAs."""
    return set(re.findall(r"ESTABLISHED, IKEv1, ([0-9a-f]{16})_i", listing))


@pytest.mark.parametrize(
    ("larval_role", "reauthenticator"),
    [("initiator", "larval"), ("responder", "larval"), ("responder", "charon"),
     ("initiator", "charon")],
)  # fmt: skip
def test_isakmp_sa_reauthentication_while_ping_flows(tmp_path: Path, larval_role: str,
                                                     reauthenticator: str) -> None:  # fmt: skip
    """A new Main Mode replaces the ISAKMP SA at the reauthenticating end's rekey_time; both
    ends move the CHILD_SA to it (its IPsec SAs stay) and delete the old one: no ping lost."""
    with Topology(tmp_path) as topo:
        rekey = {"larval": "4h", "charon": "4h", reauthenticator: "15s"}
        start = "trap" if larval_role == "initiator" else "none"
        larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"], start_action=start,
                             version=1, ike_rekey=rekey["larval"])  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1,
                             ike_rekey=rekey["charon"])  # fmt: skip
        if larval_role == "initiator":
            topo.b.ping(count=1)
            larval.wait_for("child")
            _wait_installed(charon)
        else:
            charon.initiate()
            larval.wait_for("child")
        before = charon.list_sas()
        pinging = pinger(topo.a, 135)  # 27 s: one reauthentication at 13.5-15 s, and 10 s more
        out, _ = pinging.communicate(timeout=60)
        listing = charon.list_sas()
        log = larval.log.read_text()
        assert " 0% packet loss" in out, (out, log[-4000:], listing)
        assert "takes over 1 CHILD_SA(s)" in log, log[-4000:]
        assert _isakmp_spis(listing) and not _isakmp_spis(listing) & _isakmp_spis(before), (
            before, listing)  # fmt: skip
        assert spis(listing) == spis(before), (before, listing)  # the same IPsec SAs
        status = larval.status()
        established = [s for s in status["ike_sas"] if s["state"] == "established"]  # type: ignore[index]
        assert established and {s["spi_i"] for s in established} <= _isakmp_spis(listing)  # type: ignore[index]
        assert len(status["child_sas"]) == 1  # type: ignore[arg-type]
        assert "CHILD_SA net deleted" not in log
        table = subprocess.run(
            [sys.executable, "-m", "larval", "status", "--control-socket",
             str(topo.b.dir / "control")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        if reauthenticator == "larval":
            assert all(0 <= s["rekey_in_s"] <= 15 for s in established), status  # type: ignore[index]
            assert "reauthenticating in" in table, table


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_charon_sends_fragments_to_larval(tmp_path: Path, role: str) -> None:
    """larval announces IKEv1 fragmentation; charon, told to keep its IKE datagrams under
    200 bytes, sends its longer messages as fragments, which larval puts back together."""
    with Topology(tmp_path) as topo:
        esp = "aes128-sha256-modp2048"
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1, fragment_size=200)
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp], start_action="trap",
                                 version=1)  # fmt: skip
            topo.b.ping(count=1)
            larval.wait_for("child")
            _wait_installed(charon)
        else:
            larval = topo.larval(topo.b, proposals=[IKE], esp=[esp], start_action="none",
                                 version=1)  # fmt: skip
            charon = topo.charon(topo.a, proposals=IKE, esp=esp, version=1, fragment_size=200)
            charon.initiate()
        result = topo.a.ping(count=5)
        log = larval.log.read_text()
        assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:], charon.log_tail())
        charon_log = (charon.dir / "charon.log").read_text()
        assert "received FRAGMENTATION vendor ID" in charon_log, charon_log[-4000:]
        assert "splitting IKE message" in charon_log, charon_log[-4000:]
        assert "reassembled a message" in log, log[-4000:]


@pytest.mark.parametrize("charon_version", [1, 2])
def test_version_0_answers_charon_in_either_version(tmp_path: Path, charon_version: int) -> None:
    """larval with `version = 0` answers charon's IKEv1 Main Mode and its IKEv2 alike."""
    proposals = IKE if charon_version == 1 else "aes128-sha256-x25519"
    with Topology(tmp_path) as topo:
        larval = topo.larval(topo.b, proposals=[proposals], esp=["aes128-sha256"],
                             start_action="none", version=0)  # fmt: skip
        charon = topo.charon(topo.a, proposals=proposals, esp="aes128-sha256",
                             version=charon_version)  # fmt: skip
        charon.initiate()
        result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        assert f"ESTABLISHED, IKEv{charon_version}" in charon.list_sas()
        (ike,) = larval.status()["ike_sas"]  # type: ignore[misc]
        assert ike["version"] == charon_version  # type: ignore[index]


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_several_proposals_where_the_last_matches(tmp_path: Path, role: str) -> None:
    """larval lists Phase 1 and ESP proposals charon does not take before the ones it does;
    as initiator it offers them all (charon picks the last), as responder it picks the one
    charon offered."""
    ike = ["aes256-sha384-modp3072", "aes192-sha256-modp2048", IKE]
    esp = ["aes256gcm16-modp3072", "aes256gcm16", "aes128-sha256"]
    with Topology(tmp_path) as topo:
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1)
            larval = topo.larval(topo.b, proposals=ike, esp=esp, start_action="trap", version=1)
            topo.b.ping(count=1)
            larval.wait_for("child")
            _wait_installed(charon)
        else:
            larval = topo.larval(topo.b, proposals=ike, esp=esp, start_action="none", version=1)
            charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1)
            charon.initiate()
        result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        listing = charon.list_sas()
        assert "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048" in listing, listing
        assert "AES_CBC-128/HMAC_SHA2_256_128" in listing.split("net:")[1], listing


@pytest.mark.parametrize("prober", ["larval", "charon"])
def test_dpd_then_a_vanished_charon(tmp_path: Path, prober: str) -> None:
    """The end with DPD asks R-U-THERE after 2 s of quiet and the other answers; the SA
    stays. Then charon is killed, and larval's unanswered R-U-THEREs close the ISAKMP SA
    and its IPsec SAs."""
    with Topology(tmp_path) as topo:
        larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"], start_action="none",
                             version=1, dpd="2s" if prober == "larval" else "0s",
                             retransmit=1.0)  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1,
                             dpd="2s" if prober == "charon" else "0")  # fmt: skip
        charon.initiate()
        larval.wait_for("child")
        time.sleep(7)  # quiet: R-U-THERE, answered, more than once
        log = larval.log.read_text()
        sent = "N(R_U_THERE)" if prober == "larval" else "N(R_U_THERE_ACK)"
        assert log.count(f"sending INFORMATIONAL [ HASH {sent} ]") >= 2, log[-3000:]
        assert "peer is dead" not in log
        assert "ESTABLISHED, IKEv1" in charon.list_sas()
        assert [s["state"] for s in larval.status()["ike_sas"]] == ["established"]  # type: ignore[union-attr, index]
        if prober == "larval":
            charon.proc.kill()  # type: ignore[union-attr]  # vanishes without a DELETE
            larval.wait_for("none", timeout=30)
            assert "peer is dead" in larval.log.read_text()


def test_charon_restarted_without_a_delete_makes_initial_contact(tmp_path: Path) -> None:
    """charon dies without a DELETE and comes back: its new Main Mode carries
    INITIAL-CONTACT, and larval deletes what it still had with the old charon."""
    with Topology(tmp_path) as topo:
        larval = topo.larval(topo.b, proposals=[IKE], esp=["aes128-sha256"], start_action="none",
                             version=1)  # fmt: skip
        charon = topo.charon(topo.a, proposals=IKE, esp="aes128-sha256", version=1)
        charon.initiate()
        old = larval.wait_for("child")
        charon.proc.kill()  # type: ignore[union-attr]
        charon.proc.wait()  # type: ignore[union-attr]
        charon.start()
        charon.initiate()
        result = topo.a.ping(count=5)
        log = larval.log.read_text()
        assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:])
        assert "INITIAL-CONTACT on" in log, log[-4000:]
        status = larval.status()
        assert len(status["ike_sas"]) == 1 and len(status["child_sas"]) == 1, status  # type: ignore[arg-type]
        assert status["child_sas"] != old["child_sas"]
