"""IKE_AUTH (RFC 7296 §1.2), both roles: each end proves its identity with its `Prover`
and checks the peer's with its `Verifier` (`larval.ikev2.auth`), and the first CHILD_SA
comes with it.

    HDR, SK {IDi, [CERT+,] [CERTREQ,] AUTH, [N(USE_TRANSPORT_MODE),] SAi2, TSi, TSr}  -->
          <--  HDR, SK {IDr, [CERT+,] AUTH, [N(USE_TRANSPORT_MODE),] SAr2, TSi, TSr}

The prover and the verifier are the steps that know the methods; the exchange hands them
the octets each end signs (§2.15), the peer's CERTs and what the peer announced in
IKE_SA_INIT. The initiator sends no IDr: the responder proves itself as whom it is
configured to be. A method of more than one round trip (EAP, §2.16) is a task that is
not `done` after its first: the task manager sends its next request, and the session
hands the responder's task the next request, with the state held meanwhile.

A peer that asks for a virtual address (CP(CFG_REQUEST)) is answered in the same
response once it has proved itself (`config_payload`), and its CHILD_SA's TSi narrowed to
the address; an initiator whose connection has `vips` asks for them.

A responder of one round refuses an initiator that announces another
(N(ANOTHER_AUTH_FOLLOWS), RFC 4739): rounds are `auth_rounds`'.

A peer that does not prove itself fails the IKE SA with one WARNING line naming the
reason (and the subject of the certificate it sent): the responder answers
AUTHENTICATION_FAILED and closes; the initiator closes and tells the responder with an
INFORMATIONAL { N(AUTHENTICATION_FAILED) } sent once, as strongSwan does (§2.21.2).
Nothing is installed either way.
"""

from __future__ import annotations

import dataclasses

from larval.crypto.ike_auth import signed_octets
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig
from larval.ike.events import ChildSaFailed
from larval.ike.identity import describe_identity

from ..auth import AuthenticationFailed, PeerClaim
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..negotiate import choose, narrow, networks_of, selectors_for, to_wire
from ..payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    IdPayload,
    NotifyPayload,
    Payload,
)
from ..render import describe
from ..sa_payload import SaPayload
from ..ts_payload import TsPayload
from .child_sa import Agreed, answered_mode, child_refused_after_all, child_up
from .config_payload import client_request, own_ts, peer_ts, read_config, respond_cfg
from .proposals import (
    asked_policy,
    log_no_proposal,
    proposed_networks,
    strip_dh,
    transport_notify,
    without_dh,
)
from .sa import Ikev2Sa, log
from .tasks import AnswerTask, ExchangeTask

__all__ = ["IkeAuth", "IkeAuthResponder"]


class IkeAuth(ExchangeTask):
    """The initiator: HDR, SK {IDi, [CERT+,] [CERTREQ,] AUTH, SAi2, TSi, TSr} -->, for the
    CHILD_SA the IKE SA was opened for (`_pending_child`), and the answer taken."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._spi_in = 0
        self._info: AuthInfo | None = None

    def build(self, now: float) -> tuple[Payload, ...]:
        sa, child = self._sa, self._sa._pending_child
        assert child is not None and sa._prf is not None
        idi = _id_payload(sa, PayloadType.IDi)
        octets = signed_octets(sa._init_request, sa._nonce_r, sa._prf, sa._sk_pi,
                               idi.encode_body())  # fmt: skip
        # IkeSaInit checked that this end can sign for the peer (`Prover.check`).
        proof = sa._prover.prove(sa._prf, octets, sa._peer_offer)
        self._info = proof.info
        certreq = sa._verifier.certreq()
        return (idi, *proof.certs, *([certreq] if certreq is not None else []), proof.auth,
                *self._first_child(child))  # fmt: skip

    def _first_child(self, child: ChildConfig) -> tuple[Payload, ...]:
        """What follows AUTH in the first request: [CP(CFG_REQUEST),]
        [N(USE_TRANSPORT_MODE),] SAi2, TSi, TSr, with a new inbound SPI."""
        sa = self._sa
        self._spi_in = sa._allocate_spi()
        spi = self._spi_in.to_bytes(4, "big")
        # No KE in IKE_AUTH, so no PFS for its CHILD_SA: DH transforms are left out, as
        # strongSwan does (RFC 7296 §1.2).
        proposals = tuple(
            to_wire(n + 1, ProtocolId.ESP, spi, suite)
            for n, suite in enumerate(without_dh(child.proposals))
        )
        payloads: list[Payload] = []
        if sa.config.vips:  # RFC 7296 §2.19: CP(CFG_REQUEST) before SAi2, as strongSwan
            payloads.append(client_request(sa.config.vips))
        if child.mode == "transport":
            payloads.append(NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE))
        return (
            *payloads,
            SaPayload(proposals),
            TsPayload(PayloadType.TSi, selectors_for(child.local_ts)),
            TsPayload(PayloadType.TSr, selectors_for(child.remote_ts)),
        )

    def process(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {IDr, [CERT+,] AUTH, SAr2, TSi, TSr}"""
        sa, child = self._sa, self._sa._pending_child
        assert sa._prf is not None and child is not None
        idr, auth = message.first(IdPayload), message.first(AuthPayload)
        if idr is None or auth is None:
            errors = [NotifyType(n.notify_type).name for n in message.get(NotifyPayload)
                      if n.notify_type < 16384]  # fmt: skip
            sa._close("IKE_AUTH refused: " + (", ".join(errors) or "no IDr/AUTH"), now)
            return
        octets = signed_octets(sa._init_response, sa._nonce_i, sa._prf, sa._sk_pr,
                               idr.encode_body())  # fmt: skip
        try:
            info = _verify_peer(sa, idr, message, octets)
        except AuthenticationFailed as error:
            reason = _failed(sa, "responder", error)
            sa._notify_peer(NotifyType.AUTHENTICATION_FAILED)  # §2.21.2
            sa._close(reason, now)
            return
        sa.auth_local, sa.auth_remote = self._info, info
        self._child_taken(message, now)

    def _child_taken(self, message: IkeMessage, now: float) -> None:
        """The IKE SA is up; the CHILD_SA of the answer's SAr2, TSi, TSr too, or refused."""
        sa, child = self._sa, self._sa._pending_child
        assert child is not None
        if sa.config.vips:
            sa.received = read_config(message)
            sa.virtual_ips = sa.received.addresses
        sa._established(now)
        sa_payload = message.first(SaPayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        refusals = [n for n in message.get(NotifyPayload) if n.notify_type < 16384]
        if sa_payload is None or len(sa_payload.proposals) != 1 or not tsi or not tsr or refusals:
            reason = ", ".join(NotifyType(n.notify_type).name for n in refusals) or "no SA"
            sa._events.append(ChildSaFailed(child, f"CHILD_SA refused: {reason}"))
            sa._pending_child = None
            return
        own = _own_ts(sa, tsi[0])
        if isinstance(own, str):
            sa._events.append(ChildSaFailed(child, own))
            sa._pending_child = None
            return
        chosen = choose(without_dh(child.proposals), sa_payload.proposals, ProtocolId.ESP)
        if chosen is None or len(sa_payload.proposals[0].spi) != 4:
            sa._events.append(
                ChildSaFailed(child, "the responder chose an ESP proposal we did not offer")
            )
            return
        spi_out = int.from_bytes(sa_payload.proposals[0].spi, "big")
        sa._pending_child = None
        taken = answered_mode(sa, child, message)
        if isinstance(taken, str):
            child_refused_after_all(sa, child, self._spi_in, taken, now)
            return
        child_up(sa, taken, self._spi_in, spi_out, chosen[1], *proposed_networks(own, tsr[0]))


def _own_ts(sa: Ikev2Sa, tsi: TsPayload) -> TsPayload | str:
    """The answer's TSi as this end takes it, or why the CHILD_SA fails: an initiator that
    asked for a virtual address and got none, or a TSi outside the addresses it got, has
    no address to send from (strongSwan's ``child_create.c`` narrows to its virtual IPs)."""
    if not sa.config.vips:
        return tsi
    asked = ", ".join(str(v) for v in sa.config.vips)
    if not sa.virtual_ips:
        return f"asked for a virtual IP ({asked}), the CFG_REPLY gave none"
    own = own_ts(sa, tsi)
    if not own.selectors:
        given = ", ".join(str(v) for v in sa.virtual_ips)
        offered = ", ".join(str(n) for n in networks_of(tsi.selectors)) or "none"
        return f"the responder's TSi ({offered}) is outside the virtual IP {given}"
    return own


class IkeAuthResponder(AnswerTask):
    """The responder: HDR, SK {IDi, [CERT+,] [CERTREQ,] AUTH, SAi2, TSi, TSr} -->
    answered with  <-- HDR, SK {IDr, [CERT+,] AUTH, SAr2, TSi, TSr}, or with the
    CHILD_SA's refusal in place of SAr2, TSi, TSr. An initiator that does not prove
    itself is refused with AUTHENTICATION_FAILED, and the IKE SA closes."""

    exchange = ExchangeType.IKE_AUTH

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._agreed: Agreed | None = None
        self._info: tuple[AuthInfo, AuthInfo] | None = None

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        assert sa._prf is not None
        idi, auth = message.first(IdPayload), message.first(AuthPayload)
        if idi is None or auth is None:
            reason = "IKE_AUTH without IDi and AUTH"
            raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
        octets = signed_octets(sa._init_request, sa._nonce_r, sa._prf, sa._sk_pi,
                               idi.encode_body())  # fmt: skip
        # The initiator's CERTREQ asks for this end's certificate (§3.7).
        certreq = message.first(CertReqPayload) is not None
        sa._peer_offer = dataclasses.replace(sa._peer_offer,
                                             certreq=sa._peer_offer.certreq or certreq)  # fmt: skip
        idr = _id_payload(sa, PayloadType.IDr)
        octets_r = signed_octets(sa._init_response, sa._nonce_i, sa._prf, sa._sk_pr,
                                 idr.encode_body())  # fmt: skip
        try:
            info = _verify_peer(sa, idi, message, octets)
            _one_round(message)
        except AuthenticationFailed as error:
            reason = _failed(sa, "initiator", error)
            raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason) from None
        try:
            proof = sa._prover.prove(sa._prf, octets_r, sa._peer_offer)
        except AuthenticationFailed as error:
            reason = f"this end cannot prove itself: {error}"
            sa.counters.auth_failed("own_credentials")
            log.warning("%s: %s", sa._name(), reason)
            raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason) from None
        self._info = (proof.info, info)
        identity = describe_identity(idi.id_type, idi.data)
        child_payloads, self._agreed = _respond_cfg_and_child(sa, message, identity)
        self._answer = (idr, *proof.certs, proof.auth, *child_payloads)

    def answered(self, now: float) -> None:
        assert self._info is not None
        self._sa.auth_local, self._sa.auth_remote = self._info
        self._sa._established(now)
        if self._agreed is not None:
            child_up(self._sa, *self._agreed)


def _respond_cfg_and_child(
    sa: Ikev2Sa, message: IkeMessage, identity: str
) -> tuple[tuple[Payload, ...], Agreed | None]:
    """The CP (a virtual address for `identity`, the authenticated peer, as
    `config_payload` answers it) and the CHILD_SA of the responder's IKE_AUTH; no
    CHILD_SA when no address could be given. `message` holds the CP, SAi2 and TS."""
    cp, child_allowed = respond_cfg(sa, message, identity)
    if not child_allowed:
        return cp, None
    child, agreed = _respond_child(sa, message)
    return (*cp, *child), agreed


def _respond_child(sa: Ikev2Sa, message: IkeMessage) -> tuple[tuple[Payload, ...], Agreed | None]:
    """The CHILD_SA part of the responder's IKE_AUTH: choose, narrow, or refuse. A peer
    with virtual addresses has its TSi narrowed to them (`peer_ts`, RFC 7296 §2.19)."""
    sa_payload = message.first(SaPayload)
    tsi = [peer_ts(sa, t) for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
    tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
    if sa_payload is None or not tsi or not tsr:
        return (), None
    policy = asked_policy(sa, message, tsi[0], tsr[0])
    if policy is None:
        return (NotifyPayload(ProtocolId.NONE, NotifyType.TS_UNACCEPTABLE),), None
    ours = without_dh(policy.proposals)
    chosen = choose(ours, strip_dh(sa_payload.proposals), ProtocolId.ESP)
    if chosen is None:
        log_no_proposal(sa, "ESP", ours, sa_payload)
        sa._events.append(ChildSaFailed(policy, "no ESP proposal chosen: " + describe(sa_payload)))
        return (NotifyPayload(ProtocolId.NONE, NotifyType.NO_PROPOSAL_CHOSEN),), None
    # TSi is the initiator's side: our remote selectors; TSr ours (RFC 7296 §2.9).
    ts_i = narrow(tsi[0].selectors, policy.remote_ts)  # type: ignore[arg-type]
    ts_r = narrow(tsr[0].selectors, policy.local_ts)  # type: ignore[arg-type]
    if not ts_i or not ts_r:
        return (NotifyPayload(ProtocolId.NONE, NotifyType.TS_UNACCEPTABLE),), None
    answer, suite = chosen
    if len(answer.spi) != 4:
        return (NotifyPayload(ProtocolId.NONE, NotifyType.INVALID_SYNTAX),), None
    spi_out = int.from_bytes(answer.spi, "big")
    spi_in = sa._allocate_spi()
    mine = to_wire(answer.number, ProtocolId.ESP, spi_in.to_bytes(4, "big"), suite)
    payloads: list[Payload] = [SaPayload((mine,)), TsPayload(PayloadType.TSi, ts_i),
                               TsPayload(PayloadType.TSr, ts_r)]  # fmt: skip
    payloads[:0] = transport_notify(message, policy)
    return tuple(payloads), (policy, spi_in, spi_out, suite,
                             tuple(networks_of(ts_r)), tuple(networks_of(ts_i)))  # fmt: skip


def _id_payload(sa: Ikev2Sa, payload_type: PayloadType) -> IdPayload:
    id_type, data = sa.config.local_id
    return IdPayload(payload_type, id_type, data)


def _peer_id_ok(sa: Ikev2Sa, payload: IdPayload) -> bool:
    """Is the peer who the connection is for: the configured identity, or one its
    wildcards match?"""
    peer = (payload.id_type, payload.data)
    if sa.config.remote_id_match is not None:
        return sa.config.remote_id_match(*peer)
    expected = sa.config.remote_id
    return expected is None or peer == expected


def _verify_peer(sa: Ikev2Sa, id_payload: IdPayload, message: IkeMessage,
                 octets: bytes) -> AuthInfo:  # fmt: skip
    """How the peer authenticated: its identity is the one configured, and its AUTH
    (with its CERTs) proves it over its signed octets; `AuthenticationFailed` if not."""
    assert sa._prf is not None
    if not _peer_id_ok(sa, id_payload):
        raise AuthenticationFailed("identity is not the one configured", kind="identity")
    auth = message.first(AuthPayload)
    assert auth is not None
    claim = PeerClaim((id_payload.id_type, id_payload.data), auth, message.get(CertPayload))
    return sa._verifier.verify(sa._prf, octets, claim, sa._wall_clock())


def _one_round(message: IkeMessage) -> None:
    """A responder whose connection takes one round refuses an initiator that announces
    another (RFC 4739 §3), rather than answer rounds it has no configuration for."""
    if message.notify(NotifyType.ANOTHER_AUTH_FOLLOWS) is not None:
        raise AuthenticationFailed(
            "it announces another authentication round "
            "(ANOTHER_AUTH_FOLLOWS), and this connection takes one",
            kind="method",
        )


def _failed(sa: Ikev2Sa, peer: str, error: AuthenticationFailed) -> str:
    """One WARNING line for a peer that did not prove itself; the reason the IKE SA ends."""
    reason = f"authentication of the {peer} failed: {error}"
    sa.counters.auth_failed(error.kind)
    subject = f" (certificate {error.subject})" if error.subject else ""
    log.warning("%s: %s%s", sa._name(), reason, subject)
    return reason
