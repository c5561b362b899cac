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
import time
from pathlib import Path

import pytest

from larval.bench import charon as charon_module
from larval.bench.charon import CharonError
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import (
    OUTER,
    Charon,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)
from tests.interop.test_eap import needs_mschapv2

pytestmark = [needs_netns, needs_charon, needs_mschapv2]

PASSWORD = "carol-Interop-Password-1"
WRONG = "not-Carols-Password-9"
SUN, MOON = IDS["b"], IDS["a"]


def _charon_swanctl(secret: str) -> str:
    return f"""connections {{
    home {{
        version = 2
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        mobike = no
        proposals = aes128-sha256-x25519
        local-1 {{
            auth = pubkey
            certs = moon.pem
            id = {MOON}
        }}
        local-2 {{
            auth = eap-mschapv2
            eap_id = carol
        }}
        remote {{
            auth = pubkey
            id = {SUN}
        }}
        children {{
            net {{
                local_ts = 198.51.100.0/24
                remote_ts = 203.0.113.0/24
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    eap-carol {{
        id = carol
        secret = "{secret}"
    }}
}}
"""


def _start(topo: Topology, tmp: Path, secret: str, monkeypatch: pytest.MonkeyPatch,
           reserved: str | None = None) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    """charon of two rounds and the larval gateway; with `reserved`, charon asks for an
    address (vips = 0.0.0.0) and the gateway's pool keeps `reserved` for carol."""
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    swanctl = _charon_swanctl(secret)
    if reserved is not None:
        swanctl = swanctl.replace(
            "        mobike = no\n", "        mobike = no\n        vips = 0.0.0.0\n"
        )
        swanctl = swanctl.replace("                local_ts = 198.51.100.0/24\n", "")
    charon = topo.charon(
        topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
        swanctl=swanctl,
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    config = larval_config(
        topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"], start_action="none",
        local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
        remote=f'[{{ auth = "pubkey", id = "{MOON}" }}, '
               '{ auth = "eap-mschapv2", eap_id = "%any" }]',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
    )  # fmt: skip
    config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
    if reserved is not None:
        config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
        config = config.replace('remote_ts = ["198.51.100.0/24"]', 'remote_ts = ["10.3.0.0/24"]')
        config += f'\n[pools.rw]\naddrs = "10.3.0.0/24"\nreserved = {{ carol = "{reserved}" }}\n'
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    return charon, larval


def test_charon_proves_its_certificate_then_eap_mschapv2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, PASSWORD, monkeypatch)
        charon.initiate()
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        # charon's first IKE_AUTH announces the second round; larval's MSK AUTH ends it.
        assert re.search(r"generating IKE_AUTH request 1 \[[^]]*N\(AUTH_FOLLOWS\)", log), log
        assert f"authentication of '{SUN}' with EAP successful" in log, log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        (ike,) = [sa for sa in larval.status()["ike_sas"] if sa["state"] == "established"]
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
        deadline = time.monotonic() + 10
        while True:
            log = larval.log.read_text()
            status = larval.status()
            listing = charon.list_sas()
            if (
                "authentication of the initiator failed: EAP-MSCHAPv2: wrong password for "
                "user 'carol'"
                in log
                and not status["ike_sas"]
                and not status["child_sas"]
                and not re.search(r"^\S+: #", listing, re.M)
            ):
                break  # fmt: skip
            if time.monotonic() > deadline:
                pytest.fail(f"not refused:\n{status}\n{listing}\n{log[-4000:]}")
            time.sleep(0.3)
        assert WRONG not in log and PASSWORD not in log


def _charon_gateway_swanctl() -> str:
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        mobike = no
        proposals = aes128-sha256-x25519
        send_cert = always
        local {{
            auth = pubkey
            certs = moon.pem
            id = {MOON}
        }}
        remote-1 {{
            auth = pubkey
            id = {SUN}
        }}
        remote-2 {{
            auth = eap-mschapv2
            eap_id = %any
        }}
        children {{
            net {{
                local_ts = 198.51.100.0/24
                remote_ts = 203.0.113.0/24
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    eap-carol {{
        id = carol
        secret = "{PASSWORD}"
    }}
}}
"""


def _larval_client(topo: Topology, tmp: Path, secret: str,
                   monkeypatch: pytest.MonkeyPatch) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    """A charon gateway of two rounds and larval as its client of two, by trap policy."""
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    charon = topo.charon(
        topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
        swanctl=_charon_gateway_swanctl(),
        credentials=certs.credentials(tmp / "moon-credentials", "moon"),
    )  # fmt: skip
    config = larval_config(
        topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
        start_action="trap",
        local=f'[{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}, '
              '{ auth = "eap-mschapv2", eap_id = "carol" }]',
        remote=f'{{ auth = "pubkey", id = "{MOON}" }}',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
    )  # fmt: skip
    config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{secret}"\n'
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    return charon, larval


def test_larval_proves_its_certificate_then_eap_mschapv2_to_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _larval_client(topo, tmp_path, PASSWORD, monkeypatch)
        # The first packet sets off the exchange through larval's trap policy.
        result = topo.b.ping(count=5)
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        # charon checked larval's certificate round, then its EAP round.
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "received EAP identity 'carol'" in log, log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert re.search(r"parsed IKE_AUTH request 1 \[[^]]*N\(AUTH_FOLLOWS\)", log), log
        (ike,) = [sa for sa in larval.status()["ike_sas"] if sa["state"] == "established"]
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
    from tests.interop.test_eap import _charon_swanctl as eap_client_swanctl

    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    with Topology(tmp_path) as topo:
        charon = topo.charon(
            topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
            swanctl=eap_client_swanctl(WRONG),
            credentials=certs.credentials(tmp_path / "moon-credentials", None),
        )  # fmt: skip
        config = larval_config(
            topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
            start_action="none",
            local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
            remote='{ auth = "eap-mschapv2", eap_id = "%any", eap_retries = 2 }',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", "sun")),
        )  # fmt: skip
        config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        with pytest.raises(CharonError):
            charon.initiate(timeout=10)
        charon_log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "EAP-MS-CHAPv2 failed with error ERROR_AUTHENTICATION_FAILURE" in charon_log, (
            charon_log[-4000:])  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            log = larval.log.read_text()
            status = larval.status()
            listing = charon.list_sas()
            if (not status["ike_sas"] and not status["child_sas"]
                    and not re.search(r"^\S+: #", listing, re.M)):  # fmt: skip
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not refused:\n{status}\n{listing}\n{log[-4000:]}")
            time.sleep(0.3)
        assert WRONG not in log and PASSWORD not in log
        # charon's INFORMATIONAL { N(AUTHENTICATION_FAILED) } closed larval's at once.
        assert "authentication of the initiator failed: it gave up in IKE_AUTH" in log, log


def test_larval_acknowledges_a_charon_gateways_retry_and_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charon's server answers a wrong MSCHAPv2 password with a Failure of R=1 (it allows
    two retries); larval has no other password: it acknowledges the Failure, charon
    ends with EAP Failure, and neither end keeps an SA."""
    from tests.interop.test_eap import _charon_gateway_swanctl as eap_gateway_swanctl

    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    with Topology(tmp_path) as topo:
        charon = topo.charon(
            topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
            swanctl=eap_gateway_swanctl(),
            credentials=certs.credentials(tmp_path / "moon-credentials", "moon"),
        )  # fmt: skip
        config = larval_config(
            topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
            start_action="trap",
            local='{ auth = "eap-mschapv2", eap_id = "carol" }',
            remote=f'{{ auth = "pubkey", id = "{MOON}" }}',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", None)),
        )  # fmt: skip
        config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{WRONG}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        topo.b.ping(count=1)  # sets off the exchange through the trap policy
        deadline = time.monotonic() + 20
        while True:
            log = larval.log.read_text()
            charon_log = (charon.dir / "charon.log").read_text(errors="replace")
            refused = "EAP-MSCHAPv2: the server refused user 'carol': E=691" in log
            if refused and "[ EAP/FAIL ]" in charon_log and not larval.status()["ike_sas"]:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not refused:\n{log[-4000:]}\n{charon_log[-4000:]}")
            time.sleep(0.3)
        assert "EAP-MS-CHAPv2 verification failed, retry (1)" in charon_log, charon_log[-4000:]
        assert "R=1" in log
        assert not re.search(r"^\S+: #", charon.list_sas(), re.M)
        assert WRONG not in log


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
        log = (charon.dir / "charon.log").read_text(errors="replace")
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
        deadline = time.monotonic() + 20
        while True:
            log = larval.log.read_text()
            charon_log = (charon.dir / "charon.log").read_text(errors="replace")
            refused = "EAP-MSCHAPv2: the server refused user 'carol': E=691" in log
            if refused and "[ EAP/FAIL ]" in charon_log and not larval.status()["ike_sas"]:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not refused:\n{log[-4000:]}\n{charon_log[-4000:]}")
            time.sleep(0.3)
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", charon_log)
        assert "EAP-MS-CHAPv2 verification failed, retry (1)" in charon_log, charon_log[-4000:]
        assert not re.search(r"^\S+: #", charon.list_sas(), re.M)
        assert WRONG not in log
