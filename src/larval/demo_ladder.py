"""`larval demo`: two hosts in one process, IKEv2 between them, a ladder of what happens.

Host A (192.0.2.1, behind it 198.51.100.0/24) and host B (192.0.2.2, behind it
203.0.113.0/24) sit on an in-memory network. Each has its own stack (SADB, SPD, packet
path), a `MemoryDataplane` between its `MemoryTun` and its UDP 4500 endpoint, an IKE
endpoint on UDP 500 and a `KeyManager`, joined to its stack only by PF_KEY messages
encoded to bytes and decoded again, as `larval run` does (a `larval.node.Node`). Both
have a trap policy for the other's subnet.

The run: A's host sends an ICMP echo request to B's subnet; A's stack has no SA, holds
the packet and sends an extended ACQUIRE; A's key manager runs IKE_SA_INIT and IKE_AUTH
with B's; both install their SAs with UPDATE and ADD; the held packet leaves and reaches
B's host, which answers; more traffic goes both ways; the clock passes the CHILD_SA's
soft lifetime, the stack's EXPIRE reaches its key manager, which rekeys the CHILD_SA with
CREATE_CHILD_SA and deletes the old one; A deletes the IKE SA and the SAs go on both
sides. Time is a fake clock moved by the demo: no threads, no sleep.

With `--ikev1` the hosts speak IKEv1 (Main Mode, then Quick Mode) and the demo makes the
seed's window happen: the network holds A's QM3 back, so A's first ESP packets, sent as
soon as A has QM2, reach B while B's inbound SA is still LARVAL (GETSPI'd when QM1 came).
B's stack holds them on that SA; QM3 then arrives, B's UPDATE releases them in order.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from larval.crypto.ike_proposals import format_esp_proposal, format_ike_proposal
from larval.daemon.config import DaemonConfig, parse_config
from larval.esp import NON_ESP_MARKER
from larval.esp.ip import IPV4_HEADER, internet_checksum
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.datagram import version_of
from larval.ike.sa import Phase
from larval.ikev1.constants import ExchangeType as V1Exchange
from larval.ikev1.errors import IkeV1ProtocolError
from larval.ikev1.message import decode_header as decode_v1_header
from larval.ikev1.render import ladder_label as ikev1_ladder_label
from larval.ikev2.render import ladder_label
from larval.keymgr.pfkey_side import AcquireError, parse_policy_request
from larval.net.memnet import MemoryDatagram, MemoryDataplane, MemoryNetwork, MemoryTun
from larval.node import Node
from larval.pfkey import EncryptAlg, ExtType, PfkeyMessage, SadbMsgType, SadbSa, SaState
from larval.sadb import SecurityAssociation
from larval.sadb.sa import ReleaseFn

OUTER = {"A": "192.0.2.1", "B": "192.0.2.2"}
INNER = {"A": "198.51.100.1", "B": "203.0.113.1"}
NET = {"A": "198.51.100.0/24", "B": "203.0.113.0/24"}
PSK = "larval-demo-psk-0123456789abcdef"
SETTLE_HORIZON = 1.0  # seconds: key manager timers closer than this are waited for
LATENCY = 0.001  # seconds, each way
START = 1000.0  # the fake clock's start
AGE_INTERVAL = 1.0  # seconds between a stack's lifetime checks
REKEY_TIME, LIFE_TIME = 30, 60  # seconds: the CHILD_SA's soft and hard lifetimes

_ICMP_ECHO_REPLY, _ICMP_ECHO_REQUEST = 0, 8
_IPPROTO_ICMP = 1
_ICMP = struct.Struct("!BBHHH")
_V1_SUITES = ("aes128-sha256-modp2048", "aes128-sha256")  # IKE, ESP for the IKEv1 run


def demo_config(me: str, peer: str, version: int = 2) -> dict[str, Any]:
    """The host's configuration in DESIGN.md's format (as `larval run` would read it)."""
    ike, esp = ("aes128-sha256-x25519", "aes128gcm16") if version == 2 else _V1_SUITES
    return {
        "daemon": {"addresses": [OUTER[me]]},
        "connections": {
            "s2s": {
                "version": version,
                "local_addrs": [OUTER[me]],
                "remote_addrs": [OUTER[peer]],
                "proposals": [ike],
                "encap": True,
                "local": {"auth": "psk", "id": OUTER[me]},
                "remote": {"auth": "psk", "id": OUTER[peer]},
                "children": {
                    "net": {
                        "local_ts": [NET[me]],
                        "remote_ts": [NET[peer]],
                        "esp_proposals": [esp],
                        "start_action": "trap",
                        "rekey_time": f"{REKEY_TIME}s",
                        "life_time": f"{LIFE_TIME}s",
                    }
                },
            }
        },
        "secrets": {"ike-s2s": {"ids": [OUTER["A"], OUTER["B"]], "secret": PSK}},
    }


# -- packets --------------------------------------------------------------------------------


def icmp_echo(src: str, dst: str, ident: int, seq: int, *, reply: bool = False,
              data: bytes = b"larval demo ping") -> bytes:  # fmt: skip
    """An IPv4 ICMP echo request (or reply), checksums filled in."""
    kind = _ICMP_ECHO_REPLY if reply else _ICMP_ECHO_REQUEST
    icmp = bytearray(_ICMP.pack(kind, 0, 0, ident, seq) + data)
    icmp[2:4] = internet_checksum(icmp).to_bytes(2, "big")
    header = bytearray(
        IPV4_HEADER.pack(0x45, 0, 20 + len(icmp), seq, 0x4000, 64, _IPPROTO_ICMP, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    )  # fmt: skip
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header + icmp)


@dataclass(frozen=True)
class Echo:
    src: str
    dst: str
    reply: bool
    ident: int
    seq: int
    data: bytes

    def __str__(self) -> str:
        kind = "reply" if self.reply else "request"
        return f"ICMP echo {kind} {self.src} → {self.dst} seq {self.seq}"


def parse_echo(packet: bytes) -> Echo | None:
    """The ICMP echo in an IPv4 packet, or None for anything else."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != _IPPROTO_ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, ident, seq = _ICMP.unpack_from(packet, ihl)
    if kind not in (_ICMP_ECHO_REPLY, _ICMP_ECHO_REQUEST):
        return None
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return Echo(src, dst, kind == _ICMP_ECHO_REPLY, ident, seq, packet[ihl + 8 :])


def describe(packet: bytes) -> str:
    echo = parse_echo(packet)
    return str(echo) if echo is not None else f"IP packet of {len(packet)} bytes"


# -- IKE messages for the ladder ------------------------------------------------------------


def ike_label(data: bytes) -> str:
    """An IKE message as the ladder shows it, in its version's words (`larval.ike.render`)."""
    if version_of(data) == 1:
        return ikev1_ladder_label(data)
    return ladder_label(data)


# -- the ladder -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of the ladder: a message between the hosts, or an event at one of them."""

    at: float  # seconds since the start
    kind: str  # "A->B", "B->A", "A", "B", "title", "note"
    text: str


@dataclass
class Ladder:
    lines: list[Line] = field(default_factory=list)

    def render(self) -> list[str]:
        arrows = [len(line.text) for line in self.lines if "->" in line.kind]
        width = max([40, *arrows]) + 8  # between the "A" and the "B" columns
        left, right = f"{'':9}A {OUTER['A']}", f"{OUTER['B']} B"
        out = [left.ljust(width + 13 - len(right)) + right]
        for line in self.lines:
            stamp = f"{line.at:7.3f}s "
            if line.kind == "title":
                out.append("")
                out.append(f"{'':9}{line.text}")
            elif line.kind == "A->B":
                body = f"─{line.text}─".center(width - 1, "─")
                out.append(f"{stamp}A {body}▶ B")
            elif line.kind == "B->A":
                body = f"─{line.text}─".center(width - 1, "─")
                out.append(f"{stamp}A ◀{body} B")
            elif line.kind == "note":
                out.append(f"{stamp}  ⇒ {line.text}")
            elif line.kind == "A":
                out.append(f"{stamp}A │ {line.text}")
            else:
                text = f"{line.text} │ B"
                out.append(f"{stamp}{text:>{width + 4}}")
        return out


# -- one host ----------------------------------------------------------------------------------


class Host:
    """A stack, its dataplane and its key manager (a `Node`: PF_KEY between them as
    bytes), and the ladder's narration of that PF_KEY (`request`, `replied`, `emitted`)."""

    def __init__(self, name: str, demo: Demo) -> None:
        self.name, self.demo = name, demo
        self.peer = "B" if name == "A" else "A"
        self.address = ipaddress.ip_address(OUTER[name])
        config = demo.host_config(name)
        self.node = Node(config.connections, observer=self, pools=config.pools)
        self.stack, self.keymgr = self.node.stack, self.node.keymgr
        for policy in config.policies:
            self.stack.spd.add(policy)
        self.tun = MemoryTun(f"{name}-tun")
        self.ike = demo.network.attach(OUTER[name], IKE_PORT, name=name)
        udp = demo.network.attach(OUTER[name], NAT_T_PORT, name=name)
        self.dataplane = MemoryDataplane(self.stack, self.tun, udp, on_ike=self._ike_4500)
        sadb = self.stack.sadb
        sadb.on_outbound_release = self._released(sadb.on_outbound_release)
        self.sent = 0  # cleartext packets the host gave its stack
        self.received: list[bytes] = []  # cleartext packets the stack gave the host
        self.expires: list[dict[str, Any]] = []
        self.acquires: set[int] = set()  # ACQUIRE sequence numbers seen
        # The stack's ager runs once a second (as in `larval run`), each host at its own
        # phase: a lifetime is noticed at the next tick after it runs out.
        self.next_age = START + (0.25 if name == "A" else 0.75)
        self._known_ike: set[bytes] = set()
        self._known_children: set[int] = set()

    def say(self, text: str) -> None:
        self.demo.event(self.name, text)

    # -- PF_KEY, both ways, as the node carries it --------------------------------------

    def request(self, msg: PfkeyMessage) -> None:
        if not _answered(msg):  # said first: an ADD releases held packets as it goes
            self.say(f"keymgr → stack: {_request_text(msg, self.acquires)}")

    def replied(self, msg: PfkeyMessage, replies: list[PfkeyMessage]) -> None:
        if _answered(msg):
            self.say(f"keymgr → stack: {_request_text(msg, self.acquires, replies)}")
        for reply in replies:
            if reply.errno:
                self.say(f"stack → keymgr: {SadbMsgType(reply.msg_type).name} refused, "
                         f"errno {reply.errno}, diagnostic {reply.diagnostic}")  # fmt: skip

    def emitted(self, msg: PfkeyMessage) -> None:
        text = _stack_text(msg)
        if text is None:
            return
        self.say(f"stack: {text}")
        if msg.msg_type == SadbMsgType.EXPIRE:
            self.expires.append(_expire_record(msg, self.demo.elapsed))
        elif msg.msg_type == SadbMsgType.ACQUIRE:
            self.acquires.add(msg.seq)

    def _released(self, release: ReleaseFn) -> ReleaseFn:
        def released(sa: SecurityAssociation, packet: bytes) -> None:
            self.say(f"stack: held packet released onto SA {sa.spi:08x}: {describe(packet)}")
            release(sa, packet)

        return released

    # -- IKE ---------------------------------------------------------------------------------

    def _ike_4500(self, body: bytes, peer: bytes, port: int) -> None:
        """IKE that came in on the dataplane's UDP 4500 behind the non-ESP marker."""
        addr = (str(ipaddress.ip_address(peer)), port)
        self.keymgr.receive_ike(body, addr, self.address, self.demo.now)

    def _flush_ike(self) -> bool:
        out = self.keymgr.datagrams_to_send()
        for data, (host, port) in out:
            if port == NAT_T_PORT:
                self.dataplane.send_ike(data, ipaddress.ip_address(host).packed, port)
            else:
                self.ike.send(data, (host, port))
        return bool(out)

    # -- one turn at the current time ----------------------------------------------------------

    def send(self, packet: bytes, note: str = "") -> None:
        """The host sends a packet into its tunnel (its TUN device)."""
        self.sent += 1
        self.say(f"host → stack: {describe(packet)}{note}")
        self.demo.current[self.name].append(describe(packet))
        self.tun.inject(packet)

    def turn(self) -> bool:
        """Let everything at this host act once at the demo's time; True if anything did."""
        now = self.demo.now
        self.demo.active = self
        moved = self.node.deliver(now) > 0
        self.keymgr.handle_timer(now)
        for data, (host, port) in self.ike.recv_batch():
            self.keymgr.receive_ike(data, (host, port), self.address, now)
            moved = True
        counters = self.stack.sadb.counters
        held, larval_held, released = (
            counters["acquire_held"], counters["held"], counters["released"])  # fmt: skip
        self.dataplane.step(now)
        if counters["acquire_held"] > held:
            self.say("stack: no SA yet: the packet is held on the ACQUIRE's record")
        if counters["held"] > larval_held:
            self.say(f"stack: ESP for a LARVAL SA: {counters['held'] - larval_held} packet(s) "
                     "held on it until its UPDATE")  # fmt: skip
        if counters["released"] > released:
            self.say(f"stack: UPDATE released {counters['released'] - released} held "
                     "packet(s), in arrival order")  # fmt: skip
        if now >= self.next_age:
            self.stack.age(now)
            while self.next_age <= now:
                self.next_age += AGE_INTERVAL
        self._keymgr_news()
        moved |= self._flush_ike() or self.node.pending
        for packet in self.tun.take():
            moved = True
            self.received.append(packet)
            self.say(f"stack → host: {describe(packet)}")
            echo = parse_echo(packet)
            if echo is not None and not echo.reply:
                self.demo.answer(self, echo)
        self.demo.active = None
        return moved

    def _keymgr_news(self) -> None:
        """IKE SAs established and CHILD_SAs installed since the last look."""
        for spi, session in self.keymgr.sessions.items():
            if session.phase is Phase.ESTABLISHED and spi not in self._known_ike:
                self._known_ike.add(spi)
                encap = ", UDP-encapsulated" if session.natted else ""
                suite = format_ike_proposal(session.suite)
                kind = "IKE_SA" if self.demo.version == 2 else "ISAKMP SA"
                self.say(f"keymgr: {kind} established, {suite}{encap}")
        for spi_in, child in self.keymgr.children.items():
            if spi_in not in self._known_children:
                self._known_children.add(spi_in)
                self.say(f"keymgr: CHILD_SA {child.name} up, in {spi_in:08x} / out "
                         f"{child.spi_out:08x}, {format_esp_proposal(child.suite)}")  # fmt: skip
        self._known_children &= set(self.keymgr.children)

    # -- what it holds ---------------------------------------------------------------------------

    def sa_state(self, spi_hex: str, dst: str) -> SecurityAssociation | None:
        return self.stack.sadb.lookup_esp(int(spi_hex, 16), ipaddress.ip_address(dst).packed)

    def status(self) -> dict[str, list[dict[str, Any]]]:
        """The key manager's status, with each CHILD_SA's state and counts in the stack."""
        status = self.keymgr.status()
        for record in status["ike_sas"]:
            record["host"] = self.name
            session = self.keymgr.sessions.get(bytes.fromhex(record["spi_i"]))
            record["proposal"] = format_ike_proposal(session.suite) if session else ""
        for record in status["child_sas"]:
            record["host"] = self.name
            sa_in = self.sa_state(record["spi_in"], OUTER[self.name])
            sa_out = self.sa_state(record["spi_out"], OUTER[self.peer])
            for way, sa in (("in", sa_in), ("out", sa_out)):
                record[f"state_{way}"] = SaState(sa.state).name if sa is not None else "gone"
                record[f"bytes_{way}"] = sa.bytes if sa is not None else 0
                record[f"packets_{way}"] = sa.packets if sa is not None else 0
        return status

    def counters(self) -> dict[str, Any]:
        sadb = self.stack.sadb.counters.snapshot()
        path = self.dataplane.path.counters()
        return {
            "host_sent": self.sent,
            "host_received": len(self.received),
            "esp_sent": path.pop("sent"),
            "esp_delivered": path.pop("delivered"),
            "drops": {k: v for k, v in path.items() if v},
            "sadb": {k: v for k, v in sadb.items() if v},
            "sas": len(self.stack.sadb),
            "acquire_records": self.stack.sadb.acquire_records,
        }


def _echo_order(host: Host) -> list[int]:
    """The sequence numbers of the echo requests the host received, in arrival order."""
    return [e.seq for p in host.received if (e := parse_echo(p)) is not None and not e.reply]


def _spi_of(msg: PfkeyMessage) -> int | None:
    ext = msg.find(ExtType.SA)
    return ext.spi if isinstance(ext, SadbSa) else None


def _answered(msg: PfkeyMessage) -> bool:
    """A request whose reply the ladder tells with it (the SPI given, the policy found)."""
    return msg.msg_type in (SadbMsgType.GETSPI, SadbMsgType.X_INVERSE_ACQUIRE)


def _request_text(
    msg: PfkeyMessage, acquires: set[int], replies: list[PfkeyMessage] | None = None
) -> str:
    """A PF_KEY request (and, for GETSPI and inverse ACQUIRE, the stack's answer)."""
    kind = SadbMsgType(msg.msg_type)
    ok = replies is not None and not any(r.errno for r in replies)
    if kind == SadbMsgType.REGISTER:
        return "REGISTER (extended: send me extended ACQUIREs)"
    if kind == SadbMsgType.GETSPI:
        spi = next((s for r in replies or [] if (s := _spi_of(r)) is not None), None)
        return f"GETSPI → LARVAL SA {spi:08x}" if ok and spi is not None else "GETSPI"
    if kind == SadbMsgType.X_INVERSE_ACQUIRE:
        return "INVERSE_ACQUIRE (what does my policy accept?)" + (
            " → its ESP choices" if ok else ""
        )
    spi = _spi_of(msg) or 0
    sa = msg.find(ExtType.SA)
    alg = f", {EncryptAlg(sa.encrypt).name}" if isinstance(sa, SadbSa) and sa.encrypt else ""
    if kind == SadbMsgType.UPDATE:
        return f"UPDATE spi {spi:08x} (inbound{alg}: LARVAL → MATURE)"
    if kind == SadbMsgType.ADD:
        why = f"the ACQUIRE's seq {msg.seq}" if msg.seq in acquires else f"seq {msg.seq}"
        return f"ADD spi {spi:08x} (outbound{alg}, {why})"
    if kind == SadbMsgType.DELETE:
        return f"DELETE spi {spi:08x}"
    return kind.name


def _lifetime_kind(msg: PfkeyMessage) -> str:
    if msg.find(ExtType.LIFETIME_HARD) is not None:
        return "hard"
    if msg.find(ExtType.LIFETIME_SOFT) is not None:
        return "soft"
    return "idle"


def _stack_text(msg: PfkeyMessage) -> str | None:
    if msg.msg_type == SadbMsgType.ACQUIRE:
        try:
            request = parse_policy_request(msg)
        except AcquireError:
            return None  # the regular ACQUIRE beside the extended one
        algs = ", ".join(a.proposal.keywords for a in request.alternatives)
        return (
            f"ACQUIRE seq {msg.seq} (extended: {request.local_ts.network} → "
            f"{request.remote_ts.network}, via {request.dst.address}, ESP {algs})"
        )
    if msg.msg_type == SadbMsgType.EXPIRE:
        spi = _spi_of(msg)
        return f"EXPIRE ({_lifetime_kind(msg)}) spi {spi or 0:08x} → key manager"
    return SadbMsgType(msg.msg_type).name


def _expire_record(msg: PfkeyMessage, at: float) -> dict[str, Any]:
    return {"spi": f"{_spi_of(msg) or 0:08x}", "kind": _lifetime_kind(msg), "at": round(at, 3)}


def _child_spis(host: Host) -> set[tuple[int, int]]:
    return {(c.spi_in, c.spi_out) for c in host.keymgr.children.values()}


def _spi_lists(spis: dict[str, set[tuple[int, int]]]) -> dict[str, list[dict[str, str]]]:
    return {
        name: [{"spi_in": f"{i:08x}", "spi_out": f"{o:08x}"} for i, o in sorted(pairs)]
        for name, pairs in spis.items()
    }


# -- the two hosts together ------------------------------------------------------------------


# Log lines the ladder tells in its own words (`Host._keymgr_news`).
# Log lines the ladder already shows in its own way: the SAs coming up, and the
# per-exchange lines ("sending IKE_AUTH request 1 [ ... ]"), which are the arrows.
_SAID_OTHERWISE = (" established (", " installed, ", "]: sending ", "]: received ")


class KeymgrLog(logging.Handler):
    """The key managers' log lines, in the ladder at the host that wrote them."""

    def __init__(self, demo: Demo) -> None:
        super().__init__(logging.INFO)
        self.demo = demo

    def emit(self, record: logging.LogRecord) -> None:
        host = self.demo.active
        if hasattr(record, "exchange"):
            return  # an exchange's line (`larval.ike.exchange_log`): the arrows say it
        text = record.getMessage()
        if host is not None and not any(word in text for word in _SAID_OTHERWISE):
            host.say(f"keymgr: {text}")


class Demo:
    def __init__(self, version: int = 2) -> None:
        self.version = version
        self.now = START
        self.ladder = Ladder()
        self.network = MemoryNetwork(latency=LATENCY, now=START, tap=self._tap)
        # What each host gave its stack, in order, to name the ESP packets on the wire.
        self.current: dict[str, deque[str]] = {"A": deque(), "B": deque()}
        self._last_sent: tuple[MemoryDatagram, Line] | None = None
        self.active: Host | None = None
        self.a = Host("A", self)
        self.b = Host("B", self)
        self.hosts = (self.a, self.b)

    @property
    def elapsed(self) -> float:
        return self.now - START

    def host_config(self, name: str) -> DaemonConfig:
        """Host `name`'s configuration, as `larval run` would have it."""
        peer = "B" if name == "A" else "A"
        return parse_config(demo_config(name, peer, self.version), f"<demo host {name}>")

    def answer(self, host: Host, echo: Echo) -> None:
        """An echo request reached `host` through its tunnel: it answers."""
        host.send(icmp_echo(echo.dst, echo.src, echo.ident, echo.seq, reply=True, data=echo.data))

    def label(self, src: str, data: bytes) -> str:
        """An IKE message from host `src` as its arrow shows it."""
        return ike_label(data)

    def event(self, host: str, text: str) -> None:
        self.ladder.lines.append(Line(self.elapsed, host, text))

    def note(self, text: str) -> None:
        self.ladder.lines.append(Line(self.elapsed, "note", text))

    def title(self, text: str) -> None:
        self.ladder.lines.append(Line(self.elapsed, "title", text))

    def _tap(self, event: str, d: MemoryDatagram) -> None:
        if event == "delivered":
            return  # every datagram is shown once, when it is sent
        lines = self.ladder.lines
        if event == "held" and self._last_sent is not None and self._last_sent[0] is d:
            line = self._last_sent[1]  # held as it was sent: one line for both
            lines[lines.index(line)] = Line(line.at, line.kind, f"{line.text} HELD BACK")
            return
        src = "A" if d.src[0] == OUTER["A"] else "B"
        kind = "A->B" if src == "A" else "B->A"
        port = d.dst[1]
        if port == IKE_PORT:
            label = f"{self.label(src, d.data)} :{IKE_PORT}"
        elif d.data.startswith(NON_ESP_MARKER):
            label = f"{self.label(src, d.data[len(NON_ESP_MARKER) :])} :{NAT_T_PORT}"
        elif len(d.data) >= 8:
            spi, seq = struct.unpack_from("!II", d.data)
            queue = self.current[src]
            inner = queue.popleft() if queue and event == "sent" else ""
            label = f"ESP spi {spi:08x} seq {seq} :{NAT_T_PORT} [{inner}]"
        else:
            label = f"UDP {len(d.data)} bytes :{port}"
        if event != "sent":
            label = f"{label} {event.upper()}"
        lines.append(Line(self.elapsed, kind, label))
        if event == "sent":
            self._last_sent = (d, lines[-1])

    def settle(self) -> None:
        """Let the hosts act and the network deliver until nothing more is due, nor any
        key manager's timer within SETTLE_HORIZON (an SA waiting for a message to land;
        not a retransmission, a liveness check or a rekey)."""
        while True:
            while any([host.turn() for host in self.hosts]):
                pass
            soon = [t for h in self.hosts if (t := h.keymgr.get_timer()) is not None
                    and t <= self.now + SETTLE_HORIZON]  # fmt: skip
            due = [t for t in (self.network.next_due(), *soon) if t is not None]
            if not due:
                return
            self.advance(min(due))

    def advance(self, now: float) -> None:
        self.now = max(now, self.now)
        self.network.advance(self.now)

    def run(self) -> DemoResult:
        with self.keymgr_log():
            return self._run()

    @contextlib.contextmanager
    def keymgr_log(self) -> Iterator[None]:
        """The key managers' log lines (``larval.ike`` and ``larval.keymgr`` at INFO) in
        the ladder meanwhile."""
        loggers = [logging.getLogger(name) for name in ("larval.ike", "larval.keymgr")]
        handler, levels = KeymgrLog(self), [logger.level for logger in loggers]
        for logger in loggers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(handler)
                logger.setLevel(level)

    def _start(
        self, title: str = "1. Start: each key manager registers with its own stack (PF_KEY bytes)"
    ) -> None:
        self.title(title)
        for host in self.hosts:
            self.active = host
            host.keymgr.start(self.now)
        self.active = None
        self.settle()

    def _snapshot(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        before: dict[str, list[dict[str, Any]]] = {"ike_sas": [], "child_sas": []}
        for host in self.hosts:
            status = host.status()
            before["ike_sas"].extend(status["ike_sas"])
            before["child_sas"].extend(status["child_sas"])
        return before, {h.name: h.counters() for h in self.hosts}

    def _delete(self, step: int) -> dict[str, Any]:
        self.title(f"{step}. DELETE: A takes the connection down (larval down s2s)")
        self.active = self.a
        self.a.keymgr.down("s2s", self.now)
        self.active = None
        self.settle()
        after: dict[str, Any] = {"ike_sas": [], "child_sas": [], "sas": {}}
        for host in self.hosts:
            status = host.status()
            after["ike_sas"].extend(status["ike_sas"])
            after["child_sas"].extend(status["child_sas"])
            after["sas"][host.name] = len(host.stack.sadb)
        return after

    def _run(self) -> DemoResult:
        if self.version == 1:
            return self._run_ikev1()
        a, b = self.a, self.b
        self._start()

        self.title("2. The first packet: no SA → held, ACQUIRE → IKE → UPDATE/ADD → released")
        a.send(icmp_echo(INNER["A"], INNER["B"], 1, 1), " (the first packet)")
        self.settle()
        first_delivered = any(
            (e := parse_echo(p)) is not None and not e.reply and e.seq == 1 for p in b.received
        )

        self.title("3. More traffic, both ways, through the SAs")
        for seq in (2, 3):
            a.send(icmp_echo(INNER["A"], INNER["B"], 1, seq))
            self.settle()
        b.send(icmp_echo(INNER["B"], INNER["A"], 2, 1))
        self.settle()

        self.title(
            f"4. The CHILD_SA's soft lifetime (rekey_time {REKEY_TIME} s, less a random spread) "
            "runs out: EXPIRE → CREATE_CHILD_SA"
        )
        old = {h.name: _child_spis(h) for h in self.hosts}
        while not any(h.expires for h in self.hosts) and self.elapsed < LIFE_TIME:
            self.advance(min(h.next_age for h in self.hosts))
            self.settle()
        new = {h.name: _child_spis(h) for h in self.hosts}
        rekeyed = all(new[n] and new[n].isdisjoint(old[n]) for n in new)
        if rekeyed:
            self.note("the CHILD_SA was rekeyed with CREATE_CHILD_SA and the old one deleted")
            note = " (on the new CHILD_SA)"
        else:
            self.note("the soft EXPIRE reached the key managers but no rekey followed; the "
                      "SA is DYING and carries traffic until its hard lifetime")  # fmt: skip
            note = " (on the DYING SA)"
        a.send(icmp_echo(INNER["A"], INNER["B"], 1, 4), note)
        self.settle()
        rekey = {"rekeyed": rekeyed, "before": _spi_lists(old), "after": _spi_lists(new),
                 "expires": {h.name: h.expires for h in self.hosts}}  # fmt: skip
        before, counters = self._snapshot()
        after = self._delete(5)
        return DemoResult(self, before, after, counters, first_delivered, rekey)

    def _run_ikev1(self) -> DemoResult:
        a, b = self.a, self.b
        self._start()

        self.title("2. The first packet: held on A, ACQUIRE → Main Mode → Quick Mode; the "
                   "network holds A's QM3 back (the seed's window)")  # fmt: skip
        quick_modes: set[int] = set()

        def qm3(d: MemoryDatagram) -> bool:
            """A's second Quick Mode message of an exchange: QM3 (QM1 is the first)."""
            if d.src[0] != OUTER["A"]:
                return False
            data = d.data[len(NON_ESP_MARKER) :] if d.data.startswith(NON_ESP_MARKER) else d.data
            try:
                header = decode_v1_header(data)
            except IkeV1ProtocolError:
                return False
            if header.exchange_type != V1Exchange.QUICK_MODE:
                return False
            if header.message_id in quick_modes:
                return True
            quick_modes.add(header.message_id)
            return False

        self.network.hold(qm3, limit=1)
        a.send(icmp_echo(INNER["A"], INNER["B"], 1, 1), " (the first packet)")
        self.settle()
        a.send(icmp_echo(INNER["A"], INNER["B"], 1, 2), " (sent before B has QM3)")
        self.settle()
        held = b.stack.sadb.counters["held"]
        self.note(f"B's inbound SA is LARVAL and holds {held} packet(s); QM3 is still in "
                  "flight")  # fmt: skip
        self.title("3. QM3 arrives: B's UPDATE matures the SA and releases what it held")
        self.network.release()
        self.settle()
        first_delivered = any(
            (e := parse_echo(p)) is not None and not e.reply and e.seq == 1 for p in b.received
        )

        self.title("4. More traffic, both ways, through the SAs")
        a.send(icmp_echo(INNER["A"], INNER["B"], 1, 3))
        self.settle()
        b.send(icmp_echo(INNER["B"], INNER["A"], 2, 1))
        self.settle()
        window = {"held_on_larval": held, "released": b.stack.sadb.counters["released"],
                  "delivered_in_order": _echo_order(b) == [1, 2, 3]}  # fmt: skip
        before, counters = self._snapshot()
        after = self._delete(5)
        return DemoResult(self, before, after, counters, first_delivered, window)


@dataclass
class DemoResult:
    demo: Demo
    before: dict[str, Any]
    after: dict[str, Any]
    counters: dict[str, dict[str, Any]]  # per host, before the DELETE
    first_delivered: bool
    rekey: dict[str, Any]

    def packets(self) -> dict[str, int]:
        hosts = self.demo.hosts
        dropped = self.demo.network.counters.dropped + self.demo.network.counters.unreachable
        held = 0
        for host in hosts:
            sadb = host.stack.sadb.counters.snapshot()
            held += sadb["held"] + sadb["acquire_held"]
            dropped += sadb["replaced"] + sadb["expired"]
            dropped += sadb["acquire_replaced"] + sadb["acquire_expired"]
            path = host.dataplane.path.counters()
            dropped += sum(v for k, v in path.items() if k not in ("sent", "delivered"))
        return {
            "sent": sum(h.sent for h in hosts),
            "delivered": sum(len(h.received) for h in hosts),
            "held": held,
            "dropped": dropped,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "ike_sas": self.before["ike_sas"],
            "child_sas": self.before["child_sas"],
            "packets": self.packets(),
            "first_packet": {"held": True, "delivered": self.first_delivered},
            ("rekey" if self.demo.version == 2 else "seed_window"): self.rekey,
            "counters": self.counters,
            "network": self.demo.network.counters.as_dict(),
            "after_delete": self.after,
            "ladder": self.demo.ladder.render(),
        }

    def text(self) -> list[str]:
        out = ["larval demo: two hosts, one process, an in-memory network", ""]
        out.extend(self.demo.ladder.render())
        out.append("")
        out.append("SAs before the DELETE")
        for host in self.demo.hosts:
            for ike in (i for i in self.before["ike_sas"] if i["host"] == host.name):
                role = "initiator" if ike["initiator"] else "responder"
                encap = ", UDP-encapsulated" if ike["encapsulated"] else ""
                out.append(
                    f"  {host.name}  IKE_SA   {ike['name']} {ike['state']}, {role}, "
                    f"{ike['proposal']}{encap}, SPIs {ike['spi_i']}/{ike['spi_r']}"
                )
            for child in (c for c in self.before["child_sas"] if c["host"] == host.name):
                ts = f"{','.join(child['local_ts'])} ↔ {','.join(child['remote_ts'])}"
                out.append(f"     CHILD_SA {child['connection']}/{child['name']}, ESP "
                           f"{child['esp']}, tunnel {ts}")  # fmt: skip
                for way in ("in", "out"):
                    out.append(
                        f"       {way:<3} spi {child[f'spi_{way}']}  {child[f'state_{way}']:<6} "
                        f"{child[f'bytes_{way}']:>5} bytes, {child[f'packets_{way}']} packets"
                    )
        out.append("")
        out.append("Packet counters (before the DELETE)")
        for name, c in self.counters.items():
            drops = ", ".join(f"{k} {v}" for k, v in c["drops"].items()) or "none"
            sadb = ", ".join(f"{k} {v}" for k, v in c["sadb"].items()) or "none"
            out.append(
                f"  {name}  host sent {c['host_sent']}, host received {c['host_received']}, "
                f"ESP sent {c['esp_sent']}, ESP delivered {c['esp_delivered']}, drops: {drops}"
            )
            out.append(f"     SADB: {sadb}")
        p = self.packets()
        out.append(
            f"  total  sent {p['sent']}, delivered {p['delivered']}, held {p['held']}, "
            f"dropped {p['dropped']}"
        )
        out.append("")
        after = self.after
        out.append(
            f"After the DELETE: IKE_SAs {len(after['ike_sas'])}, CHILD_SAs "
            f"{len(after['child_sas'])}, SAs in the stacks: "
            + ", ".join(f"{k} {v}" for k, v in after["sas"].items())
        )
        return out


def run(version: int = 2) -> DemoResult:
    return Demo(version).run()


def main(as_json: bool = False, version: int = 2) -> int:
    result = run(version)
    if as_json:
        print(json.dumps(result.as_json()))
    else:
        print("\n".join(result.text()))
    return 0
