"""EAP Identifiers are one octet (RFC 3748 §4): the gateway's Request after EAP-Identity
follows an Identity Request of Identifier 255 with 0, not with 256 (which no peer's
Response can match, and which failed one EAP client in 256)."""

from __future__ import annotations

from larval.eap import EapCode, EapPacket, EapType
from larval.ike.auth_config import EapAuth
from larval.ikev2.eap_conversation import EapServerConversation


def test_the_request_after_an_identity_request_of_identifier_255_is_0() -> None:
    auth = EapAuth("eap-mschapv2", "%any", {"carol": "carol-Password-1"})
    server = EapServerConversation(auth, "192.0.2.1", random=lambda n: b"\xff" * n)
    first = EapPacket.decode(server.start())
    assert (first.code, first.type, first.identifier) == (EapCode.REQUEST, EapType.IDENTITY, 255)
    response = EapPacket.response(255, EapType.IDENTITY, b"carol").encode()
    challenge = EapPacket.decode(server.receive(response))
    assert (challenge.code, challenge.type) == (EapCode.REQUEST, EapType.MSCHAPV2)
    assert challenge.identifier == 0
    assert server.failed is None
