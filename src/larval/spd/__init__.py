"""The Security Policy Database: selectors, policies, the lookup index, ACQUIRE messages.

Sans-I/O and thread-safe: lookups take no lock while writers add and remove policies.

* `Selector`, `parse_ts` — what traffic a policy covers (local/remote terms);
* `Policy` with `Action`, `Direction`, `Mode`, `Lifetimes`, `Tunnel` — one SPD entry
  (a `Tunnel` to any peer, ``%any``, has `Tunnel.any_remote`);
* `Spd` — the database: ``add``, ``remove``, ``flush``, ``policies``, ``lookup``,
  ``check_inbound``;
* `regular_acquire`, `extended_acquire`, `inverse_acquire` — the PF_KEY messages
  (RFC 2367 §3.1.6 and the illumos extensions) built from a policy;
* `load_policy_file`, `load_policy_text`, `policy_to_dict` — the TOML policy file.
"""

from __future__ import annotations

from larval.spd.acquire import (
    IPPROTO_ENCAP,
    IPPROTO_IPV6,
    Flow,
    extended_acquire,
    inverse_acquire,
    regular_acquire,
)
from larval.spd.config import (
    load_policy_file,
    load_policy_text,
    policies_from_dict,
    policy_to_dict,
)
from larval.spd.errors import PolicyFileError, SpdError
from larval.spd.index import ICMP_ANY
from larval.spd.policy import (
    AUTO_PRIORITY,
    Action,
    Direction,
    Lifetimes,
    Mode,
    Policy,
    Tunnel,
    default_priority,
)
from larval.spd.selector import ANY_PORTS, Selector, TsSpec, parse_ts
from larval.spd.spd import Spd

__all__ = [
    "ANY_PORTS",
    "AUTO_PRIORITY",
    "ICMP_ANY",
    "IPPROTO_ENCAP",
    "IPPROTO_IPV6",
    "Action",
    "Direction",
    "Flow",
    "Lifetimes",
    "Mode",
    "Policy",
    "PolicyFileError",
    "Selector",
    "Spd",
    "SpdError",
    "TsSpec",
    "Tunnel",
    "default_priority",
    "extended_acquire",
    "inverse_acquire",
    "load_policy_file",
    "load_policy_text",
    "parse_ts",
    "policies_from_dict",
    "policy_to_dict",
    "regular_acquire",
]
