"""Known-answer vectors (vectors.py): decode to the expected value, encode to the same bytes."""

from __future__ import annotations

import pytest

from larval.ikev2 import (
    IkeDecodeError,
    decode_chain,
    decode_header,
    decode_message,
    encode_chain,
)

from .vectors import CHAIN_VECTORS, MESSAGE_VECTORS, ChainVector, MessageVector


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_message_decodes(vector: MessageVector) -> None:
    assert decode_message(vector.wire) == vector.message


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_message_encodes(vector: MessageVector) -> None:
    assert vector.message.encode() == vector.wire


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_header_fields(vector: MessageVector) -> None:
    header = decode_header(vector.wire)
    message = vector.message
    assert (header.spi_i, header.spi_r) == (message.spi_i, message.spi_r)
    assert header.major == 2 and header.minor == 0
    assert header.exchange_type == message.exchange_type
    assert header.flags == message.flags
    assert header.message_id == message.message_id
    assert header.length == len(vector.wire)
    assert header.next_payload == message.payloads[0].payload_type


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_message_truncated(vector: MessageVector) -> None:
    for n in range(len(vector.wire)):
        with pytest.raises(IkeDecodeError):
            decode_message(vector.wire[:n])


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_decodes(vector: ChainVector) -> None:
    payloads, _ = decode_chain(vector.wire, vector.first, inner=True)
    assert tuple(payloads) == vector.payloads


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_encodes(vector: ChainVector) -> None:
    assert encode_chain(vector.payloads) == vector.wire


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_truncated(vector: ChainVector) -> None:
    # Every cut lands inside a payload or leaves a Next Payload pointing past the end.
    for n in range(len(vector.wire)):
        with pytest.raises(IkeDecodeError):
            decode_chain(vector.wire[:n], vector.first, inner=True)


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_trailing_bytes(vector: ChainVector) -> None:
    with pytest.raises(IkeDecodeError, match="after the last payload"):
        decode_chain(vector.wire + b"\x00", vector.first, inner=True)


def test_header_names_known_and_unknown_numbers() -> None:
    # Next Payload 40 (NONCE) and exchange 34 (IKE_SA_INIT) are members; 200 and 240 are
    # numbers no RFC this codec knows gives a meaning: named UNKNOWN_<n>, not refused.
    body = bytes(8) + bytes(8)
    known = decode_header(body + bytes([40, 0x20, 34, 0]) + bytes(4) + (28).to_bytes(4, "big"))
    assert (known.next_payload.name, known.exchange_type.name) == ("NONCE", "IKE_SA_INIT")
    odd = decode_header(body + bytes([200, 0x20, 240, 0]) + bytes(4) + (28).to_bytes(4, "big"))
    assert (odd.next_payload, odd.next_payload.name) == (200, "UNKNOWN_200")
    assert (odd.exchange_type, odd.exchange_type.name) == (240, "UNKNOWN_240")
