"""Which connection a responder's ISAKMP SA is of, once Phase 1 names the peer (strongSwan's
``phase1.c`` ``select_config``, called from ``aggressive_mode.c`` and ``main_mode.c``).

The key manager answers the opener with the connection that matches the addresses best
and hands the session the others that match them too (`Candidate`, best first). Phase 1
names the peer in its ID payload, and then the session may change connection:

* Aggressive Mode carries IDii in AM1, before anything is keyed: the responder takes the
  connection that takes that identity (its ``remote.id``: exact, wildcard, ``%any``) and
  one of the transforms offered with an authentication method it checks the peer by —
  the pre-shared key, and so the keys, of that connection. So road warriors with their
  own group PSKs and identities each land on their own connection.
* Main Mode names the peer only in MM5, encrypted with keys a pre-shared key made in MM3:
  the key is the one of the connection best by addresses (as strongSwan's
  ``find_shared_key`` takes the first for the addresses), and at MM5 only a connection
  keyed alike may take over — one with the same pre-shared key, or any for signatures
  (SKEYID of signatures holds no credential). A Main Mode client whose identity needs
  another connection's key is refused: its MM5 does not decrypt, or its IDii is not
  the connection's.

Among those that fit, the closest identity match wins (an exact identity before a
wildcard before ``%any``, strongSwan's ``id_match_t``), then the closest address match,
then the order configured. No CHILD_SA exists yet, so the ISAKMP SA may change
connection. When none fits and there was more than one, the message is refused with
INVALID_ID_INFORMATION and one WARNING line that says what each candidate lacked; with
one, Phase 1's own checks say why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from larval.ike.config import (
    ID_NONE,
    ChildPolicy,
    IkeConfig,
    identity_quality,
)
from larval.ike.identity import IdType as PeerIdType
from larval.ike.identity import describe_identity

from .auth import Phase1Authenticator, WallClock, phase1_authenticator
from .constants import NotifyType
from .errors import IkeV1AuthFailed, IkeV1ConfigError
from .payloads import IdPayload

if TYPE_CHECKING:  # remote_access builds on the ISAKMP SA, which builds on this
    from .remote_access import AddressPool

__all__ = ["Candidate", "Candidates", "Fits", "id_match", "select_connection"]


class Candidate(Protocol):
    """A connection the ISAKMP SA may be of, as the key manager hands it (the same as
    IKEv2's): its configuration between the SA's addresses, its policy and pools, how well
    its addresses matched, and `take`, which tells the key manager the SA is its now."""

    @property
    def config(self) -> IkeConfig: ...

    @property
    def child_policy(self) -> ChildPolicy | None: ...

    @property
    def address_pool(self) -> AddressPool | None: ...

    @property
    def address_quality(self) -> int: ...

    @property
    def take(self) -> Callable[[], None]: ...


#: The key manager's: the connections that matched the SA's addresses, best first.
Candidates = Callable[[], Sequence[Candidate]]

#: What Phase 1 asks of a candidate besides the identity: why its authenticator (made
#: from its configuration) cannot go on with this exchange, or None when it can.
Fits = Callable[[IkeConfig, Phase1Authenticator], str | None]


def id_match(config: IkeConfig, idii: IdPayload) -> int:
    """How closely the connection's remote identity takes IDii (ID_NONE: not at all)."""
    return identity_quality(config, idii.id_type, idii.data)


def select_connection(
    candidates: Sequence[Candidate], idii: IdPayload, fits: Fits, wall_clock: WallClock
) -> tuple[Candidate, Phase1Authenticator] | None:
    """The candidate that fits the peer's IDii best, with its authenticator (module
    docstring); None when there was one candidate only and it does not fit (Phase 1's
    own checks then name why). Raises `IkeV1AuthFailed` (INVALID_ID_INFORMATION) when
    there were more and none fits."""
    claimed = (PeerIdType(int(idii.id_type)), idii.data)
    fitting: list[tuple[int, int, int, Candidate, Phase1Authenticator]] = []
    refusals: list[str] = []
    for order, candidate in enumerate(candidates):
        config = candidate.config
        match = id_match(config, idii)
        if match == ID_NONE:
            refusals.append(f"{config.name}: another remote id")
            continue
        try:
            auth = phase1_authenticator(config, wall_clock)
        except IkeV1ConfigError:
            refusals.append(f"{config.name}: its ends authenticate by different methods")
            continue
        why = fits(config, auth)
        if why is not None:
            refusals.append(f"{config.name}: {why}")
            continue
        fitting.append((-match, -candidate.address_quality, order, candidate, auth))
    if not fitting:
        if len(candidates) <= 1:
            return None
        # Refused as any Phase 1 that does not prove the peer: one WARNING line.
        reason = f"no connection for IDii {describe_identity(*claimed)}: " + "; ".join(refusals)
        raise IkeV1AuthFailed(NotifyType.INVALID_ID_INFORMATION, reason, close=reason)
    *_, best, auth = min(fitting, key=lambda e: e[:3])
    return best, auth
