"""The control socket: JSON requests and answers, one line each, over AF_UNIX.

A request is `{"op": NAME, ...}`; the answer is `{"ok": true, ...}` or
`{"ok": false, "error": "what was wrong"}`. The socket is mode 0600.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from larval.errors import LarvalError
from larval.lograte import LogLimiter
from larval.net.unix_socket import UnixListener, check_path, why_unreachable

log = logging.getLogger("larval.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]

MAX_REQUEST = 1 << 20  # bytes in one request line
MAX_ANSWER = 256 << 20  # bytes in one answer line: a status of many thousands of SAs


class ControlError(LarvalError):
    """The control socket could not be reached, or refused a request."""


class ControlServer:
    """Serves `handlers[op](request)` on a stream socket at `path`."""

    def __init__(
        self, path: str, handlers: dict[str, Handler], option: str = "--control-socket"
    ) -> None:
        self.path = path
        self.option = option  # where the path came from, for error messages
        self._handlers = handlers
        #: bound ahead of `start` by `larval run --user`, as root, and given to the user
        self.listener = UnixListener(path, socket.SOCK_STREAM, option)
        self._connections: set[asyncio.Task[None]] = set()
        self.log = LogLimiter(log)

    async def start(self) -> None:
        self.listener.serve(self._accepted, self.log, time.time)

    async def close(self) -> None:
        await self.listener.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.log.flush(float("inf"))

    def _accepted(self, sock: socket.socket) -> None:
        task = asyncio.create_task(self._connection(sock))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connection(self, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_REQUEST)
        except OSError:
            sock.close()
            return
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # over the limit; the reader has discarded what it held
                    too_long = f"a request is at most {MAX_REQUEST} bytes"
                    await _write(writer, {"ok": False, "error": too_long})
                    return
                if not line:
                    return
                await _write(writer, await self._answer(line))
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = _parse(line)
        except _BadRequest as e:
            return {"ok": False, "error": str(e)}
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


async def _write(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer).encode() + b"\n")
    await writer.drain()


class _BadRequest(Exception):
    pass


def _parse(line: bytes) -> object:
    """The JSON of one request line. json.loads of 100,000 `[` recurses until the
    interpreter's limit: that is an answer too, not a crash of the connection."""
    try:
        return json.loads(line)
    except RecursionError:
        raise _BadRequest("the request nests arrays or objects too deeply") from None
    except ValueError:
        raise _BadRequest("the request is not JSON") from None


def control_request(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request; the answer, or ControlError with the server's message or with
    what went wrong on the way (never a bare OSError: the caller is a command line)."""
    check_path(path, "--control-socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            raise ControlError(f"cannot reach the control socket {path}: "
                               f"{why_unreachable(path, e)}") from e  # fmt: skip
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = _answer_line(sock, path)
        except TimeoutError:
            raise ControlError(f"no answer on the control socket {path} "
                               f"within {timeout:g} s") from None  # fmt: skip
        except OSError as e:
            raise ControlError(f"the control socket {path} failed: {e.strerror or e}") from None
    if not data:
        raise ControlError(f"the control socket {path} closed without an answer")
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise ControlError(f"the control socket {path} answered nonsense")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "refused")))
    return answer


def _answer_line(sock: socket.socket, path: str) -> bytes:
    """One answer line, at most MAX_ANSWER bytes."""
    chunks: list[bytes] = []
    size = 0
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise ControlError(f"the control socket {path} answered more than "
                               f"{MAX_ANSWER >> 20} MiB")  # fmt: skip
    return b"".join(chunks)
