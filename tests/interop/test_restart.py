"""larval killed with SIGKILL and started again with the same configuration comes back
as it was, from its state store (``[daemon] state``), in IKEv2 and IKEv1: charon, its
peer, sees the same IKE SA and CHILD_SA, no new IKE_SA_INIT (Main Mode), and its
liveness checks answered after the restart in sequence (no INVALID_MESSAGE_ID);
numbered datagrams go both ways over the CHILD_SA restored, and every ESP sequence
number larval sends after the restart is above every one it sent before (tshark)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from larval.bench.charon import Charon
from larval.net.control import control_request
from tests.interop.harness import (
    INNER,
    LarvalDaemon,
    Site,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
    spis,
)

pytestmark = [needs_netns, needs_charon]

SUITES = {
    2: ("aes128-sha256-x25519", "aes128gcm16"),
    1: ("aes128-sha256-modp2048", "aes128-sha256"),
}
#: What charon logs as it takes an answer to its liveness check, and as it opens an IKE SA.
ANSWERED = {2: r"parsed INFORMATIONAL response \d+", 1: r"parsed INFORMATIONAL_V1 .*N\(DPD_ACK\)"}
OPENED = {2: r"IKE_SA_INIT", 1: r"ID_PROT"}
PORT = 5001

#: Counts the datagrams it receives, each numbered by its sender; prints how many.
RECEIVER = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], {PORT}))
s.settimeout(float(sys.argv[2]))
seen = set()
try:
    while True:
        seen.add(int(s.recv(64)))
except OSError:
    pass
print(len(seen))
"""
SENDER = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for n in range(int(sys.argv[3])):
    s.sendto(str(n).encode(), (sys.argv[2], {PORT}))
    time.sleep(0.02)
"""


def _numbered(sender: Site, receiver: Site, count: int) -> int:
    """`count` numbered datagrams from the sender's inner address to the receiver's: how
    many arrived."""
    listen = receiver.ns.popen(
        [sys.executable, "-c", RECEIVER, INNER[receiver.name], "3"], stdout=subprocess.PIPE
    )
    time.sleep(0.5)
    sender.ns.run([sys.executable, "-c", SENDER, INNER[sender.name], INNER[receiver.name],
                   str(count)])  # fmt: skip
    out, _ = listen.communicate(timeout=30)
    return int(out or b"0")


def _ike_spis(listing: str) -> str:
    m = re.search(r"IKEv\d, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r", listing)
    return m.group(0) if m else ""


def _with_state(site: Site, **kw: object) -> str:
    text = larval_config(site, **kw)  # type: ignore[arg-type]
    return text.replace("[daemon]\n", f'[daemon]\nstate = "{site.dir / "state" / "state.db"}"\n', 1)


@pytest.mark.parametrize("version", [2, 1])
def test_kill_9_and_start_again_keeps_the_ike_and_child_sas(tmp_path: Path, version: int) -> None:
    ike, esp = SUITES[version]
    with Topology(tmp_path) as topo:
        config = _with_state(topo.b, proposals=[ike], esp=[esp], start_action="none",
                             version=version)  # fmt: skip
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        capture = topo.b.dir / "esp.pcap"
        tshark = topo.b.ns.popen(["tshark", "-q", "-i", "any", "-w", str(capture), "udp port 4500"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        charon = topo.charon(topo.a, proposals=ike, esp=esp, dpd="2", version=version)
        charon.initiate()
        larval.wait_for("child")
        assert _numbered(topo.a, topo.b, 50) == 50
        assert _numbered(topo.b, topo.a, 50) == 50
        before = charon.list_sas()
        ike_before, child_before = _ike_spis(before), spis(before)
        assert ike_before and child_before, before
        time.sleep(3)  # a liveness check of charon's, answered and written
        answered = _dpd_answered(charon, version)
        opened = len(re.findall(OPENED[version], _log(charon)))
        assert answered and opened, charon.log_tail(60)

        assert larval.proc is not None
        larval.proc.kill()  # SIGKILL: nothing is deleted, nothing is said
        larval.proc.wait()
        killed = time.time()
        larval.start()
        _wait_for_line(larval, "restored 1 IKE_SA(s) and 1 CHILD_SA(s)")

        time.sleep(7)  # charon's liveness checks, each with the next Message ID
        arrived = _numbered(topo.a, topo.b, 50)
        # larval's sequence numbers go on above every one it sent before the kill: charon's
        # replay window takes them (X_LARVAL_SEQ_STATE from the store).
        sent_back = _numbered(topo.b, topo.a, 50)
        after = charon.list_sas()
        assert _ike_spis(after) == ike_before, (before, after)
        assert spis(after) == child_before, (before, after)
        assert "ESTABLISHED" in after and "INSTALLED" in after, after
        assert arrived == 50, larval.log.read_text()[-3000:]
        assert sent_back == 50, (charon.list_sas(), larval.log.read_text()[-3000:])
        time.sleep(1)
        tshark.terminate()
        tshark.wait(10)
        sequences = _esp_sequences(capture, child_before)
        early = [seq for t, seq in sequences if t < killed]
        late = [seq for t, seq in sequences if t > killed]
        assert early and late and min(late) > max(early), (early, late)
        # Charon's liveness checks after the restart were answered, in sequence.
        assert _dpd_answered(charon, version) >= answered + 2, charon.log_tail(60)
        charon_log = _log(charon)
        assert "INVALID_MESSAGE_ID" not in charon_log, charon_log[-3000:]
        # No IKE_SA_INIT (Main Mode) after the kill: the IKE SA was not made again.
        assert len(re.findall(OPENED[version], charon_log)) == opened, charon_log[-3000:]
        # An exchange of larval's own after the restart: its DELETE is taken.
        control_request(str(topo.b.dir / "control"), {"op": "down", "target": "s2s"})
        larval.wait_for("none")
        deadline = time.monotonic() + 10
        while "ESTABLISHED" in charon.list_sas() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ESTABLISHED" not in charon.list_sas(), charon.log_tail(40)


def _esp_sequences(capture: Path, charon_spis: set[str]) -> list[tuple[float, int]]:
    """(time, ESP sequence number) of each ESP packet larval sent (to charon's inbound SPIs)."""
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-d", "udp.port==4500,udpencap", "-Y", "esp",
         "-T", "fields", "-e", "frame.time_epoch", "-e", "esp.spi", "-e", "esp.sequence"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    found = []
    for line in out.splitlines():
        when, spi, seq = line.split("\t")
        if f"{int(spi, 16):08x}" in charon_spis:
            found.append((float(when), int(seq)))
    return found


def _wait_for_line(larval: LarvalDaemon, text: str, timeout: float = 10) -> None:
    """Until `text` is in larval's log (the control socket is up before the key manager
    has restored what the store holds)."""
    deadline = time.monotonic() + timeout
    while text not in (log := larval.log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in larval's log:\n{log[-3000:]}")
        time.sleep(0.1)


def _log(charon: Charon) -> str:
    return (charon.dir / "charon.log").read_text(errors="replace")


def _dpd_answered(charon: Charon, version: int) -> int:
    """How many answers to its liveness checks charon has taken so far."""
    return len(re.findall(ANSWERED[version], _log(charon)))
