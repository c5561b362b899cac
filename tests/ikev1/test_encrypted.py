"""Encrypted framing (RFC 2408 §3.1 flag E, RFC 2409 Appendix B) with a toy CBC cipher."""

from __future__ import annotations

import pytest

from larval.ikev1 import (
    ExchangeType,
    HashPayload,
    HeaderFlag,
    IkeV1DecodeError,
    IkeV1EncodeError,
    IkeV1Message,
    NotifyType,
    decode_encrypted,
    decode_header,
    decode_message,
    encode_chain,
    encode_encrypted,
)

from .toycipher import BLOCK, ToyCipher, ToyCipherError
from .vectors import (
    CHAIN_VECTORS,
    COOKIE_I,
    COOKIE_R,
    DELETE,
    QM_MESSAGE_ID,
    QUICK_MODE_1,
    ChainVector,
)


def _message(vector: ChainVector) -> IkeV1Message:
    return IkeV1Message(COOKIE_I, COOKIE_R, vector.exchange, QM_MESSAGE_ID, vector.payloads)


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_round_trip(vector: ChainVector) -> None:
    sender, receiver = ToyCipher(), ToyCipher()
    wire = encode_encrypted(_message(vector), sender.encrypt, BLOCK)
    assert decode_encrypted(wire, receiver.decrypt, BLOCK) == _message(vector)
    # Both sides end with the last ciphertext block as the next IV (RFC 2409 Appendix B).
    assert sender.iv == receiver.iv == wire[-BLOCK:]


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_framing(vector: ChainVector) -> None:
    cipher = ToyCipher()
    wire = encode_encrypted(_message(vector), cipher.encrypt, BLOCK)
    header = decode_header(wire)
    assert header.flags == HeaderFlag.ENCRYPTION
    assert header.next_payload == vector.first
    assert header.length == len(wire)
    assert header.message_id == QM_MESSAGE_ID
    # The callback saw the chain padded with zeros to whole blocks, and nothing else.
    (plaintext,) = cipher.plaintexts
    pad = -len(vector.wire) % BLOCK
    assert plaintext == vector.wire + bytes(pad)
    assert len(wire) == 28 + len(vector.wire) + pad


def test_no_padding_when_the_chain_fills_its_blocks() -> None:
    assert len(QUICK_MODE_1.wire) % BLOCK == 0
    cipher = ToyCipher()
    wire = encode_encrypted(_message(QUICK_MODE_1), cipher.encrypt, BLOCK)
    assert len(wire) == 28 + len(QUICK_MODE_1.wire)


def test_wire_payloads_are_the_plaintext_chain() -> None:
    wire = encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, BLOCK)
    message = decode_encrypted(wire, ToyCipher().decrypt, BLOCK)
    # What Quick Mode's HASH(1) covers: the chain after the HASH payload (RFC 2409 §5.5).
    assert b"".join(message.wire_payloads[1:]) == encode_chain(message.payloads[1:])


def _encrypted_with_tail(vector: ChainVector, tail: bytes) -> bytes:
    """The vector's chain followed by ``tail`` as padding, encrypted; Length patched."""
    plaintext = vector.wire + tail
    header = bytearray(_message(vector).header(28 + len(plaintext), encrypted=True).encode())
    return bytes(header) + ToyCipher().encrypt(plaintext)


@pytest.mark.parametrize(
    ("vector", "tail"),
    [
        (DELETE, bytes(4)),  # a 44-byte chain padded with zeros, as encode_encrypted pads
        (DELETE, bytes([1, 2, 3, 3])),  # the pad count in the last octet, as racoon pads
        (QUICK_MODE_1, bytes(7) + bytes([7])),  # a whole block after an aligned chain
    ],
    ids=["zeros", "counted", "whole-block"],
)
def test_padding_ignored(vector: ChainVector, tail: bytes) -> None:
    wire = _encrypted_with_tail(vector, tail)
    assert decode_encrypted(wire, ToyCipher().decrypt, BLOCK) == _message(vector)


def test_more_than_a_block_of_padding() -> None:
    wire = _encrypted_with_tail(DELETE, bytes(4 + 2 * BLOCK))
    with pytest.raises(IkeV1DecodeError) as info:
        decode_encrypted(wire, ToyCipher().decrypt, BLOCK)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED


def test_not_whole_blocks() -> None:
    wire = encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, BLOCK)
    cut = wire[:-3]
    cut = cut[:24] + len(cut).to_bytes(4, "big") + cut[28:]
    with pytest.raises(IkeV1DecodeError) as info:
        decode_encrypted(cut, ToyCipher().decrypt, BLOCK)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED


def test_empty_ciphertext() -> None:
    wire = IkeV1Message(COOKIE_I, COOKIE_R, ExchangeType.INFORMATIONAL, 1).header(28, True)
    with pytest.raises(IkeV1DecodeError) as info:
        decode_encrypted(wire.encode(), ToyCipher().decrypt, BLOCK)
    assert info.value.notify == NotifyType.PAYLOAD_MALFORMED


def test_wrong_key_is_malformed() -> None:
    wire = encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, BLOCK)
    with pytest.raises(IkeV1DecodeError) as info:
        decode_encrypted(wire, ToyCipher(iv=b"\x55" * BLOCK).decrypt, BLOCK)
    assert info.value.notify in (NotifyType.PAYLOAD_MALFORMED, NotifyType.INVALID_PAYLOAD_TYPE)


def test_flag_e_and_the_decoder_must_agree() -> None:
    encrypted = encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, BLOCK)
    with pytest.raises(IkeV1DecodeError) as info:
        decode_message(encrypted)
    assert info.value.notify == NotifyType.INVALID_FLAGS
    clear = _message(QUICK_MODE_1).encode()
    with pytest.raises(IkeV1DecodeError) as info:
        decode_encrypted(clear, ToyCipher().decrypt, BLOCK)
    assert info.value.notify == NotifyType.INVALID_FLAGS


def test_commit_and_auth_only_flags_round_trip() -> None:
    message = IkeV1Message(
        COOKIE_I,
        COOKIE_R,
        ExchangeType.QUICK_MODE,
        QM_MESSAGE_ID,
        (HashPayload(bytes(20)),),
        commit=True,
    )
    wire = encode_encrypted(message, ToyCipher().encrypt, BLOCK)
    assert wire[19] == HeaderFlag.ENCRYPTION | HeaderFlag.COMMIT
    assert decode_encrypted(wire, ToyCipher().decrypt, BLOCK) == message
    auth_only = IkeV1Message(COOKIE_I, COOKIE_R, ExchangeType.INFORMATIONAL, 7, auth_only=True)
    assert decode_message(auth_only.encode()) == auth_only


def test_encrypt_must_keep_the_length() -> None:
    with pytest.raises(IkeV1EncodeError):
        encode_encrypted(_message(QUICK_MODE_1), lambda p: p + bytes(BLOCK), BLOCK)


def test_decrypt_errors_pass_through() -> None:
    def refuse(ciphertext: bytes) -> bytes:
        raise ToyCipherError("no key")

    wire = encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, BLOCK)
    with pytest.raises(ToyCipherError):
        decode_encrypted(wire, refuse, BLOCK)


@pytest.mark.parametrize("block_size", [0, 256])
def test_block_size_range(block_size: int) -> None:
    with pytest.raises(ValueError):
        encode_encrypted(_message(QUICK_MODE_1), ToyCipher().encrypt, block_size)
