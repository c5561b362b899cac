"""EAP-Identity (RFC 3748 §5.1) on the server's side: ask the peer who it is.

    server                                 peer
    Request  Identity             ->
                                  <-  Response  Identity "carol"

It authenticates nothing: it yields the name a method then checks (EAP-MD5 looks its
password up by it; EAP-MSCHAPv2 by the name in its own Response), so it ends done with
``identity`` set and no MSK. The method that follows continues the Identifiers:
``identifier=server.identifier + 1`` (RFC 3748 §4.1, each new Request a new one).
Peers answer Identity themselves (`EapMethodMachine._answer_identity`).
"""

from __future__ import annotations

import enum
from typing import ClassVar

from larval.crypto.randomness import RandomBytes, system_random

from .errors import EapError
from .method import EapMethodMachine
from .packet import EapPacket, EapType

__all__ = ["IdentityServer"]

#: RFC 3748 §5.1 leaves the size open; a name longer than an NAI's 253 octets (RFC 7542
#: §2.2) is not a user of this gateway.
_MAX_IDENTITY = 253


class IdentityState(enum.Enum):
    START = "start"
    REQUEST_SENT = "request sent"


class IdentityServer(EapMethodMachine[IdentityState]):
    """Sends the Identity Request and takes the peer's name from its Response."""

    is_server = True
    method = EapType.IDENTITY
    label = "EAP-Identity"
    opening = (IdentityState.START, IdentityState.REQUEST_SENT)
    transitions: ClassVar = {
        (IdentityState.REQUEST_SENT, "IDENTITY Response"): "_on_identity",
    }

    def __init__(
        self, random: RandomBytes = system_random, *, identifier: int | None = None
    ) -> None:
        # The Identity Request has no displayable message: `start`'s default, no data.
        super().__init__(IdentityState.START, random, identifier)

    def _on_identity(self, packet: EapPacket) -> EapPacket | None:
        try:
            name = packet.data.decode("utf-8")
        except UnicodeDecodeError:
            raise EapError("EAP Identity Response: the identity is not UTF-8") from None
        if not name:
            raise EapError("EAP Identity Response: empty identity")
        if len(packet.data) > _MAX_IDENTITY:
            raise EapError(
                f"EAP Identity Response: identity of {len(packet.data)} bytes, "
                f"longer than {_MAX_IDENTITY}"
            )
        self.identity = name
        self._end_succeeded(None)
        return None
