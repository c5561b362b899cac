"""IKEv2 messages in one line: the names `larval.ike.render` writes them with.

In the log, a message's payloads as strongSwan abbreviates them: ``[ IDi AUTH SA TSi
TSr ]``, ``N(COOKIE)``, ``SKF(1/3)``. On the ladder of `larval demo`, a message in the
clear with its payloads (Ni or Nr after the direction, the two NAT detection
notifications as ``N(NAT_D)x2``), an encrypted one as ``SK{…}``.
"""

from __future__ import annotations

from larval.ike.render import PayloadNames, bracketed, grouped, type_number

from .constants import ExchangeType, HeaderFlag, NotifyType, PayloadType
from .errors import IkeProtocolError
from .message import IkeMessage, decode_header, decode_message
from .negotiate import from_wire
from .payloads import NotifyPayload, Payload, SkfPayload
from .sa_payload import SaPayload

__all__ = ["LADDER_NAMES", "LOG_NAMES", "describe", "ladder_label", "message_names"]

_NAT_D = (NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP)


def _log_own(payload: Payload) -> str | None:
    if isinstance(payload, NotifyPayload):
        return f"N({NotifyType(payload.notify_type).name})"
    if isinstance(payload, SkfPayload):
        return f"SKF({payload.fragment_number}/{payload.total_fragments})"
    return None


#: Payload names in log lines, as strongSwan abbreviates them.
LOG_NAMES = PayloadNames(
    {PayloadType.NONCE: "No", PayloadType.DELETE: "D", PayloadType.VENDOR_ID: "V"}, _log_own
)


def _ladder_own(payload: Payload) -> str | None:
    if isinstance(payload, NotifyPayload):
        kind = payload.notify_type
        return "N(NAT_D)" if kind in _NAT_D else f"N({NotifyType(kind).name})"
    return None


_LADDER_SHORT: dict[int, str] = {
    PayloadType.SA: "SA", PayloadType.KE: "KE", PayloadType.IDi: "IDi", PayloadType.IDr: "IDr",
    PayloadType.AUTH: "AUTH", PayloadType.DELETE: "D", PayloadType.VENDOR_ID: "V",
    PayloadType.TSi: "TSi", PayloadType.TSr: "TSr", PayloadType.CERTREQ: "CERTREQ",
}  # fmt: skip
#: Payload names on the ladder, for a request and for a response (Ni, Nr).
LADDER_NAMES = {
    response: PayloadNames(
        {**_LADDER_SHORT, PayloadType.NONCE: "Nr" if response else "Ni"}, _ladder_own, type_number
    )
    for response in (False, True)
}


def message_names(message: IkeMessage) -> str:
    """``[ IDi AUTH SA TSi TSr ]``: the payloads' names, notifies with their type."""
    return bracketed(LOG_NAMES.names(message.payloads))


def describe(sa: SaPayload) -> str:
    """The peer's proposals, for the log of a NO_PROPOSAL_CHOSEN (DESIGN.md)."""
    return "; ".join(", ".join(repr(t) for t in from_wire(p)) for p in sa.proposals)


def ladder_label(data: bytes) -> str:
    """An IKE message as the ladder shows it: exchange, request or response, message ID,
    and its payloads (IKE_SA_INIT, in the clear) or SK{…} (encrypted)."""
    try:
        header = decode_header(data)
    except IkeProtocolError:
        return f"IKE? ({len(data)} bytes)"
    response = bool(header.flags & HeaderFlag.RESPONSE)
    head = f"{ExchangeType(header.exchange_type).name} {'response' if response else 'request'}"
    head += f" #{header.message_id}"
    if header.next_payload in (PayloadType.SK, PayloadType.SKF):
        return f"{head} SK{{…}}"
    try:
        message = decode_message(data)
    except IkeProtocolError:
        return f"{head} (undecodable)"
    names = grouped(LADDER_NAMES[response].names(message.payloads))
    return f"{head} ({', '.join(names)})"
