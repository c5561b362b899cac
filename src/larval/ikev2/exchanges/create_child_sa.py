"""CREATE_CHILD_SA (RFC 7296 §1.3), both roles: a new CHILD_SA, the renewal of one, and
the renewal of the IKE SA itself, each with its collision (§2.8.1, §2.8.2).

    HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi,] TSi, TSr}  -->   a CHILD_SA (§1.3.1, §1.3.3)
                                <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
    HDR, SK {SA, Ni, KEi}  -->   an IKE SA to replace this one (§1.3.2)
                                <--  HDR, SK {SA, Nr, KEr}

An initiator's payloads are made when its task is made (when the user asks), so that the
SPI from the stack and the random draws come in the order the user called for them,
whatever the window does. When both ends renew the same SA at once, the responder's task
tells ours (`collision`), and ours decides, when its answer comes, which new SA is
redundant: the one made with the lowest of the four nonces, deleted by its initiator.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Hashable
from typing import TYPE_CHECKING

from larval.crypto.dh import DhGroup, DhKeyPair
from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import TransformType
from larval.ike.config import ChildConfig, IPNetwork, Suite
from larval.ike.events import ChildSaFailed, IkeSaRekeyed
from larval.ike.task import redundant

from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..negotiate import choose, narrow, networks_of, selectors_for, suite_get, to_wire
from ..payloads import KePayload, NoncePayload, NotifyPayload, Payload
from ..sa_payload import SaPayload
from ..ts_payload import TsPayload
from .child_sa import Agreed, answered_mode, child_refused_after_all, child_up
from .config_payload import own_ts, peer_ts
from .proposals import (
    asked_policy,
    groups,
    log_no_proposal,
    proposed_networks,
    transport_notify,
    with_group_first,
)
from .sa import NONCE_SIZE, ChildSa, Ikev2Sa, log
from .tasks import AnswerTask, ExchangeTask

if TYPE_CHECKING:
    from ..session import IkeSession

__all__ = ["IKE_SA", "ChildCreate", "CreateChildSaResponder", "IkeRekey", "renewing"]

#: What `IkeRekey` renews, as `TaskManager.rekeying` looks it up.
IKE_SA = "IKE SA"


def renewing(spi_in: int) -> Hashable:
    """What the renewal of the CHILD_SA with inbound SPI `spi_in` renews, as
    `TaskManager.rekeying` looks it up."""
    return ("child", spi_in)


class ChildCreate(ExchangeTask):
    """The initiator of a new CHILD_SA, or of the renewal of `old` (§1.3.1, §1.3.3)."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: Ikev2Sa, config: ChildConfig, old: ChildSa | None) -> None:
        super().__init__(sa)
        self.config = config
        self.old = old
        self.spi_in = sa._allocate_spi()
        self._nonce_i = sa._random(NONCE_SIZE)
        spi = self.spi_in.to_bytes(4, "big")
        proposals = tuple(
            to_wire(n + 1, ProtocolId.ESP, spi, suite) for n, suite in enumerate(config.proposals)
        )
        payloads: list[Payload] = []
        if old is not None:
            payloads.append(
                NotifyPayload(ProtocolId.ESP, NotifyType.REKEY_SA, old.spi_in.to_bytes(4, "big"))
            )
        if config.mode == "transport":
            payloads.append(NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE))
        local_ts = old.local_ts if old is not None else _own_networks(sa, config.local_ts)
        remote_ts = old.remote_ts if old is not None else config.remote_ts
        payloads += [SaPayload(proposals), NoncePayload(self._nonce_i)]
        # PFS (RFC 7296 §1.3.1): a KE for the first group the proposals name.
        named = groups(config.proposals)
        self._dh: DhKeyPair | None = DhGroup.of(named[0]).generate(sa._random) if named else None
        if self._dh is not None:
            payloads.append(KePayload(named[0], self._dh.public_bytes))
        payloads += [
            TsPayload(PayloadType.TSi, selectors_for(local_ts)),
            TsPayload(PayloadType.TSr, selectors_for(remote_ts)),
        ]
        self._payloads = tuple(payloads)
        #: RFC 7296 §2.8.1: the peer rekeyed the same CHILD_SA while this exchange was
        #: under way; its exchange's new inbound SPI, Ni and Nr.
        self.collision: tuple[int, bytes, bytes] | None = None

    def __repr__(self) -> str:
        old = f" renewing {self.old.spi_in:08x}" if self.old is not None else ""
        return f"<ChildCreate {self.config.name} {self.spi_in:08x}{old}>"

    @property
    def rekeys(self) -> Hashable | None:
        return renewing(self.old.spi_in) if self.old is not None else None

    def build(self, now: float) -> tuple[Payload, ...]:
        return self._payloads

    def process(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}  or an error notify."""
        sa, config, old, dh = self._sa, self.config, self.old, self._dh
        sa_payload, nonce = message.first(SaPayload), message.first(NoncePayload)
        tsi = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        refusals = [n for n in message.get(NotifyPayload) if n.notify_type < 16384]
        chosen = (
            choose(config.proposals, sa_payload.proposals, ProtocolId.ESP) if sa_payload else None
        )
        if refusals or sa_payload is None or nonce is None or not tsi or not tsr or not chosen:
            reason = ", ".join(NotifyType(n.notify_type).name for n in refusals) or "bad answer"
            if self.collision is not None:
                # §2.8.1, §2.25: the peer's rekey of the same CHILD_SA went through (and
                # it deletes the old one); ours is simply not needed.
                log.info("%s: CHILD_SA %08x was rekeyed by the peer, our rekey is void (%s)",
                         sa._name(), old.spi_in if old else 0, reason)  # fmt: skip
                return
            sa._events.append(ChildSaFailed(config, f"CREATE_CHILD_SA refused: {reason}"))
            return
        shared = None
        if suite_get(chosen[1], TransformType.DH) is not None:
            ke = message.first(KePayload)
            if dh is None or ke is None or ke.dh_group != dh.group.dh_id:
                sa._events.append(ChildSaFailed(config, "CREATE_CHILD_SA: no KE for PFS"))
                return
            try:
                shared = dh.shared_secret(ke.data)
            except IkeCryptoError:
                sa._events.append(ChildSaFailed(config, "CREATE_CHILD_SA: invalid KE"))
                return
        own = own_ts(sa, tsi[0])
        if not own.selectors:
            # §2.19: a TSi apart from the virtual addresses has no address to send from.
            given = ", ".join(str(v) for v in sa.virtual_ips) or "none"
            offered = ", ".join(str(n) for n in networks_of(tsi[0].selectors)) or "none"
            child_refused_after_all(sa, config, self.spi_in, f"the responder's TSi ({offered}) "
                                    f"is outside the virtual IP {given}", now)  # fmt: skip
            return
        spi_out = int.from_bytes(sa_payload.proposals[0].spi, "big")
        taken = answered_mode(sa, config, message)
        if isinstance(taken, str):
            child_refused_after_all(sa, config, self.spi_in, taken, now)
            return
        child_up(sa, taken, self.spi_in, spi_out, chosen[1], *proposed_networks(own, tsr[0]),
                 nonces=(self._nonce_i, nonce.data), exchange_initiator=True,
                 shared=shared)  # fmt: skip
        if old is not None and self.collision is not None:
            _, peer_nonce_i, peer_nonce_r = self.collision
            # RFC 7296 §2.8.1: of the two new CHILD_SAs, the redundant one is deleted by
            # the node that created it, its exchange's initiator; the initiator of the
            # other one deletes the old CHILD_SA.
            if redundant((self._nonce_i, nonce.data), (peer_nonce_i, peer_nonce_r)):
                log.info("%s: simultaneous rekey of CHILD_SA %08x, ours is redundant",
                         sa._name(), old.spi_in)  # fmt: skip
                sa.children[self.spi_in].rekeyed = True  # the peer's new one carries on
                sa.delete_child(self.spi_in, now)
                return
            log.info("%s: simultaneous rekey of CHILD_SA %08x, the peer's is redundant",
                     sa._name(), old.spi_in)  # fmt: skip
        if old is not None and old.spi_in in sa.children:
            # §2.8: the initiator of the rekey deletes the old CHILD_SA.
            old.rekeyed = True
            sa.delete_child(old.spi_in, now)


def _own_networks(sa: Ikev2Sa, local_ts: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    """The TSi of a new CHILD_SA: for an initiator that was given virtual addresses, the
    ones within `local_ts` (RFC 7296 §2.19: it speaks for them alone, as its first
    CHILD_SA was narrowed to them; strongSwan proposes its virtual IPs for a dynamic
    TSi). `local_ts` is a policy's ``0.0.0.0/0`` when an ACQUIRE asks again for a
    CHILD_SA that expired or was deleted. Unchanged without virtual addresses, or when
    none lies within `local_ts` (the answer is checked then)."""
    if not sa.config.vips or not sa.virtual_ips:  # the end that asked, in either role
        return local_ts
    mine = tuple(ipaddress.ip_network(v) for v in sa.virtual_ips)
    within = tuple(networks_of(narrow(selectors_for(local_ts), mine)))
    return within or local_ts


class IkeRekey(ExchangeTask):
    """The initiator of a new IKE SA to replace this one (§1.3.2): the new IKE SA, then
    the DELETE of this one (§2.18)."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        group = suite_get(sa.suite, TransformType.DH)
        assert group is not None
        self._dh = DhGroup.of(group.id).generate(sa._random)
        self.spi_i = sa._random(8)
        self._nonce_i = sa._random(NONCE_SIZE)
        proposals = tuple(
            to_wire(n + 1, ProtocolId.IKE, self.spi_i, suite)
            for n, suite in enumerate(with_group_first(sa.config.proposals, group.id))
        )
        self._payloads: tuple[Payload, ...] = (
            SaPayload(proposals),
            NoncePayload(self._nonce_i),
            KePayload(group.id, self._dh.public_bytes),
        )
        #: RFC 7296 §2.8.2: the IKE SA made answering the peer's rekey while this one
        #: was under way, with that exchange's Ni and Nr.
        self.collision: tuple[IkeSession, bytes, bytes] | None = None

    def __repr__(self) -> str:
        return f"<IkeRekey {self.spi_i.hex()}>"

    @property
    def rekeys(self) -> Hashable | None:
        return IKE_SA

    def build(self, now: float) -> tuple[Payload, ...]:
        return self._payloads

    def process(self, message: IkeMessage, now: float) -> None:
        """<--  HDR, SK {SA, Nr, KEr}. After a collision (§2.8.2) one of the two new IKE
        SAs is redundant: the one made with the lowest of the four nonces, deleted by its
        initiator. The other takes the CHILD_SAs, and its initiator deletes this one."""
        sa, collision = self._sa, self.collision
        sa_payload, nonce, ke = (
            message.first(SaPayload),
            message.first(NoncePayload),
            message.first(KePayload),
        )
        chosen = (
            choose(sa.config.proposals, sa_payload.proposals, ProtocolId.IKE)
            if sa_payload
            else None
        )
        if (
            sa_payload is None
            or nonce is None
            or ke is None
            or chosen is None
            or len(sa_payload.proposals[0].spi) != 8
        ):
            self._failed()
            return
        try:
            shared = self._dh.shared_secret(ke.data)
        except IkeCryptoError:
            self._failed()
            return
        new = sa._successor(chosen[1], shared, self.spi_i, sa_payload.proposals[0].spi,
                            self._nonce_i, nonce.data, initiator=True, now=now)  # fmt: skip
        sa._events.append(IkeSaRekeyed(new))
        if collision is not None:
            theirs, peer_nonce_i, peer_nonce_r = collision
            if redundant((self._nonce_i, nonce.data), (peer_nonce_i, peer_nonce_r)):
                # §2.8.2: ours is redundant; we made it, we delete it. The peer's survives
                # with the CHILD_SAs, and the peer deletes this IKE SA.
                log.info("%s: simultaneous IKE SA rekey, ours (%s) is redundant",
                         sa._name(), new.spi_i.hex())  # fmt: skip
                sa._replace(theirs)
                new.delete(now)
                return
            log.info("%s: simultaneous IKE SA rekey, the peer's (%s) is redundant",
                     sa._name(), theirs.spi_i.hex())  # fmt: skip
        sa._replace(new)
        sa.delete(now)

    def _failed(self) -> None:
        if self.collision is not None:
            # §2.8.2: the peer finished its rekey without noticing ours (it answers with
            # TEMPORARY_FAILURE): the IKE SA its exchange made is the one that stays.
            self._sa._replace(self.collision[0])
        else:
            self._sa._ike_rekey_started = False  # try again at the next timer


class CreateChildSaResponder(AnswerTask):
    """The responder: a CHILD_SA's exchange, or the IKE SA's renewal when the SA payload
    proposes protocol IKE (§1.3.2). An IKE SA already replaced by a rekey takes neither
    (§2.8.2, §2.25: TEMPORARY_FAILURE)."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._exchange: ChildCreateResponder | IkeRekeyResponder | None = None

    def process(self, message: IkeMessage, now: float) -> None:
        if self._sa._replaced_by is not None:
            raise IkeExchangeError(NotifyType.TEMPORARY_FAILURE, "the IKE SA was rekeyed")
        sa_payload = message.first(SaPayload)
        ike = sa_payload is not None and any(
            p.protocol_id == ProtocolId.IKE for p in sa_payload.proposals
        )
        self._exchange = IkeRekeyResponder(self._sa) if ike else ChildCreateResponder(self._sa)
        self._exchange.process(message, now)

    def build(self, now: float) -> tuple[Payload, ...]:
        assert self._exchange is not None
        return self._exchange.build(now)

    def answered(self, now: float) -> None:
        assert self._exchange is not None
        self._exchange.answered(now)


class ChildCreateResponder(AnswerTask):
    """HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi,] TSi, TSr} -->  answered with
    <-- HDR, SK {SA, Nr, [KEr,] TSi, TSr}, or the reason it is refused."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._made: Agreed | None = None
        self._shared: bytes | None = None
        self._nonces = (b"", b"")
        self._old: ChildSa | None = None

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        rekey = message.notify(NotifyType.REKEY_SA)
        sa_payload, nonce = message.first(SaPayload), message.first(NoncePayload)
        # A peer with a virtual address speaks for it alone (RFC 7296 §2.19).
        tsi = [peer_ts(sa, t) for t in message.get(TsPayload) if t.payload_type == PayloadType.TSi]
        tsr = [t for t in message.get(TsPayload) if t.payload_type == PayloadType.TSr]
        if sa_payload is None or nonce is None or not tsi or not tsr:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "CREATE_CHILD_SA without SA, Ni, TS")
        old: ChildSa | None = None
        if rekey is not None:
            spi = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
            old = next((c for c in sa.children.values() if c.spi_out == spi), None)
            if old is None:
                raise IkeExchangeError(NotifyType.CHILD_SA_NOT_FOUND, "no such CHILD_SA to rekey",
                                       protocol_id=ProtocolId.ESP, spi=rekey.spi)  # fmt: skip
            policy: ChildConfig | None = old.config
        else:
            policy = asked_policy(sa, message, tsi[0], tsr[0])
        if policy is None:
            raise IkeExchangeError(NotifyType.TS_UNACCEPTABLE, "no policy for the selectors")
        chosen = choose(policy.proposals, sa_payload.proposals, ProtocolId.ESP)
        if chosen is None or len(chosen[0].spi) != 4:
            log_no_proposal(sa, "ESP", policy.proposals, sa_payload)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no ESP proposal chosen")
        if old is not None:
            ts_i, ts_r = selectors_for(old.remote_ts), selectors_for(old.local_ts)
        else:
            ts_i = narrow(tsi[0].selectors, policy.remote_ts)  # type: ignore[arg-type]
            ts_r = narrow(tsr[0].selectors, policy.local_ts)  # type: ignore[arg-type]
        if not ts_i or not ts_r:
            raise IkeExchangeError(NotifyType.TS_UNACCEPTABLE, "the selectors do not narrow")
        answer, suite = chosen
        group = suite_get(suite, TransformType.DH)
        ke_r: list[Payload] = []
        if group is not None and group.id:
            ke = message.first(KePayload)
            if ke is None or ke.dh_group != group.id:
                # §1.3.1 with §1.2: ask for the group chosen.
                data = struct.pack("!H", group.id)
                raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", data)
            dh = DhGroup.of(group.id).generate(sa._random)
            try:
                self._shared = dh.shared_secret(ke.data)
            except IkeCryptoError:
                raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "invalid KE data") from None
            ke_r = [KePayload(group.id, dh.public_bytes)]
        spi_out = int.from_bytes(answer.spi, "big")
        spi_in = sa._allocate_spi()
        nonce_r = sa._random(NONCE_SIZE)
        mine = to_wire(answer.number, ProtocolId.ESP, spi_in.to_bytes(4, "big"), suite)
        self._answer = (
            *transport_notify(message, policy),
            SaPayload((mine,)),
            NoncePayload(nonce_r),
            *ke_r,
            TsPayload(PayloadType.TSi, ts_i),
            TsPayload(PayloadType.TSr, ts_r),
        )
        self._made = (policy, spi_in, spi_out, suite, tuple(networks_of(ts_r)),
                      tuple(networks_of(ts_i)))  # fmt: skip
        self._nonces = (nonce.data, nonce_r)
        self._old = old

    def answered(self, now: float) -> None:
        sa = self._sa
        assert self._made is not None
        old = self._old
        child_up(sa, *self._made, nonces=self._nonces, exchange_initiator=False,
                 shared=self._shared, replaces=old.spi_in if old is not None else None)  # fmt: skip
        if old is not None:
            old.rekeyed = True  # the peer deletes it once it has installed the new one
        ours = sa._tasks.rekeying(renewing(old.spi_in)) if old is not None else None
        if isinstance(ours, ChildCreate):
            # RFC 7296 §2.8.1: both ends rekey this CHILD_SA at once. Answer as usual and
            # decide which new one stays when our own exchange completes.
            ours.collision = (self._made[1], *self._nonces)


class IkeRekeyResponder(AnswerTask):
    """HDR, SK {SA, Ni, KEi} -->  answered with <-- HDR, SK {SA, Nr, KEr} (§1.3.2)."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._new: tuple[Suite, bytes, bytes, bytes, bytes, bytes] | None = None

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        sa_payload, nonce, ke = (
            message.first(SaPayload),
            message.first(NoncePayload),
            message.first(KePayload),
        )
        assert sa_payload is not None
        chosen = choose(sa.config.proposals, sa_payload.proposals, ProtocolId.IKE)
        if chosen is None or nonce is None or ke is None or len(chosen[0].spi) != 8:
            log_no_proposal(sa, "IKE", sa.config.proposals, sa_payload)
            raise IkeExchangeError(NotifyType.NO_PROPOSAL_CHOSEN, "no IKE proposal chosen")
        answer, suite = chosen
        group = suite_get(suite, TransformType.DH)
        if group is None or ke.dh_group != group.id:
            data = struct.pack("!H", group.id) if group is not None else b""
            raise IkeExchangeError(NotifyType.INVALID_KE_PAYLOAD, "KE of another group", data)
        dh = DhGroup.of(group.id).generate(sa._random)
        try:
            shared = dh.shared_secret(ke.data)
        except IkeCryptoError:
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, "invalid KE data") from None
        spi_r, nonce_r = sa._random(8), sa._random(NONCE_SIZE)
        mine = to_wire(answer.number, ProtocolId.IKE, spi_r, suite)
        self._answer = (SaPayload((mine,)), NoncePayload(nonce_r),
                        KePayload(group.id, dh.public_bytes))  # fmt: skip
        self._new = (suite, shared, answer.spi, spi_r, nonce.data, nonce_r)

    def answered(self, now: float) -> None:
        sa = self._sa
        assert self._new is not None
        suite, shared, spi_i, spi_r, nonce_i, nonce_r = self._new
        new = sa._successor(suite, shared, spi_i, spi_r, nonce_i, nonce_r,
                            initiator=False, now=now)  # fmt: skip
        sa._events.append(IkeSaRekeyed(new))
        ours = sa._tasks.rekeying(IKE_SA)
        if isinstance(ours, IkeRekey):
            # §2.8.2: our own rekey is under way. Which new IKE SA stays is known when it
            # completes; until then the CHILD_SAs stay here.
            ours.collision = (new, nonce_i, nonce_r)
        else:
            sa._replace(new)
