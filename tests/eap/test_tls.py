"""EAP-TLS (RFC 5216) in memory: larval's server against larval's peer over TLS 1.2,
with certificates made by `larval.pki` and checked by `larval.trust.TrustStore`.

The packets' codec, whole handshakes with the default and with small fragments (every
fragment but the last M, the first L with the message's length, each ACKed), both
ends' MSK and EMSK; and the failures: a client certificate of another CA, a revoked
one, one without the EAP identity, a server certificate without the gateway's
identity, a TLS alert (to either end), a record that is no TLS, too many fragments, a
Length exceeded, an early EAP Success, a late Nak, a peer of TLS 1.3 only; and any bytes
in place of a ClientHello answered, never raised.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from larval import pki
from larval.eap import EapCode, EapError, EapPacket, EapType
from larval.eap.tls import (
    FRAGMENT_SIZE,
    CertificateCheck,
    EapTlsData,
    EapTlsPeer,
    EapTlsServer,
    TlsCredentials,
    TlsFlag,
)
from larval.ike.auth_config import TrustError
from larval.ike.identity import identity
from larval.trust import TrustStore

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
DAVE = "dave@example.org"
GATEWAY = "vpn.example.org"


def _ca(name: str) -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.generate_key("ecdsa", 256)
    cert = pki.make_certificate(
        pki.CertRequest(pki.parse_dn(f"O=larval tests, CN={name}"), ca=True),
        key.public_key(), key, now=NOW - datetime.timedelta(days=1),
    )  # fmt: skip
    return cert, key


def _leaf(name: str, ca: tuple[x509.Certificate, pki.PrivateKey], kind: str = "ecdsa",
          size: int = 256) -> TlsCredentials:  # fmt: skip
    key = pki.generate_key(kind, size)
    request = pki.CertRequest(pki.parse_dn(f"O=larval tests, CN={name}"),
                              sans=[pki.parse_san(name)])  # fmt: skip
    cert = pki.make_certificate(request, key.public_key(), ca[1], ca[0],
                                now=NOW - datetime.timedelta(days=1))  # fmt: skip
    return TlsCredentials(cert, key, (), (ca[0],))


CA = _ca("Test CA")
OTHER_CA = _ca("Other CA")
SERVER = _leaf(GATEWAY, CA)
CLIENT = _leaf(DAVE, CA)


def trusting(store: TrustStore, name: str | None) -> CertificateCheck:
    """A check as the IKE layer makes it: the chain by the store, then the identity."""

    def check(leaf: x509.Certificate, sent: Sequence[x509.Certificate]) -> str | None:
        peer_id = identity(name) if name else (9, leaf.subject.public_bytes())
        try:
            store.verify(leaf, sent, peer_id, NOW)  # type: ignore[arg-type]
        except TrustError as e:
            return str(e)
        return None

    return check


@dataclass
class Run:
    server: EapTlsServer
    peer: EapTlsPeer
    packets: list[tuple[str, EapPacket]] = field(default_factory=list)

    def go(self, tamper: dict[int, bytes] | None = None) -> Run:
        """Server and peer in turn, until one sends nothing; `tamper` replaces the
        peer's n-th packet (from 0) with other bytes."""
        out: bytes | None = self.server.start()
        sent = 0
        while out is not None:
            self.packets.append(("server", EapPacket.decode(out)))
            back = self.peer.receive(out)
            if back is None:
                break
            if tamper and sent in tamper:
                back = tamper[sent]
            sent += 1
            self.packets.append(("peer", EapPacket.decode(back)))
            out = self.server.receive(back)
        return self

    def tls(self, who: str) -> list[tuple[EapCode, EapTlsData]]:
        return [(p.code, EapTlsData.decode(p.data)) for w, p in self.packets
                if w == who and p.type is EapType.TLS]  # fmt: skip


def pair(
    server_trust: TrustStore | None = None, *, server_expects: str = DAVE,
    client: TlsCredentials = CLIENT, server_name: str | None = GATEWAY,
    fragment_size: int = FRAGMENT_SIZE, max_packets: int = 32,
) -> Run:  # fmt: skip
    store = server_trust or TrustStore([CA[0]])
    server = EapTlsServer(server_expects, SERVER, trusting(store, server_expects),
                          identifier=7, fragment_size=fragment_size,
                          max_packets=max_packets)  # fmt: skip
    peer = EapTlsPeer(DAVE, client, trusting(TrustStore([CA[0]]), server_name),
                      fragment_size=fragment_size, max_packets=max_packets)  # fmt: skip
    return Run(server, peer)


# -- the codec ----------------------------------------------------------------------------


def test_type_data_round_trips_with_and_without_the_length() -> None:
    assert EapTlsData(TlsFlag.START).encode() == b"\x20"
    assert EapTlsData().encode() == b"\x00"
    first = EapTlsData(TlsFlag.MORE, b"abc", 10)
    assert first.encode() == b"\xc0\x00\x00\x00\x0aabc"
    assert EapTlsData.decode(first.encode()) == first
    assert EapTlsData.decode(b"\x00xyz") == EapTlsData(TlsFlag.NONE, b"xyz")
    assert EapTlsData.decode(b"\x00").is_ack and not EapTlsData.decode(b"\x20").is_ack
    # Reserved bits are ignored (§3.1).
    assert EapTlsData.decode(b"\x1fz") == EapTlsData(TlsFlag.NONE, b"z")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "EAP-TLS packet: Flags needs 1 bytes, 0 left"),
        (b"\x80\x00\x01", "EAP-TLS packet: TLS Message Length needs 4 bytes, 2 left"),
        (b"\x80\x00\x00\x00\x02abc", "3 bytes of TLS data, more than its TLS Message Length 2"),
        (b"\x80\x01\x00\x00\x00", "TLS Message Length 16777216, larger than 73728"),
    ],
)
def test_bad_type_data_is_an_eap_error_naming_the_field(data: bytes, message: str) -> None:
    with pytest.raises(EapError) as info:
        EapTlsData.decode(data)
    assert message in str(info.value)


# -- handshakes ---------------------------------------------------------------------------


def test_a_whole_handshake_gives_both_ends_the_same_msk_and_emsk() -> None:
    # Request TLS Start -->  <-- ClientHello
    # Request ServerHello..ServerHelloDone -->  <-- Certificate..Finished
    # Request ChangeCipherSpec, Finished -->  <-- ACK ;  EAP Success -->
    run = pair().go()
    assert run.server.failed is None and run.peer.failed is None
    assert run.server.done and run.peer.done
    assert run.server.msk is not None and len(run.server.msk) == 64
    assert run.server.msk == run.peer.msk
    assert run.server.emsk == run.peer.emsk and run.server.emsk != run.server.msk
    assert run.server.emsk is not None and len(run.server.emsk) == 64
    server = run.tls("server")
    assert server[0][1] == EapTlsData(TlsFlag.START)
    assert run.packets[-1][1] == EapPacket.success(run.server.identifier)
    assert run.tls("peer")[-1][1].is_ack  # the ACK of the server's Finished
    # Identifiers: each Request a new one, each Response the Request's.
    ids = [p.identifier for _, p in run.packets]
    assert ids[0] == 7 and all(ids[i] == ids[i + 1] for i in range(0, len(ids) - 2, 2))
    assert "msk" not in repr(run.server).lower() and "key" not in repr(run.peer).lower()
    assert "Private" not in repr(CLIENT) and "key" not in repr(CLIENT)


def test_two_handshakes_give_different_msks() -> None:
    assert pair().go().server.msk != pair().go().server.msk


def test_small_fragments_carry_l_on_the_first_m_on_all_but_the_last_each_acked() -> None:
    run = pair(fragment_size=100, max_packets=100).go()
    assert run.server.failed is None and run.peer.failed is None
    assert run.server.msk == run.peer.msk is not None
    for sender, receiver in (("server", "peer"), ("peer", "server")):
        messages: list[list[EapTlsData]] = []
        current: list[EapTlsData] = []
        sent = [d for _, d in run.tls(sender) if not d.is_ack and not d.flags & TlsFlag.START]
        for data in sent:
            current.append(data)
            if not data.flags & TlsFlag.MORE:
                messages.append(current)
                current = []
        assert any(len(m) > 2 for m in messages), "a message went in several fragments"
        for message in messages:
            assert message[0].length == sum(len(f.data) for f in message)
            assert all(f.length is None for f in message[1:])
            assert all(f.flags & TlsFlag.MORE for f in message[:-1])
        for code, data in run.tls(sender):
            assert len(EapPacket(code, 0, EapType.TLS, data.encode()).encode()) <= 100
        fragments = sum(len(m) - 1 for m in messages)
        acks = [d for _, d in run.tls(receiver) if d.is_ack]
        # Every fragment but a message's last is ACKed; the peer also ACKs the Finished.
        assert len(acks) == fragments + (1 if receiver == "peer" else 0)


def test_rsa_certificates_take_several_fragments_at_the_default_size() -> None:
    rsa = _leaf(DAVE, CA, "rsa", 3072)
    run = pair(client=rsa).go()
    assert run.server.msk == run.peer.msk is not None
    assert any(d.flags & TlsFlag.MORE for _, d in run.tls("peer"))


# -- refusals -----------------------------------------------------------------------------


def _refused_by_server(run: Run, reason: str) -> None:
    assert run.server.done and run.server.failed is not None
    assert reason in run.server.failed, run.server.failed
    assert run.server.msk is None and run.peer.msk is None
    assert run.packets[-1] == ("server", EapPacket.failure(run.server.identifier))
    assert run.peer.failed is not None  # it took the EAP Failure


def test_a_client_certificate_of_another_ca_is_refused() -> None:
    stranger = _leaf(DAVE, OTHER_CA)
    run = pair(client=stranger).go()
    _refused_by_server(run, "the peer's certificate refused: untrusted: no chain")


def test_a_revoked_client_certificate_is_refused() -> None:
    revoked = _leaf(DAVE, CA)
    crl = pki.make_crl(CA[0], CA[1], [revoked.cert], "key-compromise", now=NOW)
    run = pair(TrustStore([CA[0]], crls=[crl]), client=revoked).go()
    _refused_by_server(run, "revoked (keyCompromise)")


def test_a_client_certificate_without_the_eap_identity_is_refused() -> None:
    run = pair(server_expects="eve@example.org").go()
    _refused_by_server(run, "identity eve@example.org not in the certificate")


def test_the_peer_refuses_a_server_certificate_without_the_gateway_identity() -> None:
    run = pair(server_name="other.example.org").go()
    assert run.peer.done and run.peer.failed is not None
    assert "the server's certificate refused" in run.peer.failed
    assert "identity other.example.org not in the certificate" in run.peer.failed
    # It refused before it sent its own certificate: its last packet was the ClientHello.
    assert run.packets[-1][0] == "server" and len(run.tls("peer")) == 1
    assert run.peer.msk is None and not run.server.done


ALERT = bytes.fromhex("15030300020228")  # TLS 1.2 fatal handshake_failure
GARBAGE = b"\x00" * 40


@pytest.mark.parametrize(
    ("record", "reason"),
    [(ALERT, "alert handshake failure"), (GARBAGE, "TLS handshake failed")],
)
def test_an_alert_or_a_record_that_is_no_tls_ends_it_with_the_reason(
    record: bytes, reason: str
) -> None:
    # <-- Response in place of the peer's Certificate .. Finished
    bad = EapPacket.response(8, EapType.TLS, EapTlsData(TlsFlag.NONE, record).encode())
    run = pair().go(tamper={1: bad.encode()})
    _refused_by_server(run, reason)


def test_too_many_fragments_end_it() -> None:
    run = pair(fragment_size=64, max_packets=6).go()
    assert run.server.failed is not None or run.peer.failed is not None
    failed = run.server.failed or run.peer.failed
    assert failed is not None and "more than 6 packets" in failed
    assert run.server.msk is None and run.peer.msk is None


def test_fragments_beyond_the_announced_length_end_it() -> None:
    # <-- Response with L = 4 and M, then a fragment that goes beyond
    first = EapPacket.response(7, EapType.TLS, EapTlsData(TlsFlag.MORE, b"\x16\x03", 4).encode())
    server = pair().server
    server.start()
    ack = EapPacket.decode(server.receive(first.encode()) or b"")
    assert ack.code is EapCode.REQUEST and EapTlsData.decode(ack.data).is_ack
    more = EapPacket.response(ack.identifier, EapType.TLS, b"\x00\x03\x01\x00")
    assert server.receive(more.encode()) == EapPacket.failure(ack.identifier).encode()
    assert server.failed is not None and "more than the TLS Message Length 4" in server.failed


def test_an_eap_success_before_the_handshake_ends_is_refused_by_the_peer() -> None:
    peer = pair().peer
    peer.receive(EapPacket.request(1, EapType.TLS, EapTlsData(TlsFlag.START).encode()).encode())
    assert peer.receive(EapPacket.success(1).encode()) is None
    assert peer.failed is not None and "EAP Success before the TLS handshake" in peer.failed
    assert peer.msk is None


def test_a_peer_naks_another_method_naming_tls_and_answers_identity() -> None:
    peer = pair().peer
    answer = EapPacket.decode(peer.receive(EapPacket.request(3, EapType.IDENTITY).encode()) or b"")
    assert answer == EapPacket.response(3, EapType.IDENTITY, DAVE.encode())
    md5 = EapPacket.request(4, EapType.MD5_CHALLENGE, b"\x10" + bytes(16))
    nak = EapPacket.decode(peer.receive(md5.encode()) or b"")
    assert nak == EapPacket.response(4, EapType.NAK, bytes([EapType.TLS]))


def test_a_peer_that_gets_an_alert_in_place_of_the_server_flight_fails_with_it() -> None:
    peer = pair().peer
    start = EapPacket.request(1, EapType.TLS, EapTlsData(TlsFlag.START).encode())
    hello = EapPacket.decode(peer.receive(start.encode()) or b"")
    assert hello.code is EapCode.RESPONSE and EapTlsData.decode(hello.data).data[:1] == b"\x16"
    alert = EapPacket.request(2, EapType.TLS, EapTlsData(TlsFlag.NONE, ALERT, 7).encode())
    assert peer.receive(alert.encode()) is None  # a peer sends nothing once failed
    assert peer.done and peer.failed is not None
    assert "TLS handshake failed" in peer.failed and "alert handshake failure" in peer.failed


def test_the_server_takes_a_nak_for_its_start_only() -> None:
    # <-- Nak naming MSCHAPv2 for the Start: the peer declined, named in the reason.
    server = pair().server
    server.start()
    nak = EapPacket.response(7, EapType.NAK, bytes([EapType.MSCHAPV2]))
    assert server.receive(nak.encode()) == EapPacket.failure(7).encode()
    assert server.failed == "the peer declined TLS; it would take MSCHAPV2"
    # <-- ClientHello, then a Nak once the handshake runs: a protocol error.
    run = pair()
    first = run.server.start()
    hello = run.peer.receive(first)
    assert hello is not None
    flight = EapPacket.decode(run.server.receive(hello) or b"")
    late = EapPacket.response(flight.identifier, EapType.NAK, bytes([EapType.MSCHAPV2]))
    run.server.receive(late.encode())
    assert run.server.failed == "NAK Response unexpected in state AWAIT_DATA"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_type_data_decodes_or_is_an_eap_error_and_re_encodes_without_reserved_bits(
    data: bytes,
) -> None:
    try:
        decoded = EapTlsData.decode(data)
    except EapError:
        return
    assert decoded.encode() == bytes([data[0] & 0xE0]) + data[1:]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=60), st.sampled_from([0, 0x40, 0x80, 0xC0]))
def test_anything_the_peer_sends_for_its_hello_is_an_answer_or_a_failure(
    body: bytes, flags: int
) -> None:
    # <-- Response of any TLS bytes in place of the ClientHello: never an exception.
    server = pair().server
    server.start()
    data = bytes([flags]) + (len(body).to_bytes(4, "big") if flags & 0x80 else b"") + body
    answer = server.receive(EapPacket.response(7, EapType.TLS, data).encode())
    assert answer is not None
    reply = EapPacket.decode(answer)
    if server.failed is None:
        assert reply.code is EapCode.REQUEST and reply.type is EapType.TLS
    else:
        assert reply == EapPacket.failure(server.identifier) and server.done


def test_a_peer_that_offers_only_tls_1_3_is_refused() -> None:
    # strongSwan 5.9's TLS 1.3 MSK label is not RFC 9190's: only TLS 1.2 is spoken.
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    hello = client.bio_read(65536)
    server = pair().server
    server.start()
    data = EapTlsData(TlsFlag.NONE, hello, len(hello)).encode()
    assert server.receive(EapPacket.response(7, EapType.TLS, data).encode()) == (
        EapPacket.failure(7).encode()
    )
    assert server.failed is not None and "unsupported protocol" in server.failed
