"""`larval stack`: the stack alone, serving PF_KEY (and policy over the control socket).

No key manager runs here: any PF_KEY client — `larval sa`, a script, another key
manager — drives the SADB, as keysock lets any process do on illumos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from larval.net.control import ControlServer
from larval.net.pfkey_server import PfkeyServer
from larval.spd import load_policy_text, policy_to_dict
from larval.stack.stack import Stack

log = logging.getLogger("larval.stack")

AGE_INTERVAL = 1.0  # seconds between lifetime checks


class StackService:
    """The stack, its PF_KEY socket, its control socket and its ager, in one loop."""

    def __init__(self, pfkey_path: str, control_path: str | None = None) -> None:
        self.stack = Stack()
        self.pfkey = PfkeyServer(pfkey_path, self.stack)
        self.stack.emit = self.pfkey.emit
        self.control = (
            ControlServer(
                control_path,
                {
                    "policy.load": self._policy_load,
                    "policy.list": self._policy_list,
                    "policy.flush": self._policy_flush,
                    "status": self._status,
                },
            )
            if control_path
            else None
        )
        self._stopping = asyncio.Event()

    def load_policy(self, text: str, source: str) -> int:
        """Add the policies of a policy file; those of the same name are replaced."""
        policies = load_policy_text(text, source)
        names = {p.name for p in policies}
        for name in names:
            self.stack.spd.remove(name)
        for policy in policies:
            self.stack.spd.add(policy)
        return len(policies)

    def _policy_load(self, request: dict[str, Any]) -> dict[str, Any]:
        text, source = request.get("text"), request.get("source", "<control>")
        if not isinstance(text, str) or not isinstance(source, str):
            return {"loaded": 0}
        return {"loaded": self.load_policy(text, source)}

    def _policy_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"policies": [policy_to_dict(p) for p in self.stack.spd.policies()]}

    def _policy_flush(self, request: dict[str, Any]) -> dict[str, Any]:
        count = len(self.stack.spd.policies())
        self.stack.spd.flush()
        return {"flushed": count}

    def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "sas": len(self.stack.sadb),
            "acquire_records": self.stack.sadb.acquire_records,
            "policies": len(self.stack.spd.policies()),
            "sadb_counters": self.stack.sadb.counters.snapshot(),
            "drops": dict(self.stack.drops),
            "pfkey_clients": self.pfkey.clients,
        }

    async def run(self) -> None:
        await self.pfkey.start()
        if self.control is not None:
            await self.control.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        log.info("serving PF_KEY on %s", self.pfkey.path)
        ager = asyncio.create_task(self._age())
        try:
            await self._stopping.wait()
        finally:
            ager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ager
            if self.control is not None:
                await self.control.close()
            await self.pfkey.close()
            log.info("stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def _age(self) -> None:
        while True:
            self.stack.age(time.time())
            await asyncio.sleep(AGE_INTERVAL)
