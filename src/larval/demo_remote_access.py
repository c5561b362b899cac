"""`larval demo --remote-access`: the seed's home network in one process, no root.

A notebook outside (A, 192.0.2.1) dials the home gateway (B, 192.0.2.2), which guards
the home network 203.0.113.0/24 with a server on it (203.0.113.10). The gateway proves
itself with a certificate (made here with `larval.pki`, its CA the notebook's trust),
asks the notebook's user by EAP-MSCHAPv2 (``eap_id = "%any"``: EAP-Identity first) and
hands her an address of its pool ``rw`` (10.3.0.0/24) in the configuration payload; the
CHILD_SA is narrowed to that address. The notebook then pings the home server from its
virtual address, and the server's answer comes back through the tunnel; last, the
notebook hangs up and its lease goes offline, kept for carol to come back to.

Each host is `larval.demo_ladder`'s (a stack and a key manager meeting in PF_KEY bytes,
an in-memory network, a fake clock). The ladder shows what the encrypted IKE messages
carry, read with the sender's own SK keys as a packet capture with the keys logged
would: EAP packets by code and type, CP by type and attributes. Installing the virtual
address is the client's TUN work in `larval run`; here the notebook's host takes it as
its source address itself.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from larval.credentials import Credentials
from larval.daemon.config import DaemonConfig
from larval.demo_ladder import (
    OUTER,
    Demo,
    Echo,
    Host,
    icmp_echo,
    ike_label,
    parse_echo,
)
from larval.eap.errors import EapError
from larval.eap.packet import EapCode, EapPacket, EapType
from larval.ikev2.constants import CfgAttr, CfgType
from larval.ikev2.errors import IkeProtocolError
from larval.ikev2.message import decode_header, decode_protected
from larval.ikev2.payloads import CpPayload, EapPayload
from larval.ikev2.render import LOG_NAMES
from larval.ikev2.session import IkeSession
from larval.ra_gateway import RaGateway

HOME_NET = "203.0.113.0/24"
HOME_SERVER = "203.0.113.10"
POOL = "10.3.0.0/24"
DNS = "203.0.113.53"
USER = "carol"
# The demo's own, in memory only; a password is never written to the ladder.
PASSWORD = "demo-Password-1"
GATEWAY_ID = "vpn.example.org"
_CREDENTIALS = "<demo credentials>"

# MSCHAPv2 OpCodes (RFC 2759 via draft-kamath-pppext-eap-mschapv2 §2).
_MSCHAPV2_OPS = {1: "Challenge", 2: "Response", 3: "Success", 4: "Failure",
                 7: "Change-Password"}  # fmt: skip


RA = RaGateway(OUTER["B"], OUTER["A"], GATEWAY_ID, HOME_NET, POOL, dns=(DNS,),
               credentials_name=_CREDENTIALS)  # fmt: skip


def _credentials() -> Credentials:
    """A CA and the gateway's certificate (ECDSA P-256, dNSName vpn.example.org)."""
    return RA.credentials("Home", "Home CA")


def ra_config(me: str) -> dict[str, Any]:
    """The notebook's (A) or the gateway's (B) configuration in DESIGN.md's format."""
    if me == "A":
        return RA.clients_data({"home": USER}, {USER: PASSWORD})
    return RA.gateway_data({USER: PASSWORD})


class RemoteAccessDemo(Demo):
    """The notebook (A) and the home gateway (B); see the module."""

    def __init__(self) -> None:
        self.credentials = _credentials()
        super().__init__(version=2)
        self.virtual_ip: str | None = None

    def host_config(self, name: str) -> DaemonConfig:
        if name == "A":  # the client asks for an address (swanctl's vips = 0.0.0.0)
            return RA.clients_config({"home": USER}, {USER: PASSWORD}, self.credentials,
                                     "<demo notebook>")  # fmt: skip
        return RA.gateway_config({USER: PASSWORD}, self.credentials, "<demo gateway>")

    def answer(self, host: Host, echo: Echo) -> None:
        if host is self.b and echo.dst == HOME_SERVER:
            host.say(f"home server {HOME_SERVER}: echo request from {echo.src}, answering")
        super().answer(host, echo)

    def label(self, src: str, data: bytes) -> str:
        inside = peek(self.a if src == "A" else self.b, data)
        return ike_label(data) if inside is None else ike_label(data).replace("SK{…}", inside)

    def run_remote_access(self) -> RemoteAccessResult:
        """The run, with the key managers' log lines in the ladder (as `Demo.run`)."""
        with self.keymgr_log():
            return self._run_remote_access()

    def _run_remote_access(self) -> RemoteAccessResult:
        a, b = self.a, self.b
        self._start("1. Start: the notebook's and the gateway's key managers register with "
                    "their stacks")  # fmt: skip

        self.title("2. The notebook dials home (larval up home): IKE_SA_INIT, then IKE_AUTH "
                   "with EAP-MSCHAPv2 and the configuration payload")  # fmt: skip
        self.active = a
        a.keymgr.initiate("home", "net", self.now)
        self.active = None
        self.settle()
        vips = [ip for s in a.keymgr.status()["ike_sas"] for ip in s.get("virtual_ips", [])]
        self.virtual_ip = vips[0] if vips else None
        lease = _leases(b)
        for held in lease["online"]:
            address = held["address"]
            self.note(f"lease: pool rw gives {address} to {held['identity']} (online); the "
                      f"notebook's CHILD_SA is {address}/32 === {HOME_NET}")  # fmt: skip

        self.title(f"3. From the virtual address to the home server {HOME_SERVER} and back")
        if self.virtual_ip is not None:
            a.say(f"host: takes {self.virtual_ip} as its source address in the tunnel")
            a.send(icmp_echo(self.virtual_ip, HOME_SERVER, 7, 1))
            self.settle()
            a.send(icmp_echo(self.virtual_ip, HOME_SERVER, 7, 2))
            self.settle()
        replies = [e for p in a.received if (e := parse_echo(p)) is not None and e.reply]
        round_trip = {
            "sent": 2 if self.virtual_ip else 0,
            "replies": len(replies),
            "from": sorted({e.src for e in replies}),
            "to": sorted({e.dst for e in replies}),
            "server_saw": sorted(
                {e.src for p in b.received if (e := parse_echo(p)) is not None and not e.reply}
            ),
        }
        before, counters = self._snapshot()

        self.title("4. The notebook hangs up (larval down home): the lease goes offline, "
                   f"kept for {USER}")  # fmt: skip
        self.active = a
        a.keymgr.down("home", self.now)
        self.active = None
        self.settle()
        after = {"ike_sas": sum(len(h.keymgr.status()["ike_sas"]) for h in self.hosts),
                 "sas": {h.name: len(h.stack.sadb) for h in self.hosts},
                 "leases": _leases(b)}  # fmt: skip
        return RemoteAccessResult(self, before, counters, lease, round_trip, after)


def _leases(gateway: Host) -> dict[str, list[dict[str, str]]]:
    """The gateway's pool rw: leases online and offline."""
    out: dict[str, list[dict[str, str]]] = {"online": [], "offline": []}
    for status in gateway.keymgr.pools.status():
        pool = status.to_dict()
        for state in ("online", "offline"):
            out[state].extend({"address": x["address"], "identity": x["identity"]}
                              for x in pool[state])  # fmt: skip
    return out


# -- what the encrypted messages carry ---------------------------------------------------


def peek(sender: Host, data: bytes) -> str | None:
    """The payloads inside an encrypted message `sender` sent, opened with its own
    outbound SK keys (RFC 7296 §3.14); None where there is nothing to open."""
    try:
        header = decode_header(data)
    except IkeProtocolError:
        return None
    session = sender.keymgr.sessions.get(header.spi_i)
    framing = getattr(session, "_framing", None) if isinstance(session, IkeSession) else None
    cipher = getattr(framing, "outbound", None)
    if cipher is None:
        return None
    try:
        message = decode_protected(data, lambda aad, body: cipher.decrypt(body, aad))
    except (IkeProtocolError, ValueError):
        return None
    parts = []
    for payload, name in zip(message.payloads, LOG_NAMES.names(message.payloads), strict=True):
        if isinstance(payload, EapPayload):
            parts.append(f"EAP({describe_eap(payload.data)})")
        elif isinstance(payload, CpPayload):
            parts.append(f"CP({describe_cp(payload)})")
        else:
            parts.append(name)
    return "SK{" + ", ".join(parts) + "}"


def describe_eap(data: bytes) -> str:
    """An EAP packet by code and type: ``Request/Identity``, ``Response/Identity carol``,
    ``Request/MSCHAPv2 Challenge``, ``Success``; never what a method's data proves."""
    try:
        packet = EapPacket.decode(data)
    except EapError:
        return f"{len(data)} bytes"
    code = EapCode(packet.code).name.title()
    if packet.type is None:
        return code
    kind = EapType(packet.type)
    if kind is EapType.IDENTITY:
        name = packet.data.decode(errors="replace") if packet.code == EapCode.RESPONSE else ""
        return f"{code}/Identity{' ' + name if name else ''}"
    if kind is EapType.MSCHAPV2:
        op = _MSCHAPV2_OPS.get(packet.data[0], "?") if packet.data else "?"
        return f"{code}/MSCHAPv2 {op}"
    return f"{code}/{kind.name}"


def describe_cp(cp: CpPayload) -> str:
    """``CFG_REQUEST: IP4_ADDRESS, IP4_DNS`` or ``CFG_REPLY: IP4_ADDRESS 10.3.0.1, ...``."""
    words = []
    for attr in cp.attributes:
        name = CfgAttr(attr.attr_type).name.removeprefix("INTERNAL_")
        value = ""
        if attr.attr_type in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_DNS,
                              CfgAttr.INTERNAL_IP4_NBNS) and len(attr.value) == 4:  # fmt: skip
            value = f" {ipaddress.IPv4Address(attr.value)}"
        words.append(f"{name}{value}")
    return f"{CfgType(cp.cfg_type).name}: {', '.join(words) or 'nothing'}"


@dataclass
class RemoteAccessResult:
    demo: RemoteAccessDemo
    before: dict[str, Any]
    counters: dict[str, dict[str, Any]]
    lease: dict[str, list[dict[str, str]]]
    round_trip: dict[str, Any]
    after: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "virtual_ip": self.demo.virtual_ip,
            "ike_sas": self.before["ike_sas"],
            "child_sas": self.before["child_sas"],
            "lease": self.lease,
            "round_trip": self.round_trip,
            "counters": self.counters,
            "after_hang_up": self.after,
            "ladder": self.demo.ladder.render(),
        }

    def text(self) -> list[str]:
        out = ["larval demo --remote-access: a notebook (A) outside, the home gateway (B), "
               f"the home server {HOME_SERVER}", ""]  # fmt: skip
        out.extend(self.demo.ladder.render())
        out.append("")
        for sa in self.before["ike_sas"]:
            who = "notebook" if sa["host"] == "A" else "gateway "
            auth = sa.get("auth_remote" if sa["host"] == "B" else "auth_local") or {}
            vips = ", ".join(sa.get("virtual_ips", []))
            out.append(f"  {who} IKE_SA {sa['name']} {sa['state']}, {sa['proposal']}, "
                       f"virtual IP {vips or 'none'}, EAP {auth.get('method', '?')} "
                       f"{auth.get('identity', '')}".rstrip())  # fmt: skip
        for child in self.before["child_sas"]:
            who = "notebook" if child["host"] == "A" else "gateway "
            out.append(f"  {who} CHILD_SA {child['connection']}/{child['name']} "
                       f"{','.join(child['local_ts'])} === {','.join(child['remote_ts'])}, "
                       f"{child['packets_in']} packets in, {child['packets_out']} out")  # fmt: skip
        rt = self.round_trip
        out.append(f"  round trip: {rt['sent']} echo requests from the virtual address, "
                   f"{rt['replies']} replies from {', '.join(rt['from']) or 'nobody'}")  # fmt: skip
        leases = self.after["leases"]
        offline = ", ".join(f"{x['address']} ({x['identity']})" for x in leases["offline"])
        out.append(f"After hanging up: IKE_SAs {self.after['ike_sas']}, SAs in the stacks: "
                   + ", ".join(f"{k} {v}" for k, v in self.after["sas"].items())
                   + f"; offline leases: {offline or 'none'}")  # fmt: skip
        return out


def run() -> RemoteAccessResult:
    return RemoteAccessDemo().run_remote_access()


def main(as_json: bool = False) -> int:
    result = run()
    if as_json:
        print(json.dumps(result.as_json()))
    else:
        print("\n".join(result.text()))
    return 0
