"""`larval run` with ``[daemon] state``: the key manager keeps its SAs in the store and
restores from it at start; ``--fresh`` moves the store aside; a corrupt one is moved
aside, named in the log, and the daemon starts clean."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from larval.daemon.ike_daemon import IkeDaemon
from larval.store import IKE_SA
from tests.badinput import write_private


def _config(tmp: Path) -> Path:
    text = (
        f'[daemon]\naddresses = ["127.0.0.1"]\ncontrol_socket = "{tmp / "control"}"\n'
        f'state = "{tmp / "state" / "state.db"}"\n'
    )
    return write_private(tmp / "larval.toml", text)


def test_larval_run_keeps_its_state_in_the_configured_store(tmp_path: Path) -> None:
    daemon = IkeDaemon(str(_config(tmp_path)))
    assert daemon.store is not None and daemon.keymgr.persist is not None
    assert daemon.keymgr.persist.store is daemon.store
    assert (tmp_path / "state" / "state.db").exists()
    daemon.store.close()


def test_without_a_state_nothing_is_kept(tmp_path: Path) -> None:
    text = f'[daemon]\naddresses = ["127.0.0.1"]\ncontrol_socket = "{tmp_path / "control"}"\n'
    daemon = IkeDaemon(str(write_private(tmp_path / "larval.toml", text)), fresh=True)
    assert daemon.store is None and daemon.keymgr.persist is None


def test_fresh_moves_the_store_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _config(tmp_path)
    first = IkeDaemon(str(path))
    assert first.store is not None
    first.store.write({(IKE_SA, "00/11"): b"{}"})
    first.store.close()
    again = IkeDaemon(str(path))
    assert again.store is not None and again.store.load() == {IKE_SA: {"00/11": b"{}"}}
    again.store.close()
    caplog.set_level(logging.WARNING)
    fresh = IkeDaemon(str(path), fresh=True)
    assert fresh.store is not None and fresh.store.load() == {}
    fresh.store.close()
    (old,) = (tmp_path / "state").glob("state.db.old-*")
    assert f"moved aside to {old}" in caplog.text


def test_a_corrupt_store_is_moved_aside_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(tmp_path)
    IkeDaemon(str(path)).store.close()  # type: ignore[union-attr]
    store_file = tmp_path / "state" / "state.db"
    store_file.write_bytes(b"not a database at all" * 100)
    caplog.set_level(logging.WARNING)
    daemon = IkeDaemon(str(path))
    assert daemon.store is not None and daemon.store.load() == {}
    daemon.store.close()
    (corrupt,) = (tmp_path / "state").glob("state.db.corrupt-*")
    assert str(store_file) in caplog.text and str(corrupt) in caplog.text
