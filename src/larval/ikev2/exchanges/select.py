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

The candidates that fit the first request stay the IKE SA's alternatives until its EAP
identity is known (strongSwan's ``find_alternative_eap_cfg`` in ``ike_auth.c``): where
more than one of them checks the peer by EAP, the gateway asks the EAP identity
(EAP-Identity, RFC 3748 §5.1) and `EapIdentitySwitch` moves the IKE SA to the one whose
``eap_id`` takes it best (the name itself before ``%any``; none configured: the peer's
IKE identity), in the order above where they tie, before the method runs. Its pools,
children and policy are the IKE SA's from then on. An alternative must go on where the
exchange stands: the same own identity (its IDr and AUTH went out, or none where this
end proves itself by EAP only, RFC 5998, in both), as many rounds, EAP
in the round under way, and (in a further round, RFC 4739) a first round its own
verifier takes too. None that takes the name: the conversation fails with EAP Failure
and AUTHENTICATION_FAILED, its one WARNING naming the identity and what each lacked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from larval.ike.auth_config import EapAuth
from larval.ike.config import (
    ID_ANY,
    ID_NONE,
    ID_PERFECT,
    ChildPolicy,
    IkeConfig,
    Suite,
    identity_quality,
)
from larval.ike.identity import IdentityMatch, IdType, describe_identity

from ..constants import AuthMethod, NotifyType, PayloadType
from ..eap_conversation import ANY
from ..errors import IkeExchangeError
from ..message import IkeMessage
from ..payloads import AuthPayload, IdPayload
from .config_payload import AddressPool
from .sa import Ikev2Sa, log

__all__ = ["Candidate", "Candidates", "EapIdentitySwitch", "auth_class", "select_connection"]


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
    return identity_quality(config, idi.id_type, idi.data)


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


def select_connection(
    sa: Ikev2Sa, candidates: Sequence[Candidate], message: IkeMessage
) -> tuple[Candidate, ...]:
    """Switch the IKE SA to the connection that fits the peer's first IKE_AUTH request
    best (see the module's docstring), and give every one that fits, best first (the
    alternatives `EapIdentitySwitch` chooses among); raises `IkeExchangeError`
    (AUTHENTICATION_FAILED) when more than one connection was a candidate and none fits."""
    idi = next((p for p in message.get(IdPayload) if p.payload_type == PayloadType.IDi), None)
    if idi is None or not candidates:
        return ()  # IKE_AUTH's own checks refuse it
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
            return ()  # the exchange's checks name what the one connection wants
        who = describe_identity(idi.id_type, idi.data)
        asked = f", IDr {describe_identity(idr.id_type, idr.data)}" if idr is not None else ""
        reason = (f"no connection for IDi {who}{asked} authenticating by {offered}: "
                  + "; ".join(refusals))  # fmt: skip
        log.warning("%s: %s", sa._name(), reason)
        sa.counters.auth_failed("identity")
        raise IkeExchangeError(NotifyType.AUTHENTICATION_FAILED, reason, close=reason)
    ranked = tuple(entry[3] for entry in sorted(fitting, key=lambda e: e[:3]))
    best = ranked[0]
    if best.config.name != sa.config.name:
        log.info("%s: switching to connection %s for IDi %s", sa._name(), best.config.name,
                 describe_identity(idi.id_type, idi.data))  # fmt: skip
        sa._switch_connection(best)
    return ranked


#: Checks an alternative further (`EapIdentitySwitch.check`): why it cannot take the
#: IKE SA where the exchange stands, or None.
AlternativeCheck = Callable[[Candidate], str | None]


@dataclass
class EapIdentitySwitch:
    """Given the peer's EAP identity, the EAP configuration of the connection that takes
    it, the IKE SA switched to that connection; or why none does (see the module's
    docstring). `round` is the remote round under way: 0 for the connection's one EAP
    round (``remote_eap``), n for ``remote_rounds[n]`` (RFC 4739)."""

    sa: Ikev2Sa
    alternatives: tuple[Candidate, ...]
    ike_identity: str  # the peer's IDi, which an ``eap_id`` left out stands for
    round: int = 0
    check: AlternativeCheck | None = field(default=None, repr=False)

    @classmethod
    def among(cls, sa: Ikev2Sa, alternatives: Sequence[Candidate], ike_identity: str,
              round: int = 0, check: AlternativeCheck | None = None,
              ) -> EapIdentitySwitch | None:  # fmt: skip
        """A switch where more than one alternative checks this round by EAP; else None
        (the conversation then runs as configured)."""
        switch = cls(sa, tuple(alternatives), ike_identity, round, check)
        eap = [c for c in switch.alternatives if switch._eap_of(c.config) is not None]
        return switch if len(eap) > 1 else None

    def __call__(self, identity: str) -> EapAuth | str:
        fitting: list[tuple[int, int, Candidate]] = []
        refusals: list[str] = []
        for order, candidate in enumerate(self.alternatives):
            quality, why = self._fit(candidate, identity)
            if why is not None:
                refusals.append(f"{candidate.config.name}: {why}")
            else:
                fitting.append((-quality, order, candidate))
        if not fitting:
            return f"no connection takes EAP identity {identity!r}: " + "; ".join(refusals)
        best = min(fitting, key=lambda e: e[:2])[2]
        sa = self.sa
        if best.config.name != sa.config.name:
            log.info("%s: switching to connection %s for EAP identity %r", sa._name(),
                     best.config.name, identity)  # fmt: skip
            sa._switch_connection(best)
        eap = self._eap_of(best.config)
        assert eap is not None
        return eap

    def _eap_of(self, config: IkeConfig) -> EapAuth | None:
        """The connection's EAP for the round under way, None if it has none there."""
        if not self.round:
            return config.remote_eap if len(config.remote_rounds) < 2 else None
        rounds = config.remote_rounds
        return rounds[self.round].eap if self.round < len(rounds) else None

    def _fit(self, candidate: Candidate, identity: str) -> tuple[int, str | None]:
        """How closely the candidate's ``eap_id`` takes `identity`, or what it lacks."""
        config, current = candidate.config, self.sa.config
        eap = self._eap_of(config)
        if eap is None:
            return ID_NONE, "no EAP in this round"
        if config.local_id != current.local_id:
            return ID_NONE, "another local id"
        if (config.local_eap is None) != (current.local_eap is None):
            return ID_NONE, "proves this end another way (RFC 5998)"
        if len(config.remote_rounds) != len(current.remote_rounds):
            return ID_NONE, f"{max(len(config.remote_rounds), 1)} authentication rounds"
        if eap.eap_id == ANY:
            quality = ID_ANY
        elif identity == (eap.eap_id or self.ike_identity):
            quality = ID_PERFECT
        else:
            return ID_NONE, f"EAP identity {eap.eap_id or self.ike_identity!r} required"
        why = self.check(candidate) if self.check is not None else None
        return quality, why
