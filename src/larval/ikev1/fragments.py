"""IKEv1 message fragmentation, as Cisco defined it and strongSwan and racoon speak it.

IKEv1 has no standard fragmentation; this is the scheme behind the FRAGMENTATION vendor
ID. A message too long for the path is sent as several ISAKMP messages, each with the
message's cookies, Message ID 0, the Phase 1 exchange type (Identity Protection, or
Aggressive for an Aggressive Mode connection), no flags, and one Fragment payload
(type 132)::

                         1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ! Next Payload  !   RESERVED    !         Payload Length        !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    !          Fragment ID          !  Fragment Num !     Flags     !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ~                         Fragment Data                         ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The pieces, numbered from 1 with the LAST flag on the final one, are the whole message
as it would have gone out (its header included, encrypted where it is). Nothing in a
fragment is protected: the receiver reassembles and then checks the message as though it
had arrived whole, so a forged fragment can spoil a message but never pass as one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from larval.ike.reassembly import FragmentBuffer, FragmentOverflow

from .constants import ISAKMP_HEADER_SIZE, ExchangeType, NotifyType, PayloadType
from .errors import IkeV1DecodeError
from .message import IkeV1Header, decode_header

__all__ = ["FRAGMENT_SIZE", "FragmentReassembler", "IkeV1Fragment", "decode_fragment", "fragment"]

#: The largest ISAKMP message sent whole to a peer that announced fragmentation: 1280
#: bytes of IP datagram (strongSwan's `charon.fragment_size`) less the IP and UDP headers
#: and the non-ESP marker.
FRAGMENT_SIZE = 1280 - 20 - 8 - 4
LAST_FRAGMENT = 0x01
MAX_FRAGMENTS = 16  # strongSwan's limit: more is an attack, not a message
MAX_MESSAGE = 10000  # bytes reassembled at most (strongSwan's charon.max_packet)

_FRAGMENT = struct.Struct("!BBHHBB")  # generic header, Fragment ID, Number, Flags


@dataclass(frozen=True, slots=True)
class IkeV1Fragment:
    cookie_i: bytes
    cookie_r: bytes
    fragment_id: int
    number: int
    last: bool
    data: bytes


def fragment(
    message: bytes, fragment_id: int, exchange: ExchangeType, max_size: int = FRAGMENT_SIZE
) -> list[bytes]:
    """`message` (an encoded ISAKMP message) as Fragment messages of at most `max_size`
    bytes each; [message] itself when it fits."""
    if len(message) <= max_size:
        return [message]
    piece = max_size - ISAKMP_HEADER_SIZE - _FRAGMENT.size
    if piece < 1:
        raise ValueError(f"a fragment size of {max_size} bytes leaves no room for data")
    pieces = [message[i : i + piece] for i in range(0, len(message), piece)]
    if len(pieces) > MAX_FRAGMENTS:
        raise ValueError(f"{len(message)} bytes would take {len(pieces)} fragments")
    cookies = message[:16]
    out = []
    for number, data in enumerate(pieces, 1):
        flags = LAST_FRAGMENT if number == len(pieces) else 0
        length = ISAKMP_HEADER_SIZE + _FRAGMENT.size + len(data)
        header = IkeV1Header(
            cookies[:8], cookies[8:], PayloadType.FRAGMENT, 1, 0, exchange, 0, 0, length
        ).encode()
        payload = _FRAGMENT.pack(0, 0, _FRAGMENT.size + len(data), fragment_id, number, flags)
        out.append(header + payload + data)
    return out


def decode_fragment(data: bytes) -> IkeV1Fragment:
    """One Fragment message, checked: a single Fragment payload filling the message, with a
    fragment number from 1 to `MAX_FRAGMENTS`. Raises `IkeV1DecodeError` otherwise."""
    header = decode_header(data)
    if header.next_payload != PayloadType.FRAGMENT:
        raise IkeV1DecodeError("not a Fragment message")
    body = data[ISAKMP_HEADER_SIZE:]
    if len(body) < _FRAGMENT.size:
        raise IkeV1DecodeError(
            f"Fragment payload of {len(body)} bytes", NotifyType.PAYLOAD_MALFORMED
        )
    next_payload, _, length, fragment_id, number, flags = _FRAGMENT.unpack_from(body)
    if length != len(body) or next_payload != 0:
        raise IkeV1DecodeError(
            "the Fragment payload does not fill the message alone", NotifyType.PAYLOAD_MALFORMED
        )
    if not 1 <= number <= MAX_FRAGMENTS:
        raise IkeV1DecodeError(f"fragment number {number}", NotifyType.PAYLOAD_MALFORMED)
    return IkeV1Fragment(
        header.cookie_i,
        header.cookie_r,
        fragment_id,
        number,
        bool(flags & LAST_FRAGMENT),
        body[_FRAGMENT.size :],
    )


class FragmentReassembler:
    """The fragments of one message at a time, per ISAKMP SA, as strongSwan keeps them, on
    the shared `larval.ike.reassembly.FragmentBuffer`.

    A fragment of another Fragment ID than those collected starts over (the peer gave up
    on that message); a duplicate number is ignored; the message is returned once the
    LAST fragment and every number before it are in. More than `MAX_MESSAGE` bytes, or a
    fragment numbered past the LAST one, drops what was collected.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer: FragmentBuffer[int, bytes] = FragmentBuffer(1, MAX_MESSAGE)

    def __len__(self) -> int:
        """How many fragments are held."""
        return self._buffer.pieces()

    def clear(self) -> None:
        self._buffer.clear()

    def add(self, piece: IkeV1Fragment) -> bytes | None:
        """Take one fragment; the whole message when it was the last one missing. Raises
        `IkeV1DecodeError`, dropping what was collected, when the fragments cannot make
        a message."""
        partial = self._buffer.partial(piece.fragment_id)
        held = partial.pieces if partial is not None else {}
        known_last = partial.total if partial is not None else 0
        if piece.number in held:
            return None
        last = piece.number if piece.last else known_last
        highest = max(piece.number, max(held, default=0))
        if (last and highest > last) or (known_last and piece.last and piece.number != known_last):
            self.clear()
            raise IkeV1DecodeError("fragments numbered past the last one")
        try:
            pieces = self._buffer.add(piece.fragment_id, piece.number, piece.data,
                                      len(piece.data), last)  # fmt: skip
        except FragmentOverflow as exc:
            raise IkeV1DecodeError(str(exc)) from None
        return None if pieces is None else b"".join(pieces)
