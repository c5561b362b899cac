"""ACQUIRE messages from policies: regular (RFC 2367 §3.1.6), extended and inverse (illumos).

When an outbound packet matches a PROTECT policy and no SA exists, the stack asks key
management for one. Both ACQUIREs carry the same address extensions, as illumos
``sadb_acquire_msg_common`` builds them for both:

* transport mode: ADDRESS_SRC and ADDRESS_DST are the packet's addresses, with the
  protocol and ports of the *policy's* selector (0 where it says "any"), so the SA
  negotiated covers the policy and not just this one connection;
* tunnel mode: X_ADDRESS_INNER_SRC (= ADDRESS_PROXY, 7) and X_ADDRESS_INNER_DST (22)
  carry the policy's local and remote prefixes with their prefix lengths, protocol and
  ports, and ADDRESS_SRC/ADDRESS_DST the tunnel endpoints with protocol IPPROTO_ENCAP
  (4) or IPPROTO_IPV6 (41), by the inner family, and no ports.

An address extension holds one port: a selector's port range becomes its port when it
is a single port, else 0.

The *regular* ACQUIRE (``sadb_acquire`` with ``sadb_acquire_prop``) is
<base(ACQUIRE, ESP), addresses, PROPOSAL> with one ``sadb_comb`` per ESP alternative.
The *extended* ACQUIRE, for key managers that registered with X_EREG, is
<base(ACQUIRE, UNSPEC), addresses, X_EPROP, X_KM_COOKIE>: one ``sadb_x_ecomb`` per
alternative holding ``sadb_x_algdesc``s, the integrity algorithm first and then the
cipher (``sadb_action_to_ecomb``). Both take the lifetimes and replay window from the
policy, and set SADB_SAFLAGS_PFS in a combination whose alternative names a DH group.

The *inverse* ACQUIRE is the responder's question: "what would your policy want for
this traffic?" (``ipsec_construct_inverse_acquire``); the answer is an extended ACQUIRE.

Differences from illumos, each deliberate: the KM cookie is a separate extension after
X_EPROP (illumos counts it inside the EPROP's length, which no parser here accepts); the
algdesc's reserved byte is 0 (illumos puts the salt length in bytes there); the reply
to an inverse ACQUIRE has message type X_INVERSE_ACQUIRE, echoing the request as every
other PF_KEY reply does (illumos' ``sadb_acquire_msg_base`` writes SADB_ACQUIRE; key
managers match the reply by sequence number either way).
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass

from larval.crypto.proposals import EspProposal
from larval.pfkey import (
    AlgType,
    Diagnostic,
    Extension,
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
    SaFlags,
    SaType,
)
from larval.sadb.errors import SadbError
from larval.spd.errors import SpdError
from larval.spd.index import ICMP_ANY
from larval.spd.policy import Action, Direction, Mode, Policy
from larval.spd.selector import (
    ANY_PORTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    AddressLike,
    IPAddress,
    to_address,
)
from larval.spd.spd import Spd

__all__ = [
    "IPPROTO_ENCAP",
    "IPPROTO_IPV6",
    "Flow",
    "extended_acquire",
    "inverse_acquire",
    "regular_acquire",
]

#: The outer protocol of a tunnel-mode SA: IPv4-in-IP (RFC 2003) or IPv6-in-IP.
IPPROTO_ENCAP = 4
IPPROTO_IPV6 = 41


@dataclass(frozen=True, slots=True)
class Flow:
    """The packet that triggered an ACQUIRE: its addresses (the inner ones in tunnel
    mode), protocol, ports and ICMP type."""

    src: IPAddress
    dst: IPAddress
    proto: int = 0
    sport: int = 0
    dport: int = 0
    icmp_type: int | None = None

    @classmethod
    def of(
        cls,
        src: AddressLike,
        dst: AddressLike,
        proto: int = 0,
        sport: int = 0,
        dport: int = 0,
        icmp_type: int | None = None,
    ) -> Flow:
        return cls(to_address(src), to_address(dst), proto, sport, dport, icmp_type)


def _single_port(ports: tuple[int, int]) -> int:
    lo, hi = ports
    return lo if lo == hi and ports != ANY_PORTS else 0


def _address_extensions(
    policy: Policy, outer_src: IPAddress, outer_dst: IPAddress
) -> tuple[SadbAddress, ...]:
    """The address extensions common to every ACQUIRE (``sadb_acquire_msg_common``)."""
    sel = policy.selector
    if policy.mode is Mode.TUNNEL:
        # Inner addresses from the policy's selector, not the packet, with prefixes.
        outer_proto = IPPROTO_ENCAP if sel.version == 4 else IPPROTO_IPV6
        return (
            SadbAddress(
                ExtType.X_ADDRESS_INNER_SRC,
                sel.local.network_address,
                _single_port(sel.local_ports),
                sel.proto,
                sel.local.prefixlen,
            ),
            SadbAddress(
                ExtType.X_ADDRESS_INNER_DST,
                sel.remote.network_address,
                _single_port(sel.remote_ports),
                sel.proto,
                sel.remote.prefixlen,
            ),
            SadbAddress(ExtType.ADDRESS_SRC, outer_src, 0, outer_proto),
            SadbAddress(ExtType.ADDRESS_DST, outer_dst, 0, outer_proto),
        )
    return (
        SadbAddress(ExtType.ADDRESS_SRC, outer_src, _single_port(sel.local_ports), sel.proto),
        SadbAddress(ExtType.ADDRESS_DST, outer_dst, _single_port(sel.remote_ports), sel.proto),
    )


def _outer(policy: Policy, flow: Flow) -> tuple[IPAddress, IPAddress]:
    if policy.action is not Action.PROTECT:
        raise SpdError(f"policy {policy.name} is {policy.action.value}: nothing to acquire")
    tunnel = policy.tunnel
    if tunnel is not None:
        if tunnel.any_remote:
            # A %any tunnel names no peer to negotiate with: its SAs come only from peers
            # that connect (and the inverse ACQUIRE that answers them).
            raise SpdError(f"policy {policy.name} has peer %any: no address to ACQUIRE an SA with")
        return tunnel.local, tunnel.remote
    return flow.src, flow.dst


def _flags(proposal: EspProposal) -> int:
    # RFC 2367 §2.3.7: sadb_comb_flags carries SADB_SAFLAGS_PFS for a PFS requirement;
    # X_ESN asks for extended sequence numbers.
    pfs = int(SaFlags.PFS) if proposal.dh_group is not None else 0
    return pfs | (int(SaFlags.X_ESN) if proposal.esn else 0)


def _comb(policy: Policy, proposal: EspProposal) -> SadbComb:
    life = policy.lifetimes
    return SadbComb(
        auth=proposal.auth,
        encrypt=proposal.encrypt,
        flags=_flags(proposal),
        auth_minbits=proposal.auth_bits,
        auth_maxbits=proposal.auth_bits,
        encrypt_minbits=proposal.encrypt_bits,
        encrypt_maxbits=proposal.encrypt_bits,
        soft_bytes=life.rekey_bytes,
        hard_bytes=life.life_bytes,
        soft_addtime=life.rekey_time,
        hard_addtime=life.life_time,
    )


def _ecomb(policy: Policy, proposal: EspProposal) -> SadbXEcomb:
    algdescs = []
    if proposal.auth:
        algdescs.append(
            SadbXAlgdesc(
                SaType.ESP, AlgType.AUTH, proposal.auth, proposal.auth_bits, proposal.auth_bits
            )
        )
    algdescs.append(
        SadbXAlgdesc(
            SaType.ESP,
            AlgType.CRYPT,
            proposal.encrypt,
            proposal.encrypt_bits,
            proposal.encrypt_bits,
        )
    )
    life = policy.lifetimes
    return SadbXEcomb(
        algdescs=tuple(algdescs),
        flags=_flags(proposal),
        soft_bytes=life.rekey_bytes,
        hard_bytes=life.life_bytes,
        soft_addtime=life.rekey_time,
        hard_addtime=life.life_time,
    )


def regular_acquire(policy: Policy, flow: Flow, seq: int) -> PfkeyMessage:
    """ACQUIRE <base(ESP), address(S, D) [, inner src/dst], proposal> (RFC 2367 §3.1.6)."""
    src, dst = _outer(policy, flow)
    prop = SadbProp(tuple(_comb(policy, p) for p in policy.proposals), policy.replay_window)
    return PfkeyMessage(
        SadbMsgType.ACQUIRE,
        SaType.ESP,
        seq=seq,
        extensions=(*_address_extensions(policy, src, dst), prop),
    )


def _extended(
    policy: Policy,
    src: IPAddress,
    dst: IPAddress,
    msg_type: int,
    seq: int,
    pid: int,
    km_cookie: int,
) -> PfkeyMessage:
    eprop = SadbXEprop(tuple(_ecomb(policy, p) for p in policy.proposals), policy.replay_window)
    exts: tuple[Extension, ...] = (
        *_address_extensions(policy, src, dst),
        eprop,
        SadbXKmc(KmProto.IKE, km_cookie),
    )
    # The base header's satype is UNSPEC: an extended ACQUIRE may span SA types
    # (sadb_acquire passes 0 to sadb_acquire_msg_base for it).
    return PfkeyMessage(msg_type, SaType.UNSPEC, seq=seq, pid=pid, extensions=exts)


def extended_acquire(policy: Policy, flow: Flow, seq: int, km_cookie: int) -> PfkeyMessage:
    """ACQUIRE <base(UNSPEC), addresses, X_EPROP, X_KM_COOKIE> (illumos extended ACQUIRE)."""
    src, dst = _outer(policy, flow)
    return _extended(policy, src, dst, SadbMsgType.ACQUIRE, seq, 0, km_cookie)


def _require_address(msg: PfkeyMessage, ext_type: int, missing: int, what: str) -> SadbAddress:
    ext = msg.find(ext_type)
    if ext is None:
        raise SadbError(errno.EINVAL, missing, f"inverse ACQUIRE without {what}")
    if not isinstance(ext, SadbAddress):
        raise SadbError(errno.EINVAL, missing, f"inverse ACQUIRE: {what} is not an address")
    return ext


def _transport_fields(
    ext_src: SadbAddress, ext_dst: SadbAddress
) -> tuple[int, int, int, int | None]:
    """(proto, local port, remote port, ICMP type) of a request's address pair.

    As ``ipsec_get_inverse_acquire_sel``: the protocol is the source extension's; for
    ICMP the ports mean nothing and any ICMP type matches.
    """
    proto = ext_src.proto
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return proto, 0, 0, ICMP_ANY
    return proto, ext_src.port, ext_dst.port, None


def inverse_acquire(spd: Spd, msg: PfkeyMessage, km_cookie: int = 0) -> PfkeyMessage:
    """Answer an X_INVERSE_ACQUIRE with the extended ACQUIRE the policy would make.

    The request's ADDRESS_SRC is the local address, ADDRESS_DST the remote one, as in an
    outbound ACQUIRE (``ipsec_construct_inverse_acquire``). With inner addresses, the
    policy is a tunnel-mode one whose endpoints are SRC and DST (or SRC and %any, when
    no policy names DST) and whose selector covers the inner addresses, looked up among
    inbound policies as illumos searches the tunnel's policy head (``ipsec_tun_pol``);
    without, a transport-mode outbound policy for SRC and DST. Raises `SadbError`: EINVAL
    for a malformed request, as keysock_inverse_acquire and
    ipsec_construct_inverse_acquire check it; EPROTOTYPE when the outer protocol
    contradicts the inner family; ENOENT when no policy protects the traffic.
    """
    src = _require_address(msg, ExtType.ADDRESS_SRC, Diagnostic.MISSING_SRC, "ADDRESS_SRC")
    dst = _require_address(msg, ExtType.ADDRESS_DST, Diagnostic.MISSING_DST, "ADDRESS_DST")
    has_isrc = msg.find(ExtType.X_ADDRESS_INNER_SRC) is not None
    has_idst = msg.find(ExtType.X_ADDRESS_INNER_DST) is not None
    if has_isrc and not has_idst:
        raise SadbError(
            errno.EINVAL, Diagnostic.MISSING_INNER_DST, "inverse ACQUIRE: inner source only"
        )
    if has_idst and not has_isrc:
        raise SadbError(
            errno.EINVAL, Diagnostic.MISSING_INNER_SRC, "inverse ACQUIRE: inner destination only"
        )
    if src.addr.version != dst.addr.version:
        raise SadbError(
            errno.EINVAL, Diagnostic.AF_MISMATCH, "inverse ACQUIRE: SRC and DST families differ"
        )
    policy = _tunnel_policy(spd, msg, src, dst) if has_isrc else _transport_policy(spd, src, dst)
    return _extended(
        policy,
        src.addr,
        dst.addr,
        SadbMsgType.X_INVERSE_ACQUIRE,
        msg.seq,
        msg.pid,
        km_cookie,
    )


def _tunnel_policy(spd: Spd, msg: PfkeyMessage, src: SadbAddress, dst: SadbAddress) -> Policy:
    isrc = _require_address(
        msg, ExtType.X_ADDRESS_INNER_SRC, Diagnostic.MISSING_INNER_SRC, "INNER_SRC"
    )
    idst = _require_address(
        msg, ExtType.X_ADDRESS_INNER_DST, Diagnostic.MISSING_INNER_DST, "INNER_DST"
    )
    if isrc.addr.version != idst.addr.version:
        raise SadbError(
            errno.EINVAL,
            Diagnostic.INNER_AF_MISMATCH,
            "inverse ACQUIRE: inner source and destination families differ",
        )
    bits = isrc.addr.max_prefixlen
    if isrc.prefixlen > bits:
        raise SadbError(
            errno.EINVAL, Diagnostic.PREFIX_INNER_SRC, f"inner source prefix /{isrc.prefixlen}"
        )
    if idst.prefixlen > bits:
        raise SadbError(
            errno.EINVAL,
            Diagnostic.PREFIX_INNER_DST,
            f"inner destination prefix /{idst.prefixlen}",
        )
    # IP-in-IP outer protocol must fit the inner family (illumos answers EPROTOTYPE
    # with no diagnostic).
    want = IPPROTO_ENCAP if isrc.addr.version == 4 else IPPROTO_IPV6
    if src.proto not in (0, want):
        raise SadbError(
            errno.EPROTOTYPE,
            Diagnostic.NONE,
            f"inverse ACQUIRE: outer protocol {src.proto} with IPv{isrc.addr.version} "
            f"inner addresses (want 0 or {want})",
        )
    proto, lport, rport, icmp = _transport_fields(isrc, idst)
    outer = (src.addr, dst.addr)

    def ends_here(policy: Policy) -> bool:
        return policy.tunnel is not None and (policy.tunnel.local, policy.tunnel.remote) == outer

    def any_peer_here(policy: Policy) -> bool:
        # A %any tunnel of this local address takes every peer of its family; the reply
        # names the peer asked about, so the SAs made from it have real addresses.
        tunnel = policy.tunnel
        return (
            tunnel is not None
            and tunnel.any_remote
            and tunnel.local == src.addr
            and tunnel.remote.version == dst.addr.version
        )

    found = spd.lookup_local(
        Direction.IN, isrc.addr, idst.addr, proto, lport, rport, icmp, ends_here
    )
    if found is None:
        # A policy naming this very peer decides first, as strongSwan prefers the
        # connection with the peer's own address to one with %any.
        found = spd.lookup_local(
            Direction.IN, isrc.addr, idst.addr, proto, lport, rport, icmp, any_peer_here
        )
    if found is not None and found.action is Action.PROTECT:
        return found  # what an error names is written only for an error
    return _protecting(found, f"{_text(isrc)} === {_text(idst)} via {src.addr} - {dst.addr}")


def _transport_policy(spd: Spd, src: SadbAddress, dst: SadbAddress) -> Policy:
    proto, lport, rport, icmp = _transport_fields(src, dst)
    found = spd.lookup_local(Direction.OUT, src.addr, dst.addr, proto, lport, rport, icmp)
    if found is not None and found.action is Action.PROTECT and found.mode is not Mode.TUNNEL:
        return found  # what an error names is written only for an error
    where = f"{_text(src)} === {_text(dst)}"
    if found is not None and found.mode is Mode.TUNNEL:
        # ipsec_tun_pol: tunnel-mode policy, but no inner addresses to choose with.
        raise SadbError(
            errno.ENOENT,
            Diagnostic.NONE,
            f"no policy for {where}: {found.name} is tunnel mode and the request has no "
            "inner addresses",
        )
    return _protecting(found, where)


def _protecting(policy: Policy | None, where: str) -> Policy:
    # ipsec_construct_inverse_acquire: no policy is ENOENT with diagnostic 0.
    if policy is None:
        raise SadbError(errno.ENOENT, Diagnostic.NONE, f"no policy for {where}")
    if policy.action is not Action.PROTECT:
        raise SadbError(
            errno.ENOENT,
            Diagnostic.NONE,
            f"no policy protects {where}: {policy.name} is {policy.action.value}",
        )
    return policy


def _text(ext: SadbAddress) -> str:
    text = str(ext.addr)
    if ext.prefixlen:
        text = str(ipaddress.ip_network(f"{ext.addr}/{ext.prefixlen}", strict=False))
    if ext.proto:
        text += f"[{ext.proto}/{ext.port}]" if ext.port else f"[{ext.proto}]"
    return text
