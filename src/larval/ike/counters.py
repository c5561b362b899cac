"""What a key manager's IKE SAs did, counted where it happens: plain integer increments
on the IKE path (a message taken or refused, a request resent or given up, a peer that
did not prove itself), read by the metrics endpoint (`larval.daemon.metrics`) when it
is scraped. One `IkeCounters` per key manager, shared by all its sessions and their
transports, so that two key managers in one process count apart.

Labels stay few and bounded: the exchange is a name of the version's exchange types, the
result one of `RESULTS`, a notify the name of a known type (else ``other``), an
authentication failure one of `AUTH_FAILURES`.
"""

from __future__ import annotations

__all__ = ["AUTH_FAILURES", "RESULTS", "IkeCounters"]

#: How an exchange (one request and its response, RFC 7296 §1) ended, seen from this end:
#: ``ok``; ``refused``: this end answered (or dropped) the peer's request with an error
#: notification; ``failed``: the peer's response carried one; ``timeout``: the request
#: went unanswered after every retransmission.
RESULTS = ("ok", "refused", "failed", "timeout")

#: Why an authentication failed: the peer's identity is not one configured (``identity``),
#: its certificate was not trusted (``certificate``), its AUTH or HASH did not verify
#: (``auth_data``: a wrong PSK, a bad signature), it used another method or rounds than
#: configured (``method``), EAP failed (``eap``), the peer refused this end's
#: (``peer_refused``), or this end could not prove itself (``own_credentials``).
AUTH_FAILURES = (
    "identity", "certificate", "auth_data", "method", "eap", "peer_refused", "own_credentials",
)  # fmt: skip


class IkeCounters:
    """A key manager's IKE event counters. Written on the event loop only; read as copies."""

    __slots__ = ("auth_failures", "errors_received", "errors_sent", "exchanges", "retransmits")

    def __init__(self) -> None:
        #: (IKE version, exchange name, result) -> exchanges.
        self.exchanges: dict[tuple[int, str, str], int] = {}
        #: Requests sent again for want of an answer (RFC 7296 §2.1).
        self.retransmits = 0
        #: Reason (one of `AUTH_FAILURES`) -> authentications that failed.
        self.auth_failures: dict[str, int] = {}
        #: (IKE version, notify name) -> error notifications sent to or received from peers.
        self.errors_sent: dict[tuple[int, str], int] = {}
        self.errors_received: dict[tuple[int, str], int] = {}

    def exchange(self, version: int, name: str, result: str) -> None:
        key = (version, name, result)
        self.exchanges[key] = self.exchanges.get(key, 0) + 1

    def auth_failed(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def error_sent(self, version: int, name: str) -> None:
        key = (version, name)
        self.errors_sent[key] = self.errors_sent.get(key, 0) + 1

    def error_received(self, version: int, name: str) -> None:
        key = (version, name)
        self.errors_received[key] = self.errors_received.get(key, 0) + 1
