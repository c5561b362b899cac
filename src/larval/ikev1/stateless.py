"""What an IKEv1 responder reads and answers before it holds any state for the peer.

* `recipient`: which ISAKMP SA a datagram is for, and whether it opens one.
* `no_proposal_chosen`: the Informational sent, as strongSwan does, to a Main or
  Aggressive Mode opener for which no IKEv1 connection exists (RFC 2408 §5.3: an error
  is reported in an Informational exchange; before any ISAKMP SA, in the clear).
"""

from __future__ import annotations

from collections.abc import Callable

from larval.ike.datagram import Recipient

from .constants import ExchangeType, NotifyType, ProtocolId
from .errors import IkeV1ProtocolError
from .message import IkeV1Message, decode_header
from .payloads import NotifyPayload

__all__ = ["no_proposal_chosen", "recipient"]

_OPENERS = (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE)


def recipient(datagram: bytes) -> Recipient | None:
    """The ISAKMP SA `datagram` is for, by CKY-I, or None if its header does not decode."""
    try:
        header = decode_header(datagram)
    except IkeV1ProtocolError:
        return None
    opens = header.exchange_type in _OPENERS and header.cookie_r == bytes(8)
    return Recipient(header.cookie_i, opens)


def no_proposal_chosen(cookie_i: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
    """<-- HDR(CKY-I, 0), N(NO_PROPOSAL_CHOSEN, ISAKMP, cookies), with a random Message ID."""
    message_id = int.from_bytes(random_bytes(4), "big") | 1
    cookies = cookie_i + bytes(8)
    return IkeV1Message(
        cookie_i, bytes(8), ExchangeType.INFORMATIONAL, message_id,
        (NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN, ProtocolId.ISAKMP, cookies),),
    ).encode()  # fmt: skip
