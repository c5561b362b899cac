"""`larval sa`: manual keying and inspection over the stack's PF_KEY socket (like ipseckey)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import stat
import sys
from typing import Any

from larval.commands.args import number
from larval.crypto.algorithms import AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS
from larval.crypto.proposals import EspProposal, ProposalError, parse_esp_proposal
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
    SadbXInnerPairs,
    SadbXPair,
    SadbXSeqState,
    SaFlags,
    SaState,
    SaType,
    decode,
)
from larval.pfkey.constants import U8_MAX, U32_MAX, U64_MAX, diagnostic_text
from larval.sadb.sadb import MIN_SPI  # RFC 4303 §2.1: 1-255 are IANA's, 0 is local

DEFAULT_PFKEY_SOCKET = "/run/larval/pfkey"
# AH (RFC 4302) is not implemented by the dataplane, nor by strongSwan's kernel-libipsec.
SATYPES = {"esp": SaType.ESP}

#: The most a key file may hold: the longest key larval takes is 64 bytes, 128 hex digits.
KEY_FILE_LIMIT = 1024


class UsageError(LarvalError):
    """A bad command-line value: exit status 2."""


class RefusedError(LarvalError):
    """The stack answered with an errno: exit status 1."""


def default_socket() -> str:
    return os.environ.get("LARVAL_PFKEY_SOCKET", DEFAULT_PFKEY_SOCKET)


_SPI = number(MIN_SPI, U32_MAX, "", "SPIs 0-255 are reserved (RFC 4303 §2.1)", hex_=True)
_SECONDS = number(0, U64_MAX, "seconds", "a PF_KEY lifetime is 64 bits")
_BYTES = number(0, U64_MAX, "bytes", "a PF_KEY lifetime is 64 bits")
_REPLAY = number(0, U8_MAX, "packets", "PF_KEY's sadb_sa_replay is 8 bits")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sa = commands.add_parser("sa", help="manage SAs over PF_KEY (like ipseckey)")
    ops = sa.add_subparsers(dest="sa_op", metavar="OP", required=True)

    def op(name: str, help_: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help_)
        p.add_argument(
            "--socket",
            default=default_socket(),
            metavar="PATH",
            help="the stack's PF_KEY socket (default: $LARVAL_PFKEY_SOCKET, else %(default)s)",
        )
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
        p.add_argument(
            "--satype",
            choices=sorted(SATYPES),
            default="esp",
            help="SA type: esp (larval implements no AH)",
        )
        return p

    getspi = op("getspi", "reserve an inbound SPI: a LARVAL SA")
    _addresses(getspi)
    getspi.add_argument(
        "--spi-min", type=_SPI, default=MIN_SPI, metavar="SPI",
        help="lowest SPI to choose from, 0x100 to 0xffffffff (default 0x100)",
    )  # fmt: skip
    getspi.add_argument(
        "--spi-max", type=_SPI, default=U32_MAX, metavar="SPI",
        help="highest SPI to choose from, 0x100 to 0xffffffff (default 0xffffffff)",
    )  # fmt: skip
    for name, help_ in (
        ("add", "add a keyed SA"),
        ("update", "key a LARVAL SA, or change lifetimes"),
    ):
        p = op(name, help_)
        _addresses(p)
        p.add_argument(
            "--spi", type=_SPI, required=True,
            help="the SA's SPI, 0x100 to 0xffffffff (decimal or 0x hex)",
        )  # fmt: skip
        p.add_argument(
            "--alg",
            help="algorithms in strongSwan's words: aes128gcm16, aes256-sha256, null-sha256, ...",
        )
        p.add_argument(
            "--encrypt-key",
            metavar="HEX|@FILE",
            help="encryption key (an AEAD's with its salt) as hex, or @FILE holding the hex: "
            "a regular file of mode 0600 or stricter, at most 1 KiB (keeps it out of ps)",
        )
        p.add_argument(
            "--auth-key", metavar="HEX|@FILE", help="integrity key as hex, or @FILE as above"
        )
        p.add_argument(
            "--replay", type=_REPLAY, default=32, metavar="PACKETS",
            help="anti-replay window, 0 to 255 packets; 0 turns the check off (default 32)",
        )  # fmt: skip
        for which in ("soft", "hard"):
            event = "EXPIRE, rekey due" if which == "soft" else "the SA dies"
            p.add_argument(
                f"--{which}-time", type=_SECONDS, default=0, metavar="SECONDS",
                help=f"seconds after add until {event}; 0 for none",
            )  # fmt: skip
            p.add_argument(
                f"--{which}-bytes", type=_BYTES, default=0, metavar="BYTES",
                help=f"bytes protected until {event}; 0 for none",
            )  # fmt: skip
        p.add_argument(
            "--idle-time", type=_SECONDS, default=0, metavar="SECONDS",
            help="seconds without traffic before an idle EXPIRE; 0 for none",
        )  # fmt: skip
        p.add_argument(
            "--pair", type=_SPI, metavar="SPI",
            help="SPI of the SA of the other direction, 0x100 to 0xffffffff",
        )  # fmt: skip
        p.add_argument(
            "--mode", choices=["tunnel", "transport"], default="tunnel",
            help="ESP mode (default tunnel)",
        )  # fmt: skip
    for name, help_ in (("delete", "delete an SA"), ("get", "show one SA")):
        p = op(name, help_)
        p.add_argument(
            "--spi", type=_SPI, required=True,
            help="the SA's SPI, 0x100 to 0xffffffff (decimal or 0x hex)",
        )  # fmt: skip
        p.add_argument(
            "--dst", type=_address, required=True, metavar="ADDRESS",
            help="the SA's destination, an IPv4 or IPv6 address",
        )  # fmt: skip
        p.add_argument(
            "--src", type=_address, metavar="ADDRESS",
            help="the SA's source, an IPv4 or IPv6 address (optional)",
        )  # fmt: skip
        if name == "get":
            _keys_option(p)
    op("flush", "delete every SA")
    _keys_option(op("dump", "list every SA"))
    op("monitor", "print every PF_KEY message the stack sends, until interrupted")


def _addresses(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--src", type=_address, required=True, metavar="ADDRESS",
        help="source: the sending end, an IPv4 or IPv6 address",
    )  # fmt: skip
    p.add_argument(
        "--dst", type=_address, required=True, metavar="ADDRESS",
        help="destination: the receiving end, of the same family",
    )  # fmt: skip


def _keys_option(p: argparse.ArgumentParser) -> None:
    # ipseckey prints keying material only when asked; so does larval.
    p.add_argument(
        "--keys",
        action="store_true",
        help="include the keys (hex); dump shows them only with --json",
    )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def run(args: argparse.Namespace) -> int:
    satype = SATYPES[args.satype]
    if args.sa_op == "monitor":
        return _monitor(args)
    keys = getattr(args, "keys", False)
    if keys and args.sa_op == "dump" and not args.json:
        raise UsageError("--keys: the table of dump never shows keys; add --json")
    msg = _request(args, satype)
    with PfkeyClient(args.socket) as client:
        replies = list(client.request_all(msg))
    for reply in replies:
        if reply.errno:
            raise RefusedError(_refusal(args.sa_op, reply))
    sas = [sa_to_dict(r) for r in replies if r.find(ExtType.SA) is not None]
    if not keys:
        for sa in sas:
            sa.pop("encrypt_key", None)
            sa.pop("auth_key", None)
    if args.json:
        print(json.dumps(sas if args.sa_op == "dump" else (sas[0] if sas else {"ok": True})))
    elif sas:
        print_table(sas, with_keys=keys)
    return 0


def _request(args: argparse.Namespace, satype: int) -> PfkeyMessage:
    op = args.sa_op
    if op == "getspi":
        src, dst = _pair(args)
        if args.spi_min > args.spi_max:
            raise UsageError(f"--spi-min {args.spi_min:#x} is above --spi-max {args.spi_max:#x}")
        exts: tuple[Extension, ...] = (src, dst, SadbSpirange(args.spi_min, args.spi_max))
        return PfkeyMessage(SadbMsgType.GETSPI, satype, extensions=exts)
    if op in ("add", "update"):
        return _keyed(args, satype)
    if op in ("delete", "get"):
        by: list[Extension] = [SadbSa(args.spi)]
        if args.src is not None:
            if args.src.version != args.dst.version:
                raise UsageError(f"--src {args.src} and --dst {args.dst} are of different families")
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


def _keyed(args: argparse.Namespace, satype: int) -> PfkeyMessage:
    src, dst = _pair(args)
    proposal = _proposal(args)
    exts = _keys(args, proposal)
    _check_lifetimes(args)
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
    encrypt, auth = (proposal.encrypt, proposal.auth) if proposal is not None else (0, 0)
    sa_ext = SadbSa(args.spi, args.replay, SaState.MATURE, auth, encrypt, flags)
    extra: list[Extension] = [SadbXPair(args.pair)] if args.pair is not None else []
    msg_type = SadbMsgType.ADD if args.sa_op == "add" else SadbMsgType.UPDATE
    return PfkeyMessage(msg_type, satype, extensions=(sa_ext, *lifetimes, src, dst, *exts, *extra))


def _proposal(args: argparse.Namespace) -> EspProposal | None:
    """The algorithms --alg names, if it is given."""
    if args.alg is None:
        return None
    try:
        return parse_esp_proposal(args.alg)
    except ProposalError as e:
        raise UsageError(f"--alg {args.alg}: {e}") from None


def _keys(args: argparse.Namespace, proposal: EspProposal | None) -> list[Extension]:
    """The key extensions --alg calls for, from --encrypt-key and --auth-key."""
    if proposal is None:
        if args.encrypt_key is not None or args.auth_key is not None:
            raise UsageError("keys need --alg to say what they are for")
        if args.sa_op == "add":
            raise UsageError("add needs --alg and its keys")
        return []
    exts: list[Extension] = []
    cipher = ENCRYPT_ALGORITHMS[proposal.encrypt]
    want = (proposal.encrypt_bits + cipher.salt_bits) // 8
    ekey = _key(args.encrypt_key, "--encrypt-key", want, cipher.name)
    if ekey:
        exts.append(SadbKey(ExtType.KEY_ENCRYPT, len(ekey) * 8, ekey))
    if proposal.auth:
        integ = AUTH_ALGORITHMS[proposal.auth]
        akey = _key(args.auth_key, "--auth-key", integ.key_bits // 8, integ.name)
        exts.append(SadbKey(ExtType.KEY_AUTH, len(akey) * 8, akey))
    elif args.auth_key is not None:
        raise UsageError(f"--auth-key: {args.alg} has no integrity algorithm")
    return exts


def _check_lifetimes(args: argparse.Namespace) -> None:
    """A soft limit above its hard one is refused (RFC 2367 §2.3.4); so is an idle time
    above the soft or hard add-time, checked as illumos' sadb_hardsoftchk() does: only
    when both of those are set."""
    for axis in ("time", "bytes"):
        soft, hard = getattr(args, f"soft_{axis}"), getattr(args, f"hard_{axis}")
        if soft and hard and soft > hard:
            raise UsageError(f"--soft-{axis} {soft} is above --hard-{axis} {hard}")
    idle, soft, hard = args.idle_time, args.soft_time, args.hard_time
    if idle and soft and hard and idle > soft:
        raise UsageError(
            f"--idle-time {idle} is above --soft-time {soft}: with soft and hard times set, "
            "the idle time may not exceed either"
        )


def _key(value: str | None, option: str, want: int, alg: str) -> bytes:
    if value is None:
        if want == 0:
            return b""
        raise UsageError(f"{option}: {alg} needs a {want}-byte key")
    where = ""
    text = value
    if value.startswith("@"):
        text = _key_file_text(value[1:], option)
        where = f" in {value[1:]}"
    try:
        key = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raise UsageError(f"{option}: not hexadecimal{where}") from None  # never echo key material
    if len(key) != want:
        raise UsageError(f"{option}: {alg} takes a {want}-byte key, not {len(key)} bytes{where}")
    return key


def _key_file_text(path: str, option: str) -> str:
    """The text of a key file, taken only as ssh takes a private key: a regular file that
    group and others cannot touch; and small, so that @/dev/zero cannot fill memory."""
    if not path:
        raise UsageError(f"{option}: no file named after the @")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; what it is is checked next.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"{option}: cannot read {path}: {e.strerror}") from None
    try:
        _check_key_file(os.fstat(fd), path, option)
        data = _read_at_most(fd, KEY_FILE_LIMIT + 1)
    except OSError as e:
        raise UsageError(f"{option}: cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > KEY_FILE_LIMIT:
        raise UsageError(
            f"{option}: {path} is over {KEY_FILE_LIMIT} bytes; a key file holds one key "
            "in hex, a few hundred bytes at most"
        )
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:  # its message would quote a byte of the key
        raise UsageError(f"{option}: {path} is not text; a key file holds hex") from None


def _check_key_file(st: os.stat_result, path: str, option: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{option}: {path} is {_file_kind(st.st_mode)}, not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:  # ssh's rule for a private key
        raise UsageError(
            f"{option}: {path} has mode {mode:04o}: a key file must not be open to group "
            "or others (chmod 600 it)"
        )


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


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
        elif isinstance(ext, SadbXInnerPairs):  # the selector pairs after the first
            out["inner_pairs"] = [[_prefixed(src), _prefixed(dst)] for src, dst in ext.pairs]
        elif isinstance(ext, SadbXSeqState):  # X_LARVAL_SEQ_STATE
            out["seq"] = {"next": ext.next, "reserved": ext.reserved, "replay_top": ext.top}
    return out


def _prefixed(ext: SadbAddress) -> str:
    return str(ext.addr) + (f"/{ext.prefixlen}" if ext.prefixlen else "")


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
            # The stack stopping is an error line, not a monitor that just ends.
            data = client.receive_bytes()
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
