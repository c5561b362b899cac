"""`larval profile`: a gateway's remote-access connection as a native client's profile,
parsed back (`plistlib`, `json`, the PowerShell lines) and its values checked; and every
refusal named, exit 2, one line, no traceback, no password."""

from __future__ import annotations

import base64
import json
import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from larval.cli import main
from tests.daemon.gateway import CA, gateway_credentials, toml_value

PASSWORD = "carol-Password-1"
DER = CA.public_bytes(serialization.Encoding.DER)


def gateway(tmp: Path, carol_cert: bool = True, **changes: Any) -> Path:
    """A gateway's configuration file (mode 600) with its credentials under `tmp`: the
    connection rw (certificate vpn.example.org, EAP-MSCHAPv2 clients, pool rw), and
    `changes` to rw's keys (None removes one); `carol_cert`: carol's certificate and key
    among the credentials."""
    creds = tmp / "creds"
    gateway_credentials(creds, carol=carol_cert)
    rw: dict[str, Any] = {
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["%any"],
        "proposals": ["aes256gcm16-prfsha384-ecp384", "aes128-sha256-x25519"],
        "pools": ["rw"],
        "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": "vpn.example.org"},
        "remote": {"auth": "eap-mschapv2", "eap_id": "%any"},
    }
    rw.update(changes)
    rw = {k: v for k, v in rw.items() if v is not None}
    lines = [f'[daemon]\ncredentials = "{creds}"', '[pools.rw]\naddrs = "10.3.0.0/24"',
             "[connections.rw]"]  # fmt: skip
    lines += [f"{k} = {toml_value(v)}" for k, v in rw.items()]
    lines += ["[connections.rw.children.net]", 'local_ts = ["203.0.113.0/24"]',
              'remote_ts = ["10.3.0.0/24"]',
              'esp_proposals = ["aes128gcm16-ecp256", "aes256-sha256"]',
              "[connections.s2s]", 'local_addrs = ["192.0.2.1"]',
              'remote_addrs = ["192.0.2.9"]',
              "[secrets.eap-carol]", 'id = "carol"', f'secret = "{PASSWORD}"',
              "[secrets.ike-s2s]", 'secret = "s2s-psk-0123456789abcdef"']  # fmt: skip
    path = tmp / "larval.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def profile(tmp: Path, client: str, *extra: str, config: Path | None = None) -> bytes:
    out = tmp / f"profile.{client}"
    args = ["profile", "rw", "--user", "carol", "--for", client, "-o", str(out),
            "-c", str(config or gateway(tmp)), *extra]  # fmt: skip
    assert main(args) == 0
    data = out.read_bytes()
    assert PASSWORD.encode() not in data
    return data


def test_apple_mobileconfig_parses_back_with_the_gateway_and_its_ca(tmp_path: Path) -> None:
    plist = plistlib.loads(profile(tmp_path, "apple"))
    assert plist["PayloadType"] == "Configuration" and plist["PayloadVersion"] == 1
    root, vpn = plist["PayloadContent"]
    assert root["PayloadType"] == "com.apple.security.root"
    assert root["PayloadContent"] == DER
    assert vpn["PayloadType"] == "com.apple.vpn.managed" and vpn["VPNType"] == "IKEv2"
    ikev2 = vpn["IKEv2"]
    assert ikev2["RemoteAddress"] == "192.0.2.1"
    assert ikev2["RemoteIdentifier"] == "vpn.example.org"
    assert ikev2["LocalIdentifier"] == ikev2["AuthName"] == "carol"
    assert ikev2["AuthenticationMethod"] == "None" and ikev2["ExtendedAuthEnabled"] == 1
    assert "AuthPassword" not in ikev2
    assert ikev2["ServerCertificateIssuerCommonName"] == "Example CA"
    # The gateway's first proposal, in Apple's words; for an AEAD the PRF's hash.
    assert ikev2["IKESecurityAssociationParameters"] == {
        "EncryptionAlgorithm": "AES-256-GCM", "IntegrityAlgorithm": "SHA2-384",
        "DiffieHellmanGroup": 20, "LifeTimeInMinutes": 240,
    }  # fmt: skip
    assert ikev2["ChildSecurityAssociationParameters"] == {
        "EncryptionAlgorithm": "AES-128-GCM", "DiffieHellmanGroup": 19, "LifeTimeInMinutes": 60,
    }  # fmt: skip
    assert ikev2["EnablePFS"] == 1
    uuids = {plist["PayloadUUID"], root["PayloadUUID"], vpn["PayloadUUID"]}
    assert len(uuids) == 3
    # The same profile again: the same UUIDs, so that it replaces the installed one.
    again = plistlib.loads(profile(tmp_path, "apple"))
    assert again["PayloadUUID"] == plist["PayloadUUID"]


def test_apple_takes_the_first_proposal_it_knows(tmp_path: Path) -> None:
    config = gateway(tmp_path, proposals=["aes192-sha512-x448", "aes128-sha256-modp3072"])
    plist = plistlib.loads(profile(tmp_path, "apple", config=config))
    params = plist["PayloadContent"][1]["IKEv2"]["IKESecurityAssociationParameters"]
    assert params["EncryptionAlgorithm"] == "AES-128"
    assert params["IntegrityAlgorithm"] == "SHA2-256"
    assert params["DiffieHellmanGroup"] == 15


def test_sswan_parses_back_with_the_values_charon_needs(tmp_path: Path) -> None:
    sswan = json.loads(profile(tmp_path, "android"))
    assert sswan["type"] == "ikev2-eap"
    assert sswan["remote"] == {"addr": "192.0.2.1", "id": "vpn.example.org",
                               "cert": base64.b64encode(DER).decode()}  # fmt: skip
    assert sswan["local"] == {"eap_id": "carol"}
    assert sswan["ike-proposal"] == "aes256gcm16-prfsha384-ecp384"
    assert sswan["esp-proposal"] == "aes128gcm16-ecp256"
    assert sswan["split-tunneling"] == {"subnets": ["203.0.113.0/24"]}
    assert len(sswan["uuid"]) == 36 and sswan["name"] == "vpn.example.org (rw)"


def test_sswan_of_a_certificate_client(tmp_path: Path) -> None:
    # No certificate of carol's at hand: the app lets her pick one on the device.
    config = gateway(tmp_path, carol_cert=False,
                     remote={"auth": "pubkey", "id": "*@example.org"})  # fmt: skip
    out = tmp_path / "c.sswan"
    args = ["profile", "rw", "--user", "carol@example.org", "--for", "android", "-o",
            str(out), "-c", str(config)]  # fmt: skip
    assert main(args) == 0
    sswan = json.loads(out.read_text())
    assert sswan["type"] == "ikev2-cert" and sswan["local"] == {"id": "carol@example.org"}


def test_windows_script_adds_the_vpn_with_constants_windows_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = profile(tmp_path, "windows", "--server", "vpn.example.org").decode()
    assert "\r\n" in text
    lines = text.splitlines()
    add = next(line for line in lines if line.startswith("Add-VpnConnection"))
    assert "-ServerAddress 'vpn.example.org'" in add and "-TunnelType Ikev2" in add
    assert "-AuthenticationMethod Eap" in add
    ipsec = next(line for line in lines if line.startswith("Set-VpnConnectionIPsecConfiguration"))
    for option in ("-EncryptionMethod GCMAES256", "-IntegrityCheckMethod SHA384",
                   "-DHGroup ECP384", "-CipherTransformConstants GCMAES128",
                   "-AuthenticationTransformConstants GCMAES128", "-PfsGroup ECP256"):  # fmt: skip
        assert option in ipsec
    assert any(line.startswith("Import-Certificate") and "LocalMachine\\Root" in line
               for line in lines)  # fmt: skip
    pem = CA.public_bytes(serialization.Encoding.PEM).decode().strip()
    assert pem.replace("\n", "\r\n") in text
    assert "larval: warning: Windows checks" not in capsys.readouterr().err


@pytest.mark.parametrize("client", ["apple", "windows"])
def test_a_gateway_offering_its_network_only_is_warned_of_clients_asking_for_all(
    tmp_path: Path, client: str, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(tmp_path, client)
    err = capsys.readouterr().err
    assert "asks for all traffic (0.0.0.0/0) through the tunnel" in err
    assert "offers 203.0.113.0/24 only (its local_ts)" in err


def test_windows_warns_of_an_address_the_certificate_does_not_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(tmp_path, "windows")
    err = capsys.readouterr().err
    assert "larval: warning: Windows checks the server address 192.0.2.1" in err
    assert "13801" in err


def test_windows_refuses_a_gateway_with_no_proposal_it_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gateway(tmp_path, proposals=["chacha20poly1305-prfsha256-x25519"])
    args = ["profile", "rw", "--user", "carol", "--for", "windows", "-o", "-", "-c", str(config)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("larval: connections.rw.proposals: Windows can use none of "
                          "chacha20poly1305-prfsha256-x25519; it knows")  # fmt: skip


def test_output_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[bytes]) -> None:
    config = gateway(tmp_path)
    args = ["profile", "rw", "--user", "carol", "--for", "android", "-o", "-", "-c", str(config)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["local"] == {"eap_id": "carol"}


@pytest.mark.parametrize(
    ("args", "changes", "expected"),
    [
        (["nosuch", "--user", "carol"], {}, "no connection 'nosuch' (connections: rw, s2s)"),
        (["s2s", "--user", "carol"], {}, "connections.s2s is not remote access: it names no pools"),
        (["rw", "--user", "dave"], {},
         "connections.rw: unknown user 'dave': no [secrets.eap-NAME] has id = 'dave'"),
        (["rw", "--user", "carol"], {"remote": {"auth": "psk"}, "local": {"auth": "psk"}},
         "connections.rw is not remote access: its clients prove themselves with a PSK"),
        (["rw", "--user", "dave@example.net"],
         {"remote": {"auth": "pubkey", "id": "*@example.org"}},
         "connections.rw.remote.id: unknown user 'dave@example.net': the connection takes "
         "*@example.org only"),
        (["rw", "--user", "carol", "--for", "apple"], {"remote": {"auth": "eap-md5"}},
         "Apple's password EAP is EAP-MSCHAPv2"),
        (["rw", "--user", "carol@example.org", "--for", "apple"],
         {"remote": {"auth": "pubkey"}, "carol_cert": False},
         "must carry the client's key (a PKCS#12): give --cert FILE --key FILE"),
        (["rw", "--user", "carol@example.org"],
         {"remote": {"auth": "eap-tls"},
          "local": {"auth": "eap-tls", "certs": ["gw.pem"], "id": "vpn.example.org"}},
         "connections.rw.local.auth: the gateway proves itself by EAP only (RFC 5998); "
         'native clients check a certificate in IKE (auth = "pubkey")'),
    ],
)  # fmt: skip
def test_refusals_name_what_is_wrong(
    tmp_path: Path, args: list[str], changes: dict[str, Any], expected: str
) -> None:
    config = gateway(tmp_path, **changes)
    client = [] if "--for" in args else ["--for", "android"]
    command = [sys.executable, "-m", "larval", "profile", *args, *client, "-c", str(config),
               "-o", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("larval: ") and expected in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_says_no_password_is_written() -> None:
    proc = subprocess.run([sys.executable, "-m", "larval", "profile", "--help"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0
    assert "never holds a password" in " ".join(proc.stdout.split())


def test_without_o_the_profile_is_named_after_the_connection_and_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gateway(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "rw", "--user", "carol", "--for", "apple", "-c", str(config)]) == 0
    assert plistlib.loads((tmp_path / "rw-carol.mobileconfig").read_bytes())["PayloadVersion"] == 1
    assert capsys.readouterr().out.startswith(
        "rw-carol.mobileconfig: apple profile of rw for carol"
    )


def test_windows_certificate_client_uses_the_machine_certificate(tmp_path: Path) -> None:
    config = gateway(tmp_path, remote={"auth": "pubkey", "id": "%any"})
    out = tmp_path / "c.ps1"
    args = ["profile", "rw", "--user", "carol@example.org", "--for", "windows", "-o", str(out),
            "-c", str(config)]  # fmt: skip
    assert main(args) == 0
    assert "-AuthenticationMethod MachineCertificate" in out.read_text()


def test_windows_warns_of_a_gateway_expecting_the_ike_identity_as_eap_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without eap_id the gateway expects the EAP identity to be the IKE identity, which a
    # Windows client never makes it: its IKE identity is its address.
    profile(tmp_path, "windows", config=gateway(tmp_path, remote={"auth": "eap-mschapv2"}))
    err = capsys.readouterr().err
    assert "Windows sends its address as its IKE identity" in err
    assert 'remote.eap_id = "%any"' in err
