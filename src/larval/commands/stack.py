"""`larval stack`: run the stack alone, serving PF_KEY."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from larval.commands.policy import default_control_socket
from larval.commands.sa import UsageError, default_socket


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("stack", help="run the stack alone, serving PF_KEY (no IKE)")
    p.add_argument("--pfkey-socket", default=default_socket(), help="where to serve PF_KEY")
    p.add_argument(
        "--control-socket",
        default=default_control_socket(),
        help="where to serve policy and status requests ('' for none)",
    )
    p.add_argument("--policy", help="a policy file to load at start")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    from larval.daemon.stack_service import StackService

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for path in (args.pfkey_socket, args.control_socket):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    service = StackService(args.pfkey_socket, args.control_socket or None)
    if args.policy:
        try:
            with open(args.policy) as f:
                text = f.read()
        except OSError as e:
            raise UsageError(f"--policy {args.policy}: {e.strerror}") from None
        service.load_policy(text, args.policy)
    asyncio.run(service.run())
    return 0
