"""Every subcommand of `larval` fed bad input, as a first-time user feeds it.

Each case runs `larval` as a separate process and asserts what a user must see: one
line on standard error that says what was wrong, the right exit status (2 for a bad
value, 1 for a refusal), no traceback, no key bytes, and nothing on disk changed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path


def larval(
    *args: str,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    preexec: object = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m larval ARGS` as a user runs it; stdout and stderr as text."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    data = stdin.encode() if isinstance(stdin, str) else stdin
    result = subprocess.run(
        [sys.executable, "-m", "larval", *args],
        input=data,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


def one_line(
    result: subprocess.CompletedProcess[str],
    status: int,
    *,
    never: Iterable[str] = (),
) -> str:
    """The one error line of a failed command, after checking everything a user must see."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("larval: "), lines[0]
    for text in never:
        assert text.lower() not in (result.stdout + result.stderr).lower(), text
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """What lies under `root`: kind, mode and content digest of every entry, symlinks
    not followed, so that a test can say nothing on disk changed."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", st.st_mode, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, "")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("other", st.st_mode, "")
    return out


def write_private(path: Path, text: str) -> Path:
    """Write a configuration that holds secrets as its user must: mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`larval ARGS` writing into a pipe whose reader has gone (`| head -0`, at once)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "larval", *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    return subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr)
