"""What IKEv1 and IKEv2 share: ports, identities, configuration, events, errors, codec base.

`larval.ikev1` and `larval.ikev2` import this package and never each other; it imports
only the layers below (wire, pfkey, crypto, sadb, spd, esp). It holds, written once:

* the UDP ports (here): IKE on 500 (RFC 7296 §2, RFC 2408 §2.5.2), and ESP and IKE
  behind NAT on 4500 (RFC 3948, defined by `larval.esp.udp_encap`, where the
  encapsulation lives);
* `identity`: the ID types both versions number alike, identities in strongSwan's words
  (`identity()`, `describe_identity()`), a configured peer identity with wildcards
  (`IdentityMatch`), and which identities a certificate carries;
* `config`: what a connection and each CHILD_SA are configured with (`IkeConfig`,
  `ChildConfig`), one configuration for either version;
* `events`: what a session reports to its key manager;
* `errors`: the root of both versions' errors, and the protocol error that carries the
  notification to answer with (each version's own registry of notify types);
* `codec`: a version's codec errors, for the readers and block writers of `larval.wire`;
* `payload`: the payload chain (generic headers walked and written) and the payload
  bodies of the same shape in both versions, which each version subclasses;
* `message`: what a message offers about its payloads (`get`, `first`, `notify`);
* `rules`: the rows and rules of each version's payload table, and their counting;
* `render`: a message or a suite in one line, for logs and the demo's ladder;
* `transport`: one per IKE SA, message IDs, the window, retransmission, cached replies
  and fragments, with each version's policy and framing plugged in;
* `reassembly`: the buffer both versions' fragments are put back together in;
* `state`: an established IKE SA and its CHILD_SAs as one value (`IkeSaState`), that a
  session's `snapshot()` makes and `restore()` takes, written as versioned JSON;
* `sa`: `IkeSa`, the surface of an IKE SA of either version that the key manager drives,
  and the `Phase` every version's states map to;
* `datagram`: `version_of(datagram)`, and which IKE SA a datagram is for.
"""

from __future__ import annotations

from larval.esp.udp_encap import NAT_T_PORT

__all__ = ["IKE_PORT", "NAT_T_PORT"]

IKE_PORT = 500  # RFC 7296 §2; RFC 2408 §2.5.2 for ISAKMP
