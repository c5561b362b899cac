"""The inbound table held to a plain dict keyed by (SPI, destination), through random
inserts (both kinds), removals and lookups: SPIs alike in their low bits (as a peer's
choice could be), SPIs that SAs to several destinations share, the SPIs 0 and
2^32 - 1, removals of the very SA and of an equal one, and reinserts of a removed SPI."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import SaState
from larval.sadb import SecurityAssociation
from larval.sadb.table import SaTable

DSTS = [ipaddress.ip_address(a).packed for a in ("192.0.2.2", "198.51.100.9", "2001:db8::1")]
SRC = ipaddress.ip_address("192.0.2.1").packed

_spis = st.one_of(
    st.sampled_from([0, 1, 0xFFFFFFFF]),
    st.integers(0, 0xFFFFFFFF),
    # Alike in their low bits, as SPIs a peer chose could be.
    st.builds(lambda hi, lo: hi << 12 | lo, st.integers(0, 0xFFFFF), st.integers(0, 3)),
    st.integers(256, 400),
)
_ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "unpublished", "remove", "remove_equal", "get"]),
        _spis,
        st.integers(0, len(DSTS) - 1),
    ),
    max_size=300,
)


def _check(table: SaTable, model: dict[tuple[int, bytes], SecurityAssociation]) -> None:
    assert len(table) == len(model)
    assert sorted(map(id, table)) == sorted(map(id, model.values()))
    for (spi, dst), sa in model.items():
        assert table.get(spi, dst) is sa
        assert table.get(spi, bytes(dst)) is sa  # equal bytes, another object


@settings(max_examples=300, deadline=None)
@given(_ops, st.data())
def test_the_inbound_table_answers_as_a_dict_by_spi_and_destination(
    ops: list[tuple[str, int, int]], data: Any
) -> None:
    table = SaTable()
    model: dict[tuple[int, bytes], SecurityAssociation] = {}
    spis: list[int] = []  # every SPI used, so that lookups revisit them
    for op, drawn, d in ops:
        if spis and data.draw(st.booleans()):
            drawn = data.draw(st.sampled_from(spis))  # an SPI seen before, often
        spi, dst = drawn, DSTS[d]
        spis.append(spi)
        key = (spi, dst)
        if op in ("insert", "unpublished"):
            sa = SecurityAssociation(spi, 3, SRC, dst, SaState.LARVAL, 0.0)
            insert = table.insert_if_absent if op == "insert" else table.insert_unpublished
            assert insert(sa) is (key not in model)
            model.setdefault(key, sa)
        elif op == "remove":
            held = model.pop(key, None)
            if held is not None:
                assert table.remove(held)
                assert not table.remove(held)
        elif op == "remove_equal":
            # An SA equal in every field but not the one in the table: nothing goes.
            assert not table.remove(SecurityAssociation(spi, 3, SRC, dst, SaState.LARVAL, 0.0))
        for other in DSTS:
            assert table.get(spi, other) is model.get((spi, other))
    _check(table, model)
    # Every SA leaves; the table is empty and finds none of them.
    for key, sa in list(model.items()):
        assert table.remove(sa)
        del model[key]
        assert table.get(*key) is None
    _check(table, model)
    assert list(table) == []


@pytest.mark.parametrize("spread", [0, 1, 7])
def test_many_spis_alike_in_their_low_bits_are_all_found(spread: int) -> None:
    """SPIs alike in their low bits, with one value of them or a few (as a peer could
    choose its SPIs, which are our outbound ones), among SPIs spread over the whole
    range: every one is found as the table grows, after removals, and after the
    removed ones come back."""
    table = SaTable()
    alike = [(i << 24) + i % (spread + 1) for i in range(1, 250)]
    spread_out = random.Random(spread).sample(range(256, 1 << 32), 3000)
    sas = [_sa(spi) for pair in zip(alike, spread_out[: len(alike)], strict=True) for spi in pair]
    sas += [_sa(spi) for spi in spread_out[len(alike) :]]
    for n, sa in enumerate(sas, 1):
        assert table.insert_if_absent(sa)
        if n % 97 == 0:
            assert all(table.get(s.spi, DSTS[0]) is s for s in sas[:n])
    assert len(table) == len(sas)
    for sa in sas:
        assert table.get(sa.spi, DSTS[0]) is sa
    for sa in sas[::2]:
        assert table.remove(sa)
    for i, sa in enumerate(sas):
        assert table.get(sa.spi, DSTS[0]) is (None if i % 2 == 0 else sa)
    assert len(table) == len(sas) // 2
    for sa in sas[::2]:
        assert table.insert_if_absent(sa)
    assert all(table.get(sa.spi, DSTS[0]) is sa for sa in sas)


def _sa(spi: int) -> SecurityAssociation:
    return SecurityAssociation(spi, 3, SRC, DSTS[0], SaState.MATURE, 0.0)
