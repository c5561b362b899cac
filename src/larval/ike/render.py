"""One-line renderings of IKE messages and suites, for log lines and the demo's ladder.

Both versions write a message the same way: its payloads by short name in a bracketed
list, a notification as ``N(TYPE)``, as strongSwan's logs do (``[ IDi AUTH SA TSi TSr
]``); the ladder of `larval demo` groups repeated notifications (``N(NAT_D)x2``). Each
version supplies its names in a `PayloadNames`: its abbreviations, and the text of the
payloads that carry their own (a notification and its type).
A negotiated suite is written with the IKEv2 transform registry's names
(``AES_CBC_128/PRF_HMAC_SHA2_256/HMAC_SHA2_256_128/CURVE25519``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from larval.crypto import ike_transforms as tf

from .config import Suite
from .payload import ChainPayload

__all__ = [
    "PayloadNames",
    "bracketed",
    "grouped",
    "suite_text",
    "transform_text",
    "type_name",
    "type_number",
]


def type_name(payload: ChainPayload) -> str:
    """The payload type's name: ``SA``, ``IDi``."""
    return payload.payload_type.name


def type_number(payload: ChainPayload) -> str:
    """The payload type's number: ``47``."""
    return str(int(payload.payload_type))


def _no_own_text(payload: Any) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class PayloadNames:
    """How one version names its payloads in a line.

    ``own(payload)`` gives the text of a payload that carries its own, such as a
    notification with its type, ``N(INITIAL_CONTACT)``; it returns None for the others.
    Those are named by ``short`` when their type is in it, else by ``fallback``.
    """

    short: Mapping[int, str]
    own: Callable[[Any], str | None] = _no_own_text
    fallback: Callable[[ChainPayload], str] = type_name

    def name(self, payload: ChainPayload) -> str:
        text = self.own(payload)
        if text is not None:
            return text
        short = self.short.get(payload.payload_type)
        return short if short is not None else self.fallback(payload)

    def names(self, payloads: Iterable[ChainPayload]) -> list[str]:
        return [self.name(p) for p in payloads]


def bracketed(names: Iterable[str]) -> str:
    """``[ IDi AUTH SA ]``, or ``[ ]`` for none."""
    names = list(names)
    return "[ " + " ".join(names) + " ]" if names else "[ ]"


def grouped(names: Iterable[str]) -> list[str]:
    """Runs of the same notification as one entry with a count: N(NAT_D)x2."""
    out: list[str] = []
    for name in names:
        if out and out[-1].split("x")[0] == name and name.startswith("N("):
            count = int(out[-1].rpartition("x")[2]) + 1 if ")x" in out[-1] else 2
            out[-1] = f"{name}x{count}"
        else:
            out.append(name)
    return out


def transform_text(t: tf.Transform) -> str:
    """One transform by its registry name: ``AES_CBC_128``, ``PRF_HMAC_SHA2_256``."""
    if t.type == tf.TransformType.ENCR:
        name = tf.EncrId(t.id).name
        return f"{name}_{t.key_bits}" if t.key_bits else name
    if t.type == tf.TransformType.PRF:
        return f"PRF_{tf.PrfId(t.id).name}"
    if t.type == tf.TransformType.INTEG:
        return tf.IntegId(t.id).name
    if t.type == tf.TransformType.DH:
        return tf.DhId(t.id).name
    if t.type == tf.TransformType.ESN:
        return "ESN" if tf.EsnId(t.id) == tf.EsnId.YES else "NO_ESN"
    return f"{tf.TransformType(t.type).name}_{t.id}"


def suite_text(suite: Suite) -> str:
    """``AES_CBC_128/PRF_HMAC_SHA2_256/HMAC_SHA2_256_128/CURVE25519``"""
    return "/".join(transform_text(t) for t in suite)
