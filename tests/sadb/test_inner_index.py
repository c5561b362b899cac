"""Outbound tunnel SAs found by inner destination (tunnels to any peer), driven with
PF_KEY messages as bytes: ADD and UPDATE put SAs in the index, DELETE and lifetimes take
them out, the most specific inner destination wins."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from larval.pfkey import (
    Diagnostic,
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaFlags,
    SaState,
)
from larval.pfkey.message import decode
from larval.pfkey.requests import by_spi
from larval.sadb import Sadb, SecurityAssociation
from tests.sadb.support import LOCAL, LOCAL_B, PEER, add, larval_spi, only, update

ip = ipaddress.ip_address
GATEWAY_NET = "203.0.113.0"


def inner(src: str, src_len: int, dst: str, dst_len: int) -> tuple[SadbAddress, SadbAddress]:
    return (
        SadbAddress(ExtType.ADDRESS_PROXY, ip(src), prefixlen=src_len),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip(dst), prefixlen=dst_len),
    )


def send(sadb: Sadb, msg: PfkeyMessage, now: float = 0.0) -> PfkeyMessage:
    """The message as bytes on the PF_KEY socket would carry it, and the one reply."""
    return only(sadb.handle(decode(msg.encode()), now))


def assert_add_refused(sadb: Sadb, msg: PfkeyMessage, diagnostic: int, text: str) -> None:
    """The ADD gets EINVAL with `diagnostic`, adds nothing, and the stack's log line for it
    (the SadbError's text) ends with `text`."""
    from larval.sadb import SadbError

    reply = send(sadb, msg)
    assert (reply.errno, reply.diagnostic) == (errno.EINVAL, diagnostic)
    assert len(sadb) == 0
    with pytest.raises(SadbError) as info:
        sadb._add(msg, {e.ext_type: e for e in msg.extensions}, 0.0)
    assert str(info.value).endswith(text)


def add_client(
    sadb: Sadb,
    spi: int,
    vip: str,
    prefixlen: int = 32,
    *,
    peer: str = PEER,
    local_net: tuple[str, int] = (GATEWAY_NET, 24),
    flags: int = SaFlags.X_TUNNEL | SaFlags.X_OUTBOUND,
    **kw: object,
) -> None:
    """ADD of the gateway's outbound SA to one road warrior: its virtual address (or
    subnet) as inner destination, the gateway's network as inner source."""
    msg = add(spi, dst=peer, extra=inner(*local_net, vip, prefixlen), **kw)
    sa_ext = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, flags)
    msg = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:]))
    reply = send(sadb, msg)
    assert reply.errno == 0, reply


def found(sadb: Sadb, dst: str, src: str = "203.0.113.5", local: bytes = LOCAL_B) -> int | None:
    sa = sadb.lookup_outbound_inner(local, ip(src).packed, ip(dst).packed)
    return sa.spi if sa is not None else None


def test_two_clients_behind_one_address_each_have_their_sa(sadb: Sadb) -> None:
    add_client(sadb, 0x1001, "10.3.0.7")
    add_client(sadb, 0x1002, "10.3.0.8")
    assert found(sadb, "10.3.0.7") == 0x1001
    assert found(sadb, "10.3.0.8") == 0x1002
    assert found(sadb, "10.3.0.9") is None
    # The outer pair alone names one of them only: why a tunnel to any peer cannot use it.
    pair = sadb.lookup_outbound(LOCAL_B, ip(PEER).packed)
    assert pair is not None and pair.spi == 0x1002
    # Another local address is another gateway's tunnel.
    assert found(sadb, "10.3.0.7", local=ip("192.0.2.99").packed) is None


def test_the_most_specific_inner_destination_wins(sadb: Sadb) -> None:
    add_client(sadb, 0x2001, "0.0.0.0", 0)  # 0.0.0.0 with prefix 0: every address
    add_client(sadb, 0x2002, "10.3.0.0", 16)
    add_client(sadb, 0x2003, "10.3.1.0", 24)
    add_client(sadb, 0x2004, "10.3.1.9", 32)
    assert found(sadb, "10.3.1.9") == 0x2004
    assert found(sadb, "10.3.1.10") == 0x2003
    assert found(sadb, "10.3.7.1") == 0x2002
    assert found(sadb, "198.51.100.1") == 0x2001
    send(sadb, by_spi(SadbMsgType.DELETE, 0x2003, PEER))
    assert found(sadb, "10.3.1.10") == 0x2002


def test_a_zero_prefix_on_an_address_is_a_host(sadb: Sadb) -> None:
    add_client(sadb, 0x2101, "10.3.0.7", 0)  # RFC 2367: prefixlen 0 on an address
    assert found(sadb, "10.3.0.7") == 0x2101
    assert found(sadb, "10.3.0.8") is None


def test_the_inner_source_must_be_covered_too(sadb: Sadb) -> None:
    add_client(sadb, 0x3001, "10.3.0.7", local_net=("203.0.113.0", 25))
    add_client(sadb, 0x3002, "10.3.0.7", local_net=("203.0.113.128", 25))
    assert found(sadb, "10.3.0.7", src="203.0.113.5") == 0x3001
    assert found(sadb, "10.3.0.7", src="203.0.113.200") == 0x3002
    assert found(sadb, "10.3.0.7", src="198.51.100.1") is None


def test_ipv6_inner_addresses(sadb: Sadb) -> None:
    msg = add(0x4001, extra=inner("2001:db8:1::", 48, "2001:db8:3::7", 128))
    assert send(sadb, msg).errno == 0
    msg = add(0x4002, extra=inner("2001:db8:1::", 48, "2001:db8:3::", 64))
    assert send(sadb, msg).errno == 0
    assert found(sadb, "2001:db8:3::7", src="2001:db8:1::1") == 0x4001
    assert found(sadb, "2001:db8:3::8", src="2001:db8:1::1") == 0x4002
    assert found(sadb, "10.3.0.7") is None


def test_delete_and_expiry_take_the_sa_out_of_the_index(sadb: Sadb) -> None:
    hard = SadbLifetime(ExtType.LIFETIME_HARD, addtime=100)
    add_client(sadb, 0x5001, "10.3.0.7")
    add_client(sadb, 0x5002, "10.3.0.8", hard=hard)
    index = sadb._tables[3].inner
    assert len(index) == 2
    send(sadb, by_spi(SadbMsgType.DELETE, 0x5001, PEER))
    assert found(sadb, "10.3.0.7") is None and len(index) == 1
    sadb.age(100.0)  # hard lifetime: DEAD and reaped
    assert found(sadb, "10.3.0.8") is None and len(index) == 0
    assert index._lengths == {} and index._buckets == {}
    add_client(sadb, 0x5003, "10.3.0.8")  # the address goes to the next client
    assert found(sadb, "10.3.0.8") == 0x5003


def test_flush_empties_the_index(sadb: Sadb) -> None:
    for n in range(5):
        add_client(sadb, 0x5100 + n, f"10.3.0.{n + 1}")
    send(sadb, PfkeyMessage(SadbMsgType.FLUSH, 3))
    assert len(sadb._tables[3].inner) == 0 and found(sadb, "10.3.0.1") is None


def test_newest_mature_first_then_dying(sadb: Sadb) -> None:
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, addtime=50)
    add_client(sadb, 0x6001, "10.3.0.7", soft=soft)
    sadb.age(60.0)  # DYING: rekey due
    assert found(sadb, "10.3.0.7") == 0x6001  # still used until its successor is there
    add_client(sadb, 0x6002, "10.3.0.7")
    assert found(sadb, "10.3.0.7") == 0x6002


def test_update_moves_an_sa_to_its_new_inner_destination(sadb: Sadb) -> None:
    add_client(sadb, 0x7001, "10.3.0.7")
    moved = PfkeyMessage(
        SadbMsgType.UPDATE, 3,
        extensions=(SadbSa(0x7001, state=SaState.MATURE),
                    SadbAddress(ExtType.ADDRESS_SRC, ip(LOCAL)),
                    SadbAddress(ExtType.ADDRESS_DST, ip(PEER)),
                    *inner(GATEWAY_NET, 24, "10.3.0.9", 32)),
    )  # fmt: skip
    assert send(sadb, moved).errno == 0
    assert found(sadb, "10.3.0.7") is None
    assert found(sadb, "10.3.0.9") == 0x7001
    assert len(sadb._tables[3].inner) == 1


def test_inbound_sas_are_not_indexed(sadb: Sadb) -> None:
    # The gateway's inbound SA from a road warrior: its inner destination is the
    # gateway's own network, never where outbound packets go.
    spi = larval_spi(sadb)
    msg = update(spi, extra=inner("10.3.0.7", 32, GATEWAY_NET, 24))
    sa_ext = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16,
                    SaFlags.X_TUNNEL | SaFlags.X_INBOUND)  # fmt: skip
    msg = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:]))
    assert send(sadb, msg).errno == 0
    assert len(sadb._tables[3].inner) == 0
    assert sadb.lookup_outbound_inner(ip(PEER).packed, ip("10.3.0.7").packed,
                                      ip("203.0.113.5").packed) is None  # fmt: skip


def test_larval_sas_are_never_chosen(sadb: Sadb) -> None:
    from larval.pfkey.requests import getspi

    ask = getspi(LOCAL, PEER)
    exts = (*ask.extensions, *inner(GATEWAY_NET, 24, "10.3.0.7", 32))
    ask = PfkeyMessage(ask.msg_type, ask.satype, extensions=exts)
    assert send(sadb, ask).errno == 0
    assert found(sadb, "10.3.0.7") is None


@pytest.mark.parametrize(
    ("exts", "diagnostic", "text"),
    [
        (inner(GATEWAY_NET, 24, "10.3.0.7", 33), Diagnostic.PREFIX_INNER_DST,
         "inner destination 10.3.0.7/33: prefix too long"),
        (inner(GATEWAY_NET, 25 + 100, "10.3.0.7", 32), Diagnostic.PREFIX_INNER_SRC,
         "inner source 203.0.113.0/125: prefix too long"),
        (inner("2001:db8::", 32, "10.3.0.7", 32), Diagnostic.INNER_AF_MISMATCH,
         "inner source 2001:db8:: and destination 10.3.0.7 differ in family"),
    ],
)  # fmt: skip
def test_bad_inner_selectors_are_refused(
    sadb: Sadb, exts: tuple[SadbAddress, ...], diagnostic: int, text: str
) -> None:
    assert_add_refused(sadb, add(0x8001, extra=exts), diagnostic, text)


def test_an_sa_killed_while_being_reindexed_stays_out(sadb: Sadb) -> None:
    # DELETE marks the SA DEAD before taking it out of the tables; an UPDATE's reindex
    # that runs after that must not put it back.
    add_client(sadb, 0x9001, "10.3.0.7")
    table = sadb._tables[3]
    sa = table.get(0x9001, ip(PEER).packed)
    assert isinstance(sa, SecurityAssociation)
    send(sadb, by_spi(SadbMsgType.DELETE, 0x9001, PEER))
    table.reindex_inner(sa)
    assert len(table.inner) == 0 and sa.inner_key is None


def reference(
    sas: list[tuple[int, ipaddress.IPv4Network, ipaddress.IPv4Network]], src: str, dst: str
) -> int | None:
    """The longest inner destination prefix covering `dst`, newest first among equals,
    whose inner source covers `src`: a plain scan, what the index must agree with."""
    best: tuple[int, int, int] | None = None  # (prefix length, order added, SPI)
    for order, (spi, isrc, idst) in enumerate(sas):
        if ip(dst) in idst and ip(src) in isrc:
            candidate = (idst.prefixlen, order, spi)
            if best is None or candidate > best:
                best = candidate
    return best[2] if best is not None else None


@pytest.mark.parametrize("seed", range(2))
def test_lookups_agree_with_a_plain_scan(sadb: Sadb, seed: int) -> None:
    import random

    rng = random.Random(seed)
    sas = []
    for n in range(200):
        plen = rng.choice((32, 32, 32, 28, 24, 16, 0))
        dst = ipaddress.ip_network(((10 << 24) | rng.getrandbits(12), plen), strict=False)
        splen = rng.choice((24, 25, 0))
        src = ipaddress.ip_network(((203 << 24) | (113 << 8) | rng.getrandbits(8), splen),
                                   strict=False)  # fmt: skip
        spi = 0x10000 + n
        reply = send(sadb, add(spi, extra=inner(str(src.network_address), splen,
                                                 str(dst.network_address), plen)))  # fmt: skip
        assert reply.errno == 0
        sas.append((spi, src, dst))
    for spi, _, _ in rng.sample(sas, 50):  # some clients leave
        send(sadb, by_spi(SadbMsgType.DELETE, spi, PEER))
    left = [s for s in sas if sadb._tables[3].get(s[0], ip(PEER).packed) is not None]
    for _ in range(600):
        dst = str(ipaddress.IPv4Address((10 << 24) | rng.getrandbits(12)))
        src = str(ipaddress.IPv4Address((203 << 24) | (113 << 8) | rng.getrandbits(8)))
        assert found(sadb, dst, src) == reference(left, src, dst), (src, dst)


def test_threads_adding_deleting_and_looking_up_leave_a_clean_index(sadb: Sadb) -> None:
    import threading

    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(base: int) -> None:
        try:
            for round_ in range(30):
                for n in range(20):
                    add_client(sadb, base + round_ * 100 + n, f"10.3.{base >> 16}.{n + 1}")
                for n in range(20):
                    send(sadb, by_spi(SadbMsgType.DELETE, base + round_ * 100 + n, PEER))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def look() -> None:
        try:
            while not stop.is_set():
                for n in range(20):
                    sa = sadb.lookup_outbound_inner(LOCAL_B, ip("203.0.113.5").packed,
                                                    ip(f"10.3.1.{n + 1}").packed)  # fmt: skip
                    assert sa is None or sa.state in (SaState.MATURE, SaState.DEAD)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    writers = [threading.Thread(target=churn, args=(b,)) for b in (0x10000, 0x20000)]
    reader = threading.Thread(target=look)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    index = sadb._tables[3].inner
    assert len(index) == 0 and index._buckets == {} and index._lengths == {}
