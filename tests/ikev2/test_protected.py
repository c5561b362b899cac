"""The Encrypted payload's framing (RFC 7296 §3.14) and fragmentation (RFC 7383).

The test-only `ToyCipher` stands in for the crypto layer so that the framing can be
checked byte by byte; one test runs the crypto layer's real `SkCipher` through it.
"""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest

from larval.crypto.ike_transforms import (
    EncrId,
    IntegId,
    Transform,
    encr_key_size,
    integ_key_size,
)
from larval.crypto.sk import SkCipher
from larval.ikev2 import (
    CertEncoding,
    CertPayload,
    ExchangeType,
    FragmentReassembler,
    IkeDecodeError,
    IkeEncodeError,
    IkeFragment,
    IkeMessage,
    IkeProtocolError,
    NotifyType,
    PayloadType,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
    decode_fragment,
    decode_message,
    decode_protected,
    encode_protected,
    fragment,
)

from .toycipher import ICV_SIZE, IV_SIZE, ToyCipher, ToyIntegrityError
from .vectors import CHAIN_VECTORS, IKE_AUTH_REQUEST_INNER, SPI_I, SPI_R, ChainVector


def _message(vector: ChainVector, message_id: int = 1) -> IkeMessage:
    return IkeMessage(
        SPI_I,
        SPI_R,
        vector.exchange,
        not vector.is_response,
        vector.is_response,
        message_id,
        vector.payloads,
    )


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_protected_round_trip(vector: ChainVector) -> None:
    cipher = ToyCipher()
    message = _message(vector)
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    assert decode_protected(wire, cipher.unprotect) == message

    # The framing, field by field (RFC 7296 §3.1, §3.14).
    inner_len = len(vector.wire)
    sealed_len = inner_len + cipher.overhead(inner_len)
    assert wire[16] == PayloadType.SK  # header Next Payload
    assert struct.unpack(">I", wire[24:28])[0] == len(wire) == 28 + 4 + sealed_len
    assert wire[28] == vector.first  # SK Next Payload: the first inner payload
    assert wire[29] == 0  # C clear
    assert struct.unpack(">H", wire[30:32])[0] == 4 + sealed_len
    # protect saw exactly the final bytes before the IV as its AAD.
    assert cipher.aads == [wire[:32]]
    # The body is IV | ciphertext | ICV; the ciphertext holds the chain, padded.
    body = wire[32:]
    ciphertext = body[IV_SIZE:-ICV_SIZE]
    assert bytes(b ^ 0x5A for b in ciphertext)[:inner_len] == vector.wire

    # In the clear the same bytes show the SK payload, opaque, with its first inner type.
    clear = decode_message(wire)
    assert clear.payloads == (SkPayload(body, vector.first),)
    assert clear.encode() == wire


def test_unprotected_payloads_before_sk() -> None:
    cipher = ToyCipher()
    message = IkeMessage(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        True,
        False,
        2,
        IKE_AUTH_REQUEST_INNER.payloads[:1],
        unprotected=(VendorIdPayload(b"clear"),),
    )
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    assert wire[16] == PayloadType.VENDOR_ID
    assert wire[28] == PayloadType.SK  # V's Next Payload
    assert wire[37] == PayloadType.IDi  # SK's Next Payload
    assert cipher.aads == [wire[:41]]  # RFC 5282 §5.1: everything before the IV
    assert decode_protected(wire, cipher.unprotect) == message
    with pytest.raises(IkeEncodeError):
        message.encode()


def test_empty_informational() -> None:
    # RFC 7296 §1.4: an INFORMATIONAL with no payloads is a liveness check.
    cipher = ToyCipher()
    message = IkeMessage(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, False, True, 9)
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    assert wire[28] == PayloadType.NONE
    assert decode_protected(wire, cipher.unprotect) == message


def test_tampering_reaches_unprotect() -> None:
    cipher = ToyCipher()
    wire = bytearray(
        encode_protected(_message(IKE_AUTH_REQUEST_INNER), cipher.protect, cipher.overhead)
    )
    wire[20] ^= 1  # the Message ID, covered through the AAD
    with pytest.raises(ToyIntegrityError):
        decode_protected(bytes(wire), cipher.unprotect)


def test_decode_protected_needs_sk() -> None:
    cipher = ToyCipher()
    clear = IkeMessage(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, True, False, 1)
    with pytest.raises(IkeDecodeError, match="no Encrypted payload"):
        decode_protected(clear.encode(), cipher.unprotect)
    (first, *_) = fragment(_message(IKE_AUTH_REQUEST_INNER), cipher.protect, cipher.overhead, 100)
    with pytest.raises(IkeDecodeError, match="SKF"):
        decode_protected(first, cipher.unprotect)


def test_inner_chain_errors_are_syntax_errors() -> None:
    # Whatever unprotect returns is decoded like any chain.
    cipher = ToyCipher()
    wire = encode_protected(_message(IKE_AUTH_REQUEST_INNER), cipher.protect, cipher.overhead)
    with pytest.raises(IkeDecodeError):
        decode_protected(wire, lambda aad, body: b"\x00\x00\x00\x02")

    # An unknown critical payload inside SK rejects the message too (RFC 7296 §2.5).
    critical = IkeMessage(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        True,
        False,
        4,
        (UnknownPayload(PayloadType(201), True, b""),),
    )
    wire = encode_protected(critical, cipher.protect, cipher.overhead)
    with pytest.raises(IkeProtocolError) as info:
        decode_protected(wire, cipher.unprotect)
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == b"\xc9"


def test_protect_length_contract() -> None:
    cipher = ToyCipher()
    with pytest.raises(IkeEncodeError, match="protect returned"):
        encode_protected(
            _message(IKE_AUTH_REQUEST_INNER),
            lambda aad, plaintext: cipher.protect(aad, plaintext) + b"x",
            cipher.overhead,
        )


@pytest.mark.parametrize(
    ("encr", "integ"),
    [
        (Transform(1, EncrId.AES_CBC, 128), IntegId.HMAC_SHA2_256_128),
        (Transform(1, EncrId.AES_GCM_16, 256), IntegId.NONE),
    ],
)
def test_with_the_crypto_layer(encr: Transform, integ: IntegId) -> None:
    sk_e = bytes(range(encr_key_size(encr)))
    sk_a = bytes(range(integ_key_size(integ)))
    sender = SkCipher.of(encr, integ, sk_e, sk_a)
    receiver = SkCipher.of(encr, integ, sk_e, sk_a)
    message = _message(IKE_AUTH_REQUEST_INNER)
    wire = encode_protected(message, lambda aad, pt: sender.encrypt(pt, aad), sender.overhead)
    assert decode_protected(wire, lambda aad, body: receiver.decrypt(body, aad)) == message
    pieces = fragment(message, lambda aad, pt: sender.encrypt(pt, aad), sender.overhead, 150)
    assembler = FragmentReassembler()
    results = [
        assembler.add(decode_fragment(p, lambda aad, body: receiver.decrypt(body, aad)))
        for p in pieces
    ]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == message


# -- Fragmentation (RFC 7383) -------------------------------------------------------------

BIG = IkeMessage(
    SPI_I,
    SPI_R,
    ExchangeType.IKE_AUTH,
    True,
    False,
    1,
    (
        *IKE_AUTH_REQUEST_INNER.payloads[:2],
        CertPayload(CertEncoding.X509_SIGNATURE, bytes(range(256)) * 12),
        *IKE_AUTH_REQUEST_INNER.payloads[2:],
    ),
)


def _fragments(max_size: int = 576) -> tuple[ToyCipher, list[bytes]]:
    cipher = ToyCipher()
    return cipher, fragment(BIG, cipher.protect, cipher.overhead, max_size)


def test_fragment_framing() -> None:
    cipher, pieces = _fragments()
    total = len(pieces)
    assert total > 5
    for number, wire in enumerate(pieces, 1):
        assert len(wire) <= 576
        assert wire[16] == PayloadType.SKF
        assert struct.unpack(">I", wire[24:28])[0] == len(wire)
        # RFC 7383 §2.5: Next Payload is the first inner type in fragment 1 only.
        assert wire[28] == (PayloadType.IDi if number == 1 else 0)
        assert struct.unpack(">HHH", wire[30:36]) == (len(wire) - 28, number, total)
        (skf,) = decode_message(wire).payloads
        assert isinstance(skf, SkfPayload)
        assert (skf.fragment_number, skf.total_fragments) == (number, total)
    # Each piece was protected with the AAD through Total Fragments.
    assert cipher.aads == [wire[:36] for wire in pieces]
    # All but the last are filled to the limit, give or take the padding.
    assert all(len(wire) > 576 - 8 for wire in pieces[:-1])


def _opened(cipher: ToyCipher, pieces: list[bytes]) -> list[IkeFragment]:
    return [decode_fragment(wire, cipher.unprotect) for wire in pieces]


def test_fragments_carry_their_message_header() -> None:
    # Every fragment names the message it belongs to: the header's fields, no payloads;
    # the reassembled message takes them from there.
    cipher, pieces = _fragments()
    for f in _opened(cipher, pieces):
        assert f.message == dataclasses.replace(BIG, payloads=())
    odd = dataclasses.replace(BIG, higher_version=True, minor_version=3)
    (only,) = fragment(odd, cipher.protect, cipher.overhead, 10_000)
    opened = decode_fragment(only, cipher.unprotect)
    assert (opened.message.higher_version, opened.message.minor_version) == (True, 3)
    assert FragmentReassembler().add(opened) == odd


def test_reassembly_in_order() -> None:
    cipher, pieces = _fragments()
    reassembler = FragmentReassembler()
    results = [reassembler.add(f) for f in _opened(cipher, pieces)]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == BIG
    assert len(reassembler) == 0


def test_reassembly_out_of_order_with_duplicates() -> None:
    cipher, pieces = _fragments()
    fragments = _opened(cipher, pieces)
    shuffled = fragments + fragments[:3] + fragments[-2:]
    random.Random(7).shuffle(shuffled)
    # Keep one copy of fragment 2 back for the end, so the message completes last.
    shuffled.remove(fragments[1])
    while fragments[1] in shuffled:
        shuffled.remove(fragments[1])
    reassembler = FragmentReassembler()
    assert [reassembler.add(f) for f in shuffled] == [None] * len(shuffled)
    assert reassembler.add(fragments[1]) == BIG
    # A duplicate arriving after completion starts a new partial message, never a second copy.
    assert reassembler.add(fragments[0]) is None


def test_single_fragment() -> None:
    cipher = ToyCipher()
    (only,) = fragment(BIG, cipher.protect, cipher.overhead, 10_000)
    assert FragmentReassembler().add(decode_fragment(only, cipher.unprotect)) == BIG


def test_more_total_fragments_restarts() -> None:
    # RFC 7383 §2.5.2: the sender re-fragmented smaller; older pieces are dropped.
    cipher = ToyCipher()
    coarse = _opened(cipher, fragment(BIG, cipher.protect, cipher.overhead, 1200))
    fine = _opened(cipher, fragment(BIG, cipher.protect, cipher.overhead, 576))
    assert len(fine) > len(coarse)
    reassembler = FragmentReassembler()
    assert reassembler.add(coarse[0]) is None
    for f in fine[:-1]:
        assert reassembler.add(f) is None
    # A leftover coarse fragment (fewer Total Fragments) is ignored.
    assert reassembler.add(coarse[1]) is None
    assert reassembler.add(fine[-1]) == BIG


def test_reassembly_limits() -> None:
    cipher, pieces = _fragments()
    first = _opened(cipher, pieces)[0]
    reassembler = FragmentReassembler(max_messages=2)
    for message_id in range(5):
        message = dataclasses.replace(first.message, message_id=message_id)
        reassembler.add(dataclasses.replace(first, message=message))
    assert len(reassembler) == 2
    reassembler.discard(4, False)
    assert len(reassembler) == 1

    small = FragmentReassembler(max_bytes=1000)
    for f in _opened(cipher, pieces):
        assert small.add(f) is None


def test_reassembly_rejects_mixed_exchanges() -> None:
    cipher, pieces = _fragments()
    first, second, *_ = _opened(cipher, pieces)
    reassembler = FragmentReassembler()
    reassembler.add(first)
    other = dataclasses.replace(second.message, exchange_type=ExchangeType.INFORMATIONAL)
    stray = dataclasses.replace(second, message=other)
    with pytest.raises(IkeProtocolError, match="does not match"):
        reassembler.add(stray)
    assert len(reassembler) == 0


def test_reassembled_chain_must_decode() -> None:
    message = IkeMessage(SPI_I, SPI_R, ExchangeType.IKE_AUTH, True, False, 1)
    garbage = IkeFragment(message, 1, 1, PayloadType.IDi, b"\x00\x00\x00")
    with pytest.raises(IkeDecodeError):
        FragmentReassembler().add(garbage)


def test_fragment_size_too_small() -> None:
    cipher = ToyCipher()
    with pytest.raises(IkeEncodeError, match="no fragment fits"):
        fragment(BIG, cipher.protect, cipher.overhead, 28 + 8 + cipher.overhead(1))


def test_decode_fragment_checks() -> None:
    cipher, pieces = _fragments()
    with pytest.raises(IkeDecodeError, match="no SKF"):
        decode_fragment(BIG.encode(), cipher.unprotect)
    sk = encode_protected(BIG, cipher.protect, cipher.overhead)
    with pytest.raises(IkeDecodeError, match="no SKF"):
        decode_fragment(sk, cipher.unprotect)
    tampered = bytearray(pieces[2])
    tampered[34] ^= 1  # Fragment Number/Total Fragments are authenticated (RFC 7383 §2.5)
    with pytest.raises((ToyIntegrityError, IkeDecodeError)):
        decode_fragment(bytes(tampered), cipher.unprotect)


def test_decode_fragment_skips_unknown_payloads() -> None:
    _, pieces = _fragments()
    wire = pieces[0]
    # Insert a non-critical payload of type 200 in front of SKF (RFC 7296 §2.5).
    extra = bytes([PayloadType.SKF, 0, 0, 6]) + b"hi"
    patched = wire[:16] + b"\xc8" + wire[17:24] + struct.pack(">I", len(wire) + 6)
    patched += extra + wire[28:]
    opened = decode_fragment(patched, lambda aad, body: body)
    assert opened.fragment_number == 1
    assert opened.data == wire[36:]
    # A known payload there is not allowed.
    known = patched[:16] + b"\x2b" + patched[17:]
    with pytest.raises(IkeDecodeError, match="VENDOR_ID payload beside an SKF"):
        decode_fragment(known, lambda aad, body: body)


@pytest.mark.parametrize("vector", CHAIN_VECTORS, ids=lambda v: v.name)
def test_a_message_read_in_the_clear_already_is_opened_without_reading_it_again(
    vector: ChainVector,
) -> None:
    """What a receiver read with `decode_message` (to find the IKE SA and the exchange)
    opens to the same message, with the same AAD, as the bytes alone; tampering is
    found the same way."""
    cipher = ToyCipher()
    message = _message(vector, message_id=7)
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    clear = decode_message(wire)
    assert isinstance(clear.payloads[0], SkPayload)
    aads: list[bytes] = []

    def unprotect(aad: bytes, body: bytes) -> bytes:
        aads.append(aad)
        return cipher.unprotect(aad, body)

    assert decode_protected(wire, unprotect, clear) == message
    assert decode_protected(wire, unprotect) == message
    assert aads == [wire[:32], wire[:32]]
    tampered = bytearray(wire)
    tampered[-1] ^= 1
    with pytest.raises(ToyIntegrityError):
        decode_protected(bytes(tampered), cipher.unprotect, decode_message(bytes(tampered)))


def test_a_message_with_payloads_before_sk_is_read_whole_even_given_its_clear_part() -> None:
    cipher = ToyCipher()
    message = IkeMessage(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, True, False, 2,
                         IKE_AUTH_REQUEST_INNER.payloads[:1],
                         unprotected=(VendorIdPayload(b"clear"),))  # fmt: skip
    wire = encode_protected(message, cipher.protect, cipher.overhead)
    assert decode_protected(wire, cipher.unprotect, decode_message(wire)) == message
