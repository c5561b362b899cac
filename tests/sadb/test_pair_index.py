"""Choosing among many SAs between one pair of gateways (a CHILD_SA per subnet pair): the
per-peer inner index finds the SA by the packet's inner addresses with a few dict probes,
and only SAs without inner selectors are tested one by one."""

from __future__ import annotations

import ipaddress
import random

import pytest

from larval.pfkey import (
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaState,
)
from larval.pfkey.requests import by_spi
from larval.sadb import Sadb, SecurityAssociation
from tests.sadb.support import LOCAL, LOCAL_B, PEER, PEER_B, add
from tests.sadb.test_inner_index import GATEWAY_NET, inner, reference, send

ip = ipaddress.ip_address


class Counting:
    """A `covers` test that accepts every SA and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sa: SecurityAssociation) -> bool:
        self.calls += 1
        return True


def child(sadb: Sadb, spi: int, dst: str, plen: int = 24, src: tuple[str, int] = (GATEWAY_NET, 24),
          **kw: object) -> None:  # fmt: skip
    assert send(sadb, add(spi, extra=inner(*src, dst, plen), **kw)).errno == 0


def chosen(
    sadb: Sadb, dst: str, src: str = "203.0.113.5", covers: Counting | None = None
) -> int | None:
    inner_pair = (ip(src).packed, ip(dst).packed)
    sa = sadb.lookup_outbound(LOCAL_B, PEER_B, covers=covers or Counting(), inner=inner_pair)
    return sa.spi if sa is not None else None


def test_thousands_of_children_are_found_without_testing_each(sadb: Sadb) -> None:
    for n in range(2000):
        child(sadb, 0x10000 + n, f"10.{n >> 8}.{n & 255}.0")
    covers = Counting()
    assert chosen(sadb, "10.3.7.9", covers=covers) == 0x10000 + (3 << 8) + 7
    assert chosen(sadb, "10.0.0.1", covers=covers) == 0x10000
    assert chosen(sadb, "10.7.207.1", covers=covers) == 0x10000 + 1999
    assert chosen(sadb, "10.8.0.1", covers=covers) is None  # beyond every selector
    assert covers.calls == 0  # no SA was tested one by one
    # Without the inner addresses (transport mode), the pair is scanned as before.
    scan = Counting()
    assert sadb.lookup_outbound(LOCAL_B, PEER_B, covers=scan) is not None
    assert scan.calls >= 1


def test_an_sa_without_inner_selectors_is_still_chosen(sadb: Sadb) -> None:
    child(sadb, 0x2001, "10.3.0.0")
    assert send(sadb, add(0x2002)).errno == 0  # no inner selectors: it carries anything
    covers = Counting()
    assert chosen(sadb, "10.3.0.9", covers=covers) == 0x2001
    assert chosen(sadb, "198.51.100.1", covers=covers) == 0x2002
    assert covers.calls == 1  # only the SA without selectors was tested, and only once
    table = sadb._tables[3]
    assert set(table._unindexed[(LOCAL_B, PEER_B)]) == {0x2002}


def test_a_zero_prefix_is_every_address_as_the_packet_path_takes_it(sadb: Sadb) -> None:
    child(sadb, 0x3001, "10.3.0.0", 24)
    child(sadb, 0x3002, "10.3.0.7", 0)  # as written: every address
    assert chosen(sadb, "10.3.0.9") == 0x3001  # the more specific wins
    assert chosen(sadb, "198.51.100.1") == 0x3002


def test_the_inner_source_must_be_covered(sadb: Sadb) -> None:
    child(sadb, 0x3101, "10.3.0.0", src=("203.0.113.0", 25))
    child(sadb, 0x3102, "10.3.0.0", src=("203.0.113.128", 25))
    assert chosen(sadb, "10.3.0.1", src="203.0.113.5") == 0x3101
    assert chosen(sadb, "10.3.0.1", src="203.0.113.200") == 0x3102
    assert chosen(sadb, "10.3.0.1", src="198.51.100.1") is None


def test_a_rekey_moves_traffic_to_the_new_sa(sadb: Sadb) -> None:
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, addtime=50)
    child(sadb, 0x4001, "10.3.0.0", soft=soft)
    child(sadb, 0x4002, "10.4.0.0")
    sadb.age(60.0)  # 0x4001 DYING: still used until its successor is there
    assert chosen(sadb, "10.3.0.1") == 0x4001
    child(sadb, 0x4003, "10.3.0.0")
    assert chosen(sadb, "10.3.0.1") == 0x4003
    assert chosen(sadb, "10.4.0.1") == 0x4002


def test_update_delete_and_flush_keep_the_index_exact(sadb: Sadb) -> None:
    child(sadb, 0x5001, "10.3.0.0")
    child(sadb, 0x5002, "10.4.0.0")
    assert send(sadb, add(0x5003)).errno == 0
    moved = PfkeyMessage(
        SadbMsgType.UPDATE, 3,
        extensions=(SadbSa(0x5001, state=SaState.MATURE),
                    SadbAddress(ExtType.ADDRESS_SRC, ip(LOCAL)),
                    SadbAddress(ExtType.ADDRESS_DST, ip(PEER)),
                    *inner(GATEWAY_NET, 24, "10.5.0.0", 24)),
    )  # fmt: skip
    assert send(sadb, moved).errno == 0
    assert chosen(sadb, "10.5.0.1") == 0x5001
    assert chosen(sadb, "10.3.0.1") == 0x5003  # only the SA without selectors is left
    table = sadb._tables[3]
    send(sadb, by_spi(SadbMsgType.DELETE, 0x5003, PEER))
    assert chosen(sadb, "10.3.0.1") is None and table._unindexed == {}
    send(sadb, by_spi(SadbMsgType.DELETE, 0x5002, PEER))
    assert len(table.pair_inner) == 1
    send(sadb, PfkeyMessage(SadbMsgType.FLUSH, 3))
    assert len(table.pair_inner) == 0 and table._unindexed == {}
    assert table.pair_inner._buckets == {} and table.pair_inner._lengths == {}


def test_another_peer_s_sas_are_not_chosen(sadb: Sadb) -> None:
    child(sadb, 0x6001, "10.3.0.0")
    child(sadb, 0x6002, "10.4.0.0")
    assert (
        send(sadb, add(0x6003, dst="192.0.2.9", extra=inner(GATEWAY_NET, 24, "10.5.0.0", 24))).errno
        == 0
    )
    assert chosen(sadb, "10.5.0.1") is None


@pytest.mark.parametrize("seed", range(2))
def test_choices_agree_with_a_plain_scan(sadb: Sadb, seed: int) -> None:
    rng = random.Random(seed)
    sas = []
    for n in range(200):
        plen = rng.choice((32, 32, 28, 24, 16, 0))
        dst = ipaddress.ip_network(((10 << 24) | rng.getrandbits(12), plen), strict=False)
        splen = rng.choice((24, 25, 0))
        src = ipaddress.ip_network(((203 << 24) | (113 << 8) | rng.getrandbits(8), splen),
                                   strict=False)  # fmt: skip
        spi = 0x10000 + n
        child(sadb, spi, str(dst.network_address), plen, src=(str(src.network_address), splen))
        sas.append((spi, src, dst))
    for spi, _, _ in rng.sample(sas, 50):
        send(sadb, by_spi(SadbMsgType.DELETE, spi, PEER))
    left = [s for s in sas if sadb._tables[3].get(s[0], PEER_B) is not None]
    for _ in range(600):
        dst = str(ipaddress.IPv4Address((10 << 24) | rng.getrandbits(12)))
        src = str(ipaddress.IPv4Address((203 << 24) | (113 << 8) | rng.getrandbits(8)))
        assert chosen(sadb, dst, src) == reference(left, src, dst), (src, dst)


def test_many_sas_of_one_selector_come_and_go_in_any_order(sadb: Sadb) -> None:
    # Every CHILD_SA of many IKE_SAs between two gateways, for the same networks: one
    # bucket of both indexes holds them all, newest MATURE first.
    rng = random.Random(7)
    spis = [0x30000 + n for n in range(300)]
    for spi in spis:
        child(sadb, spi, "10.2.0.0", 16)
    assert chosen(sadb, "10.2.3.4") == spis[-1]
    rng.shuffle(spis)
    while spis:
        send(sadb, by_spi(SadbMsgType.DELETE, spis.pop(), PEER))
        newest = max(spis) if spis else None
        assert chosen(sadb, "10.2.3.4") == newest
    table = sadb._tables[3]
    for index in (table.inner, table.pair_inner):
        assert len(index) == 0
        assert index._buckets == {} and index._members == {} and index._lengths == {}


def test_thousands_of_sources_to_one_network_are_told_apart(sadb: Sadb) -> None:
    # The return direction of 10,000 CHILD_SAs: one inner destination network, one inner
    # source host each. The index keys each bucket by source too.
    first = int(ip("172.16.0.0"))
    for n in range(2000):
        child(sadb, 0x40000 + n, "10.9.0.0", 16, src=(str(ip(first + n)), 32))
    covers = Counting()
    for n in (0, 1, 777, 1999):
        assert chosen(sadb, "10.9.1.2", src=str(ip(first + n)), covers=covers) == 0x40000 + n
    assert chosen(sadb, "10.9.1.2", src=str(ip(first + 2000))) is None
    assert covers.calls == 0
    bucket = next(iter(sadb._tables[3].pair_inner._buckets.values()))
    assert len(bucket.by_src) == 2000 and bucket.shifts == (0,)


def _state_reference(
    sas: list[tuple[int, ipaddress.IPv4Network]], states: dict[int, int], src: str
) -> int | None:
    """Of the SAs (oldest first) whose source covers `src`: the newest MATURE, else the
    newest DYING."""
    covering = [spi for spi, net in sas if ip(src) in net]
    for wanted in (SaState.MATURE, SaState.DYING):
        for spi in reversed(covering):
            if states[spi] == wanted:
                return spi
    return None


@pytest.mark.parametrize("seed", range(3))
def test_sources_of_every_length_agree_with_a_scan_by_state(sadb: Sadb, seed: int) -> None:
    # One destination selector; sources of mixed prefix lengths overlap, some SAs DYING:
    # the newest MATURE covering the source wins whatever its length, else the newest
    # DYING, as a scan of the bucket chose.
    rng = random.Random(seed)
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, addtime=10)
    sas: list[tuple[int, ipaddress.IPv4Network]] = []
    for n in range(150):
        splen = rng.choice((32, 30, 28, 24, 0))
        net = ipaddress.ip_network(((172 << 24) | (16 << 16) | rng.getrandbits(8), splen),
                                   strict=False)  # fmt: skip
        spi = 0x50000 + n
        kw = {"soft": soft} if rng.random() < 0.4 else {}
        child(sadb, spi, "10.9.0.0", 16, src=(str(net.network_address), splen), **kw)
        sas.append((spi, net))
    sadb.age(20.0)  # those with the soft lifetime go DYING
    for spi, _ in rng.sample(sas, 40):
        send(sadb, by_spi(SadbMsgType.DELETE, spi, PEER))
    # SAs added after the pass stay MATURE: newer than some DYING ones.
    for n in range(150, 170):
        splen = rng.choice((32, 24))
        net = ipaddress.ip_network(((172 << 24) | (16 << 16) | rng.getrandbits(8), splen),
                                   strict=False)  # fmt: skip
        child(sadb, 0x50000 + n, "10.9.0.0", 16, src=(str(net.network_address), splen))
        sas.append((0x50000 + n, net))
    table = sadb._tables[3]
    states = {}
    for spi, _ in sas:
        sa = table.get(spi, PEER_B)
        if sa is not None:
            states[spi] = sa.state
    left = [s for s in sas if s[0] in states]
    assert SaState.DYING in states.values() and SaState.MATURE in states.values()
    for last in range(256):
        src = f"172.16.0.{last}"
        assert chosen(sadb, "10.9.3.3", src) == _state_reference(left, states, src), src
