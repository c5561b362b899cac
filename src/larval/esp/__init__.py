"""ESP (RFC 4303): transforms, SAs, the anti-replay window, tunnel and transport
encapsulation, and UDP encapsulation framing (RFC 3948). Sans-I/O: bytes in, bytes out.
"""

from __future__ import annotations

from larval.esp.errors import (
    EspAuthError,
    EspBadNextHeaderError,
    EspBadPaddingError,
    EspConfigError,
    EspDropError,
    EspDummyPacket,
    EspError,
    EspMalformedError,
    EspReplayError,
    EspReplayTooOldError,
    EspSeqExhausted,
    EspSeqUnreserved,
    EspTruncatedError,
    EspUnknownSpiError,
)
from larval.esp.packet import (
    EspInbound,
    SaLookup,
    esp_decapsulate,
    esp_encapsulate_transport,
    esp_encapsulate_tunnel,
)
from larval.esp.replay import MAX_REPLAY_WINDOW, EspReplayWindow
from larval.esp.sa import EspMode, EspSa
from larval.esp.udp_encap import (
    NAT_KEEPALIVE,
    NAT_T_PORT,
    NON_ESP_MARKER,
    classify_udp4500,
    udp_encap,
)

__all__ = [
    "MAX_REPLAY_WINDOW",
    "NAT_KEEPALIVE",
    "NAT_T_PORT",
    "NON_ESP_MARKER",
    "EspAuthError",
    "EspBadNextHeaderError",
    "EspBadPaddingError",
    "EspConfigError",
    "EspDropError",
    "EspDummyPacket",
    "EspError",
    "EspInbound",
    "EspMalformedError",
    "EspMode",
    "EspReplayError",
    "EspReplayTooOldError",
    "EspReplayWindow",
    "EspSa",
    "EspSeqExhausted",
    "EspSeqUnreserved",
    "EspTruncatedError",
    "EspUnknownSpiError",
    "SaLookup",
    "classify_udp4500",
    "esp_decapsulate",
    "esp_encapsulate_transport",
    "esp_encapsulate_tunnel",
    "udp_encap",
]
