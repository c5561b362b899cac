"""Batches spread over several outbound SAs under sequence number reservations (a state
store): the single packets of many SAs go through `PacketPath._protect_each`, which seals
them with the compiled call numbering from each SA's block, and an SA's run through
`encrypt_batch`; both stop at the reserved mark. Every number sent is below its SA's
durable mark and sent once, in order; every packet is sent or counted; and what GET and
the SA show afterwards is what went on the wire."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import EncryptAlg, ExtType, SadbAddress, SadbMsgType
from larval.pfkey.requests import keyed
from larval.stack import Stack
from larval.stack.esp_state import record_key
from larval.stack.packet_path import Datagram, EspContext, PacketPath
from tests.esp.paths import esp_path
from tests.stack.test_esp_state import RecordingStore
from tests.stack.test_packet_path import icmp_echo, policy

__all__ = ["esp_path"]

pytestmark = pytest.mark.usefixtures("esp_path")

SAS = 4
A_OUTER, B_OUTER = "192.0.2.1", "192.0.2.2"
B_PACKED = ipaddress.IPv4Address(B_OUTER).packed


def _dst(k: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address("203.0.113.1") + k


def _sender(store: RecordingStore, block: int) -> tuple[Stack, PacketPath, list[Datagram]]:
    from larval.spd import load_policy_text

    stack = Stack()
    stack.use_store(store, block=block, hold=0.0)
    wire: list[Datagram] = []
    path = PacketPath(stack, send=wire.append, deliver=lambda _: None)
    for p in load_policy_text(policy("198.51.100.0/24", "203.0.113.0/24", A_OUTER, B_OUTER), "t"):
        stack.spd.add(p)
    for k in range(SAS):
        inner = (
            SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("198.51.100.0"), prefixlen=24),
            SadbAddress(ExtType.X_ADDRESS_INNER_DST, _dst(k), prefixlen=32),
        )
        add = keyed(SadbMsgType.ADD, 0x6000 + k, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=bytes([k + 1]) * 20, extra=inner)  # fmt: skip
        assert stack.handle_pfkey(add, 0.0)[0].message.errno == 0
    return stack, path, wire


@settings(max_examples=30, deadline=None)
@given(
    block=st.integers(2, 12),
    steps=st.lists(
        st.tuples(
            st.lists(st.integers(0, SAS - 1), min_size=1, max_size=14),
            st.sampled_from(["ok", "ok", "fail", "skip"]),
        ),
        max_size=10,
    ),
)
def test_the_many_sa_path_never_sends_past_the_durable_mark(
    block: int, steps: list[tuple[list[int], str]]
) -> None:
    store = RecordingStore()
    stack, path, wire = _sender(store, block)
    writer = stack.esp_state
    assert writer is not None
    sent: dict[int, list[int]] = {}
    total = 0
    for order, round_ in steps:
        before = len(wire)
        path.outbound_batch([icmp_echo("198.51.100.1", str(_dst(k)), n) for n, k in
                             enumerate(order)], 1.0)  # fmt: skip
        total += len(order)
        for d in wire[before:]:
            spi, seq = struct.unpack_from(">II", d.payload)
            # Below the mark durable while the batch ran (only a round moves it).
            assert seq < store.durable.get(record_key(spi, B_PACKED), 0)
            sent.setdefault(spi, []).append(seq)
        if round_ != "skip":
            store.fail = round_ == "fail"
            writer.run_once()
    for seqs in sent.values():
        assert seqs == sorted(set(seqs))  # each once, in order
    counters = path.counters()
    assert counters["sent"] == len(wire)
    assert counters["sent"] + counters["seq_unreserved"] == total
    for k in range(SAS):
        sa = stack.sadb.lookup_esp(0x6000 + k, B_PACKED)
        assert sa is not None
        ctx = sa.transform
        seqs = sent.get(0x6000 + k, [])
        if not isinstance(ctx, EspContext):
            assert not seqs
            continue
        assert ctx.seq_state().next == (seqs[-1] if seqs else 0) + 1
        assert ctx.esp.packets_out == len(seqs) == sa.packets
