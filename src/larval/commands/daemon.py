"""`larval run`, `larval up`, `larval down`, `larval status`: the IKE daemon and its
control socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from larval.commands.args import (
    configure_logging,
    control_socket_option,
    json_option,
    log_level_option,
)
from larval.commands.stack import socket_dirs
from larval.net.control import ControlError, control_request


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon: stack, dataplane and IKE")
    run.add_argument("-c", "--config", required=True, help="the TOML configuration file")
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start clean: move the state store (daemon.state) aside instead of restoring from it",
    )
    run.add_argument(
        "--user",
        metavar="NAME",
        help="once the sockets, the TUN device and the state store are open, go on as "
        "this user with only CAP_NET_ADMIN (root only; wins over daemon.user)",
    )
    log_level_option(run)
    for name, help_ in (("up", "initiate CONN[/CHILD]"), ("down", "delete the IKE_SAs of CONN")):
        p = commands.add_parser(name, help=help_)
        p.add_argument(
            "target",
            metavar="CONN[/CHILD]" if name == "up" else "CONN",
            help="a configured connection" + (", or one of its children" if name == "up" else ""),
        )
        control_socket_option(p)
    status = commands.add_parser("status", help="IKE_SAs and CHILD_SAs of the daemon")
    control_socket_option(status)
    json_option(status)


def run(args: argparse.Namespace) -> int:
    if args.command == "run":
        from larval.daemon.ike_daemon import IkeDaemon
        from larval.daemon.run_as import drop_target, run_as

        configure_logging(args)
        _user_first(args.user)
        daemon = IkeDaemon(args.config, fresh=args.fresh, user=args.user)
        target = drop_target(daemon, args.user)
        where = f"{args.config}: daemon."
        made = socket_dirs(
            {
                f"{where}pfkey_socket": daemon.config.pfkey_socket or "",
                f"{where}control_socket": daemon.config.control_socket,
            }
        )
        if target is not None:
            run_as(daemon, target, made)
        daemon.settle_gc = True
        asyncio.run(daemon.run())
        return 0
    if args.command in ("up", "down"):
        answer = control_request(args.control_socket, {"op": args.command, "target": args.target})
        done = "initiated" if args.command == "up" else f"{answer['deleted']} IKE_SA(s) deleted"
        print(f"{args.command} {args.target}: {done}")
        return 0
    answer = _ike_status(args.control_socket)
    if args.json:
        keys = ("key_manager", "ike_sas", "child_sas", "rekeyed_inbound", "stack", "ikev1_dropped")
        shown = {k: answer.get(k, {}) for k in keys}
        shown["esp_path"] = answer.get("stack", {}).get("esp_path", {})
        print(json.dumps(shown))
    elif answer["key_manager"]:
        print_status(answer)
        print_ikev1_dropped(answer.get("ikev1_dropped") or {})
        print_esp_path(answer.get("stack", {}))
    else:
        print(f"no key manager runs here ({args.control_socket} is `larval stack`'s): "
              "no IKE_SAs; the stack's own status:")  # fmt: skip
        print_stack_status(answer["stack"])
    return 0


def _user_first(user: str | None) -> None:
    """``--user``, refused before anything is read or opened: without root, or a user
    the system does not know."""
    if user is None:
        return
    from larval.daemon.privileges import PrivilegeError, look_up_user

    if os.geteuid() != 0:
        raise PrivilegeError(f"--user {user}: only root can become another user, and this "
                             f"process runs as uid {os.geteuid()}; start larval run as "
                             "root, or without --user")  # fmt: skip
    look_up_user(user)


def _ike_status(path: str) -> dict[str, Any]:
    """The daemon's IKE status; from `larval stack`, which has no key manager, the
    stack's own status with no IKE_SAs, rather than "unknown op"."""
    try:
        return {"key_manager": True, **control_request(path, {"op": "ike.status"})}
    except ControlError as refused:
        stack = stack_without_key_manager(path, refused)
        stack.pop("ok", None)
        return {"key_manager": False, "ike_sas": [], "child_sas": [], "rekeyed_inbound": [],
                "stack": stack}  # fmt: skip


def stack_without_key_manager(path: str, refused: ControlError) -> dict[str, Any]:
    """After a key manager's op was `refused`: the status of a `larval stack`, which has
    no key manager; `refused` itself where a key manager runs (its reason stands) or the
    socket does not answer at all."""
    try:
        stack = control_request(path, {"op": "status"})
    except ControlError:
        raise refused from None
    if stack.pop("key_manager", True):
        raise refused
    return stack


def print_stack_status(stack: dict[str, Any]) -> None:
    """The stack's counters, one kind a line; zero counters left out."""
    print(f"  {stack['sas']} SAs, {stack['acquire_records']} acquire records, "
          f"{stack['policies']} policies, {stack['pfkey_clients']} PF_KEY clients")  # fmt: skip
    for title, key in (("drops", "drops"), ("SADB", "sadb_counters"), ("packets", "packets"),
                       ("I/O", "io")):  # fmt: skip
        counters = stack.get(key) or {}
        shown = ", ".join(f"{name} {value}" for name, value in counters.items() if value)
        if key == "drops" or shown:
            print(f"  {title}: {shown or 'none'}")
    print_esp_path(stack, "  ")


def print_esp_path(stack: dict[str, Any], indent: str = "") -> None:
    """Which ESP batch path the daemon runs: ``esp path: compiled (OpenSSL 3.0.x)``."""
    chosen = stack.get("esp_path")
    if chosen:
        print(f"{indent}esp path: {chosen['name']} ({chosen['detail']})")


def print_status(answer: dict[str, Any]) -> None:
    ike_sas, child_sas = answer["ike_sas"], answer["child_sas"]
    if not ike_sas:
        print("no IKE_SAs")
    for sa in ike_sas:
        role = "initiator" if sa["initiator"] else "responder"
        peer = sa["remote"] + (f"[{sa['remote_port']}]" if "remote_port" in sa else "")
        print(f"{sa['name']}: {sa['state']}, {role}, {sa['spi_i']}/{sa['spi_r']} with "
              f"{peer}{', UDP-encapsulated' if sa['encapsulated'] else ''}")  # fmt: skip
        if sa["suite"]:
            print(f"  {sa['suite']}")
        if sa.get("virtual_ips"):
            whose = "this end's" if sa["initiator"] else "the peer's"
            print(f"  virtual IP ({whose}): {', '.join(sa['virtual_ips'])}")
        for end in ("local", "remote"):
            if sa.get(f"auth_{end}"):
                print(f"  {end} authentication: {describe_auth(sa[f'auth_{end}'])}")
        when = []
        if "rekey_in_s" in sa:
            what = "reauthenticating" if sa.get("version") == 1 else "rekeying"
            when.append(f"{what} in {sa['rekey_in_s']} s")
        if "expires_in_s" in sa:
            when.append(f"{'deleted' if sa['state'] == 'rekeyed' else 'expiring'} in "
                        f"{sa['expires_in_s']} s")  # fmt: skip
        if when:
            print("  " + ", ".join(when))
    for c in child_sas:
        print(f"  {c['connection']}/{c['name']}: SPIs {c['spi_in']} in, {c['spi_out']} out, "
              f"{c['esp']}, {','.join(c['local_ts'])} === {','.join(c['remote_ts'])}")  # fmt: skip
        rekey = f", rekeying in {c['rekey_in_s']} s" if "rekey_in_s" in c else ""
        counts_in = f"{c.get('bytes_in', 0)} bytes / {c.get('packets_in', 0)} packets in"
        counts_out = f"{c.get('bytes_out', 0)} bytes / {c.get('packets_out', 0)} packets out"
        print(f"    {counts_in}, {counts_out}{rekey}")
    for c in answer.get("rekeyed_inbound", ()):
        print(f"  {c['connection']}/{c['name']}: inbound SA {c['spi_in']} of a rekeyed CHILD_SA, "
              f"kept for packets in flight, deleted in {c['deleted_in_s']} s, "
              f"{c.get('bytes_in', 0)} bytes / {c.get('packets_in', 0)} packets in")  # fmt: skip


def print_ikev1_dropped(dropped: dict[str, int]) -> None:
    """IKEv1 messages dropped as malformed, by name, as the stack's drops are shown."""
    shown = ", ".join(f"{name} {count}" for name, count in sorted(dropped.items()) if count)
    if shown:
        print(f"IKEv1 messages dropped: {shown}")


def describe_auth(auth: dict[str, Any]) -> str:
    """``pubkey ecdsa-sha256, CN=carol, issued by CN=Example CA``, ``eap-mschapv2 carol``,
    or ``psk``."""
    text = " ".join(v for v in (auth["method"], auth["scheme"], auth.get("identity", "")) if v)
    if auth["subject"] or auth["issuer"]:
        text += f", {auth['subject'] or 'empty subject'}, issued by {auth['issuer']}"
    # RFC 4739: ``pubkey ..., then eap-mschapv2 carol``.
    return "; then ".join([text, *(describe_auth(r) for r in auth.get("rounds", ()))])
