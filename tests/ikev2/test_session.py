"""Two IKE sessions in memory with a fake clock, each step annotated with its exchange."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import secrets
import warnings
from collections.abc import Callable, Iterator

import pytest

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ike import IKE_PORT
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.events import ChildSaDown, ChildSaFailed, ChildSaUp, Event, IkeSaDown, IkeSaUp
from larval.ike.identity import identity
from larval.ikev2.constants import NotifyType
from larval.ikev2.exchanges import InformationalResponder
from larval.ikev2.message import decode_message
from larval.ikev2.session import IkeSession, State

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
NET_A, NET_B = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")
PSK = b"interop-test-psk-0123456789"

warnings.filterwarnings("ignore", category=DeprecationWarning)


def config(local: ipaddress.IPv4Address, remote: ipaddress.IPv4Address, *, psk: bytes = PSK,
           proposals: tuple[str, ...] = ("aes128-sha256-x25519",), encap: bool = False,
           dpd: float = 0.0) -> IkeConfig:  # fmt: skip
    return IkeConfig(
        name="s2s",
        local_addr=local,
        remote_addr=remote,
        local_id=identity(str(local)),
        remote_id=identity(str(remote)),
        psk=psk,
        proposals=tuple(parse_ike_proposal(p) for p in proposals),
        encap=encap,
        dpd_delay=dpd,
    )


def child(local: ipaddress.IPv4Network, remote: ipaddress.IPv4Network,
          esp: tuple[str, ...] = ("aes128gcm16",)) -> ChildConfig:  # fmt: skip
    return ChildConfig("net", tuple(esp_proposal_transforms(p) for p in esp), (local,), (remote,))


class Pair:
    def __init__(self, init_cfg: IkeConfig, resp_cfg: IkeConfig,
                 resp_child: ChildConfig | None) -> None:  # fmt: skip
        spis = itertools.count(0x1000)
        self.now = 0.0
        self.i = IkeSession(init_cfg, initiator=True, allocate_spi=lambda: next(spis))
        self.r = IkeSession(resp_cfg, initiator=False, allocate_spi=lambda: next(spis),
                            child_policy=lambda tsi, tsr: resp_child)  # fmt: skip
        self.wire: list[tuple[str, bytes]] = []

    def flush(self, drop: int = 0) -> int:
        """Carry datagrams both ways until quiet; drop the first `drop` of them."""
        moved = 0
        while True:
            out_i = self.i.datagrams_to_send(self.now)
            out_r = self.r.datagrams_to_send(self.now)
            if not out_i and not out_r:
                return moved
            for data, _ in out_i:
                self.wire.append(("i->r", data))
                if drop:
                    drop -= 1
                    continue
                self.r.receive_datagram(data, (str(A), IKE_PORT), self.now)
                moved += 1
            for data, _ in out_r:
                self.wire.append(("r->i", data))
                if drop:
                    drop -= 1
                    continue
                self.i.receive_datagram(data, (str(B), IKE_PORT), self.now)
                moved += 1

    @staticmethod
    def events(session: IkeSession) -> Iterator[Event]:
        while (e := session.next_event()) is not None:
            yield e


def test_ike_sa_init_and_ike_auth_make_a_child_sa_both_sides_agree_on() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D) } -->  <-- { SA, KE, Nr, N(NAT_D) }
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{IDr, AUTH, SA, TSi, TSr} }
    assert pair.flush() == 4
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    ev_i, ev_r = list(Pair.events(pair.i)), list(Pair.events(pair.r))
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    ci, cr = ev_i[1], ev_r[1]
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert ci.spi_out == cr.spi_in and ci.spi_in == cr.spi_out
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert len(ci.keys_out.encr_key) == 20  # AES-128-GCM key + salt
    assert ci.local_ts == (NET_A,) and ci.remote_ts == (NET_B,)
    assert cr.local_ts == (NET_B,) and cr.remote_ts == (NET_A,)


def test_second_proposal_chosen_when_only_it_matches() -> None:
    init = config(A, B, proposals=("aes256-sha384-ecp384", "aes128gcm16-prfsha256-ecp256"))
    resp = config(B, A, proposals=("aes128gcm16-prfsha256-ecp256",))
    pair = Pair(init, resp, child(NET_B, NET_A, ("aes128-sha256",)))
    pair.i.initiate(child(NET_A, NET_B, ("aes256gcm16", "aes128-sha256")), 0.0)
    pair.flush()
    up = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp)]
    assert up and len(up[0].keys_out.integ_key) == 32  # HMAC-SHA-256
    assert pair.i.suite == pair.r.suite


def test_invalid_ke_payload_makes_the_initiator_retry_with_the_asked_group() -> None:
    init = config(A, B, proposals=("aes128-sha256-x25519-ecp256",))
    resp = config(B, A, proposals=("aes128-sha256-ecp256",))
    pair = Pair(init, resp, child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.i.state is State.ESTABLISHED
    # IKE_SA_INIT (x25519) -->  <-- N(INVALID_KE_PAYLOAD, 19); IKE_SA_INIT (ecp256) --> ...
    assert len([d for d in pair.wire if d[0] == "i->r"]) == 3


def test_wrong_psk_fails_authentication() -> None:
    pair = Pair(config(A, B), config(B, A, psk=b"another-secret-entirely"), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.r.state is State.CLOSED and pair.i.state is State.CLOSED
    downs = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaDown)]
    assert downs and "AUTHENTICATION_FAILED" in downs[0].reason


def test_no_proposal_chosen_is_reported() -> None:
    pair = Pair(config(A, B), config(B, A, proposals=("aes256-sha512-ecp521",)), None)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    events = list(Pair.events(pair.i))
    assert any(isinstance(e, ChildSaFailed) for e in events)
    assert any(isinstance(e, IkeSaDown) and "NO_PROPOSAL_CHOSEN" in e.reason for e in events)


def test_lost_request_is_retransmitted_and_duplicate_answered_from_cache() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush(drop=1)  # the first IKE_SA_INIT is lost
    assert pair.i.state is State.INIT_SENT
    timer = pair.i.get_timer()
    assert timer is not None and timer == pytest.approx(4.0)
    pair.now = timer
    pair.i.handle_timer(pair.now)
    pair.flush()
    assert pair.i.state is State.ESTABLISHED


def test_a_resent_request_is_answered_from_the_cache_without_reaching_the_exchange(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    up = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    list(Pair.events(pair.r))
    # INFORMATIONAL { SK{D(ESP, spi)} } -->  <-- { SK{D(ESP, spi)} }
    pair.i.delete_child(up.spi_in, 1.0)
    pair.flush()
    request, response = pair.wire[-2][1], pair.wire[-1][1]
    list(Pair.events(pair.r))

    def exchange(*args: object) -> None:
        raise AssertionError("a retransmitted request reached the exchange")

    monkeypatch.setattr(InformationalResponder, "process", exchange)
    # The same request again (RFC 7296 §2.1): the same response, and nothing else.
    pair.r.receive_datagram(request, (str(A), IKE_PORT), 2.0)
    assert [d for d, _ in pair.r.datagrams_to_send(2.0)] == [response]
    assert list(Pair.events(pair.r)) == []


def test_delete_of_the_child_and_of_the_ike_sa() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    up = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    list(Pair.events(pair.r))
    # INFORMATIONAL { SK{D(ESP, spi)} } -->  <-- { SK{D(ESP, spi)} }
    pair.i.delete_child(up.spi_in, 1.0)
    # Until the answer, the initiator's old inbound SA still receives (RFC 7296 §1.4.1).
    assert [e for e in Pair.events(pair.i) if isinstance(e, ChildSaDown)] == []
    pair.flush()
    assert [type(e) for e in Pair.events(pair.r)] == [ChildSaDown]
    assert [(type(e), e.spi_in) for e in Pair.events(pair.i)] == [(ChildSaDown, up.spi_in)]  # type: ignore[attr-defined]
    # INFORMATIONAL { SK{D(IKE)} } -->  <-- { SK{} }
    pair.r.delete(2.0)
    pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED


def test_a_child_sa_whose_delete_goes_unanswered_goes_down_with_the_ike_sa() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    up = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    pair.i.delete_child(up.spi_in, 1.0)
    pair.i.datagrams_to_send(1.0)  # lost, and every retransmission after it
    while pair.i.state is not State.CLOSED:
        timer = pair.i.get_timer()
        assert timer is not None
        pair.now = timer
        pair.i.handle_timer(pair.now)
        pair.i.datagrams_to_send(pair.now)
    downs = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaDown)]
    assert [d.spi_in for d in downs] == [up.spi_in]


def test_dpd_notices_a_vanished_peer() -> None:
    pair = Pair(config(A, B, dpd=10.0), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    list(Pair.events(pair.i))
    # The responder vanishes: every liveness check goes unanswered.
    while pair.i.state is not State.CLOSED:
        timer = pair.i.get_timer()
        assert timer is not None
        pair.now = timer
        pair.i.handle_timer(pair.now)
        pair.i.datagrams_to_send(pair.now)
    assert any(isinstance(e, IkeSaDown) for e in Pair.events(pair.i))
    assert pair.now < 200


def test_garbage_is_dropped_not_raised() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    for data in (b"", b"\x00" * 27, b"\xff" * 64, bytes(range(200))):
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 0.0)
    assert pair.r.state is State.IDLE and pair.r.datagrams_to_send(0.0) == []


def _established_pair() -> tuple[Pair, ChildSaUp, ChildSaUp]:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    up_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    return pair, up_i, up_r


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_child_sa_rekey_from_either_side(side: str) -> None:
    pair, up_i, up_r = _established_pair()
    rekeyer, other = (pair.i, pair.r) if side == "initiator" else (pair.r, pair.i)
    old = up_i if side == "initiator" else up_r
    # CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, TSi, TSr} } -->  <-- { SK{SA, Nr, TSi, TSr} }
    # INFORMATIONAL { SK{D(ESP, old spi)} } -->  <-- { SK{D(ESP, old spi)} }
    assert rekeyer.rekey_child(old.spi_in, 10.0)
    pair.now = 10.0
    pair.flush()
    ev_a, ev_b = list(Pair.events(rekeyer)), list(Pair.events(other))
    new_a = next(e for e in ev_a if isinstance(e, ChildSaUp))
    new_b = next(e for e in ev_b if isinstance(e, ChildSaUp))
    assert new_a.spi_out == new_b.spi_in and new_a.keys_out == new_b.keys_in
    assert new_a.keys_out != old.keys_out  # fresh nonces, fresh keys
    assert new_a.local_ts == old.local_ts
    assert any(isinstance(e, ChildSaDown) and e.spi_in == old.spi_in for e in ev_a)
    assert any(isinstance(e, ChildSaDown) and e.spi_out == old.spi_in for e in ev_b)
    assert list(rekeyer.children) == [new_a.spi_in] and list(other.children) == [new_b.spi_in]


def test_another_child_sa_on_an_established_ike_sa() -> None:
    pair, _, _ = _established_pair()
    extra = ChildConfig("more", child(NET_A, NET_B).proposals, (NET_A,), (NET_B,))
    pair.i.create_child(extra, 5.0)
    pair.flush()
    ups = [e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp)]
    assert len(ups) == 1 and len(pair.i.children) == 2 and len(pair.r.children) == 2


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_ike_sa_rekey_moves_the_child_sas_to_the_new_ike_sa(side: str) -> None:
    from larval.ike.events import IkeSaRekeyed

    pair, up_i, _ = _established_pair()
    rekeyer = pair.i if side == "initiator" else pair.r
    # CREATE_CHILD_SA { SK{SA(IKE, new SPI), Ni, KEi} } -->  <-- { SK{SA, Nr, KEr} }
    # INFORMATIONAL { SK{D(IKE)} } (on the old IKE SA) -->  <-- { SK{} }
    assert rekeyer.rekey_ike(20.0)
    pair.now = 20.0
    pair.flush()
    new_i = next(e.new for e in Pair.events(pair.i) if isinstance(e, IkeSaRekeyed))
    new_r = next(e.new for e in Pair.events(pair.r) if isinstance(e, IkeSaRekeyed))
    assert isinstance(new_i, IkeSession) and isinstance(new_r, IkeSession)
    assert (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    assert new_i.spi_i != pair.i.spi_i
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert up_i.spi_in in new_i.children  # the CHILD_SA lives on, not deleted
    # The new IKE SA works: a CHILD_SA rekey through it.
    pair.i, pair.r = new_i, new_r
    assert pair.i.rekey_child(up_i.spi_in, 30.0)
    pair.flush()
    assert any(isinstance(e, ChildSaUp) for e in Pair.events(pair.i))


def test_child_sa_rekey_with_pfs() -> None:
    pfs = ("aes128gcm16-x25519",)
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A, pfs))
    pair.i.initiate(child(NET_A, NET_B, pfs), 0.0)
    pair.flush()  # IKE_AUTH: no KE there, so its CHILD_SA goes without the DH transform
    old = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    list(Pair.events(pair.r))
    # CREATE_CHILD_SA { SK{N(REKEY_SA), SA, Ni, KEi, TSi, TSr} } -->  <-- { SK{SA, Nr, KEr, ...} }
    assert pair.i.rekey_child(old.spi_in, 1.0)
    pair.flush()
    new_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    new_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    assert any(t.type == 4 and t.id == 31 for t in new_i.suite)  # DH x25519 chosen
    assert new_i.keys_out == new_r.keys_in and new_i.keys_in == new_r.keys_out
    rekey_request = [d for d in pair.wire if d[0] == "i->r"][-2][1]
    assert len(rekey_request) > 200  # the KE payload travels, encrypted


# -- IKE fragmentation (RFC 7383) --------------------------------------------------------


def _fragmenting_pair(size_i: int = 200, size_r: int = 200, *, offer_r: bool = True) -> Pair:
    """A Pair whose sessions fragment protected messages longer than `size_*` bytes."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    spis = itertools.count(0x2000)
    pair.i = IkeSession(config(A, B), initiator=True, allocate_spi=lambda: next(spis),
                        fragment_size=size_i)  # fmt: skip
    pair.r = IkeSession(config(B, A), initiator=False, allocate_spi=lambda: next(spis),
                        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                        fragmentation=offer_r, fragment_size=size_r)  # fmt: skip
    return pair


def _is_skf(data: bytes) -> bool:
    return data[16] == 53  # the IKE header's Next Payload is SKF (RFC 7383 §2.5)


def test_ike_auth_fragmented_both_ways_completes_the_handshake() -> None:
    pair = _fragmenting_pair()
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D), N(FRAG_SUP) } -->  <-- { ..., N(FRAG_SUP) }
    # IKE_AUTH { SKF(1/n){IDi, AUTH, ...}, ..., SKF(n/n) } -->  <-- { SKF(1/m), ... }
    pair.flush()
    assert pair.i.fragmentation and pair.r.fragmentation
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    auth_i = [d for way, d in pair.wire[2:] if way == "i->r"]
    auth_r = [d for way, d in pair.wire[2:] if way == "r->i"]
    assert len(auth_i) > 1 and all(_is_skf(d) and len(d) <= 200 for d in auth_i)
    assert len(auth_r) > 1 and all(_is_skf(d) and len(d) <= 200 for d in auth_r)
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    up_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in and up_i.keys_in == up_r.keys_out
    # INFORMATIONAL { SK{D(ESP)} } -->  small enough to go whole
    pair.i.delete_child(up_i.spi_in, 1.0)
    pair.flush()
    assert not _is_skf(pair.wire[-1][1]) and not pair.r.children


def _carry(pair: Pair, lose: set[int]) -> None:
    """Like Pair.flush, but the datagrams at the wire positions in `lose` are lost."""
    while True:
        out_i = pair.i.datagrams_to_send(pair.now)
        out_r = pair.r.datagrams_to_send(pair.now)
        if not out_i and not out_r:
            return
        for way, out, to, src in (("i->r", out_i, pair.r, A), ("r->i", out_r, pair.i, B)):
            for data, _ in out:
                pair.wire.append((way, data))
                if len(pair.wire) - 1 not in lose:
                    to.receive_datagram(data, (str(src), IKE_PORT), pair.now)


def test_a_lost_fragment_is_recovered_by_retransmitting_every_fragment() -> None:
    pair = _fragmenting_pair()
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT -->  <-- ; IKE_AUTH { SKF(1/n), SKF(2/n) lost, ..., SKF(n/n) } -->
    _carry(pair, lose={3})
    assert _is_skf(pair.wire[3][1]) and pair.i.state is State.AUTH_SENT
    first = [d for way, d in pair.wire[2:] if way == "i->r"]
    assert len(first) > 1 and len(pair.wire) == 2 + len(first)  # no answer yet
    timer = pair.i.get_timer()
    assert timer is not None
    pair.now = timer
    # IKE_AUTH { SKF(1/n), ..., SKF(n/n) } again (RFC 7383 §2.6.2) -->  <-- { SKF(1/m), ... }
    pair.i.handle_timer(pair.now)
    _carry(pair, lose=set())
    again = [d for way, d in pair.wire[2 + len(first) :] if way == "i->r"]
    assert again == first  # the same datagrams: same Message ID, same fragments
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED


def test_a_resent_fragmented_request_brings_back_the_whole_cached_response() -> None:
    pair = _fragmenting_pair()
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT -->  <-- ; IKE_AUTH { SKF(1/n), ... } -->  <-- { SKF(1/m), ... }
    pair.flush()
    assert pair.i.state is State.ESTABLISHED
    auth_i = [d for way, d in pair.wire[2:] if way == "i->r"]
    auth_r = [d for way, d in pair.wire[2:] if way == "r->i"]
    # The request arrives again: fragment 1 brings back every fragment of the answer,
    # the other fragments nothing (RFC 7383 §2.6.1).
    pair.r.receive_datagram(auth_i[1], (str(A), IKE_PORT), 1.0)
    assert pair.r.datagrams_to_send(1.0) == []
    pair.r.receive_datagram(auth_i[0], (str(A), IKE_PORT), 1.0)
    assert [d for d, _ in pair.r.datagrams_to_send(1.0)] == auth_r


def test_a_peer_without_fragmentation_gets_whole_messages() -> None:
    pair = _fragmenting_pair(offer_r=False)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { ..., N(FRAG_SUP) } -->  <-- { SA, KE, Nr, N(NAT_D) }: no FRAG_SUP
    # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{...} }, longer than 200
    assert pair.flush() == 4
    assert not pair.i.fragmentation and not pair.r.fragmentation
    assert pair.i.state is State.ESTABLISHED
    auth = [d for _, d in pair.wire[2:]]
    assert len(auth) == 2 and all(not _is_skf(d) and len(d) > 200 for d in auth)
    init_response = decode_message(pair.wire[1][1])
    assert init_response.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None  # it reads
    assert init_response.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is None


# -- simultaneous rekeying (RFC 7296 §2.8.1, §2.8.2) ---------------------------------------


def _nonces(*firsts: int) -> Callable[[int], bytes]:
    """random_bytes whose successive nonces (32 bytes) start with the octets `firsts`.

    Only nonces may be 32 bytes long: the sessions using it take a DH group whose
    private values are not (ECP-384's are 48)."""
    queue = list(firsts)

    def random_bytes(n: int) -> bytes:
        if n == 32 and queue:
            return bytes([queue.pop(0)]) + secrets.token_bytes(n - 1)
        return secrets.token_bytes(n)

    return random_bytes


def _pair_with(nonces_i: tuple[int, ...], nonces_r: tuple[int, ...]) -> Pair:
    """An established Pair whose next nonces start with the given octets."""
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    spis = itertools.count(0x3000)
    suite = ("aes128-sha256-ecp384",)
    pair.i = IkeSession(config(A, B, proposals=suite), initiator=True,
                        allocate_spi=lambda: next(spis),
                        random_bytes=_nonces(0x80, *nonces_i))  # fmt: skip
    pair.r = IkeSession(config(B, A, proposals=suite), initiator=False,
                        allocate_spi=lambda: next(spis),
                        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                        random_bytes=_nonces(0x80, *nonces_r))  # fmt: skip
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    return pair


@pytest.mark.parametrize("lowest", ["Ni of the initiator's rekey", "Nr of the responder's rekey"])
def test_simultaneous_child_sa_rekey_keeps_one_new_child_sa(lowest: str) -> None:
    # The initiator's nonces: Ni1 for its rekey, then Nr2 answering the responder's; the
    # responder's: Ni2, then Nr1. The exchange holding the lowest one is redundant.
    low_first = lowest.startswith("Ni")
    pair = _pair_with((0x01, 0x90) if low_first else (0x90, 0x01), (0x90, 0x90))
    old_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    old_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    pair.now = 10.0
    # CREATE_CHILD_SA { SK{N(REKEY_SA, a1), SA, Ni1, TSi, TSr} } -->  (exchange 1)
    #                          <-- CREATE_CHILD_SA { SK{N(REKEY_SA, b1), SA, Ni2, TSi, TSr} }
    assert pair.i.rekey_child(old_i.spi_in, pair.now)
    assert pair.r.rekey_child(old_r.spi_in, pair.now)
    # Both answer the other's request, then get their own answer: three CHILD_SAs each.
    # INFORMATIONAL { SK{D(ESP, redundant)} } from its creator, { SK{D(ESP, old)} } from
    # the initiator of the surviving exchange, each answered with the other half.
    pair.flush()
    ev_i, ev_r = list(Pair.events(pair.i)), list(Pair.events(pair.r))
    ups_i = [e for e in ev_i if isinstance(e, ChildSaUp)]
    ups_r = [e for e in ev_r if isinstance(e, ChildSaUp)]
    # Each end first answered the other's rekey, then completed its own.
    assert len(ups_i) == 2 and len(ups_r) == 2
    survivor_i = ups_i[0] if low_first else ups_i[1]  # exchange 2 if exchange 1 is redundant
    assert list(pair.i.children) == [survivor_i.spi_in]
    (survivor_r,) = [e for e in ups_r if e.spi_in == survivor_i.spi_out]
    assert list(pair.r.children) == [survivor_r.spi_in]
    assert survivor_i.keys_out == survivor_r.keys_in and survivor_i.keys_in == survivor_r.keys_out
    # The old CHILD_SA and the redundant one went down on both ends, each once.
    downs_i = sorted(e.spi_in for e in ev_i if isinstance(e, ChildSaDown))
    downs_r = sorted(e.spi_in for e in ev_r if isinstance(e, ChildSaDown))
    redundant_i = next(e for e in ups_i if e is not survivor_i)
    redundant_r = next(e for e in ups_r if e is not survivor_r)
    assert downs_i == sorted([old_i.spi_in, redundant_i.spi_in])
    assert downs_r == sorted([old_r.spi_in, redundant_r.spi_in])
    deletes = [d for way, d in pair.wire[4:] if d[18] == 37 and not d[19] & 0x20]
    assert len(deletes) == 2  # two INFORMATIONAL requests in all: the old one deleted once


def test_child_sa_rekey_that_crosses_a_finished_one_is_dropped_quietly() -> None:
    pair = _pair_with((), ())
    old_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    old_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    # CREATE_CHILD_SA (exchange 1) -->  and  <-- CREATE_CHILD_SA (exchange 2), but the
    # responder's request is held up until exchange 1 and its DELETE are through.
    assert pair.i.rekey_child(old_i.spi_in, 1.0)
    assert pair.r.rekey_child(old_r.spi_in, 1.0)
    held = pair.r.datagrams_to_send(1.0)
    pair.flush()  # exchange 1 completes; the initiator deletes the old CHILD_SA
    for data, _ in held:  # <-- exchange 2 at last:  --> N(CHILD_SA_NOT_FOUND) (§2.25)
        pair.i.receive_datagram(data, (str(B), IKE_PORT), 1.0)
    pair.flush()
    ev_r = list(Pair.events(pair.r))
    assert not any(isinstance(e, ChildSaFailed) for e in ev_r)
    assert len(pair.i.children) == 1 and len(pair.r.children) == 1
    (spi_i,) = pair.i.children
    assert pair.i.children[spi_i].spi_out in pair.r.children


class _Sides:
    """Both ends with every IKE SA each holds, datagrams routed by IKE SPIi, as the key
    manager does; the sessions an IkeSaRekeyed names join their end."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.ends: dict[str, dict[bytes, IkeSession]] = {
            "i": {pair.i.spi_i: pair.i}, "r": {pair.r.spi_i: pair.r}}  # fmt: skip
        self.events: dict[str, list[Event]] = {"i": [], "r": []}

    def flush(self, now: float) -> None:
        from larval.ike.events import IkeSaRekeyed

        moved = True
        while moved:
            moved = False
            for end, other, src in (("i", "r", A), ("r", "i", B)):
                for session in list(self.ends[end].values()):
                    for event in Pair.events(session):
                        self.events[end].append(event)
                        if isinstance(event, IkeSaRekeyed):
                            assert isinstance(event.new, IkeSession)
                            self.ends[end][event.new.spi_i] = event.new
                    for data, _ in session.datagrams_to_send(now):
                        moved = True
                        target = self.ends[other].get(data[:8])
                        if target is not None:
                            target.receive_datagram(data, (str(src), IKE_PORT), now)

    def live(self, end: str) -> list[IkeSession]:
        return [s for s in self.ends[end].values() if s.state is not State.CLOSED]


@pytest.mark.parametrize("lowest", ["Ni of the initiator's rekey", "Nr of the responder's rekey"])
def test_simultaneous_ike_sa_rekey_keeps_one_new_ike_sa(lowest: str) -> None:
    low_first = lowest.startswith("Ni")
    pair = _pair_with((0x01, 0x90) if low_first else (0x90, 0x01), (0x90, 0x90))
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    list(Pair.events(pair.r))
    sides = _Sides(pair)
    # CREATE_CHILD_SA { SK{SA(IKE, SPIa), Ni1, KEi} } -->  (exchange 1)
    #                                <-- CREATE_CHILD_SA { SK{SA(IKE, SPIb), Ni2, KEi} }
    assert pair.i.rekey_ike(20.0) and pair.r.rekey_ike(20.0)
    # Both answer, then both complete: three IKE SAs each end. The redundant new one is
    # deleted by its initiator, INFORMATIONAL { SK{D(IKE)} } on it; the old one by the
    # initiator of the surviving exchange, INFORMATIONAL { SK{D(IKE)} } on the old SA.
    sides.flush(20.0)
    (new_i,), (new_r,) = sides.live("i"), sides.live("r")
    assert (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    # The surviving exchange is the one without the lowest nonce: the responder's if the
    # initiator's Ni was lowest, whose new SPIi the responder chose.
    assert new_i.initiator is not low_first
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert list(new_i.children) == [up_i.spi_in] and len(new_r.children) == 1
    assert not any(isinstance(e, ChildSaDown) for e in sides.events["i"] + sides.events["r"])
    # The surviving IKE SA works: a CHILD_SA rekey through it.
    assert new_i.rekey_child(up_i.spi_in, 30.0)
    sides.flush(30.0)
    ups = [e for e in sides.events["i"] + sides.events["r"] if isinstance(e, ChildSaUp)]
    assert len(ups) == 2 and ups[0].keys_out == ups[1].keys_in


def test_ike_sa_rekey_that_crosses_a_finished_one_gets_temporary_failure() -> None:
    pair = _pair_with((), ())
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    list(Pair.events(pair.r))
    sides = _Sides(pair)
    # CREATE_CHILD_SA (exchange 1) -->  and  <-- CREATE_CHILD_SA (exchange 2), the latter
    # held up: the initiator completes its rekey unaware of the collision.
    assert pair.i.rekey_ike(20.0) and pair.r.rekey_ike(20.0)
    request_1, request_2 = pair.i.datagrams_to_send(20.0), pair.r.datagrams_to_send(20.0)
    for data, _ in request_1:
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 20.0)
    for data, _ in pair.r.datagrams_to_send(20.0):  # <-- { SK{SA, Nr, KEr} }
        pair.i.receive_datagram(data, (str(B), IKE_PORT), 20.0)
    # INFORMATIONAL { SK{D(IKE)} } -->  on the old IKE SA, held for now; exchange 2 reaches
    # an IKE SA being deleted:  --> { SK{N(TEMPORARY_FAILURE)} } (§2.8.2)
    delete = [d for d, _ in pair.i.datagrams_to_send(20.0)]
    for data, _ in request_2:
        pair.i.receive_datagram(data, (str(B), IKE_PORT), 20.0)
    for data, _ in pair.i.datagrams_to_send(20.0):
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 20.0)
    assert pair.r.state is State.ESTABLISHED and not pair.r.children  # moved on
    for data in delete:
        pair.r.receive_datagram(data, (str(A), IKE_PORT), 20.0)
    sides.flush(20.0)
    (new_i,), (new_r,) = sides.live("i"), sides.live("r")
    assert (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r) and new_i.initiator
    assert list(new_i.children) == [up_i.spi_in] and len(new_r.children) == 1
    downs = [e for e in sides.events["r"] if isinstance(e, IkeSaDown)]
    assert [e.reason for e in downs] == ["replaced by a rekey"]
    assert not any(isinstance(e, ChildSaDown) for e in sides.events["i"] + sides.events["r"])


# -- logs --------------------------------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The message lines (not the exchanges' own: `larval.ike.exchange_log`)."""
    return [r.getMessage() for r in caplog.records if r.name == "larval.ike"
            and r.levelno == level and not hasattr(r, "exchange")]  # fmt: skip


def test_one_log_line_per_message_with_the_payload_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="larval.ike")
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT -->  <--  IKE_AUTH -->  <--
    pair.flush()
    info = _lines(caplog, logging.INFO)
    spis = f"s2s[{pair.i.spi_i.hex()}/{pair.i.spi_r.hex()}]"
    assert f"{spis}: sending IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]" in info
    assert f"{spis}: received IKE_AUTH response 1 [ IDr AUTH SA TSi TSr ]" in info
    assert f"{spis}: received IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]" in info
    assert any(
        line.startswith(f"s2s[{pair.i.spi_i.hex()}/0000000000000000]: sending IKE_SA_INIT "
                        "request 0 [ SA KE No N(NAT_DETECTION_SOURCE_IP) ")
        for line in info
    )  # fmt: skip
    assert len(info) == 8  # four messages, each sent and received
    up = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PSK, up.keys_in.encr_key, up.keys_out.encr_key):
        assert secret.hex() not in text and repr(secret) not in text
    # INFORMATIONAL { SK{D(ESP, spi)} } -->  <-- { SK{D(ESP, spi)} }
    caplog.clear()
    pair.i.delete_child(up.spi_in, 1.0)
    pair.flush()
    assert f"{spis}: sending INFORMATIONAL request 2 [ D ]" in _lines(caplog, logging.INFO)


def test_a_retransmission_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="larval.ike")
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush(drop=1)  # IKE_SA_INIT --> (lost)
    pair.now = 4.0  # IKE_SA_INIT --> again, then the rest of the handshake
    pair.i.handle_timer(pair.now)
    pair.flush()
    debug = _lines(caplog, logging.DEBUG)
    assert any(": retransmit 1 of IKE_SA_INIT request 0 [ SA KE No" in line for line in debug)
    assert len([ln for ln in _lines(caplog, logging.INFO) if "sending IKE_SA_INIT req" in ln]) == 1


def test_no_proposal_chosen_logs_both_sides_proposals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="larval.ike")
    pair = Pair(config(A, B), config(B, A, proposals=("aes256-sha512-ecp521",)), None)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA(aes128-sha256-x25519), ... } -->  <-- { N(NO_PROPOSAL_CHOSEN) }
    pair.flush()
    (warning,) = _lines(caplog, logging.WARNING)
    assert "no IKE proposal chosen" in warning
    assert "ours: AES_CBC_256/PRF_HMAC_SHA2_512/HMAC_SHA2_512_256/ECP_521" in warning
    assert "theirs: AES_CBC_128/PRF_HMAC_SHA2_256/HMAC_SHA2_256_128/CURVE25519" in warning
    assert any("received IKE_SA_INIT response 0 [ N(NO_PROPOSAL_CHOSEN) ]" in line
               for line in _lines(caplog, logging.INFO))  # fmt: skip


def test_no_esp_proposal_chosen_in_create_child_sa_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair, _, _ = _established_pair()
    caplog.set_level(logging.INFO, logger="larval.ike")
    extra = ChildConfig("more", child(NET_A, NET_B, ("chacha20poly1305",)).proposals,
                        (NET_A,), (NET_B,))  # fmt: skip
    # CREATE_CHILD_SA { SK{SA(chacha20poly1305), Ni, TSi, TSr} } -->
    #                                                   <-- { SK{N(NO_PROPOSAL_CHOSEN)} }
    pair.i.create_child(extra, 5.0)
    pair.flush()
    (warning,) = _lines(caplog, logging.WARNING)
    assert "no ESP proposal chosen; ours: AES_GCM_16_128" in warning
    assert "theirs: CHACHA20_POLY1305" in warning
