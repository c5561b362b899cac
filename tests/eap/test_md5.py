"""EAP-MD5's server and peer (`larval.eap.md5`) talking in memory:

    /* Request MD5-Challenge -->  <-- Response MD5-Challenge  EAP Success/Failure --> */

The hash is RFC 1994's, MD5(Identifier | secret | challenge); no MSK comes out."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.eap.identity import IdentityServer
from larval.eap.md5 import Md5Peer, Md5Server, md5_response
from larval.eap.packet import EapCode, EapPacket, EapType, Md5Challenge
from tests.eap.conversation import Conversation, scripted
from tests.seeded import SeededRandom

PASSWORD = "md5-S3cret"


def lookup(name: str) -> str | None:
    return {"carol": PASSWORD}.get(name)


def server(identity: str = "carol") -> Md5Server:
    return Md5Server(identity, lookup, SeededRandom("md5"), identifier=9)


def test_response_is_md5_of_identifier_secret_challenge() -> None:
    challenge = bytes(range(16))
    assert md5_response(9, b"pw", challenge) == hashlib.md5(b"\x09pw" + challenge).digest()


def test_known_answer_on_the_wire() -> None:
    challenge = bytes(range(16))
    srv = Md5Server("carol", lookup, scripted(challenge), identifier=9)
    talk = Conversation(srv, Md5Peer("carol", PASSWORD)).run()
    # /* Request MD5-Challenge: Value-Size 16, the challenge, no Name --> */
    assert talk.packets[0] == (
        "server",
        EapPacket.request(9, EapType.MD5_CHALLENGE, b"\x10" + challenge),
    )
    # /* <-- Response MD5-Challenge: the hash */
    value = hashlib.md5(b"\x09" + PASSWORD.encode() + challenge).digest()
    assert talk.packets[1] == (
        "peer",
        EapPacket.response(9, EapType.MD5_CHALLENGE, Md5Challenge(value).encode()),
    )
    # /* EAP Success --> */
    assert talk.packets[2] == ("server", EapPacket.success(9))
    assert srv.done and srv.failed is None
    assert talk.peer.done and talk.peer.failed is None


def test_right_password_gives_no_msk() -> None:
    talk = Conversation(server(), Md5Peer("carol", PASSWORD)).run()
    assert talk.server.done and talk.peer.done
    assert talk.server.failed is None and talk.peer.failed is None
    assert talk.server.msk is None and talk.peer.msk is None


def test_wrong_password() -> None:
    talk = Conversation(server(), Md5Peer("carol", "Wr0ng-Pass")).run()
    assert talk.last("server") == EapPacket.failure(9)
    assert talk.server.failed == "EAP-MD5: wrong password for user 'carol'"
    assert talk.peer.failed == "EAP-MD5: the server refused user 'carol' (EAP Failure)"
    assert talk.server.done and talk.peer.done


def test_unknown_user() -> None:
    talk = Conversation(server("mallory"), Md5Peer("mallory", "x")).run()
    assert talk.last("server") == EapPacket.failure(9)
    assert talk.server.failed == "EAP-MD5: no secret for user 'mallory'"


def test_peer_answers_identity_first() -> None:
    peer = Md5Peer("carol", PASSWORD)
    out = peer.receive(EapPacket.request(1, EapType.IDENTITY).encode())
    assert out == EapPacket.response(1, EapType.IDENTITY, b"carol").encode()
    nak = peer.receive(EapPacket.request(2, EapType.MSCHAPV2, b"\x01").encode())
    assert nak == EapPacket.response(2, EapType.NAK, b"\x04").encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02\x09\x00\x05\x04", "EAP MD5-Challenge: Value-Size needs 1 bytes, 0 left"),
        (b"\x02\x08\x00\x06\x04\x00",
         "MD5_CHALLENGE Response with Identifier 8, the Request's was 9"),
        (b"\x02\x09\x00\x06\x03\x1a", "the peer declined MD5_CHALLENGE; it would take MSCHAPV2"),
        (b"\x02\x09\x00\x06\x04", "EAP packet: Length 6 but the packet is 5 bytes"),
        (b"\x03\x09\x00\x04", "EAP Success from the peer, which sends only Responses"),
    ],
)  # fmt: skip
def test_server_refuses_a_bad_response(data: bytes, reason: str) -> None:
    srv = server()
    srv.start()
    assert srv.receive(data) == EapPacket.failure(9).encode()
    assert srv.failed == reason and srv.done


def test_peer_refuses_success_before_it_answered() -> None:
    peer = Md5Peer("carol", PASSWORD)
    assert peer.receive(EapPacket.success(1).encode()) is None
    assert peer.failed == "EAP Success unexpected in state IDLE"


def test_no_secret_in_repr_or_reasons() -> None:
    for password in (PASSWORD, "Wr0ng-Pass"):
        talk = Conversation(server(), Md5Peer("carol", password)).run()
        for text in (repr(talk.server), repr(talk.peer), talk.server.failed, talk.peer.failed):
            assert password not in str(text)
    assert repr(Md5Peer("carol", PASSWORD)) == "Md5Peer(state=IDLE, identity='carol', running)"


def test_codes_of_every_packet_sent_are_valid() -> None:
    talk = Conversation(server(), Md5Peer("carol", PASSWORD)).run()
    assert [p.code for _, p in talk.packets] == [
        EapCode.REQUEST,
        EapCode.RESPONSE,
        EapCode.SUCCESS,
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 6), st.binary(max_size=30)), max_size=6))
def test_any_sequence_of_input_never_raises_and_never_shows_the_password(
    script: list[int | bytes],
) -> None:
    talk = Conversation(server(), Md5Peer("carol", PASSWORD)).run()
    pool = [p.encode() for _, p in talk.packets] + [
        EapPacket.request(9, EapType.IDENTITY).encode(),
        EapPacket.response(9, EapType.NAK, b"\x1a").encode(),
        EapPacket.failure(9).encode(),
        EapPacket.request(9, EapType.NOTIFICATION, b"hi").encode(),
    ]
    srv = server()
    srv.start()
    for machine in (srv, Md5Peer("carol", PASSWORD), IdentityServer(identifier=9)):
        for step in script:
            data = pool[step % len(pool)] if isinstance(step, int) else step
            out = machine.receive(data)
            if out is not None:
                EapPacket.decode(out)
        for text in (repr(machine), machine.failed):
            assert PASSWORD not in str(text)
        assert machine.msk is None  # neither method derives one
