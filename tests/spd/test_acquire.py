"""Regular, extended and inverse ACQUIRE built from policies, checked after a round trip
through the PF_KEY codec (encode, then decode) field by field."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from larval.pfkey import (
    AlgType,
    AuthAlg,
    Diagnostic,
    EncryptAlg,
    ExtType,
    KmProto,
    PfkeyMessage,
    SadbAddress,
    SadbComb,
    SadbMsgType,
    SadbProp,
    SadbXAlgdesc,
    SadbXEcomb,
    SadbXEprop,
    SadbXKmc,
    SaType,
    decode,
)
from larval.sadb import SadbError
from larval.spd import (
    Action,
    Direction,
    Flow,
    Lifetimes,
    Policy,
    Spd,
    SpdError,
    extended_acquire,
    inverse_acquire,
    load_policy_text,
    regular_acquire,
)
from tests.spd.support import policy

ip = ipaddress.ip_address
TCP, ICMP = 6, 1

S2S = """
[policies.s2s]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24[tcp/443]"]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
esp_proposals = ["aes256gcm16-ecp384", "aes128-sha256"]
rekey_time = "1h"
life_time = "66m"
rekey_bytes = 1000000
life_bytes = 2000000
replay_window = 64

[policies.host]
mode = "transport"
local_ts = ["2001:db8::1/128[udp/500]"]
remote_ts = ["2001:db8::2/128"]
esp_proposals = ["chacha20poly1305"]

[policies.v6tun]
local_ts = ["2001:db8:a::/48"]
remote_ts = ["2001:db8:b::/48"]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
esp_proposals = ["aes128gcm16"]
"""


def roundtrip(msg: PfkeyMessage) -> PfkeyMessage:
    back = decode(msg.encode())
    assert back == msg
    return back


@pytest.fixture
def spd() -> Spd:
    spd = Spd()
    spd.add_all(load_policy_text(S2S, "test.toml"))
    return spd


def out_policy(spd: Spd, name: str) -> Policy:
    return next(p for p in spd.policies() if p.name == name and p.direction is Direction.OUT)


def tunnel_addresses(proto_outer: int = 4) -> tuple[SadbAddress, ...]:
    return (
        # X_ADDRESS_INNER_SRC (= PROXY): the policy's local prefix, not the packet's.
        SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ip("203.0.113.0"), 0, TCP, 24),
        # X_ADDRESS_INNER_DST: remote prefix, its single port and the protocol.
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("198.51.100.0"), 443, TCP, 24),
        # Outer addresses: the tunnel endpoints, IP-in-IP, no ports.
        SadbAddress(ExtType.ADDRESS_SRC, ip("192.0.2.2"), 0, proto_outer),
        SadbAddress(ExtType.ADDRESS_DST, ip("192.0.2.1"), 0, proto_outer),
    )


FLOW = Flow.of("203.0.113.7", "198.51.100.9", TCP, 40000, 443)


def test_regular_acquire_tunnel(spd: Spd) -> None:
    # ACQUIRE <base(ESP), address(P), inner dst, address(S, D), proposal>
    msg = roundtrip(regular_acquire(out_policy(spd, "s2s"), FLOW, 0xFFFFFFF0))
    assert (msg.msg_type, msg.satype, msg.seq, msg.pid) == (
        SadbMsgType.ACQUIRE,
        SaType.ESP,
        0xFFFFFFF0,
        0,
    )
    assert (msg.errno, msg.diagnostic) == (0, 0)
    assert msg.extensions[:4] == tunnel_addresses()
    assert msg.extensions[4] == SadbProp(
        (
            SadbComb(
                auth=0,
                encrypt=EncryptAlg.AES_GCM_16,
                flags=1,  # SADB_SAFLAGS_PFS: the alternative names ecp384
                auth_minbits=0,
                auth_maxbits=0,
                encrypt_minbits=256,  # cipher key, salt excluded
                encrypt_maxbits=256,
                soft_bytes=1_000_000,
                hard_bytes=2_000_000,
                soft_addtime=3600,
                hard_addtime=3960,
            ),
            SadbComb(
                auth=AuthAlg.SHA256HMAC,
                encrypt=EncryptAlg.AES,
                flags=0,
                auth_minbits=256,
                auth_maxbits=256,
                encrypt_minbits=128,
                encrypt_maxbits=128,
                soft_bytes=1_000_000,
                hard_bytes=2_000_000,
                soft_addtime=3600,
                hard_addtime=3960,
            ),
        ),
        replay=64,
    )
    assert len(msg.extensions) == 5


def test_extended_acquire_tunnel(spd: Spd) -> None:
    # ACQUIRE <base(UNSPEC), inner src/dst, address(S, D), X_EPROP, X_KM_COOKIE>
    msg = roundtrip(extended_acquire(out_policy(spd, "s2s"), FLOW, 0xFFFFFFF1, 0x1234))
    assert (msg.msg_type, msg.satype, msg.seq, msg.pid) == (
        SadbMsgType.ACQUIRE,
        SaType.UNSPEC,
        0xFFFFFFF1,
        0,
    )
    assert msg.extensions[:4] == tunnel_addresses()
    life = {
        "soft_bytes": 1_000_000,
        "hard_bytes": 2_000_000,
        "soft_addtime": 3600,
        "hard_addtime": 3960,
    }
    assert msg.extensions[4] == SadbXEprop(
        (
            SadbXEcomb(
                (SadbXAlgdesc(SaType.ESP, AlgType.CRYPT, EncryptAlg.AES_GCM_16, 256, 256),),
                flags=1,
                **life,
            ),
            SadbXEcomb(
                (
                    # sadb_action_to_ecomb: the integrity algdesc comes first.
                    SadbXAlgdesc(SaType.ESP, AlgType.AUTH, AuthAlg.SHA256HMAC, 256, 256),
                    SadbXAlgdesc(SaType.ESP, AlgType.CRYPT, EncryptAlg.AES, 128, 128),
                ),
                flags=0,
                **life,
            ),
        ),
        replay=64,
    )
    assert msg.extensions[5] == SadbXKmc(KmProto.IKE, 0x1234)
    assert len(msg.extensions) == 6


def test_acquire_transport_v6(spd: Spd) -> None:
    pol = out_policy(spd, "host")
    flow = Flow.of("2001:db8::1", "2001:db8::2", 17, 500, 500)
    addresses = (
        # Transport mode: the packet's addresses, the policy's protocol and ports.
        SadbAddress(ExtType.ADDRESS_SRC, ip("2001:db8::1"), 500, 17),
        SadbAddress(ExtType.ADDRESS_DST, ip("2001:db8::2"), 0, 17),
    )
    reg = roundtrip(regular_acquire(pol, flow, 9))
    assert reg.extensions[:2] == addresses
    prop = reg.extensions[2]
    assert isinstance(prop, SadbProp) and prop.replay == 32
    assert prop.combs == (
        SadbComb(
            encrypt=EncryptAlg.CHACHA20_POLY1305,
            encrypt_minbits=256,
            encrypt_maxbits=256,
            soft_addtime=3600,
            hard_addtime=3960,
        ),
    )
    ext = roundtrip(extended_acquire(pol, flow, 9, 0))
    assert ext.extensions[:2] == addresses
    assert ext.extensions[3] == SadbXKmc(KmProto.IKE, 0)


def test_acquire_v6_inner_over_v4_outer(spd: Spd) -> None:
    pol = out_policy(spd, "v6tun")
    msg = roundtrip(extended_acquire(pol, Flow.of("2001:db8:a::1", "2001:db8:b::1"), 1, 1))
    assert msg.extensions[0] == SadbAddress(
        ExtType.X_ADDRESS_INNER_SRC, ip("2001:db8:a::"), 0, 0, 48
    )
    # IPPROTO_IPV6 on the outer addresses for IPv6 inside.
    assert msg.extensions[2] == SadbAddress(ExtType.ADDRESS_SRC, ip("192.0.2.2"), 0, 41)


def test_no_acquire_for_bypass() -> None:
    pol = policy("b", "10.0.0.0/8", "0.0.0.0/0", action=Action.BYPASS)
    with pytest.raises(SpdError, match="policy b is bypass: nothing to acquire"):
        regular_acquire(pol, Flow.of("10.0.0.1", "1.1.1.1"), 1)


def test_lifetimes_reach_the_combs() -> None:
    from dataclasses import replace

    pol = replace(policy("t", "10.0.0.0/8", "0.0.0.0/0"), lifetimes=Lifetimes(60, 0, 0, 10))
    prop = regular_acquire(pol, Flow.of("10.0.0.1", "1.1.1.1"), 1).extensions[2]
    assert isinstance(prop, SadbProp)
    c = prop.combs[0]
    assert (c.soft_addtime, c.hard_addtime, c.soft_bytes, c.hard_bytes) == (60, 0, 0, 10)


# -- inverse ACQUIRE -------------------------------------------------------------------


def request(*exts: SadbAddress, seq: int = 42, pid: int = 4242) -> PfkeyMessage:
    msg = PfkeyMessage(SadbMsgType.X_INVERSE_ACQUIRE, SaType.UNSPEC, seq, pid, extensions=exts)
    return decode(msg.encode())


SRC = SadbAddress(ExtType.ADDRESS_SRC, ip("192.0.2.2"))
DST = SadbAddress(ExtType.ADDRESS_DST, ip("192.0.2.1"))
ISRC = SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ip("203.0.113.0"), 0, TCP, 24)
IDST = SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("198.51.100.0"), 443, TCP, 24)


def test_inverse_acquire_tunnel_found(spd: Spd) -> None:
    # X_INVERSE_ACQUIRE <base, address(S, D), inner src/dst> -->
    #     <base(seq, pid of the request), inner src/dst, address(S, D), X_EPROP, X_KMC>
    reply = roundtrip(inverse_acquire(spd, request(SRC, DST, ISRC, IDST), km_cookie=7))
    assert (reply.msg_type, reply.satype, reply.seq, reply.pid) == (
        SadbMsgType.X_INVERSE_ACQUIRE,
        SaType.UNSPEC,
        42,
        4242,
    )
    assert (reply.errno, reply.diagnostic) == (0, 0)
    same = roundtrip(extended_acquire(out_policy(spd, "s2s"), FLOW, 42, 7))
    assert reply.extensions == same.extensions


def test_inverse_acquire_host_inside_the_prefix(spd: Spd) -> None:
    # The responder may ask with the initiator's narrower (host) selectors.
    isrc = SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ip("203.0.113.7"), 0, TCP, 32)
    idst = SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("198.51.100.9"), 443, TCP, 32)
    reply = inverse_acquire(spd, request(SRC, DST, isrc, idst))
    assert reply.extensions[4] == extended_acquire(out_policy(spd, "s2s"), FLOW, 0, 0).find(
        ExtType.X_EPROP
    )


def test_inverse_acquire_transport(spd: Spd) -> None:
    src = SadbAddress(ExtType.ADDRESS_SRC, ip("2001:db8::1"), 500, 17)
    dst = SadbAddress(ExtType.ADDRESS_DST, ip("2001:db8::2"), 500, 17)
    reply = roundtrip(inverse_acquire(spd, request(src, dst)))
    assert reply.extensions[:2] == (
        SadbAddress(ExtType.ADDRESS_SRC, ip("2001:db8::1"), 500, 17),
        SadbAddress(ExtType.ADDRESS_DST, ip("2001:db8::2"), 0, 17),
    )
    eprop = reply.extensions[2]
    assert isinstance(eprop, SadbXEprop)
    assert eprop.ecombs[0].algdescs == (
        SadbXAlgdesc(SaType.ESP, AlgType.CRYPT, EncryptAlg.CHACHA20_POLY1305, 256, 256),
    )


def refused(spd: Spd, msg: PfkeyMessage, err: int, diag: int, text: str) -> None:
    with pytest.raises(SadbError) as info:
        inverse_acquire(spd, msg)
    assert (info.value.errno, info.value.diagnostic) == (err, diag)
    assert str(info.value) == text


def test_inverse_acquire_enoent(spd: Spd) -> None:
    other = SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("198.51.100.0"), 80, TCP, 24)
    refused(
        spd,
        request(SRC, DST, ISRC, other),
        errno.ENOENT,
        Diagnostic.NONE,
        "no policy for 203.0.113.0/24[6] === 198.51.100.0/24[6/80] via 192.0.2.2 - 192.0.2.1",
    )
    # Right inner addresses, wrong tunnel.
    elsewhere = SadbAddress(ExtType.ADDRESS_DST, ip("192.0.2.99"))
    refused(
        spd,
        request(SRC, elsewhere, ISRC, IDST),
        errno.ENOENT,
        Diagnostic.NONE,
        "no policy for 203.0.113.0/24[6] === 198.51.100.0/24[6/443] via 192.0.2.2 - 192.0.2.99",
    )
    refused(
        spd,
        request(SadbAddress(ExtType.ADDRESS_SRC, ip("10.0.0.1")), DST),
        errno.ENOENT,
        Diagnostic.NONE,
        "no policy for 10.0.0.1 === 192.0.2.1",
    )


def test_inverse_acquire_tunnel_policy_needs_inner_addresses(spd: Spd) -> None:
    # Addresses inside the tunnel policy's selector, but as a transport-mode request.
    src = SadbAddress(ExtType.ADDRESS_SRC, ip("203.0.113.1"), 0, TCP)
    dst = SadbAddress(ExtType.ADDRESS_DST, ip("198.51.100.1"), 443, TCP)
    refused(
        spd,
        request(src, dst),
        errno.ENOENT,
        Diagnostic.NONE,
        "no policy for 203.0.113.1[6] === 198.51.100.1[6/443]: s2s is tunnel mode and the "
        "request has no inner addresses",
    )


def test_inverse_acquire_bypass_is_enoent() -> None:
    spd = Spd()
    spd.add(policy("clear", "10.0.0.0/8", "0.0.0.0/0", action=Action.BYPASS))
    refused(
        spd,
        request(
            SadbAddress(ExtType.ADDRESS_SRC, ip("10.0.0.1")),
            SadbAddress(ExtType.ADDRESS_DST, ip("1.1.1.1")),
        ),
        errno.ENOENT,
        Diagnostic.NONE,
        "no policy protects 10.0.0.1 === 1.1.1.1: clear is bypass",
    )


def test_inverse_acquire_icmp_matches_any_type() -> None:
    spd = Spd()
    spd.add(policy("ping", "10.0.0.0/8", "0.0.0.0/0", proto=ICMP, icmp_type=8))
    reply = inverse_acquire(
        spd,
        request(
            SadbAddress(ExtType.ADDRESS_SRC, ip("10.0.0.1"), 0, ICMP),
            SadbAddress(ExtType.ADDRESS_DST, ip("1.1.1.1"), 0, ICMP),
        ),
    )
    assert reply.msg_type == SadbMsgType.X_INVERSE_ACQUIRE


@pytest.mark.parametrize(
    ("exts", "err", "diag", "text"),
    [
        ((DST,), errno.EINVAL, Diagnostic.MISSING_SRC, "inverse ACQUIRE without ADDRESS_SRC"),
        ((SRC,), errno.EINVAL, Diagnostic.MISSING_DST, "inverse ACQUIRE without ADDRESS_DST"),
        (
            (SRC, DST, ISRC),
            errno.EINVAL,
            Diagnostic.MISSING_INNER_DST,
            "inverse ACQUIRE: inner source only",
        ),
        (
            (SRC, DST, IDST),
            errno.EINVAL,
            Diagnostic.MISSING_INNER_SRC,
            "inverse ACQUIRE: inner destination only",
        ),
        (
            (SRC, SadbAddress(ExtType.ADDRESS_DST, ip("::1"))),
            errno.EINVAL,
            Diagnostic.AF_MISMATCH,
            "inverse ACQUIRE: SRC and DST families differ",
        ),
        (
            (SRC, DST, ISRC, SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("::1"))),
            errno.EINVAL,
            Diagnostic.INNER_AF_MISMATCH,
            "inverse ACQUIRE: inner source and destination families differ",
        ),
        (
            (SRC, DST, SadbAddress(ExtType.X_ADDRESS_INNER_SRC, ip("10.0.0.0"), 0, 0, 33), IDST),
            errno.EINVAL,
            Diagnostic.PREFIX_INNER_SRC,
            "inner source prefix /33",
        ),
        (
            (SRC, DST, ISRC, SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip("10.0.0.0"), 0, 0, 40)),
            errno.EINVAL,
            Diagnostic.PREFIX_INNER_DST,
            "inner destination prefix /40",
        ),
        (
            (SadbAddress(ExtType.ADDRESS_SRC, ip("192.0.2.2"), 0, 41), DST, ISRC, IDST),
            errno.EPROTOTYPE,
            Diagnostic.NONE,
            "inverse ACQUIRE: outer protocol 41 with IPv4 inner addresses (want 0 or 4)",
        ),
    ],
)
def test_inverse_acquire_malformed(
    spd: Spd, exts: tuple[SadbAddress, ...], err: int, diag: int, text: str
) -> None:
    refused(spd, request(*exts), err, diag, text)
