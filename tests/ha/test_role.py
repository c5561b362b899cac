"""The dataplane's guard (`HaRole._guard`): each send asks the node whether it still owns
the group, so that a node stopped past its deadline and woken sends no ESP, even before
its other threads have noticed the fence."""

from __future__ import annotations

from typing import Any

from larval.ha.role import HaRole


class Dataplane:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int, list[bytes]]] = []

    def _send_now(self, dst: bytes, port: int, payloads: list[bytes]) -> None:
        self.sent.append((dst, port, payloads))

    def _send(self, payload: bytes) -> None:
        """As `larval.net.dataplane.Dataplane._send`: through the instance's `_send_now`."""
        self._send_now(b"\xc6\x33\x64\x01", 4500, [payload])


class Node:
    def __init__(self) -> None:
        self.owner = True
        self.esp_held = 0
        self.asked = 0

    def may_send(self) -> bool:
        self.asked += 1
        return self.owner


def test_the_guard_asks_before_each_send() -> None:
    role: Any = HaRole.__new__(HaRole)
    role.node = Node()
    dataplane = Dataplane()
    role._guard(dataplane)
    role._guard(dataplane)  # a second takeover does not wrap it twice
    dataplane._send(b"one")
    assert [p for _, _, p in dataplane.sent] == [[b"one"]] and role.node.asked == 1
    role.node.owner = False  # the deadline passed while the process was stopped
    dataplane._send(b"two")
    dataplane._send_now(b"\xc6\x33\x64\x01", 4500, [b"three", b"four"])
    assert [p for _, _, p in dataplane.sent] == [[b"one"]]
    assert role.node.esp_held == 3
