"""EAP-MD5 (RFC 3748 §5.4): the CHAP exchange of RFC 1994 inside EAP, a server and a peer.

    server                                           peer
    Request  MD5-Challenge (16 random bytes)   ->
                                               <-  Response  MD5-Challenge
                                                   (MD5(Identifier | password | challenge))
    EAP Success or EAP Failure                 ->

It proves the peer knows the password and nothing more: the server proves nothing and
no key comes out of it, so ``msk`` stays None even on success. RFC 3748 §5.4 claims
neither mutual authentication nor key derivation for it; over IKEv2 the AUTH payloads
are then computed with SK_pi and SK_pr in place of the MSK (RFC 7296 §2.16). Its
challenge carries no name, so the server is told whose password to check: the peer's
EAP identity.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import ClassVar

from larval.crypto.randomness import RandomBytes, system_random

from .method import EapMethodMachine, Lookup
from .packet import EapPacket, EapType, Md5Challenge

__all__ = ["Md5Peer", "Md5Server", "md5_response"]

_CHALLENGE_SIZE = 16  # as strongSwan's eap-md5 sends


def md5_response(identifier: int, password: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5 over the Identifier, the secret and the challenge."""
    return hashlib.md5(bytes([identifier]) + password + challenge).digest()


class Md5ServerState(enum.Enum):
    START = "start"
    CHALLENGE_SENT = "challenge sent"


class Md5Server(EapMethodMachine[Md5ServerState]):
    """Checks that the peer known as ``identity`` (its EAP identity) knows the password
    ``lookup`` gives for it; ``identifier`` as for `MschapV2Server`."""

    is_server = True
    method = EapType.MD5_CHALLENGE
    label = "EAP-MD5"
    opening = (Md5ServerState.START, Md5ServerState.CHALLENGE_SENT)
    transitions: ClassVar = {
        (Md5ServerState.CHALLENGE_SENT, "MD5_CHALLENGE Response"): "_on_response",
        (Md5ServerState.CHALLENGE_SENT, "NAK Response"): "_peer_declined",
    }

    def __init__(
        self,
        identity: str,
        lookup: Lookup,
        random: RandomBytes = system_random,
        *,
        identifier: int | None = None,
    ) -> None:
        super().__init__(Md5ServerState.START, random, identifier)
        self.identity = identity
        self._lookup = lookup
        self._challenge = b""

    def _opening_data(self) -> bytes:
        """The first Request: the MD5-Challenge."""
        self._challenge = self._random(_CHALLENGE_SIZE)
        return Md5Challenge(self._challenge).encode()

    def _on_response(self, packet: EapPacket) -> EapPacket:
        response = Md5Challenge.decode(packet.data)
        password = self._lookup(self.identity or "")
        if password is None:
            return self._end_refused(f"EAP-MD5: no secret for user {self.identity!r}")
        expected = md5_response(packet.identifier, password.encode(), self._challenge)
        if not hmac.compare_digest(expected, response.value):
            return self._end_refused(f"EAP-MD5: wrong password for user {self.identity!r}")
        self._end_succeeded(None)
        return EapPacket.success(self.identifier)


class Md5PeerState(enum.Enum):
    IDLE = "idle"
    RESPONSE_SENT = "response sent"


class Md5Peer(EapMethodMachine[Md5PeerState]):
    """Answers EAP-Identity with ``username`` and the MD5-Challenge with the hash of
    ``password``; Naks other methods. Done at the EAP Success, with no MSK."""

    is_server = False
    method = EapType.MD5_CHALLENGE
    label = "EAP-MD5"
    transitions: ClassVar = {
        (Md5PeerState.IDLE, "IDENTITY Request"): "_answer_identity",
        (Md5PeerState.IDLE, "other Request"): "_answer_other",
        (Md5PeerState.IDLE, "MD5_CHALLENGE Request"): "_on_challenge",
        (Md5PeerState.RESPONSE_SENT, "EAP Success"): "_on_eap_success",
        **{(state, "NOTIFICATION Request"): "_answer_notification" for state in Md5PeerState},
        **{(state, "EAP Failure"): "_on_eap_failure" for state in Md5PeerState},
    }

    def __init__(self, username: str, password: str) -> None:
        super().__init__(Md5PeerState.IDLE, system_random, 0)
        self.identity = username
        self._password = password.encode()

    def _on_challenge(self, packet: EapPacket) -> EapPacket:
        challenge = Md5Challenge.decode(packet.data)
        value = md5_response(packet.identifier, self._password, challenge.value)
        self.state = Md5PeerState.RESPONSE_SENT
        return EapPacket.response(packet.identifier, self.method, Md5Challenge(value).encode())
