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
from dataclasses import dataclass
from typing import NamedTuple

from larval.pfkey.constants import PF_KEY_V2, Diagnostic, ExtType
from larval.pfkey.errors import PfkeyError
from larval.pfkey.extensions import (
    CACHED_TYPES,
    DECODERS,
    EXT_HEADER,
    Extension,
    UnknownExtension,
)
from larval.pfkey.quickinit import quick_init

__all__ = ["HEADER_SIZE", "PfkeyHeader", "PfkeyMessage", "decode", "decode_header"]

# RFC 2367 §2.3.1 sadb_msg: version, type, errno, satype, len (64-bit words),
# reserved (illumos: sadb_x_msg_diagnostic), seq, pid.
_HEADER = struct.Struct("<BBBBHHII")
HEADER_SIZE = _HEADER.size

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
    # larval's own: all further pairs go in one list.
    int(ExtType.X_LARVAL_INNER_PAIRS): Diagnostic.MALFORMED_INNER_PAIRS,
    int(ExtType.X_LARVAL_SEQ_STATE): Diagnostic.MALFORMED_SEQ_STATE,
}


# The values decoded lately for the types of `CACHED_TYPES`, by their whole extension
# (generic header and body): the same bytes always decode to the same immutable value,
# and a value handed out again keeps the wire form it was encoded to. Bounded: a burst
# of distinct peers empties it.
_DECODED: dict[bytes, Extension] = {}
_DECODED_MAX = 4096
# Whole runs of extensions (all after the base header) made only of cached types, and
# their values: a GETSPI between the same peers is the same bytes after its header.
# Bounded in count like `_DECODED`, and in size per message.
_BODIES: dict[bytes, tuple[Extension, ...]] = {}
_BODY_MAX = 256


@quick_init
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
        try:
            # Each extension writes its own generic header and padding (RFC 2367 §2.2).
            body = b"".join([ext.encode() for ext in self.extensions])
            words = (HEADER_SIZE + len(body)) >> 3
            if words > 0xFFFF:
                raise ValueError(f"message of {words} words is too long for sadb_msg_len")
            header = _HEADER.pack(self.version, self.msg_type, self.errno, self.satype, words,
                                  self.diagnostic, self.seq, self.pid)  # fmt: skip
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"cannot encode {self!r}: {exc}") from exc
        return header + body


class PfkeyHeader(NamedTuple):
    """The base header of a PF_KEY message, for a reader that needs no extension of it
    (the answer to a key manager's UPDATE or ADD says what it needs in sadb_msg_errno)."""

    msg_type: int
    satype: int
    errno: int
    diagnostic: int
    seq: int
    pid: int


_new_header = tuple.__new__


def decode_header(data: bytes) -> PfkeyHeader:
    """The base header of one PF_KEY message, checked as `decode` checks it; the
    extensions are not read. Raises `PfkeyError`."""
    if len(data) >= HEADER_SIZE:
        version, msg_type, err, satype, words, diagnostic, seq, pid = _HEADER.unpack_from(data)
        if words << 3 == len(data) and version == PF_KEY_V2:
            # The usual; made as `PfkeyHeader(...)` makes it, without its Python __new__.
            return _new_header(PfkeyHeader, (msg_type, satype, err, diagnostic, seq, pid))
    _, msg_type, err, satype, _, diagnostic, seq, pid = _checked_header(data)
    return PfkeyHeader(msg_type, satype, err, diagnostic, seq, pid)


def _checked_header(data: bytes) -> tuple[int, ...]:
    size = len(data)
    if size < HEADER_SIZE:
        # keysock_parse: a size that disagrees with the message is EMSGSIZE.
        raise PfkeyError(
            _errno.EMSGSIZE, Diagnostic.NONE, f"{size} bytes is shorter than a PF_KEY header"
        )
    fields = _HEADER.unpack_from(data)
    version, msg_len = fields[0], fields[4]
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
    return fields


def decode(data: bytes | bytearray | memoryview) -> PfkeyMessage:
    """Parse one PF_KEY message; raises `PfkeyError` if its structure is wrong."""
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    version, msg_type, err, satype, _, diagnostic, seq, pid = _checked_header(data)
    body = data[HEADER_SIZE:]
    known = _BODIES.get(body)
    if known is not None:
        # Extensions seen before, all of cached types (a GETSPI between the same peers).
        return PfkeyMessage(msg_type, satype, seq, pid, err, diagnostic, known, version)

    all_cached = size <= _BODY_MAX
    extensions: list[Extension] = []
    append = extensions.append
    seen: set[int] = set()
    decoders = DECODERS
    decoded = _DECODED
    ext_header = EXT_HEADER.unpack_from
    off = HEADER_SIZE
    while off < size:
        # size and off are multiples of 8, so the 4-byte generic header is there.
        ext_len, ext_type = ext_header(data, off)
        end = off + ext_len * 8
        if ext_len and end <= size and ext_type not in seen:
            # The usual case: a known extension, once, inside the message.
            if ext_type in CACHED_TYPES:
                whole = data[off:end]
                ext = decoded.get(whole)
                if ext is None:
                    ext = decoders[ext_type](ext_type, whole[4:])
                    if len(decoded) >= _DECODED_MAX:
                        decoded.clear()
                    decoded[whole] = ext
                seen.add(ext_type)
                append(ext)
                off = end
                continue
            all_cached = False
            decoder = decoders.get(ext_type)
            if decoder is not None:
                seen.add(ext_type)
                append(decoder(ext_type, data[off + 4 : end]))
                off = end
                continue
        all_cached = False
        decoder = decoders.get(ext_type)
        if ext_type == 0:
            # keysock_get_ext: type 0 is reserved, rejected before its length is read.
            raise PfkeyError(
                _errno.EINVAL, Diagnostic.UNKNOWN_EXT, f"extension of reserved type 0 at {off}"
            )
        if ext_len == 0 or end > size:
            raise PfkeyError(
                _errno.EINVAL,
                Diagnostic.BAD_EXTLEN,
                f"extension type {ext_type} at {off}: length {ext_len} words is zero or "
                "runs past the message",
            )
        if decoder is None:
            # RFC 2367 §2.2: unknown extension types are skipped; kept to re-encode.
            append(UnknownExtension(ext_type, data[off + 4 : end]))
        else:
            raise PfkeyError(
                _errno.EINVAL,
                _DUPLICATE.get(ext_type, Diagnostic.NONE),
                f"duplicate extension type {ext_type} at {off}",
            )
        off = end

    exts = tuple(extensions)
    if all_cached and exts:
        if len(_BODIES) >= _DECODED_MAX:
            _BODIES.clear()
        _BODIES[body] = exts
    return PfkeyMessage(msg_type, satype, seq, pid, err, diagnostic, exts, version)
