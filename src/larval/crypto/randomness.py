"""Where larval's random bytes come from: one source, handed to whatever draws from it.

Everything larval makes up draws from a `RandomBytes` given to the object that draws it:
Diffie-Hellman private values, nonces, IKE SPIs, IKEv1 cookies and Message IDs, the IVs
of the SK payload and of ESP with AES-CBC, the key manager's cookie secret, the jitter of
rekey times and the SPIs the SADB hands out. Built without one, an object draws from
`system_random`, the operating system's CSPRNG.

A source is a constructor argument and nothing else: no option, configuration key or
environment variable makes larval's randomness predictable. Tests pass a seeded source
so that two runs of a whole exchange are byte for byte the same, and known-answer tests
choose the private values an exchange uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["RandomBytes", "random_int", "system_random"]

#: Called with a length, returns that many bytes.
RandomBytes = Callable[[int], bytes]

#: The operating system's CSPRNG (getrandom(2)): the source of every production object.
system_random: RandomBytes = os.urandom


def random_int(random_bytes: RandomBytes, low: int, high: int) -> int:
    """A uniformly distributed integer in [low, high], drawn from ``random_bytes``.

    Draws whole bytes, masks them to the bit length of the span and draws again while
    the value falls outside it (fewer than half the draws, whatever the span). A source
    of zero bytes gives ``low``.
    """
    span = high - low
    if span < 0:
        raise ValueError(f"empty range [{low}, {high}]")
    bits = span.bit_length()
    mask = (1 << bits) - 1
    while True:
        value = int.from_bytes(random_bytes((bits + 7) // 8), "big") & mask
        if value <= span:
            return low + value
