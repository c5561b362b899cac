"""`EspSa`: one direction of an ESP Security Association (RFC 4303).

Outbound, `encrypt` numbers the packet, pads it and seals it:

    SPI | Sequence Number | IV | payload | Padding | Pad Length | Next Header | ICV

Inbound, `decrypt` runs the RFC 4303 §3.4 steps in their order: length sanity, the
anti-replay check (before the ICV, so duplicates cost nothing), ICV verification and
decryption, padding check, then the anti-replay window update (only now, §3.4.3).

Every inbound failure is an `EspDropError` subclass naming its counter; no other
exception leaves `decrypt` whatever the bytes. `packets_out` and `packets_in` count
packets; `bytes_out` and `bytes_in` count payload bytes (the packet carried, without ESP
overhead), for the SADB lifetimes (RFC 2367 §2.3.4).

The outbound sequence number and counters of an SA with compiled AES-GCM live in its C
block (`handle`), the one place the compiled seal calls number from and `encrypt`, the
reservation and GET read and write; an SA on the Python path keeps them in an array of
the same four words. So do its inbound replay window (`replay`, a `SaWindow` over the
block) and inbound counters, which the compiled receiving calls check and move there.

An `EspSa` is not locked: give each SA direction to one thread, as the dataplane does.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Sequence
from typing import Any, Literal

from larval.crypto.algorithms import AALG_NONE, EALG_AES_GCM_16
from larval.crypto.randomness import RandomBytes, system_random
from larval.esp.errors import (
    EspAuthError,
    EspBadPaddingError,
    EspConfigError,
    EspDropError,
    EspDummyPacket,
    EspError,
    EspMalformedError,
    EspReplayError,
    EspReplayTooOldError,
    EspSeqExhausted,
    EspSeqUnreserved,
    EspTruncatedError,
    EspUnknownSpiError,
)
from larval.esp.helper import (
    OPEN_AUTH,
    OPEN_BEFORE,
    OPEN_OK,
    OPEN_PADDING,
    OPEN_REPLAY,
    OPEN_SPI,
    OPEN_TOO_OLD,
    OPEN_TRUNCATED,
    GcmBatch,
    SaWindow,
    gcm_batch,
    open_many,
    open_window,
    sa_handle,
    sa_numbers,
    seal_many,
    seal_run,
)
from larval.esp.replay import EspReplayWindow
from larval.esp.transforms import BytesLike, IvSource, make_transform

__all__ = [
    "ESP_HEADER_LEN",
    "IPPROTO_NONE",
    "OPEN_COUNTERS",
    "EspDecrypted",
    "EspMode",
    "EspSa",
    "EspSpan",
    "open_each",
    "seal_each",
    "seal_handles",
]

EspMode = Literal["tunnel", "transport"]
#: What `EspSa.decrypt_batch` gives for each packet: (Next Header, payload), or the drop.
EspDecrypted = tuple[int, bytes] | EspDropError
#: What `EspSa.decrypt_spans` gives for each packet: (Next Header, start, length) of its
#: payload in the batch's one plaintext buffer, or the drop.
EspSpan = tuple[int, int, int] | EspDropError

ESP_HEADER_LEN = 8
IPPROTO_NONE = 59  # Next Header of a dummy packet (RFC 4303 §2.6)

_SPI_SEQ = struct.Struct(">II")
_U32 = struct.Struct(">I")
_SEQ_MAX_32 = (1 << 32) - 1
_SEQ_MAX_64 = (1 << 64) - 1

# RFC 4303 §2.4: the default padding is 1, 2, 3, ...; index = Pad Length.
_PADDING = tuple(bytes(range(1, n + 1)) for n in range(256))
# Padding || Pad Length, by Pad Length; and the Next Header byte, by value.
_PAD_TRAILER = tuple(_PADDING[n] + bytes((n,)) for n in range(256))
_BYTE = tuple(bytes((n,)) for n in range(256))
# An SA's outbound numbers (`EspSa._out`), as its C block orders them (`sa_numbers`).
_SEQ, _CHECK, _PACKETS, _BYTES = range(4)


class EspSa:
    """One direction of an ESP SA: keys, sequence numbers, replay window and counters."""

    __slots__ = (
        "_batch",
        "_block_size",
        "_bytes_in",
        "_handle",
        "_iv",
        "_min_len",
        "_open",
        "_open_into",
        "_out",
        "_overhead",
        "_packets_in",
        "_pad_to",
        "_received",
        "_seal",
        "_seal_into",
        "_seq_half",
        "_seq_max",
        "_transform",
        "esn",
        "mode",
        "replay",
        "reserve",
        "seq_mark",
        "spi",
    )

    def __init__(
        self,
        spi: int,
        encrypt_alg: int,
        encrypt_key: bytes,
        auth_alg: int = AALG_NONE,
        auth_key: bytes = b"",
        *,
        esn: bool = False,
        replay_window: int = 64,
        mode: EspMode = "tunnel",
        iv_source: IvSource | None = None,
        random_bytes: RandomBytes = system_random,
        esp_path: str | None = None,
    ) -> None:
        """`iv_source` gives each packet's IV outright (test vectors); otherwise the
        transform makes it, drawing from `random_bytes` where it must be random.

        `esp_path` (``compiled`` or ``python``; None: as `larval.esp.helper` selects)
        says who runs the batch calls for AES-GCM; the per-packet calls are Python."""
        # RFC 4303 §2.1: SPIs 1..255 are reserved by IANA, 0 is local-only.
        if not 256 <= spi <= _SEQ_MAX_32:
            raise EspConfigError(f"SPI {spi:#x} outside 0x100..0xffffffff (RFC 4303 §2.1)")
        if mode not in ("tunnel", "transport"):
            raise EspConfigError(f"mode {mode!r}; expected 'tunnel' or 'transport'")
        self._transform = make_transform(encrypt_alg, encrypt_key, auth_alg, auth_key, random_bytes)
        self.spi = spi
        self.mode: EspMode = mode
        self.esn = esn
        # The outbound numbers: in Python until the SA has its C block (below).
        self._out: array[int] | memoryview = array("Q", (0, 0, 0, 0))
        # Highest sequence number sent; the first packet carries 1 (RFC 4303 §3.3.3).
        self.seq = 0
        self._seq_max = _SEQ_MAX_64 if esn else _SEQ_MAX_32
        # Sequence number reservation (`reserve_from`): the SA sends only numbers below
        # `seq_mark`, and asks `reserve` for more when fewer than `_seq_half` remain.
        # Without it the mark is past the whole space and nothing is ever asked.
        self.seq_mark = self._seq_max + 1
        self.reserve: Callable[[EspSa], None] | None = None
        self._seq_half = 0
        # The one number the per-packet path compares with: below it, nothing to do.
        self._seq_check = self.seq_mark
        self.replay = EspReplayWindow(replay_window, esn=esn)
        self._iv: IvSource = iv_source or self._transform.default_iv
        # The compiled batch loop writes the IV an AEAD's default makes (the sequence
        # number): an SA given its IVs keeps to Python.
        self._batch: GcmBatch | None = None
        if encrypt_alg == EALG_AES_GCM_16 and iv_source is None:
            self._batch = gcm_batch(encrypt_key[:-4], encrypt_key[-4:], esp_path)
        t = self._transform
        # Bound once: the per-packet paths make no attribute lookups they can avoid.
        self._seal = t.seal
        self._seal_into = t.seal_into
        self._open = t.open
        self._open_into = t.open_into
        self._pad_to = t.pad_to
        self._block_size = t.block_size
        self._overhead = ESP_HEADER_LEN + t.iv_size + t.icv_size
        # Header, IV, at least Pad Length and Next Header (a whole block), ICV.
        self._min_len = self._overhead + max(2, t.block_size)
        # The SA's C block: the compiled calls' handle of it (`seal_each`, `open_each`).
        self._handle: Any = (
            None
            if self._batch is None
            else sa_handle(
                self._batch,
                encrypt_key[:-4],
                encrypt_key[-4:],
                spi,
                esn,
                replay_window,
                self._min_len,
            )
        )
        self._received: Any = None
        if self._handle is not None:
            # The inbound window and counters live in the handle's block: the compiled
            # calls move them there, and everything else reads them from there.
            window = SaWindow(self._handle, replay_window, esn=esn)
            self.replay = window
            self._received = window.received_call
            # So do the outbound numbers, the one copy (`seq` is 0 there already).
            self._out = sa_numbers(self._handle)
            self._seq_check = self.seq_mark
        self.packets_out = 0
        self.bytes_out = 0
        self._packets_in = 0
        self._bytes_in = 0

    def __repr__(self) -> str:
        return (
            f"EspSa(spi={self.spi:#010x}, {self._transform.name}, mode={self.mode}, "
            f"esn={self.esn}, seq={self.seq}, window={self.replay.size})"
        )

    @property
    def transform_name(self) -> str:
        return self._transform.name

    @property
    def packets_in(self) -> int:
        """Packets received and authenticated (dummy packets too)."""
        handle = self._handle
        return self._packets_in if handle is None else int(handle.packets_in)

    @packets_in.setter
    def packets_in(self, value: int) -> None:
        if self._handle is None:
            self._packets_in = value
        else:
            self._handle.packets_in = value

    @property
    def bytes_in(self) -> int:
        """Payload bytes of the packets counted by `packets_in`."""
        handle = self._handle
        return self._bytes_in if handle is None else int(handle.bytes_in)

    @bytes_in.setter
    def bytes_in(self, value: int) -> None:
        if self._handle is None:
            self._bytes_in = value
        else:
            self._handle.bytes_in = value

    @property
    def handle(self) -> Any:
        """The SA's C block for the compiled one-packet-each calls (`seal_handles`,
        `open_each`), which holds its outbound numbers and its inbound window and counters;
        None where Python runs."""
        return self._handle

    # -- outbound numbers, kept in the SA's block -----------------------------------------

    @property
    def seq(self) -> int:
        """The highest sequence number sent (0 before the first packet)."""
        return self._out[_SEQ]

    @seq.setter
    def seq(self, value: int) -> None:
        self._out[_SEQ] = value

    @property
    def _seq_check(self) -> int:
        return self._out[_CHECK]

    @_seq_check.setter
    def _seq_check(self, value: int) -> None:
        # Never past the whole space, so that exhaustion stops the compiled calls too;
        # with ESN that is 2^64, one more than 64 bits hold, so the check stops one
        # number early and `_seq_slow` lets the last one through.
        self._out[_CHECK] = min(value, self._seq_max + 1, _SEQ_MAX_64)

    @property
    def packets_out(self) -> int:
        return self._out[_PACKETS]

    @packets_out.setter
    def packets_out(self, value: int) -> None:
        self._out[_PACKETS] = value

    @property
    def bytes_out(self) -> int:
        """Payload bytes sent (RFC 2367 §2.3.4's bytes, without ESP overhead)."""
        return self._out[_BYTES]

    @bytes_out.setter
    def bytes_out(self, value: int) -> None:
        self._out[_BYTES] = value

    # -- sequence number reservation ---------------------------------------------------

    def reserve_from(self, first: int, half_block: int, reserve: Callable[[EspSa], None]) -> None:
        """Send only reserved sequence numbers from now on, the next one being `first`.

        Nothing is reserved yet: `reserve(self)` is asked for a block before the first
        packet, and again whenever fewer than `half_block` numbers remain below the mark;
        it must only take note (the store's writer grants with `grant`).
        """
        if half_block < 1:
            raise EspConfigError(f"half a reservation block of {half_block}")
        self.start_at(first)
        self._seq_half = half_block
        self.reserve = reserve
        self.seq_mark = self.seq + 1
        self._seq_check = self.seq_mark

    def start_at(self, first: int) -> None:
        """The next packet carries `first` (after a restart), or a later number if this
        SA sent that far already; past the whole space, the SA is exhausted."""
        if first < 1:
            raise EspConfigError(f"first sequence number {first}; the first is 1")
        self.seq = max(self.seq, min(first, self._seq_max + 1) - 1)

    def grant(self, mark: int) -> None:
        """The numbers below `mark` are reserved durably: they may be sent. A mark never
        moves down, and a revoked SA takes no grant. Call it under the lock that
        serialises `encrypt` on this SA."""
        if self._seq_half < 0 or mark <= self.seq_mark:
            return
        self.seq_mark = mark
        # Ask again once half the block is used (at once if it is already).
        self._seq_check = max(self.seq + 1, mark - self._seq_half)

    def revoke(self) -> None:
        """Send nothing more (the store fenced this node). Under the `encrypt` lock."""
        self.reserve = None
        self.seq_mark = self.seq + 1
        self._seq_check = self.seq_mark
        self._seq_half = -1

    @property
    def revoked(self) -> bool:
        return self._seq_half < 0

    def _seq_slow(self, seq: int) -> None:
        """The next number reached `_seq_check`: exhausted, time to ask, or unreserved."""
        if seq > self._seq_max:
            # RFC 4303 §3.3.3: the counter must not cycle; a new SA is needed.
            raise EspSeqExhausted(f"SPI {self.spi:#010x}: sequence number space exhausted")
        mark = self.seq_mark
        reserve = self.reserve
        if reserve is not None and mark - seq <= self._seq_half:
            reserve(self)
            # Asked once: the next stop is the mark (a grant moves it on).
            self._seq_check = mark
        if seq >= mark:
            raise EspSeqUnreserved(f"SPI {self.spi:#010x}: sequence number {seq} not reserved")

    # -- outbound -----------------------------------------------------------------------

    def esp_length(self, payload_len: int) -> int:
        """The length of the ESP packet that carries a payload of `payload_len` bytes."""
        return self._overhead + payload_len + 2 + (-(payload_len + 2) % self._pad_to)

    def _outbound(self, inner: BytesLike, next_header: int) -> tuple[bytes, bytes, bytes, bytes]:
        """Number the next packet; its ESP header, Seqh (ESN), IV and padded plaintext."""
        if not 0 <= next_header <= 255:
            raise EspError(f"Next Header {next_header} is not an 8-bit protocol number")
        out = self._out
        seq = out[_SEQ] + 1
        if seq >= out[_CHECK]:
            self._seq_slow(seq)  # raises unless the number may be sent
        out[_SEQ] = seq
        n = len(inner)
        out[_PACKETS] += 1
        out[_BYTES] += n
        # RFC 4303 §2.4: pad so that Pad Length and Next Header end on a block boundary.
        plaintext = bytes(inner) + (_PAD_TRAILER[-(n + 2) % self._pad_to] + _BYTE[next_header])
        # RFC 4303 §2.2.1: with ESN only the low 32 bits travel in the packet.
        return (
            _SPI_SEQ.pack(self.spi, seq & _SEQ_MAX_32),
            _U32.pack(seq >> 32) if self.esn else b"",
            self._iv(seq),
            plaintext,
        )

    def encrypt(self, inner: BytesLike, next_header: int) -> bytes:
        """Protect `inner` (Next Header `next_header`); the whole ESP packet."""
        return self._seal(*self._outbound(inner, next_header))

    def encrypt_into(
        self, inner: BytesLike, next_header: int, buf: bytearray | memoryview, offset: int = 0
    ) -> int:
        """Like `encrypt`, writing the ESP packet into `buf` at `offset`; its length.

        For batches built in one buffer (a UDP GSO send): the AEADs write in place
        (`encrypt_into` of `cryptography`). `buf` needs `esp_length(len(inner))` bytes
        from `offset`.
        """
        length = self.esp_length(len(inner))
        out = memoryview(buf)[offset : offset + length]
        if len(out) != length:
            raise EspError(f"buffer has {len(out)} bytes at offset {offset}; need {length}")
        self._seal_into(out, *self._outbound(inner, next_header))
        return length

    def encrypt_batch(
        self, packets: Sequence[tuple[BytesLike, int]]
    ) -> tuple[list[bytes], EspError | None]:
        """`encrypt` for each (inner, Next Header) of `packets`, in order.

        Returns the ESP packets made, and the error that stopped the batch or None: on
        an error (exhausted, unreserved, a bad Next Header) packet ``len(made)`` was not
        numbered and neither was any after it, exactly as if `encrypt` had been called
        packet by packet and had raised there.
        """
        handle = self._handle
        made: list[bytes] = []
        # The compiled call numbers from the SA's block and seals the packets before its
        # next stop; `encrypt` takes the rest, from the stop on.
        if handle is not None and packets:
            next_headers = [nh for _, nh in packets]
            if min(next_headers) >= 0 and max(next_headers) <= 255:
                inners = [bytes(inner) for inner, _ in packets]
                made = seal_run(handle, inners, bytes(next_headers))
                if len(made) == len(packets):
                    return made, None
                packets = packets[len(made) :]
        append, outbound, seal = made.append, self._outbound, self._seal
        try:
            for inner, next_header in packets:
                append(seal(*outbound(inner, next_header)))
        except EspError as e:
            return made, e
        return made, None

    # -- inbound ------------------------------------------------------------------------

    def _inbound(self, esp: BytesLike) -> tuple[int, bytes]:
        """RFC 4303 §3.4.1-3.4.3 before the ICV: length, SPI, replay; (seq, Seqh)."""
        n = len(esp)
        if n < self._min_len:
            raise EspTruncatedError(f"ESP packet of {n} bytes; at least {self._min_len}")
        if (n - self._overhead) % self._block_size:
            raise EspMalformedError(f"ciphertext not a multiple of {self._block_size} bytes")
        spi, seql = _SPI_SEQ.unpack_from(esp)
        if spi != self.spi:
            raise EspUnknownSpiError(f"SPI {spi:#010x} sent to the SA of {self.spi:#010x}")
        # RFC 4303 §3.4.3: the replay check comes before the ICV check.
        seq = self.replay.check(seql)
        return seq, _U32.pack(seq >> 32) if self.esn else b""

    def _accept(self, plaintext: BytesLike, seq: int) -> tuple[int, int]:
        """After the ICV: padding check, window update; (Next Header, payload length)."""
        padlen = plaintext[-2]
        end = len(plaintext) - 2 - padlen
        if end < 0 or plaintext[end:-2] != _PADDING[padlen]:
            raise EspBadPaddingError(f"Pad Length {padlen} or padding bytes wrong")
        # RFC 4303 §3.4.3: the window moves only once the packet is authenticated.
        handle = self._handle
        if handle is None:
            self.replay.update(seq)
            self._packets_in += 1
            self._bytes_in += end
        else:
            self._received(handle, seq, end)  # the window and counters in the SA's block
        next_header = plaintext[-1]
        if next_header == IPPROTO_NONE:
            raise EspDummyPacket("dummy packet (Next Header 59) discarded")
        return next_header, end

    def decrypt(self, esp: BytesLike) -> tuple[int, bytes]:
        """Verify and decrypt one ESP packet; (Next Header, payload).

        Raises an `EspDropError` subclass, and nothing else, for any bytes.
        """
        seq, seq_hi = self._inbound(esp)
        plaintext = self._open(esp, seq_hi)
        next_header, end = self._accept(plaintext, seq)
        return next_header, plaintext[:end]

    def decrypt_into(
        self, esp: BytesLike, buf: bytearray | memoryview, offset: int = 0
    ) -> tuple[int, int]:
        """Like `decrypt`, writing the payload into `buf` at `offset`; (Next Header, length).

        `buf` needs `len(esp) - overhead` bytes from `offset` (payload, padding and trailer
        land there; only the first `length` bytes are the payload). The AEADs decrypt in
        place (`decrypt_into` of `cryptography`).
        """
        seq, seq_hi = self._inbound(esp)
        size = len(esp) - self._overhead
        out = memoryview(buf)[offset : offset + size]
        if len(out) != size:
            raise EspError(f"buffer has {len(out)} bytes at offset {offset}; need {size}")
        self._open_into(esp, seq_hi, out)
        return self._accept(out, seq)

    def decrypt_batch(self, packets: Sequence[BytesLike]) -> list[EspDecrypted]:
        """`decrypt` for each of `packets`, in order: per packet (Next Header, payload),
        or the `EspDropError` that `decrypt` would have raised for it. The replay window
        moves exactly as it would packet by packet: a duplicate within the batch is a
        replay, and a packet whose ICV fails moves nothing."""
        if self._handle is not None and len(packets) > 1:
            plain, spans = self._decrypt_compiled(packets)
            return [
                span
                if isinstance(span, EspDropError)
                else (span[0], plain[span[1] : span[1] + span[2]])
                for span in spans
            ]
        results: list[EspDecrypted] = []
        append, inbound, open_, accept = results.append, self._inbound, self._open, self._accept
        for esp in packets:
            try:
                seq, seq_hi = inbound(esp)
                plaintext = open_(esp, seq_hi)
                next_header, end = accept(plaintext, seq)
            except EspDropError as e:
                append(e)
                continue
            append((next_header, plaintext[:end]))
        return results

    def decrypt_spans(self, packets: Sequence[BytesLike]) -> tuple[bytes, list[EspSpan]]:
        """`decrypt_batch` with the payloads left in one buffer: the buffer, and per packet
        (Next Header, start, length) of its payload there, or its drop. The outcome, the
        window and the counters are those of `decrypt_batch`; only the payloads are not
        cut out one by one (the compiled path decrypts them all into the buffer)."""
        if self._handle is not None and len(packets) > 1:
            return self._decrypt_compiled(packets)
        spans: list[EspSpan] = []
        payloads: list[bytes] = []
        off = 0
        for result in self.decrypt_batch(packets):
            if isinstance(result, EspDropError):
                spans.append(result)
                continue
            next_header, payload = result
            spans.append((next_header, off, len(payload)))
            payloads.append(payload)
            off += len(payload)
        return b"".join(payloads), spans

    def _one(self, esp: BytesLike) -> EspDecrypted:
        try:
            return self.decrypt(esp)
        except EspDropError as e:
            return e

    def _decrypt_compiled(self, packets: Sequence[BytesLike]) -> tuple[bytes, list[EspSpan]]:
        """`decrypt_spans` in one compiled call, which takes `decrypt`'s steps packet by
        packet in order on this SA's block, the anti-replay check, the window update and
        the counters included; the drops are named here."""
        plain, offsets, status, seqs, lengths, next_headers = open_window(self._handle, packets)
        results: list[EspSpan] = []
        append = results.append
        for i, verdict in enumerate(status):
            if verdict == OPEN_OK:
                next_header = next_headers[i]
                if next_header == IPPROTO_NONE:
                    append(EspDummyPacket("dummy packet (Next Header 59) discarded"))
                else:
                    append((next_header, offsets[i], lengths[i]))
                continue
            append(self._dropped(verdict, len(packets[i]), packets[i], seqs[i], plain, offsets[i]))
        return plain, results

    def _dropped(
        self, verdict: int, n: int, esp: BytesLike, seq: int, plain: Any, offset: int
    ) -> EspDropError:
        """The error `decrypt` raises for a packet the compiled call dropped."""
        if verdict == OPEN_AUTH:
            return EspAuthError("ICV mismatch")
        if verdict == OPEN_REPLAY:
            return EspReplayError(f"sequence number {seq} already received")
        if verdict == OPEN_TOO_OLD:
            return EspReplayTooOldError(f"sequence number {seq} left of the window")
        if verdict == OPEN_PADDING:
            # A slice, then its byte: `plain` may be a cffi buffer, whose items are bytes.
            padlen = plain[offset + n - 34 : offset + n - 33][0]
            return EspBadPaddingError(f"Pad Length {padlen} or padding bytes wrong")
        if verdict == OPEN_TRUNCATED:
            return EspTruncatedError(f"ESP packet of {n} bytes; at least {self._min_len}")
        if verdict == OPEN_SPI:
            spi = int.from_bytes(esp[:4], "big")
            return EspUnknownSpiError(f"SPI {spi:#010x} sent to the SA of {self.spi:#010x}")
        if verdict == OPEN_BEFORE:
            return EspReplayTooOldError("sequence number before the first subspace")
        return EspReplayError("sequence number beyond the 64-bit space")


# -- one packet each of several SAs --------------------------------------------------------


def seal_each(
    sas: Sequence[EspSa], inners: list[bytes], next_headers: Sequence[int] | None = None
) -> list[bytes | None]:
    """For one packet each of `sas` in turn, ``inners[i]`` of ``sas[i]`` (a batch spread
    over many SAs): the ESP packet `EspSa.encrypt` would make under Next Header
    ``next_headers[i]``, or, without `next_headers` (tunnel mode), under the one its IP
    version names (4 for IPv4, else 41, RFC 4303 §2.6); the packets of every SA with
    compiled AES-GCM sealed in one call. None for a packet left to `encrypt`, to be
    called after this in order: Python runs for its SA, its number needs a stop
    (exhaustion or a reservation), or its Next Header is not one. An SA may come more
    than once: its packets sealed here take the next numbers in their order, and none it
    leaves is numbered before them (a stop leaves its later packets too, since its number
    does not move; a bad Next Header takes no number)."""
    if len(sas) != len(inners):
        raise ValueError(f"{len(sas)} SAs for {len(inners)} packets")
    return seal_handles([sa._handle for sa in sas], inners, next_headers)


def seal_handles(
    handles: list[Any],
    inners: list[bytes],
    next_headers: Sequence[int] | None = None,
    noticed: list[int] | None = None,
) -> list[bytes | None]:
    """`seal_each` for SAs given by their handles (`EspSa.handle`, None for an SA Python
    runs), for a caller that keeps them: the SAs' numbers and counters are in the
    handles' blocks, so the `EspSa` objects are not touched. Each packet sealed is
    counted against its SA's lifetimes in its block as well (`helper.sa_life`); the
    index of each whose count reached its SA's notice is appended to `noticed`."""
    n = len(inners)
    if len(handles) != n:
        raise ValueError(f"{len(handles)} SAs for {n} packets")
    nh: bytes | None = None
    if next_headers is not None:
        if len(next_headers) != n:
            raise ValueError(f"{len(next_headers)} Next Headers for {n} packets")
        if not all(0 <= h <= 255 for h in next_headers):
            # Those packets take no number: left out of the call, they go to `encrypt`.
            handles = [x if 0 <= h <= 255 else None
                       for x, h in zip(handles, next_headers, strict=True)]  # fmt: skip
            next_headers = [h & 0xFF for h in next_headers]
        nh = bytes(next_headers)
    if handles.count(None) == n:
        return [None] * n
    return seal_many(handles, inners, nh, noticed)


#: The counter of each compiled receive's drop, by status (`OPEN_*`; OK has none): the
#: `counter` of the error `EspSa._dropped` names it by, for a caller that only counts.
OPEN_COUNTERS: tuple[str, ...] = (
    "",
    EspAuthError.counter,  # OPEN_AUTH
    EspBadPaddingError.counter,  # OPEN_PADDING
    EspTruncatedError.counter,  # OPEN_TRUNCATED
    EspUnknownSpiError.counter,  # OPEN_SPI
    EspReplayError.counter,  # OPEN_REPLAY
    EspReplayTooOldError.counter,  # OPEN_TOO_OLD
    EspReplayTooOldError.counter,  # OPEN_BEFORE
    EspReplayError.counter,  # OPEN_BEYOND
)


def open_each(items: Sequence[tuple[EspSa, bytes]]) -> list[EspDecrypted | None]:
    """For each (SA, packet), in order: what `EspSa.decrypt` gives (Next Header and
    payload, or the drop), the packets of every SA with compiled AES-GCM received in one
    call on their SAs' windows and counters (an SA may come more than once: its packets
    are taken in their order); None for a packet of an SA on the Python path, left to
    `decrypt`, to be called after this in order."""
    found: list[EspDecrypted | None] = [None] * len(items)
    where: list[int] = []
    handles: list[Any] = []
    chosen: list[bytes] = []
    for i, (sa, esp) in enumerate(items):
        handle = sa._handle
        if handle is not None:
            where.append(i)
            handles.append(handle)
            chosen.append(esp)
    if not where:
        return found
    plain, offsets, status, lengths, next_headers, seqs = open_many(handles, chosen)
    for k, i in enumerate(where):
        verdict = status[k]
        if verdict != OPEN_OK:
            sa, esp = items[i]
            found[i] = sa._dropped(verdict, len(esp), esp, seqs[k], plain, offsets[k])
            continue
        next_header = next_headers[k]
        if next_header == IPPROTO_NONE:
            found[i] = EspDummyPacket("dummy packet (Next Header 59) discarded")
            continue
        start = offsets[k]
        found[i] = (next_header, plain[start : start + lengths[k]])
    return found
