"""What follows Phase 1 on an IKEv1 remote-access ISAKMP SA, both roles: XAuth
(draft-beaulieu-ike-xauth) and Mode Config pull and push (draft-dukes-ike-mode-cfg),
each a Transaction exchange (`larval.ikev1.transaction`)::

    gateway                                               road warrior
    TRANSACTION *{ HASH, CFG_REQUEST(X_USER X_PWD) }  -->                  XAuth
                <-- TRANSACTION *{ HASH, CFG_REPLY(X_USER X_PWD) }
    TRANSACTION *{ HASH, CFG_SET(X_STATUS) }          -->
                <-- TRANSACTION *{ HASH, CFG_ACK(X_STATUS) }
                <-- TRANSACTION *{ HASH, CFG_REQUEST(ADDR DNS ...) }       Mode Config pull
    TRANSACTION *{ HASH, CFG_REPLY(ADDR DNS ...) }    -->
    TRANSACTION *{ HASH, CFG_SET(ADDR DNS ...) }      -->                  or push
                <-- TRANSACTION *{ HASH, CFG_ACK(ADDR) }

The gateway opens XAuth as soon as Phase 1 is done (the exchanges' order is
strongSwan's); the ISAKMP SA counts as up only once XAuth succeeded (`authenticated`),
and with a wrong password the gateway sends X_STATUS 0, and deletes the ISAKMP SA once
the client has acknowledged it (`failed`). Mode Config leases from the connection's
pools (`larval.ikev2.exchanges.config_payload.AddressPool`, the key manager's
`larval.pools` behind it), keyed by the XAuth user where there is one and the peer's
IKE identity otherwise; the leases go offline when the ISAKMP SA goes (`release`). A
client that asked for addresses starts Quick Mode only once it has them, with the
virtual address as its ID (`configured`). Passwords are never logged.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from larval.ike.auth_config import AuthInfo
from larval.ike.config import IPAddress
from larval.ike.identity import IdType as PeerIdType
from larval.ike.identity import describe_identity
from larval.pools import Lease, PoolAttributes

from .isakmp import IsakmpSa
from .modecfg import (
    AttributePayload,
    CfgType,
    ModeCfgAttr,
    ModeCfgAttribute,
    XauthStatus,
    received_config,
    unity_split_include,
    xauth_type_refused,
)
from .transaction import Answered

__all__ = ["AddressPool", "RemoteAccess", "mode_config_attributes", "read_addresses"]

log = logging.getLogger("larval.ike")
A = ModeCfgAttr
_ANY: dict[int, IPAddress] = {4: ipaddress.IPv4Address(0), 6: ipaddress.IPv6Address(0)}
_ADDRESS_ATTR = {4: A.INTERNAL_IP4_ADDRESS, 6: A.INTERNAL_IP6_ADDRESS}

Address = tuple[str, int]


class AddressPool(Protocol):
    """The connection's pools, as the key manager hands them to a responder (the same
    as IKEv2's `larval.ikev2.exchanges.config_payload.AddressPool`)."""

    def acquire(
        self, identity: str, requested: IPAddress, peer: Address
    ) -> tuple[Lease, PoolAttributes] | None: ...

    def release(self, identity: str, lease: Lease) -> None: ...


#: Open a Transaction exchange: the request or SET, and what takes its answer.
Open = Callable[[AttributePayload, Answered], None]


class RemoteAccess:
    """XAuth and Mode Config of one ISAKMP SA (module docstring). The session opens
    exchanges for it (`open_exchange`), hands it every Transaction the peer opens
    (`answer`), and hears back through three callbacks: `authenticated(now)` once XAuth
    succeeded (or at once, without XAuth), `failed(reason, now)` when it did not, and
    `configured(now)` when a client has its virtual addresses."""

    def __init__(
        self,
        sa: IsakmpSa,
        pool: AddressPool | None,
        open_exchange: Open,
        *,
        authenticated: Callable[[float], None],
        failed: Callable[[str, float], None],
        configured: Callable[[float], None],
    ) -> None:
        self.sa = sa
        self.pool = pool
        self._open = open_exchange
        self._authenticated, self._failed, self._configured = authenticated, failed, configured
        config = sa.config
        #: This end checks the peer's XAuth (a gateway) or gives its own (a client).
        self.server = config.remote_xauth if not sa.initiator else None
        self.client = config.local_xauth if sa.initiator else None
        self.xauth_done = self.server is None and self.client is None
        self.user = ""  # the XAuth user the peer proved (gateway) or this end gave (client)
        self._status = XauthStatus.FAIL
        self.leases: tuple[Lease, ...] = ()
        self.lease_identity = ""
        #: A client asks for addresses (`config.vips`) and waits for them before Quick Mode.
        self.wants_config = sa.initiator and bool(config.vips)
        #: What follows the answer to the peer's Transaction, once that answer is sent.
        self._after_answer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"<RemoteAccess {self.sa.name()} xauth_done={self.xauth_done}>"  # no secrets

    # -- after Phase 1 ---------------------------------------------------------------------

    def phase1_done(self, now: float) -> None:
        """Phase 1 proved both ends: a gateway opens XAuth; without XAuth, the rest."""
        if self.server is not None:
            request = AttributePayload(
                CfgType.CFG_REQUEST,
                (ModeCfgAttribute(A.XAUTH_USER_NAME), ModeCfgAttribute(A.XAUTH_USER_PASSWORD)),
            )
            self._open(request, self._xauth_reply)
        elif self.xauth_done:
            self._authenticated(now)
            self.after_auth(now)

    def after_auth(self, now: float) -> None:
        """XAuth done (or none): a gateway that pushes sends its CFG_SET; a client that
        wants addresses pulls them."""
        if not self.sa.initiator and self.sa.config.mode_config_push and self.pool is not None:
            attrs = self._lease((_ANY[4],))
            if attrs is not None:
                self._open(AttributePayload(CfgType.CFG_SET, attrs), self._push_acked)
        elif self.wants_config and not self.sa.config.mode_config_push:
            vips = self.sa.config.vips
            request = tuple(ModeCfgAttribute(_ADDRESS_ATTR[v.version]) for v in vips)
            request += (ModeCfgAttribute(A.INTERNAL_IP4_DNS),)
            if any(v.version == 6 for v in vips):
                request += (ModeCfgAttribute(A.INTERNAL_IP6_DNS),)
            self._open(AttributePayload(CfgType.CFG_REQUEST, request), self._pulled)

    # -- the gateway -----------------------------------------------------------------------

    def _xauth_reply(self, reply: AttributePayload, now: float) -> None:
        """<-- CFG_REPLY(X_USER X_PWD): check, then CFG_SET(X_STATUS) -->"""
        user_attr, password_attr = reply.get(A.XAUTH_USER_NAME), reply.get(A.XAUTH_USER_PASSWORD)
        user = user_attr.text() if user_attr is not None else ""
        reason = self._check(user, password_attr, reply)
        if reason is None:
            self._status = XauthStatus.OK
            self.user = user
            log.info("%s: XAuth authentication of %r successful", self.sa.name(), user)
        else:
            self._status = XauthStatus.FAIL
            log.warning("%s: XAuth authentication of %r failed: %s", self.sa.name(), user, reason)
        status = AttributePayload(
            CfgType.CFG_SET, (ModeCfgAttribute(A.XAUTH_STATUS, int(self._status)),)
        )
        self._open(status, self._status_acked)

    def _check(
        self, user: str, password: ModeCfgAttribute | None, reply: AttributePayload
    ) -> str | None:
        """Why the user and password do not hold, or None when they do."""
        server = self.server
        assert server is not None
        refused = xauth_type_refused(reply)
        if refused is not None:
            return refused
        if not user or password is None:
            return "no user name or password in the reply"
        wanted = server.xauth_id if server.xauth_id is not None else self.peer_identity()
        if wanted != "%any" and user != wanted:
            return f"the connection is for XAuth user {wanted!r}"
        known = server.passwords.get(user)
        if known is None:
            return "no [secrets.xauth-NAME] or [secrets.eap-NAME] for this user"
        if not secrets.compare_digest(password.data, known.encode()):
            return "wrong password"
        return None

    def _status_acked(self, ack: AttributePayload, now: float) -> None:
        """<-- CFG_ACK(X_STATUS): XAuth is over, one way or the other."""
        if self._status is not XauthStatus.OK:
            self._failed(f"XAuth authentication of {self.user or 'the peer'} failed", now)
            return
        self.xauth_done = True
        self.sa.auth_remote = AuthInfo("xauth", identity=self.user)
        self._authenticated(now)
        self.after_auth(now)

    def _push_acked(self, ack: AttributePayload, now: float) -> None:
        log.info("%s: Mode Config CFG_SET acknowledged", self.sa.name())

    def peer_identity(self) -> str:
        """The peer's IKE identity as text (its ID payload of Phase 1)."""
        peer_id = self.sa.peer_id
        if peer_id is None:
            return self.sa.remote[0]
        return describe_identity(PeerIdType(int(peer_id.id_type)), peer_id.data)

    def _lease(self, requested: tuple[IPAddress, ...]) -> tuple[ModeCfgAttribute, ...] | None:
        """Addresses for the peer from the pools, and the pools' attributes; None when
        the connection has no pools. Keyed by the XAuth user, else the IKE identity."""
        if self.pool is None:
            log.info("%s: the peer asked for a virtual IP; the connection has no pools",
                     self.sa.name())  # fmt: skip
            return None
        identity = self.user or self.peer_identity()
        self.release()
        given: list[tuple[Lease, PoolAttributes]] = []
        for address in requested:
            got = self.pool.acquire(identity, address, self.sa.remote)
            if got is None:
                log.warning("%s: no virtual IP for %s requested by %r", self.sa.name(), address,
                            identity)  # fmt: skip
                continue
            log.info("%s: assigning virtual IP %s to %r", self.sa.name(), got[0].address, identity)
            given.append(got)
        self.lease_identity = identity
        self.leases = tuple(lease for lease, _ in given)
        self.sa.virtual_ips = tuple(lease.address for lease in self.leases)
        attrs = [_address(lease.address) for lease in self.leases]
        for attributes in dict.fromkeys(a for _, a in given):
            attrs.extend(mode_config_attributes(attributes, unity=self.sa.peer_unity))
            if self.sa.peer_unity:
                self.sa.unity_split += tuple(
                    n for n in attributes.split_include if isinstance(n, ipaddress.IPv4Network)
                )
        return tuple(attrs)

    def release(self) -> None:
        """The leases go offline (kept for the identity to come back)."""
        if self.pool is not None:
            for lease in self.leases:
                self.pool.release(self.lease_identity, lease)
        self.leases = ()
        if not self.sa.initiator:
            self.sa.virtual_ips = ()

    # -- what the peer opens ---------------------------------------------------------------

    def answer(self, attr: AttributePayload, now: float) -> AttributePayload | None:
        """The reply or ACK to a Transaction the peer opened; None drops it."""
        if not self.sa.initiator:
            return self._gateway_answer(attr)
        return self._client_answer(attr, now)

    def _gateway_answer(self, attr: AttributePayload) -> AttributePayload | None:
        if attr.cfg_type != CfgType.CFG_REQUEST:
            log.info("%s: %s from a client taken for nothing", self.sa.name(), attr.cfg_type.name)
            return None
        if not self.xauth_done:
            log.info("%s: Mode Config request before XAuth is done, dropped", self.sa.name())
            return None
        requested = read_addresses(attr, requested=True)
        attrs = self._lease(tuple(requested)) if requested else ()
        return AttributePayload(CfgType.CFG_REPLY, attrs or (), attr.identifier)

    def _client_answer(self, attr: AttributePayload, now: float) -> AttributePayload | None:
        if attr.cfg_type == CfgType.CFG_REQUEST and self.client is not None:
            refused = xauth_type_refused(attr)
            if refused is not None:
                # Nothing else to offer: the ISAKMP SA goes, with the reason.
                self._failed(f"XAuth refused: {refused}", now)
                return None
            # <-- CFG_REQUEST(X_USER X_PWD): our user name and password
            user = self.client.xauth_id or ""
            self.user = user
            password = self.client.passwords.get(user, "")
            reply: list[ModeCfgAttribute] = []
            for asked in attr.attributes:
                if asked.attr_type == A.XAUTH_USER_NAME:
                    reply.append(ModeCfgAttribute(A.XAUTH_USER_NAME, user.encode()))
                elif asked.attr_type == A.XAUTH_USER_PASSWORD:
                    reply.append(ModeCfgAttribute(A.XAUTH_USER_PASSWORD, password.encode()))
            return AttributePayload(CfgType.CFG_REPLY, tuple(reply), attr.identifier)
        if attr.cfg_type == CfgType.CFG_SET and attr.get(A.XAUTH_STATUS) is not None:
            if self.client is None or self.xauth_done:
                return None  # no XAuth of ours under way
            # <-- CFG_SET(X_STATUS): the gateway's verdict, acknowledged either way
            status = attr.get(A.XAUTH_STATUS)
            assert status is not None
            ack = AttributePayload(CfgType.CFG_ACK, (ModeCfgAttribute(A.XAUTH_STATUS),),
                                   attr.identifier)  # fmt: skip
            if status.number == XauthStatus.OK:
                log.info("%s: XAuth authentication of %r (myself) successful", self.sa.name(),
                         self.user)  # fmt: skip
                self.xauth_done = True
                self._after_answer = self._established  # once the ACK is on its way
            else:
                log.warning("%s: XAuth authentication of %r (myself) failed", self.sa.name(),
                            self.user)  # fmt: skip
            return ack
        if attr.cfg_type == CfgType.CFG_SET:
            # <-- CFG_SET(ADDR ...): pushed addresses
            self._take_addresses(attr, now)
            acked = tuple(ModeCfgAttribute(a.attr_type) for a in attr.attributes
                          if a.attr_type in _ADDRESS_ATTR.values())  # fmt: skip
            return AttributePayload(CfgType.CFG_ACK, acked, attr.identifier)
        return None

    def answered(self) -> Callable[[float], None] | None:
        """The answer to the peer's Transaction is sent: what waited for it, for the
        caller to run once that answer has had time to land (nothing acknowledges it)."""
        then, self._after_answer = self._after_answer, None
        return then

    # -- the client ------------------------------------------------------------------------

    def _established(self, now: float) -> None:
        """XAuth succeeded, and the gateway has our ACK: up, and Mode Config."""
        self._authenticated(now)
        self.after_auth(now)

    def _pulled(self, reply: AttributePayload, now: float) -> None:
        """<-- CFG_REPLY(ADDR ...)"""
        self._take_addresses(reply, now)

    def _take_addresses(self, attr: AttributePayload, now: float) -> None:
        addresses = read_addresses(attr, requested=False)
        if not addresses:
            log.warning("%s: no virtual IP in the gateway's %s", self.sa.name(),
                        attr.cfg_type.name)  # fmt: skip
        for address in addresses:
            log.info("%s: installing virtual IP %s", self.sa.name(), address)
        self.sa.virtual_ips = tuple(addresses)
        self.sa.received = received_config(attr, self.sa.virtual_ips)
        for server in self.sa.received.dns:
            log.info("%s: DNS server %s received", self.sa.name(), server)
        self._configured(now)


def read_addresses(attr: AttributePayload, *, requested: bool) -> list[IPAddress]:
    """The addresses of a CFG_REQUEST (`requested`: an empty value asks for any of its
    family) or of a CFG_REPLY or CFG_SET, one per family, in order. An IPv6 address may
    carry a prefix octet (as older strongSwan sent it)."""
    out: dict[int, IPAddress] = {}
    for a in attr.attributes:
        family = next((f for f, t in _ADDRESS_ATTR.items() if t == a.attr_type), None)
        if family is None or family in out:
            continue
        size = 4 if family == 4 else 16
        value = a.data
        if len(value) in (size, size + 1):
            out[family] = ipaddress.ip_address(value[:size])
        elif requested:
            out[family] = _ANY[family]
    return list(out.values())


def _address(address: IPAddress) -> ModeCfgAttribute:
    return ModeCfgAttribute(_ADDRESS_ATTR[address.version], address.packed)


def mode_config_attributes(attributes: PoolAttributes, *, unity: bool) -> list[ModeCfgAttribute]:
    """A pool's attributes as a CFG_REPLY or CFG_SET carries them: DNS, NBNS, the split
    networks (as Cisco Unity's SPLIT_INCLUDE to a Unity peer, which the macOS client
    reads, and as INTERNAL_IP4_SUBNET otherwise), the DNS domain (UNITY_DEF_DOMAIN to a
    Unity peer, attribute 25 otherwise) and the numbered attributes."""
    out: list[ModeCfgAttribute] = []
    for dns in attributes.dns:
        kind = A.INTERNAL_IP4_DNS if dns.version == 4 else A.INTERNAL_IP6_DNS
        out.append(ModeCfgAttribute(kind, dns.packed))
    out.extend(ModeCfgAttribute(A.INTERNAL_IP4_NBNS, n.packed) for n in attributes.nbns)
    v4 = [n for n in attributes.split_include if isinstance(n, ipaddress.IPv4Network)]
    if unity and v4:
        out.append(ModeCfgAttribute(A.UNITY_SPLIT_INCLUDE, unity_split_include(v4)))
    else:
        for net in attributes.split_include:
            if isinstance(net, ipaddress.IPv4Network):
                value = net.network_address.packed + net.netmask.packed
                out.append(ModeCfgAttribute(A.INTERNAL_IP4_SUBNET, value))
            else:
                value = net.network_address.packed + bytes([net.prefixlen])
                out.append(ModeCfgAttribute(A.INTERNAL_IP6_SUBNET, value))
    for domain in attributes.dns_domain:
        kind = A.UNITY_DEF_DOMAIN if unity else A.INTERNAL_DNS_DOMAIN
        out.append(ModeCfgAttribute(kind, domain.encode()))
    out.extend(ModeCfgAttribute(A(t), v) for t, v in attributes.raw)
    return out
