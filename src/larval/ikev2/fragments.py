"""IKEv2 message fragmentation (RFC 7383): splitting into SKF messages and reassembly.

A message too large for the path is sent as several messages, each carrying one
Encrypted Fragment (SKF) payload: the inner payload chain is cut into pieces and every
piece is protected on its own, with its own IV and ICV (RFC 7383 §2.5). The receiver
checks and opens each fragment as it arrives (`decode_fragment`), so forged fragments
never reach the reassembly buffer, and `FragmentReassembler` puts the pieces back
together. The ``protect``/``unprotect``/``overhead`` callbacks are those of
`larval.ikev2.message`; their ``aad`` here runs through Total Fragments (RFC 7383 §2.5).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from larval.ike.reassembly import FragmentBuffer, FragmentOverflow
from larval.wire import Buffer

from .constants import (
    GENERIC_HEADER_SIZE,
    IKE_HEADER_SIZE,
    NotifyType,
    PayloadType,
)
from .errors import IkeDecodeError, IkeEncodeError, IkeProtocolError
from .message import (
    IkeMessage,
    Overhead,
    Protect,
    Unprotect,
    decode_chain,
    decode_header,
    encode_chain,
)
from .payloads import SkfPayload, UnknownPayload

__all__ = ["FragmentReassembler", "IkeFragment", "decode_fragment", "fragment"]

_SKF_HEADER = GENERIC_HEADER_SIZE + 4  # generic header, Fragment Number, Total Fragments
_MAX_FRAGMENTS = 0xFFFF  # Total Fragments is 16 bits


@dataclass(frozen=True, slots=True)
class IkeFragment:
    """One checked and opened fragment: its message's header fields and its piece.

    ``message`` is the message the fragment belongs to, its header's fields without
    payloads; ``data`` is this fragment's piece of the inner payload chain, in the
    clear; ``first_inner`` is the first inner payload's type (meaningful in fragment 1
    only).
    """

    message: IkeMessage
    fragment_number: int
    total_fragments: int
    first_inner: PayloadType
    data: bytes


def _largest_piece(budget: int, limit: int, overhead: Overhead) -> int:
    """The largest n <= limit with n + overhead(n) <= budget, assuming that sum grows
    with n (padding only ever rounds up); 0 if not even one byte fits."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid + overhead(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def fragment(
    message: IkeMessage, protect: Protect, overhead: Overhead, max_size: int
) -> list[bytes]:
    """``message``'s payloads as SKF messages of at most ``max_size`` bytes each.

    ``max_size`` bounds the whole IKE message (header included, the UDP and IP headers
    and the non-ESP marker not): RFC 7383 §2.5.1 derives it from the path MTU. Every
    fragment has the message's header fields; fragment 1's SKF Next Payload names the
    first inner payload, the others carry zero (RFC 7383 §2.5).
    """
    if message.unprotected:
        raise IkeEncodeError("a fragmented message has no payloads in the clear")
    inner = encode_chain(message.payloads)
    budget = max_size - IKE_HEADER_SIZE - _SKF_HEADER
    size = _largest_piece(budget, max(len(inner), 1), overhead)
    if size == 0:
        raise IkeEncodeError(f"no fragment fits in {max_size} bytes")
    pieces = [inner[i : i + size] for i in range(0, len(inner), size)] or [b""]
    total = len(pieces)
    if total > _MAX_FRAGMENTS:
        raise IkeEncodeError(f"{total} fragments, Total Fragments allows {_MAX_FRAGMENTS}")
    first_inner = message.payloads[0].payload_type if message.payloads else PayloadType.NONE
    datagrams: list[bytes] = []
    for number, piece in enumerate(pieces, 1):
        sealed_len = len(piece) + overhead(len(piece))
        skf_len = _SKF_HEADER + sealed_len
        header = message.header(PayloadType.SKF, IKE_HEADER_SIZE + skf_len)
        buf = Buffer()
        buf.push_bytes(header.encode())
        buf.push_u8(first_inner if number == 1 else PayloadType.NONE)
        buf.push_u8(0)
        buf.push_u16be(skf_len)
        buf.push_u16be(number)
        buf.push_u16be(total)
        sealed = protect(buf.data, piece)
        if len(sealed) != sealed_len:
            raise IkeEncodeError(
                f"protect returned {len(sealed)} bytes, overhead announced {sealed_len}"
            )
        buf.push_bytes(sealed)
        datagrams.append(buf.data)
    return datagrams


def decode_fragment(data: bytes, unprotect: Unprotect) -> IkeFragment:
    """Check, open and decode one SKF message.

    The SKF payload must be the last payload; unknown non-critical payloads before it
    are skipped (RFC 7296 §2.5), any other raises `IkeDecodeError`, as does a message
    without SKF. What ``unprotect`` raises passes through unchanged.
    """
    header = decode_header(data)
    outer, skf_start = decode_chain(data, header.next_payload, IKE_HEADER_SIZE)
    skf = outer.pop() if outer else None
    if not isinstance(skf, SkfPayload):
        raise IkeDecodeError(f"{header.exchange_type.name} message has no SKF payload")
    for payload in outer:
        if not isinstance(payload, UnknownPayload):
            raise IkeDecodeError(
                f"{PayloadType(payload.payload_type).name} payload beside an SKF payload"
            )
    aad = data[: skf_start + _SKF_HEADER]
    piece = unprotect(aad, skf.encrypted)
    return IkeFragment(
        IkeMessage.from_header(header),
        skf.fragment_number,
        skf.total_fragments,
        skf.first_inner,
        piece,
    )


class FragmentReassembler:
    """Collects checked fragments and returns each message once all its pieces are in.

    One per IKE SA, on the shared `larval.ike.reassembly.FragmentBuffer`. Messages are
    told apart by Message ID and direction (request or response). The rules of RFC 7383
    §2.6.1 and §2.5.2:

    * a duplicate fragment is ignored;
    * a fragment announcing more Total Fragments than those collected so far for the
      same message replaces them (the sender re-fragmented with a smaller size, or the
      earlier ones were stale); one announcing fewer is ignored;
    * the message is decoded only when every fragment 1..Total Fragments is present.

    ``max_messages`` partial messages are kept, the oldest dropped first, and a message
    may not grow beyond ``max_bytes`` of plaintext, so a peer cannot fill memory.
    """

    __slots__ = ("_buffer",)

    def __init__(self, max_messages: int = 4, max_bytes: int = 0xFFFF) -> None:
        self._buffer: FragmentBuffer[tuple[bool, int], IkeFragment] = FragmentBuffer(
            max_messages, max_bytes
        )

    def __len__(self) -> int:
        """How many messages are partly collected."""
        return len(self._buffer)

    def discard(self, message_id: int, is_response: bool) -> None:
        """Forget the fragments of one message (its exchange completed or was abandoned)."""
        self._buffer.discard((is_response, message_id))

    def add(self, fragment: IkeFragment) -> IkeMessage | None:
        """Take one fragment; the reassembled message when it was the last one missing.

        Raises `IkeProtocolError` (INVALID_SYNTAX) when the fragment contradicts those
        collected (another exchange type or SPIs) or the reassembled chain does not
        decode; the message's fragments are dropped either way.
        """
        if not 1 <= fragment.fragment_number <= fragment.total_fragments:
            raise IkeDecodeError(
                f"fragment {fragment.fragment_number} of {fragment.total_fragments}"
            )
        message = fragment.message
        key = (message.is_response, message.message_id)
        partial = self._buffer.partial(key)
        if partial is not None and fragment.total_fragments != partial.total:
            if fragment.total_fragments < partial.total:
                return None
            self._buffer.discard(key)
            partial = None
        if partial is not None:
            first = partial.first.message
            if (message.exchange_type, message.spi_i, message.spi_r) != (
                first.exchange_type,
                first.spi_i,
                first.spi_r,
            ):
                self._buffer.discard(key)
                raise IkeProtocolError(
                    NotifyType.INVALID_SYNTAX,
                    f"fragment {fragment.fragment_number} of message {message.message_id} "
                    "does not match the fragments before it",
                )
        try:
            pieces = self._buffer.add(
                key,
                fragment.fragment_number,
                fragment,
                len(fragment.data),
                fragment.total_fragments,
            )
        except FragmentOverflow:
            return None  # RFC 7383 §2.6.1 leaves it to the receiver: dropped, not answered
        return None if pieces is None else self._assemble(pieces)

    @staticmethod
    def _assemble(pieces: list[IkeFragment]) -> IkeMessage:
        first = pieces[0]
        chain = b"".join(p.data for p in pieces)
        payloads, _ = decode_chain(chain, first.first_inner, inner=True)
        return dataclasses.replace(first.message, payloads=tuple(payloads))
