"""`larval ha status`: this gateway's place in its group (``[ha]``), over the control
socket: its role, the epoch it owns, who owns the group, how far its copy of the state
lags etcd's, and every node of the group as each last said."""

from __future__ import annotations

import argparse
import json
from typing import Any

from larval.commands.args import control_socket_option, json_option
from larval.commands.daemon import stack_without_key_manager
from larval.net.control import ControlError, control_request


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ha = commands.add_parser("ha", help="high availability: the group of gateways in etcd")
    sub = ha.add_subparsers(dest="ha_command", metavar="COMMAND", required=True)
    status = sub.add_parser("status", help="role, epoch, owner and lag of this node and its group")
    control_socket_option(status)
    json_option(status)


def run(args: argparse.Namespace) -> int:
    answer = _status(args.control_socket)
    if args.json:
        print(json.dumps(answer))
    else:
        print_status(answer)
    return 0


def _status(path: str) -> dict[str, Any]:
    try:
        return control_request(path, {"op": "ha.status"})
    except ControlError as refused:
        stack_without_key_manager(path, refused)
        raise ControlError(f"{path} is `larval stack`'s: a stack alone is in no group") from None


def print_status(answer: dict[str, Any]) -> None:
    role = answer["role"]
    epoch = f" (epoch {answer['epoch']})" if answer.get("epoch") else ""
    print(f"group {answer['group']}, node {answer['node']}: {role}{epoch}; "
          f"owner {answer.get('owner') or 'none seen'}")  # fmt: skip
    print(f"state: revision {answer['revision']} applied of {answer['state_revision']} "
          f"(lag {answer['lag']})")  # fmt: skip
    if answer.get("fenced_reason"):
        print(f"last fenced: {answer['fenced_reason']}")
    if answer.get("virtual_addresses"):
        print(f"virtual addresses: {', '.join(answer['virtual_addresses'])}")
    if answer.get("etcd_error"):
        print(f"etcd: {answer['etcd_error']}")
    print("nodes:")
    for node in answer.get("nodes", []):
        epoch = f"epoch {node['epoch']}, " if node.get("epoch") else ""
        print(f"  {node['node']:<16} {node['role']:<8} {epoch}revision {node['revision']}, "
              f"lag {node['lag']}")  # fmt: skip
