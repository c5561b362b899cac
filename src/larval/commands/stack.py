"""`larval stack`: run the stack alone, serving PF_KEY."""

from __future__ import annotations

import argparse
import asyncio
import os

from larval.commands.args import configure_logging, default_control_socket, log_level_option, number
from larval.commands.sa import UsageError, default_socket
from larval.daemon.listen_address import parse_listen
from larval.esp import NAT_T_PORT
from larval.esp.ip import MAX_MTU, MIN_MTU
from larval.net.unix_socket import SocketPathError, check_vacant
from larval.spd.config import load_policy_text, read_config_text
from larval.spd.errors import PolicyFileError
from larval.store import StateStore


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("stack", help="run the stack alone, serving PF_KEY (no IKE)")
    p.add_argument("--pfkey-socket", default=default_socket(), help="where to serve PF_KEY")
    p.add_argument(
        "--control-socket",
        default=default_control_socket(),
        help="where to serve policy and status requests ('' for none)",
    )
    p.add_argument("--policy", help="a policy file to load at start")
    p.add_argument(
        "--metrics",
        metavar="ADDRESS:PORT",
        help="serve Prometheus metrics there, e.g. 127.0.0.1:9105 or [::1]:9105 (default: off)",
    )
    dp = p.add_argument_group("dataplane (root): cleartext on a TUN device, ESP in UDP")
    dp.add_argument("--tun", help="TUN device to create, e.g. larval0")
    dp.add_argument("--local", help="address to receive ESP-in-UDP on (port --port)")
    dp.add_argument(
        "--port",
        type=number(1, 65535, "", "a UDP port"),
        default=NAT_T_PORT,
        help="UDP port for ESP (default %(default)s)",
    )
    dp.add_argument("--tun-address", action="append", default=[], help="address/prefix on the TUN")
    dp.add_argument(
        "--route", action="append", default=[], help="a protected network routed into the TUN"
    )
    dp.add_argument(
        "--mtu",
        type=number(MIN_MTU, MAX_MTU, "bytes", "an IP link's MTU"),
        default=1400,
        help=f"MTU of the TUN device, bytes ({MIN_MTU}-{MAX_MTU}, default 1400)",
    )
    dp.add_argument(
        "--no-offload", action="store_true", help="no TUN TSO offload: one packet per read"
    )
    dp.add_argument(
        "--plain-esp",
        action="store_true",
        help="send SAs without NAT-T as IP protocol 50 (default: ESP in UDP 4500)",
    )
    log_level_option(p)


def socket_dirs(paths: dict[str, str]) -> list[str]:
    """Check the socket paths given as {option: path}, then create the directories they
    go in (mode 0700); a SocketPathError names the option if either cannot be done.
    Every path is checked before anything is created. The directories created."""
    given = {option: path for option, path in paths.items() if path}
    seen: dict[str, str] = {}
    for option, path in given.items():
        check_vacant(path, option)
        where = os.path.realpath(path)
        if where in seen:
            raise SocketPathError(f"{option} {path}: the same path as {seen[where]}")
        seen[where] = option
    made = []
    for option, path in given.items():
        directory = os.path.dirname(os.path.abspath(path))
        there = os.path.isdir(directory)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as e:
            raise SocketPathError(
                f"{option} {path}: cannot create {directory}: {e.strerror}"
            ) from e
        if not there:
            made.append(directory)
    return made


def run(args: argparse.Namespace, store: StateStore | None = None) -> int:
    """`store`: where ESP sequence numbers are reserved and replay windows checkpointed
    (`larval.stack.esp_state`); `bench tunnel` passes one to measure what it costs."""
    from larval.daemon.stack_service import DataplaneConfig, StackService

    configure_logging(args)
    # The policy file is read and checked first: a bad one leaves nothing made on disk.
    policy_text = None
    if args.policy:
        try:
            policy_text = read_config_text(args.policy).text
            load_policy_text(policy_text, args.policy)
        except PolicyFileError as e:
            raise UsageError(f"--policy {e}") from None
    metrics = None
    if args.metrics:
        try:
            metrics = parse_listen(args.metrics)
        except ValueError as e:
            raise UsageError(f"--metrics {e}") from None
    socket_dirs({"--pfkey-socket": args.pfkey_socket, "--control-socket": args.control_socket})
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
    service = StackService(args.pfkey_socket, args.control_socket or None, dataplane, store=store)
    service.metrics_at = metrics
    if policy_text is not None:
        service.load_policy(policy_text, args.policy)
    service.settle_gc = True
    asyncio.run(service.run())
    return 0
