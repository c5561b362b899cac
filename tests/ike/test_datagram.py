"""`larval.ike.datagram.version_of` and each version's `stateless.recipient`: good,
short and garbage datagrams, and openers told from the rest."""

from __future__ import annotations

import struct

import pytest

from larval.ike.datagram import HEADER_SIZE, Recipient, version_of
from larval.ikev1 import stateless as v1
from larval.ikev2 import stateless as v2

SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6a7a8")


def header(version: int, exchange: int, flags: int = 0, spi_r: bytes = bytes(8),
           body: bytes = b"") -> bytes:  # fmt: skip
    """An IKE header (RFC 7296 §3.1, RFC 2408 §3.1) with no payloads, and `body` after it."""
    length = HEADER_SIZE + len(body)
    return SPI_I + spi_r + struct.pack("!BBBBII", 0, version, exchange, flags, 0, length) + body


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (header(0x20, 34), 2),  # IKE_SA_INIT
        (header(0x21, 37, 0x20), 2),  # a minor version above ours is still IKEv2 (§2.5)
        (header(0x10, 2), 1),  # Main Mode
        (header(0x10, 32, spi_r=SPI_R), 1),  # Quick Mode
        (header(0x30, 34), 3),  # a version no one speaks yet: named, left to the caller
        (header(0x00, 0), 0),
        (bytes(HEADER_SIZE), 0),
        (b"\xff" * HEADER_SIZE, 15),
    ],
)
def test_version_of_reads_the_major_version(data: bytes, version: int) -> None:
    assert version_of(data) == version


@pytest.mark.parametrize("size", [0, 1, 17, 18, HEADER_SIZE - 1])
def test_version_of_a_datagram_shorter_than_a_header_is_none(size: int) -> None:
    # An 18-byte datagram has the version octet, but no header around it.
    assert version_of(header(0x20, 34)[:size]) is None
    assert version_of(header(0x10, 2)[:size]) is None


def test_version_of_ignores_what_follows_the_header() -> None:
    assert version_of(header(0x20, 34, body=b"\x10" * 100)) == 2
    assert version_of(header(0x10, 2) + b"garbage") == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (header(0x20, 34), Recipient(SPI_I, True)),  # IKE_SA_INIT request
        (header(0x20, 34, 0x08), Recipient(SPI_I, True)),  # ... with the I flag
        (header(0x20, 34, 0x20, SPI_R), Recipient(SPI_I, False)),  # IKE_SA_INIT response
        (header(0x20, 35, 0x08, SPI_R), Recipient(SPI_I, False)),  # IKE_AUTH
        (header(0x20, 37, 0x20, SPI_R), Recipient(SPI_I, False)),  # INFORMATIONAL response
        (header(0x10, 34), None),  # IKEv1
        (header(0x20, 34)[:-1], None),  # cut short
        (header(0x20, 34) + b"x", None),  # Length is not the datagram's
        (b"", None),
    ],
)
def test_ikev2_recipient(data: bytes, expected: Recipient | None) -> None:
    assert v2.recipient(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (header(0x10, 2), Recipient(SPI_I, True)),  # Main Mode, MM1
        (header(0x10, 4), Recipient(SPI_I, True)),  # Aggressive Mode, AM1
        (header(0x11, 2), Recipient(SPI_I, True)),  # the minor version is not checked
        (header(0x10, 2, spi_r=SPI_R), Recipient(SPI_I, False)),  # MM3 and on
        (header(0x10, 32, 0x01, SPI_R), Recipient(SPI_I, False)),  # Quick Mode
        (header(0x10, 5, 0x01, SPI_R), Recipient(SPI_I, False)),  # Informational
        (header(0x10, 5), Recipient(SPI_I, False)),  # an Informational opens nothing
        (header(0x20, 34), None),  # IKEv2
        (header(0x10, 2)[:-1], None),
        (b"\x00" * 10, None),
    ],
)
def test_ikev1_recipient(data: bytes, expected: Recipient | None) -> None:
    assert v1.recipient(data) == expected
