"""One EAP conversation as IKEv2's IKE_AUTH carries it (RFC 7296 §2.16), each end's:
which `larval.eap` machines run, in what order, and what the conversation ends with.

The gateway's (`EapServerConversation`): with ``eap_id = "%any"`` it first asks the
peer's name (EAP-Identity), then runs the method, continuing the Identifiers (RFC 3748
§4.1); otherwise the name is the one configured, or the peer's IKE identity. Given a
`switch` (another connection may take the peer by its EAP identity, as strongSwan's
``find_alternative_eap_cfg``), it asks the name whatever is configured, and the method
it runs is that of the EAP configuration the switch answers for that name; where the
switch answers a reason instead, the conversation fails with it. With
``auth = "eap"`` it offers EAP-MSCHAPv2 and, if the peer's Nak names EAP-MD5, that. A
method's failure ends the conversation at once with an EAP Failure: strongSwan's peer
sends no Failure Response after an MSCHAPv2 failure, so the server's ``failed`` is where
it ends, not the acknowledgement. The name a method authenticated must be the one
expected.

EAP-TLS (``auth = "eap-tls"``, or ``auth = "eap"`` with its certificates configured,
then offered first, MSCHAPv2 or MD5 on the peer's Nak): the gateway is the TLS server
with its own certificate, and takes the client's only if it chains to the configured
CAs (`larval.trust.TrustStore`, at the wall clock's time) and carries the EAP identity;
the client takes the gateway's only if it chains to the CAs it trusts and carries the
gateway's configured identity.

The client's (`EapPeerConversation`): the peer machine of its method; with ``auth =
"eap"`` the one of whatever method the server's first method Request is.

Either ends ``done``, with ``failed`` the reason (naming the EAP identity, never a
password) or the ``msk`` (None for a method that derives none, EAP-MD5: the AUTH
payloads are then keyed with SK_pi and SK_pr).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509

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
from larval.eap.tls import CertificateCheck, EapTlsPeer, EapTlsServer, TlsCredentials
from larval.ike.auth_config import EapAuth, EapTlsAuth, TrustError
from larval.ike.identity import IdType, describe_subject, identity

__all__ = [
    "ANY",
    "MUTUAL_METHODS",
    "EapPeerConversation",
    "EapServerConversation",
    "EapSwitch",
]

#: ``eap_id = "%any"``: ask the peer its name (EAP-Identity).
ANY = "%any"
#: The methods that authenticate the server too and derive an MSK, the only ones EAP-only
#: authentication may run (RFC 5998 §4): EAP-TLS; not EAP-MSCHAPv2 nor EAP-MD5 (as
#: strongSwan's is_mutual has it).
MUTUAL_METHODS = frozenset({EapType.TLS})
_NAMES = {
    EapType.MSCHAPV2: "eap-mschapv2",
    EapType.MD5_CHALLENGE: "eap-md5",
    EapType.TLS: "eap-tls",
}
WallClock = Callable[[], datetime.datetime]
#: Given the peer's EAP identity, the EAP configuration to authenticate it with (that of
#: the connection that takes it), or why none does.
EapSwitch = Callable[[str], EapAuth | str]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EapServerConversation:
    """The gateway's side; `start` gives the first Request, `receive` answers each
    Response until ``done``."""

    def __init__(self, auth: EapAuth, peer_identity: str, random: RandomBytes = system_random,
                 wall_clock: WallClock = _now) -> None:  # fmt: skip
        self._auth = auth
        self._random = random
        self._wall_clock = wall_clock
        self._tried: set[EapType] = set()
        #: The name the peer must authenticate as; None until EAP-Identity gave it.
        self._expected: str | None = None if auth.eap_id == ANY else auth.eap_id or peer_identity
        self._machine: EapMethodMachine[Any] | None = None
        self._request_id = 0  # the Identifier of the Request outstanding
        self.method = ""  # "eap-mschapv2" or "eap-md5", once chosen
        self.identity: str | None = None
        self.done = False
        self.failed: str | None = None
        self.msk: bytes | None = None
        #: Set before `start`: the EAP identity decides the configuration (see the module).
        self.switch: EapSwitch | None = None

    def __repr__(self) -> str:
        outcome = "failed" if self.failed else "done" if self.done else "running"
        return f"<EapServerConversation {self.method or 'identity'} {self.identity!r} {outcome}>"

    def start(self) -> bytes:
        if self._expected is None or self.switch is not None:
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
            if self.switch is not None:
                chosen = self.switch(machine.identity)
                if isinstance(chosen, str):
                    return self._end_failed(chosen)
                self._auth = chosen
            return self._begin(self._first_method(), machine.identity,
                               (machine.identifier + 1) & 0xFF)  # fmt: skip
        if machine.identity is not None:
            self.identity = machine.identity
        if machine.failed is not None:
            other = self._alternative(data) if self._auth.method == "eap" else None
            if other is not None:
                assert self._expected is not None
                return self._begin(other, self._expected, (self._request_id + 1) & 0xFF)
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

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The client's EAP-TLS certificate, once it passed the check; else None."""
        return getattr(self._machine, "peer_certificate", None)

    @property
    def mutual(self) -> bool:
        """Does the method it runs authenticate this end too (`MUTUAL_METHODS`)?"""
        return self._first_method() in MUTUAL_METHODS

    def _first_method(self) -> EapType:
        method = self._auth.method
        if method == "eap-tls" or (method == "eap" and self._auth.tls is not None):
            return EapType.TLS
        return EapType.MD5_CHALLENGE if method == "eap-md5" else EapType.MSCHAPV2

    def _alternative(self, data: bytes) -> EapType | None:
        """``auth = "eap"``: the method to offer next, if `data` is a Nak naming one this
        gateway has and has not tried (EAP-TLS when it has certificates; the password
        methods)."""
        offered = (*((EapType.TLS,) if self._auth.tls is not None else ()),
                   EapType.MSCHAPV2, EapType.MD5_CHALLENGE)  # fmt: skip
        for wanted in _nak_desires(data):
            if wanted in offered and wanted not in self._tried:
                return EapType(wanted)
        return None

    def _begin(self, method: EapType, identity: str, identifier: int | None) -> bytes:
        self.method = _NAMES[method]
        self._tried.add(method)
        lookup = self._auth.passwords.get
        machine: MschapV2Server | Md5Server | EapTlsServer
        if method is EapType.TLS:
            tls = self._auth.tls
            assert tls is not None and tls.trust is not None
            self.identity = identity
            check = _tls_check(tls, _identity_of(identity), self._wall_clock)
            machine = EapTlsServer(identity, _credentials(tls), check, self._random,
                                   identifier=identifier)  # fmt: skip
        elif method is EapType.MSCHAPV2:
            machine = MschapV2Server(lookup, self._random, identifier=identifier,
                                     retries=self._auth.retries)  # fmt: skip
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


def _nak_desires(data: bytes) -> tuple[int, ...]:
    """The types a Nak `data` names (RFC 3748 §5.3.1), none if it is no Nak."""
    try:
        packet = EapPacket.decode(data)
        if packet.type is not EapType.NAK:
            return ()
        return Nak.decode(packet.data).desired
    except EapError:
        return ()


def _credentials(tls: EapTlsAuth) -> TlsCredentials:
    return TlsCredentials(tls.cert.cert, tls.cert.key.key, tls.intermediates, tls.anchors)


def _identity_of(text: str) -> tuple[IdType, bytes] | str:
    """The identity an EAP identity names, for the certificate to carry; or why none."""
    try:
        return identity(text)
    except ValueError as e:
        return f"EAP identity {text!r} is no identity a certificate carries: {e}"


def _tls_check(tls: EapTlsAuth, peer_id: tuple[IdType, bytes] | str | None,
               wall_clock: WallClock) -> CertificateCheck:  # fmt: skip
    """The other end's TLS certificate: chained to `tls.trust`'s CAs, valid now, not
    revoked, and carrying `peer_id` (None: any identity; text: the reason none can be)."""

    def check(leaf: x509.Certificate, sent: Sequence[x509.Certificate]) -> str | None:
        assert tls.trust is not None
        if isinstance(peer_id, str):
            return peer_id
        wanted = peer_id or (IdType.ID_DER_ASN1_DN, leaf.subject.public_bytes())
        try:
            tls.trust.verify(leaf, sent, wanted, wall_clock())
        except TrustError as error:
            return f"{describe_subject(leaf)}: {error}"
        return None

    return check


class EapPeerConversation:
    """The client's side: `receive` takes each Request and gives the Response, or None
    once the server's Success or Failure ended it."""

    def __init__(self, auth: EapAuth, random: RandomBytes = system_random,
                 wall_clock: WallClock = _now) -> None:  # fmt: skip
        assert auth.eap_id is not None
        self._auth = auth
        self._random = random
        self._wall_clock = wall_clock
        self.identity = auth.eap_id
        first = {"eap-md5": EapType.MD5_CHALLENGE, "eap-tls": EapType.TLS}.get(
            auth.method, EapType.MSCHAPV2 if auth.eap_id in auth.passwords else EapType.TLS
        )
        self._machine: MschapV2Peer | Md5Peer | EapTlsPeer = self._peer(first)
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

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The server's EAP-TLS certificate, once it passed the check; else None."""
        return getattr(self._machine, "peer_certificate", None)

    @property
    def mutual(self) -> bool:
        """Does the method it runs authenticate the server too (`MUTUAL_METHODS`)?"""
        return self._machine.method in MUTUAL_METHODS

    @property
    def awaiting_failure(self) -> bool:
        """The server refused and this end acknowledged it, as RFC 2759 §6 has a peer
        answer an EAP-MSCHAPv2 Failure Request (R=1 too: it has no other password to
        retry with); the server's EAP Failure ends the conversation."""
        return self.failed is not None and not self.done

    def receive(self, data: bytes) -> bytes | None:
        if not self._chosen:
            try:
                packet = EapPacket.decode(data)
            except EapError:
                packet = None
            if packet is not None and packet.type in _NAMES and self._runs(EapType(packet.type)):
                # auth = "eap": the method is the server's first method Request.
                self._chosen = True
                if packet.type is not self._machine.method:
                    self._machine = self._peer(EapType(packet.type))
        return self._machine.receive(data)

    def _runs(self, method: EapType) -> bool:
        """Whether this client has what `method` takes: certificates, or a password."""
        if method is EapType.TLS:
            return self._auth.tls is not None
        return self.identity in self._auth.passwords

    def _peer(self, method: EapType) -> MschapV2Peer | Md5Peer | EapTlsPeer:
        if method is EapType.TLS:
            tls = self._auth.tls
            assert tls is not None and tls.trust is not None
            check = _tls_check(tls, tls.server_id, self._wall_clock)
            return EapTlsPeer(self.identity, _credentials(tls), check)
        password = self._auth.passwords[self.identity]
        if method is EapType.MD5_CHALLENGE:
            return Md5Peer(self.identity, password)
        return MschapV2Peer(self.identity, password, self._random)
