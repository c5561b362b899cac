"""One EAP conversation as IKEv2's IKE_AUTH carries it (RFC 7296 §2.16), each end's:
which `larval.eap` machines run, in what order, and what the conversation ends with.

The gateway's (`EapServerConversation`): with ``eap_id = "%any"`` it first asks the
peer's name (EAP-Identity), then runs the method, continuing the Identifiers (RFC 3748
§4.1); otherwise the name is the one configured, or the peer's IKE identity. With
``auth = "eap"`` it offers EAP-MSCHAPv2 and, if the peer's Nak names EAP-MD5, that. A
method's failure ends the conversation at once with an EAP Failure: strongSwan's peer
sends no Failure Response after an MSCHAPv2 failure, so the server's ``failed`` is where
it ends, not the acknowledgement. The name a method authenticated must be the one
expected.

The client's (`EapPeerConversation`): the peer machine of its method; with ``auth =
"eap"`` the one of whatever method the server's first method Request is.

Either ends ``done``, with ``failed`` the reason (naming the EAP identity, never a
password) or the ``msk`` (None for a method that derives none, EAP-MD5: the AUTH
payloads are then keyed with SK_pi and SK_pr).
"""

from __future__ import annotations

from typing import Any

from larval.crypto.randomness import RandomBytes, system_random
from larval.eap import (
    EapError,
    EapMethodMachine,
    EapPacket,
    EapType,
    IdentityServer,
    Md5Peer,
    Md5Server,
    MschapV2Peer,
    MschapV2Server,
    Nak,
)
from larval.ike.auth_config import EapAuth

__all__ = ["ANY", "EapPeerConversation", "EapServerConversation"]

#: ``eap_id = "%any"``: ask the peer its name (EAP-Identity).
ANY = "%any"
_NAMES = {EapType.MSCHAPV2: "eap-mschapv2", EapType.MD5_CHALLENGE: "eap-md5"}


class EapServerConversation:
    """The gateway's side; `start` gives the first Request, `receive` answers each
    Response until ``done``."""

    def __init__(self, auth: EapAuth, peer_identity: str,
                 random: RandomBytes = system_random) -> None:  # fmt: skip
        self._auth = auth
        self._random = random
        #: The name the peer must authenticate as; None until EAP-Identity gave it.
        self._expected: str | None = None if auth.eap_id == ANY else auth.eap_id or peer_identity
        self._machine: EapMethodMachine[Any] | None = None
        self._request_id = 0  # the Identifier of the Request outstanding
        self.method = ""  # "eap-mschapv2" or "eap-md5", once chosen
        self.identity: str | None = None
        self.done = False
        self.failed: str | None = None
        self.msk: bytes | None = None

    def __repr__(self) -> str:
        outcome = "failed" if self.failed else "done" if self.done else "running"
        return f"<EapServerConversation {self.method or 'identity'} {self.identity!r} {outcome}>"

    def start(self) -> bytes:
        if self._expected is None:
            identity = IdentityServer(self._random)
            self._machine = identity
            return self._sent(identity.start(), identity.identifier)
        return self._begin(self._first_method(), self._expected, None)

    def receive(self, data: bytes) -> bytes:
        """The packet that answers the peer's Response `data`."""
        machine = self._machine
        if self.done or machine is None:
            return self._end_failed("EAP Response after the conversation ended")
        answer = machine.receive(data)
        if isinstance(machine, IdentityServer):
            if machine.failed is not None or machine.identity is None:
                return self._end_failed(machine.failed or "EAP-Identity gave no name")
            self._expected = self.identity = machine.identity
            return self._begin(self._first_method(), machine.identity,
                               (machine.identifier + 1) & 0xFF)  # fmt: skip
        if machine.identity is not None:
            self.identity = machine.identity
        if machine.failed is not None:
            if self._auth.method == "eap" and self.method == "eap-mschapv2" and _wants_md5(data):
                assert self._expected is not None
                return self._begin(EapType.MD5_CHALLENGE, self._expected,
                                   (self._request_id + 1) & 0xFF)  # fmt: skip
            return self._end_failed(machine.failed)
        if self.identity is not None and self.identity != self._expected:
            return self._end_failed(
                f"{self.method}: user {self.identity!r} authenticated, "
                f"but the EAP identity expected is {self._expected!r}"
            )
        if answer is None:
            return self._end_failed(f"{self.method}: no answer to the peer's Response")
        if machine.done:
            self.done = True
            self.msk = machine.msk
            return answer
        return self._sent(answer, machine.identifier)

    def _first_method(self) -> EapType:
        return EapType.MD5_CHALLENGE if self._auth.method == "eap-md5" else EapType.MSCHAPV2

    def _begin(self, method: EapType, identity: str, identifier: int | None) -> bytes:
        self.method = _NAMES[method]
        lookup = self._auth.passwords.get
        machine: MschapV2Server | Md5Server
        if method is EapType.MSCHAPV2:
            machine = MschapV2Server(lookup, self._random, identifier=identifier)
        else:
            self.identity = identity
            machine = Md5Server(identity, lookup, self._random, identifier=identifier)
        self._machine = machine
        return self._sent(machine.start(), machine.identifier)

    def _sent(self, request: bytes, identifier: int) -> bytes:
        self._request_id = identifier
        return request

    def _end_failed(self, reason: str) -> bytes:
        self.failed = self.failed or reason
        self.done = True
        # RFC 3748 §4.2: the Failure carries the Identifier of the Response it answers.
        return EapPacket.failure(self._request_id).encode()


def _wants_md5(data: bytes) -> bool:
    """Is `data` a Nak that names EAP-MD5 (RFC 3748 §5.3.1)?"""
    try:
        packet = EapPacket.decode(data)
        if packet.type is not EapType.NAK:
            return False
        return EapType.MD5_CHALLENGE in Nak.decode(packet.data).desired
    except EapError:
        return False


class EapPeerConversation:
    """The client's side: `receive` takes each Request and gives the Response, or None
    once the server's Success or Failure ended it."""

    def __init__(self, auth: EapAuth, random: RandomBytes = system_random) -> None:
        assert auth.eap_id is not None and auth.eap_id in auth.passwords
        self._auth = auth
        self._random = random
        self.identity = auth.eap_id
        self._machine: MschapV2Peer | Md5Peer = self._peer(
            EapType.MD5_CHALLENGE if auth.method == "eap-md5" else EapType.MSCHAPV2
        )
        self._chosen = auth.method != "eap"

    def __repr__(self) -> str:
        return f"<EapPeerConversation {self.method} {self.identity!r}>"

    @property
    def method(self) -> str:
        return _NAMES[self._machine.method]

    @property
    def done(self) -> bool:
        return self._machine.done

    @property
    def failed(self) -> str | None:
        return self._machine.failed

    @property
    def msk(self) -> bytes | None:
        return self._machine.msk

    def receive(self, data: bytes) -> bytes | None:
        if not self._chosen:
            try:
                packet = EapPacket.decode(data)
            except EapError:
                packet = None
            if packet is not None and packet.type in _NAMES:
                # auth = "eap": the method is the server's first method Request.
                self._chosen = True
                if packet.type is not self._machine.method:
                    self._machine = self._peer(EapType(packet.type))
        return self._machine.receive(data)

    def _peer(self, method: EapType) -> MschapV2Peer | Md5Peer:
        password = self._auth.passwords[self.identity]
        if method is EapType.MD5_CHALLENGE:
            return Md5Peer(self.identity, password)
        return MschapV2Peer(self.identity, password, self._random)
