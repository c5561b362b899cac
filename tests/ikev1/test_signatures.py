"""Phase 1 with signatures (RFC 2409 §5.1): two IKEv1 sessions in memory prove themselves
with RSA (method 3) and ECDSA (RFC 4754, methods 9-11) certificates in Main and Aggressive
Mode, send CERT and CR as configured, and refuse every peer that does not prove itself:
no ISAKMP SA, no Quick Mode."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import logging
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from larval import pki
from larval.crypto.ikev1_keys import Ikev1Prf
from larval.ike.auth_config import AuthInfo, parse_auth
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaUp, Event, IkeSaDown, IkeSaUp
from larval.ike.identity import IdentityMatch, IdType, describe_subject
from larval.ikev1 import ExchangeType, NotifyPayload, NotifyType, SaPayload, decode_message
from larval.ikev1.auth import (
    AuthenticationError,
    Phase1Material,
    SignatureAuthenticator,
    check_signature,
    peer_certificates,
    phase1_authenticator,
    utc_now,
)
from larval.ikev1.constants import CertEncoding, IkeAttr, IkeAuthMethod
from larval.ikev1.errors import IkeV1ConfigError
from larval.ikev1.isakmp import body_of
from larval.ikev1.message import IkeV1Message, decode_header
from larval.ikev1.payloads import (
    CertPayload,
    CrPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    Payload,
    SigPayload,
)
from larval.ikev1.session import IkeV1Session, State
from larval.trust import TrustStore

from .certs import KINDS, NOW, Ca, End, end, key, root, signing_config
from .test_session import NET_A, NET_B, A, B, Pair, child, config, events

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

METHODS = {
    "rsa": IkeAuthMethod.RSA_SIGNATURES,
    "p256": IkeAuthMethod.ECDSA_SHA256_P256,
    "p384": IkeAuthMethod.ECDSA_SHA384_P384,
    "p521": IkeAuthMethod.ECDSA_SHA512_P521,
}
SCHEMES = {"rsa": "rsa-sha256", "p256": "ecdsa-sha256", "p384": "ecdsa-sha384",
           "p521": "ecdsa-sha512"}  # fmt: skip


def ends(kind: str = "p256", kind_b: str | None = None) -> tuple[End, End]:
    return (end("192.0.2.1", "a.example.org", kind, number=1),
            end("192.0.2.2", "b.example.org", kind_b or kind, number=2))  # fmt: skip


def trust(*crls: x509.CertificateRevocationList) -> TrustStore:
    return TrustStore([root().cert], crls=crls)


def pair_of(
    init_cfg: IkeConfig,
    resp_cfg: IkeConfig,
    *,
    aggressive: bool = False,
    clock_r: Callable[[], datetime.datetime] = utc_now,
    auth_i: Callable[[IkeConfig], object] | None = None,
    auth_r: Callable[[IkeConfig], object] | None = None,
) -> Pair:
    """Two sessions in memory; the responder checks certificates at `clock_r`; `auth_i`
    and `auth_r` make an end's authenticator of its own from its configuration."""
    pair = Pair(init_cfg, resp_cfg, child(NET_B, NET_A), aggressive=aggressive)
    spis = iter(range(0x1000, 0x2000))
    pair.i = IkeV1Session(init_cfg, initiator=True, allocate_spi=lambda: next(spis),
                          aggressive=aggressive,
                          authenticator=auth_i(init_cfg) if auth_i else None)  # type: ignore[arg-type]  # fmt: skip
    pair.r = IkeV1Session(resp_cfg, initiator=False, allocate_spi=lambda: next(spis),
                          child_policy=lambda tsi, tsr: child(NET_B, NET_A), wall_clock=clock_r,
                          authenticator=auth_r(resp_cfg) if auth_r else None)  # type: ignore[arg-type]  # fmt: skip
    return pair


def run(pair: Pair) -> tuple[list[Event], list[Event]]:
    """Phase 1 and the Quick Mode after it (AM3 lands before QM1 goes)."""
    pair.i.initiate(child(NET_A, NET_B), pair.now)
    pair.flush()
    pair.advance(1.0)
    return list(events(pair.i)), list(events(pair.r))


def clear_messages(pair: Pair, way: str) -> list[IkeV1Message]:
    """The messages one way that went in the clear, decoded."""
    return [decode_message(d) for w, d in pair.wire if w == way and not d[19] & 1]


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_method_proves_both_ends_and_quick_mode_follows(kind: str, aggressive: bool) -> None:
    a, b = ends(kind)
    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()),
                   aggressive=aggressive)  # fmt: skip
    ev_i, ev_r = run(pair)
    # MM1 { SA(AUTHENTICATION_METHOD) } / AM1 { SA, ... }: the method of the initiator's key
    sa = decode_message(pair.wire[0][1]).first(SaPayload)
    assert sa is not None
    offered = {t.attribute(IkeAttr.AUTHENTICATION_METHOD) for t in sa.proposals[0].transforms}
    assert offered == {METHODS[kind]}
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    ci, cr = ev_i[1], ev_r[1]
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    issuer = describe_subject(root().cert)
    info_a = AuthInfo("pubkey", SCHEMES[kind], describe_subject(a.cert), issuer)
    info_b = AuthInfo("pubkey", SCHEMES[kind], describe_subject(b.cert), issuer)
    assert (pair.i.auth_local, pair.i.auth_remote) == (info_a, info_b)
    assert (pair.r.auth_local, pair.r.auth_remote) == (info_b, info_a)


def test_a_psk_session_says_so_once_phase1_is_through() -> None:
    psk = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    assert psk.i.auth_local is psk.r.auth_remote is None
    run(psk)
    infos = (psk.i.auth_local, psk.i.auth_remote, psk.r.auth_local, psk.r.auth_remote)
    assert infos == (AuthInfo("psk"),) * 4


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_an_ecdsa_peer_on_another_curve_is_taken_as_charon_takes_it(aggressive: bool) -> None:
    # The initiator's P-256 key offers method 9; the responder signs with its P-384 key
    # over HASH_R made with SHA-256, as the method says.
    a, b = ends("p256", "p384")
    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()),
                   aggressive=aggressive)  # fmt: skip
    ev_i, ev_r = run(pair)
    assert ChildSaUp in [type(e) for e in ev_i] and ChildSaUp in [type(e) for e in ev_r]
    assert pair.i.auth_remote is not None and pair.i.auth_remote.scheme == "ecdsa-sha256"


def test_an_rsa_offer_to_an_ecdsa_responder_is_no_proposal() -> None:
    a, b = ends("rsa", "p256")
    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()  # MM1 { SA(RSA_SIG) } -->  <-- INFORMATIONAL { N(NO_PROPOSAL_CHOSEN) }
    notify = decode_message(pair.wire[-1][1]).first(NotifyPayload)
    assert notify is not None and notify.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED


# -- CERT and CR -------------------------------------------------------------------------


def sent(caplog: pytest.LogCaptureFixture, message: str) -> str:
    """The payload names of the message as logged: "ID CERT SIG N"."""
    line = next(r.getMessage() for r in caplog.records if f"sending {message} [" in r.getMessage())
    return line.split("[ ", 1)[1].split(" ]", 1)[0]


@pytest.mark.parametrize(
    ("send_cert", "send_certreq", "proves", "certs"),
    [
        ("ifasked", True, True, "CERT"),  # each asked the other
        ("always", False, True, "CERT"),  # nobody asked, sent anyway
        ("ifasked", False, False, ""),  # nobody asked: no certificate to check
        ("never", True, False, ""),  # asked, never sent
    ],
)
def test_cert_and_cr_follow_send_cert_and_send_certreq(
    caplog: pytest.LogCaptureFixture, send_cert: str, send_certreq: bool, proves: bool,
    certs: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, "larval.ike")
    a, b = ends()
    options = {"send_cert": send_cert, "send_certreq": send_certreq}
    pair = pair_of(signing_config(a, b, trust(), **options),  # type: ignore[arg-type]
                   signing_config(b, a, trust(), **options))  # type: ignore[arg-type]  # fmt: skip
    ev_i, ev_r = run(pair)
    # MM3 { KE, Ni, [CR(X509, root DN),] NAT-D... } -->  <-- MM4 { KE, Nr, [CR,] ... }
    mm3 = clear_messages(pair, "i->r")[1]
    mm4 = clear_messages(pair, "r->i")[1]
    want = [CrPayload(CertEncoding.X509_SIGNATURE, root().cert.subject.public_bytes())]
    assert list(mm3.get(CrPayload)) == list(mm4.get(CrPayload)) == (want if send_certreq else [])
    # MM5 *{ IDii, [CERT,] SIG_I, N(INITIAL_CONTACT) } -->
    assert sent(caplog, "MM5") == " ".join(filter(None, ["ID", certs, "SIG", "N(INITIAL_CONTACT)"]))
    if proves:
        assert sent(caplog, "MM6") == " ".join(filter(None, ["ID", certs, "SIG"]))
        assert ChildSaUp in [type(e) for e in ev_i] and ChildSaUp in [type(e) for e in ev_r]
    else:
        # <-- INFORMATIONAL { N(AUTHENTICATION_FAILED) }: the responder has nothing to check
        assert_refused(pair, ev_i, ev_r, "no certificate")


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_a_chain_through_an_intermediate_goes_leaf_first(
    caplog: pytest.LogCaptureFixture, aggressive: bool
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    inter_key = key("p384", 9)
    inter = root().issue("larval intermediate", inter_key, ca=True)
    sub = Ca(inter, inter_key)
    a = dataclasses.replace(end("192.0.2.1", "a.example.org", "p256", sub, 1),
                            intermediates=(inter,))  # fmt: skip
    b = dataclasses.replace(end("192.0.2.2", "b.example.org", "p256", sub, 2),
                            intermediates=(inter,))  # fmt: skip
    options = {"send_cert": "always"}
    pair = pair_of(signing_config(a, b, trust(), **options),  # type: ignore[arg-type]
                   signing_config(b, a, trust(), **options),  # type: ignore[arg-type]
                   aggressive=aggressive)  # fmt: skip
    ev_i, ev_r = run(pair)
    assert ChildSaUp in [type(e) for e in ev_i] and ChildSaUp in [type(e) for e in ev_r]
    first = "AM3" if aggressive else "MM5"
    assert sent(caplog, first).startswith("CERT CERT SIG" if aggressive else "ID CERT CERT SIG")
    assert pair.r.auth_remote is not None and pair.r.auth_remote.issuer == describe_subject(inter)


# -- failures ----------------------------------------------------------------------------


def assert_refused(pair: Pair, ev_i: list[Event], ev_r: list[Event], reason: str) -> None:
    """Nothing is left: no Quick Mode ran, both ends are closed, and the refusal names
    `reason`."""
    assert ChildSaUp not in [type(e) for e in ev_i + ev_r]
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    downs = [e for e in ev_i + ev_r if isinstance(e, IkeSaDown)]
    assert any(reason in e.reason for e in downs), downs


class Tampering(SignatureAuthenticator):
    """Signs, then flips the last bit of its own signature."""

    def build(self, material: Phase1Material, id_b: bytes, initiator: bool,
              asked: bool) -> tuple[Payload, ...]:  # fmt: skip
        *certs, sig = super().build(material, id_b, initiator, asked)
        assert isinstance(sig, SigPayload)
        return (*certs, SigPayload(sig.data[:-1] + bytes([sig.data[-1] ^ 1])))


def tampering(config: IkeConfig) -> Tampering:
    assert config.local_auth is not None and config.remote_auth is not None
    return Tampering(config.local_auth, config.remote_auth)


# (what is wrong, the reason the refusal gives; either end may be the one at fault)
FAILURES = {
    "untrusted CA": "untrusted: no chain to a trusted CA",
    "revoked": "revoked (keyCompromise)",
    "ID not in the certificate": "identity c.example.org not in the certificate",
    "bad signature": "the signature does not verify",
    "scheme not allowed": "signature scheme ecdsa-sha256 not allowed",
    "expired": "expired on",
}


def failing_pair(what: str, bad: str, aggressive: bool) -> Pair:
    """A pair in which the `bad` end ("initiator" or "responder") does not prove itself
    to the other as `what` says."""
    a, b = ends()
    c_i, c_r = signing_config(a, b, trust()), signing_config(b, a, trust())
    good_cfg = c_r if bad == "initiator" else c_i
    bad_end = a if bad == "initiator" else b
    assert good_cfg.remote_auth is not None
    auth: dict[str, Callable[[IkeConfig], object]] = {}
    clock: Callable[[], datetime.datetime] = utc_now
    match what:
        case "untrusted CA":
            bad_end = end(str(bad_end.addr), bad_end.fqdn, "p256", root("another root"), 3)
        case "revoked":
            good_cfg = dataclasses.replace(
                good_cfg,
                remote_auth=dataclasses.replace(good_cfg.remote_auth,
                                                trust=trust(root().crl([bad_end.cert]))),
            )  # fmt: skip
        case "ID not in the certificate":
            claimed = (IdType.ID_FQDN, b"c.example.org")
            bad_end = dataclasses.replace(bad_end, fqdn="c.example.org")  # its cert: not c
            good_cfg = dataclasses.replace(good_cfg, remote_id=claimed)
        case "bad signature":
            auth[bad] = tampering
        case "scheme not allowed":
            good_cfg = dataclasses.replace(
                good_cfg,
                remote_auth=dataclasses.replace(good_cfg.remote_auth, schemes=("ecdsa-sha384",)),
            )
        case "expired":
            # The responder's clock is 60 days on: the initiator's 30-day certificate ran out.
            def clock() -> datetime.datetime:
                return NOW + datetime.timedelta(days=60)

    if bad == "initiator":
        c_i = signing_config(bad_end, b, trust())
        c_r = good_cfg
    else:
        c_i = good_cfg
        c_r = signing_config(bad_end, a, trust())
    return pair_of(c_i, c_r, aggressive=aggressive, clock_r=clock,
                   auth_i=auth.get("initiator"), auth_r=auth.get("responder"))  # fmt: skip


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
@pytest.mark.parametrize("what", list(FAILURES))
def test_an_initiator_that_does_not_prove_itself_is_refused(
    caplog: pytest.LogCaptureFixture, what: str, aggressive: bool
) -> None:
    pair = failing_pair(what, "initiator", aggressive)
    ev_i, ev_r = run(pair)
    assert_refused(pair, ev_i, ev_r, FAILURES[what])
    assert [type(e) for e in ev_r] == [IkeSaDown]
    if aggressive:
        # AM3 *{ CERT, SIG_I } -->  <-- INFORMATIONAL *{ HASH, D(ISAKMP) }: the initiator
        # took AM2 for the end of Phase 1, and the responder deletes what it holds.
        assert isinstance(ev_i[0], IkeSaUp)
        assert isinstance(ev_i[-1], IkeSaDown) and ev_i[-1].reason == "deleted by the peer"
    else:
        # MM5 *{ IDii, CERT, SIG_I } -->  <-- INFORMATIONAL *{ HASH, N(AUTHENTICATION_FAILED) },
        # protected: both ends hold the Phase 1 keys (charon ignores an unprotected one).
        refusal = decode_header(pair.wire[-1][1])
        assert refusal.exchange_type == ExchangeType.INFORMATIONAL and refusal.encrypted
        assert IkeSaUp not in [type(e) for e in ev_i]
        assert isinstance(ev_i[-1], IkeSaDown)
        assert ev_i[-1].reason == "peer refused: AUTHENTICATION_FAILED"
    # One warning, with the reason and the initiator's certificate's subject.
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert FAILURES[what] in warning and "CN=a.example.org" in warning


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
@pytest.mark.parametrize("what", [w for w in FAILURES if w != "expired"])
def test_a_responder_that_does_not_prove_itself_is_refused(
    caplog: pytest.LogCaptureFixture, what: str, aggressive: bool
) -> None:
    pair = failing_pair(what, "responder", aggressive)
    ev_i, ev_r = run(pair)
    assert_refused(pair, ev_i, ev_r, FAILURES[what])
    assert IkeSaUp not in [type(e) for e in ev_i]
    # Main Mode: the responder took MM5 and sent MM6, so its ISAKMP SA was up until the
    # initiator's INFORMATIONAL *{ HASH, D(ISAKMP) } deleted it. Aggressive Mode: the
    # responder, awaiting AM3, takes INFORMATIONAL { N(AUTHENTICATION_FAILED) }.
    down = [e for e in ev_r if isinstance(e, IkeSaDown)]
    assert len(down) == 1 and down[0].by_peer
    expected = "deleted by the peer" if not aggressive else "AUTHENTICATION_FAILED"
    assert expected in down[0].reason
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert FAILURES[what] in warning and "CN=b.example.org" in warning


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_an_initiator_other_than_the_one_configured_is_refused(
    caplog: pytest.LogCaptureFixture, aggressive: bool
) -> None:
    a, b = ends()
    expected = (IdType.ID_FQDN, b"z.example.org")
    c_i, c_r = signing_config(a, b, trust()), signing_config(b, a, trust(), remote_id=expected)
    pair = pair_of(c_i, c_r, aggressive=aggressive)
    ev_i, ev_r = run(pair)
    # MM5 *{ IDii(a.example.org), ... } -->  (AM1 { ..., IDii, ... } -->)
    # <-- INFORMATIONAL [*]{ N(INVALID_ID_INFORMATION) }: before any certificate is looked
    # at; protected in Main Mode, where both ends hold the Phase 1 keys by MM5
    if aggressive:
        notify = decode_message(pair.wire[-1][1]).first(NotifyPayload)
        assert notify is not None and notify.notify_type == NotifyType.INVALID_ID_INFORMATION
    else:
        assert decode_header(pair.wire[-1][1]).encrypted
        downs = [e for e in ev_i if isinstance(e, IkeSaDown)]
        assert [e.reason for e in downs] == ["peer refused: INVALID_ID_INFORMATION"]
    assert_refused(pair, ev_i, ev_r, "IDii a.example.org is not the initiator configured")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "a.example.org" in warning


def test_a_responder_other_than_the_one_configured_is_refused() -> None:
    a, b = ends()
    expected = (IdType.ID_FQDN, b"z.example.org")
    pair = pair_of(signing_config(a, b, trust(), remote_id=expected), signing_config(b, a, trust()))
    ev_i, ev_r = run(pair)
    # <-- MM6 *{ IDir(b.example.org), CERT, SIG_R }   INFORMATIONAL *{ HASH, D(ISAKMP) } -->
    assert_refused(pair, ev_i, ev_r, "IDir b.example.org is not the responder configured")
    assert [e.reason for e in ev_r if isinstance(e, IkeSaDown)] == ["deleted by the peer"]


def test_the_wall_clock_is_the_one_given() -> None:
    a, b = ends()
    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()),
                   clock_r=lambda: NOW - datetime.timedelta(days=1))  # fmt: skip
    ev_i, ev_r = run(pair)
    assert_refused(pair, ev_i, ev_r, "not yet valid until")  # a day before it was issued


def test_one_side_psk_and_the_other_certificates_is_refused_for_ikev1() -> None:
    a, b = ends()
    config = signing_config(a, b, trust())
    for half in (dataclasses.replace(config, local_auth=None),
                 dataclasses.replace(config, remote_auth=None)):  # fmt: skip
        with pytest.raises(IkeV1ConfigError, match="IKEv1 proves both ends with one method"):
            IkeV1Session(half, initiator=True, allocate_spi=lambda: 1)


def test_an_ed25519_key_has_no_ikev1_method() -> None:
    a, b = ends()
    config = signing_config(a, b, trust())
    assert config.local_auth is not None
    ed = dataclasses.replace(config.local_auth.cert.key, key=pki.generate_key("ed25519"))
    cert = dataclasses.replace(config.local_auth.cert, key=ed)
    local = dataclasses.replace(config.local_auth, cert=cert)
    with pytest.raises(IkeV1ConfigError, match="Ed25519 key has no IKEv1 signature method"):
        phase1_authenticator(dataclasses.replace(config, local_auth=local))


def test_the_key_stays_out_of_repr() -> None:
    a, b = ends("rsa")
    auth = phase1_authenticator(signing_config(a, b, trust()))
    assert repr(auth) == "<SignatureAuthenticator RSA_SIGNATURES>"


# -- the signatures, byte for byte --------------------------------------------------------


class Recording(SignatureAuthenticator):
    """Records g^xy as SKEYID is made, and the SIG payload of the peer as it arrives."""

    def __init__(self, config: IkeConfig) -> None:
        assert config.local_auth is not None and config.remote_auth is not None
        super().__init__(config.local_auth, config.remote_auth)
        self.g_xy = self.sig = b""

    def skeyid(self, prf: Ikev1Prf, nonce_i: bytes, nonce_r: bytes, g_xy: bytes) -> bytes:
        self.g_xy = g_xy
        return super().skeyid(prf, nonce_i, nonce_r, g_xy)

    def verify(self, material: Phase1Material, peer_id: IdPayload, id_b: bytes,
               message: IkeV1Message, initiator: bool) -> AuthInfo:  # fmt: skip
        sig = message.first(SigPayload)
        self.sig = sig.data if sig is not None else b""
        return super().verify(material, peer_id, id_b, message, initiator)


class Transcript:
    """What the wire and the recorders hold of one Main Mode, and the hashes of RFC 2409
    §5 made from it with nothing of larval's."""

    def __init__(self, pair: Pair, rec_i: Recording, rec_r: Recording, hash_name: str) -> None:
        out = clear_messages(pair, "i->r")
        back = clear_messages(pair, "r->i")
        mm1, mm3, mm4 = out[0], out[1], back[1]
        self.sai_b = body_of(mm1, mm1.payloads[0].payload_type)  # SA, as offered
        self.cky_i, self.cky_r = mm4.cookie_i, mm4.cookie_r
        ke_i, ni = mm3.first(KePayload), mm3.first(NoncePayload)
        ke_r, nr = mm4.first(KePayload), mm4.first(NoncePayload)
        assert ke_i and ni and ke_r and nr and rec_i.g_xy == rec_r.g_xy != b""
        self.g_xi, self.g_xr, self.ni, self.nr = ke_i.data, ke_r.data, ni.data, nr.data
        self.hash_name = hash_name
        self.skeyid = self.prf(self.ni + self.nr, rec_i.g_xy)  # §5.1: prf(Ni_b | Nr_b, g^xy)

    def prf(self, key: bytes, data: bytes, hash_name: str | None = None) -> bytes:
        return hmac.new(key, data, hash_name or self.hash_name).digest()

    def hash_i(self, idii_b: bytes, hash_name: str | None = None) -> bytes:
        data = self.g_xi + self.g_xr + self.cky_i + self.cky_r + self.sai_b + idii_b
        return self.prf(self.skeyid, data, hash_name)

    def hash_r(self, idir_b: bytes, hash_name: str | None = None) -> bytes:
        data = self.g_xr + self.g_xi + self.cky_r + self.cky_i + self.sai_b + idir_b
        return self.prf(self.skeyid, data, hash_name)


def fqdn_id_b(fqdn: str) -> bytes:
    """IDii_b / IDir_b: ID_FQDN, protocol 0, port 0, the name (RFC 2407 §4.6.2)."""
    return bytes([2, 0, 0, 0]) + fqdn.encode()


def pkcs1_v15_raw(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over `digest` as it is, no DigestInfo: EM = 00 01 FF.. 00 H,
    s = EM^d mod n (RFC 8017 §8.2.1, §9.2 without step 2)."""
    numbers = key.private_numbers()
    size = key.key_size // 8
    em = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
    return pow(int.from_bytes(em, "big"), numbers.d, numbers.public_numbers.n).to_bytes(size, "big")


def test_rsa_sig_i_and_sig_r_byte_for_byte() -> None:
    a, b = ends("rsa")
    recorders: dict[str, Recording] = {}

    def recording(role: str) -> Callable[[IkeConfig], Recording]:
        return lambda cfg: recorders.setdefault(role, Recording(cfg))

    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()),
                   auth_i=recording("i"), auth_r=recording("r"))  # fmt: skip
    run(pair)
    assert pair.i.state is State.ESTABLISHED
    t = Transcript(pair, recorders["i"], recorders["r"], "sha256")
    assert isinstance(a.key, rsa.RSAPrivateKey) and isinstance(b.key, rsa.RSAPrivateKey)
    # SIG_I, as the responder received it in MM5; SIG_R, as the initiator did in MM6.
    assert recorders["r"].sig == pkcs1_v15_raw(a.key, t.hash_i(fqdn_id_b(a.fqdn)))
    assert recorders["i"].sig == pkcs1_v15_raw(b.key, t.hash_r(fqdn_id_b(b.fqdn)))


@pytest.mark.parametrize(
    ("kind", "hash_name", "size"),
    [("p256", "sha256", 32), ("p384", "sha384", 48), ("p521", "sha512", 66)],
)
def test_ecdsa_sig_is_r_and_s_over_hash_made_with_the_methods_hash(
    kind: str, hash_name: str, size: int
) -> None:  # fmt: skip
    # Phase 1 negotiates SHA-256; methods 10 and 11 make HASH_I with SHA-384 and SHA-512.
    a, b = ends(kind)
    recorders: dict[str, Recording] = {}
    pair = pair_of(signing_config(a, b, trust()), signing_config(b, a, trust()),
                   auth_i=lambda cfg: recorders.setdefault("i", Recording(cfg)),
                   auth_r=lambda cfg: recorders.setdefault("r", Recording(cfg)))  # fmt: skip
    run(pair)
    t = Transcript(pair, recorders["i"], recorders["r"], "sha256")
    sig = recorders["r"].sig
    assert len(sig) == 2 * size  # r | s, each the size of the curve (RFC 4754 §7)
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    public = a.cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
    digest = t.hash_i(fqdn_id_b(a.fqdn), hash_name)
    public.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(algorithm[hash_name])))
    assert hashlib.new(hash_name).digest_size == len(digest)


@pytest.mark.parametrize(("pattern", "proves"), [("*.example.org", True), ("*.other.org", False)])
def test_a_wildcard_peer_identity_is_matched_as_configured(pattern: str, proves: bool) -> None:
    a, b = ends()
    wildcard = IdentityMatch.parse(pattern)
    c_r = dataclasses.replace(signing_config(b, a, trust()), remote_id=None,
                              remote_id_match=wildcard)  # fmt: skip
    pair = pair_of(signing_config(a, b, trust()), c_r)
    ev_i, ev_r = run(pair)
    if proves:
        assert ChildSaUp in [type(e) for e in ev_r]
        assert pair.r.auth_remote is not None and "a.example.org" in pair.r.auth_remote.subject
    else:
        assert_refused(pair, ev_i, ev_r, "is not the initiator configured")


# -- what the peer sends, at random --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([4, 1, 7, 200]), st.binary(max_size=300)), max_size=4))
def test_any_cert_payloads_give_certificates_or_a_reason(certs: list[tuple[int, bytes]]) -> None:
    message = IkeV1Message(bytes(8), bytes(8), ExchangeType.IDENTITY_PROTECTION, 0,
                           tuple(CertPayload(CertEncoding(e), d) for e, d in certs))  # fmt: skip
    try:
        leaf, rest = peer_certificates(message)
    except AuthenticationError as exc:
        assert exc.reason == "no certificate" or "is no X.509 certificate" in exc.reason
    else:
        assert isinstance(leaf, x509.Certificate) and len(rest) < len(certs)


def test_a_cert_of_an_unknown_x509_version_is_a_reason() -> None:
    # cryptography raises InvalidVersion, no ValueError, for a version field of 5.
    good = end("192.0.2.1", "a.example.org", "rsa").cert.public_bytes(Encoding.DER)
    der = good.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    assert der != good
    message = IkeV1Message(bytes(8), bytes(8), ExchangeType.IDENTITY_PROTECTION, 0,
                           (CertPayload(CertEncoding.X509_SIGNATURE, der),))  # fmt: skip
    with pytest.raises(AuthenticationError, match=r"CERT payload 1 is no X\.509 certificate"):
        peer_certificates(message)


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(list(METHODS.values())),
    # The sizes each key signs in (r | s of P-256 and P-521, RSA-2048), and any other.
    signature=st.one_of([st.binary(min_size=n, max_size=n) for n in (64, 132, 256)])
    | st.binary(max_size=140),
)
def test_any_signature_is_checked_to_a_reason_never_an_exception(
    method: IkeAuthMethod, signature: bytes
) -> None:
    # HASH as the method makes it: of its own hash's size (the negotiated one's for RSA).
    digest = bytes({10: 48, 11: 64}.get(method, 32))
    for kind in ("rsa", "p256", "p521"):
        assert check_signature(key(kind, 1).public_key(), method, digest, signature) != ""


@pytest.mark.parametrize(("kind", "word"), [("rsa", "rsa/pss"), ("p256", "ecdsa-sha384")])
def test_local_schemes_ikev1_cannot_sign_with_are_refused(kind: str, word: str) -> None:
    a, b = ends(kind)
    config = signing_config(a, b, trust())
    assert config.local_auth is not None
    local = dataclasses.replace(config.local_auth, schemes=parse_auth(word)[1])
    with pytest.raises(IkeV1ConfigError, match="not what IKEv1 signs with"):
        IkeV1Session(dataclasses.replace(config, local_auth=local), initiator=True,
                     allocate_spi=lambda: 1)  # fmt: skip


def test_a_psk_offer_to_a_signing_responder_is_no_proposal() -> None:
    a, b = ends()
    pair = pair_of(config(A, B), signing_config(b, a, trust()))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()  # MM1 { SA(PRE_SHARED_KEY) } -->  <-- INFORMATIONAL { N(NO_PROPOSAL_CHOSEN) }
    notify = decode_message(pair.wire[-1][1]).first(NotifyPayload)
    assert notify is not None and notify.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_a_psk_responder_other_than_the_one_configured_leaves_no_isakmp_sa(
    aggressive: bool,
) -> None:
    # The pre-shared key's refusals go the same way: the initiator refuses IDir.
    wrong = dataclasses.replace(config(A, B), remote_id=(IdType.ID_FQDN, b"z.example.org"))
    pair = Pair(wrong, config(B, A), child(NET_B, NET_A), aggressive=aggressive)
    ev_i, ev_r = run(pair)
    assert_refused(pair, ev_i, ev_r, "IDir 192.0.2.2 is not the responder configured")
    assert IkeSaUp not in [type(e) for e in ev_i]
    # Main Mode: <-- MM6   INFORMATIONAL *{ HASH, D(ISAKMP) } -->
    # Aggressive Mode: <-- AM2   INFORMATIONAL { N(AUTHENTICATION_FAILED) } -->
    (down,) = [e for e in ev_r if isinstance(e, IkeSaDown)]
    assert down.by_peer
    assert down.reason == ("peer refused: AUTHENTICATION_FAILED" if aggressive
                           else "deleted by the peer")  # fmt: skip
