"""Which connection a responder's IKE SA is of, once IKE_AUTH says who the peer is
(strongSwan's peer-config selection: ``backend_manager.c`` ranks the candidates,
``ike_auth.c`` switches to the best).

IKE_SA_INIT is answered by the connection that matches the addresses best (the key
manager's choice). The first IKE_AUTH request then names the peer (IDi), the identity
it wants of this end (IDr, optional) and how it authenticates (an AUTH payload of a
shared key or a signature; none at all: EAP, RFC 7296 §2.16). Among the connections
that matched the addresses (`Candidate`), those are kept that

* take the peer's IDi (its ``remote.id``: an exact identity, a wildcard, ``%any``),
* are the IDr asked for, when one was (their ``local.id``),
* check the peer by the class it offers (``psk``, ``pubkey``, ``eap``), and
* have the IKE proposal IKE_SA_INIT agreed on among theirs,

and the best is taken: the closest identity match first (an exact identity before a
wildcard before ``%any``, as strongSwan's ``id_match_t``), then the closest address
match, then the order configured. No CHILD_SA exists yet, so the IKE SA may change
connection. When none is left, IKE_AUTH is refused with AUTHENTICATION_FAILED and one
WARNING line that says what each candidate lacked; with one candidate only, the checks
of the IKE_AUTH exchange itself say why (as they did before there was a choice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from larval.ike.config import ChildPolicy, IkeConfig, Suite
from larval.ike.identity import IdentityMatch, IdType, describe_identity

from ..constants import AuthMethod, NotifyType, PayloadType
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..payloads import AuthPayload, IdPayload
from .config_payload import AddressPool
from .sa import Ikev2Sa, log

__all__ = ["Candidate", "Candidates", "auth_class", "select_connection"]

#: strongSwan's id_match_t: how closely a configured identity takes the one sent.
ID_PERFECT, ID_WILDCARD, ID_ANY, ID_NONE = 20, 2, 1, 0


@dataclass(frozen=True)
class Candidate:
    """A connection an IKE SA may be of: its configuration between this IKE SA's
    addresses, what the session asks of it (policy, pools), how well its addresses
    matched, and `take`, which tells the key manager that the IKE SA is its now."""

    config: IkeConfig
    child_policy: ChildPolicy | None
    address_pool: AddressPool | None
    address_quality: int
    take: Callable[[], None]


#: The key manager's: the connections that matched the IKE SA's addresses, best first.
Candidates = Callable[[], Sequence[Candidate]]


def auth_class(message: IkeMessage) -> str:
    """How the peer authenticates in its first IKE_AUTH request: ``psk``, ``pubkey``, or
    ``eap`` for a request without AUTH (RFC 7296 §2.16)."""
    auth = message.first(AuthPayload)
    if auth is None:
        return "eap"
    return "psk" if auth.method == AuthMethod.SHARED_KEY_MIC else "pubkey"


def _checks_by(config: IkeConfig) -> str:
    if config.remote_eap is not None:
        return "eap"
    return "pubkey" if config.remote_auth is not None else "psk"


def _remote_match(config: IkeConfig, idi: IdPayload) -> int:
    """How closely the connection's remote identity takes IDi."""
    match = config.remote_id_match
    if isinstance(match, IdentityMatch):
        if not match(idi.id_type, idi.data):
            return ID_NONE
        return ID_ANY if match.id_type is None else ID_WILDCARD if match.wildcard else ID_PERFECT
    if match is not None:
        return ID_WILDCARD if match(idi.id_type, idi.data) else ID_NONE
    if config.remote_id is None:
        return ID_ANY
    return ID_PERFECT if (idi.id_type, idi.data) == config.remote_id else ID_NONE


def _local_match(config: IkeConfig, idr: IdPayload | None) -> int:
    """Is the connection's own identity the IDr asked for (any, when none was)?"""
    if idr is None:
        return ID_ANY
    kind, data = config.local_id
    return ID_PERFECT if IdentityMatch(IdType(kind), data)(idr.id_type, idr.data) else ID_NONE


def _has_suite(config: IkeConfig, suite: Suite) -> bool:
    """Does one of the connection's IKE proposals hold every transform agreed on?"""
    return not suite or any(set(suite) <= set(proposal) for proposal in config.proposals)


def _why_not(candidate: Candidate, idi: IdPayload, idr: IdPayload | None, offered: str,
             suite: Suite) -> str | None:  # fmt: skip
    """What the candidate lacks for this peer, or None if it fits."""
    config = candidate.config
    if _remote_match(config, idi) == ID_NONE:
        return "another remote id"
    if _local_match(config, idr) == ID_NONE:
        return "another local id"
    if _checks_by(config) != offered:
        return f"checks the peer by {_checks_by(config)}"
    if not _has_suite(config, suite):
        return "not the IKE proposal agreed"
    return None


def select_connection(sa: Ikev2Sa, candidates: Sequence[Candidate], message: IkeMessage) -> None:
    """Switch the IKE SA to the connection that fits the peer's first IKE_AUTH request
    best (see the module's docstring); raises `IkeExchangeError` (AUTHENTICATION_FAILED)
    when more than one connection was a candidate and none fits."""
    idi = next((p for p in message.get(IdPayload) if p.payload_type == PayloadType.IDi), None)
    if idi is None or not candidates:
        return  # IKE_AUTH's own checks refuse it
    idr = next((p for p in message.get(IdPayload) if p.payload_type == PayloadType.IDr), None)
    offered = auth_class(message)
    fitting: list[tuple[int, int, int, Candidate]] = []
    refusals: list[str] = []
    for order, candidate in enumerate(candidates):
        why = _why_not(candidate, idi, idr, offered, sa.suite)
        if why is not None:
            refusals.append(f"{candidate.config.name}: {why}")
            continue
        peer = _remote_match(candidate.config, idi) + _local_match(candidate.config, idr)
        fitting.append((-peer, -candidate.address_quality, order, candidate))
    if not fitting:
        if len(candidates) == 1:
            return  # the exchange's checks name what the one connection wants
        who = describe_identity(idi.id_type, idi.data)
        asked = f", IDr {describe_identity(idr.id_type, idr.data)}" if idr is not None else ""
        reason = (f"no connection for IDi {who}{asked} authenticating by {offered}: "
                  + "; ".join(refusals))  # fmt: skip
        log.warning("%s: %s", sa._name(), reason)
        raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
    best = min(fitting, key=lambda e: e[:3])[3]
    if best.config.name == sa.config.name:
        return
    log.info("%s: switching to connection %s for IDi %s", sa._name(), best.config.name,
             describe_identity(idi.id_type, idi.data))  # fmt: skip
    sa._switch_connection(best)
