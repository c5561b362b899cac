"""Payloads decoded once and given again for the same bytes (identities and traffic
selectors), and the one-unpack paths of Notify and KE: each gives what the field-by-field
reading gives, and a malformed body still fails with the same error."""

from __future__ import annotations

import pytest

from larval.ike.identity import IdType
from larval.ikev2 import (
    IdPayload,
    IkeDecodeError,
    KePayload,
    NotifyPayload,
    NotifyType,
    PayloadType,
    ProtocolId,
    TrafficSelector,
    TsPayload,
    decode_payload,
    encode_chain,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


TS_BODY = h("01 000000  07 00 0010 0000ffff c6336400 c63364ff")


def test_same_ts_bytes_give_the_same_payload() -> None:
    first = decode_payload(PayloadType.TSi, TS_BODY)
    again = decode_payload(PayloadType.TSi, bytes(TS_BODY))
    assert again is first
    assert first == TsPayload(PayloadType.TSi, (TrafficSelector.from_network("198.51.100.0/24"),))


def test_kept_payloads_are_told_apart_by_type() -> None:
    tsi = decode_payload(PayloadType.TSi, TS_BODY)
    tsr = decode_payload(PayloadType.TSr, TS_BODY)
    assert isinstance(tsr, TsPayload)
    assert (tsi.payload_type, tsr.payload_type) == (PayloadType.TSi, PayloadType.TSr)
    idi = decode_payload(PayloadType.IDi, h("01 000000 c0000201"))
    idr = decode_payload(PayloadType.IDr, h("01 000000 c0000201"))
    assert isinstance(idi, IdPayload) and isinstance(idr, IdPayload)
    assert (idi.payload_type, idr.payload_type) == (PayloadType.IDi, PayloadType.IDr)
    assert idi.id_type is IdType.ID_IPV4_ADDR


def test_other_bytes_are_decoded_anew() -> None:
    other = h("01 000000  07 00 0010 0000ffff cb007100 cb0071ff")
    assert decode_payload(PayloadType.TSi, other) != decode_payload(PayloadType.TSi, TS_BODY)


def test_a_mutable_body_is_decoded_not_kept() -> None:
    payload = decode_payload(PayloadType.TSr, bytearray(TS_BODY))
    assert isinstance(payload, TsPayload)
    assert payload.selectors == (TrafficSelector.from_network("198.51.100.0/24"),)


def test_a_malformed_body_fails_every_time() -> None:
    body = h("01 000000  07 00 0014 0000ffff c0000200 c00002ff 00000000")
    for _ in range(2):
        with pytest.raises(IkeDecodeError, match="expected 16"):
            decode_payload(PayloadType.TSi, body)


@pytest.mark.parametrize(
    "payload",
    [
        NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_SOURCE_IP, b"", bytes(20)),
        NotifyPayload(ProtocolId.ESP, NotifyType.REKEY_SA, h("c0ffee01")),
        NotifyPayload(ProtocolId.IKE, NotifyType(40000), h("0102030405060708"), b"x"),
        NotifyPayload(ProtocolId.NONE, NotifyType.INITIAL_CONTACT),
        KePayload(31, bytes(32)),
    ],
    ids=repr,
)
def test_notify_and_ke_round_trip(payload: NotifyPayload | KePayload) -> None:
    chain = encode_chain([payload])
    assert decode_payload(payload.payload_type, chain[4:]) == payload


def test_notify_fields_by_name() -> None:
    body = h("03 04 4009 c0ffee01 dead")
    payload = decode_payload(PayloadType.NOTIFY, body)
    assert payload == NotifyPayload(ProtocolId.ESP, NotifyType.REKEY_SA, h("c0ffee01"), h("dead"))
    assert type(payload.notify_type) is NotifyType and type(payload.protocol_id) is ProtocolId


@pytest.mark.parametrize(
    ("ptype", "body", "match"),
    [
        (PayloadType.NOTIFY, h("03 04 40"), "Notify Message Type needs 2"),
        (PayloadType.NOTIFY, h("03 04 4009 c0ff"), "SPI needs 4"),
        (PayloadType.KE, h("001f 00"), "RESERVED needs 2"),
    ],
)
def test_short_bodies_name_the_field(ptype: PayloadType, body: bytes, match: str) -> None:
    with pytest.raises(IkeDecodeError, match=match):
        decode_payload(ptype, body)


def test_proposals_of_the_same_transforms_keep_their_own_spi_and_number() -> None:
    from larval.crypto.ike_transforms import Transform as Suite1
    from larval.crypto.ike_transforms import TransformType
    from larval.ikev2 import SaPayload
    from larval.ikev2.negotiate import to_wire

    suite = (Suite1(TransformType.ENCR, 20, 128), Suite1(TransformType.ESN, 0))
    for number, spi in ((1, h("c0ffee01")), (3, h("c0ffee02"))):
        proposal = to_wire(number, int(ProtocolId.ESP), spi, suite)
        body = SaPayload((proposal,)).encode_body()
        decoded = SaPayload.decode_body(body)
        assert decoded == SaPayload((proposal,))
        assert (decoded.proposals[0].number, decoded.proposals[0].spi) == (number, spi)


def test_a_transform_count_that_disagrees_fails_every_time() -> None:
    from larval.ikev2 import SaPayload

    good = h("00 00 0014 01 03 04 01 c0ffee01  00 00 0008 01 00 0014")
    assert len(SaPayload.decode_body(good).proposals[0].transforms) == 1
    # The same transform bytes, Num Transforms 2: not taken from what was kept.
    bad = h("00 00 0014 01 03 04 02 c0ffee01  00 00 0008 01 00 0014")
    for _ in range(2):
        with pytest.raises(IkeDecodeError, match="Num Transforms says 2"):
            SaPayload.decode_body(bad)


def test_a_long_body_is_decoded_each_time_not_kept() -> None:
    # 32 IPv4 selectors: 4 + 32 x 16 bytes, past what is kept (a peer cannot make the
    # memory held grow with the size of what it sends).
    selectors = tuple(TrafficSelector.from_network(f"10.{i}.0.0/16") for i in range(32))
    body = encode_chain([TsPayload(PayloadType.TSi, selectors)])[4:]
    assert len(body) > 512
    first = decode_payload(PayloadType.TSi, body)
    again = decode_payload(PayloadType.TSi, body)
    assert first == again == TsPayload(PayloadType.TSi, selectors)
    assert again is not first


def test_an_spi_less_offer_is_kept_only_when_short() -> None:
    from larval.crypto.ike_transforms import Transform as Suite1
    from larval.crypto.ike_transforms import TransformType
    from larval.ikev2 import SaPayload
    from larval.ikev2.negotiate import to_wire

    suite = (Suite1(TransformType.ENCR, 20, 128), Suite1(TransformType.PRF, 5))
    short = SaPayload((to_wire(1, int(ProtocolId.IKE), b"", suite),)).encode_body()
    assert SaPayload.decode_body(short) is SaPayload.decode_body(bytes(short))
    # Many proposals without SPIs, past 4096 bytes: read each time, so that what an odd
    # peer sends cannot make the memory held grow with its size.
    many = tuple(to_wire(n, int(ProtocolId.IKE), b"", suite) for n in range(1, 201))
    long = SaPayload(many).encode_body()
    assert len(long) > 4096
    first = SaPayload.decode_body(long)
    again = SaPayload.decode_body(long)
    assert first == again == SaPayload(many)
    assert first is not again
