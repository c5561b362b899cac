"""larval.store.etcd against a real etcd member: the client, and EtcdStore fenced by the
owner key's create revision."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.ha.election import Election
from larval.store import (
    CHILD_SA,
    ESP_SEQ,
    IKE_SA,
    KINDS,
    LEASE,
    MemoryStore,
    StoreError,
    StoreFenced,
)
from larval.store.etcd import (
    MAX_TXN_OPS,
    EtcdClient,
    EtcdStore,
    create_revision_is,
    owner_key,
    prefix_end,
    put_op,
    state_prefix,
)
from tests.ha.members import EtcdCluster, cluster, needs_etcd

pytestmark = needs_etcd

KEY = bytes(range(32))
_groups = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from cluster(Path(tmp_path_factory.mktemp("etcd")), 1)


@pytest.fixture
def client(etcd: EtcdCluster) -> EtcdClient:
    return EtcdClient(etcd.endpoints, timeout=2)


def group() -> str:
    return f"g{os.getpid()}-{next(_groups)}"


def owned_store(client: EtcdClient, name: str = "") -> tuple[Election, EtcdStore]:
    election = Election(client, name or group(), "gw1", ttl=10)
    assert election.campaign()
    return election, EtcdStore(client, election.group, KEY, election=election)


# -- the client


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_put_get_range_delete(client: EtcdClient) -> None:
    base = f"/test/{group()}/".encode()
    client.put(base + b"x", b"1")
    client.put(base + b"y", b"\x00\xff")
    client.put(base[:-1] + b"z", b"outside")
    got = client.get(base + b"y")
    assert got is not None and got.value == b"\x00\xff" and got.create_revision > 0
    assert client.get(base + b"nothing") is None
    kvs, revision = client.range(base)
    assert [(kv.key, kv.value) for kv in kvs] == [(base + b"x", b"1"), (base + b"y", b"\x00\xff")]
    assert revision >= got.mod_revision
    assert client.delete(base + b"x") == 1
    assert client.delete(base + b"x") == 0
    assert [kv.key for kv in client.range(base)[0]] == [base + b"y"]


def test_txn_on_create_revision(client: EtcdClient) -> None:
    key = f"/test/{group()}/k".encode()
    ok, _, _ = client.txn([create_revision_is(key, 0)], [put_op(key, b"first")])
    assert ok
    # The gateway omits "succeeded" when the compare fails: that is False, not an error.
    ok, _, _ = client.txn([create_revision_is(key, 0)], [put_op(key, b"second")])
    assert not ok
    kv = client.get(key)
    assert kv is not None and kv.value == b"first"
    ok, _, _ = client.txn([create_revision_is(key, kv.create_revision)], [put_op(key, b"third")])
    assert ok and client.get(key).value == b"third"  # type: ignore[union-attr]


def test_lease_grant_keepalive_revoke(client: EtcdClient) -> None:
    key = f"/test/{group()}/leased".encode()
    lease, ttl = client.lease_grant(5)
    assert lease and ttl == 5
    client.put(key, b"v", lease)
    assert client.get(key).lease == lease  # type: ignore[union-attr]
    assert client.lease_keepalive(lease) == 5
    client.lease_revoke(lease)
    assert client.get(key) is None  # the lease took its key with it
    assert client.lease_keepalive(lease) == 0
    client.lease_revoke(lease)  # already gone: no error


def test_watch_sees_puts_and_deletes(client: EtcdClient) -> None:
    base = f"/test/{group()}/".encode()
    revision = client.put(base + b"before", b"0")
    watch = client.watch(base, revision + 1)
    try:
        client.put(base + b"a", b"1")
        client.delete(base + b"a")
        seen = []
        for events in watch:
            seen += [(e.deleted, e.kv.key, e.kv.value) for e in events]
            if len(seen) >= 2:
                break
        assert seen == [(False, base + b"a", b"1"), (True, base + b"a", b"")]
    finally:
        watch.close()


def test_next_endpoint_on_connection_failure(etcd: EtcdCluster) -> None:
    dead = "http://127.0.0.1:1"
    client = EtcdClient([dead, *etcd.endpoints])
    client.put(b"/test/failover", b"ok")
    assert client.get(b"/test/failover").value == b"ok"  # type: ignore[union-attr]
    with pytest.raises(StoreError, match=r"no endpoint answers \(127\.0\.0\.1:1: .*127\.0\.0\.1:2"):
        EtcdClient([dead, "127.0.0.1:2"]).get(b"/x")


def test_silent_and_garbled_endpoints() -> None:
    """An endpoint that takes the connection but never answers times out, naming it; one
    that answers with something other than JSON is named too. Neither is retried."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"etcd 127.0.0.1:{port}: /v3/kv/range: timed out"):
            EtcdClient([f"127.0.0.1:{port}"], timeout=0.3).get(b"/x")
        assert time.monotonic() - started < 2

    def garble(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        thread = threading.Thread(target=garble, args=(server,))
        thread.start()
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}: /v3/kv/range: answer is not JSON"):
            EtcdClient([f"127.0.0.1:{port}"]).get(b"/x")
        thread.join()


def test_bad_endpoint_and_refused_request(client: EtcdClient) -> None:
    with pytest.raises(StoreError, match="'https://x:1': not http://HOST:PORT"):
        EtcdClient(["https://x:1"])
    with pytest.raises(StoreError, match="no endpoints"):
        EtcdClient([])
    key = b"/test/dup"
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:\d+: /v3/kv/txn: .*duplicate key"):
        client.txn([], [put_op(key, b"1"), put_op(key, b"2")])


# -- the store


def test_owner_writes_and_loads(client: EtcdClient) -> None:
    _, store = owned_store(client)
    store.write({(IKE_SA, "aa/bb"): b"ike", (ESP_SEQ, "1234@192.0.2.1"): b"\x00\x01"})
    store.write({(LEASE, "pool/10.3.0.1"): b"carol"}, [(IKE_SA, "aa/bb")])
    # A key both put and deleted is put.
    store.write({(CHILD_SA, "c1"): b"child"}, [(CHILD_SA, "c1"), (LEASE, "absent")])
    assert store.load() == {
        ESP_SEQ: {"1234@192.0.2.1": b"\x00\x01"},
        LEASE: {"pool/10.3.0.1": b"carol"},
        CHILD_SA: {"c1": b"child"},
    }


def test_values_are_sealed_under_the_state_key(client: EtcdClient) -> None:
    election, store = owned_store(client)
    store.write({(IKE_SA, "s"): b"plain secret"})
    raw = client.get(state_prefix(election.group) + b"ike_sa/s")
    assert raw is not None and b"plain secret" not in raw.value
    other = EtcdStore(client, election.group, bytes(32))
    with pytest.raises(StoreError, match="ike_sa 's': does not open under the state key"):
        other.load()
    # Moved to another record, a value no longer opens.
    client.put(state_prefix(election.group) + b"ike_sa/t", raw.value)
    with pytest.raises(StoreError, match="ike_sa 't'"):
        store.load()


def test_loser_cannot_write(client: EtcdClient) -> None:
    winner, store = owned_store(client)
    loser = Election(client, winner.group, "gw2", ttl=10)
    assert not loser.campaign()
    assert loser.owner == "gw1"
    with pytest.raises(StoreFenced, match="no longer owns"):
        EtcdStore(client, winner.group, KEY, election=loser).write({(IKE_SA, "x"): b"1"})
    # Even claiming an epoch that is not the owner key's, etcd refuses the write.
    forged = EtcdStore(client, winner.group, KEY, epoch=winner.epoch + 1)
    with pytest.raises(StoreFenced, match="etcd refused the write"):
        forged.write({(IKE_SA, "x"): b"1"})
    store.write({(IKE_SA, "x"): b"owner's"})
    assert store.load() == {IKE_SA: {"x": b"owner's"}}


def test_write_after_resign_is_refused_by_etcd(client: EtcdClient) -> None:
    election, store = owned_store(client)
    epoch = election.epoch
    election.resign()
    with pytest.raises(StoreFenced, match="resigned"):
        store.write({(IKE_SA, "x"): b"1"})
    with pytest.raises(StoreFenced, match=f"epoch {epoch}"):
        EtcdStore(client, election.group, KEY, epoch=epoch).write({(IKE_SA, "x"): b"1"})


def test_bad_writes(client: EtcdClient) -> None:
    _, store = owned_store(client)
    with pytest.raises(StoreError, match="unknown record kind 'nope'"):
        store.write({("nope", "x"): b"1"})
    too_many = {(LEASE, str(i)): b"" for i in range(MAX_TXN_OPS + 1)}
    with pytest.raises(StoreError, match="at most 128 in one txn"):
        store.write(too_many)
    store.close()
    with pytest.raises(StoreError, match="written after close"):
        store.write({(LEASE, "x"): b""})
    with pytest.raises(StoreError, match="a state key is 32 bytes, not 5"):
        EtcdStore(client, "g", b"short")


def test_standby_follows_by_watch(client: EtcdClient) -> None:
    election, store = owned_store(client)
    store.write({(IKE_SA, "before"): b"0"})
    standby = EtcdStore(client, election.group, KEY)
    standby.follow()
    try:
        assert standby.mirror() == {IKE_SA: {"before": b"0"}}
        store.write({(CHILD_SA, "c"): b"1", (ESP_SEQ, "s"): b"2"}, [(IKE_SA, "before")])
        assert standby.wait_revision(store.last_revision, timeout=5)
        assert standby.applied_revision == store.last_revision
        assert standby.mirror() == {CHILD_SA: {"c": b"1"}, ESP_SEQ: {"s": b"2"}}
        assert standby.mirror() == store.load()
    finally:
        standby.close()


records = st.dictionaries(
    st.tuples(st.sampled_from(KINDS), st.text(min_size=1, max_size=20)),
    st.binary(max_size=200),
    max_size=8,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.tuples(records, st.lists(st.sampled_from(KINDS), max_size=2)), max_size=3)
)
def test_round_trip(
    client: EtcdClient, batches: list[tuple[dict[tuple[str, str], bytes], list[str]]]
) -> None:
    """Whatever batches are written, load() gives what a MemoryStore would."""
    _, store = owned_store(client)
    expected = MemoryStore()
    for puts, delete_kinds in batches:
        current = expected.load()
        deletes = [(kind, key) for kind in delete_kinds for key in current.get(kind, {})]
        store.write(puts, deletes)
        expected.write(puts, deletes)
    assert store.load() == expected.load()


def test_owner_key_is_the_groups(client: EtcdClient) -> None:
    election, _ = owned_store(client, "named")
    kv = client.get(owner_key("named"))
    assert kv is not None and kv.value == b"gw1" and kv.create_revision == election.epoch
    assert kv.lease == election.lease
    election.resign()
    time.sleep(0)  # revoke is synchronous: the key is gone now
    assert client.get(owner_key("named")) is None
