"""EAP-Identity's server (`larval.eap.identity`) before a method, as a gateway with
``eap_id = %any`` runs it: the peer's name first, then the method under the next
Identifier, all against one peer."""

from __future__ import annotations

import pytest

from larval.eap.identity import IdentityServer
from larval.eap.md5 import Md5Peer, Md5Server
from larval.eap.mschapv2 import MschapV2Peer, MschapV2Server
from larval.eap.packet import EapCode, EapPacket, EapType
from tests.seeded import SeededRandom

SECRETS = {"carol": "Carol-Pass-1"}


def test_identity_then_mschapv2() -> None:
    peer = MschapV2Peer("carol", "Carol-Pass-1", SeededRandom("p"))
    ident = IdentityServer(SeededRandom("i"), identifier=200)
    # /* Request Identity --> <-- Response Identity "carol" */
    request = ident.start()
    assert request == EapPacket.request(200, EapType.IDENTITY).encode()
    answer = peer.receive(request)
    assert answer == EapPacket.response(200, EapType.IDENTITY, b"carol").encode()
    assert ident.receive(answer) is None
    assert ident.done and ident.failed is None and ident.identity == "carol"
    assert ident.msk is None
    # /* the method, Identifiers continuing: Challenge 201, Success 202, EAP Success 202 */
    method = MschapV2Server(SECRETS.get, SeededRandom("s"), identifier=ident.identifier + 1)
    out: bytes | None = method.start()
    identifiers = []
    while out is not None:
        identifiers.append(EapPacket.decode(out).identifier)
        back = peer.receive(out)
        if back is None:
            break
        out = method.receive(back)
    assert identifiers == [201, 202, 202]
    assert method.msk is not None and method.msk == peer.msk
    assert method.identity == ident.identity


def test_identity_then_md5() -> None:
    peer = Md5Peer("carol", "Carol-Pass-1")
    ident = IdentityServer(SeededRandom("i"), identifier=255)
    assert ident.receive(peer.receive(ident.start()) or b"") is None
    assert ident.identity == "carol"
    method = Md5Server(ident.identity, SECRETS.get, SeededRandom("s"), identifier=0)
    result = method.receive(peer.receive(method.start()) or b"")
    assert result == EapPacket.success(0).encode()
    assert peer.receive(result) is None
    assert method.done and peer.done and method.failed is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "EAP Identity Response: the identity is not UTF-8"),
        (b"", "EAP Identity Response: empty identity"),
        (b"c" * 254, "EAP Identity Response: identity of 254 bytes, longer than 253"),
    ],
)
def test_bad_identities(data: bytes, reason: str) -> None:
    ident = IdentityServer(SeededRandom("i"), identifier=7)
    ident.start()
    out = ident.receive(EapPacket.response(7, EapType.IDENTITY, data).encode())
    assert out == EapPacket.failure(7).encode()
    assert ident.failed == reason and ident.done and ident.identity is None


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (EapPacket.response(7, EapType.NAK, b"\x1a"),
         "NAK Response unexpected in state REQUEST_SENT"),
        (EapPacket.response(8, EapType.IDENTITY, b"carol"),
         "IDENTITY Response with Identifier 8, the Request's was 7"),
        (EapPacket.success(7), "EAP Success from the peer, which sends only Responses"),
    ],
)  # fmt: skip
def test_other_answers_fail(packet: EapPacket, reason: str) -> None:
    ident = IdentityServer(SeededRandom("i"), identifier=7)
    ident.start()
    out = ident.receive(packet.encode())
    assert out is not None and EapPacket.decode(out).code is EapCode.FAILURE
    assert ident.failed == reason


def test_a_response_before_start_fails() -> None:
    ident = IdentityServer(SeededRandom("i"), identifier=7)
    ident.receive(EapPacket.response(7, EapType.IDENTITY, b"carol").encode())
    assert ident.failed == "IDENTITY Response unexpected in state START"
