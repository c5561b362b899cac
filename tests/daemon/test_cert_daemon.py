"""Two `larval run` on loopback authenticating with `larval.pki` certificates: status
names both ends' certificates, and a CRL revoking carol, picked up on SIGHUP, refuses
her next IKE_SA."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.badinput.test_daemon import larval_run, loopback_pair
from tests.daemon.gateway import CA, CAROL, GW, gateway_credentials, toml_value

SIDES: dict[str, dict[str, Any]] = {
    "gw": {
        "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
        "remote": {"auth": "pubkey", "cacerts": ["ca.pem"]},
    },
    "carol": {
        "local": {"auth": "pubkey", "certs": ["carol.pem"], "id": "carol@example.org"},
        "remote": {"auth": "pubkey", "id": "vpn.example.org"},
    },
}


def config(tmp: Path, who: str, me: str, peer: str, nets: tuple[str, str]) -> str:
    creds = tmp / "creds"
    sides = "".join(f"{k} = {toml_value(v)}\n" for k, v in SIDES[who].items())
    return (
        f'[daemon]\naddresses = ["{me}"]\ncontrol_socket = "{tmp / "control"}"\n'
        f'pfkey_socket = "{tmp / "pfkey"}"\ncredentials = "{creds}"\n\n'
        f'[connections.home]\nlocal_addrs = ["{me}"]\nremote_addrs = ["{peer}"]\n'
        f'proposals = ["aes128gcm16-prfsha256-x25519"]\n{sides}\n'
        f'[connections.home.children.net]\nlocal_ts = ["{nets[0]}"]\n'
        f'remote_ts = ["{nets[1]}"]\nesp_proposals = ["aes128gcm16"]\n'
    )


def test_certificates_in_status_and_a_crl_on_sighup(tmp_path: Path) -> None:
    gw_addr, carol_addr = loopback_pair()
    nets = ("10.1.0.0/16", "10.2.0.0/16")
    gw_pki = gateway_credentials(tmp_path / "gw" / "creds")
    gateway_credentials(tmp_path / "carol" / "creds", carol=True)
    gw_text = config(tmp_path / "gw", "gw", gw_addr, carol_addr, nets)
    carol_text = config(tmp_path / "carol", "carol", carol_addr, gw_addr, nets[::-1])
    with (
        larval_run(tmp_path / "gw", gw_addr, carol_addr, *nets, text=gw_text) as gw,
        larval_run(tmp_path / "carol", carol_addr, gw_addr, *nets[::-1], text=carol_text) as carol,
    ):
        up = carol.cli("up", "home/net")
        assert up.returncode == 0, up.stderr
        for d in (gw, carol):
            d.wait_log("CHILD_SA net installed")
        status = gw.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        (sa,) = json.loads(status.stdout)["ike_sas"]
        issuer = CA.subject.rfc4514_string()
        assert sa["auth_remote"]["method"] == "pubkey"
        assert (sa["auth_remote"]["subject"], sa["auth_remote"]["issuer"]) == (
            CAROL.subject.rfc4514_string(), issuer)  # fmt: skip
        assert (sa["auth_local"]["subject"], sa["auth_local"]["issuer"]) == (
            GW.subject.rfc4514_string(), issuer)  # fmt: skip
        text = gw.cli("status").stdout
        assert f"  remote authentication: pubkey {sa['auth_remote']['scheme']}, " \
            f"{CAROL.subject.rfc4514_string()}, issued by {issuer}" in text  # fmt: skip
        # The CA revokes carol; the gateway reloads, and her next IKE_SA is refused.
        gw_pki.crl([CAROL])
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_log("connections changed home")
        assert carol.cli("down", "home").returncode == 0
        assert carol.cli("up", "home/net").returncode == 0
        gw.wait_log("revoked (keyCompromise)")
        assert gw.log_text().count("CHILD_SA net installed") == 1
