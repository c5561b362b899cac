"""IKEv1 keying (RFC 2409 §5, §5.4, §5.5, §5.7, Appendix B).

Known answers:

* NIST CAVS SP 800-135 IKEv1 samples as carried by NSS
  (gtests/common/testvectors/ike-sha1-vectors.h and ike-sha256-vectors.h, vectors 1-5):
  SKEYID for signatures and for a pre-shared key, then SKEYID_d, SKEYID_a, SKEYID_e.
* The Appendix B expansion vectors NSS generated for itself (same files, vectors 11-16):
  the cipher key stretched from SKEYID_e, and the Quick Mode KEYMAT chaining with the
  seed reduced to one zero octet.
* NIST SP 800-38A F.2.1/F.2.2 (AES-128-CBC) for the cipher.

Everything else is computed here field by field with `hmac` and `hashlib`.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from larval.crypto.dh import DhGroup
from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ikev1_keys import (
    Ikev1Cipher,
    Ikev1EncrId,
    Ikev1Prf,
    Phase1Keys,
    appendix_b_key,
    derive_phase1,
    hash1,
    hash2,
    hash3,
    hash_i,
    hash_r,
    ikev1_dh_group,
    informational_hash,
    informational_iv,
    pad,
    phase1_iv,
    phase2_iv,
    quick_mode_keymat,
    skeyid_psk,
    skeyid_sig,
)

pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")

x = bytes.fromhex

SHA1 = Ikev1Prf("sha1")
SHA256 = Ikev1Prf("sha256")
CKY_I = x("0011223344556677")
CKY_R = x("8899aabbccddeeff")
NI_B = bytes(range(16))
NR_B = bytes(range(100, 132))
G_XI = bytes(range(1, 129))
G_XR = bytes(range(128, 256))
G_XY = bytes(range(50, 178))


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


# -- Known answers: NIST CAVS via NSS ---------------------------------------------------

# (hash, Ni, Nr, g^xy, SKEYID, CKY-I, CKY-R, SKEYID_d, SKEYID_a, SKEYID_e): NSS vectors
# 1 (ikeGxy: SKEYID = prf(Ni | Nr, g^xy)) and 2-4 (ikeV1: the three children).
CAVS_SIG = [
    (
        "sha1",
        "69a62284195f1680",
        "80c94ba25c8abda5",
        "8ba4cbc73c0187301dc19a975823854dbd641c597f637f8d053a83b9514673eb",
        "707197817fb2d90cf54d1842606bdea59b9f4823",
        "8c3bcd3a69831d7f",
        "d2d9a7ff4fbe95a7",
        "384be709a8a5e63c3ed160cfe3921c4b37d5b32d",
        "48b327575abe3adba0f279849e289022a13e2b47",
        "a4a415c8e0c38c0da847c356cc61c24df8025560",
    ),
    (
        "sha256",
        "b1dee62505b47b223bae14ce7a5b757402ad1587511618d09f94950d47f1d8d4ce86aca12d78db"
        "9854d86019ad735757ae79d8932ac0c7db842c85060150ca875ea5d47e3cfcb2a05922ebb7959d"
        "49b9797a2289676ee79a1d9a18b790f87e4771ddaf4be3376057a553162f68fe429aca73b07234"
        "543801ba2122b1bde82251770d05df813cf556a11ca4dc43ffcb85a97dbed16e2fda6985e07e31"
        "be6364899e63c507c7c616e5eb7765a53560f76772de43918ba07badfe85244dcdcd917cb065af"
        "b60e3b7e68b54dd94bfc7c31c8b752892781ed3cc4b7f28fbc0ab9af908f5ae1f09f893f80100a"
        "7b3135993161b51fbba3bbb24b9f88c6147de82cd6f0",
        "f0acfef2ad1f7add0eaafda78c1cf1097d9fc91cb04a7c145069ac426fd164cbe661b1dd2df0fb"
        "84e19512181f0d8ea50b7860845f332757a8e56d2a3b7be436b5718a2d49baa996a4616684a208"
        "c2d611cd65e605dca6e3d3f116859b4410fe13679696bb2e23c08a40c7e1316d54b4c9c0286701"
        "c221151b3642cb4112ca1a53e0e597a7e29c634caed86ca3c31973d37b4c346134fd6784cd9991"
        "3feedf3d29d89a0a02a5a750f02f5738109dcc670bb27701fb59f78e83b76860c3fec079a1fc8c"
        "937ddb58ae7500422b7e49ce63759c65b6bc439381d56bcc159edede894b073841036ebfa050a5"
        "b3e7c876a3f18def26b1768a263ac66c9d83b680eb5e",
        "a1ff3dc6cf9b4c04709943cb4ca1f1789bcf360b03f1d027de3ae8ee039e9155",
        "750c5c94b9c2ec20b68033e024dadf0fa87e8b48c6561b21c72478451a06583d",
        "6c6beb72631ddc3d",
        "b84e24b22cffbd14",
        "a4f7ca7de913814813e3312099e7c943bd293483f387532330237f1b20957310",
        "1d4b705746c43b0a6fcbb8db33983c0f24ff6f8b6543e3779fed227c6067f004",
        "03e6f16cd9ce9f64b5cdc5b34cca7163483ba5389a30afebef3d14640b0a815e",
    ),
]


@pytest.mark.parametrize(
    ("hash_name", "ni", "nr", "gxy", "skeyid", "cky_i", "cky_r", "d", "a", "e"), CAVS_SIG
)
def test_cavs_signature_skeyid_and_children(
    hash_name: str,
    ni: str,
    nr: str,
    gxy: str,
    skeyid: str,
    cky_i: str,
    cky_r: str,
    d: str,
    a: str,
    e: str,
) -> None:
    prf = Ikev1Prf(hash_name)
    assert skeyid_sig(prf, x(ni), x(nr), x(gxy)) == x(skeyid)
    keys = derive_phase1(prf, x(skeyid), x(gxy), x(cky_i), x(cky_r), 16, 16, g_xi=G_XI, g_xr=G_XR)
    assert (keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e) == (
        x(skeyid),
        x(d),
        x(a),
        x(e),
    )


@pytest.mark.parametrize(
    ("hash_name", "psk", "ni", "nr", "skeyid"),
    [
        # NSS vector 5 (ikeV1Psk), SHA-1 and SHA-256.
        (
            "sha1",
            "c0",
            "03a6f25a83c8c2a3",
            "9d958a6618f77e7f",
            "ab3be41bc62f2ef0c41a3076d58768be77fadd2e",
        ),
        (
            "sha256",
            "a0",
            "ead9ced494868f41",
            "f1aff4f425a94f18",
            "558a99b299773d267cf7c8ef073bf3b7af362c206c75a538403c5ef884d4cace",
        ),
    ],
)
def test_cavs_psk_skeyid(hash_name: str, psk: str, ni: str, nr: str, skeyid: str) -> None:
    assert skeyid_psk(Ikev1Prf(hash_name), x(psk), x(ni), x(nr)) == x(skeyid)


NSS_SKEYID_E_SHA1 = x("63e81194946ebd05df7df5ebf5d8750056bf1f1d")
NSS_SKEYID_E_SHA256 = x("5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe")


@pytest.mark.parametrize(
    ("prf", "skeyid_e", "expected"),
    [
        # NSS vectors 11-13 (ikeV1AppB), SHA-1: stretched to 132 and 40, cut to 15.
        (
            SHA1,
            NSS_SKEYID_E_SHA1,
            "933347a07de5782247dd36d1562ffe0eecade1eb4134165257e3af1000af8ae3f165063828cbb6"
            "0d910b7db38fa3c7f62c4afaaf3203da065c841729853edb23e9e7ac8286ae65c8cb6c667d7926"
            "8c0bd6705abb9131698eb822b1c1f9dd142fc7be2c1010ee0152e10195add98999c6b6d42c8fe9"
            "c1b134d56ad5f2c6f20e815bd25c52",
        ),
        (
            SHA1,
            NSS_SKEYID_E_SHA1,
            "933347a07de5782247dd36d1562ffe0eecade1eb4134165257e3af1000af8ae3f165063828cbb60d",
        ),
        (SHA1, NSS_SKEYID_E_SHA1, "63e81194946ebd05df7df5ebf5d875"),
        # NSS vectors 11-13, SHA-256: stretched to 132, whole at 32, cut to 15.
        (
            SHA256,
            NSS_SKEYID_E_SHA256,
            "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af6b89494d2a360b"
            "06825db8bb0324c15cecf47fc0bc99e39bf1171a7f4bf1733dc49ef64c642e73b054b2e82456e3"
            "4fa3c822da475e27e403b3da3929da50e6aa9e7f9252c68fa069b4b0edd374e80d35378c4f5e8e"
            "c285a1b169c92bbb5353d05ba94165",
        ),
        (SHA256, NSS_SKEYID_E_SHA256, NSS_SKEYID_E_SHA256.hex()),
        (SHA256, NSS_SKEYID_E_SHA256, "5f00d1bd2c58ec224b1e6b71fa0f19"),
    ],
)
def test_nss_appendix_b_key(prf: Ikev1Prf, skeyid_e: bytes, expected: str) -> None:
    assert appendix_b_key(prf, skeyid_e, len(x(expected))) == x(expected)


@pytest.mark.parametrize(
    ("prf", "skeyid_d", "expected"),
    [
        # NSS vectors 14-16 (ikeV1AppBQuick): K1 = prf(K, seed), Kn+1 = prf(K, Kn | seed)
        # with seed = 0x00, which is KEYMAT for protocol 0 with empty SPI and nonces.
        (
            SHA1,
            NSS_SKEYID_E_SHA1,
            "933347a07de5782247dd36d1562ffe0eecade1ebaeaa476a5f578c34a9b2b7101a621202f61db9"
            "24c5ef9efa3bb2698095841603b7ac8a880329a927ecd4ad53a944b607a5ac2f3d154e2748c188"
            "d7370d76be83fc204fdacf0f66b99dd760ba619ffac65eda1420c8a936dac5a599afaf4043b29e"
            "f2b65dc042724355b550875316c6fd",
        ),
        (SHA1, NSS_SKEYID_E_SHA1, "933347a07de5782247dd36d1562ffe"),
        (
            SHA256,
            NSS_SKEYID_E_SHA256,
            "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af59f18ed9aabbb2"
            "dbbafecf48d72a34a8f72fab2ff4f37e5c917288a78ce00933612e9531a7469995c7f7cc33c762"
            "7cac3efbc819330c4fe3bfa3788799630f37bcb74800d82bbebd17b1906e304a786f4f810c266c"
            "15be1a30576039c293272748d65966",
        ),
        (
            SHA256,
            NSS_SKEYID_E_SHA256,
            "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af",
        ),
    ],
)
def test_nss_keymat_chaining(prf: Ikev1Prf, skeyid_d: bytes, expected: str) -> None:
    out = quick_mode_keymat(prf, skeyid_d, 0, b"", b"", b"", len(x(expected)))
    assert out == x(expected)


# -- Phase 1, by hand -------------------------------------------------------------------


def test_skeyid_psk_by_hand() -> None:
    psk = b"correct horse battery staple"
    assert skeyid_psk(SHA1, psk, NI_B, NR_B) == hmac_sha1(psk, NI_B + NR_B)


@pytest.mark.parametrize(
    ("hash_name", "digest"),
    [
        ("md5", "md5"),
        ("sha1", "sha1"),
        ("sha256", "sha256"),
        ("sha384", "sha384"),
        ("sha512", "sha512"),
    ],
)
def test_prf_and_hash_are_hmac_and_hash_of_the_negotiated_hash(hash_name: str, digest: str) -> None:
    prf = Ikev1Prf(hash_name)
    assert prf.prf(b"key", b"data") == hmac.new(b"key", b"data", digest).digest()
    assert prf.hash(b"data") == hashlib.new(digest, b"data").digest()
    assert prf.output_size == hashlib.new(digest).digest_size
    assert repr(prf) == f"Ikev1Prf({hash_name})"


def test_derive_phase1_by_hand_key_shorter_than_skeyid_e() -> None:
    skeyid = hmac_sha1(b"psk", NI_B + NR_B)
    keys = derive_phase1(SHA1, skeyid, G_XY, CKY_I, CKY_R, 16, 16, g_xi=G_XI, g_xr=G_XR)

    d = hmac_sha1(skeyid, G_XY + CKY_I + CKY_R + b"\x00")
    a = hmac_sha1(skeyid, d + G_XY + CKY_I + CKY_R + b"\x01")
    e = hmac_sha1(skeyid, a + G_XY + CKY_I + CKY_R + b"\x02")
    assert (
        keys
        == Phase1Keys(
            skeyid=skeyid,
            skeyid_d=d,
            skeyid_a=a,
            skeyid_e=e,
            enc_key=e[:16],  # SKEYID_e (20 bytes) is long enough for AES-128
            iv=hashlib.sha1(G_XI + G_XR).digest()[:16],
        )
    )


def test_derive_phase1_by_hand_key_longer_than_skeyid_e() -> None:
    # AES-256 or 3DES with SHA-1: 20 bytes of SKEYID_e do not make the key (Appendix B).
    skeyid = hmac_sha1(b"psk", NI_B + NR_B)
    for key_len, block in ((32, 16), (24, 8)):
        keys = derive_phase1(SHA1, skeyid, G_XY, CKY_I, CKY_R, key_len, block, g_xi=G_XI, g_xr=G_XR)
        k1 = hmac_sha1(keys.skeyid_e, b"\x00")
        k2 = hmac_sha1(keys.skeyid_e, k1)
        assert keys.enc_key == (k1 + k2)[:key_len]
        assert keys.iv == hashlib.sha1(G_XI + G_XR).digest()[:block]


def test_phase1_iv_uses_the_hash_not_the_prf() -> None:
    assert phase1_iv("sha256", G_XI, G_XR, 16) == hashlib.sha256(G_XI + G_XR).digest()[:16]
    assert phase1_iv("md5", G_XI, G_XR, 8) == hashlib.md5(G_XI + G_XR).digest()[:8]


def test_hash_i_and_hash_r_by_hand() -> None:
    skeyid = hmac_sha1(b"psk", NI_B + NR_B)
    sai_b = x("00000001000000010000002c01010001")
    idii_b = x("01000000c0000201")
    idir_b = x("01000000c0000202")
    got_i = hash_i(SHA1, skeyid, G_XI, G_XR, CKY_I, CKY_R, sai_b, idii_b)
    got_r = hash_r(SHA1, skeyid, G_XI, G_XR, CKY_I, CKY_R, sai_b, idir_b)
    assert got_i == hmac_sha1(skeyid, G_XI + G_XR + CKY_I + CKY_R + sai_b + idii_b)
    # §5: the responder's hash swaps g^x and the cookies, but keeps the initiator's SA.
    assert got_r == hmac_sha1(skeyid, G_XR + G_XI + CKY_R + CKY_I + sai_b + idir_b)
    assert got_r != hash_i(SHA1, skeyid, G_XI, G_XR, CKY_I, CKY_R, sai_b, idir_b)


# -- Phase 2 and Informational, by hand ---------------------------------------------------

SKEYID_A = bytes(range(200, 220))
SKEYID_D = bytes(range(220, 240))
MID = 0x9A3C5E71


def test_phase2_and_informational_ivs_by_hand() -> None:
    last_block = x("00112233445566778899aabbccddeeff")
    expected = hashlib.sha1(last_block + x("9a3c5e71")).digest()[:16]
    assert phase2_iv("sha1", last_block, MID) == expected
    assert informational_iv("sha1", last_block, MID) == expected
    # The M-ID is hashed as four big-endian octets, leading zeros kept.
    assert (
        phase2_iv("sha1", last_block[:8], 1)
        == (hashlib.sha1(last_block[:8] + x("00000001")).digest()[:8])
    )


def test_quick_mode_hashes_by_hand() -> None:
    after_hash1 = x("0a000034") + bytes(48) + x("0000001c") + NI_B  # SA | Ni, headers kept
    after_hash2 = x("0a000034") + bytes(48) + x("00000024") + NR_B
    assert hash1(SHA1, SKEYID_A, MID, after_hash1) == hmac_sha1(
        SKEYID_A, x("9a3c5e71") + after_hash1
    )
    assert hash2(SHA1, SKEYID_A, MID, NI_B, after_hash2) == hmac_sha1(
        SKEYID_A, x("9a3c5e71") + NI_B + after_hash2
    )
    assert hash3(SHA1, SKEYID_A, MID, NI_B, NR_B) == hmac_sha1(
        SKEYID_A, b"\x00" + x("9a3c5e71") + NI_B + NR_B
    )
    notify = x("0000000c000000010100000e")
    assert informational_hash(SHA1, SKEYID_A, MID, notify) == hmac_sha1(
        SKEYID_A, x("9a3c5e71") + notify
    )


def test_keymat_by_hand_without_and_with_pfs() -> None:
    spi = x("c0ffee01")
    seed = b"\x03" + spi + NI_B + NR_B  # PROTO_IPSEC_ESP = 3
    k1 = hmac_sha1(SKEYID_D, seed)
    k2 = hmac_sha1(SKEYID_D, k1 + seed)
    k3 = hmac_sha1(SKEYID_D, k2 + seed)
    assert quick_mode_keymat(SHA1, SKEYID_D, 3, spi, NI_B, NR_B, 52) == (k1 + k2 + k3)[:52]
    assert quick_mode_keymat(SHA1, SKEYID_D, 3, spi, NI_B, NR_B, 20) == k1

    g_qm = bytes(range(7, 135))
    pfs_seed = g_qm + seed
    p1 = hmac_sha1(SKEYID_D, pfs_seed)
    p2 = hmac_sha1(SKEYID_D, p1 + pfs_seed)
    got = quick_mode_keymat(SHA1, SKEYID_D, 3, spi, NI_B, NR_B, 36, g_qm_xy=g_qm)
    assert got == (p1 + p2)[:36]


def test_keymat_is_per_direction_by_spi() -> None:
    # Initiator chose SPI 0x1111 for its inbound SA, responder 0x2222 for its own.
    spi_i, spi_r = x("00001111"), x("00002222")
    ini_in = quick_mode_keymat(SHA1, SKEYID_D, 3, spi_i, NI_B, NR_B, 36)
    ini_out = quick_mode_keymat(SHA1, SKEYID_D, 3, spi_r, NI_B, NR_B, 36)
    res_in = quick_mode_keymat(SHA1, SKEYID_D, 3, spi_r, NI_B, NR_B, 36)
    res_out = quick_mode_keymat(SHA1, SKEYID_D, 3, spi_i, NI_B, NR_B, 36)
    assert ini_out == res_in
    assert res_out == ini_in
    assert ini_in != ini_out
    # AH and ESP under the same SPI still differ: the protocol octet is in the seed.
    assert quick_mode_keymat(SHA1, SKEYID_D, 2, spi_i, NI_B, NR_B, 36) != ini_in


# -- The cipher ------------------------------------------------------------------------

# NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt) and F.2.2 (Decrypt).
SP800_38A_KEY = x("2b7e151628aed2a6abf7158809cf4f3c")
SP800_38A_IV = x("000102030405060708090a0b0c0d0e0f")
SP800_38A_PT = x(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
SP800_38A_CT = x(
    "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
    "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"
)


def test_aes_cbc_known_answer_and_chained_iv() -> None:
    cipher = Ikev1Cipher(Ikev1EncrId.AES_CBC, SP800_38A_KEY)
    ct, next_iv = cipher.encrypt(SP800_38A_PT, SP800_38A_IV)
    assert ct == SP800_38A_CT
    assert next_iv == SP800_38A_CT[-16:]
    pt, next_iv2 = cipher.decrypt(SP800_38A_CT, SP800_38A_IV)
    assert (pt, next_iv2) == (SP800_38A_PT, SP800_38A_CT[-16:])


@pytest.mark.parametrize(
    ("encr_id", "key_len"),
    [
        (Ikev1EncrId.AES_CBC, 16),
        (Ikev1EncrId.AES_CBC, 24),
        (Ikev1EncrId.AES_CBC, 32),
        (Ikev1EncrId.TDES_CBC, 24),
    ],
)
def test_messages_chain_their_ivs(encr_id: Ikev1EncrId, key_len: int) -> None:
    cipher = Ikev1Cipher(encr_id, bytes(range(key_len)))
    block = cipher.block_size
    assert block == Ikev1Cipher.block_size_of(encr_id)
    assert cipher.key_size == key_len
    iv0 = bytes(range(block))
    messages = [pad(b"message five", block), pad(b"message six, a little longer", block)]

    # Sender: each message's IV is the last ciphertext block of the message before.
    iv = iv0
    sent = []
    for m in messages:
        ct, iv = cipher.encrypt(m, iv)
        assert iv == ct[-block:]
        sent.append(ct)
    # The chain is one CBC stream cut at message boundaries (Appendix B).
    whole, _ = cipher.encrypt(b"".join(messages), iv0)
    assert b"".join(sent) == whole

    # Receiver: same chain, same plaintexts, padding left in place.
    iv = iv0
    for m, ct in zip(messages, sent, strict=True):
        pt, iv = cipher.decrypt(ct, iv)
        assert pt == m
    assert iv == sent[-1][-block:]


def test_empty_message_keeps_the_iv() -> None:
    cipher = Ikev1Cipher(Ikev1EncrId.AES_CBC, bytes(16))
    assert cipher.encrypt(b"", bytes(range(16))) == (b"", bytes(range(16)))


def test_pad() -> None:
    assert pad(b"", 16) == b""
    assert pad(b"abc", 8) == b"abc" + bytes(5)
    assert pad(bytes(16), 16) == bytes(16)
    assert pad(bytes(17), 16) == bytes(32)
    with pytest.raises(IkeCryptoError, match="block size must be positive"):
        pad(b"abc", 0)


def test_cipher_rejects_bad_inputs() -> None:
    with pytest.raises(IkeCryptoError, match="AES-CBC keys are 16, 24 or 32 bytes, got 15"):
        Ikev1Cipher(Ikev1EncrId.AES_CBC, bytes(15))
    with pytest.raises(IkeCryptoError, match="3DES-CBC keys are 24 bytes, got 16"):
        Ikev1Cipher(Ikev1EncrId.TDES_CBC, bytes(16))
    with pytest.raises(IkeCryptoError, match="unsupported IKEv1 encryption algorithm 1"):
        Ikev1Cipher(1, bytes(8))  # DES-CBC
    with pytest.raises(IkeCryptoError, match="unsupported IKEv1 encryption algorithm 3"):
        Ikev1Cipher.block_size_of(3)
    cipher = Ikev1Cipher(Ikev1EncrId.AES_CBC, bytes(16))
    with pytest.raises(IkeCryptoError, match="AES_CBC IV must be 16 bytes, got 8"):
        cipher.encrypt(bytes(16), bytes(8))
    with pytest.raises(IkeCryptoError, match="AES_CBC ciphertext of 20 bytes is not a whole"):
        cipher.decrypt(bytes(20), bytes(16))
    with pytest.raises(IkeCryptoError, match="AES_CBC plaintext of 5 bytes"):
        cipher.encrypt(b"hello", bytes(16))


def test_reprs_show_no_key_bytes() -> None:
    key = bytes.fromhex("a5" * 32)
    cipher = Ikev1Cipher(Ikev1EncrId.AES_CBC, key)
    assert repr(cipher) == "Ikev1Cipher(AES_CBC, key=32 bytes)"
    keys = derive_phase1(SHA1, key, G_XY, CKY_I, CKY_R, 32, 16, g_xi=G_XI, g_xr=G_XR)
    text = repr(keys)
    assert text == (
        "Phase1Keys(skeyid=32B, skeyid_d=20B, skeyid_a=20B, skeyid_e=20B, enc_key=32B, iv=16B)"
    )
    for secret in (keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e, keys.enc_key):
        assert secret.hex() not in text
        assert repr(secret) not in text
    assert "a5a5" not in repr(cipher) + str(cipher)


# -- Errors ------------------------------------------------------------------------------


def test_errors() -> None:
    with pytest.raises(IkeCryptoError, match="unsupported IKEv1 hash 'tiger'"):
        Ikev1Prf("tiger")
    with pytest.raises(IkeCryptoError, match="ISAKMP cookies are 8 bytes, got 4 and 8"):
        derive_phase1(SHA1, b"k", G_XY, CKY_I[:4], CKY_R, 16, 16, g_xi=G_XI, g_xr=G_XR)
    with pytest.raises(IkeCryptoError, match="ISAKMP cookies are 8 bytes, got 8 and 9"):
        hash_i(SHA1, b"k", G_XI, G_XR, CKY_I, CKY_R + b"\0", b"", b"")
    with pytest.raises(IkeCryptoError, match="message id 4294967296 does not fit four octets"):
        hash3(SHA1, SKEYID_A, 1 << 32, NI_B, NR_B)
    with pytest.raises(IkeCryptoError, match="message id -1"):
        phase2_iv("sha1", bytes(16), -1)
    with pytest.raises(IkeCryptoError, match="the last Phase 1 CBC block is empty"):
        phase2_iv("sha1", b"", 1)
    with pytest.raises(IkeCryptoError, match="an IV of 32 bytes cannot be cut from a 20-byte"):
        phase1_iv("sha1", G_XI, G_XR, 32)
    with pytest.raises(IkeCryptoError, match="cannot produce -1 bytes"):
        quick_mode_keymat(SHA1, SKEYID_D, 3, bytes(4), NI_B, NR_B, -1)
    with pytest.raises(IkeCryptoError, match="cannot produce -1 bytes"):
        appendix_b_key(SHA1, SKEYID_D, -1)
    with pytest.raises(IkeCryptoError, match="protocol id 256 does not fit one octet"):
        quick_mode_keymat(SHA1, SKEYID_D, 256, bytes(4), NI_B, NR_B, 16)


# -- Diffie-Hellman groups ---------------------------------------------------------------


def _pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits) by Machin's formula in integers, with 64 guard bits."""
    guard = bits + 64
    one = 1 << guard

    def arctan_inv(n: int) -> int:
        total = term = one // n
        k, sign = 1, -1
        while term:
            term //= n * n
            k += 2
            total += sign * (term // k)
            sign = -sign
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> 64


@pytest.mark.parametrize(
    ("group_id", "bits", "pi_bits", "offset"),
    [
        (2, 1024, 894, 129093),  # RFC 2409 §6.2
        (5, 1536, 1406, 741804),  # RFC 3526 §2
    ],
)
def test_legacy_modp_groups(group_id: int, bits: int, pi_bits: int, offset: int) -> None:
    group = ikev1_dh_group(group_id)
    assert group is ikev1_dh_group(group_id)
    # The prime as the RFCs define it: 2^n - 2^(n-64) - 1 + 2^64 * ([2^m pi] + offset).
    prime = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_fixed(pi_bits) + offset)
    assert group.prime == prime  # type: ignore[attr-defined]
    assert group.public_size == group.secret_size == bits // 8

    a = group.from_private(bytes.fromhex("0f" * 32))
    b = group.from_private(bytes.fromhex("3c" * 32))
    assert a.public_bytes == pow(2, int.from_bytes(bytes.fromhex("0f" * 32)), prime).to_bytes(
        bits // 8, "big"
    )
    assert a.shared_secret(b.public_bytes) == b.shared_secret(a.public_bytes)
    # RFC 6989 §2.1 checks come with the MODP machinery.
    with pytest.raises(IkeCryptoError, match="out of range"):
        a.shared_secret((1).to_bytes(bits // 8, "big"))


@pytest.mark.parametrize("group_id", [14, 15, 19, 20, 21])
def test_shared_groups_are_ikev2s(group_id: int) -> None:
    assert ikev1_dh_group(group_id) is DhGroup.of(group_id)


@pytest.mark.parametrize("group_id", [1, 22, 31])
def test_other_groups_are_refused(group_id: int) -> None:
    with pytest.raises(IkeCryptoError, match=f"unsupported IKEv1 Diffie-Hellman group {group_id}"):
        ikev1_dh_group(group_id)


# -- A whole key schedule, both ends, injected values --------------------------------------


def _main_mode_psk(group_id: int, hash_name: str) -> tuple[Phase1Keys, Phase1Keys, bytes]:
    prf = Ikev1Prf(hash_name)
    group = ikev1_dh_group(group_id)
    initiator = group.from_private(bytes.fromhex("5a" * 32))
    responder = group.from_private(bytes.fromhex("a5" * 32))
    g_xi, g_xr = initiator.public_bytes, responder.public_bytes
    psk = b"shared secret"
    block = Ikev1Cipher.block_size_of(Ikev1EncrId.AES_CBC)

    ends = []
    for me, peer_public in ((initiator, g_xr), (responder, g_xi)):
        g_xy = me.shared_secret(peer_public)
        skeyid = skeyid_psk(prf, psk, NI_B, NR_B)
        ends.append(derive_phase1(prf, skeyid, g_xy, CKY_I, CKY_R, 32, block, g_xi=g_xi, g_xr=g_xr))
    keys_i, keys_r = ends

    # MM5 from the initiator, then the first Quick Mode message, both AES-256-CBC.
    cipher = Ikev1Cipher(Ikev1EncrId.AES_CBC, keys_i.enc_key)
    mm5, last_block = cipher.encrypt(pad(b"IDii | HASH_I", block), keys_i.iv)
    qm_iv = phase2_iv(hash_name, last_block, MID)
    qm1, _ = cipher.encrypt(pad(b"HASH(1) | SA | Ni", block), qm_iv)
    return keys_i, keys_r, mm5 + qm1


@pytest.mark.parametrize(("group_id", "hash_name"), [(2, "sha1"), (14, "sha256"), (19, "sha1")])
def test_both_ends_agree_and_runs_repeat(group_id: int, hash_name: str) -> None:
    keys_i, keys_r, wire = _main_mode_psk(group_id, hash_name)
    assert keys_i == keys_r
    assert len(keys_i.enc_key) == 32
    again_i, _, again_wire = _main_mode_psk(group_id, hash_name)
    assert again_i == keys_i
    assert again_wire == wire
