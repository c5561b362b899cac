"""Group commit: one durable write for every IKE datagram and timer of a pass of the
event loop, and nothing they produced leaves before it.

Theory of operation
-------------------
* The rule: a datagram leaves only once the state it depends on is durable (a request
  with a new Message ID, the reply the peer's retransmission is answered from). With a
  write per datagram, an IKE setup pays a commit (an fsync) per message.
* `request` is what the daemon calls after it let the key manager handle a datagram, a
  timer or a command. The first request schedules a pass (``loop.call_soon``); the
  datagrams already read in this turn of the loop are handled before it runs. The pass
  takes one `larval.keymgr.persist.Batch`: the records changed since the last one, and
  the datagrams produced since.
* Nothing to write: the datagrams leave at once. Else the batch is written on a writer
  thread of its own, while the loop goes on reading and handling datagrams (their
  changes and answers are the next batch: the longer a write takes, the more the next
  one holds). When it returned, its datagrams leave, in the order they were produced;
  then the next batch is taken, if anything asked for one. One write at a time, batches
  in order: a datagram never leaves before one produced earlier, nor before a write
  holding anything it depends on.
* A write that fails (`StoreError`, `StoreFenced`) sends nothing of its batch; its
  records go back to be written with the next, and the peers' retransmissions (or ours)
  bring the datagrams again, answered from what is then written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

from larval.keymgr.persist import Batch

__all__ = ["GroupCommit"]

log = logging.getLogger("larval.daemon")

Datagrams = list[tuple[bytes, tuple[str, int]]]


class GroupCommit:
    """The daemon's writer of the key manager's batches (module docstring). `take` takes
    a batch; `send` sends its datagrams once it is written."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        take: Callable[[], Batch],
        send: Callable[[Datagrams], None],
    ) -> None:
        self._loop = loop
        self._take = take
        self._send = send
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "larval-ike-commit")
        self._scheduled = False  # a pass waits in the loop's queue
        self._writing: Batch | None = None  # the batch on the writer thread
        self._wanted = False  # requested while writing: a pass once it is done
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0  # batches written (status, tests)

    def __repr__(self) -> str:
        return f"<GroupCommit {self.batches} batch(es) written>"

    def request(self) -> None:
        """The key manager did something: a pass soon, after what this turn still holds."""
        if self._writing is not None:
            self._wanted = True
            return
        if not self._scheduled:
            self._scheduled = True
            self._idle.clear()
            self._loop.call_soon(self._pass)

    def _pass(self) -> None:
        self._scheduled = False
        self._wanted = False
        try:
            batch = self._take()
        except Exception as e:  # a record that cannot be made: nothing leaves, logged
            log.error("state store: the batch could not be made (%s: %s); holding back "
                      "what would have been sent", type(e).__name__, e)  # fmt: skip
            self._settled()
            return
        if batch.empty:
            try:
                self._send(batch.datagrams)
            finally:
                self._settled()
            return
        self._writing = batch
        future = self._loop.run_in_executor(self._writer, batch.write)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        batch, self._writing = self._writing, None
        assert batch is not None
        exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
        try:
            if exc is None:
                self.batches += 1
                self._send(batch.datagrams)
            else:
                batch.failed(exc)
        finally:
            if self._wanted:
                self._wanted = False
                self.request()
            else:
                self._settled()

    def _settled(self) -> None:
        if not self._scheduled and self._writing is None:
            self._idle.set()

    async def drained(self) -> None:
        """Until every batch asked for is written and its datagrams sent (a stop)."""
        await self._idle.wait()

    def close(self) -> None:
        """No more writes; the writer thread goes once the one under way returned."""
        self._writer.shutdown(wait=False)
