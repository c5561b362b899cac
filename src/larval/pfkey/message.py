"""A whole PF_KEY v2 message: the base header and its extensions.

`decode` checks the structure of a message the way illumos keysock (``keysock_parse``
and ``keysock_get_ext``) does before anything acts on it, and raises `PfkeyError` with
the errno and diagnostic the sender is to be answered with. It does not judge meaning:
an unknown message type, or an extension a message type does not allow, is for the SADB
to refuse. Whatever the input, `decode` returns a `PfkeyMessage` or raises `PfkeyError`.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Callable
from dataclasses import dataclass

from larval.pfkey.constants import EXT_MAX, PF_KEY_V2, Diagnostic, ExtType
from larval.pfkey.errors import PfkeyError
from larval.pfkey.extensions import (
    Extension,
    SadbAddress,
    SadbIdent,
    SadbKey,
    SadbLifetime,
    SadbProp,
    SadbSa,
    SadbSens,
    SadbSpirange,
    SadbSupported,
    SadbXEdump,
    SadbXEprop,
    SadbXEreg,
    SadbXKmc,
    SadbXPair,
    SadbXReplayCtr,
    UnknownExtension,
)
from larval.wire import Buffer

__all__ = ["HEADER_SIZE", "PfkeyMessage", "decode"]

# RFC 2367 §2.3.1 sadb_msg: version, type, errno, satype, len (64-bit words),
# reserved (illumos: sadb_x_msg_diagnostic), seq, pid.
_HEADER = struct.Struct("<BBBBHHII")
HEADER_SIZE = _HEADER.size
_MSG_LEN_OFFSET = 4
# RFC 2367 §2.2 sadb_ext: len (64-bit words, inclusive), type.
_EXT_HEADER = struct.Struct("<HH")

_Decoder = Callable[[int, bytes], Extension]

_DECODERS: dict[int, _Decoder] = {
    ExtType.SA: SadbSa.decode_body,
    ExtType.LIFETIME_CURRENT: SadbLifetime.decode_body,
    ExtType.LIFETIME_HARD: SadbLifetime.decode_body,
    ExtType.LIFETIME_SOFT: SadbLifetime.decode_body,
    ExtType.ADDRESS_SRC: SadbAddress.decode_body,
    ExtType.ADDRESS_DST: SadbAddress.decode_body,
    ExtType.ADDRESS_PROXY: SadbAddress.decode_body,
    ExtType.KEY_AUTH: SadbKey.decode_body,
    ExtType.KEY_ENCRYPT: SadbKey.decode_body,
    ExtType.IDENTITY_SRC: SadbIdent.decode_body,
    ExtType.IDENTITY_DST: SadbIdent.decode_body,
    ExtType.SENSITIVITY: SadbSens.decode_body,
    ExtType.PROPOSAL: SadbProp.decode_body,
    ExtType.SUPPORTED_AUTH: SadbSupported.decode_body,
    ExtType.SUPPORTED_ENCRYPT: SadbSupported.decode_body,
    ExtType.SPIRANGE: SadbSpirange.decode_body,
    ExtType.X_EREG: SadbXEreg.decode_body,
    ExtType.X_EPROP: SadbXEprop.decode_body,
    ExtType.X_KM_COOKIE: SadbXKmc.decode_body,
    ExtType.X_ADDRESS_NATT_LOC: SadbAddress.decode_body,
    ExtType.X_ADDRESS_NATT_REM: SadbAddress.decode_body,
    ExtType.X_ADDRESS_INNER_DST: SadbAddress.decode_body,
    ExtType.X_PAIR: SadbXPair.decode_body,
    ExtType.X_REPLAY_VALUE: SadbXReplayCtr.decode_body,
    ExtType.X_EDUMP: SadbXEdump.decode_body,
    ExtType.X_LIFETIME_IDLE: SadbLifetime.decode_body,
    ExtType.X_OUTER_SENS: SadbSens.decode_body,
}
# Plain-int keys: the lookup runs once per extension of every message.
_DECODERS = {int(k): v for k, v in _DECODERS.items()}
assert len(_DECODERS) == EXT_MAX

# The diagnostic of a repeated extension: illumos keysock_duplicate for the types it
# names, and the DUPLICATE_* codes pfkeyv2.h defines for the NAT-T addresses and the
# KM cookie. Other repeated types get NONE, as keysock_duplicate gives them.
_DUPLICATE: dict[int, int] = {
    int(ExtType.SA): Diagnostic.DUPLICATE_SA,
    int(ExtType.ADDRESS_SRC): Diagnostic.DUPLICATE_SRC,
    int(ExtType.ADDRESS_DST): Diagnostic.DUPLICATE_DST,
    int(ExtType.X_ADDRESS_INNER_SRC): Diagnostic.DUPLICATE_INNER_SRC,
    int(ExtType.X_ADDRESS_INNER_DST): Diagnostic.DUPLICATE_INNER_DST,
    int(ExtType.SPIRANGE): Diagnostic.DUPLICATE_RANGE,
    int(ExtType.KEY_AUTH): Diagnostic.DUPLICATE_AKEY,
    int(ExtType.KEY_ENCRYPT): Diagnostic.DUPLICATE_EKEY,
    int(ExtType.X_KM_COOKIE): Diagnostic.DUPLICATE_KMC,
    int(ExtType.X_ADDRESS_NATT_LOC): Diagnostic.DUPLICATE_NATT_LOC,
    int(ExtType.X_ADDRESS_NATT_REM): Diagnostic.DUPLICATE_NATT_REM,
}


@dataclass(frozen=True, slots=True)
class PfkeyMessage:
    """A PF_KEY v2 message (RFC 2367 §2.3.1 ``sadb_msg`` and the extensions after it)::

        0               1               2               3
        +---------------+---------------+---------------+---------------+
        |sadb_msg_version| sadb_msg_type |sadb_msg_errno |sadb_msg_satype|
        +---------------+---------------+---------------+---------------+
        |         sadb_msg_len          |  sadb_msg_reserved (illumos:  |
        |     (64-bit words, total)     |    sadb_x_msg_diagnostic)     |
        +---------------+---------------+---------------+---------------+
        |                         sadb_msg_seq                          |
        +---------------+---------------+---------------+---------------+
        |                         sadb_msg_pid                          |
        +---------------+---------------+---------------+---------------+
        >   extensions, each a whole number of 64-bit words             <
        +---------------+---------------+---------------+---------------+

    ``msg_type`` is a `SadbMsgType`, ``satype`` a `SaType`; ``errno`` and ``diagnostic``
    are set in replies that refuse a request. sadb_msg_len is computed by `encode`.
    """

    msg_type: int
    satype: int = 0
    seq: int = 0
    pid: int = 0
    errno: int = 0
    diagnostic: int = 0
    extensions: tuple[Extension, ...] = ()
    version: int = PF_KEY_V2

    def find(self, ext_type: int) -> Extension | None:
        """The first extension of type ``ext_type``, or None."""
        for ext in self.extensions:
            if ext.ext_type == ext_type:
                return ext
        return None

    def encode(self) -> bytes:
        """The wire form; raises ValueError if a field does not fit its slot."""
        buf = Buffer()
        push, tell = buf.push_bytes, buf.tell
        try:
            push(
                _HEADER.pack(
                    self.version,
                    self.msg_type,
                    self.errno,
                    self.satype,
                    0,  # sadb_msg_len, patched below
                    self.diagnostic,
                    self.seq,
                    self.pid,
                )
            )
            for ext in self.extensions:
                # RFC 2367 §2.2: each extension a whole number of 64-bit words, its length
                # in words in its first u16. Written in line: this runs for every message.
                start = tell()
                push(_EXT_HEADER.pack(0, ext.ext_type))
                ext.encode_body(buf)
                buf.push_padding64(start)
                words = (tell() - start) // 8
                if words > 0xFFFF:
                    raise ValueError(f"extension {ext.ext_type} of {words} words is too long")
                buf.patch_u16(start, words)
            total = tell() // 8
            if total > 0xFFFF:
                raise ValueError(f"message of {total} words is too long for sadb_msg_len")
            buf.patch_u16(_MSG_LEN_OFFSET, total)
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"cannot encode {self!r}: {exc}") from exc
        return buf.data


def decode(data: bytes | bytearray | memoryview) -> PfkeyMessage:
    """Parse one PF_KEY message; raises `PfkeyError` if its structure is wrong."""
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        # keysock_parse: a size that disagrees with the message is EMSGSIZE.
        raise PfkeyError(
            _errno.EMSGSIZE, Diagnostic.NONE, f"{size} bytes is shorter than a PF_KEY header"
        )
    version, msg_type, err, satype, msg_len, diagnostic, seq, pid = _HEADER.unpack_from(data)
    if msg_len * 8 != size:
        # keysock_parse compares sadb_msg_len with the bytes written: EMSGSIZE, and no
        # diagnostic. A size that is not a multiple of 8 can never match.
        raise PfkeyError(
            _errno.EMSGSIZE,
            Diagnostic.NONE,
            f"sadb_msg_len says {msg_len * 8} bytes but the message has {size}",
        )
    if version != PF_KEY_V2:
        # RFC 2367 §2.3.1: only version 2 is understood.
        raise PfkeyError(_errno.EINVAL, Diagnostic.NONE, f"PF_KEY version {version}, not 2")

    extensions: list[Extension] = []
    seen: set[int] = set()
    decoders = _DECODERS
    off = HEADER_SIZE
    while off < size:
        # size and off are multiples of 8, so the 4-byte generic header is there.
        ext_len, ext_type = _EXT_HEADER.unpack_from(data, off)
        if ext_type == 0:
            # keysock_get_ext: type 0 is reserved, rejected before its length is read.
            raise PfkeyError(
                _errno.EINVAL, Diagnostic.UNKNOWN_EXT, f"extension of reserved type 0 at {off}"
            )
        end = off + ext_len * 8
        if ext_len == 0 or end > size:
            raise PfkeyError(
                _errno.EINVAL,
                Diagnostic.BAD_EXTLEN,
                f"extension type {ext_type} at {off}: length {ext_len} words is zero or "
                "runs past the message",
            )
        decoder = decoders.get(ext_type)
        if decoder is None:
            # RFC 2367 §2.2: unknown extension types are skipped; kept to re-encode.
            extensions.append(UnknownExtension(ext_type, data[off + 4 : end]))
        else:
            if ext_type in seen:
                raise PfkeyError(
                    _errno.EINVAL,
                    _DUPLICATE.get(ext_type, Diagnostic.NONE),
                    f"duplicate extension type {ext_type} at {off}",
                )
            seen.add(ext_type)
            extensions.append(decoder(ext_type, data[off + 4 : end]))
        off = end

    return PfkeyMessage(msg_type, satype, seq, pid, err, diagnostic, tuple(extensions), version)
