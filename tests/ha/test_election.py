"""larval.ha.election against real etcd members: one owner, a fence before the lease can
lapse, a standby that takes over, and an etcd leader's loss that changes nothing."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.ha.election import Election, Repeats
from larval.store import IKE_SA, StoreError, StoreFenced
from larval.store.etcd import EtcdClient, EtcdStore
from tests.ha.members import EtcdCluster, cluster, needs_etcd

pytestmark = needs_etcd

KEY = bytes(range(32))
_groups = itertools.count()


def group() -> str:
    return f"e{os.getpid()}-{next(_groups)}"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from cluster(Path(tmp_path_factory.mktemp("etcd1")), 1)


@pytest.fixture
def client(etcd: EtcdCluster) -> EtcdClient:
    return EtcdClient(etcd.endpoints, timeout=2)


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_under_two_seconds_is_refused(client: EtcdClient) -> None:
    with pytest.raises(StoreError, match=r"lease TTL 1\.5 s: etcd grants none under 2 s"):
        Election(client, "g", "n", ttl=1.5)


def test_two_electors_one_wins(client: EtcdClient) -> None:
    name = group()
    electors = [Election(client, name, f"gw{i}", ttl=5) for i in (1, 2)]
    results: list[bool] = [False, False]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = electors[i].campaign()

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    winner, loser = (electors[0], electors[1]) if results[0] else (electors[1], electors[0])
    assert winner.epoch > 0 and loser.epoch == 0
    assert loser.owner == winner.node
    EtcdStore(client, name, KEY, election=winner).write({(IKE_SA, "a"): b"1"})
    with pytest.raises(StoreFenced):
        EtcdStore(client, name, KEY, election=loser).write({(IKE_SA, "a"): b"2"})
    winner.resign()


def test_owner_fences_itself_on_its_clock(
    client: EtcdClient, caplog: pytest.LogCaptureFixture
) -> None:
    """With no renewal, the owner stops at sent + TTL - margin, without asking etcd."""
    clock = FakeClock()
    election = Election(client, group(), "gw1", ttl=10, margin=2, clock=clock)
    assert election.campaign()
    assert election.deadline == 1000.0 + 10 - 2
    store = EtcdStore(client, election.group, KEY, election=election)
    clock.now = 1007.9
    store.write({(IKE_SA, "a"): b"1"})
    # A renewal sent at 1005 moves the deadline to 1013.
    clock.now = 1005.0
    assert election.renew()
    assert election.deadline == 1013.0
    clock.now = 1013.0
    with pytest.raises(StoreFenced, match=r"no lease renewal within 10 s less a margin of 2 s"):
        store.write({(IKE_SA, "a"): b"2"})
    assert election.epoch == 0 and not election.may_write()
    assert f"gw1: fenced in group {election.group}" in caplog.text
    assert "writing and sending stop" in caplog.text
    # Fenced, it stays fenced: renewing the lease does not give ownership back.
    assert not election.renew()
    assert store.load() == {IKE_SA: {"a": b"1"}}
    client.lease_revoke(election.lease)
    # Won again, the node has a new epoch; the store of the old one stays fenced.
    clock.now = 2000.0
    assert election.campaign()
    with pytest.raises(StoreFenced, match=r"state of epoch \d+ \(owned again since\)"):
        store.write({(IKE_SA, "a"): b"3"})
    EtcdStore(client, election.group, KEY, election=election).write({(IKE_SA, "a"): b"4"})
    client.lease_revoke(election.lease)


def test_renewal_of_an_expired_lease_fences(client: EtcdClient) -> None:
    election = Election(client, group(), "gw1", ttl=5)
    assert election.campaign()
    client.lease_revoke(election.lease)  # as etcd does when the TTL runs out
    assert not election.renew()
    assert election.epoch == 0
    assert election.fenced_reason == "its lease had expired in etcd"


def test_standby_takes_over_when_the_owner_resigns(client: EtcdClient) -> None:
    name = group()
    owner = Election(client, name, "gw1", ttl=5)
    standby = Election(client, name, "gw2", ttl=5)
    owner.start()
    assert wait_for(lambda: owner.epoch, 5)
    standby.start()
    try:
        assert wait_for(lambda: standby.owner == "gw1", 5)
        time.sleep(0.3)
        assert standby.epoch == 0
        first = owner.epoch
        owner.stop(resign=True)
        # The standby saw the key deleted by watch and campaigned, well before any TTL.
        assert wait_for(lambda: standby.epoch, 2)
        assert standby.epoch > first
        EtcdStore(client, name, KEY, election=standby).write({(IKE_SA, "a"): b"gw2"})
    finally:
        owner.stop()
        standby.stop()


def test_fenced_owner_lets_the_standby_in_at_once(client: EtcdClient) -> None:
    """An owner past its deadline revokes its lease: the standby need not wait out the TTL."""
    offset = [0.0]
    name = group()
    owner = Election(client, name, "gw1", ttl=9, clock=lambda: time.monotonic() + offset[0])
    standby = Election(client, name, "gw2", ttl=9)
    owner.start()
    try:
        assert wait_for(lambda: owner.epoch, 5)
        standby.start()
        assert wait_for(lambda: standby.owner == "gw1", 5)
        assert owner.renew()
        offset[0] = 60.0  # as if the owner had been stopped for a minute
        assert not owner.may_write()
        # The lease, just renewed, has 9 s to run; the owner wakes within 3 s and revokes it.
        assert wait_for(lambda: standby.epoch, 6), "the standby waited for the lease"
        assert owner.epoch == 0
    finally:
        owner.stop()
        standby.stop()


OWNER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from larval.ha.election import Election
    from larval.store import IKE_SA, StoreFenced
    from larval.store.etcd import EtcdClient, EtcdStore
    endpoints, group, ttl = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    election = Election(EtcdClient(endpoints), group, "gw1", ttl=ttl)
    assert election.campaign()
    election.start()
    store = EtcdStore(election.client, group, bytes(range(32)), election=election)
    print(json.dumps({"epoch": election.epoch}), flush=True)
    for line in sys.stdin:
        result = {"deadline": election.deadline, "now": time.monotonic()}
        try:
            store.write({(IKE_SA, "owner"): b"gw1"})
            result["write"] = "ok"
        except StoreFenced as e:
            result["write"] = str(e)
        # Past its own fence, what etcd says of a write on the old epoch:
        try:
            EtcdStore(election.client, group, bytes(range(32)), epoch=int(line)).write(
                {(IKE_SA, "owner"): b"gw1 late"})
            result["late"] = "ok"
        except StoreFenced as e:
            result["late"] = str(e)
        print(json.dumps(result), flush=True)
    """
)


def test_stopped_owner_fences_itself_before_the_standby_writes(
    client: EtcdClient, etcd: EtcdCluster
) -> None:
    name = group()
    ttl = 3.0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, json.dumps(etcd.endpoints), name, str(ttl)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert owner.stdin is not None and owner.stdout is not None
    standby = Election(client, name, "gw2", ttl=ttl)
    try:
        epoch = json.loads(owner.stdout.readline())["epoch"]
        owner.stdin.write(f"{epoch}\n")
        owner.stdin.flush()
        before = json.loads(owner.stdout.readline())
        assert before["write"] == "ok" and before["late"] == "ok"
        standby.start()
        assert wait_for(lambda: standby.owner == "gw1", 5)
        owner.send_signal(signal.SIGSTOP)  # its keepalive thread stops with it
        assert wait_for(lambda: standby.epoch, ttl + 3), "the standby never took over"
        store = EtcdStore(client, name, KEY, election=standby)
        store.write({(IKE_SA, "owner"): b"gw2"})
        took_over = time.monotonic()
        owner.send_signal(signal.SIGCONT)
        owner.stdin.write(f"{epoch}\n")
        owner.stdin.flush()
        after = json.loads(owner.stdout.readline())
        # Its fence had passed (same monotonic clock) before the standby's first write...
        assert after["deadline"] < took_over
        # ...so, resumed, it refused to write without asking etcd,
        assert "no longer owns the state" in after["write"]
        # and a write on its old epoch is refused by etcd.
        assert "etcd refused the write" in after["late"]
        assert store.load() == {IKE_SA: {"owner": b"gw2"}}
    finally:
        owner.send_signal(signal.SIGCONT)
        owner.kill()
        owner.wait()
        standby.stop()


def test_etcd_leader_lost_owner_stays(tmp_path: Path) -> None:
    """Three members; the leader is killed under the owner: no failover, writes go on."""
    for members in cluster(tmp_path, 3):
        _leader_lost_owner_stays(members)


def _leader_lost_owner_stays(members: EtcdCluster) -> None:
    leader = members.leader()
    assert leader is not None
    # The owner talks to the leader first, so that its loss also moves the client on.
    endpoints = [members.endpoints[leader]] + [
        e for i, e in enumerate(members.endpoints) if i != leader
    ]
    client = EtcdClient(endpoints, timeout=2)
    name = group()
    owner = Election(client, name, "gw1", ttl=3)
    standby = Election(client, name, "gw2", ttl=3)
    changes: list[bool] = []
    owner.start()
    assert wait_for(lambda: owner.epoch, 5)
    owner.on_change = changes.append
    epoch = owner.epoch
    standby.start()
    store = EtcdStore(client, name, KEY, election=owner)
    # A standby's mirror, its watch on the leader too: it must open it again elsewhere.
    follower = EtcdStore(EtcdClient(endpoints, timeout=2), name, KEY)
    try:
        store.write({(IKE_SA, "a"): b"before"})
        follower.follow()
        assert follower.mirror() == {IKE_SA: {"a": b"before"}}
        assert members.leader() == leader
        members.kill(leader)
        assert wait_for(lambda: members.leader() is not None, 5)
        time.sleep(2 * owner.ttl)  # past the lease TTL: a lapse would show
        assert owner.epoch == epoch and changes == [] and standby.epoch == 0
        store.write({(IKE_SA, "a"): b"after"})
        assert store.load() == {IKE_SA: {"a": b"after"}}
        assert follower.wait_revision(store.last_revision, timeout=5)
        assert follower.mirror() == {IKE_SA: {"a": b"after"}}
        assert follower.follow_error is not None  # it did break, and came back
    finally:
        follower.close()
        owner.stop()
        standby.stop()


def test_a_warning_repeated_while_etcd_is_away_is_logged_once_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    repeats = Repeats(every=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "larval.ha.election")
    for _ in range(40):  # every 0.25 s for 10 s
        repeats.warning("gw1: lease renewal failed: no endpoint answered")
        now[0] += 0.25
    repeats.warning("gw1: lease renewal failed: no endpoint answered")
    repeats.warning("gw1: election in group g: refused")  # another: at once
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "gw1: lease renewal failed: no endpoint answered",
        "gw1: lease renewal failed: no endpoint answered (and 39 time(s) more in 10 s)",
        "gw1: election in group g: refused",
    ]
    repeats.clear()
    repeats.warning("gw1: election in group g: refused")
    assert len(caplog.records) == 4
