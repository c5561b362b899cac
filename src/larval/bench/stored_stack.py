"""`python -m larval.bench.stored_stack STATE [larval stack options]`: `larval stack` with
its ESP sequence numbers reserved and its replay windows checkpointed in an SQLite state
store at STATE (a new key created beside it), as `larval run` keeps them with
``[daemon] state``: what `bench tunnel` runs with the store on."""

from __future__ import annotations

import argparse
import sys

from larval.commands import stack
from larval.store.sqlite import open_store


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    state, *options = argv
    parser = argparse.ArgumentParser(prog="python -m larval.bench.stored_stack")
    stack.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stack", *options])
    store = open_store(state).store
    try:
        return stack.run(args, store=store)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
