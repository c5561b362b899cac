"""`larval check -c FILE`: the configuration, its credentials and its policies read as
`larval run` reads them (`larval.daemon.loading`), without root, sockets or a TUN.

Every problem is one line: ``FILE:LINE: error: KEY: what is wrong and what is allowed``
(the line where the file tells it). With errors it exits 2, as `larval run` would refuse
to start. Without, it prints a summary of the connections (IKE and ESP proposals, how each
end authenticates and as whom, traffic selectors, pools) and the warnings: what larval
takes but a peer is likely to refuse or a careful operator would not choose
(`larval.daemon.advice`); it exits 0, or 2 with ``--strict``. ``--json`` writes one
object instead: the problems (file, key, line, message, severity) and the summary.
No secret is ever shown: a PSK or password appears only as the key that holds it.

Files that hold secrets (`larval.daemon.secret_files`): open to group or others they are
errors whoever checks, as `larval run` refuses them whoever runs it. Owned by a user
other than root and ``--user`` (or ``daemon.user``) they are errors when the check runs
as root, which is how `larval run` starts and refuses them; run as another user, the
check passes that user's own files (a copy being edited) and warns of a third user's,
because the verdict that counts, root's, is not this one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from larval.crypto.ike_proposals import format_esp_proposal, format_ike_proposal
from larval.daemon.config import AuthSide, ConfigProblem, DaemonConfig
from larval.daemon.loading import Loaded, gather
from larval.ike.identity import describe_identity, describe_subject
from larval.keymgr.manager import Connection

#: ``larval check``'s exit status when it found an error (or, with --strict, a warning).
PROBLEMS = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "check",
        help="read a configuration as larval run would, name every problem, and summarise it",
    )
    p.add_argument("-c", "--config", required=True, help="the TOML configuration file")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too (exit 2)")
    p.add_argument(
        "--user",
        metavar="NAME",
        help="the user larval run --user becomes (else daemon.user): files with secrets "
        "may be root's or this user's",
    )


def run(args: argparse.Namespace) -> int:
    loaded = gather(args.config, user=args.user)
    failed = bool(loaded.errors or loaded.config is None or (args.strict and loaded.warnings))
    summary = summarise(loaded.config) if loaded.config is not None and not loaded.errors else None
    if args.json:
        print(json.dumps({
            "file": args.config,
            "ok": not failed,
            "errors": len(loaded.errors),
            "warnings": len(loaded.warnings),
            "problems": [p.to_dict() for p in loaded.problems],
            "summary": summary,
        }, indent=2))  # fmt: skip
        return PROBLEMS if failed else 0
    if summary is not None:
        print_summary(args.config, summary)
    for problem in _in_file_order(loaded.path, loaded.errors) + loaded.warnings:
        print(problem_line(problem))
    print(verdict(loaded, failed))
    return PROBLEMS if failed else 0


def problem_line(problem: ConfigProblem) -> str:
    """``larval.toml:12: error: connections.s2s.proposals[0]: ...``"""
    where = f"{problem.file}:{problem.line}" if problem.line else problem.file
    key = f"{problem.key}: " if problem.key else ""
    return f"{where}: {problem.severity}: {key}{problem.message}"


def _in_file_order(path: str, problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """The configuration file's problems by line, then those of the files it names."""
    return sorted(problems, key=lambda p: (p.file != path, p.line or 0))


def verdict(loaded: Loaded, failed: bool) -> str:
    counts = f"{_count(len(loaded.errors), 'error')}, {_count(len(loaded.warnings), 'warning')}"
    if loaded.errors or loaded.config is None:
        return f"{loaded.path}: {counts}: larval run would refuse it"
    if failed:
        return f"{loaded.path}: {counts}: refused by --strict"
    return f"{loaded.path}: {counts}: larval run would start with it"


def _count(n: int, what: str, plural: str = "") -> str:
    return f"{n} {what if n == 1 else plural or what + 's'}"


# -- the summary ---------------------------------------------------------------------------


def summarise(config: DaemonConfig) -> dict[str, Any]:
    """The connections, pools and daemon settings, as data for the text and for JSON."""
    return {
        "addresses": config.addresses,
        "tun": config.tun,
        "credentials": config.credentials,
        "connections": [_connection(config, c) for c in config.connections],
        "policies": len(config.policies),
        "pools": [
            {
                "name": p.name,
                "addrs": p.range_text,
                "size": p.size,
                "dns": [str(a) for a in p.attributes.dns],
            }
            for p in config.pools
        ],
    }


def _connection(config: DaemonConfig, conn: Connection) -> dict[str, Any]:
    ike = conn.ike
    local_sides, remote_sides = config.auth_sides.get(ike.name, ((), ()))
    remote_id = describe_identity(*ike.remote_id) if ike.remote_id is not None else "%any"
    subject = describe_subject(ike.local_auth.cert.cert) if ike.local_auth is not None else None
    return {
        "name": ike.name,
        "version": conn.version,
        "local_addrs": [m.text for m in ike.local_addrs] or [str(ike.local_addr)],
        "remote_addrs": [m.text for m in ike.remote_addrs] or [str(ike.remote_addr)],
        "encap": ike.encap,
        "aggressive": conn.aggressive,
        "proposals": [format_ike_proposal(s) for s in ike.proposals],
        "local": {
            "auth": _rounds(local_sides),
            "id": describe_identity(*ike.local_id),
            "cert": ike.local_auth.cert.path if ike.local_auth is not None else None,
            "subject": subject,
        },
        "remote": {
            "auth": _rounds(remote_sides),
            "id": remote_sides[0].id if remote_sides and remote_sides[0].id else remote_id,
            "cacerts": list(remote_sides[0].files) if remote_sides else [],
        },
        "vips": [str(v) for v in ike.vips],
        "pools": list(conn.pools),
        "children": [
            {
                "name": child.name,
                "local_ts": [str(n) for n in child.local_ts],
                "remote_ts": [str(n) for n in child.remote_ts],
                "mode": child.mode,
                "start_action": conn.start_action.get(child.name, "none"),
                "esp_proposals": [format_esp_proposal(s) for s in child.proposals],
                "rekey_time": child.rekey_time,
            }
            for child in conn.children
        ],
    }


def _rounds(sides: tuple[AuthSide, ...]) -> list[str]:
    """Each round's method, with its EAP or XAuth name where it has one; none written: PSK."""
    out = []
    for side in sides or ():
        name = side.eap_id or side.xauth_id
        out.append(f"{side.method} {name}" if name else side.method)
    return out or ["psk"]


def print_summary(path: str, summary: dict[str, Any]) -> None:
    conns, pools = summary["connections"], summary["pools"]
    parts = [_count(len(conns), "connection"), _count(summary["policies"], "policy", "policies")]
    if pools:
        parts.append(_count(len(pools), "pool"))
    if summary["credentials"]:
        parts.append(f"credentials {summary['credentials']}")
    print(f"{path}: {', '.join(parts)}")
    for c in conns:
        version = {0: "IKEv2 (answers IKEv1 too)", 1: "IKEv1", 2: "IKEv2"}[c["version"]]
        extras = [x for x, on in (("Aggressive Mode", c["aggressive"]),
                                  ("UDP-encapsulated", c["encap"])) if on]  # fmt: skip
        print(f"{c['name']}: {version}, {','.join(c['local_addrs'])} to "
              f"{','.join(c['remote_addrs'])}{''.join(', ' + x for x in extras)}")  # fmt: skip
        print(f"  ike: {', '.join(c['proposals'])}")
        local, remote = c["local"], c["remote"]
        cert = f", cert {local['cert']} ({local['subject']})" if local["cert"] else ""
        print(f"  local: {' then '.join(local['auth'])}, id {local['id']}{cert}")
        cas = f", cacerts {', '.join(remote['cacerts'])}" if remote["cacerts"] else ""
        print(f"  remote: {' then '.join(remote['auth'])}, id {remote['id']}{cas}")
        if c["vips"]:
            print(f"  vips: {', '.join(c['vips'])}")
        if c["pools"]:
            print(f"  pools: {', '.join(c['pools'])}")
        for ch in c["children"]:
            print(f"  {ch['name']}: {','.join(ch['local_ts'])} === {','.join(ch['remote_ts'])}, "
                  f"{ch['mode']}, start_action {ch['start_action']}")  # fmt: skip
            print(f"    esp: {', '.join(ch['esp_proposals'])}")
    for p in pools:
        dns = f", dns {', '.join(p['dns'])}" if p["dns"] else ""
        print(f"pool {p['name']}: {p['addrs']} ({_count(p['size'], 'address', 'addresses')}){dns}")
