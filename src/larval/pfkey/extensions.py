"""PF_KEY v2 extensions: one frozen dataclass per extension layout.

Every extension starts with the generic header of RFC 2367 §2.2, a u16 length in 64-bit
words (the header included) and a u16 type. The *body* of an extension is everything
after those four bytes, up to the length. ``encode`` writes a whole extension, generic
header and zero padding included, as one byte string; ``decode`` reads a body, and
`DECODERS` names the class that reads each type. `larval.pfkey.message` walks and
checks the generic headers. Each layout is a precompiled `struct`: PF_KEY messages
cross between the key manager and the stack several times for every CHILD_SA.

Byte order: every integer is in host order, little-endian here, except the SPIs
(sadb_sa_spi, sadb_x_pair_spi), the SPI range bounds, and the port, flow label and
address inside a sockaddr, which are in network order.

Reserved fields and padding are written as zeros and ignored when read, so a message
re-encodes to the same bytes whenever its sender zeroed them as RFC 2367 §2.2 requires.
A body that cannot be read raises `PfkeyError` with EINVAL and the diagnostic illumos
keysock would answer with.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar, Self, TypeAlias, TypeVar

from larval.pfkey.constants import (
    AF_INET,
    AF_INET6,
    AF_INET6_LINUX,
    EXT_MAX,
    Diagnostic,
    ExtType,
)
from larval.pfkey.errors import PfkeyError
from larval.pfkey.quickinit import quick_init

__all__ = [
    "CACHED_TYPES",
    "DECODERS",
    "EXT_HEADER",
    "Extension",
    "SadbAddress",
    "SadbAlg",
    "SadbComb",
    "SadbIdent",
    "SadbKey",
    "SadbLifetime",
    "SadbProp",
    "SadbSa",
    "SadbSens",
    "SadbSpirange",
    "SadbSupported",
    "SadbXAlgdesc",
    "SadbXEcomb",
    "SadbXEdump",
    "SadbXEprop",
    "SadbXEreg",
    "SadbXInnerPairs",
    "SadbXKmc",
    "SadbXPair",
    "SadbXReplayCtr",
    "UnknownExtension",
]

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

#: RFC 2367 §2.2 sadb_ext: len (64-bit words, the header included), type.
EXT_HEADER = struct.Struct("<HH")
_ZEROS = bytes(8)

# Layouts, precompiled. Where a whole extension is one struct, it starts with the header.
_SA_BODY = struct.Struct("<4sBBBBI")  # spi (network order, 4 raw bytes), u8 x4, flags
_SA = struct.Struct("<HH" + _SA_BODY.format[1:])  # the generic header, then the body
_ADDR_HDR = struct.Struct("<BBHH")  # proto, prefixlen, reserved, sa_family (host order)
_ADDR_HEAD = struct.Struct("<HHBBHH")  # the generic header, then _ADDR_HDR
_SIN_REST = struct.Struct(">HI8x")  # sin_port, sin_addr, sin_zero
_SIN6_MID = struct.Struct(">HI16s")  # sin6_port, sin6_flowinfo, sin6_addr
_SIN6_TAIL = struct.Struct("<II")  # sin6_scope_id, __sin6_src_id (host order)
_KEY_HDR = struct.Struct("<HH")  # bits, reserved
_IDENT = struct.Struct("<HHQ")  # type, reserved, id
_SENS = struct.Struct("<IBBBBI")  # dpd, sens_level, sens_len, integ_level, integ_len, flags
_PROP_HDR = struct.Struct("<BBH")  # replay, reserved (eres), numecombs (EPROP only)
_COMB = struct.Struct("<BBHHHHH4xIIQQQQQQ")
_ECOMB = struct.Struct("<BxH4xIIQQQQQQ")
_ALGDESC = struct.Struct("<BBBxHH")
_SUPPORTED_HDR_SIZE = 4  # u32 reserved
_ALG = struct.Struct("<BBHHBB")

_SIN_SIZE = 16  # illumos sockaddr_in
_SIN6_SIZE = 32  # illumos sockaddr_in6; Linux's 28 bytes padded to the same 8-byte slot

# Which diagnostic each address extension's failures get (illumos keysock_malformed and
# the SADB_X_DIAGNOSTIC_BAD_*_AF codes sadb.c uses for families it cannot handle).
_ADDR_BAD_AF: dict[int, int] = {
    ExtType.ADDRESS_SRC: Diagnostic.BAD_SRC_AF,
    ExtType.ADDRESS_DST: Diagnostic.BAD_DST_AF,
    ExtType.ADDRESS_PROXY: Diagnostic.BAD_PROXY_AF,
    ExtType.X_ADDRESS_NATT_LOC: Diagnostic.BAD_NATT_LOC_AF,
    ExtType.X_ADDRESS_NATT_REM: Diagnostic.BAD_NATT_REM_AF,
    ExtType.X_ADDRESS_INNER_DST: Diagnostic.BAD_INNER_DST_AF,
}
_ADDR_MALFORMED: dict[int, int] = {
    ExtType.ADDRESS_SRC: Diagnostic.MALFORMED_SRC,
    ExtType.ADDRESS_DST: Diagnostic.MALFORMED_DST,
    ExtType.ADDRESS_PROXY: Diagnostic.MALFORMED_INNER_SRC,
    ExtType.X_ADDRESS_NATT_LOC: Diagnostic.MALFORMED_NATT_LOC,
    ExtType.X_ADDRESS_NATT_REM: Diagnostic.MALFORMED_NATT_REM,
    ExtType.X_ADDRESS_INNER_DST: Diagnostic.MALFORMED_INNER_DST,
}
_KEY_MALFORMED: dict[int, int] = {
    ExtType.KEY_AUTH: Diagnostic.MALFORMED_AKEY,
    ExtType.KEY_ENCRYPT: Diagnostic.MALFORMED_EKEY,
}


# The IPv4 addresses decoded lately: a key manager and its stack name the same few
# hosts in message after message, and IPv4Address values are immutable.
_V4_SEEN: dict[int, ipaddress.IPv4Address] = {}
_V4_SEEN_MAX = 1024


def _v4(value: int) -> ipaddress.IPv4Address:
    addr = _V4_SEEN.get(value)
    if addr is None:
        if len(_V4_SEEN) >= _V4_SEEN_MAX:
            _V4_SEEN.clear()
        addr = _V4_SEEN[value] = ipaddress.IPv4Address(value)
    return addr


def _wrap(ext_type: int, body: bytes) -> bytes:
    """A whole extension: the generic header, ``body``, zero padding to 64-bit words."""
    size = 4 + len(body)
    pad = -size % 8
    words = (size + pad) >> 3
    if words > 0xFFFF:
        raise ValueError(f"extension {ext_type} of {words} words is too long")
    return EXT_HEADER.pack(words, ext_type) + body + _ZEROS[:pad]


def _bad_extlen(ext_type: int, got: int, want: str) -> PfkeyError:
    # Extension length inconsistent with its structure: illumos answers length faults
    # found while walking the extensions with EINVAL/BAD_EXTLEN (keysock_get_ext).
    return PfkeyError(
        errno.EINVAL,
        Diagnostic.BAD_EXTLEN,
        f"extension type {ext_type}: body of {got} bytes, expected {want}",
    )


def _ceil8(n: int) -> int:
    return (n + 7) & ~7


_T = TypeVar("_T")


def _memoized(cls: type[_T]) -> type[_T]:
    """Make ``encode`` of the frozen class ``cls`` keep its wire form in the slot
    ``_wire`` (a field outside the constructor and comparisons, None until the first
    encode). The values are immutable, so the bytes never go stale; a key manager sends
    the same addresses, SPI range and lifetimes in message after message, and a decoded
    value from `larval.pfkey.message`'s cache is encoded again in each reply."""
    compute = cls.encode  # type: ignore[attr-defined]
    store = cls._wire.__set__  # type: ignore[attr-defined]

    def encode(self: Any) -> bytes:
        wire: bytes | None = self._wire
        if wire is None:
            wire = compute(self)
            store(self, wire)
        return wire

    encode.__doc__ = compute.__doc__
    encode.__qualname__ = f"{cls.__qualname__}.encode"
    cls.encode = encode  # type: ignore[attr-defined]
    return cls


_Wire: TypeAlias = "bytes | None"  # a name that a field called ``bytes`` cannot shadow


class _Fixed:
    """An extension of one size whose body is one struct, ``_BODY``: the dataclass
    fields other than ``ext_type``, in the order they are declared."""

    __slots__ = ()
    _BODY: ClassVar[struct.Struct]
    _WORDS: ClassVar[int]  # sadb_ext_len
    _VALUES: ClassVar[attrgetter[tuple[Any, ...]]]  # ext_type, then the body's fields
    _AT: ClassVar[int]  # where ext_type stands among the constructor's arguments
    ext_type: int

    def __init_subclass__(cls) -> None:
        # A name with a leading underscore (the wire memo) is not a field of the body.
        fields = [n for n in cls.__annotations__ if not n.startswith("_")]
        names = [n for n in fields if n != "ext_type"]
        cls._AT = fields.index("ext_type")
        assert (4 + cls._BODY.size) % 8 == 0, cls  # RFC 2367 §2.2: whole 64-bit words
        cls._WORDS = (4 + cls._BODY.size) // 8
        cls._VALUES = attrgetter("ext_type", *names)

    def encode(self) -> bytes:
        values = self._VALUES(self)
        return EXT_HEADER.pack(self._WORDS, values[0]) + self._BODY.pack(*values[1:])

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> Self:
        layout = cls._BODY
        if len(body) != layout.size:
            raise _bad_extlen(ext_type, len(body), str(layout.size))
        values = layout.unpack(body)
        at = cls._AT
        return cls(*values[:at], ext_type, *values[at:])  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------


@quick_init
@dataclass(frozen=True, slots=True)
class SadbSa:
    """Security association extension, SADB_EXT_SA (RFC 2367 §2.3.2, ``sadb_sa``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |          sadb_sa_len = 2      |       sadb_sa_exttype = 1     |
        +---------------+---------------+---------------+---------------+
        |                 sadb_sa_spi (network byte order)              |
        +---------------+---------------+---------------+---------------+
        | sadb_sa_replay| sadb_sa_state | sadb_sa_auth  |sadb_sa_encrypt|
        +---------------+---------------+---------------+---------------+
        |                         sadb_sa_flags                         |
        +---------------+---------------+---------------+---------------+

    ``replay`` is the replay window size in packets, ``state`` an `SaState`, ``auth``
    and ``encrypt`` the algorithm ids, ``flags`` `SaFlags` bits.
    """

    spi: int
    replay: int = 0
    state: int = 0
    auth: int = 0
    encrypt: int = 0
    flags: int = 0
    ext_type: int = int(ExtType.SA)

    def encode(self) -> bytes:
        return _SA.pack(2, self.ext_type, self.spi.to_bytes(4, "big"), self.replay, self.state,
                        self.auth, self.encrypt, self.flags)  # fmt: skip

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbSa:
        if len(body) != _SA_BODY.size:
            raise _bad_extlen(ext_type, len(body), str(_SA_BODY.size))
        spi, replay, state, auth, encrypt, flags = _SA_BODY.unpack(body)
        return cls(int.from_bytes(spi, "big"), replay, state, auth, encrypt, flags, ext_type)


@_memoized
@quick_init
@dataclass(frozen=True, slots=True)
class SadbLifetime(_Fixed):
    """Lifetime extension, CURRENT/HARD/SOFT (RFC 2367 §2.3.3) or illumos X_LIFETIME_IDLE::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |      sadb_lifetime_len = 4    |     sadb_lifetime_exttype     |
        +---------------+---------------+---------------+---------------+
        |                   sadb_lifetime_allocations                   |
        +---------------+---------------+---------------+---------------+
        |                sadb_lifetime_bytes (64 bits)                  |
        +---------------+---------------+---------------+---------------+
        |               sadb_lifetime_addtime (64 bits)                 |
        +---------------+---------------+---------------+---------------+
        |               sadb_lifetime_usetime (64 bits)                 |
        +---------------+---------------+---------------+---------------+

    For CURRENT, the counts so far and the times (seconds since the epoch) of creation
    and first use; for HARD and SOFT, limits (times in seconds after add / first use);
    for IDLE, the idle-time limits in the addtime (soft) and usetime (hard) slots.
    """

    _BODY = struct.Struct("<IQQQ")

    ext_type: int
    allocations: int = 0
    bytes: int = 0
    addtime: int = 0
    usetime: int = 0
    _wire: _Wire = field(default=None, init=False, repr=False, compare=False)


@_memoized
@quick_init
@dataclass(frozen=True, slots=True)
class SadbAddress:
    """Address extension (RFC 2367 §2.3.4, ``sadb_address``) followed by a sockaddr::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |      sadb_address_len         |     sadb_address_exttype      |
        +---------------+---------------+---------------+---------------+
        |  _proto       |  _prefixlen   |     sadb_address_reserved     |
        +---------------+---------------+---------------+---------------+
        >   sockaddr_in (16 bytes) or sockaddr_in6 (32 bytes), then     <
        >   zero padding to a 64-bit boundary                           <
        +---------------+---------------+---------------+---------------+

        sockaddr_in:  sin_family (host) | sin_port (net) | sin_addr[4] | sin_zero[8]
        sockaddr_in6: sin6_family (host) | sin6_port (net) | sin6_flowinfo (net) |
                      sin6_addr[16] | sin6_scope_id (host) | __sin6_src_id (illumos)

    Types SRC, DST, PROXY (= illumos X_ADDRESS_INNER_SRC), X_ADDRESS_NATT_LOC,
    X_ADDRESS_NATT_REM and X_ADDRESS_INNER_DST. ``proto`` is the upper-layer protocol
    the ports belong to, ``prefixlen`` the prefix of an inner (tunnel) address.
    ``family`` is None for the usual family of ``addr`` (AF_INET 2, illumos AF_INET6
    26); a decoded Linux AF_INET6 (10) is kept so that the message re-encodes as read.
    """

    ext_type: int
    addr: IPAddress
    port: int = 0
    proto: int = 0
    prefixlen: int = 0
    flowinfo: int = 0
    scope_id: int = 0
    family: int | None = None
    _wire: _Wire = field(default=None, init=False, repr=False, compare=False)
    _packed: _Wire = field(default=None, init=False, repr=False, compare=False)

    def packed(self) -> bytes:
        """``addr.packed``, computed once: the SADB keys its tables by it, and a decoded
        address comes again in message after message (`larval.pfkey.message`)."""
        raw = self._packed
        if raw is None:
            raw = self.addr.packed
            _set_address_packed(self, raw)
        return raw

    def encode(self) -> bytes:
        addr = self.addr
        is_v6 = isinstance(addr, ipaddress.IPv6Address)
        family = self.family
        if family is None:
            family = AF_INET6 if is_v6 else AF_INET
        if family == AF_INET and not is_v6:
            if self.flowinfo or self.scope_id:
                raise ValueError("an IPv4 sockaddr has no flowinfo or scope_id")
            return _ADDR_HEAD.pack(
                3, self.ext_type, self.proto, self.prefixlen, 0, family
            ) + _SIN_REST.pack(self.port, int(addr))
        if family in (AF_INET6, AF_INET6_LINUX) and is_v6:
            return (
                _ADDR_HEAD.pack(5, self.ext_type, self.proto, self.prefixlen, 0, family)
                + _SIN6_MID.pack(self.port, self.flowinfo, addr.packed)
                + _SIN6_TAIL.pack(self.scope_id, 0)
            )
        raise ValueError(f"address family {family} does not fit {addr!r}")

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbAddress:
        if len(body) == 20:  # the usual case, a sockaddr_in: checked in one test
            proto, prefixlen, _, family = _ADDR_HDR.unpack_from(body)
            if family == AF_INET:
                port, value = _SIN_REST.unpack_from(body, 6)
                return cls(ext_type, _v4(value), port, proto, prefixlen)
        return cls._decode_any(ext_type, body)

    @classmethod
    def _decode_any(cls, ext_type: int, body: bytes) -> SadbAddress:
        """`decode` for every body, checked step by step."""
        room = len(body) - 4  # after proto, prefixlen and reserved
        if room < 2:
            # keysock ext_check: an address extension must carry a sockaddr.
            raise PfkeyError(
                errno.EINVAL,
                _ADDR_MALFORMED.get(ext_type, Diagnostic.BAD_EXTLEN),
                f"address extension type {ext_type} has no room for a sockaddr",
            )
        proto, prefixlen, _, family = _ADDR_HDR.unpack_from(body)
        if family == AF_INET:
            need = _SIN_SIZE
        elif family in (AF_INET6, AF_INET6_LINUX):
            need = _SIN6_SIZE
        else:
            raise PfkeyError(
                errno.EINVAL,
                _ADDR_BAD_AF.get(ext_type, Diagnostic.NONE),
                f"address extension type {ext_type}: unknown address family {family}",
            )
        if room < need:
            raise PfkeyError(
                errno.EINVAL,
                _ADDR_MALFORMED.get(ext_type, Diagnostic.BAD_EXTLEN),
                f"address extension type {ext_type}: {room} bytes cannot hold a "
                f"family {family} sockaddr",
            )
        if family == AF_INET:
            port, value = _SIN_REST.unpack_from(body, 6)
            return cls(ext_type, _v4(value), port, proto, prefixlen)
        port, flowinfo, raw16 = _SIN6_MID.unpack_from(body, 6)
        scope_id, _src_id = _SIN6_TAIL.unpack_from(body, 28)
        return cls(
            ext_type,
            ipaddress.IPv6Address(raw16),
            port,
            proto,
            prefixlen,
            flowinfo,
            scope_id,
            None if family == AF_INET6 else family,
        )


_set_address_packed = vars(SadbAddress)["_packed"].__set__


@quick_init
@dataclass(frozen=True, slots=True, repr=False)
class SadbKey:
    """Key extension, KEY_AUTH or KEY_ENCRYPT (RFC 2367 §2.3.4, ``sadb_key``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |         sadb_key_len          |       sadb_key_exttype        |
        +---------------+---------------+---------------+---------------+
        |         sadb_key_bits         |       sadb_key_reserved       |
        +---------------+---------------+---------------+---------------+
        >   key material, ceil(bits / 8) bytes, zero padding to 64 bits <
        +---------------+---------------+---------------+---------------+

    ``key`` holds exactly ceil(bits / 8) bytes. The repr never shows them.
    """

    ext_type: int
    bits: int
    key: bytes

    def __repr__(self) -> str:
        return f"SadbKey(ext_type={self.ext_type}, bits={self.bits}, key=<{len(self.key)} bytes>)"

    def encode(self) -> bytes:
        if len(self.key) != (self.bits + 7) // 8:
            raise ValueError(f"a {self.bits}-bit key is not {len(self.key)} bytes")
        return _wrap(self.ext_type, _KEY_HDR.pack(self.bits, 0) + self.key)

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbKey:
        (bits, _) = _KEY_HDR.unpack_from(body)
        nbytes = (bits + 7) // 8
        # keysock ext_check: no zero-bit keys, and the length must be exactly the key
        # rounded up to whole 64-bit words.
        if bits == 0 or len(body) != _KEY_HDR.size + _ceil8(nbytes):
            raise PfkeyError(
                errno.EINVAL,
                _KEY_MALFORMED.get(ext_type, Diagnostic.BAD_EXTLEN),
                f"key extension type {ext_type}: {bits} bits in {len(body) + 4} bytes",
            )
        return cls(ext_type, bits, body[4 : 4 + nbytes])


@quick_init
@dataclass(frozen=True, slots=True)
class SadbIdent:
    """Identity extension, IDENTITY_SRC or IDENTITY_DST (RFC 2367 §2.3.5)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |        sadb_ident_len         |      sadb_ident_exttype       |
        +---------------+---------------+---------------+---------------+
        |        sadb_ident_type        |      sadb_ident_reserved      |
        +---------------+---------------+---------------+---------------+
        |                    sadb_ident_id (64 bits)                    |
        +---------------+---------------+---------------+---------------+
        >   optional NUL-terminated identity string, zero padded        <
        +---------------+---------------+---------------+---------------+

    ``ident_type`` is an `IdentType`; ``string`` excludes the NUL and the padding.
    """

    ext_type: int
    ident_type: int
    ident_id: int = 0
    string: bytes = b""

    def encode(self) -> bytes:
        body = _IDENT.pack(self.ident_type, 0, self.ident_id)
        if self.string:
            if b"\0" in self.string:
                raise ValueError("an identity string cannot contain NUL")
            body += self.string + b"\0"
        return _wrap(self.ext_type, body)

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbIdent:
        if len(body) < _IDENT.size:
            raise _bad_extlen(ext_type, len(body), f"at least {_IDENT.size}")
        ident_type, _, ident_id = _IDENT.unpack_from(body)
        rest = body[_IDENT.size :]
        nul = rest.find(0)
        # Like keysock ext_check, a string without its NUL ends before the last byte.
        string = rest[:nul] if nul >= 0 else rest[:-1]
        return cls(ext_type, ident_type, ident_id, string)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbSens:
    """Sensitivity extension, SENSITIVITY or illumos X_OUTER_SENS (RFC 2367 §2.3.6)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |         sadb_sens_len         |       sadb_sens_exttype       |
        +---------------+---------------+---------------+---------------+
        |                         sadb_sens_dpd                         |
        +---------------+---------------+---------------+---------------+
        |_sens_level    |_sens_len      |_integ_level   |_integ_len     |
        +---------------+---------------+---------------+---------------+
        |               sadb_x_sens_flags (was reserved)                |
        +---------------+---------------+---------------+---------------+
        >   sens_len 64-bit words of sensitivity bitmap                 <
        >   integ_len 64-bit words of integrity bitmap                  <
        +---------------+---------------+---------------+---------------+

    The bitmap lengths are derived from the tuples on encode.
    """

    ext_type: int
    dpd: int
    sens_level: int
    integ_level: int
    flags: int = 0
    sens_bitmap: tuple[int, ...] = ()
    integ_bitmap: tuple[int, ...] = ()

    def encode(self) -> bytes:
        words = self.sens_bitmap + self.integ_bitmap
        body = _SENS.pack(self.dpd, self.sens_level, len(self.sens_bitmap), self.integ_level,
                          len(self.integ_bitmap), self.flags)  # fmt: skip
        return _wrap(self.ext_type, body + struct.pack(f"<{len(words)}Q", *words))

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbSens:
        if len(body) < _SENS.size:
            raise _bad_extlen(ext_type, len(body), f"at least {_SENS.size}")
        dpd, sens_level, sens_len, integ_level, integ_len, flags = _SENS.unpack_from(body)
        want = _SENS.size + 8 * (sens_len + integ_len)
        if len(body) != want:
            raise _bad_extlen(ext_type, len(body), f"{want} for the bitmap lengths")
        words = struct.unpack_from(f"<{sens_len + integ_len}Q", body, _SENS.size)
        return cls(
            ext_type,
            dpd,
            sens_level,
            integ_level,
            flags,
            words[:sens_len],
            words[sens_len:],
        )


@quick_init
@dataclass(frozen=True, slots=True)
class SadbComb:
    """One combination of a PROPOSAL (RFC 2367 §2.3.7, ``sadb_comb``), 72 bytes::

    0               1               2               3
    +---------------+---------------+---------------+---------------+
    |sadb_comb_auth |  _encrypt     |       sadb_comb_flags         |
    +---------------+---------------+---------------+---------------+
    |   sadb_comb_auth_minbits      |    sadb_comb_auth_maxbits     |
    +---------------+---------------+---------------+---------------+
    |  sadb_comb_encrypt_minbits    |   sadb_comb_encrypt_maxbits   |
    +---------------+---------------+---------------+---------------+
    |                      sadb_comb_reserved                       |
    +---------------+---------------+---------------+---------------+
    |  sadb_comb_soft_allocations   |  sadb_comb_hard_allocations   |  (u32 each)
    +---------------+---------------+---------------+---------------+
    |  soft_bytes, hard_bytes, soft_addtime, hard_addtime,          |
    |  soft_usetime, hard_usetime (u64 each)                        |
    +---------------+---------------+---------------+---------------+
    """

    auth: int = 0
    encrypt: int = 0
    flags: int = 0
    auth_minbits: int = 0
    auth_maxbits: int = 0
    encrypt_minbits: int = 0
    encrypt_maxbits: int = 0
    soft_allocations: int = 0
    hard_allocations: int = 0
    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_addtime: int = 0
    hard_addtime: int = 0
    soft_usetime: int = 0
    hard_usetime: int = 0

    def pack(self) -> bytes:
        return _COMB.pack(
            self.auth,
            self.encrypt,
            self.flags,
            self.auth_minbits,
            self.auth_maxbits,
            self.encrypt_minbits,
            self.encrypt_maxbits,
            self.soft_allocations,
            self.hard_allocations,
            self.soft_bytes,
            self.hard_bytes,
            self.soft_addtime,
            self.hard_addtime,
            self.soft_usetime,
            self.hard_usetime,
        )


@quick_init
@dataclass(frozen=True, slots=True)
class SadbProp:
    """Proposal extension, PROPOSAL (RFC 2367 §2.3.7, ``sadb_prop``)::

    0               1               2               3
    +---------------+---------------+---------------+---------------+
    |         sadb_prop_len         |       sadb_prop_exttype       |
    +---------------+---------------+---------------+---------------+
    |sadb_prop_replay|          sadb_prop_reserved (3 bytes)       |
    +---------------+---------------+---------------+---------------+
    >   sadb_comb[], as many as the length holds                    <
    +---------------+---------------+---------------+---------------+
    """

    combs: tuple[SadbComb, ...] = ()
    replay: int = 0
    ext_type: int = int(ExtType.PROPOSAL)

    def encode(self) -> bytes:
        combs = b"".join([comb.pack() for comb in self.combs])
        return _wrap(self.ext_type, _PROP_HDR.pack(self.replay, 0, 0) + combs)

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbProp:
        (replay, _, _) = _PROP_HDR.unpack_from(body)
        size = len(body) - _PROP_HDR.size
        if size % _COMB.size:
            raise _bad_extlen(ext_type, len(body), f"4 + a multiple of {_COMB.size}")
        combs = tuple(SadbComb(*c) for c in _COMB.iter_unpack(body[_PROP_HDR.size :]))
        return cls(combs, replay, ext_type)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXAlgdesc:
    """An algorithm descriptor of an extended combination (illumos ``sadb_x_algdesc``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |    _satype    |   _algtype    |     _alg      |   _reserved   |
        +---------------+---------------+---------------+---------------+
        |     sadb_x_algdesc_minbits    |    sadb_x_algdesc_maxbits     |
        +---------------+---------------+---------------+---------------+

    ``satype`` a `SaType`, ``algtype`` an `AlgType`, ``alg`` the algorithm id.
    """

    satype: int
    algtype: int
    alg: int
    minbits: int = 0
    maxbits: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXEcomb:
    """An extended combination (illumos ``sadb_x_ecomb``), 64 bytes, then its algdescs::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |   _numalgs    |   _reserved   |      sadb_x_ecomb_flags       |
        +---------------+---------------+---------------+---------------+
        |                     sadb_x_ecomb_reserved2                    |
        +---------------+---------------+---------------+---------------+
        |      soft_allocations (u32)   |     hard_allocations (u32)    |
        +---------------+---------------+---------------+---------------+
        |  soft_bytes, hard_bytes, soft_addtime, hard_addtime,          |
        |  soft_usetime, hard_usetime (u64 each)                        |
        +---------------+---------------+---------------+---------------+
        >   numalgs x sadb_x_algdesc                                    <
        +---------------+---------------+---------------+---------------+

    All the algorithms of one ecomb are used together; numalgs comes from ``algdescs``.
    """

    algdescs: tuple[SadbXAlgdesc, ...] = ()
    flags: int = 0
    soft_allocations: int = 0
    hard_allocations: int = 0
    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_addtime: int = 0
    hard_addtime: int = 0
    soft_usetime: int = 0
    hard_usetime: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXEprop:
    """Extended proposal, illumos X_EPROP (``sadb_prop`` with a count of ecombs)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |         sadb_prop_len         |     sadb_prop_exttype = 18    |
        +---------------+---------------+---------------+---------------+
        |sadb_prop_replay|  _ereserved  |    sadb_x_prop_numecombs      |
        +---------------+---------------+---------------+---------------+
        >   numecombs x (sadb_x_ecomb, then its numalgs sadb_x_algdesc) <
        +---------------+---------------+---------------+---------------+

    The counts are derived from the tuples on encode; on decode they must account for
    exactly the bytes of the extension.
    """

    ecombs: tuple[SadbXEcomb, ...] = ()
    replay: int = 0
    ext_type: int = int(ExtType.X_EPROP)

    def encode(self) -> bytes:
        parts = [_PROP_HDR.pack(self.replay, 0, len(self.ecombs))]
        for ec in self.ecombs:
            parts.append(
                _ECOMB.pack(
                    len(ec.algdescs),
                    ec.flags,
                    ec.soft_allocations,
                    ec.hard_allocations,
                    ec.soft_bytes,
                    ec.hard_bytes,
                    ec.soft_addtime,
                    ec.hard_addtime,
                    ec.soft_usetime,
                    ec.hard_usetime,
                )
            )
            for ad in ec.algdescs:
                parts.append(_ALGDESC.pack(ad.satype, ad.algtype, ad.alg, ad.minbits, ad.maxbits))
        return _wrap(self.ext_type, b"".join(parts))

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbXEprop:
        end = len(body)
        replay, _, numecombs = _PROP_HDR.unpack_from(body)
        off = _PROP_HDR.size
        ecombs = []
        for _ in range(numecombs):
            if off + _ECOMB.size > end:
                raise _bad_extlen(ext_type, end, f"room for {numecombs} ecombs")
            numalgs, *rest = _ECOMB.unpack_from(body, off)
            off += _ECOMB.size
            if off + numalgs * _ALGDESC.size > end:
                raise _bad_extlen(ext_type, end, f"room for {numalgs} algdescs")
            algdescs = tuple(
                SadbXAlgdesc(*_ALGDESC.unpack_from(body, off + i * _ALGDESC.size))
                for i in range(numalgs)
            )
            off += numalgs * _ALGDESC.size
            ecombs.append(SadbXEcomb(algdescs, *rest))
        if off != end:
            raise _bad_extlen(ext_type, end, f"{off} for {numecombs} ecombs")
        return cls(tuple(ecombs), replay, ext_type)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbAlg:
    """One supported algorithm (RFC 2367 §2.3.8 ``sadb_alg``, illumos ``sadb_x_algb``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        | sadb_alg_id   | sadb_alg_ivlen|       sadb_alg_minbits        |
        +---------------+---------------+---------------+---------------+
        |       sadb_alg_maxbits        |_x_alg_increment|_x_alg_saltbits|
        +---------------+---------------+---------------+---------------+

    ``ivlen`` is in bits; ``increment`` is the key size step in bits and ``saltbits``
    the salt appended to the key (illumos use of RFC 2367's reserved u16).
    """

    id: int
    ivlen: int = 0
    minbits: int = 0
    maxbits: int = 0
    increment: int = 0
    saltbits: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class SadbSupported:
    """Supported algorithms, SUPPORTED_AUTH or SUPPORTED_ENCRYPT (RFC 2367 §2.3.8)::

    0               1               2               3
    +---------------+---------------+---------------+---------------+
    |      sadb_supported_len       |    sadb_supported_exttype     |
    +---------------+---------------+---------------+---------------+
    |                    sadb_supported_reserved                    |
    +---------------+---------------+---------------+---------------+
    >   sadb_alg[], one 64-bit word each                            <
    +---------------+---------------+---------------+---------------+
    """

    ext_type: int
    algs: tuple[SadbAlg, ...] = ()

    def encode(self) -> bytes:
        algs = [_ALG.pack(a.id, a.ivlen, a.minbits, a.maxbits, a.increment, a.saltbits)
                for a in self.algs]  # fmt: skip
        return _wrap(self.ext_type, bytes(_SUPPORTED_HDR_SIZE) + b"".join(algs))

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbSupported:
        if len(body) < _SUPPORTED_HDR_SIZE or (len(body) - _SUPPORTED_HDR_SIZE) % _ALG.size:
            raise _bad_extlen(ext_type, len(body), "4 + a multiple of 8")
        algs = tuple(SadbAlg(*a) for a in _ALG.iter_unpack(body[_SUPPORTED_HDR_SIZE:]))
        return cls(ext_type, algs)


@_memoized
@quick_init
@dataclass(frozen=True, slots=True)
class SadbSpirange(_Fixed):
    """SPI range for GETSPI, SPIRANGE (RFC 2367 §2.3.9, ``sadb_spirange``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |      sadb_spirange_len = 2    |   sadb_spirange_exttype = 16  |
        +---------------+---------------+---------------+---------------+
        |            sadb_spirange_min (network byte order)             |
        +---------------+---------------+---------------+---------------+
        |            sadb_spirange_max (network byte order)             |
        +---------------+---------------+---------------+---------------+
        |                    sadb_spirange_reserved                     |
        +---------------+---------------+---------------+---------------+

    The bounds are SPIs and travel like sadb_sa_spi, in network order: illumos sadb.c
    and Linux af_key.c both read them with ntohl.
    """

    _BODY = struct.Struct(">II4x")

    min: int
    max: int
    ext_type: int = int(ExtType.SPIRANGE)
    _wire: _Wire = field(default=None, init=False, repr=False, compare=False)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXEreg:
    """Extended REGISTER, illumos X_EREG (``sadb_x_ereg``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |       sadb_x_ereg_len         |    sadb_x_ereg_exttype = 17   |
        +---------------+---------------+---------------+---------------+
        | satype[0]     | satype[1]     | ...           | 0 (end)       |
        +---------------+---------------+---------------+---------------+
        >   the array continues into further words if needed; zero pad  <
        +---------------+---------------+---------------+---------------+

    The SA types (u8 each) to get extended ACQUIREs for, ending at the first zero.
    """

    satypes: tuple[int, ...] = ()
    ext_type: int = int(ExtType.X_EREG)

    def encode(self) -> bytes:
        if 0 in self.satypes:
            raise ValueError("SA type 0 ends the X_EREG list and cannot be in it")
        return _wrap(self.ext_type, bytes(self.satypes) + b"\0")

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbXEreg:
        nul = body.find(0)
        # Like keysock_extended_register, an unterminated list ends with the extension.
        return cls(tuple(body if nul < 0 else body[:nul]), ext_type)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXKmc(_Fixed):
    """Key management cookie, illumos X_KM_COOKIE (``sadb_x_kmc``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |     sadb_x_kmc_len = 2        |   sadb_x_kmc_exttype = 19     |
        +---------------+---------------+---------------+---------------+
        |                       sadb_x_kmc_proto                        |
        +---------------+---------------+---------------+---------------+
        |              sadb_x_kmc_cookie64 (64 bits)                    |
        +---------------+---------------+---------------+---------------+

    ``proto`` is a `KmProto`; ``cookie`` is the 64-bit view of the cookie union.
    """

    _BODY = struct.Struct("<IQ")

    proto: int
    cookie: int
    ext_type: int = int(ExtType.X_KM_COOKIE)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXPair(_Fixed):
    """The SPI of the paired SA, illumos X_PAIR (``sadb_x_pair``)::

    0               1               2               3
    +---------------+---------------+---------------+---------------+
    |     sadb_x_pair_len = 1       |   sadb_x_pair_exttype = 23    |
    +---------------+---------------+---------------+---------------+
    |              sadb_x_pair_spi (network byte order)             |
    +---------------+---------------+---------------+---------------+
    """

    _BODY = struct.Struct(">I")

    spi: int
    ext_type: int = int(ExtType.X_PAIR)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXReplayCtr(_Fixed):
    """Replay counter value, illumos X_REPLAY_VALUE (``sadb_x_replay_ctr``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |      sadb_x_rc_len = 2        |    sadb_x_rc_exttype = 24     |
        +---------------+---------------+---------------+---------------+
        |                      sadb_x_rc_replay32                       |
        +---------------+---------------+---------------+---------------+
        |                 sadb_x_rc_replay64 (64 bits)                  |
        +---------------+---------------+---------------+---------------+

    ``replay32`` for 32-bit sequence numbers, ``replay64`` for extended ones (ESN).
    """

    _BODY = struct.Struct("<IQ")

    replay32: int = 0
    replay64: int = 0
    ext_type: int = int(ExtType.X_REPLAY_VALUE)


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXEdump(_Fixed):
    """Extended DUMP request, illumos X_EDUMP (``sadb_x_edump``)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |     sadb_x_edump_len = 2      |   sadb_x_edump_exttype = 25   |
        +---------------+---------------+---------------+---------------+
        |                     sadb_x_edump_reserved                     |
        +---------------+---------------+---------------+---------------+
        |               sadb_x_edump_timeout (64 bits)                  |
        +---------------+---------------+---------------+---------------+

    Dump only the SAs idle for longer than ``timeout`` seconds.
    """

    _BODY = struct.Struct("<4xQ")

    timeout: int
    ext_type: int = int(ExtType.X_EDUMP)


_PAIRS_HDR = struct.Struct("<HH")  # count of pairs, reserved
_INNER_PAIR_TYPES = (int(ExtType.ADDRESS_PROXY), int(ExtType.X_ADDRESS_INNER_DST))


def _malformed_pairs(detail: str) -> PfkeyError:
    return PfkeyError(
        errno.EINVAL,
        Diagnostic.MALFORMED_INNER_PAIRS,
        f"extension type {int(ExtType.X_LARVAL_INNER_PAIRS)} (inner pairs): {detail}",
    )


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXInnerPairs:
    """Further inner selector pairs of a tunnel-mode SA, larval's X_LARVAL_INNER_PAIRS::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |          _len                 |    _exttype = 64 (larval)     |
        +---------------+---------------+---------------+---------------+
        |          _npairs              |          _reserved            |
        +---------------+---------------+---------------+---------------+
        >   npairs x (inner source, inner destination): each a whole    <
        >   sadb_address extension (its own len; exttype 7, then 22)    <
        +---------------+---------------+---------------+---------------+

    One SA (one SPI per direction) may protect several selector pairs: RFC 7296 §2.9
    lets TSi and TSr hold any number of selectors, and a road warrior that asked for an
    IPv4 and an IPv6 address gets both families in one CHILD_SA. The first pair stays in
    ADDRESS_PROXY and X_ADDRESS_INNER_DST, so that a one-pair SA's messages are those
    of illumos; this extension lists the pairs after it, in order. The nested address
    extensions are laid out as their top-level kind (RFC 2367 §2.3.4), and a PF_KEY
    parser that does not know type 64 skips the whole list (RFC 2367 §2.2). Each pair
    is of one address family; an SA's pairs may mix families.
    """

    pairs: tuple[tuple[SadbAddress, SadbAddress], ...] = ()
    ext_type: int = int(ExtType.X_LARVAL_INNER_PAIRS)

    def encode(self) -> bytes:
        parts = [_PAIRS_HDR.pack(len(self.pairs), 0)]
        for src, dst in self.pairs:
            if (src.ext_type, dst.ext_type) != _INNER_PAIR_TYPES:
                raise ValueError(f"an inner pair is of types 7 and 22, not {src.ext_type} "
                                 f"and {dst.ext_type}")  # fmt: skip
            parts.append(src.encode())
            parts.append(dst.encode())
        # The count completes the header's word and each address is whole words, so
        # `_wrap` adds no padding.
        return _wrap(self.ext_type, b"".join(parts))

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbXInnerPairs:
        end = len(body)
        if end < _PAIRS_HDR.size:
            raise _malformed_pairs(f"body of {end} bytes has no pair count")
        count, _ = _PAIRS_HDR.unpack_from(body)
        off = _PAIRS_HDR.size
        pairs: list[tuple[SadbAddress, SadbAddress]] = []
        for index in range(count):
            pair: list[SadbAddress] = []
            for want in _INNER_PAIR_TYPES:
                if off + 4 > end:
                    raise _malformed_pairs(f"pair {index + 1} of {count} runs past the list")
                words, inner_type = EXT_HEADER.unpack_from(body, off)
                stop = off + words * 8
                if inner_type != want:
                    raise _malformed_pairs(
                        f"pair {index + 1}: address of type {inner_type} where {want} belongs"
                    )
                if words == 0 or stop > end:
                    raise _malformed_pairs(
                        f"pair {index + 1}: address of {words} words does not fit the list"
                    )
                try:
                    pair.append(SadbAddress.decode(want, body[off + 4 : stop]))
                except PfkeyError as exc:
                    raise _malformed_pairs(f"pair {index + 1}: {exc.message}") from exc
                off = stop
            pairs.append((pair[0], pair[1]))
        if off != end:
            raise _malformed_pairs(f"{end - off} bytes after {count} pairs")
        return cls(tuple(pairs), ext_type)


_SEQ_STATE = struct.Struct("<HHQQQ")  # bits, flags, next, reserved, top
#: Bits of `SadbXSeqState.flags`.
SEQ_STATE_NEXT = 0x1  # `next` is given
SEQ_STATE_REPLAY = 0x2  # `top` and `bitmap` are given
#: The widest anti-replay window the extension carries (`larval.esp.MAX_REPLAY_WINDOW`).
SEQ_STATE_MAX_BITS = 4096


def _malformed_seq_state(detail: str) -> PfkeyError:
    return PfkeyError(
        errno.EINVAL,
        Diagnostic.MALFORMED_SEQ_STATE,
        f"extension type {int(ExtType.X_LARVAL_SEQ_STATE)} (sequence state): {detail}",
    )


@quick_init
@dataclass(frozen=True, slots=True)
class SadbXSeqState:
    """An SA's sequence numbers as a restart restores them, larval's X_LARVAL_SEQ_STATE::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |          _len                 |    _exttype = 65 (larval)     |
        +---------------+---------------+---------------+---------------+
        |          _bits                |          _flags               |
        +---------------+---------------+---------------+---------------+
        |      _next: the next outbound sequence number (64 bits)      |
        +---------------+---------------+---------------+---------------+
        |   _reserved: the reserved high-water mark (64 bits; GET only) |
        +---------------+---------------+---------------+---------------+
        |   _top: the highest sequence number received (64 bits)       |
        +---------------+---------------+---------------+---------------+
        >   bitmap: ceil(_bits / 64) 64-bit words, little-endian; bit i  <
        >   says that _top - i was received                              <
        +---------------+---------------+---------------+---------------+

    ``flags`` say which halves are given: `SEQ_STATE_NEXT` (``next`` >= 1: the first
    sequence number the SA sends; with a state store the SA's reservation begins there)
    and `SEQ_STATE_REPLAY` (``top`` and a window of ``bits`` bits). Numbers are 64 bits
    so that ESN (RFC 4303 §2.2.1) fits. Integers are in host (little-endian) order like
    the rest of PF_KEY on larval's platforms.
    """

    flags: int = 0
    next: int = 0
    reserved: int = 0
    top: int = 0
    bits: int = 0
    bitmap: int = 0
    ext_type: int = int(ExtType.X_LARVAL_SEQ_STATE)

    def encode(self) -> bytes:
        words = (self.bits + 63) // 64
        if self.bitmap >> self.bits:
            raise ValueError(f"a replay bitmap of more than {self.bits} bits")
        body = _SEQ_STATE.pack(self.bits, self.flags, self.next, self.reserved, self.top)
        return _wrap(self.ext_type, body + self.bitmap.to_bytes(words * 8, "little"))

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> SadbXSeqState:
        if len(body) < _SEQ_STATE.size:
            raise _malformed_seq_state(f"body of {len(body)} bytes; at least {_SEQ_STATE.size}")
        bits, flags, next_, reserved, top = _SEQ_STATE.unpack_from(body)
        if flags & ~(SEQ_STATE_NEXT | SEQ_STATE_REPLAY):
            raise _malformed_seq_state(f"unknown flags {flags:#x}")
        if bits > SEQ_STATE_MAX_BITS:
            raise _malformed_seq_state(f"window of {bits} bits; at most {SEQ_STATE_MAX_BITS}")
        want = _SEQ_STATE.size + (bits + 63) // 64 * 8
        if len(body) != want:
            raise _malformed_seq_state(f"body of {len(body)} bytes for {bits} bits; {want}")
        if flags & SEQ_STATE_NEXT and next_ == 0:
            raise _malformed_seq_state("next sequence number 0 (the first is 1, RFC 4303 §3.3.3)")
        if not flags & SEQ_STATE_REPLAY and (bits or top):
            raise _malformed_seq_state("a replay window without the replay flag")
        bitmap = int.from_bytes(body[_SEQ_STATE.size :], "little")
        if bitmap >> bits:
            raise _malformed_seq_state(f"bitmap bits set beyond the window of {bits}")
        return cls(flags, next_, reserved, top, bits, bitmap, ext_type)


@quick_init
@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """An extension of a type larval does not know (RFC 2367 §2.2: skipped, not fatal)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |         sadb_ext_len          |         sadb_ext_type         |
        +---------------+---------------+---------------+---------------+
        >   body: (len * 8 - 4) bytes, kept as they came                <
        +---------------+---------------+---------------+---------------+

    Kept so that the message re-encodes unchanged; the SADB ignores it.
    """

    ext_type: int
    body: bytes

    def encode(self) -> bytes:
        if len(self.body) % 8 != 4:
            raise ValueError("an extension body is 4 bytes short of whole 64-bit words")
        return _wrap(self.ext_type, self.body)

    @classmethod
    def decode(cls, ext_type: int, body: bytes) -> UnknownExtension:
        return cls(ext_type, body)


Extension: TypeAlias = (
    SadbSa
    | SadbLifetime
    | SadbAddress
    | SadbKey
    | SadbIdent
    | SadbSens
    | SadbProp
    | SadbSupported
    | SadbSpirange
    | SadbXEreg
    | SadbXEprop
    | SadbXKmc
    | SadbXPair
    | SadbXReplayCtr
    | SadbXEdump
    | SadbXInnerPairs
    | SadbXSeqState
    | UnknownExtension
)

#: The class that reads each extension type larval knows (RFC 2367 §2.3, illumos
#: pfkeyv2.h); `decode` gets the type and the body. Plain-int keys: the lookup runs for
#: every extension of every message.
DECODERS: dict[int, Callable[[int, bytes], Extension]] = {
    int(ext_type): cls.decode
    for cls, ext_types in (
        (SadbSa, (ExtType.SA,)),
        (SadbLifetime, (ExtType.LIFETIME_CURRENT, ExtType.LIFETIME_HARD,
                        ExtType.LIFETIME_SOFT, ExtType.X_LIFETIME_IDLE)),
        (SadbAddress, (ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.ADDRESS_PROXY,
                       ExtType.X_ADDRESS_NATT_LOC, ExtType.X_ADDRESS_NATT_REM,
                       ExtType.X_ADDRESS_INNER_DST)),
        (SadbKey, (ExtType.KEY_AUTH, ExtType.KEY_ENCRYPT)),
        (SadbIdent, (ExtType.IDENTITY_SRC, ExtType.IDENTITY_DST)),
        (SadbSens, (ExtType.SENSITIVITY, ExtType.X_OUTER_SENS)),
        (SadbProp, (ExtType.PROPOSAL,)),
        (SadbSupported, (ExtType.SUPPORTED_AUTH, ExtType.SUPPORTED_ENCRYPT)),
        (SadbSpirange, (ExtType.SPIRANGE,)),
        (SadbXEreg, (ExtType.X_EREG,)),
        (SadbXEprop, (ExtType.X_EPROP,)),
        (SadbXKmc, (ExtType.X_KM_COOKIE,)),
        (SadbXPair, (ExtType.X_PAIR,)),
        (SadbXReplayCtr, (ExtType.X_REPLAY_VALUE,)),
        (SadbXEdump, (ExtType.X_EDUMP,)),
        (SadbXInnerPairs, (ExtType.X_LARVAL_INNER_PAIRS,)),
        (SadbXSeqState, (ExtType.X_LARVAL_SEQ_STATE,)),
    )
    for ext_type in ext_types
}  # fmt: skip
assert len(DECODERS) == EXT_MAX + 2  # illumos's, and larval's two

#: The types whose decoded values `larval.pfkey.message.decode` keeps and hands out again
#: for the same bytes: values that repeat from message to message (the peers' addresses,
#: the SPI range, the lifetimes a connection asks for) and carry no secret. Keys are
#: never kept, nor values that differ in every message (SA, current lifetime, cookie).
CACHED_TYPES: frozenset[int] = frozenset(
    int(t)
    for t in (
        ExtType.ADDRESS_SRC,
        ExtType.ADDRESS_DST,
        ExtType.ADDRESS_PROXY,
        ExtType.X_ADDRESS_NATT_LOC,
        ExtType.X_ADDRESS_NATT_REM,
        ExtType.X_ADDRESS_INNER_DST,
        ExtType.SPIRANGE,
        ExtType.LIFETIME_HARD,
        ExtType.LIFETIME_SOFT,
        ExtType.X_LIFETIME_IDLE,
    )
)
