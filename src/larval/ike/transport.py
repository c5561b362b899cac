"""The transport of one IKE SA: message IDs, the window, retransmission, cached replies and
fragments, apart from the exchanges (as aioquic keeps loss recovery out of its connection).

Theory of operation
-------------------
An exchange hands the transport a message and gets messages back; it never counts
retransmissions. Sending::

    mid = transport.new_message_id()          # if transport.window_open()
    datagrams = transport.frame(message)      # whole, or in fragments
    transport.send_request(mid, datagrams, now, text)
    transport.reply(mid, datagrams, addr)     # an answer, kept for a retransmitted request
    transport.send(datagrams)                 # once, kept nowhere

Receiving: `receive(data, addr, message_id, is_response)` says whether a datagram is
`Verdict.NEW` (for the exchanges), `REPLAYED` (a retransmitted request, whose cached reply
went out again: RFC 7296 §2.1) or `DROPPED` (outside the window, or a response nobody
awaits); `unframe(data)` turns what is new into a message, or into None while fragments
are missing; `answered(mid)` stops the retransmission of the request a response answers.
IKEv1 knows a retransmission only by its bytes: what is sent between `mark()` and
`remember(data, mark)` is the reply that goes again when `data` comes again.

Time is passed in, as everywhere in larval: `get_timer()` is the next retransmission,
`handle_timer(now)` resends what is due (every fragment again, RFC 7383 §2.6.2) with
exponential back-off and returns the requests given up, and `datagrams_to_send(now)`
drains what is to go, each datagram with its address.

`snapshot()` is the transport's part of an IKE SA as a value (`larval.ike.state`): the
peer's address, the Message IDs both ways, the requests awaiting answers and the cached
replies; `restore(state)` puts them back into a new transport.

What differs between the versions is plugged in: a `MessageIdPolicy` (IKEv2's sequential
IDs and window, `WindowedIds`; IKEv1's random ID per exchange, `RandomIds`) and a `Framing`
(each version's protection and fragment encoding, in its own package, reassembling
through `larval.ike.reassembly`).
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from . import IKE_PORT
from .config import IkeConfig
from .counters import IkeCounters
from .state import CachedReply, IkeStateError, PendingRequest, TransportState

__all__ = [
    "Address",
    "Framing",
    "GaveUp",
    "IkeTransport",
    "MessageIdPolicy",
    "OverTransport",
    "RandomIds",
    "Request",
    "Retransmission",
    "Verdict",
    "WindowedIds",
]

Address = tuple[str, int]
#: A request made anew for each retransmission: its new Message ID and datagrams.
Renew = Callable[[], tuple[int, tuple[bytes, ...]]]
M = TypeVar("M")
log = logging.getLogger("larval.ike")


@dataclass(frozen=True, slots=True)
class Retransmission:
    """When an unanswered request goes again (RFC 7296 §2.1, strongSwan's defaults):
    `timeout` after the first transmission, then each wait `base` times the one before;
    after `tries` retransmissions the request is given up."""

    timeout: float = 4.0
    base: float = 1.8
    tries: int = 5

    def delay(self, retransmits: int) -> float:
        """The wait after a request's transmission number `retransmits` + 1."""
        return self.timeout * self.base**retransmits


@dataclass(slots=True)
class Request:
    """A request that waits for its answer, as it went out."""

    message_id: int
    datagrams: tuple[bytes, ...]  # the message, or each of its fragments
    sent_at: float
    due: float
    text: str = ""  # how log lines name it
    retransmits: int = 0
    renew: Renew | None = None  # each retransmission a new message (IKEv1's R-U-THERE)

    def round_trip(self, now: float) -> float | None:
        """The round trip its answer took, or None when it was resent: by Karn's rule a
        round trip is measured only on a message sent once."""
        return now - self.sent_at if self.retransmits == 0 else None


@dataclass(frozen=True, slots=True)
class GaveUp:
    """A request that went unanswered `transmissions` times and is resent no more."""

    message_id: int
    text: str
    transmissions: int


class Verdict(enum.Enum):
    NEW = "new"  # for the exchanges
    REPLAYED = "replayed"  # a retransmitted request: its cached reply went out again
    DROPPED = "dropped"  # outside the window, or a response no request of ours awaits


class MessageIdPolicy(Protocol):
    """How a version numbers its messages and recognises a retransmitted request."""

    #: How many replies are kept for retransmitted requests.
    replies_kept: int
    #: A replayed reply goes where the retransmission came from, not to the peer's address.
    reply_to_sender: bool

    def next_request(self, outstanding: Collection[int]) -> int:
        """The Message ID of the next request (`outstanding`: those awaiting answers)."""
        ...

    def sent(self, message_id: int) -> None:
        """A request went out with `message_id`."""
        ...

    def window_open(self, outstanding: Collection[int]) -> bool:
        """May another request go out now?"""
        ...

    def reply_key(self, data: bytes, message_id: int) -> Hashable:
        """What a request is known by in the cache of replies."""
        ...

    def in_window(self, message_id: int) -> bool:
        """Is a request with `message_id`, not a retransmission, one to take?"""
        ...

    def replied(self, message_id: int) -> None:
        """The request `message_id` was answered."""
        ...

    def counters(self) -> tuple[int, int]:
        """Our next request's Message ID and the peer's, where the version counts them."""
        ...

    def set_counters(self, ours: int, peer: int) -> None:
        """Count on from `counters()` as a snapshot kept them."""
        ...


class WindowedIds:
    """IKEv2 (RFC 7296 §2.2, §2.3): each end numbers its requests from 0, one after the
    other, and a response carries its request's ID; `window` requests may be
    unanswered at once (1, as both ends announce by default). A peer's request is taken
    only with the ID that follows the last one answered; one with that last ID again is
    a retransmission, answered from the cache."""

    replies_kept = 1
    reply_to_sender = True  # RFC 7296 §2.11: where the request came from

    def __init__(self, window: int = 1) -> None:
        self.window = window
        self.next = 0  # our next request's
        self.expected = 0  # the peer's next request's

    def next_request(self, outstanding: Collection[int]) -> int:
        return self.next

    def sent(self, message_id: int) -> None:
        self.next = message_id + 1

    def window_open(self, outstanding: Collection[int]) -> bool:
        return len(outstanding) < self.window

    def reply_key(self, data: bytes, message_id: int) -> Hashable:
        return message_id

    def in_window(self, message_id: int) -> bool:
        return message_id == self.expected

    def replied(self, message_id: int) -> None:
        self.expected = message_id + 1

    def counters(self) -> tuple[int, int]:
        return self.next, self.expected

    def set_counters(self, ours: int, peer: int) -> None:
        self.next, self.expected = ours, peer


class RandomIds:
    """IKEv1 (RFC 2408 §3.1): Phase 1 messages carry Message ID 0, and each other exchange
    a random one of its own, unique among those under way, never 0. Any number of
    exchanges may be under way. Phase 1 has nothing to tell a retransmission by, so a
    datagram received again, byte for byte, is one, and gets again everything that was
    sent in reply to it."""

    replies_kept = 32
    reply_to_sender = False

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random = random_bytes

    def next_request(self, outstanding: Collection[int]) -> int:
        while True:
            mid = int.from_bytes(self._random(4), "big")
            if mid and mid not in outstanding:
                return mid

    def sent(self, message_id: int) -> None:
        pass

    def window_open(self, outstanding: Collection[int]) -> bool:
        return True

    def reply_key(self, data: bytes, message_id: int) -> Hashable:
        return hashlib.sha256(data).digest()

    def in_window(self, message_id: int) -> bool:
        return True

    def replied(self, message_id: int) -> None:
        pass

    def counters(self) -> tuple[int, int]:
        return 0, 0  # random IDs: nothing is counted

    def set_counters(self, ours: int, peer: int) -> None:
        pass


class Framing(Protocol[M]):
    """A version's messages as datagrams and back: protected, cut into fragments when too
    long for the path, and put back together."""

    def frame(self, message: M) -> tuple[bytes, ...]:
        """The datagrams that carry `message`: the message whole, or its fragments."""
        ...

    def unframe(self, data: bytes, clear: M | None = None) -> M | None:
        """The message `data` carries, or None while fragments of it are missing.
        `clear`: what the receiver already read of `data` in the clear (IKEv2: its
        header and cleartext chain), for the version to use rather than read again."""
        ...


class IkeTransport(Generic[M]):
    """Message IDs, outstanding requests, cached replies and fragments of one IKE SA."""

    def __init__(
        self,
        ids: MessageIdPolicy,
        framing: Framing[M],
        remote: Address,
        schedule: Retransmission,
        name: Callable[[], str] = str,
        counters: IkeCounters | None = None,
    ) -> None:
        """`remote`: where requests and their retransmissions go (the session moves it when
        the peer floats behind a NAT); `name`: how log lines name the IKE SA; `counters`:
        the key manager's, where retransmissions are counted."""
        self.counters = counters if counters is not None else IkeCounters()
        self.ids = ids
        self.framing = framing
        self.remote = remote
        self.schedule = schedule
        self._name = name
        self._outstanding: dict[int, Request] = {}
        self._replies: OrderedDict[Hashable, tuple[tuple[bytes, ...], str]] = OrderedDict()
        self._outbox: list[tuple[bytes, Address]] = []

    @classmethod
    def of(
        cls, config: IkeConfig, ids: MessageIdPolicy, framing: Framing[M], name: Callable[[], str],
        counters: IkeCounters | None = None,
    ) -> IkeTransport[M]:  # fmt: skip
        """The transport of an IKE SA of `config`: to the peer's IKE port, on the
        configured retransmission schedule."""
        schedule = Retransmission(
            config.retransmit_timeout, config.retransmit_base, config.retransmit_tries
        )
        return cls(ids, framing, (str(config.remote_addr), IKE_PORT), schedule, name, counters)

    # -- sending ---------------------------------------------------------------------------

    def window_open(self) -> bool:
        """May a new request go out now (RFC 7296 §2.3)?"""
        return self.ids.window_open(self._outstanding)

    def new_message_id(self) -> int:
        """The Message ID for the next request."""
        return self.ids.next_request(self._outstanding)

    def frame(self, message: M) -> tuple[bytes, ...]:
        return self.framing.frame(message)

    def send_request(
        self,
        message_id: int,
        datagrams: tuple[bytes, ...],
        now: float,
        text: str = "",
        renew: Renew | None = None,
    ) -> None:
        """Send a request and resend it until `answered` or given up: the same datagrams
        again, or with `renew` what it makes each time (RFC 3706 §5.5 gives every
        R-U-THERE its own sequence number), on the same schedule."""
        self.ids.sent(message_id)
        due = now + self.schedule.delay(0)
        self._outstanding[message_id] = Request(message_id, datagrams, now, due, text, 0, renew)
        self._outbox.extend((d, self.remote) for d in datagrams)

    def reply(
        self,
        message_id: int,
        datagrams: tuple[bytes, ...],
        addr: Address | None = None,
        text: str = "",
    ) -> None:
        """Answer the request `message_id` and keep the answer for its retransmissions,
        where requests are known by Message ID (IKEv2); where they are known by their
        bytes (IKEv1), `remember` keeps what was sent in answer."""
        self.ids.replied(message_id)
        self._keep(self.ids.reply_key(b"", message_id), datagrams, text)
        self.send(datagrams, addr)

    def send(self, datagrams: tuple[bytes, ...], addr: Address | None = None) -> None:
        """Send once, to `addr` or the peer, and keep nothing."""
        to = addr or self.remote
        self._outbox.extend((d, to) for d in datagrams)

    def mark(self) -> int:
        """Where `remember` starts counting what was sent."""
        return len(self._outbox)

    def remember(self, data: bytes, since: int) -> None:
        """Everything sent since `mark` answers the datagram `data`: it goes again if
        `data` comes again (IKEv1, where a retransmission is known only by its bytes)."""
        sent = tuple(d for d, _ in self._outbox[since:])
        self._keep(self.ids.reply_key(data, 0), sent, "")

    def _keep(self, key: Hashable, datagrams: tuple[bytes, ...], text: str) -> None:
        self._replies[key] = (datagrams, text)
        self._replies.move_to_end(key)
        while len(self._replies) > self.ids.replies_kept:
            self._replies.popitem(last=False)

    # -- receiving -------------------------------------------------------------------------

    def receive(
        self,
        data: bytes,
        addr: Address,
        message_id: int = 0,
        is_response: bool | None = None,
        *,
        first_fragment: bool = True,
    ) -> Verdict:
        """What to do with a datagram: take it, or not (a replayed reply goes out here).

        `is_response` is None where the version does not say (IKEv1). Of a fragmented
        request only fragment 1 brings the cached reply back (RFC 7383 §2.6.1)."""
        if is_response:
            return Verdict.NEW if message_id in self._outstanding else Verdict.DROPPED
        cached = self._replies.get(self.ids.reply_key(data, message_id))
        if cached is not None:
            if first_fragment:
                self.send(cached[0], addr if self.ids.reply_to_sender else None)
            return Verdict.REPLAYED
        return Verdict.NEW if self.ids.in_window(message_id) else Verdict.DROPPED

    def reply_text(self, data: bytes, message_id: int) -> str:
        """How log lines name the cached reply to a request."""
        cached = self._replies.get(self.ids.reply_key(data, message_id))
        return cached[1] if cached is not None else ""

    def unframe(self, data: bytes, clear: M | None = None) -> M | None:
        return self.framing.unframe(data, clear)

    def answered(self, message_id: int) -> Request | None:
        """The answer to request `message_id` came: it is resent no more."""
        return self._outstanding.pop(message_id, None)

    def outstanding(self) -> Collection[int]:
        """The Message IDs of the requests that await their answers."""
        return self._outstanding.keys()

    def cancel(self, message_id: int | None = None) -> None:
        """Resend the request `message_id` no more, or none at all (the IKE SA is gone);
        cached replies still answer."""
        if message_id is None:
            self._outstanding.clear()
        else:
            self._outstanding.pop(message_id, None)

    # -- as a value (larval.ike.state) --------------------------------------------------------

    def snapshot(self) -> TransportState:
        ours, peer = self.ids.counters()
        requests = tuple(
            PendingRequest(
                r.message_id, r.datagrams, r.sent_at, r.due, r.text, r.retransmits,
                r.renew is not None,
            )
            for r in self._outstanding.values()
        )  # fmt: skip
        replies = tuple(
            CachedReply(k, d, t)
            for k, (d, t) in self._replies.items()
            if isinstance(k, int | bytes)
        )
        return TransportState(self.remote, ours, peer, requests, replies)

    def restore(self, state: TransportState, renew: Mapping[int, Renew] | None = None) -> None:
        """Take up where `state` was: the requests await their answers again, on their
        schedule; `renew` gives back the makers of those made anew for each retransmission,
        by Message ID. Nothing queued to send is kept, nor a partly received message."""
        renew = renew or {}
        self.remote = state.remote
        self.ids.set_counters(state.next_message_id, state.expected_message_id)
        self._outstanding.clear()
        for r in state.requests:
            maker = renew.get(r.message_id)
            if r.renews and maker is None:
                raise IkeStateError(f"request {r.message_id:#x} ({r.text}) is made anew: no maker")
            self._outstanding[r.message_id] = Request(
                r.message_id, r.datagrams, r.sent_at, r.due, r.text, r.retransmits, maker
            )
        self._replies.clear()
        for reply in state.replies:
            self._keep(reply.key, reply.datagrams, reply.text)

    # -- time --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        outstanding = self._outstanding
        if not outstanding:  # most calls: nothing sent unanswered
            return None
        return min(r.due for r in outstanding.values())

    def handle_timer(self, now: float) -> list[GaveUp]:
        """Resend every request that is due; the requests given up, oldest first."""
        gave_up = []
        for request in list(self._outstanding.values()):
            if now < request.due:
                continue
            if request.retransmits >= self.schedule.tries:
                del self._outstanding[request.message_id]
                transmissions = request.retransmits + 1
                gave_up.append(GaveUp(request.message_id, request.text, transmissions))
                continue
            request.retransmits += 1
            self.counters.retransmits += 1
            request.due = now + self.schedule.delay(request.retransmits)
            if request.renew is not None:
                del self._outstanding[request.message_id]
                request.message_id, request.datagrams = request.renew()
                self._outstanding[request.message_id] = request
            log.debug("%s: retransmit %d of %s", self._name(), request.retransmits, request.text)
            # RFC 7383 §2.6.2: every fragment again, with the same Message ID.
            self._outbox.extend((d, self.remote) for d in request.datagrams)
        return gave_up

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out


class OverTransport:
    """What an IKE SA machine takes from its transport: where the peer is (a NAT may move
    it: RFC 7296 §2.23, RFC 3947 §4), and the datagrams to send."""

    _transport: IkeTransport[Any]

    @property
    def counters(self) -> IkeCounters:
        """The key manager's event counters (`larval.ike.counters`), which the transport
        counts retransmissions in and the IKE SA its exchanges."""
        return self._transport.counters

    @counters.setter
    def counters(self, counters: IkeCounters) -> None:
        self._transport.counters = counters

    @property
    def remote(self) -> Address:
        """Where the peer is: requests, answers and retransmissions go there."""
        return self._transport.remote

    @remote.setter
    def remote(self, addr: Address) -> None:
        self._transport.remote = addr

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return self._transport.datagrams_to_send(now)
