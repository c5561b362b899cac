"""SK payload protection: every ENCR x INTEG pair round-trips, refuses tampering, and is
checked against the primitives composed by hand (RFC 7296 §3.14, RFC 5282, RFC 7634)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from larval.crypto.ike import (
    EncrId,
    IkeCryptoError,
    IkeIntegrityError,
    IntegId,
    SkCipher,
    Transform,
    TransformType,
    encr_key_size,
    integ_icv_size,
    integ_key_size,
)


def encr(encr_id: EncrId, bits: int | None = None) -> Transform:
    return Transform(TransformType.ENCR, encr_id, bits)


CBC = [encr(EncrId.AES_CBC, bits) for bits in (128, 192, 256)]
HMACS = [IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256]
AEADS = [
    encr(encr_id, bits)
    for encr_id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16)
    for bits in (128, 192, 256)
] + [encr(EncrId.CHACHA20_POLY1305)]
COMBINATIONS = [(e, i) for e in CBC for i in HMACS] + [(e, IntegId.NONE) for e in AEADS]
IDS = [f"{EncrId(e.id).name}-{e.key_bits}-{i.name}" for e, i in COMBINATIONS]

# An IKE header (28 bytes) and an SK payload header (4 bytes): everything before the IV.
AAD = bytes.fromhex("00112233445566778899aabbccddeeff2e20250800000001000000ff")
AAD += bytes.fromhex("230000df")


def make(encr: Transform, integ_id: IntegId, seed: int = 1) -> tuple[SkCipher, bytes, bytes]:
    encr_key = bytes((seed + n) % 256 for n in range(encr_key_size(encr)))
    integ_key = bytes((seed * 7 + n) % 256 for n in range(integ_key_size(integ_id)))
    return SkCipher.of(encr, integ_id, encr_key, integ_key), encr_key, integ_key


@pytest.mark.parametrize(("encr", "integ_id"), COMBINATIONS, ids=IDS)
@pytest.mark.parametrize("length", [0, 1, 14, 15, 16, 17, 100])
def test_round_trip(encr: Transform, integ_id: IntegId, length: int) -> None:
    sender, _, _ = make(encr, integ_id)
    receiver, _, _ = make(encr, integ_id)
    plaintext = os.urandom(length)
    body = sender.encrypt(plaintext, AAD)
    assert len(body) == length + sender.overhead(length)
    assert (len(body) - sender.iv_size - sender.icv_size) % sender.block_size == 0
    assert receiver.decrypt(body, AAD) == plaintext


@pytest.mark.parametrize(("encr", "integ_id"), COMBINATIONS, ids=IDS)
def test_tampering_is_refused(encr: Transform, integ_id: IntegId) -> None:
    cipher, _, _ = make(encr, integ_id)
    body = cipher.encrypt(b"IDi AUTH SA TSi TSr" * 3, AAD)
    # A flipped bit anywhere: header, SK header, IV, ciphertext, ICV.
    for where in (0, 20, len(AAD) - 1):
        bad_aad = bytearray(AAD)
        bad_aad[where] ^= 0x01
        with pytest.raises(IkeIntegrityError):
            cipher.decrypt(body, bytes(bad_aad))
    for where in (0, cipher.iv_size, len(body) // 2, len(body) - cipher.icv_size, len(body) - 1):
        bad = bytearray(body)
        bad[where] ^= 0x80
        with pytest.raises(IkeIntegrityError):
            cipher.decrypt(bytes(bad), AAD)
    # Truncated or extended bodies.
    for bad_body in (body[:-1], body + b"\x00", body[: cipher.iv_size + cipher.icv_size], b""):
        with pytest.raises(IkeIntegrityError):
            cipher.decrypt(bad_body, AAD)
    # Another key.
    other, _, _ = make(encr, integ_id, seed=2)
    with pytest.raises(IkeIntegrityError):
        other.decrypt(body, AAD)


@pytest.mark.parametrize(("encr", "integ_id"), COMBINATIONS, ids=IDS)
def test_sizes_and_overhead(encr: Transform, integ_id: IntegId) -> None:
    cipher, _, _ = make(encr, integ_id)
    if integ_id == IntegId.NONE:
        want_icv = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12}.get(EncrId(encr.id), 16)
        assert (cipher.iv_size, cipher.icv_size, cipher.block_size) == (8, want_icv, 1)
        assert cipher.overhead(37) == 8 + 1 + want_icv
    else:
        assert (cipher.iv_size, cipher.block_size) == (16, 16)
        assert cipher.icv_size == integ_icv_size(integ_id)
        # 37 + Pad Length = 38 -> 10 padding octets make 48.
        assert cipher.overhead(37) == 16 + 10 + 1 + cipher.icv_size
        assert cipher.overhead(15) == 16 + 0 + 1 + cipher.icv_size


@pytest.mark.parametrize("integ_id", HMACS)
def test_cbc_hmac_by_hand(integ_id: IntegId) -> None:
    transform = encr(EncrId.AES_CBC, 128)
    cipher, encr_key, integ_key = make(transform, integ_id)
    iv = bytes(range(16))
    plaintext = b"\x29\x00\x00\x0c\x01\x00\x00\x00\xc0\x00\x02\x01"  # IDi payload
    body = cipher.encrypt(plaintext, AAD, iv)
    assert body == cipher.encrypt(plaintext, AAD, iv)  # deterministic given the IV
    icv_size = integ_icv_size(integ_id)
    assert body[:16] == iv
    ciphertext, icv = body[16:-icv_size], body[-icv_size:]
    hash_fn = {12: hashlib.sha256, 13: hashlib.sha384, 14: hashlib.sha512}[integ_id]
    # ICV = HMAC over IKE header .. end of ciphertext, truncated (RFC 7296 §3.14).
    assert icv == hmac.new(integ_key, AAD + iv + ciphertext, hash_fn).digest()[:icv_size]
    decryptor = Cipher(algorithms.AES(encr_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    # 12 octets + 3 of padding + Pad Length 3 = one block.
    assert padded == plaintext + b"\x00\x00\x00\x03"


@pytest.mark.parametrize("transform", AEADS, ids=lambda t: f"{t.id.name}-{t.key_bits}")
def test_aead_by_hand(transform: Transform) -> None:
    cipher, encr_key, _ = make(transform, IntegId.NONE)
    iv = bytes.fromhex("1011121314151617")
    plaintext = b"payloads"
    body = cipher.encrypt(plaintext, AAD, iv)
    key, salt = encr_key[:-4], encr_key[-4:]
    # nonce = salt | IV; AAD = everything before the IV; Pad Length 0 (RFC 5282 §3, §5.1).
    if transform.id == EncrId.CHACHA20_POLY1305:
        sealed = ChaCha20Poly1305(key).encrypt(salt + iv, plaintext + b"\x00", AAD)
    else:
        sealed = AESGCM(key).encrypt(salt + iv, plaintext + b"\x00", AAD)
    # A shortened GCM ICV is the leading octets of the full tag.
    assert body == iv + sealed[: len(plaintext) + 1 + cipher.icv_size]


def test_aead_ivs_never_repeat() -> None:
    cipher, _, _ = make(encr(EncrId.AES_GCM_16, 128), IntegId.NONE)
    ivs = [cipher.encrypt(b"x", AAD)[:8] for _ in range(50)]
    assert len(set(ivs)) == 50
    first = int.from_bytes(ivs[0], "big")
    assert [int.from_bytes(iv, "big") for iv in ivs] == [(first + n) % (1 << 64) for n in range(50)]


@pytest.mark.parametrize(("encr", "integ_id"), COMBINATIONS, ids=IDS)
def test_a_cipher_made_again_from_its_keys_and_iv_counter_carries_on(
    encr: Transform, integ_id: IntegId
) -> None:
    # An IKE SA written out as a value and restored (larval.ike.state): the keys it was
    # made with, and an AEAD's IV counter, which goes on where it stopped (RFC 5282 §3.1).
    old, encr_key, integ_key = make(encr, integ_id)
    assert old.keys == (encr_key, integ_key)
    old.encrypt(b"x", AAD)
    again = SkCipher.of(encr, integ_id, *old.keys, next_iv=old.next_iv)
    assert again.keys == old.keys and again.next_iv == old.next_iv
    body = again.encrypt(b"carried on", AAD)
    assert old.decrypt(body, AAD) == b"carried on"
    if old.next_iv is None:  # CBC: every IV drawn at random
        assert again.iv_size == 16
        return
    assert body[:8] == old.next_iv.to_bytes(8, "big") and again.next_iv == old.next_iv + 1
    assert old.encrypt(b"y", AAD)[:8] == body[:8]  # the old one must not go on too
    with pytest.raises(IkeCryptoError, match="an AEAD IV counter is 64 bits"):
        SkCipher.of(encr, integ_id, *old.keys, next_iv=1 << 64)


def test_any_padding_is_accepted() -> None:
    # RFC 7296 §3.14: the receiver accepts any Padding that aligns, whatever its value.
    transform = encr(EncrId.AES_CBC, 128)
    cipher, encr_key, integ_key = make(transform, IntegId.HMAC_SHA2_256_128)
    iv = b"\x42" * 16
    padded = b"hello" + b"\xaa" * 26 + bytes([26])
    encryptor = Cipher(algorithms.AES(encr_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    icv = hmac.new(integ_key, AAD + iv + ciphertext, hashlib.sha256).digest()[:16]
    assert cipher.decrypt(iv + ciphertext + icv, AAD) == b"hello"


def test_bad_pad_length_with_good_icv() -> None:
    transform = encr(EncrId.AES_CBC, 128)
    cipher, encr_key, integ_key = make(transform, IntegId.HMAC_SHA2_256_128)
    iv = b"\x42" * 16
    padded = b"\x00" * 15 + b"\xff"  # Pad Length 255 in a 16-byte plaintext
    encryptor = Cipher(algorithms.AES(encr_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    icv = hmac.new(integ_key, AAD + iv + ciphertext, hashlib.sha256).digest()[:16]
    with pytest.raises(IkeIntegrityError) as info:
        cipher.decrypt(iv + ciphertext + icv, AAD)
    assert str(info.value) == "SK payload Pad Length 255 exceeds the 16-byte plaintext"

    gcm, gcm_key, _ = make(encr(EncrId.AES_GCM_16, 128), IntegId.NONE)
    sealed = AESGCM(gcm_key[:-4]).encrypt(gcm_key[-4:] + iv[:8], b"ab\x03", AAD)
    with pytest.raises(IkeIntegrityError) as info:
        gcm.decrypt(iv[:8] + sealed, AAD)
    assert str(info.value) == "SK payload Pad Length 3 exceeds the 3-byte plaintext"


def test_error_messages() -> None:
    cbc, _, _ = make(encr(EncrId.AES_CBC, 128), IntegId.HMAC_SHA2_256_128)
    with pytest.raises(IkeIntegrityError) as info:
        cbc.decrypt(b"\x00" * 47, AAD)
    assert str(info.value) == (
        "SK payload body of 47 bytes does not hold a 16-byte IV, whole 16-byte blocks "
        "and a 16-byte ICV"
    )
    with pytest.raises(IkeIntegrityError) as info:
        cbc.decrypt(b"\x00" * 48, AAD)
    assert str(info.value) == "SK payload ICV (HMAC_SHA2_256_128) does not verify"
    gcm, _, _ = make(encr(EncrId.AES_GCM_8, 256), IntegId.NONE)
    with pytest.raises(IkeIntegrityError) as info:
        gcm.decrypt(b"\x00" * 16, AAD)
    assert str(info.value) == (
        "SK payload body of 16 bytes does not hold a 8-byte IV, a Pad Length octet and a 8-byte ICV"
    )
    with pytest.raises(IkeIntegrityError) as info:
        gcm.decrypt(b"\x00" * 17, AAD)
    assert str(info.value) == (
        "SK payload tag (Transform(ENCR, AES_GCM_8, key_bits=256)) does not verify"
    )
    with pytest.raises(IkeCryptoError) as crypto_info:
        gcm.encrypt(b"", AAD, iv=b"\x00" * 16)
    assert str(crypto_info.value) == "AEAD IV must be 8 bytes, got 16"
    with pytest.raises(IkeCryptoError) as crypto_info:
        cbc.encrypt(b"", AAD, iv=b"\x00" * 8)
    assert str(crypto_info.value) == "AES-CBC IV must be 16 bytes, got 8"


@pytest.mark.parametrize(
    ("transform", "integ_id", "encr_len", "integ_len", "message"),
    [
        (
            encr(EncrId.AES_GCM_16, 128),
            IntegId.HMAC_SHA2_256_128,
            20,
            32,
            "AEAD Transform(ENCR, AES_GCM_16, key_bits=128) takes no integrity algorithm, "
            "got HMAC_SHA2_256_128",
        ),
        (
            encr(EncrId.AES_GCM_16, 128),
            IntegId.NONE,
            20,
            32,
            "AEAD Transform(ENCR, AES_GCM_16, key_bits=128) takes no SK_a, got 32 bytes",
        ),
        (
            encr(EncrId.AES_CBC, 128),
            IntegId.NONE,
            16,
            0,
            "Transform(ENCR, AES_CBC, key_bits=128) needs an integrity algorithm",
        ),
        (
            encr(EncrId.NULL),
            IntegId.HMAC_SHA2_256_128,
            0,
            32,
            "ENCR_NULL gives no confidentiality and is for ESP only",
        ),
        (
            encr(EncrId.AES_CBC, 256),
            IntegId.HMAC_SHA2_256_128,
            16,
            32,
            "Transform(ENCR, AES_CBC, key_bits=256) needs 32 bytes of SK_e, got 16",
        ),
        (
            encr(EncrId.CHACHA20_POLY1305),
            IntegId.NONE,
            32,
            0,
            "Transform(ENCR, CHACHA20_POLY1305) needs 36 bytes of SK_e, got 32",
        ),
        (
            encr(EncrId.AES_CBC, 128),
            IntegId.HMAC_SHA2_512_256,
            16,
            32,
            "HMAC_SHA2_512_256 needs 64 bytes of SK_a, got 32",
        ),
        (
            encr(EncrId.AES_CBC, 128),
            IntegId(2),
            16,
            20,
            "unsupported integrity algorithm UNKNOWN_2",
        ),
        (
            Transform(TransformType.PRF, 5),
            IntegId.NONE,
            0,
            0,
            "Transform(PRF, HMAC_SHA2_256) is not an encryption transform",
        ),
    ],
)
def test_refused_combinations(
    transform: Transform, integ_id: IntegId, encr_len: int, integ_len: int, message: str
) -> None:
    with pytest.raises(IkeCryptoError) as info:
        SkCipher.of(transform, integ_id, b"\x01" * encr_len, b"\x02" * integ_len)
    assert str(info.value) == message


def test_repr_shows_no_key() -> None:
    cipher, encr_key, integ_key = make(encr(EncrId.AES_CBC, 256), IntegId.HMAC_SHA2_384_192)
    text = repr(cipher) + str(cipher)
    assert repr(cipher) == "SkCipher(Transform(ENCR, AES_CBC, key_bits=256), HMAC_SHA2_384_192)"
    assert encr_key.hex()[:8] not in text and integ_key.hex()[:8] not in text
