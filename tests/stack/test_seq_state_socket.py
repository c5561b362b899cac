"""X_LARVAL_SEQ_STATE over a real PF_KEY socket: a `larval stack` service with a state
store takes it on ADD, returns it on GET, and refuses a malformed one by its diagnostic."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.pfkey import (
    SEQ_STATE_NEXT,
    SEQ_STATE_REPLAY,
    Diagnostic,
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbMsgType,
    SadbXSeqState,
    decode,
)
from larval.pfkey.requests import by_spi, keyed
from larval.store import MemoryStore

from .conftest import RunningStack

STATE = SadbXSeqState(SEQ_STATE_NEXT | SEQ_STATE_REPLAY, 32769, 0, 512, 64, 0b111)


@pytest.fixture
def stored_stack(tmp_path: Path) -> Iterator[RunningStack]:
    stack = RunningStack(tmp_path, MemoryStore())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def ask(stack: RunningStack, msg: PfkeyMessage) -> PfkeyMessage:
    with stack.client() as sock:
        sock.send(msg.encode())
        return decode(sock.recv(65536))


def add(extra: bytes = b"") -> PfkeyMessage:
    return keyed(SadbMsgType.ADD, 0x1001, "192.0.2.1", "192.0.2.2",
                 encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20), replay=64,
                 extra=(STATE,))  # fmt: skip


def test_add_then_get_over_the_socket(stored_stack: RunningStack) -> None:
    assert stored_stack.service is not None
    assert stored_stack.service.stack.esp_state is not None
    reply = ask(stored_stack, add())
    assert reply.errno == 0
    got = ask(stored_stack, by_spi(SadbMsgType.GET, 0x1001, "192.0.2.2", "192.0.2.1"))
    assert got.find(ExtType.X_LARVAL_SEQ_STATE) == STATE


def test_a_malformed_state_is_refused_over_the_socket(stored_stack: RunningStack) -> None:
    wire = bytearray(add().encode())
    at = wire.find(STATE.encode())
    struct.pack_into("<H", wire, at + 6, 0x80)  # flags: an unknown bit
    with stored_stack.client() as sock:
        sock.send(bytes(wire))
        reply = decode(sock.recv(65536))
    assert (reply.errno, reply.diagnostic) == (errno.EINVAL, Diagnostic.MALFORMED_SEQ_STATE)
