"""TrustStore: chains to the trusted CAs, validity, revocation, key sizes and the identity
a peer claims, each failure a TrustError whose message starts with its reason."""

from __future__ import annotations

import datetime
import hashlib
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval import pki, trust
from larval.ike.auth_config import PeerTrust, RemoteAuth, TrustError
from larval.ike.identity import IdType, cert_matches_identity, identity
from larval.trust import TrustStore, chain_for
from tests.trust.certs import DAY, NOW, Issued, crl, key, key_usage_for, make, root

CAROL = "carol@example.org"
CAROL_ID = identity(CAROL)


def carol(issuer: Issued, **kw: object) -> Issued:
    return make("C=US, O=Example, CN=carol", issuer, sans=[CAROL], **kw)  # type: ignore[arg-type]


def refused(store: TrustStore, leaf: Issued, *untrusted: Issued, peer_id=CAROL_ID) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TrustError) as caught:
        store.verify(leaf.cert, [u.cert for u in untrusted], peer_id, NOW)
    return str(caught.value)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return root()


@pytest.fixture(scope="module")
def inter(ca: Issued) -> Issued:
    return make("C=US, O=Example, CN=Example Intermediate CA", ca, ca=True)


# --- chains -----------------------------------------------------------------------------


def test_a_leaf_under_the_root_is_trusted(ca: Issued) -> None:
    leaf = carol(ca)
    peer = TrustStore([ca.cert]).verify(leaf.cert, [], CAROL_ID, NOW)
    assert peer.chain == (leaf.cert, ca.cert) and peer.leaf == leaf.cert
    assert peer.subject == "CN=carol,O=Example,C=US"


def test_a_store_is_what_a_remote_side_trusts(ca: Issued) -> None:
    store: PeerTrust = TrustStore([ca.cert])
    assert RemoteAuth(trust=store).trust is store


@pytest.mark.parametrize("where", ["untrusted", "store"])
def test_the_intermediate_comes_from_the_peer_or_the_store(
    ca: Issued, inter: Issued, where: str
) -> None:
    leaf = carol(inter)
    store = TrustStore([ca.cert], [inter.cert] if where == "store" else [])
    sent = [inter.cert] if where == "untrusted" else []
    assert store.verify(leaf.cert, sent, CAROL_ID, NOW).chain == (leaf.cert, inter.cert, ca.cert)


def test_without_the_intermediate_there_is_no_chain(ca: Issued, inter: Issued) -> None:
    reason = refused(TrustStore([ca.cert]), carol(inter))
    assert reason == (
        "untrusted: no chain to a trusted CA (issuer C=US, O=Example, CN=Example Intermediate CA)"
    )


def test_an_unknown_ca_is_untrusted(ca: Issued) -> None:
    other = root("C=US, O=Other, CN=Other CA")
    assert refused(TrustStore([ca.cert]), carol(other)).startswith(
        "untrusted: no chain to a trusted CA (issuer C=US, O=Other, CN=Other CA)"
    )


def test_a_ca_of_the_same_name_but_another_key_is_untrusted(ca: Issued) -> None:
    impostor = root("C=US, O=Example, CN=Example Root CA")
    assert refused(TrustStore([ca.cert]), carol(impostor)).startswith("untrusted: no chain")


def test_the_root_itself_as_the_leaf_is_trusted(ca: Issued) -> None:
    peer_id = (IdType.ID_DER_ASN1_DN, ca.cert.subject.public_bytes())
    assert TrustStore([ca.cert]).verify(ca.cert, [], peer_id, NOW).chain == (ca.cert,)


def _ladder(ca: Issued, depth: int) -> tuple[Issued, list[Issued]]:
    cas, issuer = [], ca
    for n in range(depth):
        issuer = make(f"O=Example, CN=Level {n}", issuer, ca=True)
        cas.append(issuer)
    return carol(issuer), cas


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_max_depth_counts_the_intermediate_cas(kind: str) -> None:
    top = root(signing_key=key(kind))
    leaf, cas = _ladder(top, 3)
    sent = [c.cert for c in cas]
    peer = TrustStore([top.cert], max_depth=3).verify(leaf.cert, sent, CAROL_ID, NOW)
    assert len(peer.chain) == 5
    assert refused(TrustStore([top.cert], max_depth=2), leaf, *cas) == (
        "untrusted: no chain to a trusted CA within 2 intermediate CAs"
    )


# --- the library's rules and the EdDSA path, the same cases both ways ------------------


@pytest.fixture(params=["ecdsa", "ed25519"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_eddsa_chains_are_trusted(kind: str) -> None:
    top = root(signing_key=key(kind))
    mid = make("O=Example, CN=Mid", top, ca=True, signing_key=key(kind, index=1))
    leaf = carol(mid, signing_key=key(kind, index=2))
    chain = TrustStore([top.cert]).verify(leaf.cert, [mid.cert], CAROL_ID, NOW).chain
    assert chain == (leaf.cert, mid.cert, top.cert)


def test_an_ed25519_root_over_an_ecdsa_leaf() -> None:
    top = root(signing_key=key("ed25519"))
    leaf = carol(top)
    assert TrustStore([top.cert]).verify(leaf.cert, [], CAROL_ID, NOW).chain[-1] == top.cert


def test_a_ca_without_key_usage_is_a_ca(kind: str) -> None:
    top = root(signing_key=key(kind), key_usage=False)
    leaf = carol(top)
    assert TrustStore([top.cert]).verify(leaf.cert, [], CAROL_ID, NOW).chain[-1] == top.cert


def test_an_intermediate_that_is_no_ca_signs_nothing(kind: str) -> None:
    top = root(signing_key=key(kind))
    fake = make("O=Example, CN=Not a CA", top, signing_key=key(kind, index=1))
    reason = refused(TrustStore([top.cert]), carol(fake), fake)
    assert reason.startswith("untrusted: ") and ("basicConstraints" in reason), reason


def test_a_ca_key_usage_without_key_cert_sign_signs_nothing(kind: str) -> None:
    usage = (key_usage_for(True, key_cert_sign=False), True)
    top = root(signing_key=key(kind))
    mid = make("O=Example, CN=Mid", top, ca=True, key_usage=False, extra=[usage],
               signing_key=key(kind, index=1))  # fmt: skip
    reason = refused(TrustStore([top.cert]), carol(mid), mid)
    assert reason.startswith("untrusted: ") and "keyCertSign" in reason, reason


def test_path_length_is_enforced(kind: str) -> None:
    top = root(signing_key=key(kind), path_length=0)
    mid = make("O=Example, CN=Mid", top, ca=True, signing_key=key(kind, index=1))
    reason = refused(TrustStore([top.cert]), carol(mid), mid)
    assert reason.startswith("untrusted: ") and "path" in reason.lower(), reason
    # pathLenConstraint 0 still lets the root issue end entities
    assert TrustStore([top.cert]).verify(carol(top).cert, [], CAROL_ID, NOW)


def test_an_unknown_critical_extension_is_refused(kind: str) -> None:
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
    odd = (x509.UnrecognizedExtension(oid, b"\x05\0"), True)
    top = root(signing_key=key(kind))
    reason = refused(TrustStore([top.cert]), carol(top, extra=[odd]))
    assert reason.startswith("untrusted: ") and "critical extension" in reason, reason


def test_a_malformed_extension_fails_the_chain(kind: str) -> None:
    top = root(signing_key=key(kind))
    junk = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x01")
    leaf = make("C=US, O=Example, CN=carol", top, extra=[(junk, False)])
    peer_id = identity("C=US, O=Example, CN=carol")
    assert not cert_matches_identity(leaf.cert, *identity(CAROL))  # read as no SAN
    assert refused(TrustStore([top.cert]), leaf, peer_id=peer_id).startswith(
        "malformed certificate (error parsing asn1 value: "
    )


@pytest.mark.parametrize(
    "flags",
    [["ikeIntermediate"], ["serverAuth"], ["clientAuth"], ["serverAuth", "ikeIntermediate"]],
)
def test_no_eku_is_demanded(ca: Issued, flags: list[str]) -> None:
    leaf = carol(ca, flags=flags)
    assert TrustStore([ca.cert]).verify(leaf.cert, [], CAROL_ID, NOW).leaf == leaf.cert


def test_a_dn_only_certificate_proves_its_dn(ca: Issued) -> None:
    leaf = make("C=US, O=Example, CN=dave", ca)
    # Written by a user (PrintableString values, other case) and in the certificate
    # (UTF8String values): the same name.
    peer_id = identity("C=US, O=example, CN=Dave")
    assert peer_id[1] != leaf.cert.subject.public_bytes()
    assert TrustStore([ca.cert]).verify(leaf.cert, [], peer_id, NOW).leaf == leaf.cert


def test_ecdsa_p384() -> None:
    top = root(signing_key=key("ecdsa", 384))
    leaf = carol(top, signing_key=key("ecdsa", 384, index=1))
    assert TrustStore([top.cert]).verify(leaf.cert, [], CAROL_ID, NOW).chain[-1] == top.cert


# --- validity ---------------------------------------------------------------------------


def test_an_expired_leaf(ca: Issued) -> None:
    leaf = carol(ca, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    assert refused(TrustStore([ca.cert]), leaf) == (
        "expired on 2026-12-02 12:00:00 UTC (valid from 2025-10-29 12:00:00 UTC)"
    )


def test_a_leaf_not_yet_valid(ca: Issued) -> None:
    leaf = carol(ca, not_before=NOW + DAY, not_after=NOW + 10 * DAY)
    assert refused(TrustStore([ca.cert]), leaf) == (
        "not yet valid until 2026-12-04 12:00:00 UTC (then to 2026-12-13 12:00:00 UTC)"
    )


def test_validity_includes_both_ends(ca: Issued) -> None:
    leaf = carol(ca, not_before=NOW, not_after=NOW)
    assert TrustStore([ca.cert]).verify(leaf.cert, [], CAROL_ID, NOW).leaf == leaf.cert


def test_an_expired_intermediate_names_the_ca(ca: Issued, kind: str) -> None:
    top = root(signing_key=key(kind))
    mid = make("O=Example, CN=Old", top, ca=True, not_after=NOW - DAY,
               signing_key=key(kind, index=1))  # fmt: skip
    reason = refused(TrustStore([top.cert]), carol(mid), mid)
    assert reason.startswith("expired on 2026-12-02 12:00:00 UTC") and reason.endswith(
        "(CA O=Example, CN=Old)"
    )


def test_a_naive_now_is_utc(ca: Issued) -> None:
    leaf = carol(ca, not_after=NOW + datetime.timedelta(minutes=1))
    store = TrustStore([ca.cert])
    assert store.verify(leaf.cert, [], CAROL_ID, NOW.replace(tzinfo=None)).leaf == leaf.cert


# --- keys -------------------------------------------------------------------------------


def test_an_rsa_1024_leaf_is_refused(ca: Issued) -> None:
    leaf = carol(ca, signing_key=key("rsa", 1024))
    assert refused(TrustStore([ca.cert]), leaf) == "RSA key of 1024 bits, below 2048"


def test_an_rsa_2048_chain_is_trusted() -> None:
    top = root(signing_key=key("rsa", 2048))
    leaf = carol(top, signing_key=key("rsa", 2048, index=1))
    assert TrustStore([top.cert]).verify(leaf.cert, [], CAROL_ID, NOW).chain[-1] == top.cert


def test_an_rsa_1024_ca_is_refused_by_name() -> None:
    top = root(signing_key=key("rsa", 2048))
    weak = make("O=Example, CN=Weak", top, ca=True, signing_key=key("rsa", 1024))
    reason = refused(TrustStore([top.cert]), carol(weak), weak)
    assert reason == "RSA key of 1024 bits, below 2048 (CA O=Example, CN=Weak)"


# --- revocation -------------------------------------------------------------------------


def test_a_revoked_leaf_fails_with_the_reason(ca: Issued) -> None:
    leaf = carol(ca)
    store = TrustStore([ca.cert], crls=[crl(ca, [leaf.cert], "key-compromise")])
    assert refused(store, leaf) == "revoked (keyCompromise) on 2026-12-02 12:00:00 UTC"


def test_a_revocation_without_a_reason_is_unspecified(ca: Issued) -> None:
    leaf = carol(ca)
    store = TrustStore([ca.cert], crls=[crl(ca, [leaf.cert])])
    assert refused(store, leaf).startswith("revoked (unspecified) on ")


def test_a_crl_listing_others_lets_the_leaf_pass(ca: Issued) -> None:
    leaf, other = carol(ca), carol(ca)
    store = TrustStore([ca.cert], crls=[crl(ca, [other.cert], "superseded")])
    assert store.verify(leaf.cert, [], CAROL_ID, NOW).leaf == leaf.cert


def test_a_revoked_intermediate_fails_the_chain(ca: Issued, inter: Issued, kind: str) -> None:
    top = root(signing_key=key(kind))
    mid = make("O=Example, CN=Mid", top, ca=True, signing_key=key(kind, index=1))
    store = TrustStore([top.cert], [mid.cert], crls=[crl(top, [mid.cert], "ca-compromise")])
    assert refused(store, carol(mid)) == (
        "revoked (cACompromise) on 2026-12-02 12:00:00 UTC (CA O=Example, CN=Mid)"
    )


def test_a_crl_not_signed_by_its_issuer_is_ignored(
    ca: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    leaf = carol(ca)
    forged = crl(ca, [leaf.cert], "key-compromise", signer=ec.generate_private_key(ec.SECP256R1()))
    store = TrustStore([ca.cert], crls=[forged])
    with caplog.at_level(logging.DEBUG, logger="larval.trust"):
        assert store.verify(leaf.cert, [], CAROL_ID, NOW).leaf == leaf.cert
    assert "CRL of C=US, O=Example, CN=Example Root CA ignored" in caplog.text


def test_a_crl_of_another_ca_does_not_apply(ca: Issued) -> None:
    leaf = carol(ca)
    other = root("C=US, O=Other, CN=Other CA")
    store = TrustStore([ca.cert], crls=[crl(other, [leaf.cert], "key-compromise")])
    assert store.verify(leaf.cert, [], CAROL_ID, NOW).leaf == leaf.cert


# --- identities -------------------------------------------------------------------------


def test_a_san_that_does_not_match_fails(ca: Issued) -> None:
    reason = refused(TrustStore([ca.cert]), carol(ca), peer_id=identity("dave@example.org"))
    assert reason == "identity dave@example.org not in the certificate"


def test_the_wrong_id_type_fails(ca: Issued) -> None:
    leaf = make("CN=vpn", ca, sans=["vpn.example.org"])
    store = TrustStore([ca.cert])
    assert store.verify(leaf.cert, [], identity("vpn.example.org"), NOW)
    # the same text as an email, or the SAN's name where only the DN is the subject
    wrong = (IdType.ID_RFC822_ADDR, b"vpn.example.org")
    assert refused(store, leaf, peer_id=wrong) == (
        "identity email:vpn.example.org not in the certificate"
    )
    assert refused(store, leaf, peer_id=identity("vpn")).startswith("identity vpn not")


def test_a_key_id_matches_the_subject_key_identifier(ca: Issued) -> None:
    leaf = carol(ca)
    ski = x509.SubjectKeyIdentifier.from_public_key(leaf.key.public_key()).digest
    store = TrustStore([ca.cert])
    assert store.verify(leaf.cert, [], (IdType.ID_KEY_ID, ski), NOW).leaf == leaf.cert
    assert refused(store, leaf, peer_id=(IdType.ID_KEY_ID, b"\1" * 20)).startswith(
        "identity @#0101"
    )


# --- what this end asks for and sends ---------------------------------------------------


def test_certreq_names_each_anchor_by_its_public_key(ca: Issued, inter: Issued) -> None:
    other = root("CN=Other")
    store = TrustStore([ca.cert, other.cert, ca.cert], [inter.cert])
    spki = ca.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ids = store.certreq_keyids()
    assert ids == (hashlib.sha1(spki).digest(), pki.key_ids(other.cert.public_key())[0])  # type: ignore[arg-type]


def test_chain_for_sends_the_intermediates_without_the_root(ca: Issued) -> None:
    leaf, cas = _ladder(ca, 2)
    unrelated = root("CN=Unrelated")
    pool = [unrelated.cert, ca.cert, cas[0].cert, cas[1].cert]
    assert chain_for(leaf.cert, pool) == (cas[1].cert, cas[0].cert)
    assert chain_for(carol(ca).cert, pool) == ()
    assert chain_for(leaf.cert, [ca.cert, cas[0].cert]) == ()  # its issuer is not on hand
    assert chain_for(leaf.cert, [cas[0].cert, cas[1].cert]) == (cas[1].cert, cas[0].cert)


def test_a_store_without_anchors_trusts_nobody(ca: Issued) -> None:
    store = TrustStore([], [ca.cert])
    assert store.certreq_keyids() == ()
    assert refused(store, carol(ca)).startswith("untrusted: no chain to a trusted CA")


def test_a_tangle_of_certificates_costs_one_check_per_pair(
    ca: Issued, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve CA certificates of one name and key each issue every other: the paths
    through them are millions, the pairs 169 (with the anchor)."""
    tangle_key = key("ecdsa", index=3)
    tangle = [make("CN=Loop", None, ca=True, signing_key=tangle_key) for _ in range(12)]
    leaf = carol(tangle[0])
    checks = 0
    issued_by = trust._issued_by

    def counting(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        nonlocal checks
        checks += 1
        return issued_by(cert, issuer)

    monkeypatch.setattr(trust, "_issued_by", counting)
    assert refused(TrustStore([ca.cert]), leaf, *tangle).startswith("untrusted: no chain")
    assert 12 < checks <= 13 * 13  # at most each pair once (here: each CA once)


def test_ikev1_certreq_names_each_anchor_by_its_subject(ca: Issued, inter: Issued) -> None:
    other = root("CN=Other")
    store = TrustStore([ca.cert, other.cert, ca.cert], [inter.cert])
    assert store.certreq_names() == (
        ca.cert.subject.public_bytes(),
        other.cert.subject.public_bytes(),
    )


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # cryptography, on loading
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_certificate_from_the_wire_is_a_reason_never_an_exception(
    chain_der: tuple[bytes, bytes, x509.Certificate], data: st.DataObject
) -> None:
    """A leaf and an intermediate as a peer's CERT payloads bring them, with octets
    changed: whatever still parses as a certificate is trusted or refused with a reason."""
    leaf_der, inter_der, anchor = chain_der
    which = data.draw(st.sampled_from(["leaf", "inter"]))
    target = bytearray(leaf_der if which == "leaf" else inter_der)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(target) - 1))
        target[at] = data.draw(st.integers(0, 255))
    try:
        changed = x509.load_der_x509_certificate(bytes(target))
    except (ValueError, x509.InvalidVersion):  # what loading a CERT payload refuses
        return
    leaf = changed if which == "leaf" else x509.load_der_x509_certificate(leaf_der)
    inter = changed if which == "inter" else x509.load_der_x509_certificate(inter_der)
    try:
        TrustStore([anchor]).verify(leaf, [inter], CAROL_ID, NOW)
    except TrustError as e:
        assert str(e)


@pytest.fixture(scope="module")
def chain_der(ca: Issued, inter: Issued) -> tuple[bytes, bytes, x509.Certificate]:
    der = serialization.Encoding.DER
    return carol(inter).cert.public_bytes(der), inter.cert.public_bytes(der), ca.cert
