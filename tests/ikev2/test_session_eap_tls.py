"""Two IKE sessions in memory with EAP-TLS (RFC 5216 in RFC 7296 §2.16): a road warrior
with its certificate, a gateway with its own, both made by `larval.pki`. The CHILD_SA
comes up with both final AUTHs keyed by the TLS MSK; ``auth = "eap"`` on the gateway
picks TLS where it has the certificates, MSCHAPv2 when the client Naks; a client
certificate of another CA, a revoked one, one without the EAP identity, and a gateway
certificate without the gateway's identity end in AUTHENTICATION_FAILED with one WARNING
naming the identity and the reason, nothing installed."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

import pytest
from cryptography import x509

from larval import pki
from larval.credentials import CertificateWithKey, PrivateKeyFile
from larval.crypto.prf import Prf
from larval.ike.auth_config import AuthInfo, EapAuth, EapTlsAuth
from larval.ike.events import ChildSaUp, IkeSaDown
from larval.ike.identity import IdType
from larval.ikev2.exchanges import EapIkeAuthResponder
from larval.ikev2.session import State
from larval.trust import TrustStore
from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child
from tests.ikev2.test_session_eap import (
    GATEWAY_ID,
    GW_CERT,
    GW_TRUST,
    NOW,
    PASSWORD,
    client_cfg,
    eap_pair,
    gateway_cfg,
    run,
)

DAVE = "dave@example.org"


def _ca(name: str) -> tuple[x509.Certificate, Any]:
    key = pki.generate_key("ecdsa", 256)
    cert = pki.make_certificate(
        pki.CertRequest(pki.parse_dn(f"O=larval tests, CN={name}"), ca=True),
        key.public_key(), key, now=NOW - datetime.timedelta(days=1),
    )  # fmt: skip
    return cert, key


def _client_cert(name: str, ca: tuple[x509.Certificate, Any]) -> CertificateWithKey:
    key = pki.generate_key("ecdsa", 256)
    request = pki.CertRequest(pki.parse_dn(f"O=larval tests, CN={name}"),
                              sans=[pki.parse_san(name)])  # fmt: skip
    cert = pki.make_certificate(request, key.public_key(), ca[1], ca[0],
                                now=NOW - datetime.timedelta(days=1))  # fmt: skip
    return CertificateWithKey("dave.pem", cert, PrivateKeyFile("dave.key", key))


USERS_CA = _ca("Users CA")
OTHER_CA = _ca("Other CA")
DAVE_CERT = _client_cert(DAVE, USERS_CA)
DAVE_SUBJECT = "O=larval tests, CN=dave@example.org"
USERS_CA_SUBJECT = "O=larval tests, CN=Users CA"


def tls_client(
    cert: CertificateWithKey = DAVE_CERT, method: str = "eap-tls", server_id: str = GATEWAY_ID
) -> Any:
    tls = EapTlsAuth(cert, trust=GW_TRUST, server_id=(IdType.ID_FQDN, server_id.encode()))
    return dataclasses.replace(
        client_cfg(),
        local_id=(IdType.ID_RFC822_ADDR, DAVE.encode()),
        local_eap=EapAuth(method, DAVE, {}, tls=tls),  # type: ignore[arg-type]
    )


def tls_gateway(method: str = "eap-tls", trust: TrustStore | None = None,
                passwords: dict[str, str] | None = None) -> Any:  # fmt: skip
    store = trust or TrustStore([USERS_CA[0]])
    tls = EapTlsAuth(GW_CERT, trust=store, anchors=(USERS_CA[0],))
    return dataclasses.replace(
        gateway_cfg(),
        remote_eap=EapAuth(method, "%any", passwords or {}, tls=tls),  # type: ignore[arg-type]
    )


def test_eap_tls_brings_the_child_sa_up_with_both_auths_keyed_by_the_tls_msk(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keys: list[bytes] = []
    from larval.ikev2 import auth as auth_module

    original = auth_module.psk_auth

    def recording(prf: Prf, key: bytes, octets: bytes) -> bytes:
        keys.append(key)
        return original(prf, key, octets)

    monkeypatch.setattr(auth_module, "psk_auth", recording)
    pair = eap_pair(tls_client(), tls_gateway())
    # IKE_AUTH { SK{IDi, CERTREQ, SA, TSi, TSr} } -->  <-- { SK{IDr, CERT, AUTH, EAP(Identity)} }
    # { EAP(Identity dave) } -->  <-- { EAP(TLS Start) }
    # { EAP(ClientHello) } -->  <-- { EAP(ServerHello .. ServerHelloDone) }
    # { EAP(Certificate .. Finished) } -->  <-- { EAP(ChangeCipherSpec, Finished) }
    # { EAP(TLS ACK) } -->  <-- { EAP(Success) }
    # { AUTH(MSK) } -->  <-- { AUTH(MSK), SA, TSi, TSr }
    with caplog.at_level(logging.INFO, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    up_i = next(e for e in events_i if isinstance(e, ChildSaUp))
    up_r = next(e for e in events_r if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in
    # The gateway's status names the client's TLS certificate, as it names an IKE one.
    assert pair.r.auth_remote == AuthInfo("eap-tls", subject=DAVE_SUBJECT,
                                          issuer=USERS_CA_SUBJECT, identity=DAVE)  # fmt: skip
    assert pair.i.auth_local == AuthInfo("eap-tls", identity=DAVE)
    # Both final AUTHs made with one 64-byte key, the MSK, not SK_p.
    msks = {k for k in keys if len(k) == 64}
    assert len(msks) == 1 and len(keys) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auth_eap_on_the_gateway_picks_tls_where_it_has_the_certificates() -> None:
    pair = eap_pair(tls_client(method="eap"), tls_gateway("eap", passwords={"carol": PASSWORD}))
    run(pair)
    assert pair.r.state is State.ESTABLISHED
    assert pair.r.auth_remote == AuthInfo("eap-tls", subject=DAVE_SUBJECT,
                                          issuer=USERS_CA_SUBJECT, identity=DAVE)  # fmt: skip


def test_auth_eap_falls_back_to_mschapv2_when_the_client_naks_tls() -> None:
    # A client of MSCHAPv2 only: its Nak of TLS names MSCHAPv2, which the gateway runs.
    pair = eap_pair(client_cfg(), tls_gateway("eap", passwords={"carol": PASSWORD}))
    run(pair)
    assert pair.r.state is State.ESTABLISHED
    assert pair.r.auth_remote == AuthInfo("eap-mschapv2", identity="carol")


def _revoked() -> tuple[CertificateWithKey, TrustStore]:
    cert = _client_cert(DAVE, USERS_CA)
    crl = pki.make_crl(USERS_CA[0], USERS_CA[1], [cert.cert], "key-compromise", now=NOW)
    return cert, TrustStore([USERS_CA[0]], crls=[crl])


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other CA", "the peer's certificate refused: O=larval tests, CN=dave@example.org: "
                     "untrusted: no chain to a trusted CA"),
        ("revoked", "revoked (keyCompromise)"),
        ("not dave", "identity dave@example.org not in the certificate"),
    ],
)  # fmt: skip
def test_a_client_certificate_the_gateway_does_not_trust_is_authentication_failed(
    case: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    if case == "other CA":
        client, gateway = tls_client(_client_cert(DAVE, OTHER_CA)), tls_gateway()
    elif case == "revoked":
        cert, store = _revoked()
        client, gateway = tls_client(cert), tls_gateway(trust=store)
    else:
        client, gateway = tls_client(_client_cert("eve@example.org", USERS_CA)), tls_gateway()
    pair = eap_pair(client, gateway)
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert not [e for e in events_i + events_r if isinstance(e, ChildSaUp)]
    assert pair.r.auth_remote is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "authentication of the initiator failed" in warning and reason in warning
    assert repr(DAVE) in warning
    (down_i,) = [e for e in events_i if isinstance(e, IkeSaDown)]
    assert down_i.reason.startswith("IKE_AUTH refused: AUTHENTICATION_FAILED, EAP-TLS")


def test_the_client_refuses_a_gateway_tls_certificate_without_the_gateway_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = eap_pair(tls_client(server_id="other.example.org"), tls_gateway())
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is not State.ESTABLISHED
    assert not [e for e in events_i + events_r if isinstance(e, ChildSaUp)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    wanted = "the server's certificate refused: O=larval tests, CN=vpn.example.org: identity "
    assert any(wanted + "other.example.org not in the certificate" in w for w in warnings)


def test_a_client_that_stops_mid_handshake_leaves_a_half_open_sa_that_times_out() -> None:
    pair = eap_pair(tls_client(), tls_gateway())
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT, IKE_AUTH's first round, EAP-Identity, the ClientHello; then silence,
    # the server's flight unanswered.
    for _ in range(4):
        for data, _ in pair.i.datagrams_to_send(0.0):
            pair.r.receive_datagram(data, (str(A), 500), 0.0)
        for data, _ in pair.r.datagrams_to_send(0.0):
            pair.i.receive_datagram(data, (str(B), 500), 0.0)
    assert pair.r.state is State.INIT_DONE
    responding = pair.r._responding  # type: ignore[attr-defined]
    assert isinstance(responding, EapIkeAuthResponder)
    assert responding._eap is not None and responding._eap.method == "eap-tls"
    assert not responding._eap.done
    deadline = pair.r.get_timer()
    assert deadline is not None and deadline <= pair.r.config.half_open_timeout
    pair.r.handle_timer(deadline)
    assert pair.r.state is State.CLOSED
    events = list(Pair.events(pair.r))
    (down,) = [e for e in events if isinstance(e, IkeSaDown)]
    assert not [e for e in events if isinstance(e, ChildSaUp)]
    assert "half-open" in down.reason or "not established" in down.reason
    assert pair.r.auth_remote is None
