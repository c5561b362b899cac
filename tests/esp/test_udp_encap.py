"""RFC 3948 framing of UDP port 4500."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larval.esp import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    EspDropError,
    EspMalformedError,
    EspTruncatedError,
    classify_udp4500,
    esp_decapsulate,
    udp_encap,
)
from larval.esp.ip import internet_checksum

from .helpers import SUITES


def test_classify() -> None:
    esp = SUITES[0].sa().encrypt(b"x", 4)
    assert udp_encap(esp) == esp  # RFC 3948 §2.1: ESP directly after the UDP header
    assert classify_udp4500(esp) == ("esp", esp)
    assert classify_udp4500(NAT_KEEPALIVE) == ("keepalive", None)
    ike = bytes(28)
    assert classify_udp4500(NON_ESP_MARKER + ike) == ("ike", ike)
    assert classify_udp4500(memoryview(NON_ESP_MARKER)) == ("ike", b"")


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\xfe", b"\xff\xff", b"\x01\x02\x03"])
def test_too_short_for_anything(payload: bytes) -> None:
    with pytest.raises(EspTruncatedError):
        classify_udp4500(payload)


def test_short_esp() -> None:
    with pytest.raises(EspTruncatedError):
        classify_udp4500(b"\x00\x00\x10\x01\x00")


@given(st.binary(max_size=64))
def test_classify_never_raises_anything_else(payload: bytes) -> None:
    try:
        kind, body = classify_udp4500(payload)
    except EspDropError:
        return
    assert kind in ("ike", "esp", "keepalive")
    if kind == "esp":
        assert body is not None and body[:4] != NON_ESP_MARKER


def _udp4(payload: bytes) -> bytes:
    header = bytearray.fromhex("45000000000000004011000000000000000000000000")[:20]
    header[12:20] = bytes((192, 0, 2, 1, 192, 0, 2, 2))
    total = 20 + 8 + len(payload)
    header[2:4] = total.to_bytes(2, "big")
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    udp = (4500).to_bytes(2, "big") * 2 + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
    return bytes(header) + udp + payload


@pytest.mark.parametrize("payload", [NAT_KEEPALIVE, NON_ESP_MARKER + bytes(28)])
def test_decapsulate_refuses_ike_and_keepalives(payload: bytes) -> None:
    with pytest.raises(EspMalformedError):
        esp_decapsulate(lambda spi: None, _udp4(payload))
