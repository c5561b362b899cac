"""The EAP packet codec (`larval.eap.packet`): packets written out octet by octet
(RFC 3748 §4), byte-exact round trips, the exact error for each malformed packet, and
Hypothesis: anything encodable round-trips, and decoding any bytes either gives a packet
that encodes back to them or raises `EapError` and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.eap.errors import EapError
from larval.eap.packet import EapCode, EapPacket, EapType, Md5Challenge, Nak

# (name, bytes, packet): Code, Identifier, Length (2), then Type and Type-Data.
VECTORS = [
    (
        "Identity Request",
        "01 07 0005 01",
        EapPacket.request(7, EapType.IDENTITY),
    ),
    (
        "Identity Response 'carol'",
        "02 07 000a 01 6361726f6c",
        EapPacket.response(7, EapType.IDENTITY, b"carol"),
    ),
    (
        "Nak proposing MSCHAPv2",
        "02 08 0006 03 1a",
        EapPacket.response(8, EapType.NAK, b"\x1a"),
    ),
    ("Success", "03 09 0004", EapPacket.success(9)),
    ("Failure", "04 ff 0004", EapPacket.failure(255)),
    (
        "TLS Start, kept opaque",
        "01 02 0006 0d 20",
        EapPacket.request(2, EapType.TLS, b"\x20"),
    ),
    (
        "Expanded (Vendor-Id 0x9f, Vendor-Type 1), kept opaque",
        "01 03 000d fe 00009f 00000001 aa",
        EapPacket.request(3, EapType.EXPANDED, bytes.fromhex("00009f00000001aa")),
    ),
    (
        "unknown type 99 round-trips",
        "02 04 0007 63 0102",
        EapPacket.response(4, EapType(99), b"\x01\x02"),
    ),
]


@pytest.mark.parametrize(("name", "wire", "packet"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors_decode_and_encode_byte_exact(name: str, wire: str, packet: EapPacket) -> None:
    data = bytes.fromhex(wire.replace(" ", ""))
    assert EapPacket.decode(data) == packet
    assert packet.encode() == data


def test_unknown_type_is_named_as_such() -> None:
    assert EapPacket.decode(bytes.fromhex("0204000563")).type.name == "UNKNOWN_99"


NO_SUCH_CODE = "EAP packet: Code {} is none of Request (1), Response (2), Success (3), Failure (4)"

# (bytes, the exact error)
MALFORMED = [
    ("", "EAP packet: Code needs 1 bytes, 0 left"),
    ("01", "EAP packet: Identifier needs 1 bytes, 0 left"),
    ("0101", "EAP packet: Length needs 2 bytes, 0 left"),
    ("05010004", NO_SUCH_CODE.format(5)),
    ("00010004", NO_SUCH_CODE.format(0)),
    ("0101000601", "EAP packet: Length 6 but the packet is 5 bytes"),
    ("010100050100", "EAP packet: Length 5 but the packet is 6 bytes"),
    ("0301000500", "EAP Success: Length 5, must be 4 (RFC 3748 §4.2)"),
    ("04010003", "EAP packet: Length 3 but the packet is 4 bytes"),
    ("01010004", "EAP Request: Length 4 leaves no room for its Type (RFC 3748 §4.1)"),
    ("02010004", "EAP Response: Length 4 leaves no room for its Type (RFC 3748 §4.1)"),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "error"), MALFORMED)
def test_malformed_packets_are_named(wire: str, error: str) -> None:
    with pytest.raises(EapError) as info:
        EapPacket.decode(bytes.fromhex(wire))
    assert str(info.value) == error


def test_packets_that_cannot_exist_are_refused_when_built() -> None:
    with pytest.raises(EapError, match="Identifier 256 is not one octet"):
        EapPacket.success(256)
    with pytest.raises(EapError, match=r"EAP Request: no Type"):
        EapPacket(EapCode.REQUEST, 1)
    with pytest.raises(EapError, match=r"EAP Success: carries no Type or data"):
        EapPacket(EapCode.SUCCESS, 1, EapType.IDENTITY)


def test_a_packet_too_long_for_its_length_field_is_refused() -> None:
    with pytest.raises(EapError, match="too long for its length field"):
        EapPacket.request(1, EapType.TLS, bytes(65531)).encode()
    assert len(EapPacket.request(1, EapType.TLS, bytes(65530)).encode()) == 65535


def test_nak_codec() -> None:
    assert Nak.decode(b"\x1a\x04") == Nak((26, 4))
    assert Nak((26, 4)).encode() == b"\x1a\x04"
    assert Nak((26, 4)).describe() == "MSCHAPV2, MD5_CHALLENGE"
    assert Nak((0,)).describe() == "no alternative"
    with pytest.raises(EapError, match="EAP Nak: no Type-Data"):
        Nak.decode(b"")


def test_md5_challenge_codec() -> None:
    data = bytes.fromhex("04 01020304 6e616d65".replace(" ", ""))
    assert Md5Challenge.decode(data) == Md5Challenge(b"\x01\x02\x03\x04", b"name")
    assert Md5Challenge(b"\x01\x02\x03\x04", b"name").encode() == data
    with pytest.raises(EapError, match=r"EAP MD5-Challenge: Value needs 16 bytes, 2 left"):
        Md5Challenge.decode(b"\x10ab")
    with pytest.raises(EapError, match="Value-Size 0"):
        Md5Challenge.decode(b"\x00")
    with pytest.raises(EapError, match="Value-Size needs 1 bytes"):
        Md5Challenge.decode(b"")
    with pytest.raises(EapError, match="Value of 0 bytes"):
        Md5Challenge(b"").encode()


packets = st.one_of(
    st.builds(
        EapPacket,
        st.sampled_from([EapCode.REQUEST, EapCode.RESPONSE]),
        st.integers(0, 255),
        st.integers(0, 255).map(EapType),
        st.binary(max_size=300),
    ),
    st.builds(EapPacket, st.sampled_from([EapCode.SUCCESS, EapCode.FAILURE]), st.integers(0, 255)),
)


@given(packets)
def test_round_trip(packet: EapPacket) -> None:
    assert EapPacket.decode(packet.encode()) == packet


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_decode_raises_only_eap_error_and_what_it_decodes_re_encodes(data: bytes) -> None:
    try:
        packet = EapPacket.decode(data)
    except EapError:
        return
    assert packet.encode() == data


@given(packets, st.data())
def test_damaged_length_or_truncation_is_an_eap_error(
    packet: EapPacket, data: st.DataObject
) -> None:
    wire = packet.encode()
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(EapError):
        EapPacket.decode(wire[:cut])
