"""Helpers for the SADB tests: addresses, keys, message builders."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SadbSa
from larval.pfkey.requests import getspi, keyed
from larval.sadb import PfkeyReply, Sadb, SecurityAssociation

PEER = "192.0.2.1"
LOCAL = "192.0.2.2"
PEER_B = ipaddress.ip_address(PEER).packed
LOCAL_B = ipaddress.ip_address(LOCAL).packed
GCM_KEY = bytes(range(20))  # 128-bit AES key + 32-bit salt (RFC 4106 §8.1)


@dataclass
class Released:
    inbound: list[tuple[int, bytes]] = field(default_factory=list)
    outbound: list[tuple[int, bytes]] = field(default_factory=list)


def recording_sadb(released: Released, **kw: object) -> Sadb:
    """A Sadb whose released packets land in `released`."""

    def inbound(sa: SecurityAssociation, packet: bytes) -> None:
        released.inbound.append((sa.spi, packet))

    def outbound(sa: SecurityAssociation, packet: bytes) -> None:
        released.outbound.append((sa.spi, packet))

    return Sadb(on_inbound_release=inbound, on_outbound_release=outbound, **kw)  # type: ignore[arg-type]


def only(replies: list[PfkeyReply]) -> PfkeyMessage:
    assert len(replies) == 1, replies
    return replies[0].message


def larval_spi(sadb: Sadb, now: float = 0.0, seq: int = 1) -> int:
    """GETSPI for PEER -> LOCAL; the SPI of the LARVAL SA."""
    reply = only(sadb.handle(getspi(PEER, LOCAL, seq=seq), now))
    assert reply.errno == 0, reply
    sa_ext = reply.find(1)
    assert isinstance(sa_ext, SadbSa)
    return sa_ext.spi


def update(spi: int, *, src: str = PEER, dst: str = LOCAL, **kw: object) -> PfkeyMessage:
    """UPDATE with AES-GCM-16 keys."""
    return keyed(
        SadbMsgType.UPDATE,
        spi,
        src,
        dst,
        encrypt=EncryptAlg.AES_GCM_16,
        encrypt_key=GCM_KEY,
        **kw,  # type: ignore[arg-type]
    )


def add(spi: int, *, src: str = LOCAL, dst: str = PEER, **kw: object) -> PfkeyMessage:
    """ADD of an AES-GCM-16 SA, outbound by default."""
    return keyed(
        SadbMsgType.ADD,
        spi,
        src,
        dst,
        encrypt=EncryptAlg.AES_GCM_16,
        encrypt_key=GCM_KEY,
        **kw,  # type: ignore[arg-type]
    )
