"""A small PF_KEY reader for the socket tests, written from the struct layouts of
RFC 2367 §2 and illumos net/pfkeyv2.h — deliberately not larval's own codec.

Host-order fields are little-endian here; the SPI and sockaddr ports and addresses are
in network order.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

SADB_ACQUIRE = 6
SADB_X_INVERSE_ACQUIRE = 12
EXT_SA = 1
EXT_ADDRESS_SRC, EXT_ADDRESS_DST, EXT_ADDRESS_PROXY = 5, 6, 7
EXT_PROPOSAL = 13
EXT_SUPPORTED_AUTH, EXT_SUPPORTED_ENCRYPT = 14, 15
EXT_X_EPROP, EXT_X_KM_COOKIE, EXT_X_ADDRESS_INNER_DST = 18, 19, 22


@dataclass
class Raw:
    version: int
    msg_type: int
    errno: int
    satype: int
    length: int
    diagnostic: int
    seq: int
    pid: int
    exts: dict[int, list[bytes]] = field(default_factory=dict)  # type -> whole extensions


def parse(data: bytes) -> Raw:
    # struct sadb_msg: u8 version, type, errno, satype; u16 len (64-bit words), reserved
    # (illumos: diagnostic); u32 seq, pid.
    msg = Raw(*struct.unpack_from("<BBBBHHII", data))
    assert msg.length * 8 == len(data), "sadb_msg_len must count the whole message"
    off = 16
    while off < len(data):
        ext_len, ext_type = struct.unpack_from("<HH", data, off)  # struct sadb_ext
        assert ext_len > 0
        msg.exts.setdefault(ext_type, []).append(data[off : off + ext_len * 8])
        off += ext_len * 8
    assert off == len(data)
    return msg


def sa_spi(ext: bytes) -> tuple[int, int]:
    """struct sadb_sa: len, exttype, spi (network order), replay, state, auth, encrypt."""
    (spi,) = struct.unpack_from("!I", ext, 4)
    state = ext[9]
    return spi, state


def address(ext: bytes) -> tuple[str, int, int, int]:
    """struct sadb_address + sockaddr: (address, port, proto, prefixlen)."""
    proto, prefixlen = ext[4], ext[5]
    (family,) = struct.unpack_from("<H", ext, 8)
    (port,) = struct.unpack_from("!H", ext, 10)
    if family == 2:  # sockaddr_in
        addr = str(ipaddress.IPv4Address(ext[12:16]))
    else:  # illumos sockaddr_in6: family, port, flowinfo, addr[16]
        assert family == 26
        addr = str(ipaddress.IPv6Address(ext[16:32]))
    return addr, port, proto, prefixlen


def combs(ext: bytes) -> list[tuple[int, int, int, int, int, int]]:
    """struct sadb_prop (8 bytes) then struct sadb_comb (72 bytes each):
    (auth, encrypt, auth_minbits, auth_maxbits, encrypt_minbits, encrypt_maxbits)."""
    out = []
    for off in range(8, len(ext), 72):
        auth, encrypt, _flags, amin, amax, emin, emax = struct.unpack_from("<BBHHHHH", ext, off)
        out.append((auth, encrypt, amin, amax, emin, emax))
    return out


def comb_lifetimes(ext: bytes, index: int) -> tuple[int, int, int, int]:
    """(soft_bytes, hard_bytes, soft_addtime, hard_addtime) of comb `index`."""
    return struct.unpack_from("<QQQQ", ext, 8 + 72 * index + 24)


def ecombs(ext: bytes) -> list[list[tuple[int, int, int, int, int]]]:
    """illumos X_EPROP: sadb_prop header with numecombs at byte 6, then per ecomb a
    64-byte sadb_x_ecomb (numalgs first) and numalgs 8-byte sadb_x_algdesc:
    (satype, algtype, alg, minbits, maxbits)."""
    (numecombs,) = struct.unpack_from("<H", ext, 6)
    out, off = [], 8
    for _ in range(numecombs):
        numalgs = ext[off]
        off += 64
        algs = []
        for _ in range(numalgs):
            satype, algtype, alg, _res, minbits, maxbits = struct.unpack_from("<BBBBHH", ext, off)
            algs.append((satype, algtype, alg, minbits, maxbits))
            off += 8
        out.append(algs)
    assert off == len(ext)
    return out


def kmc(ext: bytes) -> tuple[int, int]:
    """struct sadb_x_kmc: len, exttype, u32 proto, u64 cookie."""
    proto, cookie = struct.unpack_from("<IQ", ext, 4)
    return proto, cookie
