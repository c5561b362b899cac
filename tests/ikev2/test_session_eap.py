"""Two IKE sessions in memory, a road warrior that proves itself by EAP and a gateway
that proves itself with a certificate made by `larval.pki` (RFC 7296 §2.16): EAP-MSCHAPv2
and EAP-MD5, with and without EAP-Identity, ``auth = "eap"``; a wrong password, an
unknown user, another user than the one configured: AUTHENTICATION_FAILED, one WARNING
line with the identity and the reason and never the password, nothing installed; a
client that stops mid-EAP leaves a half-open IKE SA that times out."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
from typing import Any

import pytest

from larval import pki
from larval.credentials import CertificateWithKey, PrivateKeyFile
from larval.crypto.ike_auth import psk_auth
from larval.crypto.prf import Prf
from larval.eap import EapPacket
from larval.ike.auth_config import AuthInfo, EapAuth, LocalAuth, RemoteAuth, parse_auth
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaUp, IkeSaDown
from larval.ike.identity import IdType
from larval.ikev2.exchanges import EapIkeAuthResponder
from larval.ikev2.payloads import AuthPayload, EapPayload, IdPayload, NotifyPayload
from larval.ikev2.session import IkeSession, State
from larval.trust import TrustStore
from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child, config

PASSWORD = "carol-Password-1"
DAVE = "dave-Password-12"
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
GATEWAY_ID = "vpn.example.org"


def _gateway_cert() -> tuple[CertificateWithKey, TrustStore]:
    ca_key = pki.generate_key("ecdsa", 256)
    ca = pki.make_certificate(
        pki.CertRequest(pki.parse_dn("O=larval tests, CN=Test CA"), ca=True),
        ca_key.public_key(), ca_key, now=NOW - datetime.timedelta(days=1),
    )  # fmt: skip
    key = pki.generate_key("ecdsa", 256)
    request = pki.CertRequest(pki.parse_dn("O=larval tests, CN=vpn.example.org"),
                              sans=[pki.parse_san(GATEWAY_ID)])  # fmt: skip
    cert = pki.make_certificate(request, key.public_key(), ca_key, ca,
                                now=NOW - datetime.timedelta(days=1))  # fmt: skip
    return CertificateWithKey("gw.pem", cert, PrivateKeyFile("gw.key", key)), TrustStore([ca])


GW_CERT, GW_TRUST = _gateway_cert()


def client_cfg(method: str = "eap-mschapv2", user: str = "carol",
               password: str = PASSWORD) -> IkeConfig:  # fmt: skip
    base = config(A, B)
    return dataclasses.replace(
        base,
        remote_id=(IdType.ID_FQDN, GATEWAY_ID.encode()),
        remote_auth=RemoteAuth(GW_TRUST, parse_auth("pubkey")[1]),
        local_eap=EapAuth(method, user, {user: password}),  # type: ignore[arg-type]
    )


def gateway_cfg(method: str = "eap-mschapv2", eap_id: str | None = "%any",
                users: dict[str, str] | None = None) -> IkeConfig:  # fmt: skip
    base = config(B, A)
    return dataclasses.replace(
        base,
        local_id=(IdType.ID_FQDN, GATEWAY_ID.encode()),
        remote_id=None,
        local_auth=LocalAuth(GW_CERT, send_cert="always"),
        remote_eap=EapAuth(method, eap_id, {"carol": PASSWORD} if users is None else users),  # type: ignore[arg-type]
    )


def eap_pair(init: IkeConfig, resp: IkeConfig, **options: Any) -> Pair:
    pair = Pair(init, resp, child(NET_B, NET_A))
    spis = itertools.count(0x5000)
    pair.i = IkeSession(init, initiator=True, allocate_spi=lambda: next(spis),
                        wall_clock=lambda: NOW, **options)  # fmt: skip
    pair.r = IkeSession(resp, initiator=False, allocate_spi=lambda: next(spis),
                        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                        wall_clock=lambda: NOW, **options)  # fmt: skip
    return pair


def run(pair: Pair) -> tuple[list[Any], list[Any]]:
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    return list(Pair.events(pair.i)), list(Pair.events(pair.r))


# -- success --------------------------------------------------------------------------------


def test_mschapv2_with_eap_identity_brings_the_child_sa_up_with_both_msk_auths_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = eap_pair(client_cfg(), gateway_cfg())
    # IKE_SA_INIT -->  <--
    # IKE_AUTH { SK{IDi, CERTREQ, SA, TSi, TSr} } -->  <-- { SK{IDr, CERT, AUTH, EAP(Identity)} }
    # { SK{EAP(Identity "carol")} } -->  <-- { SK{EAP(MSCHAPv2 Challenge)} }
    # { SK{EAP(MSCHAPv2 Response)} } -->  <-- { SK{EAP(MSCHAPv2 Success S=)} }
    # { SK{EAP(MSCHAPv2 Success)} } -->  <-- { SK{EAP(Success)} }
    # { SK{AUTH(MSK)} } -->  <-- { SK{AUTH(MSK), SA, TSi, TSr} }
    with caplog.at_level(logging.INFO, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert len(pair.wire) == 2 + 2 * 5
    up_i = next(e for e in events_i if isinstance(e, ChildSaUp))
    up_r = next(e for e in events_r if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in and up_i.keys_in == up_r.keys_out
    assert pair.r.auth_remote == AuthInfo("eap-mschapv2", identity="carol")
    assert pair.i.auth_local == AuthInfo("eap-mschapv2", identity="carol")
    assert pair.i.auth_remote is not None and pair.i.auth_remote.method == "pubkey"
    assert pair.r.auth_local is not None and pair.r.auth_local.subject.endswith(GATEWAY_ID)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert PASSWORD not in caplog.text
    # The logs name the rounds as strongSwan does.
    sent = [r.getMessage() for r in caplog.records if "sending IKE_AUTH" in r.getMessage()]
    assert sent[0].endswith("request 1 [ IDi CERTREQ SA TSi TSr ]")
    assert "[ IDr CERT AUTH EAP ]" in sent[1]
    assert "[ AUTH ]" in sent[-2] and "[ AUTH SA TSi TSr ]" in sent[-1]


def test_both_final_auths_are_keyed_with_the_msk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final AUTH of each end is prf(prf(MSK, pad), octets): a gateway whose AUTH is
    keyed with anything else is refused by the client."""
    seen: list[bytes | None] = []
    original = psk_auth

    def recording(prf: Prf, key: bytes, octets: bytes) -> bytes:
        seen.append(key)
        return original(prf, key, octets)

    monkeypatch.setattr("larval.ikev2.auth.psk_auth", recording)
    pair = eap_pair(client_cfg(), gateway_cfg())
    run(pair)
    assert pair.r.state is State.ESTABLISHED
    # The MSCHAPv2 MSK: 16-byte receive key, 16-byte send key, 32 zero bytes.
    keys = [k for k in seen if k is not None and len(k) == 64]
    # Made once by each end (the client's, the gateway's), each checked by the other.
    assert len(keys) == 2 and keys[0][32:] == bytes(32) and keys[0] == keys[1]


def test_a_gateway_whose_final_auth_is_not_from_the_msk_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import larval.ikev2.exchanges.eap_auth as module

    def wrong(prf: Prf, msk: bytes | None, sk_p: bytes, octets: bytes) -> AuthPayload:
        return AuthPayload(2, psk_auth(prf, sk_p, octets))  # type: ignore[arg-type]

    real = module.eap_auth
    calls = itertools.count()

    def gateway_wrong(prf: Prf, msk: bytes | None, sk_p: bytes, octets: bytes) -> AuthPayload:
        # The client's is made first, the gateway's second.
        return real(prf, msk, sk_p, octets) if next(calls) == 0 else wrong(prf, msk, sk_p, octets)

    monkeypatch.setattr(module, "eap_auth", gateway_wrong)
    pair = eap_pair(client_cfg(), gateway_cfg())
    with caplog.at_level(logging.WARNING, logger="larval"):
        events_i, _ = run(pair)
    assert pair.i.state is State.CLOSED
    assert not [e for e in events_i if isinstance(e, ChildSaUp)]
    (down,) = [e for e in events_i if isinstance(e, IkeSaDown)]
    assert down.reason == (
        "authentication of the responder failed: AUTH after EAP does not verify with the MSK"
    )


@pytest.mark.parametrize("eap_id", ["%any", None, "carol@example.org"])
def test_md5_keys_both_final_auths_with_sk_p(eap_id: str | None) -> None:
    # eap_id None: the EAP identity is the IKE identity (IDi), as strongSwan's default.
    user = "carol@example.org"
    client = dataclasses.replace(client_cfg("eap-md5", user),
                                 local_id=(IdType.ID_RFC822_ADDR, user.encode()))  # fmt: skip
    pair = eap_pair(client, gateway_cfg("eap-md5", eap_id, {user: PASSWORD}))
    _, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert [type(e) for e in events_r if isinstance(e, ChildSaUp)] == [ChildSaUp]
    assert pair.r.auth_remote == AuthInfo("eap-md5", identity=user)
    # With EAP-Identity one round more: Identity, MD5-Challenge, AUTH after the first.
    assert len(pair.wire) == 2 + 2 * (4 if eap_id == "%any" else 3)


def test_eap_lets_the_server_pick_mschapv2_first_and_md5_when_the_peer_asks() -> None:
    pair = eap_pair(client_cfg("eap"), gateway_cfg("eap"))
    run(pair)
    assert pair.r.auth_remote == AuthInfo("eap-mschapv2", identity="carol")
    pair = eap_pair(client_cfg("eap-md5"), gateway_cfg("eap"))
    run(pair)
    assert pair.r.state is State.ESTABLISHED
    assert pair.r.auth_remote == AuthInfo("eap-md5", identity="carol")
    # A client of auth = "eap" runs whatever method the gateway asks for.
    pair = eap_pair(client_cfg("eap"), gateway_cfg("eap-md5"))
    run(pair)
    assert pair.i.state is State.ESTABLISHED
    assert pair.i.auth_local == AuthInfo("eap-md5", identity="carol")


def test_a_psk_gateway_with_an_eap_client() -> None:
    client = dataclasses.replace(client_cfg(), remote_auth=None, remote_id=None)
    gateway = dataclasses.replace(gateway_cfg(), local_auth=None, local_id=config(B, A).local_id)
    pair = eap_pair(client, gateway)
    run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert pair.i.auth_remote == AuthInfo("psk")


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "user", "password", "users", "eap_id", "reason"),
    [
        ("eap-mschapv2", "carol", "wrong-password-9", None, "%any",
         "EAP-MSCHAPv2: wrong password for user 'carol'"),
        ("eap-mschapv2", "mallory", "mallory-pass-123", None, "%any",
         "EAP-MSCHAPv2: no secret for user 'mallory'"),
        ("eap-md5", "carol", "wrong-password-9", None, "%any",
         "EAP-MD5: wrong password for user 'carol'"),
        ("eap-md5", "mallory", "mallory-pass-123", None, "%any",
         "EAP-MD5: no secret for user 'mallory'"),
        # Another user, who knows his own password, where carol is configured.
        ("eap-mschapv2", "dave", DAVE, {"carol": PASSWORD, "dave": DAVE}, "carol",
         "eap-mschapv2: user 'dave' authenticated, but the EAP identity expected is 'carol'"),
    ],
)  # fmt: skip
def test_a_failed_eap_is_authentication_failed_with_one_warning_and_no_password(
    method: str, user: str, password: str, users: dict[str, str] | None, eap_id: str,
    reason: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    pair = eap_pair(client_cfg(method, user, password), gateway_cfg(method, eap_id, users))
    # ... { SK{EAP(Response)} } -->  <-- { SK{EAP(Failure), N(AUTHENTICATION_FAILED)} }
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    assert not [e for e in events_i + events_r if isinstance(e, ChildSaUp)]
    assert pair.r.auth_remote is None and pair.i.auth_local is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"authentication of the initiator failed: {reason}" in warning
    assert repr(user) in warning
    (down_r,) = [e for e in events_r if isinstance(e, IkeSaDown)]
    assert down_r.reason == f"authentication of the initiator failed: {reason}"
    (down_i,) = [e for e in events_i if isinstance(e, IkeSaDown)]
    assert down_i.reason.startswith("IKE_AUTH refused: AUTHENTICATION_FAILED, EAP-")
    for secret in {password, PASSWORD, *(users or {}).values()}:
        assert secret not in caplog.text
        assert secret not in repr(pair.i._prover) + repr(pair.r._verifier)
        assert secret not in repr(pair.i.config) + repr(pair.r.config)


def test_the_failure_answer_is_eap_failure_and_authentication_failed() -> None:
    pair = eap_pair(client_cfg(password="wrong-password-9"), gateway_cfg())
    seen: list[tuple[type, ...]] = []
    original = pair.i._tasks.response  # type: ignore[attr-defined]

    def spy(message_id: int, message: Any, now: float) -> Any:
        seen.append(tuple(type(p) for p in message.payloads))
        if message.first(EapPayload) is not None:
            seen.append((EapPacket.decode(message.first(EapPayload).data).code.name,))  # type: ignore[arg-type]
        return original(message_id, message, now)

    pair.i._tasks.response = spy  # type: ignore[attr-defined,method-assign]
    run(pair)
    assert seen[-2] == (EapPayload, NotifyPayload)
    assert seen[-1] == ("FAILURE",)


def test_an_auth_in_place_of_eap_is_refused() -> None:
    # A PSK initiator at a gateway that wants EAP: its AUTH is refused.
    client = dataclasses.replace(client_cfg(), local_eap=None)
    pair = eap_pair(client, gateway_cfg())
    _, events_r = run(pair)
    assert pair.r.state is State.CLOSED
    (down,) = [e for e in events_r if isinstance(e, IkeSaDown)]
    assert "AUTH of method SHARED_KEY_MIC where this connection authenticates the " \
        "initiator by EAP" in down.reason  # fmt: skip


def test_a_client_that_stops_mid_eap_leaves_a_half_open_sa_that_times_out() -> None:
    pair = eap_pair(client_cfg(), gateway_cfg())
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT, and the first IKE_AUTH round; then the client goes silent.
    for _ in range(2):
        for data, _ in pair.i.datagrams_to_send(0.0):
            pair.r.receive_datagram(data, (str(A), 500), 0.0)
        for data, _ in pair.r.datagrams_to_send(0.0):
            pair.i.receive_datagram(data, (str(B), 500), 0.0)
    assert pair.r.state is State.INIT_DONE
    assert isinstance(pair.r._responding, EapIkeAuthResponder)  # type: ignore[attr-defined]
    deadline = pair.r.get_timer()
    assert deadline is not None and deadline <= pair.r.config.half_open_timeout
    pair.r.handle_timer(deadline)
    assert pair.r.state is State.CLOSED
    (down,) = [e for e in Pair.events(pair.r) if isinstance(e, IkeSaDown)]
    assert not [e for e in Pair.events(pair.r) if isinstance(e, ChildSaUp)]
    assert "half-open" in down.reason or "not established" in down.reason
    assert pair.r.auth_remote is None


def test_the_first_request_carries_no_auth_and_the_gateways_answer_its_id() -> None:
    pair = eap_pair(client_cfg(), gateway_cfg())
    requests: list[Any] = []
    original = pair.r._take  # type: ignore[attr-defined]

    def spy(task_of: Any, data: bytes, message: Any, addr: Any, now: float) -> bool:
        requests.append(message)
        return bool(original(task_of, data, message, addr, now))

    pair.r._take = spy  # type: ignore[attr-defined,method-assign]
    run(pair)
    first = requests[1]
    assert first.first(AuthPayload) is None and first.first(IdPayload) is not None
    assert [m.first(AuthPayload) is not None for m in requests[2:]] == [False] * 3 + [True]
