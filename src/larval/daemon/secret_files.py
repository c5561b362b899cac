"""The files that hold secrets, and who may change them.

A file with secrets in it is the configuration file when it has ``[secrets]`` (PSKs, EAP
and XAuth passwords, key passphrases), the private keys of the credentials directory
(``private/``, ``rsa/``, ``ecdsa/``, ``pkcs8/``) and the state key (``daemon.state_key``).
Who can read them is checked where they are read: `larval.daemon.config.read_config`,
`larval.credentials` and `larval.store.crypto` refuse them open to group or others. Here,
what those leave: a configuration file with secrets that group or others may *write*
(they could put their own PSK in it), and a file owned by some user other than root and
the user `larval run --user` becomes, who could do the same.

Run as root, as `larval run` is, these are errors: the daemon refuses to start. Run as
another user (`larval check` on one's own copy, or a reload after the drop) a file owned
by that user is fine, and one owned by a third user is a warning: the verdict that counts
is the root run's, which `larval check` run as root gives.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tomllib
from pathlib import Path

from larval.credentials import KEY_DIRS
from larval.daemon.config import ConfigProblem, DaemonConfig, Severity

__all__ = ["secret_file_problems", "secret_files"]


def secret_files(config: DaemonConfig, path: str, text: str) -> list[str]:
    """The files of `config` (read from `path`, whose text is `text`) that hold secrets."""
    files = []
    try:
        holds = bool(tomllib.loads(text).get("secrets")) if text else False
    except tomllib.TOMLDecodeError:
        holds = False
    if holds:
        files.append(path)
    if config.credentials is not None:
        for sub in KEY_DIRS:
            directory = Path(config.credentials) / sub
            try:
                entries = sorted(directory.iterdir())
            except OSError:
                continue  # a missing directory is empty; another problem is the loader's
            files.extend(str(e) for e in entries if not e.name.startswith(".") and e.is_file())
    if config.state_key is not None and os.path.exists(config.state_key):
        files.append(config.state_key)
    return files


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def secret_file_problems(
    config: DaemonConfig, path: str, text: str, user: str | None
) -> list[ConfigProblem]:
    """What is wrong with who may change the files of `secret_files`; `user`: whom
    `larval run --user` becomes (its files are its own to keep), if anyone."""
    euid = os.geteuid()
    allowed = {0, euid}
    if user is not None:
        # An unknown user is `larval run`'s error, named there.
        with contextlib.suppress(KeyError):
            allowed.add(pwd.getpwnam(user).pw_uid)
    severity: Severity = "error" if euid == 0 else "warning"
    keepers = "root" + (f" or {user}" if user else "")
    problems = []
    for name in secret_files(config, path, text):
        try:
            st = os.stat(name)
        except OSError:
            continue  # the reader names a file it cannot read
        mode = stat.S_IMODE(st.st_mode)
        # Readable by others: the reader's refusal; writable by others only, here.
        if name == path and mode & 0o022 and not mode & 0o044:
            why = f"holds [secrets] but is writable by group or others (mode {mode:04o})"
            problems.append(ConfigProblem(name, None, f"{why}; chmod 600 it"))
        if st.st_uid not in allowed:
            problems.append(ConfigProblem(
                name, None, f"holds secrets but is owned by {_owner(st.st_uid)}, who can "
                f"change it; it must be {keepers}'s: chown root {name}; chmod 600 {name}",
                severity=severity))  # fmt: skip
    return problems
