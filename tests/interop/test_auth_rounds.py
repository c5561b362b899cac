"""strongSwan's charon as a road warrior of two authentication rounds (RFC 4739):
``local-1 { auth = pubkey }`` with its certificate, then ``local-2 { auth = eap-mschapv2;
eap_id = carol }``, against a larval gateway of ``remote = [{ auth = "pubkey" },
{ auth = "eap-mschapv2", eap_id = "%any" }]`` that proves itself once with its
certificate: the CHILD_SA comes up after both rounds and traffic passes, larval's status
shows the certificate round and then carol's EAP round; a wrong password in the second
round leaves no SA on either end and never reaches larval's log.

charon's eap-mschapv2 plugin is Debian's ``libcharon-extauth-plugins``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from larval.bench.charon import CharonError
from tests.interop.certs import Spec, make_set
from tests.interop.harness import (
    Charon,
    LarvalDaemon,
    Topology,
    needs_charon,
    needs_netns,
)
from tests.interop.ra_setup import (
    CAROL_MSCHAPV2,
    MOON,
    MOON_CERT,
    SUN,
    SUN_BY_CERT,
    SUN_CERT_TOML,
    charon_client,
    charon_gateway,
    charon_log,
    charon_peer,
    established,
    larval_peer,
    needs_mschapv2,
    nothing_left,
    swanctl_secret,
    wait_until,
    with_plugins,
    with_pool,
)
from tests.interop.test_eap import charon_mschapv2_client, larval_mschapv2_client

pytestmark = [needs_netns, needs_charon, needs_mschapv2]

PASSWORD = "carol-Interop-Password-1"
WRONG = "not-Carols-Password-9"


def _start(topo: Topology, tmp: Path, secret: str, monkeypatch: pytest.MonkeyPatch,
           reserved: str | None = None) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    """charon of two rounds and the larval gateway; with `reserved`, charon asks for an
    address (vips = 0.0.0.0) and the gateway's pool keeps `reserved` for carol."""
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    with_plugins(monkeypatch, "eap-identity eap-mschapv2")
    swanctl = charon_client(
        {"local-1": MOON_CERT, "local-2": CAROL_MSCHAPV2}, secrets=swanctl_secret("carol", secret),
        options={"vips": "0.0.0.0"} if reserved is not None else None,
        local_ts=None if reserved is not None else "198.51.100.0/24",
    )  # fmt: skip
    charon = charon_peer(
        topo, swanctl,
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip

    def pool(config: str) -> str:
        if reserved is None:
            return config
        return with_pool(config, "10.3.0.0/24", f'reserved = {{ carol = "{reserved}" }}\n')

    larval = larval_peer(
        topo, start_action="none", local=SUN_CERT_TOML,
        remote=f'[{{ auth = "pubkey", id = "{MOON}" }}, '
               '{ auth = "eap-mschapv2", eap_id = "%any" }]',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
        secrets={"carol": PASSWORD}, edit=pool,
    )  # fmt: skip
    return charon, larval


def _refused(larval: LarvalDaemon, charon: Charon, seconds: float, why: str = "") -> None:
    """Wait until `why` is in larval's log (if given) and neither end keeps an SA."""
    wait_until(
        lambda: why in larval.log.read_text() and nothing_left(larval, charon), seconds,
        lambda: f"not refused:\n{larval.status()}\n{charon.list_sas()}\n"
                f"{larval.log.read_text()[-4000:]}",
    )  # fmt: skip


def _gave_up(larval: LarvalDaemon, charon: Charon) -> str:
    """Wait until larval's log has the server's refusal of carol, charon's an EAP Failure
    and larval keeps no IKE SA; charon's log."""
    refused = "EAP-MSCHAPv2: the server refused user 'carol': E=691"
    wait_until(
        lambda: refused in larval.log.read_text() and "[ EAP/FAIL ]" in charon_log(charon)
        and not larval.status()["ike_sas"], 20,
        lambda: f"not refused:\n{larval.log.read_text()[-4000:]}\n{charon_log(charon)[-4000:]}",
    )  # fmt: skip
    return charon_log(charon)


def test_charon_proves_its_certificate_then_eap_mschapv2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, PASSWORD, monkeypatch)
        charon.initiate()
        log = charon_log(charon)
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        # charon's first IKE_AUTH announces the second round; larval's MSK AUTH ends it.
        assert re.search(r"generating IKE_AUTH request 1 \[[^]]*N\(AUTH_FOLLOWS\)", log), log
        assert f"authentication of '{SUN}' with EAP successful" in log, log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        ike = established(larval.status()["ike_sas"])  # type: ignore[arg-type]
        remote = ike["auth_remote"]
        assert remote["method"] == "pubkey" and MOON in remote["subject"], ike
        assert [(r["method"], r["identity"]) for r in remote["rounds"]] == [
            ("eap-mschapv2", "carol")], ike  # fmt: skip
        assert ike["auth_local"]["method"] == "pubkey" and "rounds" not in ike["auth_local"]
        assert PASSWORD not in larval.log.read_text()


def test_a_wrong_password_in_the_second_round_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, WRONG, monkeypatch)
        with pytest.raises(CharonError):
            charon.initiate(timeout=10)
        _refused(larval, charon, 10, "authentication of the initiator failed: EAP-MSCHAPv2: "
                                     "wrong password for user 'carol'")  # fmt: skip
        log = larval.log.read_text()
        assert WRONG not in log and PASSWORD not in log


def _larval_client(topo: Topology, tmp: Path, secret: str,
                   monkeypatch: pytest.MonkeyPatch) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    """A charon gateway of two rounds and larval as its client of two, by trap policy."""
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    with_plugins(monkeypatch, "eap-identity eap-mschapv2")
    gateway = charon_gateway(
        {"remote-1": SUN_BY_CERT, "remote-2": {"auth": "eap-mschapv2", "eap_id": "%any"}},
        secrets=swanctl_secret("carol", PASSWORD),
    )  # fmt: skip
    charon = charon_peer(
        topo, gateway,
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    larval = larval_peer(
        topo, start_action="trap",
        local=f'[{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}, '
              '{ auth = "eap-mschapv2", eap_id = "carol" }]',
        remote=f'{{ auth = "pubkey", id = "{MOON}" }}',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
        secrets={"carol": secret},
    )  # fmt: skip
    return charon, larval


def test_larval_proves_its_certificate_then_eap_mschapv2_to_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _larval_client(topo, tmp_path, PASSWORD, monkeypatch)
        # The first packet sets off the exchange through larval's trap policy.
        result = topo.b.ping(count=5)
        log = charon_log(charon)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        # charon checked larval's certificate round, then its EAP round.
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "received EAP identity 'carol'" in log, log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert re.search(r"parsed IKE_AUTH request 1 \[[^]]*N\(AUTH_FOLLOWS\)", log), log
        ike = established(larval.status()["ike_sas"])  # type: ignore[arg-type]
        local = ike["auth_local"]
        assert local["method"] == "pubkey" and SUN in local["subject"], ike
        assert [(r["method"], r["identity"]) for r in local["rounds"]] == [
            ("eap-mschapv2", "carol")], ike  # fmt: skip
        assert PASSWORD not in larval.log.read_text()


def test_charon_offered_a_retry_of_its_wrong_password_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A larval gateway of ``eap_retries = 2`` answers charon's wrong MSCHAPv2 password
    with a Failure of R=1; charon's peer does not retry, and neither end keeps an SA."""
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with_plugins(monkeypatch, "eap-identity eap-mschapv2")
    with Topology(tmp_path) as topo:
        charon = charon_peer(
            topo, charon_mschapv2_client(WRONG),
            credentials=certs.credentials(tmp_path / "moon-credentials", None),
        )  # fmt: skip
        larval = larval_peer(
            topo, start_action="none", local=SUN_CERT_TOML,
            remote='{ auth = "eap-mschapv2", eap_id = "%any", eap_retries = 2 }',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
            secrets={"carol": PASSWORD},
        )  # fmt: skip
        with pytest.raises(CharonError):
            charon.initiate(timeout=10)
        log = charon_log(charon)
        assert "EAP-MS-CHAPv2 failed with error ERROR_AUTHENTICATION_FAILURE" in log, log[-4000:]
        _refused(larval, charon, 15)
        log = larval.log.read_text()
        assert WRONG not in log and PASSWORD not in log
        # charon's INFORMATIONAL { N(AUTHENTICATION_FAILED) } closed larval's at once.
        assert "authentication of the initiator failed: it gave up in IKE_AUTH" in log, log


def test_larval_acknowledges_a_charon_gateways_retry_and_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charon's server answers a wrong MSCHAPv2 password with a Failure of R=1 (it allows
    two retries); larval has no other password: it acknowledges the Failure, charon
    ends with EAP Failure, and neither end keeps an SA."""
    with Topology(tmp_path) as topo:
        charon, larval = larval_mschapv2_client(topo, tmp_path, WRONG, monkeypatch)
        topo.b.ping(count=1)  # sets off the exchange through the trap policy
        log = _gave_up(larval, charon)
        assert "EAP-MS-CHAPv2 verification failed, retry (1)" in log, log[-4000:]
        assert "R=1" in larval.log.read_text()
        assert not re.search(r"^\S+: #", charon.list_sas(), re.M)
        assert WRONG not in larval.log.read_text()


def test_charon_of_two_rounds_gets_the_address_reserved_for_its_eap_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``vips = 0.0.0.0``: the gateway leases by the identity of the last round, the
    EAP identity carol, not the certificate's moon.example.org."""
    vip = "10.3.0.9"
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, PASSWORD, monkeypatch, reserved=vip)
        # As in test_remote_access: charon does not install the address itself
        # (install_virtual_ip = no), and its route to the gateway's network needs it.
        topo.a.ns.run(["ip", "address", "add", f"{vip}/32", "dev", "lo"])
        charon.initiate()
        log = charon_log(charon)
        assert f"installing new virtual IP {vip}" in log, log[-4000:]
        status = larval.wait_for("child")
        (ike,) = status["ike_sas"]  # type: ignore[misc]
        assert ike["virtual_ips"] == [vip]  # type: ignore[index]
        (child,) = status["child_sas"]  # type: ignore[misc]
        assert child["remote_ts"] == [f"{vip}/32"]  # type: ignore[index]


def test_larval_with_a_wrong_password_in_its_second_round_against_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charon offers a retry (R=1); larval acknowledges it, charon ends with EAP Failure,
    and neither end keeps an SA."""
    with Topology(tmp_path) as topo:
        charon, larval = _larval_client(topo, tmp_path, WRONG, monkeypatch)
        topo.b.ping(count=1)  # sets off the exchange through the trap policy
        log = _gave_up(larval, charon)
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log)
        assert "EAP-MS-CHAPv2 verification failed, retry (1)" in log, log[-4000:]
        assert not re.search(r"^\S+: #", charon.list_sas(), re.M)
        assert WRONG not in larval.log.read_text()
