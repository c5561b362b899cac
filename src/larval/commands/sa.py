"""`larval sa`: manual keying and inspection over the stack's PF_KEY socket (like ipseckey)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import sys
from typing import Any

from larval.crypto.algorithms import AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS
from larval.crypto.proposals import ProposalError, parse_esp_proposal
from larval.errors import LarvalError
from larval.net.pfkey_client import PfkeyClient
from larval.pfkey import (
    Diagnostic,
    Extension,
    ExtType,
    PfkeyError,
    PfkeyMessage,
    SadbAddress,
    SadbKey,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbXPair,
    SaFlags,
    SaState,
    SaType,
    decode,
)
from larval.pfkey.constants import diagnostic_text

DEFAULT_PFKEY_SOCKET = "/run/larval/pfkey"
SATYPES = {"esp": SaType.ESP, "ah": SaType.AH}


class UsageError(LarvalError):
    """A bad command-line value: exit status 2."""


class RefusedError(LarvalError):
    """The stack answered with an errno: exit status 1."""


def default_socket() -> str:
    return os.environ.get("LARVAL_PFKEY_SOCKET", DEFAULT_PFKEY_SOCKET)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sa = commands.add_parser("sa", help="manage SAs over PF_KEY (like ipseckey)")
    ops = sa.add_subparsers(dest="sa_op", metavar="OP", required=True)

    def op(name: str, help_: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help_)
        p.add_argument("--socket", default=default_socket(), help="the stack's PF_KEY socket")
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
        p.add_argument("--satype", choices=sorted(SATYPES), default="esp")
        return p

    getspi = op("getspi", "reserve an inbound SPI: a LARVAL SA")
    _addresses(getspi)
    getspi.add_argument("--spi-min", type=_int, default=0x100)
    getspi.add_argument("--spi-max", type=_int, default=0xFFFFFFFF)
    for name, help_ in (
        ("add", "add a keyed SA"),
        ("update", "key a LARVAL SA, or change lifetimes"),
    ):
        p = op(name, help_)
        _addresses(p)
        p.add_argument("--spi", type=_int, required=True)
        p.add_argument(
            "--alg",
            help="algorithms in strongSwan's words: aes128gcm16, aes256-sha256, null-sha256, ...",
        )
        p.add_argument("--encrypt-key", help="hex, or @FILE holding hex (keeps it out of ps)")
        p.add_argument("--auth-key", help="hex, or @FILE holding hex")
        p.add_argument("--replay", type=_int, default=32, help="replay window, packets")
        for axis in ("time", "bytes"):
            p.add_argument(f"--soft-{axis}", type=_int, default=0)
            p.add_argument(f"--hard-{axis}", type=_int, default=0)
        p.add_argument("--idle-time", type=_int, default=0, help="seconds idle before EXPIRE")
        p.add_argument("--pair", type=_int, help="SPI of the SA of the other direction")
        p.add_argument("--mode", choices=["tunnel", "transport"], default="tunnel", help="ESP mode")
    for name, help_ in (("delete", "delete an SA"), ("get", "show one SA with its keys")):
        p = op(name, help_)
        p.add_argument("--spi", type=_int, required=True)
        p.add_argument("--dst", type=_address, required=True)
        p.add_argument("--src", type=_address)
    op("flush", "delete every SA")
    op("dump", "list every SA")
    op("monitor", "print every PF_KEY message the stack sends, until interrupted")


def _addresses(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", type=_address, required=True)
    p.add_argument("--dst", type=_address, required=True)


def _int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def run(args: argparse.Namespace) -> int:
    satype = SATYPES[args.satype]
    if args.sa_op == "monitor":
        return _monitor(args)
    msg = _request(args, satype)
    with PfkeyClient(args.socket) as client:
        replies = list(client.request_all(msg))
    for reply in replies:
        if reply.errno:
            raise RefusedError(_refusal(args.sa_op, reply))
    sas = [sa_to_dict(r) for r in replies if r.find(ExtType.SA) is not None]
    if args.json:
        print(json.dumps(sas if args.sa_op == "dump" else (sas[0] if sas else {"ok": True})))
    elif sas:
        print_table(sas, with_keys=args.sa_op == "get")
    return 0


def _request(args: argparse.Namespace, satype: int) -> PfkeyMessage:
    op = args.sa_op
    if op == "getspi":
        src, dst = _pair(args)
        if args.spi_min > args.spi_max or args.spi_max > 0xFFFFFFFF:
            raise UsageError(f"--spi-min {args.spi_min:#x} / --spi-max {args.spi_max:#x}: no range")
        exts: tuple[Extension, ...] = (src, dst, SadbSpirange(args.spi_min, args.spi_max))
        return PfkeyMessage(SadbMsgType.GETSPI, satype, extensions=exts)
    if op in ("add", "update"):
        return _keyed(args, satype)
    if op in ("delete", "get"):
        by: list[Extension] = [SadbSa(_spi(args.spi))]
        if args.src is not None:
            by.append(SadbAddress(ExtType.ADDRESS_SRC, args.src))
        by.append(SadbAddress(ExtType.ADDRESS_DST, args.dst))
        msg_type = SadbMsgType.DELETE if op == "delete" else SadbMsgType.GET
        return PfkeyMessage(msg_type, satype, extensions=tuple(by))
    if op == "flush":
        return PfkeyMessage(SadbMsgType.FLUSH, SaType.UNSPEC)
    return PfkeyMessage(SadbMsgType.DUMP, SaType.UNSPEC)


def _pair(args: argparse.Namespace) -> tuple[SadbAddress, SadbAddress]:
    if args.src.version != args.dst.version:
        raise UsageError(f"--src {args.src} and --dst {args.dst} are of different families")
    return SadbAddress(ExtType.ADDRESS_SRC, args.src), SadbAddress(ExtType.ADDRESS_DST, args.dst)


def _spi(value: int) -> int:
    if not 0x100 <= value <= 0xFFFFFFFF:
        raise UsageError(f"--spi {value:#x}: SPIs run from 0x100 to 0xffffffff (RFC 4303 §2.1)")
    return value


def _keyed(args: argparse.Namespace, satype: int) -> PfkeyMessage:
    src, dst = _pair(args)
    exts: list[Extension] = []
    encrypt = auth = 0
    if args.alg is not None:
        try:
            proposal = parse_esp_proposal(args.alg)
        except ProposalError as e:
            raise UsageError(f"--alg {args.alg}: {e}") from None
        encrypt, auth = proposal.encrypt, proposal.auth
        cipher = ENCRYPT_ALGORITHMS[encrypt]
        want = (proposal.encrypt_bits + cipher.salt_bits) // 8
        ekey = _key(args.encrypt_key, "--encrypt-key", want, f"{cipher.name}")
        if ekey:
            exts.append(SadbKey(ExtType.KEY_ENCRYPT, len(ekey) * 8, ekey))
        if auth:
            integ = AUTH_ALGORITHMS[auth]
            akey = _key(args.auth_key, "--auth-key", integ.key_bits // 8, integ.name)
            exts.append(SadbKey(ExtType.KEY_AUTH, len(akey) * 8, akey))
        elif args.auth_key is not None:
            raise UsageError(f"--auth-key: {args.alg} has no integrity algorithm")
    elif args.encrypt_key is not None or args.auth_key is not None:
        raise UsageError("keys need --alg to say what they are for")
    elif args.sa_op == "add":
        raise UsageError("add needs --alg and its keys")
    for axis in ("time", "bytes"):
        soft, hard = getattr(args, f"soft_{axis}"), getattr(args, f"hard_{axis}")
        if soft and hard and soft > hard:
            raise UsageError(f"--soft-{axis} {soft} is above --hard-{axis} {hard}")
    lifetimes: list[Extension] = []
    if args.hard_time or args.hard_bytes:
        lifetimes.append(
            SadbLifetime(ExtType.LIFETIME_HARD, bytes=args.hard_bytes, addtime=args.hard_time)
        )
    if args.soft_time or args.soft_bytes:
        lifetimes.append(
            SadbLifetime(ExtType.LIFETIME_SOFT, bytes=args.soft_bytes, addtime=args.soft_time)
        )
    if args.idle_time:
        lifetimes.append(SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=args.idle_time))
    flags = SaFlags.X_TUNNEL if args.mode == "tunnel" else 0
    sa_ext = SadbSa(_spi(args.spi), min(args.replay, 255), SaState.MATURE, auth, encrypt, flags)
    extra: list[Extension] = [SadbXPair(_spi(args.pair))] if args.pair is not None else []
    msg_type = SadbMsgType.ADD if args.sa_op == "add" else SadbMsgType.UPDATE
    return PfkeyMessage(msg_type, satype, extensions=(sa_ext, *lifetimes, src, dst, *exts, *extra))


def _key(value: str | None, option: str, want: int, alg: str) -> bytes:
    if value is None:
        if want == 0:
            return b""
        raise UsageError(f"{option}: {alg} needs a {want}-byte key")
    text = value
    if value.startswith("@"):
        try:
            with open(value[1:]) as f:
                text = f.read().strip()
        except OSError as e:
            raise UsageError(f"{option}: cannot read {value[1:]}: {e.strerror}") from None
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UsageError(f"{option}: not hexadecimal") from None  # never echo key material
    if len(key) != want:
        raise UsageError(f"{option}: {alg} takes a {want}-byte key, not {len(key)} bytes")
    return key


def _refusal(op: str, reply: PfkeyMessage) -> str:
    name = errno.errorcode.get(reply.errno, str(reply.errno))
    text = f"sa {op}: refused with {name} ({os.strerror(reply.errno)})"
    if reply.diagnostic != Diagnostic.NONE:
        text += f": {diagnostic_text(reply.diagnostic)} (diagnostic {reply.diagnostic})"
    return text


_ADDRESS_LABELS: dict[int, str] = {
    ExtType.ADDRESS_SRC: "src",
    ExtType.ADDRESS_DST: "dst",
    ExtType.ADDRESS_PROXY: "inner_src",
    ExtType.X_ADDRESS_INNER_DST: "inner_dst",
    ExtType.X_ADDRESS_NATT_LOC: "natt_local",
    ExtType.X_ADDRESS_NATT_REM: "natt_remote",
}
_LIFETIME_LABELS: dict[int, str] = {
    ExtType.LIFETIME_CURRENT: "current",
    ExtType.LIFETIME_HARD: "hard",
    ExtType.LIFETIME_SOFT: "soft",
    ExtType.X_LIFETIME_IDLE: "idle",
}


def sa_to_dict(msg: PfkeyMessage) -> dict[str, Any]:
    """An SA as one PF_KEY message describes it; keys only if the message carries them."""
    out: dict[str, Any] = {"satype": SaType(msg.satype).name.lower()}
    for ext in msg.extensions:
        if isinstance(ext, SadbSa):
            out.update(
                spi=f"{ext.spi:#010x}",
                state=SaState(ext.state).name.lower(),
                encrypt=_alg_name(ext.encrypt, ENCRYPT_ALGORITHMS),
                auth=_alg_name(ext.auth, AUTH_ALGORITHMS) if ext.auth else "none",
                replay=ext.replay,
            )
        elif isinstance(ext, SadbAddress):
            label = _ADDRESS_LABELS.get(ext.ext_type, f"address_{ext.ext_type}")
            out[label] = str(ext.addr) + (f"/{ext.prefixlen}" if ext.prefixlen else "")
        elif isinstance(ext, SadbLifetime):
            label = _LIFETIME_LABELS[ext.ext_type]
            out[label] = {"bytes": ext.bytes, "addtime": ext.addtime, "usetime": ext.usetime}
        elif isinstance(ext, SadbKey):
            out["auth_key" if ext.ext_type == ExtType.KEY_AUTH else "encrypt_key"] = ext.key.hex()
        elif isinstance(ext, SadbXPair):
            out["pair"] = f"{ext.spi:#010x}"
    return out


def _alg_name(alg_id: int, table: dict[int, Any]) -> str:
    alg = table.get(alg_id)
    return str(alg.name) if alg is not None else str(alg_id)


def print_table(sas: list[dict[str, Any]], with_keys: bool = False) -> None:
    cols = ["spi", "state", "src", "dst", "encrypt", "auth", "bytes", "soft", "hard"]
    rows = []
    for sa in sas:
        current = sa.get("current", {})
        row = dict(sa, bytes=str(current.get("bytes", 0)))
        for which in ("soft", "hard"):
            lt = sa.get(which)
            row[which] = f"{lt['addtime']}s" if lt and lt["addtime"] else "-"
        rows.append(row)
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in cols).rstrip())
    if with_keys:
        for sa in sas:
            for k in ("encrypt_key", "auth_key"):
                if k in sa:
                    print(f"{k}: {sa[k]}")


def _monitor(args: argparse.Namespace) -> int:
    """Turn on X_PROMISC and print what passes until interrupted (illumos `ipseckey monitor`).

    A message that does not decode (any client may send garbage, and a promiscuous
    socket sees it) is shown as garbage with its length and the reason, never its
    bytes (they may hold keys), and the monitor goes on."""
    with PfkeyClient(args.socket, timeout=None) as client:
        client.send(PfkeyMessage(SadbMsgType.X_PROMISC, 1, seq=client.next_seq(), pid=client.pid))
        sys.stdout.flush()
        while True:
            data = client.sock.recv(0xFFFF * 8)
            if not data:
                return 0
            try:
                msg = decode(data)
            except PfkeyError as e:
                garbage = {"garbage": len(data), "error": str(e)}
                line = json.dumps(garbage) if args.json else f"garbage: {len(data)} bytes: {e}"
                print(line, flush=True)
                continue
            if args.json:
                print(json.dumps(describe(msg)), flush=True)
            else:
                print(format_message(msg), flush=True)


def describe(msg: PfkeyMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": SadbMsgType(msg.msg_type).name,
        "satype": SaType(msg.satype).name,
        "seq": msg.seq,
        "pid": msg.pid,
    }
    if msg.errno:
        out["errno"] = errno.errorcode.get(msg.errno, msg.errno)
        out["diagnostic"] = msg.diagnostic
        if msg.errno == errno.ENOBUFS and msg.pid == 0:
            out["missed"] = msg.seq  # the stack's count of messages this reader missed
    if msg.find(ExtType.SA) is not None:
        sa = sa_to_dict(msg)
        sa.pop("encrypt_key", None)  # a monitor never prints keys
        sa.pop("auth_key", None)
        out["sa"] = sa
    out["extensions"] = [ExtType(e.ext_type).name for e in msg.extensions]
    return out


def format_message(msg: PfkeyMessage) -> str:
    d = describe(msg)
    if "missed" in d:
        return f"missed {d['missed']} message(s): this monitor read too slowly (ENOBUFS)"
    text = f"{d['type']} {d['satype']} seq={d['seq']} pid={d['pid']}"
    if "errno" in d:
        text += f" errno={d['errno']} diagnostic={d['diagnostic']}"
    if "sa" in d:
        sa = d["sa"]
        text += f" spi={sa.get('spi')} state={sa.get('state')} {sa.get('src')}->{sa.get('dst')}"
    return text + " [" + ",".join(d["extensions"]) + "]"
