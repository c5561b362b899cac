"""ESP errors: configuration refusals, sequence number exhaustion, and inbound drops.

Every inbound failure is an `EspDropError` whose `counter` names the drop, so the
dataplane keeps one counter per name (``counters[err.counter] += 1``) and never has to
look at messages. No message ever shows key bytes.
"""

from __future__ import annotations

from larval.errors import LarvalError

__all__ = [
    "EspAuthError",
    "EspBadNextHeaderError",
    "EspBadPaddingError",
    "EspConfigError",
    "EspDropError",
    "EspDummyPacket",
    "EspError",
    "EspMalformedError",
    "EspReplayError",
    "EspReplayTooOldError",
    "EspSeqExhausted",
    "EspSeqUnreserved",
    "EspTruncatedError",
    "EspUnknownSpiError",
]


class EspError(LarvalError):
    """Root of the errors of the ESP layer."""


class EspConfigError(EspError):
    """An SA cannot be built from these parameters (algorithm, key length, mode...)."""


class EspSeqExhausted(EspError):
    """The outbound sequence number would cycle; the SA must be rekeyed (RFC 4303 §3.3.3)."""


class EspSeqUnreserved(EspError):
    """The next sequence number is at or above the SA's reserved high-water mark: the
    packet is not sent until the next block of sequence numbers is durable (a number
    sent twice under one key reuses an AES-GCM nonce, RFC 4106 §3)."""


class EspDropError(EspError):
    """An inbound packet is dropped; `counter` names the drop counter to increment."""

    counter: str = "drop"


class EspTruncatedError(EspDropError):
    """Too short to hold what the transform needs (header, IV, trailer, ICV)."""

    counter = "truncated"


class EspMalformedError(EspDropError):
    """The bytes do not parse: a bad outer IP or UDP header, a misaligned ciphertext."""

    counter = "malformed"


class EspUnknownSpiError(EspDropError):
    """No SA for this SPI (RFC 4303 §3.4.2: discard, an auditable event)."""

    counter = "unknown_spi"


class EspReplayError(EspDropError):
    """The sequence number was already received (RFC 4303 §3.4.3)."""

    counter = "replay"


class EspReplayTooOldError(EspReplayError):
    """The sequence number is left of the anti-replay window (RFC 4303 §3.4.3)."""

    counter = "replay_old"


class EspAuthError(EspDropError):
    """The ICV did not verify (RFC 4303 §3.4.4)."""

    counter = "auth"


class EspBadPaddingError(EspDropError):
    """The Pad Length or the padding bytes are wrong (RFC 4303 §2.4)."""

    counter = "bad_padding"


class EspBadNextHeaderError(EspDropError):
    """A tunnel-mode SA carried something other than an IP packet (RFC 4303 §2.6)."""

    counter = "bad_next_header"


class EspDummyPacket(EspDropError):
    """An authenticated dummy packet, Next Header 59; discarded (RFC 4303 §2.6)."""

    counter = "dummy"
