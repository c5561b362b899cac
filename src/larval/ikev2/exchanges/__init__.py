"""IKEv2's exchanges as tasks (`larval.ike.task.Task`), each for one role: an initiator
`build`s its request and `process`es the response; a responder `process`es the request
and `build`s the response. None does I/O or keeps a clock: each sees its IKE SA through
`Ikev2Sa` (`sa`), and the session puts what it builds on the wire.

* `ike_sa_init`: `IkeSaInit`, `IkeSaInitResponder`: SA, KE, Ni/Nr, NAT detection,
  fragmentation support, RFC 7427's hashes and CERTREQ; COOKIE and INVALID_KE_PAYLOAD
  retries (RFC 7296 §1.2, §2.6)
* `ike_auth`: `IkeAuth`, `IkeAuthResponder`: IDi/IDr, CERT, CERTREQ and AUTH by the
  pluggable `Prover` and `Verifier`, and the first CHILD_SA (§1.2, §2.15)
* `eap_auth`: `EapIkeAuth`, `EapIkeAuthResponder`: IKE_AUTH of several round trips,
  the client proving itself by EAP and the gateway by its `Prover` (§2.16);
  `ike_auth_responder` picks the responder's IKE_AUTH task
* `auth_rounds`: `RoundsIkeAuth`, `RoundsIkeAuthResponder`: IKE_AUTH of several
  authentication rounds, a certificate and then EAP (RFC 4739)
* `config_payload`: CP(CFG_REQUEST/CFG_REPLY) in IKE_AUTH: a virtual address of the
  connection's pools for the peer, or asked for by this end (§2.19, §3.15)
* `select`: a responder's choice among the connections that matched the addresses, by
  the peer's IDi, the IDr it asked for and its method, in its first IKE_AUTH request
* `create_child_sa`: `ChildCreate`, `IkeRekey`, `CreateChildSaResponder`: a new
  CHILD_SA, the renewal of one or of the IKE SA, and their collisions (§1.3, §2.8)
* `informational`: `Informational`, `InformationalResponder`: DELETE and liveness
  (§1.4, §2.4)

`tasks` holds what every task has (`ExchangeTask`) and what a responder's adds
(`AnswerTask`: its answer, and `answered` for what follows it once it is framed);
`child_sa` makes a CHILD_SA's keys and announces it; `proposals` holds what the
exchanges make of suites and selectors beyond `larval.ikev2.negotiate`.
"""

from __future__ import annotations

from .auth_rounds import RoundsIkeAuth, RoundsIkeAuthResponder
from .create_child_sa import IKE_SA, ChildCreate, CreateChildSaResponder, IkeRekey
from .eap_auth import EapIkeAuth, EapIkeAuthResponder, ike_auth_responder
from .ike_auth import IkeAuth, IkeAuthResponder
from .ike_sa_init import IkeSaInit, IkeSaInitResponder
from .informational import Informational, InformationalResponder
from .sa import ChildSa, Ikev2Sa, State

__all__ = [
    "IKE_SA",
    "ChildCreate",
    "ChildSa",
    "CreateChildSaResponder",
    "EapIkeAuth",
    "EapIkeAuthResponder",
    "IkeAuth",
    "IkeAuthResponder",
    "IkeRekey",
    "IkeSaInit",
    "IkeSaInitResponder",
    "Ikev2Sa",
    "Informational",
    "InformationalResponder",
    "RoundsIkeAuth",
    "RoundsIkeAuthResponder",
    "State",
    "ike_auth_responder",
]
