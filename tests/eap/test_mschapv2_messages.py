"""EAP-MSCHAPv2 messages (draft-kamath-pppext-eap-mschapv2-02 §2) inside EAP packets,
written out octet by octet: OpCode, MS-CHAPv2-ID, MS-Length (the EAP Length less 5),
then each OpCode's data; the peer's acknowledgements are the OpCode alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.eap.errors import EapError
from larval.eap.mschapv2 import (
    MschapAck,
    MschapChallenge,
    MschapFailureRequest,
    MschapOpCode,
    MschapResponse,
    MschapSuccessRequest,
    decode_mschapv2,
)
from larval.eap.packet import EapCode, EapPacket

CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")

VECTORS = [
    (
        "Challenge Request, Name 'larval'",
        # Code Id Length Type | OpCode ID MS-Length | Value-Size Challenge Name
        "01 05 0020 1a | 01 05 001b | 10 5b5d7c7d7b3f2f3e3c2c602132262628 6c617276616c",
        MschapChallenge(5, CHALLENGE, b"larval"),
    ),
    (
        "Response Response, Name 'User'",
        # ... | Value-Size 49: Peer-Challenge, Reserved (8), NT-Response, Flags | Name
        "02 05 003f 1a | 02 05 003a | 31 21402324255e262a28295f2b3a337c7e 0000000000000000"
        " 82309ecd8d708b5ea08faa3981cd83544233114a3d85d6df 00 55736572",
        MschapResponse(5, PEER_CHALLENGE, NT_RESPONSE, b"User"),
    ),
    (
        "Success Request",
        "01 06 0038 1a | 03 05 0033 | " + b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Hi".hex(),
        MschapSuccessRequest(5, b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Hi"),
    ),
    (
        "Failure Request",
        "01 06 0012 1a | 04 05 000d | " + b"E=691 R=0".hex(),
        MschapFailureRequest(5, b"E=691 R=0"),
    ),
    ("Success Response", "02 06 0006 1a | 03", MschapAck(MschapOpCode.SUCCESS)),
    ("Failure Response", "02 06 0006 1a | 04", MschapAck(MschapOpCode.FAILURE)),
]


def _wire(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


@pytest.mark.parametrize(("name", "wire", "message"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors(name: str, wire: str, message: object) -> None:
    packet = EapPacket.decode(_wire(wire))
    assert decode_mschapv2(packet.code, packet.data) == message
    assert EapPacket(packet.code, packet.identifier, packet.type, message.encode()) == packet  # type: ignore[attr-defined]


NOT_TAKEN = "not a message of EAP-MSCHAPv2 that larval takes"

MALFORMED = [
    (EapCode.REQUEST, "", "MSCHAPv2 Request: OpCode needs 1 bytes, 0 left"),
    (EapCode.REQUEST, "01 05", "MSCHAPv2 Challenge Request: MS-Length needs 2 bytes, 0 left"),
    (EapCode.REQUEST, "01 05 0016 10" + "00" * 16,
     "MSCHAPv2 Challenge Request: MS-Length 22 but 21 bytes from the OpCode on "
     "(the EAP Length less 5)"),
    (EapCode.REQUEST, "01 05 000a 08 0000000000",
     "MSCHAPv2 Challenge Request: Value-Size 8, must be 16"),
    (EapCode.REQUEST, "01 05 0006 10 00",
     "MSCHAPv2 Challenge Request: Challenge needs 16 bytes, 1 left"),
    (EapCode.RESPONSE, "02 05 0005 30",
     "MSCHAPv2 Response Response: Value-Size 48, must be 49"),
    (EapCode.RESPONSE, "02 05 0018 31" + "00" * 19,
     "MSCHAPv2 Response Response: Reserved needs 8 bytes, 3 left"),
    (EapCode.RESPONSE, "03 00",
     "MSCHAPv2 Success Response: 1 bytes after the OpCode, which ends it"),
    (EapCode.REQUEST, "07 05 0004", f"MSCHAPv2 Change_Password Request: {NOT_TAKEN}"),
    (EapCode.RESPONSE, "01 05 0004", f"MSCHAPv2 Challenge Response: {NOT_TAKEN}"),
    (EapCode.REQUEST, "09 05 0004", f"MSCHAPv2 Unknown_9 Request: {NOT_TAKEN}"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "wire", "error"), MALFORMED)
def test_malformed_messages_are_named(code: EapCode, wire: str, error: str) -> None:
    data = _wire(wire)
    with pytest.raises(EapError) as info:
        decode_mschapv2(code, data)
    assert str(info.value) == error


def test_success_request_s_value() -> None:
    ok = MschapSuccessRequest(1, b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Welcome home")
    assert ok.authenticator_response().hex().upper() == "407A5589115FD0D6209F510FE9C04566932CDA56"
    for text, error in [
        (b"M=no proof", "no S= of 40 hex digits"),
        (b"S=407A M=short", "no S= of 40 hex digits"),
        (b"S=" + b"Z" * 40, "S= is not hex"),
    ]:
        with pytest.raises(EapError, match=error):
            MschapSuccessRequest(1, text).authenticator_response()


def test_failure_request_is_described_with_printable_text_only() -> None:
    failure = MschapFailureRequest(1, b"E=691 R=0 C=00 V=3 M=bad \x1b[31mlogin")
    assert failure.describe() == "E=691 (authentication failure) R=0 M='bad ?[31mlogin'"
    assert MschapFailureRequest(1, b"junk").describe() == "E=? (none) R=? M=''"
    assert "unknown error" in MschapFailureRequest(1, b"E=12 R=1").describe()


@settings(max_examples=400)
@given(st.sampled_from([EapCode.REQUEST, EapCode.RESPONSE]), st.binary(max_size=80))
def test_decode_raises_only_eap_error(code: EapCode, data: bytes) -> None:
    try:
        message = decode_mschapv2(code, data)
    except EapError:
        return
    if not isinstance(message, MschapResponse):  # its Reserved bytes are not kept
        assert message.encode() == data


@given(
    st.integers(0, 255),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=24, max_size=24),
    st.binary(max_size=60),
)
def test_response_round_trip(ident: int, peer_challenge: bytes, nt: bytes, name: bytes) -> None:
    message = MschapResponse(ident, peer_challenge, nt, name)
    assert decode_mschapv2(EapCode.RESPONSE, message.encode()) == message
