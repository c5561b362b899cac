"""The outbound sequence numbers and counters an SA keeps in its C block: the compiled
seal calls (`seal_each`, `seal_handles`, `encrypt_batch`) number packets from the block
and count them there, and `encrypt` on a twin SA of the Python path, called packet by
packet, is the reference. AES-GCM's IV is the sequence number, so the twins' packets are
byte for byte the same. Hypothesis draws batches spread over several SAs (an SA more
than once, bad Next Headers), reservations and their grants and revocations
(`reserve_from`, `grant`, `revoke`), and starts near the end of the 32-bit space and,
with ESN, of the 64-bit one (`start_at`); after every batch each packet, each SA's
numbers and counters and the reservation asks are compared."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import EALG_AES_GCM_16
from larval.esp import EspError, EspSa
from larval.esp.sa import IPPROTO_NONE, seal_each, seal_handles
from tests.esp.compare import outcome
from tests.esp.helpers import IPV4_UDP, IPV6_UDP

SAS = 4  # SAs 2 and 3 have ESN
_MAX_32 = (1 << 32) - 1
_MAX_64 = (1 << 64) - 1

_INNERS = [IPV4_UDP, IPV6_UDP, IPV4_UDP[:21], b"", IPV6_UDP + bytes(7)]
_NEXT_HEADERS = [4, 41, IPPROTO_NONE, 0, 255, 256, -1]


class _Twin:
    """One SA on the path under test and its reference on the Python path, the same
    keys and numbers; each asks for reservations into its own list."""

    def __init__(self, k: int, path: str) -> None:
        self.asked: list[list[int]] = [[], []]
        self.sas = [
            # AES-128 and AES-256 SAs side by side (a context per key length, rekeyed).
            EspSa(
                0x9000 + k,
                EALG_AES_GCM_16,
                bytes([k + 7]) * (36 if k % 2 else 20),
                esn=k >= 2,
                esp_path=p,
            )
            for p in (path, "python")
        ]

    def asker(self, i: int) -> Callable[[EspSa], None]:
        return lambda sa: self.asked[i].append(sa.seq)

    def state(self, i: int) -> tuple[object, ...]:
        sa = self.sas[i]
        return (sa.seq, sa._seq_check, sa.seq_mark, sa.revoked, sa.packets_out, sa.bytes_out,
                self.asked[i])  # fmt: skip


def _starts(k: int) -> st.SearchStrategy[int]:
    """Where an SA's numbers start: at 1, or near the end of its space (past it too)."""
    top = _MAX_64 if k >= 2 else _MAX_32
    near = st.integers(top - 4, top + 1)
    if k >= 2:  # ESN: also across the first 32-bit boundary
        return st.one_of(st.just(1), near, st.integers(_MAX_32 - 2, _MAX_32 + 2))
    return st.one_of(st.just(1), near)


_packet = st.tuples(
    st.integers(0, SAS - 1), st.integers(0, len(_INNERS) - 1),
    st.integers(0, len(_NEXT_HEADERS) - 1),
)  # fmt: skip
_step = st.one_of(
    st.tuples(st.sampled_from(["each", "tunnel", "handles"]), st.lists(_packet, max_size=10)),
    st.tuples(st.just("run"), st.tuples(st.integers(0, SAS - 1), st.lists(_packet, max_size=8))),
    st.tuples(st.just("grant"), st.tuples(st.integers(0, SAS - 1),
                                          st.sampled_from([0, 1, 2, 3, 8, 1 << 33, -1]))),
    st.tuples(st.just("revoke"), st.integers(0, SAS - 1)),
)  # fmt: skip


def _reference(sa: EspSa, inner: bytes, next_header: int) -> tuple[str, object]:
    try:
        return outcome(sa.encrypt(inner, next_header))
    except EspError as e:
        return outcome(e)


def _tunnel_nh(inner: bytes) -> int:
    return 4 if inner and inner[0] >> 4 == 4 else 41


def _batch(twins: list[_Twin], kind: str, items: list[tuple[int, int, int]]) -> None:
    """One batch through the calls under test and, packet by packet, the reference."""
    inners = [_INNERS[i] for _, i, _ in items]
    if kind == "tunnel":
        nhs = [_tunnel_nh(inner) for inner in inners]
    else:
        nhs = [_NEXT_HEADERS[h] for _, _, h in items]
    expected = [
        _reference(twins[k].sas[1], inner, nh)
        for (k, _, _), inner, nh in zip(items, inners, nhs, strict=True)
    ]
    tested = [twins[k].sas[0] for k, _, _ in items]
    if kind == "each":
        made = seal_each(tested, inners, nhs)
    elif kind == "tunnel":
        made = seal_each(tested, inners)
    else:
        made = seal_handles([sa.handle for sa in tested], inners, nhs)
    got = []
    for sa, inner, nh, esp in zip(tested, inners, nhs, made, strict=True):
        # Left to `encrypt`, after the call, in order.
        got.append(_reference(sa, inner, nh) if esp is None else outcome(esp))
    assert got == expected


def _run(twin: _Twin, items: list[tuple[int, int, int]]) -> None:
    """`encrypt_batch` of one SA against `encrypt` until the first error."""
    packets = [(_INNERS[i], _NEXT_HEADERS[h]) for _, i, h in items]
    expected: list[tuple[str, object]] = []
    for inner, nh in packets:
        expected.append(_reference(twin.sas[1], inner, nh))
        if expected[-1][0] == "error":
            break
    made, error = twin.sas[0].encrypt_batch(packets)
    got = [outcome(esp) for esp in made] + ([] if error is None else [outcome(error)])
    assert got == expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    starts=st.tuples(*(_starts(k) for k in range(SAS))),
    reserved=st.lists(st.sampled_from([0, 1, 2, 4]), min_size=SAS, max_size=SAS),
    steps=st.lists(_step, max_size=12),
)
def test_the_compiled_calls_number_and_count_as_encrypt_does(
    starts: tuple[int, ...], reserved: list[int], steps: list[tuple[str, object]], path: str
) -> None:
    twins = [_Twin(k, path) for k in range(SAS)]
    for k, twin in enumerate(twins):
        for i, sa in enumerate(twin.sas):
            if reserved[k]:  # half a block: 0 means no reservation
                sa.reserve_from(starts[k], reserved[k], twin.asker(i))
            elif starts[k] > 1:
                sa.start_at(starts[k])
    for kind, arg in steps:
        if kind == "run":
            k, items = arg  # type: ignore[misc]
            _run(twins[k], items)
        elif kind == "grant":
            k, more = arg  # type: ignore[misc]
            for sa in twins[k].sas:
                sa.grant(max(sa.seq_mark, sa.seq + 1) + more)
        elif kind == "revoke":
            for sa in twins[arg].sas:  # type: ignore[index]
                sa.revoke()
        else:
            _batch(twins, kind, arg)  # type: ignore[arg-type]
        for twin in twins:
            assert twin.state(0) == twin.state(1)
        if path == "compiled":
            for twin in twins:
                sa = twin.sas[0]
                block = sa.handle
                assert (block.seq, block.packets_out, block.bytes_out) == (
                    sa.seq, sa.packets_out, sa.bytes_out
                )  # fmt: skip
                assert block.seq_check <= (_MAX_64 if sa.esn else _MAX_32 + 1)


def test_a_grant_past_the_32_bit_space_does_not_let_the_compiled_call_past_it(
    path: str,
) -> None:
    sa = EspSa(0x9100, EALG_AES_GCM_16, bytes(20), esp_path=path)
    sa.reserve_from(_MAX_32 - 1, 4, lambda _: None)
    sa.grant(1 << 40)
    assert sa._seq_check == _MAX_32 + 1
    made = seal_each([sa, sa, sa], [IPV4_UDP] * 3)
    # The compiled call seals the last two numbers of the space; Python leaves all three.
    assert made == [None] * 3 if path == "python" else made[2] is None
    got = [outcome(esp) if esp is not None else _reference(sa, IPV4_UDP, 4) for esp in made]
    assert [kind for kind, _ in got] == ["ok", "ok", "error"]
    assert got[2] == ("error", "EspSeqExhausted")
    assert (sa.seq, sa.packets_out) == (_MAX_32, 2)


def test_the_last_esn_number_is_sent_once(path: str) -> None:
    sa = EspSa(0x9101, EALG_AES_GCM_16, bytes(20), esn=True, esp_path=path)
    sa.start_at(_MAX_64 - 1)
    made = seal_each([sa, sa, sa], [IPV4_UDP] * 3)
    # 2^64 - 2 is sealed in the call; 2^64 - 1, the last, is left to `encrypt`, which
    # sends it; then the space is exhausted.
    assert made == [None] * 3 if path == "python" else made[1:] == [None, None]
    got = [esp if esp is not None else _reference(sa, IPV4_UDP, 4)[1] for esp in made]
    assert isinstance(got[1], bytes) and got[1][4:8] == b"\xff\xff\xff\xff"
    assert got[2] == "EspSeqExhausted"
    assert sa.seq == _MAX_64
    assert seal_each([sa], [IPV4_UDP]) == [None]
    assert (sa.packets_out, sa.bytes_out) == (2, 2 * len(IPV4_UDP))


def test_the_numbers_read_and_written_are_the_block_s() -> None:
    from larval.esp import helper

    if not helper.built()[0]:
        pytest.skip("the compiled ESP helper is not built")
    sa = EspSa(0x9102, EALG_AES_GCM_16, bytes(20), esp_path="compiled")
    sa.start_at(1000)
    assert sa.handle.seq == 999
    sa.packets_out = 5
    sa.bytes_out = 7
    assert (sa.handle.packets_out, sa.handle.bytes_out) == (5, 7)
    sa.handle.seq = 41
    assert sa.seq == 41
    assert sa.encrypt(IPV4_UDP, 4)[4:8] == (42).to_bytes(4, "big")
    assert (sa.handle.seq, sa.handle.packets_out) == (42, 6)
