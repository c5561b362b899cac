"""Which payloads each IKEv2 message may carry, as a table (RFC 7296 §1.2-§1.5, §2.16).

Each (exchange, request or response) has one row: the payload types it allows, how
many of each, and whether they must travel inside the Encrypted payload. `check_payloads`
holds a decoded message against its row and raises `IkeProtocolError` with
INVALID_SYNTAX naming the exchange, the direction and the payload at fault. Unknown
payloads never count: a non-critical one is skipped (RFC 7296 §2.5).

The table checks syntax only. What depends on state stays with the exchange machines:
IDi, AUTH and the Child SA payloads of IKE_AUTH vary with the EAP round (RFC 7296
§2.16), so they are optional here; a CREATE_CHILD_SA that rekeys the IKE SA carries no
traffic selectors (§1.3.2).
"""

from __future__ import annotations

from larval.ike.rules import MANY, MessageRules, PayloadRule, check_counts, count_types, rules

from .constants import ExchangeType, NotifyType, PayloadType
from .errors import IkeProtocolError
from .message import IkeMessage
from .payloads import NotifyPayload, Payload, SkfPayload, SkPayload, UnknownPayload

__all__ = ["MESSAGE_RULES", "MessageRules", "PayloadRule", "check_payloads"]

REQUEST, RESPONSE = 0, 1

T = PayloadType
_INIT = rules(
    # RFC 7296 §1.2: HDR, SAi1, KEi, Ni [, N(COOKIE), N(NAT_DETECTION_*)...]
    (T.SA, 1, 1),
    (T.KE, 1, 1),
    (T.NONCE, 1, 1),
    (T.NOTIFY, 0, MANY),
    (T.VENDOR_ID, 0, MANY),
    (T.CERTREQ, 0, MANY),  # in the response (§1.2); harmless in the request
    encrypted=False,
)
# What both IKE_AUTH messages may carry besides the identities (RFC 7296 §1.2, §2.16).
_AUTH_BOTH = (
    (T.CERT, 0, MANY),
    (T.AUTH, 0, 1),  # absent when the initiator asks for EAP (§2.16)
    (T.CP, 0, 1),
    (T.SA, 0, 1),
    (T.TSi, 0, 1),
    (T.TSr, 0, 1),
    (T.NOTIFY, 0, MANY),
    (T.VENDOR_ID, 0, MANY),
    (T.EAP, 0, 1),
)
# SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr}
_AUTH_REQUEST = rules(
    (T.IDi, 0, 1), (T.CERTREQ, 0, MANY), (T.IDr, 0, 1), *_AUTH_BOTH, encrypted=True
)
# SK {IDr, [CERT,] AUTH, SAr2, TSi, TSr}
_AUTH_RESPONSE = rules((T.IDr, 0, 1), *_AUTH_BOTH, encrypted=True)
_CHILD = rules(
    # RFC 7296 §1.3: SK {[N(REKEY_SA)], SA, Ni, [KEi], [TSi, TSr]}
    (T.SA, 1, 1),
    (T.NONCE, 1, 1),
    (T.KE, 0, 1),
    (T.TSi, 0, 1),
    (T.TSr, 0, 1),
    (T.NOTIFY, 0, MANY),
    (T.VENDOR_ID, 0, MANY),
    encrypted=True,
)
_INFORMATIONAL = rules(
    # RFC 7296 §1.4: SK {[N,] [D,] [CP,] ...}; an empty one is a liveness check
    (T.NOTIFY, 0, MANY),
    (T.DELETE, 0, MANY),
    (T.CP, 0, 1),
    (T.VENDOR_ID, 0, MANY),
    encrypted=True,
)

E = ExchangeType
MESSAGE_RULES: dict[tuple[ExchangeType, bool], MessageRules] = {
    (ExchangeType(r.exchange_type), bool(r.message)): r
    for r in (
        MessageRules(E.IKE_SA_INIT, REQUEST, False, _INIT),
        MessageRules(E.IKE_SA_INIT, RESPONSE, False, _INIT, errors_exempt=True),
        MessageRules(E.IKE_AUTH, REQUEST, True, _AUTH_REQUEST),
        MessageRules(E.IKE_AUTH, RESPONSE, True, _AUTH_RESPONSE, errors_exempt=True),
        MessageRules(E.CREATE_CHILD_SA, REQUEST, True, _CHILD),
        MessageRules(E.CREATE_CHILD_SA, RESPONSE, True, _CHILD, errors_exempt=True),
        MessageRules(E.INFORMATIONAL, REQUEST, True, _INFORMATIONAL),
        MessageRules(E.INFORMATIONAL, RESPONSE, True, _INFORMATIONAL),
    )
}


def _is_error_answer(payloads: tuple[Payload, ...], exchange: ExchangeType) -> bool:
    for p in payloads:
        if isinstance(p, NotifyPayload):
            if p.notify_type.is_error:
                return True
            if exchange == E.IKE_SA_INIT and p.notify_type == NotifyType.COOKIE:
                return True
    return False


def check_payloads(message: IkeMessage, inner: bool) -> None:
    """Hold ``message`` against its row of `MESSAGE_RULES`.

    ``inner`` says what ``message.payloads`` are: False for a message as
    `decode_message` returns it (its chain in the clear; a protected exchange then
    shows only its SK or SKF payload, whose contents are checked once opened), True for
    the payloads that were inside SK (`decode_protected`, `FragmentReassembler`), with
    ``message.unprotected`` as the cleartext part.
    """
    exchange = ExchangeType(message.exchange_type)
    direction = "response" if message.is_response else "request"
    where = f"{exchange.name} {direction}"

    def fail(text: str) -> IkeProtocolError:
        return IkeProtocolError(NotifyType.INVALID_SYNTAX, f"{where}: {text}")

    row = MESSAGE_RULES.get((exchange, message.is_response))
    if row is None:
        raise fail("no payload rules for this exchange type")
    allowed = row.allowed()

    if inner:
        if not row.encrypted:
            raise fail("is never encrypted (RFC 7296 §1.2)")
        outside: tuple[Payload, ...] = message.unprotected
        inside: tuple[Payload, ...] = message.payloads
    elif row.encrypted:
        sealed = [p for p in message.payloads if isinstance(p, SkPayload | SkfPayload)]
        if len(sealed) != 1:
            raise fail("needs one Encrypted payload (RFC 7296 §3.14)")
        outside = tuple(p for p in message.payloads if p is not sealed[0])
        inside = ()
    else:
        outside, inside = message.payloads, ()

    placed = [(p, False) for p in outside] + [(p, True) for p in inside]
    for p, in_sk in placed:
        ptype = PayloadType(p.payload_type)
        if isinstance(p, UnknownPayload):
            continue
        rule = allowed.get(ptype)
        if rule is None:
            raise fail(f"{ptype.name} payload not allowed")
        if rule.encrypted and not in_sk:
            raise fail(f"{ptype.name} payload must be inside the Encrypted payload")
        if in_sk and not rule.encrypted:
            raise fail(f"{ptype.name} payload must not be inside the Encrypted payload")

    if row.encrypted and not inner:
        return  # the counts are checked on the contents, once SK is opened
    counted = outside + inside
    counts = count_types(p.payload_type for p in counted if not isinstance(p, UnknownPayload))
    exempt = row.errors_exempt and _is_error_answer(counted, exchange)
    check_counts(row, counts, fail, minimum=not exempt)
