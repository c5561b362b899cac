"""A CHILD_SA comes up, made by IKE_AUTH or CREATE_CHILD_SA: its keys (RFC 7296 §2.17),
its record in the IKE SA, and the event that hands it to the key manager."""

from __future__ import annotations

import dataclasses

from larval.crypto.ike_keys import derive_child_sa_keys
from larval.crypto.ike_transforms import TransformType, encr_key_size, integ_key_size
from larval.ike.config import ChildConfig, IPNetwork, Suite
from larval.ike.events import ChildSaFailed, ChildSaUp

from ..constants import NotifyType, ProtocolId
from ..message import IkeMessage
from ..negotiate import suite_get
from ..payloads import DeletePayload
from .sa import ChildSa, Ikev2Sa, log

__all__ = ["Agreed", "answered_mode", "child_refused_after_all", "child_up"]

#: A CHILD_SA a responder agreed to: its policy, inbound and outbound SPIs, suite, and
#: local and remote networks, as `child_up` takes them.
Agreed = tuple[ChildConfig, int, int, Suite, tuple[IPNetwork, ...], tuple[IPNetwork, ...]]


def child_up(
    sa: Ikev2Sa, child: ChildConfig, spi_in: int, spi_out: int, suite: Suite,
    local_ts: tuple[IPNetwork, ...], remote_ts: tuple[IPNetwork, ...],
    nonces: tuple[bytes, bytes] | None = None,
    exchange_initiator: bool | None = None,
    shared: bytes | None = None,
    replaces: int | None = None,
) -> None:  # fmt: skip
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), with the nonces of IKE_AUTH's
    IKE_SA_INIT (`nonces` None) or of the CREATE_CHILD_SA exchange."""
    assert sa._prf is not None
    encr = suite_get(suite, TransformType.ENCR)
    integ = suite_get(suite, TransformType.INTEG)
    assert encr is not None
    integ_id = integ.id if integ is not None else 0
    nonce_i, nonce_r = nonces if nonces is not None else (sa._nonce_i, sa._nonce_r)
    material = derive_child_sa_keys(
        sa._prf, sa._sk_d, nonce_i, nonce_r, shared, encr_key_size(encr), integ_key_size(integ_id)
    )
    sa.children[spi_in] = ChildSa(child, spi_in, spi_out, suite, local_ts, remote_ts)
    # §2.17: "initiator" is the initiator of the exchange that made the CHILD_SA, which
    # for a CREATE_CHILD_SA may be the IKE SA's original responder.
    first = sa.initiator if exchange_initiator is None else exchange_initiator
    sa._events.append(
        ChildSaUp(child, spi_in, spi_out, suite, material.inbound(first),
                  material.outbound(first), local_ts, remote_ts, sa.initiator, sa.natted,
                  replaces=replaces)
    )  # fmt: skip


def answered_mode(sa: Ikev2Sa, child: ChildConfig, message: IkeMessage) -> ChildConfig | str:
    """The initiator's CHILD_SA in the mode the responder chose, or why it cannot be had.

    RFC 7296 §1.3.1: a responder that does not answer N(USE_TRANSPORT_MODE) has chosen
    tunnel mode. As strongSwan's initiator (``child_create.c``), a transport-mode request
    takes the tunnel, said in the log; a responder that answers USE_TRANSPORT_MODE to a
    tunnel-mode request chose what this end's configuration does not allow, and the
    CHILD_SA fails."""
    transport = message.notify(NotifyType.USE_TRANSPORT_MODE) is not None
    if transport == (child.mode == "transport"):
        return child
    if transport:
        return "the responder chose transport mode, the configuration asks for tunnel mode"
    log.info("%s: CHILD_SA %s: the responder did not accept transport mode (no "
             "USE_TRANSPORT_MODE): tunnel mode", sa._name(), child.name)  # fmt: skip
    return dataclasses.replace(child, mode="tunnel")


def child_refused_after_all(
    sa: Ikev2Sa, child: ChildConfig, spi_in: int, reason: str, now: float
) -> None:
    """The responder made a CHILD_SA this end does not take: it fails here, and the
    responder's half is deleted with D(ESP, our inbound SPI) (RFC 7296 §1.4.1), as
    strongSwan deletes a CHILD_SA it could not accept."""
    from .informational import Informational  # it imports this module's neighbours

    log.warning("%s: CHILD_SA %s refused: %s", sa._name(), child.name, reason)
    sa._events.append(ChildSaFailed(child, reason))
    payload = DeletePayload(ProtocolId.ESP, 4, (spi_in.to_bytes(4, "big"),))
    sa._tasks.queue(Informational(sa, (payload,)), now)
