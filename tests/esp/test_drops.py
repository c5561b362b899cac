"""Every bad inbound packet ends in one `EspDropError` subclass naming its counter."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import AALG_SHA256HMAC, EALG_AES_CBC
from larval.esp import (
    EspAuthError,
    EspBadPaddingError,
    EspDropError,
    EspDummyPacket,
    EspMalformedError,
    EspSa,
    EspTruncatedError,
    EspUnknownSpiError,
    esp_decapsulate,
    esp_encapsulate_transport,
    esp_encapsulate_tunnel,
)

from .helpers import IPV4_UDP, IPV6_UDP, SUITE_IDS, SUITES, V4_A, V4_B, V6_A, V6_B, Suite


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_tampering_anywhere_fails_authentication(suite: Suite) -> None:
    out = suite.sa()
    esp = out.encrypt(IPV4_UDP, 4)
    for i in range(4, len(esp)):  # past the SPI, which selects the SA
        into = suite.sa()
        tampered = bytearray(esp)
        tampered[i] ^= 0x40
        with pytest.raises(EspAuthError) as info:
            into.decrypt(bytes(tampered))
        assert info.value.counter == "auth"
        assert into.replay.top == 0 and into.packets_in == 0


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_truncation(suite: Suite) -> None:
    esp = suite.sa().encrypt(IPV4_UDP, 4)
    for n in range(len(esp)):
        with pytest.raises(EspDropError) as info:
            suite.sa().decrypt(esp[:n])
        assert info.value.counter in ("truncated", "malformed", "auth")
    with pytest.raises(EspTruncatedError):
        suite.sa().decrypt(esp[:12])


def test_wrong_spi() -> None:
    esp = SUITES[0].sa(spi=0x2002).encrypt(b"x", 4)
    with pytest.raises(EspUnknownSpiError) as info:
        SUITES[0].sa(spi=0x1001).decrypt(esp)
    assert info.value.counter == "unknown_spi"
    packet = esp_encapsulate_tunnel(SUITES[0].sa(), IPV4_UDP, V4_A, V4_B)
    with pytest.raises(EspUnknownSpiError):
        esp_decapsulate(lambda spi: None, bytes(packet))


def test_cbc_ciphertext_not_whole_blocks() -> None:
    suite = SUITES[3]
    esp = suite.sa().encrypt(b"x" * 40, 4)
    with pytest.raises(EspMalformedError):
        suite.sa().decrypt(esp[:-1])


def test_bad_padding_is_caught_after_authentication() -> None:
    # A sender with a broken padding routine, built from the same keys: the ICV is good.
    ekey, akey = bytes(16), bytes(32)
    out = EspSa(0x1001, EALG_AES_CBC, ekey, AALG_SHA256HMAC, akey)
    import larval.esp.sa as sa_module

    good = sa_module._PAD_TRAILER
    try:
        sa_module._PAD_TRAILER = tuple(b"\x09" * n + bytes((n,)) for n in range(256))
        esp = out.encrypt(b"abc", 4)
    finally:
        sa_module._PAD_TRAILER = good
    into = EspSa(0x1001, EALG_AES_CBC, ekey, AALG_SHA256HMAC, akey)
    with pytest.raises(EspBadPaddingError) as info:
        into.decrypt(esp)
    assert info.value.counter == "bad_padding"
    assert into.replay.top == 0


def test_pad_length_longer_than_the_payload() -> None:
    out, into = SUITES[6].sa(), SUITES[6].sa()  # NULL: the trailer is in clear
    import larval.esp.sa as sa_module

    good = sa_module._PAD_TRAILER
    try:
        sa_module._PAD_TRAILER = tuple(b"\x01\x02" + bytes((200,)) for _ in range(256))
        esp = out.encrypt(b"", 4)
    finally:
        sa_module._PAD_TRAILER = good
    with pytest.raises(EspBadPaddingError):
        into.decrypt(esp)


def test_dummy_packet_is_discarded_but_counted() -> None:
    out, into = SUITES[0].sa(), SUITES[0].sa()
    with pytest.raises(EspDummyPacket) as info:
        into.decrypt(out.encrypt(b"", 59))
    assert info.value.counter == "dummy"
    assert into.replay.top == 1


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45" + bytes(10),
        bytes.fromhex("4500001c000000004011") + bytes(10),  # bad checksum
        b"\x70" + bytes(40),  # version 7
        b"\x60" + bytes(39),
    ],
)
def test_outer_header_garbage(packet: bytes) -> None:
    with pytest.raises(EspMalformedError):
        esp_decapsulate(lambda spi: None, packet)


# -- Hypothesis: random bytes and mutations of valid packets ---------------------------


def _valid_packets() -> list[tuple[Suite, bool, bytes, bytes]]:
    """(suite, esn, ESP packet, whole IP packet) for every transform and layout."""
    out = []
    for suite in SUITES:
        for esn in (False, True):
            sa = suite.sa(esn=esn)
            out.append((suite, esn, sa.encrypt(IPV4_UDP, 4), b""))
            out.append((suite, esn, b"", bytes(esp_encapsulate_tunnel(sa, IPV6_UDP, V4_A, V4_B))))
            out.append(
                (
                    suite,
                    esn,
                    b"",
                    bytes(esp_encapsulate_tunnel(sa, IPV4_UDP, V6_A, V6_B, nat_t_ports=(1, 2))),
                )
            )
    return out


VALID = _valid_packets()
TRANSPORT = [
    (suite, bytes(esp_encapsulate_transport(suite.sa(mode="transport"), p, nat_t_ports=n)))
    for suite in SUITES
    for p in (IPV4_UDP, IPV6_UDP)
    for n in (None, (4500, 4500))
]


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int, extra: bytes) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf[: len(buf) - cut % (len(buf) + 1)]) + extra


_edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)
_settings = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@_settings
@given(st.sampled_from(SUITES), st.booleans(), st.binary(max_size=200))
def test_random_bytes_into_decrypt(suite: Suite, esn: bool, data: bytes) -> None:
    sa = suite.sa(esn=esn)
    try:
        sa.decrypt(data)
    except EspDropError as e:
        assert e.counter
    with pytest.raises(EspDropError):
        sa.decrypt(b"\x00\x00\x10\x01" + data)  # the SA's SPI, then garbage


@_settings
@given(st.sampled_from(VALID), _edits, st.integers(0, 3), st.binary(max_size=3))
def test_mutated_packets(
    case: tuple[Suite, bool, bytes, bytes], edits: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    suite, esn, esp, packet = case
    sa = suite.sa(esn=esn)
    try:
        if esp:
            mutated = _mutate(esp, edits, cut, extra)
            result = sa.decrypt(mutated)
            assert mutated == esp or result == (4, IPV4_UDP)
        else:
            mutated = _mutate(packet, edits, cut, extra)
            esp_decapsulate(lambda spi: sa if spi == 0x1001 else None, mutated)
    except EspDropError as e:
        assert e.counter


@_settings
@given(st.sampled_from(TRANSPORT), _edits, st.integers(0, 3), st.binary(max_size=3))
def test_mutated_transport_packets(
    case: tuple[Suite, bytes], edits: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    suite, packet = case
    sa = suite.sa(mode="transport")
    try:
        esp_decapsulate(lambda spi: sa, _mutate(packet, edits, cut, extra))
    except EspDropError as e:
        assert e.counter


@_settings
@given(st.binary(max_size=300))
def test_random_ip_packets_into_decapsulate(data: bytes) -> None:
    sa = SUITES[0].sa()
    for prefix in (b"", b"\x45", b"\x60"):
        try:
            esp_decapsulate(lambda spi: sa, prefix + data)
        except EspDropError as e:
            assert e.counter
