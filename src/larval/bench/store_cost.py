"""What the state store costs a benchmark: the same larval run with the store off and on,
alternated in one run of the benchmark, and the ratio of the two.

`bench ike` and `bench tunnel` take ``--store off|on|both|etcd``: ``off`` is larval as
before (no ``[daemon] state``), ``on`` keeps its state in an SQLite store in a temporary
directory under a fresh key (what ``[daemon] state`` does), ``both`` (the default) runs
each case both ways, run after run alternated so that whatever else the machine does falls
on both alike; ``etcd`` is ``both`` with the store in etcd (`larval.bench.stores`), for
`bench ike` (the tunnel's stacks run in namespaces that do not reach a member on the
host's loopback; its store writes are a few a second in any case). The cost is given as
on / off of the figure the benchmark is about, the median of the runs' ratios, beside the
goal: under 10%.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["GOAL", "MODES", "ratio", "summary", "wants"]

#: ``--store``'s values.
MODES = ("off", "on", "both", "etcd")
#: The store may cost at most this share of a figure.
GOAL = 0.10


def wants(mode: str) -> tuple[bool, bool]:
    """(run with the store off, run with it on) for a ``--store`` value."""
    if mode not in MODES:
        raise ValueError(f"--store {mode!r}: one of {', '.join(MODES)}")
    return mode in ("off", "both", "etcd"), mode in ("on", "both", "etcd")


def ratio(off: Sequence[float | None], on: Sequence[float | None]) -> float | None:
    """The median of on / off over the runs paired by their order; None if no pair has
    both figures."""
    pairs = [b / a for a, b in zip(off, on, strict=False) if a and b]
    return round(statistics.median(pairs), 3) if pairs else None


def summary(
    name: str, off: Sequence[float | None], on: Sequence[float | None], higher_is_better: bool
) -> dict[str, Any]:
    """``{"ratio": on/off, "cost": "..."}`` for figure `name` of paired runs: the cost is
    the share lost (a rate) or added (CPU), against `GOAL`."""
    r = ratio(off, on)
    if r is None:
        return {"ratio": None, "cost": f"{name}: not measured both ways"}
    cost = round(1 - r if higher_is_better else r - 1, 3)  # as the ratio is: 0.9 is 10%
    verdict = "within" if cost < GOAL else "above"
    return {
        "ratio": r,
        "cost": f"{name} on/off {r:.3f}: {cost:+.1%} cost, {verdict} the goal of "
        f"{GOAL:.0%} ({len([a for a, b in zip(off, on, strict=False) if a and b])} runs)",
    }
