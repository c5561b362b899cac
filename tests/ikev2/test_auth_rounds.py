"""Two IKE sessions in memory authenticating the road warrior in two rounds (RFC 4739):
its certificate, then EAP-MSCHAPv2 (or EAP-MD5), against a gateway of one round with a
certificate made by `larval.pki`. A round missing, one too many, AUTH where EAP is due, a
round's identity that is not the one configured, a wrong password in the EAP round:
AUTHENTICATION_FAILED, one WARNING line naming the round, nothing installed."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
from typing import Any

import pytest

from larval import pki
from larval.credentials import CertificateWithKey, PrivateKeyFile
from larval.ike.auth_config import AuthInfo, AuthRound, EapAuth, LocalAuth, RemoteAuth, parse_auth
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaUp, IkeSaDown
from larval.ike.identity import IdentityMatch, IdType
from larval.ikev2.constants import ExchangeType, NotifyType
from larval.ikev2.exchanges import RoundsIkeAuth, RoundsIkeAuthResponder
from larval.ikev2.payloads import AuthPayload, IdPayload, NotifyPayload, Payload
from larval.ikev2.session import IkeSession, State
from larval.trust import TrustStore
from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child, config

PASSWORD = "carol-Password-1"
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
GATEWAY_ID = "vpn.example.org"
CLIENT_ID = "carol@example.org"


def _certs() -> tuple[CertificateWithKey, CertificateWithKey, TrustStore]:
    """A CA, the gateway's certificate and carol's."""
    before = NOW - datetime.timedelta(days=1)
    ca_key = pki.generate_key("ecdsa", 256)
    ca_request = pki.CertRequest(pki.parse_dn("O=larval tests, CN=Test CA"), ca=True)
    ca = pki.make_certificate(ca_request, ca_key.public_key(), ca_key, now=before)
    made = []
    for name in (GATEWAY_ID, CLIENT_ID):
        key = pki.generate_key("ecdsa", 256)
        request = pki.CertRequest(pki.parse_dn(f"O=larval tests, CN={name}"),
                                  sans=[pki.parse_san(name)])  # fmt: skip
        cert = pki.make_certificate(request, key.public_key(), ca_key, ca, now=before)
        made.append(CertificateWithKey(f"{name}.pem", cert, PrivateKeyFile(f"{name}.key", key)))
    return made[0], made[1], TrustStore([ca])


GW_CERT, CLIENT_CERT, TRUST = _certs()


def client_cfg(method: str = "eap-mschapv2", password: str = PASSWORD, rounds: int = 2,
               round_id: tuple[IdType, bytes] | None = None) -> IkeConfig:  # fmt: skip
    eap = EapAuth(method, "carol", {"carol": password})  # type: ignore[arg-type]
    both = (AuthRound("pubkey"), AuthRound(method, round_id, eap=eap))  # type: ignore[arg-type]
    return dataclasses.replace(
        config(A, B),
        local_id=(IdType.ID_RFC822_ADDR, CLIENT_ID.encode()),
        local_auth=LocalAuth(CLIENT_CERT, send_cert="always"),
        remote_id=(IdType.ID_FQDN, GATEWAY_ID.encode()),
        remote_auth=RemoteAuth(TRUST, parse_auth("pubkey")[1]),
        local_rounds=both[:rounds] if rounds > 1 else (),
    )


def gateway_cfg(method: str = "eap-mschapv2", rounds: int = 2, eap_id: str = "%any",
                round_id: str | None = None) -> IkeConfig:  # fmt: skip
    eap = EapAuth(method, eap_id, {"carol": PASSWORD})  # type: ignore[arg-type]
    match = IdentityMatch.parse(round_id) if round_id else None
    both = (AuthRound("pubkey"), AuthRound(method, id_match=match, eap=eap))  # type: ignore[arg-type]
    return dataclasses.replace(
        config(B, A),
        local_id=(IdType.ID_FQDN, GATEWAY_ID.encode()),
        local_auth=LocalAuth(GW_CERT, send_cert="always"),
        remote_id=None,
        remote_id_match=IdentityMatch.parse("*@example.org"),
        remote_auth=RemoteAuth(TRUST, parse_auth("pubkey")[1]),
        remote_rounds=both[:rounds] if rounds > 1 else (),
    )


def rounds_pair(init: IkeConfig, resp: IkeConfig) -> Pair:
    pair = Pair(init, resp, child(NET_B, NET_A))
    spis = itertools.count(0x6000)
    pair.i = IkeSession(init, initiator=True, allocate_spi=lambda: next(spis),
                        wall_clock=lambda: NOW)  # fmt: skip
    pair.r = IkeSession(resp, initiator=False, allocate_spi=lambda: next(spis),
                        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                        wall_clock=lambda: NOW)  # fmt: skip
    return pair


def run(pair: Pair) -> tuple[list[Any], list[Any]]:
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()
    return list(Pair.events(pair.i)), list(Pair.events(pair.r))


def _sent(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage().rsplit("[", 1)[1] for r in caplog.records if what in r.getMessage()]


def _nothing_up(events: list[Any]) -> None:
    assert not [e for e in events if isinstance(e, ChildSaUp)]


# -- success --------------------------------------------------------------------------------


def test_a_certificate_then_eap_mschapv2_brings_the_child_sa_up_with_both_rounds_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = rounds_pair(client_cfg(), gateway_cfg())
    # IKE_SA_INIT -->  <-- { SA, KE, Nr, N(NAT_D), N(MULTIPLE_AUTH_SUPPORTED), CERTREQ }
    # IKE_AUTH { SK{IDi, CERT, CERTREQ, AUTH, N(MULTIPLE_AUTH_SUPPORTED),
    #               N(ANOTHER_AUTH_FOLLOWS), SA, TSi, TSr} } -->  <-- { SK{IDr, CERT, AUTH} }
    # { SK{IDi} } -->  <-- { SK{EAP(Identity)} }              round 2
    # { SK{EAP(Identity "carol")} } -->  <-- { SK{EAP(MSCHAPv2 Challenge)} }
    # { SK{EAP(MSCHAPv2 Response)} } -->  <-- { SK{EAP(MSCHAPv2 Success S=)} }
    # { SK{EAP(MSCHAPv2 Success)} } -->  <-- { SK{EAP(Success)} }
    # { SK{AUTH(MSK)} } -->  <-- { SK{AUTH(MSK), SA, TSi, TSr} }
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert len(pair.wire) == 2 + 2 * 6
    up_i = next(e for e in events_i if isinstance(e, ChildSaUp))
    up_r = next(e for e in events_r if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in and up_i.keys_in == up_r.keys_out
    # Each round recorded, in order, on both ends.
    assert pair.r.auth_remote is not None and pair.i.auth_local is not None
    assert pair.r.auth_remote == pair.i.auth_local
    assert pair.r.auth_remote.method == "pubkey"
    assert pair.r.auth_remote.subject.endswith(CLIENT_ID)
    assert pair.r.auth_remote.rounds == (AuthInfo("eap-mschapv2", identity="carol"),)
    assert pair.i.auth_remote is not None and pair.i.auth_remote.rounds == ()
    assert pair.i.auth_remote.subject.endswith(GATEWAY_ID)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert PASSWORD not in caplog.text
    sent_i = _sent(caplog, "sending IKE_AUTH request")
    sent_r = _sent(caplog, "sending IKE_AUTH response")
    assert sent_i[0] == (" IDi CERT CERTREQ AUTH N(MULTIPLE_AUTH_SUPPORTED) "
                         "N(ANOTHER_AUTH_FOLLOWS) SA TSi TSr ]")  # fmt: skip
    assert sent_r[0] == " IDr CERT AUTH ]"
    assert sent_i[1] == " IDi ]" and sent_r[1] == " EAP ]"
    assert sent_i[-1] == " AUTH ]" and sent_r[-1] == " AUTH SA TSi TSr ]"
    init_response = _sent(caplog, "sending IKE_SA_INIT response")
    assert "N(MULTIPLE_AUTH_SUPPORTED)" in init_response[0]


def test_eap_md5_as_the_second_round_with_its_own_identity() -> None:
    # Round 2 proves "carol" (ID_FQDN here), its EAP identity the IKE one (eap_id None).
    client = client_cfg("eap-md5", round_id=(IdType.ID_FQDN, b"carol"))
    pair = rounds_pair(client, gateway_cfg("eap-md5", eap_id=None, round_id="carol"))  # type: ignore[arg-type]
    _, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert [type(e) for e in events_r if isinstance(e, ChildSaUp)] == [ChildSaUp]
    assert pair.r.auth_remote is not None
    assert pair.r.auth_remote.rounds == (AuthInfo("eap-md5", identity="carol"),)


# -- refusals -------------------------------------------------------------------------------


def _refused(pair: Pair, caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    """Run; both ends closed, nothing up; the WARNING of the end that refused and the
    reason each end closed with."""
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    _nothing_up(events_i + events_r)
    assert pair.r.auth_remote is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert PASSWORD not in caplog.text
    (down_r,) = [e.reason for e in events_r if isinstance(e, IkeSaDown)]
    return warning, down_r


def test_a_client_that_skips_the_eap_round_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    pair = rounds_pair(client_cfg(rounds=1), gateway_cfg())
    warning, down_r = _refused(pair, caplog)
    reason = ("authentication of the initiator failed: it ends after round 1 of 2: round 2, "
              "eap-mschapv2, is missing")  # fmt: skip
    assert reason in warning and down_r == reason


def test_a_client_of_two_rounds_does_not_start_them_with_a_gateway_that_takes_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = rounds_pair(client_cfg(), gateway_cfg(rounds=1))
    with caplog.at_level(logging.DEBUG, logger="larval"):
        events_i, _ = run(pair)
    assert pair.i.state is State.CLOSED
    (down,) = [e.reason for e in events_i if isinstance(e, IkeSaDown)]
    assert down == ("this end authenticates in 2 rounds and the responder does not announce "
                    "MULTIPLE_AUTH_SUPPORTED (RFC 4739)")  # fmt: skip
    assert not _sent(caplog, "sending IKE_AUTH")


def test_a_gateway_of_one_round_refuses_another_announced(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gateway that announces RFC 4739 but whose connection takes one round.
    monkeypatch.setattr("larval.ikev2.exchanges.ike_sa_init.multiple_auth_notify",
                        lambda sa: [NotifyPayload(0, NotifyType.MULTIPLE_AUTH_SUPPORTED)])  # type: ignore[arg-type]  # fmt: skip
    pair = rounds_pair(client_cfg(), gateway_cfg(rounds=1))
    warning, down_r = _refused(pair, caplog)
    assert down_r == ("authentication of the initiator failed: it announces another "
                      "authentication round (ANOTHER_AUTH_FOLLOWS), and this connection "
                      "takes one")  # fmt: skip
    assert down_r in warning


def test_auth_where_the_eap_round_is_due_is_refused(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = RoundsIkeAuth.build

    def with_auth(self: RoundsIkeAuth, now: float) -> tuple[Payload, ...]:
        payloads = build(self, now)
        if len(payloads) == 1 and isinstance(payloads[0], IdPayload):  # round 2's IDi
            return (*payloads, AuthPayload(2, bytes(32)))  # type: ignore[arg-type]
        return payloads

    monkeypatch.setattr(RoundsIkeAuth, "build", with_auth)
    _, down_r = _refused(rounds_pair(client_cfg(), gateway_cfg()), caplog)
    assert down_r == ("authentication of the initiator failed: AUTH in round 2, which is "
                      "eap-mschapv2")  # fmt: skip


def test_a_round_that_claims_another_identity_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    client = client_cfg(round_id=(IdType.ID_FQDN, b"mallory"))
    _, down_r = _refused(rounds_pair(client, gateway_cfg(round_id="carol")), caplog)
    assert down_r == ("authentication of the initiator failed: identity mallory in round 2 "
                      "is not the one configured")  # fmt: skip


def test_a_wrong_password_in_the_eap_round(caplog: pytest.LogCaptureFixture) -> None:
    pair = rounds_pair(client_cfg(password="wrong-password-9"), gateway_cfg())
    warning, down_r = _refused(pair, caplog)
    assert down_r == ("authentication of the initiator failed: EAP-MSCHAPv2: wrong password "
                      "for user 'carol'")  # fmt: skip
    assert "'carol'" in warning and "wrong-password-9" not in caplog.text


def test_the_first_round_still_proves_the_certificate(caplog: pytest.LogCaptureFixture) -> None:
    # A client whose certificate round is a PSK where the gateway wants a certificate.
    client = dataclasses.replace(client_cfg(), local_auth=None, psk=b"k" * 32)
    _, down_r = _refused(rounds_pair(client, gateway_cfg()), caplog)
    assert down_r == ("authentication of the initiator failed: AUTH is of method "
                      "SHARED_KEY_MIC, not a signature")  # fmt: skip


def test_the_responder_task_is_the_rounds_one_only_with_rounds() -> None:
    from larval.ikev2.exchanges import ike_auth_responder

    pair = rounds_pair(client_cfg(), gateway_cfg())
    assert isinstance(ike_auth_responder(pair.r), RoundsIkeAuthResponder)
    pair = rounds_pair(client_cfg(rounds=1), gateway_cfg(rounds=1))
    assert not isinstance(ike_auth_responder(pair.r), RoundsIkeAuthResponder)


# -- EAP-MSCHAPv2 retries -------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_gateway_that_offers_a_retry_hears_the_client_decline_it(
    rounds: int, caplog: pytest.LogCaptureFixture
) -> None:
    # ... { SK{EAP(MSCHAPv2 Response)} } -->  <-- { SK{EAP(MSCHAPv2 Failure R=1 C=)} }
    # { SK{EAP(MSCHAPv2 Failure Response)} } -->  <-- { SK{EAP(Failure), N(AUTH_FAILED)} }
    client = client_cfg(password="wrong-password-9", rounds=rounds)
    gateway = gateway_cfg(rounds=rounds)
    if rounds == 1:  # EAP alone, the gateway's one round
        eap = EapAuth("eap-mschapv2", "%any", {"carol": PASSWORD}, retries=2)
        mine = EapAuth("eap-mschapv2", "carol", {"carol": "wrong-password-9"})
        client = dataclasses.replace(client, local_auth=None, local_eap=mine)
        gateway = dataclasses.replace(gateway, remote_auth=None, remote_eap=eap)
    else:
        second = dataclasses.replace(gateway.remote_rounds[1], eap=EapAuth(
            "eap-mschapv2", "%any", {"carol": PASSWORD}, retries=2))  # fmt: skip
        gateway = dataclasses.replace(gateway, remote_rounds=(gateway.remote_rounds[0], second))
    pair = rounds_pair(client, gateway)
    warning, down_r = _refused(pair, caplog)
    assert down_r == ("authentication of the initiator failed: EAP-MSCHAPv2: wrong password "
                      "for user 'carol'; the peer did not retry")  # fmt: skip
    assert down_r in warning
    assert "R=1" in caplog.text  # the client's reason: the server refused, retry allowed
    assert "wrong-password-9" not in caplog.text
    sent_i = _sent(caplog, "sending IKE_AUTH request")
    assert sent_i[-1] == " EAP ]", "the client acknowledged the Failure Request"


def test_the_method_after_eap_identity_255_takes_identifier_0() -> None:
    """RFC 3748 §4.1: Identifiers wrap; an EAP-Identity Request of 255 is followed by 0."""
    from larval.eap import EapPacket, EapType
    from larval.ikev2.eap_conversation import EapServerConversation

    auth = EapAuth("eap-mschapv2", "%any", {"carol": PASSWORD})
    server = EapServerConversation(auth, "carol", lambda n: b"\xff" * n)
    identity = EapPacket.decode(server.start())
    assert identity.identifier == 255
    answer = EapPacket.response(255, EapType.IDENTITY, b"carol").encode()
    challenge = EapPacket.decode(server.receive(answer))
    assert (challenge.type, challenge.identifier) == (EapType.MSCHAPV2, 0)


def test_a_client_that_gives_up_in_ike_auth_closes_the_gateways_half_open_sa(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # { SK{IDi, ...} } -->  <-- { SK{IDr, CERT, AUTH, EAP} }   the client refuses the gateway
    # INFORMATIONAL { SK{N(AUTHENTICATION_FAILED)} } -->  <-- { SK{} }   (RFC 7296 §2.21.2)
    client = dataclasses.replace(client_cfg(), remote_id=(IdType.ID_FQDN, b"other.example.org"))
    pair = rounds_pair(client, gateway_cfg())
    with caplog.at_level(logging.INFO, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    _nothing_up(events_i + events_r)
    (down_r,) = [e.reason for e in events_r if isinstance(e, IkeSaDown)]
    assert down_r == ("authentication of the initiator failed: it gave up in IKE_AUTH "
                      "(INFORMATIONAL with AUTHENTICATION_FAILED)")  # fmt: skip
    assert _sent(caplog, "sending INFORMATIONAL response") == [" ]"]


def test_an_informational_before_the_ike_sa_is_up_is_refused_otherwise() -> None:
    from larval.ikev2.errors import IkeExchangeError
    from larval.ikev2.exchanges.informational import UnauthenticatedInformationalResponder
    from larval.ikev2.message import IkeMessage

    pair = rounds_pair(client_cfg(), gateway_cfg())
    task = UnauthenticatedInformationalResponder(pair.r)
    empty = IkeMessage(b"\x01" * 8, b"\x02" * 8, ExchangeType.INFORMATIONAL,
                       is_initiator=True, is_response=False, message_id=4)  # fmt: skip
    with pytest.raises(IkeExchangeError, match="without N\\(AUTHENTICATION_FAILED\\)"):
        task.process(empty, 0.0)


# -- EAP-only authentication (RFC 5998) ---------------------------------------------------


@pytest.mark.parametrize("offered", [False, True])
def test_a_client_refuses_a_gateway_that_authenticates_by_eap_only(
    offered: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that leaves out its AUTH (EAP-only, RFC 5998) with EAP-MSCHAPv2, which does
    not authenticate the gateway (§4): the client refuses before it answers the method."""
    from larval.ikev2.exchanges.eap_auth import EapIkeAuthResponder
    from tests.ikev2.test_session_eap import client_cfg as eap_client
    from tests.ikev2.test_session_eap import gateway_cfg as eap_gateway

    first_round = EapIkeAuthResponder._first_round

    def without_auth(self: EapIkeAuthResponder, message: Any) -> tuple[Payload, ...]:
        return tuple(p for p in first_round(self, message) if not isinstance(p, AuthPayload))

    monkeypatch.setattr(EapIkeAuthResponder, "_first_round", without_auth)
    client = eap_client()
    if offered:  # it would take EAP-only, but not with a method that is not mutual
        client = dataclasses.replace(client, remote_auth=None,
                                     remote_eap=EapAuth("eap-mschapv2", None, {}))  # fmt: skip
    pair = rounds_pair(client, eap_gateway())
    with caplog.at_level(logging.INFO, logger="larval"):
        events_i, events_r = run(pair)
    assert pair.i.state is State.CLOSED and pair.r.state is State.CLOSED
    _nothing_up(events_i + events_r)
    (down_i,) = [e.reason for e in events_i if isinstance(e, IkeSaDown)]
    assert down_i == ("authentication of the responder failed: it sends no AUTH (EAP-only "
                      "authentication, RFC 5998), and eap-mschapv2 is not a mutual "
                      "method")  # fmt: skip
    # No EAP Response left the client: the INFORMATIONAL { N(AUTHENTICATION_FAILED) } did.
    assert len(_sent(caplog, "sending IKE_AUTH request")) == 1
    assert _sent(caplog, "sending INFORMATIONAL request") == [" N(AUTHENTICATION_FAILED) ]"]


def test_rounds_of_the_responder_are_refused_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """larval proves itself in one round as a responder and checks one as an initiator:
    a connection asking otherwise fails with the reason, nothing installed."""
    # The same connection, the other way round: the gateway (initiator here) would have
    # the client prove two rounds; the client (responder) would prove two.
    gateway_first = rounds_pair(gateway_cfg(), client_cfg())
    with caplog.at_level(logging.INFO, logger="larval"):
        events_i, _ = run(gateway_first)
    assert gateway_first.i.state is State.CLOSED
    (down,) = [e.reason for e in events_i if isinstance(e, IkeSaDown)]
    assert down == ("the connection asks the responder for 2 rounds; larval as the initiator "
                    "checks one")  # fmt: skip
    # A client of one round against a responder that would prove itself twice.
    one = dataclasses.replace(client_cfg(rounds=1), remote_id=None)
    twice = dataclasses.replace(gateway_cfg(rounds=1), local_rounds=client_cfg().local_rounds)
    pair = rounds_pair(one, twice)
    _, events_r = run(pair)
    assert pair.r.state is State.CLOSED
    (down,) = [e.reason for e in events_r if isinstance(e, IkeSaDown)]
    assert down == ("this end would prove itself in 2 rounds; larval as the responder proves "
                    "itself in one")  # fmt: skip


def _eap_only_pair() -> Pair:
    """A client that lets the gateway prove itself by EAP (``remote`` of EAP) and a gateway
    that does (``local`` of EAP), EAP-MSCHAPv2 both."""
    from tests.ikev2.test_session_eap import client_cfg as eap_client
    from tests.ikev2.test_session_eap import gateway_cfg as eap_gateway

    by_eap = EapAuth("eap-mschapv2", None, {})
    client = dataclasses.replace(eap_client(), remote_auth=None, remote_eap=by_eap)
    gateway = dataclasses.replace(eap_gateway(), local_auth=None, local_eap=by_eap)
    return rounds_pair(client, gateway)


def test_eap_only_with_a_mutual_method_proves_the_gateway_by_the_msk_alone(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 5998 with a method counted as mutual: EAP-MSCHAPv2 stands in for EAP-TLS, the
    one larval counts (it is not one: see the refusals below)."""
    from larval.eap import EapType

    monkeypatch.setattr("larval.ikev2.eap_conversation.MUTUAL_METHODS",
                        frozenset({EapType.MSCHAPV2}))  # fmt: skip
    pair = _eap_only_pair()
    # IKE_AUTH { SK{IDi, SA, TSi, TSr, N(EAP_ONLY_AUTHENTICATION)} } -->  <-- { SK{IDr, EAP} }
    # ... EAP ...  { SK{AUTH(MSK)} } -->  <-- { SK{AUTH(MSK), SA, TSi, TSr} }
    with caplog.at_level(logging.INFO, logger="larval"):
        _, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert [type(e) for e in events_r if isinstance(e, ChildSaUp)] == [ChildSaUp]
    assert pair.i.auth_remote == AuthInfo("eap-mschapv2") == pair.r.auth_local
    assert pair.r.auth_remote == AuthInfo("eap-mschapv2", identity="carol")
    sent_i = _sent(caplog, "sending IKE_AUTH request")
    sent_r = _sent(caplog, "sending IKE_AUTH response")
    assert sent_i[0] == " IDi SA TSi TSr N(EAP_ONLY_AUTHENTICATION) ]"
    assert sent_r[0] == " IDr EAP ]" and sent_r[-1] == " AUTH SA TSi TSr ]"


def test_eap_only_with_mschapv2_is_refused_by_the_gateway(caplog: pytest.LogCaptureFixture) -> None:
    warning, down_r = _refused(_eap_only_pair(), caplog)
    assert down_r == ("this end would authenticate by EAP only (RFC 5998) with eap-mschapv2, "
                      "which is not a mutual method")  # fmt: skip
    assert down_r in warning


def test_an_eap_only_gateway_refuses_a_client_that_does_not_announce_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from larval.eap import EapType

    monkeypatch.setattr("larval.ikev2.eap_conversation.MUTUAL_METHODS",
                        frozenset({EapType.MSCHAPV2}))  # fmt: skip
    pair = _eap_only_pair()
    client = dataclasses.replace(pair.i.config, remote_eap=None)
    _, down_r = _refused(rounds_pair(client, pair.r.config), caplog)
    assert down_r == ("this end authenticates by EAP only (RFC 5998), and the initiator does "
                      "not announce EAP_ONLY_AUTHENTICATION")  # fmt: skip
