"""`larval check -c FILE`: the configuration, its credentials and policies read as
`larval run` reads them; every problem named with file, key and line; a summary when all
is well; weak choices as warnings; the same verdict as `larval run`; no secret shown."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from larval.cli import main
from larval.daemon.config import line_of
from larval.daemon.loading import gather, load_daemon
from larval.errors import LarvalError
from tests.badinput import larval, snapshot, write_private
from tests.badinput.test_config import PSK, config
from tests.badinput.test_config import (
    test_a_bad_value_is_one_line_naming_the_key as _bad_value_cases,
)
from tests.daemon.gateway import gateway_credentials
from tests.test_daemon_config import DESIGN_TOML

EAP_PASSWORD = "never-Shown-eap-password-1"
OVERLAPPING_POOLS = '\n[pools.a]\naddrs = "10.3.0.0/24"\n\n[pools.b]\naddrs = "10.3.0.128/25"\n'


def write(tmp: Path, text: str, *, mode: int = 0o600, name: str = "larval.toml") -> Path:
    path = write_private(tmp / name, text)
    path.chmod(mode)
    return path


def check_json(path: Path, *args: str) -> tuple[int, dict[str, object]]:
    """`larval check --json` as a user runs it: its status and its object."""
    result = larval("check", "-c", str(path), "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def problems(report: dict[str, object]) -> list[dict[str, object]]:
    listed = report["problems"]
    assert isinstance(listed, list)
    return listed


def run_refuses(path: Path) -> bool:
    """Whether `larval run` refuses the file: it reads it through `load_daemon` before it
    opens anything (`IkeDaemon.__init__`)."""
    try:
        load_daemon(str(path))
    except LarvalError:
        return True
    return False


def with_credentials(tmp: Path, *, key_mode: int = 0o600) -> str:
    """The gateway's credentials under `tmp`, and the config's s2s proving itself with its
    certificate; the private key file's mode `key_mode`."""
    creds = tmp / "creds"
    gateway_credentials(creds)
    (creds / "private" / "gw.pem").chmod(key_mode)
    return str(creds)


def cert_config(tmp: Path, certs: str, creds: str) -> str:
    text = config(tmp, conn=f'local = {{ auth = "pubkey", certs = ["{certs}"] }}')
    return text.replace("[daemon]\n", f'[daemon]\ncredentials = "{creds}"\n', 1)


# -- each kind of problem, alone -----------------------------------------------------------

BROKEN: list[tuple[str, str, str, str]] = [
    # (case, how the file is broken, the key named, a part of the message)
    ("unknown key", "conn:colour = \"blue\"", "connections.s2s.colour", "unknown key; allowed:"),
    ("bad value type", 'conn:encap = "yes"', "connections.s2s.encap", "is not true or false"),
    ("unknown algorithm", 'child:esp_proposals = ["aes128-sha999"]',
     "connections.s2s.children.net.esp_proposals[0]", "unknown keyword 'sha999'"),
    ("weak algorithm", 'conn:proposals = ["aes128-sha256-modp1024"]',
     "connections.s2s.proposals[0]", "MODP 1024 is below 2048 bits"),
    ("bad traffic selector", 'sub:"203.0.113.0/24"=>"203.0.113.0/33"',
     "connections.s2s.children.net.local_ts[0]", "is not a prefix"),
    ("psk too short", "secret:hunter2", "secrets.ike-s2s.secret", "7 bytes, shorter than 16"),
    ("pools overlapping", f"tail:{OVERLAPPING_POOLS}", "pools.b.addrs", "overlaps pools.a"),
    ("metrics not an address", 'sub:[daemon]\n=>[daemon]\nmetrics = "localhost:9105"\n',
     "daemon.metrics", "'localhost' is not an IP address"),
    ("metrics IPv6 unbracketed", 'sub:[daemon]\n=>[daemon]\nmetrics = "::1:9105"\n',
     "daemon.metrics", "goes in brackets, as [::1]:9105"),
    ("metrics bad port", 'sub:[daemon]\n=>[daemon]\nmetrics = "127.0.0.1:65536"\n',
     "daemon.metrics", "the port must be 1-65535"),
    ("metrics no port", 'sub:[daemon]\n=>[daemon]\nmetrics = "[::1]"\n',
     "daemon.metrics", "is not ADDRESS:PORT"),
    ("metrics not a string", "sub:[daemon]\n=>[daemon]\nmetrics = 9105\n",
     "daemon.metrics", 'is not "ADDRESS:PORT"'),
]  # fmt: skip


def broken_text(tmp: Path, how: str) -> str:
    where, _, text = how.partition(":")
    if where == "conn":
        return config(tmp, conn=text)
    if where == "child":
        return config(tmp, child=text)
    if where == "secret":
        return config(tmp, secret=text)
    if where == "sub":
        old, new = text.split("=>")
        return config(tmp).replace(old, new, 1)
    return config(tmp) + text


@pytest.mark.parametrize(("case", "how", "key", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_problem_is_named_with_its_key_and_line(
    tmp_path: Path, case: str, how: str, key: str, message: str
) -> None:
    text = broken_text(tmp_path, how)
    path = write(tmp_path, text)
    before = snapshot(tmp_path)
    status, report = check_json(path)
    assert status == 2 and report["ok"] is False
    (problem,) = [p for p in problems(report) if p["severity"] == "error"]
    assert problem["file"] == str(path) and problem["key"] == key
    assert message in str(problem["message"])
    # The line is the key's own: the name of its last table part written there.
    line = problem["line"]
    assert isinstance(line, int)
    written = text.splitlines()[line - 1]
    assert key.split(".")[-1].split("[")[0] in written or written.startswith("[")
    assert PSK not in json.dumps(report) and "hunter2" not in json.dumps(report)
    assert run_refuses(path)
    assert snapshot(tmp_path) == before  # nothing opened, nothing written


def test_a_secrets_file_others_can_read(tmp_path: Path) -> None:
    path = write(tmp_path, config(tmp_path), mode=0o640)
    status, report = check_json(path)
    (problem,) = problems(report)
    assert status == 2 and problem["key"] is None and problem["line"] is None
    assert "readable by group or others (mode 0640); chmod 600 it" in str(problem["message"])
    assert run_refuses(path)


def test_a_duplicate_connection_is_not_toml_at_its_line(tmp_path: Path) -> None:
    text = config(tmp_path) + '\n[connections.s2s]\nlocal_addrs = ["192.0.2.2"]\n'
    path = write(tmp_path, text)
    status, report = check_json(path)
    (problem,) = problems(report)
    assert status == 2 and "not TOML" in str(problem["message"])
    assert problem["line"] == len(text.splitlines()) - 1
    assert run_refuses(path)


def test_a_missing_certificate_and_a_readable_key_are_named(tmp_path: Path) -> None:
    creds = with_credentials(tmp_path)
    path = write(tmp_path, cert_config(tmp_path, "missing.pem", creds))
    status, report = check_json(path)
    (problem,) = problems(report)
    assert status == 2 and problem["key"] == "connections.s2s.local.certs[0]"
    assert "'missing.pem' is not a loaded certificate" in str(problem["message"])
    assert isinstance(problem["line"], int) and run_refuses(path)

    creds = with_credentials(tmp_path / "readable", key_mode=0o644)
    junk = Path(creds) / "private" / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    junk.chmod(0o600)
    path = write(tmp_path, cert_config(tmp_path, "gw.pem", creds))
    status, report = check_json(path)
    named = {(p["file"], str(p["message"]).split(";")[0]) for p in problems(report)}
    assert status == 2
    assert (f"{creds}/private/gw.pem", "mode 0644, readable by group or others") in named
    assert any(file == str(junk) for file, _ in named)  # and one that does not parse
    assert "bm90IGEga2V5" not in json.dumps(report)
    assert run_refuses(path)


def test_a_file_that_is_no_config(tmp_path: Path) -> None:
    for path in (tmp_path / "none.toml", tmp_path):
        status, report = check_json(path)
        (problem,) = problems(report)
        assert status == 2 and problem["file"] == str(path) and problem["key"] is None


# -- all of them at once -------------------------------------------------------------------


def several(tmp: Path) -> str:
    """One file with a problem of each kind the file itself can have."""
    text = config(tmp, conn='colour = "blue"\nencap = "yes"\nproposals = ["3des-sha1-modp1024", '
                  '"aes128-sha256-x25519"]', secret="hunter2")  # fmt: skip
    text = text.replace('"203.0.113.0/24"', '"203.0.113.0/33"', 1)
    text += OVERLAPPING_POOLS
    text += f'\n[secrets.eap-carol]\nid = "carol"\nsecret = "{EAP_PASSWORD}"\n'
    return text.replace("[daemon]\n", '[daemon]\nmtu = "big"\n', 1)


SEVERAL_KEYS = {
    "daemon.mtu",
    "connections.s2s.colour",
    "connections.s2s.encap",
    "connections.s2s.proposals[0]",
    "connections.s2s.children.net.local_ts[0]",
    "secrets.ike-s2s.secret",
    "pools.b.addrs",
}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, several(tmp_path))
    status, report = check_json(path)
    assert status == 2 and report["errors"] == len(SEVERAL_KEYS)
    assert {p["key"] for p in problems(report)} == SEVERAL_KEYS
    for p in problems(report):
        assert set(p) == {"file", "key", "line", "message", "severity"}
        assert p["severity"] == "error" and isinstance(p["line"], int)
    weak = next(p for p in problems(report) if p["key"] == "connections.s2s.proposals[0]")
    for why in ("3DES", "SHA-1", "MODP 1024"):
        assert why in str(weak["message"])


def test_text_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    text = several(tmp_path)
    path = write(tmp_path, text)
    result = larval("check", "-c", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    mtu_line = text.splitlines().index('mtu = "big"') + 1
    assert f'{path}:{mtu_line}: error: daemon.mtu: "big" is not an integer >= 0' in lines
    for key in SEVERAL_KEYS:
        assert any(f": error: {key}: " in line for line in lines), key
    verdict = f"{path}: {len(SEVERAL_KEYS)} errors, 0 warnings: larval run would refuse it"
    assert lines[-1] == verdict


def test_larval_run_refuses_naming_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, several(tmp_path))
    before = snapshot(tmp_path)
    result = larval("run", "-c", str(path), timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(SEVERAL_KEYS) and lines[0].startswith(f"larval: {path}: ")
    for key in SEVERAL_KEYS:
        assert any(f"{path}: {key}: " in line for line in lines), key
    assert snapshot(tmp_path) == before


def test_no_secret_is_ever_shown(tmp_path: Path) -> None:
    text = several(tmp_path).replace('secret = "hunter2"', 'secret = "hunter2"\nids = 5', 1)
    text += '\n[secrets.private-gw]\nsecret = "a-key-Passphrase-0123"\n'
    path = write(tmp_path, text)
    for args in ((), ("--json",)):
        result = larval("check", "-c", str(path), *args)
        assert result.returncode == 2
        for secret in ("hunter2", EAP_PASSWORD, "a-key-Passphrase-0123"):
            assert secret not in result.stdout + result.stderr
    good = write(tmp_path, config(tmp_path) + f'\n[secrets.eap-carol]\nid = "carol"\n'
                 f'secret = "{EAP_PASSWORD}"\n', name="good.toml")  # fmt: skip
    result = larval("check", "-c", str(good), "--json")
    assert result.returncode == 0
    assert PSK not in result.stdout and EAP_PASSWORD not in result.stdout


# -- the same verdict as larval run --------------------------------------------------------


def _good_texts(tmp: Path) -> list[str]:
    pools = '\n[pools.rw]\naddrs = "10.3.0.0/24"\ndns = ["10.3.0.1"]\n'
    return [
        DESIGN_TOML,
        config(tmp),
        config(tmp, conn='pools = ["rw"]\nversion = 1') + pools,
        config(tmp, conn="short_psk = true", secret="short-psk-12"),
        cert_config(tmp, "gw.pem", with_credentials(tmp)),
        "",
    ]


def _bad_texts(tmp: Path) -> list[str]:
    out = [broken_text(tmp, how) for _, how, _, _ in BROKEN]
    for conn, child, _ in _bad_value_cases.pytestmark[0].args[1]:
        out.append(config(tmp, conn=conn, child=child))
    out.append(several(tmp))
    out.append(cert_config(tmp, "missing.pem", with_credentials(tmp)))
    return out


def test_check_and_run_agree_on_every_config(tmp_path: Path) -> None:
    """A file `larval run` refuses makes `larval check` exit 2, and one it starts with
    makes it exit 0: the files of the configuration tests, good and broken."""
    cases = [(t, False) for t in _good_texts(tmp_path)] + [(t, True) for t in _bad_texts(tmp_path)]
    for i, (text, bad) in enumerate(cases):
        path = write(tmp_path, text, name=f"case{i}.toml")
        status = main(["check", "-c", str(path)])
        refused = run_refuses(path)
        assert refused is bad, (i, text)
        assert status == (2 if refused else 0), (i, text)


# -- the summary and the warnings ----------------------------------------------------------


def test_a_good_file_is_summarised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pools = '\n[pools.rw]\naddrs = "10.3.0.0/24"\ndns = ["10.3.0.1"]\n'
    text = config(tmp_path, conn='pools = ["rw"]\nproposals = ["aes256gcm16-prfsha384-ecp384"]',
                  child='esp_proposals = ["aes128gcm16", "aes128-sha256"]') + pools  # fmt: skip
    path = write(tmp_path, text)
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 1 connection, 2 policies, 1 pool"
    assert out[1] == "s2s: IKEv2, 192.0.2.2 to 192.0.2.1"
    assert "  ike: aes256gcm16-prfsha384-ecp384" in out
    assert "  local: psk, id 192.0.2.2" in out and "  remote: psk, id 192.0.2.1" in out
    assert "  net: 203.0.113.0/24 === 198.51.100.0/24, tunnel, start_action none" in out
    assert "    esp: aes128gcm16, aes128-sha256" in out and "  pools: rw" in out
    assert any(line.startswith("pool rw: 10.3.0.") and "dns 10.3.0.1" in line for line in out)
    assert out[-1] == f"{path}: 0 errors, 0 warnings: larval run would start with it"
    assert len(out) <= 24  # one screen


def test_a_certificate_side_is_summarised(tmp_path: Path) -> None:
    path = write(tmp_path, cert_config(tmp_path, "gw.pem", with_credentials(tmp_path)))
    status, report = check_json(path)
    assert status == 0
    summary = report["summary"]
    assert isinstance(summary, dict)
    (conn,) = summary["connections"]
    assert conn["local"]["auth"] == ["pubkey"] and conn["local"]["cert"] == "x509/gw.pem"
    assert "CN=vpn.example.org" in conn["local"]["id"]


WEAK = config(
    Path("/nonexistent"),
    conn='proposals = ["aes128gcm8-prfsha256-x25519"]\nshort_psk = true\nversion = 1',
    child='esp_proposals = ["null-sha256-esn", "aes128gcm16-esn"]',
    secret="short-psk-12",
)


def test_weak_choices_are_warnings_that_say_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, WEAK)
    status, report = check_json(path)
    assert status == 0 and report["ok"] is True and report["errors"] == 0
    warned = {p["key"]: str(p["message"]) for p in problems(report)}
    assert all(p["severity"] == "warning" for p in problems(report))
    assert "8-octet ICV" in warned["connections.s2s.proposals[0]"]
    assert "null encryption" in warned["connections.s2s.children.net.esp_proposals[0]"]
    assert "ESN" in warned["connections.s2s.children.net.esp_proposals"]
    assert "RFC 9395" in warned["connections.s2s.version"]
    assert "12 bytes" in warned["connections.s2s.short_psk"]
    assert "short-psk-12" not in json.dumps(report)
    status, report = check_json(path, "--strict")
    assert status == 2 and report["ok"] is False
    # larval run starts with them, and logs each.
    with caplog.at_level(logging.WARNING, logger="larval.daemon"):
        load_daemon(str(path))
    assert "8-octet ICV" in caplog.text and "null encryption" in caplog.text


def test_warnings_and_the_strict_verdict_in_text(tmp_path: Path) -> None:
    path = write(tmp_path, WEAK)
    result = larval("check", "-c", str(path))
    assert result.returncode == 0
    assert any(": warning: connections.s2s.version: IKEv1" in line
               for line in result.stdout.splitlines())  # fmt: skip
    assert result.stdout.splitlines()[-1].endswith("warnings: larval run would start with it")
    result = larval("check", "-c", str(path), "--strict")
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1].endswith("refused by --strict")


def test_saved_keys_are_a_warning(tmp_path: Path) -> None:
    text = config(tmp_path).replace("[daemon]\n", f'[daemon]\nsave_keys = "{tmp_path}/keys"\n', 1)
    loaded = gather(str(write(tmp_path, text)))
    (warning,) = loaded.problems
    assert warning.severity == "warning" and warning.key == "daemon.save_keys"
    assert "decrypt the traffic" in warning.message


@pytest.mark.parametrize(
    ("address", "warned"),
    [("127.0.0.1:9105", False), ("[::1]:9105", False), ("0.0.0.0:9105", True),
     ("[2001:db8::1]:9105", True)],
)  # fmt: skip
def test_metrics_beyond_loopback_are_a_warning(tmp_path: Path, address: str,
                                               warned: bool) -> None:  # fmt: skip
    text = config(tmp_path).replace("[daemon]\n", f'[daemon]\nmetrics = "{address}"\n', 1)
    loaded = gather(str(write(tmp_path, text)))
    assert [p.key for p in loaded.problems] == (["daemon.metrics"] if warned else [])
    if warned:
        (warning,) = loaded.problems
        assert warning.severity == "warning" and "without authentication" in warning.message


def test_no_connections_is_a_warning(tmp_path: Path) -> None:
    loaded = gather(str(write(tmp_path, "")))
    (warning,) = loaded.problems
    assert warning.severity == "warning" and "no [connections]" in warning.message


# -- lines ---------------------------------------------------------------------------------

TEXT = """\
[daemon]
mtu = 1400

[connections."my vpn"]
local = { auth = "psk" }
remote_addrs = ["192.0.2.1",
                "192.0.2.2"]

[connections."my vpn".children.net]
esp_proposals = ["aes128gcm16"]
"""


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("daemon.mtu", 2),
        ("daemon", 1),
        ('connections."my vpn".local.auth', 5),
        ('connections."my vpn".remote_addrs[1]', 6),
        ('connections."my vpn".children.net.esp_proposals[0]', 10),
        ('connections."my vpn".children.net.mode', 9),
        ("pools.rw", None),
        (None, None),
    ],
)
def test_the_line_of_a_key(key: str | None, line: int | None) -> None:
    assert line_of(TEXT, key) == line


def _as_nobody(path: Path) -> tuple[int, str]:
    """`larval check -c path` in a forked child that dropped to nobody first: its status and
    its output. (The interpreter is root's, so the child runs the code already loaded.)"""
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        status = 3
        try:
            os.close(read_end)
            sys.stdout = os.fdopen(write_end, "w")
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            status = main(["check", "-c", str(path)])
            sys.stdout.flush()
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_no_root_is_needed() -> None:
    """As an unprivileged user, on files that user owns: the same verdicts, nothing made."""
    import os
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix=f"larval-check-{os.getpid()}-"))
    try:
        home.chmod(0o755)
        good, bad = write(home, config(home), name="good.toml"), write(home, several(home))
        for path in (good, bad):
            os.chown(path, 65534, 65534)
        before = snapshot(home)
        assert _as_nobody(good)[0] == 0
        status, out = _as_nobody(bad)
        assert status == 2 and f"{len(SEVERAL_KEYS)} errors" in out.splitlines()[-1]
        assert snapshot(home) == before
    finally:
        shutil.rmtree(home)


def test_a_state_store_run_would_refuse(tmp_path: Path) -> None:
    """`open_store`'s refusals, found without creating or opening anything."""
    state, key = tmp_path / "state" / "state.db", tmp_path / "state" / "state.key"
    text = config(tmp_path).replace("[daemon]\n", f'[daemon]\nstate = "{state}"\n', 1)
    path = write(tmp_path, text)
    assert check_json(path)[0] == 0 and not state.parent.exists()  # made at start
    state.parent.mkdir()
    state.write_bytes(b"")
    state.chmod(0o600)
    status, report = check_json(path)
    (problem,) = problems(report)
    assert status == 2 and problem["key"] == "daemon.state_key"
    assert "exists but its key" in str(problem["message"])
    key.write_text("00" * 32 + "\n")
    key.chmod(0o644)
    state.chmod(0o644)
    status, report = check_json(path)
    assert status == 2 and {p["key"] for p in problems(report)} == {
        "daemon.state",
        "daemon.state_key",
    }
    assert "00" * 32 not in json.dumps(report)
    assert larval("run", "-c", str(path), timeout=30).returncode == 2  # and run refuses it


def test_a_bad_log_level_or_subsystem_is_named_by_check_and_refused_by_run(
    tmp_path: Path,
) -> None:
    text = config(tmp_path) + '\n[daemon.log]\nlevel = "info"\nike = "loud"\nkernel = "debug"\n'
    path = write(tmp_path, text)
    status, report = check_json(path)
    assert status == 2
    named = {(p["key"], p["line"]) for p in problems(report) if p["severity"] == "error"}
    lines = text.splitlines()
    assert named == {("daemon.log.ike", lines.index('ike = "loud"') + 1),
                     ("daemon.log.kernel", lines.index('kernel = "debug"') + 1)}  # fmt: skip
    messages = " ".join(str(p["message"]) for p in problems(report))
    assert "is not one of debug, info, warning, error" in messages
    assert "unknown key; allowed: level, daemon, ike, keymgr, stack, dataplane, pfkey" in messages
    assert run_refuses(path)
    fixed = write(tmp_path, text.replace('"loud"', '"debug"').replace('kernel = "debug"\n', ""))
    assert check_json(fixed)[0] == 0
    assert load_daemon(str(fixed))[0].log_levels == {"level": logging.INFO, "ike": logging.DEBUG}
