"""PF_KEY v2 test vectors, written out field by field from the published layouts.

Each vector is the wire form as annotated hex (one field a line, the field named in the
comment; `h` drops the comments and the whitespace) and the `PfkeyMessage` it must
decode to. Layouts: RFC 2367 §2.3 and illumos ``net/pfkeyv2.h``; integers are host
order, fixed as little-endian, except SPIs, SPI range bounds and sockaddr ports,
flow labels and addresses, which are network order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from larval.pfkey import (
    AF_INET6_LINUX,
    AlgType,
    AuthAlg,
    EncryptAlg,
    ExtType,
    IdentType,
    KmProto,
    PfkeyMessage,
    SadbAddress,
    SadbAlg,
    SadbComb,
    SadbIdent,
    SadbKey,
    SadbLifetime,
    SadbMsgType,
    SadbProp,
    SadbSa,
    SadbSens,
    SadbSpirange,
    SadbSupported,
    SadbXAlgdesc,
    SadbXEcomb,
    SadbXEdump,
    SadbXEprop,
    SadbXEreg,
    SadbXKmc,
    SadbXPair,
    SadbXReplayCtr,
    SaFlags,
    SaState,
    SaType,
)

_COMMENT = re.compile(r"#[^\n]*")


def h(annotated: str) -> bytes:
    """Bytes from annotated hex: ``#`` starts a comment, whitespace is ignored."""
    return bytes.fromhex("".join(_COMMENT.sub("", annotated).split()))


@dataclass(frozen=True)
class Vector:
    name: str
    source: str
    wire: bytes
    message: PfkeyMessage


# -- address extensions used by several messages (RFC 2367 §2.3.4 sadb_address) ---------

SRC_V4 = """
0300              # sadb_address_len = 3 words: 8 header + 16 sockaddr_in
0500              # sadb_address_exttype = SADB_EXT_ADDRESS_SRC (5)
00                # sadb_address_proto = 0 (any)
00                # sadb_address_prefixlen = 0
0000              # sadb_address_reserved
0200              # sin_family = AF_INET (2), host order
0000              # sin_port = 0, network order
c0000201          # sin_addr = 192.0.2.1
0000000000000000  # sin_zero
"""
SRC_V4_EXT = SadbAddress(ExtType.ADDRESS_SRC, IPv4Address("192.0.2.1"))

DST_V4 = """
0300              # sadb_address_len = 3 words
0600              # sadb_address_exttype = SADB_EXT_ADDRESS_DST (6)
00                # sadb_address_proto = 0
00                # sadb_address_prefixlen = 0
0000              # sadb_address_reserved
0200              # sin_family = AF_INET (2)
0000              # sin_port = 0
c6336407          # sin_addr = 198.51.100.7
0000000000000000  # sin_zero
"""
DST_V4_EXT = SadbAddress(ExtType.ADDRESS_DST, IPv4Address("198.51.100.7"))

SRC_V6 = """
0500                              # sadb_address_len = 5 words: 8 header + 32 sockaddr_in6
0500                              # sadb_address_exttype = SADB_EXT_ADDRESS_SRC (5)
00                                # sadb_address_proto = 0
00                                # sadb_address_prefixlen = 0
0000                              # sadb_address_reserved
1a00                              # sin6_family = AF_INET6 (26, illumos), host order
0000                              # sin6_port = 0
00000000                          # sin6_flowinfo = 0
20010db8000000000000000000000001  # sin6_addr = 2001:db8::1
00000000                          # sin6_scope_id = 0
00000000                          # __sin6_src_id = 0
"""
SRC_V6_EXT = SadbAddress(ExtType.ADDRESS_SRC, IPv6Address("2001:db8::1"))

DST_V6 = """
0500                              # sadb_address_len = 5 words
0600                              # sadb_address_exttype = SADB_EXT_ADDRESS_DST (6)
00                                # sadb_address_proto = 0
00                                # sadb_address_prefixlen = 0
0000                              # sadb_address_reserved
1a00                              # sin6_family = AF_INET6 (26)
0000                              # sin6_port = 0
00000000                          # sin6_flowinfo = 0
20010db8000000000000000000000002  # sin6_addr = 2001:db8::2
00000000                          # sin6_scope_id = 0
00000000                          # __sin6_src_id = 0
"""
DST_V6_EXT = SadbAddress(ExtType.ADDRESS_DST, IPv6Address("2001:db8::2"))

AKEY_256 = bytes(range(32))
EKEY_128 = bytes(range(0xA0, 0xB0))

VECTORS: list[Vector] = []


def _add(name: str, source: str, annotated: str, message: PfkeyMessage) -> None:
    VECTORS.append(Vector(name, source, h(annotated), message))


# -- GETSPI request: key management asks for an inbound SPI in a range -------------------
_add(
    "getspi_request",
    "RFC 2367 §3.1.1; sadb_msg, sadb_address, sadb_spirange",
    """
    02        # sadb_msg_version = PF_KEY_V2       (RFC 2367 §2.3.1)
    01        # sadb_msg_type = SADB_GETSPI (1)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = SADB_SATYPE_ESP (3)
    0a00      # sadb_msg_len = 10 words
    0000      # sadb_x_msg_diagnostic = 0
    01000000  # sadb_msg_seq = 1
    d2040000  # sadb_msg_pid = 1234
    """
    + SRC_V4
    + DST_V4
    + """
    0200      # sadb_spirange_len = 2               (RFC 2367 §2.3.9)
    1000      # sadb_spirange_exttype = SADB_EXT_SPIRANGE (16)
    00000100  # sadb_spirange_min = 0x100, network order (illumos sadb.c uses ntohl)
    ffffffff  # sadb_spirange_max = 0xffffffff
    00000000  # sadb_spirange_reserved
    """,
    PfkeyMessage(
        SadbMsgType.GETSPI,
        SaType.ESP,
        seq=1,
        pid=1234,
        extensions=(SRC_V4_EXT, DST_V4_EXT, SadbSpirange(0x100, 0xFFFFFFFF)),
    ),
)

# -- GETSPI reply: the kernel made a LARVAL SA ------------------------------------------
_add(
    "getspi_reply",
    "RFC 2367 §3.1.1; sadb_sa with SADB_SASTATE_LARVAL",
    """
    02        # sadb_msg_version = PF_KEY_V2
    01        # sadb_msg_type = SADB_GETSPI (1)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    0a00      # sadb_msg_len = 10 words
    0000      # sadb_x_msg_diagnostic = 0
    01000000  # sadb_msg_seq = 1 (echoed)
    d2040000  # sadb_msg_pid = 1234 (echoed)
    0200      # sadb_sa_len = 2                     (RFC 2367 §2.3.2)
    0100      # sadb_sa_exttype = SADB_EXT_SA (1)
    8b4c2d1e  # sadb_sa_spi = 0x8b4c2d1e, network order
    00        # sadb_sa_replay = 0
    00        # sadb_sa_state = SADB_SASTATE_LARVAL (0)
    00        # sadb_sa_auth = SADB_AALG_NONE
    00        # sadb_sa_encrypt = SADB_EALG_NONE
    00000000  # sadb_sa_flags = 0
    """
    + SRC_V4
    + DST_V4,
    PfkeyMessage(
        SadbMsgType.GETSPI,
        SaType.ESP,
        seq=1,
        pid=1234,
        extensions=(SadbSa(0x8B4C2D1E, state=SaState.LARVAL), SRC_V4_EXT, DST_V4_EXT),
    ),
)

# -- UPDATE with keys, lifetimes, replay value and idle lifetime -------------------------
_add(
    "update_with_keys",
    "RFC 2367 §3.1.2; sadb_lifetime, sadb_key, illumos sadb_x_replay_ctr, X_LIFETIME_IDLE",
    """
    02        # sadb_msg_version = PF_KEY_V2
    02        # sadb_msg_type = SADB_UPDATE (2)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    2000      # sadb_msg_len = 32 words
    0000      # sadb_x_msg_diagnostic = 0
    02000000  # sadb_msg_seq = 2
    d2040000  # sadb_msg_pid = 1234

    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SADB_EXT_SA (1)
    8b4c2d1e  # sadb_sa_spi = 0x8b4c2d1e
    20        # sadb_sa_replay = 32
    01        # sadb_sa_state = SADB_SASTATE_MATURE (1)
    05        # sadb_sa_auth = SADB_AALG_SHA256HMAC (5)
    0c        # sadb_sa_encrypt = SADB_EALG_AES (12)
    00000000  # sadb_sa_flags = 0

    0400              # sadb_lifetime_len = 4       (RFC 2367 §2.3.3)
    0300              # sadb_lifetime_exttype = SADB_EXT_LIFETIME_HARD (3)
    00000000          # sadb_lifetime_allocations = 0
    0000000000000000  # sadb_lifetime_bytes = 0
    8070000000000000  # sadb_lifetime_addtime = 28800 s
    0000000000000000  # sadb_lifetime_usetime = 0

    0400              # sadb_lifetime_len = 4
    0400              # sadb_lifetime_exttype = SADB_EXT_LIFETIME_SOFT (4)
    00000000          # sadb_lifetime_allocations = 0
    0000000000000000  # sadb_lifetime_bytes = 0
    4065000000000000  # sadb_lifetime_addtime = 25920 s
    0000000000000000  # sadb_lifetime_usetime = 0
    """
    + SRC_V4
    + DST_V4
    + """
    0500      # sadb_key_len = 5 words: 8 header + 32 key   (RFC 2367 §2.3.4)
    0800      # sadb_key_exttype = SADB_EXT_KEY_AUTH (8)
    0001      # sadb_key_bits = 256
    0000      # sadb_key_reserved
    000102030405060708090a0b0c0d0e0f  # key bytes 0..15
    101112131415161718191a1b1c1d1e1f  # key bytes 16..31

    0300      # sadb_key_len = 3 words: 8 header + 16 key
    0900      # sadb_key_exttype = SADB_EXT_KEY_ENCRYPT (9)
    8000      # sadb_key_bits = 128
    0000      # sadb_key_reserved
    a0a1a2a3a4a5a6a7a8a9aaabacadaeaf  # key bytes

    0200              # sadb_x_rc_len = 2            (illumos sadb_x_replay_ctr)
    1800              # sadb_x_rc_exttype = SADB_X_EXT_REPLAY_VALUE (24)
    05000000          # sadb_x_rc_replay32 = 5
    0500000000000000  # sadb_x_rc_replay64 = 5

    0400              # sadb_lifetime_len = 4
    1a00              # sadb_lifetime_exttype = SADB_X_EXT_LIFETIME_IDLE (26)
    00000000          # sadb_lifetime_allocations = 0
    0000000000000000  # sadb_lifetime_bytes = 0
    5802000000000000  # sadb_lifetime_addtime = 600 s idle (soft)
    8403000000000000  # sadb_lifetime_usetime = 900 s idle (hard)
    """,
    PfkeyMessage(
        SadbMsgType.UPDATE,
        SaType.ESP,
        seq=2,
        pid=1234,
        extensions=(
            SadbSa(0x8B4C2D1E, 32, SaState.MATURE, AuthAlg.SHA256HMAC, EncryptAlg.AES),
            SadbLifetime(ExtType.LIFETIME_HARD, addtime=28800),
            SadbLifetime(ExtType.LIFETIME_SOFT, addtime=25920),
            SRC_V4_EXT,
            DST_V4_EXT,
            SadbKey(ExtType.KEY_AUTH, 256, AKEY_256),
            SadbKey(ExtType.KEY_ENCRYPT, 128, EKEY_128),
            SadbXReplayCtr(5, 5),
            SadbLifetime(ExtType.X_LIFETIME_IDLE, addtime=600, usetime=900),
        ),
    ),
)

# -- ADD of a tunnel-mode SA behind a NAT, with KM cookie and pair ----------------------
_add(
    "add_tunnel_natt",
    "RFC 2367 §3.1.3; illumos X_ADDRESS_INNER_SRC/DST, NATT_LOC/REM, sadb_x_kmc, sadb_x_pair",
    """
    02        # sadb_msg_version = PF_KEY_V2
    03        # sadb_msg_type = SADB_ADD (3)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    2200      # sadb_msg_len = 34 words
    0000      # sadb_x_msg_diagnostic = 0
    03000000  # sadb_msg_seq = 3
    d2040000  # sadb_msg_pid = 1234

    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SADB_EXT_SA (1)
    00001001  # sadb_sa_spi = 0x1001
    40        # sadb_sa_replay = 64
    01        # sadb_sa_state = MATURE (1)
    03        # sadb_sa_auth = SADB_AALG_SHA1HMAC (3)
    0c        # sadb_sa_encrypt = SADB_EALG_AES (12)
    00000a00  # sadb_sa_flags = SADB_X_SAFLAGS_TUNNEL | SADB_X_SAFLAGS_NATT_REM (0xa0000)
    """
    + SRC_V4
    + DST_V4
    + """
    0300              # sadb_address_len = 3
    0700              # sadb_address_exttype = SADB_X_EXT_ADDRESS_INNER_SRC (7)
    00                # sadb_address_proto = 0
    10                # sadb_address_prefixlen = 16
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    0000              # sin_port = 0
    0a010000          # sin_addr = 10.1.0.0
    0000000000000000  # sin_zero

    0300              # sadb_address_len = 3
    1600              # sadb_address_exttype = SADB_X_EXT_ADDRESS_INNER_DST (22)
    00                # sadb_address_proto = 0
    10                # sadb_address_prefixlen = 16
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    0000              # sin_port = 0
    0a020000          # sin_addr = 10.2.0.0
    0000000000000000  # sin_zero

    0400      # sadb_key_len = 4 words: 8 header + 20 key + 4 padding
    0800      # sadb_key_exttype = SADB_EXT_KEY_AUTH (8)
    a000      # sadb_key_bits = 160
    0000      # sadb_key_reserved
    1111111111111111111111111111111111111111  # 20 key bytes
    00000000  # padding to 64 bits

    0500      # sadb_key_len = 5 words: 8 header + 32 key
    0900      # sadb_key_exttype = SADB_EXT_KEY_ENCRYPT (9)
    0001      # sadb_key_bits = 256
    0000      # sadb_key_reserved
    2222222222222222222222222222222222222222222222222222222222222222  # 32 key bytes

    0200              # sadb_x_kmc_len = 2           (illumos sadb_x_kmc)
    1300              # sadb_x_kmc_exttype = SADB_X_EXT_KM_COOKIE (19)
    01000000          # sadb_x_kmc_proto = SADB_X_KMP_IKE (1)
    efcdab8967452301  # sadb_x_kmc_cookie64 = 0x0123456789abcdef

    0300              # sadb_address_len = 3
    1400              # sadb_address_exttype = SADB_X_EXT_ADDRESS_NATT_LOC (20)
    11                # sadb_address_proto = 17 (UDP)
    00                # sadb_address_prefixlen = 0
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    1194              # sin_port = 4500, network order
    c0a8010a          # sin_addr = 192.168.1.10
    0000000000000000  # sin_zero

    0300              # sadb_address_len = 3
    1500              # sadb_address_exttype = SADB_X_EXT_ADDRESS_NATT_REM (21)
    11                # sadb_address_proto = 17 (UDP)
    00                # sadb_address_prefixlen = 0
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    1194              # sin_port = 4500
    cb007105          # sin_addr = 203.0.113.5
    0000000000000000  # sin_zero

    0100      # sadb_x_pair_len = 1                  (illumos sadb_x_pair)
    1700      # sadb_x_pair_exttype = SADB_X_EXT_PAIR (23)
    00001002  # sadb_x_pair_spi = 0x1002, network order
    """,
    PfkeyMessage(
        SadbMsgType.ADD,
        SaType.ESP,
        seq=3,
        pid=1234,
        extensions=(
            SadbSa(
                0x1001,
                64,
                SaState.MATURE,
                AuthAlg.SHA1HMAC,
                EncryptAlg.AES,
                SaFlags.X_TUNNEL | SaFlags.X_NATT_REM,
            ),
            SRC_V4_EXT,
            DST_V4_EXT,
            SadbAddress(ExtType.X_ADDRESS_INNER_SRC, IPv4Address("10.1.0.0"), prefixlen=16),
            SadbAddress(ExtType.X_ADDRESS_INNER_DST, IPv4Address("10.2.0.0"), prefixlen=16),
            SadbKey(ExtType.KEY_AUTH, 160, b"\x11" * 20),
            SadbKey(ExtType.KEY_ENCRYPT, 256, b"\x22" * 32),
            SadbXKmc(KmProto.IKE, 0x0123456789ABCDEF),
            SadbAddress(
                ExtType.X_ADDRESS_NATT_LOC, IPv4Address("192.168.1.10"), port=4500, proto=17
            ),
            SadbAddress(
                ExtType.X_ADDRESS_NATT_REM, IPv4Address("203.0.113.5"), port=4500, proto=17
            ),
            SadbXPair(0x1002),
        ),
    ),
)

# -- DELETE over IPv6 -------------------------------------------------------------------
_add(
    "delete_v6",
    "RFC 2367 §3.1.4; illumos sockaddr_in6 (32 bytes)",
    """
    02        # sadb_msg_version = PF_KEY_V2
    04        # sadb_msg_type = SADB_DELETE (4)
    00        # sadb_msg_errno = 0
    02        # sadb_msg_satype = SADB_SATYPE_AH (2)
    0e00      # sadb_msg_len = 14 words
    0000      # sadb_x_msg_diagnostic = 0
    04000000  # sadb_msg_seq = 4
    d2040000  # sadb_msg_pid = 1234
    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SADB_EXT_SA (1)
    00002000  # sadb_sa_spi = 0x2000
    00        # sadb_sa_replay = 0
    00        # sadb_sa_state = 0
    00        # sadb_sa_auth = 0
    00        # sadb_sa_encrypt = 0
    00000000  # sadb_sa_flags = 0
    """
    + SRC_V6
    + DST_V6,
    PfkeyMessage(
        SadbMsgType.DELETE,
        SaType.AH,
        seq=4,
        pid=1234,
        extensions=(SadbSa(0x2000), SRC_V6_EXT, DST_V6_EXT),
    ),
)

# -- GET with Linux-style AF_INET6 sockaddrs (family 10) -------------------------------
_add(
    "get_linux_inet6",
    "RFC 2367 §3.1.5; Linux sockaddr_in6 (28 bytes) in a 32-byte slot",
    """
    02        # sadb_msg_version = PF_KEY_V2
    05        # sadb_msg_type = SADB_GET (5)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    0e00      # sadb_msg_len = 14 words
    0000      # sadb_x_msg_diagnostic = 0
    05000000  # sadb_msg_seq = 5
    d2040000  # sadb_msg_pid = 1234
    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SADB_EXT_SA (1)
    00003000  # sadb_sa_spi = 0x3000
    00        # sadb_sa_replay = 0
    00        # sadb_sa_state = 0
    00        # sadb_sa_auth = 0
    00        # sadb_sa_encrypt = 0
    00000000  # sadb_sa_flags = 0

    0500                              # sadb_address_len = 5
    0500                              # sadb_address_exttype = ADDRESS_SRC (5)
    00                                # sadb_address_proto = 0
    00                                # sadb_address_prefixlen = 0
    0000                              # sadb_address_reserved
    0a00                              # sin6_family = 10 (Linux AF_INET6)
    0000                              # sin6_port = 0
    00000000                          # sin6_flowinfo = 0
    fe800000000000000000000000000001  # sin6_addr = fe80::1
    02000000                          # sin6_scope_id = 2, host order
    00000000                          # padding (Linux has no __sin6_src_id)

    0500                              # sadb_address_len = 5
    0600                              # sadb_address_exttype = ADDRESS_DST (6)
    00                                # sadb_address_proto = 0
    00                                # sadb_address_prefixlen = 0
    0000                              # sadb_address_reserved
    0a00                              # sin6_family = 10 (Linux AF_INET6)
    0000                              # sin6_port = 0
    00012345                          # sin6_flowinfo = 0x12345, network order
    fe800000000000000000000000000002  # sin6_addr = fe80::2
    02000000                          # sin6_scope_id = 2
    00000000                          # padding
    """,
    PfkeyMessage(
        SadbMsgType.GET,
        SaType.ESP,
        seq=5,
        pid=1234,
        extensions=(
            SadbSa(0x3000),
            SadbAddress(
                ExtType.ADDRESS_SRC, IPv6Address("fe80::1"), scope_id=2, family=AF_INET6_LINUX
            ),
            SadbAddress(
                ExtType.ADDRESS_DST,
                IPv6Address("fe80::2"),
                flowinfo=0x12345,
                scope_id=2,
                family=AF_INET6_LINUX,
            ),
        ),
    ),
)

# -- ACQUIRE from the kernel with identities and a proposal -----------------------------
_add(
    "acquire_with_proposal",
    "RFC 2367 §3.1.6; sadb_ident, sadb_prop, sadb_comb",
    """
    02        # sadb_msg_version = PF_KEY_V2
    06        # sadb_msg_type = SADB_ACQUIRE (6)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    1a00      # sadb_msg_len = 26 words
    0000      # sadb_x_msg_diagnostic = 0
    06000000  # sadb_msg_seq = 6
    00000000  # sadb_msg_pid = 0 (the kernel)
    """
    + SRC_V4
    + DST_V4
    + """
    0400                              # sadb_ident_len = 4    (RFC 2367 §2.3.5)
    0a00                              # sadb_ident_exttype = SADB_EXT_IDENTITY_SRC (10)
    0200                              # sadb_ident_type = SADB_IDENTTYPE_FQDN (2)
    0000                              # sadb_ident_reserved
    0000000000000000                  # sadb_ident_id = 0
    67772e6578616d706c652e636f6d      # "gw.example.com"
    00                                # NUL
    00                                # padding

    0400                              # sadb_ident_len = 4
    0b00                              # sadb_ident_exttype = SADB_EXT_IDENTITY_DST (11)
    0300                              # sadb_ident_type = SADB_IDENTTYPE_USER_FQDN (3)
    0000                              # sadb_ident_reserved
    0000000000000000                  # sadb_ident_id = 0
    696b65406578616d706c652e6f7267    # "ike@example.org"
    00                                # NUL

    0a00              # sadb_prop_len = 10 words: 8 header + 72 comb  (RFC 2367 §2.3.7)
    0d00              # sadb_prop_exttype = SADB_EXT_PROPOSAL (13)
    20                # sadb_prop_replay = 32
    000000            # sadb_prop_reserved
    05                # sadb_comb_auth = SHA256HMAC (5)
    0c                # sadb_comb_encrypt = AES (12)
    0100              # sadb_comb_flags = SADB_SAFLAGS_PFS
    0001              # sadb_comb_auth_minbits = 256
    0001              # sadb_comb_auth_maxbits = 256
    8000              # sadb_comb_encrypt_minbits = 128
    0001              # sadb_comb_encrypt_maxbits = 256
    00000000          # sadb_comb_reserved
    00000000          # sadb_comb_soft_allocations = 0
    00000000          # sadb_comb_hard_allocations = 0
    0000000000000000  # sadb_comb_soft_bytes = 0
    0000000000000000  # sadb_comb_hard_bytes = 0
    4065000000000000  # sadb_comb_soft_addtime = 25920
    8070000000000000  # sadb_comb_hard_addtime = 28800
    0000000000000000  # sadb_comb_soft_usetime = 0
    0000000000000000  # sadb_comb_hard_usetime = 0
    """,
    PfkeyMessage(
        SadbMsgType.ACQUIRE,
        SaType.ESP,
        seq=6,
        extensions=(
            SRC_V4_EXT,
            DST_V4_EXT,
            SadbIdent(ExtType.IDENTITY_SRC, IdentType.FQDN, string=b"gw.example.com"),
            SadbIdent(ExtType.IDENTITY_DST, IdentType.USER_FQDN, string=b"ike@example.org"),
            SadbProp(
                (
                    SadbComb(
                        AuthAlg.SHA256HMAC,
                        EncryptAlg.AES,
                        SaFlags.PFS,
                        256,
                        256,
                        128,
                        256,
                        soft_addtime=25920,
                        hard_addtime=28800,
                    ),
                ),
                replay=32,
            ),
        ),
    ),
)

# -- extended ACQUIRE (satype UNSPEC) with labels and two extended combinations ---------
_add(
    "extended_acquire",
    "illumos extended ACQUIRE: sadb_sens, X_OUTER_SENS, X_EPROP, sadb_x_ecomb, sadb_x_algdesc",
    """
    02        # sadb_msg_version = PF_KEY_V2
    06        # sadb_msg_type = SADB_ACQUIRE (6)
    00        # sadb_msg_errno = 0
    00        # sadb_msg_satype = SADB_SATYPE_UNSPEC (extended)
    2800      # sadb_msg_len = 40 words
    0000      # sadb_x_msg_diagnostic = 0
    07000000  # sadb_msg_seq = 7
    00000000  # sadb_msg_pid = 0
    """
    + SRC_V6
    + DST_V6
    + """
    0300              # sadb_sens_len = 3 words     (RFC 2367 §2.3.6)
    0c00              # sadb_sens_exttype = SADB_EXT_SENSITIVITY (12)
    01000000          # sadb_sens_dpd = 1
    02                # sadb_sens_sens_level = 2
    01                # sadb_sens_sens_len = 1 word
    00                # sadb_sens_integ_level = 0
    00                # sadb_sens_integ_len = 0
    00000000          # sadb_x_sens_flags = 0
    0300000000000000  # sensitivity bitmap[0] = 0x3

    0500              # sadb_sens_len = 5 words
    1b00              # sadb_sens_exttype = SADB_X_EXT_OUTER_SENS (27)
    01000000          # sadb_sens_dpd = 1
    05                # sadb_sens_sens_level = 5
    02                # sadb_sens_sens_len = 2 words
    01                # sadb_sens_integ_level = 1
    01                # sadb_sens_integ_len = 1 word
    01000000          # sadb_x_sens_flags = SADB_X_SENS_IMPLICIT
    ff00000000000000  # sensitivity bitmap[0] = 0xff
    0000000000000080  # sensitivity bitmap[1] = 0x8000000000000000
    0100000000000000  # integrity bitmap[0] = 0x1

    1400              # sadb_prop_len = 20 words   (illumos sadb_prop, X_EPROP)
    1200              # sadb_prop_exttype = SADB_X_EXT_EPROP (18)
    20                # sadb_prop_replay = 32
    00                # sadb_x_prop_ereserved
    0200              # sadb_x_prop_numecombs = 2

    02                # sadb_x_ecomb_numalgs = 2   (illumos sadb_x_ecomb)
    00                # sadb_x_ecomb_reserved
    0000              # sadb_x_ecomb_flags = 0
    00000000          # sadb_x_ecomb_reserved2
    00000000          # sadb_x_ecomb_soft_allocations = 0
    00000000          # sadb_x_ecomb_hard_allocations = 0
    0000000000000000  # sadb_x_ecomb_soft_bytes = 0
    0000000000000000  # sadb_x_ecomb_hard_bytes = 0
    4065000000000000  # sadb_x_ecomb_soft_addtime = 25920
    8070000000000000  # sadb_x_ecomb_hard_addtime = 28800
    0000000000000000  # sadb_x_ecomb_soft_usetime = 0
    0000000000000000  # sadb_x_ecomb_hard_usetime = 0
    03                # sadb_x_algdesc_satype = ESP   (illumos sadb_x_algdesc)
    02                # sadb_x_algdesc_algtype = SADB_X_ALGTYPE_CRYPT (2)
    0c                # sadb_x_algdesc_alg = AES (12)
    00                # sadb_x_algdesc_reserved
    8000              # sadb_x_algdesc_minbits = 128
    0001              # sadb_x_algdesc_maxbits = 256
    03                # sadb_x_algdesc_satype = ESP
    01                # sadb_x_algdesc_algtype = SADB_X_ALGTYPE_AUTH (1)
    05                # sadb_x_algdesc_alg = SHA256HMAC (5)
    00                # sadb_x_algdesc_reserved
    0001              # sadb_x_algdesc_minbits = 256
    0001              # sadb_x_algdesc_maxbits = 256

    01                # sadb_x_ecomb_numalgs = 1
    00                # sadb_x_ecomb_reserved
    0100              # sadb_x_ecomb_flags = SADB_SAFLAGS_PFS
    00000000          # sadb_x_ecomb_reserved2
    00000000          # sadb_x_ecomb_soft_allocations = 0
    00000000          # sadb_x_ecomb_hard_allocations = 0
    0000000000000000  # sadb_x_ecomb_soft_bytes = 0
    0000004000000000  # sadb_x_ecomb_hard_bytes = 1 GiB
    0000000000000000  # sadb_x_ecomb_soft_addtime = 0
    0000000000000000  # sadb_x_ecomb_hard_addtime = 0
    0000000000000000  # sadb_x_ecomb_soft_usetime = 0
    0000000000000000  # sadb_x_ecomb_hard_usetime = 0
    03                # sadb_x_algdesc_satype = ESP
    02                # sadb_x_algdesc_algtype = CRYPT
    14                # sadb_x_algdesc_alg = AES_GCM_16 (20)
    00                # sadb_x_algdesc_reserved
    8000              # sadb_x_algdesc_minbits = 128
    0001              # sadb_x_algdesc_maxbits = 256
    """,
    PfkeyMessage(
        SadbMsgType.ACQUIRE,
        SaType.UNSPEC,
        seq=7,
        extensions=(
            SRC_V6_EXT,
            DST_V6_EXT,
            SadbSens(ExtType.SENSITIVITY, 1, 2, 0, sens_bitmap=(0x3,)),
            SadbSens(
                ExtType.X_OUTER_SENS,
                1,
                5,
                1,
                flags=1,
                sens_bitmap=(0xFF, 0x8000000000000000),
                integ_bitmap=(0x1,),
            ),
            SadbXEprop(
                (
                    SadbXEcomb(
                        (
                            SadbXAlgdesc(SaType.ESP, AlgType.CRYPT, EncryptAlg.AES, 128, 256),
                            SadbXAlgdesc(SaType.ESP, AlgType.AUTH, AuthAlg.SHA256HMAC, 256, 256),
                        ),
                        soft_addtime=25920,
                        hard_addtime=28800,
                    ),
                    SadbXEcomb(
                        (SadbXAlgdesc(SaType.ESP, AlgType.CRYPT, EncryptAlg.AES_GCM_16, 128, 256),),
                        flags=SaFlags.PFS,
                        hard_bytes=1 << 30,
                    ),
                ),
                replay=32,
            ),
        ),
    ),
)

# -- inverse ACQUIRE: key management asks the kernel what policy wants -----------------
_add(
    "inverse_acquire",
    "illumos SADB_X_INVERSE_ACQUIRE (keysock_inverse_acquire needs SRC and DST)",
    """
    02                # sadb_msg_version = PF_KEY_V2
    0c                # sadb_msg_type = SADB_X_INVERSE_ACQUIRE (12)
    00                # sadb_msg_errno = 0
    00                # sadb_msg_satype = UNSPEC
    0800              # sadb_msg_len = 8 words
    0000              # sadb_x_msg_diagnostic = 0
    08000000          # sadb_msg_seq = 8
    e1100000          # sadb_msg_pid = 4321

    0300              # sadb_address_len = 3
    0500              # sadb_address_exttype = ADDRESS_SRC (5)
    11                # sadb_address_proto = 17 (UDP)
    00                # sadb_address_prefixlen = 0
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    01f4              # sin_port = 500, network order
    c0000201          # sin_addr = 192.0.2.1
    0000000000000000  # sin_zero

    0300              # sadb_address_len = 3
    0600              # sadb_address_exttype = ADDRESS_DST (6)
    11                # sadb_address_proto = 17 (UDP)
    00                # sadb_address_prefixlen = 0
    0000              # sadb_address_reserved
    0200              # sin_family = AF_INET
    01f4              # sin_port = 500
    c6336407          # sin_addr = 198.51.100.7
    0000000000000000  # sin_zero
    """,
    PfkeyMessage(
        SadbMsgType.X_INVERSE_ACQUIRE,
        seq=8,
        pid=4321,
        extensions=(
            SadbAddress(ExtType.ADDRESS_SRC, IPv4Address("192.0.2.1"), port=500, proto=17),
            SadbAddress(ExtType.ADDRESS_DST, IPv4Address("198.51.100.7"), port=500, proto=17),
        ),
    ),
)

# -- extended REGISTER ------------------------------------------------------------------
_add(
    "extended_register",
    "illumos extended REGISTER: satype UNSPEC + sadb_x_ereg",
    """
    02        # sadb_msg_version = PF_KEY_V2
    07        # sadb_msg_type = SADB_REGISTER (7)
    00        # sadb_msg_errno = 0
    00        # sadb_msg_satype = UNSPEC (extended)
    0300      # sadb_msg_len = 3 words
    0000      # sadb_x_msg_diagnostic = 0
    09000000  # sadb_msg_seq = 9
    e1100000  # sadb_msg_pid = 4321
    0100      # sadb_x_ereg_len = 1                 (illumos sadb_x_ereg)
    1100      # sadb_x_ereg_exttype = SADB_X_EXT_EREG (17)
    02        # sadb_x_ereg_satypes[0] = AH
    03        # sadb_x_ereg_satypes[1] = ESP
    00        # terminator
    00        # padding
    """,
    PfkeyMessage(
        SadbMsgType.REGISTER,
        SaType.UNSPEC,
        seq=9,
        pid=4321,
        extensions=(SadbXEreg((SaType.AH, SaType.ESP)),),
    ),
)

# -- REGISTER reply with the supported algorithms ---------------------------------------
_add(
    "register_reply",
    "RFC 2367 §3.1.7; sadb_supported, sadb_alg (illumos increment/saltbits)",
    """
    02        # sadb_msg_version = PF_KEY_V2
    07        # sadb_msg_type = SADB_REGISTER (7)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    0900      # sadb_msg_len = 9 words
    0000      # sadb_x_msg_diagnostic = 0
    0a000000  # sadb_msg_seq = 10
    e1100000  # sadb_msg_pid = 4321

    0300      # sadb_supported_len = 3               (RFC 2367 §2.3.8)
    0e00      # sadb_supported_exttype = SADB_EXT_SUPPORTED_AUTH (14)
    00000000  # sadb_supported_reserved
    03        # sadb_alg_id = SHA1HMAC (3)
    00        # sadb_alg_ivlen = 0
    a000      # sadb_alg_minbits = 160
    a000      # sadb_alg_maxbits = 160
    00        # sadb_x_alg_increment = 0
    00        # sadb_x_alg_saltbits = 0
    05        # sadb_alg_id = SHA256HMAC (5)
    00        # sadb_alg_ivlen = 0
    0001      # sadb_alg_minbits = 256
    0001      # sadb_alg_maxbits = 256
    00        # sadb_x_alg_increment = 0
    00        # sadb_x_alg_saltbits = 0

    0400      # sadb_supported_len = 4
    0f00      # sadb_supported_exttype = SADB_EXT_SUPPORTED_ENCRYPT (15)
    00000000  # sadb_supported_reserved
    0c        # sadb_alg_id = AES (12)
    80        # sadb_alg_ivlen = 128
    8000      # sadb_alg_minbits = 128
    0001      # sadb_alg_maxbits = 256
    40        # sadb_x_alg_increment = 64
    00        # sadb_x_alg_saltbits = 0
    14        # sadb_alg_id = AES_GCM_16 (20)
    40        # sadb_alg_ivlen = 64
    8000      # sadb_alg_minbits = 128
    0001      # sadb_alg_maxbits = 256
    40        # sadb_x_alg_increment = 64
    20        # sadb_x_alg_saltbits = 32
    0b        # sadb_alg_id = NULL (11)
    00        # sadb_alg_ivlen = 0
    0000      # sadb_alg_minbits = 0
    0000      # sadb_alg_maxbits = 0
    00        # sadb_x_alg_increment = 0
    00        # sadb_x_alg_saltbits = 0
    """,
    PfkeyMessage(
        SadbMsgType.REGISTER,
        SaType.ESP,
        seq=10,
        pid=4321,
        extensions=(
            SadbSupported(
                ExtType.SUPPORTED_AUTH,
                (SadbAlg(AuthAlg.SHA1HMAC, 0, 160, 160), SadbAlg(AuthAlg.SHA256HMAC, 0, 256, 256)),
            ),
            SadbSupported(
                ExtType.SUPPORTED_ENCRYPT,
                (
                    SadbAlg(EncryptAlg.AES, 128, 128, 256, 64),
                    SadbAlg(EncryptAlg.AES_GCM_16, 64, 128, 256, 64, 32),
                    SadbAlg(EncryptAlg.NULL),
                ),
            ),
        ),
    ),
)

# -- soft EXPIRE with the current lifetime ----------------------------------------------
_add(
    "expire_soft",
    "RFC 2367 §3.1.8; sadb_lifetime CURRENT and SOFT",
    """
    02        # sadb_msg_version = PF_KEY_V2
    08        # sadb_msg_type = SADB_EXPIRE (8)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    1200      # sadb_msg_len = 18 words
    0000      # sadb_x_msg_diagnostic = 0
    00000000  # sadb_msg_seq = 0
    00000000  # sadb_msg_pid = 0

    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SA (1)
    8b4c2d1e  # sadb_sa_spi = 0x8b4c2d1e
    20        # sadb_sa_replay = 32
    02        # sadb_sa_state = SADB_SASTATE_DYING (2)
    05        # sadb_sa_auth = SHA256HMAC
    0c        # sadb_sa_encrypt = AES
    00000000  # sadb_sa_flags = 0

    0400              # sadb_lifetime_len = 4
    0200              # sadb_lifetime_exttype = SADB_EXT_LIFETIME_CURRENT (2)
    01000000          # sadb_lifetime_allocations = 1
    0000100000000000  # sadb_lifetime_bytes = 1048576
    00f1536500000000  # sadb_lifetime_addtime = 1700000000 (epoch seconds)
    05f1536500000000  # sadb_lifetime_usetime = 1700000005

    0400              # sadb_lifetime_len = 4
    0400              # sadb_lifetime_exttype = SADB_EXT_LIFETIME_SOFT (4)
    00000000          # sadb_lifetime_allocations = 0
    0000000000000000  # sadb_lifetime_bytes = 0
    4065000000000000  # sadb_lifetime_addtime = 25920
    0000000000000000  # sadb_lifetime_usetime = 0
    """
    + SRC_V4
    + DST_V4,
    PfkeyMessage(
        SadbMsgType.EXPIRE,
        SaType.ESP,
        extensions=(
            SadbSa(0x8B4C2D1E, 32, SaState.DYING, AuthAlg.SHA256HMAC, EncryptAlg.AES),
            SadbLifetime(ExtType.LIFETIME_CURRENT, 1, 1048576, 1700000000, 1700000005),
            SadbLifetime(ExtType.LIFETIME_SOFT, addtime=25920),
            SRC_V4_EXT,
            DST_V4_EXT,
        ),
    ),
)

# -- FLUSH: the base header alone -------------------------------------------------------
_add(
    "flush",
    "RFC 2367 §3.1.9; sadb_msg only",
    """
    02        # sadb_msg_version = PF_KEY_V2
    09        # sadb_msg_type = SADB_FLUSH (9)
    00        # sadb_msg_errno = 0
    00        # sadb_msg_satype = UNSPEC (all types)
    0200      # sadb_msg_len = 2 words
    0000      # sadb_x_msg_diagnostic = 0
    0b000000  # sadb_msg_seq = 11
    e1100000  # sadb_msg_pid = 4321
    """,
    PfkeyMessage(SadbMsgType.FLUSH, seq=11, pid=4321),
)

# -- extended DUMP ----------------------------------------------------------------------
_add(
    "dump_extended",
    "RFC 2367 §3.1.10; illumos sadb_x_edump",
    """
    02                # sadb_msg_version = PF_KEY_V2
    0a                # sadb_msg_type = SADB_DUMP (10)
    00                # sadb_msg_errno = 0
    03                # sadb_msg_satype = ESP (3)
    0400              # sadb_msg_len = 4 words
    0000              # sadb_x_msg_diagnostic = 0
    0c000000          # sadb_msg_seq = 12
    e1100000          # sadb_msg_pid = 4321
    0200              # sadb_x_edump_len = 2
    1900              # sadb_x_edump_exttype = SADB_X_EXT_EDUMP (25)
    00000000          # sadb_x_edump_reserved
    2c01000000000000  # sadb_x_edump_timeout = 300 s
    """,
    PfkeyMessage(SadbMsgType.DUMP, SaType.ESP, seq=12, pid=4321, extensions=(SadbXEdump(300),)),
)

# -- X_PROMISC on -----------------------------------------------------------------------
_add(
    "promisc_on",
    "illumos SADB_X_PROMISC: nonzero satype turns promiscuous mode on",
    """
    02        # sadb_msg_version = PF_KEY_V2
    0b        # sadb_msg_type = SADB_X_PROMISC (11)
    00        # sadb_msg_errno = 0
    01        # sadb_msg_satype = 1 (on)
    0200      # sadb_msg_len = 2 words
    0000      # sadb_x_msg_diagnostic = 0
    0d000000  # sadb_msg_seq = 13
    e1100000  # sadb_msg_pid = 4321
    """,
    PfkeyMessage(SadbMsgType.X_PROMISC, 1, seq=13, pid=4321),
)

# -- X_UPDATEPAIR -----------------------------------------------------------------------
_add(
    "updatepair",
    "illumos SADB_X_UPDATEPAIR with sadb_x_pair",
    """
    02        # sadb_msg_version = PF_KEY_V2
    0d        # sadb_msg_type = SADB_X_UPDATEPAIR (13)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    0b00      # sadb_msg_len = 11 words
    0000      # sadb_x_msg_diagnostic = 0
    0e000000  # sadb_msg_seq = 14
    e1100000  # sadb_msg_pid = 4321
    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SA (1)
    00001001  # sadb_sa_spi = 0x1001
    00        # sadb_sa_replay = 0
    00        # sadb_sa_state = 0
    00        # sadb_sa_auth = 0
    00        # sadb_sa_encrypt = 0
    00000000  # sadb_sa_flags = 0
    """
    + SRC_V4
    + DST_V4
    + """
    0100      # sadb_x_pair_len = 1
    1700      # sadb_x_pair_exttype = SADB_X_EXT_PAIR (23)
    00001002  # sadb_x_pair_spi = 0x1002
    """,
    PfkeyMessage(
        SadbMsgType.X_UPDATEPAIR,
        SaType.ESP,
        seq=14,
        pid=4321,
        extensions=(SadbSa(0x1001), SRC_V4_EXT, DST_V4_EXT, SadbXPair(0x1002)),
    ),
)

# -- X_DELPAIR --------------------------------------------------------------------------
_add(
    "delpair",
    "illumos SADB_X_DELPAIR",
    """
    02        # sadb_msg_version = PF_KEY_V2
    0e        # sadb_msg_type = SADB_X_DELPAIR (14)
    00        # sadb_msg_errno = 0
    03        # sadb_msg_satype = ESP (3)
    0a00      # sadb_msg_len = 10 words
    0000      # sadb_x_msg_diagnostic = 0
    0f000000  # sadb_msg_seq = 15
    e1100000  # sadb_msg_pid = 4321
    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SA (1)
    00001001  # sadb_sa_spi = 0x1001
    00        # sadb_sa_replay = 0
    00        # sadb_sa_state = 0
    00        # sadb_sa_auth = 0
    00        # sadb_sa_encrypt = 0
    00000000  # sadb_sa_flags = 0
    """
    + SRC_V4
    + DST_V4,
    PfkeyMessage(
        SadbMsgType.X_DELPAIR,
        SaType.ESP,
        seq=15,
        pid=4321,
        extensions=(SadbSa(0x1001), SRC_V4_EXT, DST_V4_EXT),
    ),
)

# -- X_DELPAIR_STATE --------------------------------------------------------------------
_add(
    "delpair_state",
    "illumos SADB_X_DELPAIR_STATE: sadb_sa_state selects the SAs",
    """
    02        # sadb_msg_version = PF_KEY_V2
    0f        # sadb_msg_type = SADB_X_DELPAIR_STATE (15)
    00        # sadb_msg_errno = 0
    00        # sadb_msg_satype = UNSPEC (all consumers)
    0400      # sadb_msg_len = 4 words
    0000      # sadb_x_msg_diagnostic = 0
    10000000  # sadb_msg_seq = 16
    e1100000  # sadb_msg_pid = 4321
    0200      # sadb_sa_len = 2
    0100      # sadb_sa_exttype = SA (1)
    00000000  # sadb_sa_spi = 0
    00        # sadb_sa_replay = 0
    05        # sadb_sa_state = SADB_X_SASTATE_IDLE (5)
    00        # sadb_sa_auth = 0
    00        # sadb_sa_encrypt = 0
    00000000  # sadb_sa_flags = 0
    """,
    PfkeyMessage(
        SadbMsgType.X_DELPAIR_STATE,
        seq=16,
        pid=4321,
        extensions=(SadbSa(0, state=SaState.X_IDLE),),
    ),
)

# -- an error reply: ADD refused with EINVAL and a diagnostic ---------------------------
_add(
    "add_error_reply",
    "RFC 2367 §1.8 errno reply; illumos sadb_x_msg_diagnostic in sadb_msg_reserved",
    """
    02        # sadb_msg_version = PF_KEY_V2
    03        # sadb_msg_type = SADB_ADD (3)
    16        # sadb_msg_errno = EINVAL (22)
    03        # sadb_msg_satype = ESP (3)
    0200      # sadb_msg_len = 2 words (keysock strips extensions from errors)
    1200      # sadb_x_msg_diagnostic = SADB_X_DIAGNOSTIC_MISSING_SRC (18)
    03000000  # sadb_msg_seq = 3
    d2040000  # sadb_msg_pid = 1234
    """,
    PfkeyMessage(SadbMsgType.ADD, SaType.ESP, seq=3, pid=1234, errno=22, diagnostic=18),
)
