"""Exchanges as tasks, and the manager that runs an IKE SA's own requests one window at a
time (strongSwan libcharon's `task.h` and `task_manager.h`).

Theory of operation
-------------------
A task is one exchange seen from one role. As initiator it `build`s the request's
payloads and `process`es the response; as responder it `process`es the request and
`build`s the response. A task does no I/O and has no clock: `now` is passed in.

The `TaskManager` keeps the initiator tasks of one IKE SA. `queue` puts a task at the
back; the next one starts as soon as the transport's window allows (RFC 7296 §2.3),
which is when `start` builds its request and hands it to `send`, the session's way to
put a request on the wire (it returns the Message ID the request went with). A response
goes to the task whose request it answers (`response`); a response no task awaits is
dropped and logged (§2.21: no reply to an unexpected response). An exchange of more than
one round trip (IKEv2's IKE_AUTH with EAP, an IKE_SA_INIT that goes again with a COOKIE)
is a task that is not `done` after a response: its next request goes out at once.

Collisions (RFC 7296 §2.8.1, §2.8.2): a task that renews something names it in
`rekeys` (the inbound SPI of a CHILD_SA, or the IKE SA itself). When the peer's request
renews the same thing, `rekeying(key)` finds our task, queued or under way, so that the
exchange that answers the peer can tell it; when both exchanges are done, `redundant`
says which of the two new SAs goes: the one made with the lowest of the four nonces.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Send", "Task", "TaskManager", "redundant"]

M = TypeVar("M")
B = TypeVar("B")
M_contra = TypeVar("M_contra", contravariant=True)
B_co = TypeVar("B_co", covariant=True)
log = logging.getLogger("larval.ike")


class Task(Protocol[M_contra, B_co]):
    """One exchange, for one role: build what this end sends, process what it receives."""

    #: The exchange type the task's messages carry.
    @property
    def exchange(self) -> Hashable: ...

    #: What the task renews (a CHILD_SA's inbound SPI, the IKE SA), or None.
    @property
    def rekeys(self) -> Hashable | None: ...

    #: Is the exchange over, or does this end send (initiator) or await (responder)
    #: another message of it?
    @property
    def done(self) -> bool: ...

    def build(self, now: float) -> B_co:
        """The request (initiator) or the response (responder) this end sends."""
        ...

    def process(self, message: M_contra, now: float) -> None:
        """The response (initiator) or the request (responder) this end received."""
        ...


#: How a started task's request goes on the wire: exchange type and payloads in, the
#: Message ID it went with out.
Send = Callable[[Hashable, B, float], int]


class Window(Protocol):
    def window_open(self) -> bool: ...

    def answered(self, message_id: int) -> object: ...


class TaskManager(Generic[M, B]):
    """The initiator tasks of one IKE SA: queued, started as the window allows, each
    answered by the response to its request."""

    def __init__(self, window: Window, send: Send[B], name: Callable[[], str] = str) -> None:
        """`window`: the transport (its window, and `answered`); `send`: puts a built
        request on the wire; `name`: how log lines name the IKE SA."""
        self._window = window
        self._send = send
        self._name = name
        self._queued: deque[Task[M, B]] = deque()
        self._active: dict[int, Task[M, B]] = {}
        self._closed = False

    def queue(self, task: Task[M, B], now: float) -> None:
        """Run `task` after those queued before it; now, if the window is open."""
        if self._closed:
            return
        self._queued.append(task)
        self.start(now)

    def start(self, now: float) -> None:
        """Start queued tasks while the window lets their requests go (RFC 7296 §2.3)."""
        while self._queued and not self._closed and self._window.window_open():
            task = self._queued.popleft()
            message_id = self._send(task.exchange, task.build(now), now)
            self._active[message_id] = task

    def response(self, message_id: int, message: M, now: float) -> Task[M, B] | None:
        """Hand a response to the task that sent its request; the task's next request
        goes out if it is not done, and then the next task starts. The task, or None (and
        nothing done) when no task awaits a response with that ID."""
        task = self._active.pop(message_id, None)
        if task is None:
            log.info("%s: no request awaits response %d, dropped", self._name(), message_id)
            return None
        self._window.answered(message_id)
        task.process(message, now)
        if not task.done and not self._closed:
            self._active[self._send(task.exchange, task.build(now), now)] = task
        self.start(now)
        return task

    def resume(self, message_id: int, task: Task[M, B]) -> None:
        """`task`'s request went out as `message_id` before this manager was made (an IKE
        SA restored from its value, `larval.ike.state`): it awaits the response again."""
        self._active[message_id] = task

    def exchange_of(self, message_id: int) -> Hashable | None:
        """The exchange of the task whose request went as `message_id`, if one awaits it."""
        task = self._active.get(message_id)
        return task.exchange if task is not None else None

    def rekeying(self, key: Hashable) -> Task[M, B] | None:
        """Our task, queued or under way, that renews `key` (RFC 7296 §2.8.1, §2.8.2)."""
        return next((t for t in self.tasks() if t.rekeys == key), None)

    def tasks(self) -> Iterator[Task[M, B]]:
        """The tasks under way, then those queued."""
        yield from self._active.values()
        yield from self._queued

    def drop_queued(self, which: Callable[[Task[M, B]], bool]) -> None:
        """Forget the queued tasks (not yet started) `which` selects."""
        self._queued = deque(t for t in self._queued if not which(t))

    def close(self) -> None:
        """The IKE SA is gone: nothing queued starts, and no response is awaited."""
        self._closed = True
        self._queued.clear()
        self._active.clear()


def redundant(ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes]) -> bool:
    """Of two SAs made at once by two exchanges, is the one made with nonces `ours`
    (Ni, Nr) the redundant one? It is when it holds the lowest of the four nonces,
    compared octet by octet (RFC 7296 §2.8.1, §2.8.2); both ends see the same four."""
    return min(ours) < min(theirs)
