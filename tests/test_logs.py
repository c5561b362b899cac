"""Logs (`larval.logs`, `larval.ike.exchange_log`): levels by subsystem from the command
line and the file, JSON lines, and the one INFO line per exchange."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from larval import cli, demo_ladder, logs
from larval.commands.args import configure_logging
from larval.ike import exchange_log
from larval.logs import DEFAULT, JsonFormatter, LogLevelError, parse_levels
from tests.keymgr.test_manager import Host, carry, udp_packet

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def restored() -> Iterator[None]:
    """What `configure` changes (the root's handlers, the loggers' levels) put back."""
    root = logging.getLogger()
    names = ["", "larval", *(f"larval.{s}" for s in logs.SUBSYSTEMS)]
    levels = {n: logging.getLogger(n).level for n in names}
    handlers = list(root.handlers)
    setup = (logs._Setup.command_line, logs._Setup.configured)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logs._Setup.command_line, logs._Setup.configured = setup
    logging.captureWarnings(False)


# -- levels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "levels"),
    [
        ("info", {DEFAULT: logging.INFO}),
        ("DEBUG", {DEFAULT: logging.DEBUG}),
        ("warn", {DEFAULT: logging.WARNING}),
        ("ike=debug", {"ike": logging.DEBUG}),
        ("info,ike=debug,pfkey=warning",
         {DEFAULT: logging.INFO, "ike": logging.DEBUG, "pfkey": logging.WARNING}),
        (" error , KeyMgr = Debug ", {DEFAULT: logging.ERROR, "keymgr": logging.DEBUG}),
    ],
)  # fmt: skip
def test_levels_read(text: str, levels: dict[str, int]) -> None:
    assert parse_levels(text) == levels


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("verbose", "'verbose' is not a level; allowed: debug, info, warning, error"),
        ("ike=loud", "'loud' is not a level"),
        ("ike=", "'' is not a level"),
        ("kernel=debug", "'kernel' is not a subsystem; allowed: daemon, ike, keymgr, stack"),
        ("info,,ike=debug", "'' is not a level"),
    ],
)
def test_a_bad_level_or_subsystem_is_named(text: str, named: str) -> None:
    with pytest.raises(LogLevelError, match=re.escape(named)):
        parse_levels(text)


def _run_args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(["run", "-c", "x.toml", *argv])


@pytest.mark.usefixtures("restored")
def test_the_command_line_sets_each_subsystem_and_the_file_goes_under_it() -> None:
    args = _run_args("--log-level", "warning", "--log-level", "ike=debug,pfkey=error")
    configure_logging(args)
    level = {s: logging.getLogger(f"larval.{s}").getEffectiveLevel() for s in logs.SUBSYSTEMS}
    assert level["ike"] == logging.DEBUG and level["pfkey"] == logging.ERROR
    assert level["keymgr"] == level["stack"] == level["daemon"] == logging.WARNING
    assert logging.getLogger("larval.ha.election").getEffectiveLevel() == logging.WARNING
    # The file's [daemon.log]: its own keys apply, the command line's stay on top.
    now = logs.apply_config_levels({DEFAULT: logging.DEBUG, "keymgr": logging.INFO,
                                    "ike": logging.ERROR})  # fmt: skip
    assert now == {DEFAULT: logging.WARNING, "keymgr": logging.INFO, "ike": logging.DEBUG,
                   "pfkey": logging.ERROR}  # fmt: skip
    assert logging.getLogger("larval.keymgr").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("larval.stack").getEffectiveLevel() == logging.WARNING
    # A reload without the key: the subsystem has the default again.
    logs.apply_config_levels({})
    assert logging.getLogger("larval.keymgr").getEffectiveLevel() == logging.WARNING


@pytest.mark.usefixtures("restored")
def test_without_configure_the_file_changes_no_level() -> None:
    logs._Setup.configured = False
    before = logging.getLogger("larval.ike").level
    logs.apply_config_levels({"ike": logging.ERROR})
    assert logging.getLogger("larval.ike").level == before


def test_a_bad_log_level_on_the_command_line_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run_args("--log-level", "ike=loud")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--log-level: 'loud' is not a level" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        _run_args("--log-format", "xml")


def test_larval_stack_takes_the_same_options() -> None:
    args = cli._parser().parse_args(["stack", "--log-level", "dataplane=debug",
                                     "--log-format", "json"])  # fmt: skip
    assert args.log_level == [{"dataplane": logging.DEBUG}] and args.log_format == "json"


# -- JSON --------------------------------------------------------------------------------


def _record(msg: str, *args: object, exc_info: Any = None,
            extra: dict[str, object] | None = None) -> logging.LogRecord:  # fmt: skip
    logger = logging.getLogger("larval.ike")
    return logger.makeRecord("larval.ike", logging.INFO, __file__, 1, msg, args, exc_info,
                             extra=extra)  # fmt: skip


def test_json_has_the_fields_and_the_records_own() -> None:
    record = _record("%s: up", "s2s[1]", extra={"spi_i": "0011223344556677", "unique_id": 1})
    record.created = 1767225600.25  # 2026-01-01T00:00:00.25Z
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out == {"time": "2026-01-01T00:00:00.250000Z", "level": "info",
                   "logger": "larval.ike", "subsystem": "ike", "message": "s2s[1]: up",
                   "spi_i": "0011223344556677", "unique_id": 1}  # fmt: skip
    other = json.loads(JsonFormatter().format(logging.makeLogRecord({"name": "asyncio"})))
    assert other["subsystem"] == "asyncio"


def test_an_exception_is_one_field_of_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    out = json.loads(line)
    assert out["message"] == "failed"
    assert out["exception"].startswith("Traceback") and "ValueError: bad\nthing" in out["exception"]


def test_non_ascii_is_escaped_and_comes_back() -> None:
    record = _record("identity %r: %s", "gerät@例え.jp", "\u2028 ✓", extra={"eap_id": "jürgen"})
    line = JsonFormatter().format(record)
    assert line.isascii()
    out = json.loads(line)
    assert out["message"] == "identity 'gerät@例え.jp': \u2028 ✓" and out["eap_id"] == "jürgen"


@pytest.mark.usefixtures("restored")
def test_configure_json_writes_json_lines() -> None:
    stream = io.StringIO()
    logs.configure({DEFAULT: logging.INFO, "ike": logging.DEBUG}, "json", stream)
    logging.getLogger("larval.ike").debug("a %s", "debug line")
    logging.getLogger("larval.keymgr").debug("not written")
    logging.getLogger("larval.keymgr").info("written")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(o["subsystem"], o["level"], o["message"]) for o in lines[:2]] == [
        ("ike", "debug", "a debug line"), ("keymgr", "info", "written")]  # fmt: skip
    (warning,) = lines[2:]
    assert warning["logger"] == "py.warnings" and "a library's warning" in warning["message"]


# -- one line per exchange ---------------------------------------------------------------


def _exchanges(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "exchange")]


def test_each_exchange_of_the_ikev2_demo_has_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="larval.ike")
    result = demo_ladder.run(2).as_json()
    lines = _exchanges(caplog)
    assert all(r.levelno == logging.INFO and r.name == "larval.ike" for r in lines)
    seen = [(r.exchange, r.initiated) for r in lines]  # type: ignore[attr-defined]
    # IKE_SA_INIT, IKE_AUTH, a CREATE_CHILD_SA rekey, the old CHILD_SA's and the IKE
    # SA's INFORMATIONAL: each once on each side.
    for exchange in ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA"):
        assert seen.count((exchange, True)) == seen.count((exchange, False)) == 1
    assert seen.count(("INFORMATIONAL", True)) == seen.count(("INFORMATIONAL", False)) == 2
    a = next(sa for sa in result["ike_sas"] if sa["host"] == "A")
    auth = {r.initiated: r for r in lines if r.exchange == "IKE_AUTH"}  # type: ignore[attr-defined]
    i, r = auth[True], auth[False]
    assert i.getMessage() == (
        f"s2s[{i.unique_id}]: IKE_AUTH initiated, ok, peer 192.0.2.2[4500], "  # type: ignore[attr-defined]
        f"SPIs {a['spi_i']}/{a['spi_r']}, CHILD_SA net SPIs {i.child_sas[0]['spi_in']} in / "  # type: ignore[attr-defined]
        f"{i.child_sas[0]['spi_out']} out"  # type: ignore[attr-defined]
    )
    keys = ("ike_sa", "connection", "exchange", "initiated", "result", "peer", "peer_port",
            "spi_i", "spi_r")  # fmt: skip
    fields = {k: getattr(r, k) for k in keys}
    assert fields == {"ike_sa": f"s2s[{r.unique_id}]", "connection": "s2s",  # type: ignore[attr-defined]
                      "exchange": "IKE_AUTH", "initiated": False, "result": "ok",
                      "peer": "192.0.2.1", "peer_port": 4500, "spi_i": a["spi_i"],
                      "spi_r": a["spi_r"]}  # fmt: skip
    assert i.unique_id != r.unique_id  # type: ignore[attr-defined]
    (ci,), (cr,) = i.child_sas, r.child_sas  # type: ignore[attr-defined]
    assert (ci["spi_in"], ci["spi_out"]) == (cr["spi_out"], cr["spi_in"])
    # The rekey's line names the CHILD_SA that runs now.
    rekey = next(x for x in lines if x.exchange == "CREATE_CHILD_SA" and x.initiated)  # type: ignore[attr-defined]
    (made,) = rekey.child_sas  # type: ignore[attr-defined]
    now = {c["host"]: c for c in result["child_sas"]}
    assert {made["spi_in"], made["spi_out"]} == {now["A"]["spi_in"], now["A"]["spi_out"]}


def test_each_exchange_of_the_ikev1_demo_has_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="larval.ike")
    result = demo_ladder.run(1).as_json()
    lines = _exchanges(caplog)
    seen = [(r.exchange, r.initiated, r.result) for r in lines]  # type: ignore[attr-defined]
    for exchange in ("Main Mode", "Quick Mode"):
        assert seen.count((exchange, True, "ok")) == seen.count((exchange, False, "ok")) >= 1
    # The DELETEs: each an Informational exchange of A's, received by B.
    assert seen.count(("Informational", True, "ok")) == seen.count(("Informational", False, "ok"))
    assert seen.count(("Informational", True, "ok")) >= 1
    a = next(sa for sa in result["ike_sas"] if sa["host"] == "A")
    main = next(r for r in lines if r.exchange == "Main Mode" and r.initiated)  # type: ignore[attr-defined]
    assert (main.spi_i, main.spi_r) == (a["spi_i"], a["spi_r"])  # type: ignore[attr-defined]
    assert not hasattr(main, "child_sas")
    quick = [r for r in lines if r.exchange == "Quick Mode"]  # type: ignore[attr-defined]
    assert all(len(r.child_sas) == 1 for r in quick)  # type: ignore[attr-defined]
    assert re.fullmatch(r"s2s\[\d+\]: Quick Mode (initiated|responded), ok, peer 192\.0\.2\.\d"
                        r"\[4500\], SPIs [0-9a-f]{16}/[0-9a-f]{16}, CHILD_SA net SPIs "
                        r"[0-9a-f]{8} in / [0-9a-f]{8} out", quick[0].getMessage())  # fmt: skip


def test_a_refused_ikev2_exchange_names_the_notify(caplog: pytest.LogCaptureFixture) -> None:
    from tests.ikev2.test_session import NET_A, NET_B, A, B, Pair, child, config

    caplog.set_level(logging.INFO, logger="larval.ike")
    pair = Pair(config(A, B), config(B, A, proposals=("aes256-sha512-ecp521",)), None)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    # IKE_SA_INIT { SA(aes128-sha256-x25519), ... } -->  <-- { N(NO_PROPOSAL_CHOSEN) }
    pair.flush()
    got = [(r.exchange, r.initiated, r.result, r.peer) for r in _exchanges(caplog)]  # type: ignore[attr-defined]
    assert got == [("IKE_SA_INIT", False, "NO_PROPOSAL_CHOSEN", str(A)),
                   ("IKE_SA_INIT", True, "NO_PROPOSAL_CHOSEN", str(B))]  # fmt: skip


def test_a_refused_ikev1_exchange_names_the_notify(caplog: pytest.LogCaptureFixture) -> None:
    from tests.ikev1.test_session import NET_A, NET_B, A, B, Pair, child, config

    caplog.set_level(logging.INFO, logger="larval.ike")
    pair = Pair(config(A, B), config(B, A, proposals=("aes256-sha512-ecp384",)), None)
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    pair.flush()  # MM1 -->  <-- INFORMATIONAL { N(NO_PROPOSAL_CHOSEN) }
    got = [(r.exchange, r.initiated, r.result) for r in _exchanges(caplog)]  # type: ignore[attr-defined]
    assert got == [("Main Mode", False, "NO_PROPOSAL_CHOSEN"),
                   ("Informational", False, "NO_PROPOSAL_CHOSEN")]  # fmt: skip


@pytest.mark.parametrize("version", [1, 2])
def test_with_info_off_no_exchange_line_is_made(
    version: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[object, ...]] = []
    monkeypatch.setattr(exchange_log, "log_exchange", lambda *a, **k: made.append(a))
    caplog.set_level(logging.WARNING, logger="larval.ike")
    a, b = Host("a", "b", "trap", version=version), Host("b", "a", "none", version=version)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    assert len(a.keymgr.sessions) == 1 and made == []
    caplog.set_level(logging.INFO, logger="larval.ike")
    a.keymgr.down("s2s", 1.0)
    carry(a, b, 1.0)
    assert made  # the same code, with INFO on, makes them


@pytest.mark.usefixtures("restored")
def test_a_reload_applies_the_files_new_levels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from larval.daemon.ike_daemon import IkeDaemon
    from tests.badinput import write_private
    from tests.test_daemon_reload import config_text

    logs.configure({"pfkey": logging.ERROR}, stream=io.StringIO())
    logging.getLogger().addHandler(caplog.handler)  # `configure` took the root's handlers
    path = tmp_path / "larval.toml"
    text = config_text(tmp_path)
    write_private(path, text.replace("[daemon]\n", '[daemon.log]\nike = "debug"\n[daemon]\n'))
    daemon = IkeDaemon(str(path))
    assert logging.getLogger("larval.ike").getEffectiveLevel() == logging.DEBUG
    write_private(path, text + '\n[daemon.log]\nlevel = "warning"\npfkey = "debug"\n')
    caplog.set_level(logging.INFO, logger="larval.daemon")
    daemon.reload()
    assert "configuration reloaded" in caplog.text and "takes a restart" not in caplog.text
    assert logging.getLogger("larval.ike").getEffectiveLevel() == logging.WARNING
    assert (
        logging.getLogger("larval.pfkey").getEffectiveLevel() == logging.ERROR
    )  # the command line's
    write_private(path, text + '\n[daemon.log]\nike = "verbose"\n')
    daemon.reload()  # refused: the levels stay
    assert "reload refused" in caplog.text and "daemon.log.ike" in caplog.text
    assert logging.getLogger("larval.ike").getEffectiveLevel() == logging.WARNING


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("tries", [1, 5])
def test_a_request_never_answered_is_an_exchange_with_no_answer(
    version: int, tries: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Its retransmissions given up (1 try), or the half-open IKE SA's time out first."""
    from tests.ikev1 import test_session as v1
    from tests.ikev2 import test_session as v2

    caplog.set_level(logging.INFO, logger="larval.ike")
    config = dataclasses.replace(v2.config(v2.A, v2.B), retransmit_tries=tries)
    pair = (v1 if version == 1 else v2).Pair(config, v2.config(v2.B, v2.A), None)
    pair.i.initiate(v2.child(v2.NET_A, v2.NET_B), 0.0)
    now = 0.0
    while now < 600 and not _exchanges(caplog):  # IKE_SA_INIT (MM1) --> lost, again and again
        pair.i.datagrams_to_send(now)
        now += 1.0
        pair.i.handle_timer(now)
    (line,) = _exchanges(caplog)
    exchange = "Main Mode" if version == 1 else "IKE_SA_INIT"
    assert (line.exchange, line.initiated, line.result) == (exchange, True, "no answer")  # type: ignore[attr-defined]
    assert line.getMessage().endswith(f"{exchange} initiated, no answer, peer 192.0.2.2[500], "
                                      f"SPIs {pair.i.spi_i.hex()}/0000000000000000")  # fmt: skip
    assert now < 30 if tries == 1 else now >= 30
