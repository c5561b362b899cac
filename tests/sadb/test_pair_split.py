"""The unindexed SAs of a pair (`SaTable.outbound` tests them one by one) are kept apart
only for pairs with an SA in the per-peer inner index, or whose inner selectors changed;
for any other pair they are its SAs in `_pairs`. Either way they are, in order, what a
second dict per pair held: the SAs the index does not hold, oldest first, an SA whose
selectors changed moved to the end. Random inserts, removals and selector changes over
two pairs are checked against that model, and so are the SAs `outbound` chooses."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import ExtType, SadbAddress, SaFlags, SaState
from larval.sadb import SecurityAssociation
from larval.sadb.table import SaTable, _usable

ip = ipaddress.ip_address
PAIRS = [(ip("192.0.2.2").packed, ip("192.0.2.1").packed),
         (ip("192.0.2.2").packed, ip("192.0.2.3").packed)]  # fmt: skip
NETS = ["10.1.0.0", "10.2.0.0", None]  # an inner destination, or none
FLAGS = [SaFlags.X_OUTBOUND, SaFlags.X_INBOUND]  # inbound SAs are never indexed
STATES = [SaState.MATURE, SaState.DYING]


def _set_inner(sa: SecurityAssociation, net: str | None, flags: int) -> None:
    sa.flags = flags
    if net is None:
        sa.inner_src = sa.inner_dst = None
    else:
        sa.inner_src = SadbAddress(ExtType.ADDRESS_PROXY, ip("203.0.113.0"), prefixlen=24)
        sa.inner_dst = SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip(net), prefixlen=16)


def _unindexed_view(table: SaTable, pkey: tuple[bytes, bytes]) -> list[int]:
    if pkey in table._split:
        return list(table._unindexed.get(pkey, {}))
    return list(table._pairs.get(pkey, {}))


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "remove", "reselect"]),
        st.integers(0, 1),  # the pair
        st.integers(0, 7),  # the SA, by its SPI's index
        st.sampled_from(NETS),
        st.sampled_from(FLAGS),
        st.sampled_from(STATES),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_the_unindexed_sas_of_a_pair_are_those_of_one_dict_per_pair(
    ops: list[tuple[str, int, int, str | None, int, int]],
) -> None:
    table = SaTable(stripes=4)
    sas: dict[int, SecurityAssociation] = {}
    order: dict[tuple[bytes, bytes], list[int]] = {pkey: [] for pkey in PAIRS}  # the model
    for op, pair, n, net, flags, state in ops:
        pkey = PAIRS[pair]
        spi = 0x1000 + pair * 0x100 + n
        sa = sas.get(spi)
        if op == "insert" and sa is None:
            sa = SecurityAssociation(spi, 3, pkey[0], pkey[1], state, 0.0)
            _set_inner(sa, net, flags)
            assert table.insert_if_absent(sa)
            sas[spi] = sa
            order[pkey].append(spi)
        elif op == "remove" and sa is not None:
            sa.state = SaState.DEAD
            assert table.remove(sa)
            del sas[spi]
            order[pkey].remove(spi)
        elif op == "reselect" and sa is not None:
            table.inner.remove(sa)
            _set_inner(sa, net, flags)
            table.reindex_inner(sa)
            order[pkey].remove(spi)
            order[pkey].append(spi)  # as a second dict re-added it: last
        for each in PAIRS:
            # What the model held apart: the SAs the index does not hold. An SA never
            # reselected keeps its place; one reselected is last, as the dict had it.
            want = [s for s in order[each] if sas[s].pair_inner_key is None]
            assert _unindexed_view(table, each) == want
            if not order[each]:
                assert each not in table._split and each not in table._unindexed
            # And `outbound` chooses as it did over that dict.
            inner = (ip("203.0.113.9").packed, ip("10.1.0.5").packed)
            got = table.outbound(each[0], each[1], lambda _: True, inner)
            if len(order[each]) <= 1:
                continue  # a pair of one SA is answered without the inner index
            found = table.pair_inner.lookup(each[0] + each[1], inner[0], inner[1])
            if found is not None and found.state == SaState.MATURE:
                assert got is found
                continue
            other = _usable([sas[s] for s in want], None)
            if other is not None and (found is None or other.state == SaState.MATURE):
                assert got is other
            else:
                assert got is found
