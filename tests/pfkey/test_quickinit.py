"""`quick_init`: the same values, defaults and frozenness as the dataclass's own
``__init__``, for every PF_KEY value class."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from larval.pfkey import PfkeyMessage, SadbAddress, SadbKey, SadbSa, SadbSpirange, decode
from larval.pfkey.quickinit import quick_init


def test_keywords_and_defaults_match_the_fields() -> None:
    sa = SadbSa(0x1234, encrypt=20)
    assert (sa.spi, sa.replay, sa.state, sa.auth, sa.encrypt, sa.flags, sa.ext_type) == (
        0x1234, 0, 0, 0, 20, 0, 1,
    )  # fmt: skip
    msg = PfkeyMessage(3, 3, seq=7, extensions=(sa,))
    assert (msg.pid, msg.errno, msg.version, msg.extensions) == (0, 0, 2, (sa,))
    assert dataclasses.replace(msg, seq=8).seq == 8


def test_values_stay_frozen() -> None:
    msg = PfkeyMessage(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.seq = 2  # type: ignore[misc]


def test_missing_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SadbSpirange()  # type: ignore[call-arg]


def test_decoded_values_equal_built_ones() -> None:
    addr = SadbAddress(6, ipaddress.ip_address("192.0.2.2"), port=4500, proto=17)
    msg = PfkeyMessage(3, 3, seq=9, extensions=(SadbSa(5, 32, 1), addr,
                                                 SadbKey(9, 160, bytes(20))))  # fmt: skip
    assert decode(msg.encode()) == msg


def test_refuses_classes_it_cannot_speed_up() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    with pytest.raises(TypeError, match="slots"):
        quick_init(NoSlots)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="default_factory"):
        quick_init(Factory)


def test_a_field_outside_the_constructor_starts_at_its_default() -> None:
    @quick_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Memo:
        a: int
        _m: bytes | None = dataclasses.field(default=None, init=False, compare=False)

    assert Memo(1)._m is None
    with pytest.raises(TypeError):
        Memo(1, b"x")  # type: ignore[call-arg]

    @dataclasses.dataclass(frozen=True, slots=True)
    class NoDefault:
        a: int
        _m: int = dataclasses.field(init=False)

    with pytest.raises(TypeError, match="default"):
        quick_init(NoDefault)
