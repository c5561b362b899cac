"""`larval keys --wireshark DIR`: Wireshark's decryption tables of the daemon's live SAs.

The daemon answers over its control socket (``ike.keys``) with the lines of
``ikev2_decryption_table``, ``ikev1_decryption_table`` and ``esp_sa``
(`larval.daemon.wireshark_keys`); this command writes each file whole and atomically into
DIR (made 0700 if it is not there), 0600, replacing what an earlier run wrote. DIR is
then a Wireshark profile's worth of keys: copy the files into the profile directory, or
point ``tshark -C`` at a profile that holds them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from larval.commands.args import control_socket_option
from larval.commands.daemon import stack_without_key_manager
from larval.net.control import ControlError, control_request

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "keys", help="write the live SAs' keys for Wireshark (ikev2_decryption_table, esp_sa)"
    )
    p.add_argument(
        "--wireshark",
        required=True,
        metavar="DIR",
        help="the directory the tables are written to (made 0700; files 0600)",
    )
    control_socket_option(p)


def run(args: argparse.Namespace) -> int:
    # Here, not at the top: every `larval` command would pay for the key manager's import.
    from larval.daemon.wireshark_keys import write_tables
    from larval.keymgr.wireshark import TABLES

    answer = _keys(args.control_socket)
    tables = answer.get("tables")
    if not isinstance(tables, dict) or not all(_lines(tables.get(name, [])) for name in TABLES):
        raise ControlError(f"the control socket {args.control_socket} answered nonsense")
    try:
        written = write_tables(args.wireshark, tables)
    except OSError as e:
        print(f"larval: cannot write {e.filename or args.wireshark}: {e.strerror}",
              file=sys.stderr)  # fmt: skip
        return 1
    for path in written:
        count = len(tables.get(path.name, []))
        print(f"{path}: {count} line{'' if count == 1 else 's'}")
    skipped = answer.get("skipped")
    for note in skipped if isinstance(skipped, list) else ():
        print(f"larval keys: no line for {note}", file=sys.stderr)
    return 0


def _lines(value: object) -> bool:
    """Whether `value` is a table's lines: a list of one-line strings."""
    return isinstance(value, list) and all(
        isinstance(line, str) and "\n" not in line for line in value
    )


def _keys(path: str) -> dict[str, Any]:
    """The daemon's tables; from `larval stack`, which has no key manager and so no keys,
    a refusal that says so rather than "unknown op"."""
    try:
        return control_request(path, {"op": "ike.keys"})
    except ControlError as refused:
        stack_without_key_manager(path, refused)
        raise ControlError(
            f"no key manager runs here ({path} is `larval stack`'s): "
            "no IKE SA and no CHILD_SA it set up to write keys of"
        ) from None
