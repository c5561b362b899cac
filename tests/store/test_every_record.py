"""Hypothesis: every kind of record larval keeps, written as larval writes it into a real
SQLite store, the store closed and opened again, and read back as a restart reads it.

* ``IKE_SA``: an IKE SA's value of either version with every scalar member drawn at
  random (Message IDs, SPIs, keys, counters, times, flags, names), inside the key
  manager's document.
* ``CHILD_SA``: the PF_KEY UPDATE that installed an SA, with random SPI, keys, replay
  window, lifetimes and addresses of both families; restored as the ADD a restart sends,
  with the sequence state the stack stored for it.
* ``ESP_SEQ`` and ``ESP_REPLAY``: a reserved mark and a replay checkpoint of any size.
* ``LEASE``: the pool leases of identities text or binary, online or not, come back
  for the identities that held them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.ike.state import U32, U64, IkeSaState, Port, Secret
from larval.keymgr.persist import Persistence, _offline_leases, read_doc, readded
from larval.pfkey import ExtType, SadbAddress, SadbLifetime, SadbMsgType, SadbSa, decode
from larval.pfkey.requests import keyed
from larval.pools import Pools
from larval.stack.esp_state import (
    ReplayCheckpoint,
    encode_replay,
    load_esp_state,
    record_key,
    seq_state_extension,
)
from larval.store import CHILD_SA, ESP_REPLAY, ESP_SEQ, IKE_SA, LEASE, MemoryStore, RecordKey
from larval.store.crypto import StateKey
from larval.store.sqlite import SqliteStore
from tests.ike.test_state import v2_value, value

KEY = StateKey(bytes(range(32)))
SCALARS: dict[object, st.SearchStrategy[Any]] = {
    U32: st.integers(0, (1 << 32) - 1),
    U64: st.integers(0, (1 << 64) - 1),
    Port: st.integers(1, 65535),
    bool: st.booleans(),
    int: st.integers(0, (1 << 31) - 1),
    float: st.floats(allow_nan=False, allow_infinity=False),
    str: st.text(max_size=16),
    bytes: st.binary(max_size=48),
    Secret: st.binary(max_size=64).map(Secret),
}


def _strategy(hint: object) -> st.SearchStrategy[Any] | None:
    """What a member of this type may hold, for the scalar types; None for the others
    (tuples, nested values), which keep the example's."""
    if hint in SCALARS:
        return SCALARS[hint]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and (inner := _strategy(args[0])) is not None:
            return st.one_of(st.none(), inner)
    return None


def _drawn(data: st.DataObject, obj: Any) -> Any:
    """`obj` with each scalar member drawn at random, nested values likewise."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    changes = {}
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        if dataclasses.is_dataclass(current) and not isinstance(current, Secret):
            changes[f.name] = _drawn(data, current)
        elif (strategy := _strategy(hints[f.name])) is not None:
            changes[f.name] = data.draw(strategy, label=f"{type(obj).__name__}.{f.name}")
    return dataclasses.replace(obj, **changes)


def _through_sqlite(records: dict[RecordKey, bytes]) -> dict[str, dict[str, bytes]]:
    """Written in one batch, the store closed, opened again and read."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "state.db")
        store = SqliteStore(path, KEY)
        store.write(records)
        store.close()
        again = SqliteStore(path, KEY)
        try:
            return again.load()
        finally:
            again.close()


@settings(max_examples=40, deadline=None)
@given(version=st.sampled_from([1, 2]), data=st.data())
def test_any_ike_sa_record_reads_back_equal(version: int, data: st.DataObject) -> None:
    drawn = _drawn(data, value() if version == 1 else v2_value())
    state = dataclasses.replace(drawn, ike_version=version)
    key = f"{state.spi_i.hex()}/{state.spi_r.hex()}"
    doc = {"connection": state.name, "local": "192.0.2.1", "leases": [],
           "state": state.to_json()}  # fmt: skip
    loaded = _through_sqlite({(IKE_SA, key): json.dumps(doc, sort_keys=True).encode()})
    back = read_doc(IKE_SA, key, loaded[IKE_SA][key])
    assert back is not None and back["connection"] == state.name
    assert IkeSaState.from_json(back["state"]) == state


ADDRESSES = st.one_of(
    st.integers(0, (1 << 32) - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, (1 << 128) - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
)


@settings(max_examples=60, deadline=None)
@given(
    spi=st.integers(0x100, (1 << 32) - 1),
    replay=st.integers(0, 255),
    key=st.binary(min_size=20, max_size=36),
    family=st.sampled_from([4, 6]),
    data=st.data(),
    soft=st.tuples(st.integers(0, 1 << 40), st.integers(1, 86_400)),
    hard=st.tuples(st.integers(0, 1 << 40), st.integers(1, 86_400)),
    mark=st.one_of(st.none(), st.integers(1, (1 << 64) - 1)),
    top=st.integers(0, (1 << 64) - 1),
    bits=st.sampled_from([0, 32, 64, 1024]),
    carried=st.integers(0, 1 << 40),
)
def test_any_child_sa_record_is_added_again_as_it_was_installed(
    spi: int,
    replay: int,
    key: bytes,
    family: int,
    data: st.DataObject,
    soft: tuple[int, int],
    hard: tuple[int, int],
    mark: int | None,
    top: int,
    bits: int,
    carried: int,
) -> None:
    src, dst = (
        data.draw(ADDRESSES.filter(lambda a, f=family: ipaddress.ip_address(a).version == f))
        for _ in range(2)
    )
    installed = keyed(
        SadbMsgType.UPDATE, spi, src, dst, encrypt=20, encrypt_key=key, replay=replay,
        soft=SadbLifetime(ExtType.LIFETIME_SOFT, 0, soft[0], soft[1], 0),
        hard=SadbLifetime(ExtType.LIFETIME_HARD, 0, hard[0], hard[1], 0),
    )  # fmt: skip
    checkpoint = ReplayCheckpoint(top, bits, data.draw(st.integers(0, (1 << bits) - 1)))
    where = record_key(spi, ipaddress.ip_address(dst).packed)
    doc = {"sas": {"in": installed.encode().hex()}}
    records: dict[RecordKey, bytes] = {
        (CHILD_SA, f"{spi:08x}"): json.dumps(doc).encode(),
        (ESP_REPLAY, where): encode_replay(checkpoint),
    }
    if mark is not None:
        records[(ESP_SEQ, where)] = mark.to_bytes(8, "big")
    loaded = _through_sqlite(records)
    back = read_doc(CHILD_SA, f"{spi:08x}", loaded[CHILD_SA][f"{spi:08x}"])
    assert back is not None

    class Loaded:
        def load(self) -> dict[str, dict[str, bytes]]:
            return loaded

    now = 1_000_000.0
    added = decode(readded(back["sas"]["in"], now, now + 100.0, now + 200.0,
                           load_esp_state(Loaded()), carried))  # type: ignore[arg-type]  # fmt: skip
    assert added.msg_type == SadbMsgType.ADD
    sa = added.find(ExtType.SA)
    assert isinstance(sa, SadbSa) and (sa.spi, sa.replay) == (spi, replay)
    assert added.find(ExtType.KEY_ENCRYPT) == installed.find(ExtType.KEY_ENCRYPT)
    for ext_type in (ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST):
        address = added.find(ext_type)
        assert isinstance(address, SadbAddress)
        assert address == installed.find(ext_type)
    for ext_type, (limit, _), left in ((ExtType.LIFETIME_SOFT, soft, 100),
                                       (ExtType.LIFETIME_HARD, hard, 200)):  # fmt: skip
        lifetime = added.find(ext_type)
        assert isinstance(lifetime, SadbLifetime)
        assert lifetime.addtime == left
        assert lifetime.bytes == (max(1, limit - carried) if limit and carried else limit)
    assert added.find(ExtType.X_LARVAL_SEQ_STATE) == seq_state_extension(mark, checkpoint)


@settings(max_examples=40, deadline=None)
@given(
    clients=st.lists(
        st.tuples(
            st.one_of(st.text(min_size=1, max_size=20), st.binary(min_size=1, max_size=20)),
            st.booleans(),
        ),
        max_size=8,
        unique_by=lambda c: c[0].encode() if isinstance(c[0], str) else c[0],
    )
)
def test_any_pool_lease_comes_back_for_its_identity(
    clients: list[tuple[str | bytes, bool]],
) -> None:
    """Leases of identities text or binary, some connected and some gone offline, kept by
    the key manager's writer and read by its restore into pools as configured: each
    identity that comes back is given the address it had."""
    pools = Pools.from_dict({"rw": {"addrs": "10.3.0.0/24"}})
    had = {}
    for identity, online in clients:
        lease = pools.acquire(["rw"], identity, ipaddress.ip_address("0.0.0.0"))
        assert lease is not None
        had[identity] = lease.address
        if not online:
            pools.release(identity, lease)
    writer = Persistence(MemoryStore())
    writer._lease_records(pools)
    loaded = _through_sqlite(dict(writer._puts)) if writer._puts else {}
    again = Pools.from_dict({"rw": {"addrs": "10.3.0.0/24"}})
    keymgr = types.SimpleNamespace(persist=Persistence(MemoryStore()), pools=again)
    _offline_leases(keymgr, loaded.get(LEASE, {}))  # type: ignore[arg-type]
    for identity, address in reversed(had.items()):  # the last first: no rule of order helps
        lease = again.acquire(["rw"], identity, ipaddress.ip_address("0.0.0.0"))
        assert lease is not None and lease.address == address
