"""Everything `larval run` reads before it opens a socket, read once for both `larval run`
and `larval check`, so that the two cannot drift apart.

`gather` reads the configuration file (`larval.daemon.config.read_config`), the
credentials directory it names with the passphrases of its ``[secrets.private-NAME]``
(`larval.credentials`), the connections' certificate sides against them
(`larval.daemon.auth`), and the policies into a scratch SPD, as the stack takes them;
it reads on past each problem and returns all of them, never raising for bad input.
`load_daemon` is `larval run`'s: the same reading, the warnings logged, and every error
raised at once, so that the daemon refuses to start on what `larval check` names.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from larval.credentials import Credentials, CredentialsError, load_credentials
from larval.daemon.advice import weak_points
from larval.daemon.auth import AuthConfigError, resolve
from larval.daemon.config import ConfigProblem, ConfigProblems, DaemonConfig, line_of, read_config
from larval.daemon.secret_files import secret_file_problems
from larval.errors import LarvalError
from larval.spd import Spd, SpdError
from larval.spd.config import read_config_text
from larval.spd.errors import PolicyFileError
from larval.store import StoreError
from larval.store.crypto import read_key_file

log = logging.getLogger("larval.daemon")

__all__ = ["Loaded", "gather", "load_daemon"]


@dataclass
class Loaded:
    """What `gather` read: the configuration as far as it reads (None: not even the file),
    the credentials, and every problem found, in the order found."""

    path: str
    config: DaemonConfig | None
    credentials: Credentials = field(default_factory=Credentials)
    problems: list[ConfigProblem] = field(default_factory=list)
    #: The credentials' or the certificates' own error, which `larval run` raises as it
    #: always has when the file itself is right.
    refusal: LarvalError | None = None

    @property
    def errors(self) -> list[ConfigProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[ConfigProblem]:
        return [p for p in self.problems if p.severity == "warning"]


def gather(
    path: str,
    read: tuple[DaemonConfig | None, list[ConfigProblem]] | None = None,
    *,
    store: bool = True,
    user: str | None = None,
) -> Loaded:
    """Read `path` and all it names as `larval run` does, without root, sockets or a TUN;
    `read`: what `read_config` gave for it already. `store`: look at the state store's
    files too, as `open_store` will (`larval run` leaves that to `open_store` itself).
    `user`: whom `larval run --user` becomes (else ``daemon.user``), who may own the
    files that hold secrets (`larval.daemon.secret_files`)."""
    config, problems = read if read is not None else read_config(path)
    loaded = Loaded(path, config, problems=list(problems))
    if config is None:
        return loaded
    text = _text(path)
    credential_errors = False
    if config.credentials is not None:
        try:
            loaded.credentials = load_credentials(config.credentials, config.key_passphrases)
        except CredentialsError as e:
            credential_errors, loaded.refusal = True, e
            loaded.problems.extend(_credential_problem(config.credentials, line)
                                   for line in e.problems)  # fmt: skip
    if not credential_errors:
        try:
            resolved = resolve(config, loaded.credentials if config.credentials else None, path)
            loaded.config = config = resolved
        except AuthConfigError as e:
            loaded.refusal = e
            loaded.problems.extend(_keyed_problem(path, text, line) for line in e.problems)
    if store:
        loaded.problems.extend(_state_problems(config, path, text))
    loaded.problems.extend(secret_file_problems(config, path, text, user or config.user))
    try:
        Spd().add_all(config.policies)
    except SpdError as e:
        loaded.problems.append(ConfigProblem(path, "connections", f"the SPD refuses: {e}"))
    for key, why in weak_points(config):
        loaded.problems.append(ConfigProblem(path, key, why, line_of(text, key), "warning"))
    return loaded


def load_daemon(path: str, *, user: str | None = None) -> tuple[DaemonConfig, Credentials]:
    """`larval run`'s reading: the configuration with its certificates resolved, and the
    credentials; raises `ConfigProblems` naming every error. Warnings are logged.
    `user`: as `gather`'s."""
    config, problems = read_config(path)
    loaded = gather(path, (config, problems), store=False, user=user)
    if loaded.config is None or any(p.severity == "error" for p in problems):
        raise ConfigProblems(loaded.problems)  # the file's own, and any others
    if loaded.refusal is not None:
        raise loaded.refusal
    if loaded.errors:
        raise ConfigProblems(loaded.problems)
    for problem in loaded.warnings:
        log.warning("%s", problem)
    return loaded.config, loaded.credentials


def _state_problems(config: DaemonConfig, path: str, text: str) -> list[ConfigProblem]:
    """What `larval.store.sqlite.open_store` would refuse at start, found without creating
    or opening anything: a key file that does not read (or is open to others), a store
    without its key, a store others can read."""
    if config.state is None or config.state_key is None:
        return []
    problems = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigProblem(path, key, message, line_of(text, key)))

    if os.path.lexists(config.state_key):
        try:
            read_key_file(config.state_key)
        except StoreError as e:
            problem("daemon.state_key", str(e))
    elif os.path.lexists(config.state):
        problem("daemon.state_key", f"{config.state}: the state store exists but its key "
                f"{config.state_key} does not; restore the key, or move the store away "
                "to start clean")  # fmt: skip
    try:
        mode = stat.S_IMODE(os.stat(config.state).st_mode)
    except OSError:
        return problems  # made at start
    if mode & 0o044:
        problem("daemon.state", f"{config.state}: the state store is mode {mode:04o}, "
                "readable by group or others; chmod 600 it")  # fmt: skip
    return problems


def _text(path: str) -> str:
    """The file's text again, for line numbers (it read a moment ago)."""
    try:
        return read_config_text(path).text
    except PolicyFileError:
        return ""


def _credential_problem(directory: str, line: str) -> ConfigProblem:
    """A credentials file's problem, ``x509/gw.pem: not an X.509 certificate``, as the
    file under the directory and what is wrong with it."""
    name, sep, message = line.partition(": ")
    if not sep:
        return ConfigProblem(directory, None, line)
    if name.rstrip("/") != str(Path(directory)) and not os.path.isabs(name):
        name = os.path.join(directory, name)
    return ConfigProblem(name, None, message)


def _keyed_problem(path: str, text: str, line: str) -> ConfigProblem:
    """``FILE: KEY: what`` as `larval.daemon.auth` writes a problem, taken apart."""
    rest = line.removeprefix(f"{path}: ")
    key, sep, message = rest.partition(": ")
    if not sep:
        return ConfigProblem(path, None, rest)
    return ConfigProblem(path, key, message, line_of(text, key))
