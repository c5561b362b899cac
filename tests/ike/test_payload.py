"""The payload chain and the payload bodies both versions share (`larval.ike.payload`),
seen through each version's codec: the same walk, each version's own errors.

Chains are written out by hand, octet by octet, with the generic payload header of
RFC 7296 §3.2 / RFC 2408 §3.2: Next Payload, C bit or RESERVED, Payload Length.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from larval.ike.codec import IkeCodec
from larval.ike.errors import IkeEncodeError, IkeNotifyError
from larval.ike.payload import GENERIC_HEADER_SIZE, OpaquePayload, push_chain, walk_chain
from larval.ikev1 import constants as v1
from larval.ikev1 import message as v1_message
from larval.ikev1 import payloads as v1_payloads
from larval.ikev1.codec import CODEC as V1_CODEC
from larval.ikev1.errors import IkeV1DecodeError, IkeV1EncodeError
from larval.ikev2 import constants as v2
from larval.ikev2 import message as v2_message
from larval.ikev2 import payloads as v2_payloads
from larval.ikev2.codec import CODEC as V2_CODEC
from larval.ikev2.errors import IkeDecodeError, IkeProtocolError
from larval.ikev2.errors import IkeEncodeError as IkeV2EncodeError
from larval.wire import Buffer


@dataclass(frozen=True)
class Version:
    name: str
    codec: IkeCodec
    types: type[v1.PayloadType] | type[v2.PayloadType]
    decode_error: type[IkeNotifyError]
    encode_error: type[IkeEncodeError]
    malformed: int  # the notify a malformed payload is answered with
    vendor_id: int  # the Vendor ID payload's number, a payload of opaque data in both
    nonce: int


V2 = Version(
    "IKEv2", V2_CODEC, v2.PayloadType, IkeDecodeError, IkeV2EncodeError,
    v2.NotifyType.INVALID_SYNTAX, v2.PayloadType.VENDOR_ID, v2.PayloadType.NONCE,
)  # fmt: skip
V1 = Version(
    "IKEv1", V1_CODEC, v1.PayloadType, IkeV1DecodeError, IkeV1EncodeError,
    v1.NotifyType.PAYLOAD_MALFORMED, v1.PayloadType.VENDOR_ID, v1.PayloadType.NONCE,
)  # fmt: skip
BOTH = pytest.mark.parametrize("version", [V2, V1], ids=lambda v: v.name)


def _vid(next_payload: int, body: bytes, length: int | None = None) -> bytes:
    """A generic header and ``body``; ``length`` overrides the true Payload Length."""
    size = GENERIC_HEADER_SIZE + len(body) if length is None else length
    return bytes([next_payload, 0]) + size.to_bytes(2, "big") + body


@BOTH
def test_a_chain_is_walked_to_its_none(version: Version) -> None:
    # V "ab" -> V "cde" -> end
    chain = _vid(version.vendor_id, b"ab") + _vid(0, b"cde")
    raw = list(walk_chain(chain, version.vendor_id, 0, version.codec, version.types))
    assert [(r.payload_type, r.next_type, r.start, r.end) for r in raw] == [
        (version.vendor_id, version.vendor_id, 0, 6),
        (version.vendor_id, 0, 6, 13),
    ]
    assert [r.body for r in raw] == [b"ab", b"cde"]
    assert raw[1].wire == chain[6:]


@BOTH
def test_a_payload_type_not_known_is_named_for_its_number(version: Version) -> None:
    # V "ab" -> payload type 200 (no version has one) "x" -> end: the walk names it.
    chain = _vid(200, b"ab") + _vid(0, b"x")
    raw = list(walk_chain(chain, version.vendor_id, 0, version.codec, version.types))
    assert raw[0].payload_type is version.types(version.vendor_id)
    assert raw[1].payload_type == 200 and raw[1].payload_type.name == "UNKNOWN_200"
    assert isinstance(raw[1].payload_type, version.types)


@BOTH
def test_a_chain_stops_at_none_and_leaves_what_follows_to_the_caller(version: Version) -> None:
    chain = _vid(0, b"ab") + b"\xff" * 5  # padding, or garbage: the walk does not read it
    raw = list(walk_chain(chain, version.vendor_id, 0, version.codec, version.types))
    assert len(raw) == 1 and raw[0].end == 6


@BOTH
def test_a_generic_header_cut_short_is_the_versions_decode_error(version: Version) -> None:
    # V "ab" says a Nonce follows, but only 3 of its header's 4 octets are there.
    chain = _vid(version.nonce, b"ab") + b"\x00\x00\x00"
    with pytest.raises(version.decode_error) as info:
        list(walk_chain(chain, version.vendor_id, 0, version.codec, version.types))
    assert info.value.notify == version.malformed
    assert info.value.message == "NONCE payload: generic header cut short at offset 6"


@BOTH
@pytest.mark.parametrize("length", [3, 0, 7], ids=["below-header", "zero", "past-end"])
def test_a_payload_length_that_lies_is_the_versions_decode_error(
    version: Version, length: int
) -> None:
    chain = _vid(0, b"ab", length=length)  # 6 octets on the wire
    with pytest.raises(version.decode_error) as info:
        list(walk_chain(chain, version.vendor_id, 0, version.codec, version.types))
    assert info.value.notify == version.malformed
    assert info.value.message == (
        f"VENDOR_ID payload at offset 0: Payload Length {length}, 6 bytes left"
    )


@BOTH
def test_the_walk_starts_where_it_is_told(version: Version) -> None:
    data = b"HDR" + _vid(0, b"x")
    (raw,) = walk_chain(data, version.vendor_id, 3, version.codec, version.types)
    assert (raw.start, raw.end, raw.body) == (3, 8, b"x")


@BOTH
def test_push_chain_chains_types_and_patches_lengths(version: Version) -> None:
    vid = v2_payloads.VendorIdPayload if version is V2 else v1_payloads.VendorIdPayload
    nonce = v2_payloads.NoncePayload if version is V2 else v1_payloads.NoncePayload
    buf = Buffer()
    push_chain(buf, version.codec, [vid(b"ab"), nonce(bytes(16))], after=0)
    assert buf.data == _vid(version.nonce, b"ab") + _vid(0, bytes(16))
    # and it reads back as written
    raw = list(walk_chain(buf.data, version.vendor_id, 0, version.codec, version.types))
    assert [r.body for r in raw] == [b"ab", bytes(16)]


@BOTH
def test_push_chain_out_of_range_is_the_versions_encode_error(version: Version) -> None:
    @dataclass(frozen=True)
    class Odd(OpaquePayload):
        payload_type = 256  # not an octet

    with pytest.raises(version.encode_error, match="payload field out of range"):
        push_chain(Buffer(), version.codec, [OpaquePayload(b""), Odd(b"")])  # type: ignore[list-item]


@BOTH
def test_a_payload_too_long_for_its_length_field(version: Version) -> None:
    with pytest.raises(version.encode_error, match="too long for its length field"):
        push_chain(Buffer(), version.codec, [v2_payloads.VendorIdPayload(bytes(0x10000))])


# -- unknown payloads: IKEv2 honours the critical bit, ISAKMP has none -------------------


def _v2_with_unknown(flags: int) -> bytes:
    """HDR(Next Payload 200) | payload 200 with ``flags``, body "z"."""
    message = v2_message.IkeMessage(bytes(8), bytes(8), v2.ExchangeType(37), True, False, 0)
    chain = bytes([0, flags, 0, 5]) + b"z"
    return message.header(200, 28 + len(chain)).encode() + chain


def test_ikev2_unknown_critical_payload_is_refused_with_its_type() -> None:
    data = _v2_with_unknown(0x80)  # RFC 7296 §2.5: the C bit set
    with pytest.raises(IkeProtocolError) as info:
        v2_message.decode_message(data)
    assert info.value.notify == v2.NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == bytes([200])


def test_ikev2_unknown_payload_without_the_bit_round_trips() -> None:
    data = _v2_with_unknown(0)
    message = v2_message.decode_message(data)
    (unknown,) = message.payloads
    assert isinstance(unknown, v2_payloads.UnknownPayload)
    assert (unknown.payload_type, unknown.critical, unknown.body) == (200, False, b"z")
    assert message.encode() == data


def test_ikev1_unknown_payload_round_trips_and_its_reserved_octet_is_not_a_critical_bit() -> None:
    # RFC 2408 §3.2: the second octet is RESERVED; an unknown type decodes whatever it holds.
    message = v1_message.IkeV1Message(bytes(8), bytes(8), v1.ExchangeType.INFORMATIONAL)
    chain = bytes([0, 0x80, 0, 5]) + b"z"
    data = message.header(28 + len(chain), encrypted=False).encode() + chain
    data = data[:16] + bytes([200]) + data[17:]  # Next Payload of the header: 200
    decoded = v1_message.decode_message(data)
    (unknown,) = decoded.payloads
    assert isinstance(unknown, v1_payloads.UnknownPayload)
    assert (unknown.payload_type, unknown.body) == (200, b"z")
    # re-encoded with RESERVED zero, as ISAKMP writes it
    assert decoded.encode() == data[:29] + b"\x00" + data[30:]


# -- the bodies of the same shape --------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "low", "error", "notify"),
    [
        (v2_payloads.NoncePayload, 16, IkeDecodeError, v2.NotifyType.INVALID_SYNTAX),
        (v1_payloads.NoncePayload, 8, IkeV1DecodeError, v1.NotifyType.PAYLOAD_MALFORMED),
    ],
    ids=["IKEv2", "IKEv1"],
)
def test_a_nonce_is_bounded_by_its_version(
    cls: type[v2_payloads.NoncePayload], low: int, error: type[IkeNotifyError], notify: int
) -> None:
    assert cls.decode_body(bytes(low)).data == bytes(low)
    assert cls.decode_body(bytes(256)).encode_body() == bytes(256)
    for size in (low - 1, 257):
        with pytest.raises(error) as info:
            cls.decode_body(bytes(size))
        assert info.value.notify == notify
        assert info.value.message == f"Nonce payload: {size} bytes of nonce, not {low}..256"
    with pytest.raises(IkeEncodeError, match=f"nonce of {low - 1} bytes"):
        cls(bytes(low - 1)).encode_body()


def test_ikev1_allows_a_nonce_ikev2_refuses() -> None:
    assert v1_payloads.NoncePayload.decode_body(bytes(8)).data == bytes(8)
    with pytest.raises(IkeDecodeError):
        v2_payloads.NoncePayload.decode_body(bytes(8))


@pytest.mark.parametrize(
    "payload",
    [v1_payloads.HashPayload(b"\x01secret-mic"), v2_payloads.EapPayload(b"\x02password")],
    ids=["IKEv1 HASH", "IKEv2 EAP"],
)
def test_secret_payloads_show_their_length_never_their_data(payload: OpaquePayload) -> None:
    text = repr(payload)
    assert text == f"{type(payload).__name__}(data=<{len(payload.data)} bytes>)"
    assert "secret" not in text and "password" not in text


def test_opaque_payloads_keep_their_class_and_compare_by_it() -> None:
    v1_vid = v1_payloads.VendorIdPayload.decode_body(b"vid")
    v2_vid = v2_payloads.VendorIdPayload.decode_body(b"vid")
    assert type(v1_vid) is v1_payloads.VendorIdPayload and v1_vid.encode_body() == b"vid"
    assert v1_vid != v2_vid  # the same bytes, two protocols' payloads
    assert repr(v2_vid) == "VendorIdPayload(data=b'vid')"


def test_cert_payloads_read_their_versions_encoding() -> None:
    body = bytes([4]) + b"DER"
    v2_cert = v2_payloads.CertPayload.decode_body(body)
    v1_cert = v1_payloads.CertPayload.decode_body(body)
    assert isinstance(v2_cert.encoding, v2.CertEncoding) and v2_cert.data == b"DER"
    assert isinstance(v1_cert.encoding, v1.CertEncoding) and v1_cert.data == b"DER"
    assert v2_cert.encode_body() == v1_cert.encode_body() == body
    with pytest.raises(IkeDecodeError, match="CERTREQ payload: Cert Encoding needs 1 bytes"):
        v2_payloads.CertReqPayload.decode_body(b"")


def test_notify_bodies_differ_by_the_isakmp_doi_alone() -> None:
    spi, data = b"\x00\x00\x10\x00", b"\x01\x02"
    ikev2 = v2_payloads.NotifyPayload(v2.ProtocolId.ESP, v2.NotifyType(24), spi, data)
    ikev1 = v1_payloads.NotifyPayload(v1.NotifyType(24), v1.ProtocolId.ESP, spi, data)
    body = ikev1.encode_body()
    assert body[:4] == v1.DOI_IPSEC.to_bytes(4, "big")
    assert body[4:] == ikev2.encode_body() == bytes([3, 4, 0, 24]) + spi + data
    assert v1_payloads.NotifyPayload.decode_body(body) == ikev1
    assert v2_payloads.NotifyPayload.decode_body(body[4:]) == ikev2


def test_delete_bodies_differ_by_the_isakmp_doi_alone() -> None:
    spis = (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")
    ikev2 = v2_payloads.DeletePayload(v2.ProtocolId.ESP, 4, spis)
    ikev1 = v1_payloads.DeletePayload(v1.ProtocolId.ESP, 4, spis)
    body = ikev1.encode_body()
    assert body[4:] == ikev2.encode_body() == bytes([3, 4, 0, 2]) + b"".join(spis)
    assert v1_payloads.DeletePayload.decode_body(body) == ikev1
    # one SPI short: the count and the bytes disagree, in each version's words
    with pytest.raises(IkeDecodeError, match="2 SPIs of 4 bytes need 8 bytes, 4 present"):
        v2_payloads.DeletePayload.decode_body(ikev2.encode_body()[:-4])
    with pytest.raises(IkeV1DecodeError, match="2 SPIs of 4 bytes need 8 bytes, 4 present"):
        v1_payloads.DeletePayload.decode_body(body[:-4])
    with pytest.raises(IkeV1EncodeError, match="every SPI must be 4 bytes"):
        v1_payloads.DeletePayload(v1.ProtocolId.ESP, 4, (b"\x01",)).encode_body()


# -- the message surface -----------------------------------------------------------------


def test_both_messages_answer_get_first_notify_and_iterate_alike() -> None:
    n2 = v2_payloads.NotifyPayload(v2.ProtocolId.NONE, v2.NotifyType.COOKIE, data=b"c")
    v2_msg = v2_message.IkeMessage(
        bytes(8), bytes(8), v2.ExchangeType.IKE_SA_INIT, True, False, 0,
        (v2_payloads.VendorIdPayload(b"a"), n2, v2_payloads.VendorIdPayload(b"b")),
    )  # fmt: skip
    n1 = v1_payloads.NotifyPayload(v1.NotifyType.INITIAL_CONTACT)
    v1_msg = v1_message.IkeV1Message(
        bytes(8), bytes(8), v1.ExchangeType.INFORMATIONAL, 0,
        (v1_payloads.VendorIdPayload(b"a"), n1, v1_payloads.VendorIdPayload(b"b")),
    )  # fmt: skip
    for message, vid, notify, kind in (
        (v2_msg, v2_payloads.VendorIdPayload, n2, v2.NotifyType.COOKIE),
        (v1_msg, v1_payloads.VendorIdPayload, n1, v1.NotifyType.INITIAL_CONTACT),
    ):
        assert [p.data for p in message.get(vid)] == [b"a", b"b"]
        first = message.first(vid)
        assert first is not None and first.data == b"a"
        assert message.notify(kind) is notify
        assert message.notify(kind + 1) is None
        assert list(message) == list(message.payloads)
    assert v2_msg.first(v2_payloads.NoncePayload) is None
    # a notification of the other version is not this version's Notify
    assert v1_msg.notify(v2.NotifyType.COOKIE) is None
