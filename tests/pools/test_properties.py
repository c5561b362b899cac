"""Any sequence of acquire and release (Hypothesis): two identities never hold one
address, online or offline; a reserved address is only ever its identity's; the pool
answers None only when nothing is left for that identity; a returning identity gets
its offline lease back, and another identity's offline lease is taken only when no
address is left that was never handed out."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pools import IPAddress, Lease, Peer, Pool, Pools

IDENTITIES = ("carol", "dave", "erin", "frank", "gina", "hank", "ivy", "jo")
PEERS: tuple[Peer | None, ...] = (None, ("192.0.2.1", 500), ("192.0.2.1", 4500))
RESERVED = {"carol": ip_address("10.3.0.4")}
# In the pool (.1 to .6), just outside it, the other family, and "any".
REQUESTS = (None, ip_address("0.0.0.0"), ip_address("10.3.0.7"), ip_address("::1"),
            *(ip_address(f"10.3.0.{i}") for i in range(1, 7)))  # fmt: skip
ADDRESSES = tuple(ip_address(f"10.3.0.{i}") for i in range(0, 8))

acquire = st.tuples(st.just("acquire"), st.sampled_from(IDENTITIES),
                    st.sampled_from(REQUESTS), st.sampled_from(PEERS))  # fmt: skip
release = st.tuples(st.just("release"), st.sampled_from(IDENTITIES),
                    st.sampled_from(ADDRESSES), st.none())  # fmt: skip


def _holders(pool: Pool) -> tuple[dict[IPAddress, set[str]], Counter[tuple[str, IPAddress]]]:
    """Who holds each address (online or offline), and the online leases counted."""
    holders: dict[IPAddress, set[str]] = {}
    online: Counter[tuple[str, IPAddress]] = Counter()
    for identity, address, is_online in pool.leases():
        assert isinstance(identity, str)
        holders.setdefault(address, set()).add(identity)
        if is_online:
            online[identity, address] += 1
    return holders, online


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(acquire, release), max_size=60))
def test_no_two_identities_ever_hold_one_address(
    ops: list[tuple[str, str, IPAddress | None, Peer | None]],
) -> None:
    pool = Pool("rw", "10.3.0.0/29", reserved=RESERVED)
    handed_out: set[IPAddress] = set()
    for op, identity, value, peer in ops:
        holders, online = _holders(pool)
        offline_of = {a for a, ids in holders.items() if identity in ids
                      and (identity, a) not in online}  # fmt: skip
        if op == "release":
            assert isinstance(value, IPv4Address)
            assert pool.release(identity, value) is ((identity, value) in online)
        else:
            requested = value if value is None or isinstance(value, IPv4Address) else None
            other_family = value is not None and not isinstance(value, IPv4Address)
            got = pool.acquire(identity, value, peer)
            if other_family:
                assert got is None
                continue
            reserved = RESERVED.get(identity)
            free_for_them = [a for a in ADDRESSES[1:7] if not any(
                (i, a) in online for i in IDENTITIES
            ) and (a not in RESERVED.values() or a == reserved)]  # fmt: skip
            if got is None:
                assert free_for_them == []
                continue
            assert got in pool
            earlier = holders.get(got, set()) - {identity}
            if earlier:  # another identity's offline lease: nothing fresh was left
                assert not any(online[i, got] for i in earlier)
                assert handed_out | set(RESERVED.values()) >= set(ADDRESSES[1:7])
            reauth = peer is not None and got in {a for (i, a) in online if i == identity}
            if offline_of and not reauth and reserved is None:
                assert got in offline_of
                if requested in offline_of:
                    assert got == requested
            handed_out.add(got)
        holders, online = _holders(pool)
        assert all(len(ids) == 1 for ids in holders.values()), holders
        assert holders.get(RESERVED["carol"], {"carol"}) == {"carol"}
        # status says the same as the leases
        status = pool.status()
        assert Counter(status.online) == online
        assert len(status.offline) == sum(len(ids) for ids in holders.values()) - len(
            {(i, a) for (i, a) in online}
        )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(IDENTITIES), st.booleans(),
                          st.sampled_from(PEERS)), max_size=50))  # fmt: skip
def test_across_pools_no_address_is_held_twice(
    ops: list[tuple[bool, str, bool, Peer | None]],
) -> None:
    pools = Pools.from_dict({"a": {"addrs": "10.3.0.1-10.3.0.2"}, "b": {"addrs": "10.3.1.0/30"},
                             "c": {"addrs": "2001:db8::/126"}})  # fmt: skip
    held: list[tuple[str, Lease]] = []
    for is_acquire, identity, v6, peer in ops:
        if is_acquire:
            requested = ip_address("::") if v6 else ip_address("0.0.0.0")
            got = pools.acquire(["a", "b", "c"], identity, requested, peer)
            if got is not None:
                assert got.address.version == requested.version
                held.append((identity, got))
        elif held:
            identity, lease = held.pop(0)
            assert pools.release(identity, lease)
        owners: dict[IPAddress, set[str]] = {}
        for pool in pools:
            for who, address, _ in pool.leases():
                assert isinstance(who, str)
                owners.setdefault(address, set()).add(who)
        assert all(len(ids) == 1 for ids in owners.values()), owners
