"""The inbound anti-replay window with ESN inference (RFC 4303 §3.4.3 and Appendix A).

The window remembers T, the highest sequence number authenticated so far (64 bits with
ESN), and a bitmap whose bit i says that T - i was received. `check` runs before the ICV
is verified, so duplicates and stale packets are dropped cheaply; `update` runs only after
authentication, so a forged packet can never move the window (RFC 4303 §3.4.3).

Sequence number 0 is never sent (the first packet carries 1, RFC 4303 §3.3.3), so it
starts out marked as received. A window of size 0 turns the check off (the receiver may
disable anti-replay, RFC 4303 §3.4.3); ESN needs a window to infer the high bits.
"""

from __future__ import annotations

from larval.esp.errors import EspConfigError, EspReplayError, EspReplayTooOldError

__all__ = ["MAX_REPLAY_WINDOW", "EspReplayWindow"]

MAX_REPLAY_WINDOW = 4096
_U32_MASK = 0xFFFFFFFF


class EspReplayWindow:
    """Anti-replay state of one inbound SA."""

    __slots__ = ("_mask", "bitmap", "esn", "size", "top")

    def __init__(self, size: int = 64, *, esn: bool = False) -> None:
        if not 0 <= size <= MAX_REPLAY_WINDOW:
            raise EspConfigError(f"replay window of {size}; allowed 0..{MAX_REPLAY_WINDOW}")
        if esn and size == 0:
            raise EspConfigError("ESN needs an anti-replay window (RFC 4303 Appendix A)")
        self.size = size
        self.esn = esn
        self.top = 0  # T
        self.bitmap = 1  # bit 0: T itself (0, never sent) counts as received
        self._mask = (1 << size) - 1

    def __repr__(self) -> str:
        return f"EspReplayWindow(size={self.size}, top={self.top}, esn={self.esn})"

    def restore(self, top: int, bitmap: int) -> None:
        """Take up a checkpoint (after a restart): `top` received and, for each bit i of
        `bitmap`, `top - i`; bits beyond this window are forgotten. A checkpoint behind
        the window's own state changes nothing: a window only moves forward."""
        if self.size == 0 or top < self.top:
            return
        if top == self.top:
            self.bitmap |= bitmap & self._mask
            return
        self.top = top
        self.bitmap = (bitmap | 1) & self._mask

    def infer_seq(self, seql: int) -> int:
        """The full sequence number of a received 32-bit one (RFC 4303 Appendix A2.2)."""
        if not self.esn:
            return seql
        top = self.top
        tl = top & _U32_MASK
        th = top >> 32
        w = self.size
        bl = (tl - w + 1) & _U32_MASK
        # Case A (Tl >= W - 1, the window within one subspace): Seqh = Th if Seql >= Bl,
        # else Th + 1. Case B (the window spans two subspaces): Th - 1 if Seql >= Bl,
        # else Th. Both at once: start from Th, one less in Case B, one more below Bl.
        seqh = th - (tl < w - 1) + (seql < bl)
        if seqh < 0:
            raise EspReplayTooOldError("sequence number before the first subspace")
        if seqh > _U32_MASK:
            raise EspReplayError("sequence number beyond the 64-bit space")
        return (seqh << 32) | seql

    def check(self, seql: int) -> int:
        """Return the full sequence number; raise if it is a duplicate or too old."""
        seq = self.infer_seq(seql) if self.esn else seql
        if self.size == 0:
            return seq
        diff = self.top - seq
        if diff < 0:
            return seq
        if diff >= self.size:
            raise EspReplayTooOldError(f"sequence number {seq} left of the window")
        if (self.bitmap >> diff) & 1:
            raise EspReplayError(f"sequence number {seq} already received")
        return seq

    def update(self, seq: int) -> None:
        """Mark an authenticated sequence number received; slide the window right."""
        if self.size == 0:
            return
        diff = seq - self.top
        if diff > 0:
            # A jump past the whole window forgets it (and never builds a huge int).
            self.bitmap = ((self.bitmap << diff) | 1) & self._mask if diff < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << -diff
