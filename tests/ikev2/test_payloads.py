"""Payload classes: helpers, forms kept for round trips, reprs, encode-side checks."""

from __future__ import annotations

import ipaddress

import pytest

from larval.crypto.ike_transforms import TransformType
from larval.ikev2 import (
    Attribute,
    AuthMethod,
    AuthPayload,
    CertEncoding,
    CertReqPayload,
    EapPayload,
    ExchangeType,
    IkeDecodeError,
    IkeEncodeError,
    IkeMessage,
    IkeProtocolError,
    NoncePayload,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    SaPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TransformAttr,
    TsPayload,
    TsType,
    UnknownPayload,
    UnknownTrafficSelector,
    VendorIdPayload,
    decode_message,
    decode_payload,
    encode_chain,
)

from .vectors import AUTH_DATA, IKE_SA_INIT_REQUEST, SPI_I, SPI_R, h


def test_lenient_enums() -> None:
    assert PayloadType(99).name == "UNKNOWN_99"
    assert NotifyType(12345).is_error and not NotifyType.COOKIE.is_error
    assert AuthMethod["PSK"] is AuthMethod.SHARED_KEY_MIC
    assert ExchangeType(43) == 43


def test_sa_two_proposals() -> None:
    (sa,) = IKE_SA_INIT_REQUEST.message.get(SaPayload)
    first, second = sa.proposals
    assert [p.number for p in sa.proposals] == [1, 2]
    assert [t.transform_type for t in first.transforms] == [
        TransformType.ENCR,
        TransformType.PRF,
        TransformType.INTEG,
        TransformType.DH,
    ]
    assert first.transforms[0].key_length == 128
    assert second.transforms[0].key_length == 256
    assert first.transforms[1].key_length is None


def test_attribute_forms_round_trip() -> None:
    # RFC 7296 §3.3.5: TV (AF=1) and TLV (AF=0) are kept as read.
    transform = Transform(
        TransformType.ENCR,
        12,
        (
            Attribute(TransformAttr.KEY_LENGTH, 256),
            Attribute(TransformAttr(17), b"\x01\x02\x03"),
            Attribute(TransformAttr(18), b""),
        ),
    )
    sa = SaPayload((Proposal(1, ProtocolId.IKE, b"", (transform,)),))
    body = sa.encode_body()
    assert body == h(
        """
        00 00 001f  01 01 00 01        # §3.3.1 the only proposal, 31 bytes, 1 transform
        00 00 0017  01 00 000c         # §3.3.2 the only transform, 23 bytes, ENCR 12
        800e 0100                      # §3.3.5 TV KEY_LENGTH 256
        0011 0003 010203               # §3.3.5 TLV type 17, length 3
        0012 0000                      # §3.3.5 TLV type 18, empty
        """
    )
    assert SaPayload.decode_body(body) == sa
    # A TLV KEY_LENGTH is not the TV one the RFC defines: no key length from it.
    odd = Transform(TransformType.ENCR, 12, (Attribute(TransformAttr.KEY_LENGTH, b"\x01\x00"),))
    assert odd.key_length is None


def test_an_offer_without_spis_is_parsed_once_and_one_with_spis_every_time() -> None:
    """IKE_SA_INIT's SA payload (no SPIs) is the same bytes in every setup of a
    connection: the second decode gives the payload of the first. A CHILD_SA's (an ESP
    SPI in each proposal) is decoded afresh, and other bytes give their own payload."""
    gcm = Transform(TransformType.ENCR, 20, (Attribute(TransformAttr.KEY_LENGTH, 128),))
    cbc = Transform(TransformType.ENCR, 12, (Attribute(TransformAttr.KEY_LENGTH, 256),))
    ike = SaPayload((Proposal(1, ProtocolId.IKE, b"", (gcm,)),))
    body = ike.encode_body()
    first = SaPayload.decode_body(body)
    assert first == ike and SaPayload.decode_body(bytes(body)) is first
    other = SaPayload((Proposal(1, ProtocolId.IKE, b"", (cbc,)),))
    assert SaPayload.decode_body(other.encode_body()) == other
    esp = SaPayload((Proposal(1, ProtocolId.ESP, b"\x01\x02\x03\x04", (gcm,)),))
    esp_body = esp.encode_body()
    once, again = SaPayload.decode_body(esp_body), SaPayload.decode_body(esp_body)
    assert once == again == esp and once is not again
    # A body that does not decode is refused every time, not remembered.
    for _ in range(2):
        with pytest.raises(IkeDecodeError):
            SaPayload.decode_body(body[:-1])


def test_sa_encode_checks() -> None:
    with pytest.raises(IkeEncodeError):
        SaPayload(()).encode_body()
    with pytest.raises(IkeEncodeError, match="does not fit 16 bits"):
        SaPayload(
            (
                Proposal(
                    1,
                    ProtocolId.IKE,
                    b"",
                    (
                        Transform(
                            TransformType.ENCR, 12, (Attribute(TransformAttr.KEY_LENGTH, 0x10000),)
                        ),
                    ),
                ),
            )
        ).encode_body()


def test_traffic_selector_from_network() -> None:
    v4 = TrafficSelector.from_network("192.0.2.0/24")
    assert v4.ts_type == TsType.TS_IPV4_ADDR_RANGE
    assert (v4.start, v4.end) == (
        ipaddress.ip_address("192.0.2.0"),
        ipaddress.ip_address("192.0.2.255"),
    )
    assert (v4.ip_protocol, v4.start_port, v4.end_port) == (0, 0, 0xFFFF)
    assert v4.networks() == [ipaddress.ip_network("192.0.2.0/24")]

    v6 = TrafficSelector.from_network(ipaddress.ip_network("2001:db8::/64"), 17, 500, 500)
    assert v6.ts_type == TsType.TS_IPV6_ADDR_RANGE
    assert len(v6.start_address) == len(v6.end_address) == 16
    assert v6.networks() == [ipaddress.ip_network("2001:db8::/64")]


def test_traffic_selector_range() -> None:
    # IKEv2 ranges need not be CIDR blocks (RFC 7296 §3.13.1).
    ts = TrafficSelector.from_range(
        ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.6")
    )
    assert [str(n) for n in ts.networks()] == [
        "10.0.0.1/32",
        "10.0.0.2/31",
        "10.0.0.4/31",
        "10.0.0.6/32",
    ]
    backwards = TrafficSelector.from_range(
        ipaddress.ip_address("10.0.0.9"), ipaddress.ip_address("10.0.0.1")
    )
    assert backwards.networks() == []
    with pytest.raises(IkeEncodeError):
        TrafficSelector.from_range(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1"))


def test_traffic_selector_networks_remembered_not_shared() -> None:
    # The conversion is remembered per range: a caller that changes its list must not
    # change what the next selector of the same range gets.
    first = TrafficSelector.from_network("198.51.100.0/24")
    mine = first.networks()
    mine.append(ipaddress.ip_network("203.0.113.0/24"))
    again = TrafficSelector.from_network(ipaddress.ip_network("198.51.100.0/24"), 6, 80, 80)
    assert again.networks() == [ipaddress.ip_network("198.51.100.0/24")]
    assert (again.start_address, again.end_address) == (first.start_address, first.end_address)
    assert (again.ip_protocol, again.start_port, again.end_port) == (6, 80, 80)
    # Same addresses as a range: the same selector as from the network.
    assert TrafficSelector.from_range(first.start, first.end) == first


def test_traffic_selector_round_trip_and_unknown_type() -> None:
    payload = TsPayload(
        PayloadType.TSr,
        (
            TrafficSelector.from_network("198.51.100.0/24", 1, 0x0800, 0x08FF),
            TrafficSelector.from_network("2001:db8:1::/48"),
            # A selector type from a later RFC: kept byte for byte.
            UnknownTrafficSelector(TsType(10), b"\x00" + bytes.fromhex("0004deadbeef")),
        ),
    )
    body = payload.encode_body()
    assert TsPayload.decode_body(body, PayloadType.TSr) == payload
    assert body[-10:] == h("0a 00 000a 0004deadbeef")  # type 10, length 10


def test_ts_encode_checks() -> None:
    bad = TrafficSelector(TsType.TS_IPV4_ADDR_RANGE, 0, 0, 0xFFFF, bytes(16), bytes(16))
    with pytest.raises(IkeEncodeError):
        TsPayload(PayloadType.TSi, (bad,)).encode_body()


def test_auth_repr_hides_data() -> None:
    auth = AuthPayload(AuthMethod.SHARED_KEY_MIC, AUTH_DATA)
    text = repr(auth)
    assert "SHARED_KEY_MIC" in text and "32 bytes" in text
    assert AUTH_DATA.hex() not in text and repr(AUTH_DATA) not in text
    eap = EapPayload(b"secret-password")
    assert "secret" not in repr(eap)


def test_certreq_authorities() -> None:
    two = CertReqPayload(CertEncoding.X509_SIGNATURE, bytes(20) + bytes(range(20)))
    assert two.authorities == (bytes(20), bytes(range(20)))
    assert CertReqPayload(CertEncoding.X509_SIGNATURE, bytes(7)).authorities == ()


@pytest.mark.parametrize("size", [15, 257])
def test_nonce_encode_checks(size: int) -> None:
    with pytest.raises(IkeEncodeError):
        NoncePayload(bytes(size)).encode_body()


def test_unknown_payload_critical_encodes_with_bit() -> None:
    # A locally built unknown payload with C set goes out with C set; a receiver that
    # does not know type 200 must reject the message (RFC 7296 §2.5).
    message = IkeMessage(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        True,
        False,
        3,
        (UnknownPayload(PayloadType(200), True, b"\x01"), VendorIdPayload(b"v")),
    )
    wire = message.encode()
    assert wire[28:32] == h("2b 80 0005")
    with pytest.raises(IkeProtocolError) as info:
        decode_message(wire)
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == b"\xc8"


def test_sk_must_be_last_on_encode() -> None:
    with pytest.raises(IkeEncodeError, match="last"):
        encode_chain((SkPayload(b"x", PayloadType.IDi), VendorIdPayload(b"v")))


def test_message_helpers() -> None:
    message = IKE_SA_INIT_REQUEST.message
    assert message.first(NoncePayload) == NoncePayload(bytes(range(0x40, 0x60)))
    assert message.first(AuthPayload) is None
    assert message.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None
    assert message.notify(NotifyType.COOKIE) is None
    assert len(message.get(VendorIdPayload)) == 1


def test_decode_payload_registry() -> None:
    assert decode_payload(PayloadType.VENDOR_ID, b"x") == VendorIdPayload(b"x")
    assert decode_payload(7, b"x") == UnknownPayload(PayloadType(7), False, b"x")
    assert decode_payload(PayloadType.IDr, h("02 000000 6869")).payload_type == PayloadType.IDr
