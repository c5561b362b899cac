"""strongSwan's charon as an EAP-MSCHAPv2 road warrior (``local { auth = eap-mschapv2;
eap_id = carol }``, ``remote { auth = pubkey }``) against a larval gateway that proves
itself with an ECDSA certificate made by `larval.pki` and asks the EAP identity
(``eap_id = "%any"``): the right password brings the CHILD_SA up and traffic through it,
status names carol; a wrong password is AUTHENTICATION_FAILED, larval's log names carol
and the reason and never the password, and neither end keeps an SA. And the other way:
larval as the road warrior against charon as the gateway (``remote { auth =
eap-mschapv2; eap_id = %any }``).

charon's eap-mschapv2 plugin is Debian's ``libcharon-extauth-plugins``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from larval.bench.charon import CharonError
from tests.interop.certs import Spec, make_set
from tests.interop.harness import (
    OUTER,
    Charon,
    LarvalDaemon,
    Topology,
    needs_charon,
    needs_netns,
)
from tests.interop.ra_setup import (
    CAROL_MSCHAPV2,
    MOON,
    SUN,
    SUN_CERT_TOML,
    charon_client,
    charon_gateway,
    charon_log,
    charon_peer,
    established,
    larval_json,
    larval_peer,
    needs_mschapv2,
    nothing_left,
    swanctl_secret,
    wait_until,
    with_plugins,
)

__all__ = ["needs_mschapv2"]  # other tests' marker, from here as before
pytestmark = [needs_netns, needs_charon, needs_mschapv2]

PASSWORD = "carol-Interop-Password-1"
WRONG = "not-Carols-Password-9"

#: swanctl.conf's ``remote`` (gateway) side asking any EAP-MSCHAPv2 identity.
ANY_MSCHAPV2 = {"auth": "eap-mschapv2", "eap_id": "%any"}


def charon_mschapv2_client(secret: str) -> str:
    """charon dialling larval as carol by EAP-MSCHAPv2 with `secret`."""
    return charon_client({"local": CAROL_MSCHAPV2}, secrets=swanctl_secret("carol", secret))


def charon_mschapv2_gateway() -> str:
    """charon the gateway asking any EAP-MSCHAPv2 identity; carol's password is PASSWORD."""
    return charon_gateway({"remote": ANY_MSCHAPV2}, secrets=swanctl_secret("carol", PASSWORD))


def _start(topo: Topology, tmp: Path, secret: str,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    with_plugins(monkeypatch, "eap-identity eap-mschapv2")
    charon = charon_peer(
        topo, charon_mschapv2_client(secret),
        credentials=certs.credentials(tmp / "moon-credentials", None),
    )  # fmt: skip
    larval = larval_peer(
        topo, start_action="none", local=SUN_CERT_TOML,
        remote='{ auth = "eap-mschapv2", eap_id = "%any" }', secrets={"carol": PASSWORD},
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
    )  # fmt: skip
    return charon, larval


def test_charon_as_an_eap_mschapv2_client_gets_its_child_sa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, PASSWORD, monkeypatch)
        charon.initiate()
        log = charon_log(charon)
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        ike = established(larval_json(topo, "status")["ike_sas"])
        assert ike["auth_remote"]["method"] == "eap-mschapv2", ike
        assert ike["auth_remote"]["identity"] == "carol", ike
        assert ike["auth_local"]["method"] == "pubkey", ike
        assert PASSWORD not in larval.log.read_text()


def test_a_wrong_password_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, WRONG, monkeypatch)
        with pytest.raises(CharonError):
            charon.initiate(timeout=10)
        refused = ("authentication of the initiator failed: EAP-MSCHAPv2: wrong password for "
                   "user 'carol'")  # fmt: skip
        wait_until(
            lambda: refused in larval.log.read_text() and nothing_left(larval, charon), 10,
            lambda: f"not refused:\n{larval.status()}\n{charon.list_sas()}\n"
                    f"{larval.log.read_text()[-4000:]}",
        )  # fmt: skip
        log = larval.log.read_text()
        assert WRONG not in log and PASSWORD not in log


def larval_mschapv2_client(
    topo: Topology, tmp: Path, secret: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Charon, LarvalDaemon]:
    """charon the gateway asking EAP-MSCHAPv2 (carol's password PASSWORD), larval its
    client as carol with `secret`, by trap policy."""
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    with_plugins(monkeypatch, "eap-identity eap-mschapv2")
    charon = charon_peer(
        topo, charon_mschapv2_gateway(),
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    larval = larval_peer(
        topo, start_action="trap", local='{ auth = "eap-mschapv2", eap_id = "carol" }',
        remote=f'{{ auth = "pubkey", id = "{MOON}" }}', secrets={"carol": secret},
        credentials=str(certs.credentials(tmp / "sun-credentials", None)),
    )  # fmt: skip
    return charon, larval


def test_larval_as_an_eap_mschapv2_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = larval_mschapv2_client(topo, tmp_path, PASSWORD, monkeypatch)
        # The first packet sets off the exchange through larval's trap policy.
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert "received EAP identity 'carol'" in log, log[-4000:]
        # Both AUTHs over the MSK: larval's checked by charon, charon's by larval.
        assert f"authentication of '{OUTER['b']}' with EAP successful" in log, log[-4000:]
        ike = established(larval_json(topo, "status")["ike_sas"])
        assert (ike["auth_local"]["method"], ike["auth_local"]["identity"]) == (
            "eap-mschapv2", "carol"), ike  # fmt: skip
        assert ike["auth_remote"]["method"] == "pubkey", ike
        assert PASSWORD not in larval.log.read_text()
