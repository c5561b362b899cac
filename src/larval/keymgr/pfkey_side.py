"""The key manager's side of PF_KEY: reading ACQUIREs and writing the SA requests.

The key manager talks to the stack only in PF_KEY messages (DESIGN.md): an extended
REGISTER at start; an extended ACQUIRE (or the answer to an inverse ACQUIRE) tells it
what the policy wants — every algorithm alternative, the lifetimes, the tunnel's inner
addresses — so no policy daemon is needed beside it (the seed's racoon2 port). After a
negotiation it GETSPIs its inbound SPI before that SPI goes on the wire, UPDATEs that
LARVAL SA with the keys, ADDs the outbound SA (carrying the ACQUIRE's sequence number,
which releases the held packets), and DELETEs them when the CHILD_SA goes.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from larval.crypto.algorithms import AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS
from larval.crypto.proposals import EspProposal
from larval.pfkey import (
    PF_KEY_V2,
    AlgType,
    Extension,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbSa,
    SadbSpirange,
    SadbXEprop,
    SadbXEreg,
    SadbXInnerPairs,
    SadbXKmc,
    SaFlags,
    SaState,
    SaType,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address extension in plain words: address, prefix, protocol, port."""

    address: IPAddress
    prefixlen: int
    proto: int
    port: int

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)

    @classmethod
    def of(cls, ext: SadbAddress) -> Endpoint:
        """Prefix 0 is the host, except for the unspecified address: 0.0.0.0/0 and ::/0
        (a road warrior's or a full tunnel's selector) are everything, not a host."""
        prefix = ext.prefixlen or (0 if ext.addr.is_unspecified else ext.addr.max_prefixlen)
        return cls(ext.addr, prefix, ext.proto, ext.port)

    @classmethod
    def inner(cls, ext: SadbAddress) -> Endpoint:
        """A tunnel's inner address: a policy's selector, its prefix as written, so that
        a prefix of 0 is every address (0.0.0.0/0, ::/0: a gateway that tunnels all of a
        road warrior's traffic), not a host."""
        return cls(ext.addr, ext.prefixlen, ext.proto, ext.port)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    soft_addtime: int = 0
    hard_addtime: int = 0
    soft_bytes: int = 0
    hard_bytes: int = 0
    idle: int = 0  # SADB_X_EXT_LIFETIME_IDLE: an EXPIRE after this many quiet seconds


@dataclass(frozen=True, slots=True)
class Alternative:
    """One ESP alternative of a policy, with the lifetimes its SA is to have."""

    proposal: EspProposal
    pfs: bool
    lifetimes: Lifetimes


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """What an extended ACQUIRE, or the answer to an inverse ACQUIRE, asks for."""

    seq: int
    src: Endpoint  # outer: this host
    dst: Endpoint  # outer: the peer
    inner_src: Endpoint | None  # tunnel mode: the policy's local selector
    inner_dst: Endpoint | None  # ... and remote selector
    alternatives: tuple[Alternative, ...]
    replay_window: int
    km_cookie: int
    #: Tunnel mode: the (local, remote) selector pairs after (inner_src, inner_dst) that
    #: the same SA carries (larval's X_LARVAL_INNER_PAIRS), e.g. the IPv6 pair of a
    #: CHILD_SA that also carries IPv4 (RFC 7296 §2.9).
    more_pairs: tuple[tuple[Endpoint, Endpoint], ...] = ()

    @property
    def tunnel(self) -> bool:
        return self.inner_src is not None and self.inner_dst is not None

    @property
    def local_ts(self) -> Endpoint:
        return self.inner_src if self.inner_src is not None else self.src

    @property
    def remote_ts(self) -> Endpoint:
        return self.inner_dst if self.inner_dst is not None else self.dst


class AcquireError(ValueError):
    """An ACQUIRE the key manager cannot act on (counted and logged, never raised further)."""


def parse_policy_request(msg: PfkeyMessage) -> PolicyRequest:
    """An extended ACQUIRE or an inverse ACQUIRE's reply, read (illumos layouts)."""
    exts: dict[int, Extension] = {e.ext_type: e for e in msg.extensions}
    src, dst = exts.get(ExtType.ADDRESS_SRC), exts.get(ExtType.ADDRESS_DST)
    eprop = exts.get(ExtType.X_EPROP)
    if not isinstance(src, SadbAddress) or not isinstance(dst, SadbAddress):
        raise AcquireError("ACQUIRE without source and destination addresses")
    if not isinstance(eprop, SadbXEprop):
        raise AcquireError("ACQUIRE without X_EPROP: not an extended ACQUIRE")
    inner_src, inner_dst = exts.get(ExtType.ADDRESS_PROXY), exts.get(ExtType.X_ADDRESS_INNER_DST)
    kmc = exts.get(ExtType.X_KM_COOKIE)
    alternatives = []
    for ecomb in eprop.ecombs:
        encrypt = auth = 0
        encrypt_bits = auth_bits = 0
        for alg in ecomb.algdescs:
            if alg.satype != SaType.ESP:
                continue  # larval negotiates ESP only
            if alg.algtype == AlgType.CRYPT:
                encrypt, encrypt_bits = alg.alg, alg.maxbits
            elif alg.algtype == AlgType.AUTH:
                auth, auth_bits = alg.alg, alg.maxbits
        if encrypt not in ENCRYPT_ALGORITHMS or (auth and auth not in AUTH_ALGORITHMS):
            continue  # an alternative this host cannot do is simply not offered
        lifetimes = Lifetimes(
            ecomb.soft_addtime, ecomb.hard_addtime, ecomb.soft_bytes, ecomb.hard_bytes
        )
        proposal = EspProposal(encrypt, encrypt_bits, auth, auth_bits,
                               esn=bool(ecomb.flags & SaFlags.X_ESN))  # fmt: skip
        alternatives.append(Alternative(proposal, bool(ecomb.flags & SaFlags.PFS), lifetimes))
    if not alternatives:
        raise AcquireError("ACQUIRE offers no ESP alternative larval implements")
    return PolicyRequest(
        seq=msg.seq,
        src=Endpoint.of(src),
        dst=Endpoint.of(dst),
        inner_src=Endpoint.inner(inner_src) if isinstance(inner_src, SadbAddress) else None,
        inner_dst=Endpoint.inner(inner_dst) if isinstance(inner_dst, SadbAddress) else None,
        alternatives=tuple(alternatives),
        replay_window=eprop.replay,
        km_cookie=kmc.cookie if isinstance(kmc, SadbXKmc) else 0,
    )


def extended_register(seq: int, pid: int) -> PfkeyMessage:
    """illumos extended REGISTER: satype UNSPEC, the SA types in SADB_X_EXT_EREG."""
    return PfkeyMessage(
        SadbMsgType.REGISTER,
        SaType.UNSPEC,
        seq=seq,
        pid=pid,
        extensions=(SadbXEreg((SaType.ESP,)),),
    )


def inverse_acquire(
    local: IPAddress, remote: IPAddress, local_ts: IPNetwork | None, remote_ts: IPNetwork | None,
    *, seq: int, pid: int,
) -> PfkeyMessage:  # fmt: skip
    """SADB_X_INVERSE_ACQUIRE: what would policy accept for this traffic (responder)?"""
    exts: list[Extension] = [
        SadbAddress(ExtType.ADDRESS_SRC, local),
        SadbAddress(ExtType.ADDRESS_DST, remote),
    ]
    if local_ts is not None and remote_ts is not None:
        exts.append(
            SadbAddress(
                ExtType.ADDRESS_PROXY, local_ts.network_address, prefixlen=local_ts.prefixlen
            )
        )
        exts.append(
            SadbAddress(
                ExtType.X_ADDRESS_INNER_DST,
                remote_ts.network_address,
                prefixlen=remote_ts.prefixlen,
            )
        )
    return PfkeyMessage(
        SadbMsgType.X_INVERSE_ACQUIRE, SaType.ESP, seq=seq, pid=pid, extensions=tuple(exts)
    )


@functools.lru_cache(maxsize=1024)
def _inverse_acquire_extensions(
    local: IPAddress, remote: IPAddress, local_ts: IPNetwork | None, remote_ts: IPNetwork | None
) -> bytes:
    """An inverse ACQUIRE's extensions, the same for every question about the same
    addresses and selectors."""
    msg = inverse_acquire(local, remote, local_ts, remote_ts, seq=0, pid=0)
    return b"".join(ext.encode() for ext in msg.extensions)


def inverse_acquire_bytes(
    local: IPAddress, remote: IPAddress, local_ts: IPNetwork | None, remote_ts: IPNetwork | None,
    *, seq: int, pid: int,
) -> bytes:  # fmt: skip
    """`inverse_acquire` encoded: the same bytes, its extensions encoded once for each
    question."""
    body = _inverse_acquire_extensions(local, remote, local_ts, remote_ts)
    return _MSG.pack(PF_KEY_V2, SadbMsgType.X_INVERSE_ACQUIRE, 0, SaType.ESP,
                     (_MSG.size + len(body)) // 8, 0, seq, pid) + body  # fmt: skip


def inverse_acquire_answer(data: bytes) -> bytes | None:
    """The extensions of an inverse ACQUIRE's positive answer (errno 0, lengths that hold
    together): what the policy accepts, the same bytes for every question it answers
    alike, so that what is read from them can be kept. None for anything else."""
    size = len(data)
    if size < _MSG.size:
        return None
    version, msg_type, errno, _, words, _, _, _ = _MSG.unpack_from(data)
    if version != PF_KEY_V2 or msg_type != SadbMsgType.X_INVERSE_ACQUIRE or errno:
        return None
    return data[_MSG.size :] if words * 8 == size else None


def getspi(peer: IPAddress, local: IPAddress, *, seq: int, pid: int) -> PfkeyMessage:
    """GETSPI for an inbound SA from `peer` to `local`: a LARVAL SA before the SPI is sent."""
    return PfkeyMessage(
        SadbMsgType.GETSPI,
        SaType.ESP,
        seq=seq,
        pid=pid,
        extensions=(
            SadbAddress(ExtType.ADDRESS_SRC, peer),
            SadbAddress(ExtType.ADDRESS_DST, local),
            SadbSpirange(0x100, 0xFFFFFFFF),
        ),
    )


#: A PF_KEY message's base header (RFC 2367 §2.3.1: version, type, errno, SA type, length
#: in 64-bit words, reserved, seq, pid) and an extension's (length in words, type), as
#: `larval.pfkey` lays them out, for the message of every setup built and read here
#: without the objects of a whole `PfkeyMessage`.
_MSG = struct.Struct("<BBBBHHII")
_MSG_SIZE = _MSG.size
_EXT = struct.Struct("<HH")
_SA_SPI = struct.Struct(">I")  # sadb_sa_spi, network byte order, after the ext header
_SA_WORDS = 2  # the SA extension is 16 bytes
_SA_FIRST = _EXT.pack(_SA_WORDS, ExtType.SA)  # the stack's GETSPI answer starts with it
# A GETSPI answer's base header, its first extension's header and that one's first four
# bytes: the SPI, where the first extension is the SA.
_ANSWER_HEAD = struct.Struct("<BBBBHHII4s4s")

# Plain ints for the messages of every setup (an enum member is an attribute lookup,
# and its hash a call in Python).
_GETSPI, _ESP, _MATURE = int(SadbMsgType.GETSPI), int(SaType.ESP), int(SaState.MATURE)
_E_SA, _E_SRC, _E_DST = int(ExtType.SA), int(ExtType.ADDRESS_SRC), int(ExtType.ADDRESS_DST)
_E_HARD, _E_SOFT, _E_IDLE = (
    int(ExtType.LIFETIME_HARD),
    int(ExtType.LIFETIME_SOFT),
    int(ExtType.X_LIFETIME_IDLE),
)
_E_AUTH, _E_ENCRYPT = int(ExtType.KEY_AUTH), int(ExtType.KEY_ENCRYPT)
_E_NATT_REM, _E_PAIR = int(ExtType.X_ADDRESS_NATT_REM), int(ExtType.X_PAIR)
_X_TUNNEL, _X_INBOUND = int(SaFlags.X_TUNNEL), int(SaFlags.X_INBOUND)
_X_OUTBOUND, _X_ESN = int(SaFlags.X_OUTBOUND), int(SaFlags.X_ESN)

#: Address pairs encoded lately, by the identity of the two address values: a key
#: manager names the addresses of its IKE SAs again and again, and an `ipaddress`
#: value's hash is a call in Python. An entry holds its values, so their ids stay theirs.
_BY_IDENTITY: dict[tuple[int, int, int], tuple[IPAddress, IPAddress, bytes]] = {}
_BY_IDENTITY_MAX = 4096


#: The last entry used for each kind: the next message is most often for the same IKE SA.
_LAST_BY_KIND: dict[int, tuple[IPAddress, IPAddress, bytes]] = {}


def _pair_bytes(kind: int, first: IPAddress, second: IPAddress) -> bytes:
    """`_pair_encoded(kind, first, second)`, kept by the identity of the addresses."""
    found = _LAST_BY_KIND.get(kind)
    if found is not None and found[0] is first and found[1] is second:
        return found[2]
    key = (kind, id(first), id(second))
    found = _BY_IDENTITY.get(key)
    if found is None or found[0] is not first or found[1] is not second:
        found = (first, second, _pair_encoded(kind, first, second))
        if len(_BY_IDENTITY) >= _BY_IDENTITY_MAX:
            _BY_IDENTITY.clear()
        _BY_IDENTITY[key] = found
    _LAST_BY_KIND[kind] = found
    return found[2]


def _pair_encoded(kind: int, first: IPAddress, second: IPAddress) -> bytes:
    if kind == _GETSPI:
        return _getspi_extensions(first, second)
    return _address_ext(_E_SRC, first) + _address_ext(_E_DST, second)


@functools.lru_cache(maxsize=1024)
def _getspi_extensions(peer: IPAddress, local: IPAddress) -> bytes:
    """GETSPI's extensions, the same for every SA between the same two addresses."""
    return b"".join(ext.encode() for ext in getspi(peer, local, seq=0, pid=0).extensions)


#: The last GETSPI `getspi_bytes` built: its two addresses (compared by identity; the
#: entry holds them, so their ids stay theirs), the packer of the whole message, taking
#: (the header's first 8 bytes, seq, pid, the extensions), and those bytes. Replaced
#: whole, never changed, so a reader in another thread sees one entry.
_LastGetspi = tuple[IPAddress | None, IPAddress | None, Callable[..., bytes], bytes, bytes]
_LAST_GETSPI: _LastGetspi = (None, None, bytes, b"", b"")


def getspi_bytes(peer: IPAddress, local: IPAddress, *, seq: int, pid: int) -> bytes:
    """`getspi` encoded: the same bytes, its extensions encoded once per address pair,
    and the last pair's whole message packed by one struct."""
    last_peer, last_local, pack, head, body = _LAST_GETSPI
    if last_peer is peer and last_local is local:
        return pack(head, seq, pid, body)
    return _getspi_built(peer, local, seq, pid)


def _getspi_built(peer: IPAddress, local: IPAddress, seq: int, pid: int) -> bytes:
    """`getspi_bytes` for another address pair than the last; its packer is kept."""
    global _LAST_GETSPI
    body = _pair_bytes(_GETSPI, peer, local)
    head = _MSG.pack(PF_KEY_V2, _GETSPI, 0, _ESP, (_MSG.size + len(body)) >> 3, 0, 0, 0)[:8]
    pack = struct.Struct(f"<8sII{len(body)}s").pack
    _LAST_GETSPI = (peer, local, pack, head, body)
    return pack(head, seq, pid, body)


def getspi_reply_spi(data: bytes) -> int | None:
    """The SPI a GETSPI reply gives: that of its SA extension when the reply is a GETSPI
    with errno 0 whose lengths hold together; None for anything else (a refusal, another
    message). Only the headers and the SPI are read."""
    size = len(data)
    if size >= _MSG_SIZE + 16:
        # The stack's answer: the SA extension first (what the walk below would find).
        version, msg_type, errno, _, words, _, _, _, first, spi = _ANSWER_HEAD.unpack_from(data)
        if first == _SA_FIRST and version == PF_KEY_V2 and msg_type == _GETSPI:
            return int.from_bytes(spi, "big") if not errno and words << 3 == size else None
    if size < _MSG.size:
        return None
    version, msg_type, errno, _, words, _, _, _ = _MSG.unpack_from(data)
    if version != PF_KEY_V2 or msg_type != _GETSPI or errno or words * 8 != size:
        return None
    off = _MSG.size
    while off + _EXT.size <= size:
        ext_words, ext_type = _EXT.unpack_from(data, off)
        if ext_words == 0 or off + ext_words * 8 > size:
            return None
        if ext_type == ExtType.SA:
            return int(_SA_SPI.unpack_from(data, off + 4)[0]) if ext_words == _SA_WORDS else None
        off += ext_words * 8
    return None


class ChildKeys(NamedTuple):
    """One direction of a negotiated CHILD_SA, as PF_KEY needs it.

    A named tuple, immutable as a frozen dataclass is and made in a third of its time:
    the key manager makes two for every CHILD_SA."""

    spi: int
    src: IPAddress
    dst: IPAddress
    proposal: EspProposal
    encrypt_key: bytes  # salt included for the AEADs
    auth_key: bytes

    def __repr__(self) -> str:
        return f"ChildKeys(spi={self.spi:#010x}, {self.src} -> {self.dst}, keys=<hidden>)"


# The extensions of an UPDATE or ADD that change with every SA, packed straight from
# their fields (RFC 2367 §2.3.1-4; the layouts `larval.pfkey` writes): the SA (spi in
# network byte order), a lifetime, a key (bits, reserved, then the key padded to 64-bit
# words) and X_PAIR (the paired SPI in network byte order).
_SA_EXT = struct.Struct("<HH4sBBBBI")
_LIFETIME_EXT = struct.Struct("<HHIQQQ")
_SA_EXT_SIZE = _SA_EXT.size
_LIFETIME_EXT_SIZE = _LIFETIME_EXT.size
_PAIR_HEAD = _EXT.pack(1, _E_PAIR)  # X_PAIR's header; its SPI follows, big-endian


@functools.lru_cache(maxsize=4096)
def _address_ext(ext_type: int, address: IPAddress, port: int = 0, proto: int = 0,
                 prefixlen: int = 0) -> bytes:  # fmt: skip
    """An address extension, encoded once for each address, port, protocol and prefix."""
    return SadbAddress(ext_type, address, port, proto, prefixlen).encode()


def _inner_exts(request: PolicyRequest, inbound: bool) -> bytes:
    """A tunnel-mode SA's inner selectors (ADDRESS_PROXY, X_ADDRESS_INNER_DST and the
    further pairs of X_LARVAL_INNER_PAIRS), encoded once for each set of selectors and
    direction: they are the same for every SA the policy's CHILD_SAs install. Keyed by
    the selectors alone: the request's sequence number differs from setup to setup."""
    if request.inner_src is None or request.inner_dst is None:
        return b""
    return _inner_exts_of(request.inner_src, request.inner_dst, request.more_pairs, inbound)


@functools.lru_cache(maxsize=1024)
def _inner_exts_of(
    near: Endpoint, far: Endpoint, more_pairs: tuple[tuple[Endpoint, Endpoint], ...],
    inbound: bool,
) -> bytes:  # fmt: skip
    src_ts, dst_ts = (far, near) if inbound else (near, far)
    parts = [
        _address_ext(ExtType.ADDRESS_PROXY, src_ts.address, src_ts.port, src_ts.proto,
                     src_ts.prefixlen),
        _address_ext(ExtType.X_ADDRESS_INNER_DST, dst_ts.address, dst_ts.port, dst_ts.proto,
                     dst_ts.prefixlen),
    ]  # fmt: skip
    if more_pairs:
        parts.append(SadbXInnerPairs(tuple(
            _inner_pair(remote, local) if inbound else _inner_pair(local, remote)
            for local, remote in more_pairs
        )).encode())  # fmt: skip
    return b"".join(parts)


#: Packers of a key extension with its key, by the key's length: the header, then the
#: key padded with zeros to 64-bit words (a struct's "s" field pads).
_KEY_PACKS: dict[int, Callable[..., bytes]] = {}


def _key_ext(ext_type: int, key: bytes) -> bytes:
    size = len(key)
    pack = _KEY_PACKS.get(size)
    if pack is None:
        if len(_KEY_PACKS) >= 64:
            _KEY_PACKS.clear()
        pack = _KEY_PACKS[size] = struct.Struct(f"<HHHH{(size + 7) & ~7}s").pack
    return pack(((size + 7) >> 3) + 1, ext_type, size * 8, 0, key)


#: The last message `keyed_sa_bytes` built for each (message type, direction): what it
#: was built from besides the SPI, keys, lifetimes' values, sequence number and pid
#: (compared by equality, which is identity for the key manager's own objects), the
#: reader of the lifetimes' values its bytes hold, and the packer of its bytes.
_LifetimeReader = Callable[[Lifetimes], tuple[object, ...]]
_Template = tuple[tuple[object, ...], _LifetimeReader, Callable[..., bytes], tuple[bytes, ...]]
_TEMPLATES: dict[tuple[int, bool], _Template] = {}

#: What `keyed_sa_bytes` compares of a missing request: the bytes are those of a
#: transport-mode request with a window of 32.
_NO_REQUEST_KEY = (None, None, (), 32)

# The first 8 bytes of each lifetime extension: length, type, no allocations.
_HARD_HEAD = _LIFETIME_EXT.pack(4, _E_HARD, 0, 0, 0, 0)[:8]
_SOFT_HEAD = _LIFETIME_EXT.pack(4, _E_SOFT, 0, 0, 0, 0)[:8]
_IDLE_HEAD = _LIFETIME_EXT.pack(4, _E_IDLE, 0, 0, 0, 0)[:8]


def _lifetime_reader(hard: bool, soft: bool, idle: bool) -> _LifetimeReader:
    """What a template packs of the lifetimes of a message with these of its hard, soft
    and idle extensions: each one's first 8 bytes, then its bytes and add time (the idle
    one's add time only)."""

    def read(life: Lifetimes) -> tuple[object, ...]:
        return (
            ((_HARD_HEAD, life.hard_bytes, life.hard_addtime) if hard else ())
            + ((_SOFT_HEAD, life.soft_bytes, life.soft_addtime) if soft else ())
            + ((_IDLE_HEAD, life.idle) if idle else ())
        )

    return read


_LIFETIME_READERS = {
    (hard, soft, idle): _lifetime_reader(hard, soft, idle)
    for hard in (False, True)
    for soft in (False, True)
    for idle in (False, True)
}


def keyed_sa_bytes(
    msg_type: int,
    keys: ChildKeys,
    request: PolicyRequest | None,
    lifetimes: Lifetimes,
    *,
    inbound: bool,
    seq: int,
    pid: int,
    pair_spi: int = 0,
    natt_port: int = 0,
) -> bytes:
    """UPDATE of the inbound LARVAL SA, or ADD of the outbound SA, with keys and
    lifetimes: the message's bytes, as the `larval.pfkey` encoder writes them.

    Tunnel mode sets SADB_X_SAFLAGS_TUNNEL and carries the inner addresses, so the stack
    can check what comes out of the SA (RFC 4301 §5.2); the inbound SA's inner source is
    the peer's selector. ESN (RFC 4303 §2.2.1), when chosen, is flagged on both SAs.

    Built without a `PfkeyMessage` in between: the extensions that change with each SA
    packed from their fields, the addresses and a policy's inner selectors encoded once
    and kept. A message alike to the last of its type and direction is packed at once
    from that one's bytes: alike but for its SPI, keys (of the same sizes), paired SPI,
    sequence number, pid and its lifetimes' values (the same extensions there), and of
    its request only what the bytes show (the inner selectors and replay window), not
    the ACQUIRE's sequence number, which differs from setup to setup."""
    auth_key, encrypt_key = keys.auth_key, keys.encrypt_key
    hard = bool(lifetimes.hard_addtime or lifetimes.hard_bytes)
    soft = bool(lifetimes.soft_addtime or lifetimes.soft_bytes)
    idle = bool(lifetimes.idle)
    alike = (
        keys.src, keys.dst, keys.proposal,
        (request.inner_src, request.inner_dst, request.more_pairs, request.replay_window)
        if request is not None else _NO_REQUEST_KEY,
        hard, soft, idle, natt_port, len(auth_key), len(encrypt_key), not pair_spi,
    )  # fmt: skip
    template = _TEMPLATES.get((msg_type, inbound))
    if template is not None and template[0] == alike:
        _, values, pack, (head, sa_head, sa_rest, between, auth_head, encrypt_head, natt,
                          pair_head) = template  # fmt: skip
        return pack(head, seq, pid, sa_head, keys.spi.to_bytes(4, "big"), sa_rest,
                    *values(lifetimes), between, auth_head, auth_key, encrypt_head,
                    encrypt_key, natt, pair_head,
                    pair_spi.to_bytes(4, "big") if pair_spi else b"")  # fmt: skip
    # Built part by part; its template is kept for the next alike.
    proposal = keys.proposal
    # sadb_sa_flags: the SA's direction, tunnel mode, ESN.
    flags = _X_INBOUND if inbound else _X_OUTBOUND
    if proposal.esn:
        flags |= _X_ESN
    if request is None:
        tunnel, replay = False, 32
    else:
        tunnel, replay = request.tunnel, min(request.replay_window, 255)
        if tunnel:
            flags |= _X_TUNNEL
    sa_ext = _SA_EXT.pack(2, _E_SA, keys.spi.to_bytes(4, "big"), replay, _MATURE,
                          proposal.auth, proposal.encrypt, flags)  # fmt: skip
    # The lifetime extensions, and their layout in the template: each one's first 8
    # bytes (length, type, allocations) kept, its bytes and add time packed, its use time
    # zero.
    lives = []
    lives_fmt = ""
    if hard:
        lives.append(_LIFETIME_EXT.pack(4, _E_HARD, 0, lifetimes.hard_bytes,
                                        lifetimes.hard_addtime, 0))  # fmt: skip
        lives_fmt += "8sQQ8x"
    if soft:
        lives.append(_LIFETIME_EXT.pack(4, _E_SOFT, 0, lifetimes.soft_bytes,
                                        lifetimes.soft_addtime, 0))  # fmt: skip
        lives_fmt += "8sQQ8x"
    if idle:
        lives.append(_LIFETIME_EXT.pack(4, _E_IDLE, 0, 0, lifetimes.idle, 0))
        lives_fmt += "8s8xQ8x"
    middle = [_pair_bytes(_E_SRC, keys.src, keys.dst)]
    if tunnel and request is not None:
        middle.append(_inner_exts(request, inbound))
    auth = _key_ext(_E_AUTH, keys.auth_key) if keys.auth_key else b""
    encrypt = _key_ext(_E_ENCRYPT, keys.encrypt_key) if keys.encrypt_key else b""
    # RFC 3948: the peer's UDP port for ESP in UDP (4500, or what a NAT made of it).
    natt = (
        _address_ext(_E_NATT_REM, keys.dst if not inbound else keys.src, natt_port)
        if natt_port
        else b""
    )
    pair = _PAIR_HEAD + pair_spi.to_bytes(4, "big") if pair_spi else b""
    body = b"".join(middle)
    size = (_MSG_SIZE + _SA_EXT_SIZE + _LIFETIME_EXT_SIZE * len(lives) + len(body) + len(auth)
            + len(encrypt) + len(natt) + len(pair))  # fmt: skip
    if size >> 3 > 0xFFFF:
        raise ValueError(f"message of {size >> 3} words is too long for sadb_msg_len")
    header = _MSG.pack(PF_KEY_V2, msg_type, 0, _ESP, size >> 3, 0, seq, pid)
    # The same bytes from one struct: the header's first 8 bytes, its sequence number and
    # pid, the SA extension's first 4 bytes, SPI and the rest, the lifetimes, what lies
    # before the keys, each key extension's header and key (the "s" field pads it with
    # zeros to its words), the NAT-T extension, X_PAIR's header and SPI.
    pieces = (header[:8], sa_ext[:4], sa_ext[8:], body,
              auth[:8], encrypt[:8], natt, pair[:4])  # fmt: skip
    fmt = (f"<8sII4s4s8s{lives_fmt}{len(body)}s{len(auth[:8])}s{len(auth) - len(auth[:8])}s"
           f"{len(encrypt[:8])}s{len(encrypt) - len(encrypt[:8])}s{len(natt)}s{len(pair[:4])}s"
           f"{len(pair) - len(pair[:4])}s")  # fmt: skip
    if len(_TEMPLATES) >= 64:
        _TEMPLATES.clear()
    _TEMPLATES[(msg_type, inbound)] = (
        alike,
        _LIFETIME_READERS[hard, soft, idle],
        struct.Struct(fmt).pack,
        pieces,
    )
    return header + sa_ext + b"".join(lives) + body + auth + encrypt + natt + pair


def _inner_pair(src: Endpoint, dst: Endpoint) -> tuple[SadbAddress, SadbAddress]:
    return (
        SadbAddress(ExtType.ADDRESS_PROXY, src.address, src.port, src.proto, src.prefixlen),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, dst.address, dst.port, dst.proto, dst.prefixlen),
    )


def selector_pairs(
    local_ts: tuple[IPNetwork, ...] | list[IPNetwork],
    remote_ts: tuple[IPNetwork, ...] | list[IPNetwork],
) -> list[tuple[IPNetwork, IPNetwork]]:
    """The (local, remote) selector pairs one CHILD_SA carries: every local x remote
    network of one address family, as strongSwan installs a policy for each (a pair of
    mixed families selects nothing). In local order, then remote order."""
    return [(lo, re) for lo in local_ts for re in remote_ts if lo.version == re.version]


def natt_update(
    spi: int, src: IPAddress, dst: IPAddress, port: int, *, seq: int, pid: int
) -> PfkeyMessage:
    """UPDATE of a MATURE outbound SA's NAT-T remote port alone (its keys and lifetimes
    stay): the peer's NAT mapping changed (RFC 7296 §2.23)."""
    return PfkeyMessage(
        SadbMsgType.UPDATE,
        SaType.ESP,
        seq=seq,
        pid=pid,
        extensions=(
            SadbSa(spi, state=SaState.MATURE),
            SadbAddress(ExtType.ADDRESS_SRC, src),
            SadbAddress(ExtType.ADDRESS_DST, dst),
            SadbAddress(ExtType.X_ADDRESS_NATT_REM, dst, port),
        ),
    )


def delete_sa(spi: int, src: IPAddress, dst: IPAddress, *, seq: int, pid: int) -> PfkeyMessage:
    return PfkeyMessage(
        SadbMsgType.DELETE,
        SaType.ESP,
        seq=seq,
        pid=pid,
        extensions=(
            SadbSa(spi),
            SadbAddress(ExtType.ADDRESS_SRC, src),
            SadbAddress(ExtType.ADDRESS_DST, dst),
        ),
    )
