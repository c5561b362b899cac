"""NAT keepalives (RFC 3948 §2.3): when to send the one-byte 0xFF datagram to a peer.

A NAT forgets a UDP mapping that carries nothing for a while; a host behind one keeps
the mapping of its UDP 4500 flow open by sending a NAT-keepalive packet, a UDP payload
of the single byte 0xFF, to the peer's port (4500, or the port the NAT gave it) when it
has sent nothing else to that peer within the keepalive interval. RFC 3948 leaves the
interval to the implementation and says it must be configurable; 20 seconds is the
common default (strongSwan's `keep_alive`), shorter than the shortest UDP mapping
lifetimes RFC 4787 §4.3 reports.

`NatKeepalive` is sans-I/O: the dataplane tells it what it sent (`note_sent`, or a
`last_sent` mapping of its own) and asks, from its outbound loop, which keepalives are
`due(now, peers)`; `get_timer(peers)` says when to ask again. Peers are
(packed address, UDP port) pairs, as in `Datagram`. Which peers need keepalives (those
behind a NAT, RFC 3948 §2.3, as IKE's NAT detection found, RFC 7296 §2.23) is the
caller's choice: it passes only those.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from larval.esp.udp_encap import NAT_KEEPALIVE
from larval.stack.packet_path import Datagram

__all__ = ["DEFAULT_INTERVAL", "NatKeepalive", "Peer"]

DEFAULT_INTERVAL = 20.0  # seconds

Peer = tuple[bytes, int]  # packed IP address, UDP port


class NatKeepalive:
    """Per-peer keepalive timers: at most one keepalive per `interval` per peer, and none
    to a peer that was sent anything else within the interval.

    Thread-safe: sends noted from a release callback may meet the outbound loop here.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError(f"keepalive interval {interval}: must be positive seconds")
        self.interval = interval
        self.sent = 0  # keepalives handed out by `due`
        self._last: dict[Peer, float] = {}  # last datagram of any kind to the peer
        self._lock = threading.Lock()

    def note_sent(self, peer: Peer, now: float) -> None:
        """Something (ESP, IKE) went to `peer` at `now`: it keeps the mapping open too."""
        with self._lock:
            if now > self._last.get(peer, now - 1.0):
                self._last[peer] = now

    def due(
        self,
        now: float,
        peers: Iterable[Peer],
        last_sent: Mapping[Peer, float] | None = None,
    ) -> list[Datagram]:
        """The keepalives to send at `now` to `peers`, each counted as sent at `now`.

        `last_sent`, if given, adds the caller's own record of when it last sent to each
        peer. A peer seen for the first time starts its timer now (the IKE exchange that
        made it a peer has just opened the mapping). Peers not in `peers` are forgotten.
        """
        out: list[Datagram] = []
        with self._lock:
            last = self._last
            seen: dict[Peer, float] = {}
            for peer in peers:
                times = [t for t in (last.get(peer), (last_sent or {}).get(peer)) if t is not None]
                previous = max(times) if times else now
                if now - previous >= self.interval:
                    out.append(Datagram(NAT_KEEPALIVE, peer[0], peer[1]))
                    previous = now
                seen[peer] = previous
            self._last = seen
            self.sent += len(out)
        return out

    def get_timer(self, peers: Iterable[Peer] | None = None) -> float | None:
        """When the next keepalive falls due (for `peers`, or every peer known); None
        when no peer is known. Sends noted in the meantime only push it later."""
        with self._lock:
            if peers is None:
                times = list(self._last.values())
            else:
                times = [self._last[p] for p in peers if p in self._last]
        return min(times) + self.interval if times else None

    def forget(self, peer: Peer) -> None:
        """`peer` is gone (its SAs deleted): no more keepalives for it."""
        with self._lock:
            self._last.pop(peer, None)

    def __repr__(self) -> str:
        return f"NatKeepalive(interval={self.interval}, peers={len(self._last)})"
