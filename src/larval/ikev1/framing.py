"""ISAKMP messages as datagrams and back, for `larval.ike.transport`: a message (already
encrypted where it is) goes whole, or as Fragment messages when both ends announced the
FRAGMENTATION vendor ID and it is longer than `fragment_size` (`larval.ikev1.fragments`);
fragments received are put back together before the message is taken.
"""

from __future__ import annotations

from .constants import ExchangeType, NotifyType, PayloadType
from .errors import IkeV1ProtocolError
from .fragments import FRAGMENT_SIZE, FragmentReassembler, decode_fragment, fragment
from .message import decode_header

__all__ = ["Ikev1Framing"]


class Ikev1Framing:
    """Whether this end and the peer take fragments, the Fragment ID of the last message
    sent in fragments, and the fragments of the message partly received."""

    __slots__ = (
        "enabled",
        "exchange",
        "fragment_id",
        "fragment_size",
        "peer",
        "reassembler",
    )

    def __init__(
        self,
        fragment_id: int,
        *,
        enabled: bool = True,
        fragment_size: int = FRAGMENT_SIZE,
        exchange: ExchangeType = ExchangeType.IDENTITY_PROTECTION,
    ) -> None:
        """`fragment_id`: where Fragment IDs start (at random); `exchange`: the Phase 1
        exchange type fragments carry."""
        self.enabled = enabled  # we announce and take fragments
        self.peer = False  # the peer announced them
        self.fragment_size = fragment_size
        self.fragment_id = fragment_id
        self.exchange = exchange
        self.reassembler = FragmentReassembler()

    def frame(self, message: bytes) -> tuple[bytes, ...]:
        """`message` whole, or in fragments to a peer that takes them. Raises `ValueError`
        when it would take more fragments than a peer accepts (send it whole then)."""
        if not (self.peer and self.enabled and len(message) > self.fragment_size):
            return (message,)
        self.fragment_id = (self.fragment_id + 1) & 0xFFFF
        return tuple(fragment(message, self.fragment_id, self.exchange, self.fragment_size))

    def unframe(self, data: bytes, clear: bytes | None = None) -> bytes | None:
        """The message `data` is, or completes; None while fragments are missing.
        (`clear` is IKEv2's: an IKEv1 message is read whole by its exchange.)"""
        if decode_header(data).next_payload != PayloadType.FRAGMENT:
            return data
        if not self.enabled:
            raise IkeV1ProtocolError(NotifyType.INVALID_PAYLOAD_TYPE, "a fragment")
        return self.reassembler.add(decode_fragment(data))
