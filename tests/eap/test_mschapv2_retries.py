"""EAP-MSCHAPv2 retries (RFC 2759 §6): a server made with ``retries`` answers a wrong
password with ``Failure "E=691 R=1 C=<new challenge>"`` and takes a new Response to that
challenge, under the next MS-CHAPv2-ID; a peer that acknowledges the Failure has given
up; when the retries are spent the Failure is R=0 and the reason counts the tries. The
peer that retries here is a person typing the password again (a new `MschapV2Peer`):
larval's own peer has one password and never retries.

    Request Challenge -->  <-- Response (wrong)
    Request Failure E=691 R=1 C=<new> -->  <-- Response (to C=, MS-CHAPv2-ID + 1)
    Request Success S= -->  <-- Response Success;  EAP Success -->
"""

from __future__ import annotations

import pytest

from larval.eap.mschapv2 import (
    MschapChallenge,
    MschapFailureRequest,
    MschapResponse,
    MschapV2Peer,
    MschapV2Server,
    decode_mschapv2,
)
from larval.eap.packet import EapCode, EapPacket, EapType
from tests.eap.conversation import Conversation
from tests.seeded import SeededRandom

PASSWORD = "S3cret-Pass!"
WRONG = "Wr0ng-Pass"


def server(retries: int) -> MschapV2Server:
    return MschapV2Server({"carol": PASSWORD}.get, SeededRandom("server"), retries=retries)


def _failure(data: bytes) -> tuple[EapPacket, MschapFailureRequest, dict[str, str]]:
    packet = EapPacket.decode(data)
    failure = decode_mschapv2(packet.code, packet.data)
    assert isinstance(failure, MschapFailureRequest)
    fields = dict(f.split("=", 1) for f in failure.message.decode().split(" ")[:4])
    return packet, failure, fields


def _retyped(failure_data: bytes, password: str, name: str = "carol") -> tuple[MschapV2Peer, bytes]:
    """A person typing `password` again: a fresh peer answers the challenge the Failure's
    C= carries, under the next MS-CHAPv2-ID, as the Response to the Failure Request."""
    packet, failure, fields = _failure(failure_data)
    challenge = MschapChallenge((failure.mschapv2_id + 1) & 0xFF, bytes.fromhex(fields["C"]),
                                b"larval")  # fmt: skip
    request = EapPacket.request(packet.identifier, EapType.MSCHAPV2, challenge.encode())
    again = MschapV2Peer(name, password, SeededRandom("peer again"))
    response = again.receive(request.encode())
    assert response is not None
    return again, response


def test_a_wrong_password_is_offered_a_retry_and_the_right_one_gets_in() -> None:
    srv = server(retries=2)
    first = MschapV2Peer("carol", WRONG, SeededRandom("peer"))
    challenge = srv.start()
    # /* Request Challenge -->  <-- Response (wrong) */
    response = first.receive(challenge)
    assert response is not None
    failure_data = srv.receive(response)
    assert failure_data is not None
    # /* Request Failure E=691 R=1 C=<new challenge> --> */
    packet, _, fields = _failure(failure_data)
    assert packet.code is EapCode.REQUEST
    assert (fields["E"], fields["R"], fields["V"]) == ("691", "1", "3")
    old = decode_mschapv2(EapCode.REQUEST, EapPacket.decode(challenge).data)
    assert isinstance(old, MschapChallenge)
    assert len(fields["C"]) == 32 and bytes.fromhex(fields["C"]) != old.challenge
    assert not srv.done and srv.failed is None
    # /* <-- Response (the password typed again, to C=) */
    again, retried = _retyped(failure_data, PASSWORD)
    success = srv.receive(retried)
    assert success is not None
    # /* Request Success S= -->  <-- Response Success;  EAP Success --> */
    ack = again.receive(success)
    assert ack is not None
    assert srv.receive(ack) == EapPacket.success(srv.identifier).encode()
    assert again.receive(EapPacket.success(srv.identifier).encode()) is None
    assert srv.done and srv.failed is None and srv.identity == "carol"
    assert srv.msk is not None and srv.msk == again.msk


def test_a_peer_that_acknowledges_the_retry_has_given_up() -> None:
    # larval's peer (and a person who cancels): the Failure Response, then EAP Failure.
    talk = Conversation(server(retries=2), MschapV2Peer("carol", WRONG, SeededRandom("p"))).run()
    _, _, fields = _failure(talk.packets[2][1].encode())
    assert fields["R"] == "1"
    assert talk.last("server").code is EapCode.FAILURE
    assert talk.server.done and talk.server.msk is None
    assert talk.server.failed == (
        "EAP-MSCHAPv2: wrong password for user 'carol'; the peer did not retry"
    )
    assert talk.peer.failed is not None and "R=1" in talk.peer.failed


def test_the_last_retry_spent_is_refused_with_r0_and_the_tries_counted() -> None:
    srv = server(retries=1)
    first = MschapV2Peer("carol", WRONG, SeededRandom("peer"))
    response = first.receive(srv.start())
    assert response is not None
    failure_data = srv.receive(response)
    assert failure_data is not None and _failure(failure_data)[2]["R"] == "1"
    _, retried = _retyped(failure_data, "Still-Wr0ng")
    refusal = srv.receive(retried)
    assert refusal is not None and _failure(refusal)[2]["R"] == "0"
    assert srv.failed == "EAP-MSCHAPv2: wrong password for user 'carol' (2 tries)"
    assert PASSWORD not in repr(srv) and "Still-Wr0ng" not in str(srv.failed)


def test_an_unknown_user_is_offered_the_same_retry() -> None:
    srv = server(retries=1)
    mallory = MschapV2Peer("mallory", WRONG, SeededRandom("peer"))
    response = mallory.receive(srv.start())
    assert response is not None
    failure_data = srv.receive(response)
    assert failure_data is not None and _failure(failure_data)[2]["R"] == "1"


@pytest.mark.parametrize("shift", [0, 2])
def test_a_retry_under_another_ms_chapv2_id_is_refused(shift: int) -> None:
    srv = server(retries=1)
    response = MschapV2Peer("carol", WRONG, SeededRandom("peer")).receive(srv.start())
    assert response is not None
    failure_data = srv.receive(response)
    assert failure_data is not None
    _, retried = _retyped(failure_data, PASSWORD)
    packet = EapPacket.decode(retried)
    answer = decode_mschapv2(packet.code, packet.data)
    assert isinstance(answer, MschapResponse)
    wrong_id = MschapResponse((answer.mschapv2_id - 1 + shift) & 0xFF, answer.peer_challenge,
                              answer.nt_response, answer.name)  # fmt: skip
    forged = EapPacket.response(packet.identifier, EapType.MSCHAPV2, wrong_id.encode())
    assert srv.receive(forged.encode()) == EapPacket.failure(srv.identifier).encode()
    assert srv.failed is not None and srv.failed.startswith("MSCHAPv2 Response: MS-CHAPv2-ID")


def test_without_retries_the_failure_is_r0_as_before() -> None:
    talk = Conversation(server(retries=0), MschapV2Peer("carol", WRONG, SeededRandom("p"))).run()
    assert _failure(talk.packets[2][1].encode())[2]["R"] == "0"
    assert talk.server.failed == "EAP-MSCHAPv2: wrong password for user 'carol'"
