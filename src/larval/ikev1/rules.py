"""Which payloads each IKEv1 message carries, as a table (RFC 2409 §5, §5.5, §5.7).

Each (exchange, message number) has one row: the payload types it allows, how many of
each, whether the message travels encrypted, whether HASH must come first, and which
payload types are alternatives of which exactly one must appear (HASH or SIG for
authentication; N or D in an Informational). RFC 3947 adds NAT-D to Main Mode 3/4 and
Aggressive Mode 2/3 and NAT-OA to Quick Mode 1/2; RFC 3706's DPD rides on Informational.
The rows are the union over the authentication methods (pre-shared key and signatures,
RFC 2409 §5.1, §5.4); which one a given SA uses is for the exchange machine to check.

`check_payloads` holds a decoded message against its row and raises `IkeV1ProtocolError`:
INVALID_PAYLOAD_TYPE for a payload the message may not carry (the type as data),
PAYLOAD_MALFORMED for one missing, repeated or out of place, INVALID_FLAGS for a message
encrypted when it must not be or the reverse, UNSUPPORTED_EXCHANGE_TYPE for an exchange
with no rows. Unknown payloads of the private-use range (128-255) are skipped; unknown
ones of the reserved range are INVALID_PAYLOAD_TYPE (RFC 2408 §5.3: ISAKMP has no
critical bit to tell the receiver it may ignore them).
"""

from __future__ import annotations

from larval.ike.rules import MANY, MessageRules, PayloadRule, check_counts, count_types, rules

from .constants import ExchangeType, NotifyType, PayloadType
from .errors import IkeV1ProtocolError
from .message import IkeV1Message
from .payloads import UnknownPayload

__all__ = ["MESSAGE_RULES", "MessageRules", "PayloadRule", "check_payloads"]

T = PayloadType
E = ExchangeType
_ID_PAIR = PayloadRule(T.ID, 2, 2, or_none=True)
_AUTH = (T.HASH, T.SIG)  # HASH_I/HASH_R with pre-shared keys, SIG_I/SIG_R with signatures
# (type, min, max) of the payloads several Phase 1 messages carry
_ID = (T.ID, 1, 1)
_CR = (T.CR, 0, MANY)
_N = (T.N, 0, MANY)
_VID = (T.VID, 0, MANY)
_NAT_D = (T.NAT_D, 0, MANY)
_SIGNED = ((T.CERT, 0, MANY), (T.HASH, 0, 1), (T.SIG, 0, 1))  # [CERT,] HASH | SIG
_AM_OFFER = ((T.SA, 1, 1), (T.KE, 1, 1), (T.NONCE, 1, 1), _ID)  # SA, KE, Nx, IDx
# Main Mode 3 and 4 carry the same payloads, and so do Quick Mode 1 and 2.
_MM_KE = rules((T.KE, 1, 1), (T.NONCE, 1, 1), _CR, _NAT_D, _VID)
_QM_SA = (
    *rules((T.HASH, 1, 1), (T.SA, 1, 1), (T.NONCE, 1, 1), (T.KE, 0, 1)),
    _ID_PAIR,
    *rules((T.NAT_OA, 0, 2), _N),
)

_ROWS = (
    # Main Mode (RFC 2409 §5.1, §5.4; NAT-D: RFC 3947 §3.2)
    # HDR, SA [, VID...] -->
    MessageRules(E.IDENTITY_PROTECTION, 1, False, rules((T.SA, 1, 1), _VID)),
    # <-- HDR, SA [, VID...]
    MessageRules(E.IDENTITY_PROTECTION, 2, False, rules((T.SA, 1, 1), _VID)),
    # HDR, KE, Ni [, CR...] [, NAT-D, NAT-D...] [, VID...] -->
    MessageRules(E.IDENTITY_PROTECTION, 3, False, _MM_KE),
    # <-- HDR, KE, Nr [, CR...] [, NAT-D, NAT-D...] [, VID...]
    MessageRules(E.IDENTITY_PROTECTION, 4, False, _MM_KE),
    # HDR*, IDii, [CERT,] HASH_I | SIG_I [, N(INITIAL_CONTACT)] -->
    MessageRules(E.IDENTITY_PROTECTION, 5, True, rules(_ID, _CR, *_SIGNED, _N, _VID), one_of=_AUTH),
    # <-- HDR*, IDir, [CERT,] HASH_R | SIG_R [, N...]
    MessageRules(E.IDENTITY_PROTECTION, 6, True, rules(_ID, *_SIGNED, _N, _VID), one_of=_AUTH),
    # Aggressive Mode (RFC 2409 §5.1, §5.4; NAT-D: RFC 3947 §3.2)
    # HDR, SA, KE, Ni, IDii [, CR...] [, VID...] -->
    MessageRules(E.AGGRESSIVE, 1, False, rules(*_AM_OFFER, _CR, _VID)),
    # <-- HDR, SA, KE, Nr, IDir, [CERT,] HASH_R | SIG_R [, CR...] [, NAT-D...] [, VID...]
    MessageRules(
        E.AGGRESSIVE, 2, False, rules(*_AM_OFFER, _CR, *_SIGNED, _NAT_D, _VID), one_of=_AUTH
    ),
    # HDR[*], [CERT,] HASH_I | SIG_I [, NAT-D...] [, N(INITIAL_CONTACT)] -->
    MessageRules(E.AGGRESSIVE, 3, None, rules(*_SIGNED, _NAT_D, _N, _VID), one_of=_AUTH),
    # Quick Mode (RFC 2409 §5.5; NAT-OA: RFC 3947 §5.1)
    # HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OA, NAT-OA] -->
    MessageRules(E.QUICK_MODE, 1, True, _QM_SA, hash_first=True),
    # <-- HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, NAT-OA, NAT-OA] [, N(RESPONDER_LIFETIME)]
    MessageRules(E.QUICK_MODE, 2, True, _QM_SA, hash_first=True),
    # HDR*, HASH(3) -->
    MessageRules(E.QUICK_MODE, 3, True, rules((T.HASH, 1, 1)), hash_first=True),
    # Transaction (draft-dukes-ike-mode-cfg §3.1, Mode Config and XAuth):
    # HDR*, HASH, ATTR(CFG_REQUEST | CFG_SET) -->  <-- HDR*, HASH, ATTR(CFG_REPLY | CFG_ACK)
    MessageRules(
        E.TRANSACTION, 1, True, rules((T.HASH, 1, 1), (T.ATTRIBUTE, 1, 1)), hash_first=True
    ),
    MessageRules(
        E.TRANSACTION, 2, True, rules((T.HASH, 1, 1), (T.ATTRIBUTE, 1, 1)), hash_first=True
    ),
    # Informational (RFC 2409 §5.7): HDR*, HASH(1), N/D once Phase 1 is done; HDR, N/D
    # before. DPD's R_U_THERE and R_U_THERE_ACK are Notifications (RFC 3706 §5).
    MessageRules(
        E.INFORMATIONAL,
        1,
        None,
        rules((T.HASH, 0, 1), (T.N, 0, MANY), (T.D, 0, MANY)),
        hash_first=True,
        one_of=(T.N, T.D),
    ),
)

MESSAGE_RULES: dict[tuple[ExchangeType, int], MessageRules] = {
    (ExchangeType(r.exchange_type), r.message): r for r in _ROWS
}

# The draft numbers count as the RFC 3947 payloads they stand for.
_SAME_AS = {T.NAT_D_DRAFT: T.NAT_D, T.NAT_OA_DRAFT: T.NAT_OA}


def check_payloads(message: IkeV1Message, number: int = 1, *, encrypted: bool) -> None:
    """Hold ``message``, the ``number``-th of its exchange, against its row.

    ``encrypted`` says whether it arrived with flag E (`decode_encrypted`) or not
    (`decode_message`). An Informational is always number 1. ``number`` outside the
    exchange's messages is a caller's mistake: ValueError.
    """
    exchange = ExchangeType(message.exchange_type)
    where = f"{exchange.name} message {number}"
    if not any(e == exchange for e, _ in MESSAGE_RULES):
        raise IkeV1ProtocolError(
            NotifyType.UNSUPPORTED_EXCHANGE_TYPE, f"{exchange.name}: exchange not supported"
        )
    row = MESSAGE_RULES.get((exchange, number))
    if row is None:
        raise ValueError(f"{where}: the exchange has no such message")

    def malformed(text: str) -> IkeV1ProtocolError:
        return IkeV1ProtocolError(NotifyType.PAYLOAD_MALFORMED, f"{where}: {text}")

    if row.encrypted is not None and row.encrypted != encrypted:
        state = "encrypted" if row.encrypted else "in the clear"
        raise IkeV1ProtocolError(NotifyType.INVALID_FLAGS, f"{where}: must be sent {state}")

    allowed = row.allowed()
    types: list[PayloadType] = []
    for p in message.payloads:
        ptype = PayloadType(p.payload_type)
        if isinstance(p, UnknownPayload):
            if ptype.is_private:
                continue
            raise IkeV1ProtocolError(
                NotifyType.INVALID_PAYLOAD_TYPE,
                f"{where}: unknown payload type {int(ptype)}",
                bytes([int(ptype) & 0xFF]),
            )
        ptype = _SAME_AS.get(ptype, ptype)
        if ptype not in allowed:
            raise IkeV1ProtocolError(
                NotifyType.INVALID_PAYLOAD_TYPE,
                f"{where}: {ptype.name} payload not allowed",
                bytes([int(ptype) & 0xFF]),
            )
        types.append(ptype)
    counts = count_types(types)
    check_counts(row, counts, malformed)

    if row.one_of:
        present = [t.name for t in row.one_of if counts.get(t, 0)]
        if len(present) != 1:
            choices = " or ".join(t.name for t in row.one_of)
            raise malformed(f"needs {choices}, exactly one kind; has {present or 'none'}")

    if row.hash_first:
        has_hash = counts.get(T.HASH, 0) > 0
        if encrypted and not has_hash:
            # RFC 2409 §5.7: a protected Informational is authenticated by HASH(1).
            raise malformed("HASH payload missing")
        if has_hash and message.payloads[0].payload_type != T.HASH:
            raise malformed("HASH must immediately follow the header (RFC 2409 §5.5)")
