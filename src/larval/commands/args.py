"""What the subcommands share in reading their arguments."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from larval.logs import FORMATS, SUBSYSTEMS, Levels, LogLevelError, configure, parse_levels

DEFAULT_CONTROL_SOCKET = "/run/larval/control"


def default_control_socket() -> str:
    return os.environ.get("LARVAL_CONTROL_SOCKET", DEFAULT_CONTROL_SOCKET)


def number(
    low: int, high: int, unit: str = "", why: str = "", *, hex_: bool = False
) -> Callable[[str], int]:
    """An argparse type: an integer (decimal, or 0x hex) in [low, high]; a value that is
    not one is refused with the range, its unit and why the range is what it is."""
    shown = f"{low:#x} to {high:#x}" if hex_ else f"{low} to {high}"
    shown += f" {unit}" if unit else ""
    reason = f"; {why}" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({shown})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {shown}{reason}")
        return value

    return parse


def control_socket_option(p: argparse.ArgumentParser) -> None:
    """`--control-socket`, for the commands that talk to `larval run` or `larval stack`."""
    p.add_argument(
        "--control-socket",
        default=default_control_socket(),
        metavar="PATH",
        help="the control socket of larval run or larval stack "
        "(default: $LARVAL_CONTROL_SOCKET, else %(default)s)",
    )


def log_level_option(p: argparse.ArgumentParser) -> None:
    """`--log-level` (repeatable) and `--log-format` (`larval.logs`)."""
    p.add_argument(
        "--log-level",
        action="append",
        type=_levels,
        metavar="[LEVEL][,SUBSYSTEM=LEVEL...]",
        help="the least severe log lines written to standard error: debug, info (the "
        "default), warning or error, for all subsystems, or for one with SUBSYSTEM=LEVEL ("
        + ", ".join(SUBSYSTEMS)
        + "); e.g. info,ike=debug,pfkey=warning",
    )
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text (the default) or json: one JSON object a line, for log shippers",
    )


def _levels(text: str) -> Levels:
    try:
        return parse_levels(text)
    except LogLevelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def configure_logging(args: argparse.Namespace) -> None:
    """Logging as `log_level_option`'s options say, the later `--log-level` over the
    earlier; the configuration file's ``[daemon.log]`` is applied under them later
    (`larval.logs.apply_config_levels`)."""
    levels: Levels = {}
    for given in args.log_level or ():
        levels.update(given)
    configure(levels, args.log_format)


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of text")
