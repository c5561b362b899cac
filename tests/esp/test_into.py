"""`encrypt_into` / `decrypt_into`: the same packets, written into caller buffers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import EspAuthError, EspDropError, EspError

from .helpers import IPV4_UDP, IPV6_UDP, SUITE_IDS, SUITES, Suite


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
def test_batch_in_one_buffer(suite: Suite, esn: bool) -> None:
    """Several ESP packets back to back in one buffer, as a UDP GSO send builds them."""
    fixed_iv = (lambda seq: bytes(16)) if suite.encrypt_key_len in (16, 32) else None
    out = suite.sa(esn=esn)
    twin = suite.sa(esn=esn)
    if fixed_iv:
        out._iv = twin._iv = fixed_iv  # CBC: the same IV on both, to compare bytes
    inners = [IPV4_UDP, IPV6_UDP, IPV4_UDP[:21], b""]
    buf = bytearray(sum(out.esp_length(len(p)) for p in inners) + 5)
    offset = 5
    spans = []
    for inner in inners:
        n = out.encrypt_into(inner, 4, buf, offset)
        assert bytes(buf[offset : offset + n]) == twin.encrypt(inner, 4)
        spans.append((offset, n))
        offset += n
    assert offset == len(buf)
    into = suite.sa(esn=esn)
    plain = bytearray(2000)
    for inner, (start, n) in zip(inners, spans, strict=True):
        next_header, length = into.decrypt_into(memoryview(buf)[start : start + n], plain, 3)
        assert (next_header, bytes(plain[3 : 3 + length])) == (4, inner)
    assert into.packets_in == len(inners) and into.bytes_in == sum(map(len, inners))


def test_buffer_too_small_consumes_no_sequence_number() -> None:
    sa = SUITES[0].sa()
    with pytest.raises(EspError):
        sa.encrypt_into(IPV4_UDP, 4, bytearray(10))
    assert sa.seq == 0
    esp = sa.encrypt(IPV4_UDP, 4)
    into = SUITES[0].sa()
    with pytest.raises(EspError):
        into.decrypt_into(esp, bytearray(10))


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_tampered_into(suite: Suite) -> None:
    esp = bytearray(suite.sa().encrypt(IPV4_UDP, 4))
    esp[-3] ^= 1
    into = suite.sa()
    with pytest.raises(EspAuthError):
        into.decrypt_into(esp, bytearray(len(esp)))
    assert into.replay.top == 0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SUITES), st.binary(max_size=120))
def test_random_bytes_into(suite: Suite, data: bytes) -> None:
    sa = suite.sa()
    for esp in (data, b"\x00\x00\x10\x01" + data):
        try:
            sa.decrypt_into(esp, bytearray(len(esp)))
        except EspDropError as e:
            assert e.counter
