"""Quick Mode as tasks, for its initiator and its responder, with and without PFS
(RFC 2409 §5.5)::

    QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr }  -->
        <-- QM2 *{ HASH(2), SA, Nr, [KE], IDci, IDcr }
    QM3 *{ HASH(3) }                            -->

Each exchange has its own Message ID and CBC IV (Appendix B); a task holds them with its
nonces, its DH pair, its offer and the Quick Mode IDs, and hands the pair of IPsec SAs it
makes to the ISAKMP SA (`IsakmpSa.add_child`, which reports `ChildSaUp`).

The initiator has both SAs at QM2 and reports `ChildSaUp` before it sends QM3; its
outbound SA waits one QM1 -> QM2 round trip (`outbound_after`, `delivery_wait`) so that
the first packet, held since the ACQUIRE, does not overtake QM3. The responder's inbound
SPI is reserved (LARVAL) when QM1 arrives, and it reports `ChildSaUp` only when QM3 does:
an ESP packet can reach its LARVAL SA before the key manager fills it in, which the
stack holds and releases then.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

from larval.crypto.dh import DhKeyPair
from larval.crypto.ike_keys import ChildSaKeys
from larval.crypto.ike_transforms import TransformType, encr_key_size, integ_key_size
from larval.crypto.ikev1_keys import hash1, hash2, hash3, ikev1_dh_group, quick_mode_keymat
from larval.ike.config import ChildConfig, ChildPolicy, IPAddress, IPNetwork
from larval.ike.events import ChildSaFailed, ChildSaUp
from larval.wire import Buffer

from .config import EspChoice, esp_choices
from .constants import ExchangeType, IpsecAttr, LifeType, NotifyType, ProtocolId
from .errors import IkeV1ExchangeError, IkeV1ProtocolError
from .isakmp import NONCE_SIZE, Inbound, IsakmpSa, Outgoing, after_hash, delivery_wait
from .message import encode_chain
from .payloads import HashPayload, IdPayload, KePayload, NoncePayload, NotifyPayload, Payload
from .rules import check_payloads
from .sa_payload import Attribute, Proposal, SaPayload, Transform

__all__ = ["QuickModeInitiator", "QuickModeResponder", "QuickModeTask"]

QM = ExchangeType.QUICK_MODE


class QuickModeTask:
    """One Quick Mode exchange in progress, by its Message ID (RFC 2409 §5.5)."""

    exchange = QM
    rekeys = None
    initiator = False

    def __init__(self, sa: IsakmpSa, message_id: int, iv: bytes, spi_in: int) -> None:
        self.sa = sa
        self.message_id = message_id
        self.iv = iv  # the CBC IV of the exchange's next message (Appendix B)
        self.spi_in = spi_in
        self.child: ChildConfig | None = None
        self.nonce_i = self.nonce_r = b""
        self.dh: DhKeyPair | None = None
        self.local_ts: IPNetwork | None = None
        self.remote_ts: IPNetwork | None = None
        #: The exchange is over (its SAs made, or failed): the session forgets it.
        self.done = False
        self._next: Outgoing | None = None

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"<{type(self).__name__} {self.message_id:08x} {role}>"  # never keys

    def build(self, now: float) -> Outgoing | None:
        """What this end sends next, once; None when nothing is to go."""
        out, self._next = self._next, None
        return out

    def process(self, inbound: Inbound, now: float) -> None:
        raise NotImplementedError

    def _seal(self, payloads: tuple[Payload, ...], text: str, resend: bool) -> None:
        message = self.sa.message(QM, payloads, self.message_id)
        datagram, self.iv = self.sa.seal(message, self.iv)
        self._next = Outgoing(datagram, text, self.message_id if resend else None)

    def _child_sa_up(self, choice: EspChoice, spi_out: int, shared: bytes | None) -> ChildSaUp:
        """KEYMAT for each direction with that direction's SPI (RFC 2409 §5.5)."""
        sa = self.sa
        assert sa.prf is not None and sa.keys is not None and self.child is not None
        suite = choice.suite()
        encr = next(t for t in suite if t.type == TransformType.ENCR)
        integ = next((t.id for t in suite if t.type == TransformType.INTEG), 0)
        encr_len, integ_len = encr_key_size(encr), integ_key_size(integ)
        prf, skeyid_d = sa.prf, sa.keys.skeyid_d

        def keys(spi: int) -> ChildSaKeys:
            material = quick_mode_keymat(prf, skeyid_d, ProtocolId.ESP, spi.to_bytes(4, "big"),
                                         self.nonce_i, self.nonce_r, encr_len + integ_len,
                                         shared)  # fmt: skip
            return ChildSaKeys(material[:encr_len], material[encr_len:])

        assert self.local_ts is not None and self.remote_ts is not None
        return ChildSaUp(self.child, self.spi_in, spi_out, suite, keys(self.spi_in),
                         keys(spi_out), (self.local_ts,), (self.remote_ts,), sa.initiator,
                         sa.natted or choice.udp)  # fmt: skip


class QuickModeInitiator(QuickModeTask):
    """QM1 -->, then QM3 --> once QM2 made the pair of IPsec SAs."""

    initiator = True

    @classmethod
    def start(cls, sa: IsakmpSa, child: ChildConfig) -> QuickModeInitiator | None:
        """The exchange for `child`, with QM1 built; None (and `ChildSaFailed` reported)
        when IKEv1 cannot carry any of its proposals, before any SPI is reserved."""
        mode = sa.encapsulation(child.mode)
        offered = tuple(esp_choices(child.proposals, child.life_time, mode))
        if not offered:
            sa.report(ChildSaFailed(child, "no ESP proposal IKEv1 can carry"))
            return None
        spi_in = sa.allocate_spi()  # only now: a LARVAL SA nobody completes lingers
        mid = sa.new_message_id()
        return cls(sa, mid, spi_in, child, offered)

    def __init__(
        self,
        sa: IsakmpSa,
        message_id: int,
        spi_in: int,
        child: ChildConfig,
        offered: tuple[EspChoice, ...],
    ) -> None:
        """QM1 *{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->"""
        super().__init__(sa, message_id, sa.phase2_iv(message_id), spi_in)
        self.child = child
        self.nonce_i = sa.random(NONCE_SIZE)
        groups = [c.group for c in offered if c.group is not None]
        self.dh = ikev1_dh_group(groups[0]).generate(sa.random) if groups else None
        if self.dh is not None:
            # One KE for one group: the PFS transforms are those of the first group.
            offered = tuple(c for c in offered if c.group in (None, self.dh.group.dh_id))
        self.offered = offered
        spi = spi_in.to_bytes(4, "big")
        transforms = tuple(c.transform(n) for n, c in enumerate(offered, 1))
        after: list[Payload] = [
            SaPayload((Proposal(1, ProtocolId.ESP, spi, transforms),)),
            NoncePayload(self.nonce_i),
        ]
        if self.dh is not None:
            after.append(KePayload(self.dh.public_bytes))
        self.local_ts, self.remote_ts = child.local_ts[0], child.remote_ts[0]
        after += [IdPayload.for_network(self.local_ts), IdPayload.for_network(self.remote_ts)]
        assert sa.prf is not None and sa.keys is not None
        digest = hash1(sa.prf, sa.keys.skeyid_a, message_id, encode_chain(after))
        text = f"QM1 [ HASH SA No{' KE' if self.dh else ''} ID ID ]"
        self._seal((HashPayload(digest), *after), text, resend=True)

    def process(self, inbound: Inbound, now: float) -> None:
        """<-- QM2: the IPsec SAs are up here; QM3 *{ HASH(3) } -->"""
        sa, child = self.sa, self.child
        message, iv = sa.open(inbound.data, self.iv)
        check_payloads(message, 2, encrypted=True)
        assert sa.prf is not None and sa.keys is not None and child is not None
        nonce = message.first(NoncePayload)
        assert nonce is not None
        skeyid_a, mid = sa.keys.skeyid_a, self.message_id
        sa.verify_hash(message, hash2(sa.prf, skeyid_a, mid, self.nonce_i, after_hash(message)))
        qm1 = sa.answered(mid)
        rtt = qm1.round_trip(now) if qm1 is not None else None
        self.done = True
        self.nonce_r = nonce.data
        sa_payload = message.first(SaPayload)
        assert sa_payload is not None
        proposals = sa_payload.proposals
        if len(proposals) != 1 or len(proposals[0].transforms) != 1 or len(proposals[0].spi) != 4:
            sa.report(ChildSaFailed(child, "QM2: not one ESP transform chosen"))
            return
        choice = EspChoice.from_transform(proposals[0].transforms[0])
        if choice not in self.offered:
            sa.report(ChildSaFailed(child, "QM2: a transform we did not offer"))
            return
        shared = None
        if choice.group is not None:
            ke = message.first(KePayload)
            if ke is None or self.dh is None:
                sa.report(ChildSaFailed(child, "QM2: no KE for PFS"))
                return
            shared = self.dh.shared_secret(ke.data)
        lifetime = message.notify(NotifyType.RESPONDER_LIFETIME)
        seconds = _lifetime_seconds(lifetime.data) if lifetime is not None else None
        if seconds is not None and seconds < child.life_time:
            # RFC 2407 §4.6.3.1: the responder's shorter lifetime is the SA's.
            rekey = min(child.rekey_time, seconds * 9 // 10)
            self.child = replace(child, life_time=seconds, rekey_time=rekey)
        spi_out = int.from_bytes(proposals[0].spi, "big")
        up = self._child_sa_up(choice, spi_out, shared)
        sa.add_child(replace(up, outbound_after=delivery_wait(rtt)))
        digest = hash3(sa.prf, skeyid_a, mid, self.nonce_i, self.nonce_r)
        self.iv = iv
        self._seal((HashPayload(digest),), "QM3 [ HASH ]", resend=False)


class QuickModeResponder(QuickModeTask):
    """--> QM1 (GETSPI, LARVAL), <-- QM2, --> QM3: the inbound SA may be filled in."""

    def __init__(self, sa: IsakmpSa, message_id: int) -> None:
        if message_id == 0:
            raise IkeV1ProtocolError(NotifyType.INVALID_MESSAGE_ID, "Quick Mode with M-ID 0")
        super().__init__(sa, message_id, sa.phase2_iv(message_id), 0)
        self.up: ChildSaUp | None = None  # reported when QM3 arrives

    def process(self, inbound: Inbound, now: float) -> None:
        if self.up is None:
            self._qm1(inbound)
        else:
            self._qm3(inbound)

    def _qm1(self, inbound: Inbound) -> None:
        """QM1 -->  GETSPI (LARVAL), then <-- QM2 *{ HASH(2), SA, Nr, [KE], IDci, IDcr }."""
        sa, mid = self.sa, self.message_id
        message, iv = sa.open(inbound.data, self.iv)
        check_payloads(message, 1, encrypted=True)
        assert sa.prf is not None and sa.keys is not None
        sa.verify_hash(message, hash1(sa.prf, sa.keys.skeyid_a, mid, after_hash(message)))
        sa_payload, nonce = message.first(SaPayload), message.first(NoncePayload)
        assert sa_payload is not None and nonce is not None
        # A refusal names the initiator's SPI, so that it can tell which Quick Mode failed.
        spi = next((p.spi for p in sa_payload.proposals if len(p.spi) == 4), b"")
        ids = message.get(IdPayload)
        remote_ts = ids[0].network if ids else ipaddress.ip_network(sa.config.remote_addr)
        local_ts = ids[1].network if ids else ipaddress.ip_network(sa.config.local_addr)
        if remote_ts is None or local_ts is None:
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, "IDs that are no networks",
                                     spi=spi)  # fmt: skip
        if not sa.initiator and sa.virtual_ips and not _within(remote_ts, _hosts(sa.virtual_ips)):
            # A client with a virtual address speaks for it alone (as IKEv2 narrows TSi).
            reason = f"Quick Mode ID {remote_ts} is not the peer's virtual address"
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, reason, spi=spi)
        if not sa.initiator and sa.unity_split and local_ts.prefixlen == 0:
            # A Cisco Unity client told split networks proposes 0.0.0.0/0 for ours and
            # narrows it on its end; ours is the first split network, the IDs echoed
            # unchanged (as strongSwan's unity plugin answers).
            local_ts = sa.unity_split[0]
        policy = _asked_policy(sa.child_policy, sa_payload, remote_ts, local_ts)
        if (
            policy is None
            or not _within(remote_ts, policy.remote_ts)
            or not _within(local_ts, policy.local_ts)
        ):
            reason = f"Quick Mode IDs {remote_ts} === {local_ts} not in policy"
            raise IkeV1ExchangeError(NotifyType.INVALID_ID_INFORMATION, reason, spi=spi)
        chosen = self._choose(sa_payload, policy, message.first(KePayload) is not None)
        if chosen is None:
            sa.report(ChildSaFailed(policy, "no ESP proposal chosen"))
            raise IkeV1ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no ESP proposal chosen",
                                     spi=spi)  # fmt: skip
        proposal, transform, choice = chosen
        if len(proposal.spi) != 4:
            raise IkeV1ExchangeError(NotifyType.INVALID_SPI, "no 4-octet SPI", spi=spi)
        shared = None
        if choice.group is not None:
            ke = message.first(KePayload)
            assert ke is not None
            self.dh = ikev1_dh_group(choice.group).generate(sa.random)
            shared = self.dh.shared_secret(ke.data)
        self.spi_in = sa.allocate_spi()  # RFC 2367 §2.3.2: GETSPI, LARVAL until QM3
        spi_out = int.from_bytes(proposal.spi, "big")
        self.nonce_i, self.nonce_r = nonce.data, sa.random(NONCE_SIZE)
        answer = Proposal(proposal.number, ProtocolId.ESP, self.spi_in.to_bytes(4, "big"),
                          (transform,))  # fmt: skip
        after: list[Payload] = [SaPayload((answer,)), NoncePayload(self.nonce_r)]
        if self.dh is not None:
            after.append(KePayload(self.dh.public_bytes))
        if ids:
            after += list(ids)  # echoed unchanged (RFC 2409 §5.5)
        if policy.life_time < choice.lifetime:
            # RFC 2407 §4.6.3.1: our policy's lifetime is shorter than the offer's.
            after.append(_responder_lifetime(self.spi_in, policy.life_time))
        digest = hash2(sa.prf, sa.keys.skeyid_a, mid, nonce.data, encode_chain(after))
        self.child, self.local_ts, self.remote_ts = policy, local_ts, remote_ts
        self.up = self._child_sa_up(choice, spi_out, shared)
        self.iv = iv
        # Nothing answers QM3, so QM2 is resent until QM3 comes.
        self._seal((HashPayload(digest), *after), "QM2 [ HASH SA No ID ID ]", resend=True)

    def _qm3(self, inbound: Inbound) -> None:
        """QM3 *{ HASH(3) } -->  now the inbound SA may be filled in."""
        sa = self.sa
        message, _ = sa.open(inbound.data, self.iv)
        check_payloads(message, 3, encrypted=True)
        assert sa.prf is not None and sa.keys is not None and self.up is not None
        digest = hash3(sa.prf, sa.keys.skeyid_a, self.message_id, self.nonce_i, self.nonce_r)
        sa.verify_hash(message, digest)
        sa.answered(self.message_id)
        self.done = True
        sa.add_child(self.up)

    def _choose(
        self, offer: SaPayload, policy: ChildConfig, with_ke: bool
    ) -> tuple[Proposal, Transform, EspChoice] | None:
        """The first of policy's ESP transforms the offer contains (ours decide)."""
        mode = self.sa.encapsulation(policy.mode)
        offered = [
            (p, t, EspChoice.from_transform(t))
            for p in offer.proposals
            if p.protocol_id == ProtocolId.ESP
            for t in p.transforms
        ]
        for ours in esp_choices(policy.proposals, policy.life_time, mode, pfs=with_ke):
            for proposal, transform, theirs in offered:
                tunnel_ok = theirs.tunnel == (policy.mode != "transport")
                if theirs == ours and tunnel_ok and (theirs.group is not None) == with_ke:
                    return proposal, transform, theirs
        return None


def _asked_policy(
    child_policy: ChildPolicy | None, offer: SaPayload, remote_ts: IPNetwork, local_ts: IPNetwork
) -> ChildConfig | None:
    """The responder's policy for a Quick Mode offer, or None: asked for transport mode
    when an ESP transform of the offer has the Transport encapsulation mode (RFC 2407
    §4.5), else for tunnel mode."""
    if child_policy is None:
        return None
    transport = any(
        not EspChoice.from_transform(t).tunnel
        for p in offer.proposals
        if p.protocol_id == ProtocolId.ESP
        for t in p.transforms
    )
    if transport:
        return child_policy((remote_ts,), (local_ts,), "transport")
    return child_policy((remote_ts,), (local_ts,))


def _within(network: IPNetwork, allowed: tuple[IPNetwork, ...]) -> bool:
    return any(
        network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
        for a in allowed
    )


def _hosts(addresses: tuple[IPAddress, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(a) for a in addresses)


def _lifetime_seconds(data: bytes) -> int | None:
    """SA_LIFE_DURATION in seconds from RESPONDER-LIFETIME's attributes (RFC 2407 §4.6.3.1)."""
    offset, life_type, seconds = 0, LifeType.SECONDS, None
    while offset + 4 <= len(data):
        word, value = struct.unpack_from(">HH", data, offset)
        offset += 4
        number = value
        if not word & 0x8000:
            number = int.from_bytes(data[offset : offset + value], "big")
            offset += value
        attr = word & 0x7FFF
        if attr == IpsecAttr.SA_LIFE_TYPE:
            life_type = LifeType(number)
        elif attr == IpsecAttr.SA_LIFE_DURATION and life_type == LifeType.SECONDS:
            seconds = number
    return seconds


def _responder_lifetime(spi_in: int, seconds: int) -> NotifyPayload:
    """N(RESPONDER-LIFETIME) for our inbound SA: SA_LIFE_TYPE seconds, SA_LIFE_DURATION."""
    buf = Buffer()
    Attribute(IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS).encode(buf)
    Attribute.of(IpsecAttr.SA_LIFE_DURATION, seconds).encode(buf)
    return NotifyPayload(
        NotifyType.RESPONDER_LIFETIME, ProtocolId.ESP, spi_in.to_bytes(4, "big"), buf.data
    )
