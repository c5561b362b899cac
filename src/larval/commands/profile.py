"""`larval profile CONN --user NAME --for apple|android|windows`: a file that sets up a
native client for a remote-access connection of the daemon's configuration
(`larval.profiles`). Reads the configuration and its credentials as `larval run` does;
writes no password. A certificate client's certificate and key go in the profile as a
PKCS#12 whose passphrase is read from a file or made here and shown once on standard
error, never written anywhere else. The profile file is the user's only (mode 600)."""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import cast

from larval.credentials import FileProblem, read_certificates, read_key
from larval.daemon.auth import load_and_resolve
from larval.daemon.config import load_config
from larval.profiles import (
    CLIENTS,
    SUFFIX,
    Client,
    ProfileError,
    UserCertificate,
    remote_access,
    write_profile,
)

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
        "The profile never holds a password: the user types it when connecting. A "
        "certificate client's certificate and key go in as a PKCS#12 (--cert, --key) whose "
        "passphrase is not in the profile either: the user types it when importing.",
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
    p.add_argument("--cert", metavar="FILE",
                   help="a certificate client's certificate (PEM or DER; a PEM file's further "
                   "certificates are its CAs); default: the credentials' certificate with a "
                   "key that carries --user")  # fmt: skip
    p.add_argument("--key", metavar="FILE",
                   help="the private key of --cert (mode 600; an encrypted one is opened with "
                   "[secrets.private-NAME] of the configuration)")  # fmt: skip
    p.add_argument("--p12-password-file", metavar="FILE",
                   help="a file (mode 600) whose first line is the passphrase of the "
                   "profile's PKCS#12 (default: one is made and shown once on standard "
                   "error)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    client = cast(Client, args.client)
    config = load_config(args.config)
    config, credentials = load_and_resolve(config, args.config)
    user_cert = _user_certificate(args.cert, args.key, config.key_passphrases)
    ra = remote_access(config, credentials, args.connection, args.user, args.server,
                       source=args.config, user_cert=user_cert,
                       now=datetime.datetime.now(datetime.UTC))  # fmt: skip
    passphrase, made = _passphrase(args.p12_password_file, ra.user_cert is not None)
    data = write_profile(ra, client, passphrase)
    for warning in ra.warnings:
        print(f"larval: warning: {warning}", file=sys.stderr)
    out = args.output or f"{args.connection}-{args.user}{SUFFIX[client]}"
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write_private(out, data)
        print(f"{out}: {client} profile of {args.connection} for {args.user} "
              f"({ra.server}, {ra.server_id})")  # fmt: skip
    if made and passphrase is not None:
        # Once, to the person running this, who hands it to the user by another way than
        # the profile; it is kept nowhere.
        print(f"larval: the passphrase of {args.user}'s PKCS#12 in the profile (shown only "
              f"now): {passphrase.decode()}", file=sys.stderr)  # fmt: skip
    return 0


def _user_certificate(
    cert_file: str | None, key_file: str | None, passphrases: dict[str, bytes]
) -> UserCertificate | None:
    """``--cert`` and ``--key`` read, not yet checked against the connection."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        given, missing = ("--cert", "--key") if key_file is None else ("--key", "--cert")
        raise ProfileError(f"{given} needs {missing}: the certificate and its private key "
                           "travel together")  # fmt: skip
    try:
        certs = read_certificates(cert_file, Path(cert_file))
        key = read_key(key_file, Path(key_file), passphrases)
    except FileProblem as problem:
        raise ProfileError(str(problem)) from None
    return UserCertificate(certs[0], key, cert_file, key_file, tuple(certs[1:]))


def _passphrase(password_file: str | None, needed: bool) -> tuple[bytes | None, bool]:
    """The PKCS#12's passphrase from ``--p12-password-file``, else a new one; and whether
    it was made here."""
    if not needed:
        if password_file is not None:
            raise ProfileError(f"--p12-password-file {password_file}: this profile carries no "
                               "PKCS#12 (the connection's clients use no certificate, or none "
                               "was given or found)")  # fmt: skip
        return None, False
    if password_file is None:
        return secrets.token_urlsafe(15).encode(), True
    try:
        path = Path(password_file)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise ProfileError(f"--p12-password-file {password_file}: readable by group or "
                               "others; chmod 600 it")  # fmt: skip
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise ProfileError(f"--p12-password-file {password_file}: cannot be read: "
                           f"{e.strerror}") from None  # fmt: skip
    if not lines or not lines[0]:
        raise ProfileError(f"--p12-password-file {password_file}: its first line is empty; "
                           "write the passphrase there")  # fmt: skip
    return lines[0], False


def _write_private(out: str, data: bytes) -> None:
    """Write `out` readable by its owner only: a profile may hold the user's key."""
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
            f.write(data)
    except OSError as e:
        raise ProfileError(f"{out}: cannot write the profile: {e.strerror}") from None
