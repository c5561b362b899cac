"""`larval profile CONN --user NAME --for apple|android|windows`: a file that sets up a
native client for a remote-access connection of the daemon's configuration
(`larval.profiles`). Reads the configuration and its credentials as `larval run` does;
writes no password."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import cast

from larval.daemon.auth import load_and_resolve
from larval.daemon.config import load_config
from larval.profiles import CLIENTS, SUFFIX, Client, ProfileError, remote_access, write_profile

DEFAULT_CONFIG = "/etc/larval/larval.toml"


def default_config() -> str:
    return os.environ.get("LARVAL_CONFIG", DEFAULT_CONFIG)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "profile",
        help="write a native client's VPN profile for a remote-access connection "
        "(no password in it: the user types it)",
        description="Write a profile for a native IKEv2 client of connection CONN: an "
        "Apple .mobileconfig, a strongSwan-app .sswan or a Windows PowerShell script, with "
        "the gateway's address and identity, its CA certificate and proposals it accepts. "
        "The profile never holds a password: the user types it when connecting.",
    )
    p.add_argument("connection", metavar="CONN", help="a remote-access connection of the file")
    p.add_argument("--user", required=True, help="the user the profile is for (EAP identity, "
                   "or a certificate client's IKE identity)")  # fmt: skip
    p.add_argument("--for", dest="client", required=True, choices=CLIENTS,
                   help="apple (.mobileconfig), android (strongSwan app .sswan) or windows "
                   "(PowerShell .ps1)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it; - for standard output (default: "
                   "CONN-USER and the client's suffix, in the current directory)")  # fmt: skip
    p.add_argument("-c", "--config", default=default_config(), metavar="FILE",
                   help="the daemon's TOML configuration (default: $LARVAL_CONFIG, else "
                   "%(default)s)")  # fmt: skip
    p.add_argument(
        "--server",
        metavar="HOST",
        help="the address or DNS name clients dial (default: the connection's local "
        "address); it should be a DNS name of the gateway's certificate",
    )


def run(args: argparse.Namespace) -> int:
    client = cast(Client, args.client)
    config = load_config(args.config)
    config, credentials = load_and_resolve(config, args.config)
    ra = remote_access(config, credentials, args.connection, args.user, args.server,
                       source=args.config)  # fmt: skip
    data = write_profile(ra, client)
    for warning in ra.warnings:
        print(f"larval: warning: {warning}", file=sys.stderr)
    out = args.output or f"{args.connection}-{args.user}{SUFFIX[client]}"
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        Path(out).write_bytes(data)
    except OSError as e:
        raise ProfileError(f"{out}: cannot write the profile: {e.strerror}") from None
    print(f"{out}: {client} profile of {args.connection} for {args.user} "
          f"({ra.server}, {ra.server_id})")  # fmt: skip
    return 0
