"""What the I/O layer's sockets, devices and endpoints share: a `with` block closes them,
and a bound socket answers for its address, descriptor and timeout the same way."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Self

__all__ = ["BoundSocket", "Closeable"]


class Closeable:
    """An object that is its own context manager: entering returns it, leaving the block
    calls `close`, whatever happened inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BoundSocket(Closeable):
    """A socket bound to a local address, wrapped by `UdpSocket` and `RawEspSocket`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.family = socket.AddressFamily(sock.family)

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        """Blocking calls raise `TimeoutError` after `timeout` seconds (None: never)."""
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()
