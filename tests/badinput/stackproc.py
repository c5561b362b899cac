"""A `larval stack` process on AF_UNIX sockets in a test's directory, for the tests that
drive `larval sa` and `larval policy` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StackProcess:
    """Where a running `larval stack` listens."""

    def __init__(self, tmp: Path) -> None:
        self.pfkey = str(tmp / "pfkey")
        self.control = str(tmp / "control")


@contextmanager
def larval_stack(tmp: Path) -> Iterator[StackProcess]:
    """Start `larval stack` on sockets in `tmp`; on leaving, SIGTERM it and check that it
    exited cleanly and removed its PF_KEY socket."""
    s = StackProcess(tmp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "larval", "stack", "--pfkey-socket", s.pfkey,
         "--control-socket", s.control, "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not (os.path.exists(s.pfkey) and os.path.exists(s.control)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "larval stack did not start"
            time.sleep(0.05)
        yield s
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert not os.path.exists(s.pfkey)  # SIGTERM cleans up
