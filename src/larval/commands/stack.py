"""`larval stack`: run the stack alone, serving PF_KEY."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from larval.commands.policy import default_control_socket
from larval.commands.sa import UsageError, default_socket
from larval.spd.config import read_config_text
from larval.spd.errors import PolicyFileError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("stack", help="run the stack alone, serving PF_KEY (no IKE)")
    p.add_argument("--pfkey-socket", default=default_socket(), help="where to serve PF_KEY")
    p.add_argument(
        "--control-socket",
        default=default_control_socket(),
        help="where to serve policy and status requests ('' for none)",
    )
    p.add_argument("--policy", help="a policy file to load at start")
    dp = p.add_argument_group("dataplane (root): cleartext on a TUN device, ESP in UDP")
    dp.add_argument("--tun", help="TUN device to create, e.g. larval0")
    dp.add_argument("--local", help="address to receive ESP-in-UDP on (port --port)")
    dp.add_argument("--port", type=int, default=4500)
    dp.add_argument("--tun-address", action="append", default=[], help="address/prefix on the TUN")
    dp.add_argument(
        "--route", action="append", default=[], help="a protected network routed into the TUN"
    )
    dp.add_argument("--mtu", type=int, default=1400)
    dp.add_argument(
        "--no-offload", action="store_true", help="no TUN TSO offload: one packet per read"
    )
    dp.add_argument(
        "--plain-esp",
        action="store_true",
        help="send SAs without NAT-T as IP protocol 50 (default: ESP in UDP 4500)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    from larval.daemon.stack_service import DataplaneConfig, StackService

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for path in (args.pfkey_socket, args.control_socket):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    dataplane = None
    if args.tun or args.local:
        if not (args.tun and args.local):
            raise UsageError("the dataplane needs both --tun and --local")
        dataplane = DataplaneConfig(
            args.tun,
            args.local,
            args.tun_address,
            args.route,
            args.port,
            args.mtu,
            offload=not args.no_offload,
            plain_esp=args.plain_esp,
        )
    service = StackService(args.pfkey_socket, args.control_socket or None, dataplane)
    if args.policy:
        try:
            text = read_config_text(args.policy).text
        except PolicyFileError as e:
            raise UsageError(f"--policy {e}") from None
        service.load_policy(text, args.policy)
    asyncio.run(service.run())
    return 0
