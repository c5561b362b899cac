"""A pool's ``[pools.NAME]`` table: the addresses a prefix or a range gives, the
attributes, and the exact message of every bad value."""

from __future__ import annotations

import tomllib
from ipaddress import ip_address, ip_network

import pytest

from larval.pools import MAX_POOL_SIZE, Pool, PoolAttributes, PoolError, Pools

GOOD = """
[pools.rw]
addrs = "10.3.0.0/24"
dns = ["10.3.0.1", "2001:db8:3::1"]
nbns = "10.3.0.2"
split_include = ["10.3.0.0/16", "2001:db8:3::/48"]
dns_domain = "home.example"
attributes = { 28675 = "home.example", 28676 = ["a", "b"] }
reserved = { "carol@example.org" = "10.3.0.7" }

[pools.rw6]
addrs = "2001:db8:3:1::10-2001:db8:3:1::ff"
"""


def test_a_toml_table_gives_every_attribute() -> None:
    pools = Pools.from_dict(tomllib.loads(GOOD)["pools"])
    rw = pools["rw"]
    assert rw.attributes == PoolAttributes(
        dns=(ip_address("10.3.0.1"), ip_address("2001:db8:3::1")),
        nbns=(ip_address("10.3.0.2"),),
        split_include=(ip_network("10.3.0.0/16"), ip_network("2001:db8:3::/48")),
        dns_domain=("home.example",),
        raw=((28675, b"home.example"), (28676, b"a"), (28676, b"b")),
    )
    assert rw.status().reserved == (("carol@example.org", ip_address("10.3.0.7")),)
    rw6 = pools["rw6"]
    assert (rw6.family, rw6.first, rw6.last, rw6.size) == (
        6, ip_address("2001:db8:3:1::10"), ip_address("2001:db8:3:1::ff"), 0xF0,
    )  # fmt: skip
    assert [p.name for p in pools] == ["rw", "rw6"] and len(pools) == 2
    assert "rw6" in pools and "rw7" not in pools


@pytest.mark.parametrize(
    ("addrs", "first", "last", "size"),
    [
        # mem_pool_create: the network and the broadcast address stay out...
        ("10.3.0.0/24", "10.3.0.1", "10.3.0.254", 254),
        ("10.3.0.0/30", "10.3.0.1", "10.3.0.2", 2),
        # ...of IPv6 prefixes too: the Subnet-Router anycast address and the last.
        ("2001:db8::/120", "2001:db8::1", "2001:db8::fe", 254),
        # A /31 and a /32 (/127, /128) hand out what they have.
        ("10.3.0.0/31", "10.3.0.0", "10.3.0.1", 2),
        ("10.3.0.1/31", "10.3.0.1", "10.3.0.1", 1),
        ("10.3.0.9/32", "10.3.0.9", "10.3.0.9", 1),
        ("10.3.0.9", "10.3.0.9", "10.3.0.9", 1),
        ("2001:db8::/127", "2001:db8::", "2001:db8::1", 2),
        # swanctl.conf: host bits start the pool there; below stays for the gateway.
        ("10.3.0.5/24", "10.3.0.5", "10.3.0.254", 250),
        ("10.3.0.254/24", "10.3.0.254", "10.3.0.254", 1),
        # A range: both ends, nothing skipped.
        ("10.3.0.10-10.3.0.200", "10.3.0.10", "10.3.0.200", 191),
        ("10.3.0.0 - 10.3.0.255", "10.3.0.0", "10.3.0.255", 256),
        ("10.3.0.7-10.3.0.7", "10.3.0.7", "10.3.0.7", 1),
        ("2001:db8::ffff-2001:db8::1:1", "2001:db8::ffff", "2001:db8::1:1", 3),
        # Large pools are their first address and a size, nothing listed.
        ("10.0.0.0/8", "10.0.0.1", "10.255.255.254", 2**24 - 2),
        ("2001:db8::/64", "2001:db8::1", "2001:db8::ffff:ffff:ffff:fffe", 2**64 - 2),
        ("::-::ffff:ffff:ffff:ffff", "::", "::ffff:ffff:ffff:ffff", MAX_POOL_SIZE),
    ],
)
def test_the_addresses_a_pool_hands_out(addrs: str, first: str, last: str, size: int) -> None:
    pool = Pool("p", addrs)
    assert (str(pool.first), str(pool.last), pool.size) == (first, last, size)
    assert pool.first in pool and pool.last in pool
    assert int(pool.first) == 0 or pool.first - 1 not in pool
    assert pool.last + 1 not in pool


def test_a_large_pool_hands_out_in_order_without_listing() -> None:
    pool = Pool("p", "2001:db8::/64")
    assert [pool.acquire(f"id{i}") for i in range(3)] == [
        ip_address("2001:db8::1"), ip_address("2001:db8::2"), ip_address("2001:db8::3"),
    ]  # fmt: skip
    assert pool.acquire("x", ip_address("2001:db8::ffff:ffff:ffff:fffe")) == pool.last
    assert pool.acquire("y", ip_address("2001:db8::ffff:ffff:ffff:ffff")) == ip_address(
        "2001:db8::4"
    )  # the last address of the /64 is not in the pool: the next one instead


BAD = [
    ({"addrs": 24}, 'pools.rw.addrs: 24 is not a prefix or a range of addresses'),
    ({}, "pools.rw.addrs: missing: a prefix (10.3.0.0/24) or a range (10.3.0.10-10.3.0.200)"),
    ({"addrs": "10.3.0.0/33"}, 'pools.rw.addrs: "10.3.0.0/33" is not a prefix '
     "(10.3.0.0/24, 2001:db8::/64) or a range (10.3.0.10-10.3.0.200)"),
    ({"addrs": "10.3.0.200-10.3.0.10"},
     'pools.rw.addrs: "10.3.0.200-10.3.0.10" is an empty range: 10.3.0.200 is above 10.3.0.10'),
    ({"addrs": "10.3.0.1-2001:db8::1"},
     'pools.rw.addrs: "10.3.0.1-2001:db8::1" mixes IPv4 and IPv6; a range is of one family'),
    ({"addrs": "10.3.0.1-10.3.0.300"},
     'pools.rw.addrs: "10.3.0.1-10.3.0.300": "10.3.0.300" is not an IPv4 or IPv6 address'),
    ({"addrs": "10.3.0.255/24"},  # starts at the broadcast address, which stays out
     'pools.rw.addrs: "10.3.0.255/24" holds no address to hand out'),
    ({"addrs": "2001:db8::/63"}, 'pools.rw.addrs: "2001:db8::/63" holds more than 2^64 '
     "addresses; a pool holds at most 2^64 (an IPv6 /64)"),
    ({"addrs": "::-1::"}, 'pools.rw.addrs: "::-1::" holds more than 2^64 addresses; a pool '
     "holds at most 2^64 (an IPv6 /64)"),
    ({"addrs": "10.3.0.0/24", "pool": 1}, "pools.rw.pool: unknown key; allowed: addrs, dns, "
     "nbns, split_include, dns_domain, attributes, reserved"),
    ({"addrs": "10.3.0.0/24", "dns": []},
     "pools.rw.dns: [] is not a string or a non-empty list of them"),
    ({"addrs": "10.3.0.0/24", "dns": ["10.3.0.1", 5]}, "pools.rw.dns[1]: 5 is not a string"),
    ({"addrs": "10.3.0.0/24", "nbns": ["10.3.0.1", "wins"]},
     'pools.rw.nbns[1]: "wins" is not an IPv4 or IPv6 address'),
    ({"addrs": "10.3.0.0/24", "nbns": ["10.3.0.2", "2001:db8::2"]}, "pools.rw.nbns[1]: "
     "2001:db8::2 is IPv6; NBNS servers are IPv4 (RFC 7296 has no IPv6 NBNS)"),
    ({"addrs": "10.3.0.0/24", "split_include": "10.3.0.1/16"}, 'pools.rw.split_include: '
     '"10.3.0.1/16" is not a prefix (10.1.0.0/16, 2001:db8::/48) with its host bits zero'),
    ({"addrs": "10.3.0.0/24", "dns_domain": "home..example"},
     'pools.rw.dns_domain: "home..example" is not a domain name: labels of letters, digits '
     "and hyphens, at most 63 each and 253 in all (an international name in its xn-- form)"),
    ({"addrs": "10.3.0.0/24", "dns_domain": ["home.example", "h\u00e9me.example"]},
     'pools.rw.dns_domain[1]: "h\\u00e9me.example" is not a domain name: labels of letters, '
     "digits and hyphens, at most 63 each and 253 in all (an international name in its xn-- "
     "form)"),
    ({"addrs": "10.3.0.0/24", "dns_domain": "-home.example"},
     'pools.rw.dns_domain: "-home.example" is not a domain name: labels of letters, digits '
     "and hyphens, at most 63 each and 253 in all (an international name in its xn-- form)"),
    ({"addrs": "10.3.0.0/24", "attributes": "28675=x"},
     'pools.rw.attributes: "28675=x" is not a table of attribute number = value'),
    ({"addrs": "10.3.0.0/24", "attributes": {"unity": "x"}},
     'pools.rw.attributes.unity: "unity" is not an attribute type 1 to 32767'),
    ({"addrs": "10.3.0.0/24", "attributes": {"32768": "x"}},
     'pools.rw.attributes.32768: "32768" is not an attribute type 1 to 32767'),
    ({"addrs": "10.3.0.0/24", "attributes": {"0": "x"}},
     'pools.rw.attributes.0: "0" is not an attribute type 1 to 32767'),
    ({"addrs": "10.3.0.0/24", "attributes": {"\u0663": "x"}},  # ARABIC-INDIC DIGIT THREE
     'pools.rw.attributes."\\u0663": "\\u0663" is not an attribute type 1 to 32767'),
    ({"addrs": "10.3.0.0/24", "attributes": {"8": "x"}},
     "pools.rw.attributes.8: attribute 8 (INTERNAL_IP6_ADDRESS) is the lease; set addrs"),
    ({"addrs": "10.3.0.0/24", "attributes": {"28675": 5}},
     "pools.rw.attributes.28675: 5 is not a string"),
    ({"addrs": "10.3.0.0/24", "attributes": {"28675": ["x", True]}},
     "pools.rw.attributes.28675[1]: true is not a string"),
    ({"addrs": "10.3.0.0/24", "attributes": {"28675": "x" * 65536}},
     "pools.rw.attributes.28675: 65536 bytes; an attribute holds at most 65535"),
    ({"addrs": "10.3.0.0/24", "reserved": ["carol"]},
     'pools.rw.reserved: ["carol"] is not a table of identity = address'),
    ({"addrs": "10.3.0.0/24", "reserved": {"carol@example.org": 7}},
     'pools.rw.reserved."carol@example.org": 7 is not an address'),
    ({"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.x"}},
     'pools.rw.reserved.carol: "10.3.0.x" is not an IPv4 or IPv6 address'),
    ({"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.1.7"}},
     "pools.rw.reserved.carol: 10.3.1.7 is not in the pool (10.3.0.1-10.3.0.254)"),
    ({"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.255"}},
     "pools.rw.reserved.carol: 10.3.0.255 is not in the pool (10.3.0.1-10.3.0.254)"),
    ({"addrs": "10.3.0.0/24", "reserved": {"carol": "10.3.0.7", "dave": "10.3.0.7"}},
     "pools.rw.reserved.dave: 10.3.0.7 is already reserved for 'carol'"),
    ({"addrs": "10.3.0.0/24", "reserved": {"": "10.3.0.7"}},
     'pools.rw.reserved."": an identity is a non-empty string'),
]  # fmt: skip


@pytest.mark.parametrize(("table", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_a_bad_value_is_named_with_what_is_allowed(table: dict[str, object], message: str) -> None:
    with pytest.raises(PoolError) as caught:
        Pool.from_dict("rw", table)
    assert str(caught.value) == message
    assert caught.value.key == message.split(": ")[0]


def test_pool_names_are_quoted_as_toml_quotes_them() -> None:
    with pytest.raises(PoolError, match=r'^pools\."road warriors"\.addrs: missing'):
        Pool.from_dict("road warriors", {})
    with pytest.raises(PoolError, match=r"^pools\.rw: 5 is not a table$"):
        Pool.from_dict("rw", 5)
    with pytest.raises(PoolError, match=r"^pools: \[\] is not a table of pools$"):
        Pools.from_dict([])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10.3.0.0/24", "10.3.0.100-10.3.1.5"),
        ("10.3.0.0/16", "10.3.7.0/24"),  # inside
        ("2001:db8::1-2001:db8::ff", "2001:db8::ff-2001:db8::1ff"),  # one address shared
    ],
)
def test_overlapping_pools_are_refused(a: str, b: str) -> None:
    with pytest.raises(PoolError) as caught:
        Pools.from_dict({"a": {"addrs": a}, "b": {"addrs": b}})
    assert (
        str(caught.value) == "pools.b.addrs: overlaps pools.a.addrs; pools must not share addresses"
    )


def test_pools_of_both_families_and_adjacent_ranges_are_fine() -> None:
    pools = Pools.from_dict({
        "a": {"addrs": "10.3.0.0-10.3.0.99"}, "b": {"addrs": "10.3.0.100-10.3.0.199"},
        "v6": {"addrs": "::a03:0/120"},  # the same low bits as a, another family
    })  # fmt: skip
    assert len(pools) == 3


def test_an_unknown_pool_name_is_named() -> None:
    pools = Pools.from_dict({"rw": {"addrs": "10.3.0.0/24"}})
    with pytest.raises(PoolError) as caught:
        pools.check_names("connections.home.pools", ["rw", "rw6"])
    assert str(caught.value) == 'connections.home.pools[1]: "rw6" is not a pool; pools: rw'
    with pytest.raises(PoolError, match=r'^pools\[0\]: "nope" is not a pool; pools: rw$'):
        pools.acquire(["nope"], "carol", ip_address("0.0.0.0"))


def test_numbered_attributes_from_python_take_int_keys_and_bytes() -> None:
    pool = Pool.from_dict("rw", {"addrs": "10.3.0.0/24", "attributes": {28675: b"\x00\xff"}})
    assert pool.attributes.raw == ((28675, b"\x00\xff"),)


def test_a_pool_name_given_twice_is_refused() -> None:
    with pytest.raises(PoolError, match=r"^pools\.rw: is defined twice$"):
        Pools([Pool("rw", "10.3.0.0/24"), Pool("rw", "10.4.0.0/24")])
