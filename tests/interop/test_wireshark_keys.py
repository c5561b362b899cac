"""Wireshark reads larval's key tables: charon initiates to larval (with ``[daemon]
save_keys``) in namespaces, a capture on larval's link holds the exchange and a ping
through the tunnel, and tshark, given the tables of ``save_keys`` and then those of
`larval keys --wireshark`, decrypts the IKE_AUTH (its ID and AUTH payloads; in IKEv1
the ID payloads of Main Mode's last two messages) and the ESP that carries the ping
(ICMP echo inside). Without the tables it decrypts neither, so what is checked is the
tables' doing. The files are 0600, the directories 0700, and larval's log at DEBUG holds
none of the keys."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.harness import (
    OUTER,
    LarvalDaemon,
    Site,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="needs tshark (Debian tshark) to read captures"
)
pytestmark = [needs_netns, needs_charon, needs_tshark]

TABLES = ("ikev2_decryption_table", "ikev1_decryption_table", "esp_sa")
#: (IKE version, IKE proposal, ESP proposal): IKEv2 with CBC and HMAC for IKE and AES-GCM
#: for ESP, and the other way round; IKEv1 Main Mode with CBC and HMAC for both.
SUITES = {
    "v2-ike-cbc-esp-gcm": (2, "aes128-sha256-x25519", "aes128gcm16"),
    "v2-ike-gcm-esp-cbc": (2, "aes256gcm16-prfsha384-x25519", "aes256-sha384"),
    "v1-cbc": (1, "aes128-sha256-modp2048", "aes128-sha256"),
}
#: The exchange whose decrypted ID payloads are looked for: IKE_AUTH (RFC 7296 §1.2), or
#: Main Mode's fifth and sixth messages (RFC 2409 §5: HDR*, IDii, HASH_I).
AUTH_EXCHANGE = {2: "35", 1: "2"}


def _config(site: Site, save_keys: Path, version: int, ike: str, esp: str) -> str:
    text = larval_config(site, proposals=[ike], esp=[esp], start_action="none", version=version)
    return text.replace("[daemon]\n", f'[daemon]\nsave_keys = "{save_keys}"\n', 1)


def _wait_for_capture(capture: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not capture.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def _tshark(capture: Path, home: Path, keys: Path | None, fields: list[str]) -> list[str]:
    """tshark's fields of every packet of `capture`, with the tables of `keys` in its
    default profile (a configuration directory of its own, under `home`)."""
    profile = home / "wireshark"
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    if keys is not None:
        for name in TABLES:
            if (keys / name).exists():
                shutil.copy(keys / name, profile / name)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home))
    args = ["tshark", "-r", str(capture), "-o", "esp.enable_encryption_decode:TRUE",
            "-T", "fields", "-E", "separator=|"]  # fmt: skip
    for field in fields:
        args += ["-e", field]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "rror" not in done.stderr, done.stderr  # a line of a table it refused
    return [line for line in done.stdout.splitlines() if line.strip("|")]


def _decrypted(
    capture: Path, home: Path, keys: Path | None, version: int
) -> tuple[list[str], list[str]]:
    """(The authenticating exchange's messages with an ID payload decrypted: exchange
    type, the ID's address, the AUTH method (IKEv2); the ICMP types inside ESP)."""
    fields = ["isakmp.exchangetype", "isakmp.id.data.ipv4_addr", "isakmp.auth.method"]
    ike = _tshark(capture, home, keys, fields)
    auth = [line for line in ike
            if line.split("|")[0] == AUTH_EXCHANGE[version] and line.split("|")[1]]  # fmt: skip
    esp = _tshark(capture, home, keys, ["esp.spi", "icmp.type"])
    icmp = [line for line in esp if line.split("|")[0] and line.split("|")[-1]]
    return auth, icmp


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


@pytest.mark.parametrize("suite", list(SUITES))
def test_tshark_decrypts_ike_auth_and_esp_with_the_tables(tmp_path: Path, suite: str) -> None:
    version, ike, esp = SUITES[suite]
    saved, written, home = tmp_path / "saved", tmp_path / "written", tmp_path / "home"
    with Topology(tmp_path) as topo:
        larval = LarvalDaemon(topo.b, _config(topo.b, saved, version, ike, esp))
        topo.daemons.append(larval)
        larval.start()
        capture = topo.b.dir / "ike-esp.pcap"
        tshark = topo.b.ns.popen(["tshark", "-q", "-i", "any", "-w", str(capture),
                                  "udp port 500 or udp port 4500"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_for_capture(capture)
            charon = topo.charon(topo.a, proposals=ike, esp=esp, version=version)
            charon.initiate()
            larval.wait_for("child")
            ping = topo.a.ping(count=3)
            assert ping.returncode == 0, ping.stdout + ping.stderr
            done = subprocess.run(
                [sys.executable, "-m", "larval", "keys", "--wireshark", str(written),
                 "--control-socket", str(topo.b.dir / "control")],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            time.sleep(1)  # the last datagrams written out
        finally:
            tshark.terminate()
            tshark.wait(10)
        log = larval.log.read_text()

    # The tables as `larval keys` wrote them: one IKE SA, both ESP directions.
    lines = {name: (written / name).read_text().splitlines() for name in TABLES}
    table, other = (TABLES[0], TABLES[1]) if version == 2 else (TABLES[1], TABLES[0])
    assert len(lines[table]) == 1, lines
    assert lines[other] == []
    assert len(lines["esp_sa"]) == 2, lines
    assert {line.split(",")[1] for line in lines["esp_sa"]} == {
        f'"{OUTER["a"]}"',
        f'"{OUTER["b"]}"',
    }
    # save_keys appended the same lines as the SAs came up.
    for name in (table, "esp_sa"):
        assert sorted((saved / name).read_text().splitlines()) == sorted(lines[name])
    for directory in (saved, written):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        modes = _modes(directory)
        assert set(modes) >= {table, "esp_sa"}, modes
        assert set(modes.values()) == {0o600}, modes

    # Without keys tshark sees only ciphertext.
    assert _decrypted(capture, home, None, version) == ([], [])
    for keys in (saved, written):
        auth, icmp = _decrypted(capture, home, keys, version)
        # IKE_AUTH request and response (Main Mode's last two messages): each side's ID,
        # its outer address, and in IKEv2 AUTH with the shared key (RFC 7296 §3.8).
        assert len(auth) == 2, auth
        assert {a for line in auth for a in line.split("|")[1].split(",")} == set(OUTER.values()), (
            auth
        )
        for line in auth:
            assert line.split("|")[2] == ("2" if version == 2 else ""), line
        # Three echo requests (type 8) and three replies (type 0) decrypted from ESP.
        types = sorted(line.split("|")[-1] for line in icmp)
        assert types == ["0", "0", "0", "8", "8", "8"], icmp

    # The warning was logged; no key appears in the log at DEBUG.
    assert "daemon.save_keys: on" in log
    secrets = set()
    for line in lines["ikev2_decryption_table"]:
        fields = line.split(",")
        secrets |= {fields[2], fields[3], fields[5], fields[6]}
    for line in lines["ikev1_decryption_table"]:
        secrets.add(line.split(",")[1])
    for line in lines["esp_sa"]:
        fields = line.split(",")
        secrets |= {
            fields[5].strip('"').removeprefix("0x"),
            fields[7].strip('"').removeprefix("0x"),
        }
    secrets.discard("")
    assert secrets
    lowered = log.lower()
    for secret in secrets:
        assert secret not in lowered
        assert secret[:16] not in lowered
