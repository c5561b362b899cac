"""The failover tests' evidence, checked on a small capture written here frame by frame
and read back by the real tshark: ESP in UDP 4500 and IKE on 500 and behind the non-ESP
marker (RFC 3948 §2), a sequence number sent twice, a second IKE_SA_INIT, a gateway that
sent after it lost ownership; and the loss window from numbered echoes."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.interop.failover_evidence import (
    IKE_SA_INIT,
    EspPacket,
    IkePacket,
    duplicate_sequences,
    ike_sa_inits,
    loss_window,
    read_capture,
    sent_after,
)

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="needs tshark (Debian tshark) to read captures"
)

CLI_MAC, GW1_MAC, GW2_MAC = "02:00:00:00:00:01", "02:00:00:00:00:11", "02:00:00:00:00:12"
CLI, VIP = "192.0.2.2", "192.0.2.10"
IKE_AUTH, INFORMATIONAL = 35, 37
SPI_I, SPI_R, SPI_NEW = bytes(range(1, 9)), bytes(range(9, 17)), bytes(range(17, 25))
T0 = 1_700_000_000.0


def _mac(text: str) -> bytes:
    return bytes(int(b, 16) for b in text.split(":"))


def _ipv4(src: str, dst: str, payload: bytes) -> bytes:
    addresses = bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 17, 0) + addresses
    words = sum(struct.unpack("!10H", header))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    return header[:10] + struct.pack("!H", ~words & 0xFFFF) + header[12:] + payload


def _frame(src_mac: str, dst_mac: str, src: str, dst: str, port: int, data: bytes) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(data), 0) + data
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + _ipv4(src, dst, udp)


def _port_unreachable(src_mac: str, dst_mac: str, src: str, dst: str, quoted: bytes) -> bytes:
    """RFC 792: ICMP Destination Unreachable (code 3, port), quoting the IP datagram that
    `quoted` (an Ethernet frame) carried."""
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted[14:]
    header = _ipv4(src, dst, icmp)
    header = header[:9] + b"\x01" + header[10:]  # protocol ICMP (checksum not checked)
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + header


def _esp(spi: int, seq: int) -> bytes:
    """RFC 4303 §2: SPI, Sequence Number, then what stands for IV, data and ICV."""
    return struct.pack("!II", spi, seq) + bytes(24)


def _ike(spi_i: bytes, spi_r: bytes, exchange: int, *, response: bool, marker: bool) -> bytes:
    """RFC 7296 §3.1's header alone (Next Payload none); behind the four zero octets of
    the non-ESP marker on 4500."""
    flags = 0x20 if response else 0x08
    header = spi_i + spi_r + struct.pack("!BBBBII", 0, 0x20, exchange, flags, 0, 28)
    return (bytes(4) if marker else b"") + header


def _write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    """libpcap's format: its global header, then each frame behind its record header."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # LINKTYPE_ETHERNET
    for when, frame in frames:
        sec = int(when)
        usec = round((when - sec) * 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A first IKE SA (its IKE_SA_INIT retransmitted once), IKE_AUTH on 4500, ESP both
    ways; gw2 answers the client's ESP with "port unreachable" (quoting it) before it
    takes over and goes on; gw2 sends one sequence number gw1 had sent; gw1 sends once
    more late; then a second IKE SA."""
    cli_to_vip = (CLI_MAC, GW1_MAC, CLI, VIP)
    gw1_to_cli = (GW1_MAC, CLI_MAC, VIP, CLI)
    gw2_to_cli = (GW2_MAC, CLI_MAC, VIP, CLI)
    frames = [
        (T0 + 0.0, _frame(*cli_to_vip, 500, _ike(SPI_I, bytes(8), IKE_SA_INIT, response=False,
                                                 marker=False))),
        (T0 + 0.5, _frame(*cli_to_vip, 500, _ike(SPI_I, bytes(8), IKE_SA_INIT, response=False,
                                                 marker=False))),
        (T0 + 0.6, _frame(*gw1_to_cli, 500, _ike(SPI_I, SPI_R, IKE_SA_INIT, response=True,
                                                 marker=False))),
        (T0 + 0.7, _frame(*cli_to_vip, 4500, _ike(SPI_I, SPI_R, IKE_AUTH, response=False,
                                                  marker=True))),
        (T0 + 0.8, _frame(*gw1_to_cli, 4500, _ike(SPI_I, SPI_R, IKE_AUTH, response=True,
                                                  marker=True))),
        (T0 + 1.0, _frame(*cli_to_vip, 4500, _esp(0xC0000001, 1))),
        (T0 + 1.1, _frame(*gw1_to_cli, 4500, _esp(0xC1000001, 1))),
        (T0 + 1.2, _frame(*gw1_to_cli, 4500, _esp(0xC1000001, 2))),
        (T0 + 2.0, _port_unreachable(GW2_MAC, CLI_MAC, VIP, CLI,
                                     _frame(*cli_to_vip, 4500, _esp(0xC0000001, 1)))),
        (T0 + 2.1, _port_unreachable(GW2_MAC, CLI_MAC, VIP, CLI,
                                     _frame(*cli_to_vip, 4500, _ike(SPI_I, SPI_R, INFORMATIONAL,
                                                                    response=False, marker=True)))),
        (T0 + 3.0, _frame(*gw2_to_cli, 4500, _esp(0xC1000001, 16385))),
        (T0 + 3.1, _frame(*gw2_to_cli, 4500, _esp(0xC1000001, 2))),
        (T0 + 4.0, _frame(*gw1_to_cli, 4500, _ike(SPI_I, SPI_R, INFORMATIONAL, response=False,
                                                  marker=True))),
        (T0 + 5.0, _frame(*cli_to_vip, 500, _ike(SPI_NEW, bytes(8), IKE_SA_INIT, response=False,
                                                 marker=False))),
    ]  # fmt: skip
    path = tmp_path / "small.pcap"
    _write_pcap(path, frames)
    return path


@needs_tshark
def test_tshark_reads_every_esp_packet_and_ike_message_of_the_capture(capture: Path) -> None:
    esp, ike = read_capture(capture)
    assert [(p.mac, p.spi, p.seq) for p in esp] == [
        (CLI_MAC, 0xC0000001, 1),
        (GW1_MAC, 0xC1000001, 1),
        (GW1_MAC, 0xC1000001, 2),
        (GW2_MAC, 0xC1000001, 16385),
        (GW2_MAC, 0xC1000001, 2),
    ]
    assert esp[0] == EspPacket(T0 + 1.0, CLI_MAC, CLI, VIP, 0xC0000001, 1)
    assert [(p.exchange, p.response) for p in ike] == [
        (IKE_SA_INIT, False), (IKE_SA_INIT, False), (IKE_SA_INIT, True),
        (IKE_AUTH, False), (IKE_AUTH, True), (INFORMATIONAL, False), (IKE_SA_INIT, False),
    ]  # fmt: skip
    assert ike[2] == IkePacket(T0 + 0.6, GW1_MAC, VIP, CLI, SPI_I.hex(), SPI_R.hex(),
                               IKE_SA_INIT, True)  # fmt: skip


@needs_tshark
def test_a_sequence_number_sent_twice_under_one_spi_is_found(capture: Path) -> None:
    esp, _ = read_capture(capture)
    assert duplicate_sequences(esp) == {(0xC1000001, 2): 2}
    # The same number under another SPI is no reuse.
    assert duplicate_sequences([p for p in esp if p.mac != GW2_MAC]) == {}


@needs_tshark
def test_a_retransmitted_ike_sa_init_is_one_and_a_new_ike_sa_another(capture: Path) -> None:
    _, ike = read_capture(capture)
    assert ike_sa_inits(ike) == [SPI_I.hex(), SPI_NEW.hex()]
    assert ike_sa_inits(p for p in ike if p.time < T0 + 5) == [SPI_I.hex()]


@needs_tshark
def test_what_a_gateway_sent_after_a_moment_is_listed(capture: Path) -> None:
    esp, ike = read_capture(capture)
    late = sent_after(esp, ike, GW1_MAC.upper(), T0 + 2)
    assert len(late) == 1 and isinstance(late[0], IkePacket), late
    assert late[0].exchange == INFORMATIONAL
    assert [p.time for p in sent_after(esp, ike, GW1_MAC, T0)] == pytest.approx(
        [T0 + 0.6, T0 + 0.8, T0 + 1.1, T0 + 1.2, T0 + 4.0]
    )
    assert sent_after(esp, ike, GW2_MAC, T0 + 3.1) == []


def test_the_loss_window_runs_from_the_first_lost_echo_to_the_last() -> None:
    sent = {n: 100.0 + n * 0.005 for n in range(1000)}  # 200/s
    echoed = [n for n in range(1000) if not 300 <= n < 700 and n != 900]
    window = loss_window(sent, echoed, 0.005)
    assert window.lost == 401
    assert window.first == pytest.approx(101.5)
    assert window.last == pytest.approx(104.5)
    assert window.seconds == pytest.approx(3.005)


def test_no_loss_is_a_window_of_nothing() -> None:
    window = loss_window({0: 1.0, 1: 1.005}, [1, 0, 7], 0.005)
    assert (window.lost, window.seconds) == (0, 0.0)
