"""INFORMATIONAL (RFC 7296 §1.4), both roles: DELETE of the IKE SA or of CHILD_SAs, and
the empty request that checks the peer is alive (§2.4). Any message that proves itself
also says where a peer behind a NAT is now (§2.23); the session takes that from every
exchange.

    HDR, SK {[D(IKE) | D(ESP, SPI...)]}  -->
                      <--  HDR, SK {[D(ESP, SPI...)]}

An initiator that refused this end's IKE_AUTH response says so with N(AUTHENTICATION_FAILED)
in an INFORMATIONAL of its own (§2.21.2); that ends the IKE SA as a D(IKE) would, as
strongSwan takes it.
"""

from __future__ import annotations

from larval.ike.events import ChildSaDown

from ..constants import ExchangeType, NotifyType, ProtocolId
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..payloads import DeletePayload, Payload
from .create_child_sa import IKE_SA, IkeRekey
from .sa import Ikev2Sa, State, log
from .tasks import AnswerTask, ExchangeTask

__all__ = ["Informational", "InformationalResponder", "UnauthenticatedInformationalResponder"]


class Informational(ExchangeTask):
    """The initiator: `payloads` is a DELETE, or nothing for a liveness check. `child`:
    the inbound SPI of the CHILD_SA a D(ESP) deletes, which goes down when the answer
    says the peer deleted its half (RFC 7296 §1.4.1): until then packets it sent on the
    old SA are still on their way, and are received."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: Ikev2Sa, payloads: tuple[Payload, ...] = (), child: int | None = None):
        super().__init__(sa)
        self._payloads = payloads
        self._child = child

    def __repr__(self) -> str:
        return f"<Informational {[type(p).__name__ for p in self._payloads]}>"

    @property
    def liveness_check(self) -> bool:
        """Is this the empty request that asks whether the peer is alive (§2.4)?"""
        return not self._payloads

    @property
    def _deletes_ike_sa(self) -> bool:
        """Is this the D(IKE) that closes the IKE SA once answered (§1.4.1)? Not a
        D(ESP) queued before it, whose answer comes first."""
        return any(isinstance(p, DeletePayload) and p.protocol_id == ProtocolId.IKE
                   for p in self._payloads)  # fmt: skip

    def build(self, now: float) -> tuple[Payload, ...]:
        return self._payloads

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        if self._child is not None:
            down = sa._deleting.pop(self._child, None)
            if down is not None:
                sa._events.append(down)
        if sa.state is State.DELETING and self._deletes_ike_sa:
            # A rekeyed SA's CHILD_SAs live on in its successor: none go down here.
            rekeyed = sa._ike_rekey_started
            sa._close(sa._delete_reason if not rekeyed else "replaced by a rekey", now)
        else:
            _alive(sa, now)


class InformationalResponder(AnswerTask):
    """The responder: a D(IKE) closes the IKE SA once answered, as does the initiator's
    N(AUTHENTICATION_FAILED); a D(ESP) is answered with the SPIs of our half of each pair
    (§1.4.1); any request shows the peer alive."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: Ikev2Sa) -> None:
        super().__init__(sa)
        self._ike_deleted = False
        self._auth_failed = False

    def process(self, message: IkeMessage, now: float) -> None:
        sa = self._sa
        if message.notify(NotifyType.AUTHENTICATION_FAILED) is not None:
            self._ike_deleted = self._auth_failed = True
            return
        answer: list[Payload] = []
        for d in message.get(DeletePayload):
            if d.protocol_id == ProtocolId.IKE:
                self._ike_deleted = True
                return
            ours: list[bytes] = []
            for raw in d.spis:
                spi_out = int.from_bytes(raw, "big")
                for spi_in, child in list(sa.children.items()):
                    if child.spi_out == spi_out:
                        del sa.children[spi_in]
                        ours.append(spi_in.to_bytes(4, "big"))
                        sa._events.append(ChildSaDown(spi_in, spi_out, by_peer=True,
                                                      rekeyed=child.rekeyed))  # fmt: skip
            if ours:
                answer.append(DeletePayload(ProtocolId.ESP, 4, tuple(ours)))
        self._answer = tuple(answer)

    def answered(self, now: float) -> None:
        sa = self._sa
        if not self._ike_deleted:
            _alive(sa, now)
            return
        rekey = sa._tasks.rekeying(IKE_SA)
        if isinstance(rekey, IkeRekey) and rekey.collision is not None:
            # §2.8.2: the peer completed its rekey without noticing ours; the IKE SA made
            # by its exchange stays, ours is forgotten.
            sa._replace(rekey.collision[0])
        reason = "replaced by a rekey" if sa._replaced_by else "deleted by the peer"
        if self._auth_failed:
            reason = "the peer refused this end's authentication: AUTHENTICATION_FAILED"
            sa.counters.auth_failed("peer_refused")
        sa._close(reason, now, by_peer=True)


class UnauthenticatedInformationalResponder(AnswerTask):
    """The responder while IKE_AUTH is under way: an initiator that gives up its own
    authentication (an EAP client that will not retry a refused password) says so in an
    INFORMATIONAL { N(AUTHENTICATION_FAILED) } of its own (RFC 7296 §2.21.2), which closes
    the IKE SA once answered, with nothing installed. Anything else waits for the IKE SA."""

    exchange = ExchangeType.INFORMATIONAL

    def process(self, message: IkeMessage, now: float) -> None:
        if message.notify(NotifyType.AUTHENTICATION_FAILED) is None:
            reason = "INFORMATIONAL before the IKE SA is up, without N(AUTHENTICATION_FAILED)"
            raise IkeExchangeError(NotifyType.INVALID_SYNTAX, reason)

    def answered(self, now: float) -> None:
        reason = ("authentication of the initiator failed: it gave up in IKE_AUTH "
                  "(INFORMATIONAL with AUTHENTICATION_FAILED)")  # fmt: skip
        log.warning("%s: %s", self._sa._name(), reason)
        self._sa._close(reason, now, by_peer=True)


def _alive(sa: Ikev2Sa, now: float) -> None:
    """The peer answered, or asked: the next liveness check is `dpd_delay` from now."""
    if sa.config.dpd_delay:
        sa._deadline = min(now + sa.config.dpd_delay, sa._rekey_at or float("inf"))
