"""No secret in larval's log: charon and larval in namespaces, every larval logger at
DEBUG, in text and in JSON; an IKEv2 PSK run with a CHILD_SA and a ping, an IKEv1 one, and
an EAP-MSCHAPv2 run against larval's certificate. Then every secret the run used is
gathered: the PSK, the EAP password, larval's private key, charon's own account at its
level 4 (the DH shared secret, SKEYSEED/SKEYID, SK_*, the nonces, AUTH, the CHILD_SAs'
keys), the tables `larval keys --wireshark` writes (SK_ei/er/ai/ar, the ESP keys) and the
control socket's ``ike.keys``; none may be in any line, raw, in hex of either case, or
in base64. The log has the INFO line of each exchange, and in JSON every line is one
JSON object."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from larval.net.control import control_request
from tests.interop.certs import Spec, make_set
from tests.interop.harness import PSK, LarvalDaemon, Topology, needs_charon, needs_netns
from tests.interop.ra_setup import (
    SUN_CERT_TOML,
    charon_peer,
    larval_peer,
    needs_mschapv2,
    with_plugins,
)
from tests.interop.test_eap import charon_mschapv2_client

pytestmark = [needs_netns, needs_charon]

#: (IKE version, IKE proposal, ESP proposal)
RUNS = {
    "v2-psk": (2, "aes128-sha256-x25519", "aes128gcm16"),
    "v1-psk": (1, "aes128-sha256-modp2048", "aes128-sha256"),
}
EAP_PASSWORD = "carol-Log-Secret-Password-7"

# charon's chunk dumps at level 4: ``LABEL => N bytes @ 0x...`` then rows of hex.
_PREFIX = re.compile(r"^\S+ \d+\[\w+\] (?:<[^>]*> )?")
_HEAD = re.compile(r"^(.*?) => (\d+) bytes @")
_ROW = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} ?)+)")
#: The dumps that are secrets (not IVs, ICVs, ciphertext, padding or hashes of the wire).
_SECRET = re.compile(r"secret|SKEYSEED|SKEYID|^SK_p$|\bkey\b|keypad|^AUTH = |seed$|MSK")


def charon_dumps(text: str) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) of each chunk charon's log dumps."""
    label: str | None = None
    want, got = 0, bytearray()
    for line in text.splitlines():
        body = _PREFIX.sub("", line, count=1)
        if label is not None:
            row = _ROW.match(body)
            if row:
                got += bytes.fromhex(row.group(1).replace(" ", ""))
                if len(got) >= want:
                    yield label, bytes(got[:want])
                    label = None
                continue
            label = None
        head = _HEAD.match(body)
        if head and int(head.group(2)) > 0:
            label, want, got = head.group(1).strip(), int(head.group(2)), bytearray()


def charon_secrets(text: str) -> set[bytes]:
    """What charon's log at level 4 shows of the keys and nonces: the seeds are the nonces
    (IKEv2's SKEYSEED seed Ni | Nr; IKEv1's KEYMAT seed protocol | SPI | Ni | Nr)."""
    found: set[bytes] = set()
    for label, data in charon_dumps(text):
        if not _SECRET.search(label):
            continue
        found.add(data)
        if label == "seed":
            found |= {data[: len(data) // 2], data[len(data) // 2 :]}
        elif label.endswith("SA seed"):
            nonces = data[5:]
            found |= {nonces[: len(nonces) // 2], nonces[len(nonces) // 2 :]}
    return found


def hex_values(value: object) -> Iterator[bytes]:
    """Every hex string of 32 digits or more in a JSON value (the keys of ``ike.keys``;
    not the SPIs, which are no secret)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from hex_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from hex_values(v)
    elif isinstance(value, str):
        for digits in re.findall(r"(?:0x)?([0-9a-fA-F]{32,})", value):
            if len(digits) % 2 == 0:
                yield bytes.fromhex(digits)


def table_secrets(directory: Path) -> set[bytes]:
    """The keys of `larval keys --wireshark`'s tables: every hex field of 16 bytes or more
    (not the SPIs)."""
    found: set[bytes] = set()
    for table in directory.iterdir():
        for line in table.read_text().splitlines():
            for field in line.split(","):
                digits = field.strip().strip('"').removeprefix("0x")
                if len(digits) >= 32 and re.fullmatch(r"[0-9a-fA-F]+", digits):
                    found.add(bytes.fromhex(digits))
    return found


def forms(secret: bytes) -> set[bytes]:
    """How a secret could be written: raw, hex in either case, base64 (standard and URL,
    padded or not), inside a bytes repr; and so the first 12 bytes of it, for a line that
    shows a key cut short."""
    out: set[bytes] = set()
    for part in (secret, secret[:12]) if len(secret) > 12 else (secret,):
        b64 = base64.b64encode(part)
        out |= {part, part.hex().encode(), part.hex().upper().encode(), b64, b64.rstrip(b"="),
                base64.urlsafe_b64encode(part).rstrip(b"=")}  # fmt: skip
        if len(part) >= 8:
            out.add(repr(part)[2:-1].encode())
    return out


def assert_no_secret(log: bytes, secrets: set[bytes]) -> None:
    secrets = {s for s in secrets if len(s) >= 8}
    assert len(secrets) >= 10, secrets  # what was gathered is worth the name
    for line in log.splitlines():
        for secret in secrets:
            for form in forms(secret):
                assert form not in line, (secret.hex(), line[:300])


def check_lines(log: bytes, log_format: str) -> list[dict[str, object]]:
    """The log's lines as records: in JSON every line is one object with the fields;
    text lines are read for the logger, level and message."""
    records: list[dict[str, object]] = []
    for line in log.decode().splitlines():
        if log_format == "json":
            record = json.loads(line)
            assert {"time", "level", "logger", "subsystem", "message"} <= record.keys(), line
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["time"])
            records.append(record)
        else:
            m = re.match(r"\S+ \S+ (\S+) (\w+) (.*)", line)
            if m:
                records.append({"logger": m.group(1), "level": m.group(2).lower(),
                                "message": m.group(3)})  # fmt: skip
    return records


def larval_keys(topo: Topology, directory: Path) -> set[bytes]:
    """The live SAs' keys as `larval keys --wireshark` and the ``ike.keys`` op give them."""
    control = str(topo.b.dir / "control")
    done = subprocess.run(
        [sys.executable, "-m", "larval", "keys", "--wireshark", str(directory),
         "--control-socket", control],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return table_secrets(directory) | set(hex_values(control_request(control, {"op": "ike.keys"})))


@pytest.fixture(params=["text", "json"])
def log_format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every larval logger at DEBUG, in this format."""
    fmt: str = request.param
    monkeypatch.setattr(LarvalDaemon, "log_args", ("--log-level", "debug", "--log-format", fmt))
    return fmt


@pytest.mark.parametrize("run", list(RUNS))
def test_no_secret_of_a_psk_run_in_the_debug_log(tmp_path: Path, run: str, log_format: str) -> None:
    version, ike, esp = RUNS[run]
    with Topology(tmp_path) as topo:
        topo.charon_loglevel = 4
        larval = topo.larval(topo.b, proposals=[ike], esp=[esp], start_action="none",
                             version=version)  # fmt: skip
        charon = topo.charon(topo.a, proposals=ike, esp=esp, version=version)
        charon.initiate()
        status = larval.wait_for("child")
        ping = topo.a.ping(count=3)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        secrets = larval_keys(topo, tmp_path / "keys")
        charon_log = (charon.dir / "charon.log").read_text()
    log = larval.log.read_bytes()
    secrets |= charon_secrets(charon_log) | {PSK.encode()}
    records = check_lines(log, log_format)
    assert any(r["level"] == "debug" and str(r["logger"]).startswith("larval.") for r in records)
    exchange = "IKE_AUTH" if version == 2 else "Quick Mode"
    (child,) = status["child_sas"]  # type: ignore[call-overload]
    line = re.compile(rf"{exchange} responded, ok, peer 192\.0\.2\.1\[\d+\], SPIs ")
    done = [r for r in records if line.search(str(r["message"]))]
    assert len(done) == 1 and f"SPIs {child['spi_in']} in / {child['spi_out']} out" in str(
        done[0]["message"]
    ), [r["message"] for r in records if r["level"] == "info"]
    assert_no_secret(log, secrets)


@needs_mschapv2
def test_no_secret_of_an_eap_run_in_the_debug_log(
    tmp_path: Path, log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_set(Spec("ecdsa", 256), tmp_path / "pki")
    with Topology(tmp_path) as topo:
        topo.charon_loglevel = 4
        with_plugins(monkeypatch, "eap-identity eap-mschapv2")
        charon = charon_peer(topo, charon_mschapv2_client(EAP_PASSWORD),
                             credentials=certs.credentials(tmp_path / "moon", None))  # fmt: skip
        sun = certs.credentials(tmp_path / "sun", "sun")
        larval = larval_peer(
            topo, start_action="none", local=SUN_CERT_TOML,
            remote='{ auth = "eap-mschapv2", eap_id = "%any" }',
            secrets={"carol": EAP_PASSWORD}, credentials=str(sun),
        )  # fmt: skip
        charon.initiate()
        larval.wait_for("child")
        ping = topo.a.ping(count=3)
        assert " 0% packet loss" in ping.stdout, ping.stdout
        secrets = larval_keys(topo, tmp_path / "keys")
        charon_log = (charon.dir / "charon.log").read_text()
    log = larval.log.read_bytes()
    key = serialization.load_pem_private_key((sun / "private" / "sun.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    secrets |= charon_secrets(charon_log) | {
        EAP_PASSWORD.encode(),
        key.private_numbers().private_value.to_bytes(32, "big"),
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    }  # fmt: skip
    records = check_lines(log, log_format)
    assert any("IKE_AUTH responded, ok" in str(r["message"]) for r in records)
    assert_no_secret(log, secrets)


def test_the_gathering_finds_a_secret_that_is_there() -> None:
    """The check itself: a key written in any of the forms is found."""
    secret = bytes(range(1, 33))
    dump = (f"10:00:00 07[IKE] <s2s|1> Sk_ei secret => 32 bytes @ 0x1\n"
            f"10:00:00 07[IKE] <s2s|1>    0: {' '.join(f'{b:02X}' for b in secret[:16])}  ....\n"
            f"10:00:00 07[IKE] <s2s|1>   16: {' '.join(f'{b:02X}' for b in secret[16:])}  ....\n"
            "10:00:00 07[IKE] <s2s|1> IV => 2 bytes @ 0x2\n"
            "10:00:00 07[IKE] <s2s|1>    0: AA BB  ..\n")  # fmt: skip
    assert charon_secrets(dump) == {secret}
    others = {bytes([n]) * 16 for n in range(10, 20)}
    for form in (secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
                 secret[:12].hex()):  # fmt: skip
        with pytest.raises(AssertionError):
            assert_no_secret(f"x debug key {form} y".encode(), others | {secret})
    assert_no_secret(b"x debug SPIs 0011223344556677/8899aabbccddeeff", others | {secret})
