"""`larval.node.Node`: the PF_KEY port carries bytes both ways, what the stack emits
reaches the key manager as bytes and only when delivered, other clients get the
broadcasts, and an observer sees the traffic decoded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from larval.node import Node
from larval.pfkey import PfkeyMessage, SadbMsgType, decode
from larval.sadb import Audience, PfkeyReply, WireReply
from larval.stack import Stack
from tests.keymgr.test_manager import Host, carry, udp_packet


class Recorder:
    """A PfkeyObserver that keeps what it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def request(self, msg: PfkeyMessage) -> None:
        self.seen.append(("request", msg))

    def replied(self, msg: PfkeyMessage, replies: list[PfkeyMessage]) -> None:
        self.seen.append(("replied", (msg, replies)))

    def emitted(self, msg: PfkeyMessage) -> None:
        self.seen.append(("emitted", msg))


def _spy(host: Host, calls: list[tuple[object, object]]) -> None:
    """Record what crosses the key manager's port, and what the stack side hands it."""
    keymgr = host.keymgr
    port, receive = keymgr._pfkey, keymgr.pfkey_message

    def spied_port(request: bytes) -> list[bytes]:
        replies = port(request)
        calls.append((request, replies))
        return replies

    def spied_receive(data: bytes, now: float) -> None:
        calls.append((data, None))
        receive(data, now)

    keymgr._pfkey = spied_port  # type: ignore[method-assign]
    keymgr.pfkey_message = spied_receive  # type: ignore[method-assign]


@pytest.mark.parametrize("version", [2, 1])
def test_only_bytes_cross_between_the_key_manager_and_the_stack(version: int) -> None:
    a = Host("a", "b", "trap", version=version)
    b = Host("b", "a", "none", version=version)
    calls: list[tuple[object, object]] = []
    for host in (a, b):
        _spy(host, calls)
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held: ACQUIRE
    carry(a, b, 0.0)
    a.keymgr.down("s2s", 0.0)
    carry(a, b, 0.0)
    kinds = set()
    for sent, answer in calls:
        assert type(sent) is bytes
        if answer is not None:
            assert type(answer) is list and all(type(r) is bytes for r in answer)
        kinds.add(SadbMsgType(decode(sent).msg_type).name)
    # REGISTER, the ACQUIRE delivered, GETSPI, UPDATE, ADD, DELETE: every kind went as bytes.
    assert {"REGISTER", "ACQUIRE", "GETSPI", "UPDATE", "ADD", "DELETE"} <= kinds
    assert len(a.stack.sadb) == len(b.stack.sadb) == 0


def test_what_the_stack_emits_waits_for_deliver_and_may_come_from_any_thread() -> None:
    woken: list[str] = []
    received: list[tuple[object, float]] = []
    node = Node([], wake=lambda: woken.append(threading.current_thread().name))
    node.keymgr.pfkey_message = lambda data, now: received.append((data, now))  # type: ignore[method-assign]
    expire = PfkeyMessage(SadbMsgType.EXPIRE, 3, seq=1)
    plain = PfkeyMessage(SadbMsgType.ACQUIRE, 3, seq=2)
    replies = [
        PfkeyReply(expire, Audience.REGISTERED),
        PfkeyReply(plain, Audience.REGISTERED_PLAIN),  # an RFC 2367 REGISTER's: not ours
    ]
    worker = threading.Thread(target=node.stack.emit, args=(replies,), name="ager")
    worker.start()
    worker.join()
    assert woken == ["ager"] and received == [] and node.pending
    assert node.deliver(5.0) == 1
    assert received == [(expire.encode(), 5.0)] and not node.pending
    assert node.deliver(6.0) == 0
    node.stack_emitted([PfkeyReply(plain, Audience.REGISTERED_PLAIN)])
    assert woken == ["ager"] and not node.pending  # nothing for us: no wake


def test_broadcasts_go_to_other_clients_and_the_observer_sees_the_traffic() -> None:
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    broadcast: list[WireReply] = []
    recorder = Recorder()
    a.node.broadcast, a.node.observer = broadcast.extend, recorder
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    assert {r.audience for r in broadcast} == {Audience.ALL}
    assert {SadbMsgType(decode(r.data).msg_type).name for r in broadcast} == {"UPDATE", "ADD"}
    kinds = [(what, SadbMsgType((m if what != "replied" else m[0]).msg_type).name)
             for what, m in recorder.seen]  # fmt: skip
    # Each request before and after the stack took it, and the ACQUIRE the stack emitted.
    assert kinds[:5] == [("request", "REGISTER"), ("replied", "REGISTER"),
                         ("emitted", "ACQUIRE"), ("request", "GETSPI"),
                         ("replied", "GETSPI")]  # fmt: skip
    assert ("request", "UPDATE") in kinds and ("replied", "ADD") in kinds
    for what, seen in recorder.seen:
        if what == "replied":
            request, replies = seen
            assert [r.msg_type for r in replies] == [request.msg_type]
            assert all(isinstance(r, PfkeyMessage) for r in replies)


def test_a_stack_made_elsewhere_keeps_its_emit() -> None:
    sent: list[list[PfkeyReply]] = []
    stack = Stack(emit=sent.append)
    node = Node([], stack=stack)
    assert node.stack is stack and stack.emit == sent.append
    fresh = Node([])
    assert fresh.stack.emit == fresh.stack_emitted
