"""What the exchanges make of configured suites and of the peer's proposals and
selectors, beyond choosing (`larval.ikev2.negotiate`): DH groups first or left out, the
networks a TS pair names, and the log line of a NO_PROPOSAL_CHOSEN."""

from __future__ import annotations

from larval.crypto.ike_transforms import TransformType
from larval.ike.config import ChildConfig, IPNetwork, Suite
from larval.ike.render import suite_text

from ..constants import NotifyType, ProtocolId
from ..errors import IkeProtocolError
from ..message import IkeMessage
from ..negotiate import from_wire, networks_of
from ..payloads import NotifyPayload
from ..sa_payload import Proposal, SaPayload
from ..ts_payload import TsPayload
from .sa import Ikev2Sa, log

__all__ = [
    "first_group",
    "groups",
    "log_no_proposal",
    "proposed_networks",
    "strip_dh",
    "with_group_first",
    "without_dh",
]


def groups(proposals: tuple[Suite, ...]) -> list[int]:
    """The DH groups the suites name, in order."""
    return [t.id for suite in proposals for t in suite if t.type == TransformType.DH]


def first_group(proposals: tuple[Suite, ...]) -> int:
    """The group of IKE_SA_INIT's first KE: the first the IKE proposals name."""
    named = groups(proposals)
    if not named:
        raise IkeProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "IKE proposals name no DH group")
    return named[0]


def with_group_first(proposals: tuple[Suite, ...], group: int) -> tuple[Suite, ...]:
    """The proposals as configured, those with the KE's group first (RFC 7296 §1.2)."""
    return tuple(sorted(proposals, key=lambda s: not any(
        t.type == TransformType.DH and t.id == group for t in s)))  # fmt: skip


def without_dh(suites: tuple[Suite, ...]) -> tuple[Suite, ...]:
    """The suites without their DH transforms, each once: IKE_AUTH's CHILD_SA has no KE."""
    return tuple(dict.fromkeys(tuple(t for t in s if t.type != TransformType.DH) for s in suites))


def strip_dh(proposals: tuple[Proposal, ...]) -> tuple[Proposal, ...]:
    """An IKE_AUTH's CHILD_SA proposals without DH transforms, which it cannot use."""
    return tuple(
        Proposal(p.number, p.protocol_id, p.spi,
                 tuple(t for t in p.transforms if int(t.transform_type) != int(TransformType.DH)))
        for p in proposals
    )  # fmt: skip


def proposed_networks(
    tsi: TsPayload, tsr: TsPayload
) -> tuple[tuple[IPNetwork, ...], tuple[IPNetwork, ...]]:
    """The networks of TSi and TSr: what a responder's policy is asked about, and what
    an initiator takes from the answer (RFC 7296 §2.9)."""
    return tuple(networks_of(tsi.selectors)), tuple(networks_of(tsr.selectors))


def asked_policy(
    sa: Ikev2Sa, message: IkeMessage, tsi: TsPayload, tsr: TsPayload
) -> ChildConfig | None:
    """A responder's policy for a CHILD_SA request, or None: asked for transport mode
    when the request has N(USE_TRANSPORT_MODE) (RFC 7296 §1.3.1), else for tunnel mode."""
    if sa._child_policy is None:
        return None
    networks = proposed_networks(tsi, tsr)
    if message.notify(NotifyType.USE_TRANSPORT_MODE):
        return sa._child_policy(*networks, "transport")
    return sa._child_policy(*networks)


def transport_notify(message: IkeMessage, policy: ChildConfig) -> tuple[NotifyPayload, ...]:
    """N(USE_TRANSPORT_MODE) in a response, when the request asked for it and the policy
    chosen is transport mode; without it the CHILD_SA is tunnel mode (RFC 7296 §1.3.1)."""
    if message.notify(NotifyType.USE_TRANSPORT_MODE) and policy.mode == "transport":
        return (NotifyPayload(ProtocolId.NONE, NotifyType.USE_TRANSPORT_MODE),)
    return ()


def log_no_proposal(sa: Ikev2Sa, what: str, ours: tuple[Suite, ...], theirs: SaPayload) -> None:
    """NO_PROPOSAL_CHOSEN: both sides' proposals, so that an operator sees why."""
    mine = ", ".join(suite_text(s) for s in ours) or "none"
    offered = ", ".join(suite_text(from_wire(p)) for p in theirs.proposals) or "none"
    log.warning("%s: no %s proposal chosen; ours: %s; theirs: %s", sa._name(), what, mine, offered)
