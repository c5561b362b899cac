"""X_LARVAL_SEQ_STATE in the SADB: ADD and UPDATE keep it, GET and DUMP return it, an
SA that carries traffic refuses it, and the SADB says when an SA leaves its tables."""

from __future__ import annotations

import errno

from larval.pfkey import (
    SEQ_STATE_NEXT,
    SEQ_STATE_REPLAY,
    Diagnostic,
    ExtType,
    PfkeyMessage,
    SadbMsgType,
    SadbXSeqState,
    SaType,
)
from larval.pfkey.requests import by_spi
from larval.sadb import Sadb, SecurityAssociation

from .support import LOCAL, PEER, add, larval_spi, only, update

STATE = SadbXSeqState(SEQ_STATE_NEXT | SEQ_STATE_REPLAY, 16385, 0, 900, 32, 0b1011)


def test_add_keeps_it_and_get_and_dump_return_it(sadb: Sadb) -> None:
    assert only(sadb.handle(add(0x1001, extra=(STATE,)), 0)).errno == 0
    got = only(sadb.handle(by_spi(SadbMsgType.GET, 0x1001, PEER, LOCAL), 0))
    assert got.find(ExtType.X_LARVAL_SEQ_STATE) == STATE
    dumped = sadb.handle(PfkeyMessage(SadbMsgType.DUMP, SaType.ESP), 0)
    assert dumped[0].message.find(ExtType.X_LARVAL_SEQ_STATE) == STATE


def test_update_of_a_larval_sa_keeps_it(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    assert only(sadb.handle(update(spi, extra=(STATE,)), 0)).errno == 0
    got = only(sadb.handle(by_spi(SadbMsgType.GET, spi, LOCAL, PEER), 0))
    assert got.find(ExtType.X_LARVAL_SEQ_STATE) == STATE


def test_an_sa_without_it_shows_none(sadb: Sadb) -> None:
    sadb.handle(add(0x1001), 0)
    got = only(sadb.handle(by_spi(SadbMsgType.GET, 0x1001, PEER, LOCAL), 0))
    assert got.find(ExtType.X_LARVAL_SEQ_STATE) is None


def test_an_sa_carrying_traffic_refuses_it(sadb: Sadb) -> None:
    sadb.handle(add(0x1001), 0)
    sa = sadb.lookup_esp(0x1001, bytes((192, 0, 2, 1)))
    assert sa is not None
    sa.transform = object()  # the dataplane made its ESP context
    reply = only(sadb.handle(update(0x1001, src=LOCAL, dst=PEER, extra=(STATE,)), 0))
    assert (reply.errno, reply.diagnostic) == (errno.EINVAL, Diagnostic.MALFORMED_SEQ_STATE)


def test_every_way_out_of_the_tables_is_told(sadb: Sadb) -> None:
    gone: list[int] = []

    def removed(sa: SecurityAssociation) -> None:
        gone.append(sa.spi)

    sadb.on_removed = removed
    for spi in (0x1001, 0x1002, 0x1003):
        sadb.handle(add(spi), 0)
    sadb.handle(by_spi(SadbMsgType.DELETE, 0x1001, PEER, LOCAL), 0)
    sa = sadb.lookup_esp(0x1002, bytes((192, 0, 2, 1)))
    assert sa is not None
    sadb.expire_now(sa, 1.0)
    sadb.handle(PfkeyMessage(SadbMsgType.FLUSH, SaType.ESP), 0)
    assert gone == [0x1001, 0x1002, 0x1003]


def test_a_hard_lifetime_is_told_too(sadb: Sadb) -> None:
    from larval.pfkey import SadbLifetime

    gone: list[int] = []
    sadb.on_removed = lambda sa: gone.append(sa.spi)
    hard = SadbLifetime(ExtType.LIFETIME_HARD, 0, 0, 10, 0)
    sadb.handle(add(0x1001, hard=hard), 0)
    sadb.age(5.0)
    assert gone == []
    sadb.age(20.0)
    assert gone == [0x1001]
