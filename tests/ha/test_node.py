"""larval.ha.node against a real etcd member: a takeover restores from the standby's mirror
only when the mirror provably holds what etcd holds; each node's entry in the group."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.ha.election import Election
from larval.ha.node import OWNER, STANDBY, HaNode
from larval.ha.vip import VirtualAddresses
from larval.store import CHILD_SA, ESP_SEQ, IKE_SA
from larval.store.crypto import StateKey
from larval.store.etcd import EtcdClient, EtcdStore
from tests.ha.members import EtcdCluster, cluster, needs_etcd

pytestmark = needs_etcd

KEY = bytes(range(32))
_groups = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from cluster(Path(tmp_path_factory.mktemp("etcd1")), 1)


class Group:
    """An old owner writing the state, and the node under test following it."""

    def __init__(self, etcd: EtcdCluster) -> None:
        self.name = f"n{os.getpid()}-{next(_groups)}"
        self.client = EtcdClient(etcd.endpoints)
        self.old = Election(self.client, self.name, "gw1", ttl=5)
        assert self.old.campaign()
        self.store = EtcdStore(self.client, self.name, KEY, election=self.old)
        self.won: list[int] = []
        self.fenced: list[str] = []
        self.node = HaNode(etcd.endpoints, self.name, "gw2", 5, StateKey(KEY, "test"),
                           VirtualAddresses(()), on_owner=self.won.append,
                           on_fenced=self.fenced.append)  # fmt: skip

    def hand_over(self) -> None:
        """The old owner resigns; the node wins."""
        self.old.resign()
        assert self.node.election.campaign()
        assert self.won == [self.node.election.epoch]


@pytest.fixture
def group(etcd: EtcdCluster) -> Iterator[Group]:
    g = Group(etcd)
    yield g
    g.node.stop(resign=True)
    g.store.close()


def test_a_takeover_restores_from_a_whole_mirror(
    group: Group, caplog: pytest.LogCaptureFixture
) -> None:
    group.store.write({(IKE_SA, "a"): b"1", (ESP_SEQ, "s@192.0.2.1"): b"\0" * 8})
    group.node.follower.follow()
    group.store.write({(CHILD_SA, "c"): b"2"}, [(IKE_SA, "a")])
    group.hand_over()
    caplog.set_level("INFO", "larval.ha")
    primed = group.node.take_over()
    assert primed is not None
    assert "from the mirror" in caplog.text
    assert primed.load() == {ESP_SEQ: {"s@192.0.2.1": b"\0" * 8}, CHILD_SA: {"c": b"2"}}
    # Once restored, loads go to etcd; writes are fenced by the new epoch.
    primed.write({(IKE_SA, "b"): b"3"})
    primed.primed = None
    assert primed.load()[IKE_SA] == {"b": b"3"}


def test_a_mirror_that_missed_a_delete_is_not_trusted(
    group: Group, caplog: pytest.LogCaptureFixture
) -> None:
    group.store.write({(IKE_SA, "a"): b"1", (ESP_SEQ, "s@192.0.2.1"): b"\1" * 8})
    group.node.follower.follow()
    assert group.node.follower.wait_revision(group.store.last_revision, 5)
    group.node.follower.stop_following()  # a watch that lags
    group.store.write({}, [(ESP_SEQ, "s@192.0.2.1")])
    group.hand_over()
    caplog.set_level("INFO", "larval.ha")
    primed = group.node.take_over()
    assert primed is not None
    assert "from the full read" in caplog.text
    assert primed.load() == {IKE_SA: {"a": b"1"}}


def test_the_node_s_entry_and_status(group: Group) -> None:
    group.node.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "gw2" not in group.node.view.nodes:
        time.sleep(0.05)
    status = group.node.status()
    assert (status["role"], status["owner"], status["epoch"]) == (STANDBY, "gw1", 0)
    assert status["nodes"] == [{"node": "gw2", "role": STANDBY, "epoch": 0,
                                "revision": status["revision"], "lag": 0}]  # fmt: skip
    # The owner goes: the node's election takes over, the daemon says it owns.
    group.old.resign()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not group.won:
        time.sleep(0.05)
    assert group.won and group.node.take_over() is not None
    group.node.owning()
    assert group.node.may_send()
    assert group.node.status()["role"] == OWNER
    # Fenced: no sending from that instant, and the daemon is told why.
    group.node.election.fence("a test")
    assert not group.node.may_send() and group.fenced == ["a test"]
    assert group.node.status()["role"] == "fenced"
    group.node.stood_down()
    assert group.node.status()["role"] == STANDBY


def test_a_lagging_mirror_shows_in_the_status(group: Group) -> None:
    group.store.write({(IKE_SA, "a"): b"1"})
    group.node.start()
    group.node.follower.stop_following()  # its watch falls behind
    group.store.write({(IKE_SA, "a"): b"2"})
    group.store.write({(CHILD_SA, "c"): b"3"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        group.node.view.state_revision < group.store.last_revision
    ):
        time.sleep(0.05)
    status = group.node.status()
    assert status["state_revision"] == group.store.last_revision
    assert status["lag"] == group.store.last_revision - status["revision"] >= 2
    (entry,) = status["nodes"]
    assert entry["node"] == "gw2" and entry["lag"] == status["lag"]
