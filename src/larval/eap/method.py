"""What every EAP method machine shares: bytes in, bytes out, one table, one way to fail.

A method machine is sans-I/O and has no clock: the server's `start()` gives the first
Request, and `receive(data)` takes the other end's packet and gives the packet to send
back, or None. Retransmission and timeouts belong to the layer that carries EAP (IKEv2
retransmits its IKE_AUTH requests, RFC 7296 §2.1), so a machine never waits.

Each machine's transitions are one table, ``(state, input) -> handler``: the input is
what the packet is (`describe`), and a pair the table lacks ends the conversation with a
reason naming both. A packet that does not decode ends it the same way, with the
`EapError`'s message. That happens in one place, the receive path: a server answers with an EAP
Failure, a peer sends nothing. So bad input never raises out of a machine.

The outcome: ``done`` once no further packet is expected; ``failed`` the reason as soon as
the outcome is a failure (a server may still send its method's failure notice and wait
for the acknowledgement before it is done); ``msk`` the Master Session Key once done
without failure, for methods that derive one. Reasons name the user and what went wrong,
never a password, an NT hash or a key; ``repr`` shows the state and the user only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import ClassVar, Generic, TypeVar, cast

from larval.crypto.randomness import RandomBytes

from .errors import EapError
from .packet import EapCode, EapPacket, EapType, Nak

__all__ = ["EapMethodMachine", "Lookup", "describe"]

#: A user name as the peer presented it → that user's password, or None if unknown.
Lookup = Callable[[str], str | None]

State = TypeVar("State", bound=enum.Enum)


def describe(packet: EapPacket) -> str:
    """What a packet is, in words, for the transition tables and the reasons."""
    name = packet.code.name.title()
    if packet.type is None:
        return f"EAP {name}"
    return f"{packet.type.name} {name}"


class EapMethodMachine(Generic[State]):
    """The shared half of a server or peer (see the module's docstring).

    A subclass sets ``is_server``, its `transitions` and its start state, and returns
    its answer as an `EapPacket` from the handlers; raising `EapError` in a handler
    fails the conversation with that message.
    """

    is_server: ClassVar[bool]
    method: ClassVar[EapType]
    #: The method's name in reasons: ``EAP-MD5``, ``EAP-TLS``.
    label: ClassVar[str]
    #: ``(state, input)`` → handler; an input is the `input_of` a packet.
    transitions: ClassVar[Mapping[tuple[enum.Enum, str], str]]
    #: A server's states before and after `start`.
    opening: ClassVar[tuple[enum.Enum, enum.Enum]]
    #: A peer's reason when the server ends with EAP Failure (``{identity!r}`` filled in).
    refused: ClassVar[str] = "{label}: the server refused user {identity!r} (EAP Failure)"

    def __init__(self, state: State, random: RandomBytes, identifier: int | None = None) -> None:
        self.state = state
        self._random = random
        #: A server's: the Identifier of its outstanding Request; the first one drawn from
        #: `random` unless the carrying layer gives it (EAP-Identity ran before, RFC 3748
        #: §4.1).
        self.identifier = random(1)[0] if identifier is None else identifier
        self.done = False
        self.failed: str | None = None
        self.identity: str | None = None
        self._msk: bytes | None = None
        #: The MSK a method derived, held until the conversation ends well.
        self._pending_msk: bytes | None = None
        self._last_request = b""
        self._last_response = b""

    @property
    def msk(self) -> bytes | None:
        """The MSK once the method succeeded and derives one; None otherwise."""
        if self.done and self.failed is None:
            return self._msk
        return None

    def __repr__(self) -> str:
        outcome = "failed" if self.failed else "done" if self.done else "running"
        return (
            f"{type(self).__name__}(state={self.state.name}, identity={self.identity!r}, {outcome})"
        )

    # -- the server's first Request -----------------------------------------------------

    def start(self) -> bytes:
        """A server's first Request: its method's `_opening_data`, under `identifier`."""
        if not self.is_server:
            raise EapError(f"{self.label} peer: start() is a server's")
        before, after = self.opening
        if self.state is not before:
            raise EapError(f"{self.label} server: start() in state {self.state.name}")
        data = self._opening_data()
        self.state = cast(State, after)  # a ClassVar cannot name the class's State
        return EapPacket.request(self.identifier, self.method, data).encode()

    def _opening_data(self) -> bytes:
        """The Type-Data of a server's first Request (none unless the method has some)."""
        return b""

    # -- the one receive path ---------------------------------------------------------

    def input_of(self, packet: EapPacket) -> str:
        """The table's input for ``packet``; methods refine their own type's messages.

        A peer sees every Request of a type other than Identity, Notification and its
        method as one input, ``other Request``, which it answers with a Nak.
        """
        if (
            not self.is_server
            and packet.code is EapCode.REQUEST
            and packet.type not in (EapType.IDENTITY, EapType.NOTIFICATION, self.method)
        ):
            return "other Request"
        return describe(packet)

    def receive(self, data: bytes) -> bytes | None:
        """Take the other end's EAP packet; return the packet to send back, or None."""
        if self.done:
            return None
        if not self.is_server and data == self._last_request and self._last_response:
            # RFC 3748 §4.1: a peer answers a retransmitted Request with the same Response.
            return self._last_response
        answer = self._receive(data)
        if not self.is_server and answer is not None:
            self._last_request, self._last_response = data, answer
        return answer

    def _receive(self, data: bytes) -> bytes | None:
        try:
            packet = EapPacket.decode(data)
            self._check_direction(packet)
            key = (self.state, self.input_of(packet))
            handler = self.transitions.get(key)
            if handler is None:
                raise EapError(f"{key[1]} unexpected in state {self.state.name}")
            answer: EapPacket | None = getattr(self, handler)(packet)
        except EapError as exc:
            return self._end_failed(str(exc))
        return None if answer is None else answer.encode()

    def _check_direction(self, packet: EapPacket) -> None:
        if self.is_server:
            if packet.code is not EapCode.RESPONSE:
                raise EapError(f"{describe(packet)} from the peer, which sends only Responses")
            if packet.identifier != self.identifier:
                # RFC 3748 §4.1: a Response matches the outstanding Request's Identifier.
                raise EapError(
                    f"{describe(packet)} with Identifier {packet.identifier}, "
                    f"the Request's was {self.identifier}"
                )
        elif packet.code is EapCode.RESPONSE:
            raise EapError(f"{describe(packet)} from the server, which sends no Responses")

    # -- ends -------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """Record the failure (the first reason stays), without ending yet."""
        if self.failed is None:
            self.failed = reason

    def _end_failed(self, reason: str) -> bytes | None:
        self._fail(reason)
        self.done = True
        if self.is_server:
            # RFC 3748 §4.2: the Failure carries the Identifier of the Response it answers.
            return EapPacket.failure(self.identifier).encode()
        return None

    def _end_succeeded(self, msk: bytes | None) -> None:
        self._msk = msk
        self.done = True

    def _end_refused(self, reason: str) -> EapPacket:
        """Server: the conversation fails for `reason`, ended with EAP Failure."""
        self._fail(reason)
        self.done = True
        return EapPacket.failure(self.identifier)

    def _next_request(self, data: bytes) -> EapPacket:
        """A new Request of this method, under the next Identifier (RFC 3748 §4.1)."""
        self.identifier = (self.identifier + 1) & 0xFF
        return EapPacket.request(self.identifier, self.method, data)

    def _peer_declined(self, packet: EapPacket) -> EapPacket | None:
        """Server: the peer answered with a Nak, it will not run this method."""
        nak = Nak.decode(packet.data)
        raise EapError(f"the peer declined {self.method.name}; it would take {nak.describe()}")

    # -- what a peer answers whatever its method ----------------------------------------

    def _answer_identity(self, packet: EapPacket) -> EapPacket:
        """RFC 3748 §5.1: the peer's identity, the user name it authenticates as."""
        assert self.identity is not None
        return EapPacket.response(packet.identifier, EapType.IDENTITY, self.identity.encode())

    def _answer_notification(self, packet: EapPacket) -> EapPacket:
        """RFC 3748 §5.2: a Notification is acknowledged with an empty one."""
        return EapPacket.response(packet.identifier, EapType.NOTIFICATION)

    def _on_eap_success(self, packet: EapPacket) -> EapPacket | None:
        """Peer: the server's EAP Success once the method's own exchange is over (RFC 3748
        §4.2); the MSK the method derived, if any, is now the outcome."""
        self._end_succeeded(self._pending_msk)
        return None

    def _on_eap_failure(self, packet: EapPacket) -> EapPacket | None:
        """Peer: the server's EAP Failure ends the conversation (RFC 3748 §4.2)."""
        self._fail(self.refused.format(label=self.label, identity=self.identity))
        self.done = True
        return None

    def _answer_other(self, packet: EapPacket) -> EapPacket:
        """RFC 3748 §5.3.1: a Request for a method this peer does not run gets a Nak
        naming the one it does."""
        return EapPacket.response(packet.identifier, EapType.NAK, Nak((self.method,)).encode())
