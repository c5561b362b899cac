"""EAP-only authentication (RFC 5998) from the daemon's configuration, in strongSwan's
words: ``auth = "eap-tls"`` on both sides of both ends, each end's ``certs`` its TLS
certificate. A gateway and a client made from such files bring the CHILD_SA up in
memory with real EAP-TLS, the gateway sending no AUTH of its own; methods that are not
mutual are refused, naming the key."""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path
from typing import Any

import pytest

from larval.commands.daemon import describe_auth
from larval.credentials import load_credentials
from larval.daemon.auth import resolve
from larval.daemon.config import ConfigError, DaemonConfig, parse_config
from larval.ike.auth_config import AuthInfo
from larval.ike.config import IkeConfig
from larval.ike.events import ChildSaUp
from larval.ike.identity import IdType
from larval.ikev2.session import IkeSession, State
from larval.keymgr.manager import _auth_info
from tests.daemon.gateway import CAROL, GW, gateway_credentials, one_connection
from tests.ikev2.test_session import NET_A, NET_B, Pair, child
from tests.ikev2.test_session_eap import run


def eap_pair(init: IkeConfig, resp: IkeConfig) -> Pair:
    """Two sessions in memory, on the wall clock (the certificates are made at import)."""
    pair = Pair(init, resp, child(NET_B, NET_A))
    spis = itertools.count(0x6000)
    now = datetime.datetime.now(datetime.UTC)
    pair.i = IkeSession(init, initiator=True, allocate_spi=lambda: next(spis),
                        wall_clock=lambda: now)  # fmt: skip
    pair.r = IkeSession(resp, initiator=False, allocate_spi=lambda: next(spis),
                        child_policy=lambda tsi, tsr: child(NET_B, NET_A),
                        wall_clock=lambda: now)  # fmt: skip
    return pair


GW_SIDE = {"auth": "eap-tls", "certs": ["gw.pem"], "id": "vpn.example.org"}
CAROL_SIDE = {"auth": "eap-tls", "certs": ["carol.pem"], "id": "carol@example.org"}


def gateway(creds: Path, **remote: Any) -> dict[str, Any]:
    side = {"auth": "eap-tls", "cacerts": ["ca.pem"], **remote}
    return one_connection(creds, GW_SIDE, side, gateway=True)


def client(creds: Path, **remote: Any) -> dict[str, Any]:
    side = {"auth": "eap-tls", "id": "vpn.example.org", **remote}
    return one_connection(creds, CAROL_SIDE, side, gateway=False)


def resolved(config: dict[str, Any], creds: Path) -> DaemonConfig:
    return resolve(parse_config(config, "x.toml"), load_credentials(creds), "x.toml")


def test_both_ends_eap_tls_is_eap_only_with_each_ends_certificate(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    (gw,) = resolved(gateway(tmp_path), tmp_path).connections
    assert gw.ike.local_auth is None and gw.ike.remote_auth is None
    assert gw.ike.local_eap is not None and gw.ike.remote_eap is not None
    tls = gw.ike.remote_eap.tls
    assert tls is not None and tls.cert.cert == GW  # the TLS server's certificate
    (home,) = resolved(client(tmp_path), tmp_path).connections
    eap = home.ike.local_eap
    assert eap is not None and (eap.method, eap.eap_id) == ("eap-tls", "carol@example.org")
    assert eap.tls is not None and eap.tls.cert.cert == CAROL
    assert eap.tls.server_id == (IdType.ID_FQDN, b"vpn.example.org")
    assert home.ike.remote_eap is not None  # it announces EAP_ONLY_AUTHENTICATION


def test_a_client_and_a_gateway_from_the_words_authenticate_by_eap_tls_only(
    tmp_path: Path,
) -> None:
    gateway_credentials(tmp_path, carol=True)
    (gw,) = resolved(gateway(tmp_path), tmp_path).connections
    (home,) = resolved(client(tmp_path), tmp_path).connections
    pair = eap_pair(home.ike, gw.ike)
    events_i, events_r = run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    up_i = next(e for e in events_i if isinstance(e, ChildSaUp))
    up_r = next(e for e in events_r if isinstance(e, ChildSaUp))
    assert up_i.keys_out == up_r.keys_in
    # Each end's status names the other's TLS certificate; the gateway sent no AUTH of
    # its own (its proof is the method: no scheme, as a certificate AUTH would give).
    assert pair.r.auth_remote == AuthInfo("eap-tls", subject="C=CH, O=Example, CN=carol",
                                          issuer="C=CH, O=Example, CN=Example CA",
                                          identity="carol@example.org")  # fmt: skip
    # larval status: ``eap-tls carol@example.org, C=CH, O=Example, CN=carol, issued by ...``
    shown = describe_auth(_auth_info(pair.r.auth_remote) or {})
    assert shown == ("eap-tls carol@example.org, C=CH, O=Example, CN=carol, "
                     "issued by C=CH, O=Example, CN=Example CA")  # fmt: skip
    assert pair.i.auth_remote == AuthInfo("eap-tls", subject="C=CH, O=Example, "
                                          "CN=vpn.example.org",
                                          issuer="C=CH, O=Example, CN=Example CA")  # fmt: skip
    assert pair.i.auth_local == AuthInfo("eap-tls", identity="carol@example.org")


def test_a_client_refuses_a_gateway_certificate_of_another_identity(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    (gw,) = resolved(gateway(tmp_path), tmp_path).connections
    (home,) = resolved(client(tmp_path, id="other.example.org"), tmp_path).connections
    pair = eap_pair(home.ike, gw.ike)
    events_i, _ = run(pair)
    assert pair.i.state is not State.ESTABLISHED
    assert not [e for e in events_i if isinstance(e, ChildSaUp)]


@pytest.mark.parametrize(
    ("which", "change", "named"),
    [
        ("gateway", {"auth": "eap-mschapv2", "cacerts": None},
         "connections.rw.remote.auth: both ends by EAP: EAP-only authentication (RFC 5998) "
         'needs a mutual method, auth = "eap-tls" on both sides'),
        ("client", {"auth": "eap-md5"},
         "connections.home.remote.auth: both ends by EAP: EAP-only authentication"),
        ("client", {"auth": "eap"},
         'connections.home.remote.auth: both ends by EAP: EAP-only authentication (RFC 5998) '
         'needs a mutual method, auth = "eap-tls" on both sides (EAP-MSCHAPv2 and EAP-MD5 '
         'are not), not "eap"'),
    ],
)  # fmt: skip
def test_eap_only_with_a_method_that_is_not_mutual_is_refused(
    tmp_path: Path, which: str, change: dict[str, Any], named: str
) -> None:
    config = (client if which == "client" else gateway)(tmp_path, **change)
    with pytest.raises(ConfigError) as info:
        parse_config(config, "x.toml")
    assert str(info.value).startswith(f"x.toml: {named}")


def test_a_client_without_an_id_gives_its_certificate_subject_as_eap_identity(
    tmp_path: Path,
) -> None:
    """strongSwan's rw-eap-tls-only client writes no ``id``: its IKE and EAP identity is
    its certificate's subject, which the gateway's TLS check finds in the certificate."""
    gateway_credentials(tmp_path, carol=True)
    config = client(tmp_path)
    del config["connections"]["home"]["local"]["id"]
    (home,) = resolved(config, tmp_path).connections
    assert home.ike.local_eap is not None
    assert home.ike.local_eap.eap_id == "C=CH, O=Example, CN=carol"
    assert home.ike.local_id[0] == IdType.ID_DER_ASN1_DN
    (gw,) = resolved(gateway(tmp_path), tmp_path).connections
    pair = eap_pair(home.ike, gw.ike)
    run(pair)
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert pair.r.auth_remote is not None
    assert pair.r.auth_remote.identity == "C=CH, O=Example, CN=carol"
