"""Transport-mode CHILD_SAs between two hosts, with larval on both ends: the responder
asks its stack for a transport-mode policy between the two hosts' addresses (an inverse
ACQUIRE without inner addresses) when the request carries N(USE_TRANSPORT_MODE), and
installs transport-mode SAs (no inner selectors); packets between the hosts' own
addresses go through ESP.

    HDR, SK {IDi, AUTH, N(USE_TRANSPORT_MODE), SAi2, TSi, TSr}  -->
          <--  HDR, SK {IDr, AUTH, N(USE_TRANSPORT_MODE), SAr2, TSi, TSr}
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest

from larval.ikev2.constants import NotifyType
from tests.keymgr.test_manager import udp_packet
from tests.keymgr.test_select import ESP, IKE, PSK, Host, Network, ike_sas

A, B = "192.0.2.1", "192.0.2.2"
IKE_V1 = ["aes128-sha256-modp2048"]  # ISAKMP has no AEAD


def host(me: str, peer: str, child: dict[str, Any], version: int = 2) -> Host:
    proposals = IKE if version == 2 else IKE_V1
    conn = {"local_addrs": [me], "remote_addrs": [peer], "proposals": proposals, "version": version,
            "local": {"auth": "psk", "id": me}, "remote": {"auth": "psk", "id": peer},
            "children": {"host": {"esp_proposals": ESP, **child}}}  # fmt: skip
    return Host({"daemon": {"addresses": [me]}, "connections": {"host": conn},
                 "secrets": {"ike-hosts": {"secret": PSK["gw"]}}})  # fmt: skip


TRANSPORT = {"mode": "transport"}


def hosts(a_child: dict[str, Any], b_child: dict[str, Any], version: int = 2) -> tuple[Host, Host]:
    """A initiates (IKE_AUTH carries its CHILD_SA), B responds."""
    a, b = host(A, B, a_child, version), host(B, A, b_child, version)
    a.keymgr.initiate("host", "host", 0.0)
    Network([a, b]).carry(0.0)
    return a, b


def child_sa(h: Host) -> Any:
    (record,) = h.keymgr.children.values()
    return record


def assert_transport_both_ways(a: Host, b: Host) -> None:
    """Each end's SAs have no inner selectors, and a packet between the hosts' own
    addresses is sent through ESP and delivered with its addresses and payload."""
    for me, peer in ((a, b), (b, a)):
        record = child_sa(me)
        assert (record.local_ts, record.remote_ts) == (
            (ipaddress.ip_network(me.addr),), (ipaddress.ip_network(peer.addr),))  # fmt: skip
        for spi, dst in ((record.spi_in, me.addr), (record.spi_out, peer.addr)):
            sa = me.stack.sadb.lookup_esp(spi, dst.packed)
            assert sa is not None and sa.inner_src is None and sa.inner_dst is None
        packet = udp_packet(str(me.addr), str(peer.addr))
        me.path.outbound(packet, 1.0)
        sent = me.esp[-1]
        assert int.from_bytes(sent.payload[:4], "big") == record.spi_out
        peer.path.inbound(sent.payload, peer.addr.packed, 1.0)
        # Transport mode carries the payload, the receiver rebuilds the IP header.
        got = peer.delivered[-1]
        assert (got[9], got[12:20], got[20:]) == (packet[9], packet[12:20], packet[20:])


def test_larval_responds_to_a_transport_mode_request_with_a_transport_child_sa() -> None:
    a, b = hosts(TRANSPORT, TRANSPORT)
    assert [s["state"] for s in ike_sas(a) + ike_sas(b)] == ["established"] * 2
    assert child_sa(b).name == "host"
    assert_transport_both_ways(a, b)


def test_a_tunnel_request_to_a_transport_only_responder_is_ts_unacceptable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without N(USE_TRANSPORT_MODE) the responder asks for a tunnel-mode policy as
    before: a transport-mode one does not answer it."""
    caplog.set_level(logging.INFO, "larval")
    a, b = hosts({}, TRANSPORT)
    assert not a.keymgr.children and not b.keymgr.children
    assert "no policy for" in caplog.text
    assert NotifyType.TS_UNACCEPTABLE.name in caplog.text


def test_a_transport_request_to_a_tunnel_responder_gets_a_tunnel() -> None:
    """RFC 7296 §1.3.1: a responder without a transport-mode policy may answer
    USE_TRANSPORT_MODE with a tunnel; the hosts' addresses are the tunnel's selectors."""
    a, b = hosts(TRANSPORT, {})
    record = child_sa(b)
    sa = b.stack.sadb.lookup_esp(record.spi_in, b.addr.packed)
    assert sa is not None and sa.inner_src is not None
    # The initiator takes the tunnel it was given, and packets go through it both ways.
    for me, peer in ((a, b), (b, a)):
        record = child_sa(me)
        for spi, dst in ((record.spi_in, me.addr), (record.spi_out, peer.addr)):
            sa = me.stack.sadb.lookup_esp(spi, dst.packed)
            assert sa is not None and sa.inner_src is not None and sa.inner_dst is not None
        packet = udp_packet(str(me.addr), str(peer.addr))
        me.path.outbound(packet, 1.0)
        peer.path.inbound(me.esp[-1].payload, peer.addr.packed, 1.0)
        assert peer.delivered[-1] == packet  # the whole packet, carried in the tunnel


def test_ikev1_larval_responds_to_a_transport_mode_quick_mode() -> None:
    """IKEv1: Quick Mode's ESP transforms carry the Transport encapsulation mode (RFC
    2407 §4.5); the responder asks its stack for a transport-mode policy as IKEv2's does."""
    a, b = hosts(TRANSPORT, TRANSPORT, version=1)
    for h in (a, b):
        h.keymgr.handle_timer(5.0)  # IKEv1: the initiator's outbound SA waits a moment
    assert [s["version"] for s in ike_sas(a) + ike_sas(b)] == [1, 1]
    assert_transport_both_ways(a, b)


def test_a_trapped_transport_packet_answered_with_a_tunnel_is_sent_through_the_tunnel() -> None:
    """The ACQUIRE of a transport-mode policy asks for transport; the responder's tunnel
    (no USE_TRANSPORT_MODE) is what the initiator installs, not the policy's mode, and
    the packet held for it leaves through that tunnel."""
    a = host(A, B, {**TRANSPORT, "start_action": "trap"})
    b = host(B, A, {})
    packet = udp_packet(A, B)
    a.path.outbound(packet, 0.0)  # held; ACQUIRE
    network = Network([a, b])
    for _ in range(3):
        while a.node.deliver(0.0):
            pass
        network.carry(0.0)
    for me, peer in ((a, b), (b, a)):
        record = child_sa(me)
        for spi, dst in ((record.spi_in, me.addr), (record.spi_out, peer.addr)):
            sa = me.stack.sadb.lookup_esp(spi, dst.packed)
            assert sa is not None and sa.inner_src is not None and sa.inner_dst is not None
    (sent,) = a.esp
    b.path.inbound(sent.payload, b.addr.packed, 0.0)
    assert b.delivered == [packet]
