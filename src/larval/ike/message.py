"""What a decoded message of either IKE version offers about its payloads.

An IKEv2 message and an ISAKMP message differ in their headers (RFC 7296 §3.1, RFC 2408
§3.1) and in how they protect their payloads, and each version's `message` module keeps
that. How an exchange looks into a message is the same in both: the payloads of one
class (`get`, `first`), a notification by its type (`notify`), or all of them in order
(iteration). `PayloadMessage` writes that once; each version's message class inherits
it and names its Notify payload class in ``notify_class``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

__all__ = ["PayloadMessage"]

P = TypeVar("P")


class _Notify(Protocol):
    @property
    def notify_type(self) -> int: ...


N = TypeVar("N", bound=_Notify)


class PayloadMessage(Generic[N]):
    """The payload surface of a message whose payloads are in ``payloads``, in order."""

    __slots__ = ()

    notify_class: ClassVar[type[Any]]
    payloads: tuple[object, ...]

    def __iter__(self) -> Iterator[object]:
        return iter(self.payloads)

    def get(self, kind: type[P]) -> tuple[P, ...]:
        """The payloads of class ``kind``, in order."""
        return tuple(p for p in self.payloads if isinstance(p, kind))

    def first(self, kind: type[P]) -> P | None:
        """The first payload of class ``kind``, or None."""
        for p in self.payloads:
            if isinstance(p, kind):
                return p
        return None

    def notify(self, notify_type: int) -> N | None:
        """The first Notify payload of type ``notify_type``, or None."""
        for p in self.payloads:
            if isinstance(p, self.notify_class) and p.notify_type == notify_type:
                result: N = p
                return result
        return None
