"""The key manager's PF_KEY side against the real stack: it reads the stack's extended
ACQUIRE and inverse ACQUIRE, and its GETSPI/UPDATE/ADD/DELETE install SAs the dataplane
uses — the held first packet leaves when the outbound SA is added."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import astuple, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.crypto.algorithms import (
    AALG_SHA256HMAC,
    AUTH_ALGORITHMS,
    EALG_AES_CBC,
    EALG_AES_GCM_16,
    ENCRYPT_ALGORITHMS,
)
from larval.crypto.proposals import EspProposal
from larval.keymgr.pfkey_side import (
    AcquireError,
    ChildKeys,
    Endpoint,
    IPAddress,
    Lifetimes,
    PolicyRequest,
    delete_sa,
    extended_register,
    getspi,
    getspi_bytes,
    getspi_reply_spi,
    inverse_acquire,
    inverse_acquire_answer,
    inverse_acquire_bytes,
    keyed_sa_bytes,
    parse_policy_request,
)
from larval.pfkey import PfkeyMessage, SadbMsgType, SaState, SaType, decode
from larval.sadb import Audience, PfkeyReply
from larval.spd import load_policy_text
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath
from tests.keymgr.reference import keyed_sa

LOCAL, PEER = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
LOCAL6, PEER6 = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8::2")
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
    h.pfkey(decode(keyed_sa_bytes(SadbMsgType.UPDATE, inbound, acquire, alt.lifetimes,
                                  inbound=True, seq=acquire.seq, pid=99,
                                  natt_port=4500)))  # fmt: skip
    assert sa.state == SaState.MATURE and sa.inner_src is not None
    assert h.sent == []  # the inbound SA releases nothing outbound
    h.pfkey(decode(keyed_sa_bytes(SadbMsgType.ADD, outbound, acquire, alt.lifetimes,
                                  inbound=False, seq=acquire.seq, pid=99, pair_spi=inbound_spi,
                                  natt_port=4500)))  # fmt: skip
    assert len(h.sent) == 1 and h.sent[0].payload[:4] == (0x7777).to_bytes(4, "big")
    out_sa = h.stack.sadb.lookup_outbound(LOCAL.packed, PEER.packed)
    assert out_sa is not None and out_sa.hard is not None and out_sa.hard.addtime == 3600
    assert "keys=<hidden>" in repr(outbound)
    h.pfkey(delete_sa(0x7777, LOCAL, PEER, seq=3, pid=99))
    assert h.stack.sadb.lookup_outbound(LOCAL.packed, PEER.packed) is None


def test_lifetimes_default_to_none() -> None:
    assert Lifetimes() == Lifetimes(0, 0, 0, 0)


def test_getspi_bytes_of_the_last_pair_and_of_others_alike() -> None:
    # The last pair's message is packed whole (by the identity of its addresses): the
    # same bytes as the message encoded, for the same pair again, for equal addresses
    # that are other objects, for another pair or family in between, at any seq and pid.
    v6 = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8::2")
    equal = ipaddress.ip_address(str(PEER)), ipaddress.ip_address(str(LOCAL))
    other = ipaddress.ip_address("192.0.2.77"), LOCAL
    pairs = [(PEER, LOCAL), (PEER, LOCAL), equal, v6, (PEER, LOCAL), other, (LOCAL, PEER)]
    for i, (peer, local) in enumerate(pairs):
        for seq, pid in ((i, 99), (2**32 - 1, 2**32 - 1), (0, 0)):
            want = getspi(peer, local, seq=seq, pid=pid).encode()
            assert getspi_bytes(peer, local, seq=seq, pid=pid) == want


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
    # An SA extension first that runs past the message: its SPI is not read, whatever
    # the base header's length says.
    cut = bytearray(data[:24])
    cut[4:6] = (3).to_bytes(2, "little")
    assert getspi_reply_spi(bytes(cut)) is None
    # The SA extension after another one is found all the same.
    moved = bytearray(data[:16] + data[32:] + data[16:32])
    assert getspi_reply_spi(bytes(moved)) == spi


def _every_esp_proposal() -> list[EspProposal]:
    """Each cipher at each key size, AEADs alone and the others with each integrity
    algorithm (NULL only with one, RFC 2410), each with and without ESN."""
    out = []
    for encrypt in ENCRYPT_ALGORITHMS.values():
        for bits in encrypt.key_bits:
            for esn in (False, True):
                if encrypt.aead:
                    out.append(EspProposal(encrypt.alg_id, bits, 0, 0, esn=esn))
                    continue
                for auth in AUTH_ALGORITHMS.values():
                    out.append(EspProposal(encrypt.alg_id, bits, auth.alg_id, auth.key_bits,
                                           esn=esn))  # fmt: skip
    return out


def _keys(proposal: EspProposal, spi: int, src: IPAddress, dst: IPAddress) -> ChildKeys:
    encrypt = ENCRYPT_ALGORITHMS[proposal.encrypt]
    auth = AUTH_ALGORITHMS.get(proposal.auth)
    encr_key = bytes(range(1, 1 + (proposal.encrypt_bits + encrypt.salt_bits) // 8))
    auth_key = bytes(range(101, 101 + auth.key_bits // 8)) if auth else b""
    return ChildKeys(spi, src, dst, proposal, encr_key, auth_key)


def _endpoint(text: str) -> Endpoint:
    net = ipaddress.ip_network(text)
    return Endpoint(net.network_address, net.prefixlen, 0, 0)


#: Policies as the key manager holds them: none (transport, no ACQUIRE), transport mode,
#: tunnel mode, tunnel mode with ports and a protocol, tunnel mode carrying an IPv6 pair
#: too (X_LARVAL_INNER_PAIRS), and an IPv6 tunnel between IPv6 hosts.
_REQUESTS: dict[str, tuple[PolicyRequest | None, IPAddress, IPAddress]] = {
    "none": (None, LOCAL, PEER),
    "transport": (
        PolicyRequest(7, Endpoint(LOCAL, 32, 0, 0), Endpoint(PEER, 32, 0, 0), None, None,
                      (), 64, 0),
        LOCAL, PEER,
    ),
    "tunnel": (
        PolicyRequest(7, Endpoint(LOCAL, 32, 0, 0), Endpoint(PEER, 32, 0, 0),
                      _endpoint("198.51.100.0/24"), _endpoint("203.0.113.0/24"), (), 1000, 5),
        LOCAL, PEER,
    ),
    "tunnel-ports": (
        PolicyRequest(7, Endpoint(LOCAL, 32, 0, 0), Endpoint(PEER, 32, 0, 0),
                      Endpoint(ipaddress.ip_address("198.51.100.7"), 32, 17, 53),
                      Endpoint(ipaddress.ip_address("203.0.113.0"), 24, 17, 0), (), 32, 0),
        LOCAL, PEER,
    ),
    "tunnel-two-families": (
        PolicyRequest(7, Endpoint(LOCAL, 32, 0, 0), Endpoint(PEER, 32, 0, 0),
                      _endpoint("198.51.100.0/24"), _endpoint("203.0.113.0/24"), (), 32, 0,
                      more_pairs=((_endpoint("2001:db8:1::/48"), _endpoint("2001:db8:2::/48")),)),
        LOCAL, PEER,
    ),
    "ipv6": (
        PolicyRequest(7, Endpoint(LOCAL6, 128, 0, 0), Endpoint(PEER6, 128, 0, 0),
                      _endpoint("2001:db8:1::/48"), _endpoint("2001:db8:2::/48"), (), 32, 0),
        LOCAL6, PEER6,
    ),
}  # fmt: skip

_LIFETIMES = {
    "none": Lifetimes(),
    "times": Lifetimes(3000, 3600),
    "bytes": Lifetimes(0, 0, 1 << 30, 1 << 31),
    "all": Lifetimes(2999, 3600, 5 << 20, 6 << 20, idle=300),
    "hard-only": Lifetimes(0, 3960),
}


@pytest.mark.parametrize("case", list(_REQUESTS))
@pytest.mark.parametrize("life", list(_LIFETIMES))
def test_keyed_sa_bytes_are_the_encoders_for_every_algorithm(case: str, life: str) -> None:
    """UPDATE and ADD packed straight from their fields are, byte for byte, what
    `keyed_sa` (the extension objects, `tests/keymgr/reference.py`) and the `larval.pfkey`
    encoder make: each algorithm, each direction, with and without NAT-T and a paired
    SPI."""
    request, src, dst = _REQUESTS[case]
    lifetimes = _LIFETIMES[life]
    for proposal in _every_esp_proposal():
        for msg_type, inbound in ((SadbMsgType.UPDATE, True), (SadbMsgType.ADD, False)):
            for natt_port, pair_spi in ((0, 0), (4500, 0), (61001, 0xC0FFEE01)):
                keys = _keys(proposal, 0x80000001, src, dst)
                options = {"inbound": inbound, "seq": 0x12345678, "pid": 4321,
                           "pair_spi": pair_spi, "natt_port": natt_port}  # fmt: skip
                want = keyed_sa(msg_type, keys, request, lifetimes, **options).encode()
                got = keyed_sa_bytes(msg_type, keys, request, lifetimes, **options)
                assert got == want, (case, life, proposal, msg_type, natt_port, pair_spi)


_ALIKE_PROPOSALS = [EspProposal(EALG_AES_GCM_16, 128), EspProposal(EALG_AES_GCM_16, 256),
                    EspProposal(EALG_AES_CBC, 128, AALG_SHA256HMAC, 256, esn=True)]  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_keyed_sa_bytes_from_the_last_alike_are_the_encoders(data: st.DataObject) -> None:
    """A run of UPDATEs and ADDs, most alike to the last of their type and direction but
    for their SPIs, keys, paired SPI, sequence number and pid (what is packed from the
    last one's template), some not: another request, equal or the same object, other
    lifetimes, algorithm, key size, NAT-T port, addresses; each is, byte for byte, what
    `keyed_sa` and the encoder make."""
    for step in range(30):
        case = data.draw(st.sampled_from(["transport", "tunnel", "tunnel-two-families"]))
        request, src, dst = _REQUESTS[case]
        if request is not None and data.draw(st.booleans()):
            # An equal request, not the same object; or one of another sequence number,
            # cookie or replay window (beyond the 255 the SA extension holds, or not).
            request = replace(request, seq=data.draw(st.sampled_from([7, 8])),
                              km_cookie=data.draw(st.sampled_from([0, 5])),
                              replay_window=data.draw(st.sampled_from(
                                  [request.replay_window, 32, 255, 256, 1000])))  # fmt: skip
        lifetimes = _LIFETIMES[data.draw(st.sampled_from(["times", "all", "none"]))]
        if data.draw(st.booleans()):
            # The same extensions with other values (as a soft add time's jitter makes),
            # or some of them gone or come.
            lifetimes = Lifetimes(*(data.draw(st.sampled_from([0, value, value + 1, 2**64 - 1]))
                                    for value in astuple(lifetimes)))  # fmt: skip
        proposal = data.draw(st.sampled_from(_ALIKE_PROPOSALS))
        msg_type, inbound = data.draw(
            st.sampled_from([(SadbMsgType.UPDATE, True), (SadbMsgType.ADD, False),
                             (SadbMsgType.UPDATE, False)])
        )  # fmt: skip
        keys = _keys(proposal, data.draw(st.integers(0x100, 0xFFFFFFFF)), src, dst)
        encrypt_key = data.draw(st.binary(min_size=len(keys.encrypt_key),
                                          max_size=len(keys.encrypt_key) + 1))  # fmt: skip
        keys = ChildKeys(keys.spi, src, dst, proposal, encrypt_key, keys.auth_key)
        pid = data.draw(st.integers(0, 2**32 - 1))
        pair_spi = data.draw(st.sampled_from([0, 0x100, 0xFFFFFFFF]))
        natt_port = data.draw(st.sampled_from([0, 0, 4500]))
        options = (inbound, pid, pair_spi, natt_port)
        want = keyed_sa(msg_type, keys, request, lifetimes, inbound=inbound, seq=step, pid=pid,
                        pair_spi=pair_spi, natt_port=natt_port).encode()  # fmt: skip
        got = keyed_sa_bytes(msg_type, keys, request, lifetimes, inbound=inbound, seq=step,
                             pid=pid, pair_spi=pair_spi, natt_port=natt_port)  # fmt: skip
        assert got == want, (step, case, proposal, options)


def test_keyed_sa_bytes_of_setups_differing_in_acquire_and_jitter_come_from_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CHILD_SAs of one policy differ from setup to setup in the ACQUIRE's sequence
    number and the soft add time's jitter: neither shows in the bytes but as values, so
    every setup after the first is packed from the template, nothing encoded again."""
    import larval.keymgr.pfkey_side as pfkey_side

    request, src, dst = _REQUESTS["tunnel"]
    assert request is not None
    proposal = EspProposal(EALG_AES_GCM_16, 128)
    for setup in range(4):
        this = replace(request, seq=100 + setup)
        lifetimes = Lifetimes(3000 - 17 * setup, 3600)
        for msg_type, inbound, pair_spi in ((SadbMsgType.UPDATE, True, 0),
                                            (SadbMsgType.ADD, False, 0x100 + setup)):  # fmt: skip
            keys = _keys(proposal, 0x1000 + setup, src, dst)
            options = {"inbound": inbound, "seq": this.seq, "pid": 9, "pair_spi": pair_spi,
                       "natt_port": 4500}  # fmt: skip
            got = keyed_sa_bytes(msg_type, keys, this, lifetimes, **options)
            assert got == keyed_sa(msg_type, keys, this, lifetimes, **options).encode()
        if setup == 0:
            # From here on, building a message part by part fails the test.
            def built(*args: object) -> bytes:
                raise AssertionError("built again, not packed from the template")

            monkeypatch.setattr(pfkey_side, "_pair_bytes", built)


def test_keyed_sa_bytes_install_an_sa_the_stack_keys(h: Harness) -> None:
    """The stack takes the packed UPDATE as it takes the encoder's: the LARVAL SA is
    MATURE with the keys."""
    reply = h.stack.handle_pfkey(decode(getspi_bytes(PEER, LOCAL, seq=1, pid=9)), 0.0)
    spi = getspi_reply_spi(reply[0].message.encode())
    assert spi is not None
    request, _, _ = _REQUESTS["tunnel"]
    proposal = EspProposal(EALG_AES_GCM_16, 128, 0, 0)
    data = keyed_sa_bytes(SadbMsgType.UPDATE, _keys(proposal, spi, PEER, LOCAL), request,
                          Lifetimes(3000, 3600), inbound=True, seq=2, pid=9,
                          natt_port=4500)  # fmt: skip
    (answer,) = [r for r in h.stack.handle_pfkey(decode(data), 0.0)
                 if r.message.msg_type == SadbMsgType.UPDATE]  # fmt: skip
    assert answer.message.errno == 0
    sa = h.stack.sadb.lookup_esp(spi, LOCAL.packed)
    assert sa is not None and sa.state == SaState.MATURE


def test_inverse_acquire_built_and_its_answer_taken_without_a_whole_message(h: Harness) -> None:
    """The bytes are those of `inverse_acquire`, for tunnel and transport questions and
    either family; a positive answer gives its extensions, the same for the same policy
    whatever the question's sequence number; anything else gives None."""
    tunnel = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"))
    v6 = (ipaddress.ip_network("2001:db8:1::/48"), ipaddress.ip_network("2001:db8:2::/48"))
    for local, remote, (local_ts, remote_ts) in ((LOCAL, PEER, tunnel), (LOCAL, PEER, (None, None)),
                                                 (LOCAL6, PEER6, v6)):  # fmt: skip
        for seq in (1, 0xFFFFFFFF):
            assert (
                inverse_acquire_bytes(local, remote, local_ts, remote_ts, seq=seq, pid=99)
                == inverse_acquire(local, remote, local_ts, remote_ts, seq=seq, pid=99).encode()
            )
    answers = []
    for seq in (5, 6):
        (reply,) = h.stack.handle_pfkey(
            decode(inverse_acquire_bytes(LOCAL, PEER, *tunnel, seq=seq, pid=99)), 0.0
        )
        data = reply.message.encode()
        answers.append(inverse_acquire_answer(data))
        assert answers[-1] == data[16:] and parse_policy_request(decode(data)).tunnel
    assert answers[0] == answers[1]
    # No policy for these selectors: a refusal, no answer.
    (refusal,) = h.stack.handle_pfkey(
        decode(inverse_acquire_bytes(LOCAL, PEER, *v6, seq=7, pid=99)), 0.0
    )
    assert refusal.message.errno != 0
    assert inverse_acquire_answer(refusal.message.encode()) is None
    assert inverse_acquire_answer(getspi_bytes(PEER, LOCAL, seq=1, pid=99)) is None
    assert inverse_acquire_answer(data[:-8]) is None
    assert inverse_acquire_answer(data[:10]) is None


def test_inner_selectors_are_encoded_once_whatever_the_request_number() -> None:
    """A CHILD_SA's request carries a new sequence number in every setup; its inner
    selectors are the same, and are encoded once: the second request's UPDATE and ADD
    come from what the first made, byte for byte the encoder's."""
    from dataclasses import replace

    from larval.keymgr import pfkey_side

    request, src, dst = _REQUESTS["tunnel-two-families"]
    assert request is not None
    proposal = next(iter(_every_esp_proposal()))
    keys = _keys(proposal, 0x80000001, src, dst)
    for seq in (101, 102):
        asked = replace(request, seq=seq)
        # The second with an idle lifetime too, so that its messages are not packed from
        # the first's template but built, taking the selectors' encoding kept.
        lifetimes = _LIFETIMES["times" if seq == 101 else "all"]
        before = pfkey_side._inner_exts_of.cache_info()
        for msg_type, inbound in ((SadbMsgType.UPDATE, True), (SadbMsgType.ADD, False)):
            options = {"inbound": inbound, "seq": seq, "pid": 4321}
            want = keyed_sa(msg_type, keys, asked, lifetimes, **options).encode()
            assert keyed_sa_bytes(msg_type, keys, asked, lifetimes, **options) == want
        after = pfkey_side._inner_exts_of.cache_info()
        if seq == 102:
            assert after.hits == before.hits + 2 and after.misses == before.misses
