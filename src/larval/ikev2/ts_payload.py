"""Traffic Selector payloads, TSi and TSr (RFC 7296 §3.13), and conversions to `ipaddress`.

A selector is an address range, an IP protocol (0 for any) and a port range. IKEv2
ranges need not be CIDR blocks, so `TrafficSelector.networks` summarises a range into
networks and `TrafficSelector.from_network` builds one from a network.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass
from typing import TypeAlias

from larval.wire import Buffer, NetReader

from .codec import IkeReader, push_block
from .constants import PayloadType, TsType
from .errors import IkeDecodeError, IkeEncodeError

__all__ = ["IPAddress", "IPNetwork", "TrafficSelector", "TsPayload", "UnknownTrafficSelector"]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_SELECTOR_HEADER = 4  # TS Type, IP Protocol ID, Selector Length
# The fixed part of an address-range selector: those, then Start Port and End Port.
_SELECTOR = struct.Struct(">BBHHH")
# Address length per TS Type (RFC 7296 §3.13.1).
_ADDRESS_SIZE = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One traffic selector of type TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE (§3.13.1)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |   TS Type     |IP Protocol ID*|       Selector Length         |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |           Start Port*         |           End Port*           |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                         Starting Address*                     ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                         Ending Address*                       ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Addresses are raw network-order bytes, 4 or 16 of them; ``start``/``end`` give them
    as `ipaddress` objects. For ICMP the ports carry type and code (RFC 7296 §3.13.1).
    """

    ts_type: TsType
    ip_protocol: int
    start_port: int
    end_port: int
    start_address: bytes
    end_address: bytes

    @classmethod
    def from_range(
        cls,
        start: IPAddress,
        end: IPAddress,
        ip_protocol: int = 0,
        start_port: int = 0,
        end_port: int = 0xFFFF,
    ) -> TrafficSelector:
        """A selector for the addresses ``start``..``end`` (one family)."""
        if start.version != end.version:
            raise IkeEncodeError(f"address range {start}..{end} mixes IPv4 and IPv6")
        ts_type = TsType.TS_IPV4_ADDR_RANGE if start.version == 4 else TsType.TS_IPV6_ADDR_RANGE
        return cls(ts_type, ip_protocol, start_port, end_port, start.packed, end.packed)

    @classmethod
    def from_network(
        cls,
        network: IPNetwork | str,
        ip_protocol: int = 0,
        start_port: int = 0,
        end_port: int = 0xFFFF,
    ) -> TrafficSelector:
        """A selector for every address of ``network`` (``"10.0.0.0/8"`` works too)."""
        net = ipaddress.ip_network(network) if isinstance(network, str) else network
        ts_type, start, end = _network_range(net)
        return cls(ts_type, ip_protocol, start_port, end_port, start, end)

    @property
    def start(self) -> IPAddress:
        return ipaddress.ip_address(self.start_address)

    @property
    def end(self) -> IPAddress:
        return ipaddress.ip_address(self.end_address)

    def networks(self) -> list[IPNetwork]:
        """The smallest list of networks covering ``start``..``end`` (empty if start > end)."""
        return list(_range_networks(self.start_address, self.end_address))

    def encode(self, buf: Buffer) -> None:
        size = _ADDRESS_SIZE.get(self.ts_type)
        if size is None:
            raise IkeEncodeError(f"TS Type {self.ts_type.name} has no address layout")
        if len(self.start_address) != size or len(self.end_address) != size:
            raise IkeEncodeError(f"{self.ts_type.name} needs {size}-byte addresses")
        # The header whole, its length known from the address size: one write a selector.
        head = _SELECTOR.pack(
            self.ts_type, self.ip_protocol, _SELECTOR.size + 2 * size, self.start_port,
            self.end_port,
        )  # fmt: skip
        buf.push_bytes(head + self.start_address + self.end_address)


#: How many distinct ranges and networks the conversions below remember: a responder
#: sees the same few selectors again and again, one per setup, and each conversion
#: through `ipaddress` costs more than the rest of reading the TS payload.
_CONVERSIONS_KEPT = 4096


@functools.lru_cache(maxsize=_CONVERSIONS_KEPT)
def _range_networks(start_address: bytes, end_address: bytes) -> tuple[IPNetwork, ...]:
    """`TrafficSelector.networks` of a range given as packed addresses (networks are
    immutable, so one answer serves every selector of the same range)."""
    start, end = ipaddress.ip_address(start_address), ipaddress.ip_address(end_address)
    if isinstance(start, ipaddress.IPv4Address) and isinstance(end, ipaddress.IPv4Address):
        return tuple(ipaddress.summarize_address_range(start, end)) if start <= end else ()
    if isinstance(start, ipaddress.IPv6Address) and isinstance(end, ipaddress.IPv6Address):
        return tuple(ipaddress.summarize_address_range(start, end)) if start <= end else ()
    return ()


@functools.lru_cache(maxsize=_CONVERSIONS_KEPT)
def _network_range(net: IPNetwork) -> tuple[TsType, bytes, bytes]:
    """The TS Type and packed first and last address of ``net``."""
    ts_type = TsType.TS_IPV4_ADDR_RANGE if net.version == 4 else TsType.TS_IPV6_ADDR_RANGE
    return ts_type, net.network_address.packed, net.broadcast_address.packed


@dataclass(frozen=True, slots=True)
class UnknownTrafficSelector:
    """A selector of a TS Type this codec has no layout for, kept as its raw bytes.

    ``body`` is everything after TS Type and the Selector Length, from the second
    octet's position: the IP Protocol ID octet first, so a selector of any later type
    re-encodes unchanged.
    """

    ts_type: TsType
    body: bytes

    def encode(self, buf: Buffer) -> None:
        if not self.body:
            raise IkeEncodeError("a traffic selector needs at least its second octet")
        with push_block(buf):
            buf.push_u8(self.ts_type)
            buf.push_u8(self.body[0])
            buf.push_u16be(0)  # Selector Length, patched
            buf.push_bytes(self.body[1:])


AnySelector: TypeAlias = TrafficSelector | UnknownTrafficSelector


def _decode_selector(reader: NetReader) -> AnySelector:
    ts_type = TsType(reader.pull_u8("TS Type"))
    second = reader.pull_u8("IP Protocol ID")
    length = reader.pull_u16("Selector Length")
    rest = reader.pull_block(length, _SELECTOR_HEADER, "Selector Length")
    size = _ADDRESS_SIZE.get(ts_type)
    if size is None:
        return UnknownTrafficSelector(ts_type, bytes([second]) + rest)
    if len(rest) != 4 + 2 * size:
        raise IkeDecodeError(
            f"{reader.what}: {ts_type.name} selector of {length} bytes, "
            f"expected {_SELECTOR_HEADER + 4 + 2 * size}"
        )
    sel = IkeReader(rest, "traffic selector")
    start_port = sel.pull_u16("Start Port")
    end_port = sel.pull_u16("End Port")
    start = sel.pull_bytes(size, "Starting Address")
    end = sel.pull_bytes(size, "Ending Address")
    return TrafficSelector(ts_type, second, start_port, end_port, start, end)


@dataclass(frozen=True, slots=True)
class TsPayload:
    """Traffic Selector payload, TSi or TSr (RFC 7296 §3.13)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Next Payload  |C|  RESERVED   |         Payload Length        |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        | Number of TSs |                 RESERVED                      |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ~                       <Traffic Selectors>                     ~
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    One class for both: ``payload_type`` is `PayloadType.TSi` or `PayloadType.TSr`.
    """

    payload_type: PayloadType
    selectors: tuple[AnySelector, ...]

    def encode_body(self) -> bytes:
        if len(self.selectors) > 0xFF:
            raise IkeEncodeError(f"{len(self.selectors)} traffic selectors (255 at most)")
        buf = Buffer()
        buf.push_u8(len(self.selectors))
        buf.push_bytes(bytes(3))
        for selector in self.selectors:
            selector.encode(buf)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes, payload_type: PayloadType) -> TsPayload:
        reader = IkeReader(body, f"{PayloadType(payload_type).name} payload")
        count = reader.pull_u8("Number of TSs")
        reader.pull_bytes(3, "RESERVED")
        selectors = [_decode_selector(reader) for _ in range(count)]
        reader.expect_end()
        return cls(PayloadType(payload_type), tuple(selectors))
