"""What anyone can make the key manager log by sending datagrams is limited per source:
2,000 openers for which no connection exists give a handful of lines and one count of
the rest, not 2,000 lines."""

from __future__ import annotations

import logging
import struct
import warnings

import pytest

from larval.ike import IKE_PORT
from tests.keymgr.test_manager import Host, udp_packet

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
            b.keymgr.receive_ike(opener(sender, n + 1), ("192.0.2.1", IKE_PORT), b.addr, n / 100)
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
            b.keymgr.receive_ike(opener(1, n + 1), ("192.0.2.1", IKE_PORT), b.addr, 0.0)
        b.keymgr.receive_ike(opener(1, 1), ("192.0.2.99", IKE_PORT), b.addr, 0.0)
    assert lines(caplog, "IKEv1 from 192.0.2.99") == 1


def test_half_open_ike_sas_that_time_out_are_counted_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """IKE_SA_INITs with the peer's address (anyone can forge it) that never go on: the
    end of each half-open IKE SA is noise too (here with no COOKIE limit to stop them)."""
    a = Host("a", "b", "trap")
    b = Host("b", "a", "none", cookie_threshold=OPENERS + 1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    a.pump(0.0)
    ((init, _),) = a.keymgr.datagrams_to_send()
    for n in range(OPENERS):  # IKE_SA_INIT request -->, each with its own SPIi
        b.keymgr.receive_ike((n + 1).to_bytes(8, "big") + init[8:], ("192.0.2.1", IKE_PORT),
                             b.addr, 0.0)  # fmt: skip
    assert len(b.keymgr.sessions) == OPENERS
    with caplog.at_level(logging.INFO, logger="larval.keymgr"):
        for now in (30.0, 60.0, 120.0):
            b.keymgr.handle_timer(now)
    assert b.keymgr.sessions == {}
    assert 1 <= lines(caplog, "down: half-open IKE SA timed out") <= 5
    assert len(caplog.records) <= 10


def test_the_end_of_an_authenticated_ike_sa_is_always_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.keymgr.test_manager import carry

    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    with caplog.at_level(logging.INFO, logger="larval.keymgr"):
        for n in range(10):  # up and down again, ten times: every line shows
            a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), float(n))
            carry(a, b, float(n))
            a.keymgr.down("s2s", float(n))
            carry(a, b, float(n))
    assert lines(caplog, "s2s: IKE_SA") >= 40  # established and down, both sides
    assert "suppressed" not in caplog.text
