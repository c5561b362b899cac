"""Where larval's log lines go and which are written: a level per subsystem, text or JSON.

Every logger of larval is ``larval.SUBSYSTEM`` (or below one), each subsystem one of
`SUBSYSTEMS`. Their levels come from the configuration (``[daemon.log]``) and from the
command line (``--log-level``), in strongSwan's ``charondebug`` manner: a default level
for all, and a level for any subsystem that should say more or less::

    --log-level info,ike=debug,pfkey=warning        # or --log-level ike=debug, repeated

The command line wins, key by key, over the file; a reload of the file applies its new
levels, with the command line's still on top.

``--log-format json`` writes one JSON object a line for log shippers: ``time`` (RFC 3339,
UTC), ``level``, ``logger``, ``subsystem``, ``message``, and the structured fields a
record carries (``extra=``: ``ike_sa``, ``spi_i``, ``exchange``, ``peer``, ...); an
exception is the ``exception`` field, never lines of its own, and a Python warning is a
record of the ``py.warnings`` logger.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Mapping
from typing import TextIO

from larval.errors import LarvalError

__all__ = [
    "DEFAULT",
    "FORMATS",
    "LEVELS",
    "SUBSYSTEMS",
    "JsonFormatter",
    "Levels",
    "LogLevelError",
    "apply_config_levels",
    "configure",
    "parse_level",
    "parse_levels",
]

#: The subsystems, each the logger ``larval.NAME`` and those below it.
SUBSYSTEMS = ("daemon", "ike", "keymgr", "stack", "dataplane", "pfkey", "ha", "store",
              "control", "trust")  # fmt: skip
#: The key of the level every subsystem has unless given its own.
DEFAULT = "level"
#: The level names taken, as `logging` has them; ``warn`` is ``warning``.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR}  # fmt: skip
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

#: {DEFAULT or a subsystem: level}; a subsystem not in it has the default.
Levels = dict[str, int]


class LogLevelError(LarvalError):
    """A level or a subsystem that is none; the message says what is allowed."""


def parse_level(text: str) -> int:
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise LogLevelError(f"{text!r} is not a level; allowed: debug, info, warning, error")
    return level


def parse_levels(text: str) -> Levels:
    """``info``, ``ike=debug``, ``info,ike=debug,pfkey=warning`` -> `Levels`."""
    levels: Levels = {}
    for item in text.split(","):
        name, eq, level = item.partition("=")
        if not eq:
            name, level = DEFAULT, name
        name = name.strip().lower()
        if name != DEFAULT and name not in SUBSYSTEMS:
            raise LogLevelError(f"{name!r} is not a subsystem; allowed: {', '.join(SUBSYSTEMS)}")
        levels[name] = parse_level(level)
    return levels


class JsonFormatter(logging.Formatter):
    """One JSON object a line (ASCII: any other character escaped, so the line is safe
    in any encoding a shipper reads)."""

    #: What every record has: not fields of its own.
    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, object] = {
            "time": when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "subsystem": subsystem(record.name),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def subsystem(logger: str) -> str:
    """``larval.ha.election`` -> ``ha``; a logger not larval's keeps its name."""
    parts = logger.split(".")
    return parts[1] if parts[0] == "larval" and len(parts) > 1 else logger


class _Setup:
    """What `configure` was given: the command line's levels, on top of the file's."""

    command_line: Levels = {}
    configured = False


def configure(
    command_line: Levels, log_format: str = "text", stream: TextIO | None = None,
    config: Mapping[str, int] | None = None,
) -> logging.Handler:  # fmt: skip
    """Log to `stream` (standard error) in `log_format`, at the levels of `config` (the
    file's ``[daemon.log]``) with `command_line`'s over them. The handler made."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))  # fmt: skip
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # In JSON a library's warning is a line like the others, not text among the objects.
    logging.captureWarnings(log_format == "json")
    _Setup.command_line = dict(command_line)
    _Setup.configured = True
    apply_config_levels(config or {})
    return handler


def apply_config_levels(config: Mapping[str, int]) -> Levels:
    """The file's levels (at start, and at each reload), the command line's over them;
    the levels now in force. Nothing is changed where `configure` was not called (a
    daemon run inside another program, or a test, keeps the logging it was given)."""
    levels = {DEFAULT: logging.INFO, **config, **_Setup.command_line}
    if not _Setup.configured:
        return levels
    default = levels[DEFAULT]
    logging.getLogger().setLevel(default)
    logging.getLogger("larval").setLevel(default)
    for name in SUBSYSTEMS:
        logging.getLogger(f"larval.{name}").setLevel(levels.get(name, logging.NOTSET))
    return levels
