"""IKEv1's stateless answer, decoded back: NO_PROPOSAL_CHOSEN to an opener that no IKEv1
connection takes (RFC 2408 §3.14, §5.3)."""

from __future__ import annotations

import itertools

from larval.ikev1.constants import ExchangeType, NotifyType, ProtocolId
from larval.ikev1.message import decode_message
from larval.ikev1.payloads import NotifyPayload
from larval.ikev1.stateless import no_proposal_chosen

CKY_I = bytes.fromhex("0102030405060708")


def test_no_proposal_chosen() -> None:
    draws = itertools.cycle([bytes.fromhex("12345678"), bytes.fromhex("00000000")])
    for expected_id in (0x12345679, 0x00000001):  # odd, so never 0 (Phase 1's)
        data = no_proposal_chosen(CKY_I, lambda size: next(draws)[:size])
        message = decode_message(data)
        assert (message.cookie_i, message.cookie_r) == (CKY_I, bytes(8))
        assert message.exchange_type == ExchangeType.INFORMATIONAL
        assert message.message_id == expected_id
        assert not message.commit and not message.auth_only
        (notify,) = message.payloads
        assert isinstance(notify, NotifyPayload)
        assert notify.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
        assert notify.protocol_id == ProtocolId.ISAKMP
        assert notify.spi == CKY_I + bytes(8)  # RFC 2408 §3.14: the cookies as the SPI
        assert notify.data == b""
        assert data[19] == 0  # flags: in the clear, nothing to encrypt it with
