"""IKE SA, rekeyed IKE SA and CHILD_SA key derivation (RFC 7296 §2.14, §2.17, §2.18)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from larval.crypto.ike import (
    ChildSaKeys,
    DhGroup,
    DhId,
    EncrId,
    IkeCryptoError,
    IntegId,
    Prf,
    PrfId,
    Transform,
    TransformType,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
    encr_key_size,
    integ_key_size,
)

pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")

NONCE_I = bytes(range(32))
NONCE_R = bytes(range(100, 132))
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
SHA256 = Prf(PrfId.HMAC_SHA2_256)


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def prf_plus_256(key: bytes, seed: bytes, length: int) -> bytes:
    out, block, n = b"", b"", 1
    while len(out) < length:
        block = hmac256(key, block + seed + bytes([n]))
        out += block
        n += 1
    return out[:length]


@pytest.mark.parametrize("dh_id", [DhId.CURVE25519, DhId.ECP_256, DhId.MODP_2048])
@pytest.mark.parametrize(
    ("encr", "integ_id", "prf_id"),
    [
        (Transform(TransformType.ENCR, EncrId.AES_CBC, 128), IntegId.HMAC_SHA2_256_128, 5),
        (Transform(TransformType.ENCR, EncrId.AES_CBC, 256), IntegId.HMAC_SHA2_384_192, 6),
        (Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256), IntegId.NONE, 7),
        (Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305), IntegId.NONE, 5),
    ],
)
def test_both_sides_derive_the_same_keys(
    dh_id: DhId, encr: Transform, integ_id: IntegId, prf_id: int
) -> None:
    # IKE_SA_INIT: each side has its own key pair and sees the other's public value.
    group = DhGroup.of(dh_id)
    initiator, responder = group.generate(), group.generate()
    prf = Prf(prf_id)
    encr_len, integ_len = encr_key_size(encr), integ_key_size(integ_id)
    keys_i = derive_ike_sa_keys(
        prf,
        NONCE_I,
        NONCE_R,
        initiator.shared_secret(responder.public_bytes),
        SPI_I,
        SPI_R,
        encr_len,
        integ_len,
    )
    keys_r = derive_ike_sa_keys(
        prf,
        NONCE_I,
        NONCE_R,
        responder.shared_secret(initiator.public_bytes),
        SPI_I,
        SPI_R,
        encr_len,
        integ_len,
    )
    assert keys_i == keys_r
    assert len(keys_i.sk_d) == len(keys_i.sk_pi) == len(keys_i.sk_pr) == prf.key_size
    assert len(keys_i.sk_ai) == len(keys_i.sk_ar) == integ_len
    assert len(keys_i.sk_ei) == len(keys_i.sk_er) == encr_len
    # AEAD: no SK_a, and SK_e carries the 4-byte salt (RFC 5282 §7.1, RFC 7634 §2).
    if integ_id == IntegId.NONE:
        assert keys_i.sk_ai == b"" and len(keys_i.sk_ei) == encr_len
    assert len({keys_i.sk_d, keys_i.sk_pi, keys_i.sk_pr, keys_i.sk_ei, keys_i.sk_er}) == 5


def test_ike_sa_keys_by_hand() -> None:
    # aes128-sha256: SK_d 32 | SK_ai 32 | SK_ar 32 | SK_ei 16 | SK_er 16 | SK_pi 32 | SK_pr 32.
    g_ir = bytes(range(200, 232))
    keys = derive_ike_sa_keys(SHA256, NONCE_I, NONCE_R, g_ir, SPI_I, SPI_R, 16, 32)
    skeyseed = hmac256(NONCE_I + NONCE_R, g_ir)
    keymat = prf_plus_256(skeyseed, NONCE_I + NONCE_R + SPI_I + SPI_R, 192)
    assert keys.skeyseed == skeyseed
    assert keys.sk_d == keymat[0:32]
    assert keys.sk_ai == keymat[32:64]
    assert keys.sk_ar == keymat[64:96]
    assert keys.sk_ei == keymat[96:112]
    assert keys.sk_er == keymat[112:128]
    assert keys.sk_pi == keymat[128:160]
    assert keys.sk_pr == keymat[160:192]


def test_rekeyed_ike_sa_uses_old_prf_for_skeyseed_and_new_for_prf_plus() -> None:
    sk_d_old = b"\x11" * 32
    g_ir = b"\x22" * 56
    new_spi_i, new_spi_r = b"\x33" * 8, b"\x44" * 8
    prf_new = Prf(PrfId.HMAC_SHA2_512)
    keys = derive_rekeyed_ike_sa_keys(
        SHA256, sk_d_old, prf_new, g_ir, NONCE_I, NONCE_R, new_spi_i, new_spi_r, 36, 0
    )
    # RFC 7296 §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), old PRF.
    skeyseed = hmac256(sk_d_old, g_ir + NONCE_I + NONCE_R)
    assert keys.skeyseed == skeyseed
    keymat = prf_new.prf_plus(skeyseed, NONCE_I + NONCE_R + new_spi_i + new_spi_r, 64 * 3 + 72)
    assert keys.sk_d == keymat[:64]
    assert keys.sk_ei == keymat[64:100]
    assert keys.sk_er == keymat[100:136]
    assert keys.sk_pi == keymat[136:200]
    assert keys.sk_pr == keymat[200:264]


def test_child_sa_keys_order_without_pfs() -> None:
    # RFC 7296 §2.17: KEYMAT = prf+(SK_d, Ni | Nr); i->r encr, i->r integ, r->i encr,
    # r->i integ.
    sk_d = b"\x55" * 32
    keymat = prf_plus_256(sk_d, NONCE_I + NONCE_R, 2 * (16 + 32))
    material = derive_child_sa_keys(SHA256, sk_d, NONCE_I, NONCE_R, None, 16, 32)
    i_to_r, r_to_i = material
    assert i_to_r == ChildSaKeys(keymat[0:16], keymat[16:48])
    assert r_to_i == ChildSaKeys(keymat[48:64], keymat[64:96])
    assert material.outbound(initiator=True) is i_to_r
    assert material.inbound(initiator=True) is r_to_i
    assert material.outbound(initiator=False) is r_to_i
    assert material.inbound(initiator=False) is i_to_r


def test_child_sa_keys_with_pfs_and_aead() -> None:
    sk_d = b"\x66" * 32
    g_ir = b"\x77" * 32
    keymat = prf_plus_256(sk_d, g_ir + NONCE_I + NONCE_R, 2 * 20)
    i_to_r, r_to_i = derive_child_sa_keys(SHA256, sk_d, NONCE_I, NONCE_R, g_ir, 20, 0)
    assert i_to_r == ChildSaKeys(keymat[:20], b"")
    assert r_to_i == ChildSaKeys(keymat[20:], b"")
    # PFS changes the keys.
    assert derive_child_sa_keys(SHA256, sk_d, NONCE_I, NONCE_R, None, 20, 0)[0] != i_to_r


def test_reprs_show_no_key_bytes() -> None:
    keys = derive_ike_sa_keys(SHA256, NONCE_I, NONCE_R, b"\x01" * 32, SPI_I, SPI_R, 20, 0)
    text = repr(keys)
    assert text == "IkeSaKeys(sk_d=32B, sk_a=0B, sk_e=20B, sk_p=32B)"
    material = derive_child_sa_keys(SHA256, keys.sk_d, NONCE_I, NONCE_R, None, 36, 0)
    text += repr(material) + str(material) + repr(material[0])
    assert "ChildSaKeys(encr_key=36B, integ_key=0B)" in text
    for value in (keys.skeyseed, keys.sk_d, keys.sk_ei, keys.sk_pr, *material[0], *material[1]):
        if value:
            assert value.hex()[:8] not in text
            assert repr(value)[:12] not in text


def test_bad_arguments() -> None:
    with pytest.raises(IkeCryptoError) as info:
        derive_ike_sa_keys(SHA256, NONCE_I, NONCE_R, b"x", SPI_I[:4], SPI_R, 16, 32)
    assert str(info.value) == "IKE SPIs are 8 bytes, got 4 and 8"
    with pytest.raises(IkeCryptoError) as info:
        derive_child_sa_keys(SHA256, b"k", NONCE_I, NONCE_R, None, -1, 0)
    assert str(info.value) == "key lengths cannot be negative (encr -1, integ 0)"
