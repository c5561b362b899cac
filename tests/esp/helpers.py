"""The transforms the ESP tests run through, with keys of the right length and the names
scapy's `SecurityAssociation` gives them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from larval.crypto.algorithms import (
    AALG_NONE,
    AALG_SHA256HMAC,
    AALG_SHA384HMAC,
    AALG_SHA512HMAC,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
)
from larval.esp import EspMode, EspSa


@dataclass(frozen=True)
class Suite:
    name: str
    encrypt_alg: int
    encrypt_key_len: int  # bytes, salt included
    auth_alg: int
    auth_key_len: int
    scapy_crypt: str
    scapy_auth: str | None

    def keys(self, seed: int = 0) -> tuple[bytes, bytes]:
        ekey = bytes((seed + i) & 0xFF for i in range(self.encrypt_key_len))
        akey = bytes((seed + 0x80 + i) & 0xFF for i in range(self.auth_key_len))
        return ekey, akey

    def sa(
        self,
        spi: int = 0x1001,
        *,
        esn: bool = False,
        mode: EspMode = "tunnel",
        replay_window: int = 64,
        seed: int = 0,
    ) -> EspSa:
        ekey, akey = self.keys(seed)
        return EspSa(
            spi, self.encrypt_alg, ekey, self.auth_alg, akey,
            esn=esn, mode=mode, replay_window=replay_window,
        )  # fmt: skip


SUITES = [
    Suite("aes128gcm16", EALG_AES_GCM_16, 20, AALG_NONE, 0, "AES-GCM", None),
    Suite("aes256gcm16", EALG_AES_GCM_16, 36, AALG_NONE, 0, "AES-GCM", None),
    Suite("chacha20poly1305", EALG_CHACHA20_POLY1305, 36, AALG_NONE, 0, "CHACHA20-POLY1305", None),
    Suite("aes128-sha256", EALG_AES_CBC, 16, AALG_SHA256HMAC, 32, "AES-CBC", "SHA2-256-128"),
    Suite("aes256-sha384", EALG_AES_CBC, 32, AALG_SHA384HMAC, 48, "AES-CBC", "SHA2-384-192"),
    Suite("aes256-sha512", EALG_AES_CBC, 32, AALG_SHA512HMAC, 64, "AES-CBC", "SHA2-512-256"),
    Suite("null-sha256", EALG_NULL, 0, AALG_SHA256HMAC, 32, "NULL", "SHA2-256-128"),
]
SUITE_IDS = [s.name for s in SUITES]

V4_A, V4_B = ipaddress.ip_address("192.0.2.1").packed, ipaddress.ip_address("192.0.2.2").packed
V6_A = ipaddress.ip_address("2001:db8::1").packed
V6_B = ipaddress.ip_address("2001:db8::2").packed


# IPv4 198.51.100.1 -> 203.0.113.1, UDP 1234 -> 5678, payload "larval payload"; built
# with scapy 2.8 (IP(id=7) / UDP / payload), checksums as scapy computed them.
IPV4_UDP = bytes.fromhex(
    "4500002a0007000040111486c6336401cb00710104d2162e0016ee896c617276616c207061796c6f6164"
)
# IPv6 2001:db8:1::1 -> 2001:db8:2::1, the same UDP datagram.
IPV6_UDP = bytes.fromhex(
    "600000000016114020010db800010000000000000000000120010db80002000000000000000000010"
    "4d2162e0016f9496c617276616c207061796c6f6164"
)
