"""SPIs drawn in batches: in range, unique in the SADB, one call of the random source for
`SPI_BATCH` GETSPIs, and the very SPIs `random_int` would draw one at a time."""

from __future__ import annotations

import random

from larval.crypto.randomness import random_int
from larval.pfkey import SadbSa
from larval.pfkey.requests import getspi
from larval.sadb import Sadb
from larval.sadb.sadb import MAX_SPI, MIN_SPI, SPI_BATCH

from .support import LOCAL, PEER


class Stream:
    """A seeded byte stream that counts the calls made of it."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        return self._rng.randbytes(n)


def _spis(sadb: Sadb, n: int, **range_: int) -> list[int]:
    spis = []
    for seq in range(n):
        [reply] = sadb.handle(getspi(PEER, LOCAL, seq=seq, **range_), 0.0)
        assert reply.message.errno == 0
        sa_ext = reply.message.extensions[0]
        assert isinstance(sa_ext, SadbSa)
        spis.append(sa_ext.spi)
    return spis


def test_spis_are_unique_and_in_range() -> None:
    spis = _spis(Sadb(random_bytes=Stream(1)), 3 * SPI_BATCH + 5)
    assert len(set(spis)) == len(spis)
    assert all(MIN_SPI <= spi <= MAX_SPI for spi in spis)


def test_one_call_of_the_source_serves_a_batch() -> None:
    source = Stream(2)
    _spis(Sadb(random_bytes=source), 2 * SPI_BATCH)
    # A draw past the span (1 in 2**24) would need one more call: not with this seed.
    assert source.calls == 2


def test_the_batch_draws_what_random_int_draws_one_at_a_time() -> None:
    got = _spis(Sadb(random_bytes=Stream(3)), SPI_BATCH + 10)
    one_at_a_time = Stream(3)
    want = [random_int(one_at_a_time, MIN_SPI, MAX_SPI) for _ in range(SPI_BATCH + 10)]
    assert got == want


def test_a_draw_past_the_span_is_dropped() -> None:
    # Every other word is 0xffffffff, past the span of [256, 2**32 - 1] from 256.
    word = bytes.fromhex("ffffffff") + (7).to_bytes(4, "big")

    def source(n: int) -> bytes:
        return word * (n // 8)

    assert _spis(Sadb(random_bytes=source), 1) == [MIN_SPI + 7]


def test_a_narrow_range_draws_one_at_a_time_and_stays_inside() -> None:
    source = Stream(4)
    spis = _spis(Sadb(random_bytes=source), 40, spi_min=0x1000, spi_max=0x1100)
    assert all(0x1000 <= spi <= 0x1100 for spi in spis)
    assert len(set(spis)) == 40
    assert source.calls >= 40  # no batch for a range of its own


def test_a_source_of_zeros_still_finds_free_spis() -> None:
    spis = _spis(Sadb(random_bytes=bytes), 5)
    assert spis == [MIN_SPI, MIN_SPI + 1, MIN_SPI + 2, MIN_SPI + 3, MIN_SPI + 4]
