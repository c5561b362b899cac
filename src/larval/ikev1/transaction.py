"""The Transaction exchange (exchange type 6, draft-dukes-ike-mode-cfg §3.1) as tasks,
for the end that opens one and the end that answers::

    TRANSACTION *{ HASH, ATTR(CFG_REQUEST | CFG_SET) }  -->
        <-- TRANSACTION *{ HASH, ATTR(CFG_REPLY | CFG_ACK) }

Protected with the Phase 1 keys like an Informational exchange (RFC 2409 §5.7): its
own Message ID, HASH = prf(SKEYID_a, M-ID | ATTR) in both messages (as strongSwan's
keymat_v1 computes it), and an IV of its own, hash(last Phase 1 CBC block | M-ID)
(Appendix B), chained from the request to the reply as within Quick Mode. XAuth and
Mode Config (`larval.ikev1.remote_access`) say what the ATTRIBUTE payloads carry; these
tasks only protect, check and deliver them. A message that does not decrypt or whose
HASH does not verify raises `IkeV1ProtocolError` and is dropped by the session.
"""

from __future__ import annotations

from collections.abc import Callable

from larval.crypto.ikev1_keys import informational_hash

from .constants import ExchangeType
from .isakmp import Inbound, IsakmpSa, Outgoing, after_hash
from .message import encode_chain
from .modecfg import AttributePayload, attribute_names
from .payloads import HashPayload
from .rules import check_payloads

__all__ = ["Answer", "Answered", "TransactionInitiator", "TransactionResponder"]

TRANSACTION = ExchangeType.TRANSACTION
#: What the opening end does with the answer: the ATTRIBUTE payload and the time.
Answered = Callable[[AttributePayload, float], None]
#: What the answering end replies to a request or SET; None: no answer (dropped).
Answer = Callable[[AttributePayload, float], AttributePayload | None]


def _seal(sa: IsakmpSa, mid: int, iv: bytes, attr: AttributePayload) -> tuple[bytes, bytes]:
    """HDR*, HASH, ATTR under Message ID `mid` with `iv`; the datagram and the next IV."""
    assert sa.prf is not None and sa.keys is not None
    digest = informational_hash(sa.prf, sa.keys.skeyid_a, mid, encode_chain((attr,)))
    return sa.seal(sa.message(TRANSACTION, (HashPayload(digest), attr), mid), iv)


def _open(sa: IsakmpSa, inbound: Inbound, iv: bytes, number: int) -> tuple[AttributePayload, bytes]:
    """The ATTRIBUTE payload of a Transaction message, decrypted with `iv` and its HASH
    verified; and the next IV."""
    assert sa.prf is not None and sa.keys is not None
    message, next_iv = sa.open(inbound.data, iv)
    check_payloads(message, number, encrypted=True)
    mid = inbound.header.message_id
    sa.verify_hash(message, informational_hash(sa.prf, sa.keys.skeyid_a, mid, after_hash(message)))
    attr = message.first(AttributePayload)
    assert attr is not None  # check_payloads: exactly one
    return attr, next_iv


class TransactionInitiator:
    """Sends a CFG_REQUEST or CFG_SET (resent until answered) and hands the reply or
    ACK to `answered`."""

    exchange = TRANSACTION
    rekeys = None

    def __init__(self, sa: IsakmpSa, attr: AttributePayload, answered: Answered) -> None:
        self.sa = sa
        self.message_id = sa.new_message_id()
        self._answered = answered
        datagram, self.iv = _seal(sa, self.message_id, sa.phase2_iv(self.message_id), attr)
        self._next: Outgoing | None = Outgoing(
            datagram, f"TRANSACTION [ HASH {attribute_names(attr)} ]", self.message_id
        )
        self.done = False

    def __repr__(self) -> str:
        return f"<TransactionInitiator {self.message_id:08x}>"

    def build(self, now: float) -> Outgoing | None:
        out, self._next = self._next, None
        return out

    def process(self, inbound: Inbound, now: float) -> None:
        """<-- TRANSACTION *{ HASH, ATTR(CFG_REPLY | CFG_ACK) }"""
        attr, _ = _open(self.sa, inbound, self.iv, 2)
        self.sa.answered(self.message_id)
        self.done = True
        self._answered(attr, now)


class TransactionResponder:
    """Takes a CFG_REQUEST or CFG_SET and answers it with what `answer` makes of it."""

    exchange = TRANSACTION
    rekeys = None
    done = True  # one message in, one out: nothing is left once it is processed

    def __init__(self, sa: IsakmpSa, message_id: int, answer: Answer) -> None:
        self.sa = sa
        self.message_id = message_id
        self._answer = answer
        self._next: Outgoing | None = None

    def __repr__(self) -> str:
        return f"<TransactionResponder {self.message_id:08x}>"

    def build(self, now: float) -> Outgoing | None:
        out, self._next = self._next, None
        return out

    def process(self, inbound: Inbound, now: float) -> None:
        """TRANSACTION *{ HASH, ATTR(CFG_REQUEST | CFG_SET) } -->  answered"""
        sa, mid = self.sa, self.message_id
        attr, iv = _open(sa, inbound, sa.phase2_iv(mid), 1)
        reply = self._answer(attr, now)
        if reply is None:
            return
        datagram, _ = _seal(sa, mid, iv, reply)
        self._next = Outgoing(datagram, f"TRANSACTION [ HASH {attribute_names(reply)} ]")
