"""The Configuration payload in IKE_AUTH (RFC 7296 §2.19, §3.15): a responder hands a
client that asks an address of its connection's pools; an initiator asks for one.

    HDR, SK {IDi, [CERT,] AUTH, CP(CFG_REQUEST), SAi2, TSi, TSr}  -->
          <--  HDR, SK {IDr, [CERT,] AUTH, CP(CFG_REPLY), SAr2, TSi, TSr}

A request's INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS, empty or holding the address
the client would like back, is answered from the connection's pools (`AddressPool`, the
key manager's `larval.pools.Pools` behind it), keyed by the peer's authenticated
identity. The reply is what strongSwan's ``ike_config.c`` and its pool provider send:
each address leased (IPv4 as four octets with no NETMASK, IPv6 with prefix length 64),
then every attribute of the pools that leased one, whether asked for or not. A family
the pools cannot serve is left out of the reply; when no address at all could be given
the answer is N(INTERNAL_ADDRESS_FAILURE) and no CHILD_SA (§3.10.1), the IKE SA stays.
A client that asks for no address on a connection with pools gets N(FAILED_CP_REQUIRED)
and no CHILD_SA, as from strongSwan.
The TSi of the CHILD_SA, and of every CHILD_SA the IKE SA creates later, is narrowed
to the addresses leased (`peer_ts`).

The leases belong to the IKE SA: they move to the IKE SA that rekeys it and are
released (offline, kept for the identity to come back) when it closes.

An initiator whose connection has `vips` asks in its IKE_AUTH (`client_request`) and reads
the CFG_REPLY (`read_config`): the addresses given, the DNS servers and the DNS domains
(attribute 25, RFC 8598), kept on the IKE SA as its `received`. As strongSwan's
``child_create.c``, the CHILD_SA's own selectors are then the virtual addresses
(`own_ts`): a reply that gives none, or a TSi outside them, fails the CHILD_SA.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from larval.ike.config import IPAddress, IPNetwork
from larval.pools import Lease, PoolAttributes

from ..constants import CfgAttr, CfgType, NotifyType, PayloadType, ProtocolId
from ..message import IkeMessage
from ..negotiate import narrow
from ..payloads import CfgAttribute, CpPayload, NotifyPayload, Payload
from ..ts_payload import TsPayload
from .sa import Address, Ikev2Sa, log

__all__ = [
    "AddressPool",
    "ReceivedConfig",
    "attributes_of",
    "cfg_request",
    "client_request",
    "own_ts",
    "peer_ts",
    "read_config",
    "read_reply",
    "release_leases",
    "requested_addresses",
    "respond_cfg",
]

_ANY: dict[int, IPAddress] = {4: ipaddress.IPv4Address(0), 6: ipaddress.IPv6Address(0)}
_ADDRESS_ATTR = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
#: The prefix length strongSwan sends with an IPv6 address (RFC 7296 §3.15.1).
_IP6_PREFIX = 64


class AddressPool(Protocol):
    """What a responder's IKE SA asks of its key manager: the connection's pools."""

    def acquire(
        self, identity: str, requested: IPAddress, peer: Address
    ) -> tuple[Lease, PoolAttributes] | None:
        """A lease of `requested`'s family (the any-address for any), or None."""
        ...

    def release(self, identity: str, lease: Lease) -> None: ...


def requested_addresses(message: IkeMessage) -> list[IPAddress]:
    """The addresses a CFG_REQUEST asks for, one per family, in the order asked: the
    one requested, or the any-address. An address of the wrong length asks for any."""
    cp = next((p for p in message.get(CpPayload) if p.cfg_type == CfgType.CFG_REQUEST), None)
    if cp is None:
        return []
    wanted: dict[int, IPAddress] = {}
    for attr in cp.attributes:
        family = next((f for f, t in _ADDRESS_ATTR.items() if t == attr.attr_type), None)
        if family is None or family in wanted:
            continue
        size = 4 if family == 4 else 16
        value = attr.value[:size] if len(attr.value) in (size, size + 1) else b""
        if not value:
            wanted[family] = _ANY[family]
        elif family == 4:
            wanted[family] = ipaddress.IPv4Address(value)
        else:
            wanted[family] = ipaddress.IPv6Address(value)
    return list(wanted.values())


def respond_cfg(
    sa: Ikev2Sa, message: IkeMessage, identity: str
) -> tuple[tuple[Payload, ...], bool]:
    """The responder's CP for an authenticated peer: (payloads, whether the CHILD_SA may
    follow). Leases taken are the IKE SA's (`sa._leases`, `sa.virtual_ips`)."""
    requested = requested_addresses(message)
    pool = sa._address_pool
    if not requested:
        if pool is None:
            return (), True
        # A connection that hands out addresses is for clients that take one (§3.10.1).
        log.warning("%s: %r asked for no virtual IP, sending FAILED_CP_REQUIRED", sa._name(),
                    identity)  # fmt: skip
        return (NotifyPayload(ProtocolId.NONE, NotifyType.FAILED_CP_REQUIRED),), False
    given: list[tuple[Lease, PoolAttributes]] = []
    if pool is not None:
        for address in requested:
            got = pool.acquire(identity, address, sa.remote)
            if got is None:
                log.info("%s: no virtual IP for %s requested by %r", sa._name(), address,
                         identity)  # fmt: skip
                continue
            log.info("%s: assigning virtual IP %s to %r", sa._name(), got[0].address, identity)
            given.append(got)
    else:
        log.info("%s: %r asked for a virtual IP; the connection has no pools", sa._name(),
                 identity)  # fmt: skip
    if not given:
        log.warning("%s: no virtual IP for %r, sending INTERNAL_ADDRESS_FAILURE", sa._name(),
                    identity)  # fmt: skip
        return (NotifyPayload(ProtocolId.NONE, NotifyType.INTERNAL_ADDRESS_FAILURE),), False
    sa._lease_identity = identity
    sa._leases = tuple(lease for lease, _ in given)
    sa.virtual_ips = tuple(lease.address for lease in sa._leases)
    attrs = [_address_attribute(lease.address) for lease, _ in given]
    for attributes in dict.fromkeys(a for _, a in given):
        attrs.extend(attributes_of(attributes))
    return (CpPayload(CfgType.CFG_REPLY, tuple(attrs)),), True


def peer_ts(sa: Ikev2Sa, tsi: TsPayload) -> TsPayload:
    """The TSi a peer proposed, as a responder takes it: narrowed to the virtual
    addresses it was given, for every CHILD_SA of the IKE SA, so that a client cannot
    speak for another's address (RFC 7296 §2.19). Unchanged for a peer without one."""
    if sa.initiator or not sa.virtual_ips:
        return tsi
    nets = [ipaddress.ip_network(v) for v in sa.virtual_ips]
    return TsPayload(PayloadType.TSi, narrow(tsi.selectors, nets))  # type: ignore[arg-type]


def release_leases(sa: Ikev2Sa) -> None:
    """The IKE SA goes: its leases go offline (kept for the identity to come back)."""
    if sa._address_pool is not None:
        for lease in sa._leases:
            sa._address_pool.release(sa._lease_identity, lease)
    sa._leases = ()


def attributes_of(attributes: PoolAttributes) -> list[CfgAttribute]:
    """A pool's attributes as CFG_REPLY carries them (RFC 7296 §3.15.1, RFC 8598)."""
    out: list[CfgAttribute] = []
    for dns in attributes.dns:
        kind = CfgAttr.INTERNAL_IP4_DNS if dns.version == 4 else CfgAttr.INTERNAL_IP6_DNS
        out.append(CfgAttribute(kind, dns.packed))
    out.extend(CfgAttribute(CfgAttr.INTERNAL_IP4_NBNS, n.packed) for n in attributes.nbns)
    for net in attributes.split_include:
        out.append(_subnet_attribute(net))
    out.extend(CfgAttribute(CfgAttr(25), d.encode()) for d in attributes.dns_domain)
    out.extend(CfgAttribute(CfgAttr(t), v) for t, v in attributes.raw)
    return out


def _address_attribute(address: IPAddress) -> CfgAttribute:
    if address.version == 4:
        return CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, address.packed)
    return CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, address.packed + bytes([_IP6_PREFIX]))


def _subnet_attribute(net: IPNetwork) -> CfgAttribute:
    if net.version == 4:
        mask = net.netmask.packed
        return CfgAttribute(CfgAttr.INTERNAL_IP4_SUBNET, net.network_address.packed + mask)
    value = net.network_address.packed + bytes([net.prefixlen])
    return CfgAttribute(CfgAttr.INTERNAL_IP6_SUBNET, value)


def cfg_request(requested: Sequence[IPAddress]) -> CpPayload:
    """The initiator's CFG_REQUEST: an address of each family asked (empty for any)."""
    attrs = []
    for address in requested:
        if address.version == 4:
            value = b"" if address == _ANY[4] else address.packed
        else:
            value = b"" if address == _ANY[6] else address.packed + bytes([_IP6_PREFIX])
        attrs.append(CfgAttribute(_ADDRESS_ATTR[address.version], value))
    return CpPayload(CfgType.CFG_REQUEST, tuple(attrs))


def client_request(requested: Sequence[IPAddress]) -> CpPayload:
    """A road warrior's CFG_REQUEST: the addresses (`cfg_request`) and, as strongSwan's
    client asks, an empty DNS server attribute of each family (RFC 7296 §3.15.1)."""
    dns = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}
    request = cfg_request(requested)
    asked = tuple(CfgAttribute(dns[f], b"") for f in dict.fromkeys(a.version for a in requested))
    return CpPayload(CfgType.CFG_REQUEST, request.attributes + asked)


def read_reply(message: IkeMessage) -> tuple[IPAddress, ...]:
    """The addresses a CFG_REPLY gives this end; malformed ones are passed over."""
    return read_config(message).addresses


@dataclass(frozen=True)
class ReceivedConfig:
    """What a CFG_REPLY gave this end (RFC 7296 §3.15.1, RFC 8598): its virtual
    addresses, the DNS servers and the DNS domains to search."""

    addresses: tuple[IPAddress, ...] = ()
    dns: tuple[IPAddress, ...] = ()
    domains: tuple[str, ...] = ()


#: RFC 8598 §4: INTERNAL_DNS_DOMAIN, one domain name in ASCII per attribute.
_DNS_DOMAIN = 25


def read_config(message: IkeMessage) -> ReceivedConfig:
    """The CFG_REPLY's addresses, DNS servers and domains, each once, in the order sent;
    a value of the wrong length or a domain that is not a printable name is passed over
    (strongSwan ignores what it cannot read, and so does the client here)."""
    addresses: dict[IPAddress, None] = {}
    dns: dict[IPAddress, None] = {}
    domains: dict[str, None] = {}
    for cp in message.get(CpPayload):
        if cp.cfg_type != CfgType.CFG_REPLY:
            continue
        for attr in cp.attributes:
            kind, value = attr.attr_type, attr.value
            if kind == CfgAttr.INTERNAL_IP4_ADDRESS and len(value) == 4:
                addresses[ipaddress.IPv4Address(value)] = None
            elif kind == CfgAttr.INTERNAL_IP6_ADDRESS and len(value) == 17:
                addresses[ipaddress.IPv6Address(value[:16])] = None
            elif kind == CfgAttr.INTERNAL_IP4_DNS and len(value) == 4:
                dns[ipaddress.IPv4Address(value)] = None
            elif kind == CfgAttr.INTERNAL_IP6_DNS and len(value) == 16:
                dns[ipaddress.IPv6Address(value)] = None
            elif kind == _DNS_DOMAIN and _is_domain(value):
                domains[value.decode("ascii").rstrip(".")] = None
    return ReceivedConfig(tuple(addresses), tuple(dns), tuple(domains))


def _is_domain(value: bytes) -> bool:
    """A DNS name a resolv.conf ``search`` line can carry: letters, digits, '-', '.', '_'."""
    return 0 < len(value) <= 253 and all(
        (c < 128 and chr(c).isalnum()) or c in b"-._" for c in value
    )


def own_ts(sa: Ikev2Sa, tsi: TsPayload) -> TsPayload:
    """The TSi a responder answered, as an initiator with virtual addresses takes it: the
    parts within those addresses (strongSwan narrows its dynamic selectors to them).
    Unchanged for an initiator that asked for none."""
    if not sa.config.vips:  # (whichever end began the IKE SA: a rekey turns roles)
        return tsi
    nets = [ipaddress.ip_network(v) for v in sa.virtual_ips]
    return TsPayload(PayloadType.TSi, narrow(tsi.selectors, nets))  # type: ignore[arg-type]
