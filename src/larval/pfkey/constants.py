"""PF_KEY v2 numbers: message, SA, extension and algorithm types, states, flags, diagnostics.

Values are those of RFC 2367 §2.3 and illumos ``net/pfkeyv2.h`` (the ``SADB_X_``
extensions), plus larval's own, numbered above illumos's so that they never meet one:
the extension ``SADB_X_EXT_LARVAL_INNER_PAIRS`` (`ExtType.X_LARVAL_INNER_PAIRS`, 64),
which lists the inner selector pairs of a tunnel-mode SA beyond the first (the first
stays in ADDRESS_PROXY / X_ADDRESS_INNER_DST, as RFC 2367 forbids repeating an
extension type in one message), and the diagnostic ``MALFORMED_INNER_PAIRS`` (128) a
list that cannot be read gets; and the extension ``SADB_X_EXT_LARVAL_SEQ_STATE``
(`ExtType.X_LARVAL_SEQ_STATE`, 65), an SA's outbound sequence number and inbound
anti-replay window as a restart restores them, with ``MALFORMED_SEQ_STATE`` (129).

The enums name values; decoded messages hold plain ints, and every enum here accepts an
unknown value (it becomes a pseudo-member named ``UNKNOWN_<n>``) so that naming a value
read off the wire never raises.
"""

from __future__ import annotations

import enum

from larval.wire import LenientIntEnum

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_INET6_LINUX",
    "PF_KEY_V2",
    "U8_MAX",
    "U32_MAX",
    "U64_MAX",
    "AlgType",
    "AuthAlg",
    "Diagnostic",
    "EncryptAlg",
    "ExtType",
    "IdentType",
    "KmProto",
    "SaFlags",
    "SaState",
    "SaType",
    "SadbMsgType",
    "diagnostic_text",
]

PF_KEY_V2 = 2  # RFC 2367 §2.3.1 sadb_msg_version

# The widths of the fields numbers end up in: sadb_sa_replay (8 bits), SPIs (32), and the
# bytes, addtime and usetime of a lifetime (64; RFC 2367 §2.3.1, §2.3.3). Whatever
# gives them a value (the command line, a configuration file) checks against these.
U8_MAX = 2**8 - 1
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# Address families as they appear in sa_family of the sockaddr after sadb_address.
AF_INET = 2
AF_INET6 = 26  # illumos <sys/socket.h>
AF_INET6_LINUX = 10  # accepted on decode so Linux-built messages parse


class SadbMsgType(LenientIntEnum):
    """sadb_msg_type (RFC 2367 §2.3.1, illumos SADB_X_* additions)."""

    RESERVED = 0
    GETSPI = 1
    UPDATE = 2
    ADD = 3
    DELETE = 4
    GET = 5
    ACQUIRE = 6
    REGISTER = 7
    EXPIRE = 8
    FLUSH = 9
    DUMP = 10
    X_PROMISC = 11
    X_INVERSE_ACQUIRE = 12
    X_UPDATEPAIR = 13
    X_DELPAIR = 14
    X_DELPAIR_STATE = 15


class SaType(LenientIntEnum):
    """sadb_msg_satype (RFC 2367 §2.3.1); the gaps follow the IPsec DOI."""

    UNSPEC = 0
    AH = 2
    ESP = 3
    RSVP = 5
    OSPFV2 = 6
    RIPV2 = 7
    MIP = 8


class SaState(LenientIntEnum):
    """sadb_sa_state (RFC 2367 §2.3.2, illumos SADB_X_SASTATE_*)."""

    LARVAL = 0
    MATURE = 1
    DYING = 2
    DEAD = 3
    X_ACTIVE_ELSEWHERE = 4
    X_IDLE = 5
    X_ACTIVE = 6


class ExtType(LenientIntEnum):
    """sadb_ext_type (RFC 2367 §2.3, illumos SADB_X_EXT_*)."""

    SA = 1
    LIFETIME_CURRENT = 2
    LIFETIME_HARD = 3
    LIFETIME_SOFT = 4
    ADDRESS_SRC = 5
    ADDRESS_DST = 6
    ADDRESS_PROXY = 7
    # illumos reuses the proxy slot for the inner source of a tunnel-mode SA.
    X_ADDRESS_INNER_SRC = 7
    KEY_AUTH = 8
    KEY_ENCRYPT = 9
    IDENTITY_SRC = 10
    IDENTITY_DST = 11
    SENSITIVITY = 12
    PROPOSAL = 13
    SUPPORTED_AUTH = 14
    SUPPORTED_ENCRYPT = 15
    SPIRANGE = 16
    X_EREG = 17
    X_EPROP = 18
    X_KM_COOKIE = 19
    X_ADDRESS_NATT_LOC = 20
    X_ADDRESS_NATT_REM = 21
    X_ADDRESS_INNER_DST = 22
    X_PAIR = 23
    X_REPLAY_VALUE = 24
    X_EDUMP = 25
    X_LIFETIME_IDLE = 26
    X_OUTER_SENS = 27
    # larval's own (`larval.pfkey.extensions.SadbXInnerPairs`): further inner selector
    # pairs of one tunnel-mode SA, e.g. its IPv6 pair beside the IPv4 one.
    X_LARVAL_INNER_PAIRS = 64
    # larval's own (`larval.pfkey.extensions.SadbXSeqState`): the next outbound sequence
    # number and the anti-replay window, given on ADD/UPDATE, shown by GET/DUMP.
    X_LARVAL_SEQ_STATE = 65


#: The highest extension type illumos knows (SADB_EXT_MAX); larval's own lie above.
EXT_MAX = 27


class Diagnostic(LenientIntEnum):
    """sadb_x_msg_diagnostic: why an errno reply was sent (illumos SADB_X_DIAGNOSTIC_*)."""

    NONE = 0
    UNKNOWN_MSG = 1
    UNKNOWN_EXT = 2
    BAD_EXTLEN = 3
    UNKNOWN_SATYPE = 4
    SATYPE_NEEDED = 5
    NO_SADBS = 6
    NO_EXT = 7
    BAD_SRC_AF = 8
    BAD_DST_AF = 9
    BAD_PROXY_AF = 10
    BAD_INNER_SRC_AF = 10
    AF_MISMATCH = 11
    BAD_SRC = 12
    BAD_DST = 13
    ALLOC_HSERR = 14
    BYTES_HSERR = 15
    ADDTIME_HSERR = 16
    USETIME_HSERR = 17
    MISSING_SRC = 18
    MISSING_DST = 19
    MISSING_SA = 20
    MISSING_EKEY = 21
    MISSING_AKEY = 22
    MISSING_RANGE = 23
    DUPLICATE_SRC = 24
    DUPLICATE_DST = 25
    DUPLICATE_SA = 26
    DUPLICATE_EKEY = 27
    DUPLICATE_AKEY = 28
    DUPLICATE_RANGE = 29
    MALFORMED_SRC = 30
    MALFORMED_DST = 31
    MALFORMED_SA = 32
    MALFORMED_EKEY = 33
    MALFORMED_AKEY = 34
    MALFORMED_RANGE = 35
    AKEY_PRESENT = 36
    EKEY_PRESENT = 37
    PROP_PRESENT = 38
    SUPP_PRESENT = 39
    BAD_AALG = 40
    BAD_EALG = 41
    BAD_SAFLAGS = 42
    BAD_SASTATE = 43
    BAD_AKEYBITS = 44
    BAD_EKEYBITS = 45
    ENCR_NOTSUPP = 46
    WEAK_EKEY = 47
    WEAK_AKEY = 48
    DUPLICATE_KMP = 49
    DUPLICATE_KMC = 50
    MISSING_NATT_LOC = 51
    MISSING_NATT_REM = 52
    DUPLICATE_NATT_LOC = 53
    DUPLICATE_NATT_REM = 54
    MALFORMED_NATT_LOC = 55
    MALFORMED_NATT_REM = 56
    DUPLICATE_NATT_PORTS = 57
    MISSING_INNER_SRC = 58
    MISSING_INNER_DST = 59
    DUPLICATE_INNER_SRC = 60
    DUPLICATE_INNER_DST = 61
    MALFORMED_INNER_SRC = 62
    MALFORMED_INNER_DST = 63
    PREFIX_INNER_SRC = 64
    PREFIX_INNER_DST = 65
    BAD_INNER_DST_AF = 66
    INNER_AF_MISMATCH = 67
    BAD_NATT_REM_AF = 68
    BAD_NATT_LOC_AF = 69
    PROTO_MISMATCH = 70
    INNER_PROTO_MISMATCH = 71
    DUAL_PORT_SETS = 72
    PAIR_INAPPROPRIATE = 73
    PAIR_ADD_MISMATCH = 74
    PAIR_ALREADY = 75
    PAIR_SA_NOTFOUND = 76
    BAD_SA_DIRECTION = 77
    SA_NOTFOUND = 78
    SA_EXPIRED = 79
    BAD_CTX = 80
    INVALID_REPLAY = 81
    MISSING_LIFETIME = 82
    BAD_LABEL = 83
    # larval's own, above illumos's: an X_LARVAL_INNER_PAIRS list that cannot be read.
    MALFORMED_INNER_PAIRS = 128
    # An X_LARVAL_SEQ_STATE that cannot be read, or that does not fit the SA.
    MALFORMED_SEQ_STATE = 129


_DIAGNOSTIC_TEXT: dict[int, str] = {
    Diagnostic.NONE: "No diagnostic",
    Diagnostic.UNKNOWN_MSG: "Unknown message type",
    Diagnostic.UNKNOWN_EXT: "Unknown extension type",
    Diagnostic.BAD_EXTLEN: "Bad extension length",
    Diagnostic.UNKNOWN_SATYPE: "SA type unknown or not supported",
    Diagnostic.SATYPE_NEEDED: "SA type is needed",
    Diagnostic.NO_SADBS: "No SA databases present",
    Diagnostic.NO_EXT: "Extensions not allowed in this message",
    Diagnostic.BAD_SRC_AF: "Bad source address family",
    Diagnostic.BAD_DST_AF: "Bad destination address family",
    Diagnostic.BAD_PROXY_AF: "Bad inner-source (proxy) address family",
    Diagnostic.AF_MISMATCH: "Source and destination address families differ",
    Diagnostic.BAD_SRC: "Bad source address",
    Diagnostic.BAD_DST: "Bad destination address",
    Diagnostic.ALLOC_HSERR: "Soft allocations limit above the hard one",
    Diagnostic.BYTES_HSERR: "Soft bytes limit above the hard one",
    Diagnostic.ADDTIME_HSERR: "Soft add-time limit above the hard one",
    Diagnostic.USETIME_HSERR: "Soft use-time limit above the hard one",
    Diagnostic.MISSING_SRC: "Missing source address",
    Diagnostic.MISSING_DST: "Missing destination address",
    Diagnostic.MISSING_SA: "Missing SA extension",
    Diagnostic.MISSING_EKEY: "Missing encryption key",
    Diagnostic.MISSING_AKEY: "Missing authentication key",
    Diagnostic.MISSING_RANGE: "Missing SPI range",
    Diagnostic.DUPLICATE_SRC: "Duplicate source address",
    Diagnostic.DUPLICATE_DST: "Duplicate destination address",
    Diagnostic.DUPLICATE_SA: "Duplicate SA extension",
    Diagnostic.DUPLICATE_EKEY: "Duplicate encryption key",
    Diagnostic.DUPLICATE_AKEY: "Duplicate authentication key",
    Diagnostic.DUPLICATE_RANGE: "Duplicate SPI range",
    Diagnostic.MALFORMED_SRC: "Malformed source address",
    Diagnostic.MALFORMED_DST: "Malformed destination address",
    Diagnostic.MALFORMED_SA: "Malformed SA extension",
    Diagnostic.MALFORMED_EKEY: "Malformed encryption key",
    Diagnostic.MALFORMED_AKEY: "Malformed authentication key",
    Diagnostic.MALFORMED_RANGE: "Malformed SPI range",
    Diagnostic.AKEY_PRESENT: "Authentication key given where none is allowed",
    Diagnostic.EKEY_PRESENT: "Encryption key given where none is allowed",
    Diagnostic.PROP_PRESENT: "Proposal given where none is allowed",
    Diagnostic.SUPP_PRESENT: "Supported algorithms given where none are allowed",
    Diagnostic.BAD_AALG: "Unsupported authentication algorithm",
    Diagnostic.BAD_EALG: "Unsupported encryption algorithm",
    Diagnostic.BAD_SAFLAGS: "Invalid SA flags",
    Diagnostic.BAD_SASTATE: "Invalid SA state",
    Diagnostic.BAD_AKEYBITS: "Bad authentication key length",
    Diagnostic.BAD_EKEYBITS: "Bad encryption key length",
    Diagnostic.ENCR_NOTSUPP: "Encryption not supported",
    Diagnostic.WEAK_EKEY: "Weak encryption key",
    Diagnostic.WEAK_AKEY: "Weak authentication key",
    Diagnostic.DUPLICATE_KMP: "Duplicate key management protocol",
    Diagnostic.DUPLICATE_KMC: "Duplicate key management cookie",
    Diagnostic.MISSING_NATT_LOC: "Missing NAT-T local address",
    Diagnostic.MISSING_NATT_REM: "Missing NAT-T remote address",
    Diagnostic.DUPLICATE_NATT_LOC: "Duplicate NAT-T local address",
    Diagnostic.DUPLICATE_NATT_REM: "Duplicate NAT-T remote address",
    Diagnostic.MALFORMED_NATT_LOC: "Malformed NAT-T local address",
    Diagnostic.MALFORMED_NATT_REM: "Malformed NAT-T remote address",
    Diagnostic.DUPLICATE_NATT_PORTS: "Duplicate NAT-T ports",
    Diagnostic.MISSING_INNER_SRC: "Missing inner source address",
    Diagnostic.MISSING_INNER_DST: "Missing inner destination address",
    Diagnostic.DUPLICATE_INNER_SRC: "Duplicate inner source address",
    Diagnostic.DUPLICATE_INNER_DST: "Duplicate inner destination address",
    Diagnostic.MALFORMED_INNER_SRC: "Malformed inner source address",
    Diagnostic.MALFORMED_INNER_DST: "Malformed inner destination address",
    Diagnostic.PREFIX_INNER_SRC: "Invalid inner source prefix length",
    Diagnostic.PREFIX_INNER_DST: "Invalid inner destination prefix length",
    Diagnostic.BAD_INNER_DST_AF: "Bad inner destination address family",
    Diagnostic.INNER_AF_MISMATCH: "Inner source and destination address families differ",
    Diagnostic.BAD_NATT_REM_AF: "Bad NAT-T remote address family",
    Diagnostic.BAD_NATT_LOC_AF: "Bad NAT-T local address family",
    Diagnostic.PROTO_MISMATCH: "Source and destination protocols differ",
    Diagnostic.INNER_PROTO_MISMATCH: "Inner source and destination protocols differ",
    Diagnostic.DUAL_PORT_SETS: "Ports given on both outer and inner addresses",
    Diagnostic.PAIR_INAPPROPRIATE: "SA pairing not allowed here",
    Diagnostic.PAIR_ADD_MISMATCH: "Paired SA addresses do not match",
    Diagnostic.PAIR_ALREADY: "SA is already paired",
    Diagnostic.PAIR_SA_NOTFOUND: "Paired SA not found",
    Diagnostic.BAD_SA_DIRECTION: "Invalid SA direction",
    Diagnostic.SA_NOTFOUND: "SA not found",
    Diagnostic.SA_EXPIRED: "SA has expired",
    Diagnostic.BAD_CTX: "Invalid security context",
    Diagnostic.INVALID_REPLAY: "Invalid replay counter value",
    Diagnostic.MISSING_LIFETIME: "Missing lifetime",
    Diagnostic.BAD_LABEL: "Invalid sensitivity label",
    Diagnostic.MALFORMED_INNER_PAIRS: "Malformed list of further inner selector pairs",
    Diagnostic.MALFORMED_SEQ_STATE: "Malformed sequence number or replay window state",
}


def diagnostic_text(code: int) -> str:
    """A short human description of an SADB_X_DIAGNOSTIC code; never raises."""
    text = _DIAGNOSTIC_TEXT.get(code)
    return text if text is not None else f"Unknown diagnostic {code}"


class AuthAlg(LenientIntEnum):
    """sadb_sa_auth / sadb_alg_id for SUPPORTED_AUTH (illumos SADB_AALG_*)."""

    NONE = 0
    MD5HMAC = 2
    SHA1HMAC = 3
    SHA256HMAC = 5
    SHA384HMAC = 6
    SHA512HMAC = 7


class EncryptAlg(LenientIntEnum):
    """sadb_sa_encrypt / sadb_alg_id for SUPPORTED_ENCRYPT (illumos SADB_EALG_*).

    The numbers are the IANA ESP transform identifiers, which illumos follows.
    """

    NONE = 0
    DESCBC = 2
    DES3CBC = 3
    BLOWFISH = 7
    NULL = 11
    AES = 12
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    # Not in illumos: the IANA ESP transform id of ChaCha20-Poly1305 (RFC 7634 §5).
    CHACHA20_POLY1305 = 28


class AlgType(LenientIntEnum):
    """sadb_x_algdesc_algtype (illumos SADB_X_ALGTYPE_*)."""

    NONE = 0
    AUTH = 1
    CRYPT = 2
    COMPRESS = 3


class KmProto(LenientIntEnum):
    """sadb_x_kmc_proto: the key management protocol owning a cookie (SADB_X_KMP_*)."""

    MANUAL = 0
    IKE = 1
    KINK = 2


class IdentType(LenientIntEnum):
    """sadb_ident_type (RFC 2367 §2.3.5, illumos SADB_X_IDENTTYPE_*)."""

    RESERVED = 0
    PREFIX = 1
    FQDN = 2
    USER_FQDN = 3
    X_DN = 4
    X_GN = 5
    X_KEY_ID = 6
    X_ADDR_RANGE = 7


class SaFlags(enum.IntFlag):
    """sadb_sa_flags (RFC 2367 §2.3.2, illumos SADB_X_SAFLAGS_*); unknown bits are kept."""

    PFS = 0x1
    NOREPLAY = 0x2
    # 64-bit extended sequence numbers (RFC 4303 §2.2.1), as FreeBSD's and larval's
    # SADB_X_SAFLAGS_ESN; in sadb_comb_flags and sadb_x_ecomb_flags: the alternative asks
    # for them.
    X_ESN = 0x400
    X_NATTED = 0x1000
    X_INBOUND = 0x4000
    X_OUTBOUND = 0x8000
    X_PAIRED = 0x10000
    X_TUNNEL = 0x20000
    X_KRES2 = 0x40000
    X_NATT_REM = 0x80000
    X_NATT_LOC = 0x100000
    X_KRES1 = 0x200000
    X_KM4 = 0x400000
    X_KM3 = 0x800000
    X_KM2 = 0x1000000
    X_KM1 = 0x2000000
    X_EALG2 = 0x4000000
    X_EALG1 = 0x8000000
    X_AALG2 = 0x10000000
    X_AALG1 = 0x20000000
    X_UNIQUE = 0x40000000
    X_USED = 0x80000000
    # Both bits the kernel keeps for itself.
    X_KRES = X_KRES1 | X_KRES2
