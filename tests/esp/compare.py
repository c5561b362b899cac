"""What the tests of the batch calls compare between an SA on one path and its twin
called packet by packet: each packet's outcome, and the SA's state after."""

from __future__ import annotations

from larval.esp import EspDropError, EspError, EspSa
from larval.esp.sa import EspDecrypted


def outcome(result: EspDecrypted | bytes | EspError) -> tuple[str, object]:
    """A packet's outcome: ("drop", the counter), ("error", the error's class) or
    ("ok", what came out)."""
    if isinstance(result, EspDropError):
        return ("drop", result.counter)
    if isinstance(result, EspError):
        return ("error", type(result).__name__)
    return ("ok", result)


def state(sa: EspSa) -> tuple[int, ...]:
    """The sequence number, the replay window and the counters both ways."""
    r = sa.replay
    return (sa.seq, r.top, r.bitmap, sa.packets_in, sa.bytes_in, sa.packets_out, sa.bytes_out)
