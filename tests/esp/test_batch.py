"""`EspSa.encrypt_batch` and `decrypt_batch` against `encrypt` and `decrypt` called packet
by packet on an identical SA: the same bytes, the same drops, the same counters and the
same replay window, on mixed batches (duplicates within a batch, a forged ICV, a runt, a
wrong SPI, a dummy packet, a stale packet, ESN across a subspace boundary).

Each test runs the batch calls on both paths: Python (the reference) and the compiled
helper (AES-GCM). Where the helper is not built, the compiled case is skipped, which CI
(LARVAL_NO_SKIP) counts as a failure."""

from __future__ import annotations

import pytest

from larval.crypto.algorithms import EALG_AES_CBC, EALG_AES_GCM_16
from larval.esp import EspConfigError, EspDropError, EspSa, EspSeqExhausted, helper
from larval.esp.sa import IPPROTO_NONE
from tests.esp.compare import outcome, state
from tests.esp.helpers import IPV4_UDP, IPV6_UDP, SUITE_IDS, SUITES, Suite

SPI = 0x1001


def pair(
    suite: Suite, *, esn: bool = False, window: int = 64, path: str = "python"
) -> tuple[EspSa, EspSa]:
    """Two identical SAs, the second with its batch calls on `path`. AES-CBC draws random
    IVs: here they come from the sequence number, so that both write the same bytes."""
    ekey, akey = suite.keys()
    iv = (lambda seq: seq.to_bytes(16, "big")) if suite.encrypt_alg == EALG_AES_CBC else None
    one, two = (
        EspSa(
            SPI,
            suite.encrypt_alg,
            ekey,
            suite.auth_alg,
            akey,
            esn=esn,
            replay_window=window,
            iv_source=iv,
            esp_path=p,
        )
        for p in ("python", path)
    )
    return one, two


def one_by_one(sa: EspSa, packets: list[bytes]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for p in packets:
        try:
            out.append(("ok", sa.decrypt(p)))
        except EspDropError as e:
            out.append(("drop", e.counter))
    return out


INNER = [(IPV4_UDP, 4), (IPV6_UDP, 41), (IPV4_UDP[:21], 4), (b"", IPPROTO_NONE), (IPV4_UDP, 6)]


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_encrypt_batch_writes_the_bytes_encrypt_writes(suite: Suite, path: str) -> None:
    one, batch = pair(suite, path=path)
    expected = [one.encrypt(inner, nh) for inner, nh in INNER * 3]
    made, error = batch.encrypt_batch(INNER * 3)
    assert error is None
    assert made == expected
    assert state(batch) == state(one)


def test_encrypt_batch_stops_where_the_sequence_numbers_end(path: str) -> None:
    suite = SUITES[0]
    one, batch = pair(suite, path=path)
    for sa in (one, batch):
        sa.seq = (1 << 32) - 3
    expected = [one.encrypt(IPV4_UDP, 4) for _ in range(2)]
    with pytest.raises(EspSeqExhausted):
        one.encrypt(IPV4_UDP, 4)
    made, error = batch.encrypt_batch([(IPV4_UDP, 4)] * 5)
    assert made == expected
    assert isinstance(error, EspSeqExhausted)
    assert state(batch) == state(one)


def mixed_batch(suite: Suite, *, esn: bool = False, first: int = 1) -> list[bytes]:
    """Packets as a receiver may see them: in order, reordered, duplicated, forged, short."""
    sender, _ = pair(suite, esn=esn)
    sender.start_at(first)
    good = [sender.encrypt(inner, nh) for inner, nh in INNER * 4]
    forged = bytearray(good[7])
    forged[-1] ^= 0x01
    wrong_spi = b"\x00\x00\x20\x02" + good[8][4:]
    return [
        good[0], good[2], good[1], good[1],  # reordered, then a duplicate
        bytes(forged), good[7],  # a forgery moves nothing; the genuine one then passes
        good[3],  # a dummy packet (Next Header 59)
        good[5][:12], wrong_spi, good[4][: len(good[4]) - 1],  # runt, wrong SPI, misaligned
        *good[9:19], good[6], good[2],  # a run, then one late and one replayed
        good[0],
    ]  # fmt: skip


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_decrypt_batch_gives_what_decrypt_gives(suite: Suite, path: str) -> None:
    packets = mixed_batch(suite)
    one, batch = pair(suite, path=path)
    expected = one_by_one(one, packets)
    got = [outcome(r) for r in batch.decrypt_batch(packets)]
    assert got == expected
    assert {"replay", "auth", "dummy", "unknown_spi"} <= {c for k, c in expected if k == "drop"}
    assert state(batch) == state(one)


@pytest.mark.parametrize("suite", SUITES[:1] + SUITES[3:4], ids=["gcm", "cbc"])
def test_decrypt_batch_with_esn_across_a_subspace_boundary(suite: Suite, path: str) -> None:
    packets = mixed_batch(suite, esn=True, first=(1 << 32) - 6)
    one, batch = pair(suite, esn=True, path=path)
    for sa in (one, batch):
        sa.replay.restore((1 << 32) - 10, 1)
    expected = one_by_one(one, packets)
    got = [outcome(r) for r in batch.decrypt_batch(packets)]
    assert got == expected
    assert sum(k == "ok" for k, _ in expected) >= 10
    assert state(batch) == state(one)
    assert one.replay.top >> 32 == 1


@pytest.mark.parametrize("window", [0, 8, 64])
def test_decrypt_batch_in_two_batches_keeps_the_window_between_them(path: str, window: int) -> None:
    suite = SUITES[1]
    packets = mixed_batch(suite)
    one, batch = pair(suite, window=window, path=path)
    expected = one_by_one(one, packets)
    got = [outcome(r) for r in batch.decrypt_batch(packets[:9])]
    got += [outcome(r) for r in batch.decrypt_batch(packets[9:])]
    assert got == expected
    assert state(batch) == state(one)


def span_outcomes(sa: EspSa, packets: list[bytes]) -> list[tuple[str, object]]:
    """`decrypt_spans` as `one_by_one` gives it: each payload read out of the buffer."""
    plain, spans = sa.decrypt_spans(packets)
    out: list[tuple[str, object]] = []
    for span in spans:
        if isinstance(span, EspDropError):
            out.append(("drop", span.counter))
            continue
        next_header, start, length = span
        assert start >= 0 and start + length <= len(plain)
        out.append(("ok", (next_header, plain[start : start + length])))
    return out


@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize("suite", SUITES[:1] + SUITES[3:4], ids=["gcm", "cbc"])
def test_decrypt_spans_gives_what_decrypt_gives(suite: Suite, esn: bool, path: str) -> None:
    """The payloads left in one buffer: the same outcome, window and counters, with and
    without ESN, across two batches."""
    first = (1 << 32) - 6 if esn else 1
    packets = mixed_batch(suite, esn=esn, first=first)
    one, batch = pair(suite, esn=esn, path=path)
    if esn:
        for sa in (one, batch):
            sa.replay.restore((1 << 32) - 10, 1)
    expected = one_by_one(one, packets)
    assert span_outcomes(batch, packets[:9]) + span_outcomes(batch, packets[9:]) == expected
    assert sum(k == "ok" for k, _ in expected) >= 10
    assert state(batch) == state(one)


def test_decrypt_spans_infers_high_bits_from_the_window_the_batch_moved(path: str) -> None:
    """With ESN, packets whose high bits the window at the batch's start would infer
    wrong, and the window as the batch's earlier packets left it infers right: each is
    judged on the window as `decrypt` packet by packet would see it."""
    suite = SUITES[0]
    sender, _ = pair(suite, esn=True)
    packets = []
    for seq in ((1 << 32) - 8, (1 << 32) + (1 << 31), (1 << 33) + 5, (1 << 33) + 6):
        sender.start_at(seq)
        packets.append(sender.encrypt(IPV4_UDP + seq.to_bytes(8, "big"), 4))
    one, batch = pair(suite, esn=True, path=path)
    for sa in (one, batch):
        sa.replay.restore((1 << 32) - 10, 1)
    expected = one_by_one(one, packets)
    assert [k for k, _ in expected] == ["ok"] * 4
    assert span_outcomes(batch, packets) == expected
    assert state(batch) == state(one)


def test_compiled_path_seals_a_large_batch_as_python_does(path: str) -> None:
    suite = SUITES[0]
    one, batch = pair(suite, path=path)
    inners = [(bytes([n % 251]) * (n * 23 % 1500), 4) for n in range(200)]
    made, error = batch.encrypt_batch(inners)
    assert error is None
    assert made == [one.encrypt(inner, nh) for inner, nh in inners]
    receiver_one, receiver_batch = pair(suite, path=path)
    expected = one_by_one(receiver_one, made[::-1] + made[:10])
    assert [outcome(r) for r in receiver_batch.decrypt_batch(made[::-1] + made[:10])] == expected
    assert state(receiver_batch) == state(receiver_one)


def sealed_with_trailer(sa: EspSa, seq: int, plaintext: bytes) -> bytes:
    """An authentic ESP packet numbered `seq` whose plaintext (payload, padding, Pad
    Length, Next Header) is `plaintext` as given, right or wrong."""
    header = SPI.to_bytes(4, "big") + seq.to_bytes(4, "big")
    return sa._transform.seal(header, b"", sa._iv(seq), plaintext)


def test_decrypt_batch_drops_authentic_packets_with_bad_padding(path: str) -> None:
    suite = SUITES[0]
    sender, _ = pair(suite)
    payload = IPV4_UDP[:22]  # 22 + 2: no padding needed, so any given is explicit
    packets = [
        sealed_with_trailer(sender, 1, payload + b"\x01\x02\x02\x04"),  # right
        sealed_with_trailer(sender, 2, payload + b"\x01\x03\x02\x04"),  # a wrong byte
        sealed_with_trailer(sender, 3, payload[:2] + b"\xff\x04"),  # Pad Length too long
        sealed_with_trailer(sender, 4, payload + b"\x01\x02\x00\x04"),  # short, then bytes
        sealed_with_trailer(sender, 2, payload + b"\x00\x04"),  # number 2 again, now good
        sealed_with_trailer(sender, 5, b"\x00\x3b"),  # a dummy packet with nothing in it
    ]
    one, batch = pair(suite, path=path)
    expected = one_by_one(one, packets)
    got = [outcome(r) for r in batch.decrypt_batch(packets)]
    assert got == expected
    assert [k == "ok" for k, _ in expected] == [True, False, False, True, True, False]
    assert [c for k, c in expected if k == "drop"] == ["bad_padding", "bad_padding", "dummy"]
    assert state(batch) == state(one)


def test_the_environment_chooses_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    key = SUITES[0].keys()[0]
    monkeypatch.setenv(helper.HELPER_ENV, "python")
    assert helper.selected_path() == "python"
    assert EspSa(SPI, EALG_AES_GCM_16, key)._batch is None
    monkeypatch.setenv(helper.HELPER_ENV, "fastest")
    with pytest.raises(EspConfigError, match="LARVAL_ESP_HELPER='fastest'; allowed"):
        helper.selected_path()
    monkeypatch.setenv(helper.HELPER_ENV, "compiled")
    monkeypatch.setattr(helper, "_LOADED", [(None, "not built: no module named _gcm_batch")])
    with pytest.raises(EspConfigError, match="compiled ESP helper is not built"):
        EspSa(SPI, EALG_AES_GCM_16, key)
    monkeypatch.delenv(helper.HELPER_ENV)
    assert str(helper.esp_path()) == "python (helper not built: no module named _gcm_batch)"


def test_the_compiled_path_runs_where_built(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(helper.HELPER_ENV, raising=False)
    chosen = helper.esp_path()
    if path == "compiled":
        assert chosen.name == "compiled" and chosen.detail.startswith("OpenSSL ")
        assert EspSa(SPI, EALG_AES_GCM_16, SUITES[1].keys()[0])._batch is not None
    else:
        monkeypatch.setenv(helper.HELPER_ENV, "python")
        assert helper.esp_path().name == "python"
