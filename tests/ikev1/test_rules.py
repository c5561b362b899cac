"""The per-message payload table (RFC 2409 §5, §5.5, §5.7): each vector passes its row,
and each way of breaking a row raises the Notify type the module promises."""

from __future__ import annotations

import pytest

from larval.ikev1 import (
    MESSAGE_RULES,
    DeletePayload,
    ExchangeType,
    HashPayload,
    IdPayload,
    IdType,
    IkeV1Message,
    IkeV1ProtocolError,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    PayloadType,
    ProtocolId,
    SigPayload,
    UnknownPayload,
    VendorIdPayload,
    check_payloads,
)

from .vectors import (
    CHAIN_VECTORS,
    COOKIE_I,
    COOKIE_R,
    HASH_SHA1,
    MAIN_MODE_1,
    MESSAGE_VECTORS,
    NONCE_I,
    QUICK_MODE_1,
    ChainVector,
    MessageVector,
)

MM = ExchangeType.IDENTITY_PROTECTION
QM = ExchangeType.QUICK_MODE
INFO = ExchangeType.INFORMATIONAL
ID_I = IdPayload(IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1]))
HASH = HashPayload(HASH_SHA1)


def _msg(exchange: ExchangeType, *payloads: Payload) -> IkeV1Message:
    return IkeV1Message(COOKIE_I, COOKIE_R, exchange, 0, payloads)


def _fails(message: IkeV1Message, number: int, encrypted: bool) -> NotifyType:
    with pytest.raises(IkeV1ProtocolError) as info:
        check_payloads(message, number, encrypted=encrypted)
    return info.value.notify


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v.name)
def test_message_vectors_pass(vector: MessageVector) -> None:
    check_payloads(vector.message, vector.number, encrypted=False)


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_chain_vectors_pass(vector: ChainVector) -> None:
    check_payloads(_msg(vector.exchange, *vector.payloads), vector.number, encrypted=True)


def test_every_exchange_has_its_messages() -> None:
    numbers: dict[ExchangeType, list[int]] = {}
    for exchange, number in MESSAGE_RULES:
        numbers.setdefault(exchange, []).append(number)
    assert numbers == {
        MM: [1, 2, 3, 4, 5, 6],
        ExchangeType.AGGRESSIVE: [1, 2, 3],
        QM: [1, 2, 3],
        INFO: [1],
        ExchangeType.TRANSACTION: [1, 2],
    }


def test_main_mode_5_with_psk_or_signature() -> None:
    check_payloads(_msg(MM, ID_I, HASH), 5, encrypted=True)
    check_payloads(_msg(MM, ID_I, SigPayload(b"sig")), 5, encrypted=True)
    initial_contact = NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP, bytes(16))
    check_payloads(_msg(MM, ID_I, HASH, initial_contact), 5, encrypted=True)


def test_main_mode_5_needs_exactly_one_authenticator() -> None:
    assert _fails(_msg(MM, ID_I), 5, True) == NotifyType.PAYLOAD_MALFORMED
    assert _fails(_msg(MM, ID_I, HASH, SigPayload(b"s")), 5, True) == NotifyType.PAYLOAD_MALFORMED


def test_main_mode_5_in_the_clear() -> None:
    assert _fails(_msg(MM, ID_I, HASH), 5, False) == NotifyType.INVALID_FLAGS


def test_main_mode_1_encrypted() -> None:
    assert _fails(MAIN_MODE_1.message, 1, True) == NotifyType.INVALID_FLAGS


def test_payload_not_allowed() -> None:
    message = _msg(MM, KePayload(b"k"), NoncePayload(NONCE_I), ID_I)
    with pytest.raises(IkeV1ProtocolError) as info:
        check_payloads(message, 3, encrypted=False)
    assert info.value.notify == NotifyType.INVALID_PAYLOAD_TYPE
    assert info.value.data == bytes([PayloadType.ID])


def test_payload_missing_or_repeated() -> None:
    assert _fails(_msg(MM, KePayload(b"k")), 3, False) == NotifyType.PAYLOAD_MALFORMED
    twice = _msg(MM, KePayload(b"k"), KePayload(b"k"), NoncePayload(NONCE_I))
    assert _fails(twice, 3, False) == NotifyType.PAYLOAD_MALFORMED


def test_nat_d_draft_counts_as_nat_d() -> None:
    draft = NatDPayload(bytes(20), PayloadType.NAT_D_DRAFT)
    check_payloads(
        _msg(MM, KePayload(b"k"), NoncePayload(NONCE_I), draft, draft), 3, encrypted=False
    )


def test_quick_mode_ids_come_in_pairs() -> None:
    payloads = list(QUICK_MODE_1.payloads)
    one_id = [p for p in payloads if p is not payloads[-1]]
    assert _fails(_msg(QM, *one_id), 1, True) == NotifyType.PAYLOAD_MALFORMED
    no_id = [p for p in payloads if not isinstance(p, IdPayload)]
    check_payloads(_msg(QM, *no_id), 1, encrypted=True)


def test_quick_mode_hash_first() -> None:
    payloads = list(QUICK_MODE_1.payloads)
    moved = [*payloads[1:3], payloads[0], *payloads[3:]]
    assert _fails(_msg(QM, *moved), 1, True) == NotifyType.PAYLOAD_MALFORMED


def test_quick_mode_3() -> None:
    check_payloads(_msg(QM, HASH), 3, encrypted=True)
    assert _fails(_msg(QM), 3, True) == NotifyType.PAYLOAD_MALFORMED


def test_informational_before_phase_1_ends() -> None:
    # RFC 2409 §5.7: without keys, HDR, N in the clear.
    notify = NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN, ProtocolId.ISAKMP)
    check_payloads(_msg(INFO, notify), 1, encrypted=False)


def test_informational_encrypted_needs_hash() -> None:
    notify = NotifyPayload(NotifyType.R_U_THERE_ACK, ProtocolId.ISAKMP, bytes(16), bytes(4))
    assert _fails(_msg(INFO, notify), 1, True) == NotifyType.PAYLOAD_MALFORMED


def test_informational_carries_n_or_d() -> None:
    delete = DeletePayload(ProtocolId.ESP, 4, (bytes(4),))
    notify = NotifyPayload(NotifyType.R_U_THERE, ProtocolId.ISAKMP, bytes(16), bytes(4))
    assert _fails(_msg(INFO, HASH), 1, True) == NotifyType.PAYLOAD_MALFORMED
    assert _fails(_msg(INFO, HASH, notify, delete), 1, True) == NotifyType.PAYLOAD_MALFORMED


def test_unknown_payloads() -> None:
    base = (KePayload(b"k"), NoncePayload(NONCE_I))
    private = UnknownPayload(PayloadType(200), b"x")
    check_payloads(_msg(MM, *base, private), 3, encrypted=False)
    reserved = UnknownPayload(PayloadType(50), b"x")
    assert _fails(_msg(MM, *base, reserved), 3, False) == NotifyType.INVALID_PAYLOAD_TYPE


def test_unsupported_exchange() -> None:
    message = _msg(ExchangeType.BASE, VendorIdPayload(b"v"))
    assert _fails(message, 1, False) == NotifyType.UNSUPPORTED_EXCHANGE_TYPE


def test_no_such_message() -> None:
    with pytest.raises(ValueError):
        check_payloads(_msg(QM, HASH), 4, encrypted=True)
