"""ESP packets back to back in one buffer: what a receive of UDP GRO batches brings.

The batch calls (`EspSa.decrypt_spans`, `helper.open_window`) take such a run as it
lies, its buffer and lengths straight into the compiled call, where a list of packets
would be joined first; indexing copies one packet out, for the Python path and for the
drops named by packet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import overload

from larval.esp.transforms import BytesLike

__all__ = ["EspRun", "esp_spis", "one_spi"]


class EspRun(Sequence[bytes]):
    """`len(lengths)` packets in `buffer`: packet i is ``lengths[i]`` bytes, right after
    packet i - 1 (the first at offset 0). `buffer` is read, never kept past the call
    that is handed the run."""

    __slots__ = ("_offsets", "buffer", "lengths")

    def __init__(self, buffer: BytesLike, lengths: list[int]) -> None:
        self.buffer = buffer
        self.lengths = lengths
        self._offsets: list[int] | None = None

    def offsets(self) -> list[int]:
        """Where each packet starts in `buffer`."""
        if self._offsets is None:
            self._offsets = [0, *itertools.accumulate(self.lengths)][:-1]
        return self._offsets

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        start = self.offsets()[i]
        return bytes(self.buffer[start : start + self.lengths[i]])

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.buffer)
        for start, length in zip(self.offsets(), self.lengths, strict=True):
            yield bytes(view[start : start + length])


def one_spi(run: EspRun) -> int | None:
    """The SPI every packet of `run` carries, if they all carry the same one and each is
    ESP on UDP 4500 (RFC 3948 §2.2: eight bytes at least, the first four not the
    non-ESP marker's zeros); else None."""
    from larval.esp.helper import compiled

    module = compiled()
    lengths = run.lengths
    if not lengths:
        return None
    if module is not None:
        ffi = module.ffi
        spi: int = module.lib.larval_esp_one_spi(
            ffi.from_buffer(run.buffer), len(lengths), ffi.new("size_t[]", lengths)
        )
        return spi if spi > 0 else None
    buffer = run.buffer
    first = bytes(buffer[:4])
    if first == b"\x00\x00\x00\x00":
        return None
    for start, length in zip(run.offsets(), lengths, strict=True):
        if length < 8 or buffer[start : start + 4] != first:
            return None
    return int.from_bytes(first, "big")


def esp_spis(run: EspRun) -> list[int] | None:
    """The SPI of each packet of `run`, in order, if each is ESP on UDP 4500 (as
    `one_spi` reads them: eight bytes at least, the first four not zeros); else None."""
    from larval.esp.helper import compiled

    module = compiled()
    lengths = run.lengths
    n = len(lengths)
    if module is not None:
        ffi = module.ffi
        spis = ffi.new("uint32_t[]", n)
        if module.lib.larval_esp_spis(ffi.from_buffer(run.buffer), n, lengths, spis) != 0:
            return None
        found: list[int] = ffi.unpack(spis, n)
        return found
    buffer = run.buffer
    found = []
    for start, length in zip(run.offsets(), lengths, strict=True):
        if length < 8:
            return None
        spi = int.from_bytes(buffer[start : start + 4], "big")
        if spi == 0:
            return None
        found.append(spi)
    return found
