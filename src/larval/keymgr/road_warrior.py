"""What a road warrior's host needs from its IKE SAs: the virtual addresses each gave
this end (RFC 7296 §2.19), the networks its CHILD_SAs protect, to be routed from those
addresses, and the DNS servers and domains of the CFG_REPLY.

Sans-I/O: `host_state` reads the key manager's IKE SAs and CHILD_SAs and says what the
host should look like; the daemon (`larval.daemon.road_warrior`) makes it so, and undoes
it when the IKE SA goes. An IKE SA counts from the moment it has addresses until it is
closed, rekeyed ones included (the new one carries the addresses on), so that an IKE
rekey does not take the address away for a moment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from larval.ike.sa import Phase
from larval.keymgr.manager import IPAddress, IPNetwork, KeyManager

__all__ = ["HostState", "host_state"]


@dataclass(frozen=True)
class HostState:
    """The host's virtual addresses, its routes (network, source address), and the DNS
    servers and domains received, in the order the IKE SAs gave them."""

    addresses: tuple[IPAddress, ...] = ()
    routes: tuple[tuple[IPNetwork, IPAddress], ...] = ()
    dns: tuple[IPAddress, ...] = ()
    domains: tuple[str, ...] = ()
    #: The connections the state comes from, for the log.
    connections: tuple[str, ...] = ()
    #: The gateways' addresses: a route that covers one must not carry IKE to it.
    peers: tuple[IPAddress, ...] = ()


def host_state(keymgr: KeyManager) -> HostState:
    """Every IKE SA that gave this end the virtual addresses it asked for: the addresses,
    the remote selectors of its CHILD_SAs whose own selectors lie within them (routed
    from the address of their family), those of its connection's children that have no
    CHILD_SA at the moment (as written), and the DNS of its CFG_REPLY."""
    addresses: dict[IPAddress, None] = {}
    routes: dict[tuple[IPNetwork, IPAddress], None] = {}
    dns: dict[IPAddress, None] = {}
    domains: dict[str, None] = {}
    connections: dict[str, None] = {}
    peers: dict[IPAddress, None] = {}
    for session in keymgr.sessions.values():
        # The end that asked (``vips``), whichever end began this IKE SA: after the
        # gateway rekeyed it, the client is the new one's responder (RFC 7296 §2.18).
        if not session.config.vips or not session.virtual_ips or session.phase is Phase.CLOSED:
            continue
        connections[session.config.name] = None
        peers[ipaddress.ip_address(session.remote[0])] = None
        mine = session.virtual_ips
        addresses.update(dict.fromkeys(mine))
        received = getattr(session, "received", None)  # IKEv2's CFG_REPLY
        if received is not None:
            dns.update(dict.fromkeys(received.dns))
            domains.update(dict.fromkeys(received.domains))
        up: set[str] = set()
        for spi_in in session.children:
            record = keymgr.children.get(spi_in)
            if record is None:
                continue
            up.add(record.name)
            for net in record.remote_ts:
                source = _source_for(net, record.local_ts, mine)
                if source is not None:
                    routes[(net, source)] = None
        conn = keymgr.connections.get(session.config.name)
        for child in conn.children if conn is not None else ():
            if child.name in up:
                continue
            # No CHILD_SA of this child now (it expired, the gateway deleted it): its
            # networks stay routed from the address, so that what the host sends there
            # meets the child's policy, whose ACQUIRE brings a new CHILD_SA (§1.3.1).
            for net in child.remote_ts:
                source = _source_for(net, child.local_ts, mine)
                if source is not None:
                    routes[(net, source)] = None
    return HostState(tuple(addresses), tuple(routes), tuple(dns), tuple(domains),
                     tuple(connections), tuple(peers))  # fmt: skip


def _source_for(
    remote: IPNetwork, local_ts: tuple[IPNetwork, ...], mine: tuple[IPAddress, ...]
) -> IPAddress | None:
    """The virtual address of `remote`'s family that the CHILD_SA's own selectors cover:
    traffic to `remote` leaves from it. None: the CHILD_SA is not the virtual address's."""
    for address in mine:
        if address.version != remote.version:
            continue
        host = ipaddress.ip_network(address)
        if any(n.version == host.version and host.subnet_of(n) for n in local_ts):  # type: ignore[arg-type]
            return address
    return None
