"""Property tests: decoding raises nothing but IkeV1ProtocolError (IkeV1DecodeError is one),
and whatever decodes re-encodes to an equal value."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.ikev1 import (
    KNOWN_PAYLOAD_TYPES,
    Attribute,
    CertPayload,
    CrPayload,
    DeletePayload,
    ExchangeType,
    HashPayload,
    IdPayload,
    IkeV1EncodeError,
    IkeV1Message,
    IkeV1ProtocolError,
    KePayload,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    PayloadType,
    Proposal,
    SaPayload,
    SigPayload,
    Transform,
    UnknownPayload,
    VendorIdPayload,
    check_payloads,
    decode_chain,
    decode_encrypted,
    decode_message,
    encode_chain,
    encode_encrypted,
)
from larval.ikev1.modecfg import AttributePayload, CfgType, ModeCfgAttr, ModeCfgAttribute

from .toycipher import BLOCK, ToyCipher
from .vectors import CHAIN_VECTORS, COOKIE_I, COOKIE_R, MESSAGE_VECTORS

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
TYPES = [*sorted(int(t) for t in KNOWN_PAYLOAD_TYPES), 0, 2, 3, 15, 50, 132, 200, 255]


def _rules(message: IkeV1Message) -> None:
    for number in (1, 2, 3, 4, 5, 6):
        for encrypted in (False, True):
            with contextlib.suppress(IkeV1ProtocolError, ValueError):
                check_payloads(message, number, encrypted=encrypted)


def _check(data: bytes) -> IkeV1Message | None:
    """Decode; if that works, re-encoding must give a message that decodes the same."""
    try:
        message = decode_message(data)
    except IkeV1ProtocolError:
        return None
    assert decode_message(message.encode()) == message
    _rules(message)
    return message


def _identity(data: bytes) -> bytes:
    return data


def _with_length(data: bytes) -> bytes:
    if len(data) < 28:
        return data
    return data[:24] + struct.pack(">I", len(data)) + data[28:]


# -- (a) arbitrary bytes -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _check(data)
    with contextlib.suppress(IkeV1ProtocolError):
        decode_encrypted(data, _identity, BLOCK)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x07]))
def test_random_bytes_behind_a_valid_header(tail: bytes, flags: int) -> None:
    first = tail[0] if tail else PayloadType.SA
    head = COOKIE_I + COOKIE_R + bytes([first, 0x10, 0x02, flags]) + bytes(8)
    data = _with_length(head + tail[1:])
    _check(data)
    with contextlib.suppress(IkeV1ProtocolError):
        decode_encrypted(data, _identity, BLOCK)


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
        payloads, _, _ = decode_chain(bytes(wire), first)
    except IkeV1ProtocolError:
        return
    again, _, _ = decode_chain(encode_chain(payloads), first if payloads else 0)
    assert again == payloads


@FUZZ
@given(st.sampled_from(CHAIN_VECTORS), st.binary(max_size=200), st.sampled_from(TYPES))
def test_random_plaintext_behind_an_encrypted_header(
    vector: object, plaintext: bytes, first: int
) -> None:
    message = IkeV1Message(COOKIE_I, COOKIE_R, vector.exchange, 1, vector.payloads)  # type: ignore[attr-defined]
    wire = bytearray(encode_encrypted(message, ToyCipher().encrypt, BLOCK))
    wire[16] = first
    try:
        opened = decode_encrypted(bytes(wire), lambda c: plaintext, BLOCK)
    except IkeV1ProtocolError:
        return
    _rules(opened)


# -- (c) plausible messages: a valid chain of random payload bodies -------------------------


@st.composite
def _plausible(draw: st.DrawFn) -> bytes:
    payloads = draw(st.lists(st.tuples(st.sampled_from(TYPES), st.binary(max_size=60)), max_size=6))
    chain = b""
    for i, (_, body) in enumerate(payloads):
        next_type = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        chain += struct.pack(">BBH", next_type, 0, 4 + len(body)) + body
    first = payloads[0][0] if payloads else 0
    exchange = draw(st.sampled_from([1, 2, 4, 5, 32, 99]))
    header = COOKIE_I + COOKIE_R + bytes([first, 0x10, exchange, 0]) + struct.pack(">I", 1)
    return header + struct.pack(">I", 28 + len(chain)) + chain


@FUZZ
@given(_plausible())
def test_plausible_messages(data: bytes) -> None:
    _check(data)


# -- (d) generated payloads round-trip ------------------------------------------------------

_bytes = st.binary(max_size=24)
_attr = st.builds(Attribute, st.integers(0, 0x7FFF), st.one_of(u16, _bytes))
_transform = st.builds(Transform, u8, u8, st.lists(_attr, max_size=3).map(tuple))
_proposal = st.builds(
    Proposal,
    u8,
    st.integers(0, 5),
    st.binary(max_size=8),
    st.lists(_transform, max_size=3).map(tuple),
)
_payload: st.SearchStrategy[Payload] = st.one_of(
    st.builds(SaPayload, st.lists(_proposal, min_size=1, max_size=3).map(tuple), u32, u32),
    st.builds(KePayload, _bytes),
    st.builds(IdPayload, u8, _bytes, u8, u16),
    st.builds(CertPayload, u8, _bytes),
    st.builds(CrPayload, u8, _bytes),
    st.builds(HashPayload, _bytes),
    st.builds(SigPayload, _bytes),
    st.builds(NoncePayload, st.binary(min_size=8, max_size=256)),
    st.builds(NotifyPayload, u16, u8, st.binary(max_size=16), _bytes, u32),
    st.integers(0, 16).flatmap(
        lambda size: st.builds(
            DeletePayload,
            u8,
            st.just(size),
            st.lists(st.binary(min_size=size, max_size=size), max_size=4).map(tuple),
            u32,
        )
    ),
    st.builds(VendorIdPayload, _bytes),
    st.builds(NatDPayload, _bytes, st.sampled_from([PayloadType.NAT_D, PayloadType.NAT_D_DRAFT])),
    st.builds(
        NatOaPayload,
        u8,
        st.binary(max_size=16),
        st.sampled_from([PayloadType.NAT_OA, PayloadType.NAT_OA_DRAFT]),
    ),
    st.builds(
        AttributePayload,
        u8.map(CfgType),
        st.lists(
            st.builds(
                ModeCfgAttribute,
                st.integers(0, 0x7FFF).map(ModeCfgAttr),
                st.one_of(u16, st.binary(max_size=20)),
            ),
            max_size=4,
        ).map(tuple),
        u16,
    ),
    st.builds(UnknownPayload, st.sampled_from([15, 50, 132, 200]), _bytes),
)


@FUZZ
@given(st.lists(_payload, max_size=6))
def test_generated_payloads_round_trip(payloads: list[Payload]) -> None:
    first = payloads[0].payload_type if payloads else 0
    wire = encode_chain(payloads)
    decoded, _, end = decode_chain(wire, first)
    assert decoded == payloads
    assert end == len(wire)
    assert encode_chain(decoded) == wire


@FUZZ
@given(
    st.lists(_payload, max_size=6),
    st.sampled_from([2, 4, 5, 32]),
    u32,
    st.booleans(),
    st.sampled_from([1, 8, 16]),
)
def test_generated_messages_round_trip(
    payloads: list[Payload], exchange: int, message_id: int, commit: bool, block: int
) -> None:
    message = IkeV1Message(
        COOKIE_I, COOKIE_R, ExchangeType(exchange), message_id, tuple(payloads), commit=commit
    )
    assert decode_message(message.encode()) == message
    if not payloads:
        with pytest.raises(IkeV1EncodeError):
            encode_encrypted(message, _identity, block)
        return
    wire = encode_encrypted(message, _identity, block)
    assert (len(wire) - 28) % block == 0
    assert decode_encrypted(wire, _identity, block) == message
