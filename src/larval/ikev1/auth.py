"""How Phase 1 proves who each end is (RFC 2409 §5): a pluggable `Phase1Authenticator`.

Main and Aggressive Mode hand the authenticator what the method keys and signs: SKEYID
is made from the nonces (and, for signatures, g^xy), and HASH_I/HASH_R (or SIG_I/SIG_R)
cover `Phase1Material`: both KE values, both cookies, the initiator's SA offer — and the
sender's ID payload body. The exchange knows nothing else of the method, so that
signatures (with CERT and CERTREQ) and XAuth after Phase 1 come as authenticators or
exchanges of their own. `PskAuthenticator` is the pre-shared key's (§5.4).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import ClassVar, Protocol

from larval.crypto.ikev1_keys import Ikev1Prf, hash_i, hash_r, skeyid_psk

from .constants import IkeAuthMethod
from .message import IkeV1Message
from .payloads import HashPayload, Payload

__all__ = ["Phase1Authenticator", "Phase1Material", "PskAuthenticator"]


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Material:
    """The prf and SKEYID a proof is made with, and what it covers besides the sender's
    ID body (RFC 2409 §5)."""

    prf: Ikev1Prf
    skeyid: bytes
    g_xi: bytes
    g_xr: bytes
    cky_i: bytes
    cky_r: bytes
    sai_b: bytes  # the initiator's SA payload body, as offered

    def __repr__(self) -> str:
        return "<Phase1Material>"  # never SKEYID

    def hash(self, id_b: bytes, initiator: bool) -> bytes:
        """HASH_I (of the initiator's ID body) or HASH_R (of the responder's)."""
        make = hash_i if initiator else hash_r
        return make(self.prf, self.skeyid, self.g_xi, self.g_xr, self.cky_i, self.cky_r,
                    self.sai_b, id_b)  # fmt: skip


class Phase1Authenticator(Protocol):
    """One way for the ends of an ISAKMP SA to prove themselves in Phase 1."""

    #: The AUTHENTICATION_METHOD attribute of the Phase 1 transforms it goes with.
    @property
    def method(self) -> IkeAuthMethod: ...

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        """SKEYID, from which every Phase 1 key comes (§5)."""
        ...

    def build(self, material: Phase1Material, id_b: bytes, initiator: bool) -> Payload:
        """This end's proof over its ID body: HASH_I as initiator, HASH_R as responder."""
        ...

    def verify(
        self, material: Phase1Material, id_b: bytes, message: IkeV1Message, initiator: bool
    ) -> bool:
        """Does `message` prove its sender over the ID body `id_b` (`initiator`: the sender
        is the initiator)?"""
        ...


@dataclass(frozen=True, slots=True, repr=False)
class PskAuthenticator:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b); HASH_I/HASH_R as the proof (§5.4)."""

    psk: bytes
    method: ClassVar[IkeAuthMethod] = IkeAuthMethod.PRE_SHARED_KEY

    def __repr__(self) -> str:
        return "<PskAuthenticator>"  # never the key

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        return skeyid_psk(prf, self.psk, nonce_i, nonce_r)

    def build(self, material: Phase1Material, id_b: bytes, initiator: bool) -> Payload:
        return HashPayload(material.hash(id_b, initiator))

    def verify(
        self, material: Phase1Material, id_b: bytes, message: IkeV1Message, initiator: bool
    ) -> bool:
        proof = message.first(HashPayload)
        expected = material.hash(id_b, initiator)
        return proof is not None and secrets.compare_digest(proof.data, expected)
