"""Several pools: a connection's list answers each family from its pools in order, each
rule asked of every pool before the next rule."""

from __future__ import annotations

from ipaddress import ip_address

from larval.pools import Lease, Pools

ANY4 = ip_address("0.0.0.0")
ANY6 = ip_address("::")


def _pools() -> Pools:
    return Pools.from_dict({
        "small": {"addrs": "10.3.0.1-10.3.0.2"},
        "big": {"addrs": "10.4.0.0/24", "dns": "10.4.0.53"},
        "v6": {"addrs": "2001:db8:3::/120", "dns": "2001:db8:3::53"},
    })  # fmt: skip


def test_each_family_is_answered_by_its_first_pool_with_room() -> None:
    pools = _pools()
    names = ["small", "big", "v6"]
    assert pools.acquire(names, "carol", ANY6) == Lease("v6", ip_address("2001:db8:3::1"))
    assert pools.acquire(names, "carol", ANY4) == Lease("small", ip_address("10.3.0.1"))
    assert pools.acquire(names, "dave", ANY4) == Lease("small", ip_address("10.3.0.2"))
    assert pools.acquire(names, "erin", ANY4) == Lease("big", ip_address("10.4.0.1"))
    assert pools["big"].attributes.dns == (ip_address("10.4.0.53"),)


def test_the_order_of_the_list_decides() -> None:
    pools = _pools()
    assert pools.acquire(["big", "small"], "carol", ANY4) == Lease("big", ip_address("10.4.0.1"))


def test_a_family_without_a_pool_gets_none() -> None:
    pools = _pools()
    assert pools.acquire(["small", "big"], "carol", ANY6) is None
    assert pools.acquire([], "carol", ANY4) is None


def test_a_fresh_address_in_a_later_pool_beats_reassigning_an_offline_lease() -> None:
    pools = _pools()
    names = ["small", "big"]
    first = pools.acquire(names, "carol", ANY4)
    pools.acquire(names, "dave", ANY4)
    assert first is not None and pools.release("carol", first)
    # small is full but for carol's offline lease, which is kept while big has room.
    assert pools.acquire(names, "erin", ANY4) == Lease("big", ip_address("10.4.0.1"))
    assert pools.acquire(names, "carol", ANY4) == first


def test_an_offline_lease_in_a_later_pool_beats_a_fresh_address_in_an_earlier_one() -> None:
    pools = _pools()
    lease = pools.acquire(["big"], "carol", ANY4)
    assert lease is not None and pools.release("carol", lease)
    assert pools.acquire(["small", "big"], "carol", ANY4) == lease


def test_a_requested_address_is_found_in_whichever_pool_holds_it() -> None:
    pools = _pools()
    wanted = ip_address("10.4.0.77")
    assert pools.acquire(["small", "big"], "carol", wanted) == Lease("big", wanted)


def test_when_every_pool_is_full_offline_leases_are_reassigned_in_list_order() -> None:
    pools = Pools.from_dict({"a": {"addrs": "10.3.0.1"}, "b": {"addrs": "10.3.0.2"}})
    a = pools.acquire(["a", "b"], "carol", ANY4)
    b = pools.acquire(["a", "b"], "dave", ANY4)
    assert a is not None and b is not None
    pools.release("dave", b)
    pools.release("carol", a)
    assert pools.acquire(["a", "b"], "erin", ANY4) == a
    assert pools.acquire(["a", "b"], "frank", ANY4) == b
    assert pools.acquire(["a", "b"], "gina", ANY4) is None


def test_release_names_the_pool_and_identity() -> None:
    pools = _pools()
    lease = pools.acquire(["v6"], "carol", ANY6)
    assert lease is not None
    assert pools.release("dave", lease) is False
    assert pools.release("carol", Lease("gone", lease.address)) is False
    assert pools.release("carol", lease) is True
    assert [s.name for s in pools.status()] == ["small", "big", "v6"]
    assert pools.status()[2].offline == (("carol", lease.address),)
