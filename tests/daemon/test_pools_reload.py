"""A reload's pools (`larval.daemon.reload.keep_pools`): a pool defined as before keeps
its leases; a new or changed one starts empty."""

from __future__ import annotations

import ipaddress

from larval.daemon.reload import keep_pools
from larval.pools import Pools

ANY4 = ipaddress.ip_address("0.0.0.0")


def _pools(**tables: dict[str, object]) -> Pools:
    return Pools.from_dict(tables)


def test_an_unchanged_pool_keeps_its_leases_and_a_changed_one_starts_empty() -> None:
    running = _pools(a={"addrs": "10.3.0.0/24"}, b={"addrs": "10.4.0.0/24"},
                     gone={"addrs": "10.5.0.0/24"})  # fmt: skip
    lease_a = running.acquire(["a"], "carol", ANY4)
    running.acquire(["b"], "carol", ANY4)
    fresh = _pools(a={"addrs": "10.3.0.0/24"}, b={"addrs": "10.4.0.0/24", "dns": "10.4.0.1"},
                   new={"addrs": "10.6.0.0/24"})  # fmt: skip
    pools, changes = keep_pools(running, fresh)
    assert (changes.added, changes.removed, changes.changed) == (("new",), ("gone",), ("b",))
    assert pools["a"] is running["a"] and pools["b"] is fresh["b"]
    by_name = {p.name: p for p in pools.status()}
    assert [str(a) for _, a in by_name["a"].online] == ["10.3.0.1"]
    assert by_name["b"].online == ()
    assert [p.name for p in pools] == ["a", "b", "new"]
    # The IKE SA that held a's lease gives it back to the pool that goes on.
    assert lease_a is not None and pools.release("carol", lease_a)


def test_nothing_changed_is_no_change() -> None:
    running = _pools(a={"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.9"}})
    _, changes = keep_pools(running, _pools(a={"addrs": "10.3.0.0/24",
                                               "reserved": {"carol": "10.3.0.9"}}))  # fmt: skip
    assert not changes
    _, changes = keep_pools(running, _pools(a={"addrs": "10.3.0.0/24",
                                               "reserved": {"carol": "10.3.0.8"}}))  # fmt: skip
    assert changes.changed == ("a",)
