"""Payload details: lenient numbers, unknown and draft payloads, the helpers."""

from __future__ import annotations

import ipaddress

import pytest

from larval.ikev1 import (
    VID_FRAGMENTATION,
    VID_FRAGMENTATION_CAPABLE,
    Attribute,
    ExchangeType,
    IdPayload,
    IdType,
    IkeAttr,
    IkeV1EncodeError,
    IkeV1Message,
    IsakmpTransformId,
    NatDPayload,
    NatOaPayload,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    SaPayload,
    Transform,
    UnknownPayload,
    decode_chain,
    decode_message,
    decode_payload,
    encode_chain,
    is_fragmentation_vid,
)

from .vectors import COOKIE_I, COOKIE_R, h


def test_unknown_numbers_become_pseudo_members() -> None:
    assert NotifyType(40001).name == "UNKNOWN_40001"
    assert int(ExchangeType(99)) == 99
    assert int(NotifyType.R_U_THERE) == 36136 and not NotifyType.R_U_THERE.is_error
    assert NotifyType.PAYLOAD_MALFORMED.is_error


def test_payload_short_names() -> None:
    assert PayloadType(11).name == "NOTIFICATION" and PayloadType["N"] == 11
    assert PayloadType(12).name == "DELETE" and PayloadType["D"] == 12
    assert PayloadType(13).name == "VENDOR_ID" and PayloadType["VID"] == 13
    assert PayloadType(130).is_private and not PayloadType.NAT_D.is_private


def test_fragmentation_vid() -> None:
    assert is_fragmentation_vid(VID_FRAGMENTATION)
    assert is_fragmentation_vid(VID_FRAGMENTATION_CAPABLE)
    assert VID_FRAGMENTATION_CAPABLE.hex().endswith("80000000")
    assert not is_fragmentation_vid(bytes(16))


@pytest.mark.parametrize("ptype", [15, 99, 132, 200])
def test_unknown_payload_round_trips(ptype: int) -> None:
    chain = h(
        """
        0d 00 0008 cafebabe  # an unknown payload, Next Payload VID
        00 00 0008 01020304  # RFC 2408 §3.16 VID, last
        """
    )
    payloads, _, _ = decode_chain(chain, ptype)
    assert payloads[0] == UnknownPayload(PayloadType(ptype), bytes.fromhex("cafebabe"))
    assert encode_chain(payloads) == chain


@pytest.mark.parametrize(
    ("ptype", "rfc"), [(PayloadType.NAT_D_DRAFT, False), (PayloadType.NAT_D, True)]
)
def test_nat_d_under_either_number(ptype: PayloadType, rfc: bool) -> None:
    payload = decode_payload(ptype, bytes(20))
    assert isinstance(payload, NatDPayload)
    assert payload.payload_type == ptype
    assert encode_chain([payload])[4:] == bytes(20)


def test_nat_oa_draft_number_kept() -> None:
    body = h("01 000000 c0000201")  # RFC 3947 §5.1 ID_IPV4_ADDR, RESERVED, 192.0.2.1
    payload = decode_payload(PayloadType.NAT_OA_DRAFT, body)
    assert payload == NatOaPayload.for_address(
        ipaddress.ip_address("192.0.2.1"), PayloadType.NAT_OA_DRAFT
    )
    message = IkeV1Message(COOKIE_I, COOKIE_R, ExchangeType.QUICK_MODE, 1, (payload,))
    wire = message.encode()
    assert wire[16] == 131
    assert decode_message(wire) == message


def test_id_helpers() -> None:
    v6 = ipaddress.ip_network("2001:db8::/48")
    payload = IdPayload.for_network(v6, protocol=17, port=500)
    assert payload.id_type == IdType.ID_IPV6_ADDR_SUBNET
    assert payload.network == v6
    assert IdPayload.decode_body(payload.encode_body()) == payload
    host = IdPayload.for_address(ipaddress.ip_address("192.0.2.2"))
    assert host.network == ipaddress.ip_network("192.0.2.2/32")
    assert IdPayload(IdType.ID_FQDN, b"vpn.example").network is None
    assert IdPayload(IdType.ID_IPV4_ADDR_SUBNET, bytes(7)).network is None
    assert IdPayload(IdType.ID_IPV4_ADDR_SUBNET, h("c0000200 ff00ff00")).network is None


def test_attribute_of_picks_the_form() -> None:
    assert Attribute.of(IkeAttr.LIFE_DURATION, 28800) == Attribute(IkeAttr.LIFE_DURATION, 28800)
    long = Attribute.of(IkeAttr.LIFE_DURATION, 86400)
    assert long.value == bytes.fromhex("015180")
    assert long.number == 86400
    with pytest.raises(IkeV1EncodeError):
        Attribute.of(IkeAttr.LIFE_DURATION, -1)


@pytest.mark.parametrize(
    "attr", [Attribute(0x8000, 1), Attribute(1, 0x10000), Attribute(1, bytes(0x10000))]
)
def test_attribute_out_of_range(attr: Attribute) -> None:
    transform = Transform(1, IsakmpTransformId.KEY_IKE, (attr,))
    with pytest.raises(IkeV1EncodeError):
        SaPayload((Proposal(1, ProtocolId.ISAKMP, b"", (transform,)),)).encode_body()


def test_proposal_groups() -> None:
    ah = Proposal(1, ProtocolId.AH, bytes(4))
    esp = Proposal(1, ProtocolId.ESP, bytes(4))
    esp_only = Proposal(2, ProtocolId.ESP, bytes(4))
    sa = SaPayload((ah, esp, esp_only))
    assert sa.proposal_groups() == ((ah, esp), (esp_only,))


def test_encode_errors() -> None:
    with pytest.raises(IkeV1EncodeError):
        SaPayload(()).encode_body()
    with pytest.raises(IkeV1EncodeError):
        IkeV1Message(b"short", COOKIE_R, ExchangeType.INFORMATIONAL).encode()
    with pytest.raises(IkeV1EncodeError):
        encode_chain([IdPayload(IdType.ID_FQDN, b"x", protocol=256)])
