"""ISAKMP messages in one line: the names `larval.ike.render` writes them with.

In the log, a message's payloads as strongSwan abbreviates them (``HASH SA No KE ID
ID``, ``N(INITIAL_CONTACT)``). On the ladder of `larval demo`, in charon's manner: the
exchange, the Message ID when there is one, and the payloads of a message in the clear,
or ``*{…}`` for an encrypted one.
"""

from __future__ import annotations

from collections.abc import Iterable

from larval.ike.render import PayloadNames, type_number

from .constants import ExchangeType, PayloadType
from .errors import IkeV1ProtocolError
from .message import decode_header, decode_message
from .modecfg import AttributePayload, attribute_names
from .payloads import NotifyPayload, Payload

__all__ = ["LADDER_NAMES", "LOG_NAMES", "ladder_label", "payload_names"]


def _log_own(payload: Payload) -> str | None:
    if isinstance(payload, NotifyPayload):
        return f"N({payload.notify_type.name})"
    if isinstance(payload, AttributePayload):
        return attribute_names(payload)  # never a value: passwords travel in them
    return None


#: Payload names in log lines, as strongSwan abbreviates them.
LOG_NAMES = PayloadNames(
    {
        PayloadType.NONCE: "No",
        PayloadType.NOTIFICATION: "N",
        PayloadType.DELETE: "D",
        PayloadType.VENDOR_ID: "V",
        PayloadType.NAT_D: "NAT-D",
    },
    _log_own,
)

#: Payload names on the ladder: a notification without its type, as charon shows them.
LADDER_NAMES = PayloadNames(
    {
        PayloadType.SA: "SA", PayloadType.KE: "KE", PayloadType.ID: "ID",
        PayloadType.HASH: "HASH", PayloadType.NONCE: "Nonce", PayloadType.NOTIFICATION: "N",
        PayloadType.DELETE: "D", PayloadType.VENDOR_ID: "V", PayloadType.NAT_D: "NAT-D",
        PayloadType.NAT_OA: "NAT-OA", PayloadType.ATTRIBUTE: "ATTR",
    },
    fallback=type_number,
)  # fmt: skip

#: charon's names for the Phase 1 exchanges.
_EXCHANGE_NAMES = {ExchangeType.MAIN_MODE: "MAIN_MODE", ExchangeType.AGGRESSIVE: "AGGRESSIVE"}


def payload_names(payloads: Iterable[Payload]) -> str:
    """``HASH SA No KE``: the payloads' names, notifications with their type."""
    return " ".join(LOG_NAMES.names(payloads))


def ladder_label(data: bytes) -> str:
    """An ISAKMP message as the ladder shows it: exchange, message ID, and its payloads
    (in the clear) or *{…} (encrypted), in charon's manner."""
    try:
        header = decode_header(data)
    except IkeV1ProtocolError:
        return f"ISAKMP? ({len(data)} bytes)"
    exchange = header.exchange_type
    name = _EXCHANGE_NAMES.get(exchange, ExchangeType(exchange).name)
    head = f"{name} #{header.message_id:08x}" if header.message_id else name
    if header.encrypted:
        return f"{head} *{{…}}"
    try:
        message = decode_message(data)
    except IkeV1ProtocolError:
        return f"{head} (undecodable)"
    return f"{head} ({', '.join(LADDER_NAMES.names(message.payloads))})"
