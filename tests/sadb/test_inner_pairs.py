"""An SA with several inner selector pairs (X_LARVAL_INNER_PAIRS): a road warrior's IPv4
and IPv6 in one CHILD_SA. ADD and UPDATE set the pairs, GET gives them back, the
outbound index finds the SA under each, and DELETE takes every entry out."""

from __future__ import annotations

import ipaddress

import pytest

from larval.pfkey import (
    Diagnostic,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SadbXInnerPairs,
    SaFlags,
    SaState,
)
from larval.pfkey.requests import by_spi
from larval.sadb import Sadb
from tests.sadb.support import LOCAL_B, PEER, add, larval_spi, update
from tests.sadb.test_inner_index import assert_add_refused, found, inner, send

ip = ipaddress.ip_address
V4 = inner("203.0.113.0", 24, "10.3.0.7", 32)
V6 = inner("2001:db8:1::", 48, "2001:db8:3::7", 128)
OUT = SaFlags.X_TUNNEL | SaFlags.X_OUTBOUND


def add_dual(sadb: Sadb, spi: int, *pairs: tuple[SadbAddress, SadbAddress], **kw: object) -> None:
    first, *more = pairs or (V4, V6)
    extra: tuple[object, ...] = (*first, SadbXInnerPairs(tuple(more)))
    msg = add(spi, dst=PEER, extra=extra, **kw)
    sa_ext = SadbSa(spi, 32, SaState.MATURE, 0, msg.extensions[0].encrypt, OUT)  # type: ignore[union-attr]
    msg = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:]))
    reply = send(sadb, msg)
    assert reply.errno == 0, reply


def test_get_returns_the_pairs_add_gave(sadb: Sadb) -> None:
    add_dual(sadb, 0x6001)
    reply = send(sadb, by_spi(SadbMsgType.GET, 0x6001, PEER))
    assert reply.errno == 0
    assert (reply.find(ExtType.ADDRESS_PROXY), reply.find(ExtType.X_ADDRESS_INNER_DST)) == V4
    assert reply.find(ExtType.X_LARVAL_INNER_PAIRS) == SadbXInnerPairs((V6,))


def test_a_one_pair_sa_replies_without_the_extension(sadb: Sadb) -> None:
    msg = add(0x6002, dst=PEER, extra=V4)
    assert send(sadb, msg).errno == 0
    reply = send(sadb, by_spi(SadbMsgType.GET, 0x6002, PEER))
    assert reply.find(ExtType.X_LARVAL_INNER_PAIRS) is None


def test_the_sa_is_found_under_either_family(sadb: Sadb) -> None:
    add_dual(sadb, 0x6003)
    assert found(sadb, "10.3.0.7") == 0x6003
    assert found(sadb, "2001:db8:3::7", src="2001:db8:1::5") == 0x6003
    # The source must lie in the pair of the destination's family.
    assert found(sadb, "2001:db8:3::7", src="2001:db8:9::5") is None
    assert found(sadb, "2001:db8:3::8", src="2001:db8:1::5") is None


def test_delete_and_expiry_take_every_pair_out_of_the_index(sadb: Sadb) -> None:
    add_dual(sadb, 0x6004)
    add_dual(sadb, 0x6005, inner("203.0.113.0", 24, "10.3.0.8", 32),
             inner("2001:db8:1::", 48, "2001:db8:3::8", 128),
             hard=SadbLifetime(ExtType.LIFETIME_HARD, addtime=100))  # fmt: skip
    index = sadb._tables[3].inner
    assert len(index) == 4
    send(sadb, by_spi(SadbMsgType.DELETE, 0x6004, PEER))
    assert len(index) == 2
    assert found(sadb, "10.3.0.7") is None
    assert found(sadb, "2001:db8:3::7", src="2001:db8:1::5") is None
    sadb.age(100.0)
    assert len(index) == 0 and index._lengths == {} and index._buckets == {}
    assert index._counts == {}


def test_update_without_further_pairs_leaves_only_the_first(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    first = update(spi, extra=(*V4, SadbXInnerPairs((V6,))))
    assert send(sadb, first).errno == 0
    (sa,) = list(sadb._tables[3])
    assert sa.inner_more == (V6,)
    # New lifetimes alone keep the pairs; new inner selectors without the list drop them.
    again = PfkeyMessage(
        SadbMsgType.UPDATE,
        3,
        extensions=(first.extensions[0], *first.extensions[1:3],
                    SadbLifetime(ExtType.LIFETIME_SOFT, addtime=50)),
    )  # fmt: skip
    assert send(sadb, again).errno == 0 and sa.inner_more == (V6,)
    moved = PfkeyMessage(SadbMsgType.UPDATE, 3,
                         extensions=(*again.extensions[:3], *V4))  # fmt: skip
    assert send(sadb, moved).errno == 0 and sa.inner_more == ()


@pytest.mark.parametrize(
    ("extra", "diagnostic", "text"),
    [
        ((SadbXInnerPairs((V6,)),), Diagnostic.MISSING_INNER_SRC,
         "further inner pairs (X_LARVAL_INNER_PAIRS) without a first inner source and destination"),
        ((*V4, SadbXInnerPairs(((V6[0], V4[1]),))), Diagnostic.INNER_AF_MISMATCH,
         "inner source 2001:db8:1:: and destination 10.3.0.7 of pair 2 differ in family"),
        ((*V4, SadbXInnerPairs((V4, inner("2001:db8::", 129, "2001:db8:3::7", 128)))),
         Diagnostic.PREFIX_INNER_SRC, "inner source 2001:db8::/129 of pair 3: prefix too long"),
    ],
    ids=["no-first-pair", "mixed-family", "prefix"],
)  # fmt: skip
def test_bad_further_pairs_are_refused_and_named(
    sadb: Sadb, extra: tuple[object, ...], diagnostic: int, text: str
) -> None:
    assert_add_refused(sadb, add(0x6006, extra=extra), diagnostic, text)


def test_the_local_outer_address_still_chooses(sadb: Sadb) -> None:
    add_dual(sadb, 0x6007)
    other = ip("198.51.100.1").packed
    assert found(sadb, "2001:db8:3::7", src="2001:db8:1::5", local=other) is None
    assert found(sadb, "2001:db8:3::7", src="2001:db8:1::5", local=LOCAL_B) == 0x6007
