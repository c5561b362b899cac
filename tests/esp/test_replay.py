"""The anti-replay window (RFC 4303 §3.4.3) and ESN inference (RFC 4303 Appendix A)."""

from __future__ import annotations

import pytest

from larval.esp import (
    EspAuthError,
    EspReplayError,
    EspReplayTooOldError,
    EspReplayWindow,
)

from .helpers import SUITES


def test_duplicates_and_too_old_are_dropped() -> None:
    out, into = SUITES[0].sa(), SUITES[0].sa(replay_window=64)
    packets = [out.encrypt(b"p%d" % i, 4) for i in range(1, 201)]
    for seq in (1, 5, 3, 100, 70):
        into.decrypt(packets[seq - 1])
    with pytest.raises(EspReplayError) as dup:
        into.decrypt(packets[70 - 1])
    assert dup.value.counter == "replay"
    assert not isinstance(dup.value, EspReplayTooOldError)
    into.decrypt(packets[200 - 1])
    # 137 is the lowest number the window (T = 200, W = 64) still accepts.
    with pytest.raises(EspReplayTooOldError) as old:
        into.decrypt(packets[136 - 1])
    assert old.value.counter == "replay_old"
    into.decrypt(packets[137 - 1])
    with pytest.raises(EspReplayError):
        into.decrypt(packets[137 - 1])
    assert into.packets_in == 7
    with pytest.raises(EspReplayTooOldError):
        into.decrypt(packets[70 - 1])


def test_window_of_4096() -> None:
    window = EspReplayWindow(4096)
    window.update(5000)
    for seq in range(905, 5000, 7):
        assert window.check(seq) == seq
        window.update(seq)
    with pytest.raises(EspReplayTooOldError):
        window.check(904)
    for seq in range(905, 5000, 7):
        with pytest.raises(EspReplayError):
            window.check(seq)
    assert window.check(906) == 906
    window.update(10_000)  # a jump past the whole window forgets it
    assert window.bitmap == 1
    assert window.check(10_000 - 4095) == 10_000 - 4095


def test_sequence_number_zero_is_never_accepted() -> None:
    with pytest.raises(EspReplayError):
        EspReplayWindow(64).check(0)


def test_window_moves_only_after_authentication() -> None:
    out, into = SUITES[0].sa(), SUITES[0].sa()
    first = out.encrypt(b"one", 4)
    into.decrypt(first)
    out.seq = 10_000
    forged = bytearray(out.encrypt(b"far ahead", 4))
    forged[-1] ^= 1
    with pytest.raises(EspAuthError):
        into.decrypt(bytes(forged))
    assert into.replay.top == 1 and into.packets_in == 1
    out.seq = 1
    assert into.decrypt(out.encrypt(b"two", 4)) == (4, b"two")


def test_window_zero_disables_the_check() -> None:
    out, into = SUITES[0].sa(), SUITES[0].sa(replay_window=0)
    esp = out.encrypt(b"x", 4)
    assert into.decrypt(esp) == into.decrypt(esp) == (4, b"x")


# RFC 4303 Appendix A2.2 with W = 64.
@pytest.mark.parametrize(
    ("top", "seql", "expected"),
    [
        # Case A, T = 2^32 + 1000 (Tl = 1000 >= W - 1): Bl = 937.
        (2**32 + 1000, 1001, 2**32 + 1001),  # ahead in the same subspace
        (2**32 + 1000, 937, 2**32 + 937),  # at the bottom of the window
        (2**32 + 1000, 936, 2**33 + 936),  # below Bl: taken as the next subspace
        # Case B, T = 2^32 + 10 (Tl = 10 < W - 1): Bl = 2^32 - 53.
        (2**32 + 10, 5, 2**32 + 5),  # in the window, this subspace
        (2**32 + 10, 2**32 - 20, 2**32 - 20),  # in the window, previous subspace
        (2**32 + 10, 2**32 - 53, 2**32 - 53),  # at Bl
        (2**32 + 10, 2**32 - 54, 2**33 - 54),  # just below Bl: far ahead, this subspace
        # Rollover: T = 2^32 - 1 (Case A), a packet with Seql = 0 is 2^32.
        (2**32 - 1, 0, 2**32),
        (2**32 - 1, 3, 2**32 + 3),
    ],
)
def test_esn_inference(top: int, seql: int, expected: int) -> None:
    window = EspReplayWindow(64, esn=True)
    window.top = top
    assert window.infer_seq(seql) == expected


def test_esn_inference_at_the_start_of_the_sa() -> None:
    window = EspReplayWindow(64, esn=True)  # T = 0: Case B, Th = 0
    assert window.infer_seq(5) == 5
    with pytest.raises(EspReplayTooOldError):
        window.infer_seq(0xFFFFFFF0)  # would be in subspace -1


def test_esn_rollover_end_to_end() -> None:
    out, into = SUITES[0].sa(esn=True), SUITES[0].sa(esn=True)
    out.seq = 2**32 - 3
    into.replay.top = 2**32 - 3
    packets = [out.encrypt(b"%d" % i, 4) for i in range(6)]  # 2^32-2 .. 2^32+3
    for esp in (packets[0], packets[3], packets[1], packets[5], packets[2], packets[4]):
        into.decrypt(esp)
    assert into.replay.top == 2**32 + 3
    for esp in packets:
        with pytest.raises(EspReplayError):
            into.decrypt(esp)
