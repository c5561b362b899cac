"""Replay checkpoints of SAs received many at once (`PacketPath._open_each`, where a
compiled SA's window and counters are moved in its C block): a checkpoint falls due
after the same packets as packet by packet, and what the writer stores is each SA's
window as the per-packet path leaves it. Batches are spread over the SAs, one packet
each or an SA twice, so that they take the one-pass receive and not the grouping."""

from __future__ import annotations

import pytest

from larval.crypto.algorithms import EALG_AES_GCM_16
from larval.esp import EspSa
from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SadbSa, SaFlags, SaState
from larval.pfkey.requests import keyed
from larval.stack.esp_state import decode_replay, record_key
from larval.stack.packet_path import EspContext
from larval.store import ESP_REPLAY
from tests.esp.paths import esp_path
from tests.stack.test_esp_state import (
    A_OUTER,
    B_OUTER,
    B_PACKED,
    KEY,
    RecordingStore,
    packet,
    receiver,
)

__all__ = ["esp_path"]

pytestmark = pytest.mark.usefixtures("esp_path")

SPIS = [0x2000 + k for k in range(3)]


def _received(batches: list[list[bytes]], one_by_one: bool) -> tuple[int, dict[int, object]]:
    """A receiver on a store, its checkpoint due every 4 packets of an SA, fed `batches`
    (by `inbound_batch`, or packet by packet): how often a checkpoint fell due, and per
    SA its stored window after one writer round (top, bits, bitmap), its live window
    and counters."""
    b = receiver(RecordingStore())
    assert b.writer is not None
    b.writer.checkpoint_packets = 4
    for spi in SPIS:
        msg = keyed(SadbMsgType.ADD, spi, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=KEY)  # fmt: skip
        sa_ext = SadbSa(spi, 64, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL)
        add = PfkeyMessage(msg.msg_type, msg.satype, extensions=(sa_ext, *msg.extensions[1:]))
        assert b.stack.handle_pfkey(add, 0)[0].message.errno == 0
    due: list[int] = []
    b.writer.checkpoint_due = lambda: due.append(1)  # type: ignore[method-assign]
    for batch in batches:
        if one_by_one:
            for esp in batch:
                b.path.inbound(esp, b.outer, 1.0)
        else:
            b.path.inbound_batch(batch, b.outer, 1.0)
    assert b.writer.run_once()
    stored = b.writer.store.load()[ESP_REPLAY]
    states: dict[int, object] = {}
    for spi in SPIS:
        sa = b.stack.sadb.lookup_esp(spi, b.outer)
        assert sa is not None and isinstance(sa.transform, EspContext)
        esp = sa.transform.esp
        cp = decode_replay(stored[record_key(spi, B_PACKED)])
        states[spi] = ((cp.top, cp.bits, cp.bitmap), (esp.replay.top, esp.replay.bitmap),
                       esp.packets_in, esp.bytes_in)  # fmt: skip
    assert len(b.got) == sum(map(len, batches)) - 1, b.path.counters()  # all but the replay
    return len(due), states


def test_checkpoints_of_many_sas_fall_due_and_store_as_packet_by_packet(esp_path: str) -> None:
    senders = [EspSa(spi, EALG_AES_GCM_16, KEY, esp_path="python") for spi in SPIS]
    sent = [[s.encrypt(packet(n), 4) for n in range(1, 10)] for s in senders]
    batches = [[sent[k][n] for k in range(3)] for n in range(6)]
    # An SA twice in a batch of three SAs, its second packet before its first (both
    # received), and a replay of an earlier packet.
    batches.append([sent[0][7], sent[1][6], sent[0][6], sent[2][6], sent[1][0]])
    batches.append([sent[1][8], sent[2][8], sent[2][7]])
    due, states = _received(batches, one_by_one=False)
    twin_due, twin_states = _received(batches, one_by_one=True)
    assert (due, states) == (twin_due, twin_states)
    assert due == 3 * 2  # each SA: after its 4th and 8th packet
    top, _, bitmap = states[SPIS[0]][0]  # type: ignore[index]
    assert (top, bitmap & 0b11) == (8, 0b11)  # 8 and 7 received, 7 after 8
