"""One EAP authentication inside IKE_AUTH (RFC 7296 §2.16), each end's half: the part
that IKE_AUTH with EAP (`eap_auth`) and an EAP round of several (RFC 4739,
`auth_rounds`) share.

    HDR, SK {EAP(Response)}  -->
          <--  HDR, SK {EAP(Request)}            (as many as the method takes)
    HDR, SK {EAP(Response)}  -->
          <--  HDR, SK {EAP(Success)}
    HDR, SK {AUTH}  -->                          (the client's, over the MSK or SK_pi)
          <--  HDR, SK {AUTH, ...}               (the gateway's, over the MSK or SK_pr)

A step holds its EAP conversation (`larval.ikev2.eap_conversation`) and the octets each
end's AUTH signs (§2.15, set by the exchange, which sent the IDs); the exchange that runs
it decides what comes before the first EAP message and after the last AUTH. `what` names
the step in log lines and reasons ("EAP as 'carol'", "round 2").

The gateway's step refuses (`refuse`, an `IkeExchangeError` of AUTHENTICATION_FAILED)
with one WARNING naming the EAP identity; a method that fails is answered with EAP
Failure and N(AUTHENTICATION_FAILED) in one message, and the IKE SA closes once that is
sent. The client's step closes the IKE SA itself where the gateway refuses or answers
nonsense, telling the gateway (INFORMATIONAL { N(AUTHENTICATION_FAILED) }, §2.21.2)
unless it was the gateway that refused.

Beside the steps, what both exchanges' ends share around them: the octets each AUTH
signs, the gateway's own proof, and how the gateway's IKE SA ends or comes up once its
answer went out (`responder_answered`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from larval.crypto.ike_auth import signed_octets
from larval.crypto.prf import Prf
from larval.ike.auth_config import AuthInfo

from ..auth import AuthenticationFailed, Proof, eap_auth, verify_eap_auth
from ..constants import NotifyType, ProtocolId
from ..eap_conversation import EapPeerConversation, EapServerConversation
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..payloads import AuthPayload, EapPayload, IdPayload, NotifyPayload, Payload
from .child_sa import Agreed, child_up
from .ike_auth import _failed
from .sa import Ikev2Sa, log

#: How an end's AUTH after EAP is made (`larval.ikev2.auth.eap_auth`): injectable, so a
#: test can have one end make a wrong one.
MskAuth = Callable[[Prf, bytes | None, bytes, bytes], AuthPayload]

__all__ = [
    "EapPeerStep",
    "EapServerStep",
    "give_up",
    "initiator_failed",
    "initiator_octets",
    "notify",
    "refuse",
    "refused",
    "responder_answered",
    "responder_octets",
    "responder_proof",
]


class EapPeerStep:
    """The client's half: the EAP Responses it sends, then its AUTH over the MSK; the
    gateway's Requests and its AUTH taken. `missing`: the reason where the gateway's
    answer holds nothing of this step."""

    def __init__(self, sa: Ikev2Sa, eap: EapPeerConversation, what: str, missing: str,
                 mac: MskAuth = eap_auth) -> None:  # fmt: skip
        self._sa = sa
        self._mac = mac
        self.eap = eap
        self.what = what
        self.missing = missing
        self.octets_i = self.octets_r = b""
        self.auth_due = False  # EAP Success came: the AUTH over the MSK is next
        self._response = b""  # the EAP Response to send next

    def request(self) -> Payload:
        """HDR, SK {EAP(Response)} -->, or after EAP Success HDR, SK {AUTH} -->"""
        sa = self._sa
        if not self.auth_due:
            return EapPayload(self._response)
        assert sa._prf is not None
        return self._mac(sa._prf, self.eap.msk, sa._sk_pi, self.octets_i)

    def take(self, message: IkeMessage, now: float) -> bool:
        """<--  HDR, SK {EAP(Request)}, or the EAP Success: the Response (or the AUTH)
        due next. False where the IKE SA closed: the gateway refused (EAP Failure, an
        error notify) or answered nonsense."""
        eap = message.first(EapPayload)
        if eap is None:
            return self.refused(message, now)
        answer = self.eap.receive(eap.data)
        if answer is not None and self.eap.awaiting_failure:
            self._response = answer  # the acknowledgement of the gateway's refusal
            return True
        if self.eap.failed is not None or (self.eap.done and answer is not None):
            return self.refused(message, now)
        if self.eap.done:
            self.auth_due = True
        elif answer is None:
            return self.refused(message, now)
        else:
            self._response = answer
        return True

    def verified(self, message: IkeMessage, now: float) -> bool:
        """<--  HDR, SK {AUTH, ...}: the gateway's AUTH over the MSK. False where the
        IKE SA closed: none came, or it does not verify."""
        sa = self._sa
        assert sa._prf is not None
        auth = message.first(AuthPayload)
        if auth is None:
            return self.refused(message, now)
        try:
            verify_eap_auth(sa._prf, self.eap.msk, sa._sk_pr, self.octets_r, auth)
        except AuthenticationFailed as error:
            give_up(sa, _failed(sa, "responder", error), now)
            return False
        return True

    def refused(self, message: IkeMessage, now: float) -> bool:
        """The IKE SA closes as `refused` says, for this step; False, always."""
        refused(self._sa, message, self.what, self.eap.failed or self.missing, now)
        return False


class EapServerStep:
    """The gateway's half: the first Request, each Response answered, the client's AUTH
    over the MSK checked and answered with this end's. `where`: the step as a reason
    names it ("the initiator's EAP round", "round 2")."""

    def __init__(self, sa: Ikev2Sa, eap: EapServerConversation, where: str,
                 mac: MskAuth = eap_auth) -> None:  # fmt: skip
        self._sa = sa
        self._mac = mac
        self.eap = eap
        self.where = where
        self.octets_i = self.octets_r = b""
        self.auth_due = False  # EAP Success went out: the client's AUTH is next
        self.close_reason: str | None = None  # the method failed: close once answered

    def start(self) -> EapPayload:
        return EapPayload(self.eap.start())

    def answer(self, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {EAP(Response)} -->  answered with the next Request, the Success, or
        the Failure and N(AUTHENTICATION_FAILED) (then `close_reason` is set)."""
        eap = message.first(EapPayload)
        if eap is None:
            refuse(self.failed(f"no EAP payload in {self.where}"))
        answer = self.eap.receive(eap.data)
        if self.eap.failed is not None:
            self.close_reason = self.failed(self.eap.failed)
            return (EapPayload(answer), notify(NotifyType.AUTHENTICATION_FAILED))
        if self.eap.done:
            self.auth_due = True  # the answer is EAP Success
        return (EapPayload(answer),)

    def auth(self, message: IkeMessage) -> AuthPayload:
        """HDR, SK {AUTH} -->  checked over the MSK; this end's AUTH over it."""
        sa = self._sa
        assert sa._prf is not None
        auth = message.first(AuthPayload)
        if auth is None:
            refuse(self.failed("no AUTH after EAP Success"))
        try:
            verify_eap_auth(sa._prf, self.eap.msk, sa._sk_pi, self.octets_i, auth)
        except AuthenticationFailed as error:
            refuse(self.failed(str(error)))
        return self._mac(sa._prf, self.eap.msk, sa._sk_pr, self.octets_r)

    def failed(self, reason: str) -> str:
        return initiator_failed(self._sa, self.eap.identity, reason)


def responder_answered(sa: Ikev2Sa, close_reason: str | None,
                       auth: tuple[AuthInfo | None, AuthInfo | None] | None,
                       agreed: Agreed | None, now: float) -> None:  # fmt: skip
    """The gateway's answer went out: the IKE SA closes where the exchange failed
    (`close_reason`), or, once it is done (`auth`: how this end and the peer
    authenticated), is up with the CHILD_SA `agreed`."""
    if close_reason is not None:
        sa._close(close_reason, now)
        return
    if auth is None:
        return
    sa.auth_local, sa.auth_remote = auth
    sa._established(now)
    if agreed is not None:
        child_up(sa, *agreed)


def initiator_octets(sa: Ikev2Sa, idi: IdPayload) -> bytes:
    """What the initiator's AUTH signs for this IDi (RFC 7296 §2.15)."""
    assert sa._prf is not None
    return signed_octets(sa._init_request, sa._nonce_r, sa._prf, sa._sk_pi, idi.encode_body())


def responder_octets(sa: Ikev2Sa, idr: IdPayload) -> bytes:
    """What the responder's AUTH signs for this IDr (RFC 7296 §2.15)."""
    assert sa._prf is not None
    return signed_octets(sa._init_response, sa._nonce_i, sa._prf, sa._sk_pr, idr.encode_body())


def responder_proof(sa: Ikev2Sa, octets_r: bytes) -> Proof:
    """The gateway's own CERTs and AUTH over `octets_r`, or the refusal (one WARNING)
    where it cannot make them."""
    assert sa._prf is not None
    try:
        return sa._prover.prove(sa._prf, octets_r, sa._peer_offer)
    except AuthenticationFailed as error:
        reason = f"this end cannot prove itself: {error}"
        log.warning("%s: %s", sa._name(), reason)
        refuse(reason)


def initiator_failed(sa: Ikev2Sa, identity: str | None, reason: str) -> str:
    """The WARNING line of an initiator that failed EAP, naming its EAP identity where
    it gave one; the reason the IKE SA ends."""
    named = f"EAP identity {identity!r}: " if identity and repr(identity) not in reason else ""
    return _failed(sa, "initiator", AuthenticationFailed(named + reason, kind="eap"))


def refused(sa: Ikev2Sa, message: IkeMessage, what: str, why: str, now: float) -> None:
    """The client's IKE SA closes: the gateway refused (error notifies; the gateway logs
    it, here it is the reason to close) or answered nonsense (this end's WARNING, and
    the gateway told, RFC 7296 §2.21.2)."""
    errors = [NotifyType(n.notify_type).name for n in message.get(NotifyPayload)
              if n.notify_type < 16384]  # fmt: skip
    reason = "IKE_AUTH refused: " + ", ".join([*errors, why])
    if errors:
        log.info("%s: %s refused: %s", sa._name(), what, why)
    else:
        log.warning("%s: %s failed: %s", sa._name(), what, why)
        sa._notify_peer(NotifyType.AUTHENTICATION_FAILED)
    sa._close(reason, now)


def give_up(sa: Ikev2Sa, reason: str, now: float) -> None:
    """The client's IKE SA closes, the gateway told (RFC 7296 §2.21.2)."""
    sa._notify_peer(NotifyType.AUTHENTICATION_FAILED)
    sa._close(reason, now)


def notify(notify_type: NotifyType) -> NotifyPayload:
    return NotifyPayload(ProtocolId.NONE, notify_type)


def refuse(reason: str) -> NoReturn:
    raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
