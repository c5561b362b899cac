"""Builders for the PF_KEY requests a key manager or operator sends most (RFC 2367 §3.1)."""

from __future__ import annotations

import ipaddress

from larval.pfkey.constants import ExtType, SadbMsgType, SaState, SaType
from larval.pfkey.extensions import (
    Extension,
    SadbAddress,
    SadbKey,
    SadbLifetime,
    SadbSa,
    SadbSpirange,
)
from larval.pfkey.message import PfkeyMessage

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def address_pair(src: Address, dst: Address) -> tuple[SadbAddress, SadbAddress]:
    return (
        SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address(src)),
        SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address(dst)),
    )


def getspi(
    src: Address,
    dst: Address,
    *,
    seq: int = 0,
    pid: int = 0,
    spi_min: int = 0x100,
    spi_max: int = 0xFFFFFFFF,
    satype: int = SaType.ESP,
) -> PfkeyMessage:
    """GETSPI <base, address(S, D), SPI range>."""
    return PfkeyMessage(
        SadbMsgType.GETSPI,
        satype,
        seq=seq,
        pid=pid,
        extensions=(*address_pair(src, dst), SadbSpirange(spi_min, spi_max)),
    )


def keyed(
    msg_type: int,
    spi: int,
    src: Address,
    dst: Address,
    *,
    encrypt: int,
    encrypt_key: bytes = b"",
    auth: int = 0,
    auth_key: bytes = b"",
    soft: SadbLifetime | None = None,
    hard: SadbLifetime | None = None,
    seq: int = 0,
    pid: int = 0,
    replay: int = 32,
    satype: int = SaType.ESP,
    extra: tuple[Extension, ...] = (),
) -> PfkeyMessage:
    """ADD or UPDATE <base, SA, [lifetimes], address(S, D), key(A, E)>."""
    exts: list[Extension] = [SadbSa(spi, replay, SaState.MATURE, auth, encrypt)]
    if hard is not None:
        exts.append(hard)
    if soft is not None:
        exts.append(soft)
    exts.extend(address_pair(src, dst))
    if auth_key:
        exts.append(SadbKey(ExtType.KEY_AUTH, len(auth_key) * 8, auth_key))
    if encrypt_key:
        exts.append(SadbKey(ExtType.KEY_ENCRYPT, len(encrypt_key) * 8, encrypt_key))
    exts.extend(extra)
    return PfkeyMessage(msg_type, satype, seq=seq, pid=pid, extensions=tuple(exts))


def by_spi(
    msg_type: int,
    spi: int,
    dst: Address,
    src: Address | None = None,
    *,
    seq: int = 0,
    pid: int = 0,
    satype: int = SaType.ESP,
) -> PfkeyMessage:
    """DELETE or GET (or X_DELPAIR) <base, SA, address(S*, D)>."""
    exts: list[Extension] = [SadbSa(spi)]
    if src is not None:
        exts.append(SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address(src)))
    exts.append(SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address(dst)))
    return PfkeyMessage(msg_type, satype, seq=seq, pid=pid, extensions=tuple(exts))
