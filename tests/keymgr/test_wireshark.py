"""The lines of Wireshark's decryption tables (`larval.keymgr.wireshark`): byte-exact for
one SA of each table, Wireshark's label for every algorithm larval supports (and tshark
itself takes every line), and no line, with a note that names no key, for what
Wireshark cannot decrypt (ChaCha20-Poly1305)."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

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
from larval.crypto.ike_transforms import EncrId, IntegId, Transform, TransformType
from larval.ike.sk_keys import IkeSkKeys
from larval.ike.state import Secret
from larval.keymgr.wireshark import (
    EspSaKeys,
    NoWiresharkName,
    esp_sa_line,
    ikev1_line,
    ikev2_line,
)

SPI_I, SPI_R = bytes.fromhex("0123456789abcdef"), bytes.fromhex("fedcba9876543210")
A4, B4 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
A6, B6 = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8::2")

ENCR, INTEG = TransformType.ENCR, TransformType.INTEG


def _keys(e: int, a: int, salt: int = 0) -> IkeSkKeys:
    """SK_ei of 0x11s, SK_er of 0x22s (with `salt` bytes more), SK_ai 0x33s, SK_ar 0x44s."""
    return IkeSkKeys(Secret(b"\x11" * (e + salt)), Secret(b"\x22" * (e + salt)),
                     Secret(b"\x33" * a), Secret(b"\x44" * a))  # fmt: skip


# (ENCR id, key bits, INTEG id) -> (encryption label, integrity label, SK_e, SK_a bytes)
IKEV2_CASES = [
    *[(EncrId.AES_CBC, bits, integ, f"AES-CBC-{bits} [RFC3602]", label, bits // 8, size)
      for bits in (128, 192, 256)
      for integ, label, size in ((IntegId.HMAC_SHA2_256_128, "HMAC_SHA2_256_128 [RFC4868]", 32),
                                 (IntegId.HMAC_SHA2_384_192, "HMAC_SHA2_384_192 [RFC4868]", 48),
                                 (IntegId.HMAC_SHA2_512_256, "HMAC_SHA2_512_256 [RFC4868]", 64))],
    *[(encr, bits, None, f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]", "NONE [RFC4306]",
       bits // 8 + 4, 0)
      for encr, icv in ((EncrId.AES_GCM_8, 8), (EncrId.AES_GCM_12, 12), (EncrId.AES_GCM_16, 16))
      for bits in (128, 192, 256)],
]  # fmt: skip

# (EALG, key bytes with salt, AALG, auth key bytes) -> (encryption label, auth label)
ESP_CASES = [
    (EALG_NULL, 0, AALG_SHA256HMAC, 32, "NULL", "HMAC-SHA-256-128 [RFC4868]"),
    *[(EALG_AES_CBC, size, aalg, asize, "AES-CBC [RFC3602]", label)
      for size in (16, 24, 32)
      for aalg, asize, label in ((AALG_SHA256HMAC, 32, "HMAC-SHA-256-128 [RFC4868]"),
                                 (AALG_SHA384HMAC, 48, "HMAC-SHA-384-192 [RFC4868]"),
                                 (AALG_SHA512HMAC, 64, "HMAC-SHA-512-256 [RFC4868]"))],
    *[(EALG_AES_GCM_16, size + 4, AALG_NONE, 0, "AES-GCM with 16 octet ICV [RFC4106]", "NULL")
      for size in (16, 24, 32)],
]  # fmt: skip


def _suite(encr: int, bits: int | None, integ: int | None) -> tuple[Transform, ...]:
    suite = [Transform(ENCR, encr, bits), Transform(TransformType.PRF, 5)]
    if integ is not None:
        suite.append(Transform(INTEG, integ))
    return tuple(suite)


def _esp(ealg: int, ekey: int, aalg: int, akey: int, *, v6: bool = False) -> EspSaKeys:
    src, dst = (A6, B6) if v6 else (A4, B4)
    return EspSaKeys(src, dst, 0xC0FFEE01, ealg, b"\x55" * ekey, aalg, b"\x66" * akey)


def test_an_ikev2_line_byte_exact() -> None:
    suite = _suite(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    line = ikev2_line(SPI_I, SPI_R, suite, _keys(16, 32))
    assert line == (
        "0123456789abcdef,fedcba9876543210,"
        + "11" * 16 + "," + "22" * 16 + ',"AES-CBC-128 [RFC3602]",'
        + "33" * 32 + "," + "44" * 32 + ',"HMAC_SHA2_256_128 [RFC4868]"'
    )  # fmt: skip


def test_an_aead_ikev2_line_has_the_salt_and_no_integrity_keys() -> None:
    suite = _suite(EncrId.AES_GCM_16, 256, None)
    line = ikev2_line(SPI_I, SPI_R, suite, _keys(32, 0, salt=4))
    assert line == (
        "0123456789abcdef,fedcba9876543210,"
        + "11" * 36 + "," + "22" * 36 + ',"AES-GCM-256 with 16 octet ICV [RFC5282]",'
        + ',,"NONE [RFC4306]"'
    )  # fmt: skip


def test_an_ikev1_line_byte_exact() -> None:
    keys = IkeSkKeys(Secret(b"\x77" * 16), Secret(b"\x77" * 16), Secret(b""), Secret(b""))
    assert ikev1_line(SPI_I, keys) == "0123456789abcdef," + "77" * 16


def test_an_esp_line_byte_exact_in_both_families() -> None:
    line = esp_sa_line(_esp(EALG_AES_CBC, 16, AALG_SHA256HMAC, 32))
    assert line == (
        '"IPv4","192.0.2.1","192.0.2.2","0xc0ffee01","AES-CBC [RFC3602]",'
        f'"0x{"55" * 16}","HMAC-SHA-256-128 [RFC4868]","0x{"66" * 32}"'
    )
    line6 = esp_sa_line(_esp(EALG_AES_GCM_16, 20, AALG_NONE, 0, v6=True))
    assert line6 == (
        '"IPv6","2001:db8::1","2001:db8::2","0xc0ffee01","AES-GCM with 16 octet ICV [RFC4106]",'
        f'"0x{"55" * 20}","NULL","0x"'
    )


@pytest.mark.parametrize(("encr", "bits", "integ", "encr_name", "integ_name", "e", "a"),
                         IKEV2_CASES)  # fmt: skip
def test_every_ikev2_suite_has_wiresharks_names(
    encr: int, bits: int, integ: int | None, encr_name: str, integ_name: str, e: int, a: int
) -> None:
    line = ikev2_line(SPI_I, SPI_R, _suite(encr, bits, integ), _keys(e, a))
    fields = line.split(",")
    assert fields[4] == f'"{encr_name}"'
    assert fields[7] == f'"{integ_name}"'


@pytest.mark.parametrize(("ealg", "ekey", "aalg", "akey", "encr_name", "auth_name"), ESP_CASES)
def test_every_esp_suite_has_wiresharks_names(
    ealg: int, ekey: int, aalg: int, akey: int, encr_name: str, auth_name: str
) -> None:
    fields = esp_sa_line(_esp(ealg, ekey, aalg, akey)).split(",")
    assert fields[4] == f'"{encr_name}"'
    assert fields[6] == f'"{auth_name}"'


def test_chacha20_poly1305_has_no_line_and_a_note_without_keys() -> None:
    keys = _keys(32, 0, salt=4)
    with pytest.raises(NoWiresharkName) as ike:
        ikev2_line(SPI_I, SPI_R, _suite(EncrId.CHACHA20_POLY1305, None, None), keys)
    assert str(ike.value) == (
        "IKE_SA 0123456789abcdef/fedcba9876543210: "
        "Wireshark has no IKEv2 name for chacha20-poly1305"
    )
    with pytest.raises(NoWiresharkName) as esp:
        esp_sa_line(_esp(EALG_CHACHA20_POLY1305, 36, AALG_NONE, 0))
    assert str(esp.value) == "ESP SA c0ffee01: Wireshark has no ESP name for chacha20-poly1305"
    for note in (str(ike.value), str(esp.value)):
        assert "1111" not in note and "5555" not in note


def test_an_ike_sa_without_a_cipher_yet_or_of_an_unknown_integrity_has_no_line() -> None:
    with pytest.raises(NoWiresharkName, match="no encryption algorithm chosen yet"):
        ikev2_line(SPI_I, SPI_R, (), _keys(16, 32))
    with pytest.raises(NoWiresharkName, match="integrity 2"):
        ikev2_line(SPI_I, SPI_R, _suite(EncrId.AES_CBC, 128, 2), _keys(16, 20))


def test_the_repr_of_the_keys_shows_no_key() -> None:
    shown = repr(_keys(16, 32)) + repr(_esp(EALG_AES_CBC, 16, AALG_SHA256HMAC, 32))
    assert "11" * 4 not in shown and "33" * 4 not in shown
    assert "55" * 4 not in shown and "66" * 4 not in shown


# -- tshark takes every line ---------------------------------------------------------------

TSHARK = shutil.which("tshark")


def _empty_capture(tmp_path: Path) -> Path:
    path = tmp_path / "empty.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


def _tshark_takes(capture: Path, lines: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """tshark given every (table, line) of `lines` as its ``-o uat:`` records at once."""
    options = [a for table, line in lines for a in ("-o", f"uat:{table}:{line}")]
    return subprocess.run(["tshark", "-r", str(capture), *options],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_takes_every_line(tmp_path: Path) -> None:
    capture = _empty_capture(tmp_path)
    lines = [("ikev2_decryption_table",
              ikev2_line(SPI_I, SPI_R, _suite(encr, bits, integ), _keys(e, a)))
             for encr, bits, integ, _, _, e, a in IKEV2_CASES]  # fmt: skip
    lines += [("esp_sa", esp_sa_line(_esp(ealg, ekey, aalg, akey, v6=v6)))
              for ealg, ekey, aalg, akey, _, _ in ESP_CASES for v6 in (False, True)]  # fmt: skip
    keys = IkeSkKeys(Secret(b"\x77" * 16), Secret(b"\x77" * 16), Secret(b""), Secret(b""))
    lines.append(("ikev1_decryption_table", ikev1_line(SPI_I, keys)))
    done = _tshark_takes(capture, lines)
    assert done.returncode == 0 and "nvalid" not in done.stderr, done.stderr
    # The check can fail: a label Wireshark does not know is refused.
    bogus = lines[0][1].replace("AES-CBC-128 [RFC3602]", "AES-CBC-128")
    done = _tshark_takes(capture, [*lines[1:], ("ikev2_decryption_table", bogus)])
    assert done.returncode != 0 and "invalid value: AES-CBC-128" in done.stderr, done.stderr
