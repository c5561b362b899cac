"""A compiled SA's inbound window and counters live in its C block (`_helper.c`
`struct larval_gcm_sa`, read through `SaWindow`). Random sequences of packets of several
SAs, cut into batches, go through the compiled calls (`open_each` across the SAs,
`decrypt_spans` per SA) or through `decrypt` on the compiled SAs themselves (Python's
steps on the block's window), and, packet by packet, through `decrypt` on twin SAs made
with ``esp_path="python"`` (the reference). Every outcome, drop message included, the
window (top and bitmap) and the counters must agree after each batch, and a checkpoint
`restore` between batches must move both alike.

The packets: in order, near and behind the window's edge, duplicates, too old, jumps past
the window, a forged ICV, bad padding, truncated, another SA's SPI, dummy packets; window
sizes 0, 1, 32, 63, 64, 65, 128 and 4096; ESN on and off, across subspace boundaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import EALG_AES_GCM_16
from larval.esp import EspDropError, EspSa, helper
from larval.esp.errors import (
    EspAuthError,
    EspBadPaddingError,
    EspReplayError,
    EspReplayTooOldError,
    EspTruncatedError,
    EspUnknownSpiError,
)
from larval.esp.helper import SaWindow
from larval.esp.sa import IPPROTO_NONE, OPEN_COUNTERS, EspDecrypted, open_each
from tests.esp.helpers import IPV4_UDP

SAS = 3
SIZES = [0, 1, 32, 63, 64, 65, 128, 4096]


@pytest.fixture
def compiled() -> None:
    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")


def _sa(k: int, size: int, esn: bool, path: str) -> EspSa:
    # AES-128 and AES-256 SAs side by side: the calls of many SAs key one context per
    # key length, again at each change of SA.
    key = bytes([k + 7]) * (36 if k % 2 else 20)
    return EspSa(0x7100 + k, EALG_AES_GCM_16, key, esn=esn,
                 replay_window=size, esp_path=path)  # fmt: skip


def _sealed(sender: EspSa, seq: int, payload: bytes, next_header: int) -> bytes:
    """An authentic packet of `sender` numbered `seq`, whatever it sent before."""
    sender.seq = seq - 1
    return sender.encrypt(payload, next_header)


def _badly_padded(sender: EspSa, seq: int) -> bytes:
    """An authentic packet numbered `seq` whose padding is not RFC 4303 §2.4's."""
    header = sender.spi.to_bytes(4, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    seq_hi = (seq >> 32).to_bytes(4, "big") if sender.esn else b""
    plaintext = IPV4_UDP[:22] + b"\x01\x03\x02\x04"
    return sender._transform.seal(header, seq_hi, sender._iv(seq), plaintext)


@dataclass
class Case:
    esn: bool
    sizes: list[int]
    start: int  # the top every SA is restored to first (0: none)
    packets: list[tuple[int, bytes]]  # (SA, packet)
    batches: list[tuple[str, int]]  # (how, end): "each", "spans", "decrypt" or "restore"
    restores: list[tuple[int, int]]  # (top step, bitmap) of each "restore"


_KINDS = ["next", "next", "next", "near", "near", "again", "old", "far", "forged",
          "padding", "runt", "spi", "dummy"]  # fmt: skip


@st.composite
def cases(draw: st.DrawFn) -> Case:
    esn = draw(st.booleans())
    sizes = [draw(st.sampled_from(SIZES[1:] if esn else SIZES)) for _ in range(SAS)]
    space = (1 << 64) - 1 if esn else (1 << 32) - 1
    starts = [0, 5000, (1 << 32) - 40]
    if esn:
        starts += [(1 << 32) + 7, (1 << 33) - 20]
    start = draw(st.sampled_from(starts))
    senders = [_sa(k, 64, esn, "python") for k in range(SAS)]
    cursors = [start] * SAS
    packets: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(1, 40))):
        k = draw(st.integers(0, SAS - 1))
        kind = draw(st.sampled_from(_KINDS))
        mine = [p for j, p in packets if j == k]
        if kind == "again" and mine:
            packets.append((k, draw(st.sampled_from(mine))))
            continue
        size = sizes[k]
        cursor = cursors[k]
        if kind == "near":
            seq = cursor + draw(st.integers(-size - 2, 3))
        elif kind == "old":
            seq = cursor - size - draw(st.integers(0, 3))
        elif kind == "far":
            seq = cursor + draw(st.sampled_from([size, size + 1, 64, 1000, 1 << 31]))
        else:
            seq = cursor + 1
        seq = min(max(seq, 1), space)
        if kind == "padding":
            packet = _badly_padded(senders[k], seq)
        elif kind == "dummy":
            packet = _sealed(senders[k], seq, b"", IPPROTO_NONE)
        else:
            packet = _sealed(senders[k], seq, IPV4_UDP + seq.to_bytes(8, "big"), 4)
        if kind == "forged":
            packet = packet[:-1] + bytes([packet[-1] ^ 0x20])
        elif kind == "runt":
            packet = packet[: draw(st.integers(8, 33))]
        elif kind == "spi":
            packet = (0x7100 + (k + 1) % SAS).to_bytes(4, "big") + packet[4:]
        if kind in ("next", "far", "padding", "dummy"):
            cursors[k] = max(cursor, seq)
        packets.append((k, packet))
    ends = sorted(draw(st.lists(st.integers(0, len(packets)), max_size=4)))
    batches: list[tuple[str, int]] = []
    restores: list[tuple[int, int]] = []
    for end in [*ends, len(packets)]:
        if draw(st.booleans()) and draw(st.booleans()):
            batches.append(("restore", end))
            restores.append((draw(st.sampled_from([-100, -1, 0, 1, 70, 5000])),
                             draw(st.integers(0, (1 << 130) - 1))))  # fmt: skip
        batches.append((draw(st.sampled_from(["each", "spans", "decrypt"])), end))
    return Case(esn, sizes, start, packets, batches, restores)


def _seen(result: EspDecrypted) -> tuple[object, ...]:
    """A packet's outcome: the drop's counter and message, or what came out."""
    if isinstance(result, EspDropError):
        return ("drop", result.counter, str(result))
    return ("ok", result[0], bytes(result[1]))


def _one(sa: EspSa, esp: bytes) -> tuple[object, ...]:
    try:
        return _seen(sa.decrypt(esp))
    except EspDropError as e:
        return _seen(e)


def _state(sa: EspSa) -> tuple[int, ...]:
    r = sa.replay
    return (r.top, r.bitmap, sa.packets_in, sa.bytes_in)


def _spans(sa: EspSa, packets: Sequence[bytes]) -> list[tuple[object, ...]]:
    plain, spans = sa.decrypt_spans(packets)
    return [
        _seen(span) if isinstance(span, EspDropError)
        else ("ok", span[0], plain[span[1] : span[1] + span[2]])
        for span in spans
    ]  # fmt: skip


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=cases())
def test_the_block_s_window_moves_as_decrypt_moves_the_reference(
    case: Case, compiled: None
) -> None:
    ours = [_sa(k, case.sizes[k], case.esn, "compiled") for k in range(SAS)]
    twins = [_sa(k, case.sizes[k], case.esn, "python") for k in range(SAS)]
    assert all(type(sa.replay) is SaWindow for sa in ours)
    assert not any(isinstance(sa.replay, SaWindow) for sa in twins)
    if case.start:
        for sa in (*ours, *twins):
            sa.replay.restore(case.start, 1)
    begin = 0
    restores = iter(case.restores)
    for how, end in case.batches:
        if how == "restore":
            step, bitmap = next(restores)
            for k in range(SAS):
                top = max(0, twins[k].replay.top + step)
                ours[k].replay.restore(top, bitmap)
                twins[k].replay.restore(top, bitmap)
            assert [_state(s) for s in ours] == [_state(s) for s in twins]
            continue
        batch = case.packets[begin:end]
        begin = end
        expected = [_one(twins[k], esp) for k, esp in batch]
        got: list[tuple[object, ...]] = []
        if how == "each":
            found = open_each([(ours[k], esp) for k, esp in batch])
            assert None not in found  # every SA is compiled: none is left to `decrypt`
            got = [_seen(r) for r in found if r is not None]
        elif how == "spans":
            by_sa: dict[int, list[int]] = {}
            for i, (k, _) in enumerate(batch):
                by_sa.setdefault(k, []).append(i)
            got = [("",)] * len(batch)
            for k, where in by_sa.items():
                for i, seen in zip(where, _spans(ours[k], [batch[i][1] for i in where]),
                                   strict=True):  # fmt: skip
                    got[i] = seen
        else:
            got = [_one(ours[k], esp) for k, esp in batch]
        assert got == expected, how
        assert [_state(s) for s in ours] == [_state(s) for s in twins], how


def test_python_writes_reach_the_block(compiled: None) -> None:
    """What Python sets (a restored checkpoint, the counters) is what the compiled call
    then works with: a packet the restored window has seen is a replay there."""
    sender = _sa(0, 64, False, "python")
    sa = _sa(0, 128, False, "compiled")
    packets = [_sealed(sender, seq, IPV4_UDP, 4) for seq in (70, 71, 200)]
    sa.replay.restore(100, 1 | 1 << 30)  # 100 and 70 received
    sa.packets_in, sa.bytes_in = 5, 500
    assert sa._handle.top == 100 and sa._handle.packets_in == 5
    found = open_each([(sa, p) for p in packets])
    assert [type(r) for r in found] == [EspReplayError, tuple, tuple]
    # 71 (bit 29) and 70 (bit 30) fall out of the 128 bits when 200 moves T by 100.
    assert (sa.replay.top, sa.replay.bitmap) == (200, 1 | 1 << 100)
    assert (sa.packets_in, sa.bytes_in) == (7, 500 + 2 * len(IPV4_UDP))


def test_the_counters_by_status_are_the_drops_names(compiled: None) -> None:
    """`OPEN_COUNTERS` (what the packet path counts a compiled drop by) names each status
    as `EspSa._dropped` (what `open_each` gives) does."""
    sa = _sa(0, 64, True, "compiled")
    named = {
        helper.OPEN_AUTH: EspAuthError,
        helper.OPEN_PADDING: EspBadPaddingError,
        helper.OPEN_TRUNCATED: EspTruncatedError,
        helper.OPEN_SPI: EspUnknownSpiError,
        helper.OPEN_REPLAY: EspReplayError,
        helper.OPEN_TOO_OLD: EspReplayTooOldError,
        helper.OPEN_BEFORE: EspReplayTooOldError,
        helper.OPEN_BEYOND: EspReplayError,
    }
    esp = bytes(40)
    for status, error in named.items():
        dropped = sa._dropped(status, len(esp), esp, 1, bytes(8), 0)
        assert type(dropped) is error
        assert OPEN_COUNTERS[status] == dropped.counter
    assert len(OPEN_COUNTERS) == 1 + len(named)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(SIZES), st.integers(0, 2**4096 - 1), st.booleans())
def test_the_bitmap_reads_alike_in_either_byte_order(
    compiled: None, size: int, bits: int, esn: bool
) -> None:
    """`SaWindow.bitmap` reads the block's words through their bytes on a little-endian
    host and word by word elsewhere: both give the bitmap written, bit k for k behind T."""
    window = _sa(0, size, esn and size > 0, "compiled").replay
    assert isinstance(window, SaWindow)
    value = bits & ((1 << (64 * ((size + 63) // 64 or 1))) - 1)
    window.bitmap = value
    read: dict[bool, int] = {}
    for little in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(helper, "_LITTLE_ENDIAN", little)
            read[little] = window.bitmap
    assert read[True] == read[False] == value
