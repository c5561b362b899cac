"""Wireshark's decryption tables for larval's SAs: the lines of ``ikev2_decryption_table``,
``ikev1_decryption_table`` and ``esp_sa``, as strongSwan's save-keys plugin writes them.

The three files are Wireshark UAT tables (one record a line, fields separated by commas)
that it reads from its profile directory, or that ``tshark -o uat:NAME:"..."`` takes one
record at a time:

* ``ikev2_decryption_table``: SPIi and SPIr (16 hex digits each), SK_ei, SK_er, the
  encryption algorithm's name, SK_ai, SK_ar and the integrity algorithm's name (RFC 7296
  §2.14). An AEAD's SK_e ends with its salt (RFC 5282 §7.1); its SK_a are empty and its
  integrity is ``NONE``;
* ``ikev1_decryption_table``: the initiator's cookie and the Phase 1 encryption key
  (RFC 2409 Appendix B); Wireshark works the IVs out from the capture;
* ``esp_sa``: one line per direction: the address family, source, destination, SPI, the
  encryption algorithm, its key (an AEAD's with its salt, RFC 4106 §8.1), the
  authentication algorithm and its key; the keys as ``0x`` and hex.

The algorithm names are Wireshark's own labels (its ``packet-isakmp.c`` and
``packet-ipsec.c``); a label that is not exactly one of them makes Wireshark refuse the
line. An algorithm Wireshark has no label for (ChaCha20-Poly1305, RFC 7634, in both IKEv2
and ESP) has no line: `NoWiresharkName` says which, and strongSwan skips it the same way.

Nothing here logs; the lines hold keys and go to the files only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from larval.crypto.algorithms import (
    AALG_NONE,
    AALG_SHA256HMAC,
    AALG_SHA384HMAC,
    AALG_SHA512HMAC,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    EALG_CHACHA20_POLY1305,
    EALG_NULL,
    ENCRYPT_ALGORITHMS,
)
from larval.crypto.ike_transforms import EncrId, IntegId, TransformType
from larval.errors import LarvalError
from larval.ike.config import IPAddress, Suite
from larval.ike.sk_keys import IkeSkKeys

__all__ = [
    "ESP_SA",
    "IKEV1_TABLE",
    "IKEV2_TABLE",
    "TABLES",
    "EspSaKeys",
    "NoWiresharkName",
    "Tables",
    "esp_sa_line",
    "ikev1_line",
    "ikev2_line",
]

IKEV2_TABLE = "ikev2_decryption_table"
IKEV1_TABLE = "ikev1_decryption_table"
ESP_SA = "esp_sa"
TABLES = (IKEV2_TABLE, IKEV1_TABLE, ESP_SA)

# packet-isakmp.c: IKEv2 encryption, by (ENCR id, key bits).
_IKEV2_ENCR: dict[tuple[int, int], str] = {
    **{(EncrId.AES_CBC, bits): f"AES-CBC-{bits} [RFC3602]" for bits in (128, 192, 256)},
    **{
        (encr, bits): f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]"
        for encr, icv in ((EncrId.AES_GCM_8, 8), (EncrId.AES_GCM_12, 12), (EncrId.AES_GCM_16, 16))
        for bits in (128, 192, 256)
    },
}
_IKEV2_AEAD = frozenset({EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16,
                         EncrId.CHACHA20_POLY1305})  # fmt: skip
# packet-isakmp.c: IKEv2 integrity, by INTEG id; an AEAD has none.
_IKEV2_INTEG: dict[int, str] = {
    IntegId.NONE: "NONE [RFC4306]",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}
# packet-ipsec.c: ESP encryption, by SADB_EALG (the key length is the key's own).
_ESP_ENCR: dict[int, str] = {
    EALG_NULL: "NULL",
    EALG_AES_CBC: "AES-CBC [RFC3602]",
    # strongSwan writes "AES-GCM [RFC4106]" with "ANY 128 bit authentication [no
    # checking]", which Wireshark 3.x took; Wireshark 4 refuses AES-GCM with anything but
    # NULL authentication and names the ICV length with the cipher instead.
    EALG_AES_GCM_16: "AES-GCM with 16 octet ICV [RFC4106]",
}
# packet-ipsec.c: ESP authentication, by SADB_AALG; an AEAD's is NULL (its ICV is the
# cipher's, above).
_ESP_AUTH: dict[int, str] = {
    AALG_SHA256HMAC: "HMAC-SHA-256-128 [RFC4868]",
    AALG_SHA384HMAC: "HMAC-SHA-384-192 [RFC4868]",
    AALG_SHA512HMAC: "HMAC-SHA-512-256 [RFC4868]",
}
_ESP_NAMES = {EALG_NULL: "null", EALG_AES_CBC: "aes-cbc", EALG_AES_GCM_16: "aes-gcm-16",
              EALG_CHACHA20_POLY1305: "chacha20-poly1305"}  # fmt: skip


class NoWiresharkName(LarvalError):
    """An algorithm of the SA has no name in Wireshark's tables: the SA has no line. The
    message names the SA (SPIs) and the algorithm, never a key."""


@dataclass(frozen=True)
class EspSaKeys:
    """One direction of a CHILD_SA as the SADB holds it: outer addresses, SPI, the
    SADB_EALG and SADB_AALG ids and their keys (the AEAD's with its salt)."""

    src: IPAddress
    dst: IPAddress
    spi: int
    encrypt: int
    encrypt_key: bytes = field(repr=False)
    auth: int
    auth_key: bytes = field(repr=False)


@dataclass
class Tables:
    """The lines of each table, by file name, and what had no line and why."""

    lines: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TABLES})
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"tables": self.lines, "skipped": self.skipped}


def ikev2_line(spi_i: bytes, spi_r: bytes, suite: Suite, keys: IkeSkKeys) -> str:
    """The ``ikev2_decryption_table`` line of an IKEv2 SA; `NoWiresharkName` if its
    cipher or integrity algorithm has no Wireshark name."""
    sa = f"IKE_SA {spi_i.hex()}/{spi_r.hex()}"
    encr = next((t for t in suite if t.type == TransformType.ENCR), None)
    if encr is None:
        raise NoWiresharkName(f"{sa}: no encryption algorithm chosen yet")
    integ = next((t for t in suite if t.type == TransformType.INTEG), None)
    encr_name = _IKEV2_ENCR.get((encr.id, encr.key_bits or 0))
    if encr_name is None:
        bits = f" with a {encr.key_bits}-bit key" if encr.key_bits else ""
        raise NoWiresharkName(f"{sa}: Wireshark has no IKEv2 name for {_encr(encr.id)}{bits}")
    integ_id = IntegId.NONE if encr.id in _IKEV2_AEAD or integ is None else integ.id
    integ_name = _IKEV2_INTEG.get(integ_id)
    if integ_name is None:
        raise NoWiresharkName(f"{sa}: Wireshark has no IKEv2 name for integrity {integ_id}")
    return ",".join((spi_i.hex(), spi_r.hex(), keys.sk_ei.value.hex(), keys.sk_er.value.hex(),
                     f'"{encr_name}"', keys.sk_ai.value.hex(), keys.sk_ar.value.hex(),
                     f'"{integ_name}"'))  # fmt: skip


def ikev1_line(cookie_i: bytes, keys: IkeSkKeys) -> str:
    """The ``ikev1_decryption_table`` line of an ISAKMP SA: CKY-I and its encryption key
    (Wireshark reads the cipher from the capture's SA payload)."""
    return f"{cookie_i.hex()},{keys.sk_ei.value.hex()}"


def esp_sa_line(sa: EspSaKeys) -> str:
    """The ``esp_sa`` line of one direction of a CHILD_SA; `NoWiresharkName` if its
    cipher or authentication algorithm has no Wireshark name."""
    what = f"ESP SA {sa.spi:08x}"
    encr_name = _ESP_ENCR.get(sa.encrypt)
    if encr_name is None:
        raise NoWiresharkName(f"{what}: Wireshark has no ESP name for {_ealg(sa.encrypt)}")
    cipher = ENCRYPT_ALGORITHMS.get(sa.encrypt)
    if cipher is not None and cipher.aead:
        auth_name = "NULL"
    else:
        auth_name = _ESP_AUTH.get(sa.auth, "NULL" if sa.auth == AALG_NONE else "")
    if not auth_name:
        raise NoWiresharkName(f"{what}: Wireshark has no ESP name for authentication {sa.auth}")
    family = "IPv4" if sa.src.version == 4 else "IPv6"
    return ",".join(f'"{v}"' for v in (family, sa.src, sa.dst, f"0x{sa.spi:08x}", encr_name,
                                        f"0x{sa.encrypt_key.hex()}", auth_name,
                                        f"0x{sa.auth_key.hex()}"))  # fmt: skip


def _encr(encr_id: int) -> str:
    return EncrId(encr_id).name.lower().replace("_", "-")


def _ealg(ealg: int) -> str:
    return _ESP_NAMES.get(ealg, f"encryption {ealg}")
