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

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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

MSCHAPV2_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so")
needs_mschapv2 = pytest.mark.skipif(
    not MSCHAPV2_PLUGIN.exists(), reason="needs charon's eap-mschapv2 (libcharon-extauth-plugins)"
)
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
        local {{
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


def _start(topo: Topology, tmp: Path, secret: str,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Charon, LarvalDaemon]:  # fmt: skip
    certs = make_set(Spec("ecdsa", 256), tmp / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    charon = topo.charon(
        topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
        swanctl=_charon_swanctl(secret),
        credentials=certs.credentials(tmp / "moon-credentials", None),
    )  # fmt: skip
    config = larval_config(
        topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"], start_action="none",
        local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}',
        remote='{ auth = "eap-mschapv2", eap_id = "%any" }',
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
    )  # fmt: skip
    config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    return charon, larval


def _status(topo: Topology) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "larval", "status", "--json", "--control-socket",
         str(topo.b.dir / "control")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def test_charon_as_an_eap_mschapv2_client_gets_its_child_sa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, tmp_path, PASSWORD, monkeypatch)
        charon.initiate()
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert re.search(rf"authentication of '{SUN}' with \S+ successful", log), log[-4000:]
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        result = topo.a.ping(count=3)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        (ike,) = [sa for sa in _status(topo)["ike_sas"] if sa["state"] == "established"]
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
        remote {{
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


def test_larval_as_an_eap_mschapv2_client_of_a_charon_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    with Topology(tmp_path) as topo:
        charon = topo.charon(
            topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
            swanctl=_charon_gateway_swanctl(),
            credentials=certs.credentials(tmp_path / "moon-credentials", "moon"),
        )  # fmt: skip
        config = larval_config(
            topo.b, proposals=["aes128-sha256-x25519"], esp=["aes128gcm16"],
            start_action="trap",
            local='{ auth = "eap-mschapv2", eap_id = "carol" }',
            remote=f'{{ auth = "pubkey", id = "{MOON}" }}',
            credentials=str(certs.credentials(tmp_path / "sun-credentials", None)),
        )  # fmt: skip
        config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
        larval = LarvalDaemon(topo.b, config)
        topo.daemons.append(larval)
        larval.start()
        # The first packet sets off the exchange through larval's trap policy.
        result = topo.b.ping(count=5)
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    log[-4000:])  # fmt: skip
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert "received EAP identity 'carol'" in log, log[-4000:]
        # Both AUTHs over the MSK: larval's checked by charon, charon's by larval.
        assert f"authentication of '{OUTER['b']}' with EAP successful" in log, log[-4000:]
        (ike,) = [sa for sa in _status(topo)["ike_sas"] if sa["state"] == "established"]
        assert (ike["auth_local"]["method"], ike["auth_local"]["identity"]) == (
            "eap-mschapv2", "carol"), ike  # fmt: skip
        assert ike["auth_remote"]["method"] == "pubkey", ike
        assert PASSWORD not in larval.log.read_text()
