"""A faster ``__init__`` for the frozen, slotted dataclasses of PF_KEY messages.

A frozen dataclass sets each field through ``object.__setattr__``, which looks the
attribute up on the class every time; PF_KEY builds several such values for every
message it decodes. `quick_init` gives a class an ``__init__`` with the same signature
and defaults that stores each field through its slot's own descriptor, fetched once.
The instances stay frozen: assignment from outside still raises. A field outside the
constructor (``init=False``, e.g. a memo of the wire form) starts at its default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["quick_init"]

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Replace the generated ``__init__`` of the frozen, slotted dataclass ``cls``."""
    every = dataclasses.fields(cls)  # type: ignore[arg-type]
    fields = [f for f in every if f.init]
    if not all(f.name in getattr(cls, "__slots__", ()) for f in every):
        raise TypeError(f"{cls.__name__}: quick_init needs slots=True")
    env: dict[str, Any] = {}
    params, body = [], []
    for i, f in enumerate(fields):
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: quick_init takes no default_factory")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            env[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        env[f"_s{i}"] = getattr(cls, f.name).__set__
        body.append(f"    _s{i}(self, {f.name})")
    for i, f in enumerate((f for f in every if not f.init), len(fields)):
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: quick_init needs a default for init=False")
        env[f"_d{i}"] = f.default
        env[f"_s{i}"] = getattr(cls, f.name).__set__
        body.append(f"    _s{i}(self, _d{i})")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init takes no __post_init__")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    exec(source, env)  # the source is made of the class's own field names
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
