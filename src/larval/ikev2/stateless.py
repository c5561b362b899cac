"""What an IKEv2 responder reads and answers before it holds any state for the peer.

* `recipient`: which IKE SA a datagram is for, and whether it opens one.
* `init_error`: the error response to an IKE_SA_INIT request, sent without creating an
  IKE SA (RFC 7296 §1.2, §2.21.1): NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD with the group
  to use, INVALID_SYNTAX; `no_proposal_chosen` is the one sent, as strongSwan does, when
  there is no IKEv2 connection for the peer at all.
* `Cookies`: the COOKIE a responder under load asks for, and checks when the initiator
  returns it (§2.6).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from typing import NamedTuple

from larval.ike.datagram import Recipient

from .constants import ExchangeType, NotifyType, ProtocolId
from .errors import IkeProtocolError
from .message import IkeMessage, decode_header, decode_message
from .payloads import NoncePayload, NotifyPayload

__all__ = [
    "COOKIE_SECRET_LIFETIME",
    "CookieCheck",
    "Cookies",
    "init_error",
    "no_proposal_chosen",
    "recipient",
]

COOKIE_SECRET_LIFETIME = 300.0  # seconds a secret makes new COOKIEs
_FLAG_RESPONSE = 0x20  # RFC 7296 §3.1


def recipient(datagram: bytes) -> Recipient | None:
    """The IKE SA `datagram` is for, or None if its header does not decode."""
    try:
        header = decode_header(datagram)
    except IkeProtocolError:
        return None
    opens = header.exchange_type == ExchangeType.IKE_SA_INIT and not header.flags & _FLAG_RESPONSE
    return Recipient(header.spi_i, opens)


def init_error(spi_i: bytes, notify: int, data: bytes = b"") -> IkeMessage:
    """<-- HDR(SPIi, 0), N(error): an IKE_SA_INIT error response (RFC 7296 §1.2, §2.6)."""
    return IkeMessage(
        spi_i, bytes(8), ExchangeType.IKE_SA_INIT, False, True, 0,
        (NotifyPayload(ProtocolId.NONE, NotifyType(notify), b"", data),),
    )  # fmt: skip


def no_proposal_chosen(spi_i: bytes) -> bytes:
    """The answer to an IKE_SA_INIT for which no IKEv2 connection exists: the peer learns
    at once that nothing here will do, and stops retransmitting."""
    return init_error(spi_i, NotifyType.NO_PROPOSAL_CHOSEN).encode()


class CookieCheck(NamedTuple):
    """What `Cookies.check` found: go on with the IKE_SA_INIT, or send `reply` instead
    (None: nothing, for an IKE_SA_INIT that does not decode or has no Ni)."""

    admitted: bool
    reply: bytes | None = None


class Cookies:
    """COOKIEs of RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi |
    <secret>), SHA-256. A new secret every `COOKIE_SECRET_LIFETIME` seconds; the one
    before still verifies, so a COOKIE handed out just before the change is honoured."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random = random_bytes
        self._secrets: dict[int, bytes] = {}  # by version, newest first
        self._version = 0
        self._since = 0.0

    def __repr__(self) -> str:
        return f"<Cookies secret version {self._version}>"

    def check(self, datagram: bytes, ip: str, spi_i: bytes, now: float) -> CookieCheck:
        """An IKE_SA_INIT request from `ip`: admitted if it returns a valid COOKIE, else
        answered with one, statelessly: <-- HDR(SPIi, 0), N(COOKIE)."""
        self._rotate(now)
        try:
            message = decode_message(datagram)
        except IkeProtocolError:
            return CookieCheck(False)
        nonce = message.first(NoncePayload)
        if nonce is None:
            return CookieCheck(False)
        offered = message.notify(NotifyType.COOKIE)
        version = offered.data[0] if offered is not None and offered.data else None
        if offered is not None and version in self._secrets:
            expected = self._cookie(version, nonce.data, ip, spi_i)
            if hmac.compare_digest(offered.data, expected):
                return CookieCheck(True)
        cookie = self._cookie(self._version, nonce.data, ip, spi_i)
        return CookieCheck(False, init_error(spi_i, NotifyType.COOKIE, cookie).encode())

    def _rotate(self, now: float) -> None:
        if now - self._since > COOKIE_SECRET_LIFETIME or not self._secrets:
            self._version = (self._version + 1) & 0xFF
            self._secrets = {self._version: self._random(32), **self._secrets}
            self._secrets = dict(list(self._secrets.items())[:2])
            self._since = now

    def _cookie(self, version: int, nonce: bytes, ip: str, spi_i: bytes) -> bytes:
        secret = self._secrets[version]
        digest = hashlib.sha256(nonce + ipaddress.ip_address(ip).packed + spi_i + secret).digest()
        return bytes([version]) + digest
