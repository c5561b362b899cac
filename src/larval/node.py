"""One host's IPsec, sans-I/O: a `Stack` and a `KeyManager` that meet only in PF_KEY bytes.

DESIGN.md's boundary holds by type: the key manager's PF_KEY is a `PfkeyPort`, bytes in
and bytes out, and it encodes its requests and decodes the replies itself; the node's side
of the port (`pfkey`) hands the usual GETSPI, UPDATE and ADD to the stack as bytes
(`Stack.handle_pfkey_bytes`), and decodes any other request for the stack and encodes the
replies meant for the key manager. What other PF_KEY clients should see of it (the ADDs,
UPDATEs and DELETEs every socket is told of, RFC 2367 §3.1) goes to `broadcast`, encoded.

What the stack originates for registered key managers (ACQUIRE, EXPIRE) comes through
`stack_emitted`, which may be called from any thread (the dataplane's, the ager's): it is
encoded and queued, `wake` is called, and the messages reach the key manager when the
node's owner calls `deliver` in its own thread (the daemon: on its event loop).

`observer` sees the PF_KEY traffic as it crosses, decoded: `larval demo` narrates it
(every request then takes the decoding path).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from larval.crypto.randomness import RandomBytes, system_random
from larval.keymgr.manager import Connection, KeyManager
from larval.pfkey import PfkeyMessage, decode
from larval.pools import Pools
from larval.sadb import Audience, PfkeyReply, WireReply
from larval.stack import Stack

__all__ = ["Node", "PfkeyObserver"]

_ALL = Audience.ALL
_TO_KEYMGR = (Audience.SENDER, _ALL)  # the replies the requesting socket reads
_FROM_STACK = (Audience.REGISTERED, Audience.REGISTERED_EXTENDED)  # ACQUIRE, EXPIRE


class PfkeyObserver(Protocol):
    """Sees the PF_KEY messages between the key manager and the stack, decoded."""

    def request(self, msg: PfkeyMessage) -> None:
        """A request of the key manager's, before the stack takes it."""

    def replied(self, msg: PfkeyMessage, replies: list[PfkeyMessage]) -> None:
        """The stack's replies to `msg` that the key manager reads."""

    def emitted(self, msg: PfkeyMessage) -> None:
        """A message the stack originated for the key manager (ACQUIRE, EXPIRE), as it
        is queued."""


class Node:
    """A stack and its key manager, joined by PF_KEY bytes. `stack`: one made elsewhere
    (the daemon's, whose emit goes to several listeners: pass its messages to
    `stack_emitted`); by default the node makes its own, which emits to it. `random_bytes`:
    what the key manager draws from, and the stack the node makes (SPIs, IVs); `pools`:
    the key manager's virtual address pools."""

    def __init__(
        self,
        connections: list[Connection],
        *,
        stack: Stack | None = None,
        random_bytes: RandomBytes = system_random,
        broadcast: Callable[[list[WireReply]], None] | None = None,
        wake: Callable[[], None] | None = None,
        observer: PfkeyObserver | None = None,
        pools: Pools | None = None,
    ) -> None:
        if stack is None:
            stack = Stack(emit=self.stack_emitted, random_bytes=random_bytes)
        self.stack = stack
        self.keymgr = KeyManager(connections, self.pfkey, random_bytes=random_bytes, pools=pools)
        self.broadcast = broadcast
        self.wake = wake
        self.observer = observer
        self._from_stack: deque[bytes] = deque()  # appended in any thread, taken in one

    def pfkey(self, request: bytes) -> list[bytes]:
        """The stack's end of the key manager's `PfkeyPort`: the request is taken at the
        key manager's time (the call it is serving)."""
        observer = self.observer
        if observer is None:
            fast = self.stack.handle_pfkey_bytes(request, self.keymgr.now)
            if fast is not None:
                if self.broadcast is not None:
                    self.broadcast([r for r in fast if r.audience is _ALL])
                if len(fast) == 1:  # the fast path's one answer, as a rule
                    data, audience, _ = fast[0]
                    return [data] if audience in _TO_KEYMGR else []
                return [r.data for r in fast if r.audience in _TO_KEYMGR]
        msg = decode(request)
        if observer is not None:
            observer.request(msg)
        replies = self.stack.handle_pfkey(msg, self.keymgr.now)
        wire = [
            WireReply(r.message.encode(), r.audience, r.message.satype)
            for r in replies
            if r.audience in _TO_KEYMGR
        ]
        if self.broadcast is not None:
            self.broadcast([r for r in wire if r.audience is _ALL])
        encoded = [r.data for r in wire]
        if observer is not None:
            observer.replied(msg, [decode(data) for data in encoded])
        return encoded

    def stack_emitted(self, replies: list[PfkeyReply]) -> None:
        """The stack's emit (any thread): what registered key managers get is queued."""
        wanted = [r.message for r in replies if r.audience in _FROM_STACK]
        for msg in wanted:
            self._from_stack.append(msg.encode())
            if self.observer is not None:
                self.observer.emitted(msg)
        if wanted and self.wake is not None:
            self.wake()

    @property
    def pending(self) -> bool:
        """The stack has messages for the key manager that `deliver` has not handed over."""
        return bool(self._from_stack)

    def deliver(self, now: float) -> int:
        """Hand the ACQUIREs and EXPIREs queued so far to the key manager (what its work
        makes the stack emit meanwhile waits for the next call); how many there were."""
        count = len(self._from_stack)
        for _ in range(count):
            self.keymgr.pfkey_message(self._from_stack.popleft(), now)
        return count
