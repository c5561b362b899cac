"""The stack's PF_KEY socket: AF_UNIX SOCK_SEQPACKET, one PF_KEY message per datagram.

Like illumos keysock, it only moves bytes. It decodes a request, answers what belongs to
the socket itself (REGISTER bookkeeping, X_PROMISC), hands the rest to the stack and
sends each reply to its audience: the sender, every socket, or the sockets registered
for the SA type (plainly, RFC 2367 §3.1.7, or extended, illumos' SADB_X_EXT_EREG).
Promiscuous sockets get a copy of every message either way.

A client that sends garbage gets an errno reply; one that vanishes or stops reading is
dropped or skipped. Neither affects other clients or the SADB.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from larval.pfkey import (
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbMsgType,
    SadbXEreg,
    SaType,
    decode,
)
from larval.sadb import Audience, PfkeyReply

log = logging.getLogger("larval.pfkey")

#: The largest PF_KEY message: sadb_msg_len is 16 bits of 64-bit words.
MAX_MESSAGE = 0xFFFF * 8
#: Messages queued for a client that does not read before further ones are dropped.
MAX_QUEUED = 4096

_HEADER = struct.Struct("<BBBBHHII")


class PfkeyHandler(Protocol):
    """What serves PF_KEY requests: the stack."""

    def handle_pfkey(self, msg: PfkeyMessage, now: float) -> list[PfkeyReply]: ...


class _Client:
    __slots__ = ("extended", "name", "promisc", "queue", "registered", "sock")

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.registered: set[int] = set()  # SA types, plain REGISTER
        self.extended: set[int] = set()  # SA types, extended REGISTER
        self.promisc = False
        self.queue: deque[bytes] = deque()


def error_reply_bytes(data: bytes, err: int, diagnostic: int) -> bytes:
    """The errno reply to a request that did not decode: its header, if it had one."""
    if len(data) >= _HEADER.size:
        _, msg_type, _, satype, _, _, seq, pid = _HEADER.unpack_from(data)
    else:
        msg_type, satype, seq, pid = 0, 0, 0, 0
    return _HEADER.pack(2, msg_type, err, satype, 2, diagnostic, seq, pid)


class PfkeyServer:
    """Serves PF_KEY on a SOCK_SEQPACKET socket at `path`, within an asyncio loop."""

    def __init__(
        self,
        path: str,
        handler: PfkeyHandler,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._handler = handler
        self._clock = clock
        self._clients: dict[int, _Client] = {}
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._next_name = 0
        self.dropped = 0  # messages a slow client missed

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listen_seqpacket(self.path)
        self._accept_task = asyncio.create_task(self._accept_loop())

    async def close(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        for client in list(self._clients.values()):
            self._drop(client)
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- messages the stack originates (ACQUIRE, EXPIRE), from any thread -------------

    def emit(self, replies: list[PfkeyReply]) -> None:
        """Send stack-originated messages; callable from any thread."""
        loop = self._loop
        if loop is None or not replies:
            return
        if _in_loop_thread(loop):
            self._deliver(None, replies)
        else:
            loop.call_soon_threadsafe(self._deliver, None, replies)

    # -- the socket ---------------------------------------------------------------------

    async def _accept_loop(self) -> None:
        assert self._loop is not None and self._listener is not None
        while True:
            sock, _ = await self._loop.sock_accept(self._listener)
            sock.setblocking(False)
            self._next_name += 1
            client = _Client(sock, f"pfkey-client-{self._next_name}")
            self._clients[sock.fileno()] = client
            self._loop.add_reader(sock.fileno(), self._readable, client)

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_MESSAGE + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            self._drop(client)
            return
        self._request(client, data)

    def _request(self, client: _Client, data: bytes) -> None:
        for other in self._clients.values():
            if other.promisc and other is not client:
                self._send(other, data)
        try:
            msg = decode(data)
        except PfkeyError as e:
            log.info("%s: refused a malformed PF_KEY message: %s", client.name, e)
            self._send(client, error_reply_bytes(data, e.errno, e.diagnostic))
            return
        if msg.msg_type == SadbMsgType.X_PROMISC:
            # illumos keysock: a non-zero satype turns promiscuous mode on, zero off.
            client.promisc = msg.satype != 0
            self._send(client, msg.encode())
            return
        if msg.msg_type == SadbMsgType.REGISTER and msg.errno == 0:
            self._register(client, msg)
        try:
            replies = self._handler.handle_pfkey(msg, self._clock())
        except Exception:  # a bug must not take the socket down for everyone
            log.exception("%s: PF_KEY %s failed", client.name, msg.msg_type)
            self._send(client, error_reply_bytes(data, errno.EIO, 0))
            return
        self._deliver(client, replies)

    def _register(self, client: _Client, msg: PfkeyMessage) -> None:
        ereg = msg.find(ExtType.X_EREG)
        if isinstance(ereg, SadbXEreg):
            client.extended.update(ereg.satypes)
        elif msg.satype != SaType.UNSPEC:
            client.registered.add(msg.satype)

    def _deliver(self, sender: _Client | None, replies: list[PfkeyReply]) -> None:
        for reply in replies:
            data = reply.message.encode()
            satype = reply.message.satype
            for client in list(self._clients.values()):
                if client.promisc or _wants(client, sender, reply.audience, satype):
                    self._send(client, data)

    def _send(self, client: _Client, data: bytes) -> None:
        if client.queue:
            self._enqueue(client, data)
            return
        try:
            client.sock.send(data)
        except BlockingIOError:
            self._enqueue(client, data)
        except OSError:
            self._drop(client)

    def _enqueue(self, client: _Client, data: bytes) -> None:
        if len(client.queue) >= MAX_QUEUED:
            self.dropped += 1  # illumos keysock drops too (ENOBUFS to a full socket)
            return
        if not client.queue and self._loop is not None:
            self._loop.add_writer(client.sock.fileno(), self._writable, client)
        client.queue.append(data)

    def _writable(self, client: _Client) -> None:
        while client.queue:
            try:
                client.sock.send(client.queue[0])
            except BlockingIOError:
                return
            except OSError:
                self._drop(client)
                return
            client.queue.popleft()
        if self._loop is not None:
            self._loop.remove_writer(client.sock.fileno())

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
            if client.queue:
                self._loop.remove_writer(fd)
        client.sock.close()


def _wants(client: _Client, sender: _Client | None, audience: Audience, satype: int) -> bool:
    if audience is Audience.SENDER:
        return client is sender
    if audience is Audience.ALL:
        return True
    if audience is Audience.REGISTERED_PLAIN:
        return satype in client.registered
    if audience is Audience.REGISTERED_EXTENDED:
        # An extended ACQUIRE's base satype is UNSPEC: it may span SA types (illumos).
        return satype in client.extended or (satype == SaType.UNSPEC and bool(client.extended))
    return satype in client.registered or satype in client.extended


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def listen_seqpacket(path: str) -> socket.socket:
    """A listening SOCK_SEQPACKET socket at `path`, mode 0600, created atomically.

    The socket is bound under a temporary name with a 0077 umask and renamed into
    place, so it never exists with wider permissions. A stale socket file (nobody
    listening) is replaced; a live one is an error.
    """
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # stale: replaced by the rename below
        else:
            probe.close()
            raise OSError(errno.EADDRINUSE, f"{path}: a stack is already serving PF_KEY here")
        finally:
            probe.close()
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_umask = os.umask(0o077)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock.bind(tmp)
    finally:
        os.umask(old_umask)
    os.chmod(tmp, 0o600)
    sock.listen(64)
    os.rename(tmp, path)
    sock.setblocking(False)
    return sock
