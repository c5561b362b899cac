"""`larval pools`: the daemon's virtual address pools, with their leases online (held by
an IKE SA) and offline (kept for their identity to come back), over the control socket."""

from __future__ import annotations

import argparse
import json
from typing import Any

from larval.commands.args import control_socket_option, json_option
from larval.commands.daemon import stack_without_key_manager
from larval.net.control import ControlError, control_request


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("pools", help="virtual address pools and their leases")
    control_socket_option(p)
    json_option(p)


def run(args: argparse.Namespace) -> int:
    pools = _pools(args.control_socket)
    if args.json:
        print(json.dumps({"pools": pools}))
    else:
        print_pools(pools)
    return 0


def _pools(path: str) -> list[dict[str, Any]]:
    """The daemon's pools; `larval stack`, which has no key manager, has none, said so
    rather than "unknown op"."""
    try:
        answer: list[dict[str, Any]] = control_request(path, {"op": "ike.pools"})["pools"]
        return answer
    except ControlError as refused:
        stack_without_key_manager(path, refused)
        raise ControlError(f"no key manager runs here ({path} is `larval stack`'s): "
                           "no pools") from None  # fmt: skip


def print_pools(pools: list[dict[str, Any]]) -> None:
    """One paragraph a pool: its addresses and counts, then its leases, one a line."""
    if not pools:
        print("no pools")
    for pool in pools:
        print(f"{pool['name']}: {pool['addrs']}, {pool['size']} addresses, "
              f"{len(pool['online'])} online, {len(pool['offline'])} offline")  # fmt: skip
        for state in ("online", "offline"):
            for lease in pool[state]:
                print(f"  {lease['address']:<39} {state:<7} {lease['identity']}")
