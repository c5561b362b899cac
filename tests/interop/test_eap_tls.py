"""EAP-TLS (RFC 5216, TLS 1.2) with strongSwan's charon, both ways.

charon as the road warrior (``local { auth = eap-tls; certs = dave.pem; id =
dave@example.org }``) against a larval gateway that proves itself with its certificate
and runs EAP-TLS as the server (``remote = { auth = "eap-tls", eap_id = "%any", cacerts
= ["root.pem"] }``, or ``auth = "eap"``): the CHILD_SA comes up over TLS 1.2, with RSA
3072 certificates in several fragments each way too, traffic passes, status names dave; a
revoked dave is refused, larval's log names dave and the reason, and neither end keeps an
SA. And larval as the road warrior against charon as the gateway (``remote { auth =
eap-tls; eap_id = %any }``, the TLS server); a certificate charon does not trust ends in
charon's alert, which larval's log names, and AUTHENTICATION_FAILED to charon. And
EAP-only (RFC 5998, strongSwan's rw-eap-tls-only): charon as the client of a larval
gateway with ``auth = "eap-tls"`` on both sides, which sends no AUTH of its own; larval's
status names dave's certificate; and larval as the EAP-only client of a charon gateway.

Certificates by `larval.pki`: one root, the gateways' (FQDN) and dave's (rfc822Name).
charon's eap-tls is in Debian's ``libcharon-extra-plugins``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from larval import pki
from larval.bench.charon import CharonError
from tests.interop.certs import CertSet, EndEntity
from tests.interop.harness import (
    LarvalDaemon,
    Topology,
    needs_charon,
    needs_netns,
)
from tests.interop.ra_setup import (
    MOON,
    MOON_CERT,
    SUN,
    SUN_CERT_TOML,
    charon_client,
    charon_gateway,
    charon_log,
    charon_peer,
    established,
    larval_json,
    larval_peer,
    needs_eap_tls,
    nothing_left,
    wait_until,
    with_plugins,
)

pytestmark = [needs_netns, needs_charon, needs_eap_tls]

DAVE = "dave@example.org"


def _certs(kind: str = "ecdsa", size: int = 256) -> CertSet:
    """A root, sun and moon (their FQDNs), dave and a revoked dave (dave@example.org)."""
    root_key = pki.generate_key(kind, size)
    root = pki.make_certificate(
        pki.CertRequest(pki.parse_dn("C=CH, O=larval interop, CN=EAP-TLS root"), ca=True),
        root_key.public_key(), root_key,
    )  # fmt: skip

    def issue(name: str) -> EndEntity:
        key = pki.generate_key(kind, size)
        request = pki.CertRequest(pki.parse_dn(f"C=CH, O=larval interop, CN={name}"),
                                  sans=[pki.parse_san(name)])  # fmt: skip
        cert = pki.make_certificate(request, key.public_key(), root_key, root)
        return EndEntity(cert, pki.private_key_bytes(key))

    ends = {"sun": issue(SUN), "moon": issue(MOON), "dave": issue(DAVE),
            "dave-revoked": issue(DAVE)}  # fmt: skip
    crl = pki.make_crl(root, root_key, [ends["dave-revoked"].cert], reason="key-compromise")
    return CertSet(root, ends, crl)


def _charon_client(cert: str, remote_auth: str = "pubkey") -> str:
    """charon dialling larval as dave by EAP-TLS with certificate `cert`, proving larval
    by `remote_auth`."""
    return charon_client({"local": {"auth": "eap-tls", "certs": f"{cert}.pem", "id": DAVE}},
                         remote={"auth": remote_auth, "id": SUN})  # fmt: skip


def _gateway(topo: Topology, tmp: Path, certs: CertSet, client: str,
             monkeypatch: pytest.MonkeyPatch, auth: str = "eap-tls",
             ) -> tuple[Any, LarvalDaemon]:  # fmt: skip
    with_plugins(monkeypatch, "eap-identity eap-tls")
    charon = charon_peer(
        topo, _charon_client(client),
        credentials=certs.credentials(tmp / "dave-credentials", client),
    )  # fmt: skip
    larval = larval_peer(
        topo, start_action="none", local=SUN_CERT_TOML,
        remote=f'{{ auth = "{auth}", eap_id = "%any", cacerts = ["root.pem"] }}',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun", crl=True)),
    )  # fmt: skip
    return charon, larval


@pytest.mark.parametrize(
    ("kind", "size", "auth"),
    [("ecdsa", 256, "eap-tls"), ("rsa", 3072, "eap-tls"), ("ecdsa", 256, "eap")],
)
def test_charon_as_an_eap_tls_client_of_a_larval_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, size: int, auth: str
) -> None:
    # RSA 3072: each end's certificate flight is more than one 1,024-byte EAP-TLS packet.
    # auth = "eap" with cacerts: the gateway offers EAP-TLS first.
    certs = _certs(kind, size)
    with Topology(tmp_path) as topo:
        charon, larval = _gateway(topo, tmp_path, certs, "dave", monkeypatch, auth)
        charon.initiate()
        log = charon_log(charon)
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-4000:]
        assert "negotiated TLS 1.2 using suite" in log, log[-4000:]
        # Start, the server's flight, its Finished; more where fragments took ACKs.
        requests = len(re.findall(r"parsed IKE_AUTH response \d+ \[ EAP/REQ/TLS \]", log))
        assert requests == 3 if kind == "ecdsa" else requests > 3, log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        ike = established(larval_json(topo, "status")["ike_sas"])
        assert (ike["auth_remote"]["method"], ike["auth_remote"]["identity"]) == (
            "eap-tls", DAVE), ike  # fmt: skip
        assert ike["auth_local"]["method"] == "pubkey", ike


def test_a_revoked_client_certificate_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = _certs()
    with Topology(tmp_path) as topo:
        charon, larval = _gateway(topo, tmp_path, certs, "dave-revoked", monkeypatch)
        with pytest.raises(CharonError):
            charon.initiate(timeout=10)
        refused = re.compile(
            rf"authentication of the initiator failed: EAP identity '{DAVE}': EAP-TLS: the "
            r"peer's certificate refused: .*revoked \(keyCompromise\)")  # fmt: skip
        wait_until(
            lambda: refused.search(larval.log.read_text()) and nothing_left(larval, charon), 10,
            lambda: f"not refused:\n{larval.status()}\n{charon.list_sas()}\n"
                    f"{larval.log.read_text()[-4000:]}",
        )  # fmt: skip


def _charon_gateway(local: dict[str, str] = MOON_CERT,
                    remote: dict[str, str] | None = None) -> str:  # fmt: skip
    """charon the gateway proving itself by `local`, asking EAP-TLS of any identity (or
    `remote`)."""
    return charon_gateway({"remote": remote or {"auth": "eap-tls", "eap_id": "%any"}},
                          local=local)  # fmt: skip


def _client(topo: Topology, tmp: Path, certs: CertSet, own: CertSet,
            monkeypatch: pytest.MonkeyPatch) -> tuple[Any, LarvalDaemon]:  # fmt: skip
    """charon the gateway with `certs`, larval the client with dave of `own`, trusting
    the root of `certs`."""
    with_plugins(monkeypatch, "eap-identity eap-tls")
    charon = charon_peer(
        topo, _charon_gateway(),
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    directory = own.credentials(tmp / "dave-credentials", "dave")
    (directory / "x509ca" / "root.pem").write_bytes(
        certs.root.public_bytes(serialization.Encoding.PEM)
    )
    larval = larval_peer(
        topo, start_action="trap",
        local=f'{{ auth = "eap-tls", certs = ["dave.pem"], id = "{DAVE}" }}',
        remote=f'{{ auth = "pubkey", id = "{MOON}" }}', credentials=str(directory),
    )  # fmt: skip
    return charon, larval


def test_larval_as_an_eap_tls_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = _certs()
    with Topology(tmp_path) as topo:
        charon, larval = _client(topo, tmp_path, certs, certs, monkeypatch)
        # The first packet sets off the exchange through larval's trap policy.
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-4000:]
        assert f"received EAP identity '{DAVE}'" in log, log[-4000:]
        assert f"authentication of '{DAVE}' with EAP successful" in log, log[-4000:]
        ike = established(larval_json(topo, "status")["ike_sas"])
        assert (ike["auth_local"]["method"], ike["auth_local"]["identity"]) == (
            "eap-tls", DAVE), ike  # fmt: skip
        assert ike["auth_remote"]["method"] == "pubkey", ike


def test_a_charon_gateway_that_refuses_larvals_certificate_leaves_nothing_on_larval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dave's certificate is of another root, which charon does not trust: its TLS server
    # ends the handshake with an alert, which larval's log names.
    certs, stranger = _certs(), _certs()
    with Topology(tmp_path) as topo:
        charon, larval = _client(topo, tmp_path, certs, stranger, monkeypatch)
        topo.b.ping(count=1)
        refused = re.compile(rf"EAP as '{DAVE}' failed: EAP-TLS: .*alert certificate unknown")
        # larval tells charon (RFC 7296 §2.21.2), which keeps its half-open IKE_SA until its
        # own timeout.
        told = re.compile(r"parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]")

        def done() -> bool:
            status = larval.status()
            return bool(refused.search(larval.log.read_text()) and told.search(charon_log(charon))
                        and not status["ike_sas"] and not status["child_sas"])  # fmt: skip

        wait_until(done, 15, lambda: f"not refused:\n{larval.status()}\n"
                   f"{larval.log.read_text()[-3000:]}\n{charon_log(charon)[-3000:]}")  # fmt: skip


# -- EAP-only authentication (RFC 5998) ---------------------------------------------------


def test_charon_as_an_eap_only_client_of_a_larval_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """strongSwan's rw-eap-tls-only: ``auth = eap-tls`` on both sides of both ends. The
    larval gateway sends IDr and EAP without AUTH; charon takes it (it announced
    EAP_ONLY_AUTHENTICATION), both ends prove themselves by TLS and the MSK AUTHs."""
    certs = _certs()
    with_plugins(monkeypatch, "eap-identity eap-tls")
    client = _charon_client("dave", remote_auth="eap-tls")  # remote { auth = eap-tls; id = sun }
    assert "auth = pubkey" not in client
    with Topology(tmp_path) as topo:
        charon = charon_peer(
            topo, client,
            credentials=certs.credentials(tmp_path / "dave-credentials", "dave"),
        )  # fmt: skip
        larval = larval_peer(
            topo, start_action="none",
            local=f'{{ auth = "eap-tls", certs = ["sun.pem"], id = "{SUN}" }}',
            remote='{ auth = "eap-tls", cacerts = ["root.pem"] }',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun", crl=True)),
        )  # fmt: skip
        charon.initiate()
        log = charon_log(charon)
        assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-4000:]
        # The gateway's first IKE_AUTH response: IDr and EAP, no CERT, no AUTH.
        first = re.search(r"parsed IKE_AUTH response \d+ \[ ([^\]]*) \]", log)
        assert first is not None and "AUTH" not in first.group(1).replace("EAP", ""), log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        ike = established(larval_json(topo, "status")["ike_sas"])
        remote = ike["auth_remote"]
        assert (remote["method"], remote["identity"]) == ("eap-tls", DAVE), ike
        assert remote["subject"] == f"C=CH, O=larval interop, CN={DAVE}", ike
        assert remote["issuer"] == "C=CH, O=larval interop, CN=EAP-TLS root", ike


def test_larval_as_an_eap_only_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way: charon the rw-eap-tls-only gateway (``local { auth = eap-tls; certs =
    moon.pem }``, ``remote { auth = eap-tls }``), larval the client with ``auth =
    "eap-tls"`` on both sides, which announces EAP_ONLY_AUTHENTICATION and takes the
    gateway without AUTH, checking its TLS certificate for the remote ``id``."""
    certs = _certs()
    gateway = _charon_gateway({**MOON_CERT, "auth": "eap-tls"}, {"auth": "eap-tls"})
    assert "auth = pubkey" not in gateway
    with_plugins(monkeypatch, "eap-identity eap-tls")
    with Topology(tmp_path) as topo:
        charon = charon_peer(
            topo, gateway,
            credentials=certs.credentials(tmp_path / "moon-credentials", "moon"),
        )  # fmt: skip
        larval = larval_peer(
            topo, start_action="trap",
            local=f'{{ auth = "eap-tls", certs = ["dave.pem"], id = "{DAVE}" }}',
            remote=f'{{ auth = "eap-tls", id = "{MOON}" }}',
            credentials=str(certs.credentials(tmp_path / "dave-credentials", "dave")),
        )  # fmt: skip
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-4000:]
        # charon's first IKE_AUTH response: IDr and EAP, no CERT, no AUTH.
        first = re.search(r"generating IKE_AUTH response \d+ \[ ([^\]]*) \]", log)
        assert first is not None and "AUTH" not in first.group(1).replace("EAP", ""), log[-4000:]
        ike = established(larval_json(topo, "status")["ike_sas"])
        assert (ike["auth_local"]["method"], ike["auth_local"]["identity"]) == (
            "eap-tls", DAVE), ike  # fmt: skip
        remote = ike["auth_remote"]
        assert (remote["method"], remote["scheme"]) == ("eap-tls", ""), ike
        assert remote["subject"] == f"C=CH, O=larval interop, CN={MOON}", ike
