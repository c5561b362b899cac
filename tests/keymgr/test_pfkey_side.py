"""The key manager's PF_KEY side against the real stack: it reads the stack's extended
ACQUIRE and inverse ACQUIRE, and its GETSPI/UPDATE/ADD/DELETE install SAs the dataplane
uses — the held first packet leaves when the outbound SA is added."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from larval.crypto.algorithms import AALG_SHA256HMAC, EALG_AES_CBC, EALG_AES_GCM_16
from larval.keymgr.pfkey_side import (
    AcquireError,
    ChildKeys,
    Lifetimes,
    delete_sa,
    extended_register,
    getspi,
    getspi_bytes,
    getspi_reply_spi,
    inverse_acquire,
    keyed_sa,
    parse_policy_request,
)
from larval.pfkey import PfkeyMessage, SadbMsgType, SaState, SaType, decode
from larval.sadb import Audience, PfkeyReply
from larval.spd import load_policy_text
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath

LOCAL, PEER = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
POLICY = """
[policies.site]
local_ts = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
mode = "tunnel"
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
esp_proposals = ["aes256gcm16", "aes128-sha256"]
rekey_time = "50m"
life_time = "1h"
"""


def udp_packet(src: str, dst: str) -> bytes:
    udp = struct.pack("!HHHH", 4000, 53, 12, 0) + b"data"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + udp  # fmt: skip


class Harness:
    def __init__(self) -> None:
        self.emitted: list[PfkeyReply] = []
        self.stack = Stack(emit=self.emitted.extend)
        self.sent: list[Datagram] = []
        self.path = PacketPath(self.stack, send=self.sent.append, deliver=lambda p: None)
        for p in load_policy_text(POLICY, "test"):
            self.stack.spd.add(p)

    def pfkey(self, msg: PfkeyMessage) -> PfkeyMessage:
        reply = self.stack.handle_pfkey(msg, 0.0)[0].message
        assert reply.errno == 0, reply
        return reply


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_extended_acquire_tells_the_key_manager_everything(h: Harness) -> None:
    h.pfkey(extended_register(1, 99))
    h.path.outbound(udp_packet("198.51.100.9", "203.0.113.9"), 0.0)
    extended = [r.message for r in h.emitted if r.audience is Audience.REGISTERED_EXTENDED]
    request = parse_policy_request(extended[0])
    assert (request.src.address, request.dst.address) == (LOCAL, PEER)
    assert request.tunnel and str(request.local_ts.network) == "198.51.100.0/24"
    assert str(request.remote_ts.network) == "203.0.113.0/24"
    first, second = request.alternatives
    assert (first.proposal.encrypt, first.proposal.encrypt_bits) == (EALG_AES_GCM_16, 256)
    assert (second.proposal.encrypt, second.proposal.auth) == (EALG_AES_CBC, AALG_SHA256HMAC)
    assert (first.lifetimes.soft_addtime, first.lifetimes.hard_addtime) == (3000, 3600)


def test_inverse_acquire_answers_the_responder(h: Harness) -> None:
    reply = h.pfkey(
        inverse_acquire(
            LOCAL, PEER,
            ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"),
            seq=5, pid=99,
        )
    )  # fmt: skip
    request = parse_policy_request(reply)
    assert request.seq == 5 and len(request.alternatives) == 2
    with pytest.raises(AcquireError):
        parse_policy_request(PfkeyMessage(SadbMsgType.ACQUIRE, SaType.ESP))


def test_getspi_update_add_release_the_held_packet_and_delete(h: Harness) -> None:
    packet = udp_packet("198.51.100.9", "203.0.113.9")
    h.path.outbound(packet, 0.0)
    acquire = parse_policy_request(
        next(r.message for r in h.emitted if r.audience is Audience.REGISTERED_EXTENDED)
    )
    alt = acquire.alternatives[0]
    # The responder's SPI for us came from IKE; ours is reserved before it is sent.
    inbound_spi = h.pfkey(getspi(PEER, LOCAL, seq=2, pid=99)).extensions[0].spi  # type: ignore[union-attr]
    sa = h.stack.sadb.lookup_esp(inbound_spi, LOCAL.packed)
    assert sa is not None and sa.state == SaState.LARVAL
    inbound = ChildKeys(inbound_spi, PEER, LOCAL, alt.proposal, bytes(36), b"")
    outbound = ChildKeys(0x7777, LOCAL, PEER, alt.proposal, bytes(range(36)), b"")
    h.pfkey(keyed_sa(SadbMsgType.UPDATE, inbound, acquire, alt.lifetimes, inbound=True,
                     seq=acquire.seq, pid=99, natt_port=4500))  # fmt: skip
    assert sa.state == SaState.MATURE and sa.inner_src is not None
    assert h.sent == []  # the inbound SA releases nothing outbound
    h.pfkey(keyed_sa(SadbMsgType.ADD, outbound, acquire, alt.lifetimes, inbound=False,
                     seq=acquire.seq, pid=99, pair_spi=inbound_spi, natt_port=4500))  # fmt: skip
    assert len(h.sent) == 1 and h.sent[0].payload[:4] == (0x7777).to_bytes(4, "big")
    out_sa = h.stack.sadb.lookup_outbound(LOCAL.packed, PEER.packed)
    assert out_sa is not None and out_sa.hard is not None and out_sa.hard.addtime == 3600
    assert "keys=<hidden>" in repr(outbound)
    h.pfkey(delete_sa(0x7777, LOCAL, PEER, seq=3, pid=99))
    assert h.stack.sadb.lookup_outbound(LOCAL.packed, PEER.packed) is None


def test_lifetimes_default_to_none() -> None:
    assert Lifetimes() == Lifetimes(0, 0, 0, 0)


def test_getspi_built_and_read_without_a_whole_message(h: Harness) -> None:
    # The bytes the key manager sends are those of the GETSPI message, for either family.
    v6 = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8::2")
    for peer, local, seq in ((PEER, LOCAL, 7), (*v6, 8)):
        assert (
            getspi_bytes(peer, local, seq=seq, pid=99)
            == getspi(peer, local, seq=seq, pid=99).encode()
        )
    # The stack's answer, read for its SPI alone: the SPI of its SA extension.
    (reply,) = h.stack.handle_pfkey(decode(getspi_bytes(PEER, LOCAL, seq=7, pid=99)), 0.0)
    data = reply.message.encode()
    spi = getspi_reply_spi(data)
    assert spi is not None and spi == reply.message.extensions[0].spi  # type: ignore[union-attr]
    assert h.stack.sadb.lookup_esp(spi, LOCAL.packed) is not None
    # Anything else gives no SPI: a refusal, another message, a cut or broken one.
    refused = bytearray(data)
    refused[2] = 22  # sadb_msg_errno EINVAL
    assert getspi_reply_spi(bytes(refused)) is None
    assert (
        getspi_reply_spi(inverse_acquire(LOCAL, PEER, None, None, seq=1, pid=99).encode()) is None
    )
    assert getspi_reply_spi(data[:-8]) is None
    assert getspi_reply_spi(data[:10]) is None
    no_length = bytearray(data)
    no_length[16:18] = b"\x00\x00"  # the first extension's length: zero words
    assert getspi_reply_spi(bytes(no_length)) is None
