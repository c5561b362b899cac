"""SAs of one address hold one object for it (`shared_address`), so that a packet's
lookup or send reads it warm; past the cap, addresses are kept as they came, and every
lookup answers as before."""

from __future__ import annotations

import ipaddress

import pytest

from larval.sadb import Sadb
from larval.sadb import sa as sa_module
from tests.sadb.support import LOCAL_B, PEER_B, add


def test_sas_of_one_address_hold_one_object() -> None:
    sadb = Sadb()
    for spi in (0x300, 0x301, 0x302):
        sadb.handle(add(spi), 0.0)  # each ADD decoded on its own
    sas = [sadb.lookup_inbound(spi, PEER_B) for spi in (0x300, 0x301, 0x302)]
    assert all(sa is not None for sa in sas)
    first = sas[0]
    assert first is not None
    assert all(sa.dst is first.dst and sa.src is first.src for sa in sas if sa is not None)
    assert first.dst == PEER_B and first.src == LOCAL_B
    # What the dataplane asks with is another object of the same bytes.
    assert sadb.lookup_esp(0x301, bytes(bytearray(PEER_B))) is sas[1]


def test_past_the_cap_addresses_are_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = len(sa_module._ADDRESSES)
    monkeypatch.setattr(sa_module, "ADDRESSES_SHARED", cap)
    sadb = Sadb()
    peers = [str(ipaddress.IPv4Address("198.51.100.200") + k) for k in range(3)]
    for k, peer in enumerate(peers):
        sadb.handle(add(0x400 + k, dst=peer), 0.0)
        sadb.handle(add(0x500 + k, dst=peer), 0.0)
    for k, peer in enumerate(peers):
        packed = ipaddress.IPv4Address(peer).packed
        one, two = sadb.lookup_inbound(0x400 + k, packed), sadb.lookup_inbound(0x500 + k, packed)
        assert one is not None and two is not None
        assert one.dst == two.dst == packed
        assert sadb.lookup_esp(0x400 + k, packed) is one
    assert len(sa_module._ADDRESSES) == cap  # nothing more kept
