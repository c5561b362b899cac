"""The inbound table, keyed by SPI in memory and by (SPI, destination) in meaning: a lookup
for the wrong destination misses, and an SPI that SAs to several destinations hold finds
each of them, through inserts and removals in any order."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from larval.pfkey import EncryptAlg, SadbMsgType, SaState
from larval.pfkey.requests import by_spi, keyed
from larval.sadb import Sadb, SecurityAssociation
from larval.sadb.table import SaTable

from .support import GCM_KEY, LOCAL, LOCAL_B, PEER, PEER_B

OTHER = "198.51.100.9"
OTHER_B = ipaddress.ip_address(OTHER).packed
THIRD_B = ipaddress.ip_address("203.0.113.3").packed


def _sa(spi: int, dst: bytes, src: bytes = PEER_B) -> SecurityAssociation:
    return SecurityAssociation(spi, 3, src, dst, SaState.MATURE, 0.0)


def test_a_lookup_for_the_wrong_destination_misses() -> None:
    table = SaTable()
    sa = _sa(0x1000, LOCAL_B)
    assert table.insert_if_absent(sa)
    assert table.get(0x1000, LOCAL_B) is sa
    assert table.get(0x1000, bytes(LOCAL_B)) is sa  # equal bytes, another object
    assert table.get(0x1000, OTHER_B) is None
    assert table.get(0x1001, LOCAL_B) is None
    assert table.get(0x1000, b"") is None


def test_one_spi_to_several_destinations() -> None:
    table = SaTable()
    a, b, c = _sa(0x2000, LOCAL_B), _sa(0x2000, OTHER_B), _sa(0x2000, THIRD_B)
    assert table.insert_if_absent(a) and table.insert_if_absent(b)
    assert not table.insert_if_absent(_sa(0x2000, OTHER_B))  # (SPI, dst) taken
    assert not table.insert_if_absent(_sa(0x2000, LOCAL_B))
    assert table.insert_if_absent(c)
    assert (table.get(0x2000, LOCAL_B), table.get(0x2000, OTHER_B)) == (a, b)
    assert table.get(0x2000, THIRD_B) is c
    assert table.get(0x2000, PEER_B) is None
    assert table.get(0x2000, b"") is None  # the shared entry's own destination
    assert len(table) == 3
    assert {id(s) for s in table} == {id(a), id(b), id(c)}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_removals_in_any_order_keep_the_others_found(order: tuple[int, ...]) -> None:
    table = SaTable()
    sas = [_sa(0x3000, dst) for dst in (LOCAL_B, OTHER_B, THIRD_B)]
    for sa in sas:
        assert table.insert_if_absent(sa)
    left = list(sas)
    for i in order:
        sa = sas[i]
        assert not table.remove(_sa(0x3000, sa.dst))  # an equal SA, not this one
        assert table.remove(sa)
        assert not table.remove(sa)
        left.remove(sa)
        assert table.get(0x3000, sa.dst) is None
        for other in left:
            assert table.get(0x3000, other.dst) is other
        assert len(table) == len(left)
        assert {id(s) for s in table} == {id(s) for s in left}
    # Empty again: a new SA takes the SPI alone.
    again = _sa(0x3000, OTHER_B)
    assert table.insert_if_absent(again) and table.get(0x3000, OTHER_B) is again


def test_the_sadb_answers_by_spi_and_destination() -> None:
    sadb = Sadb()
    for dst in (LOCAL, OTHER):
        add = keyed(SadbMsgType.ADD, 0x4000, PEER, dst, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=GCM_KEY)  # fmt: skip
        [reply] = sadb.handle(add, 0.0)
        assert reply.message.errno == 0
    first, second = sadb.lookup_esp(0x4000, LOCAL_B), sadb.lookup_esp(0x4000, OTHER_B)
    assert first is not None and second is not None and first is not second
    assert sadb.lookup_inbound(0x4000, OTHER_B) is second
    assert sadb.lookup_esp(0x4000, PEER_B) is None
    assert sadb.lookup_inbound(0x4000, LOCAL_B, satype=2) is None  # AH: no table
    [reply] = sadb.handle(by_spi(SadbMsgType.DELETE, 0x4000, LOCAL), 0.0)
    assert reply.message.errno == 0
    assert sadb.lookup_esp(0x4000, LOCAL_B) is None
    assert sadb.lookup_esp(0x4000, OTHER_B) is second
    assert len(sadb) == 1
