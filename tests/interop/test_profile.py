"""A `.sswan` profile written by ``larval profile`` connects: its values, turned into a
charon road warrior's swanctl.conf (what the strongSwan app makes of them: the server's
address and identity, the CA, EAP-MSCHAPv2 with the profile's EAP identity, its IKE and
ESP proposals, ``vips = 0.0.0.0`` and the split-tunneling subnets as its remote
traffic selectors), bring charon up
against the larval gateway the profile was written from: an address of its pool, a
CHILD_SA narrowed to it, a ping from it to the gateway's network.

A certificate user's profile (``ikev2-cert``) carries the user's certificate and key as
the PKCS#12 ``local.p12``: charon loads that very PKCS#12 with the passphrase larval
printed, and proves itself with it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from larval.bench import charon as charon_module
from tests.interop.certs import IDS, CertSet, Spec, make_set
from tests.interop.harness import (
    INNER,
    NET,
    OUTER,
    LarvalDaemon,
    Topology,
    larval_config,
    needs_charon,
    needs_netns,
)
from tests.interop.test_eap import needs_mschapv2
from tests.interop.test_eap_tls import needs_eap_tls

pytestmark = [needs_netns, needs_charon]

PASSWORD = "carol-Profile-Password-1"
SUN, MOON = IDS["b"], IDS["a"]
POOL, VIP = "10.3.0.0/24", "10.3.0.1"


def swanctl_from_sswan(profile: dict[str, Any], local_addr: str, password: str) -> str:
    """The road warrior the strongSwan app would be, from a `.sswan`'s values (the
    password, or a certificate user's PKCS#12 passphrase, is the one the user types: it
    is not in the profile). A certificate user's PKCS#12 is charon's ``pkcs12/user.p12``,
    written by the caller."""
    assert profile["type"] in ("ikev2-eap", "ikev2-cert", "ikev2-eap-tls")
    proposals = (
        f"\n        proposals = {profile['ike-proposal']}" if "ike-proposal" in profile else ""
    )
    esp = f"\n                esp_proposals = {profile['esp-proposal']}" \
        if "esp-proposal" in profile else ""  # fmt: skip
    if profile["type"] in ("ikev2-cert", "ikev2-eap-tls"):
        # The certificate is found by the identity among those loaded (the PKCS#12's);
        # by EAP-TLS the identity is the EAP identity too.
        auth = "pubkey" if profile["type"] == "ikev2-cert" else "eap-tls"
        local = f"auth = {auth}\n            id = {profile['local']['id']}"
        secret = f'pkcs12-user {{\n        file = user.p12\n        secret = "{password}"'
    else:
        eap_id = profile["local"]["eap_id"]
        local = f"auth = eap-mschapv2\n            eap_id = {eap_id}"
        secret = f'eap-user {{\n        id = {eap_id}\n        secret = "{password}"'
    # The app's TSr: the split-tunneling subnets, else everything.
    remote_ts = ",".join(profile.get("split-tunneling", {}).get("subnets", ["0.0.0.0/0"]))
    return f"""connections {{
    profile {{
        version = 2
        local_addrs = {local_addr}
        remote_addrs = {profile["remote"]["addr"]}
        encap = yes
        mobike = no
        vips = 0.0.0.0{proposals}
        local {{
            {local}
        }}
        remote {{
            auth = pubkey
            id = {profile["remote"]["id"]}
        }}
        children {{
            net {{
                remote_ts = {remote_ts}{esp}
            }}
        }}
    }}
}}
secrets {{
    {secret}
    }}
}}
"""


def gateway(topo: Topology, certs: CertSet, tmp: Path, remote: str) -> LarvalDaemon:
    """The larval gateway in b (sun's certificate, pool rw, its network b), started;
    `remote`: how its clients prove themselves."""
    config = larval_config(
        topo.b, proposals=["aes256gcm16-prfsha384-ecp384", "aes128-sha256-x25519"],
        esp=["aes256gcm16", "aes128gcm16"], start_action="none",
        local=f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}', remote=remote,
        credentials=str(certs.credentials(tmp / "sun-credentials", "sun")),
    )  # fmt: skip
    config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
    config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{POOL}"]')
    config += f'\n[pools.rw]\naddrs = "{POOL}"\ndns = ["10.3.0.53"]\n'
    config += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{PASSWORD}"\n'
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    return larval


def ping_from_vip(topo: Topology) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", topo.a.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
         "-I", VIP, INNER["b"]],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def ca_credentials(profile: dict[str, Any], directory: Path) -> Path:
    """A charon credentials directory with the CA the app would import, from the profile."""
    ca = x509.load_der_x509_certificate(base64.b64decode(profile["remote"]["cert"]))
    (directory / "x509ca").mkdir(parents=True)
    (directory / "x509ca" / "profile-ca.pem").write_bytes(
        ca.public_bytes(serialization.Encoding.PEM)
    )
    return directory


@needs_mschapv2
def test_a_sswan_profile_turned_into_a_charon_client_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    monkeypatch.setattr(charon_module, "PLUGINS",
                        charon_module.PLUGINS + " eap-identity eap-mschapv2")  # fmt: skip
    with Topology(tmp_path) as topo:
        larval = gateway(topo, certs, tmp_path, '{ auth = "eap-mschapv2", eap_id = "%any" }')

        out = tmp_path / "carol.sswan"
        written = subprocess.run(
            [sys.executable, "-m", "larval", "profile", "s2s", "--user", "carol", "--for",
             "android", "-c", str(larval.config), "-o", str(out)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert written.returncode == 0, written.stderr
        profile = json.loads(out.read_text())
        assert PASSWORD not in out.read_text()
        assert profile["remote"]["addr"] == OUTER["b"] and profile["remote"]["id"] == SUN
        assert profile["ike-proposal"] == "aes256gcm16-prfsha384-ecp384"
        assert profile["esp-proposal"] == "aes256gcm16"
        assert profile["split-tunneling"] == {"subnets": [NET["b"]]}

        # The CA the app would import, from the profile itself.
        moon_credentials = ca_credentials(profile, tmp_path / "moon-credentials")
        charon = topo.charon(
            topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
            swanctl=swanctl_from_sswan(profile, OUTER["a"], PASSWORD),
            credentials=moon_credentials,
        )  # fmt: skip
        # charon is told not to install the address itself (install_virtual_ip = no).
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-4000:]
        assert f"installing new virtual IP {VIP}" in log, log[-4000:]
        listing = charon.list_sas()
        assert "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384" in listing, listing
        assert f"local  {VIP}/32\n" in listing and f"remote {NET['b']}\n" in listing, listing
        result = ping_from_vip(topo)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        (ike,) = [sa for sa in larval.status()["ike_sas"] if sa["state"] == "established"]  # type: ignore[union-attr]
        assert ike["auth_remote"]["identity"] == "carol", ike
        assert ike["virtual_ips"] == [VIP], ike


@pytest.mark.parametrize(
    ("auth", "kind", "proof"),
    [
        ("pubkey", "ikev2-cert", f"authentication of '{MOON}' (myself) with ECDSA"),
        pytest.param("eap-tls", "ikev2-eap-tls", "EAP method EAP_TLS succeeded, MSK established",
                     marks=needs_eap_tls),
    ],
)  # fmt: skip
def test_a_certificate_users_sswan_with_its_pkcs12_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str, kind: str, proof: str
) -> None:
    """moon's certificate and key go into the profile (``--cert``/``--key``); charon loads
    the profile's PKCS#12 with the passphrase larval printed once, and the gateway takes
    moon by that certificate, in IKE or by EAP-TLS."""
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    moon = certs.ends["moon"]
    plugins = " pkcs7 pkcs12" + (" eap-identity eap-tls" if auth == "eap-tls" else "")
    monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + plugins)
    own = tmp_path / "moon-own"
    own.mkdir()
    (own / "moon.pem").write_bytes(moon.cert.public_bytes(serialization.Encoding.PEM))
    (own / "moon.key").write_bytes(moon.key_pem)
    (own / "moon.key").chmod(0o600)
    with Topology(tmp_path) as topo:
        remote = '{ auth = "pubkey", id = "%any" }' if auth == "pubkey" else \
            '{ auth = "eap-tls", eap_id = "%any" }'  # fmt: skip
        larval = gateway(topo, certs, tmp_path, remote)
        out = tmp_path / "moon.sswan"
        written = subprocess.run(
            [sys.executable, "-m", "larval", "profile", "s2s", "--user", MOON, "--for",
             "android", "-c", str(larval.config), "-o", str(out), "--cert",
             str(own / "moon.pem"), "--key", str(own / "moon.key")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert written.returncode == 0, written.stderr
        (passphrase,) = re.findall(r"\(shown only now\): (\S+)\n", written.stderr)
        text = out.read_text()
        assert passphrase not in text and moon.key_pem.decode() not in text
        profile = json.loads(text)
        assert profile["type"] == kind and profile["local"]["id"] == MOON
        assert profile["remote"]["addr"] == OUTER["b"] and profile["remote"]["id"] == SUN

        # What the app holds once the user imported the profile: the CA and the PKCS#12.
        moon_credentials = ca_credentials(profile, tmp_path / "moon-credentials")
        (moon_credentials / "pkcs12").mkdir()
        (moon_credentials / "pkcs12" / "user.p12").write_bytes(
            base64.b64decode(profile["local"]["p12"])
        )
        charon = topo.charon(
            topo.a, proposals="aes128-sha256-x25519", esp="aes128gcm16",
            swanctl=swanctl_from_sswan(profile, OUTER["a"], passphrase),
            credentials=moon_credentials,
        )  # fmt: skip
        topo.a.ns.run(["ip", "address", "add", f"{VIP}/32", "dev", "lo"])
        charon.initiate("net")
        log = (charon.dir / "charon.log").read_text(errors="replace")
        assert proof in log, log[-4000:]
        assert f"installing new virtual IP {VIP}" in log, log[-4000:]
        result = ping_from_vip(topo)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-3000:])
        (ike,) = [sa for sa in larval.status()["ike_sas"] if sa["state"] == "established"]  # type: ignore[union-attr]
        assert ike["auth_remote"]["method"] == auth, ike
        assert ike["auth_remote"]["subject"].endswith(f"CN={MOON}"), ike
        assert ike["virtual_ips"] == [VIP], ike
