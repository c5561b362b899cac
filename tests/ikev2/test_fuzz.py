"""Property tests: decoding raises nothing but IkeProtocolError (IkeDecodeError is one),
and whatever decodes re-encodes to an equal value."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.ikev2 import (
    KNOWN_PAYLOAD_TYPES,
    Attribute,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    ExchangeType,
    FragmentReassembler,
    IdPayload,
    IkeFragment,
    IkeMessage,
    IkeProtocolError,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    PayloadType,
    Proposal,
    SaPayload,
    SkfPayload,
    TrafficSelector,
    Transform,
    TsPayload,
    TsType,
    UnknownPayload,
    UnknownTrafficSelector,
    VendorIdPayload,
    check_payloads,
    decode_chain,
    decode_fragment,
    decode_message,
    decode_protected,
    encode_chain,
    encode_protected,
)

from .toycipher import ToyCipher
from .vectors import CHAIN_VECTORS, MESSAGE_VECTORS, SPI_I, SPI_R

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
TYPES = [*sorted(int(t) for t in KNOWN_PAYLOAD_TYPES), 0, 1, 32, 49, 52, 54, 200, 255]


def _check(data: bytes) -> IkeMessage | None:
    """Decode; if that works, re-encoding must give a message that decodes the same."""
    try:
        message = decode_message(data)
    except IkeProtocolError:
        return None
    assert decode_message(message.encode()) == message
    for inner in (False, True):
        with contextlib.suppress(IkeProtocolError):
            check_payloads(message, inner)
    return message


def _identity(aad: bytes, body: bytes) -> bytes:
    return body


def _with_length(data: bytes) -> bytes:
    if len(data) < 28:
        return data
    return data[:24] + struct.pack(">I", len(data)) + data[28:]


# -- (a) arbitrary bytes -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    # Past the header, so the chain walker and the payload decoders see the bytes.
    head = SPI_I + SPI_R + bytes([tail[0] if tail else 0x21, 0x20, 0x22, 0x08]) + bytes(8)
    _check(_with_length(head + tail[1:]))


# -- (b) mutations of the vectors -----------------------------------------------------------

ALL_WIRES = [v.wire for v in MESSAGE_VECTORS]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ALL_WIRES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(u8)
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        return _with_length(bytes(data))
    return bytes(data)


@FUZZ
@given(_mutated())
def test_mutated_vectors(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.sampled_from(CHAIN_VECTORS), st.data())
def test_mutated_chains(vector: object, data: st.DataObject) -> None:
    wire = bytearray(vector.wire)  # type: ignore[attr-defined]
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(u8)
    first = data.draw(st.sampled_from([vector.first, *TYPES]))  # type: ignore[attr-defined]
    try:
        payloads, _ = decode_chain(bytes(wire), first, inner=True)
    except IkeProtocolError:
        return
    again, _ = decode_chain(encode_chain(payloads), first if payloads else 0, inner=True)
    assert again == payloads


# -- (c) plausible messages: a valid chain of random payload bodies -------------------------


@st.composite
def _plausible(draw: st.DrawFn) -> bytes:
    payloads = draw(
        st.lists(
            st.tuples(st.sampled_from(TYPES), st.booleans(), st.binary(max_size=60)),
            max_size=6,
        )
    )
    chain = b""
    for i, (_, critical, body) in enumerate(payloads):
        next_type = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        chain += struct.pack(">BBH", next_type, 0x80 if critical else 0, 4 + len(body)) + body
    first = payloads[0][0] if payloads else 0
    exchange = draw(st.sampled_from([34, 35, 36, 37, 99]))
    flags = draw(st.sampled_from([0x00, 0x08, 0x20, 0x28]))
    header = SPI_I + SPI_R + bytes([first, 0x20, exchange, flags]) + struct.pack(">I", 1)
    return header + struct.pack(">I", 28 + len(chain)) + chain


@FUZZ
@given(_plausible())
def test_plausible_messages(data: bytes) -> None:
    _check(data)


@FUZZ
@given(_plausible())
def test_plausible_protected(data: bytes) -> None:
    # The chain taken as an SK body that opens to itself: the inner walker sees it all.
    with contextlib.suppress(IkeProtocolError):
        decode_protected(data, _identity)
    with contextlib.suppress(IkeProtocolError):
        decode_fragment(data, _identity)


@FUZZ
@given(st.sampled_from(CHAIN_VECTORS), st.binary(max_size=200), st.sampled_from(TYPES))
def test_random_inner_chains(vector: object, inner: bytes, first: int) -> None:
    cipher = ToyCipher()
    message = IkeMessage(
        SPI_I,
        SPI_R,
        vector.exchange,  # type: ignore[attr-defined]
        True,
        False,
        1,
        vector.payloads,  # type: ignore[attr-defined]
    )
    wire = bytearray(encode_protected(message, cipher.protect, cipher.overhead))
    wire[28] = first
    try:
        opened = decode_protected(bytes(wire), lambda aad, body: inner)
    except IkeProtocolError:
        return
    with contextlib.suppress(IkeProtocolError):
        check_payloads(opened, inner=True)


# -- (d) fragments in any order, number and shape --------------------------------------------


@st.composite
def _fragments(draw: st.DrawFn) -> list[IkeFragment]:
    return draw(
        st.lists(
            st.builds(
                IkeFragment,
                message=st.builds(
                    IkeMessage,
                    spi_i=st.just(SPI_I),
                    spi_r=st.just(SPI_R),
                    exchange_type=st.sampled_from([ExchangeType.IKE_AUTH, ExchangeType(37)]),
                    is_initiator=st.just(True),
                    is_response=st.booleans(),
                    message_id=st.integers(0, 3),
                ),
                fragment_number=st.integers(0, 5),
                total_fragments=st.integers(0, 5),
                first_inner=st.sampled_from([PayloadType(t) for t in TYPES]),
                data=st.binary(max_size=20),
            ),
            max_size=20,
        )
    )


@FUZZ
@given(_fragments())
def test_reassembler_never_fails_otherwise(fragments: list[IkeFragment]) -> None:
    reassembler = FragmentReassembler(max_messages=3, max_bytes=100)
    for f in fragments:
        try:
            result = reassembler.add(f)
        except IkeProtocolError:
            continue
        if result is not None:
            assert result.message_id == f.message.message_id
        assert len(reassembler) <= 3


# -- (e) generated payloads round-trip ------------------------------------------------------

_bytes = st.binary(max_size=24)
_attr = st.builds(Attribute, st.integers(0, 0x7FFF), st.one_of(u16, _bytes))
_transform = st.builds(Transform, u8, u16, st.lists(_attr, max_size=3).map(tuple))
_proposal = st.builds(
    Proposal, u8, u8, st.binary(max_size=8), st.lists(_transform, max_size=4).map(tuple)
)
_v4 = st.builds(
    TrafficSelector,
    st.just(TsType.TS_IPV4_ADDR_RANGE),
    u8,
    u16,
    u16,
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=4, max_size=4),
)
_v6 = st.builds(
    TrafficSelector,
    st.just(TsType.TS_IPV6_ADDR_RANGE),
    u8,
    u16,
    u16,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
)
_other_ts = st.builds(
    UnknownTrafficSelector, st.sampled_from([0, 9, 10, 255]), st.binary(min_size=1, max_size=12)
)
_payload: st.SearchStrategy[Payload] = st.one_of(
    st.builds(SaPayload, st.lists(_proposal, min_size=1, max_size=3).map(tuple)),
    st.builds(KePayload, u16, _bytes),
    st.builds(IdPayload, st.sampled_from([PayloadType.IDi, PayloadType.IDr]), u8, _bytes),
    st.builds(CertPayload, u8, _bytes),
    st.builds(CertReqPayload, u8, _bytes),
    st.builds(AuthPayload, u8, _bytes),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=256)),
    st.builds(NotifyPayload, u8, u16, st.binary(max_size=8), _bytes),
    st.integers(0, 8).flatmap(
        lambda size: st.builds(
            DeletePayload,
            u8,
            st.just(size),
            st.lists(st.binary(min_size=size, max_size=size), max_size=4).map(tuple),
        )
    ),
    st.builds(VendorIdPayload, _bytes),
    st.builds(
        TsPayload,
        st.sampled_from([PayloadType.TSi, PayloadType.TSr]),
        st.lists(st.one_of(_v4, _v6, _other_ts), max_size=3).map(tuple),
    ),
    st.builds(
        CpPayload,
        u8,
        st.lists(st.builds(CfgAttribute, st.integers(0, 0x7FFF), _bytes), max_size=3).map(tuple),
    ),
    st.builds(EapPayload, _bytes),
    st.builds(UnknownPayload, st.sampled_from([0x31, 0x60, 0xC8]), st.just(False), _bytes),
)


@FUZZ
@given(st.lists(_payload, max_size=6))
def test_generated_payloads_round_trip(payloads: list[Payload]) -> None:
    first = payloads[0].payload_type if payloads else 0
    wire = encode_chain(payloads)
    decoded, _ = decode_chain(wire, first, inner=True)
    assert decoded == payloads
    assert encode_chain(decoded) == wire


@FUZZ
@given(st.lists(_payload, max_size=6), st.sampled_from([34, 35, 36, 37]), st.booleans())
def test_generated_messages_protected_round_trip(
    payloads: list[Payload], exchange: int, is_response: bool
) -> None:
    cipher = ToyCipher()
    message = IkeMessage(
        SPI_I, SPI_R, ExchangeType(exchange), not is_response, is_response, 3, tuple(payloads)
    )
    assert decode_message(message.encode()) == message
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    assert decode_protected(wire, cipher.unprotect) == message


def test_skf_is_known() -> None:
    assert PayloadType.SKF in KNOWN_PAYLOAD_TYPES
    assert SkfPayload.payload_type == PayloadType.SKF
