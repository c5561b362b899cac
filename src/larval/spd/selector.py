"""Selectors: the traffic a policy is about (RFC 4301 §4.4.1.1), from this host's side.

A `Selector` names a *local* and a *remote* prefix, an IP protocol, local and remote port
ranges and, for ICMP, a message type. Local and remote rather than source and
destination: an outbound packet's source is local, an inbound packet's source is remote,
so one selector describes both directions of a flow, as swanctl's ``local_ts`` and
``remote_ts`` and illumos' ``ipsec_selkey_t`` (``ipsl_local``/``ipsl_remote``) do.

`parse_ts` reads one swanctl traffic selector: ``10.0.0.0/8``, ``192.0.2.1``,
``10.0.0.0/8[tcp/80]``, ``[udp/1000-2000]``, ``::/0[ipv6-icmp/128]``, ``0.0.0.0/0[tcp]``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypeAlias

from larval.spd.errors import SpdError

__all__ = [
    "ANY_PORTS",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "PROTOCOLS",
    "AddressLike",
    "IPAddress",
    "IPNetwork",
    "Selector",
    "TsSpec",
    "parse_ts",
    "to_address",
]

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
#: What the lookups accept for an address: an ipaddress object, packed bytes or text.
AddressLike: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address | bytes | str"

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132

#: Protocol names swanctl accepts in a traffic selector (its getprotobyname names).
PROTOCOLS: dict[str, int] = {
    "icmp": IPPROTO_ICMP,
    "tcp": IPPROTO_TCP,
    "udp": IPPROTO_UDP,
    "ipv6-icmp": IPPROTO_ICMPV6,
    "icmpv6": IPPROTO_ICMPV6,
    "sctp": IPPROTO_SCTP,
}
_ICMP_PROTOCOLS = frozenset({IPPROTO_ICMP, IPPROTO_ICMPV6})

#: The whole port space: "any port" (RFC 4301 §4.4.1.1 OPAQUE/ANY both match it here).
ANY_PORTS = (0, 65535)

_MAX_BITS = {4: 32, 6: 128}


def to_address(value: AddressLike) -> IPAddress:
    """An ipaddress object from an address object, packed bytes (4 or 16) or text."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise SpdError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _check_ports(name: str, ports: tuple[int, int]) -> None:
    lo, hi = ports
    if not (0 <= lo <= hi <= 65535):
        raise SpdError(f"{name} {lo}-{hi} is not a port range within 0-65535")


@dataclass(frozen=True, slots=True)
class Selector:
    """Local and remote prefixes, protocol (0 = any), port ranges and ICMP type.

    Port ranges are inclusive ``(low, high)`` pairs; `ANY_PORTS` matches every port and
    is the only range allowed without a protocol. ``icmp_type`` (None = any) only goes
    with ICMP or ICMPv6.
    """

    local: IPNetwork
    remote: IPNetwork
    proto: int = 0
    local_ports: tuple[int, int] = ANY_PORTS
    remote_ports: tuple[int, int] = ANY_PORTS
    icmp_type: int | None = None

    def __post_init__(self) -> None:
        if self.local.version != self.remote.version:
            raise SpdError(f"selector mixes IPv{self.local.version} and IPv{self.remote.version}")
        if not 0 <= self.proto <= 255:
            raise SpdError(f"protocol {self.proto} is not within 0-255")
        _check_ports("local ports", self.local_ports)
        _check_ports("remote ports", self.remote_ports)
        ported = self.local_ports != ANY_PORTS or self.remote_ports != ANY_PORTS
        if ported and (self.proto == 0 or self.proto in _ICMP_PROTOCOLS):
            raise SpdError("ports need a protocol that has ports (tcp, udp, sctp, ...)")
        if self.icmp_type is not None:
            if self.proto not in _ICMP_PROTOCOLS:
                raise SpdError("an ICMP type needs protocol icmp or ipv6-icmp")
            if not 0 <= self.icmp_type <= 255:
                raise SpdError(f"ICMP type {self.icmp_type} is not within 0-255")

    @classmethod
    def of(
        cls,
        local: str | IPNetwork,
        remote: str | IPNetwork,
        proto: int = 0,
        local_ports: tuple[int, int] | int = ANY_PORTS,
        remote_ports: tuple[int, int] | int = ANY_PORTS,
        icmp_type: int | None = None,
    ) -> Selector:
        """A selector from text prefixes; a single port ``p`` is ``(p, p)``, 0 is any."""
        try:
            lnet = ipaddress.ip_network(local)
            rnet = ipaddress.ip_network(remote)
        except ValueError as exc:
            raise SpdError(str(exc)) from None
        return cls(lnet, rnet, proto, _ports(local_ports), _ports(remote_ports), icmp_type)

    @property
    def version(self) -> int:
        return self.local.version

    def specificity(self) -> tuple[int, int, int, int]:
        """How narrow the selector is: prefix bits, protocol given, port ranges given,
        ICMP type given. Larger is more specific."""
        return (
            self.local.prefixlen + self.remote.prefixlen,
            int(self.proto != 0),
            int(self.local_ports != ANY_PORTS) + int(self.remote_ports != ANY_PORTS),
            int(self.icmp_type is not None),
        )

    def matches(
        self,
        local: AddressLike,
        remote: AddressLike,
        proto: int = 0,
        local_port: int = 0,
        remote_port: int = 0,
        icmp_type: int | None = None,
    ) -> bool:
        """Whether a packet with these local/remote fields falls inside the selector."""
        la, ra = to_address(local), to_address(remote)
        if la.version != self.local.version or ra.version != self.local.version:
            return False
        if la not in self.local or ra not in self.remote:
            return False
        return self.matches_transport(proto, local_port, remote_port, icmp_type)

    def matches_transport(
        self, proto: int, local_port: int, remote_port: int, icmp_type: int | None
    ) -> bool:
        """The protocol, port and ICMP part of `matches`."""
        if self.proto and self.proto != proto:
            return False
        lo, hi = self.local_ports
        if not lo <= local_port <= hi:
            return False
        lo, hi = self.remote_ports
        if not lo <= remote_port <= hi:
            return False
        return self.icmp_type is None or self.icmp_type == icmp_type

    def mirrored(self) -> Selector:
        """The selector as the peer sees it: local and remote swapped."""
        return Selector(
            self.remote,
            self.local,
            self.proto,
            self.remote_ports,
            self.local_ports,
            self.icmp_type,
        )

    def local_ts(self) -> str:
        """The local side in swanctl traffic selector syntax (`parse_ts` reads it back)."""
        return _ts_text(self.local, self, self.local_ports)

    def remote_ts(self) -> str:
        """The remote side in swanctl traffic selector syntax."""
        return _ts_text(self.remote, self, self.remote_ports)

    def __str__(self) -> str:
        return f"{self.local_ts()} === {self.remote_ts()}"


def _ports(value: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(value, int):
        return ANY_PORTS if value == 0 else (value, value)
    return (int(value[0]), int(value[1]))


def _proto_name(proto: int) -> str:
    for name, number in PROTOCOLS.items():
        if number == proto:
            return name
    return str(proto)


def _ts_text(net: IPNetwork, sel: Selector, ports: tuple[int, int]) -> str:
    if not sel.proto:
        return str(net)
    if sel.icmp_type is not None:
        return f"{net}[{_proto_name(sel.proto)}/{sel.icmp_type}]"
    if ports == ANY_PORTS:
        return f"{net}[{_proto_name(sel.proto)}]"
    lo, hi = ports
    return f"{net}[{_proto_name(sel.proto)}/{lo if lo == hi else f'{lo}-{hi}'}]"


@dataclass(frozen=True, slots=True)
class TsSpec:
    """One side of a selector as written in a policy file; None where not written."""

    network: IPNetwork | None
    proto: int = 0
    ports: tuple[int, int] = ANY_PORTS
    icmp_type: int | None = None


def parse_ts(text: str) -> TsSpec:
    """Parse a swanctl traffic selector ``prefix[proto/port]``; raises `SpdError`.

    The address part may be empty (``[tcp/80]``: the prefix comes from elsewhere) or
    ``%any``/``%any6`` for every IPv4/IPv6 address. The port part is a number, a range
    ``low-high``, ``%any`` or, for icmp and ipv6-icmp, the ICMP type.
    """
    text = text.strip()
    proto_part: str | None = None
    if text.endswith("]") and "[" in text:
        text, _, proto_part = text[:-1].partition("[")
    network: IPNetwork | None
    if text in ("", "dynamic"):
        network = None
    elif text == "%any":
        network = ipaddress.IPv4Network("0.0.0.0/0")
    elif text == "%any6":
        network = ipaddress.IPv6Network("::/0")
    else:
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise SpdError(f"{text!r} is not an address or prefix: {exc}") from None
    if proto_part is None:
        return TsSpec(network)
    proto_text, slash, port_text = proto_part.partition("/")
    proto_text = proto_text.strip().lower()
    if proto_text in ("", "%any"):
        proto = 0
    elif proto_text in PROTOCOLS:
        proto = PROTOCOLS[proto_text]
    elif proto_text.isdigit() and int(proto_text) <= 255:
        proto = int(proto_text)
    else:
        raise SpdError(
            f"protocol {proto_text!r} is not a number 0-255 or one of " + ", ".join(PROTOCOLS)
        )
    port_text = port_text.strip()
    if not slash or port_text in ("", "%any"):
        return TsSpec(network, proto)
    if proto in _ICMP_PROTOCOLS:
        if not port_text.isdigit() or int(port_text) > 255:
            raise SpdError(f"ICMP type {port_text!r} is not a number 0-255")
        return TsSpec(network, proto, icmp_type=int(port_text))
    if proto == 0:
        raise SpdError(f"port {port_text!r} needs a protocol")
    lo_text, dash, hi_text = port_text.partition("-")
    if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
        raise SpdError(f"port {port_text!r} is not a number or a range low-high")
    lo = int(lo_text)
    hi = int(hi_text) if dash else lo
    if not 0 <= lo <= hi <= 65535:
        raise SpdError(f"port {port_text!r} is not within 0-65535, low before high")
    return TsSpec(network, proto, (lo, hi))
