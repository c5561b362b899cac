"""Policy lookups remembered per flow, keyed by the bytes of the packet's header.

A bulk transfer asks the SPD the same question for every packet; the answer depends
only on addresses, protocol and ports, which sit at fixed offsets of a plain TCP or UDP
packet (or IPv4 fragment of one). Those bytes are the key. An entry remembers the SPD
generation it was computed in, so a policy change is never answered from the cache.
Other packets (IP options, IPv6 extension headers, other protocols) go to the SPD every
time.

While no policy of the direction names ports (every selector's port ranges are
`ANY_PORTS`), the answer for a TCP or UDP packet depends on its protocol and addresses
only: a port range is the one selector field the ports are compared with, and an ICMP
type selector needs an ICMP protocol. Then a second entry, keyed by protocol and
addresses, answers a new flow between known hosts (another source port) as well.
"""

from __future__ import annotations

from larval.spd import Direction, Policy, Spd
from larval.spd.selector import ANY_PORTS
from larval.stack.flow import PacketError, parse_flow

MAX_FLOWS = 65536
_CACHEABLE = frozenset({6, 17})  # TCP, UDP: ports right after the fixed header


def flow_key(packet: bytes) -> bytes | None:
    """Protocol, addresses and ports as they stand in `packet`, or None.

    IPv4 fragments are keyed too, as `parse_flow` reads them: a first fragment (offset 0,
    MF set) has its ports where a whole packet has them, and takes a whole packet's key;
    a later one has none (RFC 4301 §7), and its key is its protocol and addresses alone,
    shorter than any key with ports. A datagram larger than the tunnel's MTU (UDP of
    1,400 bytes through a TUN of MTU 1,400) comes as such pairs, every one of a flow."""
    if not packet:
        return None
    first = packet[0]
    if first == 0x45:  # IPv4, no options
        if len(packet) < 20:
            return None
        if packet[6] & 0x1F or packet[7]:  # fragment offset not 0 (RFC 791)
            return packet[9:10] + packet[12:20]
        if len(packet) >= 24 and packet[9] in _CACHEABLE:
            return packet[9:10] + packet[12:24]
        return None
    if first >> 4 == 6 and len(packet) >= 44 and packet[6] in _CACHEABLE:
        return packet[6:7] + packet[8:44]
    return None


def hosts_key(flow: bytes) -> bytes:
    """The protocol and addresses of a `flow_key`: the flow without its ports."""
    if len(flow) == 13:  # IPv4 with ports
        return flow[:9]
    if len(flow) == 37:  # IPv6 with ports
        return flow[:33]
    return flow  # a later IPv4 fragment's key: protocol and addresses already


class FlowCache:
    """`Spd.lookup` for one direction, by packet."""

    __slots__ = ("_by_hosts", "_entries", "_portless", "direction", "spd")

    def __init__(self, spd: Spd, direction: Direction) -> None:
        self.spd = spd
        self.direction = direction
        self._entries: dict[bytes, tuple[int, Policy | None]] = {}
        # Answers by protocol and addresses (`hosts_key`), made while no policy of the
        # direction named ports, with the SPD generation they were found at.
        self._by_hosts: dict[bytes, tuple[int, Policy | None]] = {}
        # (SPD generation, whether no policy of the direction names ports at it).
        self._portless: tuple[int, bool] = (-1, False)

    def lookup(self, packet: bytes) -> Policy | None:
        """The policy for `packet`; raises PacketError if it cannot be read."""
        key = flow_key(packet)
        generation = self.spd.generation
        if key is not None:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == generation:
                return hit[1]
            hit = self._by_hosts.get(hosts_key(key))
            if hit is not None and hit[0] == generation:
                return hit[1]
        flow = parse_flow(packet)
        policy = self.spd.lookup(
            self.direction, flow.src, flow.dst, flow.proto, flow.sport, flow.dport, flow.icmp_type
        )
        if key is not None:
            entries = self._entries
            if len(entries) >= MAX_FLOWS:
                entries.clear()  # a scan or a flood: start over rather than grow
            entries[key] = (generation, policy)
            if self._without_ports(generation):
                by_hosts = self._by_hosts
                if len(by_hosts) >= MAX_FLOWS:
                    by_hosts.clear()
                by_hosts[hosts_key(key)] = (generation, policy)
        return policy

    def _without_ports(self, generation: int) -> bool:
        """Whether no policy of the direction names ports, at SPD generation
        `generation`: looked at once per generation. Read before the lookup, the
        generation dates the answer: a policy added since moves it on, and the entries
        made with this answer are not used after that."""
        at, portless = self._portless
        if at != generation:
            policies = self.spd.policies()
            portless = all(
                p.selector.local_ports == ANY_PORTS and p.selector.remote_ports == ANY_PORTS
                for p in policies
                if p.direction is self.direction
            )
            # The generation may have moved during the walk: the answer is then dated
            # by the older one, which entries of the newer never match.
            self._portless = (generation, portless)
        return portless


__all__ = ["FlowCache", "PacketError", "flow_key", "hosts_key"]
