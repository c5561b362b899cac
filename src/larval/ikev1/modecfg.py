"""The ATTRIBUTE payload of Mode Config and XAuth (draft-dukes-ike-mode-cfg-02 §3.2,
draft-beaulieu-ike-xauth-02 §5), its attribute numbers, and Cisco Unity's.

A Transaction exchange (exchange type 6) carries one ATTRIBUTE payload after its HASH:
a CFG_REQUEST answered by a CFG_REPLY, or a CFG_SET answered by a CFG_ACK. Each
attribute is a data attribute of RFC 2408 §3.3: the TLV form for addresses and text
(an empty one asks for a value), the TV form for XAUTH_TYPE and XAUTH_STATUS. Unknown
attribute numbers round-trip unchanged. The values of XAUTH_USER_PASSWORD and
XAUTH_PASSCODE are secrets: no repr or log line shows them (`ModeCfgAttribute`,
`attribute_names`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from larval.ike import sa_payload as base
from larval.ike.config import IPAddress
from larval.wire import Buffer, LenientIntEnum

from .codec import CODEC, IkeV1Reader
from .constants import PayloadType
from .errors import IkeV1DecodeError

__all__ = [
    "VID_CISCO_UNITY",
    "VID_XAUTH",
    "AttributePayload",
    "CfgType",
    "ModeCfgAttr",
    "ModeCfgAttribute",
    "ReceivedConfig",
    "XauthStatus",
    "XauthType",
    "attribute_names",
    "read_unity_split_include",
    "received_config",
    "unity_split_include",
    "xauth_type_refused",
]

#: Cisco Unity's vendor ID (MD5 of "CISCO-UNITY", version 1.0), as strongSwan's unity
#: plugin and Cisco's clients send it; and the XAuth vendor ID (draft-beaulieu §3).
VID_CISCO_UNITY = bytes.fromhex("12f5f28c457168a9702d9fe274cc0100")
VID_XAUTH = bytes.fromhex("09002689dfd6b712")


class CfgType(LenientIntEnum):
    """The ATTRIBUTE payload's Type (draft-dukes-ike-mode-cfg §3.2)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class ModeCfgAttr(LenientIntEnum):
    """Attribute numbers: Mode Config (draft-dukes §3.3, as IKEv2's RFC 7296 §3.15.1),
    XAuth (draft-beaulieu §5, 16520-16529) and Cisco Unity (28672-28682)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_ADDRESS_EXPIRY = 5
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_NETMASK = 9
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_NBNS = 11
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    INTERNAL_DNS_DOMAIN = 25
    XAUTH_TYPE = 16520
    XAUTH_USER_NAME = 16521
    XAUTH_USER_PASSWORD = 16522
    XAUTH_PASSCODE = 16523
    XAUTH_MESSAGE = 16524
    XAUTH_CHALLENGE = 16525
    XAUTH_DOMAIN = 16526
    XAUTH_STATUS = 16527
    XAUTH_NEXT_PIN = 16528
    XAUTH_ANSWER = 16529
    UNITY_BANNER = 28672
    UNITY_SAVE_PASSWD = 28673
    UNITY_DEF_DOMAIN = 28674
    UNITY_SPLITDNS_NAME = 28675
    UNITY_SPLIT_INCLUDE = 28676
    UNITY_NATT_PORT = 28677
    UNITY_LOCAL_LAN = 28678
    UNITY_PFS = 28679
    UNITY_FW_TYPE = 28680
    UNITY_BACKUP_SERVERS = 28681
    UNITY_DDNS_HOSTNAME = 28682


class XauthStatus(LenientIntEnum):
    """XAUTH_STATUS (draft-beaulieu §5): the gateway's verdict in CFG_SET."""

    FAIL = 0
    OK = 1


class XauthType(LenientIntEnum):
    """XAUTH_TYPE (draft-beaulieu §6.2): how the user is to be authenticated. larval does
    generic XAuth, a user name and a password, only; the rest is named when refused."""

    GENERIC = 0
    RADIUS_CHAP = 1
    OTP = 2
    S_KEY = 3

    def describe(self) -> str:
        """The type as the draft writes it, with its number (``OTP (2)``)."""
        names = {1: "RADIUS-CHAP", 2: "OTP", 3: "S/KEY"}
        return f"{names.get(self.value, self.name)} ({self.value})"


def xauth_type_refused(attr: AttributePayload) -> str | None:
    """Why the XAUTH_TYPE `attr` carries is not one larval does (None: none, or generic)."""
    kind = attr.get(ModeCfgAttr.XAUTH_TYPE)
    if kind is None or kind.number == XauthType.GENERIC:
        return None
    return (f"XAuth type {XauthType(kind.number).describe()}: only generic XAuth (a user "
            "name and a password) is done here")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReceivedConfig:
    """What a gateway's CFG_REPLY or CFG_SET gave this client, as IKEv2's CFG_REPLY is
    kept (the key manager's `host_state` reads either): its virtual addresses, the DNS
    servers, and the DNS domains (attribute 25, or Cisco Unity's default domain)."""

    addresses: tuple[IPAddress, ...] = ()
    dns: tuple[IPAddress, ...] = ()
    domains: tuple[str, ...] = ()


#: A DNS name as a resolver file may hold it: letters, digits, '-', '.'.
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")


def received_config(attr: AttributePayload, addresses: tuple[IPAddress, ...]) -> ReceivedConfig:
    """The DNS servers and domains of a CFG_REPLY or CFG_SET, each once, in the order
    sent, with the `addresses` read from it; a value of the wrong length or a domain that
    is no printable name is passed over (it would go into the resolver file)."""
    dns: dict[IPAddress, None] = {}
    domains: dict[str, None] = {}
    for a in attr.attributes:
        if a.attr_type == ModeCfgAttr.INTERNAL_IP4_DNS and len(a.data) == 4:
            dns[ipaddress.IPv4Address(a.data)] = None
        elif a.attr_type == ModeCfgAttr.INTERNAL_IP6_DNS and len(a.data) == 16:
            dns[ipaddress.IPv6Address(a.data)] = None
        elif a.attr_type in (ModeCfgAttr.INTERNAL_DNS_DOMAIN, ModeCfgAttr.UNITY_DEF_DOMAIN):
            name = a.data.decode("ascii", "replace").rstrip("\x00")
            if _DOMAIN.fullmatch(name):
                domains[name] = None
    return ReceivedConfig(addresses, tuple(dns), tuple(domains))


#: Attributes whose values are never shown.
SECRET_ATTRIBUTES = frozenset({ModeCfgAttr.XAUTH_USER_PASSWORD, ModeCfgAttr.XAUTH_PASSCODE})

#: How strongSwan's log abbreviates the attributes (``CPRQ(X_USER X_PWD)``).
_SHORT = {
    ModeCfgAttr.INTERNAL_IP4_ADDRESS: "ADDR",
    ModeCfgAttr.INTERNAL_IP4_NETMASK: "MASK",
    ModeCfgAttr.INTERNAL_IP4_DNS: "DNS",
    ModeCfgAttr.INTERNAL_IP4_NBNS: "NBNS",
    ModeCfgAttr.INTERNAL_IP6_ADDRESS: "ADDR6",
    ModeCfgAttr.INTERNAL_IP6_DNS: "DNS6",
    ModeCfgAttr.INTERNAL_IP4_SUBNET: "SUBNET",
    ModeCfgAttr.INTERNAL_IP6_SUBNET: "SUBNET6",
    ModeCfgAttr.XAUTH_TYPE: "X_TYPE",
    ModeCfgAttr.XAUTH_USER_NAME: "X_USER",
    ModeCfgAttr.XAUTH_USER_PASSWORD: "X_PWD",
    ModeCfgAttr.XAUTH_MESSAGE: "X_MSG",
    ModeCfgAttr.XAUTH_STATUS: "X_STATUS",
    ModeCfgAttr.UNITY_BANNER: "U_BANNER",
    ModeCfgAttr.UNITY_DEF_DOMAIN: "U_DEFDOM",
    ModeCfgAttr.UNITY_SPLITDNS_NAME: "U_SPLITDNS",
    ModeCfgAttr.UNITY_SPLIT_INCLUDE: "U_SPLITINC",
    ModeCfgAttr.UNITY_LOCAL_LAN: "U_LOCALLAN",
}
_CFG_SHORT = {CfgType.CFG_REQUEST: "CPRQ", CfgType.CFG_REPLY: "CPRP", CfgType.CFG_SET: "CPS",
              CfgType.CFG_ACK: "CPA"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModeCfgAttribute:
    """One configuration attribute: ``bytes`` in the TLV form (empty: a request for a
    value), ``int`` in the TV form. A password's value is never in the repr."""

    attr_type: ModeCfgAttr
    value: bytes | int = b""

    def __repr__(self) -> str:
        if self.attr_type in SECRET_ATTRIBUTES:
            size = len(self.value) if isinstance(self.value, bytes) else 2
            return f"ModeCfgAttribute({self.attr_type.name}, <{size} bytes>)"
        return f"ModeCfgAttribute({self.attr_type.name}, {self.value!r})"

    @property
    def number(self) -> int:
        """The value as an integer, whichever form carried it (TLV: big-endian)."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")

    @property
    def data(self) -> bytes:
        """The value as octets (TV: its two octets)."""
        return self.value.to_bytes(2, "big") if isinstance(self.value, int) else self.value

    def text(self) -> str:
        """The value as text (a user name, a message); undecodable octets replaced."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class AttributePayload:
    """Attribute payload, ATTR (draft-dukes-ike-mode-cfg §3.2)::

                             1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        ! Next Payload  !   RESERVED    !         Payload Length        !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !     Type      !   RESERVED    !           Identifier          !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        !                                                               !
        ~                           Attributes                          ~
        !                                                               !
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The Identifier of a reply or ACK echoes its request's or SET's (§3.2).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.ATTRIBUTE

    cfg_type: CfgType
    attributes: tuple[ModeCfgAttribute, ...] = ()
    identifier: int = 0

    def get(self, attr_type: ModeCfgAttr) -> ModeCfgAttribute | None:
        """The first attribute of that type, or None."""
        return next((a for a in self.attributes if a.attr_type == attr_type), None)

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_u8(self.cfg_type)
        buf.push_u8(0)
        buf.push_u16be(self.identifier)
        for attr in self.attributes:
            base.push_attribute(buf, CODEC, attr.attr_type, attr.value)
        return buf.data

    @classmethod
    def decode_body(cls, body: bytes) -> AttributePayload:
        reader = IkeV1Reader(body, "ATTRIBUTE payload")
        cfg_type = CfgType(reader.pull_u8("Type"))
        reader.pull_u8("RESERVED")
        identifier = reader.pull_u16("Identifier")
        attributes: list[ModeCfgAttribute] = []
        while not reader.eof():
            attr_type, value = base.pull_attribute(reader)
            attributes.append(ModeCfgAttribute(ModeCfgAttr(attr_type), value))
        return cls(cfg_type, tuple(attributes), identifier)


def attribute_names(payload: AttributePayload) -> str:
    """``CPRQ(X_USER X_PWD)``: the type and the attributes' names, as strongSwan logs
    them, never a value."""
    kind = _CFG_SHORT.get(payload.cfg_type, payload.cfg_type.name)
    names = " ".join(_SHORT.get(a.attr_type, str(int(a.attr_type))) for a in payload.attributes)
    return f"{kind}({names})"


def unity_split_include(networks: Iterable[ipaddress.IPv4Network]) -> bytes:
    """UNITY_SPLIT_INCLUDE's value: per network its address, its mask and six zero
    octets (protocol and ports, which only Cisco's own client reads), as strongSwan's
    unity plugin writes it."""
    out = b""
    for net in networks:
        if net.version != 4 or net.prefixlen == 0:
            continue
        out += net.network_address.packed + net.netmask.packed + bytes(6)
    return out


def read_unity_split_include(value: bytes) -> list[ipaddress.IPv4Network]:
    """The networks of a UNITY_SPLIT_INCLUDE value (14 octets each); a value whose
    length is not a multiple of 14 or whose mask is not contiguous is malformed."""
    if len(value) % 14:
        raise IkeV1DecodeError(f"UNITY_SPLIT_INCLUDE of {len(value)} bytes, not 14 each")
    nets = []
    for at in range(0, len(value), 14):
        address = ipaddress.IPv4Address(value[at : at + 4])
        mask = ipaddress.IPv4Address(value[at + 4 : at + 8])
        try:
            nets.append(ipaddress.IPv4Network(f"{address}/{mask}"))
        except ValueError:
            raise IkeV1DecodeError(f"UNITY_SPLIT_INCLUDE {address}/{mask} is no network") from None
    return nets
