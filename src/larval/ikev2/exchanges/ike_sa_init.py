"""IKE_SA_INIT (RFC 7296 §1.2), both roles: the suite, the Diffie-Hellman exchange, the
nonces, NAT detection (§2.23), fragmentation support (RFC 7383 §2.3) and, where a public
key is in play, the hashes of RFC 7427 §4 and the responder's CERTREQ; SKEYSEED and the
IKE SA's keys from them (§2.14).

    HDR, [N(COOKIE),] SA, KE, Ni, N(NAT_DETECTION_*), [N(FRAG_SUP)], [N(HASH_ALG)]  -->
       <--  HDR, SA, KE, Nr, N(NAT_DETECTION_*), [N(FRAG_SUP)], [N(HASH_ALG)], [CERTREQ]

N(SIGNATURE_HASH_ALGORITHMS) goes when either end of the connection is configured with a
certificate (strongSwan sends it always; larval leaves a shared-key connection's messages
as they were), and in the response only when the request had one (as strongSwan, and as
FRAG_SUP). The peer's hashes and whether it sent a CERTREQ are kept for IKE_AUTH
(`Ikev2Sa._peer_offer`).

The initiator's exchange may go again, as Message ID 0 still: with the COOKIE the
responder asked for (§2.6), or with the DH group it named in INVALID_KE_PAYLOAD (§1.2).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from larval.crypto.dh import DhGroup, DhKeyPair
from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_keys import IkeSaKeys, derive_ike_sa_keys
from larval.crypto.ike_transforms import TransformType, encr_key_size, integ_key_size
from larval.crypto.prf import Prf
from larval.crypto.signatures import SignatureError, decode_hashes, encode_hashes
from larval.crypto.sk import SkCipher
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import IkeConfig, IPAddress, Suite
from larval.ike.datagram import address_of

from ..auth import AuthenticationFailed, PeerOffer, Verifier, announced_hashes, verifier_for
from ..constants import ExchangeType, NotifyType, ProtocolId
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..negotiate import choose, suite_get, to_wire
from ..payloads import CertReqPayload, KePayload, NoncePayload, NotifyPayload, Payload
from ..render import describe
from ..sa_payload import Proposal, SaPayload
from .auth_rounds import multiple_auth_notify, rounds_refused
from .proposals import first_group, groups, log_no_proposal, with_group_first
from .sa import NONCE_SIZE, Address, Ikev2Sa, log
from .tasks import AnswerTask, ExchangeTask

__all__ = ["IkeSaInit", "IkeSaInitResponder", "derive", "take_keys"]

#: Makes an IKE SA's keys with its PRF and the sizes of its cipher and integrity keys.
Derive = Callable[[Prf, int, int], IkeSaKeys]


class IkeSaInit(ExchangeTask):
    """The initiator: HDR, SA, KE, Ni, N(NAT_D)... -->, and the response taken."""

    exchange = ExchangeType.IKE_SA_INIT

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._group = first_group(sa.config.proposals)  # raises when none is configured
        self._dh: DhKeyPair | None = None
        self._nonce = b""
        self._cookie = b""
        self.done = False

    def build(self, now: float) -> tuple[Payload, ...]:
        sa = self._sa
        self._dh = DhGroup.of(self._group).generate(sa._random)
        # §2.6: a retry with a COOKIE must leave the other payloads, the nonce included,
        # unchanged, since the cookie covers Ni.
        self._nonce = self._nonce or sa._random(NONCE_SIZE)
        proposals = tuple(
            to_wire(n + 1, ProtocolId.IKE, b"", suite)
            for n, suite in enumerate(with_group_first(sa.config.proposals, self._group))
        )
        payloads: list[Payload] = []
        if self._cookie:
            payloads.append(NotifyPayload(ProtocolId.NONE, NotifyType.COOKIE, b"", self._cookie))
        payloads += [
            SaPayload(proposals),
            KePayload(self._group, self._dh.public_bytes),
            NoncePayload(self._nonce),
            *nat_detection(sa, bytes(8), sa.config.remote_addr, sa.remote[1]),
            *fragmentation_notify(sa),
            *signature_hashes_notify(sa),
        ]
        return tuple(payloads)

    def process(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SA, KE, Nr, [CERTREQ]  or an error notify."""
        sa = self._sa
        cookie = message.notify(NotifyType.COOKIE)
        if cookie is not None:
            # RFC 7296 §2.6: try again with the cookie in front.
            self._cookie = cookie.data
            return
        invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) == 2:
            group = struct.unpack("!H", invalid_ke.data)[0]
            if group in groups(sa.config.proposals) and group != self._group:
                # §1.2: the responder asks for another group; start over with it.
                self._group = group
                return
        self.done = True
        for n in message.get(NotifyPayload):
            if n.notify_type < 16384:
                sa._close(f"IKE_SA_INIT refused: {NotifyType(n.notify_type).name}", now)
                return
        sa_payload, ke, nonce = (
            message.first(SaPayload),
            message.first(KePayload),
            message.first(NoncePayload),
        )
        if sa_payload is None or ke is None or nonce is None or len(sa_payload.proposals) != 1:
            sa._close("IKE_SA_INIT response without SA, KE and Nr", now)
            return
        chosen = choose(sa.config.proposals, sa_payload.proposals, ProtocolId.IKE)
        if chosen is None or suite_get(chosen[1], TransformType.DH) is None:
            sa._close("the responder chose a proposal we did not offer", now)
            return
        suite = chosen[1]
        dh = suite_get(suite, TransformType.DH)
        assert dh is not None and self._dh is not None
        if ke.dh_group != dh.id or dh.id != self._group:
            sa._close("the responder's KE is not of the chosen group", now)
            return
        try:
            sa._peer_offer = peer_offer(message)
        except SignatureError as error:
            sa._close(f"IKE_SA_INIT response: {error}", now)
            return
        sa.spi_r = message.spi_r
        sa._nonce_i, sa._nonce_r = self._nonce, nonce.data
        sa._framing.fragmentation = sa._fragmentation_offered and (
            message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        sa.natted = sa.config.encap or nat_seen(sa, message, sa.spi_r, sa.remote)
        if sa.natted:
            sa.remote = (sa.remote[0], NAT_T_PORT)  # RFC 7296 §2.23: float to 4500
        derive(sa, suite, self._dh.shared_secret(ke.data))
        try:
            sa._prover.check(sa._peer_offer)
        except AuthenticationFailed as error:
            # Before IKE_AUTH: no scheme of this end's key has a hash the peer announced.
            reason = f"this end cannot prove itself: {error}"
            sa.counters.auth_failed("own_credentials")
            log.warning("%s: %s", sa._name(), reason)
            sa._close(reason, now)
            return
        refused = rounds_refused(sa)
        if refused is not None:
            log.warning("%s: %s", sa._name(), refused)
            sa._close(refused, now)


class IkeSaInitResponder(AnswerTask):
    """The responder: HDR, SA, KE, Ni -->  answered with  <-- HDR, SA, KE, Nr. A refusal
    keeps no state (§2.6): the IKE SA stays IDLE for the initiator's retry."""

    exchange = ExchangeType.IKE_SA_INIT

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        sa.spi_i = message.spi_i
        sa_payload, ke, nonce = (
            message.first(SaPayload),
            message.first(KePayload),
            message.first(NoncePayload),
        )
        if sa_payload is None or ke is None or nonce is None:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "IKE_SA_INIT without SA, KE and Ni")
        chosen = choose(sa.config.proposals, sa_payload.proposals, ProtocolId.IKE)
        if chosen is None:
            chosen = _alternative(sa, sa_payload)
        if chosen is None:
            log_no_proposal(sa, "IKE", sa.config.proposals, sa_payload)
            reason = "no proposal chosen: " + describe(sa_payload)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close=reason)
        answer, suite = chosen
        group = suite_get(suite, TransformType.DH)
        if group is None:
            reason = "the chosen proposal has no DH group"
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, reason, close=reason)
        if ke.dh_group != group.id:
            # §1.2: tell the initiator which group to use; it starts over.
            data = struct.pack("!H", group.id)
            raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", data)
        try:
            sa._peer_offer = peer_offer(message)
        except SignatureError as error:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, str(error)) from None
        sa.spi_r = sa._random(8)
        sa._nonce_i, sa._nonce_r = nonce.data, sa._random(NONCE_SIZE)
        dh = DhGroup.of(group.id).generate(sa._random)
        try:
            shared = dh.shared_secret(ke.data)
        except IkeCryptoError:
            reason = "invalid KE data"
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, reason, close=reason) from None
        peer = sa.remote
        sa.natted = nat_seen(sa, message, bytes(8), peer) or sa.config.encap
        # RFC 7383 §2.3: announced in the response only when the request announced it.
        peer_fragments = message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        sa._framing.fragmentation = sa._fragmentation_offered and peer_fragments
        self._answer = (
            SaPayload((answer,)), KePayload(group.id, dh.public_bytes), NoncePayload(sa._nonce_r),
            *nat_detection(sa, sa.spi_r, address_of(peer[0]), peer[1]),
            *(fragmentation_notify(sa) if peer_fragments else []),
            *(signature_hashes_notify(sa) if sa._peer_offer.hashes is not None else []),
            *multiple_auth_notify(sa),
            *certreq(sa),
        )  # fmt: skip
        derive(sa, suite, shared)
        sa._deadline = now + sa.config.half_open_timeout


def _alternative(sa: Ikev2Sa, sa_payload: SaPayload) -> tuple[Proposal, Suite] | None:
    """Where the connection that matched the addresses best has none of the proposals
    offered, another connection for those addresses that has one answers, as strongSwan
    tries its alternative ike_cfgs: the IKE SA is that connection's from now on."""
    if sa._candidates is None:
        return None
    for candidate in sa._candidates():
        if candidate.config.name == sa.config.name:
            continue
        chosen = choose(candidate.config.proposals, sa_payload.proposals, ProtocolId.IKE)
        if chosen is not None:
            log.info("%s: no proposal of its own chosen, trying connection %s", sa._name(),
                     candidate.config.name)  # fmt: skip
            sa._switch_connection(candidate)
            return chosen
    return None


def derive(sa: Ikev2Sa, suite: Suite, shared: bytes) -> None:
    """SKEYSEED and the seven keys (RFC 7296 §2.14), and the SK ciphers of each way."""

    def keys(prf: Prf, encr_size: int, integ_size: int) -> IkeSaKeys:
        return derive_ike_sa_keys(prf, sa._nonce_i, sa._nonce_r, shared, sa.spi_i, sa.spi_r,
                                  encr_size, integ_size)  # fmt: skip

    take_keys(sa, suite, keys)


def take_keys(sa: Ikev2Sa, suite: Suite, derive: Derive) -> None:
    """The IKE SA's suite and keys, made by `derive` with the suite's PRF and key sizes
    (§2.14, or §2.18 for a rekeyed IKE SA): SK_d, SK_pi and SK_pr kept, SK_e and SK_a as
    the SK ciphers of each way."""
    encr = suite_get(suite, TransformType.ENCR)
    prf_t = suite_get(suite, TransformType.PRF)
    integ = suite_get(suite, TransformType.INTEG)
    assert encr is not None and prf_t is not None
    integ_id = integ.id if integ is not None else 0
    sa.suite = suite
    sa._prf = Prf(prf_t.id)
    keys = derive(sa._prf, encr_key_size(encr), integ_key_size(integ_id))
    sa._sk_d, sa._sk_pi, sa._sk_pr = keys.sk_d, keys.sk_pi, keys.sk_pr
    to_r = SkCipher.of(encr, integ_id, keys.sk_ei, keys.sk_ai, random_bytes=sa._random)
    to_i = SkCipher.of(encr, integ_id, keys.sk_er, keys.sk_ar, random_bytes=sa._random)
    framing = sa._framing
    framing.outbound, framing.inbound = (to_r, to_i) if sa.initiator else (to_i, to_r)


def fragmentation_notify(sa: Ikev2Sa) -> list[NotifyPayload]:
    """N(IKEV2_FRAGMENTATION_SUPPORTED), empty, in IKE_SA_INIT (RFC 7383 §2.3)."""
    if not sa._fragmentation_offered:
        return []
    return [NotifyPayload(ProtocolId.NONE, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)]


def signature_hashes_notify(sa: Ikev2Sa) -> list[NotifyPayload]:
    """N(SIGNATURE_HASH_ALGORITHMS) with the hashes this end verifies with (RFC 7427 §4),
    when either end of the connection uses a public key (of any connection IKE_AUTH may
    choose, for a responder that has several)."""
    ends = _ends(sa)
    if not sa._signature_hashes_offered or not any(
        config.local_auth is not None or verifier.pubkey for config, verifier in ends
    ):
        return []
    hashes = sorted({h for _, verifier in ends for h in announced_hashes(verifier)})
    data = encode_hashes(tuple(hashes))
    return [NotifyPayload(ProtocolId.NONE, NotifyType.SIGNATURE_HASH_ALGORITHMS, b"", data)]


def certreq(sa: Ikev2Sa) -> list[CertReqPayload]:
    """The responder's CERTREQ, when it checks the initiator by certificate (§3.7): of
    the CAs of every connection IKE_AUTH may choose, as strongSwan asks before it knows
    the peer, so that a client that sends its certificate only when asked sends it."""
    payloads = [p for p in (v.certreq() for _, v in _ends(sa)) if p is not None]
    if len(payloads) < 2:
        return payloads
    keyids = dict.fromkeys(p.data[i : i + 20] for p in payloads for i in range(0, len(p.data), 20))
    return [CertReqPayload(payloads[0].encoding, b"".join(keyids))]


def _ends(sa: Ikev2Sa) -> list[tuple[IkeConfig, Verifier]]:
    """The connection of the IKE SA with its verifier, and for a responder whose addresses
    more than one connection takes, each other one's too."""
    ends = [(sa.config, sa._verifier)]
    if sa._candidates is not None:
        ends += [(c.config, verifier_for(c.config)) for c in sa._candidates()
                 if c.config.name != sa.config.name]  # fmt: skip
    return ends


def peer_offer(message: IkeMessage) -> PeerOffer:
    """What the peer's IKE_SA_INIT announced: its hashes (RFC 7427 §4), a CERTREQ;
    `SignatureError` for hashes that do not decode."""
    hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    return PeerOffer(
        decode_hashes(hashes.data) if hashes is not None else None,
        message.first(CertReqPayload) is not None,
        message.notify(NotifyType.MULTIPLE_AUTH_SUPPORTED) is not None,
    )


def nat_detection(sa: Ikev2Sa, spi_r: bytes, peer: IPAddress, port: int) -> list[NotifyPayload]:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | port) of this end, and of the peer as this
    end sees it (the initiator: as configured; the responder: where the request came
    from)."""
    local = _nat_hash(sa.spi_i, spi_r, sa.config.local_addr, IKE_PORT)
    remote = _nat_hash(sa.spi_i, spi_r, peer, port)
    if sa.config.encap:
        # As strongSwan's encap=yes: a source hash nobody can match makes both ends
        # believe in a NAT, so ESP goes in UDP 4500 (RFC 3948).
        local = sa._random(20)
    return [
        NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_SOURCE_IP, b"", local),
        NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_DESTINATION_IP, b"", remote),
    ]


def nat_seen(sa: Ikev2Sa, message: IkeMessage, spi_r: bytes, peer: Address) -> bool:
    """Did the peer's NAT_DETECTION notifies reveal a NAT (or its own encap)?"""
    source = [n for n in message.get(NotifyPayload)
              if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]  # fmt: skip
    dest = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if not source or dest is None:
        return False
    expected_src = _nat_hash(sa.spi_i, spi_r, address_of(peer[0]), peer[1])
    expected_dst = _nat_hash(sa.spi_i, spi_r, sa.config.local_addr, IKE_PORT)
    return all(n.data != expected_src for n in source) or dest.data != expected_dst


def _nat_hash(spi_i: bytes, spi_r: bytes, address: IPAddress, port: int) -> bytes:
    return hashlib.sha1(spi_i + spi_r + address.packed + port.to_bytes(2, "big")).digest()
