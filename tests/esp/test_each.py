"""`seal_each` and `open_each` (one packet each of several SAs, in one compiled call)
against `encrypt` and `decrypt` called packet by packet on identical SAs: the same bytes,
the same drops, the same counters and replay windows. Hypothesis draws the SAs' order,
repeats an SA, and spoils packets (a forged ICV, a replay, a wrong SPI, a runt, a dummy
packet); SAs on the Python path are left to the per-packet calls, and the compiled
receive takes every SA's packets, ESN too. Each test runs with the SAs' batch calls on
both paths."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import EALG_AES_GCM_16
from larval.esp import EspDropError, EspError, EspSa
from larval.esp.sa import IPPROTO_NONE, open_each, seal_each
from tests.esp.compare import outcome, state
from tests.esp.helpers import IPV4_UDP, IPV6_UDP

SAS = 5  # SA 4 has ESN


def _sas(path: str) -> list[EspSa]:
    return [
        EspSa(0x7000 + k, EALG_AES_GCM_16, bytes([k + 1]) * (36 if k % 2 else 20),
              esn=k == SAS - 1,
              replay_window=32, esp_path=path)
        for k in range(SAS)
    ]  # fmt: skip


_INNERS = [(IPV4_UDP, 4), (IPV6_UDP, 41), (b"", IPPROTO_NONE), (IPV4_UDP, 300)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(st.integers(0, SAS - 1), st.integers(0, len(_INNERS) - 1)),
                      max_size=12))  # fmt: skip
def test_seal_each_writes_what_encrypt_writes(items: list[tuple[int, int]], path: str) -> None:
    one, each = _sas("python"), _sas(path)
    expected = []
    for k, i in items:
        try:
            expected.append(outcome(one[k].encrypt(*_INNERS[i])))
        except EspError as e:
            expected.append(outcome(e))
    made = seal_each([each[k] for k, _ in items], [_INNERS[i][0] for _, i in items],
                     [_INNERS[i][1] for _, i in items])  # fmt: skip
    got: list[tuple[str, object]] = []
    for (k, i), esp in zip(items, made, strict=True):
        if esp is None:  # left to `encrypt`, after the call, in order
            try:
                esp = each[k].encrypt(*_INNERS[i])
            except EspError as e:
                got.append(outcome(e))
                continue
        got.append(outcome(esp))
    assert got == expected
    assert [state(s) for s in each] == [state(s) for s in one]
    if path == "python":
        assert all(m is None for m in made)


_TUNNEL_INNERS = [IPV4_UDP, IPV6_UDP, b"\x45" + bytes(19), b"\x60" + bytes(39)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(st.integers(0, SAS - 1), st.integers(0, len(_TUNNEL_INNERS) - 1)),
                      max_size=12))  # fmt: skip
def test_seal_each_without_next_headers_writes_what_encrypt_writes_under_the_version_s(
    items: list[tuple[int, int]], path: str
) -> None:
    one, each = _sas("python"), _sas(path)
    expected = []
    for k, i in items:
        inner = _TUNNEL_INNERS[i]
        expected.append(outcome(one[k].encrypt(inner, 4 if inner[0] >> 4 == 4 else 41)))
    inners = [_TUNNEL_INNERS[i] for _, i in items]
    made = seal_each([each[k] for k, _ in items], inners)
    got = []
    for (k, _), inner, esp in zip(items, inners, made, strict=True):
        if esp is None:  # left to `encrypt`, after the call, in order
            esp = each[k].encrypt(inner, 4 if inner[0] >> 4 == 4 else 41)
        got.append(outcome(esp))
    assert got == expected
    assert [state(s) for s in each] == [state(s) for s in one]
    if path == "python":
        assert all(m is None for m in made)


#: What a packet of the decryption test is: as sent, forged, a replay of an earlier
#: one, under another SA's SPI, cut short, or a dummy packet.
_KINDS = ["ok", "ok", "forged", "replay", "spi", "runt", "dummy"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(st.integers(0, SAS - 1), st.sampled_from(_KINDS)), max_size=14))
def test_open_each_gives_what_decrypt_gives(items: list[tuple[int, str]], path: str) -> None:
    senders = _sas("python")
    packets: list[bytes] = []
    sent: list[list[bytes]] = [[] for _ in range(SAS)]
    for k, kind in items:
        esp = senders[k].encrypt(*(_INNERS[2] if kind == "dummy" else _INNERS[0]))
        if kind == "forged":
            esp = esp[:-1] + bytes([esp[-1] ^ 1])
        elif kind == "replay" and sent[k]:
            esp = sent[k][0]
        elif kind == "spi":
            esp = (0x7000 + (k + 1) % SAS).to_bytes(4, "big") + esp[4:]
        elif kind == "runt":
            esp = esp[:20]
        sent[k].append(esp)
        packets.append(esp)
    one, each = _sas("python"), _sas(path)
    expected = []
    for k, esp in zip((k for k, _ in items), packets, strict=True):
        try:
            expected.append(outcome(one[k].decrypt(esp)))
        except EspDropError as e:
            expected.append(outcome(e))
    found = open_each([(each[k], esp) for (k, _), esp in zip(items, packets, strict=True)])
    if path == "compiled":
        assert None not in found  # none is left to `decrypt`
    got: list[tuple[str, object]] = []
    for (k, _), esp, result in zip(items, packets, found, strict=True):
        if result is None:  # left to `decrypt`, after the call, in order
            try:
                result = each[k].decrypt(esp)
            except EspDropError as e:
                result = e
        got.append(outcome(result))
    assert got == expected
    assert [state(s) for s in each] == [state(s) for s in one]


def test_seal_each_takes_one_next_header_per_packet(path: str) -> None:
    each = _sas(path)
    with pytest.raises(ValueError, match="1 Next Headers for 2 packets"):
        seal_each(each[:2], [IPV4_UDP, IPV6_UDP], [4])
    assert [state(s) for s in each] == [state(s) for s in _sas("python")]


def _sealed_with_trailer(sa: EspSa, seq: int, plaintext: bytes) -> bytes:
    """An authentic ESP packet of `sa` numbered `seq` whose plaintext (payload, padding,
    Pad Length, Next Header) is `plaintext` as given, right or wrong."""
    header = sa.spi.to_bytes(4, "big") + seq.to_bytes(4, "big")
    return sa._transform.seal(header, b"", sa._iv(seq), plaintext)


def test_open_each_names_the_pad_length_decrypt_names(path: str) -> None:
    senders = _sas("python")
    payload = IPV4_UDP[:22]  # 22 + 2: no padding needed, so any given is explicit
    packets = [
        _sealed_with_trailer(senders[0], 1, payload + b"\x01\x03\x02\x04"),  # a wrong byte
        _sealed_with_trailer(senders[1], 1, payload[:2] + b"\xff\x04"),  # Pad Length too long
        _sealed_with_trailer(senders[2], 1, payload + b"\x00\x04"),  # right
    ]
    one, each = _sas("python"), _sas(path)
    expected: list[object] = []
    for k, esp in enumerate(packets):
        try:
            expected.append(one[k].decrypt(esp))
        except EspDropError as e:
            expected.append((e.counter, str(e)))
    found = open_each([(each[k], esp) for k, esp in enumerate(packets)])
    got: list[object] = []
    for k, (esp, result) in enumerate(zip(packets, found, strict=True)):
        if result is None:  # left to `decrypt`
            try:
                result = each[k].decrypt(esp)
            except EspDropError as e:
                result = e
        got.append((result.counter, str(result)) if isinstance(result, EspDropError) else result)
    assert got == expected
    assert expected[:2] == [
        ("bad_padding", "Pad Length 2 or padding bytes wrong"),
        ("bad_padding", "Pad Length 255 or padding bytes wrong"),
    ]
    assert [state(s) for s in each] == [state(s) for s in one]
