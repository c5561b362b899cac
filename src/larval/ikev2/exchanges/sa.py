"""What an IKEv2 exchange sees of its IKE SA: the state, the keys, the configuration and
the CHILD_SAs, and the calls that reach the key manager (GETSPI, policy) and the events.

The session (`larval.ikev2.session.IkeSession`) is the one implementation; `Ikev2Sa` is the
narrow view its tasks are typed against, so that a task cannot reach the transport, the
wire or the table. The names are the session's own: those with a leading underscore are
not for the key manager, but they are the IKE SA's state, which the tasks share.
"""

from __future__ import annotations

import datetime
import enum
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from larval.crypto.prf import Prf
from larval.crypto.randomness import RandomBytes
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress, IPNetwork, Suite
from larval.ike.counters import IkeCounters
from larval.ike.events import ChildSaDown, Event

from ..auth import PeerOffer, Prover, Verifier

if TYPE_CHECKING:
    from larval.ike.task import TaskManager
    from larval.pools import Lease

    from ..constants import NotifyType
    from ..framing import Ikev2Framing
    from ..message import IkeMessage
    from ..payloads import Payload
    from ..session import IkeSession
    from .config_payload import AddressPool, ReceivedConfig
    from .select import Candidate, Candidates

__all__ = ["NONCE_SIZE", "Address", "ChildSa", "Ikev2Sa", "State", "log"]

Address = tuple[str, int]
log = logging.getLogger("larval.ike")
NONCE_SIZE = 32


class State(enum.Enum):
    IDLE = "idle"
    INIT_SENT = "IKE_SA_INIT sent"
    AUTH_SENT = "IKE_AUTH sent"
    INIT_DONE = "IKE_SA_INIT answered"  # responder, waiting for IKE_AUTH
    ESTABLISHED = "established"
    DELETING = "deleting"
    CLOSED = "closed"


class ChildSa:
    """A CHILD_SA of this IKE SA, as far as IKE is concerned."""

    __slots__ = ("config", "local_ts", "rekeyed", "remote_ts", "spi_in", "spi_out", "suite")

    def __init__(
        self,
        config: ChildConfig,
        spi_in: int,
        spi_out: int,
        suite: Suite,
        local_ts: tuple[IPNetwork, ...] = (),
        remote_ts: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.config = config
        self.spi_in = spi_in
        self.spi_out = spi_out
        self.suite = suite
        self.local_ts = local_ts or config.local_ts
        self.remote_ts = remote_ts or config.remote_ts
        #: A CREATE_CHILD_SA renewed it (RFC 7296 §2.8): its successor is up, and its
        #: DELETE takes its inbound SA a little later (`ChildSaDown.rekeyed`).
        self.rekeyed = False


class Ikev2Sa(Protocol):
    """The IKE SA as its exchanges see it."""

    config: IkeConfig
    initiator: bool
    counters: IkeCounters  # the key manager's (`larval.ike.counters`)
    spi_i: bytes
    spi_r: bytes
    suite: Suite
    natted: bool
    children: dict[int, ChildSa]  # by inbound SPI
    # How each end authenticated (for status), once the IKE SA is established.
    auth_local: AuthInfo | None
    auth_remote: AuthInfo | None
    # The virtual addresses of the peer (responder) or of this end (initiator), RFC 7296
    # §2.19; the responder's leases, of the identity they belong to, and where from.
    virtual_ips: tuple[IPAddress, ...]
    # What the CFG_REPLY gave an initiator that asked (`config_payload.ReceivedConfig`).
    received: ReceivedConfig
    _leases: tuple[Lease, ...]
    _lease_identity: str
    _address_pool: AddressPool | None
    # Keys and what they came from (RFC 7296 §2.14, §2.15).
    _prf: Prf | None
    _sk_d: bytes
    _sk_pi: bytes
    _sk_pr: bytes
    _nonce_i: bytes
    _nonce_r: bytes
    _init_request: bytes  # IKE_SA_INIT's messages as they went on the wire
    _init_response: bytes
    _framing: Ikev2Framing  # the SK ciphers of both ways; fragmentation agreed
    _fragmentation_offered: bool
    # What the key manager lends: random bytes, GETSPI, policy, how each end's AUTH is
    # proved and checked, and the wall clock certificates are valid by.
    _random: RandomBytes
    _allocate_spi: Callable[[], int]
    _child_policy: ChildPolicy | None
    _prover: Prover
    _verifier: Verifier
    _wall_clock: Callable[[], datetime.datetime]
    # RFC 7427 §4: are this end's hashes announced; what the peer announced (and whether
    # it sent a CERTREQ, RFC 7296 §3.7).
    _signature_hashes_offered: bool
    _peer_offer: PeerOffer
    _pending_child: ChildConfig | None  # the CHILD_SA the IKE SA was opened for
    # A responder's: the connections its IKE_AUTH may choose among (None: its own only).
    _candidates: Candidates | None
    _events: deque[Event]
    _tasks: TaskManager[IkeMessage, tuple[Payload, ...]]
    # CHILD_SAs whose DELETE is unanswered (RFC 7296 §1.4.1).
    _deleting: dict[int, ChildSaDown]
    _deadline: float | None
    _rekey_at: float | None
    _ike_rekey_started: bool
    _replaced_by: IkeSession | None  # the IKE SA that took our CHILD_SAs
    _delete_reason: str

    @property
    def state(self) -> State: ...

    @property
    def remote(self) -> Address: ...

    @remote.setter
    def remote(self, addr: Address) -> None: ...

    def _name(self) -> str: ...

    def delete(self, now: float, reason: str = "deleted") -> None: ...

    def delete_child(self, spi_in: int, now: float) -> None: ...

    def _established(self, now: float) -> None: ...

    def _switch_connection(self, candidate: Candidate) -> None: ...

    def _successor(
        self, suite: Suite, shared: bytes, spi_i: bytes, spi_r: bytes, nonce_i: bytes,
        nonce_r: bytes, *, initiator: bool, now: float,
    ) -> IkeSession: ...  # fmt: skip

    def _replace(self, new: IkeSession) -> None: ...

    def _close(self, reason: str, now: float, by_peer: bool = False) -> None: ...

    def _notify_peer(self, notify: NotifyType) -> None: ...
