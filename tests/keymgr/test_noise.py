"""What anyone can make the key manager log by sending datagrams is limited per source:
2,000 openers for which no connection exists give a handful of lines and one count of
the rest, not 2,000 lines."""

from __future__ import annotations

import logging
import struct
import warnings

import pytest

from tests.keymgr.test_manager import Host

warnings.filterwarnings("ignore", category=DeprecationWarning)

OPENERS = 2000


def opener(version: int, n: int) -> bytes:
    """A Main Mode MM1 (IKEv1) or an IKE_SA_INIT request (IKEv2) header with its own
    initiator SPI; the responder refuses it before reading further."""
    first = (1, 0x10, 2, 0) if version == 1 else (33, 0x20, 34, 0x08)  # SA, version, INIT
    return n.to_bytes(8, "big") + bytes(8) + bytes(first) + struct.pack("!II", 0, 28)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("daemon", "sender"), [(2, 1), (1, 2)])
def test_openers_of_a_version_nobody_speaks_are_counted_not_logged(
    daemon: int, sender: int, caplog: pytest.LogCaptureFixture
) -> None:
    b = Host("b", "a", "none", version=daemon)
    b.keymgr.start(0.0)
    refused = "IKEv1 from" if sender == 1 else "IKE_SA_INIT from"
    with caplog.at_level(logging.INFO, logger="larval"):
        for n in range(OPENERS):
            b.keymgr.receive_ike(opener(sender, n + 1), ("192.0.2.1", 500), b.addr, n / 100)
        assert len(b.keymgr.datagrams_to_send()) == OPENERS  # each one is still refused
        assert 1 <= lines(caplog, refused) <= 5
        b.keymgr.handle_timer(3600.0)  # the source's window ends: what was held back
    assert lines(caplog, refused) <= 5
    (count,) = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
    assert count.startswith("192.0.2.1: ") and f"{OPENERS - lines(caplog, refused)} more" in count
    assert len(caplog.records) <= 10


def test_the_limit_is_per_source(caplog: pytest.LogCaptureFixture) -> None:
    """A flood from one address does not silence another's first lines."""
    b = Host("b", "a", "none", version=2)
    b.keymgr.start(0.0)
    with caplog.at_level(logging.INFO, logger="larval"):
        for n in range(OPENERS):
            b.keymgr.receive_ike(opener(1, n + 1), ("192.0.2.1", 500), b.addr, 0.0)
        b.keymgr.receive_ike(opener(1, 1), ("192.0.2.99", 500), b.addr, 0.0)
    assert lines(caplog, "IKEv1 from 192.0.2.99") == 1
