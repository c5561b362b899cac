"""`EspRun` (ESP packets back to back in one buffer), `one_spi` and `esp_spis`, on the compiled
helper and on Python (`esp_path`, from `tests/esp/conftest.py`)."""

from __future__ import annotations

import pytest

from larval.esp.run import EspRun, esp_spis, one_spi


def run_of(*packets: bytes) -> EspRun:
    return EspRun(memoryview(bytearray(b"".join(packets))), [len(p) for p in packets])


def test_a_run_reads_as_its_packets() -> None:
    packets = [b"\x00\x00\x10\x01" + bytes([n]) * (10 + n) for n in range(5)]
    run = run_of(*packets)
    assert len(run) == 5 and run[3] == packets[3] and run[-1] == packets[-1]
    assert list(run) == packets and run[1:4] == packets[1:4]
    assert run.offsets() == [0, 14, 29, 45, 62]
    with pytest.raises(IndexError):
        run[5]


SPI = b"\x00\x00\x10\x01"


@pytest.mark.parametrize(
    ("packets", "spi"),
    [
        ([SPI + b"seq1", SPI + b"seq2....", SPI + b"sq3!"], 0x1001),
        ([SPI + b"seq1"], 0x1001),
        ([SPI + b"seq1", b"\x00\x00\x10\x02seq2"], None),  # two SAs
        ([SPI + b"seq1", SPI + b"sq2"], None),  # a runt last
        ([SPI + b"seq1", b"\xff"], None),  # a NAT keepalive
        ([b"\x00\x00\x00\x00ike message"] * 2, None),  # IKE behind the non-ESP marker
        ([b"\x00\x00\x00"], None),
        ([], None),
    ],
)
def test_one_spi(esp_path: str, packets: list[bytes], spi: int | None) -> None:
    assert one_spi(run_of(*packets)) == spi


@pytest.mark.parametrize(
    ("packets", "spis"),
    [
        ([SPI + b"seq1", SPI + b"seq2....", SPI + b"sq3!"], [0x1001] * 3),
        (
            [SPI + b"seq1", b"\xff\xff\xff\xfeseq2", b"\x00\x00\x00\x01seq3"],
            [0x1001, 0xFFFFFFFE, 1],
        ),
        ([SPI + b"seq1", SPI + b"sq2"], None),  # a runt last
        ([b"\x00\x00\x01", SPI + b"seq2"], None),  # a runt of three bytes first
        ([SPI + b"seq1", b"\xff"], None),  # a NAT keepalive
        ([SPI + b"seq1", b"\x00\x00\x00\x00ike message"], None),  # IKE among ESP
        ([], []),
    ],
)
def test_esp_spis(esp_path: str, packets: list[bytes], spis: list[int] | None) -> None:
    assert esp_spis(run_of(*packets)) == spis
