"""EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02): its messages, a server and a peer.

MS-CHAP-V2 (RFC 2759) inside EAP Type 26. Every message but the peer's two
acknowledgements starts with the same four bytes after the EAP Type::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Code      |   Identifier  |            Length             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Type (26)   |    OpCode     |  MS-CHAPv2-ID |  MS-Length...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   MS-Length   |     Data...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

MS-Length is the EAP Length less 5 (the bytes from the OpCode on). The conversation::

    server                                             peer
    Request  Challenge (16-byte challenge, Name)  ->
                                                  <-  Response  Response (peer challenge,
                                                                NT-Response, Name)
    Request  Success "S=<40 hex> M=<text>"        ->            (peer checks S=)
                                                  <-  Response  Success (OpCode only)
    EAP Success                                   ->            both hold the MSK

or, when the password is wrong or the user unknown, ``Request Failure "E=691 R=0
C=<32 hex> V=3 M=<text>"``, ``Response Failure`` (OpCode only), EAP Failure. By default
larval's server allows no retry (R=0): each one would hand a guesser another try. A
server made with ``retries`` (strongSwan's allows 2) answers that many failures with
``Request Failure "E=691 R=1 C=<new challenge> ..."`` (RFC 2759 §6) and takes a new
Response, under the next MS-CHAPv2-ID, to that challenge; a peer that answers the retry
with its Failure Response has given up. strongSwan's peer sends no Failure Response;
the layer that carries EAP ends the exchange then. larval's peer never retries: it has
one password, and the same one would fail again.

The server looks the password up by the Name of the peer's Response, the whole name
(``DOMAIN\\user`` included), and hashes only the user part (RFC 2759 §8.2). The name it
authenticated is its ``identity``, for the lease and the log.
"""

from __future__ import annotations

import enum
import hmac
import re
import string
from dataclasses import dataclass
from typing import ClassVar, TypeAlias, TypeVar

from larval.crypto.randomness import RandomBytes, system_random
from larval.wire import Buffer, LenientIntEnum, NetReader

from .errors import EapError
from .method import EapMethodMachine, Lookup
from .mschapv2_crypto import (
    CHALLENGE_SIZE,
    NT_RESPONSE_SIZE,
    check_authenticator_response,
    generate_authenticator_response,
    generate_msk,
    generate_nt_response,
    nt_password_hash,
    user_name_for_hash,
)
from .packet import EapCode, EapPacket, EapType

__all__ = [
    "MschapAck",
    "MschapChallenge",
    "MschapFailureRequest",
    "MschapOpCode",
    "MschapResponse",
    "MschapSuccessRequest",
    "MschapV2Peer",
    "MschapV2Server",
    "decode_mschapv2",
]

_RESPONSE_VALUE_SIZE = 49  # Peer-Challenge 16, Reserved 8, NT-Response 24, Flags 1
_AUTH_DIGEST_SIZE = 20  # the S= value, RFC 2759 §8.7
_HEADER = 4  # OpCode, MS-CHAPv2-ID, MS-Length

#: RFC 2759 §6: the error codes a Failure packet's E= carries.
MSCHAP_ERRORS = {
    646: "restricted logon hours",
    647: "account disabled",
    648: "password expired",
    649: "no dial-in permission",
    691: "authentication failure",
    709: "error changing password",
}


class MschapOpCode(LenientIntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


def _with_header(opcode: MschapOpCode, mschapv2_id: int, body: bytes) -> bytes:
    buf = Buffer()
    buf.push_u8(opcode)
    buf.push_u8(mschapv2_id)
    buf.push_u16be(_HEADER + len(body))  # MS-Length: from the OpCode on
    buf.push_bytes(body)
    return buf.data


@dataclass(frozen=True, slots=True)
class MschapChallenge:
    """Challenge Request: Value-Size 16, the authenticator challenge, the server's Name."""

    mschapv2_id: int
    challenge: bytes
    name: bytes

    def encode(self) -> bytes:
        body = bytes([CHALLENGE_SIZE]) + self.challenge + self.name
        return _with_header(MschapOpCode.CHALLENGE, self.mschapv2_id, body)


@dataclass(frozen=True, slots=True)
class MschapResponse:
    """Response Response: Value-Size 49 (Peer-Challenge, 8 reserved zero bytes,
    NT-Response, Flags), then the peer's Name (RFC 2759 §4)."""

    mschapv2_id: int
    peer_challenge: bytes
    nt_response: bytes
    name: bytes
    flags: int = 0

    def encode(self) -> bytes:
        body = (
            bytes([_RESPONSE_VALUE_SIZE])
            + self.peer_challenge
            + bytes(8)
            + self.nt_response
            + bytes([self.flags])
            + self.name
        )
        return _with_header(MschapOpCode.RESPONSE, self.mschapv2_id, body)


@dataclass(frozen=True, slots=True)
class MschapSuccessRequest:
    """Success Request: the text ``S=<40 hex digits> M=<message>`` (RFC 2759 §5)."""

    mschapv2_id: int
    message: bytes

    def encode(self) -> bytes:
        return _with_header(MschapOpCode.SUCCESS, self.mschapv2_id, self.message)

    def authenticator_response(self) -> bytes:
        """The 20 bytes of S=; an `EapError` if the text has none."""
        fields, _ = _split_text(self.message)
        value = fields.get("S")
        if value is None or len(value) != 2 * _AUTH_DIGEST_SIZE:
            raise EapError("MSCHAPv2 Success Request: no S= of 40 hex digits")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise EapError("MSCHAPv2 Success Request: S= is not hex") from None


@dataclass(frozen=True, slots=True)
class MschapFailureRequest:
    """Failure Request: ``E=<error> R=<retry> C=<32 hex> V=<version> M=<message>``
    (RFC 2759 §6)."""

    mschapv2_id: int
    message: bytes

    def encode(self) -> bytes:
        return _with_header(MschapOpCode.FAILURE, self.mschapv2_id, self.message)

    def describe(self) -> str:
        """E=, R= and M= in words, for a reason (M= cut to printable text)."""
        fields, text = _split_text(self.message)
        error = fields.get("E", "")
        meaning = MSCHAP_ERRORS.get(int(error), "unknown error") if error.isdigit() else "none"
        return f"E={error or '?'} ({meaning}) R={fields.get('R', '?')} M={text!r}"


@dataclass(frozen=True, slots=True)
class MschapAck:
    """The peer's Success or Failure Response: the OpCode alone, no ID or MS-Length."""

    opcode: MschapOpCode

    def encode(self) -> bytes:
        return bytes([self.opcode])


MschapMessage: TypeAlias = (
    MschapChallenge | MschapResponse | MschapSuccessRequest | MschapFailureRequest | MschapAck
)

_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")
#: M= opens the text or follows a space; its message runs to the end (RFC 2759 §5, §6).
_MESSAGE_FIELD = re.compile(r"(?:^| )M=")


def _split_text(message: bytes) -> tuple[dict[str, str], str]:
    """The ``K=value`` fields before `` M=``, and the M= text (which may hold spaces),
    made printable. The text ends at a NUL: strongSwan's server sends its Success
    message with the C string's terminator."""
    text = message.split(b"\0", 1)[0].decode("ascii", "replace")
    match = _MESSAGE_FIELD.search(text)
    head, tail = (text[: match.start()], text[match.end() :]) if match else (text, "")
    fields = dict(token.split("=", 1) for token in head.split() if "=" in token and len(token) > 1)
    shown = "".join(c if c in _PRINTABLE else "?" for c in tail)
    return fields, shown.strip()


def decode_mschapv2(code: EapCode, data: bytes) -> MschapMessage:
    """The EAP-MSCHAPv2 message in the Type-Data ``data`` of a Request or Response."""
    what = f"MSCHAPv2 {code.name.title()}"
    reader = NetReader(data, what, EapError)
    opcode = MschapOpCode(reader.pull_u8("OpCode"))
    what = f"MSCHAPv2 {opcode.name.title()} {code.name.title()}"
    if code is EapCode.RESPONSE and opcode in (MschapOpCode.SUCCESS, MschapOpCode.FAILURE):
        if reader.remaining():
            raise EapError(f"{what}: {reader.remaining()} bytes after the OpCode, which ends it")
        return MschapAck(opcode)
    reader.what = what
    mschapv2_id = reader.pull_u8("MS-CHAPv2-ID")
    ms_length = reader.pull_u16("MS-Length")
    if ms_length != len(data):
        raise EapError(
            f"{what}: MS-Length {ms_length} but {len(data)} bytes from the OpCode on "
            "(the EAP Length less 5)"
        )
    if code is EapCode.REQUEST and opcode is MschapOpCode.CHALLENGE:
        size = reader.pull_u8("Value-Size")
        if size != CHALLENGE_SIZE:
            raise EapError(f"{what}: Value-Size {size}, must be {CHALLENGE_SIZE}")
        challenge = reader.pull_bytes(CHALLENGE_SIZE, "Challenge")
        return MschapChallenge(mschapv2_id, challenge, reader.pull_rest())
    if code is EapCode.RESPONSE and opcode is MschapOpCode.RESPONSE:
        size = reader.pull_u8("Value-Size")
        if size != _RESPONSE_VALUE_SIZE:
            raise EapError(f"{what}: Value-Size {size}, must be {_RESPONSE_VALUE_SIZE}")
        peer_challenge = reader.pull_bytes(CHALLENGE_SIZE, "Peer-Challenge")
        reader.pull_bytes(8, "Reserved")  # zero, and ignored when read
        nt_response = reader.pull_bytes(NT_RESPONSE_SIZE, "NT-Response")
        flags = reader.pull_u8("Flags")
        return MschapResponse(mschapv2_id, peer_challenge, nt_response, reader.pull_rest(), flags)
    if code is EapCode.REQUEST and opcode is MschapOpCode.SUCCESS:
        return MschapSuccessRequest(mschapv2_id, reader.pull_rest())
    if code is EapCode.REQUEST and opcode is MschapOpCode.FAILURE:
        return MschapFailureRequest(mschapv2_id, reader.pull_rest())
    raise EapError(f"{what}: not a message of EAP-MSCHAPv2 that larval takes")


MessageT = TypeVar(
    "MessageT",
    MschapChallenge,
    MschapResponse,
    MschapSuccessRequest,
    MschapFailureRequest,
    MschapAck,
)

_INPUT_NAMES = {
    MschapChallenge: "Challenge",
    MschapResponse: "Response",
    MschapSuccessRequest: "Success",
    MschapFailureRequest: "Failure",
}


class _MschapV2Machine(EapMethodMachine[enum.Enum]):
    method = EapType.MSCHAPV2
    label = "EAP-MSCHAPv2"
    refused = "{label}: the server sent EAP Failure"

    def __init__(self, state: enum.Enum, random: RandomBytes, identifier: int | None) -> None:
        super().__init__(state, random, identifier)
        self._message: MschapMessage | None = None

    def input_of(self, packet: EapPacket) -> str:
        if packet.type is not EapType.MSCHAPV2 or packet.code not in (
            EapCode.REQUEST,
            EapCode.RESPONSE,
        ):
            return super().input_of(packet)
        message = self._message = decode_mschapv2(packet.code, packet.data)
        kind = (
            message.opcode.name.title()
            if isinstance(message, MschapAck)
            else _INPUT_NAMES[type(message)]
        )
        return f"MSCHAPv2 {kind} {packet.code.name.title()}"

    def _incoming(self, kind: type[MessageT]) -> MessageT:
        message = self._message
        assert isinstance(message, kind)
        return message


class ServerState(enum.Enum):
    START = "start"
    CHALLENGE_SENT = "challenge sent"
    RETRY_SENT = "retry offered"
    SUCCESS_SENT = "success sent"
    FAILURE_SENT = "failure sent"


class MschapV2Server(_MschapV2Machine):
    """The authenticating end: challenge, check the response, prove the password back
    with S=, and hold the MSK once the peer acknowledged (see the module's docstring).

    ``lookup`` maps the name the peer presents to its password (None: no such user);
    ``identifier`` is the first Request's Identifier (drawn from ``random`` if not
    given: a carrying layer that ran EAP-Identity first passes the next one); ``name``
    is the server's Name in the Challenge; ``retries`` how many failed Responses are
    answered with a retry (R=1) before the last is refused.
    """

    is_server = True
    opening = (ServerState.START, ServerState.CHALLENGE_SENT)
    transitions: ClassVar = {
        (ServerState.CHALLENGE_SENT, "MSCHAPv2 Response Response"): "_on_response",
        (ServerState.CHALLENGE_SENT, "NAK Response"): "_peer_declined",
        (ServerState.CHALLENGE_SENT, "MSCHAPv2 Failure Response"): "_on_peer_abort",
        (ServerState.RETRY_SENT, "MSCHAPv2 Response Response"): "_on_response",
        (ServerState.RETRY_SENT, "MSCHAPv2 Failure Response"): "_on_retry_declined",
        (ServerState.SUCCESS_SENT, "MSCHAPv2 Success Response"): "_on_success_ack",
        (ServerState.SUCCESS_SENT, "MSCHAPv2 Failure Response"): "_on_peer_abort",
        (ServerState.FAILURE_SENT, "MSCHAPv2 Failure Response"): "_on_failure_ack",
    }

    def __init__(
        self,
        lookup: Lookup,
        random: RandomBytes = system_random,
        *,
        identifier: int | None = None,
        name: str = "larval",
        retries: int = 0,
    ) -> None:
        super().__init__(ServerState.START, random, identifier)
        self._lookup = lookup
        self._name = name.encode()
        self._challenge = b""
        self._mschapv2_id = 0
        self._pending_msk = b""
        self._retries_left = retries
        self._tries = 0
        self._last_failure = ""

    def _opening_data(self) -> bytes:
        """The first Request: the Challenge."""
        self._challenge = self._random(CHALLENGE_SIZE)
        # The MS-CHAPv2-ID is the Challenge's EAP Identifier (as the draft's examples
        # have it) and stays for the conversation's every message, as strongSwan's does.
        self._mschapv2_id = self.identifier
        return MschapChallenge(self.identifier, self._challenge, self._name).encode()

    def _on_response(self, packet: EapPacket) -> EapPacket:
        response = self._incoming(MschapResponse)
        if response.mschapv2_id != self._mschapv2_id:
            raise EapError(
                f"MSCHAPv2 Response: MS-CHAPv2-ID {response.mschapv2_id}, "
                f"the Challenge's was {self._mschapv2_id}"
            )
        try:
            name = response.name.decode("utf-8")
        except UnicodeDecodeError:
            raise EapError("MSCHAPv2 Response: the Name is not UTF-8") from None
        if not name:
            raise EapError("MSCHAPv2 Response: no Name")
        self.identity = name
        self._tries += 1
        password = self._lookup(name)
        if password is None:
            # Refused as a wrong password is, retry and all: a guesser learns no names.
            return self._refuse(f"EAP-MSCHAPv2: no secret for user {name!r}")
        password_hash = nt_password_hash(password)
        user_name = user_name_for_hash(response.name)
        expected = generate_nt_response(
            self._challenge, response.peer_challenge, user_name, password_hash
        )
        if not hmac.compare_digest(expected, response.nt_response):
            return self._refuse(f"EAP-MSCHAPv2: wrong password for user {name!r}")
        proof = generate_authenticator_response(
            password_hash, response.nt_response, response.peer_challenge, self._challenge, user_name
        )
        self._pending_msk = generate_msk(password_hash, response.nt_response)
        self.state = ServerState.SUCCESS_SENT
        message = MschapSuccessRequest(self._mschapv2_id, f"{proof} M=Welcome".encode())
        return self._next_request(message.encode())

    def _refuse(self, reason: str) -> EapPacket:
        """RFC 2759 §6: E=691, with a retry (R=1) while `retries` last, else without (R=0).
        The C= is a fresh challenge: a retry's Response answers it; without one, the
        format wants one, never used."""
        if self._tries > 1:
            reason += f" ({self._tries} tries)"
        if self._retries_left > 0:
            return self._retry(reason)
        self._fail(reason)
        text = (
            f"E=691 R=0 C={self._random(CHALLENGE_SIZE).hex().upper()} V=3 M=Authentication failed"
        )
        message = MschapFailureRequest(self._mschapv2_id, text.encode())
        packet = self._next_request(message.encode())
        self.state = ServerState.FAILURE_SENT
        return packet

    def _retry(self, reason: str) -> EapPacket:
        """Failure with R=1: the peer may answer the new challenge of C= with a new
        Response, under the next MS-CHAPv2-ID (as strongSwan's server counts them)."""
        self._retries_left -= 1
        self._last_failure = reason
        self._challenge = self._random(CHALLENGE_SIZE)
        text = f"E=691 R=1 C={self._challenge.hex().upper()} V=3 M=Authentication failed"
        message = MschapFailureRequest(self._mschapv2_id, text.encode())
        self._mschapv2_id = (self._mschapv2_id + 1) & 0xFF
        self.state = ServerState.RETRY_SENT
        return self._next_request(message.encode())

    def _on_retry_declined(self, packet: EapPacket) -> EapPacket:
        """The peer acknowledged the retry's Failure: it does not try again."""
        return self._end_refused(f"{self._last_failure}; the peer did not retry")

    def _on_success_ack(self, packet: EapPacket) -> EapPacket:
        self._end_succeeded(self._pending_msk)
        return EapPacket.success(self.identifier)

    def _on_failure_ack(self, packet: EapPacket) -> EapPacket:
        self.done = True
        return EapPacket.failure(self.identifier)

    def _on_peer_abort(self, packet: EapPacket) -> EapPacket | None:
        what = "the Challenge" if self.state is ServerState.CHALLENGE_SENT else "the server's S="
        raise EapError(f"EAP-MSCHAPv2: the peer gave up after {what}")


class PeerState(enum.Enum):
    IDLE = "idle"
    RESPONSE_SENT = "response sent"
    SUCCESS_ACKED = "success acknowledged"
    FAILURE_ACKED = "failure acknowledged"


_ALL_PEER_STATES = tuple(PeerState)


class MschapV2Peer(_MschapV2Machine):
    """The authenticated end: answers EAP-Identity with ``username``, the Challenge
    with the NT-Response, checks the server's S= and acknowledges; holds the MSK after
    the EAP Success. Any other method's Request gets a Nak naming MSCHAPv2.

    Only the NT hash of ``password`` is kept, and never shown.
    """

    is_server = False
    transitions: ClassVar = {
        (PeerState.IDLE, "IDENTITY Request"): "_answer_identity",
        (PeerState.IDLE, "other Request"): "_answer_other",
        (PeerState.IDLE, "MSCHAPv2 Challenge Request"): "_on_challenge",
        (PeerState.IDLE, "EAP Success"): "_on_early_success",
        (PeerState.RESPONSE_SENT, "MSCHAPv2 Success Request"): "_on_success_request",
        (PeerState.RESPONSE_SENT, "MSCHAPv2 Failure Request"): "_on_failure_request",
        (PeerState.RESPONSE_SENT, "EAP Success"): "_on_early_success",
        (PeerState.SUCCESS_ACKED, "EAP Success"): "_on_eap_success",
        **{(state, "NOTIFICATION Request"): "_answer_notification" for state in PeerState},
        **{(state, "EAP Failure"): "_on_eap_failure" for state in PeerState},
    }

    def __init__(self, username: str, password: str, random: RandomBytes = system_random) -> None:
        super().__init__(PeerState.IDLE, random, 0)
        self.identity = username
        self._password_hash = nt_password_hash(password)
        self._response: MschapResponse | None = None
        self._challenge = b""
        self._pending_msk = b""

    def _on_challenge(self, packet: EapPacket) -> EapPacket:
        challenge = self._incoming(MschapChallenge)
        assert self.identity is not None
        name = self.identity.encode()
        peer_challenge = self._random(CHALLENGE_SIZE)
        nt_response = generate_nt_response(
            challenge.challenge, peer_challenge, user_name_for_hash(name), self._password_hash
        )
        self._challenge = challenge.challenge
        self._response = MschapResponse(challenge.mschapv2_id, peer_challenge, nt_response, name)
        self.state = PeerState.RESPONSE_SENT
        return EapPacket.response(packet.identifier, self.method, self._response.encode())

    def _on_success_request(self, packet: EapPacket) -> EapPacket:
        proof = self._incoming(MschapSuccessRequest).authenticator_response()
        response = self._response
        assert response is not None
        user_name = user_name_for_hash(response.name)
        if not check_authenticator_response(
            self._password_hash,
            response.nt_response,
            response.peer_challenge,
            self._challenge,
            user_name,
            proof,
        ):
            raise EapError("EAP-MSCHAPv2: the server's S= does not prove it knows the password")
        self._pending_msk = generate_msk(self._password_hash, response.nt_response)
        self.state = PeerState.SUCCESS_ACKED
        return EapPacket.response(
            packet.identifier, self.method, MschapAck(MschapOpCode.SUCCESS).encode()
        )

    def _on_failure_request(self, packet: EapPacket) -> EapPacket:
        failure = self._incoming(MschapFailureRequest)
        # No retry even if R=1 allows one: the same password would fail again.
        self._fail(f"EAP-MSCHAPv2: the server refused user {self.identity!r}: {failure.describe()}")
        self.state = PeerState.FAILURE_ACKED
        return EapPacket.response(
            packet.identifier, self.method, MschapAck(MschapOpCode.FAILURE).encode()
        )

    def _on_early_success(self, packet: EapPacket) -> EapPacket | None:
        raise EapError(
            "EAP-MSCHAPv2: EAP Success before the server proved it knows the password (S=)"
        )
