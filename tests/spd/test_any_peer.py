"""Tunnel policies to any peer (``remote_addrs = ["%any"]``): the policy file, the
policy as shown back, and the ACQUIREs such a policy can and cannot make."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from larval.pfkey import (
    Diagnostic,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbXEprop,
    SaType,
)
from larval.pfkey.message import decode
from larval.sadb import SadbError
from larval.spd import (
    Direction,
    Flow,
    Mode,
    Policy,
    PolicyFileError,
    Spd,
    SpdError,
    Tunnel,
    extended_acquire,
    inverse_acquire,
    load_policy_text,
    policy_to_dict,
    regular_acquire,
)

ip = ipaddress.ip_address


def gateway(remote: str = '"%any"', local: str = '"192.0.2.2"', extra: str = "") -> str:
    return f"""
[policies.rw]
local_ts = ["203.0.113.0/24"]
remote_ts = ["10.3.0.0/24"]
mode = "tunnel"
local_addrs = [{local}]
remote_addrs = [{remote}]
esp_proposals = ["aes128gcm16"]
{extra}
"""


def out_policy(policies: list[Policy]) -> Policy:
    return next(p for p in policies if p.direction is Direction.OUT)


@pytest.mark.parametrize(
    ("word", "local", "remote"),
    [
        ("%any", "192.0.2.2", "0.0.0.0"),
        ("%any4", "192.0.2.2", "0.0.0.0"),
        ("0.0.0.0", "192.0.2.2", "0.0.0.0"),
        ("%any", "2001:db8::2", "::"),
        ("%any6", "2001:db8::2", "::"),
        ("::", "2001:db8::2", "::"),
    ],
)
def test_any_peer_words_as_strongswan_reads_them(word: str, local: str, remote: str) -> None:
    text = gateway(f'"{word}"', f'"{local}"').replace("10.3.0.0/24", "dynamic")
    text = text.replace('"203.0.113.0/24"', '"dynamic"')
    policy = out_policy(load_policy_text(text, "gw.toml"))
    assert policy.tunnel == Tunnel(ip(local), ip(remote))
    assert policy.tunnel.any_remote and policy.mode is Mode.TUNNEL
    # A dynamic remote_ts of any peer is every address of the family: each SA's inner
    # selectors say which one is that peer's.
    assert policy.selector.remote == ipaddress.ip_network((remote, 0))
    assert policy_to_dict(policy)["remote_addrs"] == ["%any"]


def test_fixed_tunnels_are_as_before() -> None:
    policy = out_policy(load_policy_text(gateway('"192.0.2.1"'), "gw.toml"))
    assert policy.tunnel == Tunnel.of("192.0.2.2", "192.0.2.1")
    assert not policy.tunnel.any_remote
    assert policy_to_dict(policy)["remote_addrs"] == ["192.0.2.1"]
    assert Tunnel.of("192.0.2.2", "%any") == Tunnel.any_peer(ip("192.0.2.2"))


@pytest.mark.parametrize(
    ("remote", "local", "message"),
    [
        (
            '"%any6"',
            '"192.0.2.2"',
            'gw.toml: policies.rw.remote_addrs[0]: "%any6" is any IPv6 peer, and '
            "local_addrs 192.0.2.2 is not IPv6",
        ),
        (
            '"%any4"',
            '"2001:db8::2"',
            'gw.toml: policies.rw.remote_addrs[0]: "%any4" is any IPv4 peer, and '
            "local_addrs 2001:db8::2 is not IPv4",
        ),
        (
            '"%anything"',
            '"192.0.2.2"',
            'gw.toml: policies.rw.remote_addrs[0]: "%anything" is not an IPv4 or IPv6 address',
        ),
        (
            '"%any"',
            '"0.0.0.0"',
            "gw.toml: policies.rw.local_addrs: 0.0.0.0 is no tunnel endpoint: the local end "
            "is an address of this host (only remote_addrs may be %any)",
        ),
    ],
)
def test_bad_any_peer_entries_are_named(remote: str, local: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy_text(gateway(remote, local), "gw.toml")
    assert str(info.value) == message


def test_any_local_end_is_refused_by_tunnel_itself() -> None:
    with pytest.raises(SpdError, match="local end must be an address of this host"):
        Tunnel(ip("0.0.0.0"), ip("192.0.2.1"))
    with pytest.raises(SpdError, match=r"peer %any6 is IPv6, the local end 192\.0\.2\.2 is not"):
        Tunnel.of("192.0.2.2", "%any6")


def test_no_acquire_for_a_tunnel_to_any_peer() -> None:
    policy = out_policy(load_policy_text(gateway(), "gw.toml"))
    flow = Flow.of("203.0.113.5", "10.3.0.7")
    for build in (
        lambda: regular_acquire(policy, flow, 1),
        lambda: extended_acquire(policy, flow, 1, 0),
    ):
        with pytest.raises(SpdError, match="policy rw has peer %any: no address to ACQUIRE"):
            build()


def ask(peer: str, inner_src: str, inner_dst: str) -> PfkeyMessage:
    """X_INVERSE_ACQUIRE as the responder's key manager sends it, through the codec."""
    msg = PfkeyMessage(
        SadbMsgType.X_INVERSE_ACQUIRE, SaType.ESP, seq=9, pid=99,
        extensions=(
            SadbAddress(ExtType.ADDRESS_SRC, ip("192.0.2.2")),
            SadbAddress(ExtType.ADDRESS_DST, ip(peer)),
            SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ip(inner_src), prefixlen=24),
            SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip(inner_dst), prefixlen=32),
        ),
    )  # fmt: skip
    return decode(msg.encode())


def test_inverse_acquire_finds_the_any_peer_policy_and_names_the_peer() -> None:
    spd = Spd()
    spd.add_all(load_policy_text(gateway(), "gw.toml"))
    for peer in ("198.51.100.7", "203.0.113.200"):
        reply = decode(inverse_acquire(spd, ask(peer, "203.0.113.0", "10.3.0.7")).encode())
        assert (reply.msg_type, reply.errno, reply.seq) == (SadbMsgType.X_INVERSE_ACQUIRE, 0, 9)
        dst = reply.find(ExtType.ADDRESS_DST)
        assert isinstance(dst, SadbAddress) and dst.addr == ip(peer)  # the peer, not %any
        idst = reply.find(ExtType.X_ADDRESS_INNER_DST)
        assert isinstance(idst, SadbAddress) and (str(idst.addr), idst.prefixlen) == (
            "10.3.0.0",
            24,
        )
    # Outside the policy's selector, or from another local address: no policy.
    with pytest.raises(SadbError) as info:
        inverse_acquire(spd, ask("198.51.100.7", "203.0.113.0", "10.9.0.7"))
    assert info.value.errno == errno.ENOENT and info.value.diagnostic == Diagnostic.NONE


def test_a_policy_naming_the_peer_comes_before_any_peer() -> None:
    spd = Spd()
    spd.add_all(load_policy_text(gateway(), "gw.toml"))
    fixed = gateway('"198.51.100.7"').replace("policies.rw", "policies.site")
    fixed = fixed.replace('"aes128gcm16"', '"aes256gcm16"')
    spd.add_all(load_policy_text(fixed, "gw.toml"))
    mine = inverse_acquire(spd, ask("198.51.100.7", "203.0.113.0", "10.3.0.7"))
    other = inverse_acquire(spd, ask("198.51.100.8", "203.0.113.0", "10.3.0.7"))
    bits = []
    for reply in (mine, other):
        eprop = reply.find(ExtType.X_EPROP)
        assert isinstance(eprop, SadbXEprop)
        bits.append(eprop.ecombs[0].algdescs[0].maxbits)
    assert bits == [256, 128]  # the fixed policy's aes256gcm16 for its peer only


def test_transport_mode_to_any_peer_has_no_tunnel_and_acquires_for_the_packet() -> None:
    text = """
[policies.any-host]
mode = "transport"
local_addrs = ["192.0.2.2"]
remote_addrs = ["%any"]
remote_ts = ["[tcp/22]"]
"""
    policy = out_policy(load_policy_text(text, "gw.toml"))
    assert policy.tunnel is None and policy.mode is Mode.TRANSPORT
    assert str(policy.selector.remote) == "0.0.0.0/0" and policy.selector.proto == 6
    # The packet names the peer, so an ACQUIRE can.
    acquire = regular_acquire(policy, Flow.of("192.0.2.2", "198.51.100.9", 6, 40000, 22), 5)
    dst = acquire.find(ExtType.ADDRESS_DST)
    assert isinstance(dst, SadbAddress) and str(dst.addr) == "198.51.100.9"
