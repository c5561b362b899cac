"""A PF_KEY client of the stack's socket, for `larval sa` and for tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from larval.errors import LarvalError
from larval.net.unix_socket import check_path, why_unreachable
from larval.pfkey import PfkeyError, PfkeyMessage, SadbMsgType, decode

MAX_MESSAGE = 0xFFFF * 8


class PfkeyClientError(LarvalError):
    """The stack's PF_KEY socket could not be reached or answered nonsense."""


class PfkeyClient:
    """One PF_KEY socket: send requests, read the replies meant for them."""

    def __init__(self, path: str, timeout: float | None = 5.0, option: str = "--socket") -> None:
        check_path(path, option)
        self.path = path
        self.pid = os.getpid()
        self._seq = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise PfkeyClientError(
                f"cannot reach the PF_KEY socket {path}: {why_unreachable(path, e)}"
            ) from e

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> PfkeyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def send(self, msg: PfkeyMessage) -> None:
        try:
            self.sock.send(msg.encode())
        except OSError as e:  # the stack went away: EPIPE, ECONNRESET
            raise self._failed(e) from None

    def receive_bytes(self) -> bytes:
        """The next message as it came, undecoded (a monitor shows garbage as garbage)."""
        try:
            data = self.sock.recv(MAX_MESSAGE)
        except TimeoutError as e:
            raise PfkeyClientError(f"no answer from the PF_KEY socket {self.path}") from e
        except OSError as e:
            raise self._failed(e) from None
        if not data:
            raise PfkeyClientError(f"the stack closed the PF_KEY socket {self.path}")
        return data

    def receive(self) -> PfkeyMessage:
        data = self.receive_bytes()
        try:
            return decode(data)
        except PfkeyError as e:
            raise PfkeyClientError(f"the stack sent a malformed PF_KEY message: {e}") from e

    def _failed(self, e: OSError) -> PfkeyClientError:
        return PfkeyClientError(f"the PF_KEY socket {self.path} failed: {e.strerror or e}")

    def request(self, msg: PfkeyMessage) -> PfkeyMessage:
        """Send `msg` with our pid and the next seq; return the reply that answers it.

        Messages for other sockets' requests (broadcast ADDs, say) are skipped.
        """
        for reply in self.request_all(msg):
            return reply
        raise PfkeyClientError("no reply")  # pragma: no cover - request_all yields once

    def request_all(self, msg: PfkeyMessage) -> Iterator[PfkeyMessage]:
        """Send `msg`; yield its replies (one, or each SA of a DUMP until its end)."""
        seq = self.next_seq()
        msg = PfkeyMessage(
            msg.msg_type, msg.satype, seq=seq, pid=self.pid, extensions=msg.extensions
        )
        self.send(msg)
        dump = msg.msg_type == SadbMsgType.DUMP
        while True:
            reply = self.receive()
            if reply.pid != self.pid or reply.msg_type != msg.msg_type:
                continue
            if dump:
                # illumos keysock ends a dump with a lone base header of seq 0.
                if reply.errno or (reply.seq == 0 and not reply.extensions):
                    if reply.errno:
                        yield reply
                    return
                if reply.seq == seq:
                    yield reply
                continue
            if reply.seq == seq:
                yield reply
                return
