"""The control socket: JSON requests and answers, one line each, over AF_UNIX.

A request is `{"op": NAME, ...}`; the answer is `{"ok": true, ...}` or
`{"ok": false, "error": "what was wrong"}`. The socket is mode 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from larval.errors import LarvalError

log = logging.getLogger("larval.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]

MAX_REQUEST = 1 << 20


class ControlError(LarvalError):
    """The control socket could not be reached, or refused a request."""


class ControlServer:
    """Serves `handlers[op](request)` on a stream socket at `path`."""

    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = path
        self._handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        old_umask = os.umask(0o077)
        try:
            _remove_stale(self.path)
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is an object with an "op"'}
        handler = self._handlers.get(request["op"])
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return {"ok": False, "error": f"unknown op {request['op']!r} (known: {known})"}
        try:
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
        except LarvalError as e:
            return {"ok": False, "error": str(e)}
        except Exception:
            log.exception("control op %s failed", request["op"])
            return {"ok": False, "error": f"{request['op']} failed; see the stack's log"}
        assert isinstance(result, dict)
        return {"ok": True, **result}


def _remove_stale(path: str) -> None:
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
    else:
        raise ControlError(f"{path}: something is already listening there")
    finally:
        probe.close()


def control_request(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request; the answer, or ControlError with the server's message."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            raise ControlError(f"cannot reach the control socket {path}: {e.strerror}") from e
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data)
    except ValueError as e:
        raise ControlError(f"the control socket {path} answered nonsense") from e
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "refused"))
    return dict(answer)
