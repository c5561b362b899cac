"""The reassembly buffer both IKE versions' fragments go through.

A fragmented message arrives as numbered pieces, in any order, some twice, some never.
`FragmentBuffer` keeps the pieces of each partly received message under a key the
version chooses (IKEv2: direction and Message ID, RFC 7383 §2.6.1; IKEv1: the Fragment
ID), ignores a piece it already holds, bounds what a peer can make it hold, and hands
back the pieces in order once every number from 1 to the message's total is in.

What a piece says about the total, and what contradicts it, is each version's rule, and
stays with that version's codec (`larval.ikev2.fragments`: every fragment carries Total
Fragments; `larval.ikev1.fragments`: only the LAST one says it is last). A version asks
`partial` what is held before it calls `add`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import IkeError

__all__ = ["FragmentBuffer", "FragmentOverflow", "Partial"]

K = TypeVar("K", bound=Hashable)
P = TypeVar("P")


class FragmentOverflow(IkeError):
    """The pieces of one message would pass the buffer's `max_bytes`; they were dropped."""


@dataclass(slots=True)
class Partial(Generic[P]):
    """The pieces of one message received so far, by fragment number (first added first)."""

    total: int = 0  # how many pieces make the message; 0 while no piece has said
    pieces: dict[int, P] = field(default_factory=dict)
    size: int = 0  # bytes held, as the version counts them

    @property
    def first(self) -> P:
        """The piece that opened this message."""
        return next(iter(self.pieces.values()))


class FragmentBuffer(Generic[K, P]):
    """Partly received messages, at most `max_messages` (the oldest goes first) of at most
    `max_bytes` each, so that a peer cannot fill memory with fragments."""

    __slots__ = ("_partials", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._partials: OrderedDict[K, Partial[P]] = OrderedDict()

    def __len__(self) -> int:
        """How many messages are partly received."""
        return len(self._partials)

    def pieces(self) -> int:
        """How many pieces are held, over every message."""
        return sum(len(p.pieces) for p in self._partials.values())

    def partial(self, key: K) -> Partial[P] | None:
        """What is held of the message `key`, if anything."""
        return self._partials.get(key)

    def discard(self, key: K) -> None:
        """Forget the pieces of one message."""
        self._partials.pop(key, None)

    def clear(self) -> None:
        self._partials.clear()

    def add(self, key: K, number: int, piece: P, size: int, total: int = 0) -> list[P] | None:
        """Take piece `number` (of `size` bytes) of the message `key`; `total`, when not 0,
        is how many pieces make it. Returns every piece in order when this one completed
        the message, else None; a piece already held is ignored. Raises
        `FragmentOverflow`, dropping the message, when it would grow past `max_bytes`."""
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = Partial()
            while len(self._partials) > self.max_messages:
                self._partials.popitem(last=False)
        if number in partial.pieces:
            return None
        if partial.size + size > self.max_bytes:
            del self._partials[key]
            raise FragmentOverflow(f"fragments of more than {self.max_bytes} bytes")
        partial.pieces[number] = piece
        partial.size += size
        if total:
            partial.total = total
        numbers = range(1, partial.total + 1)
        if len(partial.pieces) < partial.total or not partial.total:
            return None
        if not all(n in partial.pieces for n in numbers):
            return None  # a piece numbered past the total stands in for a missing one
        del self._partials[key]
        return [partial.pieces[n] for n in numbers]
