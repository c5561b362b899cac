"""The row and rule classes both versions' payload tables are made of, and the counting
(`larval.ike.rules`), seen directly and through each version's table."""

from __future__ import annotations

import pytest

from larval.ike.rules import MANY, MessageRules, PayloadRule, check_counts, count_types, rules
from larval.ikev1 import rules as v1_rules
from larval.ikev1.constants import ExchangeType as V1Exchange
from larval.ikev1.constants import PayloadType as V1Type
from larval.ikev2 import rules as v2_rules
from larval.ikev2.constants import ExchangeType as V2Exchange
from larval.ikev2.constants import PayloadType as V2Type

T = V1Type
ROW = MessageRules(
    V1Exchange.QUICK_MODE,
    1,
    True,
    (
        *rules((T.HASH, 1, 1), (T.NONCE, 1, 1), (T.N, 0, MANY)),
        PayloadRule(T.ID, 2, 2, or_none=True),
    ),
)


class Refused(Exception):
    pass


def _check(*types: V1Type, minimum: bool = True) -> None:
    check_counts(ROW, count_types(types), Refused, minimum=minimum)


def test_counts_within_the_rules_pass() -> None:
    _check(T.HASH, T.NONCE)
    _check(T.HASH, T.NONCE, T.N, T.N, T.N, T.ID, T.ID)


@pytest.mark.parametrize(
    ("types", "text"),
    [
        ((T.HASH, T.HASH, T.NONCE), "2 HASH payloads, at most 1 allowed"),
        ((T.NONCE,), "HASH payload missing"),
        ((T.HASH, T.NONCE, T.ID), "1 ID payloads, needs 2"),
        ((T.HASH, T.NONCE, T.ID, T.ID, T.ID), "3 ID payloads, at most 2 allowed"),
    ],
)
def test_counts_outside_the_rules_name_the_payload(types: tuple[V1Type, ...], text: str) -> None:
    with pytest.raises(Refused) as info:
        _check(*types)
    assert str(info.value) == text


def test_without_the_minimum_only_the_maximum_counts() -> None:
    _check(T.N, minimum=False)  # an error answer: nothing else needed
    with pytest.raises(Refused, match="2 HASH payloads"):
        _check(T.HASH, T.HASH, minimum=False)


def test_rules_marks_each_rule_of_a_row_alike() -> None:
    made = rules((V2Type.SA, 1, 1), (V2Type.NOTIFY, 0, MANY), encrypted=True)
    assert made == (
        PayloadRule(V2Type.SA, 1, 1, encrypted=True),
        PayloadRule(V2Type.NOTIFY, 0, None, encrypted=True),
    )
    assert ROW.allowed()[T.ID].or_none


def test_both_versions_tables_are_made_of_the_shared_rows() -> None:
    for table in (v1_rules.MESSAGE_RULES, v2_rules.MESSAGE_RULES):
        assert table and all(isinstance(row, MessageRules) for row in table.values())
        assert all(isinstance(r, PayloadRule) for row in table.values() for r in row.payloads)
    assert v1_rules.MESSAGE_RULES[(V1Exchange.QUICK_MODE, 3)].hash_first
    init_response = v2_rules.MESSAGE_RULES[(V2Exchange.IKE_SA_INIT, True)]
    assert init_response.errors_exempt and init_response.encrypted is False
    assert v2_rules.MESSAGE_RULES[(V2Exchange.IKE_AUTH, False)].allowed()[V2Type.AUTH].encrypted
