"""IKEv1 remote access in memory, both roles: a road warrior (XAuth client, Mode Config)
and a gateway (XAuth server, a pool), each step annotated with its exchange."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import logging

import pytest

from larval.ike.auth_config import AuthInfo, XauthAuth
from larval.ike.config import IkeConfig, IPAddress
from larval.ike.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp
from larval.ikev1 import ExchangeType, decode_header
from larval.ikev1.constants import IkeAuthMethod
from larval.ikev1.errors import IkeV1ConfigError
from larval.ikev1.isakmp import DELIVERY_WAIT_MAX
from larval.ikev1.modecfg import (
    VID_CISCO_UNITY,
    AttributePayload,
    CfgType,
    ModeCfgAttr,
    ModeCfgAttribute,
)
from larval.ikev1.session import IkeV1Session, State
from larval.pools import Lease, Pool, PoolAttributes, Pools
from larval.trust import TrustStore

from .certs import end, root, signing_config
from .test_session import NET_B, B, child, config, events

A = ipaddress.ip_address("198.51.100.7")  # the road warrior
ANY = ipaddress.ip_network("0.0.0.0/0")
POOL = ipaddress.ip_network("10.3.0.0/24")
VIP = ipaddress.ip_address("10.3.0.1")
PASSWORD = "xauth-secret-pw"

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


class ConnectionPools:
    """The key manager's `AddressPool` over one `Pools`, as `_ConnectionPools` is."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools
        self.names = ["rw"]

    def acquire(
        self, identity: str, requested: IPAddress, peer: tuple[str, int]
    ) -> tuple[Lease, PoolAttributes] | None:
        lease = self.pools.acquire(self.names, identity, requested, peer)
        return (lease, self.pools[lease.pool].attributes) if lease is not None else None

    def release(self, identity: str, lease: Lease) -> None:
        self.pools.release(identity, lease)


def pools() -> Pools:
    attributes = PoolAttributes(
        dns=(ipaddress.ip_address("10.3.0.53"),),
        split_include=(NET_B,),
        dns_domain=("home.example",),
    )
    return Pools([Pool("rw", str(POOL), attributes)])


def gateway_config(*, xauth_id: str | None = "%any", push: bool = False) -> IkeConfig:
    base = config(B, A)
    return dataclasses.replace(
        base,
        remote_id=None,
        remote_xauth=XauthAuth(xauth_id, {"carol": PASSWORD, "dave": "other-password"}),
        mode_config_push=push,
    )


def client_config(*, password: str = PASSWORD, vips: bool = True, push: bool = False) -> IkeConfig:
    return dataclasses.replace(
        config(A, B),
        local_xauth=XauthAuth("carol", {"carol": password}),
        vips=(ipaddress.ip_address("0.0.0.0"),) if vips else (),
        mode_config_push=push,
    )


class RoadWarrior:
    """A client at A and a gateway at B with a pool, joined by a wire the test carries."""

    def __init__(self, client: IkeConfig, gateway: IkeConfig) -> None:
        spis = itertools.count(0x2000)
        self.pools = pools()
        self.policy_asked: list[object] = []

        def gateway_policy(tsi: object, tsr: object) -> object:
            self.policy_asked.append((tsi, tsr))
            return child(NET_B, POOL)

        self.c = IkeV1Session(client, initiator=True, allocate_spi=lambda: next(spis))
        self.g = IkeV1Session(
            gateway,
            initiator=False,
            allocate_spi=lambda: next(spis),
            child_policy=gateway_policy,  # type: ignore[arg-type]
            address_pool=ConnectionPools(self.pools),
        )
        self.now = 0.0
        self.sent: list[tuple[str, bytes]] = []

    def step(self, sender: IkeV1Session) -> int:
        other = self.g if sender is self.c else self.c
        source = A if sender is self.c else B
        out = sender.datagrams_to_send(self.now)
        for data, _ in out:
            self.sent.append(("c->g" if sender is self.c else "g->c", data))
            other.receive_datagram(data, (str(source), sender.local_port), self.now)
        return len(out)

    def flush(self) -> None:
        """Carry messages until both ends are quiet, and let what waits a moment (the
        first message after the client's XAuth ACK) follow."""
        while True:
            while self.step(self.c) + self.step(self.g):
                pass
            if not self.settle():
                return

    def settle(self) -> bool:
        """Move the clock to a timer due within `DELIVERY_WAIT_MAX` and run it; False if
        none is (retransmissions and lifetimes are seconds away)."""
        due = [t for t in (self.c.get_timer(), self.g.get_timer()) if t is not None]
        if not due or min(due) > self.now + DELIVERY_WAIT_MAX:
            return False
        self.now = max(self.now, min(due))
        self.c.handle_timer(self.now)
        self.g.handle_timer(self.now)
        return True

    def exchanges(self) -> list[tuple[str, ExchangeType]]:
        return [(who, decode_header(data).exchange_type) for who, data in self.sent]


def lease_status(rw: RoadWarrior) -> tuple[tuple[tuple[str, IPAddress], ...], ...]:
    status = rw.pools.status()[0]
    return status.online, status.offline


def test_xauth_and_mode_config_pull_give_the_client_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="larval")
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    for _ in range(2):  # MM1 -->  <-- MM2  MM3 -->  <-- MM4
        assert rw.step(rw.c) == 1 and rw.step(rw.g) == 1
    assert rw.step(rw.c) == 1  # MM5 -->
    # Phase 1 is done; the gateway opens XAuth at once and the SA is not up yet.
    assert rw.g.state is State.XAUTH
    assert [type(e) for e in events(rw.g)] == []
    assert rw.step(rw.g) == 2  # <-- MM6, <-- TRANSACTION *{ HASH, CFG_REQUEST(X_USER X_PWD) }
    assert rw.c.state is State.XAUTH
    assert rw.step(rw.c) == 1  # TRANSACTION *{ HASH, CFG_REPLY(X_USER X_PWD) } -->
    assert rw.step(rw.g) == 1  # <-- TRANSACTION *{ HASH, CFG_SET(X_STATUS) }
    assert rw.step(rw.c) == 1  # CFG_ACK(X_STATUS) -->
    assert rw.g.state is State.ESTABLISHED and rw.c.state is State.XAUTH
    # Nothing answers the ACK: the client lets it land before it goes on.
    assert rw.step(rw.c) == 0
    assert rw.settle()
    assert rw.step(rw.c) == 1  # CFG_REQUEST(ADDR DNS) -->
    assert rw.c.state is State.ESTABLISHED
    assert rw.step(rw.g) == 1  # <-- TRANSACTION *{ HASH, CFG_REPLY(ADDR DNS ...) }
    assert rw.c.virtual_ips == (VIP,) and rw.g.virtual_ips == (VIP,)
    rw.flush()  # QM1 -->  <-- QM2  QM3 -->
    ev_c, ev_g = list(events(rw.c)), list(events(rw.g))
    assert [type(e) for e in ev_c] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_g] == [IkeSaUp, ChildSaUp]
    up_c, up_g = ev_c[1], ev_g[1]
    assert isinstance(up_c, ChildSaUp) and isinstance(up_g, ChildSaUp)
    # Quick Mode's IDci is the virtual address (as IKEv2 narrows TSi).
    assert up_c.local_ts == (ipaddress.ip_network(VIP),) and up_c.remote_ts == (NET_B,)
    assert up_g.remote_ts == (ipaddress.ip_network(VIP),)
    assert rw.g.auth_remote == AuthInfo("xauth", identity="carol")
    assert lease_status(rw) == (((("carol", VIP),)), ())
    tx = ExchangeType.TRANSACTION
    assert [e for e in rw.exchanges() if e[1] is tx] == [
        ("g->c", tx), ("c->g", tx), ("g->c", tx), ("c->g", tx), ("c->g", tx), ("g->c", tx)
    ]  # fmt: skip
    assert "XAuth authentication of 'carol' successful" in caplog.text
    assert "CPRQ(X_USER X_PWD)" in caplog.text
    assert PASSWORD not in caplog.text
    # The ISAKMP SA goes: the lease goes offline, kept for carol.
    rw.c.delete(rw.now)
    rw.flush()
    assert rw.g.state is State.CLOSED
    assert lease_status(rw) == ((), (("carol", VIP),))


def test_the_phase1_method_is_xauth_init_psk() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(None, rw.now)
    rw.flush()
    assert rw.g.choice is not None and rw.g.choice.auth_method == IkeAuthMethod.XAUTH_INIT_PSK
    # A gateway of plain PSK does not take an XAuth client's offer, nor the reverse.
    plain = RoadWarrior(client_config(), dataclasses.replace(gateway_config(), remote_xauth=None))
    plain.c.initiate(None, plain.now)
    plain.flush()
    assert plain.c.state is State.CLOSED


def test_a_wrong_password_is_refused_and_the_isakmp_sa_deleted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rw = RoadWarrior(client_config(password="not-the-password"), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.state is State.CLOSED and rw.c.state is State.CLOSED
    assert not any(isinstance(e, IkeSaUp) for e in events(rw.g))
    ev_c = list(events(rw.c))
    assert not any(isinstance(e, (IkeSaUp, ChildSaUp)) for e in ev_c)
    assert any(isinstance(e, ChildSaFailed) for e in ev_c)
    assert any(isinstance(e, IkeSaDown) for e in ev_c)
    assert lease_status(rw) == ((), ())  # nothing leased
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("XAuth authentication of 'carol' failed: wrong password" in w for w in warnings)
    assert "not-the-password" not in caplog.text and PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("xauth_id", "refused"),
    [("carol", False), ("dave", True), ("%any", False), (None, True)],
)
def test_the_gateway_takes_the_configured_user_only(xauth_id: str | None, refused: bool) -> None:
    """None: the user must be the peer's IKE identity (here its address)."""
    rw = RoadWarrior(client_config(), gateway_config(xauth_id=xauth_id))
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert (rw.g.state is State.CLOSED) is refused
    assert (rw.g.virtual_ips == ()) is refused


def test_mode_config_push_sends_the_address_in_cfg_set() -> None:
    rw = RoadWarrior(client_config(push=True), gateway_config(push=True))
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.virtual_ips == (VIP,) and rw.g.virtual_ips == (VIP,)
    assert [type(e) for e in events(rw.c)] == [IkeSaUp, ChildSaUp]
    tx = [d for who, d in rw.sent if decode_header(d).exchange_type is ExchangeType.TRANSACTION]
    assert len(tx) == 6  # XAuth's four, then CFG_SET --> and <-- CFG_ACK, nothing pulled
    assert lease_status(rw)[0] == (("carol", VIP),)


def test_a_quick_mode_for_another_address_than_the_leased_one_is_refused() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    list(events(rw.c))
    rw.c.virtual_ips = (ipaddress.ip_address("10.3.0.99"),)  # another client's address
    rw.c.create_child(child(ANY, NET_B), rw.now)
    rw.flush()
    failed = [e for e in events(rw.c) if isinstance(e, ChildSaFailed)]
    assert failed and "INVALID_ID_INFORMATION" in failed[0].reason


def test_without_xauth_a_client_pulls_an_address_keyed_by_its_ike_identity() -> None:
    gateway = dataclasses.replace(gateway_config(), remote_xauth=None)
    client = dataclasses.replace(client_config(), local_xauth=None)
    rw = RoadWarrior(client, gateway)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.virtual_ips == (VIP,)
    assert lease_status(rw)[0] == ((str(A), VIP),)


def test_a_unity_client_gets_split_include_and_default_domain_as_unity_attributes() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.g.peer_unity = True  # as if MM1 carried the Cisco Unity vendor ID
    replies: list[AttributePayload] = []
    answer = rw.c._remote_access.answer

    def spy(attr: AttributePayload, now: float) -> AttributePayload | None:
        replies.append(attr)
        return answer(attr, now)

    rw.c._remote_access.answer = spy  # type: ignore[method-assign]
    original = rw.c._remote_access._pulled

    def pulled(reply: AttributePayload, now: float) -> None:
        replies.append(reply)
        original(reply, now)

    rw.c._remote_access._pulled = pulled  # type: ignore[method-assign]
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    reply = replies[-1]
    assert reply.cfg_type == CfgType.CFG_REPLY
    split = reply.get(ModeCfgAttr.UNITY_SPLIT_INCLUDE)
    assert split is not None and split.data == bytes.fromhex("cb007100ffffff00") + bytes(6)
    domain = reply.get(ModeCfgAttr.UNITY_DEF_DOMAIN)
    assert domain is not None and domain.data == b"home.example"
    assert reply.get(ModeCfgAttr.INTERNAL_IP4_DNS) == ModeCfgAttribute(
        ModeCfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53])
    )


def test_the_gateway_answers_the_unity_vendor_id() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    assert rw.g.vids() and VID_CISCO_UNITY not in [v.data for v in rw.g.vids()]
    rw.g.peer_unity = True
    assert VID_CISCO_UNITY in [v.data for v in rw.g.vids()]


def test_a_mode_config_request_before_xauth_is_done_is_dropped() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(None, rw.now)
    for _ in range(3):  # MM1 .. MM5
        rw.step(rw.c) and rw.step(rw.g)
    assert rw.g.state is State.XAUTH
    got = rw.g._remote_access.answer(
        AttributePayload(
            CfgType.CFG_REQUEST, (ModeCfgAttribute(ModeCfgAttr.INTERNAL_IP4_ADDRESS),)
        ),
        rw.now,
    )
    assert got is None and rw.g.virtual_ips == ()


def test_a_garbled_transaction_is_dropped_and_xauth_goes_on() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    for _ in range(2):  # MM1 .. MM4
        rw.step(rw.c) and rw.step(rw.g)
    rw.step(rw.c)  # MM5 -->
    out = rw.g.datagrams_to_send(rw.now)  # <-- MM6, <-- CFG_REQUEST(X_USER X_PWD)
    rw.c.receive_datagram(out[0][0], (str(B), 500), rw.now)
    data = out[1][0]
    garbled = data[:-5] + bytes(b ^ 0x55 for b in data[-5:])
    rw.c.receive_datagram(garbled, (str(B), 500), rw.now)
    assert rw.c.datagrams_to_send(rw.now) == []  # nothing answers it
    rw.c.receive_datagram(data, (str(B), 500), rw.now)
    rw.flush()
    assert rw.c.virtual_ips == (VIP,)


def test_an_unanswered_xauth_request_closes_the_isakmp_sa() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(None, rw.now)
    for _ in range(2):  # MM1 .. MM4
        rw.step(rw.c) and rw.step(rw.g)
    rw.step(rw.c)  # MM5 -->
    rw.g.datagrams_to_send(rw.now)  # MM6 and the CFG_REQUEST are lost, and every resend
    for _ in range(200):
        timer = rw.g.get_timer()
        if timer is None or rw.g.state is State.CLOSED:
            break
        rw.now = timer
        rw.g.handle_timer(rw.now)
        rw.g.datagrams_to_send(rw.now)
    assert rw.g.state is State.CLOSED
    assert lease_status(rw) == ((), ())


def test_aggressive_mode_with_a_group_psk_then_xauth_and_mode_config() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.aggressive = True
    rw.c.initiate(child(ANY, NET_B), rw.now)
    assert rw.step(rw.c) == 1  # AM1 { SA, KE, Ni, IDii, VID } -->
    assert rw.step(rw.g) == 1  # <-- AM2 { SA, KE, Nr, IDir, HASH_R, NAT-D, VID }
    assert rw.step(rw.c) == 1  # AM3 *{ HASH_I, NAT-D, N } -->
    assert rw.g.state is State.XAUTH  # <-- CFG_REQUEST(X_USER X_PWD) waits to be carried
    rw.flush()
    assert rw.c.virtual_ips == (VIP,) and rw.g.virtual_ips == (VIP,)
    assert [type(e) for e in events(rw.g)] == [IkeSaUp, ChildSaUp]
    assert [e for e in rw.exchanges() if e[1] is ExchangeType.AGGRESSIVE]


def _hybrid_configs(kind: str = "rsa") -> tuple[IkeConfig, IkeConfig]:
    client_end = end(str(A), "carol.example.org", kind, number=3)
    gateway_end = end(str(B), "vpn.example.org", kind, number=4)
    trust = TrustStore([root().cert])
    gateway = dataclasses.replace(
        signing_config(gateway_end, client_end, trust),
        remote_auth=None, remote_id=None,
        remote_xauth=XauthAuth("%any", {"carol": PASSWORD}),
    )  # fmt: skip
    client = dataclasses.replace(
        signing_config(client_end, gateway_end, trust),
        local_auth=None, local_id=(client_end.id[0], client_end.id[1]),
        local_xauth=XauthAuth("carol", {"carol": PASSWORD}),
        vips=(ipaddress.ip_address("0.0.0.0"),),
    )  # fmt: skip
    return client, gateway


def test_hybrid_the_gateway_signs_the_client_proves_its_keys_then_xauth() -> None:
    client, gateway = _hybrid_configs()
    rw = RoadWarrior(client, gateway)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.choice is not None and rw.g.choice.auth_method == IkeAuthMethod.HYBRID_INIT_RSA
    assert rw.c.virtual_ips == (VIP,)
    assert [type(e) for e in events(rw.c)] == [IkeSaUp, ChildSaUp]
    assert rw.c.auth_remote is not None and rw.c.auth_remote.method == "pubkey"
    assert "vpn.example.org" in rw.c.auth_remote.subject
    assert rw.g.auth_remote == AuthInfo("xauth", identity="carol")


def test_hybrid_a_client_that_does_not_trust_the_gateway_refuses_it() -> None:
    client, gateway = _hybrid_configs()
    assert client.remote_auth is not None
    stranger = TrustStore([root("another root").cert])
    client = dataclasses.replace(
        client, remote_auth=dataclasses.replace(client.remote_auth, trust=stranger)
    )
    rw = RoadWarrior(client, gateway)
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.c.state is State.CLOSED and rw.g.state is State.CLOSED
    assert lease_status(rw) == ((), ())


def test_hybrid_is_rsa_only() -> None:
    _, gateway = _hybrid_configs("p256")
    with pytest.raises(IkeV1ConfigError, match="hybrid authentication is RSA's"):
        IkeV1Session(gateway, initiator=False, allocate_spi=lambda: 1)


@pytest.mark.parametrize("unity", [True, False])
def test_a_unity_clients_wildcard_quick_mode_id_is_narrowed_to_the_split_network(
    unity: bool,
) -> None:
    """QM1's IDcr 0.0.0.0/0 from a Unity client that was told NET_B: the gateway's SAs are
    for NET_B, the IDs echoed; without Unity, 0.0.0.0/0 is not in the policy."""
    rw = RoadWarrior(client_config(), gateway_config())
    rw.g.peer_unity = unity
    rw.c.initiate(child(ANY, ANY), rw.now)
    rw.flush()
    ups = [e for e in events(rw.g) if isinstance(e, ChildSaUp)]
    if unity:
        (up,) = ups
        assert up.local_ts == (NET_B,) and up.remote_ts == (ipaddress.ip_network(VIP),)
        assert rw.g.unity_split == (NET_B,)
    else:
        assert not ups


def test_a_client_asking_for_both_families_gets_one_address_of_each() -> None:
    rw = RoadWarrior(
        dataclasses.replace(client_config(), vips=(ipaddress.ip_address("0.0.0.0"),
                                                   ipaddress.ip_address("::"))),
        gateway_config(),
    )  # fmt: skip
    rw.pools = Pools([Pool("rw", str(POOL)), Pool("rw6", "2001:db8:3::/120")])
    pool = ConnectionPools(rw.pools)
    pool.names = ["rw", "rw6"]
    rw.g._remote_access.pool = pool
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    v6 = ipaddress.ip_address("2001:db8:3::1")
    assert rw.c.virtual_ips == (VIP, v6) and rw.g.virtual_ips == (VIP, v6)
    ups = [e for e in events(rw.c) if isinstance(e, ChildSaUp)]
    assert ups and ups[0].local_ts == (ipaddress.ip_network(VIP),)  # the IPv4 child's


def test_an_xauth_gateway_leaves_reauthentication_to_its_road_warrior() -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    assert rw.g.rekey_at is None and rw.g.expires_at is not None
    assert rw.c.rekey_at is not None


@pytest.mark.parametrize(
    "attr",
    [
        AttributePayload(CfgType.CFG_ACK),  # unsolicited
        AttributePayload(CfgType.CFG_SET, (ModeCfgAttribute(ModeCfgAttr.XAUTH_STATUS, 1),)),
        AttributePayload(CfgType(77), (ModeCfgAttribute(ModeCfgAttr(999), b"x"),)),
        AttributePayload(
            CfgType.CFG_REQUEST, (ModeCfgAttribute(ModeCfgAttr.INTERNAL_IP4_ADDRESS, b"\x01"),)
        ),  # an address of the wrong size asks for any: the same lease again
    ],
    ids=["ack", "status", "unknown", "short-address"],
)
def test_odd_transactions_after_setup_change_nothing(attr: AttributePayload) -> None:
    rw = RoadWarrior(client_config(), gateway_config())
    rw.c.initiate(child(ANY, NET_B), rw.now)
    rw.flush()
    for sender in (rw.c, rw.g):
        sender._open_transaction(attr, lambda reply, now: None)
        rw.flush()
    assert rw.c.state is State.ESTABLISHED and rw.g.state is State.ESTABLISHED
    assert rw.g.virtual_ips == (VIP,) and rw.c.virtual_ips == (VIP,)
    assert lease_status(rw)[0] == (("carol", VIP),)
