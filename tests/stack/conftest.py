"""A `larval stack` service in a background thread, on real AF_UNIX sockets in tmp_path."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.daemon.stack_service import StackService
from larval.store import StateStore


class RunningStack:
    def __init__(
        self, tmp: Path, store: StateStore | None = None, *, settle_gc: bool = False
    ) -> None:
        self.store = store
        self.settle_gc = settle_gc
        self.pfkey_path = str(tmp / "pfkey")
        self.control_path = str(tmp / "control")
        self.service: StackService | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.service = StackService(self.pfkey_path, self.control_path, store=self.store)
            self.service.settle_gc = self.settle_gc
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.service.run())
            while not os.path.exists(self.control_path):
                await asyncio.sleep(0.01)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as e:  # pragma: no cover - reported by the fixture
            self.error = e
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the stack did not start"
        assert self.error is None, self.error

    def stop(self) -> None:
        if self.service is not None:
            self.loop.call_soon_threadsafe(self.service.stop)
        self._thread.join(10)

    def client(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(5)
        sock.connect(self.pfkey_path)
        return sock

    def settle(self) -> None:
        """Wait until the loop has run what was queued so far."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(done.set)
        assert done.wait(5)
        time.sleep(0.01)


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[RunningStack]:
    stack = RunningStack(tmp_path)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
