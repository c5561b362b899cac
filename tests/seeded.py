"""A seeded `RandomBytes` for tests: the same seed gives the same bytes, draw for draw."""

from __future__ import annotations

import hashlib


class SeededRandom:
    """Draw n is SHAKE-256(seed | n) cut to the length asked; every draw is kept in
    `drawn`, so a test can find which one became a nonce or a private value."""

    def __init__(self, seed: str | bytes) -> None:
        self.seed = seed.encode() if isinstance(seed, str) else bytes(seed)
        self.drawn: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        counter = len(self.drawn).to_bytes(8, "big")
        out = hashlib.shake_256(self.seed + counter).digest(n) if n else b""
        self.drawn.append(out)
        return out

    def __repr__(self) -> str:
        return f"SeededRandom({self.seed!r}, {len(self.drawn)} drawn)"
