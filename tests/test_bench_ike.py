"""The IKE setup benchmark: its VICI decoder, and a few larval setups end to end."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from larval.bench import ike


def _kv(key: str, value: str) -> bytes:
    return bytes([3, len(key)]) + key.encode() + struct.pack("!H", len(value)) + value.encode()


def test_vici_decode_sections_lists_and_values() -> None:
    # child-updown { up = yes, s2s { child-sas { net-1 { local-ts [ 10.0.0.0/8 ] } } } }
    data = (
        _kv("up", "yes")
        + bytes([1, 3]) + b"s2s"
        + bytes([1, 9]) + b"child-sas"
        + bytes([1, 5]) + b"net-1"
        + bytes([4, 8]) + b"local-ts" + bytes([5]) + struct.pack("!H", 10) + b"10.0.0.0/8"
        + bytes([6])
        + bytes([2, 2, 2])
    )  # fmt: skip
    assert ike._vici_decode(data) == {
        "up": "yes",
        "s2s": {"child-sas": {"net-1": {"local-ts": ["10.0.0.0/8"]}}},
    }


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (a network namespace, UDP 500 and 4500)",
)
def test_larval_pair_completes_every_setup() -> None:
    result = ike._larval(20, 8)
    assert result["done"] == 20
    assert result["ike_sa_per_s"] > 0
    assert result["cpu_ms_per_ike_sa"] > 0
