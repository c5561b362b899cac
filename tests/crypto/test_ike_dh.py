"""Diffie-Hellman groups: RFC 5903 §8 and RFC 7748 §6 known answers, round trips for
every group, the KE encodings and the peer values that must be refused."""

from __future__ import annotations

import pytest

from larval.crypto.dh import _MODP_2048, _MODP_3072
from larval.crypto.ike import DhGroup, DhId, IkeCryptoError

# cryptography deprecates finite-field DH; MODP groups 14 and 15 still have to work.
pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")

ALL_GROUPS = [
    (DhId.MODP_2048, 256, 256),
    (DhId.MODP_3072, 384, 384),
    (DhId.ECP_256, 64, 32),
    (DhId.ECP_384, 96, 48),
    (DhId.ECP_521, 132, 66),
    (DhId.CURVE25519, 32, 32),
    (DhId.CURVE448, 56, 56),
]

# RFC 5903 §8.1-§8.3: i, g^i = gix | giy, r, g^r = grx | gry, and girx (the shared
# secret; girx | giry is the product point, of which IKE uses the x coordinate).
RFC5903 = [
    (
        DhId.ECP_256,
        "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
        "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180"
        "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
        "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
        "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63"
        "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
        "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
    ),
    (
        DhId.ECP_384,
        "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655"
        "e35b538041e649ee3faef896783ab194",
        "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6"
        "de3ac808acb4bdb4c88732aee95f41aa"
        "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38e"
        "eb9fcff3c2c947dae69b4c634573a81c",
        "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942"
        "e0308312916b8ed2960e4bd55a7448fc",
        "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d"
        "0d1ac43a0336def96fda41d0774a3571"
        "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1ff"
        "f83fa40142209dff5eaad96db9e6386c",
        "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4"
        "d603135569b9e9d09cf5d4a270f59746",
    ),
    (
        DhId.ECP_521,
        "0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a0"
        "95aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d"
        "4a52",
        "0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbe"
        "e1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4601723c4195d176c"
        "ed3e"
        "017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10a"
        "d8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f1507438bf01beb6ca3926f"
        "9582",
        "0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e"
        "9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb15168"
        "5eb9",
        "00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a21"
        "9b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433ced2b6171640012d9"
        "460f"
        "015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87"
        "220b6536c5c408a1d2aebb8e86d678ae49cb57091f4732296579ab44fcd17f0f"
        "c56a",
        "01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04"
        "d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3"
        "ddea",
    ),
]

# RFC 7748 §6.1 (X25519) and §6.2 (X448): a, K_A, b, K_B, K.
RFC7748 = [
    (
        DhId.CURVE25519,
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
    ),
    (
        DhId.CURVE448,
        "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
        "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b",
        "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c"
        "22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0",
        "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d"
        "6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d",
        "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b430"
        "27d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609",
        "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
        "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d",
    ),
]


@pytest.mark.parametrize(("dh_id", "i", "g_i", "r", "g_r", "g_ir"), RFC5903 + RFC7748)
def test_known_answers(dh_id: DhId, i: str, g_i: str, r: str, g_r: str, g_ir: str) -> None:
    group = DhGroup.of(dh_id)
    initiator = group.from_private(bytes.fromhex(i))
    responder = group.from_private(bytes.fromhex(r))
    assert initiator.public_bytes.hex() == g_i
    assert responder.public_bytes.hex() == g_r
    assert initiator.shared_secret(responder.public_bytes).hex() == g_ir
    assert responder.shared_secret(initiator.public_bytes).hex() == g_ir


@pytest.mark.parametrize(("dh_id", "public_size", "secret_size"), ALL_GROUPS)
def test_round_trip(dh_id: DhId, public_size: int, secret_size: int) -> None:
    group = DhGroup.of(dh_id)
    assert DhGroup.of(int(dh_id)) is group
    assert (group.public_size, group.secret_size) == (public_size, secret_size)
    a, b = group.generate(), group.generate()
    assert len(a.public_bytes) == public_size
    assert a.public_bytes != b.public_bytes
    secret = a.shared_secret(b.public_bytes)
    assert len(secret) == secret_size
    assert secret == b.shared_secret(a.public_bytes)


@pytest.mark.parametrize("prime", [_MODP_2048, _MODP_3072])
def test_modp_primes_are_rfc3526_safe_primes(prime: int) -> None:
    # RFC 3526: p = 2q + 1 with the top and bottom 64 bits set; 2 generates the
    # subgroup of order q, so 2^q = 1 (mod p); and a Fermat witness.
    assert prime >> (prime.bit_length() - 64) == (1 << 64) - 1
    assert prime & ((1 << 64) - 1) == (1 << 64) - 1
    assert pow(2, (prime - 1) // 2, prime) == 1
    assert pow(3, prime - 1, prime) == 1


def test_modp_injected_private_and_padding() -> None:
    # g^5 and g^35 are short numbers: both must be left-padded to the prime's length
    # (RFC 7296 §3.4 for the KE data, §2.14 for g^ir).
    group = DhGroup.of(DhId.MODP_2048)
    a = group.from_private((5).to_bytes(1, "big"))
    b = group.from_private((7).to_bytes(256, "big"))
    assert a.public_bytes == (2**5).to_bytes(256, "big")
    assert b.public_bytes == (2**7).to_bytes(256, "big")
    assert a.shared_secret(b.public_bytes) == (2**35).to_bytes(256, "big")


def test_repr_shows_no_private_value() -> None:
    secret = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    pair = DhGroup.of(DhId.CURVE25519).from_private(bytes.fromhex(secret))
    assert repr(pair) == "DhKeyPair(CURVE25519, public=32 bytes)"
    assert repr(DhGroup.of(DhId.ECP_256)) == "DhGroup(ECP_256)"


P = _MODP_2048
ECP256_G_I = bytes.fromhex(RFC5903[0][2])

BAD_PEER = [
    (DhId.MODP_2048, bytes(256), "MODP_2048 public value out of range (0, 1 or >= p-1)"),
    (
        DhId.MODP_2048,
        (1).to_bytes(256, "big"),
        "MODP_2048 public value out of range (0, 1 or >= p-1)",
    ),
    (
        DhId.MODP_2048,
        (P - 1).to_bytes(256, "big"),
        "MODP_2048 public value out of range (0, 1 or >= p-1)",
    ),
    (
        DhId.MODP_2048,
        P.to_bytes(256, "big"),
        "MODP_2048 public value out of range (0, 1 or >= p-1)",
    ),
    (DhId.MODP_2048, b"", "MODP_2048 public value must be 256 bytes, got 0"),
    (DhId.MODP_2048, b"\x02" * 255, "MODP_2048 public value must be 256 bytes, got 255"),
    (DhId.ECP_256, ECP256_G_I[:-1], "ECP_256 public value must be 64 bytes, got 63"),
    (
        DhId.ECP_256,
        ECP256_G_I[:-1] + bytes([ECP256_G_I[-1] ^ 1]),
        "ECP_256 public value is not on the curve",
    ),
    (DhId.ECP_384, bytes(96), "ECP_384 public value is not on the curve"),
    (DhId.CURVE25519, bytes(32), "CURVE25519 public value gives the all-zero secret"),
    # u = 1 has order dividing the cofactor (RFC 7748 §7): the result is zero.
    (DhId.CURVE25519, b"\x01" + bytes(31), "CURVE25519 public value gives the all-zero secret"),
    (DhId.CURVE25519, bytes(33), "CURVE25519 public value must be 32 bytes, got 33"),
    (DhId.CURVE448, bytes(56), "CURVE448 public value gives the all-zero secret"),
    (DhId.CURVE448, bytes(32), "CURVE448 public value must be 56 bytes, got 32"),
]


@pytest.mark.parametrize(("dh_id", "peer", "message"), BAD_PEER)
def test_bad_peer_values(dh_id: DhId, peer: bytes, message: str) -> None:
    pair = DhGroup.of(dh_id).generate()
    with pytest.raises(IkeCryptoError) as info:
        pair.shared_secret(peer)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("dh_id", "private", "message"),
    [
        (DhId.MODP_2048, b"\x01", "MODP_2048 private value out of range"),
        (DhId.ECP_256, bytes(32), "ECP_256 private value out of range"),
        (DhId.ECP_256, b"\xff" * 32, "ECP_256 private value out of range"),
        (DhId.CURVE25519, bytes(31), "CURVE25519 private value must be 32 bytes"),
        (DhId.CURVE448, bytes(32), "CURVE448 private value must be 56 bytes"),
    ],
)
def test_bad_private_values(dh_id: DhId, private: bytes, message: str) -> None:
    with pytest.raises(IkeCryptoError) as info:
        DhGroup.of(dh_id).from_private(private)
    assert str(info.value) == message


@pytest.mark.parametrize("dh_id", [0, 2, 16, 30])
def test_unsupported_groups(dh_id: int) -> None:
    with pytest.raises(IkeCryptoError) as info:
        DhGroup.of(dh_id)
    assert str(info.value).startswith("unsupported Diffie-Hellman group ")
