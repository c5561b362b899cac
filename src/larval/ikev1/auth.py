"""How Phase 1 proves who each end is (RFC 2409 §5): a pluggable `Phase1Authenticator`.

Main and Aggressive Mode hand the authenticator what the method keys and signs: SKEYID
is made from the nonces (and, for signatures, g^xy), and HASH_I/HASH_R (or SIG_I/SIG_R)
cover `Phase1Octets`: both KE values, both cookies, the initiator's SA offer and the
sender's ID payload body. The exchange knows nothing else of the method, so that
signatures (with CERT and CERTREQ) and XAuth after Phase 1 come as authenticators or
exchanges of their own. `PskAuthenticator` is the pre-shared key's (§5.4).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from larval.crypto.ikev1_keys import Ikev1Prf, hash_i, hash_r, skeyid_psk

from .constants import IkeAuthMethod
from .message import IkeV1Message
from .payloads import HashPayload, Payload

__all__ = ["Phase1Authenticator", "Phase1Octets", "PskAuthenticator"]


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Octets:
    """What HASH_I and HASH_R cover, each end's ID body aside (RFC 2409 §5)."""

    g_xi: bytes
    g_xr: bytes
    cky_i: bytes
    cky_r: bytes
    sai_b: bytes  # the initiator's SA payload body, as offered

    def __repr__(self) -> str:
        return "<Phase1Octets>"


class Phase1Authenticator(Protocol):
    """One way for the ends of an ISAKMP SA to prove themselves in Phase 1."""

    #: The AUTHENTICATION_METHOD attribute of the Phase 1 transforms it goes with.
    @property
    def method(self) -> IkeAuthMethod: ...

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        """SKEYID, from which every Phase 1 key comes (§5)."""
        ...

    def build(
        self, prf: Ikev1Prf, skeyid: bytes, octets: Phase1Octets, id_b: bytes, initiator: bool
    ) -> Payload:
        """This end's proof over its ID body: HASH_I as initiator, HASH_R as responder."""
        ...

    def verify(
        self,
        prf: Ikev1Prf,
        skeyid: bytes,
        octets: Phase1Octets,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> bool:
        """Does `message` prove the peer (`initiator`: the peer is the initiator)?"""
        ...


class PskAuthenticator:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b); HASH_I/HASH_R as the proof (§5.4)."""

    method = IkeAuthMethod.PRE_SHARED_KEY

    def __init__(self, psk: bytes) -> None:
        self._psk = psk

    def __repr__(self) -> str:
        return "<PskAuthenticator>"  # never the key

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return skeyid_psk(prf, self._psk, nonce_i, nonce_r)

    def build(
        self, prf: Ikev1Prf, skeyid: bytes, octets: Phase1Octets, id_b: bytes, initiator: bool
    ) -> Payload:
        return HashPayload(_hash(prf, skeyid, octets, id_b, initiator))

    def verify(
        self,
        prf: Ikev1Prf,
        skeyid: bytes,
        octets: Phase1Octets,
        id_b: bytes,
        message: IkeV1Message,
        initiator: bool,
    ) -> bool:
        proof = message.first(HashPayload)
        expected = _hash(prf, skeyid, octets, id_b, initiator)
        return proof is not None and secrets.compare_digest(proof.data, expected)


def _hash(prf: Ikev1Prf, skeyid: bytes, o: Phase1Octets, id_b: bytes, initiator: bool) -> bytes:
    make = hash_i if initiator else hash_r
    return make(prf, skeyid, o.g_xi, o.g_xr, o.cky_i, o.cky_r, o.sai_b, id_b)
