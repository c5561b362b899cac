"""How IKE_AUTH proves who each end is (RFC 7296 §2.15): a pluggable `Authenticator`.

IKE_AUTH hands the authenticator the octets each end signs (`signed_octets`: its own
IKE_SA_INIT message, the peer's nonce and the MAC of its ID) and puts what it builds in
its message; on receipt it asks whether the peer's AUTH proves the peer over the peer's
octets. The exchange knows nothing else of the method, so that signatures (with CERT and
CERTREQ), EAP rounds and configuration payloads come as authenticators of their own.
`PskAuthenticator` is the shared key's (method 2, Shared Key Message Integrity Code).
"""

from __future__ import annotations

from typing import Protocol

from larval.crypto.ike_auth import psk_auth, verify_psk_auth
from larval.crypto.prf import Prf

from .constants import AuthMethod
from .payloads import AuthPayload

__all__ = ["Authenticator", "PskAuthenticator"]


class Authenticator(Protocol):
    """One way for the ends of an IKE SA to prove themselves in IKE_AUTH."""

    #: The Auth Method its AUTH payloads carry; another from the peer is refused.
    @property
    def method(self) -> AuthMethod: ...

    def build(self, prf: Prf, octets: bytes) -> AuthPayload:
        """This end's AUTH over its signed octets."""
        ...

    def verify(self, prf: Prf, octets: bytes, auth: AuthPayload) -> bool:
        """Does the peer's AUTH prove the peer over its signed octets?"""
        ...


class PskAuthenticator:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15)."""

    method = AuthMethod.SHARED_KEY_MIC

    def __init__(self, psk: bytes) -> None:
        self._psk = psk

    def __repr__(self) -> str:
        return "<PskAuthenticator>"  # never the key

    def build(self, prf: Prf, octets: bytes) -> AuthPayload:
        return AuthPayload(self.method, psk_auth(prf, self._psk, octets))

    def verify(self, prf: Prf, octets: bytes, auth: AuthPayload) -> bool:
        return auth.method == self.method and verify_psk_auth(prf, self._psk, octets, auth.data)
