"""tshark reads larval's ESP-in-UDP/4500 (RFC 3948) and finds the right SPIs and
sequence numbers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from larval.esp import esp_encapsulate_tunnel

from .helpers import IPV4_UDP, IPV6_UDP, SUITES, V4_A, V4_B, V6_A, V6_B

TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_dissects_esp_in_udp(tmp_path: Path) -> None:
    scapy_all = pytest.importorskip("scapy.all", reason="scapy writes the pcap")
    v4 = SUITES[0].sa(spi=0x0000ABCD)
    v6 = SUITES[3].sa(spi=0x12345678)
    v4.seq = 41  # so the numbers are not just 1, 2, 3
    packets = [
        esp_encapsulate_tunnel(v4, IPV4_UDP, V4_A, V4_B, nat_t_ports=(4500, 4500)),
        esp_encapsulate_tunnel(v6, IPV6_UDP, V6_A, V6_B, nat_t_ports=(4500, 4500)),
        esp_encapsulate_tunnel(v4, IPV6_UDP, V4_A, V4_B, nat_t_ports=(4500, 4500)),
    ]
    pcap = tmp_path / "esp-in-udp.pcap"
    scapy_all.wrpcap(str(pcap), [scapy_all.Raw(p) for p in packets], linktype=101)  # raw IP
    result = subprocess.run(
        [TSHARK, "-r", str(pcap), "-T", "fields", "-e", "esp.spi", "-e", "esp.sequence"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(int(spi, 0), int(seq)) for spi, seq in rows] == [
        (0x0000ABCD, 42),
        (0x12345678, 1),
        (0x0000ABCD, 43),
    ]
