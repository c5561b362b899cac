"""`ChildPolicy` is asked with networks by both versions, so that a key manager answers
either without knowing IKEv2's traffic selectors or IKEv1's ID payloads."""

from __future__ import annotations

import ipaddress
import itertools

from larval.ike.config import ChildConfig, ChildPolicy, IPNetwork
from larval.ikev1.session import IkeV1Session
from larval.ikev2.session import IkeSession
from tests.ikev1 import test_session as v1
from tests.ikev2 import test_session as v2

WIDE_A = ipaddress.ip_network("198.51.0.0/16")

Asked = list[tuple[tuple[IPNetwork, ...], tuple[IPNetwork, ...]]]


def _recording(asked: Asked, answer: ChildConfig) -> ChildPolicy:
    def policy(tsi: tuple[IPNetwork, ...], tsr: tuple[IPNetwork, ...]) -> ChildConfig:
        asked.append((tsi, tsr))
        return answer

    return policy


def test_ikev2_asks_with_the_networks_of_tsi_and_tsr() -> None:
    asked: Asked = []
    pair = v2.Pair(v2.config(v2.A, v2.B), v2.config(v2.B, v2.A), None)
    spis = itertools.count(0x2000)
    pair.r = IkeSession(v2.config(v2.B, v2.A), initiator=False, allocate_spi=lambda: next(spis),
                        child_policy=_recording(asked, v2.child(v2.NET_B, v2.NET_A)))  # fmt: skip
    # IKE_AUTH { ..., TSi(198.51.0.0/16), TSr(203.0.113.0/24) } -->
    pair.i.initiate(ChildConfig("net", v2.child(WIDE_A, v2.NET_B).proposals,
                                (WIDE_A,), (v2.NET_B,)), 0.0)  # fmt: skip
    pair.flush()
    assert asked == [((WIDE_A,), (v2.NET_B,))]


def test_ikev1_asks_with_the_networks_of_the_quick_mode_ids() -> None:
    asked: Asked = []
    pair = v1.Pair(v1.config(v1.A, v1.B), v1.config(v1.B, v1.A), None)
    spis = itertools.count(0x2000)
    pair.r = IkeV1Session(v1.config(v1.B, v1.A), initiator=False, allocate_spi=lambda: next(spis),
                          child_policy=_recording(asked, v1.child(v1.NET_B, v1.NET_A)))  # fmt: skip
    pair.i.initiate(v1.child(v1.NET_A, v1.NET_B), 0.0)
    for sender in (pair.i, pair.r) * 3:  # MM1-MM6
        pair.step(sender)
    pair.step(pair.i)  # QM1 *{ HASH(1), SA, Ni, IDci(198.51.100.0/24), IDcr(203.0.113.0/24) } -->
    assert asked == [((v1.NET_A,), (v1.NET_B,))]
