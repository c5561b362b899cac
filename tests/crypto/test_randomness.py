"""One injectable source of random bytes: integers drawn from it, and the DH private
values, SK payload IVs, ESP IVs and SADB SPIs that come from it and nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from larval.crypto.algorithms import AALG_SHA256HMAC, EALG_AES_CBC, EALG_AES_GCM_16
from larval.crypto.dh import _MODP_2048
from larval.crypto.ike import DhGroup, DhId, IkeCryptoError
from larval.crypto.ike_transforms import EncrId, IntegId, Transform, TransformType
from larval.crypto.randomness import RandomBytes, random_int
from larval.crypto.sk import SkCipher
from larval.esp import EspSa
from larval.sadb.sadb import SPI_BATCH
from larval.stack import Stack
from tests.esp.test_vectors import INNER, VECTORS
from tests.sadb.support import larval_spi
from tests.seeded import SeededRandom

pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")


def scripted(*chunks: bytes) -> RandomBytes:
    """A source that hands out `chunks` in order and checks each is the length asked."""
    it: Iterator[bytes] = iter(chunks)

    def draw(n: int) -> bytes:
        chunk = next(it)
        assert len(chunk) == n, (len(chunk), n)
        return chunk

    return draw


# -- random_int --------------------------------------------------------------------------


def test_random_int_of_zero_bytes_is_the_low_end() -> None:
    assert random_int(bytes, 0x100, 0xFFFFFFFF) == 0x100
    assert random_int(bytes, 7, 7) == 7


def test_random_int_draws_again_above_the_span() -> None:
    # [10, 15]: span 5, three bits; 0x07 masks to 7 > 5 and is drawn again.
    assert random_int(scripted(b"\xff", b"\x03"), 10, 15) == 13


def test_random_int_stays_in_range_and_reaches_both_ends() -> None:
    source = SeededRandom("range")
    seen = {random_int(source, 3, 9) for _ in range(400)}
    assert seen == set(range(3, 10))


def test_random_int_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match=r"empty range \[5, 4\]"):
        random_int(bytes, 5, 4)


# -- Diffie-Hellman private values -------------------------------------------------------


@pytest.mark.parametrize(("dh_id", "size"), [(DhId.CURVE25519, 32), (DhId.CURVE448, 56)])
def test_montgomery_private_value_is_the_bytes_drawn(dh_id: DhId, size: int) -> None:
    source = SeededRandom("x")
    pair = DhGroup.of(dh_id).generate(source)
    assert [len(d) for d in source.drawn] == [size]
    assert pair.public_bytes == DhGroup.of(dh_id).from_private(source.drawn[0]).public_bytes


def test_modp_private_value_is_256_bits_drawn_and_its_public_value_is_g_to_it() -> None:
    source = SeededRandom("modp")
    pair = DhGroup.of(DhId.MODP_2048).generate(source)
    (drawn,) = source.drawn
    x = 2 + int.from_bytes(drawn, "big")  # random_int(2, 2^256 - 1) of these 32 bytes
    assert len(drawn) == 32
    # Computed here by Python, independently of the OpenSSL agreement larval uses.
    assert pair.public_bytes == pow(2, x, _MODP_2048).to_bytes(256, "big")


def test_ecp_private_value_out_of_range_is_drawn_again() -> None:
    # 0 is no P-256 private value; the second candidate, 5, is.
    pair = DhGroup.of(DhId.ECP_256).generate(scripted(bytes(32), bytes(31) + b"\x05"))
    assert pair.public_bytes == DhGroup.of(DhId.ECP_256).from_private(b"\x05").public_bytes


def test_ecp_521_draws_66_bytes_masked_to_521_bits() -> None:
    source = scripted(b"\xff" + bytes(64) + b"\x09")
    pair = DhGroup.of(DhId.ECP_521).generate(source)
    # 0xff in the top byte is masked to its lowest bit: d = 2^520 + 9.
    expected = ((1 << 520) + 9).to_bytes(66, "big")
    assert pair.public_bytes == DhGroup.of(DhId.ECP_521).from_private(expected).public_bytes


def test_a_source_that_never_gives_a_private_value_is_an_error() -> None:
    with pytest.raises(IkeCryptoError, match="ECP_256: no private value in 16 draws"):
        DhGroup.of(DhId.ECP_256).generate(bytes)


@pytest.mark.parametrize("dh_id", [DhId.MODP_2048, DhId.ECP_384, DhId.CURVE25519])
def test_same_seed_same_key_pair_other_seed_other(dh_id: DhId) -> None:
    group = DhGroup.of(dh_id)
    a, b = group.generate(SeededRandom("1")), group.generate(SeededRandom("1"))
    c = group.generate(SeededRandom("2"))
    assert a.public_bytes == b.public_bytes != c.public_bytes
    assert a.shared_secret(c.public_bytes) == c.shared_secret(b.public_bytes)


# -- SK payload IVs ----------------------------------------------------------------------


def test_sk_cbc_iv_is_drawn_from_the_source() -> None:
    encr = Transform(TransformType.ENCR, EncrId.AES_CBC, 128)
    cipher = SkCipher.of(
        encr, IntegId.HMAC_SHA2_256_128, bytes(16), bytes(32), random_bytes=lambda n: b"\x5a" * n
    )
    assert cipher.encrypt(b"payloads", b"aad")[:16] == b"\x5a" * 16


def test_sk_aead_ivs_count_up_from_a_drawn_start() -> None:
    encr = Transform(TransformType.ENCR, EncrId.AES_GCM_16, 128)
    start = bytes.fromhex("00000000000000fe")
    cipher = SkCipher.of(encr, IntegId.NONE, bytes(20), b"", random_bytes=scripted(start))
    ivs = [cipher.encrypt(b"p", b"aad")[:8].hex() for _ in range(3)]
    assert ivs == ["00000000000000fe", "00000000000000ff", "0000000000000100"]


# -- ESP IVs and SADB SPIs ---------------------------------------------------------------


def test_esp_cbc_iv_is_drawn_from_the_source() -> None:
    _, ealg, ekey, aalg, akey, iv, expected = next(
        v for v in VECTORS if v[0] == "aes128-cbc-hmac-sha256-128"
    )
    assert (ealg, aalg) == (EALG_AES_CBC, AALG_SHA256HMAC)
    sa = EspSa(0x1001, ealg, ekey, aalg, akey, random_bytes=lambda n: iv[:n])
    assert sa.encrypt(INNER, 4).hex() == expected  # the scapy packet with that IV


def test_esp_aead_iv_stays_the_sequence_number() -> None:
    sa = EspSa(0x1001, EALG_AES_GCM_16, bytes(20), random_bytes=lambda n: b"\x77" * n)
    assert sa.encrypt(b"x", 4)[8:16] == (1).to_bytes(8, "big")


def test_stack_spis_are_drawn_from_its_source() -> None:
    # 0xfffffeff wide: 32 bits a draw, SPI_BATCH draws asked of the source at once, used
    # in order; 0x1234 above the lowest SPI, 0x100.
    batch = b"\x00\x00\x12\x34" + b"\x00\x00\x00\x07" + bytes(4 * (SPI_BATCH - 2))
    stack = Stack(random_bytes=scripted(batch))
    assert larval_spi(stack.sadb) == 0x1334
    assert larval_spi(stack.sadb, seq=2) == 0x107
    one, two = Stack(random_bytes=SeededRandom("s")), Stack(random_bytes=SeededRandom("s"))
    assert [larval_spi(one.sadb, seq=n) for n in range(1, 5)] == [
        larval_spi(two.sadb, seq=n) for n in range(1, 5)
    ]
