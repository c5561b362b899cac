"""IKE_AUTH with EAP (RFC 7296 §2.16), both roles: the client (`EapIkeAuth`) proves
itself by EAP, the gateway (`EapIkeAuthResponder`) by its own prover (a certificate, or
the PSK) and checks the client by EAP.

    HDR, SK {IDi, [CERTREQ,] SAi2, TSi, TSr}  -->          (no AUTH: EAP, please)
          <--  HDR, SK {IDr, [CERT,] AUTH, EAP(Request)}
    HDR, SK {EAP(Response)}  -->
          <--  HDR, SK {EAP(Request)}                     (as many as the method takes)
    HDR, SK {EAP(Response)}  -->
          <--  HDR, SK {EAP(Success)}
    HDR, SK {AUTH}  -->                                   (keyed with the MSK, or SK_pi)
          <--  HDR, SK {AUTH, SAr2, TSi, TSr}             (keyed with the MSK, or SK_pr)

Both ends' first AUTH (the gateway's) and last (each end's, over the MSK) sign the same
octets as without EAP (§2.15): each end's IKE_SA_INIT message, the peer's nonce and the
MAC of its ID. The EAP messages and the AUTHs over the MSK are `eap_step`'s, which the
rounds of `auth_rounds` run too; where another connection may take the peer by its EAP
identity, the gateway asks it (EAP-Identity) and may switch (`select.EapIdentitySwitch`)
before the method runs. The CHILD_SA is the one the first request proposed; it is
answered once the final AUTH verified. Each task is not `done` until its last round
trip, so the task manager sends the next request at once, and the session hands the
responder's task each further request of the exchange (`larval.ikev2.exchanges.tasks`).

An EAP failure on the gateway (a wrong password, an unknown user, an identity other
than the one configured, a malformed EAP message) is answered with EAP Failure and
N(AUTHENTICATION_FAILED) in one message, with one WARNING line naming the EAP identity
and the reason, never a password; the IKE SA closes and nothing is installed. A client
that stops mid-EAP leaves the gateway's IKE SA half-open until its timeout; one that
says it gives up (INFORMATIONAL { N(AUTHENTICATION_FAILED) }) closes it at once.

The client acknowledges a refusal inside the method (an EAP-MSCHAPv2 Failure Request,
R=1 too: it has no other password to retry with) and closes on the gateway's EAP
Failure.

EAP-only authentication (RFC 5998): a gateway whose own side is EAP (`EapProver`) leaves
out its CERT and AUTH and proves itself by the method and its MSK AUTH alone, where the
client announced N(EAP_ONLY_AUTHENTICATION) and the method is mutual (§4,
`larval.ikev2.eap_conversation.MUTUAL_METHODS`: EAP-TLS, not EAP-MSCHAPv2 nor EAP-MD5);
a client whose peer side is EAP announces it and takes a gateway without AUTH under the
same rule, before it answers the method. Anything else is refused with the reason.

    HDR, SK {IDi, SAi2, TSi, TSr, N(EAP_ONLY_AUTHENTICATION)}  -->
          <--  HDR, SK {IDr, EAP(Request)}                 (no CERT, no AUTH)
    ...                                                    (EAP, then both MSK AUTHs)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cryptography import x509

from larval.ike.auth_config import AuthInfo
from larval.ike.identity import describe_identity, describe_issuer, describe_subject

from ..auth import AuthenticationFailed, EapProver, EapVerifier, eap_auth
from ..constants import AuthMethod, ExchangeType, NotifyType, PayloadType, ProtocolId
from ..eap_conversation import EapServerConversation
from ..message import IkeMessage
from ..payloads import (
    AuthPayload,
    CertReqPayload,
    EapPayload,
    IdPayload,
    NotifyPayload,
    Payload,
)
from .auth_rounds import RoundsIkeAuthResponder
from .child_sa import Agreed
from .eap_step import (
    EapPeerStep,
    EapServerStep,
    give_up,
    initiator_octets,
    refuse,
    responder_answered,
    responder_octets,
    responder_proof,
)
from .ike_auth import (
    IkeAuth,
    IkeAuthResponder,
    _failed,
    _id_payload,
    _peer_id_ok,
    _respond_cfg_and_child,
    _verify_peer,
)
from .sa import Ikev2Sa, log
from .select import Candidate, Candidates, EapIdentitySwitch, select_connection
from .tasks import AnswerTask

__all__ = ["EapIkeAuth", "EapIkeAuthResponder", "ike_auth_responder"]


class _IkeAuthResponders:
    """The responder's IKE_AUTH task, for the session's table: with EAP when this end
    checks the peer by it."""

    exchange = ExchangeType.IKE_AUTH

    def __call__(self, sa: Ikev2Sa, alternatives: Sequence[Candidate] = ()) -> AnswerTask:
        """`alternatives`: the connections the first request fits, best first, which the
        peer's EAP identity may still choose among (`select.EapIdentitySwitch`)."""
        if sa._candidates is not None:
            return _SelectingResponder(sa, sa._candidates)
        if len(sa.config.remote_rounds) > 1 or len(sa.config.local_rounds) > 1:
            return RoundsIkeAuthResponder(sa, alternatives)
        if isinstance(sa._verifier, EapVerifier):
            return EapIkeAuthResponder(sa, alternatives)
        return IkeAuthResponder(sa)


class _SelectingResponder(AnswerTask):
    """The responder's IKE_AUTH where more than one connection may be the IKE SA's: the
    first request picks the connection (`select.select_connection`), once: the IKE SA
    has no candidates after it. The IKE_AUTH task of that connection (with EAP or
    without) then takes that request and the rest of the exchange, given the other
    connections that fit as the alternatives its EAP identity may still choose among."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: Ikev2Sa, candidates: Candidates) -> None:
        super().__init__(sa)
        self._candidates = candidates
        self._task: AnswerTask | None = None
        self.done = False

    def process(self, message: IkeMessage, now: float) -> None:
        if self._task is None:
            alternatives = select_connection(self._sa, self._candidates(), message)
            self._sa._candidates = None
            self._task = ike_auth_responder(self._sa, alternatives)
        self._task.process(message, now)
        self.done = self._task.done

    def build(self, now: float) -> tuple[Payload, ...]:
        assert self._task is not None
        return self._task.build(now)

    def answered(self, now: float) -> None:
        assert self._task is not None
        self._task.answered(now)
        self.done = self._task.done


ike_auth_responder = _IkeAuthResponders()


class EapIkeAuth(IkeAuth):
    """The client: the first request without AUTH, then each EAP Response, then the AUTH
    over the MSK (`EapPeerStep`); the gateway's certificate (or PSK) AUTH is checked in
    its first answer and its MSK AUTH in its last."""

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        assert isinstance(sa._prover, EapProver)
        eap = sa._prover.conversation(sa._random, sa._wall_clock)
        self._step = EapPeerStep(sa, eap, f"EAP as {eap.identity!r}",
                                 "the gateway's answer holds no EAP", eap_auth)  # fmt: skip
        self._first_answered = False
        self._peer_info: AuthInfo | None = None
        self.done = False

    def build(self, now: float) -> tuple[Payload, ...]:
        sa = self._sa
        assert sa._prf is not None
        if self._first_answered:
            return (self._step.request(),)
        child = sa._pending_child
        assert child is not None
        idi = _id_payload(sa, PayloadType.IDi)
        self._step.octets_i = initiator_octets(sa, idi)
        certreq = sa._verifier.certreq()
        # RFC 5998 §3: announced where the gateway may prove itself by EAP only.
        eap_only = [NotifyPayload(ProtocolId.NONE, NotifyType.EAP_ONLY_AUTHENTICATION)] \
            if isinstance(sa._verifier, EapVerifier) else []  # fmt: skip
        # No AUTH: that the initiator means EAP (RFC 7296 §2.16).
        return (idi, *([certreq] if certreq is not None else []), *self._first_child(child),
                *eap_only)  # fmt: skip

    def process(self, message: IkeMessage, now: float) -> None:
        step = self._step
        if step.auth_due:
            self._final(message, now)
            return
        if not self._first_answered:
            if not self._gateway_proved(message, now):
                self.done = True
                return
            self._first_answered = True
        if not step.take(message, now):
            self.done = True

    def _gateway_proved(self, message: IkeMessage, now: float) -> bool:
        """<--  HDR, SK {IDr, [CERT+,] AUTH, EAP}: the gateway proves itself first (or,
        EAP-only, by its method later). False where the IKE SA closed."""
        sa, step = self._sa, self._step
        assert sa._prf is not None
        idr, auth = message.first(IdPayload), message.first(AuthPayload)
        if idr is not None and auth is None and message.first(EapPayload) is not None:
            # EAP-only (RFC 5998): taken where announced, with a mutual method (§4).
            if not isinstance(sa._verifier, EapVerifier) or not step.eap.mutual:
                give_up(sa, _eap_only_refused(sa, step.eap.method), now)
                return False
            if not _peer_id_ok(sa, idr):
                give_up(sa, _failed(sa, "responder", AuthenticationFailed(
                    "identity is not the one configured", kind="identity")), now)  # fmt: skip
                return False
            self._peer_info = AuthInfo(step.eap.method)  # proved by the method's MSK
        elif idr is None or auth is None:
            return step.refused(message, now)
        step.octets_r = responder_octets(sa, idr)
        if self._peer_info is None:
            try:
                self._peer_info = _verify_peer(sa, idr, message, step.octets_r)
            except AuthenticationFailed as error:
                give_up(sa, _failed(sa, "responder", error), now)
                return False
        return True

    def _final(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {AUTH, SAr2, TSi, TSr}: the gateway's AUTH over the MSK."""
        sa, eap = self._sa, self._step.eap
        self.done = True
        if not self._step.verified(message, now):
            return
        sa.auth_local = AuthInfo(eap.method, identity=eap.identity)
        peer = self._peer_info
        if peer is not None and peer.method == eap.method:  # EAP-only: its TLS certificate
            peer = _with_certificate(peer, eap.peer_certificate)
        sa.auth_remote = peer
        self._child_taken(message, now)


class EapIkeAuthResponder(AnswerTask):
    """The gateway: answers the first request with its own AUTH and the first EAP
    Request, each EAP Response with the next Request, and the client's AUTH over the
    MSK with its own and the CHILD_SA (`EapServerStep`; see the module's docstring)."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: Ikev2Sa, alternatives: Sequence[Candidate] = ()) -> None:
        super().__init__(sa)
        self.done = False
        self._alternatives = alternatives  # the peer's EAP identity may choose among them
        self._first: IkeMessage | None = None  # its SAi2, TSi, TSr are answered last
        self._step: EapServerStep | None = None
        self._local_info: AuthInfo | None = None
        self._agreed: Agreed | None = None
        self._close_reason: str | None = None

    @property
    def _eap(self) -> EapServerConversation | None:
        """The EAP conversation, once the first request opened it."""
        return self._step.eap if self._step is not None else None

    def process(self, message: IkeMessage, now: float) -> None:
        step = self._step
        if step is None:
            self._answer = self._first_round(message)
        elif step.auth_due:
            self._answer = self._auth_round(step, message)
        else:
            self._answer = step.answer(message)
            if step.close_reason is not None:
                self._close_reason, self.done = step.close_reason, True

    def _first_round(self, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {IDi, [CERTREQ,] SAi2, TSi, TSr} -->"""
        sa = self._sa
        assert sa._prf is not None and isinstance(sa._verifier, EapVerifier)
        idi = message.first(IdPayload)
        if idi is None:
            refuse("IKE_AUTH without IDi")
        if message.first(AuthPayload) is not None:
            auth = message.first(AuthPayload)
            assert auth is not None
            reason = _failed(sa, "initiator", AuthenticationFailed(
                f"AUTH of method {AuthMethod(auth.method).name} where this connection "
                "authenticates the initiator by EAP", kind="method"))  # fmt: skip
            refuse(reason)
        if not _peer_id_ok(sa, idi):
            refuse(_failed(sa, "initiator", AuthenticationFailed(
                "identity is not the one configured", kind="identity")))  # fmt: skip
        certreq = message.first(CertReqPayload) is not None
        sa._peer_offer = dataclasses.replace(sa._peer_offer,
                                             certreq=sa._peer_offer.certreq or certreq)  # fmt: skip
        idr = _id_payload(sa, PayloadType.IDr)
        self._first = message
        ike_identity = describe_identity(idi.id_type, idi.data)
        eap = sa._verifier.conversation(ike_identity, sa._random, sa._wall_clock)
        eap.switch = EapIdentitySwitch.among(sa, self._alternatives, ike_identity)
        step = self._step = EapServerStep(sa, eap, "the initiator's EAP round", eap_auth)
        step.octets_i = initiator_octets(sa, idi)
        step.octets_r = responder_octets(sa, idr)
        if isinstance(sa._prover, EapProver):
            # RFC 5998: this end proves itself by the method and its MSK AUTH alone.
            _eap_only_checked(sa, message, eap)
            return (idr, step.start())
        proof = responder_proof(sa, step.octets_r)
        self._local_info = proof.info
        return (idr, *proof.certs, proof.auth, step.start())

    def _auth_round(self, step: EapServerStep, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {AUTH} -->  (over the MSK): this end's AUTH and the CHILD_SA."""
        assert self._first is not None
        mine = step.auth(message)
        # The lease is the EAP identity's, the one the peer proved (issue's §1 rule).
        idi = self._first.first(IdPayload)
        identity = step.eap.identity or (
            describe_identity(idi.id_type, idi.data) if idi is not None else ""
        )
        child_payloads, self._agreed = _respond_cfg_and_child(self._sa, self._first, identity)
        self.done = True
        return (mine, *child_payloads)

    def answered(self, now: float) -> None:
        eap = self._eap
        auth = None
        if self.done and eap is not None:
            remote = AuthInfo(eap.method, identity=eap.identity or "")
            auth = (self._local_info or AuthInfo(eap.method),  # EAP-only: the method
                    _with_certificate(remote, eap.peer_certificate))  # fmt: skip
        responder_answered(self._sa, self._close_reason, auth, self._agreed, now)


def _with_certificate(info: AuthInfo | None, cert: x509.Certificate | None) -> AuthInfo | None:
    """`info` of a peer that proved itself by EAP-TLS, with its TLS certificate's subject
    and issuer, as status shows a certificate's (the EAP identity alone says less)."""
    if info is None or cert is None:
        return info
    return dataclasses.replace(info, subject=describe_subject(cert),
                               issuer=describe_issuer(cert))  # fmt: skip


def _eap_only_checked(sa: Ikev2Sa, message: IkeMessage, eap: EapServerConversation) -> None:
    """A gateway that authenticates by EAP only (RFC 5998 §3) does so when the initiator
    announced it (N(EAP_ONLY_AUTHENTICATION)) and the method is mutual (§4)."""
    if message.notify(NotifyType.EAP_ONLY_AUTHENTICATION) is None:
        reason = ("this end authenticates by EAP only (RFC 5998), and the initiator does not "
                  "announce EAP_ONLY_AUTHENTICATION")  # fmt: skip
    elif not eap.mutual:
        method = sa.config.remote_eap.method if sa.config.remote_eap else "its method"
        reason = (f"this end would authenticate by EAP only (RFC 5998) with {method}, "
                  "which is not a mutual method")  # fmt: skip
    else:
        return
    log.warning("%s: %s", sa._name(), reason)
    refuse(reason)


def _eap_only_refused(sa: Ikev2Sa, method: str) -> str:
    """A gateway that answers IDr and EAP without its AUTH authenticates by EAP only (RFC
    5998). A client takes that only with a mutual, key-generating method (§4), and larval
    runs none: it refuses before it answers the method, so that an impostor learns no
    MSCHAPv2 response to guess the password from."""
    reason = (f"authentication of the responder failed: it sends no AUTH (EAP-only "
              f"authentication, RFC 5998), and {method} is not a mutual method")  # fmt: skip
    log.warning("%s: %s", sa._name(), reason)
    return reason
