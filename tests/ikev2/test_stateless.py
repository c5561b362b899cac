"""IKEv2's stateless answers, decoded back: the IKE_SA_INIT error responses and COOKIEs
(RFC 7296 §1.2, §2.6)."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pytest

from larval.ikev2.constants import ExchangeType, NotifyType, ProtocolId
from larval.ikev2.message import IkeMessage, decode_message
from larval.ikev2.payloads import KePayload, NoncePayload, NotifyPayload, Payload
from larval.ikev2.stateless import COOKIE_SECRET_LIFETIME, Cookies, init_error, no_proposal_chosen

SPI_I = bytes.fromhex("0102030405060708")
NONCE = bytes(range(32))
IP = "192.0.2.1"


def _only_notify(data: bytes, spi_i: bytes = SPI_I) -> tuple[IkeMessage, NotifyPayload]:
    message = decode_message(data)
    assert message.spi_i == spi_i and message.spi_r == bytes(8)
    assert message.exchange_type == ExchangeType.IKE_SA_INIT
    assert message.is_response and not message.is_initiator and message.message_id == 0
    (notify,) = message.payloads
    assert isinstance(notify, NotifyPayload)
    assert notify.protocol_id == ProtocolId.NONE and notify.spi == b""
    return message, notify


def test_no_proposal_chosen() -> None:
    data = no_proposal_chosen(SPI_I)
    _, notify = _only_notify(data)
    assert notify.notify_type == NotifyType.NO_PROPOSAL_CHOSEN and notify.data == b""
    # HDR (28) + N (8): nothing else goes with it.
    assert len(data) == 36


def test_invalid_ke_payload_names_the_group_to_use() -> None:
    data = init_error(SPI_I, NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", 31)).encode()
    _, notify = _only_notify(data)
    assert notify.notify_type == NotifyType.INVALID_KE_PAYLOAD
    assert struct.unpack("!H", notify.data) == (31,)  # RFC 7296 §3.10.1: the DH group


def _init(spi_i: bytes = SPI_I, cookie: bytes | None = None, nonce: bool = True) -> bytes:
    """An IKE_SA_INIT request: [N(COOKIE),] KE, Ni (the SA needs no checking here)."""
    payloads: list[Payload] = [] if cookie is None else [
        NotifyPayload(ProtocolId.NONE, NotifyType.COOKIE, b"", cookie)]  # fmt: skip
    payloads.append(KePayload(31, bytes(32)))
    if nonce:
        payloads.append(NoncePayload(NONCE))
    return IkeMessage(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, True, False, 0,
                      tuple(payloads)).encode()  # fmt: skip


def _cookies() -> Cookies:
    secrets = (bytes([n]) * 32 for n in itertools.count(1))
    return Cookies(lambda size: next(secrets)[:size])


def _asked(cookies: Cookies, now: float, ip: str = IP) -> bytes:
    check = cookies.check(_init(), ip, SPI_I, now)
    assert not check.admitted and check.reply is not None
    _, notify = _only_notify(check.reply)
    assert notify.notify_type == NotifyType.COOKIE
    return notify.data


def test_a_cookie_is_asked_for_and_the_one_returned_admits() -> None:
    cookies = _cookies()
    cookie = _asked(cookies, 0.0)
    # <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>), the first secret.
    secret = bytes([1]) * 32
    expected = hashlib.sha256(NONCE + bytes([192, 0, 2, 1]) + SPI_I + secret).digest()
    assert cookie == bytes([1]) + expected
    assert cookies.check(_init(cookie=cookie), IP, SPI_I, 1.0) == (True, None)


@pytest.mark.parametrize("what", ["address", "spi", "forged", "empty"])
def test_a_cookie_that_is_not_the_one_asked_for_is_asked_again(what: str) -> None:
    cookies = _cookies()
    cookie = _asked(cookies, 0.0)
    ip, spi_i = ("192.0.2.99", SPI_I) if what == "address" else (IP, SPI_I)
    if what == "spi":
        spi_i = bytes(8)
    offered = {"forged": cookie[:1] + bytes(32), "empty": b""}.get(what, cookie)
    check = cookies.check(_init(spi_i, cookie=offered), ip, spi_i, 1.0)
    assert not check.admitted and check.reply is not None
    _, notify = _only_notify(check.reply, spi_i)
    assert notify.notify_type == NotifyType.COOKIE and notify.data != offered


def test_the_secret_changes_and_the_one_before_still_verifies() -> None:
    cookies = _cookies()
    old = _asked(cookies, 0.0)
    later = COOKIE_SECRET_LIFETIME + 1
    new = _asked(cookies, later)
    assert new[0] == old[0] + 1 and new != old
    assert cookies.check(_init(cookie=old), IP, SPI_I, later).admitted
    assert cookies.check(_init(cookie=new), IP, SPI_I, later).admitted
    # One more change: the first secret is forgotten.
    _asked(cookies, 2 * later)
    assert not cookies.check(_init(cookie=old), IP, SPI_I, 2 * later).admitted
    assert cookies.check(_init(cookie=new), IP, SPI_I, 2 * later).admitted


def test_an_opener_without_a_nonce_or_that_does_not_decode_gets_nothing() -> None:
    cookies = _cookies()
    assert cookies.check(_init(nonce=False), IP, SPI_I, 0.0) == (False, None)
    assert cookies.check(_init()[:-1], IP, SPI_I, 0.0) == (False, None)
    assert (bytes([1]) * 32).hex() not in repr(cookies) and "\\x01" not in repr(cookies)
