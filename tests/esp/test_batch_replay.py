"""The compiled batch receive keeps the anti-replay window itself (`_helper.c`
`larval_gcm_open_window`) on the window the SA owns: against `decrypt` packet by packet
on an identical SA (`EspReplayWindow` the reference), random batches must give the same
outcomes and leave the same window (top and bitmap) and counters. The batches reorder,
duplicate, jump far ahead, fall left of the window, forge, truncate and carry other SPIs,
with and without ESN (across subspace boundaries), for window sizes around the word size
of the compiled bitmap and up to the largest allowed. The Python batch path runs the same
batches as well."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import EspSa, helper
from larval.esp.replay import MAX_REPLAY_WINDOW
from tests.esp.helpers import IPV4_UDP, SUITES
from tests.esp.test_batch import one_by_one, outcome, pair, state

SPI = 0x1001


def paths() -> list[str]:
    ok, _ = helper.built()
    return ["python", "compiled"] if ok else ["python"]


def test_the_compiled_path_is_built_where_ci_runs() -> None:
    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")
    assert "compiled" in paths()


def sealed(sender: EspSa, seq: int) -> bytes:
    """An authentic packet numbered `seq`, whatever the sender sent before."""
    sender.seq = seq - 1
    return sender.encrypt(IPV4_UDP + seq.to_bytes(8, "big"), 4)


@st.composite
def cases(draw: st.DrawFn) -> tuple[bool, int, int, list[bytes], list[int]]:
    """(esn, window size, top to restore, packets, batch boundaries)."""
    esn = draw(st.booleans())
    size = draw(st.sampled_from([1, 2, 8, 63, 64, 65, 100, 128, 129, 1024, MAX_REPLAY_WINDOW]))
    if not esn:
        size = draw(st.sampled_from([0, size]))
    space = (1 << 64) - 1 if esn else (1 << 32) - 1
    starts = [1, 5000, (1 << 32) - 40, (1 << 32) + 7] if esn else [1, 5000, (1 << 32) - 40]
    if esn:
        starts.append((1 << 33) - size // 2 - 3)
    top = draw(st.sampled_from(starts))
    sender, _ = pair(SUITES[0], esn=esn)
    packets: list[bytes] = []
    cursor = top
    for _ in range(draw(st.integers(2, 40))):
        kind = draw(
            st.sampled_from(["next", "next", "next", "near", "near", "far", "again", "forged",
                             "old", "runt", "spi"])
        )  # fmt: skip
        if kind == "again" and packets:
            packets.append(draw(st.sampled_from(packets)))
            continue
        if kind == "runt":
            packets.append(sealed(sender, max(1, cursor))[: draw(st.integers(8, 33))])
            continue
        if kind == "near":
            seq = cursor + draw(st.integers(-size - 2, 3))
        elif kind == "far":
            seq = cursor + draw(st.sampled_from([size, size + 1, 1000, 1 << 31]))
        elif kind == "old":
            seq = cursor - size - draw(st.integers(0, 3))
        else:
            seq = cursor + 1
        seq = min(max(seq, 1), space)
        packet = sealed(sender, seq)
        if kind == "forged":
            packet = packet[:-1] + bytes([packet[-1] ^ 0x40])
        elif kind == "spi":
            packet = b"\x00\x00\x20\x02" + packet[4:]
        packets.append(packet)
        if kind in ("next", "far"):
            cursor = seq
    cuts = sorted(draw(st.lists(st.integers(0, len(packets)), max_size=3)))
    return esn, size, top, packets, cuts


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_random_batches_move_the_window_as_decrypt_does(
    case: tuple[bool, int, int, list[bytes], list[int]],
) -> None:
    esn, size, top, packets, cuts = case
    bounds = [0, *cuts, len(packets)]
    for path in paths():
        one, batch = pair(SUITES[0], esn=esn, window=size, path=path)
        for sa in (one, batch):
            sa.replay.restore(top, 1)
        expected = one_by_one(one, packets)
        got = []
        for start, end in itertools.pairwise(bounds):
            got += [outcome(r) for r in batch.decrypt_batch(packets[start:end])]
        assert got == expected, path
        assert state(batch) == state(one), path
        assert (batch.replay.top, batch.replay.bitmap) == (one.replay.top, one.replay.bitmap)
