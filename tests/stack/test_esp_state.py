"""Sequence numbers reserved in a state store before they are sent, replay windows
checkpointed, and both given back after a restart (larval.stack.esp_state).

The rule under test: an AES-GCM SA never sends a sequence number at or above the mark
that is durable in the store, whatever the store does (slow, failing, fenced), and a
restarted stack sends above every number sent before.
"""

from __future__ import annotations

import ipaddress
import struct
import threading
import time
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import EspSa, EspSeqUnreserved
from larval.pfkey import (
    SEQ_STATE_NEXT,
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbMsgType,
    SadbSa,
    SadbXSeqState,
    SaFlags,
    SaState,
)
from larval.pfkey.requests import by_spi, keyed
from larval.sadb import SecurityAssociation
from larval.spd import load_policy_text
from larval.stack import Stack
from larval.stack.esp_state import (
    EspStateWriter,
    ReplayCheckpoint,
    decode_replay,
    encode_replay,
    load_esp_state,
    record_key,
)
from larval.stack.packet_path import Datagram, PacketPath
from larval.store import ESP_REPLAY, ESP_SEQ, MemoryStore, RecordKey, StoreError, StoreFenced

A_OUTER, B_OUTER = "192.0.2.1", "192.0.2.2"
A_NET, B_NET = "198.51.100.0/24", "203.0.113.0/24"
KEY = bytes(range(20))
SPI = 0x1001
B_PACKED = ipaddress.IPv4Address(B_OUTER).packed


class RecordingStore(MemoryStore):
    """A MemoryStore that remembers, per ESP_SEQ key, the highest mark made durable, and
    can be slow, fail, or fence."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: dict[str, int] = {}
        self.fail = False
        self.fence = False
        self.delay = 0.0
        self._lock = threading.Lock()

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.fence:
            raise StoreFenced("test store: another node owns the state")
        if self.fail:
            raise StoreError("test store: disk full")
        with self._lock:
            super().write(puts, deletes)
            for (kind, key), value in puts.items():
                if kind == ESP_SEQ:
                    self.durable[key] = int.from_bytes(value, "big")


def policy(local_net: str, remote_net: str, local: str, remote: str) -> str:
    return f"""
[policies.net]
local_ts = ["{local_net}"]
remote_ts = ["{remote_net}"]
mode = "tunnel"
local_addrs = ["{local}"]
remote_addrs = ["{remote}"]
esp_proposals = ["aes128gcm16"]
"""


def packet(n: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, n & 0xFFFF) + b"ping"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), n & 0xFFFF, 0, 64, 1, 0,
        ipaddress.IPv4Address("198.51.100.1").packed,
        ipaddress.IPv4Address("203.0.113.1").packed,
    ) + body  # fmt: skip


class Host:
    """One stack with a packet path and its wire, optionally on a store."""

    def __init__(self, outer: str, local_net: str, remote_net: str, remote: str,
                 store: RecordingStore | None = None, block: int = 64,
                 hold: float = 0.0) -> None:  # fmt: skip
        self.outer = ipaddress.IPv4Address(outer).packed
        self.stack = Stack()
        self.writer: EspStateWriter | None = None
        if store is not None:
            self.writer = self.stack.use_store(store, block=block, hold=hold)
        self.wire: list[Datagram] = []
        self.got: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.wire.append, deliver=self.got.append)
        for p in load_policy_text(policy(local_net, remote_net, outer, remote), "test"):
            self.stack.spd.add(p)

    def add(self, src: str, dst: str, state: SadbXSeqState | None = None) -> None:
        msg = keyed(SadbMsgType.ADD, SPI, src, dst, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=KEY)  # fmt: skip
        sa = SadbSa(SPI, 64, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL)
        exts = (sa, *msg.extensions[1:], *((state,) if state is not None else ()))
        reply = self.stack.handle_pfkey(PfkeyMessage(msg.msg_type, msg.satype, extensions=exts), 0)
        assert reply[0].message.errno == 0, reply

    def get(self) -> PfkeyMessage:
        msg = by_spi(SadbMsgType.GET, SPI, B_OUTER, A_OUTER)
        return self.stack.handle_pfkey(msg, 0)[0].message

    def sent_seqs(self) -> list[int]:
        return [struct.unpack_from(">I", d.payload, 4)[0] for d in self.wire]


def sender(store: RecordingStore | None, **kw: float) -> Host:
    a = Host(A_OUTER, A_NET, B_NET, B_OUTER, store, **kw)  # type: ignore[arg-type]
    return a


def sending(store: RecordingStore, block: int) -> Host:
    """A sender with its SA added, whose first packet asked for the first block of
    sequence numbers, and the block reserved."""
    a = sender(store, block=block)
    assert a.writer is not None
    a.add(A_OUTER, B_OUTER)
    a.path.outbound(packet(0), 1.0)
    a.writer.run_once()
    return a


def receiver(store: RecordingStore | None = None) -> Host:
    return Host(B_OUTER, B_NET, A_NET, A_OUTER, store)


# -- outbound reservation --------------------------------------------------------------


def test_first_packet_waits_for_the_first_block_then_goes() -> None:
    store = RecordingStore()
    a = sender(store, block=64)
    a.add(A_OUTER, B_OUTER)
    a.path.outbound(packet(1), 1.0)  # nothing reserved yet, no hold: dropped
    assert a.wire == [] and a.path.counters()["seq_unreserved"] == 1
    assert a.writer is not None and a.writer.run_once()
    assert store.durable[record_key(SPI, B_PACKED)] == 64 + 1
    for n in range(64):
        a.path.outbound(packet(n), 1.0)
    assert a.sent_seqs() == list(range(1, 65))


def test_the_next_block_is_asked_for_at_half_and_nothing_waits() -> None:
    store = RecordingStore()
    a = sender(store, block=64)
    a.add(A_OUTER, B_OUTER)
    a.path.outbound(packet(0), 1.0)
    assert a.writer is not None
    a.writer.run_once()
    for n in range(40):  # past half of the block: a request is queued
        a.path.outbound(packet(n), 1.0)
    a.writer.run_once()
    assert store.durable[record_key(SPI, B_PACKED)] == 65 + 64
    for n in range(80):
        a.path.outbound(packet(n), 1.0)
        a.writer.run_once()
    assert a.sent_seqs() == list(range(1, 121))
    assert a.path.counters()["seq_unreserved"] == 1  # only the very first packet


def test_a_held_packet_goes_when_the_writer_thread_grants_in_time() -> None:
    store = RecordingStore()
    store.delay = 0.005
    a = sender(store, block=64, hold=2.0)
    assert a.writer is not None
    a.add(A_OUTER, B_OUTER)
    a.writer.start()
    try:
        for n in range(300):
            a.path.outbound(packet(n), 1.0)
    finally:
        a.writer.stop()
    assert a.sent_seqs() == list(range(1, 301))
    assert a.path.counters()["seq_unreserved"] == 0
    assert max(a.sent_seqs()) < store.durable[record_key(SPI, B_PACKED)]


@settings(max_examples=60, deadline=None)
@given(
    block=st.integers(2, 300),
    steps=st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from(["ok", "fail", "skip"])), max_size=30
    ),
)
def test_reservation_is_never_exceeded(block: int, steps: list[tuple[int, str]]) -> None:
    """Bursts of sends between writer rounds that succeed, fail or do not run: every
    number sent is below the mark durable at the time it was sent, none twice."""
    store = RecordingStore()
    a = sender(store, block=block)
    assert a.writer is not None
    a.add(A_OUTER, B_OUTER)
    key = record_key(SPI, B_PACKED)
    seen: set[int] = set()
    for burst, round_ in steps:
        for n in range(burst):
            before = len(a.wire)
            a.path.outbound(packet(n), 1.0)
            if len(a.wire) > before:
                seq = a.sent_seqs()[-1]
                assert seq < store.durable.get(key, 0)
                assert seq not in seen
                seen.add(seq)
        if round_ != "skip":
            store.fail = round_ == "fail"
            a.writer.run_once()
    counters = a.path.counters()
    assert counters["sent"] == len(seen)
    assert counters["sent"] + counters["seq_unreserved"] == sum(b for b, _ in steps)


def test_a_failing_store_stops_sending_at_the_mark_and_recovers() -> None:
    store = RecordingStore()
    a = sending(store, block=16)
    assert a.writer is not None
    store.fail = True
    for n in range(40):
        a.path.outbound(packet(n), 1.0)
        a.writer.run_once()
    assert a.sent_seqs() == list(range(1, 17))
    assert a.writer.write_errors > 0
    store.fail = False
    a.writer.run_once()
    a.path.outbound(packet(99), 1.0)
    assert a.sent_seqs()[-1] == 17


def test_a_fenced_store_stops_all_sending_and_counts_it() -> None:
    store = RecordingStore()
    a = sending(store, block=16)
    assert a.writer is not None
    for n in range(9):  # 1..9 of 1..16: the next block is asked for
        a.path.outbound(packet(n), 1.0)
    assert a.sent_seqs() == list(range(1, 10))
    store.fence = True
    a.writer.run_once()  # the store says: fenced
    assert a.writer.fenced
    for n in range(50):
        a.path.outbound(packet(n), 1.0)
    assert a.sent_seqs() == list(range(1, 10))  # not even 10..16, reserved before
    assert a.path.counters()["fenced"] == 50
    store.fence = False
    a.writer.run_once()  # a fenced writer grants nothing again
    a.path.outbound(packet(3), 1.0)
    assert len(a.wire) == 9


def test_fencing_from_outside_stops_sending_without_a_write() -> None:
    store = RecordingStore()
    a = sending(store, block=1024)
    assert a.writer is not None
    a.path.outbound(packet(1), 1.0)
    a.writer.fence("lease lost")
    a.path.outbound(packet(2), 1.0)
    assert a.sent_seqs() == [1]
    assert a.path.counters()["fenced"] == 1


def test_without_a_store_nothing_is_reserved() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER)
    for n in range(100):
        a.path.outbound(packet(n), 1.0)
    assert a.sent_seqs() == list(range(1, 101))
    state = a.get().find(ExtType.X_LARVAL_SEQ_STATE)
    assert isinstance(state, SadbXSeqState)
    assert (state.next, state.reserved) == (101, 0)


# -- restart ---------------------------------------------------------------------------


def test_after_a_restart_every_number_is_above_every_one_before() -> None:
    store = RecordingStore()
    a = sender(store, block=50)
    assert a.writer is not None
    a.add(A_OUTER, B_OUTER)
    for n in range(137):
        a.path.outbound(packet(n), 1.0)
        a.writer.run_once()
    before = a.sent_seqs()
    assert len(before) == 136  # the first waited for the first block
    # kill -9: the stack is gone with whatever it held in memory.
    stored = load_esp_state(store)
    state = stored.seq_state(SPI, B_PACKED)
    assert state is not None and state.flags == SEQ_STATE_NEXT
    again = sender(store, block=50)
    assert again.writer is not None
    again.add(A_OUTER, B_OUTER, state)
    again.writer.run_once()
    for n in range(200):
        again.path.outbound(packet(n), 1.0)
        again.writer.run_once()
    after = again.sent_seqs()
    assert after and min(after) > max(before)
    assert min(after) == state.next
    assert after == list(range(state.next, state.next + len(after)))


def test_add_with_a_starting_number_without_a_store_starts_there() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER, SadbXSeqState(SEQ_STATE_NEXT, 5000))
    a.path.outbound(packet(0), 1.0)
    assert a.sent_seqs() == [5000]


def test_get_shows_the_state_given_then_the_live_one() -> None:
    store = RecordingStore()
    a = sender(store, block=100)
    a.add(A_OUTER, B_OUTER, SadbXSeqState(SEQ_STATE_NEXT, 7000))
    assert a.get().find(ExtType.X_LARVAL_SEQ_STATE) == SadbXSeqState(SEQ_STATE_NEXT, 7000)
    a.path.outbound(packet(0), 1.0)
    assert a.writer is not None
    a.writer.run_once()
    a.path.outbound(packet(1), 1.0)
    live = a.get().find(ExtType.X_LARVAL_SEQ_STATE)
    assert isinstance(live, SadbXSeqState)
    assert (live.next, live.reserved, live.bits) == (7001, 7100, 64)


# -- inbound checkpoints -----------------------------------------------------------------


def test_a_restored_checkpoint_rejects_what_was_seen_before_it() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER)
    for n in range(1, 41):
        a.path.outbound(packet(n), 1.0)
    esp = [d.payload for d in a.wire]
    store = RecordingStore()
    b = receiver(store)
    b.add(A_OUTER, B_OUTER)
    for p in esp[:30]:
        if p is not esp[20]:  # one lost on the way: 21 never arrives
            b.path.inbound(p, b.outer, 1.0)
    assert b.writer is not None and b.writer.run_once()
    checkpoint = load_esp_state(store).replay[(SPI, B_PACKED)]
    assert checkpoint.top == 30 and checkpoint.bits == 64
    # kill -9, then the SA comes back with its checkpoint.
    again = receiver(store)
    again.add(A_OUTER, B_OUTER, load_esp_state(store).seq_state(SPI, B_PACKED))
    for p in esp[:30]:
        again.path.inbound(p, again.outer, 1.0)
    counters = again.path.counters()
    assert counters["delivered"] == 1  # only 21, never seen before
    assert counters["replay"] == 29
    for p in esp[30:]:
        again.path.inbound(p, again.outer, 1.0)
    assert again.path.counters()["delivered"] == 11


def test_only_changed_windows_are_written() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER)
    for n in range(5):
        a.path.outbound(packet(n), 1.0)
    store = RecordingStore()
    b = receiver(store)
    b.add(A_OUTER, B_OUTER)
    assert b.writer is not None
    b.path.inbound(a.wire[0].payload, b.outer, 1.0)
    assert b.writer.run_once()
    writes = store.writes
    assert not b.writer.run_once()  # nothing changed: no write at all
    assert store.writes == writes
    b.path.inbound(a.wire[1].payload, b.outer, 1.0)
    assert b.writer.run_once()
    assert decode_replay(store.load()[ESP_REPLAY][record_key(SPI, B_PACKED)]).top == 2


def test_a_checkpoint_is_due_after_n_packets() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER)
    for n in range(10):
        a.path.outbound(packet(n), 1.0)
    b = receiver(RecordingStore())
    assert b.writer is not None
    b.writer.checkpoint_packets = 4
    b.add(A_OUTER, B_OUTER)
    due = []
    b.writer.checkpoint_due = lambda: due.append(1)  # type: ignore[method-assign]
    for d in a.wire:
        b.path.inbound(d.payload, b.outer, 1.0)
    assert len(due) == 2  # after packets 4 and 8


# -- deletion ----------------------------------------------------------------------------


def test_deleting_an_sa_deletes_its_records() -> None:
    store = RecordingStore()
    a = sending(store, block=10)
    assert a.writer is not None
    a.path.outbound(packet(1), 1.0)
    assert store.load()[ESP_SEQ]
    reply = a.stack.handle_pfkey(by_spi(SadbMsgType.DELETE, SPI, B_OUTER, A_OUTER), 0)
    assert reply[0].message.errno == 0
    a.writer.run_once()
    assert ESP_SEQ not in store.load() and ESP_REPLAY not in store.load()


def test_an_expired_sa_never_used_still_loses_its_restored_records() -> None:
    store = RecordingStore()
    store.write({(ESP_SEQ, record_key(SPI, B_PACKED)): (500).to_bytes(8, "big")})
    a = sender(store)
    a.add(A_OUTER, B_OUTER, load_esp_state(store).seq_state(SPI, B_PACKED))
    a.stack.handle_pfkey(PfkeyMessage(SadbMsgType.FLUSH, 0), 0)
    assert a.writer is not None
    a.writer.run_once()
    assert store.load() == {}


# -- records -----------------------------------------------------------------------------


@given(top=st.integers(0, (1 << 64) - 1), bits=st.integers(0, 4096), data=st.data())
def test_replay_record_round_trip(top: int, bits: int, data: st.DataObject) -> None:
    cp = ReplayCheckpoint(top, bits, data.draw(st.integers(0, (1 << bits) - 1)))
    assert decode_replay(encode_replay(cp)) == cp


@pytest.mark.parametrize(
    ("kind", "key", "value", "says"),
    [
        (ESP_SEQ, "1001@192.0.2.2", b"\x00" * 4, "4 bytes, expected 8"),
        (ESP_SEQ, "zz@192.0.2.2", b"\x00" * 8, "not SPI-hex@address"),
        (ESP_REPLAY, "1001@192.0.2.2", b"\x00" * 3, "3 bytes, at least 10"),
        (ESP_REPLAY, "1001@192.0.2.2", bytes(9) + b"\x40", "10 bytes for a window of 64"),
    ],
)
def test_unreadable_records_name_their_key(kind: str, key: str, value: bytes, says: str) -> None:
    store = MemoryStore()
    store.write({(kind, key): value})
    with pytest.raises(StoreError) as info:
        load_esp_state(store)
    assert key in str(info.value) and says in str(info.value)


# -- the SA alone ------------------------------------------------------------------------


def test_esp_sa_grant_and_revoke() -> None:
    sa = EspSa(0x1001, EncryptAlg.AES_GCM_16, KEY)
    asked: list[int] = []
    sa.reserve_from(10, 4, lambda s: asked.append(s.seq))
    with pytest.raises(EspSeqUnreserved):
        sa.encrypt(b"x", 4)
    assert asked == [9]
    sa.grant(18)
    for _ in range(4):
        sa.encrypt(b"x", 4)
    assert asked == [9]
    sa.encrypt(b"x", 4)  # seq 14: four left below 18, ask again
    assert asked == [9, 13]
    sa.grant(12)  # a grant never lowers the mark
    assert sa.seq_mark == 18
    sa.revoke()
    sa.grant(100)
    with pytest.raises(EspSeqUnreserved):
        sa.encrypt(b"x", 4)


def test_unused_sa_record_key() -> None:
    sa = SecurityAssociation(0xC0FFEE01, 3, b"\xc0\x00\x02\x01", B_PACKED, SaState.MATURE, 0)
    assert record_key(sa.spi, sa.dst) == "c0ffee01@192.0.2.2"


@settings(max_examples=8, deadline=None)
@given(
    block=st.integers(2, 64),
    delay=st.sampled_from([0.0, 0.001, 0.003]),
    failures=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_with_the_writer_thread_a_number_is_durable_before_it_is_sent(
    block: int, delay: float, failures: list[bool]
) -> None:
    """The real writer thread against a slow store that fails now and then: checked at
    the moment each datagram leaves, its number is below the durable mark."""
    store = RecordingStore()
    store.delay = delay
    a = sender(store, block=block, hold=0.005)
    assert a.writer is not None
    key = record_key(SPI, B_PACKED)
    seen: list[int] = []

    def send(d: Datagram) -> None:
        seq = struct.unpack_from(">I", d.payload, 4)[0]
        assert seq < store.durable.get(key, 0)
        seen.append(seq)

    a.path.send = send
    a.add(A_OUTER, B_OUTER)
    a.writer.start()
    try:
        for fail in failures:
            store.fail = fail
            for n in range(60):
                a.path.outbound(packet(n), 1.0)
    finally:
        a.writer.stop()
    assert seen == sorted(set(seen))
    counters = a.path.counters()
    assert counters["sent"] + counters["seq_unreserved"] == 60 * len(failures)


def test_the_stack_service_runs_the_writer_and_reports_it() -> None:
    import asyncio

    from larval.daemon.stack_service import StackService

    store = RecordingStore()
    service = StackService(None, None, store=store)
    writer = service.stack.esp_state
    assert writer is not None

    async def main() -> None:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.05)
        assert writer._thread is not None and writer._thread.is_alive()
        status = service._status({})
        assert status["esp_state"] == {"writes": 0, "write_errors": 0, "fenced": False}
        service.stop()
        await task

    asyncio.run(main())
    assert writer._thread is None
    assert "esp_state" not in StackService(None, None)._status({})


def test_an_outbound_sa_is_reserved_when_keyed_before_its_first_packet() -> None:
    store = RecordingStore()
    a = sender(store, block=64)
    assert a.writer is not None
    msg = keyed(SadbMsgType.ADD, SPI, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                encrypt_key=KEY)  # fmt: skip
    flags = SaFlags.X_TUNNEL | SaFlags.X_OUTBOUND
    sa = SadbSa(SPI, 64, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, flags)
    add = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa, *msg.extensions[1:]))
    assert a.stack.handle_pfkey(add, 0)[0].message.errno == 0
    assert a.writer.run_once()  # the first block, with no packet yet
    assert store.durable[record_key(SPI, B_PACKED)] == 65
    a.path.outbound(packet(0), 1.0)
    assert a.sent_seqs() == [1]


def test_an_inbound_sa_writes_no_mark() -> None:
    a = sender(None)
    a.add(A_OUTER, B_OUTER)
    a.path.outbound(packet(1), 1.0)
    store = RecordingStore()
    b = receiver(store)
    b.add(A_OUTER, B_OUTER)
    b.path.inbound(a.wire[0].payload, b.outer, 1.0)
    assert b.writer is not None and b.writer.run_once()
    assert ESP_SEQ not in store.load() and ESP_REPLAY in store.load()


def test_an_esn_sa_reserves_past_32_bits() -> None:
    sa = EspSa(0x1001, EncryptAlg.AES_GCM_16, KEY, esn=True)
    sa.reserve_from((1 << 32) - 1, 8, lambda s: None)
    sa.grant((1 << 32) + 2)
    sa.encrypt(b"x", 4)
    sa.encrypt(b"x", 4)
    assert sa.seq == 1 << 32
    sa.encrypt(b"x", 4)
    with pytest.raises(EspSeqUnreserved):
        sa.encrypt(b"x", 4)
    assert sa.seq == (1 << 32) + 1


def test_a_32_bit_sa_started_past_its_space_is_exhausted() -> None:
    from larval.esp import EspSeqExhausted

    sa = EspSa(0x1001, EncryptAlg.AES_GCM_16, KEY)
    sa.start_at(1 << 40)
    with pytest.raises(EspSeqExhausted):
        sa.encrypt(b"x", 4)
