"""IKEv2 messages as datagrams and back, for `larval.ike.transport`: IKE_SA_INIT in the
clear (RFC 7296 §1.2), every other message in an Encrypted payload (§3.14), or as SKF
fragments once both ends announced fragmentation (RFC 7383 §2.5), each fragment checked
and opened on arrival and reassembled before the message is taken (§2.6).
"""

from __future__ import annotations

from larval.crypto.sk import SkCipher

from .constants import IKE_HEADER_SIZE, ExchangeType, PayloadType
from .errors import IkeDecodeError, IkeEncodeError
from .fragments import FragmentReassembler, decode_fragment, fragment
from .message import IkeMessage, decode_chain, decode_header, decode_protected, encode_protected
from .payloads import SkfPayload, SkPayload

__all__ = ["FRAGMENT_SIZE", "Ikev2Framing"]

#: The largest IKE message sent whole once fragmentation is agreed (RFC 7383 §2.5.1):
#: the IKE header and payloads, without the IP and UDP headers or the non-ESP marker.
FRAGMENT_SIZE = 1280


class Ikev2Framing:
    """The SK ciphers of both ways (set when the keys exist), whether fragmentation was
    agreed, and the fragments of messages partly received."""

    __slots__ = ("fragment_size", "fragmentation", "inbound", "outbound", "reassembler")

    def __init__(self, fragment_size: int = FRAGMENT_SIZE) -> None:
        self.fragment_size = fragment_size
        self.fragmentation = False  # both ends announced it (RFC 7383 §2.3)
        self.outbound: SkCipher | None = None
        self.inbound: SkCipher | None = None
        self.reassembler = FragmentReassembler()

    def frame(self, message: IkeMessage) -> tuple[bytes, ...]:
        """The message in the clear (IKE_SA_INIT), in an SK payload, or as SKF fragments
        when it is longer than `fragment_size` and fragmentation was agreed (§2.5)."""
        if message.exchange_type == ExchangeType.IKE_SA_INIT:
            return (message.encode(),)
        out = self.outbound
        if out is None:
            raise IkeEncodeError(f"{message.exchange_type.name} before there are keys")

        def protect(aad: bytes, plain: bytes) -> bytes:
            return out.encrypt(plain, aad)

        data = encode_protected(message, protect, out.overhead)
        if not self.fragmentation or len(data) <= self.fragment_size:
            return (data,)
        return tuple(fragment(message, protect, out.overhead, self.fragment_size))

    def unframe(self, data: bytes, clear: IkeMessage | None = None) -> IkeMessage | None:
        """The protected message `data` carries, or None while its other fragments are
        missing (or it is a fragment, and fragmentation was not agreed: §2.3). What does
        not decode or authenticate raises. `clear`: `data` as `decode_message` read it
        (header and cleartext chain), if the caller has it, so it is not read again."""
        if self.inbound is None:
            raise IkeDecodeError("a protected message before there are keys")
        if clear is not None and clear.payloads and isinstance(clear.payloads[0], SkPayload):
            return decode_protected(data, self._unprotect, clear)
        header = decode_header(data)
        if header.next_payload != PayloadType.SK and self._is_fragment(data, header.next_payload):
            if not self.fragmentation:
                return None
            return self.reassembler.add(decode_fragment(data, self._unprotect))
        return decode_protected(data, self._unprotect)

    @staticmethod
    def _is_fragment(data: bytes, first: int) -> bool:
        if first == PayloadType.SKF:
            return True
        outer, _ = decode_chain(data, first, IKE_HEADER_SIZE)
        return bool(outer) and isinstance(outer[-1], SkfPayload)

    def _unprotect(self, aad: bytes, body: bytes) -> bytes:
        assert self.inbound is not None
        return self.inbound.decrypt(body, aad)
