"""The reference for `keyed_sa_bytes`: its UPDATE or ADD built from `larval.pfkey`'s
extension objects, for the encoder to write. The key manager packs the same bytes
straight from the fields (`larval.keymgr.pfkey_side`); the tests hold the two to each
other byte for byte."""

from __future__ import annotations

from larval.keymgr.pfkey_side import ChildKeys, Endpoint, Lifetimes, PolicyRequest
from larval.pfkey import (
    Extension,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbKey,
    SadbLifetime,
    SadbSa,
    SadbXInnerPairs,
    SadbXPair,
    SaFlags,
    SaState,
    SaType,
)


def keyed_sa(
    msg_type: int,
    keys: ChildKeys,
    request: PolicyRequest | None,
    lifetimes: Lifetimes,
    **options: int,
) -> PfkeyMessage:
    """The message `keyed_sa_bytes(msg_type, keys, request, lifetimes, **options)` packs
    (options: inbound, seq, pid, and pair_spi and natt_port, 0 when not given)."""
    inbound, seq, pid = bool(options["inbound"]), options["seq"], options["pid"]
    pair_spi, natt_port = options.get("pair_spi", 0), options.get("natt_port", 0)
    proposal = keys.proposal
    tunnel = request is not None and request.tunnel
    # sadb_sa_flags: the SA's direction, tunnel mode, and ESN (RFC 4303 §2.2.1) when it
    # was chosen, the same for both SAs of the CHILD_SA.
    flags = SaFlags.X_TUNNEL if tunnel else 0
    flags |= SaFlags.X_INBOUND if inbound else SaFlags.X_OUTBOUND
    if proposal.esn:
        flags |= SaFlags.X_ESN
    exts: list[Extension] = [
        SadbSa(keys.spi, min(request.replay_window if request else 32, 255), SaState.MATURE,
               proposal.auth, proposal.encrypt, int(flags)),
    ]  # fmt: skip
    if lifetimes.hard_addtime or lifetimes.hard_bytes:
        exts.append(SadbLifetime(ExtType.LIFETIME_HARD, bytes=lifetimes.hard_bytes,
                                 addtime=lifetimes.hard_addtime))  # fmt: skip
    if lifetimes.soft_addtime or lifetimes.soft_bytes:
        exts.append(SadbLifetime(ExtType.LIFETIME_SOFT, bytes=lifetimes.soft_bytes,
                                 addtime=lifetimes.soft_addtime))  # fmt: skip
    if lifetimes.idle:
        exts.append(SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=lifetimes.idle))
    exts.append(SadbAddress(ExtType.ADDRESS_SRC, keys.src))
    exts.append(SadbAddress(ExtType.ADDRESS_DST, keys.dst))
    if tunnel and request is not None and request.inner_src and request.inner_dst:
        # Inbound, the SA's inner source is the peer's selector and its destination ours.
        near, far = request.inner_src, request.inner_dst
        exts.extend(_inner_pair(far, near) if inbound else _inner_pair(near, far))
        if request.more_pairs:
            exts.append(SadbXInnerPairs(tuple(
                _inner_pair(far, near) if inbound else _inner_pair(near, far)
                for near, far in request.more_pairs
            )))  # fmt: skip
    if keys.auth_key:
        exts.append(SadbKey(ExtType.KEY_AUTH, len(keys.auth_key) * 8, keys.auth_key))
    if keys.encrypt_key:
        exts.append(SadbKey(ExtType.KEY_ENCRYPT, len(keys.encrypt_key) * 8, keys.encrypt_key))
    if natt_port:
        # RFC 3948: the peer's UDP port for ESP in UDP (4500, or what a NAT made of it).
        exts.append(SadbAddress(ExtType.X_ADDRESS_NATT_REM, keys.dst if not inbound else keys.src,
                                natt_port))  # fmt: skip
    if pair_spi:
        exts.append(SadbXPair(pair_spi))
    return PfkeyMessage(msg_type, SaType.ESP, seq=seq, pid=pid, extensions=tuple(exts))


def _inner_pair(src: Endpoint, dst: Endpoint) -> tuple[SadbAddress, SadbAddress]:
    return (
        SadbAddress(ExtType.ADDRESS_PROXY, src.address, src.port, src.proto, src.prefixlen),
        SadbAddress(ExtType.X_ADDRESS_INNER_DST, dst.address, dst.port, dst.proto, dst.prefixlen),
    )
