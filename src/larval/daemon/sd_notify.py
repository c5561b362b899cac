"""systemd's readiness protocol (sd_notify(3)), for ``Type=notify`` units: one datagram
``READY=1`` to the AF_UNIX socket in ``$NOTIFY_SOCKET`` once everything is up, and
``STOPPING=1`` as the stop begins. Without ``$NOTIFY_SOCKET`` (not under systemd) it does
nothing; a socket that does not answer is logged, never raised: readiness is advice."""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify"]

log = logging.getLogger("larval.daemon")


def notify(state: str) -> bool:
    """Send `state` (``READY=1``); True if it was sent."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return False
    # A leading "@" names a socket in the abstract namespace.
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as e:
        log.warning("NOTIFY_SOCKET %s: %s not sent: %s", where, state, e.strerror or e)
        return False
    return True
