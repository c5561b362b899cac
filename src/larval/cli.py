"""The `larval` command."""

from __future__ import annotations

import argparse
import os
import select
import sys

from larval import __version__
from larval.commands import (
    check,
    daemon,
    ha,
    keys,
    pki,
    policy,
    pools,
    profile,
    sa,
    stack,
    unit,
)
from larval.errors import LarvalError
from larval.net.control import ControlError
from larval.net.pfkey_client import PfkeyClientError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="larval",
        description="IPsec key management and a userspace IPsec stack.",
    )
    parser.add_argument("--version", action="version", version=f"larval {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="two hosts in memory: first packet, IKEv2, SAs, traffic, DELETE; no root"
    )
    demo.add_argument("--json", action="store_true", help="one JSON object instead of prose")
    demo.add_argument(
        "--stack-only",
        action="store_true",
        help="the stack alone: the LARVAL hold and the seed's race, forced",
    )
    demo.add_argument(
        "--ikev1",
        action="store_true",
        help="IKEv1 (Main and Quick Mode), with QM3 held back: ESP held on the LARVAL SA",
    )
    demo.add_argument(
        "--remote-access",
        action="store_true",
        help="a notebook dials the home gateway: EAP-MSCHAPv2, a pool's address, a ping home",
    )
    sa.add_parser(commands)
    policy.add_parser(commands)
    stack.add_parser(commands)
    daemon.add_parsers(commands)
    keys.add_parser(commands)
    check.add_parser(commands)
    pki.add_parser(commands)
    pools.add_parser(commands)
    profile.add_parser(commands)
    ha.add_parser(commands)
    unit.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        status = _run(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
    except BrokenPipeError as e:
        if not _stdout_closed():
            print(f"larval: {e.strerror}", file=sys.stderr)
            return 1
        # The reader went away (`larval sa dump | head -1`): stop quietly. As Python's
        # signal docs advise, point stdout at /dev/null so that the interpreter's last
        # flush cannot fail again, and exit with 1, Python's own status on EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return status


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports POLLERR),
    so that an EPIPE from a socket is not mistaken for one."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _run(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from larval import demo

            return demo.main(as_json=args.json, stack_only=args.stack_only, ikev1=args.ikev1,
                             remote_access=args.remote_access)  # fmt: skip
        if args.command == "sa":
            return sa.run(args)
        if args.command == "policy":
            return policy.run(args)
        if args.command == "stack":
            return stack.run(args)
        if args.command == "check":
            return check.run(args)
        if args.command in ("run", "up", "down", "status"):
            return daemon.run(args)
        if args.command == "keys":
            return keys.run(args)
        if args.command == "pki":
            return pki.run(args)
        if args.command == "pools":
            return pools.run(args)
        if args.command == "profile":
            return profile.run(args)
        if args.command == "ha":
            return ha.run(args)
        if args.command == "unit":
            return unit.run(args)
        parser.print_help()
        return 2
    except sa.RefusedError as e:
        print(f"larval: {e}", file=sys.stderr)
        return 1
    except (ControlError, PfkeyClientError) as e:
        print(f"larval: {e}", file=sys.stderr)
        return 1
    except LarvalError as e:
        print(f"larval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
