"""Which ESP batch path runs: the compiled helper, or Python (the reference).

The compiled helper (`larval.esp._gcm_batch`, C in `_helper.c` against OpenSSL's
libcrypto, built by `pip install` through cffi when gcc and `libssl-dev` are there) does
the per-packet loop of `EspSa.encrypt_batch` and `decrypt_batch` for AES-GCM with a
16-byte ICV and 128- or 256-bit keys, including the padding check of what it opens and,
on receipt, the anti-replay check and window update. A compiled SA's C block
(`sa_handle`) holds its outbound sequence number and counters, which the sealing calls
number from, and its inbound window and counters, which the receiving calls move: one
source of truth, which `EspSa` reads and writes in place (`SaWindow`, an
`EspReplayWindow` over the block). The block of an inbound SA may also keep the IPv4
box of the inbound policy check (`sa_box`), against which the receive of many SAs
flags each opened packet (`open_boxed`). It also holds the TUN offload's TCP segmentation and
coalescing (`larval.net.offload`). The drop counters stay in Python.

``LARVAL_ESP_HELPER`` chooses: ``compiled`` (an error if it is not built), ``python``,
or unset / ``auto`` (compiled where built).
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from larval.esp.errors import EspConfigError, EspReplayError, EspReplayTooOldError
from larval.esp.replay import EspReplayWindow
from larval.esp.run import EspRun
from larval.esp.transforms import BytesLike

__all__ = [
    "HELPER_ENV",
    "OPEN_AUTH",
    "OPEN_BEFORE",
    "OPEN_BEYOND",
    "OPEN_OK",
    "OPEN_PADDING",
    "OPEN_REPLAY",
    "OPEN_SPI",
    "OPEN_TOO_OLD",
    "OPEN_TRUNCATED",
    "EspPath",
    "GcmBatch",
    "Opened",
    "SaWindow",
    "built",
    "compiled",
    "esp_path",
    "gcm_batch",
    "new_uncleared",
    "selected_path",
]

HELPER_ENV = "LARVAL_ESP_HELPER"
_CHOICES = ("auto", "compiled", "python")


_LOADED: list[tuple[Any, str]] = []


def _load() -> tuple[Any, str]:
    """The compiled module, or None and why it cannot be had; imported on first use, so
    that commands which move no packets do not pay for cffi."""
    if not _LOADED:
        try:
            _LOADED.append((importlib.import_module("larval.esp._gcm_batch"), ""))
        except ImportError as e:
            _LOADED.append((None, f"not built: {e}"))
    return _LOADED[0]


def built() -> tuple[bool, str]:
    """Whether the compiled helper can be used here, and if not, why."""
    module, why_not = _load()
    return module is not None, why_not


@dataclass(frozen=True)
class EspPath:
    """What `larval status` shows: ``compiled`` or ``python``, and a detail (the OpenSSL
    version the helper runs on, or why the Python path runs)."""

    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.name} ({self.detail})"


def selected_path() -> str:
    """``compiled`` or ``python``, as ``LARVAL_ESP_HELPER`` and the build decide.

    Raises `EspConfigError` for an unknown value, or ``compiled`` without the helper.
    """
    choice = os.environ.get(HELPER_ENV, "").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise EspConfigError(f"{HELPER_ENV}={choice!r}; allowed: {', '.join(_CHOICES)}")
    if choice == "python":
        return "python"
    module, why_not = _load()
    if module is None:
        if choice == "compiled":
            raise EspConfigError(f"{HELPER_ENV}=compiled, but the compiled ESP helper is {why_not}")
        return "python"
    return "compiled"


def esp_path() -> EspPath:
    """The path that runs, and why; for `larval status` (raises as `selected_path`)."""
    name = selected_path()
    module, why_not = _load()
    if name == "compiled":
        version = module.ffi.string(module.lib.larval_openssl_version()).decode()
        return EspPath("compiled", version)
    if module is None:
        return EspPath("python", f"helper {why_not}")
    return EspPath("python", f"forced by {HELPER_ENV}=python")


def gcm_batch(key: bytes, salt: bytes, path: str | None = None) -> GcmBatch | None:
    """A compiled batch context for an AES-GCM key, or None where Python is to run.

    `path`: ``compiled`` or ``python``; None asks `selected_path`."""
    path = path or selected_path()
    if path == "python":
        return None
    if path != "compiled":
        raise EspConfigError(f"ESP path {path!r}; allowed: compiled, python")
    module, why_not = _load()
    if module is None:
        raise EspConfigError(f"the compiled ESP helper is {why_not}")
    return GcmBatch(module, key, salt)


#: `GcmBatch.open_window`'s status of a packet, as `_helper.c` defines them.
OPEN_OK = 0
OPEN_AUTH = 1  # the ICV did not verify
OPEN_PADDING = 2  # it did, but the padding is not RFC 4303 §2.4's
OPEN_TRUNCATED = 3
OPEN_SPI = 4
OPEN_REPLAY = 5
OPEN_TOO_OLD = 6
OPEN_BEFORE = 7  # ESN: before the first subspace
OPEN_BEYOND = 8  # ESN: beyond the 64-bit space


def compiled() -> Any:
    """The compiled module where the compiled path runs (`selected_path`), else None;
    for the other batch loops it holds (TCP segmentation and coalescing, net/offload).

    Called from the packet loops, it never raises: a bad ``LARVAL_ESP_HELPER`` is
    refused by name where the dataplane starts and where SAs are made, and here the
    Python path serves."""
    try:
        path = selected_path()
    except EspConfigError:
        return None
    return _load()[0] if path == "compiled" else None


def new_uncleared(ctype: str, size: int) -> Any:
    """A cffi array left unzeroed: every byte of it is written before it is read."""
    module, _ = _load()
    allocators = _ALLOCATORS
    if not allocators:
        allocators.append(module.ffi.new_allocator(should_clear_after_alloc=False))
    return allocators[0](ctype, size)


_ALLOCATORS: list[Any] = []


class Opened(NamedTuple):
    """What `open_window` found: the plaintexts in one buffer, and per packet
    its plaintext's offset there, its status (`OPEN_*`), its full sequence number (0
    where none was inferred), and for an OK packet its payload length and Next Header."""

    plain: bytes
    offsets: list[int]
    status: bytes
    seqs: list[int]
    lengths: list[int]
    next_headers: bytes


class GcmBatch:
    """AES-GCM keys in OpenSSL EVP contexts, for the batch calls of one SA direction.

    The contexts are freed with this object (their key schedules cleansed by OpenSSL)."""

    __slots__ = ("_ctx", "_ffi", "_lib")

    def __init__(self, module: Any, key: bytes, salt: bytes) -> None:
        ffi, lib = module.ffi, module.lib
        if len(key) not in (16, 32) or len(salt) != 4:
            raise EspConfigError(f"compiled AES-GCM takes a 128- or 256-bit key, not {len(key)}")
        ctx = lib.larval_gcm_new(key, len(key), salt)
        if ctx == ffi.NULL:
            raise EspConfigError("OpenSSL could not set up AES-GCM")
        self._ctx = ffi.gc(ctx, lib.larval_gcm_free)
        self._ffi = ffi
        self._lib = lib


def sa_handle(
    batch: GcmBatch,
    key: bytes,
    salt: bytes,
    spi: int,
    esn: bool,
    window: int = 0,
    min_len: int = 0,
) -> Any:
    """The handle `seal_many` and `open_many` take for one SA: `batch`'s context, its key
    and salt (the calls of many SAs key a context of their own with them), the SPI, the
    ESN flag, the replay window's size in bits and the smallest ESP packet in one C block,
    made once, with room for the SA's packet state (`_helper.c`). `batch` owns the
    context: keep it as long. Freed, the key cleansed, when the handle is."""
    lib = batch._lib
    made = lib.larval_gcm_sa_new(batch._ctx, key, len(key), salt, spi, int(esn), window, min_len)
    if made == batch._ffi.NULL:
        raise EspConfigError(f"no SA block for a replay window of {window} bits")
    return batch._ffi.gc(made, lib.larval_gcm_sa_free)


#: `larval_gcm_seal_many`'s flag, in a packet's length, of a count that reached the notice.
_NOTICED = 1 << 63
#: `sa_life`'s notice where none is due: past any count.
LIFE_NEVER = (1 << 64) - 1
#: `open_boxed`'s flag beside the box's of a packet whose count reached the notice.
BOX_NOTICED = 2


def sa_life(handle: Any) -> memoryview:
    """The counts against the lifetimes in an `sa_handle`'s block, as three unsigned
    64-bit words read and written in place: bytes, packets, and the bytes at which the
    next packet counted is reported (`LIFE_NEVER`: none), after which a compiled call
    sets it to `LIFE_NEVER`. `seal_many` counts each packet it seals there, and
    `open_boxed` each it flags inside the box; the SADB's SA reads them
    (`larval.sadb.sa`). Alive as long as the handle is (the buffer holds it)."""
    return _block_words(handle, "life_bytes", "life_notice", 3, "lifetime counts")


def sa_numbers(handle: Any) -> memoryview:
    """The outbound numbers in an `sa_handle`'s block (`struct larval_gcm_sa`: the
    sequence number, the check number, packets and bytes out) as four unsigned 64-bit
    words, read and written in place: for Python, a memoryview's items are cheaper to
    reach than the cdata's fields. Alive as long as the handle is (the buffer holds it)."""
    return _block_words(handle, "seq", "bytes_out", 4, "outbound numbers")


def _block_words(handle: Any, first: str, last: str, count: int, what: str) -> memoryview:
    """`count` unsigned 64-bit words of an `sa_handle`'s block, from field `first` to
    field `last`, as a memoryview read and written in place (EspConfigError, naming
    `what`, if they do not lie in a row)."""
    ffi = _load()[0].ffi
    start = ffi.offsetof("struct larval_gcm_sa", first)
    if ffi.offsetof("struct larval_gcm_sa", last) != start + 8 * (count - 1):
        raise EspConfigError(f"the SA block's {what} are not {count} words in a row")
    whole = memoryview(ffi.buffer(handle, start + 8 * count))
    return whole[start:].cast("Q")


def seal_many(
    handles: list[Any],
    inners: list[bytes],
    next_headers: bytes | None,
    noticed: list[int] | None = None,
) -> list[bytes | None]:
    """ESP packets (RFC 4106, IV = the sequence number) of one packet each, for packets
    of several SAs in one call: packet i with the SA of ``handles[i]`` (an `sa_handle`)
    and Next Header ``next_headers[i]``, or, with no `next_headers`, its IP version's
    (tunnel mode). Each SA numbers its packets from its block, and counts them there,
    against its lifetimes too (`sa_life`); None for a packet not sealed: its handle is
    None, or its SA's next number reached the block's check (the SA's later packets in
    the call are left too, since its number does not move). The index of each packet
    whose count reached its SA's notice is appended to `noticed`."""
    module = _load()[0]
    ffi = module.ffi
    n = len(inners)
    if len(handles) != n:
        raise ValueError(f"{len(handles)} SAs for {n} packets")
    if next_headers is not None and len(next_headers) != n:
        raise ValueError(f"{len(next_headers)} Next Headers for {n} packets")
    joined = b"".join(inners)
    cap = len(joined) + 37 * n
    out = new_uncleared("unsigned char[]", cap)
    out_len = new_uncleared("size_t[]", n)
    rc = module.lib.larval_gcm_seal_many(
        [ffi.NULL if h is None else h for h in handles] if None in handles else handles,
        n, ffi.from_buffer(joined), list(map(len, inners)),
        ffi.NULL if next_headers is None else ffi.from_buffer(next_headers), out, cap, out_len,
    )  # fmt: skip
    if rc < 0:
        raise EspConfigError("OpenSSL failed to seal an ESP batch")
    sizes: list[int] = ffi.unpack(out_len, n)
    if rc:
        for i, size in enumerate(sizes):
            if size & _NOTICED:
                sizes[i] = size & ~_NOTICED
                if noticed is not None:
                    noticed.append(i)
    # Sliced in place: a whole copy first (as `_sealed` makes) costs more here, where
    # each packet is of another SA and the batch is spread over many.
    raw = ffi.buffer(out, sum(sizes))
    made: list[bytes | None] = []
    off = 0
    for size in sizes:
        if size:
            end = off + size
            made.append(raw[off:end])
            off = end
        else:
            made.append(None)
    return made


def seal_run(handle: Any, inners: list[bytes], next_headers: bytes) -> list[bytes]:
    """ESP packets of one SA (its `sa_handle`) for `inners`, numbered from its block as
    `seal_many` numbers them, and counted there: the ESP packets of those before the SA's
    next number reaches the block's check, in order; the rest are left to the caller."""
    module = _load()[0]
    ffi = module.ffi
    n = len(inners)
    if len(next_headers) != n:
        raise ValueError(f"{len(next_headers)} Next Headers for {n} packets")
    joined = b"".join(inners)
    cap = len(joined) + 37 * n
    out = new_uncleared("unsigned char[]", cap)
    out_len = new_uncleared("size_t[]", n)
    done = module.lib.larval_gcm_seal_run(
        handle, n, ffi.from_buffer(joined), list(map(len, inners)),
        ffi.from_buffer(next_headers), out, cap, out_len,
    )  # fmt: skip
    if done < 0:
        raise EspConfigError("OpenSSL failed to seal an ESP batch")
    return _sealed(ffi, out, out_len, done)


def _sealed(ffi: Any, out: Any, out_len: Any, n: int) -> list[bytes]:
    """The `n` ESP packets a seal call wrote back to back into `out`, `out_len` bytes
    each: one copy out of the cffi buffer, then plain bytes slices (cheaper than slicing
    the cffi buffer, or indexing the cffi array, once per packet)."""
    sizes: list[int] = ffi.unpack(out_len, n)
    raw = ffi.buffer(out, sum(sizes))[:]
    made: list[bytes] = []
    off = 0
    for size in sizes:
        end = off + size
        made.append(raw[off:end])
        off = end
    return made


def sa_box(
    handle: Any, generation: int, src_net: int, src_shift: int, dst_net: int, dst_shift: int
) -> None:
    """Keep in an `sa_handle`'s block the IPv4 box whose packets pass the inbound policy
    check while the SPD is at `generation`: a source s with ``s >> src_shift == src_net``
    and a destination d with ``d >> dst_shift == dst_net`` (shifts of 0 to 32), for
    `open_boxed` to judge. A box it cannot hold (a generation past 64 bits, a shift or
    network out of range) is not kept. Call it, and `sa_unbox`, under the SA's lock."""
    lib = _load()[0].lib
    if not (
        0 <= generation < 1 << 64
        and 0 <= src_shift <= 32
        and 0 <= dst_shift <= 32
        and 0 <= src_net < 1 << (32 - src_shift)
        and 0 <= dst_net < 1 << (32 - dst_shift)
    ):
        lib.larval_gcm_sa_unbox(handle)
        return
    lib.larval_gcm_sa_box(handle, generation, src_net, src_shift, dst_net, dst_shift)


def sa_unbox(handle: Any) -> None:
    """Keep no inbound box in an `sa_handle`'s block (`sa_box`): `open_boxed` flags none
    of its packets."""
    _load()[0].lib.larval_gcm_sa_unbox(handle)


def open_many(
    handles: list[Any],
    packets: list[bytes],
    at: tuple[BytesLike, list[int], list[int]] | None = None,
) -> tuple[Any, list[int], bytes, list[int], bytes, Any]:
    """RFC 4303 §3.4 packet by packet, in order, for packets of several SAs in one call:
    packet i received on the SA of ``handles[i]`` (an `sa_handle`) as `open_window`
    receives it, on that SA's window and counters in its block; an SA may come more than
    once (its later packet sees the window its earlier one left). The packets are
    `packets`, or, with `at` (a buffer, and each packet's start and length in it), where
    they lie in a receive's buffer, not copied out. The plaintexts back to back, each
    one's offset in them, and per packet its status (`OPEN_*`), payload length and Next
    Header, and its full sequence number (a cffi array, for naming a drop). The
    plaintexts are the output buffer itself, not a copy: slicing it gives bytes,
    indexing it a byte string of one."""
    return _open_many(handles, packets, at, None)[:6]


def open_boxed(
    handles: list[Any],
    packets: list[bytes],
    at: tuple[BytesLike, list[int], list[int]] | None,
    generation: int,
) -> tuple[Any, list[int], bytes, list[int], bytes, Any, bytes]:
    """`open_many`, and per packet whether it opened (not a dummy) to an IPv4 packet
    without options inside its SA's box (`sa_box`) kept at the SPD's `generation`: a
    tunnel's packet that passes the inbound policy check (1), or not (0). Such a packet
    is counted against its SA's lifetimes (`sa_life`), and its flag has `BOX_NOTICED`
    as well where that count reached the SA's notice."""
    return _open_many(handles, packets, at, generation)


def _open_many(
    handles: list[Any],
    packets: list[bytes],
    at: tuple[BytesLike, list[int], list[int]] | None,
    generation: int | None,
) -> tuple[Any, list[int], bytes, list[int], bytes, Any, bytes]:
    """`open_many`, with `open_boxed`'s flags where `generation` is given (else none)."""
    module = _load()[0]
    ffi = module.ffi
    new = new_uncleared
    starts: Any = ffi.NULL
    if at is None:
        lengths = [len(p) for p in packets]
        joined: BytesLike = b"".join(packets)
        size = _plain_size(lengths, len(joined))
    else:
        joined, starts, lengths = at
        size = _plain_size(lengths, sum(lengths))
    n = len(lengths)
    out = new("unsigned char[]", size)
    offsets = new("size_t[]", n)
    status = new("unsigned char[]", n)
    seqs = new("uint64_t[]", n)
    payload = new("uint32_t[]", n)
    next_headers = new("unsigned char[]", n)
    if generation is None or not 0 <= generation < 1 << 64:
        # No box matches (a generation past 64 bits keeps none: `sa_box`).
        generation, boxed = 0, ffi.NULL
    else:
        boxed = new("unsigned char[]", n)
    rc = module.lib.larval_gcm_open_many(
        handles, n, ffi.from_buffer(joined), starts, lengths, out, offsets, status, seqs,
        payload, next_headers, generation, boxed,
    )  # fmt: skip
    if rc != 0:
        raise EspConfigError("OpenSSL failed to open an ESP batch")
    return (
        ffi.buffer(out, size),
        ffi.unpack(offsets, n),
        ffi.buffer(status, n)[:],
        memoryview(ffi.buffer(payload, 4 * n)).cast("I").tolist(),
        ffi.buffer(next_headers, n)[:],
        seqs,
        bytes(n) if boxed == ffi.NULL else ffi.buffer(boxed, n)[:],
    )


def open_window(handle: Any, packets: Sequence[BytesLike]) -> Opened:
    """RFC 4303 §3.4 for `packets` of the SA of `handle` (an `sa_handle`), packet by
    packet in order: length and SPI, the full sequence number and the replay check on the
    SA's window as the earlier packets left it, the ICV and padding, then, for the
    packets that passed, the window update and the SA's packets_in and bytes_in, all in
    the SA's block (`SaWindow` reads them)."""
    module = _load()[0]
    ffi = module.ffi
    new = new_uncleared
    n = len(packets)
    joined: BytesLike
    if isinstance(packets, EspRun):
        # Back to back already (a receive's GRO batches): no join, no copy.
        lengths, joined = packets.lengths, packets.buffer
    else:
        lengths = [len(p) for p in packets]
        joined = b"".join(packets)
    plain_size = _plain_size(lengths, len(joined))
    out = new("unsigned char[]", plain_size)
    offsets = new("size_t[]", n)
    status = new("unsigned char[]", n)
    seqs = new("uint64_t[]", n)
    payload = new("uint32_t[]", n)
    next_headers = new("unsigned char[]", n)
    rc = module.lib.larval_gcm_open_window(
        handle, n, ffi.from_buffer(joined), lengths, out, offsets, status, seqs, payload,
        next_headers,
    )  # fmt: skip
    if rc != 0:
        raise EspConfigError("OpenSSL failed to open an ESP batch")
    return Opened(
        ffi.buffer(out, plain_size)[:],
        ffi.unpack(offsets, n),
        ffi.buffer(status, n)[:],
        ffi.unpack(seqs, n),
        memoryview(ffi.buffer(payload, 4 * n)).cast("I").tolist(),
        ffi.buffer(next_headers, n)[:],
    )


def _plain_size(lengths: Sequence[int], total: int) -> int:
    """The room the receiving calls decrypt `lengths` into: max(length - 32, 0) each (a
    runt takes none), at least one byte."""
    n = len(lengths)
    if n and min(lengths) > 32:
        return total - 32 * n
    return max(1, sum(length - 32 for length in lengths if length > 32))


_LITTLE_ENDIAN = sys.byteorder == "little"


class SaWindow(EspReplayWindow):
    """The anti-replay window of a compiled SA, kept in its C block (`sa_handle`): T and
    the bitmap are the block's, read and written in place, so that the receiving calls
    (`open_window`, `open_many`) and Python (`check`, `update`, `restore`, a checkpoint)
    see one window. `check` and `update` keep `EspReplayWindow`'s meaning, and are the
    block's own (`_helper.c` `larval_gcm_sa_check`, `larval_gcm_sa_update`, which the
    receiving calls run too)."""

    __slots__ = ("_bits", "_ffi", "_lib", "_sa", "_seq", "_words")

    def __init__(self, handle: Any, size: int = 64, *, esn: bool = False) -> None:
        module = _load()[0]
        self._ffi = module.ffi
        self._lib = module.lib
        self._sa = handle
        self._bits = handle.bitmap  # the block's words (the block outlives the pointer)
        # With ESN, where `check` asks the block for the full sequence number.
        self._seq: Any = module.ffi.new("uint64_t *") if esn else None
        self._words = (size + 63) // 64 or 1  # a window of 0 bits still has a word
        super().__init__(size, esn=esn)

    @property
    def top(self) -> int:
        return int(self._sa.top)

    @top.setter
    def top(self, value: int) -> None:
        self._sa.top = value

    @property
    def bitmap(self) -> int:
        words = self._words
        if words == 1:
            return int(self._bits[0])
        if _LITTLE_ENDIAN:  # the words' bytes in memory are the integer's, low first
            return int.from_bytes(self._ffi.buffer(self._bits, 8 * words), "little")
        return int.from_bytes(struct.pack(f"<{words}Q", *self._bits[0:words]), "little")

    @bitmap.setter
    def bitmap(self, value: int) -> None:
        words = self._words
        self._bits[0:words] = struct.unpack(f"<{words}Q", value.to_bytes(8 * words, "little"))

    def check(self, seql: int) -> int:
        if not self.esn:
            # Without ESN the number is the one received: read the block in place.
            diff = self._sa.top - seql
            if diff < 0 or not self.size:
                return seql
            if diff >= self.size:
                raise EspReplayTooOldError(f"sequence number {seql} left of the window")
            if (self._bits[diff >> 6] >> (diff & 63)) & 1:
                raise EspReplayError(f"sequence number {seql} already received")
            return seql
        verdict = self._lib.larval_gcm_sa_check(self._sa, seql, self._seq)
        seq = int(self._seq[0])
        if verdict == OPEN_OK:
            return seq
        if verdict == OPEN_REPLAY:
            raise EspReplayError(f"sequence number {seq} already received")
        if verdict == OPEN_TOO_OLD:
            raise EspReplayTooOldError(f"sequence number {seq} left of the window")
        if verdict == OPEN_BEFORE:
            raise EspReplayTooOldError("sequence number before the first subspace")
        raise EspReplayError("sequence number beyond the 64-bit space")

    def update(self, seq: int) -> None:
        self._lib.larval_gcm_sa_update(self._sa, seq)

    @property
    def received_call(self) -> Any:
        """The C call (handle, seq, nbytes) that does `update` and counts one packet of
        `nbytes` payload bytes on the SA's inbound counters (`EspSa.packets_in`,
        `bytes_in`), for `EspSa` to make per packet without a Python frame."""
        return self._lib.larval_gcm_sa_received
