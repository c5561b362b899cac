"""Phase 1 as tasks: Main Mode and Aggressive Mode, each for its initiator and its
responder (RFC 2409 §5), authenticated by a `larval.ikev1.auth.Phase1Authenticator`.

::

    Main Mode                                 Aggressive Mode
    MM1 { SA, VID }                -->        AM1 { SA, KE, Ni, IDii, [CR,] VID }  -->
        <-- MM2 { SA, VID }                       <-- AM2 { SA, KE, Nr, IDir, [CERT,]
    MM3 { KE, Ni, [CR,] NAT-D }    -->                      HASH_R | SIG_R, [CR,] NAT-D }
        <-- MM4 { KE, Nr, [CR,] NAT-D }       AM3 *{ [CERT,] HASH_I | SIG_I, NAT-D, N } -->
    MM5 *{ IDii, [CERT,] HASH_I | SIG_I, N } -->
        <-- MM6 *{ IDir, [CERT,] HASH_R | SIG_R }

HASH or SIG, the CERTs and the CRs are the authenticator's (`larval.ikev1.auth`): the
pre-shared key's proof is a HASH and asks for nothing; with signatures an end that checks
the peer's certificate sends a CR in its first message that has keying material (MM3,
MM4, AM1, AM2), and sends its own CERTs with SIG as the peer asked or as configured. A CR
that comes with the peer's proof (charon sends its own in MM5) counts too.

A task `process`es what it receives and `build`s what it sends next (the initiator's
first message before anything is received): no I/O, no clock. What the exchange alone
needs — the SA offer as sent, the DH pair, both KE values and nonces, the CBC IV chained
through the encrypted messages — is the task's; what it settles — the cookies, the
choice, the keys, NAT, the vendor IDs, the last CBC block Phase 2 starts from — goes to
the ISAKMP SA (`larval.ikev1.isakmp.IsakmpSa`). A refusal raises `IkeV1ExchangeError`,
which the session answers (or drops) in one place.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace

from larval.crypto.dh import DhKeyPair
from larval.crypto.ikev1_keys import Ikev1Cipher, Ikev1Prf, derive_phase1, ikev1_dh_group
from larval.ike.config import IkeConfig
from larval.ike.identity import IdType as PeerIdType
from larval.ike.identity import describe_identity

from .auth import AuthenticationError, Phase1Authenticator, Phase1Material, PskAuthenticator
from .config import Phase1Choice, phase1_choices
from .constants import (
    SIT_IDENTITY_ONLY,
    ExchangeType,
    IkeAuthMethod,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from .errors import IkeV1AuthFailed, IkeV1ExchangeError, IkeV1ProtocolError
from .isakmp import NONCE_SIZE, PHASE1, Inbound, IsakmpSa, Outgoing, body_of
from .message import IkeV1Message, decode_message
from .payloads import CrPayload, IdPayload, KePayload, NoncePayload, Payload
from .render import payload_names
from .rules import check_payloads
from .sa_payload import Proposal, SaPayload
from .select import Fits

__all__ = [
    "AggressiveInitiator",
    "AggressiveResponder",
    "MainModeInitiator",
    "MainModeResponder",
    "Phase1Settings",
    "Phase1Task",
]

MM, AM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE


@dataclass(frozen=True, slots=True)
class Phase1Settings:
    """How this end runs Phase 1: how it proves itself, the LIFE_DURATION it offers (as
    initiator) or takes at most (as responder), whether it sends N(INITIAL-CONTACT) with
    HASH_I, and whether AM3 goes encrypted (a responder takes either)."""

    auth: Phase1Authenticator
    ike_lifetime: int
    initial_contact: bool = True
    encrypt_am3: bool = True


class Phase1Task:
    """What Main and Aggressive Mode share, for both roles."""

    exchange = MM
    rekeys = None

    def __init__(self, sa: IsakmpSa, settings: Phase1Settings) -> None:
        self.sa = sa
        self.settings = settings
        self.auth = settings.auth
        self.ike_lifetime = settings.ike_lifetime
        self.sai_b = b""  # the initiator's SA payload body, as offered
        self.dh: DhKeyPair | None = None
        self.g_xi = self.g_xr = b""
        self.nonce_i = self.nonce_r = b""
        self.iv = b""  # chained through MM5/MM6 or AM3 (Appendix B)
        self.asked = False  # the peer sent a CR: send CERT if `send_cert` is "ifasked"
        #: AM1 -> AM2 or MM1 -> MM2, when the request went once (Karn's rule).
        self.round_trip: float | None = None
        self._next: Outgoing | None = None
        #: Phase 1 is through: this end has proved the peer and been proved.
        self.done = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sa.name()}>"  # never keys or nonces

    def build(self, now: float) -> Outgoing | None:
        """What this end sends next, once; None when nothing is to go."""
        out, self._next = self._next, None
        return out

    def process(self, inbound: Inbound, now: float) -> None:
        raise NotImplementedError

    # -- shared steps ----------------------------------------------------------------------

    def _clear(self, data: bytes, number: int) -> IkeV1Message:
        message = decode_message(data)
        check_payloads(message, number, encrypted=False)
        return message

    def _send(
        self, text: str, payloads: tuple[Payload, ...] | list[Payload], *, resend: bool
    ) -> None:
        """A message in the clear, resent under Message ID 0 if `resend`."""
        datagram = self.sa.message(self.exchange, payloads).encode()
        self._sealed(datagram, f"{text} [ {payload_names(payloads)} ]", resend=resend)

    def _sealed(self, datagram: bytes, text: str, *, resend: bool) -> None:
        self._next = Outgoing(datagram, text, PHASE1 if resend else None)

    def _offer(self, choices: list[Phase1Choice]) -> SaPayload:
        """The initiator's SA payload: one ISAKMP proposal, a transform per choice."""
        transforms = tuple(c.transform(n) for n, c in enumerate(choices, 1))
        proposal = Proposal(1, ProtocolId.ISAKMP, b"", transforms)
        sa = SaPayload((proposal,), situation=SIT_IDENTITY_ONLY)
        self.sai_b = sa.encode_body()
        return sa

    def _cookies(self, inbound: Inbound) -> None:
        """The responder takes the initiator's CKY-I and makes its CKY-R (RFC 2408 §2.5.3)."""
        self.sa.spi_i, self.sa.spi_r = inbound.header.cookie_i, self.sa.random(8)

    def _choose(self, message: IkeV1Message) -> SaPayload:
        """The responder's answer: the first of its own transforms the offer contains, as
        offered (RFC 2409 §5: the transform comes back unchanged), or NO_PROPOSAL_CHOSEN."""
        sa = message.first(SaPayload)
        assert sa is not None
        self.sai_b = body_of(message, PayloadType.SA)
        offered = [
            (p, t, Phase1Choice.from_transform(t))
            for p in sa.proposals
            if p.protocol_id == ProtocolId.ISAKMP
            for t in p.transforms
        ]
        # The authentication method is the authenticator's to take (`accepts`).
        takes = [(p, t, c) for p, t, c in offered if c and self.auth.accepts(c.auth_method)]
        for ours in phase1_choices(self.sa.config.proposals, self.ike_lifetime):
            for proposal, transform, theirs in takes:
                if theirs == replace(ours, auth_method=theirs.auth_method):
                    self.sa.choice = replace(theirs, lifetime=min(theirs.lifetime, ours.lifetime))
                    answer = Proposal(
                        proposal.number, ProtocolId.ISAKMP, proposal.spi, (transform,)
                    )
                    return SaPayload((answer,), sa.doi, sa.situation)
        reason = f"no proposal chosen among {len(offered)} transforms"
        methods = dict.fromkeys(c.auth_method for _, _, c in offered if c is not None)
        if methods and not takes:
            # Named, since it is a matter of configuration (XAuth or not, PSK or
            # certificates) rather than of algorithms.
            offers = ", ".join(_method_name(m) for m in methods)
            reason += (
                f": authentication by {offers}, this end takes {_method_name(self.auth.method)}"
            )
        raise IkeV1ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close="no proposal chosen")

    def _accept(self, inbound: Inbound, message: IkeV1Message, aggressive: bool) -> None:
        """The initiator checks the responder's choice is one transform it offered."""
        sa = message.first(SaPayload)
        assert sa is not None
        if inbound.header.cookie_r == bytes(8):
            raise IkeV1ProtocolError(NotifyType.INVALID_COOKIE, "CKY-R is zero")
        if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
            raise IkeV1ProtocolError(NotifyType.BAD_PROPOSAL_SYNTAX, "not one transform chosen")
        choice = Phase1Choice.from_transform(sa.proposals[0].transforms[0])
        ours = phase1_choices(self.sa.config.proposals, self.ike_lifetime, self.auth.method)
        if choice is None or choice not in ours:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "a transform we did not offer")
        if aggressive and choice.group != ours[0].group:
            raise IkeV1ProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "another group than our KE's")
        self.sa.spi_r = inbound.header.cookie_r
        self.sa.choice = choice
        self.sa.vendor_ids(message)

    def _generate(self) -> DhKeyPair:
        assert self.sa.choice is not None
        self.dh = ikev1_dh_group(self.sa.choice.group).generate(self.sa.random)
        return self.dh

    def _derive(self, g_xy: bytes) -> None:
        """SKEYID (by the authenticator), SKEYID_d/a/e (§5), the cipher key and the first
        IV (Appendix B), for the ISAKMP SA."""
        sa, choice = self.sa, self.sa.choice
        assert choice is not None
        prf = Ikev1Prf(choice.hash_name)
        skeyid = self.auth.skeyid(prf, self.nonce_i, self.nonce_r, g_xy)
        block = Ikev1Cipher.block_size_of(choice.encryption)
        keys = derive_phase1(prf, skeyid, g_xy, sa.spi_i, sa.spi_r, choice.key_size, block,
                             g_xi=self.g_xi, g_xr=self.g_xr)  # fmt: skip
        sa.keyed(choice, keys)
        self.iv = keys.iv

    def _material(self) -> Phase1Material:
        sa, choice = self.sa, self.sa.choice
        assert sa.prf is not None and sa.keys is not None and choice is not None
        return Phase1Material(sa.prf, sa.keys.skeyid, self.g_xi, self.g_xr, sa.spi_i, sa.spi_r,
                              self.sai_b, choice.auth_method)  # fmt: skip

    def _proof(self, id_payload: IdPayload) -> tuple[Payload, ...]:
        """[CERT...,] HASH_I or SIG_I (initiator), HASH_R or SIG_R (responder) over this
        end's ID."""
        material, id_b = self._material(), id_payload.encode_body()
        return self.auth.build(material, id_b, self.sa.initiator, self.asked)

    def _requests(self, message: IkeV1Message) -> None:
        """Note whether the peer asked for this end's certificate (a CR, of any CA)."""
        self.asked = self.asked or message.first(CrPayload) is not None

    def _verify_peer(self, message: IkeV1Message, peer_id: IdPayload, id_b: bytes) -> None:
        """`message` proves the peer over its ID body `id_b`, or AUTHENTICATION_FAILED
        (`_refusal`). Once it does, the ISAKMP SA records how each end authenticated."""
        material = self._material()
        role = "responder" if self.sa.initiator else "initiator"
        try:
            remote = self.auth.verify(material, peer_id, id_b, message, not self.sa.initiator)
        except AuthenticationError as exc:
            raise self._refusal(f"authentication of the {role} failed: {exc}") from None
        self.sa.auth_remote, self.sa.auth_local = remote, self.auth.local_info(material)
        self.sa.peer_id = peer_id

    def _refusal(self, reason: str) -> IkeV1AuthFailed:
        """AUTHENTICATION_FAILED, and the ISAKMP SA goes on both ends. A peer that still
        awaits this end's proof hears it in the clear (a Main Mode initiator after MM5, an
        Aggressive Mode responder after AM2); one that took its own last message for the
        end of Phase 1 (a Main Mode responder after MM6, an Aggressive Mode initiator after
        AM3) has its ISAKMP SA deleted, protected, as charon's Main Mode initiator does."""
        if self.sa.initiator == (self.exchange == MM):
            return auth_failed(reason, answered=False, delete=True)
        return auth_failed(reason)

    def _peer_proven(self, message: IkeV1Message) -> None:
        """The initiator checks IDir and HASH_R or SIG_R (MM6, AM2)."""
        idir = message.first(IdPayload)
        assert idir is not None
        if not self.sa.peer_id_ok(idir):
            raise self._refusal(f"IDir {claimed(idir)} is not the responder configured")
        self._verify_peer(message, idir, body_of(message, PayloadType.ID))
        self.sa.authenticated()
        self.done = True

    def _expected_initiator(self, idii: IdPayload) -> None:
        """The responder refuses an IDii other than the configured remote ID."""
        if not self.sa.peer_id_ok(idii):
            reason = f"IDii {claimed(idii)} is not the initiator configured"
            raise IkeV1AuthFailed(NotifyType.INVALID_ID_INFORMATION, reason, close=reason)

    def _select(self, idii: IdPayload, fits: Fits) -> None:
        """A responder may change connection now that IDii names the peer
        (`larval.ikev1.select`); Phase 1 goes on with that one's authenticator and
        lifetime."""
        settings = self.sa.select_connection(idii, fits)
        if settings is not None:
            self.settings, self.auth = settings, settings.auth
            self.ike_lifetime = settings.ike_lifetime

    def _takes_offer(self, message: IkeV1Message) -> Fits:
        """Aggressive Mode: a connection fits if it takes a transform of AM1's offer with
        an authentication method it checks the peer by (its key makes AM2's)."""
        sa = message.first(SaPayload)
        assert sa is not None
        offered = [Phase1Choice.from_transform(t) for p in sa.proposals
                   if p.protocol_id == ProtocolId.ISAKMP for t in p.transforms]  # fmt: skip
        choices = [c for c in offered if c is not None]

        def fits(config: IkeConfig, auth: Phase1Authenticator) -> str | None:
            methods = [c for c in choices if auth.accepts(c.auth_method)]
            if not methods:
                return f"checks the peer by {_method_name(auth.method)}"
            for ours in phase1_choices(config.proposals, self.ike_lifetime):
                if any(c == replace(ours, auth_method=c.auth_method) for c in methods):
                    return None
            return "none of the transforms offered"

        return fits

    def _keyed_alike(self) -> Fits:
        """Main Mode at MM5: a connection fits if it takes the transform chosen and its
        key made the same SKEYID (the same pre-shared key, or signatures)."""
        choice, ours = self.sa.choice, self.auth
        assert choice is not None

        def fits(config: IkeConfig, auth: Phase1Authenticator) -> str | None:
            if not auth.accepts(choice.auth_method):
                return f"checks the peer by {_method_name(auth.method)}"
            if not same_keys(ours, auth):
                return "another pre-shared key than the one Main Mode was keyed with"
            theirs = phase1_choices(config.proposals, self.ike_lifetime, choice.auth_method)
            if choice not in theirs:
                return "not the transform chosen"
            return None

        return fits

    def _initiator_contact(self, message: IkeV1Message) -> None:
        self.sa.peer_initial_contact = message.notify(NotifyType.INITIAL_CONTACT) is not None


class MainModeInitiator(Phase1Task):
    """MM1 -->, MM3 -->, MM5 -->: offers, keys, proves itself, checks the responder."""

    def __init__(self, sa: IsakmpSa, settings: Phase1Settings, choices: list[Phase1Choice]) -> None:
        super().__init__(sa, settings)
        self._awaits = 2
        # MM1 { SA, VID }
        self._send("MM1", (self._offer(choices), *sa.vids()), resend=True)

    def process(self, inbound: Inbound, now: float) -> None:
        steps = {2: self._mm2, 4: self._mm4, 6: self._mm6}
        steps[self._awaits](inbound, now)
        self._awaits += 2

    def _mm2(self, inbound: Inbound, now: float) -> None:
        """<-- MM2 { SA, VID }: MM3 { KE, Ni, NAT-D } -->"""
        sa = self.sa
        message = self._clear(inbound.data, 2)
        self._accept(inbound, message, aggressive=False)
        self.g_xi = self._generate().public_bytes
        self.nonce_i = sa.random(NONCE_SIZE)
        request = sa.answered(PHASE1)
        self.round_trip = request.round_trip(now) if request is not None else None
        payloads: tuple[Payload, ...] = (KePayload(self.g_xi), NoncePayload(self.nonce_i))
        self._send("MM3", (*payloads, *self.auth.requests(), *sa.nat_d()), resend=True)

    def _mm4(self, inbound: Inbound, now: float) -> None:
        """<-- MM4 { KE, Nr, [CR,] NAT-D }: keys, then
        MM5 *{ IDii, [CERT,] HASH_I | SIG_I, N(INITIAL_CONTACT) } -->"""
        sa = self.sa
        message = self._clear(inbound.data, 4)
        self._requests(message)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None and self.dh is not None
        self.g_xr, self.nonce_r = ke.data, nonce.data
        sa.check_nat(message, inbound.addr)
        self._derive(self.dh.shared_secret(ke.data))
        sa.float_to_nat_t()
        sa.answered(PHASE1)
        idii = sa.id_payload()
        payloads: list[Payload] = [idii, *self._proof(idii)]
        if self.settings.initial_contact:
            payloads.append(sa.notify(NotifyType.INITIAL_CONTACT))
        datagram, self.iv = sa.seal(sa.message(MM, payloads), self.iv)
        # A responder that refuses MM5 says so protected, its IV from MM5's last block.
        sa.p1_last = self.iv
        self._sealed(datagram, f"MM5 [ {payload_names(payloads)} ]", resend=True)

    def _mm6(self, inbound: Inbound, now: float) -> None:
        """<-- MM6 *{ IDir, [CERT,] HASH_R | SIG_R }: check; the ISAKMP SA is up."""
        sa = self.sa
        message, next_iv = sa.open(inbound.data, self.iv)
        check_payloads(message, 6, encrypted=True)
        sa.p1_last = next_iv  # Phase 1 is over: even a refusal goes protected now
        sa.answered(PHASE1)
        self._peer_proven(message)


class MainModeResponder(Phase1Task):
    """--> MM1, --> MM3, --> MM5: chooses, keys, checks the initiator, proves itself."""

    def __init__(self, sa: IsakmpSa, settings: Phase1Settings) -> None:
        super().__init__(sa, settings)
        self._awaits = 1

    def process(self, inbound: Inbound, now: float) -> None:
        steps = {1: self._mm1, 3: self._mm3, 5: self._mm5}
        steps[self._awaits](inbound)
        self._awaits += 2

    def _mm1(self, inbound: Inbound) -> None:
        """MM1 { SA, VID } -->  choose, answer MM2 { SA, VID }"""
        message = self._clear(inbound.data, 1)
        self._cookies(inbound)
        self.sa.vendor_ids(message)
        answer = self._choose(message)
        self._send("MM2", (answer, *self.sa.vids()), resend=False)

    def _mm3(self, inbound: Inbound) -> None:
        """MM3 { KE, Ni, [CR,] NAT-D } -->  MM4 { KE, Nr, [CR,] NAT-D }, keys"""
        sa = self.sa
        message = self._clear(inbound.data, 3)
        self._requests(message)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None
        dh = self._generate()
        self.g_xi, self.g_xr = ke.data, dh.public_bytes
        self.nonce_i, self.nonce_r = nonce.data, sa.random(NONCE_SIZE)
        sa.check_nat(message, inbound.addr)
        self._derive(dh.shared_secret(ke.data))
        payloads: tuple[Payload, ...] = (KePayload(self.g_xr), NoncePayload(self.nonce_r))
        self._send("MM4", (*payloads, *self.auth.requests(), *sa.nat_d()), resend=False)

    def _mm5(self, inbound: Inbound) -> None:
        """MM5 *{ IDii, [CERT,] HASH_I | SIG_I, [CR] } -->  check,
        MM6 *{ IDir, [CERT,] HASH_R | SIG_R }"""
        sa = self.sa
        try:
            message, next_iv = sa.open(inbound.data, self.iv)
            check_payloads(message, 5, encrypted=True)
        except IkeV1ProtocolError:
            # Keys that differ decrypt to noise: in practice the pre-shared keys differ.
            raise auth_failed("MM5 does not decrypt (pre-shared keys differ?)") from None
        # Both ends hold the keys now: a refusal of MM5 goes protected (charon ignores an
        # unprotected one and resends MM5 until it gives up), its IV from MM5's last block.
        sa.p1_last = next_iv
        idii = message.first(IdPayload)
        assert idii is not None
        self._select(idii, self._keyed_alike())
        self._expected_initiator(idii)
        self._requests(message)
        self._verify_peer(message, idii, body_of(message, PayloadType.ID))
        self._initiator_contact(message)
        sa.authenticated()
        self.done = True
        idir = sa.id_payload()
        payloads: tuple[Payload, ...] = (idir, *self._proof(idir))
        datagram, sa.p1_last = sa.seal(sa.message(MM, payloads), next_iv)
        self._sealed(datagram, f"MM6 [ {payload_names(payloads)} ]", resend=False)


class AggressiveInitiator(Phase1Task):
    """AM1 -->, AM3 -->: offers with its KE and ID, checks the responder, proves itself."""

    exchange = AM

    def __init__(self, sa: IsakmpSa, settings: Phase1Settings, choices: list[Phase1Choice]) -> None:
        super().__init__(sa, settings)
        # RFC 2409 §5: the KE goes with the offer, so every transform has its group.
        group = choices[0].group
        offer = self._offer([c for c in choices if c.group == group])
        vids = sa.vids()
        self.dh = ikev1_dh_group(group).generate(sa.random)
        self.g_xi = self.dh.public_bytes
        self.nonce_i = sa.random(NONCE_SIZE)
        # AM1 { SA, KE, Ni, IDii, [CR,] VID }
        payloads = (offer, KePayload(self.g_xi), NoncePayload(self.nonce_i), sa.id_payload())
        self._send("AM1", (*payloads, *self.auth.requests(), *vids), resend=True)

    def process(self, inbound: Inbound, now: float) -> None:
        """<-- AM2 { SA, KE, Nr, IDir, [CERT,] HASH_R | SIG_R, [CR,] NAT-D }:
        AM3 *{ [CERT,] HASH_I | SIG_I, NAT-D, N } -->"""
        sa = self.sa
        message = self._clear(inbound.data, 2)
        self._accept(inbound, message, aggressive=True)
        self._requests(message)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None and self.dh is not None
        sa.vendor_ids(message)
        self.g_xr, self.nonce_r = ke.data, nonce.data
        self._derive(self.dh.shared_secret(ke.data))
        self._peer_proven(message)
        sa.check_nat(message, inbound.addr)
        sa.float_to_nat_t()
        request = sa.answered(PHASE1)
        self.round_trip = request.round_trip(now) if request is not None else None
        payloads: list[Payload] = [*self._proof(sa.id_payload()), *sa.nat_d()]
        if self.settings.initial_contact:
            payloads.append(sa.notify(NotifyType.INITIAL_CONTACT))
        # RFC 2409 §5 shows AM3 in the clear; strongSwan and most others encrypt it. In
        # the clear, Phase 2 IVs start from the first Phase 1 IV (Appendix B).
        message = sa.message(AM, payloads)
        if self.settings.encrypt_am3:
            datagram, sa.p1_last = sa.seal(message, self.iv)
        else:
            datagram, sa.p1_last = message.encode(), self.iv
        self._sealed(datagram, f"AM3 [ {payload_names(payloads)} ]", resend=False)


class AggressiveResponder(Phase1Task):
    """--> AM1, --> AM3: chooses, keys and proves itself at once, then checks the
    initiator."""

    exchange = AM

    def __init__(self, sa: IsakmpSa, settings: Phase1Settings) -> None:
        super().__init__(sa, settings)
        self.idii: IdPayload | None = None  # IDii from AM1, for HASH_I or SIG_I in AM3
        self.idii_b = b""
        self._awaits = 1

    def process(self, inbound: Inbound, now: float) -> None:
        if self._awaits == 1:
            self._am1(inbound)
        else:
            self._am3(inbound)
        self._awaits += 2

    def _am1(self, inbound: Inbound) -> None:
        """AM1 { SA, KE, Ni, IDii, [CR,] VID } -->
        AM2 { SA, KE, Nr, IDir, [CERT,] HASH_R | SIG_R, [CR,] NAT-D, VID }"""
        sa = self.sa
        message = self._clear(inbound.data, 1)
        self._requests(message)
        self._cookies(inbound)
        sa.vendor_ids(message)
        idii = message.first(IdPayload)
        assert idii is not None
        self._select(idii, self._takes_offer(message))
        answer = self._choose(message)
        ke, nonce = message.first(KePayload), message.first(NoncePayload)
        assert ke is not None and nonce is not None
        self._expected_initiator(idii)
        self.idii, self.idii_b = idii, body_of(message, PayloadType.ID)
        dh = self._generate()
        self.g_xi, self.g_xr = ke.data, dh.public_bytes
        self.nonce_i, self.nonce_r = nonce.data, sa.random(NONCE_SIZE)
        self._derive(dh.shared_secret(ke.data))
        idir = sa.id_payload()
        payloads = (answer, KePayload(self.g_xr), NoncePayload(self.nonce_r), idir,
                    *self._proof(idir), *self.auth.requests(), *sa.nat_d(),
                    *sa.vids())  # fmt: skip
        # Nothing answers AM3: AM2 is resent until it comes (RFC 2408 §2.5).
        self._send("AM2", payloads, resend=True)

    def _am3(self, inbound: Inbound) -> None:
        """AM3 [*]{ [CERT,] HASH_I | SIG_I, NAT-D, N } -->  the ISAKMP SA is up."""
        sa = self.sa
        if inbound.header.encrypted:
            message, sa.p1_last = sa.open(inbound.data, self.iv)
        else:
            message, sa.p1_last = decode_message(inbound.data), self.iv
        check_payloads(message, 3, encrypted=inbound.header.encrypted)
        assert self.idii is not None
        self._verify_peer(message, self.idii, self.idii_b)
        sa.authenticated()
        self.done = True
        sa.check_nat(message, inbound.addr)
        self._initiator_contact(message)
        sa.answered(PHASE1)


def same_keys(a: Phase1Authenticator, b: Phase1Authenticator) -> bool:
    """Do both make the same SKEYID from the same exchange? Pre-shared keys only if they
    are the same key; signatures (and hybrid) hold no credential in SKEYID."""
    psk_a, psk_b = isinstance(a, PskAuthenticator), isinstance(b, PskAuthenticator)
    if psk_a and psk_b:
        assert isinstance(a, PskAuthenticator) and isinstance(b, PskAuthenticator)
        return hmac.compare_digest(a.psk, b.psk)
    return not psk_a and not psk_b


def _method_name(method: int) -> str:
    return IkeAuthMethod(method).name  # an unknown one as UNKNOWN_<n>


def claimed(payload: IdPayload) -> str:
    """The identity an ID payload claims, as logs show it."""
    return describe_identity(PeerIdType(int(payload.id_type)), payload.data)


def auth_failed(reason: str, *, answered: bool = True, delete: bool = False) -> IkeV1AuthFailed:
    """AUTHENTICATION_FAILED in the clear (or, with `delete`, the peer's ISAKMP SA
    deleted), and the ISAKMP SA goes."""
    return IkeV1AuthFailed(NotifyType.AUTHENTICATION_FAILED, reason, close=reason,
                           answered=answered, delete=delete)  # fmt: skip
