"""Choosing: a proposal from an SA payload (RFC 7296 §2.7, §3.3) and traffic selectors
narrowed to what both sides allow (§2.9).

Proposals travel as wire `Proposal`s and are configured as tuples of crypto
`Transform`s (type, id, key length); this module converts between the two and picks, for
each transform type the peer offers, the first transform we accept. The responder's
preference decides among proposals, as strongSwan's does by default.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from larval.crypto.ike_transforms import EsnId, Transform, TransformType
from larval.ike.config import IPNetwork, Suite
from larval.ikev2.constants import ProtocolId, TransformAttr, TsType
from larval.ikev2.sa_payload import Attribute, Proposal
from larval.ikev2.sa_payload import Transform as WireTransform
from larval.ikev2.ts_payload import TrafficSelector

#: How many distinct suites each conversion below remembers. Ours are a connection's
#: few, and a peer offers the same few again in every exchange: converted once, not in
#: every message (a peer's many are bounded by this).
_SUITES_KEPT = 1024


def to_wire(number: int, protocol: int, spi: bytes, suite: Suite) -> Proposal:
    """One configured suite as the SA payload carries it (transforms in type order)."""
    protocol_id = _PROTOCOLS.get(protocol)
    if protocol_id is None:
        protocol_id = ProtocolId(protocol)
    return Proposal(number, protocol_id, spi, _wire_transforms(tuple(suite)))


_PROTOCOLS: dict[int, ProtocolId] = {int(member): member for member in ProtocolId}


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _wire_transforms(suite: Suite) -> tuple[WireTransform, ...]:
    return tuple(
        WireTransform(
            TransformType(t.type),
            t.id,
            (Attribute(TransformAttr.KEY_LENGTH, t.key_bits),) if t.key_bits else (),
        )
        for t in sorted(suite, key=lambda t: t.type)
    )


def from_wire(proposal: Proposal) -> Suite:
    return _suite_of(tuple(proposal.transforms))


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _suite_of(transforms: tuple[WireTransform, ...]) -> Suite:
    return tuple(Transform(int(t.transform_type), t.transform_id, t.key_length) for t in transforms)


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _by_type(offered: Suite) -> tuple[tuple[int, tuple[Transform, ...]], ...]:
    """The offered transforms of each type, the types in ascending order."""
    return tuple(
        (ttype, tuple(t for t in offered if t.type == ttype))
        for ttype in sorted({t.type for t in offered})
    )


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _wanted(suite: Suite) -> tuple[tuple[int, tuple[Transform, ...]], ...]:
    """Our transforms of each type, in the order the suite lists the types."""
    wanted: dict[int, list[Transform]] = {}
    for t in suite:
        wanted.setdefault(t.type, []).append(t)
    return tuple((ttype, tuple(ts)) for ttype, ts in wanted.items())


def choose(
    ours: Sequence[Suite], theirs: Iterable[Proposal], protocol: int
) -> tuple[Proposal, Suite] | None:
    """The first of our suites that one of their proposals can meet, and the proposal
    answered with: their number and SPI, one transform of each type they offered."""
    offered = [p for p in theirs if p.protocol_id == protocol]
    # The choice depends on the suites alone, not on the SPIs: the same offer against
    # the same configuration, as in every setup of a connection, is chosen once.
    choice = _choice(tuple(tuple(s) for s in ours), tuple(from_wire(p) for p in offered))
    if choice is None:
        return None
    index, chosen = choice
    proposal = offered[index]
    return to_wire(proposal.number, protocol, proposal.spi, chosen), chosen


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _choice(ours: tuple[Suite, ...], theirs: tuple[Suite, ...]) -> tuple[int, Suite] | None:
    """`choose` over suites: the index of the proposal taken, and what is taken of it."""
    theirs_offered = [(i, _by_type(suite)) for i, suite in enumerate(theirs)]
    for suite in ours:
        wanted = dict(_wanted(tuple(suite)))
        for index, offered_by_type in theirs_offered:
            picked: dict[int, Transform] = {}
            ok = True
            for ttype, candidates in offered_by_type:
                ours_of_type = wanted.get(ttype)
                if ours_of_type is None:
                    # A type we do not name: only "none" choices are acceptable (no ESN,
                    # no PFS group for a CHILD_SA that asked for none).
                    neutral = [t for t in candidates if t.id == 0 or (
                        ttype == TransformType.ESN and t.id == EsnId.NO)]  # fmt: skip
                    if not neutral:
                        ok = False
                        break
                    picked[ttype] = neutral[0]
                    continue
                match = next((o for o in ours_of_type if o in candidates), None)
                if match is None:
                    ok = False
                    break
                picked[ttype] = match
            if ok and all(ttype in picked for ttype in wanted if not _optional(ttype, wanted)):
                return index, tuple(picked[t] for t in sorted(picked))
    return None


def _optional(ttype: int, wanted: dict[int, tuple[Transform, ...]]) -> bool:
    """A type we list may be absent from their proposal if NONE is one of our choices."""
    return any(t.id == 0 for t in wanted[ttype])


def suite_get(suite: Suite, ttype: int) -> Transform | None:
    """The suite's first transform of type ``ttype``, or None."""
    for t in suite:  # a loop, not a generator: called several times per exchange
        if t.type == ttype:
            return t
    return None


# -- traffic selectors ------------------------------------------------------------------


def selectors_for(networks: Sequence[IPNetwork], protocol: int = 0) -> tuple[TrafficSelector, ...]:
    return tuple(TrafficSelector.from_network(n, protocol) for n in networks)


def narrow(
    offered: Sequence[TrafficSelector], allowed: Sequence[IPNetwork]
) -> tuple[TrafficSelector, ...]:
    """RFC 7296 §2.9: the parts of what the peer offered that policy allows."""
    # The same selectors against the same policy, as in every setup of a connection:
    # narrowed once (selectors and networks are immutable).
    return _narrowed(tuple(offered), tuple(allowed))


@functools.lru_cache(maxsize=_SUITES_KEPT)
def _narrowed(
    offered: tuple[TrafficSelector, ...], allowed: tuple[IPNetwork, ...]
) -> tuple[TrafficSelector, ...]:
    out: list[TrafficSelector] = []
    for ts in offered:
        if ts.ts_type not in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE):
            continue
        for have in ts.networks():
            for net in allowed:
                if have.version != net.version:
                    continue
                if have.subnet_of(net):  # type: ignore[arg-type]
                    part = have
                elif net.subnet_of(have):  # type: ignore[arg-type]
                    part = net
                else:
                    continue
                out.append(
                    TrafficSelector.from_network(part, ts.ip_protocol, ts.start_port, ts.end_port)
                )
    return tuple(dict.fromkeys(out))


def networks_of(selectors: Iterable[object]) -> list[IPNetwork]:
    """The networks of the address-range selectors; one of a TS Type without addresses
    (RFC 4595's Fibre Channel ranges, a type defined later) has none, and is passed
    over, as `narrow` passes it over (RFC 7296 §2.9)."""
    out: list[IPNetwork] = []
    for ts in selectors:
        if isinstance(ts, TrafficSelector):
            out.extend(ts.networks())
    return out
