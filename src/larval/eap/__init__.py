"""EAP (RFC 3748) for remote access: the packet codec and the password methods.

`packet` decodes and encodes EAP packets; `identity` asks the peer its name
(EAP-Identity); `mschapv2` (EAP-MSCHAPv2, with the RFC 2759
and RFC 3079 computations in `mschapv2_crypto` and MD4 in `md4`), `md5` (EAP-MD5) and
`tls` (EAP-TLS over TLS 1.2, in pyOpenSSL) each hold a server and a peer. A method
machine takes the other end's EAP packet as bytes and returns the bytes to answer with
(`method`); it has no clock and does no I/O.

How IKEv2 carries it (RFC 7296 §2.16): the initiator leaves AUTH out of its first
IKE_AUTH request; the responder answers with its identity, its certificate and AUTH,
and an EAP payload holding the server's first Request. Each following IKE_AUTH request
carries the peer's Response in an EAP payload (one EAP packet each, RFC 7296 §3.16),
each response the server's next Request, until the responder sends EAP Success. Then
both ends send an AUTH computed over their signed octets with the MSK as the shared
key (``prf(MSK, "Key Pad for IKEv2")``), or with SK_pi and SK_pr when the method
derives no MSK (EAP-MD5). IKE retransmits and times out, so no EAP layer below it does.
"""

from __future__ import annotations

from .errors import EapError
from .identity import IdentityServer
from .md5 import Md5Peer, Md5Server
from .method import EapMethodMachine, Lookup
from .mschapv2 import MschapV2Peer, MschapV2Server
from .packet import EapCode, EapPacket, EapType, Md5Challenge, Nak
from .tls import EapTlsPeer, EapTlsServer

__all__ = [
    "EapCode",
    "EapError",
    "EapMethodMachine",
    "EapPacket",
    "EapTlsPeer",
    "EapTlsServer",
    "EapType",
    "IdentityServer",
    "Lookup",
    "Md5Challenge",
    "Md5Peer",
    "Md5Server",
    "MschapV2Peer",
    "MschapV2Server",
    "Nak",
]
