"""The task manager with tiny fake tasks and a fake window: queueing in order, one request
per open window, each response to the task that sent the request, a response nobody
awaits dropped, and the collision lookup and rule of RFC 7296 §2.8."""

from __future__ import annotations

import logging
from collections.abc import Hashable

import pytest

from larval.ike.task import TaskManager, redundant


class FakeWindow:
    """The transport as the manager sees it: `size` requests may be unanswered at once."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self.outstanding: set[int] = set()
        self.next_id = 0

    def window_open(self) -> bool:
        return len(self.outstanding) < self.size

    def answered(self, message_id: int) -> None:
        self.outstanding.discard(message_id)

    def send(self, exchange: Hashable, body: str, now: float) -> int:
        mid, self.next_id = self.next_id, self.next_id + 1
        self.outstanding.add(mid)
        sent.append((exchange, body, mid, now))
        return mid


sent: list[tuple[Hashable, str, int, float]] = []


class FakeTask:
    def __init__(self, name: str, rekeys: Hashable | None = None) -> None:
        self.name = name
        self.exchange = "X"
        self.rekeys = rekeys
        self.done = True
        self.built: list[float] = []
        self.processed: list[tuple[str, float]] = []

    def build(self, now: float) -> str:
        self.built.append(now)
        return self.name

    def process(self, message: str, now: float) -> None:
        self.processed.append((message, now))


@pytest.fixture
def manager() -> tuple[FakeWindow, TaskManager[str, str]]:
    sent.clear()
    window = FakeWindow()
    return window, TaskManager(window, window.send, lambda: "s2s[..]")


def test_a_task_starts_at_once_when_the_window_is_open(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    _window, tasks = manager
    a = FakeTask("a")
    tasks.queue(a, 1.0)
    assert a.built == [1.0]
    assert sent == [("X", "a", 0, 1.0)]


def test_tasks_wait_for_the_window_and_start_in_order(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    _window, tasks = manager
    a, b, c = FakeTask("a"), FakeTask("b"), FakeTask("c")
    for task in (a, b, c):
        tasks.queue(task, 1.0)
    # RFC 7296 §2.3: window 1, so b and c are not even built while a is unanswered.
    assert [s[1] for s in sent] == ["a"] and b.built == [] and c.built == []
    assert list(tasks.tasks()) == [a, b, c]
    assert tasks.response(0, "answer to a", 2.0)
    assert a.processed == [("answer to a", 2.0)]
    assert [s[1:3] for s in sent] == [("a", 0), ("b", 1)] and b.built == [2.0]
    assert tasks.response(1, "answer to b", 3.0)
    assert c.built == [3.0] and [s[1] for s in sent] == ["a", "b", "c"]


def test_a_wider_window_starts_as_many_as_it_allows(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    window, tasks = manager
    window.size = 2
    for name in "abc":
        tasks.queue(FakeTask(name), 0.0)
    assert [s[1] for s in sent] == ["a", "b"]


def test_each_response_goes_to_the_task_that_sent_its_request(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    window, tasks = manager
    window.size = 2
    a, b = FakeTask("a"), FakeTask("b")
    tasks.queue(a, 0.0)
    tasks.queue(b, 0.0)
    assert tasks.response(1, "for b", 1.0)
    assert tasks.response(0, "for a", 2.0)
    assert a.processed == [("for a", 2.0)] and b.processed == [("for b", 1.0)]
    assert window.outstanding == set()


def test_a_response_no_task_awaits_is_dropped_and_logged(
    manager: tuple[FakeWindow, TaskManager[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    window, tasks = manager
    a = FakeTask("a")
    tasks.queue(a, 0.0)
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        assert not tasks.response(7, "stray", 1.0)
    assert a.processed == [] and window.outstanding == {0}
    assert "no request awaits response 7, dropped" in caplog.text
    # Answered once, the task is done: the same response again finds nobody.
    assert tasks.response(0, "answer", 1.0)
    assert not tasks.response(0, "answer", 1.0)
    assert a.processed == [("answer", 1.0)]


class TwoRounds(FakeTask):
    """An exchange of two round trips (as IKE_AUTH with EAP): done after its second."""

    def process(self, message: str, now: float) -> None:
        super().process(message, now)
        self.done = len(self.processed) == 2


def test_a_task_not_done_sends_its_next_request_before_the_next_task_starts(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    window, tasks = manager
    auth, after = TwoRounds("auth"), FakeTask("after")
    auth.done = False
    tasks.queue(auth, 0.0)
    tasks.queue(after, 0.0)
    # auth -->  <-- round 1;  auth -->  (a new Message ID, while `after` still waits)
    assert tasks.response(0, "round 1", 1.0) is auth and not auth.done
    assert [s[1:3] for s in sent] == [("auth", 0), ("auth", 1)] and after.built == []
    assert list(tasks.tasks()) == [auth, after]
    # <-- round 2: auth is done, and `after` goes.
    assert tasks.response(1, "round 2", 2.0) is auth and auth.done
    assert auth.processed == [("round 1", 1.0), ("round 2", 2.0)] and auth.built == [0.0, 1.0]
    assert [s[1:3] for s in sent][2:] == [("after", 2)] and window.outstanding == {2}


def test_rekeying_finds_our_task_queued_or_under_way(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    _window, tasks = manager
    first, second = FakeTask("a", rekeys=("child", 0x1000)), FakeTask("b", rekeys="ike")
    tasks.queue(first, 0.0)
    tasks.queue(second, 0.0)
    assert tasks.rekeying(("child", 0x1000)) is first  # under way
    assert tasks.rekeying("ike") is second  # queued
    assert tasks.rekeying(("child", 0x2000)) is None
    tasks.response(0, "done", 1.0)
    assert tasks.rekeying(("child", 0x1000)) is None


def test_closed_the_manager_starts_nothing_and_awaits_nothing(
    manager: tuple[FakeWindow, TaskManager[str, str]],
) -> None:
    window, tasks = manager
    a, b = FakeTask("a"), FakeTask("b")
    tasks.queue(a, 0.0)
    tasks.queue(b, 0.0)
    tasks.close()
    window.outstanding.clear()
    tasks.queue(FakeTask("c"), 1.0)
    tasks.start(1.0)
    assert [s[1] for s in sent] == ["a"] and list(tasks.tasks()) == []
    assert not tasks.response(0, "late", 1.0) and a.processed == []


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ((b"\x01", b"\x09"), (b"\x05", b"\x07"), True),  # ours holds the lowest
        ((b"\x05", b"\x07"), (b"\x09", b"\x01"), False),  # theirs holds it, as Nr
        ((b"\x00\xff", b"\x10"), (b"\x01\x00", b"\x11"), True),  # octet by octet
    ],
)
def test_the_sa_with_the_lowest_nonce_is_redundant(
    ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes], expected: bool
) -> None:
    """RFC 7296 §2.8.1: the lowest of the four nonces marks the redundant SA."""
    assert redundant(ours, theirs) is expected
    assert redundant(theirs, ours) is not expected
