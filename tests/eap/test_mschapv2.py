"""EAP-MSCHAPv2's server and peer (`larval.eap.mschapv2`) talking in memory.

Each conversation is annotated with what goes across:

    /* Request MSCHAPv2 Challenge -->  <-- Response MSCHAPv2 Response
       Request MSCHAPv2 Success S= -->  <-- Response Success  EAP Success --> */

and its outcome asserted on both ends: done, failed with the reason, the MSK. A known
answer from RFC 2759 §9.2 pins the bytes; bad input from either side ends the
conversation with a reason naming it, never with an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.crypto.randomness import RandomBytes
from larval.eap.errors import EapError
from larval.eap.mschapv2 import (
    MschapAck,
    MschapChallenge,
    MschapFailureRequest,
    MschapOpCode,
    MschapResponse,
    MschapSuccessRequest,
    MschapV2Peer,
    MschapV2Server,
    decode_mschapv2,
)
from larval.eap.mschapv2_crypto import generate_msk, nt_password_hash
from larval.eap.packet import EapCode, EapPacket, EapType
from tests.eap.conversation import Conversation, scripted
from tests.eap.test_mschapv2_crypto import (
    AUTHENTICATOR_CHALLENGE,
    AUTHENTICATOR_RESPONSE,
    NT_RESPONSE,
    PASSWORD_HASH,
    PEER_CHALLENGE,
    SERVER_SEND_KEY_128,
)
from tests.eap.test_packet import NO_SUCH_CODE
from tests.seeded import SeededRandom

pytestmark = pytest.mark.filterwarnings("error")

PASSWORD = "S3cret-Pass!"
SECRETS = {"carol": PASSWORD, "CORP\\dave": "dave-pw"}


def lookup(name: str) -> str | None:
    return SECRETS.get(name)


def server(seed: str = "server", **kwargs: object) -> MschapV2Server:
    return MschapV2Server(lookup, SeededRandom(seed), **kwargs)  # type: ignore[arg-type]


def peer(name: str = "carol", password: str = PASSWORD) -> MschapV2Peer:
    return MschapV2Peer(name, password, SeededRandom("peer"))


def mschap(packet: EapPacket) -> object:
    assert packet.type is EapType.MSCHAPV2
    return decode_mschapv2(packet.code, packet.data)


def assert_no_secret(*texts: object, password: str = PASSWORD) -> None:
    nt_hash = nt_password_hash(password).hex()
    for text in texts:
        shown = str(text)
        assert password not in shown
        assert nt_hash not in shown.lower()


# -- the known answer ----------------------------------------------------------------------


def test_rfc2759_known_answer_on_the_wire() -> None:
    """Server challenge and peer challenge of RFC 2759 §9.2: the peer's NT-Response and the
    server's S= are the RFC's, and both MSKs are the one RFC 3079 keys make."""
    srv = MschapV2Server(
        lambda name: "clientPass" if name == "User" else None,
        scripted(AUTHENTICATOR_CHALLENGE),
        identifier=5,
    )
    cli = MschapV2Peer("User", "clientPass", scripted(PEER_CHALLENGE))
    talk = Conversation(srv, cli).run()
    # /* Request Challenge --> */
    challenge = mschap(talk.packets[0][1])
    assert challenge == MschapChallenge(5, AUTHENTICATOR_CHALLENGE, b"larval")
    # /* <-- Response Response */
    response = mschap(talk.packets[1][1])
    assert response == MschapResponse(5, PEER_CHALLENGE, NT_RESPONSE, b"User")
    # /* Request Success S= --> */
    success = talk.packets[2][1]
    assert success.identifier == 6
    assert mschap(success) == MschapSuccessRequest(
        5, f"{AUTHENTICATOR_RESPONSE} M=Welcome".encode()
    )
    # /* <-- Response Success;  EAP Success --> */
    assert mschap(talk.packets[3][1]) == MschapAck(MschapOpCode.SUCCESS)
    assert talk.packets[4] == ("server", EapPacket.success(6))
    assert len(talk.packets) == 5
    msk = generate_msk(PASSWORD_HASH, NT_RESPONSE)
    assert srv.msk == cli.msk == msk
    assert msk[16:32] == SERVER_SEND_KEY_128
    assert srv.identity == "User"


# -- outcomes --------------------------------------------------------------------------------


def test_right_password() -> None:
    talk = Conversation(server(), peer()).run()
    srv, cli = talk.server, talk.peer
    assert srv.done and cli.done
    assert srv.failed is None and cli.failed is None
    assert srv.msk is not None and srv.msk == cli.msk and len(srv.msk) == 64
    assert srv.identity == "carol"
    assert talk.last("server").code is EapCode.SUCCESS


def test_runs_are_deterministic_with_a_seeded_source() -> None:
    one = Conversation(server(), peer()).run()
    two = Conversation(server(), peer()).run()
    assert one.packets == two.packets and one.server.msk == two.server.msk


def test_wrong_password() -> None:
    talk = Conversation(server(), peer(password="Wr0ng-Pass")).run()
    srv, cli = talk.server, talk.peer
    # /* Challenge -->  <-- Response  Failure E=691 R=0 -->  <-- Failure  EAP Failure --> */
    failure = mschap(talk.packets[2][1])
    assert isinstance(failure, MschapFailureRequest)
    text = failure.message.decode()
    assert text.startswith("E=691 R=0 C=") and text.endswith(" V=3 M=Authentication failed")
    assert len(text.split()[2]) == 2 + 32
    assert mschap(talk.packets[3][1]) == MschapAck(MschapOpCode.FAILURE)
    assert talk.packets[4] == ("server", EapPacket.failure(talk.packets[2][1].identifier))
    assert srv.done and cli.done
    assert srv.failed == "EAP-MSCHAPv2: wrong password for user 'carol'"
    assert cli.failed == (
        "EAP-MSCHAPv2: the server refused user 'carol': "
        "E=691 (authentication failure) R=0 M='Authentication failed'"
    )
    assert srv.msk is None and cli.msk is None
    assert_no_secret(srv.failed, cli.failed, repr(srv), repr(cli), password="Wr0ng-Pass")
    assert_no_secret(srv.failed, repr(srv))


def test_unknown_user_looks_like_a_wrong_password_to_the_peer() -> None:
    unknown = Conversation(server(), peer("mallory")).run()
    wrong = Conversation(server(), peer(password="Wr0ng-Pass")).run()
    assert unknown.server.failed == "EAP-MSCHAPv2: no secret for user 'mallory'"
    assert unknown.server.identity == "mallory"
    # The peer sees the same E=691 either way, so it cannot tell who exists.
    assert [p.code for _, p in unknown.packets] == [p.code for _, p in wrong.packets]
    assert unknown.peer.failed == wrong.peer.failed.replace("'carol'", "'mallory'")  # type: ignore[union-attr]


def test_domain_user_is_looked_up_whole_and_hashed_without_the_domain() -> None:
    asked: list[str] = []

    def recording(name: str) -> str | None:
        asked.append(name)
        return lookup(name)

    srv = MschapV2Server(recording, SeededRandom("s"))
    talk = Conversation(srv, MschapV2Peer("CORP\\dave", "dave-pw", SeededRandom("p"))).run()
    assert asked == ["CORP\\dave"]
    assert talk.server.msk is not None and talk.server.msk == talk.peer.msk
    assert talk.server.identity == "CORP\\dave"


def test_peer_that_stops_after_the_challenge_leaves_the_server_waiting() -> None:
    srv = server()
    srv.start()
    assert not srv.done and srv.failed is None and srv.msk is None


# -- a peer that misbehaves: the server ends with EAP Failure and the reason -----------------


def _challenged() -> tuple[MschapV2Server, EapPacket, bytes]:
    srv = server()
    request = srv.start()
    answer = peer().receive(request)
    assert answer is not None
    return srv, EapPacket.decode(request), answer


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda r: b"\x00garbage", NO_SUCH_CODE.format(0)),
        (lambda r: r[:-1], "EAP packet: Length 64 but the packet is 63 bytes"),
        (lambda r: r[:1] + bytes([(r[1] + 1) % 256]) + r[2:],
         "MSCHAPV2 Response with Identifier {bad}, the Request's was {id}"),
        (lambda r: r[:6] + bytes([(r[6] + 1) % 256]) + r[7:],
         "MSCHAPv2 Response: MS-CHAPv2-ID {bad}, the Challenge's was {id}"),
        (lambda r: b"\x01" + r[1:], "MSCHAPV2 Request from the peer, which sends only Responses"),
        (lambda r: r[:2] + b"\x00\x06\x03\x04",
         "the peer declined MSCHAPV2; it would take MD5_CHALLENGE"),
        (lambda r: r[:2] + b"\x00\x06\x1a\x04",
         "EAP-MSCHAPv2: the peer gave up after the Challenge"),
        (lambda r: r[:2] + b"\x00\x06\x1a\x03",
         "MSCHAPv2 Success Response unexpected in state CHALLENGE_SENT"),
        (lambda r: r[:2] + b"\x00\x06\x01\x00",
         "IDENTITY Response unexpected in state CHALLENGE_SENT"),
        (lambda r: r[:-5] + b"\xff\xfe\xfd\xfc\xfb", "MSCHAPv2 Response: the Name is not UTF-8"),
    ],
    ids=["garbage", "truncated", "identifier", "mschapv2-id", "request", "nak", "abort",
         "early-ack", "identity", "name"],
)  # fmt: skip
def test_server_refuses_a_bad_response(mangle: Callable[[bytes], bytes], reason: str) -> None:
    srv, request, answer = _challenged()
    bad = mangle(answer)
    out = srv.receive(bad)
    assert out == EapPacket.failure(request.identifier).encode()
    ident = request.identifier
    assert srv.failed == reason.format(id=ident, bad=(ident + 1) % 256)
    assert srv.done and srv.msk is None
    assert srv.receive(answer) is None  # done: nothing more is taken


def test_server_refuses_a_peer_that_rejects_its_proof() -> None:
    srv, _, answer = _challenged()
    success = EapPacket.decode(srv.receive(answer) or b"")
    ack = EapPacket.response(success.identifier, EapType.MSCHAPV2, b"\x04").encode()
    assert srv.receive(ack) == EapPacket.failure(success.identifier).encode()
    assert srv.failed == "EAP-MSCHAPv2: the peer gave up after the server's S="
    assert srv.msk is None


def test_start_twice_is_an_error() -> None:
    srv = server()
    srv.start()
    with pytest.raises(EapError, match="start\\(\\) in state CHALLENGE_SENT"):
        srv.start()


# -- what the peer answers, and a server that misbehaves --------------------------------------


def test_peer_answers_identity_notification_and_naks_other_methods() -> None:
    cli = peer()
    # /* Request Identity --> <-- Response Identity "carol" */
    assert cli.receive(EapPacket.request(1, EapType.IDENTITY).encode()) == (
        EapPacket.response(1, EapType.IDENTITY, b"carol").encode()
    )
    # /* Request Notification --> <-- Response Notification (empty) */
    assert cli.receive(EapPacket.request(2, EapType.NOTIFICATION, b"hello").encode()) == (
        EapPacket.response(2, EapType.NOTIFICATION).encode()
    )
    # /* Request MD5-Challenge --> <-- Response Nak (26) */
    assert cli.receive(EapPacket.request(3, EapType.MD5_CHALLENGE, b"\x01\x00").encode()) == (
        EapPacket.response(3, EapType.NAK, b"\x1a").encode()
    )
    assert not cli.done and cli.failed is None


def test_peer_answers_a_retransmitted_challenge_with_the_same_response() -> None:
    srv = server()
    cli = peer()
    request = srv.start()
    first = cli.receive(request)
    draws = len(cli._random.drawn)  # type: ignore[attr-defined]
    assert cli.receive(request) == first
    assert len(cli._random.drawn) == draws  # type: ignore[attr-defined]


def _responded() -> tuple[MschapV2Server, MschapV2Peer, bytes]:
    srv, cli = server(), peer()
    answer = cli.receive(srv.start())
    success = srv.receive(answer or b"")
    assert success is not None
    return srv, cli, success


def test_peer_refuses_a_forged_proof() -> None:
    _, cli, success = _responded()
    packet = EapPacket.decode(success)
    forged = bytearray(packet.data)
    forged[4 + 2] ^= 0x01  # the first hex digit of S=
    forged_packet = EapPacket(packet.code, packet.identifier, packet.type, bytes(forged))
    assert cli.receive(forged_packet.encode()) is None
    assert cli.done and cli.msk is None
    assert cli.failed in (
        "EAP-MSCHAPv2: the server's S= does not prove it knows the password",
        "MSCHAPv2 Success Request: S= is not hex",
    )


def test_peer_refuses_eap_success_before_the_proof() -> None:
    srv, cli = server(), peer()
    cli.receive(srv.start())
    assert cli.receive(EapPacket.success(srv.identifier).encode()) is None
    assert cli.failed == (
        "EAP-MSCHAPv2: EAP Success before the server proved it knows the password (S=)"
    )
    assert cli.done and cli.msk is None


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (EapPacket.request(1, EapType.MSCHAPV2, MschapSuccessRequest(1, b"S=00").encode()),
         "MSCHAPv2 Success Request unexpected in state IDLE"),
        (EapPacket.response(1, EapType.IDENTITY, b"x"),
         "IDENTITY Response from the server, which sends no Responses"),
        (EapPacket.failure(1), "EAP-MSCHAPv2: the server sent EAP Failure"),
        (EapPacket.request(1, EapType.MSCHAPV2, b"\x01\x01\x00\x05\x05"),
         "MSCHAPv2 Challenge Request: Value-Size 5, must be 16"),
    ],
)  # fmt: skip
def test_peer_refuses_what_its_state_does_not_take(packet: EapPacket, reason: str) -> None:
    cli = peer()
    assert cli.receive(packet.encode()) is None
    assert cli.done and cli.failed == reason


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_in_repr_reasons_or_packets_text() -> None:
    ok = Conversation(server(), peer()).run()
    bad = Conversation(server(), peer(password="Wr0ng-Pass")).run()
    assert_no_secret(repr(ok.server), repr(ok.peer), repr(bad.server), repr(bad.peer))
    assert_no_secret(bad.server.failed, bad.peer.failed)
    assert_no_secret(repr(bad.peer), bad.peer.failed, password="Wr0ng-Pass")
    assert repr(ok.peer) == "MschapV2Peer(state=SUCCESS_ACKED, identity='carol', done)"
    for _, packet in ok.packets + bad.packets:
        assert PASSWORD.encode() not in packet.encode()


# -- Hypothesis: any input, in any state, ends well --------------------------------------------


def _inputs(seed: int) -> list[bytes]:
    """Packets each side might get: the real ones of a conversation and mangled ones."""
    talk = Conversation(server(str(seed)), peer()).run()
    real = [p.encode() for _, p in talk.packets]
    return [
        *real,
        EapPacket.success(0).encode(),
        EapPacket.failure(0).encode(),
        EapPacket.request(0, EapType.IDENTITY).encode(),
        EapPacket.response(0, EapType.NAK, b"\x04").encode(),
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3),
    st.lists(st.one_of(st.integers(0, 9), st.binary(max_size=70)), max_size=8),
)
def test_any_sequence_of_input_never_raises_and_never_shows_the_password(
    seed: int, script: list[int | bytes]
) -> None:
    pool = _inputs(seed)
    for machine in (server(str(seed)), peer()):
        if isinstance(machine, MschapV2Server):
            machine.start()
        for step in script:
            data = pool[step % len(pool)] if isinstance(step, int) else step
            was_done = machine.done
            out = machine.receive(data)
            if was_done:
                assert out is None
            if out is not None:
                EapPacket.decode(out)  # whatever it sends is well formed
        assert_no_secret(repr(machine), machine.failed)
        if machine.msk is not None:
            assert machine.done and machine.failed is None


def test_random_source_type_is_the_one_larval_uses() -> None:
    source: RandomBytes = SeededRandom("x")
    assert len(MschapV2Server(lookup, source).start()) == 5 + 4 + 1 + 16 + len(b"larval")


# -- the peer against messages laid out as strongSwan's eap_mschapv2.c writes them -----------


def _strongswan_challenge(identifier: int) -> bytes:
    # MS-CHAPv2-ID 0 (strongSwan's counts retries from 0, apart from the EAP Identifier),
    # Name "strongSwan".
    challenge = MschapChallenge(0, AUTHENTICATOR_CHALLENGE, b"strongSwan")
    return EapPacket.request(identifier, EapType.MSCHAPV2, challenge.encode()).encode()


def test_peer_takes_strongswans_success_with_its_nul_terminator() -> None:
    cli = MschapV2Peer("User", "clientPass", scripted(PEER_CHALLENGE))
    answer = EapPacket.decode(cli.receive(_strongswan_challenge(77)) or b"")
    assert mschap(answer) == MschapResponse(0, PEER_CHALLENGE, NT_RESPONSE, b"User")
    # "S=<40 hex> M=Welcome2strongSwan" and the C string's NUL, under the next Identifier.
    text = f"{AUTHENTICATOR_RESPONSE} M=Welcome2strongSwan\0".encode()
    success = EapPacket.request(78, EapType.MSCHAPV2, MschapSuccessRequest(0, text).encode())
    ack = cli.receive(success.encode())
    assert ack == EapPacket.response(78, EapType.MSCHAPV2, b"\x03").encode()
    assert cli.receive(EapPacket.success(78).encode()) is None
    assert cli.done and cli.failed is None
    assert cli.msk == generate_msk(PASSWORD_HASH, NT_RESPONSE)


def test_peer_acknowledges_strongswans_retry_failure_and_gives_up() -> None:
    cli = MschapV2Peer("User", "Wr0ng-Pass", scripted(PEER_CHALLENGE))
    cli.receive(_strongswan_challenge(77))
    # strongSwan's "E=691 R=1 C=<32 hex>", without M= and without a NUL.
    text = b"E=691 R=1 C=" + b"AB" * 16
    failure = EapPacket.request(78, EapType.MSCHAPV2, MschapFailureRequest(0, text).encode())
    ack = cli.receive(failure.encode())
    assert ack == EapPacket.response(78, EapType.MSCHAPV2, b"\x04").encode()
    assert cli.failed == (
        "EAP-MSCHAPv2: the server refused user 'User': E=691 (authentication failure) R=1 M=''"
    )
    assert not cli.done  # until the EAP Failure
    assert cli.receive(EapPacket.failure(78).encode()) is None
    assert cli.done and cli.msk is None
