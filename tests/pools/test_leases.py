"""Leases of one pool: each rule of `Pool.acquire` in the order the module gives them,
release to offline, reuse of offline leases, reserved addresses, exhaustion; IPv4 and
IPv6, prefixes and ranges."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from larval.pools import Pool

V4 = ("10.3.0.0/29", "10.3.0.1", "10.3.0.6")  # 6 addresses, .1 to .6
V6 = ("2001:db8::10-2001:db8::15", "2001:db8::10", "2001:db8::15")  # 6, ::10 to ::15
CASES = [V4, V6]
PEER = ("192.0.2.10", 4500)
OTHER_PEER = ("192.0.2.10", 54321)  # the same host behind another NAT mapping


def _nth(pool: Pool, n: int) -> str:
    return str(pool.first + n)


@pytest.fixture(params=CASES, ids=["ipv4-prefix", "ipv6-range"])
def pool(request: pytest.FixtureRequest) -> Pool:
    return Pool("rw", request.param[0])


def test_addresses_are_handed_out_in_order(pool: Pool) -> None:
    got = [str(pool.acquire(f"user{i}")) for i in range(6)]
    assert got == [_nth(pool, i) for i in range(6)]
    assert str(pool.first) == got[0] and str(pool.last) == got[-1]


def test_an_exhausted_pool_answers_none(pool: Pool) -> None:
    for i in range(6):
        assert pool.acquire(f"user{i}") is not None
    assert pool.acquire("late") is None
    assert pool.acquire("late", pool.first) is None
    assert len(pool.status().online) == 6


def test_a_returning_identity_gets_its_address_back(pool: Pool) -> None:
    carol = pool.acquire("carol")
    dave = pool.acquire("dave")
    assert carol is not None and dave is not None
    assert pool.release("carol", carol) is True
    assert pool.status().offline == (("carol", carol),)
    pool.acquire("erin")  # a newcomer takes a never-used address, not carol's
    assert pool.status().offline == (("carol", carol),)
    assert pool.acquire("carol") == carol
    assert pool.status().offline == ()


def test_str_and_utf8_bytes_are_one_identity(pool: Pool) -> None:
    carol = pool.acquire("carol@example.org")
    assert carol is not None
    assert pool.release(b"carol@example.org", carol) is True
    assert pool.acquire(b"carol@example.org") == carol
    assert pool.status().online == (("carol@example.org", carol),)


def test_the_previous_address_beats_the_requested_one(pool: Pool) -> None:
    carol = pool.acquire("carol")
    assert carol is not None
    pool.release("carol", carol)
    assert pool.acquire("carol", pool.last) == carol


def test_a_requested_address_is_given_when_never_used(pool: Pool) -> None:
    assert pool.acquire("carol", pool.last) == pool.last
    # the next never-used address skips the one taken on request
    got = [pool.acquire(f"user{i}") for i in range(5)]
    assert [str(a) for a in got] == [_nth(pool, i) for i in range(5)]
    assert pool.acquire("late") is None


def test_a_requested_address_held_or_kept_for_another_is_not_given(pool: Pool) -> None:
    dave = pool.acquire("dave")
    assert pool.acquire("carol", dave) == pool.first + 1  # online for dave
    assert dave is not None
    pool.release("dave", dave)
    assert pool.acquire("erin", dave) == pool.first + 2  # offline, kept for dave
    assert pool.acquire("dave") == dave


def test_a_request_outside_the_pool_or_unspecified_gets_the_next(pool: Pool) -> None:
    outside = pool.last + 1
    unspecified = ip_address("0.0.0.0") if pool.family == 4 else ip_address("::")
    assert pool.acquire("carol", outside) == pool.first
    assert pool.acquire("dave", unspecified) == pool.first + 1


def test_a_request_of_the_other_family_gets_nothing(pool: Pool) -> None:
    other = ip_address("::") if pool.family == 4 else ip_address("0.0.0.0")
    assert pool.acquire("carol", other) is None
    assert pool.status().online == ()


def test_offline_leases_go_to_others_only_when_no_fresh_address_is_left(pool: Pool) -> None:
    held = {f"user{i}": pool.acquire(f"user{i}") for i in range(6)}
    for name in ("user3", "user1"):  # user3 goes offline first
        address = held[name]
        assert address is not None and pool.release(name, address)
    # The pool has no never-used address: the lease offline longest goes first.
    assert pool.acquire("carol") == held["user3"]
    assert pool.acquire("dave") == held["user1"]
    assert pool.acquire("erin") is None
    # user3 lost its lease: it comes back to a full pool.
    assert pool.acquire("user3") is None
    status = pool.status()
    assert status.offline == ()
    assert ("carol", held["user3"]) in status.online and ("dave", held["user1"]) in status.online


def test_a_requested_offline_lease_of_another_is_taken_when_the_pool_is_full(
    pool: Pool,
) -> None:
    held = [pool.acquire(f"user{i}") for i in range(6)]
    for i in (0, 4):
        address = held[i]
        assert address is not None and pool.release(f"user{i}", address)
    assert pool.acquire("carol", held[4]) == held[4]  # not user0's, released first
    assert pool.acquire("dave") == held[0]


def test_an_identity_with_two_offline_leases_gets_the_requested_or_the_first(
    pool: Pool,
) -> None:
    a = pool.acquire("carol", peer=PEER)
    b = pool.acquire("carol", peer=OTHER_PEER)
    assert a is not None and b is not None and a != b
    pool.release("carol", a)
    pool.release("carol", b)
    assert pool.acquire("carol", b) == b
    assert pool.acquire("carol") == a


def test_one_identity_from_two_peers_gets_two_addresses(pool: Pool) -> None:
    """mem_pool.c: an online lease is shared only with the same peer (reauthentication);
    the same identity from elsewhere is a second client."""
    first = pool.acquire("carol", peer=PEER)
    second = pool.acquire("carol", peer=OTHER_PEER)
    assert first == pool.first and second == pool.first + 1
    third = pool.acquire("carol")  # no peer known: never shares an online lease
    assert third == pool.first + 2


def test_reauthentication_from_the_same_peer_shares_the_lease(pool: Pool) -> None:
    """Make-before-break: the new IKE SA gets the old one's address; the lease stays
    online until both IKE SAs released it."""
    address = pool.acquire("carol", peer=PEER)
    assert address is not None
    assert pool.acquire("carol", peer=PEER) == address
    assert pool.status().online == (("carol", address), ("carol", address))
    assert pool.release("carol", address) is True  # the old IKE SA goes
    assert pool.status().online == (("carol", address),) and pool.status().offline == ()
    assert pool.release("carol", address) is True  # and the new one
    assert pool.status().offline == (("carol", address),)
    assert pool.release("carol", address) is False  # nothing left online


def test_reauthentication_asking_for_another_address_does_not_share(pool: Pool) -> None:
    address = pool.acquire("carol", peer=PEER)
    assert pool.acquire("carol", pool.last, peer=PEER) == pool.last
    assert address != pool.last


def test_release_of_what_the_identity_does_not_hold_is_false(pool: Pool) -> None:
    carol = pool.acquire("carol")
    assert carol is not None
    assert pool.release("dave", carol) is False  # not dave's
    assert pool.release("carol", pool.last) is False  # never carol's
    assert pool.release("carol", pool.last + 1) is False  # not in the pool
    assert pool.release("carol", ip_address("::1") if pool.family == 4 else
                        ip_address("127.0.0.1")) is False  # fmt: skip
    assert pool.status().online == (("carol", carol),)


def test_a_reserved_address_goes_to_its_identity_only() -> None:
    pool = Pool("rw", "10.3.0.1-10.3.0.3", reserved={"carol@example.org": ip_address("10.3.0.2")})
    assert pool.acquire("dave") == ip_address("10.3.0.1")
    assert pool.acquire("erin", ip_address("10.3.0.2")) == ip_address("10.3.0.3")
    assert pool.acquire("frank") is None  # .2 is kept for carol, never handed out
    assert pool.acquire("carol@example.org") == ip_address("10.3.0.2")
    pool.release("carol@example.org", ip_address("10.3.0.2"))
    # Offline, and still never another's, even in a full pool.
    assert pool.acquire("frank") is None
    assert pool.status().offline == (("carol@example.org", ip_address("10.3.0.2")),)
    assert pool.acquire("carol@example.org") == ip_address("10.3.0.2")


def test_a_reserved_identity_beats_its_own_offline_leases_and_its_request() -> None:
    pool = Pool("rw", "2001:db8::/120", reserved={b"carol": ip_address("2001:db8::80")})
    assert pool.acquire("carol", ip_address("2001:db8::5")) == ip_address("2001:db8::80")


def test_a_reserved_identity_online_elsewhere_gets_a_dynamic_address() -> None:
    pool = Pool("rw", "10.3.0.0/29", reserved={"carol": ip_address("10.3.0.1")})
    assert pool.acquire("carol", peer=PEER) == ip_address("10.3.0.1")
    assert pool.acquire("carol", peer=PEER) == ip_address("10.3.0.1")  # reauthentication
    assert pool.acquire("carol", peer=OTHER_PEER) == ip_address("10.3.0.2")  # second device
    assert pool.acquire("dave") == ip_address("10.3.0.3")


def test_status_lists_size_online_offline_and_reserved() -> None:
    pool = Pool("rw", "10.3.0.0/24", reserved={"carol": ip_address("10.3.0.200")})
    pool.acquire(b"\xff\x00binary")
    pool.acquire("eve\x1b[2J")  # a terminal escape in a client's chosen identity
    dave = pool.acquire("dave")
    assert dave is not None
    pool.release("dave", dave)
    status = pool.status()
    assert (status.name, status.addrs, status.size) == ("rw", "10.3.0.0/24", 254)
    assert status.to_dict() == {
        "name": "rw",
        "addrs": "10.3.0.0/24",
        "size": 254,
        "online": [
            {"identity": "0xff0062696e617279", "address": "10.3.0.1"},
            {"identity": "0x6576651b5b324a", "address": "10.3.0.2"},
        ],
        "offline": [{"identity": "dave", "address": "10.3.0.3"}],
        "reserved": [{"identity": "carol", "address": "10.3.0.200"}],
    }
    assert sorted(pool.leases(), key=lambda lease: lease[1]) == [
        (b"\xff\x00binary", ip_address("10.3.0.1"), True),
        ("eve\x1b[2J", ip_address("10.3.0.2"), True),
        ("dave", ip_address("10.3.0.3"), False),
    ]


def test_a_slash_16_hands_out_60000_addresses_one_each() -> None:
    """A fair check of speed: no scan per acquire (this runs well under a second)."""
    pool = Pool("big", "10.1.0.0/16")
    got = {pool.acquire(f"user{i}@example.org") for i in range(60_000)}
    assert len(got) == 60_000 and None not in got
    # A second IKE SA of one identity with no peer known: a second address.
    assert pool.acquire("user59999@example.org") == ip_address("10.1.234.97")
    for i in range(0, 60_000, 2):
        pool.release(f"user{i}@example.org", ip_address(int(pool.first) + i))
    status = pool.status()
    assert (len(status.online), len(status.offline)) == (30_001, 30_000)
    # Fresh addresses first, then each offline lease once, then nothing.
    fresh = pool.size - 60_001
    got = {pool.acquire(f"new{i}") for i in range(fresh + 30_000)}
    assert len(got) == fresh + 30_000 and None not in got
    assert pool.acquire("one too many") is None
