"""What the subcommands share in reading their arguments."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

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
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log lines written to standard error (default info)",
    )


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of text")
