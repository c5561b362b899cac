"""The stack's PF_KEY socket: AF_UNIX SOCK_SEQPACKET, one PF_KEY message per datagram.

Like illumos keysock, it only moves bytes. The usual GETSPI, UPDATE and ADD go to the
stack as bytes and their answers come back encoded (`Stack.handle_pfkey_bytes`); any
other request it decodes, answers what belongs to the socket itself (REGISTER
bookkeeping, X_PROMISC), hands the rest to the stack and
sends each reply to its audience: the sender, every socket, or the sockets registered
for the SA type (plainly, RFC 2367 §3.1.7, or extended, illumos' SADB_X_EXT_EREG).
Promiscuous sockets get a copy of every message either way.

A client that sends garbage gets an errno reply (and a log line, limited per client);
one that vanishes is dropped. Neither affects other clients or the SADB.

Flow control: the replies to a client's own request (a DUMP of any size) are never
dropped; what its queue cannot hold waits, and the client is not read from until it has
caught up. Copies meant for a client too slow to read (promiscuous copies, broadcasts,
ACQUIREs) are dropped beyond a bound in messages and in bytes, counted, and the client is
told how many it missed once it catches up: an errno ENOBUFS message, as a full socket
reports on Linux and illumos.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from larval.lograte import LogLimiter
from larval.net.unix_socket import UnixListener
from larval.pfkey import (
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbMsgType,
    SadbXEreg,
    SaType,
    decode,
)
from larval.sadb import Audience, PfkeyReply, WireReply

log = logging.getLogger("larval.pfkey")

#: The largest PF_KEY message: sadb_msg_len is 16 bits of 64-bit words.
MAX_MESSAGE = 0xFFFF * 8
#: What may wait for a client that does not read, in messages and in bytes (always at
#: least one message). Beyond that, copies meant for it are counted as missed; the
#: replies to its own requests wait instead, and it is not read from until they are sent.
MAX_QUEUED = 4096
MAX_QUEUED_BYTES = 1 << 20

_HEADER = struct.Struct("<BBBBHHII")


class PfkeyHandler(Protocol):
    """What serves PF_KEY requests: the stack. A handler may also take requests as bytes
    (`Stack.handle_pfkey_bytes`: the answers encoded, or None to decode the request)."""

    def handle_pfkey(self, msg: PfkeyMessage, now: float) -> list[PfkeyReply]: ...


BytesHandler = Callable[[bytes, float], "list[WireReply] | None"]


class _Client:
    __slots__ = (
        "backlog",
        "extended",
        "missed",
        "missed_header",
        "name",
        "paused",
        "promisc",
        "queue",
        "queued_bytes",
        "registered",
        "sock",
        "writing",
    )

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.registered: set[int] = set()  # SA types, plain REGISTER
        self.extended: set[int] = set()  # SA types, extended REGISTER
        self.promisc = False
        self.queue: deque[bytes] = deque()  # bounded: MAX_QUEUED, MAX_QUEUED_BYTES
        self.queued_bytes = 0
        self.backlog: deque[bytes] = deque()  # replies to its own request, not yet queued
        self.paused = False  # not read from while its backlog waits
        self.writing = False  # the loop watches it for writability
        self.missed = 0  # messages for it dropped since it was last told
        self.missed_header = (0, 0)  # msg_type, satype of the first of them


def error_reply_bytes(data: bytes, err: int, diagnostic: int) -> bytes:
    """The errno reply to a request that did not decode: its header, if it had one."""
    if len(data) >= _HEADER.size:
        _, msg_type, _, satype, _, _, seq, pid = _HEADER.unpack_from(data)
    else:
        msg_type, satype, seq, pid = 0, 0, 0, 0
    return _HEADER.pack(2, msg_type, err, satype, 2, diagnostic, seq, pid)


def missed_notice_bytes(msg_type: int, satype: int, missed: int) -> bytes:
    """What a client too slow to read is told once it has caught up: a base header with
    errno ENOBUFS (as Linux and illumos keysock report a full socket), the type of the
    first message it missed, and in sadb_msg_seq how many it missed; pid 0, as for
    messages the kernel originates (RFC 2367 §2.1)."""
    return _HEADER.pack(2, msg_type, errno.ENOBUFS, satype, 2, 0, min(missed, 0xFFFFFFFF), 0)


class PfkeyServer:
    """Serves PF_KEY on a SOCK_SEQPACKET socket at `path`, within an asyncio loop."""

    def __init__(
        self,
        path: str,
        handler: PfkeyHandler,
        clock: Callable[[], float] = time.time,
        option: str = "--pfkey-socket",
    ) -> None:
        self.path = path
        self.option = option  # where the path came from, for error messages
        self._handler = handler
        self._handle_bytes: BytesHandler | None = getattr(handler, "handle_pfkey_bytes", None)
        self._clock = clock
        self._clients: dict[int, _Client] = {}
        #: bound ahead of `start` by `larval run --user`, as root, and given to the user
        self.listener = UnixListener(path, socket.SOCK_SEQPACKET, option)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_name = 0
        self.log = LogLimiter(log)  # lines any client can provoke, per client
        self.missed = 0  # messages slow clients missed, every client together

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.listener.serve(self._accepted, self.log, self._clock)

    async def close(self) -> None:
        await self.listener.close()
        for client in list(self._clients.values()):
            self._drop(client)
        self.log.flush(float("inf"))

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- messages the stack originates (ACQUIRE, EXPIRE), from any thread -------------

    def emit(self, replies: list[PfkeyReply]) -> None:
        """Send stack-originated messages; callable from any thread."""
        if replies:
            self.emit_wire(_encoded(replies))

    def emit_wire(self, replies: list[WireReply]) -> None:
        """`emit` for messages encoded already (what the stack answered its own key
        manager, for the other sockets); callable from any thread."""
        loop = self._loop
        if loop is None or not replies:
            return
        if _in_loop_thread(loop):
            self._deliver(None, replies)
        else:
            loop.call_soon_threadsafe(self._deliver, None, replies)

    # -- the socket ---------------------------------------------------------------------

    def _accepted(self, sock: socket.socket) -> None:
        assert self._loop is not None
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
        for other in list(self._clients.values()):
            if other.promisc and other is not client:
                self._send(other, data)
        handle_bytes = self._handle_bytes
        if handle_bytes is not None:
            try:
                fast = handle_bytes(data, self._clock())
            except Exception:  # a bug must not take the socket down for everyone
                log.exception("%s: PF_KEY %s failed", client.name, data[1] if len(data) > 1 else 0)
                self._send(client, error_reply_bytes(data, errno.EIO, 0), own=True)
                return
            if fast is not None:
                self._deliver(client, fast)
                return
        try:
            msg = decode(data)
        except PfkeyError as e:
            self.log.log(self._clock(), client.name, logging.INFO,
                         "%s: refused a malformed PF_KEY message: %s", client.name, e)  # fmt: skip
            self._send(client, error_reply_bytes(data, e.errno, e.diagnostic), own=True)
            return
        if msg.msg_type == SadbMsgType.X_PROMISC:
            # illumos keysock: a non-zero satype turns promiscuous mode on, zero off.
            client.promisc = msg.satype != 0
            self._send(client, msg.encode(), own=True)
            return
        if msg.msg_type == SadbMsgType.REGISTER and msg.errno == 0:
            self._register(client, msg)
        try:
            replies = self._handler.handle_pfkey(msg, self._clock())
        except Exception:  # a bug must not take the socket down for everyone
            log.exception("%s: PF_KEY %s failed", client.name, msg.msg_type)
            self._send(client, error_reply_bytes(data, errno.EIO, 0), own=True)
            return
        self._deliver(client, _encoded(replies))

    def _register(self, client: _Client, msg: PfkeyMessage) -> None:
        ereg = msg.find(ExtType.X_EREG)
        if isinstance(ereg, SadbXEreg):
            client.extended.update(ereg.satypes)
        elif msg.satype != SaType.UNSPEC:
            client.registered.add(msg.satype)

    def _deliver(self, sender: _Client | None, replies: list[WireReply]) -> None:
        for data, audience, satype in replies:
            for client in list(self._clients.values()):
                if client.promisc or _wants(client, sender, audience, satype):
                    self._send(client, data, own=client is sender)

    # -- sending, with flow control -----------------------------------------------------

    def _send(self, client: _Client, data: bytes, own: bool = False) -> None:
        """Send `data` to `client`, or queue it. A reply to the client's own request
        (`own`) is never dropped: what does not fit waits in its backlog and the client
        is not read from meanwhile, so a DUMP of any size arrives whole. Anything else
        that does not fit is counted as missed, and the client told once it catches up."""
        if own and client.backlog:
            client.backlog.append(data)  # behind the replies already waiting
            return
        if not client.queue:
            try:
                client.sock.send(data)
                return
            except BlockingIOError:
                pass
            except OSError:
                self._drop(client)
                return
        if _has_room(client, len(data)):
            self._enqueue(client, data)
        elif own:
            client.backlog.append(data)
            self._pause(client)
        else:
            self._miss(client, data)

    def _enqueue(self, client: _Client, data: bytes) -> None:
        client.queue.append(data)
        client.queued_bytes += len(data)
        if not client.writing and self._loop is not None:
            self._loop.add_writer(client.sock.fileno(), self._writable, client)
            client.writing = True

    def _miss(self, client: _Client, data: bytes) -> None:
        if not client.missed:
            client.missed_header = (data[1], data[3]) if len(data) >= 4 else (0, 0)
        client.missed += 1
        self.missed += 1

    def _writable(self, client: _Client) -> None:
        while client.queue:
            try:
                client.sock.send(client.queue[0])
            except BlockingIOError:
                return
            except OSError:
                self._drop(client)
                return
            client.queued_bytes -= len(client.queue.popleft())
            self._refill(client)
        if self._loop is not None:
            self._loop.remove_writer(client.sock.fileno())
        client.writing = False
        if client.missed:
            self._tell_missed(client)

    def _refill(self, client: _Client) -> None:
        """Move waiting replies into the queue as it drains; read the client again once
        they are all queued."""
        while client.backlog and _has_room(client, len(client.backlog[0])):
            self._enqueue(client, client.backlog.popleft())
        if not client.backlog and client.paused and self._loop is not None:
            client.paused = False
            self._loop.add_reader(client.sock.fileno(), self._readable, client)

    def _pause(self, client: _Client) -> None:
        if not client.paused and self._loop is not None:
            client.paused = True
            self._loop.remove_reader(client.sock.fileno())

    def _tell_missed(self, client: _Client) -> None:
        msg_type, satype = client.missed_header
        self.log.log(self._clock(), client.name, logging.WARNING,
                     "%s: reads too slowly; missed %d message(s)", client.name,
                     client.missed)  # fmt: skip
        notice = missed_notice_bytes(msg_type, satype, client.missed)
        client.missed = 0
        self._send(client, notice, own=True)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        if self._loop is not None:
            if not client.paused:
                self._loop.remove_reader(fd)
            if client.writing:
                self._loop.remove_writer(fd)
        client.queue.clear()
        client.backlog.clear()
        client.sock.close()


def _encoded(replies: list[PfkeyReply]) -> list[WireReply]:
    return [WireReply(r.message.encode(), r.audience, r.message.satype) for r in replies]


def _has_room(client: _Client, size: int) -> bool:
    if not client.queue:
        return True  # one message always fits, however large
    return len(client.queue) < MAX_QUEUED and client.queued_bytes + size <= MAX_QUEUED_BYTES


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
