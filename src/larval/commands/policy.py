"""`larval policy`: load, list and flush the stack's policies (like ipsecconf)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from larval.commands.args import control_socket_option, json_option
from larval.net.control import control_request


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("policy", help="manage the stack's policies (like ipsecconf)")
    ops = p.add_subparsers(dest="policy_op", metavar="OP", required=True)
    for name, help_ in (
        ("load", "add the policies of a file (same names are replaced)"),
        ("list", "list the policies"),
        ("flush", "remove every policy"),
    ):
        op = ops.add_parser(name, help=help_)
        control_socket_option(op)
        json_option(op)
        if name == "load":
            op.add_argument("file", help="the policy file (TOML, as larval stack --policy)")


def run(args: argparse.Namespace) -> int:
    if args.policy_op == "load":
        from larval.spd import load_policy_text
        from larval.spd.config import read_config_text

        # Bounded, UTF-8 checked; parsed here as well, so that a bad file is named with
        # exit status 2 before anything is sent.
        text = read_config_text(args.file).text
        load_policy_text(text, args.file)
        answer = control_request(
            args.control_socket, {"op": "policy.load", "text": text, "source": args.file}
        )
        _print(args, answer, f"loaded {answer['loaded']} policies from {args.file}")
    elif args.policy_op == "list":
        answer = control_request(args.control_socket, {"op": "policy.list"})
        if args.json:
            print(json.dumps(answer["policies"]))
        else:
            print_policies(answer["policies"])
    else:
        answer = control_request(args.control_socket, {"op": "policy.flush"})
        _print(args, answer, f"flushed {answer['flushed']} policies")
    return 0


def _print(args: argparse.Namespace, answer: dict[str, Any], text: str) -> None:
    print(json.dumps(answer) if args.json else text)


def print_policies(policies: list[dict[str, Any]]) -> None:
    if not policies:
        print("no policies")
        return
    cols = list(policies[0])
    widths = {c: max(len(c), *(len(_cell(p.get(c))) for p in policies)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for p in policies:
        print("  ".join(_cell(p.get(c)).ljust(widths[c]) for c in cols).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    return "-" if value is None else str(value)
