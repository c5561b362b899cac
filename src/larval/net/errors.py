"""Errors of the I/O layer: devices and sockets that could not be opened or configured,
and offload metadata (virtio_net_hdr) that does not describe its packet."""

from __future__ import annotations

from larval.errors import LarvalError

__all__ = ["NetError", "OffloadError"]


class NetError(LarvalError):
    """A TUN device, socket or namespace could not be opened, configured or used.

    The message says what was attempted and what to do about it; the `OSError` that
    caused it, if any, is chained as `__cause__`.
    """


class OffloadError(NetError):
    """A packet read with a virtio_net_hdr cannot be segmented as its header says."""
