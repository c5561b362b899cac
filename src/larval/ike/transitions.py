"""A protocol machine's transitions as data (h2's `_transitions`, h11's `_state`): each
(state, input) maps to the step that takes the input and the state after it, or to why the
input is refused. A version's table spells out the rows that do something and fills in
the rest by a rule (`complete`), so that it is total over the product of its states and
inputs, and a missing row is a bug a test can find, not a `KeyError` on the wire.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Refusal", "Transition", "complete"]

StepT = TypeVar("StepT")
StateT = TypeVar("StateT")
NotifyT = TypeVar("NotifyT")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Transition(Generic[StepT, StateT]):
    """An input the state allows: what takes it, and the state once it is taken (None:
    the state stays)."""

    step: StepT
    next: StateT | None = None


@dataclass(frozen=True, slots=True)
class Refusal(Generic[NotifyT]):
    """An input the state does not allow, and why; `notify` is the notification that
    answers it where the version answers such input (None: dropped, and logged)."""

    reason: str
    notify: NotifyT | None = None


def complete(table: dict[K, V], rule: Callable[..., V], *axes: Iterable[Any]) -> dict[K, V]:
    """`table` with every key of the product of `axes` it lacks set to `rule(*key)`."""
    for key in itertools.product(*axes):
        table.setdefault(key, rule(*key))  # type: ignore[arg-type]
    return table
