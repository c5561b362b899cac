"""The shape of a payload-rule table, and the counting both IKE versions do with it.

Which payloads a message may carry is a table in each version, strongSwan's way
(``encoding/message.c``): one row per message of an exchange, one rule per payload type
with how many may come and where. IKEv2 rows are keyed by (exchange, request or
response) and say which payloads travel inside SK (RFC 7296 §1.2-§1.5); IKEv1 rows by
(exchange, message number) and add HASH-first and one-of constraints (RFC 2409 §5).
The row and rule classes are written here once; each version keeps its own table and
its own checks of what only it has, and counts with `check_counts`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from larval.wire import LenientIntEnum

__all__ = ["MANY", "MessageRules", "PayloadRule", "check_counts", "count_types", "rules"]

MANY = None  # no upper bound


@dataclass(frozen=True, slots=True)
class PayloadRule:
    """How many payloads of one type a message may carry, and where.

    ``encrypted``: IKEv2's payload must be inside SK (True) or in the clear (False).
    ``or_none``: zero is allowed too, though ``min_count`` is higher (IKEv1 Quick Mode's
    IDci/IDcr come as a pair or not at all, RFC 2409 §5.5).
    """

    payload_type: LenientIntEnum
    min_count: int
    max_count: int | None
    encrypted: bool = False
    or_none: bool = False


def rules(
    *spec: tuple[LenientIntEnum, int, int | None], encrypted: bool = False
) -> tuple[PayloadRule, ...]:
    """A row's rules from ``(type, min, max)`` triples, all ``encrypted`` alike."""
    return tuple(PayloadRule(t, lo, hi, encrypted) for t, lo, hi in spec)


@dataclass(frozen=True, slots=True)
class MessageRules:
    """The row for one message of one exchange.

    ``message`` says which: IKEv1's 1-based number in the exchange, IKEv2's 0 for the
    request and 1 for the response. ``encrypted`` is True or False when the exchange
    fixes it, None when either is seen (IKEv1's Aggressive Mode message 3 and
    Informational). The rest is one version's alone: ``hash_first`` and ``one_of``
    (IKEv1, RFC 2409 §5.5, §5.7), ``errors_exempt`` (IKEv2: an error answer carries its
    Notify instead of the usual payloads, RFC 7296 §2.21, and an IKE_SA_INIT response
    may be N(COOKIE) alone, §2.6).
    """

    exchange_type: LenientIntEnum
    message: int
    encrypted: bool | None
    payloads: tuple[PayloadRule, ...]
    hash_first: bool = False  # HASH immediately after the header
    one_of: tuple[LenientIntEnum, ...] = ()  # exactly one of these types is present
    errors_exempt: bool = False

    def allowed(self) -> dict[int, PayloadRule]:
        """The row's rules by payload type."""
        return {r.payload_type: r for r in self.payloads}


def count_types(types: Iterable[LenientIntEnum]) -> dict[int, int]:
    """How many payloads of each type."""
    counts: dict[int, int] = {}
    for ptype in types:
        counts[ptype] = counts.get(ptype, 0) + 1
    return counts


def check_counts(
    row: MessageRules,
    counts: dict[int, int],
    fail: Callable[[str], Exception],
    *,
    minimum: bool = True,
) -> None:
    """Raise ``fail(text)`` when a payload type comes more often than its rule allows
    or, with ``minimum``, less often than it needs."""
    for rule in row.payloads:
        n = counts.get(rule.payload_type, 0)
        if rule.max_count is not None and n > rule.max_count:
            raise fail(f"{n} {rule.payload_type.name} payloads, at most {rule.max_count} allowed")
    if not minimum:
        return
    for rule in row.payloads:
        n = counts.get(rule.payload_type, 0)
        if n < rule.min_count and not (rule.or_none and n == 0):
            name = rule.payload_type.name
            raise fail(
                f"{name} payload missing"
                if n == 0
                else f"{n} {name} payloads, needs {rule.min_count}"
            )
