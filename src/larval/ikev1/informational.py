"""Informational exchanges as tasks: DELETE and notifications (RFC 2408 §3.14, §3.15,
RFC 2409 §5.7), and Dead Peer Detection's R-U-THERE and its ACK (RFC 3706).

An Informational exchange is one message, protected once Phase 1 is done::

    INFORMATIONAL *{ HASH(1), N/D }  -->

`protected` builds one, with its own Message ID and IV (Appendix B). `Informational` takes
one the peer sent: before Phase 1 is done only a refusal in the clear means anything (it
ends the attempt); after, the HASH must verify, and each notification and DELETE is
handed to what it concerns — the ISAKMP SA, one of its CHILD_SAs, a Quick Mode of ours
it refuses, or `Dpd`. `Dpd` keeps the liveness of the ISAKMP SA: when the peer was last
heard, and the R-U-THERE awaiting its ACK, each resend with the next sequence number.
"""

from __future__ import annotations

from collections.abc import Callable

from larval.crypto.ikev1_keys import informational_hash, informational_iv
from larval.ike.events import ChildSaDown

from .constants import ExchangeType, NotifyType, ProtocolId
from .isakmp import Inbound, IsakmpSa, Outgoing, after_hash, log
from .message import decode_message, encode_chain
from .payloads import DeletePayload, HashPayload, NotifyPayload, Payload
from .render import payload_names
from .rules import check_payloads

__all__ = ["Dpd", "Informational", "protected"]

INFO = ExchangeType.INFORMATIONAL

#: The ISAKMP SA closes: why, and whether the peer said so.
Close = Callable[[str, bool], None]
#: The peer refused a Quick Mode of ours: the inbound SPI it offered, and the notification.
Refused = Callable[[int, NotifyType], None]


def protected(sa: IsakmpSa, payloads: tuple[Payload, ...]) -> tuple[int, Outgoing]:
    """HDR*, HASH(1), N/D: its own Message ID and IV (RFC 2409 §5.7, Appendix B); the
    Message ID, and the message as it goes out."""
    assert sa.prf is not None and sa.keys is not None
    mid = sa.new_message_id()
    digest = informational_hash(sa.prf, sa.keys.skeyid_a, mid, encode_chain(payloads))
    message = sa.message(INFO, (HashPayload(digest), *payloads), mid)
    datagram, _ = sa.seal(message, informational_iv(sa.prf.hash_name, sa.p1_last, mid))
    return mid, Outgoing(datagram, f"INFORMATIONAL [ HASH {payload_names(payloads)} ]")


class Dpd:
    """Dead Peer Detection (RFC 3706) of one ISAKMP SA: R-U-THERE with the next sequence
    number, and the ACK that echoes it (§5.3); a resend is a new R-U-THERE (§5.5)."""

    exchange = INFO
    rekeys = None

    def __init__(self, sa: IsakmpSa, seq: int) -> None:
        self.sa = sa
        self.seq = seq  # of the last R-U-THERE sent
        self.message_id: int | None = None  # the R-U-THERE awaiting its ACK
        self.last_heard = 0.0

    def __repr__(self) -> str:
        return f"<Dpd seq {self.seq:#x}>"

    def heard(self, now: float) -> None:
        """The peer proved itself alive at `now`."""
        self.last_heard = now

    def due(self, delay: float) -> float | None:
        """When to ask, `delay` after the peer was last heard; None while a question is
        out (the transport resends it, or gives up)."""
        return None if self.message_id is not None else self.last_heard + delay

    def build(self, now: float) -> Outgoing:
        """INFORMATIONAL *{ HASH, N(R-U-THERE, seq) } -->"""
        return self.renew()[1]

    def renew(self) -> tuple[int, Outgoing]:
        """R-U-THERE with the next sequence number, and its Message ID."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        notify = self.sa.notify(NotifyType.R_U_THERE, self.seq.to_bytes(4, "big"))
        self.message_id, out = protected(self.sa, (notify,))
        return self.message_id, out

    def process(self, ack: NotifyPayload, now: float) -> None:
        """<-- N(R-U-THERE-ACK, seq): the question is answered if it echoes our number."""
        seq = int.from_bytes(ack.data[:4], "big") if len(ack.data) == 4 else -1
        if self.message_id is not None and seq == self.seq:
            self.sa.answered(self.message_id)
            self.message_id = None

    def cancel(self) -> None:
        """No more questions: the one out is resent no more."""
        if self.message_id is not None:
            self.sa.answered(self.message_id)
            self.message_id = None


class Informational:
    """An Informational message of the peer's: checked, then each N and D acted on; an
    R-U-THERE is answered with its ACK (`build`)."""

    exchange = INFO
    rekeys = None
    #: One message, no answer awaited: nothing is left once it is processed.
    done = True

    def __init__(
        self, sa: IsakmpSa, dpd: Dpd, *, established: bool, close: Close, refused: Refused
    ) -> None:
        """`established`: Phase 1 is done; `close`, `refused`: how the session hears that
        the ISAKMP SA goes, or that a Quick Mode of ours was refused."""
        self.sa = sa
        self.dpd = dpd
        self.established = established
        self._close = close
        self._refused = refused
        self._answers: list[Outgoing] = []
        self._closed = False
        #: The first error the peer notified, by name (the exchange's line shows it).
        self.error: str | None = None

    def build(self, now: float) -> Outgoing | None:
        """The ACK of an R-U-THERE, if one came; then None."""
        return self._answers.pop(0) if self._answers else None

    def process(self, inbound: Inbound, now: float) -> None:
        sa = self.sa
        if not inbound.header.encrypted:
            message = decode_message(inbound.data)
            check_payloads(message, 1, encrypted=False)
            errors = [n for n in message.get(NotifyPayload) if n.notify_type.is_error]
            if errors:
                self.error = errors[0].notify_type.name
            for n in errors:
                sa.counters.error_received(1, counted_name(n.notify_type))
            if errors and not self.established:
                # Before Phase 1 is done nothing can be authenticated (RFC 2409 §5.7); a
                # refusal that names our cookies ends the attempt.
                self._close(f"peer refused: {errors[0].notify_type.name}", True)
            return
        if sa.keys is None or sa.prf is None or not sa.p1_last:
            return
        mid = inbound.header.message_id
        iv = informational_iv(sa.prf.hash_name, sa.p1_last, mid)
        message, _ = sa.open(inbound.data, iv)
        check_payloads(message, 1, encrypted=True)
        digest = informational_hash(sa.prf, sa.keys.skeyid_a, mid, after_hash(message))
        sa.verify_hash(message, digest)
        self.dpd.heard(now)
        for payload in message.payloads:
            if isinstance(payload, NotifyPayload):
                self._notified(payload, now)
            elif isinstance(payload, DeletePayload):
                self._deleted(payload)
            if self._closed:
                return

    def _notified(self, payload: NotifyPayload, now: float) -> None:
        kind = payload.notify_type
        if kind.is_error and self.error is None:
            self.error = kind.name
        if kind.is_error:
            self.sa.counters.error_received(1, counted_name(kind))
        if kind == NotifyType.R_U_THERE:
            # RFC 3706 §5.3: the ACK echoes the sequence number.
            ack = self.sa.notify(NotifyType.R_U_THERE_ACK, payload.data)
            self._answers.append(protected(self.sa, (ack,))[1])
        elif kind == NotifyType.R_U_THERE_ACK:
            self.dpd.process(payload, now)
        elif kind == NotifyType.INITIAL_CONTACT:
            self.sa.peer_initial_contact = True
        elif kind.is_error and payload.protocol_id == ProtocolId.ESP and len(payload.spi) == 4:
            # A Quick Mode of ours refused: the notify names the SPI we offered.
            self._refused(int.from_bytes(payload.spi, "big"), kind)
        elif kind.is_error and not self.established:
            # Phase 1 refused, protected (a Main Mode responder that does not take MM5).
            self._closed = True
            self._close(f"peer refused: {kind.name}", True)
        else:
            log.info("%s: received N(%s)", self.sa.name(), kind.name)

    def _deleted(self, payload: DeletePayload) -> None:
        if payload.protocol_id == ProtocolId.ISAKMP:
            self._closed = True
            self._close("deleted by the peer", True)
            return
        if payload.protocol_id != ProtocolId.ESP or payload.spi_size != 4:
            return
        sa = self.sa
        for spi in payload.spis:
            # RFC 2408 §3.15: the SPIs are the sender's inbound ones, our outbound.
            spi_out = int.from_bytes(spi, "big")
            child = next((c for c in sa.children.values() if c.spi_out == spi_out), None)
            if child is not None:
                del sa.children[child.spi_in]
                sa.report(ChildSaDown(child.spi_in, child.spi_out, by_peer=True,
                                      rekeyed=child.renewed))  # fmt: skip


#: The notify types larval names; a peer's other numbers are counted as ``other``.
_KNOWN_NOTIFIES = frozenset(int(n) for n in NotifyType)


def counted_name(kind: NotifyType) -> str:
    """A bounded label for a peer's notification (`larval.ike.counters`)."""
    return kind.name if kind in _KNOWN_NOTIFIES else "other"
