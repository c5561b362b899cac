"""XAuth's authentication methods in Phase 1's SA payload (draft-beaulieu-ike-xauth §7.2,
draft-ietf-ipsra-hybrid-auth §3.2) and its XAUTH_TYPE (§6.2), in memory.

What charon (``phase1.c`` ``calc_auth_method``) and macOS's Cisco IPsec client offer as
road warriors, and larval offers and takes: a group PSK then XAuth, XAuthInitPreShared
(65001); certificates on both ends then XAuth, XAuthInitRSA (65005); the gateway's
certificate and XAuth alone, HybridInitRSA (64221). The Resp numbers (65002, 65006,
64222) mean a gateway started Phase 1 towards its road warrior: refused, named.

    MM1 { SA(..., AUTH = 65005, ...), VID }  -->   <-- MM2 { SA(AUTH = 65005) }
    ... MM5 *{ IDii, CERT, SIG_I }  -->   <-- MM6 *{ IDir, CERT, SIG_R }
    <-- TRANSACTION *{ HASH, CFG_REQUEST(X_TYPE? X_USER X_PWD) }
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging

import pytest

from larval.ike.auth_config import AuthInfo, XauthAuth
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaUp, IkeSaUp
from larval.ikev1.auth import (
    HybridAuthenticator,
    PskAuthenticator,
    XauthPskAuthenticator,
    XauthSignatureAuthenticator,
    phase1_authenticator,
)
from larval.ikev1.constants import IkeAuthMethod
from larval.ikev1.errors import IkeV1ConfigError
from larval.ikev1.modecfg import AttributePayload, CfgType, ModeCfgAttr, ModeCfgAttribute
from larval.ikev1.session import IkeV1Session, State
from larval.trust import TrustStore

from .certs import end, root, signing_config
from .test_remote_access import (
    ANY,
    PASSWORD,
    VIP,
    A,
    RoadWarrior,
    _hybrid_configs,
    client_config,
    gateway_config,
)
from .test_session import NET_B, B, child, events

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
M = IkeAuthMethod


def _xauth_rsa_configs(kind: str = "rsa") -> tuple[IkeConfig, IkeConfig]:
    """Both ends with certificates; the gateway then asks carol's password (charon's
    ``remote { auth = pubkey }``, ``remote-xauth { auth = xauth }``)."""
    client_end = end(str(A), "carol.example.org", kind, number=5)
    gateway_end = end(str(B), "vpn.example.org", kind, number=6)
    trust = TrustStore([root().cert])
    gateway = dataclasses.replace(
        signing_config(gateway_end, client_end, trust),
        remote_xauth=XauthAuth("%any", {"carol": PASSWORD}),
    )
    client = dataclasses.replace(
        signing_config(client_end, gateway_end, trust),
        local_xauth=XauthAuth("carol", {"carol": PASSWORD}),
        vips=(ipaddress.ip_address("0.0.0.0"),),
    )
    return client, gateway


def test_each_configuration_offers_the_method_charon_offers_for_it() -> None:
    client, gateway = _xauth_rsa_configs()
    hybrid_client, hybrid_gateway = _hybrid_configs()
    plain = dataclasses.replace(gateway_config(), remote_xauth=None)
    cases = [
        (plain, PskAuthenticator, M.PRE_SHARED_KEY),
        (client_config(), XauthPskAuthenticator, M.XAUTH_INIT_PSK),
        (gateway_config(), XauthPskAuthenticator, M.XAUTH_INIT_PSK),
        (client, XauthSignatureAuthenticator, M.XAUTH_INIT_RSA),
        (gateway, XauthSignatureAuthenticator, M.XAUTH_INIT_RSA),
        (hybrid_client, HybridAuthenticator, M.HYBRID_INIT_RSA),
        (hybrid_gateway, HybridAuthenticator, M.HYBRID_INIT_RSA),
    ]
    for config, kind, method in cases:
        auth = phase1_authenticator(config)
        assert type(auth) is kind and auth.method == method
        # Each takes its own method only: the Resp numbers and plain ones are refused.
        others = {m for m in M if m != method}
        assert auth.accepts(method) and not any(auth.accepts(m) for m in others)


def test_certificates_then_xauth_is_xauth_init_rsa_end_to_end() -> None:
    client, gateway = _xauth_rsa_configs()
    rw = RoadWarrior(client, gateway)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.choice is not None and rw.g.choice.auth_method == M.XAUTH_INIT_RSA
    assert rw.c.virtual_ips == (VIP,)
    assert [type(e) for e in events(rw.c)] == [IkeSaUp, ChildSaUp]
    assert rw.c.auth_remote is not None and rw.c.auth_remote.method == "pubkey"
    assert rw.g.auth_remote == AuthInfo("xauth", identity="carol")


def test_certificates_with_xauth_need_an_rsa_key() -> None:
    client, _ = _xauth_rsa_configs("p256")
    with pytest.raises(IkeV1ConfigError, match="certificates with XAuth are RSA's"):
        phase1_authenticator(client)


@pytest.mark.parametrize(
    ("offered", "name"),
    [(M.XAUTH_RESP_PSK, "XAUTH_RESP_PSK"), (M.PRE_SHARED_KEY, "PRE_SHARED_KEY")],
)
def test_a_method_the_gateway_does_not_take_is_refused_by_name(
    caplog: pytest.LogCaptureFixture, offered: IkeAuthMethod, name: str
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c = IkeV1Session(
        client_config(), initiator=True, allocate_spi=lambda: 0x3000,
        authenticator=XauthPskAuthenticator(client_config().psk, offered),
    )  # fmt: skip
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.state is State.CLOSED and rw.c.state is State.CLOSED
    assert f"authentication by {name}, this end takes XAUTH_INIT_PSK" in caplog.text


def _gateway_asks_type(rw: RoadWarrior, xauth_type: int) -> None:
    """The gateway's XAuth request carries XAUTH_TYPE (TV form) before X_USER, X_PWD."""
    access = rw.g._remote_access

    def phase1_done(now: float) -> None:
        request = AttributePayload(CfgType.CFG_REQUEST, (
            ModeCfgAttribute(ModeCfgAttr.XAUTH_TYPE, xauth_type),
            ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_NAME),
            ModeCfgAttribute(ModeCfgAttr.XAUTH_USER_PASSWORD),
        ))  # fmt: skip
        access._open(request, access._xauth_reply)

    access.phase1_done = phase1_done  # type: ignore[method-assign]


def test_the_client_takes_a_generic_xauth_type() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    _gateway_asks_type(rw, 0)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.virtual_ips == (VIP,) and rw.c.state is State.ESTABLISHED


def test_the_client_refuses_another_xauth_type_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    rw = RoadWarrior(client_config(), gateway_config())
    _gateway_asks_type(rw, 2)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.state is State.CLOSED and rw.g.state is State.CLOSED
    assert "XAuth refused: XAuth type OTP (2): only generic XAuth" in caplog.text
    assert PASSWORD not in caplog.text
    assert not [e for e in events(rw.c) if isinstance(e, IkeSaUp)]


def test_the_gateway_refuses_a_reply_of_another_xauth_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "larval.ike")
    rw = RoadWarrior(client_config(), gateway_config())
    access = rw.c._remote_access
    answer = access.answer

    def with_type(attr: AttributePayload, now: float) -> AttributePayload | None:
        reply = answer(attr, now)
        if reply is not None and reply.cfg_type == CfgType.CFG_REPLY:
            typed = (ModeCfgAttribute(ModeCfgAttr.XAUTH_TYPE, 1), *reply.attributes)
            reply = AttributePayload(reply.cfg_type, typed, reply.identifier)
        return reply

    access.answer = with_type  # type: ignore[method-assign]
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.state is State.CLOSED and rw.g.virtual_ips == ()
    assert (
        "XAuth authentication of 'carol' failed: XAuth type RADIUS-CHAP (1): only generic"
        in caplog.text
    )
