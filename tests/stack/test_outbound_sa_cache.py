"""`Stack.outbound` remembers a flow's PROTECT verdict (`Stack._protected`), and a tunnel's
SA by gateways and inner addresses (`Stack._by_inner`): whatever the SADB and SPD go
through, a remembered answer must be the one a lookup that remembers nothing gives.
Hypothesis drives ADDs (with and without inner selectors), DELETEs, GETSPI + UPDATE by
the full path and by the PF_KEY bytes path, aging (soft lifetimes make SAs DYING, hard
ones DEAD) and policy changes (a policy for one port among them), and asks both after
each step, for flows of both SAs' inner selectors and outside them; the policy cache's
answers (`FlowCache`, by flow and by addresses) are set aside for the lookup too."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.pfkey import (
    EncryptAlg,
    ExtType,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
)
from larval.pfkey.requests import by_spi, getspi, keyed
from larval.spd import Action, Direction, Policy, load_policy_text
from larval.spd.selector import Selector
from larval.stack.flow_cache import FlowCache
from larval.stack.stack import Outbound, Stack, Verdict
from tests.stack.test_packet_path import A_NET, A_OUTER, B_NET, B_OUTER, KEY_AB, policy

#: Inner destinations: in the first /25 of B_NET, in the second, and the first again on
#: another port (another flow, between the same hosts: `Stack._by_inner` answers it).
FLOWS = (("203.0.113.1", 5001), ("203.0.113.200", 5001), ("203.0.113.1", 5002))
#: The inner destination selector an ADD may carry: none, or one half of B_NET.
HALVES = (None, "203.0.113.0/25", "203.0.113.128/25")

#: A DISCARD for UDP from A_NET to B_NET's port 5002, before the tunnel's policy.
PORTED = Policy("ported", Direction.OUT, Selector.of(A_NET, B_NET, 17, remote_ports=5002),
                action=Action.DISCARD, priority=1)  # fmt: skip


def udp(dst: str, port: int) -> bytes:
    """An IPv4/UDP packet from A_NET (UDP: a flow the caches key)."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 32, 1, 0x4000, 64, 17, 0,
        ipaddress.ip_address("198.51.100.1").packed, ipaddress.ip_address(dst).packed,
    )  # fmt: skip
    return header + struct.pack("!HHHH", 40000, port, 12, 0) + b"data"


def _same(cached: Outbound, fresh: Outbound) -> bool:
    return cached.verdict is fresh.verdict and cached.sa is fresh.sa


class World:
    def __init__(self) -> None:
        self.stack = Stack()
        self.policies = list(load_policy_text(policy(A_NET, B_NET, A_OUTER, B_OUTER), "test"))
        self.policy_on = True
        self.ported_on = False
        for p in self.policies:
            self.stack.spd.add(p)
        self.now = 1.0
        self.spis: set[int] = set()

    def pfkey(self, msg: object, fast: bool = False) -> None:
        from larval.pfkey import PfkeyMessage

        assert isinstance(msg, PfkeyMessage)
        if fast:
            answers = self.stack.handle_pfkey_bytes(msg.encode(), self.now)
            if answers is not None:
                return
        self.stack.handle_pfkey(msg, self.now)

    def add(
        self, spi: int, half: str | None, soft: int, hard: int, update: bool, fast: bool
    ) -> None:
        extra: tuple[SadbAddress, ...] = ()
        if half is not None:
            net = ipaddress.ip_network(half)
            extra = (
                SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("198.51.100.0"),
                            prefixlen=24),
                SadbAddress(ExtType.X_ADDRESS_INNER_DST, net.network_address,
                            prefixlen=net.prefixlen),
            )  # fmt: skip
        lifetimes = {
            "soft": SadbLifetime(ExtType.LIFETIME_SOFT, addtime=soft) if soft else None,
            "hard": SadbLifetime(ExtType.LIFETIME_HARD, addtime=hard) if hard else None,
        }
        if update:
            # GETSPI first: a LARVAL SA between the pair, then made MATURE by UPDATE.
            self.pfkey(getspi(A_OUTER, B_OUTER, spi_min=spi, spi_max=spi))
            self.check()  # traffic while it is LARVAL: answers remembered meanwhile
        msg_type = SadbMsgType.UPDATE if update else SadbMsgType.ADD
        self.pfkey(
            keyed(msg_type, spi, A_OUTER, B_OUTER, encrypt=EncryptAlg.AES_GCM_16,
                  encrypt_key=KEY_AB, extra=extra, **lifetimes),
            fast=fast,
        )  # fmt: skip
        self.spis.add(spi)

    def delete(self, spi: int) -> None:
        self.pfkey(by_spi(SadbMsgType.DELETE, spi, B_OUTER, A_OUTER))
        self.spis.discard(spi)

    def toggle_policy(self) -> None:
        """Remove the policies (the flows BYPASS), or put them back."""
        if self.policy_on:
            for name in {p.name for p in self.policies}:
                self.stack.spd.remove(name)
        else:
            self.stack.spd.add_all(self.policies)
        self.policy_on = not self.policy_on

    def toggle_ported(self) -> None:
        """Add, or remove, a policy of higher priority for one destination port of the
        flows (FLOWS' 5002): while it is there, the ports decide, and a new port between
        known hosts must not be answered by what another port found."""
        if self.ported_on:
            self.stack.spd.remove("ported")
        else:
            self.stack.spd.add(PORTED)
        self.ported_on = not self.ported_on

    def fresh(self, packet: bytes) -> Outbound:
        """The verdict of a lookup that remembers nothing: the caches set aside, the
        policy cache's too (an empty one asks the SPD)."""
        stack = self.stack
        by_inner = dict(stack._by_inner)
        stack._by_inner.clear()
        policies = stack.outbound_policies
        stack.outbound_policies = FlowCache(stack.spd, Direction.OUT)
        try:
            return stack._outbound(packet, self.now)
        finally:
            stack.outbound_policies = policies
            stack._by_inner.clear()
            stack._by_inner.update(by_inner)

    def check(self) -> None:
        for dst, port in FLOWS:
            packet = udp(dst, port)
            for _ in range(2):  # the first may fill the cache, the second reads it
                cached = self.stack.outbound(packet, self.now)
                fresh = self.fresh(packet)
                assert _same(cached, fresh), (dst, port, cached, fresh)


_add = st.tuples(
    st.just("add"),
    st.integers(0, 5),
    st.sampled_from(HALVES),
    st.sampled_from([0, 3, 7]),  # soft addtime, seconds
    st.sampled_from([0, 10]),  # hard addtime
    st.booleans(),  # GETSPI + UPDATE instead of ADD
    st.booleans(),  # through the PF_KEY bytes path
)
_op = st.one_of(
    _add,
    st.tuples(st.just("delete"), st.integers(0, 5)),
    st.tuples(st.just("age"), st.integers(1, 6)),
    st.tuples(st.just("policy")),
    st.tuples(st.just("ported")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=25))
def test_remembered_verdicts_are_what_a_lookup_finds(ops: list[tuple[object, ...]]) -> None:
    world = World()
    world.check()
    for op in ops:
        kind = op[0]
        if kind == "add":
            _, k, half, soft, hard, update, fast = op
            spi = 0x1000 + int(k)  # type: ignore[call-overload]
            if spi in world.spis:
                continue
            world.add(spi, half, soft, hard, update, fast)  # type: ignore[arg-type]
        elif kind == "delete":
            spi = 0x1000 + int(op[1])  # type: ignore[call-overload]
            if spi not in world.spis:
                continue
            world.delete(spi)
        elif kind == "policy":
            world.toggle_policy()
        elif kind == "ported":
            world.toggle_ported()
        else:
            world.now += float(op[1])  # type: ignore[arg-type]
            world.stack.age(world.now)
        world.check()


@pytest.mark.parametrize("fast", [False, True], ids=["full-path", "bytes-path"])
def test_a_rekey_takes_the_flow_to_the_new_sa_at_once(fast: bool) -> None:
    world = World()
    world.add(0x1001, None, 0, 0, update=False, fast=False)
    packet = udp(*FLOWS[0])
    first = world.stack.outbound(packet, 1.0)
    assert first.verdict is Verdict.PROTECT and first.sa is not None and first.sa.spi == 0x1001
    assert world.stack.outbound(packet, 1.0) == first  # remembered
    # The new SA of a rekey, made MATURE by UPDATE through the bytes path: it is chosen.
    world.add(0x1002, None, 0, 0, update=True, fast=fast)
    second = world.stack.outbound(packet, 1.0)
    assert second.sa is not None and second.sa.spi == 0x1002
    world.delete(0x1002)
    third = world.stack.outbound(packet, 1.0)
    assert third.sa is not None and third.sa.spi == 0x1001
    world.delete(0x1001)
    assert world.stack.outbound(packet, 1.0).verdict is Verdict.HELD
