"""`larval run --user`'s refusals, each before anything opens, with a clear line and no
traceback: without root; an unknown user; with ``[ha]``; a file holding secrets that
group or others may read or write, or that a user other than root and the one named owns.
And `larval check`'s verdict on those files, as root and as the user who owns them.

These run as root (CI does): they change files' owners and run larval as nobody.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from larval.daemon.config import DaemonConfig
from larval.daemon.privileges import BeforeDrop, look_up_user
from larval.daemon.run_as import written_later
from larval.daemon.secret_files import secret_files
from tests.badinput import larval
from tests.badinput.test_config import config
from tests.test_check import cert_config, with_credentials, write
from tests.unprivileged import NOBODY, as_nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, setpriv)")

#: A uid no user has here: a file's owner that is neither root nor nobody.
STRANGER = 4242


def refused(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    """The one refusal of `larval run`: status 2, no traceback, every part in it."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)
    return result.stderr


def nothing_opened(tmp: Path) -> None:
    assert not (tmp / "run" / "control").exists()
    assert not (tmp / "run" / "pfkey").exists()


def test_user_without_root_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config(tmp_path))
    os.chown(path, NOBODY, NOBODY)
    argv = [sys.executable, "-m", "larval", "run", "-c", str(path), "--user", "nobody"]
    result = subprocess.run(as_nobody(argv), capture_output=True, text=True, timeout=60)
    refused(result, "--user nobody", "only root can become another user", "uid 65534")
    nothing_opened(tmp_path)


def test_an_unknown_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config(tmp_path))
    result = larval("run", "-c", str(path), "--user", "no-such-user-4242")
    refused(result, "--user no-such-user-4242: no such user", "useradd")
    nothing_opened(tmp_path)


def test_daemon_user_unknown_is_refused_naming_the_key(tmp_path: Path) -> None:
    text = config(tmp_path).replace("[daemon]\n", '[daemon]\nuser = "no-such-user-4242"\n')
    path = write(tmp_path, text)
    result = larval("run", "-c", str(path))
    refused(result, f"{path}: daemon.user no-such-user-4242: no such user")
    nothing_opened(tmp_path)


def test_daemon_user_that_is_not_a_name_is_a_config_error(tmp_path: Path) -> None:
    text = config(tmp_path).replace("[daemon]\n", '[daemon]\nuser = "no body"\n')
    path = write(tmp_path, text)
    refused(larval("run", "-c", str(path)), "daemon.user", "is not a user name")
    checked = larval("check", "-c", str(path))
    assert checked.returncode == 2 and "daemon.user" in checked.stdout, checked.stdout
    assert "is not a user name" in checked.stdout


def test_user_with_ha_is_refused(tmp_path: Path) -> None:
    text = config(tmp_path) + (
        '\n[ha]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\ngroup = "g"\n'
        'node = "n1"\nvirtual_addresses = ["192.0.2.10"]\n'
    )
    text = text.replace("[daemon]\n", f'[daemon]\nstate_key = "{tmp_path / "state.key"}"\n')
    (tmp_path / "state.key").write_bytes(os.urandom(32))
    (tmp_path / "state.key").chmod(0o600)
    path = write(tmp_path, text)
    refused(larval("run", "-c", str(path), "--user", "nobody"), "not with [ha]", "needs root")
    nothing_opened(tmp_path)


@pytest.mark.parametrize(
    ("mode", "words"),
    [(0o644, "readable by group or others"), (0o604, "readable by group or others"),
     (0o620, "writable by group or others"), (0o602, "writable by group or others")],
    ids=["0644", "0604", "0620", "0602"],
)  # fmt: skip
def test_a_config_with_secrets_open_to_others_is_refused(
    tmp_path: Path, mode: int, words: str
) -> None:
    path = write(tmp_path, config(tmp_path), mode=mode)
    result = larval("run", "-c", str(path), "--user", "nobody")
    refused(result, str(path), words, f"mode {mode:04o}", "chmod 600")
    nothing_opened(tmp_path)
    checked = larval("check", "-c", str(path))
    assert checked.returncode == 2 and words in checked.stdout, checked.stdout


def test_a_private_key_open_to_others_is_refused(tmp_path: Path) -> None:
    creds = with_credentials(tmp_path, key_mode=0o644)
    path = write(tmp_path, cert_config(tmp_path, "gw.pem", creds))
    result = larval("run", "-c", str(path), "--user", "nobody")
    refused(result, f"credentials in {creds}", "private/gw.pem: mode 0644", "chmod 600")
    nothing_opened(tmp_path)


def test_a_secret_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config(tmp_path))
    os.chown(path, STRANGER, STRANGER)
    result = larval("run", "-c", str(path), "--user", "nobody")
    refused(result, str(path), f"owned by uid {STRANGER}", "root or nobody's", "chown root")
    nothing_opened(tmp_path)
    # Without --user only root may own it.
    result = larval("run", "-c", str(path))
    refused(result, str(path), f"owned by uid {STRANGER}", "root's: chown root")


def test_a_private_key_of_another_user_is_refused(tmp_path: Path) -> None:
    creds = with_credentials(tmp_path)
    key = Path(creds) / "private" / "gw.pem"
    os.chown(key, STRANGER, STRANGER)
    path = write(tmp_path, cert_config(tmp_path, "gw.pem", creds))
    refused(larval("run", "-c", str(path), "--user", "nobody"), str(key), f"uid {STRANGER}")


def test_secret_files_are_the_config_with_secrets_the_keys_and_the_state_key(
    tmp_path: Path,
) -> None:
    creds = with_credentials(tmp_path)
    cfg = DaemonConfig([], None, [], "c", None, 1400, False, credentials=creds,
                       state_key=str(tmp_path / "state.key"))  # fmt: skip
    (tmp_path / "state.key").write_bytes(b"k" * 32)
    path = str(tmp_path / "larval.toml")
    assert secret_files(cfg, path, '[secrets.a]\nsecret = "x"\n') == [
        path, str(Path(creds) / "private" / "gw.pem"), str(tmp_path / "state.key")]  # fmt: skip
    # A configuration without [secrets] holds none.
    assert path not in secret_files(cfg, path, "[daemon]\n")


def test_the_users_own_file_passes_for_it_and_fails_for_root(tmp_path: Path) -> None:
    """The file nobody owns: `larval run --user nobody` may keep it (a reload after the
    drop reads it); `larval check` as root says so with --user or daemon.user, and
    refuses it without; `larval check` as nobody on its own file finds nothing wrong."""
    # pytest's directory is root's alone (0700): this one nobody can reach.
    with tempfile.TemporaryDirectory(prefix="larval-own-") as where:
        os.chmod(where, 0o755)
        _own_file(Path(where))


def _own_file(tmp_path: Path) -> None:
    text = config(tmp_path)
    path = write(tmp_path, text)
    os.chown(path, NOBODY, NOBODY)
    assert larval("check", "-c", str(path), "--user", "nobody").returncode == 0
    own = write(tmp_path, text.replace("[daemon]\n", '[daemon]\nuser = "nobody"\n'),
                name="own.toml")  # fmt: skip
    os.chown(own, NOBODY, NOBODY)
    assert larval("check", "-c", str(own)).returncode == 0
    as_root = larval("check", "-c", str(path))
    assert as_root.returncode == 2, as_root.stdout
    assert "owned by nobody (uid 65534)" in as_root.stdout, as_root.stdout
    argv = [sys.executable, "-m", "larval", "check", "-c", str(path)]
    mine = subprocess.run(as_nobody(argv), capture_output=True, text=True, timeout=60)
    assert mine.returncode == 0, (mine.stdout, mine.stderr)
    assert "owned by" not in mine.stdout


def test_a_step_that_fails_undoes_the_ones_before() -> None:
    before = BeforeDrop()
    opened: list[str] = []
    before.add("UDP 192.0.2.1:500", lambda: opened.append("udp"))
    before.on_failure(lambda: opened.remove("udp"))

    def busy() -> None:
        raise OSError(98, "Address already in use")

    before.add("TUN larval0", busy)
    assert before.steps == ["UDP 192.0.2.1:500", "TUN larval0"]
    with pytest.raises(OSError, match="in use"):
        before.open_all()
    assert opened == []


DROP_WITH_A_THREAD = """
import threading, time
from larval.daemon.privileges import PrivilegeError, drop_to, look_up_user
threading.Thread(target=time.sleep, args=(5,), name="late-starter", daemon=True).start()
try:
    drop_to(look_up_user("nobody"))
except PrivilegeError as e:
    print(e)
import os
print(os.getuid())
"""


def test_the_drop_is_refused_while_another_thread_runs() -> None:
    """capset and no_new_privs are per thread: a thread started before the drop would
    keep root's capabilities, so the drop refuses, and nothing changes."""
    done = subprocess.run([sys.executable, "-c", DROP_WITH_A_THREAD], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    refusal, uid = done.stdout.splitlines()
    assert "threads run (MainThread, late-starter)" in refusal, refusal
    assert "before any thread starts" in refusal
    assert uid == "0"


def test_what_is_written_after_the_drop_where_the_user_may_not_is_named(
    tmp_path: Path,
) -> None:
    nobody = look_up_user("nobody")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o755)
    open_ = tmp_path / "open"
    open_.mkdir()
    os.chown(open_, NOBODY, NOBODY)
    problems = written_later(str(closed / "resolv.conf"), str(closed), nobody)
    assert problems == [
        f"daemon.resolv_file {closed}/resolv.conf: nobody may not write in {closed} after "
        "the drop; nothing will be written there (give it to nobody, or choose a directory of "
        "its own)",
        f"daemon.save_keys {closed}: nobody may not write in {closed} after the drop; "
        "nothing will be written there (give it to nobody, or choose a directory of its own)",
    ]
    assert written_later(str(open_ / "resolv.conf"), str(open_), nobody) == []
    assert written_later(None, str(tmp_path / "made-later"), nobody) == []
    closed.chmod(0o777)
    assert written_later(str(closed / "resolv.conf"), None, nobody) == []
