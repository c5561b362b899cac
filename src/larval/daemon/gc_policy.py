"""The cyclic garbage collector's settings for a long-running daemon.

Almost everything a daemon allocates before it serves (configuration, credentials,
transform tables, the imported modules) lives as long as the process; every young
collection would walk it again. Once start-up is over, `settle` moves it out of the
collector's sight (`gc.freeze`) and raises the thresholds, so that a collection runs
every 50,000 net allocations instead of 700: IKE and PF_KEY work allocate thousands of
short-lived objects per setup, nearly all freed by reference counting, and the default
thresholds spent 7 to 25% of an IKE setup's CPU time on collections that found little.
Cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

#: (generation 0, generation 1, generation 2) thresholds once start-up is over.
THRESHOLDS = (50_000, 20, 100)


def settle(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Collect what start-up left behind, freeze what survives into the permanent
    generation, and set `thresholds`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
