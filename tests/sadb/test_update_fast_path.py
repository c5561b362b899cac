"""The usual UPDATE (SA, addresses, keys, nothing optional) skips the optional checks and
work, and leaves what GETSPI gave the SA as it was: its inner selectors, indexed once it
is MATURE, and its key-management cookie."""

from __future__ import annotations

import ipaddress

from larval.pfkey import ExtType, PfkeyMessage, SadbSa, SadbXKmc, SaState
from larval.pfkey.message import decode
from larval.pfkey.requests import getspi
from larval.sadb import Sadb

from .support import LOCAL, LOCAL_B, PEER, only, update
from .test_inner_index import GATEWAY_NET, found, inner

ip = ipaddress.ip_address


def _getspi(sadb: Sadb, *extra: object) -> int:
    ask = getspi(LOCAL, PEER)
    ask = PfkeyMessage(ask.msg_type, ask.satype, extensions=(*ask.extensions, *extra))  # type: ignore[arg-type]
    reply = only(sadb.handle(decode(ask.encode()), 0.0))
    assert reply.errno == 0, reply
    sa_ext = reply.find(ExtType.SA)
    assert isinstance(sa_ext, SadbSa)
    return sa_ext.spi


def test_a_plain_update_indexes_the_inner_selectors_getspi_gave() -> None:
    sadb = Sadb()
    spi = _getspi(sadb, *inner(GATEWAY_NET, 24, "10.3.0.7", 32))
    assert found(sadb, "10.3.0.7") is None  # LARVAL: never chosen
    plain = update(spi, src=LOCAL, dst=PEER)
    assert not {e.ext_type for e in plain.extensions} & {
        int(ExtType.ADDRESS_PROXY),
        int(ExtType.X_ADDRESS_INNER_DST),
    }
    assert only(sadb.handle(decode(plain.encode()), 0.0)).errno == 0
    sa = sadb.lookup_inbound(spi, ip(PEER).packed)
    assert sa is not None and sa.state == SaState.MATURE
    assert sa.inner_dst is not None and str(sa.inner_dst.addr) == "10.3.0.7"
    assert found(sadb, "10.3.0.7") == spi


def test_a_plain_update_keeps_the_cookie_and_ends_the_larval_lifetime() -> None:
    sadb = Sadb()
    spi = _getspi(sadb, SadbXKmc(4, 0x1234))
    sa = sadb.lookup_inbound(spi, ip(PEER).packed)
    assert sa is not None and sa.hard is not None  # the larval lifetime
    assert only(sadb.handle(decode(update(spi, src=LOCAL, dst=PEER).encode()), 0.0)).errno == 0
    assert (sa.km_proto, sa.km_cookie) == (4, 0x1234)
    assert sa.hard is None and sa.soft is None
    assert sadb.lookup_inbound(spi, LOCAL_B) is None  # its destination is PEER
