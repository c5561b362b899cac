"""The per-exchange payload table (rules.py), as in strongSwan's message rules."""

from __future__ import annotations

import pytest

from larval.ikev2 import (
    MESSAGE_RULES,
    AuthMethod,
    AuthPayload,
    DeletePayload,
    ExchangeType,
    IkeMessage,
    IkeProtocolError,
    KePayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    PayloadType,
    ProtocolId,
    SaPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
    check_payloads,
    decode_message,
)

from .vectors import (
    CHAIN_VECTORS,
    IKE_AUTH_SK,
    IKE_AUTH_SKF,
    IKE_SA_INIT_INVALID_KE,
    IKE_SA_INIT_REQUEST,
    SPI_I,
    SPI_R,
    UNKNOWN_NONCRITICAL,
    ChainVector,
    MessageVector,
)

INIT = IKE_SA_INIT_REQUEST.message


def _with(message: IkeMessage, payloads: tuple[Payload, ...], **changes: object) -> IkeMessage:
    fields = {
        "spi_i": message.spi_i,
        "spi_r": message.spi_r,
        "exchange_type": message.exchange_type,
        "is_initiator": message.is_initiator,
        "is_response": message.is_response,
        "message_id": message.message_id,
        "payloads": payloads,
    }
    fields.update(changes)
    return IkeMessage(**fields)  # type: ignore[arg-type]


def _fails(message: IkeMessage, inner: bool, *words: str) -> None:
    with pytest.raises(IkeProtocolError) as info:
        check_payloads(message, inner)
    assert info.value.notify == NotifyType.INVALID_SYNTAX
    for word in words:
        assert word in str(info.value)


def test_table_covers_every_exchange() -> None:
    for exchange in (34, 35, 36, 37):
        for is_response in (False, True):
            assert (ExchangeType(exchange), is_response) in MESSAGE_RULES


@pytest.mark.parametrize(
    "vector",
    [IKE_SA_INIT_REQUEST, IKE_SA_INIT_INVALID_KE, IKE_AUTH_SK, IKE_AUTH_SKF],
    ids=lambda v: v.name,
)
def test_message_vectors_pass(vector: MessageVector) -> None:
    check_payloads(decode_message(vector.wire), inner=False)


def test_informational_in_the_clear() -> None:
    # RFC 7296 §1.4: INFORMATIONAL travels inside SK once the IKE SA exists.
    _fails(UNKNOWN_NONCRITICAL.message, False, "INFORMATIONAL response", "Encrypted payload")


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_inner_vectors_pass(vector: ChainVector) -> None:
    message = IkeMessage(
        SPI_I,
        SPI_R,
        vector.exchange,
        not vector.is_response,
        vector.is_response,
        1,
        vector.payloads,
    )
    check_payloads(message, inner=True)
    # The same payloads in the clear break the rule that they travel inside SK.
    _fails(message, False, "needs one Encrypted payload")


def test_ike_sa_init_missing_ke() -> None:
    # RFC 7296 §1.2: HDR, SAi1, KEi, Ni.
    payloads = tuple(p for p in INIT.payloads if not isinstance(p, KePayload))
    _fails(_with(INIT, payloads), False, "IKE_SA_INIT request", "KE payload missing")


def test_ike_sa_init_two_nonces() -> None:
    payloads = (*INIT.payloads, NoncePayload(bytes(16)))
    _fails(_with(INIT, payloads), False, "IKE_SA_INIT request", "2 NONCE payloads, at most 1")


def test_ike_sa_init_not_encrypted() -> None:
    _fails(INIT, True, "IKE_SA_INIT request", "never encrypted")
    sk = (*INIT.payloads[:-1], SkPayload(b"x", PayloadType.NONE))
    _fails(_with(INIT, sk), False, "SK payload not allowed")


def test_ike_sa_init_not_allowed() -> None:
    payloads = (*INIT.payloads, AuthPayload(AuthMethod.PSK, b"x"))
    _fails(_with(INIT, payloads), False, "IKE_SA_INIT request", "AUTH payload not allowed")


def test_error_response_needs_only_the_notify() -> None:
    # RFC 7296 §2.21: an error answer carries N(error) without SA, KE, Nr.
    check_payloads(IKE_SA_INIT_INVALID_KE.message, inner=False)
    cookie = _with(
        IKE_SA_INIT_INVALID_KE.message,
        (NotifyPayload(ProtocolId.NONE, NotifyType.COOKIE, b"", bytes(16)),),
    )
    check_payloads(cookie, inner=False)  # RFC 7296 §2.6
    status_only = _with(
        IKE_SA_INIT_INVALID_KE.message,
        (NotifyPayload(ProtocolId.NONE, NotifyType.NAT_DETECTION_SOURCE_IP, b"", bytes(20)),),
    )
    _fails(status_only, False, "IKE_SA_INIT response", "SA payload missing")
    # A request gets no such exemption.
    error_request = _with(
        IKE_SA_INIT_INVALID_KE.message,
        IKE_SA_INIT_INVALID_KE.message.payloads,
        is_response=False,
        is_initiator=True,
    )
    _fails(error_request, False, "IKE_SA_INIT request", "missing")


def test_protected_exchange_in_the_clear() -> None:
    auth = IKE_AUTH_SK.message
    clear_payload = _with(auth, (VendorIdPayload(b"v"), *auth.payloads))
    _fails(clear_payload, False, "IKE_AUTH request", "VENDOR_ID payload must be inside")
    two = _with(auth, (SkPayload(b"x"), *auth.payloads))
    _fails(two, False, "needs one Encrypted payload")
    # Payloads sent in the clear before SK are checked on the decoded message too.
    (inner_vector,) = [v for v in CHAIN_VECTORS if v.exchange == ExchangeType.IKE_AUTH][:1]
    opened = IkeMessage(
        SPI_I,
        SPI_R,
        ExchangeType.IKE_AUTH,
        True,
        False,
        1,
        inner_vector.payloads,
        unprotected=(NotifyPayload(ProtocolId.NONE, NotifyType.INITIAL_CONTACT),),
    )
    _fails(opened, True, "NOTIFY payload must be inside")


def test_informational() -> None:
    base = IkeMessage(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, True, False, 5)
    check_payloads(base, inner=True)  # RFC 7296 §1.4: empty is a liveness check
    check_payloads(_with(base, (DeletePayload(ProtocolId.IKE),) * 2), inner=True)
    _fails(_with(base, (SaPayload(()),)), True, "INFORMATIONAL request", "SA payload not allowed")


def test_create_child_sa() -> None:
    (vector,) = [v for v in CHAIN_VECTORS if v.exchange == ExchangeType.CREATE_CHILD_SA]
    message = IkeMessage(SPI_I, SPI_R, vector.exchange, True, False, 2, vector.payloads)
    without_sa = tuple(p for p in vector.payloads if not isinstance(p, SaPayload))
    _fails(_with(message, without_sa), True, "CREATE_CHILD_SA request", "SA payload missing")
    refused = _with(
        message,
        (NotifyPayload(ProtocolId.NONE, NotifyType.NO_ADDITIONAL_SAS),),
        is_response=True,
        is_initiator=False,
    )
    check_payloads(refused, inner=True)


def test_unknown_payloads_are_skipped() -> None:
    payloads = (*INIT.payloads, UnknownPayload(PayloadType(200), False, b""))
    check_payloads(_with(INIT, payloads), inner=False)


def test_unknown_exchange() -> None:
    _fails(_with(INIT, (), exchange_type=ExchangeType(99)), False, "UNKNOWN_99", "no payload rules")
