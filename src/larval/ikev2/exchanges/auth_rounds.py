"""IKE_AUTH of several authentication rounds (RFC 4739), both roles: the initiator
proves itself first with its certificate (or the PSK) and then by EAP, as a road warrior
with a machine certificate and a user's password does; the responder proves itself once.

    <--  HDR, SA, KE, Nr, N(MULTIPLE_AUTH_SUPPORTED)          (IKE_SA_INIT's response)
    HDR, SK {IDi, [CERT+,] [CERTREQ,] AUTH, N(MULTIPLE_AUTH_SUPPORTED),
             N(ANOTHER_AUTH_FOLLOWS), [CP,] SAi2, TSi, TSr}  -->
          <--  HDR, SK {IDr, [CERT+,] AUTH}
    HDR, SK {IDi}  -->                                        (round 2: EAP, no AUTH)
          <--  HDR, SK {EAP(Request)}
    HDR, SK {EAP(Response)}  -->                              (as many as the method takes)
          <--  HDR, SK {EAP(Success)}
    HDR, SK {AUTH}  -->                                       (over the MSK, or SK_pi)
          <--  HDR, SK {AUTH, [CP,] SAr2, TSi, TSr}           (over the MSK, or SK_pr)

The responder announces RFC 4739 in IKE_SA_INIT, the initiator in its first IKE_AUTH
(§3), each where its connection has more than one round on a side. Each of the
initiator's rounds signs its own IDi (the identity that round proves, §3.1: a round
without ``id`` proves the connection's); the responder's AUTHs all sign its one IDr. An
AUTH that ends a round is followed by N(ANOTHER_AUTH_FOLLOWS) when another round comes.
The CHILD_SA (and the virtual address) the first request asked for is answered with the
last round, keyed by the last EAP identity proved.

The rounds are the connection's `IkeConfig.local_rounds` and ``remote_rounds``: the
first round is the connection's own prover or verifier (a certificate or the PSK), each
further round is EAP, run by the EAP step IKE_AUTH with EAP runs too (`eap_step`). Where
another connection may take the peer by the EAP identity of a round, the gateway asks it
and may switch (`select.EapIdentitySwitch`; that connection must take round 1 too). A
peer that skips a round, adds one, or sends AUTH where EAP is due fails the IKE SA as a
failed authentication, its WARNING naming the round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from larval.ike.auth_config import AuthInfo, AuthRound
from larval.ike.config import IkeConfig
from larval.ike.identity import IdType, describe_identity

from ..auth import AuthenticationFailed, PeerClaim, verifier_for
from ..constants import ExchangeType, NotifyType, PayloadType
from ..eap_conversation import EapPeerConversation, EapServerConversation
from ..message import IkeMessage
from ..payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    IdPayload,
    NotifyPayload,
    Payload,
)
from .child_sa import Agreed
from .eap_step import (
    EapPeerStep,
    EapServerStep,
    give_up,
    initiator_failed,
    initiator_octets,
    notify,
    refuse,
    refused,
    responder_answered,
    responder_octets,
    responder_proof,
)
from .ike_auth import IkeAuth, _failed, _id_payload, _respond_cfg_and_child, _verify_peer
from .sa import Ikev2Sa, log
from .select import Candidate, EapIdentitySwitch
from .tasks import AnswerTask

__all__ = [
    "RoundsIkeAuth",
    "RoundsIkeAuthResponder",
    "has_rounds",
    "multiple_auth_notify",
    "rounds_refused",
]


def has_rounds(config: IkeConfig) -> bool:
    """Does the connection authenticate a side in more than one round?"""
    return len(config.local_rounds) > 1 or len(config.remote_rounds) > 1


def multiple_auth_notify(sa: Ikev2Sa) -> list[NotifyPayload]:
    """N(MULTIPLE_AUTH_SUPPORTED), for IKE_SA_INIT's response and the first IKE_AUTH
    request, where the connection has rounds (RFC 4739 §3). A responder that may still
    move the IKE SA to another connection at IKE_AUTH announces it if any of them has."""
    configs = [sa.config]
    if sa._candidates is not None:
        configs += [c.config for c in sa._candidates()]
    if not any(has_rounds(config) for config in configs):
        return []
    return [notify(NotifyType.MULTIPLE_AUTH_SUPPORTED)]


def rounds_refused(sa: Ikev2Sa) -> str | None:
    """Why the initiator cannot go on to IKE_AUTH: its connection has rounds and the
    responder did not announce that it takes them (RFC 4739 §3); None if it can."""
    rounds = len(sa.config.local_rounds)
    if rounds > 1 and not sa._peer_offer.multiple_auth:
        return (f"this end authenticates in {rounds} rounds and the responder does not "
                "announce MULTIPLE_AUTH_SUPPORTED (RFC 4739)")  # fmt: skip
    if len(sa.config.remote_rounds) > 1:
        return (f"the connection asks the responder for {len(sa.config.remote_rounds)} "
                "rounds; larval as the initiator checks one")  # fmt: skip
    return None


class RoundsIkeAuth(IkeAuth):
    """The initiator: its first round with the connection's prover, then each further
    round by EAP (`EapPeerStep`; see the module's docstring); the responder's one AUTH
    checked in its first answer, its MSK AUTH in the answer that ends each EAP round."""

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._rounds = sa.config.local_rounds
        self._round = 0  # the round under way, 0 the first
        self._phase = "id"  # a further round's: its IDi due (id), then its EAP (eap)
        self._step: EapPeerStep | None = None  # a further round's
        self._octets_r = b""
        self._peer_info: AuthInfo | None = None
        self._infos: list[AuthInfo] = []  # this end's rounds done
        self.done = False

    def build(self, now: float) -> tuple[Payload, ...]:
        sa, step = self._sa, self._step
        assert sa._prf is not None
        if step is None:
            payloads = super().build(now)
            at = next(i for i, p in enumerate(payloads) if isinstance(p, AuthPayload)) + 1
            notifies = (*multiple_auth_notify(sa), notify(NotifyType.ANOTHER_AUTH_FOLLOWS))
            return (*payloads[:at], *notifies, *payloads[at:])
        if self._phase == "id":
            this = self._rounds[self._round]
            id_type, data = this.id or sa.config.local_id
            idi = IdPayload(PayloadType.IDi, id_type, data)
            step.octets_i = initiator_octets(sa, idi)
            return (idi,)  # no AUTH: EAP, please (RFC 7296 §2.16)
        more = step.auth_due and self._round + 1 < len(self._rounds)
        return (step.request(), *([notify(NotifyType.ANOTHER_AUTH_FOLLOWS)] if more else []))

    def process(self, message: IkeMessage, now: float) -> None:
        sa, step = self._sa, self._step
        assert sa._prf is not None
        if message.notify(NotifyType.ANOTHER_AUTH_FOLLOWS) is not None:
            self._give_up("the responder announces another round of its own, and this "
                          "connection checks one", now)  # fmt: skip
        elif step is None:
            self._first_answered(message, now)
        elif step.auth_due:
            self._auth_answered(step, message, now)
        elif step.take(message, now):
            self._phase = "eap"  # a Request (or the Success) of this round's EAP
        else:
            self.done = True

    def _first_answered(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {IDr, [CERT+,] AUTH}: the responder, and our first round taken."""
        sa = self._sa
        assert sa._prf is not None
        idr, auth = message.first(IdPayload), message.first(AuthPayload)
        if idr is None or auth is None:
            self.done = True
            refused(sa, message, "round 1", "no answer of round 1 in the responder's message",
                    now)  # fmt: skip
            return
        self._octets_r = responder_octets(sa, idr)
        try:
            self._peer_info = _verify_peer(sa, idr, message, self._octets_r)
        except AuthenticationFailed as error:
            self._give_up(_failed(sa, "responder", error), now)
            return
        assert self._info is not None
        self._infos.append(self._info)
        self._next_round()

    def _next_round(self) -> None:
        self._round += 1
        this = self._rounds[self._round]
        assert this.eap is not None  # the configuration's rule: a further round is EAP
        n = self._round + 1
        eap = EapPeerConversation(this.eap, self._sa._random)
        self._step = EapPeerStep(self._sa, eap, f"round {n}",
                                 f"no answer of round {n} in the responder's message")  # fmt: skip
        self._step.octets_r = self._octets_r
        self._phase = "id"

    def _auth_answered(self, step: EapPeerStep, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {AUTH, [SAr2, TSi, TSr]}: the responder's AUTH over the MSK."""
        sa = self._sa
        if not step.verified(message, now):
            self.done = True
            return
        self._infos.append(AuthInfo(step.eap.method, identity=step.eap.identity))
        if self._round + 1 < len(self._rounds):
            self._next_round()
            return
        self.done = True
        first, *further = self._infos
        sa.auth_local = dataclasses.replace(first, rounds=tuple(further))
        sa.auth_remote = self._peer_info
        self._child_taken(message, now)

    def _give_up(self, reason: str, now: float) -> None:
        self.done = True
        give_up(self._sa, reason, now)


class RoundsIkeAuthResponder(AnswerTask):
    """The responder: the first request's AUTH checked with the connection's verifier and
    answered with this end's IDr and AUTH; each further round's IDi answered with EAP, its
    Responses with Requests, its MSK AUTH with this end's; the last with the CHILD_SA."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: Ikev2Sa, alternatives: Sequence[Candidate] = ()) -> None:
        super().__init__(sa)
        self._alternatives = alternatives  # an EAP round's identity may choose among them
        self._round = 0  # the round under way, 0 the first
        self._phase = "first"  # first | id | eap
        self._first: IkeMessage | None = None  # its CP, SAi2, TSi, TSr are answered last
        self._identity = ""  # the last identity proved: the lease's
        self._step: EapServerStep | None = None  # a further round's
        self._octets_r = b""
        self._infos: list[AuthInfo] = []  # the peer's rounds done
        self._local_info: AuthInfo | None = None
        self._agreed: Agreed | None = None
        self._close_reason: str | None = None
        self._octets_first = b""  # what round 1's AUTH signed, for an alternative to check
        self._round_id: tuple[IdType, bytes] = (IdType.ID_FQDN, b"")  # the round's IDi
        self.done = False

    @property
    def _rounds(self) -> tuple[AuthRound, ...]:
        """The connection's, which the EAP identity may switch (`EapIdentitySwitch`)."""
        return self._sa.config.remote_rounds

    def process(self, message: IkeMessage, now: float) -> None:
        step = {"first": self._first_round, "id": self._id_round,
                "eap": self._eap_round}[self._phase]  # fmt: skip
        self._answer = step(message)

    def _first_round(self, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {IDi, [CERT+,] [CERTREQ,] AUTH, N(ANOTHER_AUTH_FOLLOWS), ...} -->"""
        sa = self._sa
        assert sa._prf is not None
        idi, auth = message.first(IdPayload), message.first(AuthPayload)
        if len(sa.config.local_rounds) > 1:
            reason = (f"this end would prove itself in {len(sa.config.local_rounds)} rounds; "
                      "larval as the responder proves itself in one")  # fmt: skip
            log.warning("%s: %s", sa._name(), reason)
            refuse(reason)
        if idi is None:
            refuse("IKE_AUTH without IDi")
        if auth is None:
            refuse(self._failed(f"no AUTH in round 1, which is {self._rounds[0].method}"))
        octets_i = initiator_octets(sa, idi)
        certreq = message.first(CertReqPayload) is not None
        sa._peer_offer = dataclasses.replace(sa._peer_offer,
                                             certreq=sa._peer_offer.certreq or certreq)  # fmt: skip
        idr = _id_payload(sa, PayloadType.IDr)
        self._octets_r = responder_octets(sa, idr)
        try:
            info = _verify_peer(sa, idi, message, octets_i)
        except AuthenticationFailed as error:
            refuse(_failed(sa, "initiator", error))
        proof = responder_proof(sa, self._octets_r)
        self._local_info, self._first, self._octets_first = proof.info, message, octets_i
        self._identity = describe_identity(idi.id_type, idi.data)
        self._infos.append(info)
        return (idr, *proof.certs, proof.auth, *self._round_done(message))

    def _id_round(self, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {IDi} -->  a further round, by EAP."""
        sa = self._sa
        assert sa._prf is not None
        this = self._rounds[self._round]
        idi = message.first(IdPayload)
        if idi is None:
            refuse(self._failed(f"no IDi to open round {self._round + 1}"))
        if message.first(AuthPayload) is not None:
            refuse(self._failed(f"AUTH in round {self._round + 1}, which is {this.method}"))
        if this.id_match is not None and not this.id_match(idi.id_type, idi.data):
            refuse(self._failed(f"identity {describe_identity(idi.id_type, idi.data)} in round "
                                 f"{self._round + 1} is not the one configured"))  # fmt: skip
        assert this.eap is not None  # the configuration's rule: a further round is EAP
        self._identity = describe_identity(idi.id_type, idi.data)
        self._round_id = (IdType(idi.id_type), idi.data)
        eap = EapServerConversation(this.eap, self._identity, sa._random)
        eap.switch = EapIdentitySwitch.among(sa, self._alternatives, self._identity,
                                             self._round, self._takes_round_one)  # fmt: skip
        step = self._step = EapServerStep(sa, eap, f"round {self._round + 1}")
        step.octets_i = initiator_octets(sa, idi)
        step.octets_r = self._octets_r
        self._phase = "eap"
        return (step.start(),)

    def _eap_round(self, message: IkeMessage) -> tuple[Payload, ...]:
        """HDR, SK {EAP(Response)} -->, then HDR, SK {AUTH, [N(ANOTHER_AUTH_FOLLOWS)]} -->
        (over the MSK)"""
        step = self._step
        assert step is not None
        if not step.auth_due:
            payloads = step.answer(message)
            if step.close_reason is not None:
                self._close_reason, self.done = step.close_reason, True
            return payloads
        mine = step.auth(message)
        self._identity = step.eap.identity or self._identity
        self._infos.append(AuthInfo(step.eap.method, identity=step.eap.identity or ""))
        return (mine, *self._round_done(message))

    def _round_done(self, message: IkeMessage) -> tuple[Payload, ...]:
        """After a round: the next (the initiator announced it, and the connection has
        it), or the CP and CHILD_SA of the first request once the last is done."""
        sa = self._sa
        another = message.notify(NotifyType.ANOTHER_AUTH_FOLLOWS) is not None
        done, rounds = self._round + 1, len(self._rounds)
        if another and done == rounds:
            refuse(self._failed(f"it announces round {done + 1} (ANOTHER_AUTH_FOLLOWS), and "
                                 f"this connection has {rounds}"))  # fmt: skip
        if not another and done < rounds:
            missing = self._rounds[done].method
            refuse(self._failed(f"it ends after round {done} of {rounds}: round {done + 1}, "
                                 f"{missing}, is missing"))  # fmt: skip
        self._round = done
        if another:
            self._phase = "id"
            return ()
        assert self._first is not None
        child_payloads, self._agreed = _respond_cfg_and_child(sa, self._first, self._identity)
        self.done = True
        return child_payloads

    def answered(self, now: float) -> None:
        auth = None
        if self.done and self._close_reason is None:
            first, *further = self._infos
            auth = (self._local_info, dataclasses.replace(first, rounds=tuple(further)))
        responder_answered(self._sa, self._close_reason, auth, self._agreed, now)

    def _takes_round_one(self, candidate: Candidate) -> str | None:
        """Would the alternative have taken the rounds done so far: round 1 (verified
        again with its own verifier) and this round's IDi? Why not, or None."""
        sa, config = self._sa, candidate.config
        assert self._first is not None and sa._prf is not None
        if len(config.local_rounds) > 1:
            return "proves this end in more than one round"
        this = config.remote_rounds[self._round]
        if this.id_match is not None and not this.id_match(*self._round_id):
            return f"another identity in round {self._round + 1}"
        if config.name == sa.config.name:
            return None
        idi, auth = self._first.first(IdPayload), self._first.first(AuthPayload)
        assert idi is not None and auth is not None
        claim = PeerClaim((idi.id_type, idi.data), auth, self._first.get(CertPayload))
        try:
            verifier_for(config).verify(sa._prf, self._octets_first, claim, sa._wall_clock())
        except AuthenticationFailed as error:
            return f"round 1: {error}"
        return None

    def _failed(self, reason: str) -> str:
        """The WARNING line of an initiator that failed a round, naming its EAP identity."""
        identity = self._step.eap.identity if self._step is not None else None
        return initiator_failed(self._sa, identity, reason)
