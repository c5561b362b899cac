"""The ATTRIBUTE payload (draft-dukes-ike-mode-cfg §3.2) and the Transaction exchange's
row: known bytes, round trips, truncated input with its error, secrets kept out of reprs."""

from __future__ import annotations

import ipaddress

import pytest

from larval.ikev1 import (
    ExchangeType,
    HashPayload,
    IkeV1DecodeError,
    IkeV1Message,
    IkeV1ProtocolError,
    NotifyType,
    PayloadType,
    check_payloads,
    decode_chain,
    encode_chain,
)
from larval.ikev1.modecfg import (
    AttributePayload,
    CfgType,
    ModeCfgAttr,
    ModeCfgAttribute,
    attribute_names,
    read_unity_split_include,
    unity_split_include,
)
from larval.ikev1.render import payload_names

# CFG_REQUEST(XAUTH_USER_NAME, XAUTH_USER_PASSWORD) as a gateway opens XAuth, field by field.
XAUTH_REQUEST = bytes.fromhex(
    "00 00 0010"  # generic header: last payload, length 16
    "01 00 0000"  # Type CFG_REQUEST, RESERVED, Identifier 0
    "4089 0000"  # XAUTH_USER_NAME (16521), TLV, empty: asks for it
    "408a 0000"  # XAUTH_USER_PASSWORD (16522), TLV, empty
)
# CFG_SET(XAUTH_STATUS = OK): the TV form, AF set (0x8000 | 16527).
XAUTH_STATUS_OK = bytes.fromhex("00 00 000c 03 00 1234 c08f 0001")


def test_an_xauth_request_decodes_field_by_field_and_round_trips() -> None:
    payloads, _, end = decode_chain(XAUTH_REQUEST, PayloadType.ATTRIBUTE)
    assert end == len(XAUTH_REQUEST)
    assert payloads == [
        AttributePayload(
            CfgType.CFG_REQUEST,
            (
                ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_NAME),
                ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_PASSWORD),
            ),
        )
    ]
    assert encode_chain(payloads) == XAUTH_REQUEST


def test_xauth_status_is_a_tv_attribute_and_the_identifier_round_trips() -> None:
    payloads, _, _ = decode_chain(XAUTH_STATUS_OK, PayloadType.ATTRIBUTE)
    status = payloads[0]
    assert isinstance(status, AttributePayload)
    assert status.cfg_type == CfgType.CFG_SET and status.identifier == 0x1234
    attr = status.get(ModeCfgAttr.XAUTH_STATUS)
    assert attr is not None and attr.value == 1 and attr.number == 1
    assert encode_chain(payloads) == XAUTH_STATUS_OK


def test_unknown_attributes_and_types_round_trip() -> None:
    payload = AttributePayload(
        CfgType(9), (ModeCfgAttribute(ModeCfgAttr(30000), b"\x01\x02"),), identifier=7
    )
    wire = encode_chain([payload])
    decoded, _, _ = decode_chain(wire, PayloadType.ATTRIBUTE)
    assert decoded == [payload]
    assert decoded[0].cfg_type.name == "UNKNOWN_9"  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [5, 7, 10, 13])
def test_a_truncated_attribute_payload_is_malformed(cut: int) -> None:
    body = XAUTH_REQUEST[4:cut]
    wire = bytes([0, 0]) + (4 + len(body)).to_bytes(2, "big") + body
    # The Type/Identifier word (5, 7) or an attribute's header (10, 13) runs out.
    with pytest.raises(IkeV1DecodeError) as info:
        decode_chain(wire, PayloadType.ATTRIBUTE)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED


def test_a_password_is_never_in_a_repr_or_a_log_name() -> None:
    payload = AttributePayload(
        CfgType.CFG_REPLY,
        (
            ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_NAME, b"carol"),
            ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_PASSWORD, b"hunter2-secret"),
        ),
    )
    assert "hunter2" not in repr(payload)
    assert "carol" in repr(payload)
    assert attribute_names(payload) == "CPRP(X_USER X_PWD)"
    assert payload_names([HashPayload(b"\x00" * 20), payload]) == "HASH CPRP(X_USER X_PWD)"


def test_unity_split_include_is_address_mask_and_six_zero_octets() -> None:
    nets = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("10.0.0.0/8")]
    value = unity_split_include(nets)
    assert value == bytes.fromhex("cb007100 ffffff00 000000000000 0a000000 ff000000 000000000000")
    assert read_unity_split_include(value) == nets
    with pytest.raises(IkeV1DecodeError, match="not 14 each"):
        read_unity_split_include(value[:-1])


def _transaction(*payloads: object) -> IkeV1Message:
    return IkeV1Message(bytes(8), bytes(8), ExchangeType.TRANSACTION, 5, tuple(payloads))  # type: ignore[arg-type]


def test_the_transaction_row_wants_hash_then_one_attribute_payload_encrypted() -> None:
    attr = AttributePayload(CfgType.CFG_ACK)
    check_payloads(_transaction(HashPayload(b"h" * 20), attr), 1, encrypted=True)
    check_payloads(_transaction(HashPayload(b"h" * 20), attr), 2, encrypted=True)
    with pytest.raises(IkeV1ProtocolError) as info:
        check_payloads(_transaction(HashPayload(b"h" * 20), attr), 1, encrypted=False)
    assert info.value.notify == NotifyType.INVALID_FLAGS
    with pytest.raises(IkeV1ProtocolError, match="HASH must immediately follow"):
        check_payloads(_transaction(attr, HashPayload(b"h" * 20)), 1, encrypted=True)
    with pytest.raises(IkeV1ProtocolError) as info:
        check_payloads(_transaction(HashPayload(b"h" * 20)), 1, encrypted=True)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED
