"""`larval unit`: the systemd unit that ships with larval (``larval/data/larval.service``),
with the absolute path of this larval in ``ExecStart``, for
``larval unit > /etc/systemd/system/larval.service``."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import resources

UNIT_NAME = "larval.service"
SHIPPED_START = "ExecStart=larval run -c /etc/larval/larval.toml --user larval"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("unit", help="print the systemd unit (larval.service)")
    p.add_argument("-c", "--config", default="/etc/larval/larval.toml",
                   help="the configuration file ExecStart names (default %(default)s)")  # fmt: skip
    p.add_argument("--user", default="larval",
                   help="the user larval run becomes (default %(default)s)")  # fmt: skip
    p.add_argument("--shipped", action="store_true",
                   help="the unit as shipped, ExecStart with a bare `larval`")  # fmt: skip


def shipped_unit() -> str:
    """The unit file of the package data, as it ships."""
    return resources.files("larval").joinpath("data", UNIT_NAME).read_text()


def this_larval() -> str:
    """The absolute path of the `larval` command that runs now, else the one installed
    beside this Python (a virtual environment's bin), else the one on PATH, else the bare
    name (systemd looks that up in its own fixed PATH)."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "larval" and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "larval")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("larval") or "larval"


def unit_text(larval: str, config: str, user: str) -> str:
    text = shipped_unit()
    assert SHIPPED_START in text, "the shipped unit's ExecStart changed"
    return text.replace(SHIPPED_START, f"ExecStart={larval} run -c {config} --user {user}")


def run(args: argparse.Namespace) -> int:
    if args.shipped:
        sys.stdout.write(shipped_unit())
    else:
        sys.stdout.write(unit_text(this_larval(), args.config, args.user))
    return 0
