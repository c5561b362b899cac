"""Malformed IKEv1 messages are dropped and counted by name: the key manager adds up what
each ISAKMP SA dropped (the notification its fault maps to, or ``undecryptable``) and
what had no header to read, and ``larval status`` shows the counts as it shows the
stack's drops. Each host is a node and IKE goes between them in memory."""

from __future__ import annotations

import struct
import warnings

import pytest

from larval.commands.daemon import print_ikev1_dropped
from larval.ikev1.errors import IkeV1DecodeError
from larval.ikev1.session import dropped_name
from tests.keymgr.test_select import Host, Network, gateway

from .test_select import connect, group, road_warrior

warnings.filterwarnings("ignore", category=DeprecationWarning)

CLIENT = ("192.0.2.1", 500)


def _header(cookie_i: bytes, cookie_r: bytes, exchange: int, flags: int, mid: int,
            length: int) -> bytes:  # fmt: skip
    """HDR: CKY-I, CKY-R, Next Payload, Version 1.0, Exchange, Flags, M-ID, Length."""
    return cookie_i + cookie_r + bytes((1, 0x10, exchange, flags)) + struct.pack("!II", mid, length)


def test_each_kind_of_malformed_message_is_counted_by_name() -> None:
    gw = Host(gateway(group("carol")))
    gw_addr = gw.addr
    # A header whose Length is shorter than the header: no ISAKMP SA is looked at.
    bad = _header(bytes.fromhex("1112131415161718"), bytes(8), 2, 0, 0, 10)
    gw.keymgr.receive_ike(bad, CLIENT, gw_addr, 0.0)
    # MM1 whose SA payload claims more octets than the message holds.
    cookie = bytes.fromhex("0102030405060708")
    body = bytes((0, 0)) + struct.pack("!H", 200) + bytes(8)
    mm1 = _header(cookie, bytes(8), 2, 0, 0, 28 + len(body)) + body
    gw.keymgr.receive_ike(mm1, CLIENT, gw_addr, 0.0)
    assert gw.keymgr.ikev1_dropped == {"invalid_header": 1, "payload_malformed": 1}
    assert gw.keymgr.status()["ike_sas"] == []  # nothing kept for garbage


def test_a_message_that_does_not_decrypt_on_an_isakmp_sa_is_counted() -> None:
    gw = Host(gateway(group("carol")))
    carol = road_warrior("192.0.2.1", "carol")
    net = Network([gw, carol])
    connect(net, carol)
    (sa,) = [s for s in gw.keymgr.sessions.values()]
    # A Quick Mode under the ISAKMP SA's cookies whose ciphertext is noise.
    noise = bytes(range(48))
    qm = _header(sa.spi_i, sa.spi_r, 32, 1, 0x1234, 28 + len(noise)) + noise
    gw.keymgr.receive_ike(qm, CLIENT, gw.addr, 2.0)
    assert sum(gw.keymgr.ikev1_dropped.values()) == 1
    (name,) = gw.keymgr.ikev1_dropped
    assert name == "payload_malformed", name  # noise decrypts to no payload chain
    # The ISAKMP SA and its CHILD_SA are untouched.
    assert [s["state"] for s in gw.keymgr.status()["ike_sas"]] == ["established"]
    assert len(gw.keymgr.status()["child_sas"]) == 1


def test_the_name_is_the_notification_of_the_fault() -> None:
    assert dropped_name(IkeV1DecodeError("cut short")) == "payload_malformed"


def test_status_prints_the_counts_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_ikev1_dropped({"payload_malformed": 2, "invalid_header": 1, "undecryptable": 0})
    assert (
        capsys.readouterr().out == "IKEv1 messages dropped: invalid_header 1, payload_malformed 2\n"
    )
    print_ikev1_dropped({})
    assert capsys.readouterr().out == ""
