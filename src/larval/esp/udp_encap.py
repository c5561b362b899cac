"""UDP encapsulation of ESP (RFC 3948): what travels in the payload of UDP port 4500.

Port 4500 carries three things, told apart by their first bytes (RFC 3948 §2):

* a NAT-keepalive: one byte, 0xFF (§2.3);
* an IKE message: a Non-ESP Marker of four zero bytes, then the IKE header (§2.2);
* an ESP packet: the ESP header directly, whose SPI is never zero (§2.1).
"""

from __future__ import annotations

import struct
from typing import Literal

from larval.esp.errors import EspTruncatedError
from larval.esp.transforms import BytesLike

__all__ = [
    "NAT_KEEPALIVE",
    "NAT_T_PORT",
    "NON_ESP_MARKER",
    "UDP_HEADER",
    "classify_udp4500",
    "udp_encap",
]

NAT_T_PORT = 4500
NAT_KEEPALIVE = b"\xff"  # RFC 3948 §2.3
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2
# Source Port, Destination Port, Length, Checksum (RFC 768).
UDP_HEADER = struct.Struct(">HHHH")

Udp4500Kind = Literal["ike", "esp", "keepalive"]


def udp_encap(esp: bytes) -> bytes:
    """The UDP payload that carries `esp`: the ESP packet itself (RFC 3948 §2.1)."""
    return esp


def classify_udp4500(
    payload: BytesLike,
) -> tuple[Literal["ike", "esp"], bytes] | tuple[Literal["keepalive"], None]:
    """Sort a UDP/4500 payload: ("ike", IKE message), ("esp", ESP packet), ("keepalive", None).

    Raises `EspTruncatedError` for payloads too short to be any of them.
    """
    n = len(payload)
    if n == 1 and payload[0] == 0xFF:
        return ("keepalive", None)
    if n < 4:
        raise EspTruncatedError(f"UDP/4500 payload of {n} bytes is neither ESP nor IKE")
    if bytes(payload[:4]) == NON_ESP_MARKER:
        return ("ike", bytes(payload[4:]))
    if n < 8:
        # RFC 3948 §2.1: an ESP packet holds at least SPI and Sequence Number.
        raise EspTruncatedError(f"UDP/4500 payload of {n} bytes is too short for ESP")
    return ("esp", bytes(payload))
