"""Crash safety: every batch whose `write` returned is there after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from larval.store import ESP_SEQ, IKE_SA
from larval.store.sqlite import open_store

#: The writer: 16-record batches, each reported on stdout once `write` returned.
WRITER = """
import sys
from larval.store import ESP_SEQ, IKE_SA
from larval.store.sqlite import open_store
store = open_store(sys.argv[1]).store
n = 0
while True:
    puts = {(ESP_SEQ, f"{n}/{i}"): b"%d" % (n * 16 + i) for i in range(15)}
    puts[(IKE_SA, "latest")] = b"%d" % n
    store.write(puts, deletes=[(ESP_SEQ, f"{n - 1}/0")] if n else ())
    sys.stdout.write(f"{n}\\n")
    sys.stdout.flush()
    n += 1
"""


def _acknowledged_until_killed(proc: subprocess.Popen[bytes], seconds: float) -> int:
    """Once it writes, let it write for `seconds`, then SIGKILL it in the middle of
    whatever it does; the last batch it acknowledged (the clock starts after its first
    batch: a loaded machine may take long to start Python)."""
    assert proc.stdout is not None
    acknowledged = int(proc.stdout.readline() or b"-1")
    assert acknowledged == 0, "the writer died by itself"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the writer died by itself"
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    # Lines already in the pipe were acknowledged before the kill, too.
    for line in proc.stdout.read().splitlines():
        acknowledged = int(line)
    return acknowledged


def test_every_acknowledged_batch_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    for trial in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        try:
            acknowledged = _acknowledged_until_killed(proc, 0.2 + 0.2 * trial)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert acknowledged >= 5

        opened = open_store(db)
        assert opened.moved_to is None, opened.why
        records = opened.store.load()
        opened.store.close()
        latest = int(records[IKE_SA]["latest"])
        # Every acknowledged batch is there: at most the one being written when killed
        # went further, and it went all or nothing.
        assert latest in (acknowledged, acknowledged + 1)
        for n in range(latest + 1):
            for i in range(1 if n < latest else 0, 15):
                assert records[ESP_SEQ][f"{n}/{i}"] == b"%d" % (n * 16 + i)
            assert (f"{n}/0" in records[ESP_SEQ]) == (n == latest)
        # Each trial begins with a new store (under the same key).
        db.rename(tmp_path / f"trial{trial}.db")
        for side in ("-wal", "-shm"):
            if (tmp_path / f"state.db{side}").exists():
                (tmp_path / f"state.db{side}").rename(tmp_path / f"trial{trial}.db{side}")
