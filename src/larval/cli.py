"""The `larval` command."""

from __future__ import annotations

import argparse
import sys

from larval import __version__
from larval.errors import LarvalError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="larval",
        description="IPsec key management and a userspace IPsec stack.",
    )
    parser.add_argument("--version", action="version", version=f"larval {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="a narrated run of the stack, in memory, no root")
    demo.add_argument("--json", action="store_true", help="one JSON object instead of prose")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from larval import demo

            return demo.main(as_json=args.json)
        parser.print_help()
        return 2
    except LarvalError as e:
        print(f"larval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
