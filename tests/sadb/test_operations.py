"""SADB operations, one PF_KEY request at a time, with the replies they give."""

from __future__ import annotations

import errno

import pytest

from larval.pfkey import (
    AuthAlg,
    Diagnostic,
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbKey,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbSupported,
    SadbXEdump,
    SadbXPair,
    SaState,
    SaType,
)
from larval.pfkey.requests import address_pair, by_spi, getspi, keyed
from larval.sadb import Audience, HoldResult, Sadb
from tests.sadb.support import (
    GCM_KEY,
    LOCAL,
    LOCAL_B,
    PEER,
    PEER_B,
    Released,
    add,
    larval_spi,
    only,
    recording_sadb,
    update,
)


def sa_ext(msg: PfkeyMessage) -> SadbSa:
    ext = msg.find(ExtType.SA)
    assert isinstance(ext, SadbSa)
    return ext


def refused(replies: list, err: int, diag: int) -> None:  # type: ignore[type-arg]
    msg = only(replies)
    assert (msg.errno, msg.diagnostic) == (err, diag), msg
    assert msg.extensions == ()
    assert replies[0].audience is Audience.SENDER


# -- GETSPI ----------------------------------------------------------------------------


def test_getspi_reserves_a_larval_spi_in_range(sadb: Sadb) -> None:
    # GETSPI <base, address(S, D), SPI range> --> <base, SA(LARVAL), address(S, D)>
    replies = sadb.handle(getspi(PEER, LOCAL, seq=7, pid=42, spi_min=0x1000, spi_max=0x1FFF), 0.0)
    msg = only(replies)
    assert replies[0].audience is Audience.SENDER
    assert (msg.msg_type, msg.seq, msg.pid, msg.errno) == (SadbMsgType.GETSPI, 7, 42, 0)
    ext = sa_ext(msg)
    assert 0x1000 <= ext.spi <= 0x1FFF
    assert ext.state == SaState.LARVAL
    sa = sadb.lookup_inbound(ext.spi, LOCAL_B)
    assert sa is not None and sa.state == SaState.LARVAL and not sa.ready
    assert [a.addr.exploded for a in msg.extensions[1:]] == [PEER, LOCAL]


def test_getspi_never_gives_a_reserved_spi_and_fills_a_small_range() -> None:
    sadb = Sadb(random_bytes=bytes)  # zero bytes: always the same first guess, the lowest
    spis = set()
    for seq in range(1, 11):
        msg = only(sadb.handle(getspi(PEER, LOCAL, seq=seq, spi_min=0, spi_max=265), 0.0))
        spis.add(sa_ext(msg).spi)
    assert spis == set(range(256, 266))  # the walk found every free one, none below 256
    refused(sadb.handle(getspi(PEER, LOCAL, spi_min=0, spi_max=265), 0.0), errno.EEXIST, 0)


def test_getspi_refuses_a_range_of_reserved_spis(sadb: Sadb) -> None:
    refused(
        sadb.handle(getspi(PEER, LOCAL, spi_min=1, spi_max=255), 0.0),
        errno.EINVAL,
        Diagnostic.MALFORMED_RANGE,
    )


@pytest.mark.parametrize(
    ("drop", "diag"),
    [
        (ExtType.SPIRANGE, Diagnostic.MISSING_RANGE),
        (ExtType.ADDRESS_SRC, Diagnostic.MISSING_SRC),
        (ExtType.ADDRESS_DST, Diagnostic.MISSING_DST),
    ],
)
def test_getspi_missing_extension(sadb: Sadb, drop: int, diag: int) -> None:
    full = getspi(PEER, LOCAL)
    msg = PfkeyMessage(
        full.msg_type,
        full.satype,
        extensions=tuple(e for e in full.extensions if e.ext_type != drop),
    )
    refused(sadb.handle(msg, 0.0), errno.EINVAL, diag)


def test_satype_is_needed_and_must_be_known(sadb: Sadb) -> None:
    refused(
        sadb.handle(getspi(PEER, LOCAL, satype=SaType.UNSPEC), 0.0),
        errno.EINVAL,
        Diagnostic.SATYPE_NEEDED,
    )
    refused(
        sadb.handle(getspi(PEER, LOCAL, satype=SaType.RSVP), 0.0),
        errno.EINVAL,
        Diagnostic.UNKNOWN_SATYPE,
    )


def test_address_families_must_agree(sadb: Sadb) -> None:
    refused(sadb.handle(getspi(PEER, "2001:db8::1"), 0.0), errno.EINVAL, Diagnostic.AF_MISMATCH)


# -- UPDATE ----------------------------------------------------------------------------


def test_update_matures_a_larval_sa_and_tells_everyone_without_keys(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    replies = sadb.handle(update(spi, seq=1), 1.0)
    msg = only(replies)
    assert replies[0].audience is Audience.ALL
    assert msg.errno == 0 and sa_ext(msg).state == SaState.MATURE
    assert msg.find(ExtType.KEY_ENCRYPT) is None and msg.find(ExtType.KEY_AUTH) is None
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None and sa.ready and sa.encrypt_key == GCM_KEY


def test_update_of_a_mature_sa_changes_lifetimes_but_never_keys(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    sadb.handle(update(spi), 1.0)
    refused(sadb.handle(update(spi), 2.0), errno.EINVAL, Diagnostic.EKEY_PRESENT)
    with_akey = keyed(
        SadbMsgType.UPDATE, spi, PEER, LOCAL,
        encrypt=EncryptAlg.AES, encrypt_key=bytes(16),
        auth=AuthAlg.SHA256HMAC, auth_key=bytes(32),
    )  # fmt: skip
    refused(sadb.handle(with_akey, 2.0), errno.EINVAL, Diagnostic.AKEY_PRESENT)
    lifetimes_only = PfkeyMessage(
        SadbMsgType.UPDATE,
        SaType.ESP,
        extensions=(
            SadbSa(spi, state=SaState.MATURE),
            SadbLifetime(ExtType.LIFETIME_HARD, addtime=600),
            SadbLifetime(ExtType.LIFETIME_SOFT, addtime=500),
            *address_pair(PEER, LOCAL),
        ),
    )
    assert only(sadb.handle(lifetimes_only, 3.0)).errno == 0
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None and sa.hard is not None and sa.hard.addtime == 600


def test_update_of_an_unknown_sa(sadb: Sadb) -> None:
    refused(sadb.handle(update(0x4242), 0.0), errno.ESRCH, Diagnostic.SA_NOTFOUND)


def test_update_of_a_larval_sa_needs_keys(sadb: Sadb) -> None:
    spi = larval_spi(sadb)
    bare = PfkeyMessage(
        SadbMsgType.UPDATE,
        SaType.ESP,
        extensions=(SadbSa(spi, state=SaState.MATURE), *address_pair(PEER, LOCAL)),
    )
    refused(sadb.handle(bare, 0.0), errno.EINVAL, Diagnostic.MISSING_EKEY)
    larval = PfkeyMessage(
        SadbMsgType.UPDATE, SaType.ESP, extensions=(SadbSa(spi), *address_pair(PEER, LOCAL))
    )
    refused(sadb.handle(larval, 0.0), errno.EINVAL, Diagnostic.BAD_SASTATE)


@pytest.mark.parametrize(
    ("kw", "diag"),
    [
        ({"encrypt": 99, "encrypt_key": bytes(16)}, Diagnostic.BAD_EALG),
        ({"encrypt": EncryptAlg.AES_GCM_16, "encrypt_key": bytes(16)}, Diagnostic.BAD_EKEYBITS),
        ({"encrypt": EncryptAlg.AES}, Diagnostic.MISSING_EKEY),
        ({"encrypt": EncryptAlg.AES, "encrypt_key": bytes(16)}, Diagnostic.BAD_AALG),
        (
            {"encrypt": EncryptAlg.AES, "encrypt_key": bytes(16), "auth": AuthAlg.SHA256HMAC},
            Diagnostic.MISSING_AKEY,
        ),
        (
            {
                "encrypt": EncryptAlg.AES,
                "encrypt_key": bytes(16),
                "auth": AuthAlg.SHA256HMAC,
                "auth_key": bytes(20),
            },
            Diagnostic.BAD_AKEYBITS,
        ),
        (
            {
                "encrypt": EncryptAlg.AES_GCM_16,
                "encrypt_key": GCM_KEY,
                "auth": AuthAlg.SHA256HMAC,
                "auth_key": bytes(32),
            },
            Diagnostic.BAD_AALG,
        ),
        ({"encrypt": EncryptAlg.NULL, "encrypt_key": bytes(16)}, Diagnostic.BAD_EKEYBITS),
        ({"encrypt": EncryptAlg.NULL}, Diagnostic.BAD_AALG),
    ],
)
def test_keys_are_checked_against_the_algorithms(sadb: Sadb, kw: dict, diag: int) -> None:  # type: ignore[type-arg]
    refused(sadb.handle(keyed(SadbMsgType.ADD, 0x1000, LOCAL, PEER, **kw), 0.0), errno.EINVAL, diag)


@pytest.mark.parametrize(
    ("field", "diag"),
    [
        ("allocations", Diagnostic.ALLOC_HSERR),
        ("bytes", Diagnostic.BYTES_HSERR),
        ("addtime", Diagnostic.ADDTIME_HSERR),
        ("usetime", Diagnostic.USETIME_HSERR),
    ],
)
def test_soft_lifetime_above_hard_is_refused(sadb: Sadb, field: str, diag: int) -> None:
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, **{field: 200})
    hard = SadbLifetime(ExtType.LIFETIME_HARD, **{field: 100})
    refused(sadb.handle(add(0x1000, soft=soft, hard=hard), 0.0), errno.EINVAL, diag)
    assert len(sadb) == 0


# -- ADD, GET, DELETE, FLUSH, DUMP, REGISTER -------------------------------------------


def test_add_get_delete(sadb: Sadb) -> None:
    assert only(sadb.handle(add(0x1000), 0.0)).errno == 0
    refused(sadb.handle(add(0x1000), 0.0), errno.EEXIST, 0)
    got = only(sadb.handle(by_spi(SadbMsgType.GET, 0x1000, PEER, seq=3), 0.0))
    key = got.find(ExtType.KEY_ENCRYPT)
    assert isinstance(key, SadbKey) and key.key == GCM_KEY and key.bits == 160
    assert sadb.lookup_outbound(LOCAL_B, PEER_B) is not None
    deleted = sadb.handle(by_spi(SadbMsgType.DELETE, 0x1000, PEER), 0.0)
    assert deleted[0].audience is Audience.ALL and only(deleted).errno == 0
    assert sadb.lookup_inbound(0x1000, PEER_B) is None
    assert sadb.lookup_outbound(LOCAL_B, PEER_B) is None
    refused(
        sadb.handle(by_spi(SadbMsgType.GET, 0x1000, PEER), 0.0), errno.ESRCH, Diagnostic.SA_NOTFOUND
    )


def test_add_refuses_reserved_spi_and_bad_state(sadb: Sadb) -> None:
    refused(sadb.handle(add(255), 0.0), errno.EINVAL, Diagnostic.MALFORMED_SA)
    bad_state = PfkeyMessage(
        SadbMsgType.ADD,
        SaType.ESP,
        extensions=(SadbSa(0x1000, state=SaState.DEAD, encrypt=EncryptAlg.AES_GCM_16),
                    *add(0x1000).extensions[1:]),
    )  # fmt: skip
    refused(sadb.handle(bad_state, 0.0), errno.EINVAL, Diagnostic.BAD_SASTATE)


def test_outbound_lookup_prefers_the_newest_mature_sa(sadb: Sadb) -> None:
    sadb.handle(add(0x1000), 0.0)
    sadb.handle(add(0x2000), 1.0)
    sa = sadb.lookup_outbound(LOCAL_B, PEER_B)
    assert sa is not None and sa.spi == 0x2000
    larval_spi(sadb)  # a LARVAL SA the other way is no candidate either way
    sa = sadb.lookup_outbound(LOCAL_B, PEER_B)
    assert sa is not None and sa.spi == 0x2000


def test_flush_and_dump(sadb: Sadb) -> None:
    larval = larval_spi(sadb)
    sadb.handle(add(0x1000), 0.0)
    dump = sadb.handle(PfkeyMessage(SadbMsgType.DUMP, SaType.ESP, seq=9), 0.0)
    assert all(r.audience is Audience.SENDER for r in dump)
    assert all(r.message.seq == 9 for r in dump[:-1])
    assert sorted(sa_ext(r.message).spi for r in dump[:-1]) == sorted([larval, 0x1000])
    end = dump[-1].message
    assert end.extensions == () and end.seq == 0  # the end of the dump (illumos keysock)
    flushed = sadb.handle(PfkeyMessage(SadbMsgType.FLUSH, SaType.UNSPEC), 0.0)
    assert flushed[0].audience is Audience.ALL and only(flushed).errno == 0
    assert len(sadb) == 0


def test_extended_dump_lists_idle_sas_only(sadb: Sadb) -> None:
    sadb.handle(add(0x1000), 0.0)
    sadb.handle(add(0x2000), 0.0)
    busy = sadb.lookup_inbound(0x2000, PEER_B)
    assert busy is not None
    busy.account(100, 50.0)
    edump = PfkeyMessage(SadbMsgType.DUMP, SaType.ESP, extensions=(SadbXEdump(30),))
    listed = [sa_ext(r.message).spi for r in sadb.handle(edump, 60.0)[:-1]]
    assert listed == [0x1000]


def test_register_lists_what_esp_supports(sadb: Sadb) -> None:
    msg = only(sadb.handle(PfkeyMessage(SadbMsgType.REGISTER, SaType.ESP, seq=1), 0.0))
    auth, encrypt = msg.extensions
    assert isinstance(auth, SadbSupported) and isinstance(encrypt, SadbSupported)
    assert {a.id for a in auth.algs} == {AuthAlg.SHA256HMAC, AuthAlg.SHA384HMAC, AuthAlg.SHA512HMAC}
    gcm = next(a for a in encrypt.algs if a.id == EncryptAlg.AES_GCM_16)
    assert (gcm.minbits, gcm.maxbits, gcm.saltbits) == (128, 256, 32)


def test_unknown_message_type(sadb: Sadb) -> None:
    refused(sadb.handle(PfkeyMessage(99, SaType.ESP), 0.0), errno.EINVAL, Diagnostic.UNKNOWN_MSG)


def test_pairs_are_deleted_together(sadb: Sadb) -> None:
    sadb.handle(add(0x1000), 0.0)
    sadb.handle(add(0x2000, src=PEER, dst=LOCAL, extra=(SadbXPair(0x1000),)), 0.0)
    only(sadb.handle(by_spi(SadbMsgType.X_DELPAIR, 0x2000, LOCAL), 0.0))
    assert len(sadb) == 0


# -- lifetimes and EXPIRE --------------------------------------------------------------


def test_soft_then_hard_expiry(sadb: Sadb) -> None:
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, addtime=100)
    hard = SadbLifetime(ExtType.LIFETIME_HARD, addtime=120)
    sadb.handle(add(0x1000, soft=soft, hard=hard), 1000.0)
    assert sadb.age(1099.0) == []
    (expire,) = sadb.age(1100.0)
    assert expire.audience is Audience.REGISTERED
    msg = expire.message
    assert msg.msg_type == SadbMsgType.EXPIRE and sa_ext(msg).state == SaState.DYING
    assert (
        msg.find(ExtType.LIFETIME_SOFT) == soft and msg.find(ExtType.LIFETIME_CURRENT) is not None
    )
    assert sadb.age(1101.0) == []  # one soft EXPIRE, not one per pass
    (expire,) = sadb.age(1120.0)
    assert sa_ext(expire.message).state == SaState.DEAD
    assert expire.message.find(ExtType.LIFETIME_HARD) == hard
    assert len(sadb) == 0


def test_byte_and_use_lifetimes(sadb: Sadb) -> None:
    sadb.handle(add(0x1000, soft=SadbLifetime(ExtType.LIFETIME_SOFT, bytes=1000)), 0.0)
    sadb.handle(add(0x2000, hard=SadbLifetime(ExtType.LIFETIME_HARD, usetime=10)), 0.0)
    a, b = sadb.lookup_inbound(0x1000, PEER_B), sadb.lookup_inbound(0x2000, PEER_B)
    assert a is not None and b is not None
    a.account(999, 1.0)
    assert sadb.age(500.0) == []  # b unused: its use time has not started
    a.account(1, 2.0)
    b.account(1, 600.0)
    states = {sa_ext(r.message).spi: sa_ext(r.message).state for r in sadb.age(610.0)}
    assert states == {0x1000: SaState.DYING, 0x2000: SaState.DEAD}


def test_larval_lifetime_ends_a_forgotten_getspi_and_drops_its_packets(
    sadb: Sadb, released: Released
) -> None:
    spi = larval_spi(sadb, now=0.0)
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None
    assert sadb.hold_inbound(sa, b"p1") is HoldResult.HELD
    assert sadb.age(89.0) == []
    assert sadb.lookup_inbound(spi, LOCAL_B) is sa
    # illumos sadb_age_assoc: a larval SA dies without an EXPIRE.
    assert sadb.age(90.0) == []
    assert sadb.lookup_inbound(spi, LOCAL_B) is None and sa.state == SaState.DEAD
    assert sadb.counters["expired"] == 1 and released.inbound == []


def test_idle_lifetime_reports_once_per_quiet_spell(sadb: Sadb) -> None:
    idle = SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=60, usetime=30)
    sadb.handle(add(0x1000, extra=(idle,)), 0.0)
    sa = sadb.lookup_inbound(0x1000, PEER_B)
    assert sa is not None
    sa.account(10, 20.0)
    assert sadb.age(49.0) == []
    (expire,) = sadb.age(50.0)  # 30 s after the last use: the smaller idle time
    assert expire.message.find(ExtType.X_LIFETIME_IDLE) == SadbLifetime(
        ExtType.X_LIFETIME_IDLE, addtime=60, usetime=30
    )
    assert sa_ext(expire.message).state == SaState.MATURE  # the key manager decides
    assert sadb.age(70.0) == []
    sa.account(10, 75.0)
    assert len(sadb.age(105.0)) == 1


def test_idle_lifetime_alone_with_a_hard_one_is_taken_as_illumos_takes_it(sadb: Sadb) -> None:
    # illumos sadb_hardsoftchk() compares the idle lifetime only when soft and hard are
    # both given; an idle time past a lone hard one is harmless (the SA dies first).
    idle = SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=600)
    hard = SadbLifetime(ExtType.LIFETIME_HARD, addtime=300)
    assert only(sadb.handle(add(0x1000, hard=hard, extra=(idle,)), 0.0)).errno == 0


@pytest.mark.parametrize(
    ("idle", "diag"),
    [
        (SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=250), Diagnostic.ADDTIME_HSERR),
        (SadbLifetime(ExtType.X_LIFETIME_IDLE, usetime=250), Diagnostic.USETIME_HSERR),
    ],
)
def test_idle_lifetime_above_soft_and_hard_is_refused(
    sadb: Sadb, idle: SadbLifetime, diag: int
) -> None:
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, addtime=200, usetime=200)
    hard = SadbLifetime(ExtType.LIFETIME_HARD, addtime=300, usetime=300)
    refused(sadb.handle(add(0x1000, soft=soft, hard=hard, extra=(idle,)), 0.0), errno.EINVAL, diag)
    assert len(sadb) == 0


def test_ah_is_refused_as_a_type_larval_does_not_implement(sadb: Sadb) -> None:
    # illumos keysock answers a type with no consumer module EINVAL, UNKNOWN_SATYPE.
    for msg in (
        getspi(PEER, LOCAL, satype=SaType.AH),
        add(0x1000, satype=SaType.AH),
        keyed(SadbMsgType.UPDATE, 0x1000, LOCAL, PEER, encrypt=0, satype=SaType.AH),
        PfkeyMessage(SadbMsgType.REGISTER, SaType.AH),
    ):
        refused(sadb.handle(msg, 0.0), errno.EINVAL, Diagnostic.UNKNOWN_SATYPE)
    assert len(sadb) == 0


# -- held packets and acquire records --------------------------------------------------


def test_held_packets_are_released_in_order_by_update(sadb: Sadb, released: Released) -> None:
    spi = larval_spi(sadb)
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None
    for i in range(3):
        assert sadb.hold_inbound(sa, b"p%d" % i) is HoldResult.HELD
    sadb.handle(update(spi), 1.0)
    assert released.inbound == [(spi, b"p0"), (spi, b"p1"), (spi, b"p2")]
    assert sadb.counters["held"] == 3 and sadb.counters["released"] == 3
    assert sa.ready and sadb.hold_inbound(sa, b"late") is HoldResult.PROCESS


def test_hold_is_bounded_and_drops_the_oldest(released: Released) -> None:
    sadb = recording_sadb(released, hold_limit=2)
    spi = larval_spi(sadb)
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None
    for i in range(5):
        sadb.hold_inbound(sa, b"p%d" % i)
    sadb.handle(update(spi), 1.0)
    assert [p for _, p in released.inbound] == [b"p3", b"p4"]
    assert sadb.counters["replaced"] == 3


def test_delete_of_a_larval_sa_drops_what_it_holds(sadb: Sadb, released: Released) -> None:
    spi = larval_spi(sadb)
    sa = sadb.lookup_inbound(spi, LOCAL_B)
    assert sa is not None
    sadb.hold_inbound(sa, b"p")
    only(sadb.handle(by_spi(SadbMsgType.DELETE, spi, LOCAL), 1.0))
    assert sadb.counters["expired"] == 1 and released.inbound == []


def test_acquire_record_one_per_flow_bounded_released_by_add(
    sadb: Sadb, released: Released
) -> None:
    flow = ("203.0.113.5", "198.51.100.7")
    first = sadb.hold_outbound(flow, SaType.ESP, LOCAL_B, PEER_B, b"o0", 0.0)
    assert first is not None  # new record: the caller sends one ACQUIRE
    for i in range(1, 6):
        assert sadb.hold_outbound(flow, SaType.ESP, LOCAL_B, PEER_B, b"o%d" % i, 1.0) is None
    assert sadb.counters["acquires"] == 1 and sadb.counters["acquire_replaced"] == 2
    # The inbound SA of the pair does not release outbound packets.
    spi = larval_spi(sadb, seq=first.seq)
    sadb.handle(update(spi, seq=first.seq), 2.0)
    assert released.outbound == []
    sadb.handle(add(0x3000, seq=first.seq), 2.0)
    assert released.outbound == [(0x3000, b"o%d" % i) for i in range(2, 6)]
    assert sadb.acquire_records == 0


def test_acquire_records_time_out(sadb: Sadb, released: Released) -> None:
    sadb.hold_outbound("flow", SaType.ESP, LOCAL_B, PEER_B, b"o", 0.0)
    sadb.age(14.9)
    assert sadb.acquire_records == 1
    sadb.age(15.0)
    assert sadb.acquire_records == 0 and sadb.counters["acquire_expired"] == 1
    sadb.handle(add(0x3000), 16.0)
    assert released.outbound == []


def test_failed_acquire_drops_the_record(sadb: Sadb) -> None:
    record = sadb.hold_outbound("flow", SaType.ESP, LOCAL_B, PEER_B, b"o", 0.0)
    assert record is not None
    failed = PfkeyMessage(SadbMsgType.ACQUIRE, SaType.ESP, seq=record.seq, errno=errno.ENOENT)
    assert sadb.handle(failed, 1.0) == []
    assert sadb.acquire_records == 0


def test_spirange_extension_round_trip_shape() -> None:
    # The builder sends the whole range when none is asked for.
    msg = getspi(PEER, LOCAL)
    rng = msg.find(ExtType.SPIRANGE)
    assert isinstance(rng, SadbSpirange) and (rng.min, rng.max) == (0x100, 0xFFFFFFFF)


def test_sas_to_one_peer_share_its_packed_addresses(sadb: Sadb) -> None:
    # A million SAs to a few peers keep one bytes object per address, not one per SA.
    first = sa_ext(only(sadb.handle(getspi(PEER, LOCAL), 0.0))).spi
    second = sa_ext(only(sadb.handle(getspi(PEER, LOCAL), 0.0))).spi
    a, b = sadb.lookup_inbound(first, LOCAL_B), sadb.lookup_inbound(second, LOCAL_B)
    assert a is not None and b is not None and a is not b
    assert a.dst == LOCAL_B and a.src == PEER_B
    assert a.dst is b.dst and a.src is b.src
