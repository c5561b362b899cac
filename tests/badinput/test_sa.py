"""`larval sa` fed bad input against a real `larval stack`: one line, the right status,
no key bytes, and neither the SADB nor anything on disk changed."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from larval.cli import _parser
from larval.net.pfkey_client import PfkeyClient
from larval.pfkey import Diagnostic, EncryptAlg, SaType
from larval.pfkey.constants import diagnostic_text
from larval.pfkey.requests import getspi, keyed
from tests.badinput import closed_pipe_run, larval, one_line, snapshot
from tests.badinput.stackproc import StackProcess, larval_stack

GCM_KEY = "00112233445566778899aabbccddeeff01020304"  # 16-byte key + 4-byte salt
SECRET_KEY = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7abcd"  # a key that must never be echoed
ADD = ("--spi", "0x1000", "--src", "192.0.2.2", "--dst", "192.0.2.1", "--alg", "aes128gcm16")


class Sa:
    """`larval sa` against one running stack, with the files of one test."""

    def __init__(self, stack: StackProcess, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self.made: dict[str, tuple[str, int, str]] = {}  # what the test itself put on disk

    def __call__(
        self, op: str, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return larval("sa", op, "--socket", self.stack.pfkey, *args, timeout=timeout)

    def dump(self, *keys: str) -> list[dict[str, object]]:
        result = self("dump", "--json", *keys)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    def key_file(self, name: str, data: bytes | str, mode: int = 0o600) -> str:
        path = self.tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return self.record(path)

    def record(self, path: Path) -> str:
        """Note what the test made at `path`, so that `unchanged` expects it there."""
        rel = str(path.relative_to(self.tmp))
        self.made[rel] = snapshot(self.tmp)[rel]
        return str(path)


@pytest.fixture
def sa(tmp_path: Path) -> Iterator[Sa]:
    with larval_stack(tmp_path) as stack:
        yield Sa(stack, tmp_path)


@pytest.fixture
def unchanged(sa: Sa) -> Iterator[None]:
    """The test's command may fail, but the SADB and the files stay as they were."""
    ok = sa("add", *ADD, "--spi", "0x2000", "--encrypt-key", GCM_KEY)
    assert ok.returncode == 0, ok.stderr
    sadb, files = sa.dump(), snapshot(sa.tmp)
    yield
    assert sa.dump() == sadb
    assert snapshot(sa.tmp) == {**files, **sa.made}


def usage_error(result: subprocess.CompletedProcess[str], option: str) -> str:
    """argparse's refusal of a value: its usage block, then one error line naming the option."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last and option in last, last
    return last


# -- keys are shown only when asked for --------------------------------------------------


def test_dump_and_get_show_keys_only_with_keys(sa: Sa) -> None:
    assert sa("add", *ADD, "--encrypt-key", SECRET_KEY).returncode == 0
    plain = [
        sa("dump", "--json"),
        sa("dump"),
        sa("get", "--spi", "0x1000", "--dst", "192.0.2.1", "--json"),
        sa("get", "--spi", "0x1000", "--dst", "192.0.2.1"),
    ]
    for result in plain:
        assert result.returncode == 0, result.stderr
        assert SECRET_KEY not in result.stdout and "encrypt_key" not in result.stdout
    assert sa.dump("--keys")[0]["encrypt_key"] == SECRET_KEY
    got = sa("get", "--spi", "0x1000", "--dst", "192.0.2.1", "--keys")
    assert f"encrypt_key: {SECRET_KEY}" in got.stdout


def test_the_dump_table_never_shows_keys(sa: Sa, unchanged: None) -> None:
    line = one_line(sa("dump", "--keys"), 2, never=[GCM_KEY])
    assert "--keys" in line and "--json" in line


# -- key files ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_open_to_others_is_refused(sa: Sa, unchanged: None, mode: int) -> None:
    path = sa.key_file("key.hex", SECRET_KEY, mode)
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{path}"), 2, never=[SECRET_KEY])
    assert path in line and f"{mode:04o}" in line


def test_a_key_file_of_mode_0600_or_0400_is_taken(sa: Sa) -> None:
    for spi, mode in (("0x1000", 0o600), ("0x1001", 0o400)):
        path = sa.key_file(f"key{mode:o}.hex", SECRET_KEY + "\n", mode)
        ok = sa("add", *ADD, "--spi", spi, "--encrypt-key", f"@{path}")
        assert ok.returncode == 0, ok.stderr
    assert [s["encrypt_key"] for s in sa.dump("--keys")] == [SECRET_KEY, SECRET_KEY]


def test_a_device_is_not_read(sa: Sa, unchanged: None) -> None:
    for device in ("/dev/zero", "/dev/urandom"):
        line = one_line(sa("add", *ADD, "--encrypt-key", f"@{device}", timeout=20), 2)
        assert device in line and "not a regular file" in line


def test_a_fifo_does_not_block(sa: Sa, unchanged: None, tmp_path: Path) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    sa.record(fifo)
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{fifo}", timeout=20), 2)
    assert str(fifo) in line and "FIFO" in line


def test_a_directory_a_missing_file_and_an_empty_name(sa: Sa, unchanged: None) -> None:
    directory = sa.tmp / "keys"
    directory.mkdir(mode=0o700)
    sa.record(directory)
    assert "a directory" in one_line(sa("add", *ADD, "--encrypt-key", f"@{directory}"), 2)
    missing = sa.tmp / "nosuch.hex"
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{missing}"), 2)
    assert str(missing) in line and "No such file" in line
    assert "no file named" in one_line(sa("add", *ADD, "--encrypt-key", "@"), 2)


def test_a_huge_key_file_is_refused_by_size(sa: Sa, unchanged: None) -> None:
    path = sa.key_file("huge.hex", SECRET_KEY * 1000)
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{path}"), 2, never=[SECRET_KEY])
    assert path in line and "1024 bytes" in line


@pytest.mark.parametrize(
    "data",
    [bytes.fromhex(SECRET_KEY), b"\xff" + SECRET_KEY.encode(), SECRET_KEY.encode() + b"\x80"],
)
def test_a_binary_key_file_is_named_never_shown(sa: Sa, unchanged: None, data: bytes) -> None:
    path = sa.key_file("binary.key", data)
    result = sa("add", *ADD, "--encrypt-key", f"@{path}")
    line = one_line(result, 2, never=[SECRET_KEY, "\\x", "0xff", "0x80"])
    assert path in line and "not text" in line


def test_a_key_file_of_garbage_text_is_named_never_shown(sa: Sa, unchanged: None) -> None:
    path = sa.key_file("garbage.hex", "zz" + SECRET_KEY)
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{path}"), 2, never=[SECRET_KEY])
    assert path in line and "not hexadecimal" in line


def test_a_key_file_of_the_wrong_length_says_so(sa: Sa, unchanged: None) -> None:
    path = sa.key_file("short.hex", SECRET_KEY[:-2])
    line = one_line(sa("add", *ADD, "--encrypt-key", f"@{path}"), 2, never=[SECRET_KEY[:-2]])
    assert path in line and "20-byte" in line and "19 bytes" in line


# -- numbers: every one is range-checked before it reaches PF_KEY -------------------------

TOO_BIG_U64 = str(2**64)


@pytest.mark.parametrize(
    ("option", "value", "range_"),
    [
        ("--hard-time", TOO_BIG_U64, "18446744073709551615 seconds"),
        ("--soft-time", TOO_BIG_U64, "18446744073709551615 seconds"),
        ("--idle-time", TOO_BIG_U64, "18446744073709551615 seconds"),
        ("--hard-bytes", TOO_BIG_U64, "18446744073709551615 bytes"),
        ("--soft-bytes", TOO_BIG_U64, "18446744073709551615 bytes"),
        ("--replay", "100000", "0 to 255 packets"),
        ("--replay", "256", "0 to 255 packets"),
        ("--spi", "0xffffffffff", "0x100 to 0xffffffff"),
        ("--spi", "0x10", "0x100 to 0xffffffff"),
        ("--pair", str(2**32), "0x100 to 0xffffffff"),
        ("--hard-time", "-1", "0 to 18446744073709551615 seconds"),
    ],
)
def test_a_number_out_of_range_is_refused_with_its_range(
    sa: Sa, unchanged: None, option: str, value: str, range_: str
) -> None:
    result = sa("add", *ADD, "--encrypt-key", GCM_KEY, option, value)
    line = usage_error(result, option)
    assert "out of range" in line and range_ in line
    assert GCM_KEY not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--spi-min", "0x10"), ("--spi-min", "0"), ("--spi-max", "0x1ffffffff")],
)
def test_a_getspi_range_outside_the_spis_is_refused_before_the_stack(
    sa: Sa, unchanged: None, option: str, value: str
) -> None:
    result = sa("getspi", "--src", "192.0.2.1", "--dst", "192.0.2.2", option, value)
    assert "0x100 to 0xffffffff" in usage_error(result, option)


def test_an_empty_getspi_range_is_one_line(sa: Sa, unchanged: None) -> None:
    result = sa("getspi", "--src", "192.0.2.1", "--dst", "192.0.2.2",
                "--spi-min", "0x2000", "--spi-max", "0x1000")  # fmt: skip
    assert "--spi-min 0x2000 is above --spi-max 0x1000" in one_line(result, 2)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--spi", "abc"), ("--hard-time", "1h"), ("--replay", "1.5"), ("--src", "192.0.2.300")],
)
def test_a_value_of_the_wrong_type_is_named(
    sa: Sa, unchanged: None, option: str, value: str
) -> None:
    result = sa("add", *ADD, "--encrypt-key", GCM_KEY, option, value)
    assert repr(value) in usage_error(result, option)


def test_a_missing_required_option_is_named(sa: Sa, unchanged: None) -> None:
    usage_error(sa("add", "--src", "192.0.2.2", "--dst", "192.0.2.1"), "--spi")
    usage_error(sa("update", "--spi", "0x2000", "--dst", "192.0.2.1"), "--src")
    usage_error(sa("getspi", "--src", "192.0.2.2"), "--dst")
    usage_error(sa("get", "--spi", "0x1000"), "--dst")
    usage_error(sa("delete", "--dst", "192.0.2.1"), "--spi")


@pytest.mark.parametrize("op", ["get", "delete"])
@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--spi", "0x1", "out of range"), ("--spi", "2x", "not a number"),
     ("--spi", str(2**32), "out of range"), ("--dst", "::g", "not an IPv4 or IPv6"),
     ("--src", "", "not an IPv4 or IPv6")],
)  # fmt: skip
def test_get_and_delete_name_a_bad_value(
    sa: Sa, unchanged: None, op: str, option: str, value: str, named: str
) -> None:
    args = {"--spi": "0x2000", "--dst": "192.0.2.1", option: value}
    result = sa(op, *(x for pair in args.items() for x in pair))
    assert named in usage_error(result, option)


# -- lifetimes -----------------------------------------------------------------------------


def test_an_idle_time_past_a_lone_hard_time_is_taken(sa: Sa) -> None:
    # illumos compares the idle lifetime only when soft and hard are both set.
    ok = sa("add", *ADD, "--encrypt-key", GCM_KEY, "--idle-time", "5", "--hard-time", "3")
    assert ok.returncode == 0, ok.stderr
    (added,) = sa.dump()
    assert added["idle"] == {"bytes": 0, "addtime": 5, "usetime": 0}


def test_an_idle_time_past_the_soft_and_hard_ones_names_the_idle_time(
    sa: Sa, unchanged: None
) -> None:
    result = sa("add", *ADD, "--encrypt-key", GCM_KEY,
                "--idle-time", "5", "--soft-time", "2", "--hard-time", "3")  # fmt: skip
    assert "--idle-time 5 is above --soft-time 2" in one_line(result, 2)


# -- AH: not implemented, not offered ------------------------------------------------------


def test_ah_is_not_offered(sa: Sa, unchanged: None) -> None:
    result = sa("add", *ADD, "--encrypt-key", GCM_KEY, "--satype", "ah")
    assert "invalid choice: 'ah'" in usage_error(result, "--satype")


def test_another_pf_key_client_is_told_ah_is_not_supported(sa: Sa) -> None:
    with PfkeyClient(sa.stack.pfkey) as client:
        reply = client.request(getspi("192.0.2.1", "192.0.2.2", satype=SaType.AH))
    assert (reply.errno, reply.diagnostic) == (errno.EINVAL, Diagnostic.UNKNOWN_SATYPE)
    assert "not supported" in diagnostic_text(reply.diagnostic)
    assert sa.dump() == []


# -- our own checks: one line each ---------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "args", "named"),
    [
        ("add", ["--alg", "aes999"], "--alg aes999"),
        ("add", ["--alg", "aes128gcm16"], "needs a 20-byte key"),
        ("add", ["--alg", "aes128gcm16", "--encrypt-key", GCM_KEY, "--auth-key", "00" * 32],
         "--auth-key"),
        ("add", ["--encrypt-key", GCM_KEY], "--alg"),
        ("add", [], "add needs --alg"),
        ("add", ["--alg", "aes128gcm16", "--encrypt-key", GCM_KEY, "--src", "2001:db8::1"],
         "different families"),
        ("add", ["--alg", "aes128gcm16", "--encrypt-key", GCM_KEY, "--soft-bytes", "9",
                 "--hard-bytes", "8"], "--soft-bytes 9 is above --hard-bytes 8"),
        ("update", ["--encrypt-key", GCM_KEY], "--alg"),
    ],
)  # fmt: skip
def test_our_own_checks_are_one_line(
    sa: Sa, unchanged: None, op: str, args: list[str], named: str
) -> None:
    base = ["--spi", "0x1000", "--src", "192.0.2.2", "--dst", "192.0.2.1"]
    assert named in one_line(sa(op, *base, *args), 2, never=[GCM_KEY])


def test_get_with_addresses_of_two_families_is_one_line(sa: Sa, unchanged: None) -> None:
    result = sa("get", "--spi", "0x2000", "--dst", "192.0.2.1", "--src", "2001:db8::1")
    assert "different families" in one_line(result, 2)


def test_a_refusal_by_the_stack_is_one_line_with_status_1(sa: Sa, unchanged: None) -> None:
    result = sa("add", *ADD, "--spi", "0x2000", "--encrypt-key", SECRET_KEY)  # exists already
    assert "EEXIST" in one_line(result, 1, never=[SECRET_KEY])


# -- the PF_KEY socket ---------------------------------------------------------------------


def test_a_missing_or_wrong_socket_is_one_line_with_status_1(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    line = one_line(larval("sa", "dump", "--socket", str(missing)), 1)
    assert "cannot reach the PF_KEY socket" in line and str(missing) in line
    regular = tmp_path / "file"
    regular.write_text("data")
    before = snapshot(tmp_path)
    assert str(regular) in one_line(larval("sa", "dump", "--socket", str(regular)), 1)
    assert snapshot(tmp_path) == before


def test_a_socket_path_too_long_for_af_unix_is_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / ("s" * 120))
    line = one_line(larval("sa", "dump", "--socket", path), 2)
    assert path in line and "at most 107" in line and "None" not in line


def test_a_socket_closed_by_the_stack_is_one_line_with_status_1(tmp_path: Path) -> None:
    path = str(tmp_path / "pfkey")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen()

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(0xFFFF)
        conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        line = one_line(larval("sa", "dump", "--socket", path, timeout=20), 1)
    finally:
        thread.join(10)
        server.close()
    assert "closed the PF_KEY socket" in line


# -- a closed pipe ---------------------------------------------------------------------------


def test_dump_into_a_closed_pipe_exits_quietly(sa: Sa) -> None:
    with PfkeyClient(sa.stack.pfkey) as client:
        for spi in range(0x1000, 0x1000 + 300):
            msg = keyed(
                3, spi, "192.0.2.2", "192.0.2.1",
                encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes.fromhex(GCM_KEY),
            )  # fmt: skip
            assert client.request(msg).errno == 0
    for args in (["--json"], []):
        result = closed_pipe_run("sa", "dump", "--socket", sa.stack.pfkey, *args)
        assert (result.returncode, result.stderr) == (1, "")
    assert len(sa.dump()) == 300


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    result = closed_pipe_run("demo")
    assert (result.returncode, result.stderr) == (1, "")


def test_demo_into_head_exits_quietly() -> None:
    result = subprocess.run(
        f"{sys.executable} -m larval demo | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.startswith("larval demo") and result.stdout.count("\n") == 1
    assert result.returncode in (0, 1) and result.stderr == ""


# -- help --------------------------------------------------------------------------------------


def test_every_option_of_every_sa_subcommand_says_what_it_takes() -> None:
    parser = _parser()
    sa_parser = parser._subparsers._group_actions[0].choices["sa"]  # type: ignore[union-attr]
    ops = sa_parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(ops) == {"getspi", "add", "update", "delete", "get", "flush", "dump", "monitor"}
    for name, op in ops.items():
        for action in op._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"sa {name} {action.option_strings[0]} has no help"
                if action.type is not None and action.dest not in ("src", "dst"):
                    # a number: its help says its range or unit
                    assert any(
                        word in action.help for word in ("seconds", "bytes", "packets", "0x100")
                    ), (name, action.dest, action.help)
