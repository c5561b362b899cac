"""larval against strongSwan's charon (kernel-libipsec), both ways: IKEv2 with a PSK over
several IKE and ESP proposals, then ping through the tunnel; and larval against larval.

charon's own view must agree: `swanctl --list-sas` shows the IKE_SA ESTABLISHED and the
CHILD_SA INSTALLED with the algorithms the case asked for."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from larval.bench.charon import CharonError
from tests.interop.harness import (
    NET,
    OUTER,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)

pytestmark = [needs_netns]

# (larval's words, charon's words, what swanctl prints for it)
IKE_CASES = [
    ("aes128-sha256-x25519", "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519"),
    ("aes256-sha384-ecp384", "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384"),
    ("aes128gcm16-prfsha256-ecp256", "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256"),
    ("chacha20poly1305-prfsha256-x25519", "CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519"),
    ("aes128-sha256-modp2048", "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"),
]
ESP_CASES = [
    ("aes128gcm16", "AES_GCM_16-128"),
    ("aes256gcm16", "AES_GCM_16-256"),
    ("aes128-sha256", "AES_CBC-128/HMAC_SHA2_256_128"),
    ("chacha20poly1305", "CHACHA20_POLY1305"),
]


def _established(listing: str, ike_text: str, esp_text: str) -> None:
    assert "ESTABLISHED" in listing, listing
    assert ike_text in listing, listing
    assert re.search(r"INSTALLED, TUNNEL-in-UDP, ESP:" + re.escape(esp_text), listing), listing


@needs_charon
@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize(("ike", "ike_text"), IKE_CASES, ids=[c[0] for c in IKE_CASES])
def test_ike_proposals(tmp_path: Path, role: str, ike: str, ike_text: str) -> None:
    _case(tmp_path, role, [ike], ike, ["aes128gcm16"], "aes128gcm16", ike_text, "AES_GCM_16-128")


@needs_charon
@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize(("esp", "esp_text"), ESP_CASES, ids=[c[0] for c in ESP_CASES])
def test_esp_proposals(tmp_path: Path, role: str, esp: str, esp_text: str) -> None:
    ike, ike_text = IKE_CASES[0]
    _case(tmp_path, role, [ike], ike, [esp], esp, ike_text, esp_text)


@needs_charon
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_only_the_second_entry_of_a_list_matches(tmp_path: Path, role: str) -> None:
    _case(
        tmp_path, role,
        ["aes256-sha512-ecp521", "aes128gcm16-prfsha256-ecp256"], "aes128gcm16-prfsha256-ecp256",
        ["chacha20poly1305", "aes128-sha256"], "aes128-sha256",
        "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256", "AES_CBC-128/HMAC_SHA2_256_128",
    )  # fmt: skip


def _case(
    tmp_path: Path,
    role: str,
    larval_ike: list[str],
    charon_ike: str,
    larval_esp: list[str],
    charon_esp: str,
    ike_text: str,
    esp_text: str,
) -> None:
    with Topology(tmp_path) as topo:
        # charon in a, larval in b.
        if role == "initiator":
            charon = topo.charon(topo.a, proposals=charon_ike, esp=charon_esp)
            larval = topo.larval(topo.b, proposals=larval_ike, esp=larval_esp,
                                 start_action="trap")  # fmt: skip
            # The very first packet triggers ACQUIRE -> IKE -> the held packet arrives.
            result = topo.b.ping(count=5)
        else:
            larval = topo.larval(topo.b, proposals=larval_ike, esp=larval_esp,
                                 start_action="none")  # fmt: skip
            charon = topo.charon(topo.a, proposals=charon_ike, esp=charon_esp)
            charon.initiate()
            result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        _established(charon.list_sas(), ike_text, esp_text)
        status = larval.wait_for("child")
        assert status["ike_sas"][0]["state"] == "established"  # type: ignore[index]


def test_larval_to_larval_first_packet_through_a_trap(tmp_path: Path) -> None:
    with Topology(tmp_path) as topo:
        a = topo.larval(topo.a, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                        start_action="trap")  # fmt: skip
        b = topo.larval(topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                        start_action="none")  # fmt: skip
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, a.log.read_text()[-3000:])
        sa, sb = a.wait_for("child"), b.wait_for("child")
        ca, cb = sa["child_sas"][0], sb["child_sas"][0]  # type: ignore[index]
        assert (ca["spi_in"], ca["spi_out"]) == (cb["spi_out"], cb["spi_in"])
        # DELETE from the responder's side takes the SAs away on both.
        topo.daemons[1].stop()
        a.wait_for("none")


def test_status_shows_the_sas_with_counts_and_rekey_times(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    with Topology(tmp_path) as topo:
        topo.larval(topo.a, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                    start_action="trap")  # fmt: skip
        topo.larval(topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                    start_action="none")  # fmt: skip
        assert " 0% packet loss" in topo.a.ping(count=3).stdout
        control = str(topo.a.dir / "control")
        out = subprocess.run(
            [sys.executable, "-m", "larval", "status", "--json", "--control-socket", control],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        status = json.loads(out)
        (ike,) = status["ike_sas"]
        (child,) = status["child_sas"]
        assert ike["state"] == "established" and ike["encapsulated"]
        assert 3.6 * 3600 <= ike["rekey_in_s"] <= 4 * 3600 and "expires_in_s" not in ike
        assert child["esp"] == "aes128gcm16" and child["packets_out"] >= 3
        assert child["packets_in"] >= 3 and 0 < child["rekey_in_s"] <= 3600
        table = subprocess.run(
            [sys.executable, "-m", "larval", "status", "--control-socket", control],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "established" in table and child["spi_in"] in table
        assert "rekeying in" in table, table


def test_sighup_reloads_the_configuration(tmp_path: Path) -> None:
    import signal

    from larval.net.control import control_request

    with Topology(tmp_path) as topo:
        daemon = topo.larval(topo.a, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
                             start_action="none")  # fmt: skip
        control = str(topo.a.dir / "control")
        names = {p["name"] for p in control_request(control, {"op": "policy.list"})["policies"]}
        assert names == {"s2s/net"}
        text = daemon.config.read_text().replace("[secrets.", (
            '[connections.s2s.children.extra]\nlocal_ts = ["198.51.100.0/25"]\n'
            'remote_ts = ["192.0.2.128/25"]\n\n[secrets.'
        ))  # fmt: skip
        daemon.config.write_text(text)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while names != {"s2s/net", "s2s/extra"}:
            assert time.monotonic() < deadline, names
            time.sleep(0.1)
            policies = control_request(control, {"op": "policy.list"})["policies"]
            names = {p["name"] for p in policies}
        daemon.config.write_text("this is not TOML")  # a bad file keeps what runs
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert "reload refused" in daemon.log.read_text()
        assert daemon.proc.poll() is None


@pytest.mark.parametrize(
    ("version", "ike", "esp"),
    [(2, "aes128-sha256-x25519", "aes128gcm16"), (1, "aes128-sha256-modp2048", "aes128-sha256")],
)
def test_larval_sends_fragments_to_charon(tmp_path: Path, version: int, ike: str,
                                          esp: str) -> None:  # fmt: skip
    """With `fragment_size = 200`, larval's longer IKE messages go to charon in fragments
    (RFC 7383 SKF for IKEv2: IKE_AUTH; the FRAGMENTATION vendor ID's scheme for IKEv1: MM3
    and more): charon puts them back together and the tunnel comes up."""
    with Topology(tmp_path) as topo:
        charon = topo.charon(topo.a, proposals=ike, esp=esp, version=version)
        larval = topo.larval(topo.b, proposals=[ike], esp=[esp], start_action="trap",
                             version=version, fragment_size=200)  # fmt: skip
        topo.b.ping(count=1)
        larval.wait_for("child")
        result = topo.b.ping(count=5)
        log = larval.log.read_text()
        assert " 0% packet loss" in result.stdout, (result.stdout, log[-4000:])
        assert re.search(r"in \d+ fragments", log), log[-4000:]
        charon_log = (charon.dir / "charon.log").read_text()
        assert "reassembled fragmented IKE message" in charon_log, charon_log[-4000:]


@needs_charon
@pytest.mark.parametrize("version", [2, 1])
def test_charon_initiates_a_transport_mode_child_sa_to_larval(tmp_path: Path, version: int) -> None:
    """charon asks for transport mode between the two hosts:

        HDR, SK {IDi, AUTH, N(USE_TRANSPORT_MODE), SAi2, TSi, TSr}  -->
              <--  HDR, SK {IDr, AUTH, N(USE_TRANSPORT_MODE), SAr2, TSi, TSr}

    larval's responder finds its transport-mode policy between the hosts' addresses,
    answers in kind and installs the CHILD_SA with those addresses as its selectors.
    charon here has only kernel-libipsec (the kernel has no ESP), which installs tunnel
    mode only: it refuses the SAs it agreed to ("unsupported mode") and deletes the
    CHILD_SA, so no packet goes through; the exchange is what this case checks. IKEv1:
    Quick Mode's transforms say Transport, and larval answers QM2 with it. larval
    runs without a TUN device: the daemon routes a child's remote_ts into its TUN, which
    for a host-to-host child would take its own IKE datagrams too."""
    a, b = OUTER["a"], OUTER["b"]
    with Topology(tmp_path) as topo:
        ike = "aes128-sha256-modp2048"
        config = larval_config(topo.b, proposals=[ike], esp=["aes128gcm16"],
                               start_action="none", version=version)  # fmt: skip
        config = re.sub(r"^tun(_addresses)? = .*\n", "", config, flags=re.M)
        config = config.replace(f'local_ts = ["{NET["b"]}"]',
                                f'mode = "transport"\nlocal_ts = ["{b}/32"]')  # fmt: skip
        config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{a}/32"]')
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        charon = topo.charon(topo.a, proposals=ike, esp="aes128gcm16", version=version)
        swanctl = charon.dir / "swanctl" / "swanctl.conf"
        text = swanctl.read_text().replace("mode = tunnel", "mode = transport")
        text = text.replace(f"local_ts = {NET['a']}", f"local_ts = {a}/32")
        swanctl.write_text(text.replace(f"remote_ts = {NET['b']}", f"remote_ts = {b}/32"))
        charon.swanctl("--load-all", "--noprompt")
        with pytest.raises(CharonError) as refused:
            charon.initiate()
        said = str(refused.value)
        if version == 2:
            assert "IKE_AUTH request 1 [" in said and "N(USE_TRANSP)" in said, said
            response = r"IKE_AUTH response 1 \[ IDr AUTH N\(USE_TRANSP\) SA TSi TSr \]"
            assert re.search(response, said), said
        assert "selected proposal: ESP:AES_GCM_16_128" in said, said
        assert "unsupported mode" in said, said  # kernel-libipsec: tunnel mode only
        log = larval.log.read_text()
        if version == 2:
            assert re.search(r"s2s: CHILD_SA net installed, SPIs [0-9a-f]{8} in", log), log
        else:
            # larval installs at QM3, which charon, refusing the SAs, never sends.
            assert "sending QM2 [ HASH SA No ID ID ]" in log, log[-3000:]
        assert "TS_UNACCEPTABLE" not in log, log[-3000:]
