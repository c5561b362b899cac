"""Known-answer vectors (vectors.py): decode to the expected value, encode to the same bytes."""

from __future__ import annotations

import ipaddress

import pytest

from larval.ikev1 import (
    ExchangeType,
    IdPayload,
    IkeV1DecodeError,
    SaPayload,
    decode_chain,
    decode_header,
    decode_message,
    encode_chain,
)

from .vectors import (
    CHAIN_VECTORS,
    MAIN_MODE_1,
    MESSAGE_VECTORS,
    QUICK_MODE_1,
    ChainVector,
    MessageVector,
)


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
    assert (header.cookie_i, header.cookie_r) == (message.cookie_i, message.cookie_r)
    assert (header.major, header.minor) == (1, 0)
    assert header.exchange_type == message.exchange_type
    assert header.flags == 0 and not header.encrypted
    assert header.message_id == message.message_id
    assert header.length == len(vector.wire)
    assert header.next_payload == message.payloads[0].payload_type


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_wire_payloads_are_the_received_bytes(vector: MessageVector) -> None:
    message = decode_message(vector.wire)
    assert b"".join(message.wire_payloads) == vector.wire[28:]
    assert len(message.wire_payloads) == len(message.payloads)
    for raw, payload in zip(message.wire_payloads, message.payloads, strict=True):
        assert raw[4:] == payload.encode_body()


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_message_truncated(vector: MessageVector) -> None:
    for n in range(len(vector.wire)):
        with pytest.raises(IkeV1DecodeError):
            decode_message(vector.wire[:n])


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_decodes(vector: ChainVector) -> None:
    payloads, wire, end = decode_chain(vector.wire, vector.first)
    assert tuple(payloads) == vector.payloads
    assert end == len(vector.wire)
    assert b"".join(wire) == vector.wire


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_encodes(vector: ChainVector) -> None:
    assert encode_chain(vector.payloads) == vector.wire


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_truncated(vector: ChainVector) -> None:
    for n in range(len(vector.wire)):
        with pytest.raises(IkeV1DecodeError):
            decode_chain(vector.wire[:n], vector.first)


def test_main_mode_1_transforms_read_by_name() -> None:
    sa = MAIN_MODE_1.message.payloads[0]
    assert isinstance(sa, SaPayload)
    decoded = decode_message(MAIN_MODE_1.wire).payloads[0]
    assert isinstance(decoded, SaPayload)
    first = decoded.proposals[0].transforms[0]
    # Attribute types and values decode to the Phase 1 enums (RFC 2409 Appendix A).
    assert [type(a.attr_type).__name__ for a in first.attributes] == ["IkeAttr"] * 7
    assert first.attribute(14) == 128
    life = next(a for a in first.attributes if a.attr_type == 12)
    assert life.number == 86400
    assert first.attribute(99) is None


def test_quick_mode_1_reads_in_ipsec_terms() -> None:
    payloads, _, _ = decode_chain(QUICK_MODE_1.wire, QUICK_MODE_1.first)
    sa = payloads[1]
    assert isinstance(sa, SaPayload)
    gcm, cbc = sa.proposals[0].transforms
    assert gcm.transform_id.name == "ESP_AES_GCM_16"  # type: ignore[attr-defined]
    assert cbc.attribute(5) == 5  # AUTH_ALGORITHM HMAC-SHA2-256
    assert type(cbc.attributes[0].attr_type).__name__ == "IpsecAttr"
    idci, idcr = payloads[4], payloads[5]
    assert isinstance(idci, IdPayload) and isinstance(idcr, IdPayload)
    assert idci.network == ipaddress.ip_network("203.0.113.0/24")
    assert idcr == IdPayload.for_network(ipaddress.ip_network("198.51.100.0/24"))


def test_exchange_type_aliases() -> None:
    assert ExchangeType["MAIN_MODE"] is ExchangeType["IDENTITY_PROTECTION"]
    assert ExchangeType(2).name == "IDENTITY_PROTECTION"
