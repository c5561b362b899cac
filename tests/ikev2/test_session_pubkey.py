"""Two IKE sessions in memory that prove themselves with certificates (RFC 7296 §2.15,
RFC 4754, RFC 7427): every Auth Method both ways, with and without the peer's
SIGNATURE_HASH_ALGORITHMS, a shared key one way and a certificate the other, CERT and
CERTREQ as configured, and every way a peer fails: AUTHENTICATION_FAILED, nothing
installed, one WARNING line."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from larval.credentials import CertificateWithKey, PrivateKeyFile
from larval.crypto.prf import Prf
from larval.ike import IKE_PORT
from larval.ike.auth_config import AuthInfo, LocalAuth, RemoteAuth, SendCert, parse_auth
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaDown, ChildSaUp, IkeSaDown, IkeSaRekeyed
from larval.ike.identity import IdentityMatch, IdType, identity
from larval.ikev2.auth import PeerClaim, PeerOffer, Proof, PubkeyProver, PubkeyVerifier
from larval.ikev2.constants import CertEncoding, NotifyType
from larval.ikev2.message import decode_message
from larval.ikev2.payloads import AuthPayload, CertPayload, CertReqPayload, NotifyPayload
from larval.ikev2.session import IkeSession, State
from larval.trust import TrustStore
from tests.ikev2.certs import NOW, issue, key, keyid, leaf, root_ca, trust
from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child, config


class Recording(PubkeyVerifier):
    """Checks the peer as `PubkeyVerifier` does, noting the Auth Method and the CERTs."""

    def __init__(self, remote: RemoteAuth) -> None:
        super().__init__(remote)
        self.seen: list[tuple[int, int]] = []

    def verify(self, prf: Prf, octets: bytes, claim: PeerClaim, now: datetime.datetime) -> AuthInfo:
        self.seen.append((int(claim.auth.method), len(claim.certs)))
        return super().verify(prf, octets, claim, now)


def local(cert: CertificateWithKey, schemes: str = "", send_cert: SendCert = "ifasked",
          intermediates: tuple[x509.Certificate, ...] = ()) -> LocalAuth:  # fmt: skip
    chosen = parse_auth(schemes)[1] if schemes else ()
    return LocalAuth(cert, intermediates, chosen, send_cert)


def remote(auth: str = "pubkey", *, peer_trust: TrustStore | None = None,
           send_certreq: bool = True) -> RemoteAuth:  # fmt: skip
    return RemoteAuth(peer_trust or trust(), parse_auth(auth)[1], send_certreq)


def cfg(local_addr: Any, remote_addr: Any, mine: LocalAuth | None,
        theirs: RemoteAuth | None) -> IkeConfig:  # fmt: skip
    return dataclasses.replace(config(local_addr, remote_addr), local_auth=mine,
                               remote_auth=theirs)  # fmt: skip


def pair_of(init: IkeConfig, resp: IkeConfig, *, hashes_i: bool = True, hashes_r: bool = True,
            clock: datetime.datetime = NOW, **options: Any) -> Pair:  # fmt: skip
    """A Pair whose sessions check certificates at `clock`, with `Recording` verifiers."""
    pair = Pair(init, resp, child(NET_B, NET_A))
    spis = itertools.count(0x3000)
    made = []
    for c, initiator, hashes in ((init, True, hashes_i), (resp, False, hashes_r)):
        verifier = Recording(c.remote_auth) if c.remote_auth is not None else None
        made.append(IkeSession(c, initiator=initiator, allocate_spi=lambda: next(spis),
                               child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                               verifier=verifier, wall_clock=lambda: clock,
                               signature_hashes=hashes, **options))  # fmt: skip
    pair.i, pair.r = made
    return pair


def both_pubkey(kind_i: str, kind_r: str | None = None, *, schemes: str = "",
                accept: str = "pubkey", **options: Any) -> Pair:  # fmt: skip
    """Certificates both ways: the initiator's key of `kind_i`, the responder's of `kind_r`."""
    init = cfg(A, B, local(leaf(kind_i, str(A)), schemes), remote(accept))
    resp = cfg(B, A, local(leaf(kind_r or kind_i, str(B)), schemes), remote(accept))
    return pair_of(init, resp, **options)


def established(pair: Pair) -> tuple[ChildSaUp, ChildSaUp]:
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    up_i = next(e for e in Pair.events(pair.i) if isinstance(e, ChildSaUp))
    up_r = next(e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in and up_i.keys_in == up_r.keys_out
    return up_i, up_r


def methods(pair: Pair) -> tuple[int, int]:
    """The Auth Method each end received: (the initiator's AUTH, the responder's)."""
    assert isinstance(pair.r._verifier, Recording) and isinstance(pair.i._verifier, Recording)
    return pair.r._verifier.seen[0][0], pair.i._verifier.seen[0][0]


# -- every Auth Method, both ways ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "schemes", "accept", "hashes", "method", "scheme"),
    [
        # RFC 7427 §4: both announced their hashes, so method 14 (Digital Signature).
        ("rsa2048", "", "pubkey", True, 14, "rsa-sha256"),
        ("rsa2048", "rsa/pss-sha256", "pubkey", True, 14, "rsa/pss-sha256"),
        ("rsa2048", "rsa/pss-sha512", "rsa/pss", True, 14, "rsa/pss-sha512"),
        ("rsa2048", "rsa-sha384", "pubkey", True, 14, "rsa-sha384"),
        ("p256", "", "pubkey", True, 14, "ecdsa-sha256"),
        ("p384", "", "ecdsa-sha384", True, 14, "ecdsa-sha384"),
        ("p521", "", "pubkey", True, 14, "ecdsa-sha512"),
        ("ed25519", "", "pubkey", True, 14, "ed25519"),
        ("ed448", "", "ed448", True, 14, "ed448"),
        # Neither announced them: RFC 7296's method 1 (where allowed) and RFC 4754's.
        ("rsa2048", "", "rsa-sha1", False, 1, "rsa-sha1"),
        ("p256", "", "pubkey", False, 9, "ecdsa-sha256"),
        ("p384", "", "pubkey", False, 10, "ecdsa-sha384"),
        ("p521", "", "pubkey", False, 11, "ecdsa-sha512"),
        ("ed25519", "", "pubkey", False, 14, "ed25519"),
    ],
)
def test_every_auth_method_both_ways(
    kind: str, schemes: str, accept: str, hashes: bool, method: int, scheme: str
) -> None:
    pair = both_pubkey(kind, schemes=schemes, accept=accept, hashes_i=hashes, hashes_r=hashes)
    # IKE_SA_INIT { SA, KE, Ni, N(NAT_D), N(FRAG_SUP), [N(HASH_ALG)] } -->
    #   <-- { SA, KE, Nr, N(NAT_D), N(FRAG_SUP), [N(HASH_ALG)], CERTREQ }
    # IKE_AUTH { SK{IDi, CERT, CERTREQ, AUTH, SA, TSi, TSr} } -->
    #   <-- { SK{IDr, CERT, AUTH, SA, TSi, TSr} }
    established(pair)
    assert methods(pair) == (method, method)
    for end, peer in ((pair.i, "192.0.2.2"), (pair.r, "192.0.2.1")):
        assert end.auth_local is not None and end.auth_remote is not None
        assert end.auth_local.method == end.auth_remote.method == "pubkey"
        assert end.auth_local.scheme == end.auth_remote.scheme == scheme
        assert f"CN=peer {peer} {kind}" in end.auth_remote.subject
        assert "CN=Root CA" in end.auth_remote.issuer


@pytest.mark.parametrize(("hashes_i", "hashes_r"), [(True, False), (False, True)])
def test_one_end_without_the_hashes_gets_the_classic_method_the_other_method_14(
    hashes_i: bool, hashes_r: bool
) -> None:
    pair = both_pubkey("p256", hashes_i=hashes_i, hashes_r=hashes_r)
    established(pair)
    # Who announced its hashes gets method 14, who did not RFC 4754's method 9; the
    # responder announces its own only in answer to the initiator's (as strongSwan).
    from_i = 14 if hashes_i and hashes_r else 9
    from_r = 14 if hashes_i else 9
    assert methods(pair) == (from_i, from_r)


def test_keys_of_different_types_each_way() -> None:
    pair = both_pubkey("ed25519", "rsa2048")
    established(pair)
    assert pair.i.auth_local == pair.r.auth_remote
    assert pair.r.auth_local == pair.i.auth_remote
    assert pair.i.auth_local is not None and pair.r.auth_local is not None
    assert (pair.i.auth_local.scheme, pair.r.auth_local.scheme) == ("ed25519", "rsa-sha256")


def test_the_responder_announces_its_hashes_only_in_answer_to_the_initiators() -> None:
    pair = both_pubkey("p256", hashes_i=False)
    established(pair)
    for _, data in pair.wire[:2]:
        assert decode_message(data).notify(NotifyType.SIGNATURE_HASH_ALGORITHMS) is None


def test_signature_hash_algorithms_and_certreq_in_ike_sa_init() -> None:
    pair = both_pubkey("p256", accept="ecdsa-sha384-sha256")
    established(pair)
    request, response = (decode_message(d) for _, d in pair.wire[:2])
    for message in (request, response):
        hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        assert hashes is not None and hashes.data == bytes.fromhex("00020003")  # SHA2_256/384
    assert request.first(CertReqPayload) is None
    certreq = response.first(CertReqPayload)
    assert certreq is not None and certreq.encoding == CertEncoding.X509_SIGNATURE
    assert certreq.authorities == (keyid(root_ca()[0]),)


def test_a_psk_connection_announces_no_hashes_and_asks_no_certificate() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    for _, data in pair.wire[:2]:
        message = decode_message(data)
        assert message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS) is None
        assert message.first(CertReqPayload) is None
    assert pair.i.auth_local == pair.i.auth_remote == AuthInfo("psk")
    assert pair.r.auth_local == pair.r.auth_remote == AuthInfo("psk")


# -- a shared key one way, a certificate the other (strongSwan's rw-psk-rsa-split) ---------


@pytest.mark.parametrize("cert_side", ["initiator", "responder"])
def test_psk_one_way_and_a_certificate_the_other(cert_side: str) -> None:
    if cert_side == "initiator":
        init = cfg(A, B, local(leaf("rsa2048", str(A))), None)
        resp = cfg(B, A, None, remote())
    else:
        init = cfg(A, B, None, remote())
        resp = cfg(B, A, local(leaf("rsa2048", str(B))), None)
    pair = pair_of(init, resp)
    established(pair)
    prover, verifier = (pair.i, pair.r) if cert_side == "initiator" else (pair.r, pair.i)
    assert prover.auth_local == verifier.auth_remote
    assert prover.auth_local is not None and prover.auth_local.scheme == "rsa-sha256"
    assert prover.auth_remote == verifier.auth_local == AuthInfo("psk")


# -- CERT and CERTREQ as configured -----------------------------------------------------------


@pytest.mark.parametrize(
    ("send_cert", "send_certreq", "certs_sent"),
    [("always", False, 1), ("always", True, 1), ("ifasked", True, 1), ("ifasked", False, 0),
     ("never", True, 0)],
)  # fmt: skip
def test_send_cert_and_send_certreq(send_cert: SendCert, send_certreq: bool,
                                    certs_sent: int) -> None:  # fmt: skip
    """The initiator's CERT goes as `send_cert` says, "ifasked" when the responder's
    IKE_SA_INIT response had a CERTREQ; without one the responder has no key to check."""
    init = cfg(A, B, local(leaf("p256", str(A)), send_cert=send_cert), remote())
    resp = cfg(B, A, local(leaf("p256", str(B))), remote(send_certreq=send_certreq))
    pair = pair_of(init, resp)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert isinstance(pair.r._verifier, Recording)
    assert pair.r._verifier.seen == [(14, certs_sent)]
    if certs_sent:
        assert pair.i.state is State.ESTABLISHED
        # The initiator's CERTREQ asked for the responder's, "ifasked".
        assert isinstance(pair.i._verifier, Recording) and pair.i._verifier.seen == [(14, 1)]
    else:
        assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
        (down,) = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaDown)]
        assert "AUTHENTICATION_FAILED" in down.reason


def test_intermediates_go_after_the_leaf_and_build_the_chain() -> None:
    root = root_ca()
    sub_key = key("p256:sub")
    sub = issue("Sub CA", sub_key, root, ca=True, serial=7)
    cert = leaf("p384", str(A), (sub, sub_key))
    init = cfg(A, B, local(cert, send_cert="always", intermediates=(sub,)), remote())
    resp = cfg(B, A, local(leaf("p256", str(B))), remote())
    pair = pair_of(init, resp)
    established(pair)
    assert isinstance(pair.r._verifier, Recording) and pair.r._verifier.seen == [(14, 2)]
    assert pair.r.auth_remote is not None and "CN=Sub CA" in pair.r.auth_remote.issuer


# -- every failure: AUTHENTICATION_FAILED, nothing installed, one WARNING ---------------------


class BadSignature(PubkeyProver):
    """Signs, then spoils the last octet of the signature."""

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        proof = super().prove(prf, octets, peer)
        data = proof.auth.data[:-1] + bytes([proof.auth.data[-1] ^ 1])
        return dataclasses.replace(proof, auth=AuthPayload(proof.auth.method, data))


class GarbageCert(PubkeyProver):
    """Sends a CERT that is no certificate."""

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        proof = super().prove(prf, octets, peer)
        garbage = CertPayload(CertEncoding.X509_SIGNATURE, b"\x30\x03\x02\x01\x01")
        return dataclasses.replace(proof, certs=(garbage,))


class UnknownAlgorithm(PubkeyProver):
    """Names md5WithRSAEncryption in its Digital Signature AUTH (RFC 7427 §3)."""

    def prove(self, prf: Prf, octets: bytes, peer: PeerOffer) -> Proof:
        proof = super().prove(prf, octets, peer)
        md5_rsa = bytes.fromhex("300d06092a864886f70d0101040500")
        data = bytes([len(md5_rsa)]) + md5_rsa + proof.auth.data[1 + proof.auth.data[0] :]
        return dataclasses.replace(proof, auth=AuthPayload(proof.auth.method, data))


def _other_ca_leaf(address: str) -> CertificateWithKey:
    return leaf("p256", address, root_ca("Other CA"))


def _expired_leaf(address: str) -> CertificateWithKey:
    return leaf("p256", address, days=10)


def _wrong_id_leaf(address: str) -> CertificateWithKey:
    return leaf("p256", "198.51.100.77")


FAILURES: dict[str, tuple[Any, str]] = {
    # case: (how the failing end is set up, the reason in the WARNING line)
    "untrusted": (dict(cert=_other_ca_leaf),
                  "untrusted: no chain to a trusted CA (issuer O=larval tests, CN=Other CA)"),
    "expired": (dict(cert=_expired_leaf),
                "expired on 2026-01-11 00:00:00 UTC (valid from 2026-01-01 00:00:00 UTC)"),
    "revoked": (dict(revoked=True), "revoked (keyCompromise) on 2026-01-02 00:00:00 UTC"),
    "id-not-in-cert": (dict(cert=_wrong_id_leaf), "identity {peer} not in the certificate"),
    "scheme-not-allowed": (dict(accept="rsa/pss"), "signature scheme ecdsa-sha256 not allowed"),
    "method-1-not-named": (dict(hashes=False, kind="rsa2048"),
                           "signature scheme rsa-sha1 not allowed"),
    "bad-signature": (dict(prover=BadSignature), "the ecdsa-sha256 signature does not verify"),
    "undecodable-cert": (dict(prover=GarbageCert), "the first X.509 CERT does not decode"),
    "undecodable-auth": (dict(prover=UnknownAlgorithm), "AlgorithmIdentifier "
                         "1.2.840.113549.1.1.4: not a signature scheme larval has"),
    "no-certificate": (dict(send_cert="never"), "no certificate"),
}  # fmt: skip


def _failing_pair(case: str, failing: str) -> tuple[Pair, str]:
    """A Pair where the `failing` end ("initiator" or "responder") does not prove itself
    to the other as `case` says."""
    setup, reason = FAILURES[case]
    kind = setup.get("kind", "p256")
    addr_f, addr_o = (str(A), str(B)) if failing == "initiator" else (str(B), str(A))
    make = setup.get("cert", lambda address: leaf(kind, address, serial=4242))
    bad = local(make(addr_f), send_cert=setup.get("send_cert", "ifasked"))
    good = local(leaf("p256", addr_o))
    checker = remote(setup.get("accept", "pubkey"),
                     peer_trust=trust(revoked=[4242] if setup.get("revoked") else []))  # fmt: skip
    peer_side = remote()
    if failing == "initiator":
        init, resp = cfg(A, B, bad, peer_side), cfg(B, A, good, checker)
    else:
        init, resp = cfg(A, B, good, checker), cfg(B, A, bad, peer_side)
    hashes = setup.get("hashes", True)
    pair = pair_of(init, resp, hashes_i=hashes, hashes_r=hashes)
    prover = setup.get("prover")
    if prover is not None:
        end = pair.i if failing == "initiator" else pair.r
        end._prover = prover(bad)
    return pair, reason.format(peer=addr_f)


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_an_initiator_that_fails_gets_authentication_failed_and_nothing_installed(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    pair, reason = _failing_pair(case, "initiator")
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_AUTH { SK{IDi, [CERT], AUTH, ...} } -->  <-- { SK{N(AUTHENTICATION_FAILED)} }
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    events_i, events_r = list(Pair.events(pair.i)), list(Pair.events(pair.r))
    assert not [e for e in events_i + events_r if isinstance(e, ChildSaUp)]
    (down_i,) = [e for e in events_i if isinstance(e, IkeSaDown)]
    assert down_i.reason == "IKE_AUTH refused: AUTHENTICATION_FAILED"
    (down_r,) = [e for e in events_r if isinstance(e, IkeSaDown)]
    assert down_r.reason == f"authentication of the initiator failed: {reason}"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"authentication of the initiator failed: {reason}" in warning
    if case not in ("no-certificate", "undecodable-cert"):
        assert re.search(r" \(certificate CN=peer [\d.]+ \w+,O=larval tests\)$", warning)
    assert pair.r.auth_remote is None and pair.i.auth_local is None


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_responder_that_fails_is_refused_by_the_initiator_which_says_so(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    pair, reason = _failing_pair(case, "responder")
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_AUTH -->  <-- { SK{IDr, [CERT], AUTH, SA, TSi, TSr} }
    # INFORMATIONAL { SK{N(AUTHENTICATION_FAILED)} } -->  (sent once, not awaited)
    #   <-- { SK{} }
    with caplog.at_level(logging.INFO, logger="larval.ike"):
        pair.flush()
    assert pair.i.state is State.CLOSED
    events_i = list(Pair.events(pair.i))
    assert not [e for e in events_i if isinstance(e, ChildSaUp)]
    (down,) = [e for e in events_i if isinstance(e, IkeSaDown)]
    assert down.reason.startswith(f"authentication of the responder failed: {reason}")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"authentication of the responder failed: {reason}" in warning
    # The responder had answered, and takes the INFORMATIONAL as a delete (as charon),
    # answering it; the closed initiator drops the answer.
    assert [way for way, _ in pair.wire] == ["i->r", "r->i"] * 3
    assert pair.r.state is State.CLOSED
    events_r = list(Pair.events(pair.r))
    (down_r,) = [e for e in events_r if isinstance(e, IkeSaDown)]
    assert down_r.by_peer and "AUTHENTICATION_FAILED" in down_r.reason
    up_r = [e for e in events_r if isinstance(e, ChildSaUp)]
    assert [e.spi_in for e in events_r if isinstance(e, ChildSaDown)] == [u.spi_in for u in up_r]


def test_this_end_with_no_scheme_for_the_peers_hashes_closes_before_ike_auth() -> None:
    # The initiator's Ed25519 key, a responder that verifies SHA-256 only (so announces
    # only SHA2_256): no scheme fits, and IKE_AUTH is never sent.
    init = cfg(A, B, local(leaf("ed25519", str(A))), remote())
    resp = cfg(B, A, local(leaf("p256", str(B))), remote("ecdsa-sha256"))
    pair = pair_of(init, resp)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    assert len(pair.wire) == 2 and pair.i.state is State.CLOSED
    (down,) = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaDown)]
    assert down.reason.startswith("this end cannot prove itself: no signature scheme")


def test_a_responder_with_no_scheme_for_the_initiators_hashes_answers_authentication_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The responder's Ed25519 key; the initiator verifies ECDSA with SHA-256 only.
    init = cfg(A, B, local(leaf("p256", str(A))), remote("ecdsa-sha256"))
    resp = cfg(B, A, local(leaf("ed25519", str(B))), remote())
    pair = pair_of(init, resp)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    with caplog.at_level(logging.WARNING, logger="larval.ike"):
        pair.flush()
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    (down,) = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaDown)]
    assert down.reason == "IKE_AUTH refused: AUTHENTICATION_FAILED"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "this end cannot prove itself: no signature scheme for the Ed25519 key" in warning


def test_malformed_signature_hash_algorithms_are_refused_with_invalid_syntax() -> None:
    init = cfg(A, B, local(leaf("p256", str(A))), remote())
    resp = cfg(B, A, local(leaf("p256", str(B))), remote())
    pair = pair_of(init, resp)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    ((data, _),) = pair.i.datagrams_to_send(0.0)
    message = decode_message(data)
    bad = NotifyPayload(0, NotifyType.SIGNATURE_HASH_ALGORITHMS, b"", b"\x00\x02\x00")
    hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    payloads = tuple(bad if p is hashes else p for p in message.payloads)
    pair.r.receive_datagram(dataclasses.replace(message, payloads=payloads).encode(),
                            (str(A), IKE_PORT), 0.0)  # fmt: skip
    ((answer, _),) = pair.r.datagrams_to_send(0.0)
    refusal = decode_message(answer).notify(NotifyType.INVALID_SYNTAX)
    assert refusal is not None and pair.r.state is State.IDLE


# -- a 4096-bit RSA chain in IKE fragments (RFC 7383) ------------------------------------------


def test_a_4096_bit_rsa_chain_is_fragmented_and_reassembled() -> None:
    root = root_ca()
    sub_key = key("rsa4096:sub")
    sub = issue("RSA Sub CA", sub_key, root, ca=True, serial=9)
    cert_i = leaf("rsa4096", str(A), (sub, sub_key))
    cert_r = leaf("rsa4096:r", str(B), (sub, sub_key))
    init = cfg(A, B, local(cert_i, send_cert="always", intermediates=(sub,)), remote())
    resp = cfg(B, A, local(cert_r, send_cert="always", intermediates=(sub,)), remote())
    pair = pair_of(init, resp, fragment_size=576)
    established(pair)
    assert pair.i.fragmentation and pair.r.fragmentation
    chain = sum(len(c.public_bytes(Encoding.DER)) for c in (cert_i.cert, sub))
    auth_i = [d for way, d in pair.wire[2:] if way == "i->r"]
    auth_r = [d for way, d in pair.wire[2:] if way == "r->i"]
    assert chain > 2000 and len(auth_i) >= 5 and len(auth_r) >= 5
    assert all(d[16] == 53 and len(d) <= 576 for d in auth_i + auth_r)  # SKF (RFC 7383 §2.5)
    assert isinstance(pair.r._verifier, Recording) and pair.r._verifier.seen == [(14, 2)]
    assert pair.r.auth_remote is not None and pair.r.auth_remote.scheme == "rsa-sha384"


def test_auth_info_survives_an_ike_sa_rekey() -> None:
    pair = both_pubkey("p256")
    established(pair)
    before = (pair.i.auth_local, pair.i.auth_remote)
    pair.i.rekey_ike(1.0)
    pair.now = 1.0
    pair.flush()
    (rekeyed,) = [e for e in Pair.events(pair.i) if isinstance(e, IkeSaRekeyed)]
    assert isinstance(rekeyed.new, IkeSession) and rekeyed.new.state is State.ESTABLISHED
    assert (rekeyed.new.auth_local, rekeyed.new.auth_remote) == before


# -- identities: wildcards, DNs -------------------------------------------------------------


def _fqdn_leaf(name: str) -> CertificateWithKey:
    private = key("p256")
    cert = issue(name, private, root_ca(), sans=[x509.DNSName(name)], serial=77)
    return CertificateWithKey("fqdn.pem", cert, PrivateKeyFile("fqdn.key", private))


@pytest.mark.parametrize(("pattern", "up"), [("*.example.org", True), ("%any", True),
                                             ("*.example.com", False)])  # fmt: skip
def test_a_wildcard_peer_identity_matches_the_certificates(pattern: str, up: bool) -> None:
    cert = _fqdn_leaf("carol.example.org")
    init = dataclasses.replace(cfg(A, B, local(cert), remote()),
                               local_id=identity("carol.example.org"))  # fmt: skip
    resp = dataclasses.replace(cfg(B, A, local(leaf("p256", str(B))), remote()), remote_id=None,
                               remote_id_match=IdentityMatch.parse(pattern))  # fmt: skip
    pair = pair_of(init, resp)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    if up:
        assert pair.r.state is State.ESTABLISHED
        assert (
            pair.r.auth_remote is not None and "CN=carol.example.org" in pair.r.auth_remote.subject
        )
    else:
        assert pair.r.state is State.CLOSED and pair.i.state is State.CLOSED
        (down,) = [e for e in Pair.events(pair.r) if isinstance(e, IkeSaDown)]
        assert (
            down.reason
            == "authentication of the initiator failed: identity is not the one configured"
        )


def test_a_distinguished_name_identity_is_the_certificates_subject() -> None:
    cert = _fqdn_leaf("carol.example.org")
    dn = (IdType.ID_DER_ASN1_DN, cert.cert.subject.public_bytes())
    init = dataclasses.replace(cfg(A, B, local(cert), remote()), local_id=dn)
    resp = dataclasses.replace(cfg(B, A, local(leaf("p256", str(B))), remote()), remote_id=dn)
    pair = pair_of(init, resp)
    established(pair)
    assert pair.r.auth_remote is not None and pair.r.auth_remote.method == "pubkey"
