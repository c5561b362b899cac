"""An IKEv2 IKE SA as a value and back (`larval.ike.state`): what `IkeSession.snapshot`
and `IkeSession.restore` do, apart from the exchanges.

What the value holds
--------------------
The part both versions share — SPIs, role, identities, the suite (which names the PRF,
cipher and integrity algorithm), NAT state, the rekey deadline, the transport with the
Message IDs of both ways, its unanswered request and the response kept for the peer's
last request, and each CHILD_SA with its SPIs, suite, configuration, the selectors
agreed (RFC 7296 §2.9) and whether a rekey replaced it (the peer's DELETE of it still to
come: its inbound SA is then kept a little longer) — and `Ikev2State`: SK_d, the SK_e
and SK_a of both ways, this end's next AEAD IV, the fragmentation announced and agreed
(RFC 7383 §2.3), the next liveness check or rekey, and the liveness check awaiting its
answer. An IKEv2 SA has no lifetime of its own (`expires_at` is None), and its IKE port
follows NAT detection (§2.23): 4500 behind a NAT, 500 otherwise.

When there is none
------------------
Only an established IKE SA has a value, and only between its own exchanges: a
CREATE_CHILD_SA under way holds a nonce and, with PFS, a DH secret, as does an IKE SA
rekey; a DELETE under way ends a CHILD_SA or the IKE SA when it is answered; and an IKE
SA that a rekey replaced is on its way out. `snapshot` raises `IkeStateError` naming
which. The one request of ours a value holds is the empty INFORMATIONAL that checks the
peer is alive (§2.4): a restored session resends its datagrams on the same schedule and
takes the answer as the old one would have. The peer's requests are the peer's to
resend: the response to the last one is in the transport's part, and a restored session
answers a retransmission from it (§2.1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import TransformType
from larval.crypto.prf import Prf
from larval.crypto.randomness import RandomBytes
from larval.crypto.sk import SkCipher
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import ChildPolicy, IkeConfig
from larval.ike.state import ChildSaState, IkeSaState, IkeStateError, Ikev2State, Secret
from larval.ikev2 import session as v2
from larval.ikev2.exchanges import Informational
from larval.ikev2.exchanges.config_payload import ReceivedConfig
from larval.ikev2.negotiate import suite_get

__all__ = ["restore", "snapshot"]

log = logging.getLogger("larval.ike")


def snapshot(session: v2.IkeSession) -> IkeSaState:
    """`session` as a value; `IkeStateError` when it has none (module docstring)."""
    liveness_check = _held_request(session)
    framing, config = session._framing, session.config
    assert framing.outbound is not None and framing.inbound is not None
    assert session.established_at is not None
    to_r, to_i = framing.outbound, framing.inbound
    if not session.initiator:
        to_r, to_i = to_i, to_r
    (sk_ei, sk_ai), (sk_er, sk_ar) = to_r.keys, to_i.keys
    ikev2 = Ikev2State(
        sk_d=Secret(session._sk_d),
        sk_ei=Secret(sk_ei),
        sk_ai=Secret(sk_ai),
        sk_er=Secret(sk_er),
        sk_ar=Secret(sk_ar),
        next_iv=framing.outbound.next_iv,
        fragmentation=session._fragmentation_offered,
        fragmentation_agreed=framing.fragmentation,
        fragment_size=framing.fragment_size,
        deadline=session._deadline,
        liveness_check=liveness_check,
    )
    children = tuple(
        ChildSaState(c.spi_in, c.spi_out, c.suite, replace(c.config, reference=None),
                     renewed=c.rekeyed, local_ts=c.local_ts, remote_ts=c.remote_ts)
        for c in session.children.values()
    )  # fmt: skip
    remote_id = config.remote_id
    return IkeSaState(
        ike_version=session.version,
        name=config.name,
        initiator=session.initiator,
        spi_i=session.spi_i,
        spi_r=session.spi_r,
        local_id=(int(config.local_id[0]), config.local_id[1]),
        remote_id=None if remote_id is None else (int(remote_id[0]), remote_id[1]),
        suite=session.suite,
        local_port=NAT_T_PORT if session.natted else IKE_PORT,
        natted=session.natted,
        established_at=session.established_at,
        rekey_at=session.rekey_at,
        expires_at=None,
        transport=session._transport.snapshot(),
        children=children,
        ikev2=ikev2,
        virtual_ips=tuple(session.virtual_ips),
        auth_local=session.auth_local,
        auth_remote=session.auth_remote,
        dns=session.received.dns,
        dns_domains=session.received.domains,
    )


def _held_request(session: v2.IkeSession) -> int | None:
    """The Message ID of the liveness check under way, or None; raises `IkeStateError`
    unless the IKE SA is established and under way with nothing else."""
    name = session._name()
    if session.state is not v2.State.ESTABLISHED:
        raise IkeStateError(
            f"{name}: no snapshot in state {session.state.value!r}: "
            "only an established IKE SA has one"
        )
    if session._replaced_by is not None:
        raise IkeStateError(f"{name}: no snapshot: a rekey replaced this IKE SA")
    if session._ike_rekey_started:
        raise IkeStateError(f"{name}: no snapshot while an IKE SA rekey is under way")
    if session._deleting:
        raise IkeStateError(f"{name}: no snapshot while a DELETE of a CHILD_SA is under way")
    tasks = list(session._tasks.tasks())  # under way, then queued
    outstanding = list(session._transport.outstanding())
    if not tasks and not outstanding:
        return None
    if len(tasks) == len(outstanding) == 1 and _is_liveness_check(tasks[0]):
        return outstanding[0]
    under_way = ", ".join(str(getattr(t.exchange, "name", t.exchange)) for t in tasks)
    raise IkeStateError(f"{name}: no snapshot while {under_way or 'a request'} is under way")


def restore(
    cls: type[v2.IkeSession],
    value: IkeSaState,
    config: IkeConfig,
    *,
    allocate_spi: Callable[[], int],
    child_policy: ChildPolicy | None,
    random_bytes: RandomBytes,
) -> v2.IkeSession:
    """A session of `cls` that continues the IKE SA `value` holds (module docstring)."""
    state = value.ikev2
    if value.ike_version != cls.version or state is None:
        raise IkeStateError(f"IKE SA state of {value.name!r} is IKEv{value.ike_version}")
    value.check_config(config)
    _check_requests(value, state)
    session = cls(config, initiator=value.initiator, allocate_spi=allocate_spi,
                  child_policy=child_policy, random_bytes=random_bytes, spi_i=value.spi_i,
                  fragmentation=state.fragmentation,
                  fragment_size=state.fragment_size)  # fmt: skip
    session.spi_r, session.natted, session.suite = value.spi_r, value.natted, value.suite
    _resume_keys(session, value, state, random_bytes)
    for c in value.children:
        child = v2.ChildSa(c.config, c.spi_in, c.spi_out, c.suite, c.local_ts, c.remote_ts)
        child.rekeyed = c.renewed
        session.children[c.spi_in] = child
    session.established_at = value.established_at
    session.virtual_ips = value.virtual_ips
    session.received = ReceivedConfig(value.virtual_ips, value.dns, value.dns_domains)
    session.auth_local, session.auth_remote = value.auth_local, value.auth_remote
    session._rekey_at, session._deadline = value.rekey_at, state.deadline
    session._transport.restore(value.transport)
    if state.liveness_check is not None:
        session._tasks.resume(state.liveness_check, _liveness_check(session))
    session._enter(v2.State.ESTABLISHED)
    log.info("%s: IKE SA resumed with %d CHILD_SAs", session._name(), len(session.children))
    return session


def _check_requests(value: IkeSaState, state: Ikev2State) -> None:
    """Raise `IkeStateError` unless the requests in the value are the liveness check it
    names, if any: nothing else of ours is taken up (module docstring)."""
    for request in value.transport.requests:
        if request.message_id != state.liveness_check:
            raise IkeStateError(
                f"IKE SA state of {value.name!r}: request {request.message_id} "
                f"({request.text or 'unnamed'}) is not a liveness check, the one request "
                "a restored IKE SA takes up"
            )
    mids = [r.message_id for r in value.transport.requests]
    if state.liveness_check is not None and state.liveness_check not in mids:
        raise IkeStateError(
            f"IKE SA state of {value.name!r}: liveness check {state.liveness_check} "
            "is not among the requests"
        )


def _resume_keys(
    session: v2.IkeSession, value: IkeSaState, state: Ikev2State, random_bytes: RandomBytes
) -> None:
    """The PRF, SK_d and the SK ciphers of both ways, the outbound one counting its AEAD
    IVs on from where the old session's stopped."""
    encr = suite_get(value.suite, TransformType.ENCR)
    prf = suite_get(value.suite, TransformType.PRF)
    integ = suite_get(value.suite, TransformType.INTEG)
    if encr is None or prf is None:
        raise IkeStateError(f"IKE SA state of {value.name!r}: its suite lacks ENCR or PRF")
    integ_id = integ.id if integ is not None else 0
    iv_to_r, iv_to_i = (state.next_iv, None) if value.initiator else (None, state.next_iv)
    try:
        session._prf = Prf(prf.id)
        to_r = SkCipher.of(encr, integ_id, state.sk_ei.value, state.sk_ai.value,
                           random_bytes=random_bytes, next_iv=iv_to_r)  # fmt: skip
        to_i = SkCipher.of(encr, integ_id, state.sk_er.value, state.sk_ar.value,
                           random_bytes=random_bytes, next_iv=iv_to_i)  # fmt: skip
    except IkeCryptoError as exc:
        raise IkeStateError(f"IKE SA state of {value.name!r}: {exc}") from None
    session._sk_d = state.sk_d.value
    framing = session._framing
    framing.outbound, framing.inbound = (to_r, to_i) if value.initiator else (to_i, to_r)
    framing.fragmentation = state.fragmentation_agreed


# The two places that know the liveness check's task (`larval.ikev2.exchanges`).


def _is_liveness_check(task: object) -> bool:
    """Is `task` the empty INFORMATIONAL request of RFC 7296 §2.4?"""
    return isinstance(task, Informational) and task.liveness_check


def _liveness_check(session: v2.IkeSession) -> Informational:
    """The task of a liveness check, as `IkeSession.handle_timer` queues it."""
    return Informational(session)
