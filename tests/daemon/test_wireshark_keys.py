"""``[daemon] save_keys`` and `larval keys --wireshark` (`larval.daemon.wireshark_keys`):
two key managers in memory bring up an IKE SA and a CHILD_SA; the tables appended on one
side hold what the other side holds for the same SAs (so the keys are the ones in use),
a CHILD_SA rekey appends the new ESP SAs, the files are 0600 in a 0700 directory, and
nothing larval logs at DEBUG holds a key. The daemon warns while save_keys is on."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from larval.daemon.ike_daemon import IkeDaemon
from larval.daemon.wireshark_keys import KeySaver, append_lines, live_tables, write_tables
from larval.keymgr.wireshark import ESP_SA, IKEV1_TABLE, IKEV2_TABLE, TABLES
from tests.badinput import write_private
from tests.keymgr.test_manager import Host, advance, carry, udp_packet
from tests.test_daemon_reload import config_text


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def _saved(directory: Path, name: str) -> list[str]:
    path = directory / name
    return path.read_text().splitlines() if path.exists() else []


def _key_fields(lines: dict[str, list[str]]) -> set[str]:
    """The hex of every key in the tables."""
    found = set()
    for line in lines[IKEV2_TABLE]:
        fields = line.split(",")
        found |= {fields[2], fields[3], fields[5], fields[6]}
    for line in lines[IKEV1_TABLE]:
        found.add(line.split(",")[1])
    for line in lines[ESP_SA]:
        fields = [f.strip('"').removeprefix("0x") for f in line.split(",")]
        found |= {fields[5], fields[7]}
    return found - {""}


@pytest.mark.parametrize("version", [2, 1])
def test_save_keys_appends_what_both_ends_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    a = Host("a", "b", "trap", version=version, child_rekey="100s")
    b = Host("b", "a", "none", version=version)
    saved = tmp_path / "keys" / "a"
    saver = KeySaver(str(saved), a.stack.sadb)
    a.node.broadcast = saver.stack_replied
    a.keymgr.on_ike_sa_up = saver.ike_sa_up
    with caplog.at_level(logging.DEBUG, logger="larval"):
        a.keymgr.start(0.0)
        b.keymgr.start(0.0)
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # ACQUIRE
        carry(a, b, 0.0)
        carry(a, b, 3.0)  # IKEv1: the outbound SA waits for QM3 to reach the peer
        a.keymgr.handle_timer(3.0)
        carry(a, b, 3.0)
    table = IKEV2_TABLE if version == 2 else IKEV1_TABLE
    other = IKEV1_TABLE if version == 2 else IKEV2_TABLE
    mine, theirs = live_tables(a.keymgr, a.stack.sadb), live_tables(b.keymgr, b.stack.sadb)
    # One IKE SA: the line appended is the peer's own for it (same SPIs, same keys).
    assert _saved(saved, table) == mine.lines[table] == theirs.lines[table]
    assert len(mine.lines[table]) == 1
    assert mine.lines[other] == theirs.lines[other] == [] and not (saved / other).exists()
    # Both directions of the CHILD_SA, as the peer's SADB holds them.
    assert sorted(_saved(saved, ESP_SA)) == sorted(mine.lines[ESP_SA])
    assert sorted(mine.lines[ESP_SA]) == sorted(theirs.lines[ESP_SA])
    assert len(mine.lines[ESP_SA]) == 2
    assert mine.skipped == theirs.skipped == []
    # 0700 directory (made with its parent), 0600 files.
    assert stat.S_IMODE(saved.stat().st_mode) == 0o700
    assert set(_modes(saved).values()) == {0o600}
    keys = _key_fields(mine.lines)
    assert len(keys) >= 4
    if version == 2:
        # A CHILD_SA rekey: its two new ESP SAs are appended.
        with caplog.at_level(logging.DEBUG, logger="larval"):
            a.stack.age(101.0)
            a.pump(101.0)
            carry(a, b, 101.0)
        now = live_tables(a.keymgr, a.stack.sadb)
        assert len(now.lines[ESP_SA]) == 2 and set(now.lines[ESP_SA]).isdisjoint(mine.lines[ESP_SA])
        assert sorted(_saved(saved, ESP_SA)) == sorted(mine.lines[ESP_SA] + now.lines[ESP_SA])
        assert _saved(saved, table) == mine.lines[table]  # the IKE SA was not rekeyed
        keys |= _key_fields(now.lines)
    # Nothing logged at DEBUG shows a key, whole or in part.
    assert caplog.records
    text = caplog.text.lower()
    for key in keys:
        assert key[:16] not in text, key


@pytest.mark.parametrize("version", [2, 1])
def test_save_keys_appends_the_ike_sa_that_replaces_one(tmp_path: Path, version: int) -> None:
    """An IKEv2 IKE SA rekey (RFC 7296 §2.8) and an IKEv1 reauthentication (a new ISAKMP
    SA that takes the CHILD_SA over): the new IKE SA's line is appended, the peer's own."""
    a = Host("a", "b", "trap", version=version, ike_rekey="100s")
    b = Host("b", "a", "none", version=version)
    saver = KeySaver(str(tmp_path), a.stack.sadb)
    a.node.broadcast = saver.stack_replied
    a.keymgr.on_ike_sa_up = saver.ike_sa_up
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    table = IKEV2_TABLE if version == 2 else IKEV1_TABLE
    (first,) = _saved(tmp_path, table)
    advance(a, b, 0.0, 101.0)
    saved = _saved(tmp_path, table)
    assert len(saved) == 2 and saved[0] == first and saved[1] != first
    assert saved[1] in live_tables(b.keymgr, b.stack.sadb).lines[table]
    assert saved[1].split(",")[0] != first.split(",")[0]  # a new IKE SA, new SPIs


def test_write_tables_writes_each_file_whole_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        where = tmp_path / "deep" / "dir"
        first = {IKEV2_TABLE: ["one", "two"], ESP_SA: ["three"]}
        written = write_tables(str(where), first)
        assert [p.name for p in written] == list(TABLES)
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
        assert _modes(where) == dict.fromkeys(TABLES, 0o600)  # no temporary file left
        assert _saved(where, IKEV2_TABLE) == ["one", "two"]
        assert _saved(where, IKEV1_TABLE) == []
        # Written again: what is live now only; a file someone made 0644 is 0600 again.
        (where / ESP_SA).chmod(0o644)
        write_tables(str(where), {IKEV1_TABLE: ["four"]})
        assert {n: _saved(where, n) for n in TABLES} == {
            IKEV2_TABLE: [],
            IKEV1_TABLE: ["four"],
            ESP_SA: [],
        }
        assert _modes(where) == dict.fromkeys(TABLES, 0o600)
    finally:
        os.umask(old_umask)


def test_append_lines_keeps_a_file_0600(tmp_path: Path) -> None:
    (tmp_path / ESP_SA).write_text("old\n")
    (tmp_path / ESP_SA).chmod(0o644)
    append_lines(tmp_path, ESP_SA, ["new"])
    assert _saved(tmp_path, ESP_SA) == ["old", "new"]
    assert stat.S_IMODE((tmp_path / ESP_SA).stat().st_mode) == 0o600


def test_a_directory_that_cannot_be_made_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    a = Host("a", "b", "trap")
    b = Host("b", "a", "none")
    saver = KeySaver(str(tmp_path / "file" / "keys"), a.stack.sadb)
    a.node.broadcast = saver.stack_replied
    a.keymgr.on_ike_sa_up = saver.ike_sa_up
    with caplog.at_level(logging.ERROR, logger="larval"):
        a.keymgr.start(0.0)
        b.keymgr.start(0.0)
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
        carry(a, b, 0.0)
    assert len(a.keymgr.status()["child_sas"]) == 1  # the SAs came up all the same
    assert "daemon.save_keys: cannot make" in caplog.text
    assert f"{tmp_path / 'file' / 'keys'}" in caplog.text


def test_the_daemon_warns_while_save_keys_is_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "larval.toml"
    keys = tmp_path / "keys"
    on = config_text(tmp_path).replace("[daemon]\n", f'[daemon]\nsave_keys = "{keys}"\n', 1)
    write_private(path, on)
    with caplog.at_level(logging.WARNING, logger="larval"):
        daemon = IkeDaemon(str(path))
    assert f"daemon.save_keys: on: the keys of every IKE SA and CHILD_SA set up are " \
           f"written to {keys}" in caplog.text  # fmt: skip
    assert caplog.text.count("daemon.save_keys: on") == 1  # said once, not twice
    assert daemon.key_saver is not None and daemon.keymgr.on_ike_sa_up is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="larval"):
        daemon.reload()
    assert "daemon.save_keys: on" in caplog.text
    assert "takes a restart" not in caplog.text  # save_keys follows the file
    # Off in the file: off on reload, said once; nothing is saved from then on.
    write_private(path, config_text(tmp_path))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="larval"):
        daemon.reload()
    assert f"daemon.save_keys is off: no more keys are written to {keys}" in caplog.text
    assert daemon.key_saver is None and daemon.keymgr.on_ike_sa_up is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="larval"):
        daemon.reload()
    assert "save_keys" not in caplog.text
    # The control socket's answer for `larval keys`: no SA, no line.
    assert daemon._ike_keys({"op": "ike.keys"}) == {
        "tables": {name: [] for name in TABLES},
        "skipped": [],
    }


def test_save_keys_is_off_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "larval.toml"
    write_private(path, config_text(tmp_path))
    with caplog.at_level(logging.WARNING, logger="larval"):
        daemon = IkeDaemon(str(path))
    assert daemon.config.save_keys is None and daemon.key_saver is None
    assert "save_keys" not in caplog.text


# -- larval keys --wireshark DIR -------------------------------------------------------------


def _answer(tables: dict[str, object], skipped: list[str]) -> dict[str, object]:
    return {"ok": True, "tables": tables, "skipped": skipped}


def test_larval_keys_writes_the_tables_and_says_what_has_no_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from larval import cli
    from larval.commands import keys

    asked: list[dict[str, object]] = []

    def answer(path: str, request: dict[str, object]) -> dict[str, object]:
        asked.append(request)
        tables = {IKEV2_TABLE: ["ike"], IKEV1_TABLE: [], ESP_SA: ["in", "out"]}
        return _answer(tables, ["ESP SA c0ffee01: Wireshark has no ESP name for chacha20-poly1305"])

    monkeypatch.setattr(keys, "control_request", answer)
    where = tmp_path / "keys"
    assert cli.main(["keys", "--wireshark", str(where), "--control-socket", "/x/control"]) == 0
    assert asked == [{"op": "ike.keys"}]
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{where / IKEV2_TABLE}: 1 line", f"{where / IKEV1_TABLE}: 0 lines",
                                f"{where / ESP_SA}: 2 lines"]  # fmt: skip
    assert err == ("larval keys: no line for ESP SA c0ffee01: Wireshark has no ESP name for "
                   "chacha20-poly1305\n")  # fmt: skip
    assert _saved(where, ESP_SA) == ["in", "out"]
    assert _modes(where) == dict.fromkeys(TABLES, 0o600)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_answer({IKEV2_TABLE: "not a list"}, []), "answered nonsense"),
        ({"ok": True}, "answered nonsense"),
        (_answer({ESP_SA: [1, 2]}, []), "answered nonsense"),
        (_answer({ESP_SA: ["two\nlines"]}, []), "answered nonsense"),
    ],
)
def test_larval_keys_refuses_a_nonsense_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: dict[str, object],
    message: str,
) -> None:
    from larval import cli
    from larval.commands import keys

    monkeypatch.setattr(keys, "control_request", lambda path, request: answer)
    where = tmp_path / "keys"
    assert cli.main(["keys", "--wireshark", str(where), "--control-socket", "/x/c"]) == 1
    assert message in capsys.readouterr().err
    assert not where.exists()


def test_larval_keys_names_a_directory_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from larval import cli
    from larval.commands import keys

    tables = {IKEV2_TABLE: ["secret-line"], IKEV1_TABLE: [], ESP_SA: []}
    monkeypatch.setattr(keys, "control_request", lambda path, request: _answer(tables, []))
    (tmp_path / "file").write_text("")
    where = tmp_path / "file" / "keys"
    assert cli.main(["keys", "--wireshark", str(where), "--control-socket", "/x/c"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"larval: cannot write {where}") and "secret-line" not in err
    assert "Traceback" not in err


def test_larval_keys_without_a_daemon_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from larval import cli

    where = tmp_path / "keys"
    control = tmp_path / "control"
    assert cli.main(["keys", "--wireshark", str(where), "--control-socket", str(control)]) == 1
    assert "cannot reach the control socket" in capsys.readouterr().err
    assert not where.exists()
